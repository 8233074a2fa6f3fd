//! Collecting digest items, and closing a digest into one message.

use serde_json::{Value, json};

use super::spec::DigestSpec;
use crate::delivery::request::{SendRequest, parse_targets};
use crate::delivery::service::{Accepted, Origin};
use crate::ids::{new_id, rfc3339};
use crate::schedules::occurrence::Interval;
use crate::services::{ServiceError, ServiceResult, Services};
use crate::store::{DigestItem, DigestRecord, NewDigest};
use crate::templates::{escape_html, escape_markdown_v2};

/// Most items listed by the built-in digest (the count says how many there were).
const DEFAULT_LIST: usize = 50;

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

/// A checked digest item: when a new digest closes, and what each recipient's digest is
/// built from.
struct Checked {
    close_at: i64,
    /// (recipient key, base request of the digest message) per target.
    recipients: Vec<(String, SendRequest)>,
}

impl Services {
    /// Checks a digest item as [`Services::accept_digest_item`] would, storing nothing.
    pub async fn validate_digest_item(
        &self,
        tenant_id: &str,
        req: &SendRequest,
    ) -> ServiceResult<()> {
        self.check_digest_item(tenant_id, req).await.map(|_| ())
    }

    async fn check_digest_item(
        &self,
        tenant_id: &str,
        req: &SendRequest,
    ) -> ServiceResult<Checked> {
        let Some(spec) = &req.digest else {
            return Err(invalid("digest", "is required"));
        };
        let key = spec.key.trim();
        if key.is_empty() || key.chars().count() > 200 {
            return Err(invalid("digest.key", "must be 1 to 200 characters"));
        }
        let now = self.clock.now_millis();
        let close_at = match (&spec.window, &spec.schedule_id) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(invalid("digest", "give `window` or `schedule_id`"));
            }
            (Some(w), None) => {
                let interval =
                    Interval::parse(w).map_err(|e| invalid("digest.window", e.message))?;
                now + interval.approx_millis()
            }
            (None, Some(id)) => {
                let schedule = self
                    .store
                    .get_schedule(id)
                    .await?
                    .filter(|s| s.tenant_id == tenant_id)
                    .ok_or_else(|| invalid("digest.schedule_id", format!("no schedule {id}")))?;
                match (schedule.enabled, schedule.next_fire_at) {
                    (true, Some(at)) => at,
                    _ => {
                        return Err(invalid(
                            "digest.schedule_id",
                            format!("schedule {id} is paused or has no next occurrence"),
                        ));
                    }
                }
            }
        };
        if let Some(t) = &spec.template {
            self.template_for(tenant_id, t).await.map_err(|e| match e {
                ServiceError::NotFound { .. } => invalid(
                    "digest.template",
                    format!("no template {t:?} in this tenant"),
                ),
                other => other,
            })?;
        }
        let refuse = |field: &'static str| {
            Err(invalid(
                field,
                "does not apply to a digest item (the digest is one message rendered by `digest.template`)",
            ))
        };
        if req.template.is_some() {
            return refuse("template");
        }
        if req.buttons.is_some() {
            return refuse("buttons");
        }
        if req.photo.is_some() {
            return refuse("photo");
        }
        if req.document.is_some() {
            return refuse("document");
        }
        if req.throttle_key.is_some() || req.throttle_seconds.is_some() {
            return refuse("throttle_key");
        }
        if req.send_at.is_some() {
            return refuse("send_at");
        }
        if req.send_at_local.is_some() {
            return refuse("send_at_local");
        }
        if req.default_timezone.is_some() {
            return refuse("default_timezone");
        }
        if req.text.is_none() && req.data.is_none() {
            return Err(invalid("text", "is required (or data) in a digest item"));
        }
        if spec.template.is_none() && req.text.is_none() {
            return Err(invalid(
                "text",
                "is required unless `digest.template` renders the items' data",
            ));
        }
        if parse_targets(&req.to)?.iter().any(|l| l.data.is_some()) {
            return Err(invalid(
                "to",
                "a target's own `data` is not used in digest items: give each item its `data`",
            ));
        }
        // The digest message is a plain request to the same recipients: delivery checks
        // the targets, the bot and the item's markup now, so a bad item stores nothing.
        let base = SendRequest {
            text: None,
            data: None,
            digest: None,
            ..req.clone()
        };
        let probe = SendRequest {
            text: Some(req.text.clone().unwrap_or_else(|| "digest".into())),
            ..base.clone()
        };
        self.validate_message(tenant_id, &probe).await?;
        let targets = match &req.to {
            Value::Array(items) => items.clone(),
            one => vec![one.clone()],
        };
        let mut recipients: Vec<(String, SendRequest)> = Vec::new();
        for target in targets {
            let recipient = json!({"bot_id": req.bot_id, "to": target}).to_string();
            if recipients.iter().any(|(r, _)| *r == recipient) {
                continue;
            }
            let one = SendRequest {
                to: target,
                ..base.clone()
            };
            recipients.push((recipient, one));
        }
        Ok(Checked {
            close_at,
            recipients,
        })
    }

    /// Stores a digest item for each target of `req` (joining the open digest of its key
    /// and recipient, or opening one); nothing is sent now. The answer has status
    /// `digested`, the number of items stored as `count`, and the digests in `digest_ids`.
    ///
    /// Items are keyed by their origin: the same `Idempotency-Key`, or the same schedule
    /// occurrence, adds nothing the second time and answers the same digests.
    pub async fn accept_digest_item(
        &self,
        tenant_id: &str,
        req: SendRequest,
        origin: &Origin,
    ) -> ServiceResult<Accepted> {
        let mut checked = self.check_digest_item(tenant_id, &req).await?;
        // Targets that reach nobody now get no digest; none reaching anyone is a 422.
        let probe = SendRequest {
            text: Some(req.text.clone().unwrap_or_else(|| "digest".into())),
            data: None,
            digest: None,
            ..req.clone()
        };
        let skipped = self.reachable(tenant_id, &probe).await?;
        checked
            .recipients
            .retain(|(_, one)| !skipped.iter().any(|s| s.target == one.to));
        let spec: &DigestSpec = req
            .digest
            .as_ref()
            .ok_or_else(|| invalid("digest", "is required"))?;
        let now = self.clock.now_millis();
        let data = req.data.as_ref().map(Value::to_string);
        let group = item_group(tenant_id, origin)?;
        let mut digest_ids = Vec::new();
        for (i, (recipient, base)) in checked.recipients.iter().enumerate() {
            let open = NewDigest {
                id: new_id("dig"),
                tenant_id: tenant_id.to_string(),
                key: spec.key.trim().to_string(),
                recipient: recipient.clone(),
                base: serde_json::to_string(base).unwrap_or_default(),
                template: spec.template.clone(),
                schedule_id: spec.schedule_id.clone(),
                close_at: checked.close_at,
            };
            let item = DigestItem {
                id: format!("{group}-{i}"),
                text: req.text.clone(),
                data: data.clone(),
                created_at: now,
            };
            digest_ids.push(self.store.add_digest_item(&open, &item).await?);
        }
        metrics::counter!("relaygram_digest_items_total").increment(digest_ids.len() as u64);
        Ok(Accepted {
            request_id: group,
            status: "digested".into(),
            count: digest_ids.len() as i64,
            messages: vec![],
            broadcast_id: None,
            digest_ids,
            skipped,
        })
    }

    /// Closes a due digest and hands it to delivery as one message, accepted at most once
    /// per digest (a crash between the two hands it over again; delivery answers as the
    /// first time). A digest delivery refuses (e.g. its link went inactive) ends `failed`.
    pub async fn deliver_digest(&self, digest: &DigestRecord) -> ServiceResult<()> {
        let now = self.clock.now_millis();
        let items = self.store.close_digest(&digest.id, now).await?;
        let outcome = match render(digest, &items) {
            Ok(req) => {
                self.accept_message(
                    &digest.tenant_id,
                    req,
                    Origin::Digest {
                        digest_id: digest.id.clone(),
                    },
                )
                .await
            }
            Err(e) => Err(e),
        };
        let now = self.clock.now_millis();
        match outcome {
            Ok(accepted) => {
                let ids: Vec<&str> = accepted.messages.iter().map(|m| m.id.as_str()).collect();
                self.store
                    .finish_digest(
                        &digest.id,
                        "sent",
                        Some(&accepted.request_id),
                        &json!(ids).to_string(),
                        None,
                        now,
                    )
                    .await?;
                Ok(())
            }
            Err(e @ (ServiceError::Invalid { .. } | ServiceError::NotFound { .. })) => {
                tracing::warn!(digest_id = %digest.id, error = %e, "digest refused by delivery");
                self.store
                    .finish_digest(&digest.id, "failed", None, "[]", Some(&e.to_string()), now)
                    .await?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// The id prefix of a request's items: derived from its origin when that is a key, so a
/// replay finds the items it stored.
fn item_group(tenant_id: &str, origin: &Origin) -> ServiceResult<String> {
    use sha2::{Digest, Sha256};
    let keyed = |text: String| {
        let hash = Sha256::digest(text.as_bytes());
        let hex: String = hash.iter().take(13).map(|b| format!("{b:02x}")).collect();
        format!("dgi_{hex}")
    };
    Ok(match origin {
        Origin::Api {
            idempotency_key: Some(k),
        } => {
            let k = k.trim();
            if k.is_empty() || k.len() > 255 {
                return Err(invalid("Idempotency-Key", "must be 1 to 255 characters"));
            }
            keyed(format!("api\0{tenant_id}\0{k}"))
        }
        Origin::Schedule {
            schedule_id,
            occurrence_ms,
        } => keyed(format!("schedule\0{schedule_id}\0{occurrence_ms}")),
        Origin::Digest { digest_id } => keyed(format!("digest\0{digest_id}")),
        _ => new_id("dgi"),
    })
}

fn item_json(item: &DigestItem) -> Value {
    json!({
        "text": item.text,
        "data": item.data.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()),
        "at": rfc3339(item.created_at),
    })
}

/// The digest message: the stored template with `key`, `count`, `items`, `first`, `last`,
/// or the built-in list (a headline, then one line per item, in the items' parse mode).
pub fn render(digest: &DigestRecord, items: &[DigestItem]) -> ServiceResult<SendRequest> {
    let base: SendRequest = serde_json::from_str(&digest.base).map_err(|e| {
        ServiceError::Store(crate::store::StoreError::Corrupt(format!(
            "digest {}: {e}",
            digest.id
        )))
    })?;
    let list: Vec<Value> = items.iter().map(item_json).collect();
    if let Some(template) = &digest.template {
        return Ok(SendRequest {
            template: Some(template.clone()),
            parse_mode: None,
            data: Some(json!({
                "key": digest.key,
                "count": items.len(),
                "items": list,
                "first": list.first(),
                "last": list.last(),
            })),
            ..base
        });
    }
    let escape = |s: &str| match base.parse_mode.as_deref() {
        Some("HTML") => escape_html(s),
        Some("MarkdownV2") => escape_markdown_v2(s),
        _ => s.to_string(),
    };
    let n = items.len();
    let mut text = escape(&format!(
        "{}: {n} {}",
        digest.key,
        if n == 1 { "update" } else { "updates" }
    ));
    for item in items.iter().take(DEFAULT_LIST) {
        let line = match (&item.text, &item.data) {
            (Some(t), _) => t.clone(),
            (None, Some(d)) => escape(d),
            (None, None) => continue,
        };
        text.push_str("\n• ");
        text.push_str(&line);
    }
    if n > DEFAULT_LIST {
        text.push_str(&escape(&format!("\n… and {} more", n - DEFAULT_LIST)));
    }
    Ok(SendRequest {
        text: Some(text),
        ..base
    })
}

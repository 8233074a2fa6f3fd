//! The outbox service: acceptance (validation, planning, one stored transaction), status,
//! re-drive, broadcasts and statistics.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::content::{OwnButtons, StoredContent, render_content};
use super::personal::{PersonalTemplate, is_personal, render_each};
use super::recipients::{Recipients, Resolution, SkipReason, Skipped};
use super::request::{
    SendRequest, Target, media_ref, metadata, parse_mode, parse_targets, send_at, send_at_local,
};
use crate::ids::new_id;
use crate::services::{ServiceError, ServiceResult, Services};
use crate::store::Callback;
use crate::store::{
    Acceptance, Accepted as StoredAccepted, Fanout, MessageFilter, MessageRecord, NewMessage,
    NewRequest, Page, StoreError, Throttle, ThrottleScope,
};
use crate::templates::Content;

/// Above this many recipients a request is a broadcast (a job with progress and controls).
pub const BROADCAST_THRESHOLD: i64 = 200;
/// Default throttle window.
pub const DEFAULT_THROTTLE_SECONDS: u32 = 60;

/// Where a send request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The API, with the caller's `Idempotency-Key` if any.
    Api {
        /// The header's value.
        idempotency_key: Option<String>,
    },
    /// A schedule's occurrence: accepted at most once per occurrence.
    Schedule {
        /// The schedule.
        schedule_id: String,
        /// The occurrence's time (UTC ms).
        occurrence_ms: i64,
    },
    /// A closing digest: accepted at most once per digest.
    Digest {
        /// The digest.
        digest_id: String,
    },
}

/// One send request to accept (see [`Services::accept_messages`]).
#[derive(Debug, Clone)]
pub struct Submission {
    /// The tenant it is for.
    pub tenant_id: String,
    /// The request.
    pub request: SendRequest,
    /// Where it comes from.
    pub origin: Origin,
}

/// A validated request on its way to the store.
struct Prepared {
    tenant_id: String,
    acceptance: Acceptance,
    /// The answer, when it is known before storing ([`Acceptance::is_plain`]).
    plain: Option<Accepted>,
    /// Targets that reach nobody (reported in the answer).
    skipped: Vec<Skipped>,
}

/// One message of an accepted request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct AcceptedMessage {
    /// Message id.
    pub id: String,
    /// Sending bot.
    pub bot_id: String,
    /// Telegram chat.
    pub chat_id: i64,
    /// Link it was addressed through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_id: Option<String>,
    /// `queued`, or `throttled` when its throttle window was open.
    pub status: String,
}

impl From<MessageRecord> for AcceptedMessage {
    fn from(m: MessageRecord) -> AcceptedMessage {
        AcceptedMessage {
            // What acceptance made of it (it may have been sent since).
            status: if m.status == "throttled" {
                "throttled"
            } else {
                "queued"
            }
            .into(),
            id: m.id,
            bot_id: m.bot_id,
            chat_id: m.chat_id,
            link_id: m.link_id,
        }
    }
}

/// The answer to an accepted request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[schema(example = json!({"request_id": "req_01jd8y3k7q9x4m2n5p6r7s8t9v", "status": "queued", "count": 1,
    "messages": [{"id": "msg_01jd8y3k7q9x4m2n5p6r7s8t9w", "bot_id": "bot_01jd8y3k7q9x4m2n5p6r7s8t9x", "chat_id": 100000001, "status": "queued"}],
    "skipped": [{"target": {"link_id": "link_01jd8y3k7q9x4m2n5p6r7s8t9z"}, "reason": "link_inactive",
        "detail": "link link_01jd8y3k7q9x4m2n5p6r7s8t9z has ended"}]}))]
pub struct Accepted {
    /// The request (all its messages share its content).
    pub request_id: String,
    /// `queued`, or `throttled` when every message's throttle window was open (each
    /// message says its own).
    pub status: String,
    /// Messages stored.
    pub count: i64,
    /// The messages (left empty above 200: list them with `broadcast_id`).
    pub messages: Vec<AcceptedMessage>,
    /// The broadcast, when the request fanned out (`external_id`, `category`) or listed
    /// more than 200 recipients.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broadcast_id: Option<String>,
    /// The digests a digest item went to (status `digested`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digest_ids: Vec<String>,
    /// Targets that reach nobody now, with the reason; the others got the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

/// A request's content: rendered once for all its recipients, or for each one.
enum Body {
    Shared((StoredContent, Vec<Callback>)),
    Personal(PersonalTemplate),
}

/// A validated request, ready to store.
#[derive(Debug)]
pub struct Planned {
    content: StoredContent,
    callbacks: Vec<Callback>,
    recipients: Recipients,
    bot_id: Option<String>,
    priority: i64,
    send_at: Option<i64>,
    /// `send_at_local`: the local time, the default zone, the earliest instant.
    local: Option<(String, String, i64)>,
    throttle: Option<(String, u32, ThrottleScope)>,
    /// The app's metadata, serialized.
    metadata: Option<String>,
}

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

impl Services {
    /// Checks a send request as acceptance would, without storing anything.
    pub async fn validate_message(&self, tenant_id: &str, req: &SendRequest) -> ServiceResult<()> {
        if req.digest.is_some() {
            return Box::pin(self.validate_digest_item(tenant_id, req)).await;
        }
        self.plan_message(tenant_id, req, OwnButtons::Refused)
            .await
            .map(|_| ())
    }

    /// Who `req` reaches now: the targets that reach nobody, or 422 `no-recipients` when
    /// none reaches anyone. (Digest items are kept for later; they are refused the same
    /// way when nobody would get the digest.)
    pub async fn reachable(
        &self,
        tenant_id: &str,
        req: &SendRequest,
    ) -> ServiceResult<Vec<Skipped>> {
        let plan = self
            .plan_message(tenant_id, req, OwnButtons::Refused)
            .await?;
        if plan.recipients.is_empty() {
            return Err(no_recipients(&plan.recipients.skipped));
        }
        Ok(plan.recipients.skipped)
    }

    async fn plan_message(
        &self,
        tenant_id: &str,
        req: &SendRequest,
        own_buttons: OwnButtons,
    ) -> ServiceResult<Planned> {
        // Content first: it does not depend on the recipients. It is rendered once per
        // request (one `data` for every recipient) with the templates' renderer, which
        // checks the markup as Telegram parses it and splits long texts.
        let media = match (&req.photo, &req.document) {
            (Some(_), Some(_)) => return Err(invalid("photo", "give photo or document, not both")),
            (Some(p), None) => Some(("photo".to_string(), media_ref("photo", p)?)),
            (None, Some(d)) => Some(("document".to_string(), media_ref("document", d)?)),
            (None, None) => None,
        };
        let request_buttons = req.buttons.clone().unwrap_or_default();
        // Targets are parsed first: one that carries its own data makes the request personal.
        let listed = parse_targets(&req.to)?;
        let target_data = listed.iter().any(|l| l.data.is_some());
        let body = match (&req.text, &req.template) {
            (Some(_), Some(_)) => {
                return Err(invalid("template", "give text or template, not both"));
            }
            (None, Some(key)) => {
                if req.parse_mode.is_some() {
                    return Err(invalid(
                        "parse_mode",
                        "comes from the template; leave it out with `template`",
                    ));
                }
                let template = self
                    .template_for(tenant_id, key)
                    .await
                    .map_err(|e| match e {
                        ServiceError::NotFound { .. } => {
                            invalid("template", format!("no template {key:?} in this tenant"))
                        }
                        other => other,
                    })?;
                if req.data.as_ref().is_some_and(|d| !d.is_object()) {
                    return Err(invalid(
                        "data",
                        "must be a JSON object (its keys are the template's variables)",
                    ));
                }
                if is_personal(&template, req.data.as_ref(), target_data) {
                    // Rendered for each recipient once they are known.
                    Body::Personal(PersonalTemplate {
                        template,
                        buttons: req.buttons.clone(),
                        data: req.data.clone(),
                        media,
                        message_thread_id: req.message_thread_id,
                        silent: req.silent,
                    })
                } else {
                    let mut content = template.content(req.data.as_ref());
                    if req.buttons.is_some() {
                        content.buttons = &request_buttons;
                    }
                    Body::Shared(render_content(
                        &content,
                        media,
                        req.message_thread_id,
                        req.silent,
                        own_buttons,
                    )?)
                }
            }
            (text, None) => {
                if req.data.is_some() {
                    return Err(invalid("data", "is only used with `template`"));
                }
                if target_data {
                    return Err(invalid(
                        "to",
                        "a target's `data` is only used with `template`",
                    ));
                }
                if text.is_none() && media.is_none() {
                    return Err(invalid(
                        "text",
                        "is required (or template, photo or document)",
                    ));
                }
                let content = Content {
                    source: text.as_deref().unwrap_or(""),
                    parse_mode: parse_mode(req.parse_mode.as_deref())?,
                    buttons: &request_buttons,
                    data: None,
                    templated: false,
                };
                Body::Shared(render_content(
                    &content,
                    media,
                    req.message_thread_id,
                    req.silent,
                    own_buttons,
                )?)
            }
        };
        let metadata = metadata(req.metadata.as_ref())?;
        let priority = req.priority.unwrap_or(0);
        if !(-100..=100).contains(&priority) {
            return Err(invalid("priority", "must be between -100 and 100"));
        }
        let send_at = send_at(req.send_at.as_deref())?;
        let local = send_at_local(
            req.send_at_local.as_deref(),
            req.default_timezone.as_deref(),
        )?;
        if send_at.is_some() && local.is_some() {
            return Err(invalid(
                "send_at_local",
                "give send_at (an instant) or send_at_local (each recipient's local time), not both",
            ));
        }
        let throttle = match (&req.throttle_key, req.throttle_seconds) {
            (Some(k), secs) => {
                let k = k.trim();
                if k.is_empty() || k.len() > 200 {
                    return Err(invalid("throttle_key", "must be 1 to 200 characters"));
                }
                let secs = secs.unwrap_or(DEFAULT_THROTTLE_SECONDS);
                if secs == 0 || secs > 31 * 86_400 {
                    return Err(invalid("throttle_seconds", "must be 1 to 2678400"));
                }
                Some((k.to_string(), secs, req.throttle_scope.unwrap_or_default()))
            }
            (None, Some(_)) => {
                return Err(invalid("throttle_key", "is required with throttle_seconds"));
            }
            (None, None) if req.throttle_scope.is_some() => {
                return Err(invalid("throttle_scope", "is only used with throttle_key"));
            }
            (None, None) => None,
        };

        // Recipients.
        let bot_id = match &req.bot_id {
            Some(id) => {
                let bot = self
                    .store
                    .get_bot(id)
                    .await?
                    .filter(|b| b.tenant_id == tenant_id)
                    .ok_or_else(|| invalid("bot_id", format!("no bot {id} in this tenant")))?;
                Some(bot.id)
            }
            None => None,
        };
        let resolution = match body {
            Body::Shared(_) => Resolution::Shared,
            Body::Personal(_) => Resolution::Personal,
        };
        let mut recipients = self
            .resolve_recipients(tenant_id, bot_id.as_deref(), listed, resolution)
            .await?;
        let (content, callbacks) = match body {
            Body::Shared(shared) => shared,
            Body::Personal(p) => {
                let (first, callbacks) = render_each(&p, &mut recipients);
                // With nobody rendered the request is refused (no-recipients) before its
                // content is stored.
                (first.unwrap_or_default(), callbacks)
            }
        };
        Ok(Planned {
            content,
            callbacks,
            recipients,
            bot_id,
            priority,
            send_at,
            local,
            throttle,
            metadata,
        })
    }

    /// Accepts a send request: validates it, stores the request and every message in one
    /// transaction, and wakes the senders. Nothing is stored when it is invalid.
    pub async fn accept_message(
        &self,
        tenant_id: &str,
        req: SendRequest,
        origin: Origin,
    ) -> ServiceResult<Accepted> {
        self.accept_messages(vec![Submission {
            tenant_id: tenant_id.to_string(),
            request: req,
            origin,
        }])
        .await
        .pop()
        .unwrap_or_else(|| Err(ServiceError::Store(StoreError::Corrupt("no answer".into()))))
    }

    /// Accepts several send requests in one store transaction (a burst of schedule runs):
    /// each answer is what [`Services::accept_message`] would give for its request alone,
    /// and an invalid request is refused without holding up the others. When the store
    /// fails, every request of the batch gets a store error and nothing is stored.
    pub async fn accept_messages(&self, batch: Vec<Submission>) -> Vec<ServiceResult<Accepted>> {
        let mut results: Vec<Option<ServiceResult<Accepted>>> =
            batch.iter().map(|_| None).collect();
        let mut prepared: Vec<(usize, Prepared)> = Vec::new();
        for (i, sub) in batch.into_iter().enumerate() {
            if sub.request.digest.is_some() {
                results[i] = Some(
                    Box::pin(self.accept_digest_item(&sub.tenant_id, sub.request, &sub.origin))
                        .await,
                );
                continue;
            }
            match self
                .prepare(&sub.tenant_id, &sub.request, &sub.origin)
                .await
            {
                Ok(p) => prepared.push((i, p)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if !prepared.is_empty() {
            let acceptances: Vec<Acceptance> =
                prepared.iter().map(|(_, p)| p.acceptance.clone()).collect();
            match self.store.accept_batch(&acceptances).await {
                Ok(stored) => {
                    for ((i, p), stored) in prepared.into_iter().zip(stored) {
                        results[i] = Some(self.answer(p, stored).await);
                    }
                }
                // One call the store refuses must not hold up the others: each is stored
                // on its own, and gets the answer its own call deserves.
                Err(_) if prepared.len() > 1 => {
                    for (i, p) in prepared {
                        let stored = self
                            .store
                            .accept(&p.acceptance)
                            .await
                            .map_err(ServiceError::Store);
                        results[i] = Some(match stored {
                            Ok(stored) => self.answer(p, stored).await,
                            Err(e) => Err(e),
                        });
                    }
                }
                Err(e) => {
                    if let Some((i, _)) = prepared.pop() {
                        results[i] = Some(Err(ServiceError::Store(e)));
                    }
                }
            }
            super::sender::wake();
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(ServiceError::Store(StoreError::Corrupt("no answer".into())))
                })
            })
            .collect()
    }

    /// Validates a request and builds what the store keeps of it.
    async fn prepare(
        &self,
        tenant_id: &str,
        req: &SendRequest,
        origin: &Origin,
    ) -> ServiceResult<Prepared> {
        let body_hash = hex(&Sha256::digest(serde_json::to_vec(req).unwrap_or_default()));
        let (origin_text, idempotency) = match origin {
            Origin::Api { idempotency_key } => {
                let key = idempotency_key
                    .as_deref()
                    .map(str::trim)
                    .map(|k| {
                        if k.is_empty() || k.len() > 255 {
                            Err(invalid("Idempotency-Key", "must be 1 to 255 characters"))
                        } else {
                            Ok(format!("api:{k}"))
                        }
                    })
                    .transpose()?;
                ("api".to_string(), key)
            }
            Origin::Schedule {
                schedule_id,
                occurrence_ms,
            } => {
                let key = format!("schedule:{schedule_id}:{occurrence_ms}");
                (key.clone(), Some(key))
            }
            Origin::Digest { digest_id } => {
                let key = format!("digest:{digest_id}");
                (key.clone(), Some(key))
            }
        };
        // Apps never send relaygram's own buttons (the router's replies take `prepare_reply`).
        let plan = self
            .plan_message(tenant_id, req, OwnButtons::Refused)
            .await?;
        // A request that reaches nobody is refused, never answered `queued` with nothing.
        if plan.recipients.is_empty() {
            return Err(no_recipients(&plan.recipients.skipped));
        }
        let skipped = plan.recipients.skipped;
        let now = self.clock.now_millis();
        let request_id = new_id("req");
        // A fan-out (app user, category) is a broadcast from its first recipient, as the
        // docs promise; a list becomes one above the threshold.
        let fanned_out = plan.recipients.fanned_out || !plan.recipients.fanouts.is_empty();
        let (rows, fanouts) = (plan.recipients.rows, plan.recipients.fanouts);
        let broadcast_above = if fanned_out { 0 } else { BROADCAST_THRESHOLD };
        let is_fanout = fanned_out || rows.len() as i64 > BROADCAST_THRESHOLD;
        let mut acceptance = Acceptance {
            request: NewRequest {
                id: request_id.clone(),
                tenant_id: tenant_id.to_string(),
                origin: origin_text,
                content: serde_json::to_string(&plan.content).unwrap_or_default(),
                metadata: plan.metadata,
                skipped: (!skipped.is_empty())
                    .then(|| serde_json::to_string(&skipped).unwrap_or_default()),
                created_at: now,
            },
            rows,
            fanouts,
            bot_id: plan.bot_id.clone(),
            priority: plan.priority,
            // A local time is first due where it happens first (UTC+14); the sender holds
            // each message until its recipient's own instant.
            send_at: plan
                .local
                .as_ref()
                .map(|(_, _, earliest)| *earliest)
                .or(plan.send_at)
                .unwrap_or(now),
            local: plan.local.map(|(at, zone, _)| (at, zone)),
            throttle: plan.throttle.map(|(key, secs, scope)| Throttle {
                key,
                until: now + i64::from(secs) * 1000,
                scope,
            }),
            broadcast: is_fanout.then(|| (new_id("bc"), broadcast_above)),
            callbacks: plan.callbacks,
            idempotency: idempotency.map(|k| (k, body_hash)),
            answer: None,
        };
        // A plain call's answer is known now: kept with its key in the same transaction.
        let plain = acceptance.is_plain().then(|| {
            let messages = listed(&acceptance.rows);
            Accepted {
                request_id,
                status: "queued".into(),
                count: messages.len() as i64,
                messages,
                broadcast_id: None,
                digest_ids: vec![],
                skipped: skipped.clone(),
            }
        });
        if acceptance.idempotency.is_some() {
            acceptance.answer = plain
                .as_ref()
                .map(|a| serde_json::to_string(a).unwrap_or_default());
        }
        Ok(Prepared {
            tenant_id: tenant_id.to_string(),
            acceptance,
            plain,
            skipped,
        })
    }

    /// The answer to a prepared request, from what the store did with it.
    async fn answer(&self, p: Prepared, stored: StoredAccepted) -> ServiceResult<Accepted> {
        let Prepared {
            tenant_id,
            acceptance,
            plain,
            skipped,
        } = p;
        let tenant_id = tenant_id.as_str();
        let now = acceptance.request.created_at;
        let request_id = acceptance.request.id.clone();
        let accepted = match stored {
            StoredAccepted::Replay {
                response,
                body_hash: first,
                request_id: first_request,
            } => {
                let body_hash = acceptance
                    .idempotency
                    .as_ref()
                    .map(|(_, h)| h.as_str())
                    .unwrap_or_default();
                if first != body_hash {
                    return Err(ServiceError::Conflict(
                        "this Idempotency-Key was used in the last 24 hours with another body"
                            .into(),
                    ));
                }
                if !response.is_empty() {
                    return serde_json::from_str(&response).map_err(|e| {
                        ServiceError::Store(crate::store::StoreError::Corrupt(e.to_string()))
                    });
                }
                // The key and the messages were stored together, but the process stopped
                // before the answer was: rebuild it from the stored messages, and keep it.
                let Some(first_request) = first_request else {
                    return Err(ServiceError::Conflict(
                        "a request with this Idempotency-Key is being accepted; retry in a moment"
                            .into(),
                    ));
                };
                let rebuilt = self.answer_for_request(&first_request).await?;
                if let Some((key, hash)) = &acceptance.idempotency {
                    self.store
                        .put_idempotent_answer(
                            tenant_id,
                            key,
                            hash,
                            &serde_json::to_string(&rebuilt).unwrap_or_default(),
                            now,
                        )
                        .await?;
                }
                return Ok(rebuilt);
            }
            StoredAccepted::Stored {
                count,
                status,
                throttled,
                broadcast_id,
            } => {
                if count == 0 {
                    // The fan-outs' links ended between the look and the store: nothing
                    // was kept.
                    let mut gone = skipped;
                    gone.extend(acceptance.fanouts.iter().map(|(_, f)| Skipped {
                        target: fanout_target(f).to_json(),
                        reason: SkipReason::NoActiveLink,
                        detail: "its links ended while the request was accepted".into(),
                    }));
                    return Err(no_recipients(&gone));
                }
                metrics::counter!(
                    "relaygram_messages_accepted_total",
                    "status" => "queued"
                )
                .increment((count - throttled).max(0) as u64);
                metrics::counter!(
                    "relaygram_messages_accepted_total",
                    "status" => "throttled"
                )
                .increment(throttled.max(0) as u64);
                if let Some(plain) = plain {
                    // Its answer was kept with its key in the acceptance's transaction.
                    return Ok(plain);
                }
                let messages = if count > BROADCAST_THRESHOLD {
                    vec![]
                } else if acceptance.fanouts.is_empty() && (throttled == 0 || throttled == count) {
                    // Exactly the listed rows were stored, all with one status: answer from
                    // them (re-reading them by request would scan the outbox, `request_id`
                    // has no index).
                    let mut listed = listed(&acceptance.rows);
                    for m in &mut listed {
                        m.status = status.clone();
                    }
                    listed
                } else {
                    self.store
                        .request_messages(&request_id)
                        .await?
                        .into_iter()
                        .map(AcceptedMessage::from)
                        .collect()
                };
                Accepted {
                    request_id,
                    status,
                    count,
                    messages,
                    broadcast_id,
                    digest_ids: vec![],
                    skipped,
                }
            }
        };
        if let Some((key, hash)) = &acceptance.idempotency {
            // The answer is kept for replays (it cannot be known inside the transaction
            // before the fan-outs ran, so it is stored right after).
            self.store
                .put_idempotent_answer(
                    tenant_id,
                    key,
                    hash,
                    &serde_json::to_string(&accepted).unwrap_or_default(),
                    now,
                )
                .await?;
        }
        Ok(accepted)
    }

    /// The answer to an accepted request, from its stored messages.
    async fn answer_for_request(&self, request_id: &str) -> ServiceResult<Accepted> {
        let stored = self.store.request_messages(request_id).await?;
        let broadcast_id = stored.iter().find_map(|m| m.broadcast_id.clone());
        let throttled = !stored.is_empty() && stored.iter().all(|m| m.status == "throttled");
        let (count, messages) = match &broadcast_id {
            // A large broadcast answers with its id; its messages are listed by the broadcast.
            Some(_) if stored.len() as i64 > BROADCAST_THRESHOLD => {
                (self.store.count_request_messages(request_id).await?, vec![])
            }
            _ => (
                stored.len() as i64,
                stored.into_iter().map(AcceptedMessage::from).collect(),
            ),
        };
        // The skipped targets were kept with the request, so the rebuilt answer has them.
        let skipped = self
            .store
            .request_skipped(request_id)
            .await?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        Ok(Accepted {
            request_id: request_id.to_string(),
            status: if throttled { "throttled" } else { "queued" }.into(),
            count,
            messages,
            broadcast_id,
            digest_ids: vec![],
            skipped,
        })
    }

    /// One message of the tenant.
    pub async fn get_message(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> ServiceResult<crate::store::MessageRecord> {
        self.store
            .get_message(tenant_id, id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                kind: "message",
                id: id.to_string(),
            })
    }

    /// The `metadata` a request's send carried, if any.
    pub async fn send_metadata(
        &self,
        request_id: &str,
    ) -> ServiceResult<Option<serde_json::Value>> {
        Ok(self
            .store
            .request_metadata(request_id)
            .await?
            .and_then(|m| serde_json::from_str(&m).ok()))
    }

    /// Messages of the tenant.
    pub async fn list_messages(
        &self,
        filter: &MessageFilter,
        page: &Page,
    ) -> ServiceResult<crate::store::Listed<crate::store::MessageRecord>> {
        if let Some(s) = &filter.status
            && !is_status(s)
        {
            return Err(ServiceError::InvalidQuery {
                field: "status",
                message: format!("unknown status {s:?}"),
            });
        }
        Ok(self.store.list_messages(filter, page).await?)
    }

    /// Queues one message again: `dead` and `failed` ones, and `unknown` ones only with
    /// `anyway` (they may have been delivered already).
    pub async fn retry_message(
        &self,
        tenant_id: &str,
        id: &str,
        anyway: bool,
    ) -> ServiceResult<crate::store::MessageRecord> {
        let message = self.get_message(tenant_id, id).await?;
        if message.kind != "send" {
            // A stale edit must not overwrite a newer one: the app edits again instead.
            return Err(ServiceError::Conflict(format!(
                "{id} is a job ({}), not a message: jobs are not re-driven; PATCH or DELETE message {} again",
                message.kind,
                message.edit_of.as_deref().unwrap_or("?")
            )));
        }
        let from: &[&str] = if anyway {
            &["dead", "failed", "unknown"]
        } else {
            &["dead", "failed"]
        };
        if !from.contains(&message.status.as_str()) {
            let hint = if message.status == "unknown" {
                "; it may have been delivered: pass {\"anyway\": true} to send it again"
            } else {
                ""
            };
            return Err(ServiceError::Conflict(format!(
                "message {id} is {}; only dead or failed messages are retried{hint}",
                message.status
            )));
        }
        let filter = MessageFilter {
            tenant_id: tenant_id.to_string(),
            ..MessageFilter::default()
        };
        self.store
            .requeue(&filter, Some(id), from, self.clock.now_millis())
            .await?;
        super::sender::wake();
        self.get_message(tenant_id, id).await
    }

    /// Queues again every message matching `filter` whose status is `dead` (or the
    /// filter's status: `dead`, `failed`, or `unknown` with `anyway`).
    pub async fn retry_messages(&self, filter: &MessageFilter, anyway: bool) -> ServiceResult<u64> {
        let status = filter.status.as_deref().unwrap_or("dead");
        match status {
            "dead" | "failed" => {}
            "unknown" if anyway => {}
            "unknown" => {
                return Err(ServiceError::Conflict(
                    "unknown messages may have been delivered: pass \"anyway\": true to send them again".into(),
                ));
            }
            other => {
                return Err(invalid(
                    "status",
                    format!("only dead, failed or unknown messages are retried, not {other:?}"),
                ));
            }
        }
        let n = self
            .store
            .requeue(filter, None, &[status], self.clock.now_millis())
            .await?;
        super::sender::wake();
        Ok(n)
    }
}

/// The answer's messages for listed rows, in id order (as the store lists them).
fn listed(rows: &[NewMessage]) -> Vec<AcceptedMessage> {
    let mut messages: Vec<AcceptedMessage> = rows
        .iter()
        .map(|m| AcceptedMessage {
            id: m.id.clone(),
            bot_id: m.bot_id.clone(),
            chat_id: m.chat_id,
            link_id: m.link_id.clone(),
            status: "queued".into(),
        })
        .collect();
    messages.sort_by(|a, b| a.id.cmp(&b.id));
    messages
}

/// The 422 for a request that reaches nobody.
fn no_recipients(skipped: &[Skipped]) -> ServiceError {
    ServiceError::NoRecipients {
        skipped: skipped
            .iter()
            .map(|s| serde_json::to_value(s).unwrap_or_default())
            .collect(),
    }
}

/// The target a fan-out came from.
fn fanout_target(f: &Fanout) -> Target {
    match f {
        Fanout::ExternalId { external_id } => Target::ExternalId(external_id.clone()),
        Fanout::Category { key } => Target::Category(key.clone()),
        Fanout::ConnectCode { connect_code_id } => Target::ConnectCode(connect_code_id.clone()),
    }
}

/// Whether `s` is a message status.
pub fn is_status(s: &str) -> bool {
    matches!(s, "queued" | "paused" | "sending") || crate::store::FINAL_STATES.contains(&s)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

//! The entitlement ledger's rules: grants, extensions, cancellations and revocations, each
//! an append-only entry applied once per source key; after each, the holder's memberships
//! are brought in line ([`super::sync`]).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::ids::{new_id, rfc3339};
use crate::services::{Principal, ServiceError, ServiceResult, Services};
use crate::store::{Applied, EntitlementRecord, EntryKind, MembershipRecord, NewEntry};

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

/// A new entitlement.
#[derive(Debug, Clone)]
pub struct GrantInput {
    /// The app user.
    pub external_id: Option<String>,
    /// The Telegram user.
    pub telegram_user_id: Option<i64>,
    /// Gated chats it opens.
    pub gated_chat_ids: Vec<String>,
    /// From (default now).
    pub starts_at: Option<i64>,
    /// Until (`None` = forever, unless `duration_ms`).
    pub ends_at: Option<i64>,
    /// Until, counted from the start (instead of `ends_at`): a replay of the same grant
    /// later is still the same grant.
    pub duration_ms: Option<i64>,
    /// `api` (payments add `stars`, `stripe`).
    pub source: String,
    /// Makes the grant apply once.
    pub source_key: Option<String>,
    /// The caller's reason.
    pub reason: Option<String>,
}

/// A change to an entitlement.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new end, or the current end (now, when it passed) plus a duration.
    Extend {
        /// The new end.
        ends_at: Option<i64>,
        /// Or this much more.
        duration_ms: Option<i64>,
    },
    /// No renewal (`at_period_end`) or an end now.
    Cancel {
        /// Keep access until the current end.
        at_period_end: bool,
    },
    /// Taken back now.
    Revoke,
}

/// An entitlement after a ledger entry, with its memberships.
#[derive(Debug, Clone)]
pub struct EntitlementOutcome {
    /// The entitlement.
    pub entitlement: EntitlementRecord,
    /// Its memberships (one per gated chat, once synced).
    pub memberships: Vec<MembershipRecord>,
    /// The entry was applied before (a replay): nothing changed.
    pub replayed: bool,
}

fn hash(v: &Value) -> String {
    hex(&Sha256::digest(v.to_string().as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Services {
    /// Grants an entitlement (once per source key) and brings its memberships in line: a
    /// personal link for each chat the holder is not in.
    pub async fn grant_entitlement(
        &self,
        tenant_id: &str,
        input: GrantInput,
    ) -> ServiceResult<EntitlementOutcome> {
        if input.external_id.is_none() && input.telegram_user_id.is_none() {
            return Err(invalid(
                "external_id",
                "give external_id (the app user) or telegram_user_id (or both)",
            ));
        }
        if let Some(e) = &input.external_id
            && (e.trim().is_empty() || e.chars().count() > 200)
        {
            return Err(invalid("external_id", "must be 1 to 200 characters"));
        }
        if input.telegram_user_id.is_some_and(|u| u <= 0) {
            return Err(invalid(
                "telegram_user_id",
                "must be a Telegram user id (positive)",
            ));
        }
        if input.gated_chat_ids.is_empty() || input.gated_chat_ids.len() > 50 {
            return Err(invalid("gated_chat_ids", "give 1 to 50 gated chat ids"));
        }
        let mut chats: Vec<String> = input.gated_chat_ids.clone();
        chats.sort();
        chats.dedup();
        for id in &chats {
            if self
                .store
                .get_gated_chat(Some(tenant_id), id)
                .await?
                .is_none()
            {
                return Err(invalid(
                    "gated_chat_ids",
                    format!("no gated chat {id} in this tenant"),
                ));
            }
        }
        let now = self.clock.now_millis();
        let starts_at = input.starts_at.unwrap_or(now);
        let ends_at = match (input.ends_at, input.duration_ms) {
            (Some(_), Some(_)) => {
                return Err(invalid("duration", "give ends_at or duration, not both"));
            }
            (None, Some(d)) => Some(starts_at + d),
            (end, None) => end,
        };
        if let Some(end) = ends_at
            && end <= starts_at
        {
            return Err(invalid("ends_at", "must be after starts_at (or now)"));
        }
        let body = json!({"external_id": input.external_id, "telegram_user_id": input.telegram_user_id,
            "gated_chat_ids": chats, "starts_at": input.starts_at, "ends_at": input.ends_at,
            "duration_ms": input.duration_ms, "reason": input.reason});
        let id = new_id("ent");
        let grant = EntitlementRecord {
            id: id.clone(),
            tenant_id: tenant_id.to_string(),
            external_id: input.external_id.clone(),
            telegram_user_id: input.telegram_user_id,
            gated_chat_ids: chats,
            starts_at,
            ends_at,
            cancel_at_period_end: false,
            cancelled_at: None,
            revoked_at: None,
            expired_at: None,
            source: input.source.clone(),
            created_at: now,
            updated_at: now,
        };
        let entry = NewEntry {
            id: new_id("ee"),
            entitlement_id: id,
            tenant_id: tenant_id.to_string(),
            kind: EntryKind::Grant,
            source: input.source.clone(),
            source_key: input.source_key.clone().unwrap_or_else(|| new_id("key")),
            body_hash: hash(&body),
            ends_at,
            at_period_end: false,
            reason: input.reason.clone(),
            created_at: now,
        };
        self.apply(entry, Some(&grant), &grant, "entitlement.granted")
            .await
    }

    /// Extends, cancels or revokes an entitlement (once per source key).
    pub async fn change_entitlement(
        &self,
        principal: &Principal,
        id: &str,
        change: Change,
        source_key: Option<String>,
        reason: Option<String>,
    ) -> ServiceResult<EntitlementOutcome> {
        let e = self.entitlement(principal, id).await?;
        let now = self.clock.now_millis();
        // What the caller asked, as asked: a retry of the same change is the same entry
        // (answered as a replay before the rules, which the first one changed, are read).
        let asked = match &change {
            Change::Extend {
                ends_at,
                duration_ms,
            } => json!({"kind": "extend", "ends_at": ends_at, "duration_ms": duration_ms}),
            Change::Cancel { at_period_end } => {
                json!({"kind": "cancel", "at_period_end": at_period_end})
            }
            Change::Revoke => json!({"kind": "revoke"}),
        };
        let body = json!({"change": asked, "entitlement_id": e.id, "reason": reason});
        if let Some(key) = &source_key
            && let Some((entitlement_id, body_hash)) =
                self.store.find_entry(&e.tenant_id, "api", key).await?
        {
            if body_hash != hash(&body) || entitlement_id != e.id {
                return Err(ServiceError::Conflict(format!(
                    "source key {key:?} was used for a different entry"
                )));
            }
            return Ok(EntitlementOutcome {
                memberships: self.sync_entitlement(&e).await?,
                entitlement: e,
                replayed: true,
            });
        }
        let ended = e.revoked_at.is_some() || e.cancelled_at.is_some();
        let (kind, ends_at, at_period_end, event) = match change {
            Change::Extend {
                ends_at,
                duration_ms,
            } => {
                if ended {
                    return Err(refused("it was cancelled or revoked: grant a new one"));
                }
                let ends_at = match (ends_at, duration_ms) {
                    (Some(t), _) => t,
                    (None, Some(d)) => e.ends_at.map_or(now, |end| end.max(now)) + d,
                    (None, None) => return Err(invalid("ends_at", "give ends_at or duration")),
                };
                if ends_at <= now || e.ends_at.is_some_and(|cur| ends_at <= cur) {
                    return Err(invalid(
                        "ends_at",
                        "must be later than now and than the current end",
                    ));
                }
                (
                    EntryKind::Extend,
                    Some(ends_at),
                    false,
                    "entitlement.extended",
                )
            }
            Change::Cancel { at_period_end } => {
                if ended {
                    return Err(refused("it is already cancelled or revoked"));
                }
                if at_period_end && e.ends_at.is_none() {
                    return Err(invalid(
                        "at_period_end",
                        "this entitlement has no end: cancel it now instead",
                    ));
                }
                (
                    EntryKind::Cancel,
                    None,
                    at_period_end,
                    "entitlement.cancelled",
                )
            }
            Change::Revoke => {
                if e.revoked_at.is_some() {
                    return Err(refused("it is already revoked"));
                }
                (EntryKind::Revoke, None, false, "entitlement.revoked")
            }
        };
        let entry = NewEntry {
            id: new_id("ee"),
            entitlement_id: e.id.clone(),
            tenant_id: e.tenant_id.clone(),
            kind,
            source: "api".into(),
            source_key: source_key.unwrap_or_else(|| new_id("key")),
            body_hash: hash(&body),
            ends_at,
            at_period_end,
            reason,
            created_at: now,
        };
        self.apply(entry, None, &e, event).await
    }

    /// Applies `entry` to `holder` (the new grant, or the entitlement as it was), with its
    /// event in the same transaction (nothing of either when the entry was applied before).
    async fn apply(
        &self,
        entry: NewEntry,
        grant: Option<&EntitlementRecord>,
        holder: &EntitlementRecord,
        event: &str,
    ) -> ServiceResult<EntitlementOutcome> {
        let new_event = crate::events::new_event(
            &holder.tenant_id,
            event,
            &json!({"entitlement_id": holder.id, "external_id": holder.external_id,
                "telegram_user_id": holder.telegram_user_id, "source": entry.source,
                "source_key": entry.source_key,
                "ends_at": entry.ends_at.or(holder.ends_at).map(rfc3339),
                "gated_chat_ids": holder.gated_chat_ids}),
        );
        let (entitlement, replayed) =
            match self.store.apply_entry(&entry, grant, &new_event).await? {
                Applied::New(e) => (e, false),
                Applied::Replayed(e) => (e, true),
                Applied::KeyReused => {
                    return Err(ServiceError::Conflict(format!(
                        "source key {:?} was used for a different entry",
                        entry.source_key
                    )));
                }
            };
        if !replayed {
            crate::events::notify(1);
        }
        let memberships = self.sync_entitlement(&entitlement).await?;
        super::wakeup::wake();
        Ok(EntitlementOutcome {
            entitlement,
            memberships,
            replayed,
        })
    }

    /// One entitlement of the caller's tenant.
    pub async fn entitlement(
        &self,
        principal: &Principal,
        id: &str,
    ) -> ServiceResult<EntitlementRecord> {
        self.store
            .get_entitlement(principal.tenant(), id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                kind: "entitlement",
                id: id.to_string(),
            })
    }
}

fn refused(detail: &str) -> ServiceError {
    ServiceError::Refused {
        type_uri: crate::http::problem::types::ENTITLEMENT_ENDED,
        title: "The entitlement cannot change this way",
        detail: detail.to_string(),
    }
}

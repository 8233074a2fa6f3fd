//! The rules of paid access: binding gated chats (with the bot's rights checked), the
//! entitlement ledger, and bringing each holder's membership in line with their access —
//! a personal link when access begins, approval of their request, removal when it ends.
//! Telegram's member calls that change someone's access (approve, decline, remove, revoke
//! a link) are outbox jobs, queued with the membership state that asked for them.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::access::{Access, access, next_reminder, reminders_past};
use crate::delivery::content::StoredContent;
use crate::delivery::job::{BotCall, BotMethod, JobContent};
use crate::delivery::{Origin, SendRequest};
use crate::ids::{new_id, rfc3339};
use crate::services::{Principal, ServiceError, ServiceResult, Services};
use crate::store::{
    Applied, BotFilter, BotRecord, EntitlementRecord, EntryKind, GateStatus, GatedChatRecord,
    GatedChatType, JobKind, JoinMode, LinkFilter, MemberAction, MembershipRecord, MembershipState,
    NewEntry, NewJob, NewRequest, Page, TextKey,
};
use crate::texts::TextVars;

/// The rights a gated chat's bot needs, and why.
pub const NEEDED_RIGHTS: [(&str, &str); 2] = [
    (
        "can_invite_users",
        "to make personal links and approve join requests",
    ),
    (
        "can_restrict_members",
        "to remove members whose access ended",
    ),
];

/// Why a basic group is not enforced.
pub const BASIC_GROUP: &str = "a basic group cannot keep a removed user out (Telegram lets \
     them back through any link): relaygram gates it once it becomes a supergroup. Telegram \
     converts it when you turn on 'Approve new members' or make the chat history visible to \
     new members";

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

/// What binding a gated chat takes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GatedChatInput {
    /// The bot (optional when the tenant has one).
    pub bot_id: Option<String>,
    /// The Telegram chat.
    pub chat_id: i64,
    /// The operator's name for it.
    pub name: Option<String>,
    /// How people get in.
    pub join_mode: JoinMode,
    /// Seconds members keep access after their entitlement ends.
    pub grace_seconds: i64,
    /// Reminders before the end, in seconds.
    pub reminders: Vec<i64>,
    /// Remove members without an entitlement.
    pub remove_unentitled: bool,
    /// After this many seconds.
    pub unentitled_grace_seconds: i64,
    /// Where people get access.
    pub access_url: Option<String>,
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
    pub(super) async fn tenant_bot(
        &self,
        tenant_id: &str,
        bot_id: Option<&str>,
    ) -> ServiceResult<BotRecord> {
        match bot_id {
            Some(id) => self
                .store
                .get_bot(id)
                .await?
                .filter(|b| b.tenant_id == tenant_id)
                .ok_or_else(|| invalid("bot_id", format!("no bot {id} in this tenant"))),
            None => {
                let filter = BotFilter {
                    tenant_id: Some(tenant_id.to_string()),
                    ..BotFilter::default()
                };
                let mut bots = self.store.list_bots(&filter, &Page::first(2)).await?.items;
                match bots.len() {
                    1 => Ok(bots.remove(0)),
                    0 => Err(invalid("bot_id", "this tenant has no bot: add one first")),
                    _ => Err(invalid("bot_id", "this tenant has several bots: say which")),
                }
            }
        }
    }

    /// The bot's rights in a chat, as Telegram reports them: the missing ones (empty when
    /// it holds every needed right).
    pub async fn missing_rights(
        &self,
        bot: &BotRecord,
        chat_id: i64,
    ) -> ServiceResult<Vec<&'static str>> {
        let token = self.token_of(bot)?;
        let me: Value = self
            .telegram
            .call(
                &token,
                "getChatMember",
                &json!({"chat_id": chat_id, "user_id": bot.telegram_id}),
            )
            .await?;
        Ok(missing_from(&me))
    }

    /// Binds a supergroup or channel the bot administers. The chat and the bot's rights are
    /// checked with Telegram first; a basic group is stored `degraded` until it becomes a
    /// supergroup.
    pub async fn create_gated_chat(
        &self,
        tenant_id: &str,
        input: GatedChatInput,
    ) -> ServiceResult<GatedChatRecord> {
        validate_settings(&input)?;
        if input.chat_id == 0 {
            return Err(invalid(
                "chat_id",
                "give the chat's id, or bind through the bot's startgroup link (POST /v1/gated-chat-tokens)",
            ));
        }
        let bot = self.tenant_bot(tenant_id, input.bot_id.as_deref()).await?;
        if let Some(allowed) = &bot.allowed_updates {
            for needed in ["chat_member", "chat_join_request", "my_chat_member"] {
                if !allowed.iter().any(|a| a == needed) {
                    return Err(invalid(
                        "bot_id",
                        format!(
                            "the bot's allowed_updates leave out {needed}, which a gated chat needs: add it (PATCH /v1/bots/{})",
                            bot.id
                        ),
                    ));
                }
            }
        }
        let token = self.token_of(&bot)?;
        let chat: Value = self
            .telegram
            .call(&token, "getChat", &json!({"chat_id": input.chat_id}))
            .await
            .map_err(|e| {
                invalid(
                    "chat_id",
                    format!(
                        "the bot cannot see chat {}: add it as an administrator first ({})",
                        input.chat_id,
                        e.description()
                    ),
                )
            })?;
        let (chat_type, status, reason) = match chat["type"].as_str() {
            Some("supergroup") => (GatedChatType::Supergroup, GateStatus::Active, None),
            Some("channel") => (GatedChatType::Channel, GateStatus::Active, None),
            Some("group") => (
                GatedChatType::Supergroup,
                GateStatus::Degraded,
                Some(BASIC_GROUP.to_string()),
            ),
            other => {
                return Err(invalid(
                    "chat_id",
                    format!(
                        "chat {} is a {} chat: only supergroups and channels can be gated",
                        input.chat_id,
                        other.unwrap_or("unknown")
                    ),
                ));
            }
        };
        if input.join_mode == JoinMode::StarsSubscription && chat["type"] != "channel" {
            return Err(invalid(
                "join_mode",
                "stars_subscription works in channels only (Telegram's Star subscription links)",
            ));
        }
        if status == GateStatus::Active {
            let missing = self.missing_rights(&bot, input.chat_id).await?;
            if !missing.is_empty() {
                return Err(invalid("chat_id", missing_explained(&missing)));
            }
        }
        let now = self.clock.now_millis();
        let title = chat["title"].as_str().map(str::to_string);
        let record = GatedChatRecord {
            id: new_id("gc"),
            tenant_id: tenant_id.to_string(),
            bot_id: bot.id.clone(),
            chat_id: input.chat_id,
            chat_type,
            name: input
                .name
                .clone()
                .or_else(|| title.clone())
                .unwrap_or_else(|| input.chat_id.to_string()),
            title,
            join_mode: input.join_mode,
            grace_seconds: input.grace_seconds,
            reminders: sorted(input.reminders),
            remove_unentitled: input.remove_unentitled,
            unentitled_grace_seconds: input.unentitled_grace_seconds,
            access_url: input.access_url,
            status,
            status_reason: reason,
            swept_at: None,
            created_at: now,
            updated_at: now,
        };
        self.store
            .insert_gated_chat(&record)
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Conflict(d) => ServiceError::Conflict(d),
                e => e.into(),
            })?;
        tracing::info!(gated_chat_id = %record.id, chat_id = record.chat_id, "gated chat bound");
        Ok(record)
    }

    /// One gated chat of the caller's tenant.
    pub async fn gated_chat(
        &self,
        principal: &Principal,
        id: &str,
    ) -> ServiceResult<GatedChatRecord> {
        self.store
            .get_gated_chat(principal.tenant(), id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                kind: "gated chat",
                id: id.to_string(),
            })
    }

    /// Changes a gated chat's settings (its chat and bot stay). Access ends computed from the
    /// old grace are brought in line by the next sweep.
    pub async fn update_gated_chat(
        &self,
        principal: &Principal,
        id: &str,
        change: impl FnOnce(&mut GatedChatRecord) -> ServiceResult<()>,
    ) -> ServiceResult<GatedChatRecord> {
        let mut g = self.gated_chat(principal, id).await?;
        change(&mut g)?;
        g.reminders = sorted(std::mem::take(&mut g.reminders));
        validate_record(&g)?;
        g.updated_at = self.clock.now_millis();
        self.store.update_gated_chat(&g).await?;
        self.store.mark_chat_unsynced(&g.id).await?;
        super::wakeup::wake();
        Ok(g)
    }

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
        self.apply(entry, Some(&grant), "entitlement.granted").await
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
        self.apply(entry, None, event).await
    }

    async fn apply(
        &self,
        entry: NewEntry,
        grant: Option<&EntitlementRecord>,
        event: &str,
    ) -> ServiceResult<EntitlementOutcome> {
        let (entitlement, replayed) = match self.store.apply_entry(&entry, grant).await? {
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
            crate::events::emit(
                self.store.as_ref(),
                &entitlement.tenant_id,
                event,
                json!({"entitlement_id": entitlement.id, "external_id": entitlement.external_id,
                    "telegram_user_id": entitlement.telegram_user_id, "source": entry.source,
                    "source_key": entry.source_key, "ends_at": entitlement.ends_at.map(rfc3339),
                    "gated_chat_ids": entitlement.gated_chat_ids}),
            )
            .await?;
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

    /// Brings the memberships of an entitlement's holder in line with their access, in each
    /// of its chats; marks it synced when all went through.
    pub async fn sync_entitlement(
        &self,
        e: &EntitlementRecord,
    ) -> ServiceResult<Vec<MembershipRecord>> {
        let mut out = Vec::new();
        let mut complete = true;
        for chat_id in &e.gated_chat_ids {
            let Some(chat) = self.store.get_gated_chat(None, chat_id).await? else {
                continue;
            };
            match self
                .sync_holder(&chat, e.external_id.as_deref(), e.telegram_user_id)
                .await
            {
                Ok(m) => out.push(m),
                Err(err) => {
                    complete = false;
                    tracing::warn!(entitlement_id = %e.id, gated_chat_id = %chat.id, error = %err, "membership not in line yet");
                }
            }
        }
        if complete {
            self.store
                .mark_entitlement_synced(&e.id, e.updated_at)
                .await?;
        }
        Ok(out)
    }

    /// The Telegram user of an app user: their entitlement's, else their private chat
    /// linked through the gated chat's bot.
    async fn telegram_user_of(
        &self,
        chat: &GatedChatRecord,
        external_id: Option<&str>,
    ) -> ServiceResult<Option<i64>> {
        let Some(external_id) = external_id else {
            return Ok(None);
        };
        let links = self
            .store
            .list_links(
                &LinkFilter {
                    tenant_id: Some(chat.tenant_id.clone()),
                    external_id: Some(external_id.to_string()),
                    bot_id: Some(chat.bot_id.clone()),
                    active: Some(true),
                    ..LinkFilter::default()
                },
                &Page::first(20),
            )
            .await?;
        Ok(links
            .items
            .iter()
            .find(|l| l.chat_id > 0)
            .map(|l| l.telegram_user_id.unwrap_or(l.chat_id)))
    }

    /// A holder's access to a chat now.
    pub async fn holder_access(
        &self,
        chat: &GatedChatRecord,
        external_id: Option<&str>,
        telegram_user_id: Option<i64>,
    ) -> ServiceResult<Access> {
        let ents = self
            .store
            .holder_entitlements(&chat.tenant_id, &chat.id, external_id, telegram_user_id)
            .await?;
        Ok(access(
            &ents,
            chat.grace_seconds * 1000,
            self.clock.now_millis(),
        ))
    }

    /// Brings one holder's membership of one chat in line with their access: a personal
    /// link when they may be in and are not, an approval when they asked already, removal
    /// (by the sweep, at `remove_at`) when access ended.
    pub async fn sync_holder(
        &self,
        chat: &GatedChatRecord,
        external_id: Option<&str>,
        telegram_user_id: Option<i64>,
    ) -> ServiceResult<MembershipRecord> {
        let now = self.clock.now_millis();
        let user = match telegram_user_id {
            Some(u) => Some(u),
            None => self.telegram_user_of(chat, external_id).await?,
        };
        let found = self
            .store
            .find_membership(&chat.id, user, external_id)
            .await?;
        // The app user's entitlements and the Telegram user's both count.
        let external = external_id
            .map(str::to_string)
            .or_else(|| found.as_ref().and_then(|m| m.external_id.clone()));
        let acc = self.holder_access(chat, external.as_deref(), user).await?;
        let mut m = found.unwrap_or_else(|| MembershipRecord {
            id: new_id("mem"),
            tenant_id: chat.tenant_id.clone(),
            gated_chat_id: chat.id.clone(),
            telegram_user_id: user,
            external_id: external.clone(),
            state: MembershipState::Removed,
            invite_link: None,
            access_until: 0,
            ends_at: None,
            remove_at: None,
            next_reminder_at: None,
            reminders_sent: 0,
            unentitled: false,
            job_id: None,
            job_action: None,
            last_error: None,
            joined_at: None,
            left_at: None,
            checked_at: None,
            created_at: now,
            updated_at: now,
        });
        if m.telegram_user_id.is_none() {
            m.telegram_user_id = user;
        }
        if m.external_id.is_none() {
            m.external_id = external;
        }
        self.apply_access(chat, &mut m, acc, now);
        let mut job = None;
        let mut invite = false;
        if acc.allows(now) {
            m.unentitled = false;
            match m.state {
                MembershipState::Removed | MembershipState::Left | MembershipState::Declined
                    if chat.join_mode != JoinMode::StarsSubscription =>
                {
                    m.state = MembershipState::Invited;
                    invite = true;
                }
                MembershipState::Invited if m.invite_link.is_none() => invite = true,
                // They asked before they were entitled: let them in now.
                MembershipState::Requested if m.job_id.is_none() => {
                    if let Some(u) = m.telegram_user_id {
                        job = Some(self.member_job(chat, &mut m, MemberAction::Approve, u, vec![]));
                    }
                }
                _ => {}
            }
        } else if m.state == MembershipState::Requested
            && m.job_id.is_none()
            && let Some(u) = m.telegram_user_id
        {
            job = Some(self.member_job(chat, &mut m, MemberAction::Decline, u, vec![]));
            m.state = MembershipState::Declined;
        }
        if invite && chat.status == GateStatus::Active {
            match self.make_link(chat, &m).await {
                Ok(link) => m.invite_link = Some(link),
                Err(e) => {
                    m.last_error = Some(e.to_string());
                    m.updated_at = now;
                    self.store.save_membership(&m, job.as_ref()).await?;
                    return Err(e);
                }
            }
        }
        m.updated_at = now;
        self.store.save_membership(&m, job.as_ref()).await?;
        if job.is_some() {
            crate::delivery::sender::wake_bot(&chat.bot_id);
        }
        if invite && m.invite_link.is_some() {
            self.emit_membership(chat, &m, "membership.invited").await?;
            let vars = json!({"gated_chat": {"name": chat.name}, "invite_link": m.invite_link,
                "ends_at": m.ends_at.map(human_time)});
            self.notify(
                chat,
                &m,
                TextKey::MembershipInvite,
                vars,
                &format!("invite:{}", m.invite_link.as_deref().unwrap_or_default()),
            )
            .await;
        }
        Ok(m)
    }

    /// Sets what a membership's access says: its end, removal time and next reminder.
    pub(super) fn apply_access(
        &self,
        chat: &GatedChatRecord,
        m: &mut MembershipRecord,
        acc: Access,
        now: i64,
    ) {
        if m.ends_at != acc.ends_at {
            m.reminders_sent = reminders_past(acc.ends_at, &chat.reminders, now);
        }
        m.access_until = acc.until;
        m.ends_at = acc.ends_at;
        m.next_reminder_at = next_reminder(acc.ends_at, &chat.reminders, m.reminders_sent);
        // Telegram ends a Star subscription itself; relaygram removes nobody there.
        m.remove_at = if chat.join_mode == JoinMode::StarsSubscription {
            None
        } else if acc.allows(now) {
            (acc.until != crate::store::FOREVER).then_some(acc.until)
        } else if m.unentitled {
            chat.remove_unentitled
                .then(|| m.joined_at.unwrap_or(now) + chat.unentitled_grace_seconds * 1000)
        } else {
            Some(now)
        };
    }

    /// A personal link for the holder: a join-request link (`request`), or a one-person
    /// invite link revoked once used (`invite`).
    async fn make_link(
        &self,
        chat: &GatedChatRecord,
        m: &MembershipRecord,
    ) -> ServiceResult<String> {
        let bot =
            self.store
                .get_bot(&chat.bot_id)
                .await?
                .ok_or_else(|| ServiceError::NotFound {
                    kind: "bot",
                    id: chat.bot_id.clone(),
                })?;
        let token = self.token_of(&bot)?;
        let name: String = m
            .external_id
            .clone()
            .or_else(|| m.telegram_user_id.map(|u| format!("tg {u}")))
            .unwrap_or_else(|| m.id.clone())
            .chars()
            .take(32)
            .collect();
        let mut params = json!({"chat_id": chat.chat_id, "name": name});
        match chat.join_mode {
            JoinMode::Invite => params["member_limit"] = json!(1),
            _ => params["creates_join_request"] = json!(true),
        }
        let link: Value = self
            .telegram
            .call(&token, "createChatInviteLink", &params)
            .await?;
        link["invite_link"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                ServiceError::Telegram(crate::telegram::TelegramError::BadRequest(
                    "createChatInviteLink answered without invite_link".into(),
                ))
            })
    }

    /// A member job for `m` (queued by the caller with the membership): its calls name the
    /// gated chat, its lane is the user's.
    pub(super) fn member_job(
        &self,
        chat: &GatedChatRecord,
        m: &mut MembershipRecord,
        action: MemberAction,
        user: i64,
        revoke_links: Vec<String>,
    ) -> NewJob {
        let now = self.clock.now_millis();
        let mut calls = Vec::new();
        let user_call = |method| BotCall {
            method,
            params: json!({"chat_id": chat.chat_id, "user_id": user}),
        };
        match action {
            MemberAction::Approve => calls.push(user_call(BotMethod::ApproveJoinRequest)),
            MemberAction::Decline => calls.push(user_call(BotMethod::DeclineJoinRequest)),
            MemberAction::Remove => calls.push(user_call(BotMethod::UnbanMember)),
            MemberAction::RevokeLink => {}
        }
        for link in revoke_links {
            calls.push(BotCall {
                method: BotMethod::RevokeInviteLink,
                params: json!({"chat_id": chat.chat_id, "invite_link": link}),
            });
        }
        let content = StoredContent::of_job(JobContent {
            delete: false,
            edit_of: String::new(),
            calls,
            membership_id: Some(m.id.clone()),
        });
        let id = new_id("msg");
        m.job_id = Some(id.clone());
        m.job_action = Some(action);
        NewJob {
            request: NewRequest {
                id: new_id("req"),
                tenant_id: chat.tenant_id.clone(),
                origin: format!("membership:{}:{}", m.id, action.as_str()),
                content: serde_json::to_string(&content).unwrap_or_default(),
                created_at: now,
                metadata: None,
                skipped: None,
            },
            id,
            kind: JobKind::Member,
            edit_of: None,
            // Letting someone in waits for nothing; removals go before notices.
            priority: if matches!(action, MemberAction::Approve | MemberAction::Decline) {
                100
            } else {
                50
            },
            bot_id: chat.bot_id.clone(),
            chat_id: user,
            callbacks: vec![],
        }
    }

    /// Emits a `membership.*` event.
    pub(super) async fn emit_membership(
        &self,
        chat: &GatedChatRecord,
        m: &MembershipRecord,
        kind: &str,
    ) -> ServiceResult<()> {
        crate::events::emit(
            self.store.as_ref(),
            &chat.tenant_id,
            kind,
            json!({"membership_id": m.id, "gated_chat_id": chat.id, "chat_id": chat.chat_id,
                "external_id": m.external_id, "telegram_user_id": m.telegram_user_id,
                "state": m.state.as_str(), "invite_link": m.invite_link,
                "access_until": access_time(m.access_until)}),
        )
        .await?;
        Ok(())
    }

    /// Tells the holder something in their private chat with the bot (their link there,
    /// else the chat relaygram knows), once per `key`; nothing when they have none (the
    /// app has the event).
    pub(super) async fn notify(
        &self,
        chat: &GatedChatRecord,
        m: &MembershipRecord,
        text: TextKey,
        vars: Value,
        key: &str,
    ) {
        if let Err(e) = self.try_notify(chat, m, None, text, vars, key).await {
            tracing::warn!(membership_id = %m.id, error = %e, "membership notice not queued");
        }
    }

    /// Like [`Services::notify`], to `chat_id` when given (a requester's `user_chat_id`).
    pub(super) async fn try_notify(
        &self,
        chat: &GatedChatRecord,
        m: &MembershipRecord,
        chat_id: Option<i64>,
        text: TextKey,
        membership: Value,
        key: &str,
    ) -> ServiceResult<()> {
        let Some(bot) = self.store.get_bot(&chat.bot_id).await? else {
            return Ok(());
        };
        let target = match chat_id {
            Some(c) => Some(json!({"chat_id": c})),
            None => self.notice_target(chat, m).await?,
        };
        let Some(target) = target else { return Ok(()) };
        let mut vars = TextVars::new(&bot.username, &bot.first_name, &json!({}));
        let mut membership = membership;
        membership["access_url"] = json!(chat.access_url);
        vars.membership = membership;
        let body = self.reply_text(&bot, chat_id, text, None, vars).await?;
        let req: SendRequest =
            serde_json::from_value(json!({"bot_id": bot.id, "to": target, "text": body}))
                .map_err(|e| invalid("text", e.to_string()))?;
        let origin = Origin::Api {
            idempotency_key: Some(format!("rg:membership:{}:{key}", m.id)),
        };
        self.accept_message(&chat.tenant_id, req, origin).await?;
        Ok(())
    }

    async fn notice_target(
        &self,
        chat: &GatedChatRecord,
        m: &MembershipRecord,
    ) -> ServiceResult<Option<Value>> {
        if let Some(external) = &m.external_id {
            let links = self
                .store
                .list_links(
                    &LinkFilter {
                        tenant_id: Some(chat.tenant_id.clone()),
                        external_id: Some(external.clone()),
                        bot_id: Some(chat.bot_id.clone()),
                        active: Some(true),
                        ..LinkFilter::default()
                    },
                    &Page::first(20),
                )
                .await?;
            if let Some(l) = links.items.iter().find(|l| l.chat_id > 0) {
                return Ok(Some(json!({"link_id": l.id})));
            }
        }
        if let Some(user) = m.telegram_user_id
            && let Some(c) = self.store.get_chat(&chat.bot_id, user).await?
            && c.state == crate::store::ChatState::Active
        {
            return Ok(Some(json!({"chat_id": user})));
        }
        Ok(None)
    }
}

fn refused(detail: &str) -> ServiceError {
    ServiceError::Refused {
        type_uri: crate::http::problem::types::ENTITLEMENT_ENDED,
        title: "The entitlement cannot change this way",
        detail: detail.to_string(),
    }
}

/// The needed rights a `getChatMember` answer for the bot lacks.
pub fn missing_from(me: &Value) -> Vec<&'static str> {
    if me["status"] != "administrator" {
        return NEEDED_RIGHTS.iter().map(|(r, _)| *r).collect();
    }
    NEEDED_RIGHTS
        .iter()
        .filter(|(r, _)| me[*r] != true)
        .map(|(r, _)| *r)
        .collect()
}

/// A sentence saying which rights are missing and why each is needed.
pub fn missing_explained(missing: &[&str]) -> String {
    let why: Vec<String> = NEEDED_RIGHTS
        .iter()
        .filter(|(r, _)| missing.contains(r))
        .map(|(r, w)| format!("{r} ({w})"))
        .collect();
    format!("make the bot an administrator with {}", why.join(" and "))
}

fn sorted(mut reminders: Vec<i64>) -> Vec<i64> {
    reminders.sort_unstable_by(|a, b| b.cmp(a));
    reminders.dedup();
    reminders
}

pub(super) fn validate_settings(i: &GatedChatInput) -> ServiceResult<()> {
    if let Some(n) = &i.name
        && (n.trim().is_empty() || n.chars().count() > 128)
    {
        return Err(invalid("name", "must be 1 to 128 characters"));
    }
    check_numbers(
        i.grace_seconds,
        i.unentitled_grace_seconds,
        &i.reminders,
        i.access_url.as_deref(),
    )
}

fn validate_record(g: &GatedChatRecord) -> ServiceResult<()> {
    if g.name.trim().is_empty() || g.name.chars().count() > 128 {
        return Err(invalid("name", "must be 1 to 128 characters"));
    }
    check_numbers(
        g.grace_seconds,
        g.unentitled_grace_seconds,
        &g.reminders,
        g.access_url.as_deref(),
    )
}

fn check_numbers(
    grace: i64,
    unentitled: i64,
    reminders: &[i64],
    url: Option<&str>,
) -> ServiceResult<()> {
    const YEAR: i64 = 366 * 86_400;
    if !(0..=YEAR).contains(&grace) {
        return Err(invalid("grace_seconds", "must be 0 to 31622400 (366 days)"));
    }
    if !(0..=YEAR).contains(&unentitled) {
        return Err(invalid(
            "unentitled_grace_seconds",
            "must be 0 to 31622400 (366 days)",
        ));
    }
    if reminders.len() > 5 {
        return Err(invalid("reminders", "at most 5 reminders"));
    }
    if let Some(u) = url
        && !(u.starts_with("https://") || u.starts_with("http://") || u.starts_with("tg://"))
    {
        return Err(invalid("access_url", "must be an http(s) or tg:// URL"));
    }
    Ok(())
}

/// A time for people: `2026-12-31 09:00 UTC`.
pub fn human_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// `access_until` as the API says it: null for none, `"forever"`, else RFC 3339.
pub fn access_time(until: i64) -> Value {
    match until {
        0 => Value::Null,
        crate::store::FOREVER => json!("forever"),
        t => json!(rfc3339(t)),
    }
}

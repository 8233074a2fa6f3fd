//! The sweep: what makes paid access exact after downtime or a missed update. Every second
//! it settles finished member jobs, brings changed entitlements' memberships in line, says
//! `entitlement.expired`, sends due reminders and queues due removals; at start and every
//! few minutes it also checks each chat's bot rights and re-checks members with
//! `getChatMember`. Everything it reads is in the store, so a crash loses nothing; each
//! step changes a membership once per state, so running it twice repeats nothing.

use std::time::Duration;

use serde_json::{Value, json};

use super::service::{missing_explained, missing_from};
use crate::services::{Principal, ServiceResult, Services};
use crate::shutdown::Shutdown;
use crate::store::{
    FinishedJob, GateStatus, GatedChatRecord, MemberAction, MembershipRecord, MembershipState,
    TextKey,
};

/// Rows each step takes per round.
const BATCH: i64 = 500;
/// How often chats' rights and members are re-checked with Telegram (clock time).
pub const RECHECK_EVERY_MS: i64 = 5 * 60 * 1000;
/// A member is re-checked at most this often.
const MEMBER_RECHECK_MS: i64 = 60 * 60 * 1000;
/// Members re-checked per chat per round (getChatMember calls).
const RECHECKS_PER_CHAT: i64 = 50;
/// A removal Telegram refused is tried again after this.
const REMOVAL_RETRY_MS: i64 = 5 * 60 * 1000;

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Swept {
    /// Member jobs settled.
    pub jobs_settled: usize,
    /// Entitlements whose memberships were brought in line.
    pub synced: usize,
    /// `entitlement.expired` said.
    pub expired: usize,
    /// Reminders queued.
    pub reminded: usize,
    /// Removals (and declines, link revocations) queued.
    pub removals_queued: usize,
    /// Members re-checked with Telegram.
    pub rechecked: usize,
}

/// Runs the sweep until shutdown.
pub async fn run(services: Services, mut shutdown: Shutdown) {
    let mut last_recheck: Option<i64> = None;
    loop {
        if *shutdown.borrow() {
            break;
        }
        let now = services.clock.now_millis();
        let recheck = last_recheck.is_none_or(|t| now - t >= RECHECK_EVERY_MS);
        match services.sweep(recheck).await {
            Ok(s) if s != Swept::default() => tracing::debug!(?s, "membership sweep"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "membership sweep failed"),
        }
        if recheck {
            last_recheck = Some(now);
        }
        let clock = services.clock.clone();
        tokio::select! {
            _ = super::wakeup::woken() => {}
            _ = shutdown.changed() => {}
            _ = clock.sleep_until(now + 1000, Duration::from_secs(1)) => {}
        }
    }
}

impl Services {
    /// One round of the sweep (with `recheck`, the Telegram checks too).
    pub async fn sweep(&self, recheck: bool) -> ServiceResult<Swept> {
        let mut s = Swept {
            jobs_settled: self.settle_jobs().await?,
            ..Swept::default()
        };
        for e in self.store.unsynced_entitlements(BATCH).await? {
            self.sync_entitlement(&e).await?;
            s.synced += 1;
        }
        let now = self.clock.now_millis();
        for e in self.store.expired_unsaid(now, BATCH).await? {
            let event = crate::events::new_event(
                &e.tenant_id,
                "entitlement.expired",
                &json!({"entitlement_id": e.id, "external_id": e.external_id,
                    "telegram_user_id": e.telegram_user_id, "gated_chat_ids": e.gated_chat_ids,
                    "ends_at": e.ends_at.map(crate::ids::rfc3339)}),
            );
            if self.store.mark_expired(&e.id, now, &event).await? {
                crate::events::notify(1);
                s.expired += 1;
            }
        }
        for m in self.store.due_reminders(now, BATCH).await? {
            if self.remind(m).await? {
                s.reminded += 1;
            }
        }
        for m in self.store.due_removals(now, BATCH).await? {
            if self.remove_due(m).await? {
                s.removals_queued += 1;
            }
        }
        if recheck {
            for chat in self.store.all_gated_chats().await? {
                match self.recheck_chat(chat).await {
                    Ok(n) => s.rechecked += n,
                    Err(e) => tracing::warn!(error = %e, "gated chat re-check failed"),
                }
            }
        }
        Ok(s)
    }

    /// `POST /v1/gated-chats/{id}/sync`: the bot's rights, every holder of an entitlement
    /// for the chat brought in line, and its members re-checked with Telegram, now.
    pub async fn sync_gated_chat(&self, principal: &Principal, id: &str) -> ServiceResult<Swept> {
        let chat = self.gated_chat(principal, id).await?;
        self.store.mark_chat_unsynced(&chat.id).await?;
        let mut s = self.sweep(false).await?;
        let chat = self.gated_chat(principal, id).await?;
        s.rechecked = self.recheck_chat(chat).await?;
        let again = self.sweep(false).await?;
        s.removals_queued += again.removals_queued;
        s.jobs_settled += again.jobs_settled;
        Ok(s)
    }

    /// Settles the memberships whose member job finished: the state the job was for, or
    /// Telegram's refusal recorded.
    async fn settle_jobs(&self) -> ServiceResult<usize> {
        let finished = self.store.finished_jobs(BATCH).await?;
        let n = finished.len();
        for f in finished {
            self.settle(f).await?;
        }
        Ok(n)
    }

    async fn settle(&self, f: FinishedJob) -> ServiceResult<()> {
        let FinishedJob {
            membership: mut m,
            status,
            error,
        } = f;
        let Some(chat) = self.store.get_gated_chat(None, &m.gated_chat_id).await? else {
            return Ok(());
        };
        let now = self.clock.now_millis();
        let done = status == "sent";
        let action = m.job_action;
        m.job_id = None;
        m.job_action = None;
        m.last_error = if done { None } else { error.clone() };
        m.updated_at = now;
        let mut event = None;
        match action {
            Some(MemberAction::Approve) if done => {
                if m.state != MembershipState::Member {
                    m.state = MembershipState::Member;
                    m.joined_at = Some(now);
                }
                event = Some("membership.approved");
            }
            Some(MemberAction::Approve) => m.state = MembershipState::Requested,
            Some(MemberAction::Decline) => {
                m.state = MembershipState::Declined;
                event = done.then_some("membership.declined");
            }
            Some(MemberAction::Remove) if done => {
                m.state = MembershipState::Removed;
                m.left_at = Some(now);
                m.remove_at = None;
                m.unentitled = false;
                event = Some("membership.removed");
            }
            Some(MemberAction::Remove) => {
                // Refused (rights lost, …): still in; tried again later, and the re-check
                // marks the chat degraded if the bot lost its rights.
                m.state = MembershipState::Member;
                m.remove_at = Some(now + REMOVAL_RETRY_MS);
                tracing::warn!(membership_id = %m.id, error = ?error, "removal refused by Telegram");
            }
            Some(MemberAction::RevokeLink) | None => {}
        }
        let events: Vec<_> = event
            .map(|kind| self.membership_event(&chat, &m, kind))
            .into_iter()
            .collect();
        self.save_membership(&chat, &m, None, &events).await?;
        if event == Some("membership.removed") {
            let vars = json!({"gated_chat": {"name": chat.name}, "ends_at": m.ends_at.map(super::sync::human_time)});
            self.notify(
                &chat,
                &m,
                TextKey::MembershipRemoved,
                vars,
                &format!("removed:{now}"),
            )
            .await;
        }
        if action == Some(MemberAction::RevokeLink) && m.state == MembershipState::Invited {
            // Their link was used by someone else: a new one, if they may still be in.
            if let Err(e) = self
                .sync_holder(&chat, m.external_id.as_deref(), m.telegram_user_id)
                .await
            {
                tracing::warn!(error = %e, "no new personal link yet");
            }
        }
        Ok(())
    }

    /// Sends a due reminder (once per end and reminder) and plans the next.
    async fn remind(&self, mut m: MembershipRecord) -> ServiceResult<bool> {
        let Some(chat) = self.store.get_gated_chat(None, &m.gated_chat_id).await? else {
            return Ok(false);
        };
        let now = self.clock.now_millis();
        let live = matches!(m.state, MembershipState::Member | MembershipState::Invited);
        let sent = m.reminders_sent;
        m.reminders_sent += 1;
        m.next_reminder_at =
            super::access::next_reminder(m.ends_at, &chat.reminders, m.reminders_sent);
        m.updated_at = now;
        let due = live && m.ends_at.is_some_and(|end| end > now);
        let events: Vec<_> = due
            .then(|| self.membership_event(&chat, &m, "membership.expiring"))
            .into_iter()
            .collect();
        self.save_membership(&chat, &m, None, &events).await?;
        if !due {
            return Ok(false);
        }
        let vars = Self::end_vars(&chat, &m);
        let key = format!("reminder:{}:{sent}", m.ends_at.unwrap_or_default());
        self.notify(&chat, &m, TextKey::MembershipReminder, vars, &key)
            .await;
        Ok(true)
    }

    /// A membership whose access ended (checked again now): removed from the chat, its
    /// link revoked, or its request declined.
    async fn remove_due(&self, mut m: MembershipRecord) -> ServiceResult<bool> {
        let Some(chat) = self.store.get_gated_chat(None, &m.gated_chat_id).await? else {
            return Ok(false);
        };
        let now = self.clock.now_millis();
        // The ledger is the truth: an extension since `remove_at` was set keeps them in.
        let acc = self
            .holder_access(&chat, m.external_id.as_deref(), m.telegram_user_id)
            .await?;
        if acc.allows(now) && !m.unentitled {
            self.apply_access(&chat, &mut m, acc, now);
            m.updated_at = now;
            self.save_membership(&chat, &m, None, &[]).await?;
            return Ok(false);
        }
        let job = match (m.state, m.telegram_user_id) {
            (MembershipState::Member, Some(user)) => {
                let job = self.member_job(&chat, &mut m, MemberAction::Remove, user, vec![]);
                m.state = MembershipState::Removing;
                Some(job)
            }
            (MembershipState::Requested, Some(user)) => {
                let job = self.member_job(&chat, &mut m, MemberAction::Decline, user, vec![]);
                m.state = MembershipState::Declined;
                Some(job)
            }
            (MembershipState::Invited, user) => {
                // Never came in: the link ends, nobody to remove.
                let links: Vec<String> = m.invite_link.take().into_iter().collect();
                m.state = MembershipState::Removed;
                m.left_at = Some(now);
                match (links.is_empty(), user) {
                    (false, Some(u)) => {
                        Some(self.member_job(&chat, &mut m, MemberAction::RevokeLink, u, links))
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        m.remove_at = None;
        m.updated_at = now;
        self.save_membership(&chat, &m, job.as_ref(), &[]).await?;
        Ok(job.is_some())
    }

    /// Checks the bot's rights in a chat (degraded or enforced) and re-checks the members
    /// relaygram knows of with `getChatMember`; answers pending requests of an enforced
    /// chat. Returns how many members were re-checked.
    async fn recheck_chat(&self, chat: GatedChatRecord) -> ServiceResult<usize> {
        let Some(bot) = self.store.get_bot(&chat.bot_id).await? else {
            return Ok(0);
        };
        let token = self.token_of(&bot)?;
        let now = self.clock.now_millis();
        if chat.status_reason.as_deref() != Some(super::service::BASIC_GROUP) {
            let me: Result<Value, _> = self
                .telegram
                .call(
                    &token,
                    "getChatMember",
                    &json!({"chat_id": chat.chat_id, "user_id": bot.telegram_id}),
                )
                .await;
            let reason = match &me {
                Ok(me) => {
                    let missing = missing_from(me);
                    (!missing.is_empty()).then(|| missing_explained(&missing))
                }
                Err(e) if e.class() == "chat_gone" => Some(format!(
                    "the bot cannot reach the chat: {}",
                    e.description()
                )),
                // Telegram unreachable: no change.
                Err(_) => chat.status_reason.clone(),
            };
            self.set_gate_status(chat.clone(), reason).await?;
        }
        let Some(chat) = self.store.get_gated_chat(None, &chat.id).await? else {
            return Ok(0);
        };
        if chat.status != GateStatus::Active {
            return Ok(0);
        }
        let mut n = 0;
        for mut m in self
            .store
            .members_to_check(&chat.id, now - MEMBER_RECHECK_MS, RECHECKS_PER_CHAT)
            .await?
        {
            let Some(user) = m.telegram_user_id else {
                continue;
            };
            if m.state == MembershipState::Requested {
                // Left pending while degraded: answered now.
                self.sync_holder(&chat, m.external_id.as_deref(), Some(user))
                    .await?;
                continue;
            }
            let member: Value = match self
                .telegram
                .call(
                    &token,
                    "getChatMember",
                    &json!({"chat_id": chat.chat_id, "user_id": user}),
                )
                .await
            {
                Ok(v) => v,
                Err(e) => {
                    tracing::debug!(error = %e, "getChatMember failed");
                    continue;
                }
            };
            n += 1;
            let inside = matches!(
                member["status"].as_str(),
                Some("creator" | "administrator" | "member")
            ) || (member["status"] == "restricted" && member["is_member"] == true);
            m.checked_at = Some(now);
            m.updated_at = now;
            match (m.state, inside) {
                (MembershipState::Member, false) => {
                    m.state = MembershipState::Left;
                    m.left_at = Some(now);
                    m.remove_at = None;
                    let event = self.membership_event(&chat, &m, "membership.left");
                    self.save_membership(&chat, &m, None, &[event]).await?;
                }
                (MembershipState::Invited, true) => {
                    m.state = MembershipState::Member;
                    m.joined_at = Some(now);
                    let acc = self
                        .holder_access(&chat, m.external_id.as_deref(), Some(user))
                        .await?;
                    m.unentitled = !acc.allows(now);
                    self.apply_access(&chat, &mut m, acc, now);
                    let event = self.membership_event(&chat, &m, "membership.joined");
                    self.save_membership(&chat, &m, None, &[event]).await?;
                }
                _ => self.save_membership(&chat, &m, None, &[]).await?,
            }
        }
        Ok(n)
    }
}

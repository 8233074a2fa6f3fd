//! The gate: what a gated chat's updates mean. A join request is approved only for a
//! requester with access (matched by Telegram user id, or through their personal link),
//! declined otherwise with a word on how to get access; a join without access is noted
//! (and removed after the chat's grace when it says so); a member leaving is noted; the
//! bot's own rights decide whether the chat is enforced (`degraded` when not).
//!
//! Each handler changes a membership at most once per state, so an update processed again
//! queues nothing twice.

use serde_json::{Value, json};

use super::service::{missing_explained, missing_from};
use super::sync::human_time;
use crate::services::{ServiceResult, Services};
use crate::store::{
    BotRecord, GateStatus, GatedChatRecord, JoinMode, MemberAction, MembershipRecord,
    MembershipState, TextKey,
};

/// Whether a `ChatMember` status is someone in the chat.
fn is_in(member: &Value) -> bool {
    match member["status"].as_str() {
        Some("creator" | "administrator" | "member") => true,
        Some("restricted") => member["is_member"] == true,
        _ => false,
    }
}

impl Services {
    /// A `chat_join_request` in a gated chat; `None` when the chat is not gated.
    pub async fn gate_join_request(
        &self,
        bot: &BotRecord,
        r: &Value,
    ) -> ServiceResult<Option<String>> {
        let (Some(chat_id), Some(user)) = (r["chat"]["id"].as_i64(), r["from"]["id"].as_i64())
        else {
            return Ok(None);
        };
        let Some(chat) = self.store.gated_chat_of(&bot.id, chat_id).await? else {
            return Ok(None);
        };
        let now = self.clock.now_millis();
        let link = r["invite_link"]["invite_link"].as_str();
        // Whose personal link was used, if anyone's.
        let owner = match link {
            Some(l) => self.store.membership_by_link(&chat.id, l).await?,
            None => None,
        };
        let mut m = match self
            .store
            .find_membership(&chat.id, Some(user), None)
            .await?
        {
            Some(m) => m,
            // The first to use an app user's link whose Telegram user is not known is them.
            None => match owner.clone() {
                Some(o) if o.telegram_user_id.is_none() => MembershipRecord {
                    telegram_user_id: Some(user),
                    ..o
                },
                _ => self.new_membership(&chat, user, now),
            },
        };
        let someone_elses = owner.as_ref().filter(|o| o.id != m.id).cloned();
        if matches!(m.state, MembershipState::Member) || m.job_id.is_some() {
            return Ok(Some(format!("join request of {user}: already handled")));
        }
        let acc = self
            .holder_access(&chat, m.external_id.as_deref(), Some(user))
            .await?;
        self.apply_access(&chat, &mut m, acc, now);
        m.state = MembershipState::Requested;
        m.updated_at = now;
        if chat.status != GateStatus::Active {
            // Left pending: the sweep answers once the bot can.
            let event = self.membership_event(&chat, &m, "membership.requested");
            self.save_membership(&chat, &m, None, &[event]).await?;
            return Ok(Some(format!(
                "join request of {user} left pending: the gated chat is degraded"
            )));
        }
        let allowed = acc.allows(now);
        let action = if allowed {
            MemberAction::Approve
        } else {
            MemberAction::Decline
        };
        let job = self.member_job(&chat, &mut m, action, user, vec![]);
        if !allowed {
            m.state = MembershipState::Declined;
        }
        let event = self.membership_event(&chat, &m, "membership.requested");
        self.save_membership(&chat, &m, Some(&job), &[event])
            .await?;
        if let Some(o) = someone_elses {
            self.revoke_used_link(&chat, o, user).await?;
        }
        if !allowed && let Some(user_chat) = r["user_chat_id"].as_i64() {
            let vars = json!({"gated_chat": {"name": chat.name}});
            if let Err(e) = self
                .try_notify(
                    &chat,
                    &m,
                    Some(user_chat),
                    TextKey::JoinDeclined,
                    vars,
                    &format!("declined:{now}"),
                )
                .await
            {
                tracing::warn!(error = %e, "decline notice not queued");
            }
        }
        Ok(Some(format!(
            "join request of {user}: {}",
            if allowed {
                "approving (entitled)"
            } else {
                "declining (no access)"
            }
        )))
    }

    /// `stranger` used `owner`'s personal link: it is revoked (in the stranger's lane, after
    /// their own answer), and the next sweep gives the owner a new one when they may still
    /// be in.
    async fn revoke_used_link(
        &self,
        chat: &GatedChatRecord,
        mut owner: MembershipRecord,
        stranger: i64,
    ) -> ServiceResult<()> {
        if owner.job_id.is_some() {
            return Ok(());
        }
        let Some(link) = owner.invite_link.take() else {
            return Ok(());
        };
        let lane = stranger;
        let job = self.member_job(
            chat,
            &mut owner,
            MemberAction::RevokeLink,
            lane,
            vec![link.clone()],
        );
        owner.updated_at = self.clock.now_millis();
        self.save_membership(chat, &owner, Some(&job), &[]).await?;
        tracing::info!(membership_id = %owner.id, "a personal link used by someone else is revoked");
        Ok(())
    }

    fn new_membership(&self, chat: &GatedChatRecord, user: i64, now: i64) -> MembershipRecord {
        MembershipRecord {
            id: crate::ids::new_id("mem"),
            tenant_id: chat.tenant_id.clone(),
            gated_chat_id: chat.id.clone(),
            telegram_user_id: Some(user),
            external_id: None,
            state: MembershipState::Left,
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
        }
    }

    /// A `chat_member` update in a gated chat (someone joined, left or was removed);
    /// `None` when the chat is not gated or the update is about a bot.
    pub async fn gate_chat_member(
        &self,
        bot: &BotRecord,
        u: &Value,
    ) -> ServiceResult<Option<String>> {
        let Some(chat_id) = u["chat"]["id"].as_i64() else {
            return Ok(None);
        };
        let new = &u["new_chat_member"];
        let (Some(user), false) = (new["user"]["id"].as_i64(), new["user"]["is_bot"] == true)
        else {
            return Ok(None);
        };
        let Some(chat) = self.store.gated_chat_of(&bot.id, chat_id).await? else {
            return Ok(None);
        };
        let now = self.clock.now_millis();
        let was_in = is_in(&u["old_chat_member"]);
        let now_in = is_in(new);
        if now_in
            && chat.join_mode == JoinMode::StarsSubscription
            && let Some(until) = new["until_date"].as_i64()
        {
            // A paid Star subscription: Telegram's own entitlement, mirrored into the ledger
            // once per (user, period end), before the membership is read (the grant makes it).
            self.mirror_subscription(&chat, user, until * 1000).await?;
        }
        let link = u["invite_link"]["invite_link"].as_str();
        let mut m = match self
            .store
            .find_membership(&chat.id, Some(user), None)
            .await?
        {
            Some(m) => m,
            None => match link {
                Some(l) => match self.store.membership_by_link(&chat.id, l).await? {
                    Some(o) if o.telegram_user_id.is_none() => MembershipRecord {
                        telegram_user_id: Some(user),
                        ..o
                    },
                    _ => self.new_membership(&chat, user, now),
                },
                None => self.new_membership(&chat, user, now),
            },
        };
        match (was_in, now_in) {
            (false, true) => self.joined(&chat, &mut m, u, now).await,
            (true, false) => self.left(&chat, &mut m, now).await,
            _ => Ok(Some(format!("member {user}: no change of presence"))),
        }
    }

    async fn joined(
        &self,
        chat: &GatedChatRecord,
        m: &mut MembershipRecord,
        u: &Value,
        now: i64,
    ) -> ServiceResult<Option<String>> {
        let user = m.telegram_user_id.unwrap_or_default();
        if m.state == MembershipState::Member {
            return Ok(Some(format!("member {user}: already in")));
        }
        let acc = self
            .holder_access(chat, m.external_id.as_deref(), Some(user))
            .await?;
        m.unentitled = !acc.allows(now);
        m.state = MembershipState::Member;
        m.joined_at = Some(now);
        m.left_at = None;
        self.apply_access(chat, m, acc, now);
        m.updated_at = now;
        // A one-person invite link is revoked once used (Telegram's member_limit counts
        // current members, so it would let someone in after a leave).
        let used = u["invite_link"]["invite_link"].as_str().map(str::to_string);
        let mut job = None;
        let personal = used.is_some() && used == m.invite_link;
        if chat.join_mode == JoinMode::Invite && personal && m.job_id.is_none() {
            let link = m.invite_link.take().unwrap_or_default();
            job = Some(self.member_job(chat, m, MemberAction::RevokeLink, user, vec![link]));
        }
        let kind = if m.unentitled {
            "membership.unauthorized_join"
        } else {
            "membership.joined"
        };
        let event = self.membership_event(chat, m, kind);
        self.save_membership(chat, m, job.as_ref(), &[event])
            .await?;
        if m.unentitled {
            if let Some(l) = used.filter(|_| !personal)
                && let Some(owner) = self.store.membership_by_link(&chat.id, &l).await?
                && owner.id != m.id
            {
                self.revoke_used_link(chat, owner, user).await?;
            }
            return Ok(Some(format!(
                "{user} joined without access{}",
                if chat.remove_unentitled {
                    ": removed after the grace"
                } else {
                    ""
                }
            )));
        }
        Ok(Some(format!("{user} joined (entitled)")))
    }

    async fn left(
        &self,
        chat: &GatedChatRecord,
        m: &mut MembershipRecord,
        now: i64,
    ) -> ServiceResult<Option<String>> {
        let user = m.telegram_user_id.unwrap_or_default();
        if matches!(m.state, MembershipState::Removing) {
            // Our own removal: the job's outcome records it.
            return Ok(Some(format!("{user} left: relaygram's removal")));
        }
        if matches!(m.state, MembershipState::Left | MembershipState::Removed) {
            return Ok(Some(format!("{user} left: already out")));
        }
        m.state = MembershipState::Left;
        m.left_at = Some(now);
        m.remove_at = None;
        m.unentitled = false;
        m.updated_at = now;
        let event = self.membership_event(chat, m, "membership.left");
        self.save_membership(chat, m, None, &[event]).await?;
        Ok(Some(format!("{user} left")))
    }

    async fn mirror_subscription(
        &self,
        chat: &GatedChatRecord,
        user: i64,
        until: i64,
    ) -> ServiceResult<()> {
        let input = super::ledger::GrantInput {
            external_id: None,
            telegram_user_id: Some(user),
            gated_chat_ids: vec![chat.id.clone()],
            starts_at: None,
            ends_at: Some(until),
            duration_ms: None,
            source: "telegram".into(),
            source_key: Some(format!("star_subscription:{}:{user}:{until}", chat.chat_id)),
            reason: Some("Star subscription".into()),
        };
        match self.grant_entitlement(&chat.tenant_id, input).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "Star subscription not mirrored");
                Ok(())
            }
        }
    }

    /// The bot's own membership changed in a gated chat: its rights decide whether the chat
    /// is enforced. `None` when the chat is not gated.
    pub async fn gate_my_chat_member(
        &self,
        bot: &BotRecord,
        u: &Value,
    ) -> ServiceResult<Option<String>> {
        let Some(chat_id) = u["chat"]["id"].as_i64() else {
            return Ok(None);
        };
        let Some(chat) = self.store.gated_chat_of(&bot.id, chat_id).await? else {
            return Ok(None);
        };
        let missing = missing_from(&u["new_chat_member"]);
        let reason = (!missing.is_empty()).then(|| missing_explained(&missing));
        Ok(Some(self.set_gate_status(chat, reason).await?))
    }

    /// Marks a gated chat enforced (`reason` none) or degraded, with its event when it
    /// changes.
    pub async fn set_gate_status(
        &self,
        mut chat: GatedChatRecord,
        reason: Option<String>,
    ) -> ServiceResult<String> {
        let status = if reason.is_some() {
            GateStatus::Degraded
        } else {
            GateStatus::Active
        };
        if chat.status == status && chat.status_reason == reason {
            return Ok(format!("gated chat {}: still {}", chat.id, status.as_str()));
        }
        chat.status = status;
        chat.status_reason = reason.clone();
        chat.updated_at = self.clock.now_millis();
        self.store.update_gated_chat(&chat).await?;
        let kind = match status {
            GateStatus::Degraded => "gated_chat.degraded",
            GateStatus::Active => "gated_chat.restored",
        };
        crate::events::emit(
            self.store.as_ref(),
            &chat.tenant_id,
            kind,
            json!({"gated_chat_id": chat.id, "chat_id": chat.chat_id, "status": status.as_str(), "reason": reason}),
        )
        .await?;
        if status == GateStatus::Active {
            // Catch up on what waited while degraded.
            self.store.mark_chat_unsynced(&chat.id).await?;
            super::wakeup::wake();
        }
        tracing::warn!(gated_chat_id = %chat.id, status = status.as_str(), "gated chat status changed");
        Ok(format!("gated chat {} is now {}", chat.id, status.as_str()))
    }

    /// A gated group became a supergroup: the gate follows it (and is enforced once the
    /// bot's rights there are confirmed).
    pub async fn gate_migrated(
        &self,
        bot: &BotRecord,
        from: i64,
        to: i64,
    ) -> ServiceResult<Option<String>> {
        let Some(mut chat) = self.store.gated_chat_of(&bot.id, from).await? else {
            return Ok(None);
        };
        chat.chat_id = to;
        chat.updated_at = self.clock.now_millis();
        self.store.update_gated_chat(&chat).await?;
        let missing = self
            .missing_rights(bot, to)
            .await
            .unwrap_or_else(|_| vec!["can_invite_users", "can_restrict_members"]);
        let reason = (!missing.is_empty()).then(|| missing_explained(&missing));
        self.set_gate_status(chat, reason).await?;
        Ok(Some(format!(
            "gated chat follows {from} to supergroup {to}"
        )))
    }

    /// The text of a reminder's end.
    pub(super) fn end_vars(chat: &GatedChatRecord, m: &MembershipRecord) -> Value {
        json!({"gated_chat": {"name": chat.name}, "ends_at": m.ends_at.map(human_time)})
    }
}

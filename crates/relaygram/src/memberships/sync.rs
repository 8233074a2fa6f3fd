//! Bringing a holder's membership in line with their access: a personal link when they may
//! be in and are not, an approval when they asked already, removal (by the sweep, at
//! `remove_at`) when access ended. Telegram's member calls that change someone's access
//! (approve, decline, remove, revoke a link) are outbox jobs, queued with the membership
//! state that asked for them.

use serde_json::{Value, json};

use super::access::{Access, access, next_reminder, reminders_past};
use crate::delivery::content::StoredContent;
use crate::delivery::job::{BotCall, BotMethod, JobContent};
use crate::ids::{new_id, rfc3339};
use crate::services::{ServiceError, ServiceResult, Services};
use crate::store::{
    EntitlementRecord, GateStatus, GatedChatRecord, JobKind, JoinMode, LinkFilter, MemberAction,
    MembershipRecord, MembershipState, NewJob, NewRequest, Page, TextKey,
};

impl Services {
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
                    self.save_membership(chat, &m, job.as_ref(), &[]).await?;
                    return Err(e);
                }
            }
        }
        m.updated_at = now;
        let invited = invite && m.invite_link.is_some();
        let events: Vec<_> = invited
            .then(|| self.membership_event(chat, &m, "membership.invited"))
            .into_iter()
            .collect();
        self.save_membership(chat, &m, job.as_ref(), &events)
            .await?;
        if invited {
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

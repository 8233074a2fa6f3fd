//! What the holder is told (their link, reminders, removal, a declined request) and what
//! the app hears (`membership.*` events).

use serde_json::{Value, json};

use super::sync::access_time;
use crate::delivery::{Origin, SendRequest};
use crate::services::{ServiceError, ServiceResult, Services};
use crate::store::{
    GatedChatRecord, LinkFilter, MembershipRecord, NewEvent, NewJob, Page, TextKey,
};
use crate::texts::TextVars;

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

impl Services {
    /// A `membership.*` event, stored with the membership's state in one transaction
    /// ([`crate::store::MembershipStore::save_membership`]).
    pub(super) fn membership_event(
        &self,
        chat: &GatedChatRecord,
        m: &MembershipRecord,
        kind: &str,
    ) -> NewEvent {
        crate::events::new_event(
            &chat.tenant_id,
            kind,
            &json!({"membership_id": m.id, "gated_chat_id": chat.id, "chat_id": chat.chat_id,
                "external_id": m.external_id, "telegram_user_id": m.telegram_user_id,
                "state": m.state.as_str(), "invite_link": m.invite_link,
                "access_until": access_time(m.access_until)}),
        )
    }

    /// Writes a membership with its job and events in one transaction, then wakes the
    /// senders (a job) and whoever waits for events.
    pub(super) async fn save_membership(
        &self,
        chat: &GatedChatRecord,
        m: &MembershipRecord,
        job: Option<&NewJob>,
        events: &[NewEvent],
    ) -> ServiceResult<()> {
        self.store.save_membership(m, job, events).await?;
        if job.is_some() {
            crate::delivery::sender::wake_bot(&chat.bot_id);
        }
        if !events.is_empty() {
            // The dispatcher looks at least once a second anyway; this is for long-polls.
            crate::events::notify(events.len());
        }
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

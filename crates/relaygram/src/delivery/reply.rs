//! The inbound router's replies: queued into the outbox by a fast path.
//!
//! A reply is one plain-text message (with at most relaygram's own buttons) to one chat of
//! a bot the router already holds, so none of [`Services::accept_message`]'s planning
//! applies: no bot lookup, templates, targets, throttle or broadcast, and no answer to
//! store after the commit (it is known before and stored with the key). What is left is
//! one item of a group commit in the store ([`crate::store::ReplyStore`]), so the replies
//! of concurrent processors commit together.

use super::content::{OwnButtons, render_content};
use super::request::{ButtonSpec, parse_mode};
use super::service::{Accepted, AcceptedMessage};
use crate::ids::new_id;
use crate::services::{ServiceResult, Services};
use crate::store::NewReply;
use crate::templates::Content;

/// One reply of the router.
#[derive(Debug, Clone)]
pub struct Reply<'a> {
    /// The tenant of the bot.
    pub tenant_id: &'a str,
    /// The bot the update came to (and that replies).
    pub bot_id: &'a str,
    /// The chat to reply in.
    pub chat_id: i64,
    /// Plain text, shown exactly as written.
    pub text: &'a str,
    /// Rows of buttons (relaygram's own `rg:` data, sent as is).
    pub buttons: &'a [Vec<ButtonSpec>],
    /// Telegram's id of the update replied to.
    pub update_id: i64,
    /// Which reply of the update (0, 1, …).
    pub seq: u32,
}

impl Services {
    /// Queues a reply in the outbox, at most once per `reply:{bot}:{update}:{seq}`: a
    /// reply queued by an earlier run of the update stores nothing (even when the text
    /// differs now). Returns the reply's message id, or `None` when an earlier run stored
    /// it and its answer was lost. The sender is woken.
    pub async fn queue_reply(&self, reply: Reply<'_>) -> ServiceResult<Option<String>> {
        let content = Content {
            source: reply.text,
            parse_mode: parse_mode(None)?,
            buttons: reply.buttons,
            data: None,
            templated: false,
        };
        let (content, callbacks) =
            render_content(&content, None, None, false, OwnButtons::Allowed)?;
        let now = self.clock.now_millis();
        let request_id = new_id("req");
        let message_id = new_id("msg");
        let answer = Accepted {
            request_id: request_id.clone(),
            status: "queued".into(),
            count: 1,
            messages: vec![AcceptedMessage {
                id: message_id.clone(),
                bot_id: reply.bot_id.to_string(),
                chat_id: reply.chat_id,
                link_id: None,
            }],
            broadcast_id: None,
            digest_ids: vec![],
        };
        let new = NewReply {
            request_id,
            message_id: message_id.clone(),
            tenant_id: reply.tenant_id.to_string(),
            bot_id: reply.bot_id.to_string(),
            chat_id: reply.chat_id,
            key: format!("reply:{}:{}:{}", reply.bot_id, reply.update_id, reply.seq),
            content: serde_json::to_string(&content).unwrap_or_default(),
            callbacks,
            response: serde_json::to_string(&answer).unwrap_or_default(),
            now,
        };
        let id = match self.store.queue_reply(&new).await? {
            None => {
                metrics::counter!("relaygram_messages_accepted_total", "status" => "queued")
                    .increment(1);
                Some(message_id)
            }
            // Stored by an earlier run: sent or on its way (its answer may be empty after
            // a crash between an API acceptance's commit and its answer).
            Some(first) => serde_json::from_str::<Accepted>(&first)
                .ok()
                .and_then(|a| a.messages.into_iter().next().map(|m| m.id)),
        };
        super::sender::wake();
        Ok(id)
    }
}

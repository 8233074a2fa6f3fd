//! The inbound router's replies: queued into the outbox by a fast path.
//!
//! A reply is one plain-text message (with at most relaygram's own buttons) to one chat of
//! a bot the router already holds, so none of [`Services::accept_message`]'s planning
//! applies: no bot lookup, templates, targets, throttle or broadcast, and no answer to
//! store for a replay. What is left is rendering it here; the store writes it with the
//! update's outcome, in one transaction with the outcomes of the other updates finishing at
//! the same time.

use super::content::{OwnButtons, render_content};
use super::request::{ButtonSpec, parse_mode};
use crate::ids::{derived_id, new_id};
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
    /// When that update was stored (UTC ms): with its id, names the stored update (Telegram
    /// reuses ids after a week of silence).
    pub received_at: i64,
    /// Which reply of the update (0, 1, …).
    pub seq: u32,
}

impl Services {
    /// Prepares a reply for the outbox, stored with the outcome of the update that made it
    /// ([`crate::store::InboundStore::finish_update`]) at most once per origin
    /// `reply:{bot}:{update}:{received_at}:{seq}`: a reply stored by an earlier run of the
    /// update is not stored again (even when the text differs now).
    pub fn prepare_reply(&self, reply: Reply<'_>) -> ServiceResult<NewReply> {
        let content = Content {
            source: reply.text,
            parse_mode: parse_mode(None)?,
            buttons: reply.buttons,
            data: None,
            templated: false,
        };
        let (content, callbacks) =
            render_content(&content, None, None, false, OwnButtons::Allowed)?;
        let origin = format!(
            "reply:{}:{}:{}:{}",
            reply.bot_id, reply.update_id, reply.received_at, reply.seq
        );
        Ok(NewReply {
            request_id: new_id("req"),
            // Named by its origin, so a second run of the update names (in its outcome) the
            // message the first run stored; the request id stays new, which is how the
            // store tells a request stored now from one an earlier run stored.
            message_id: derived_id("msg", reply.received_at, &origin),
            tenant_id: reply.tenant_id.to_string(),
            bot_id: reply.bot_id.to_string(),
            chat_id: reply.chat_id,
            origin,
            content: serde_json::to_string(&content).unwrap_or_default(),
            callbacks,
            now: self.clock.now_millis(),
        })
    }
}

//! Handing a run's message to delivery.
//!
//! The scheduler decides *when*; delivery decides *how* a message reaches Telegram. The
//! [`Handoff`] trait is the seam between them. [`DirectSend`] is a stand-in used until
//! the delivery engine (the outbox) is in this build: it sends a plain text message with
//! `sendMessage` at once. Because a direct send cannot be repeated safely (Telegram may
//! have received it before a crash), it says so (`idempotent() == false`), and a run
//! interrupted mid hand-off ends `unknown` instead of being sent again.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::services::{ServiceError, ServiceResult, Services};

/// Which occurrence a message comes from: delivery de-duplicates on it, so a repeated
/// hand-off of the same run cannot send twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The schedule.
    pub schedule_id: String,
    /// The occurrence (UTC ms).
    pub occurrence_ms: i64,
    /// The run.
    pub run_id: String,
}

/// What delivery made of a run's message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handed {
    /// Message ids.
    pub message_ids: Vec<String>,
    /// The broadcast, for a large fan-out.
    pub broadcast_id: Option<String>,
}

/// The seam to delivery.
#[async_trait]
pub trait Handoff: Send + Sync + fmt::Debug {
    /// Whether `submit` may be repeated for one origin without sending twice.
    fn idempotent(&self) -> bool;
    /// Checks a message body as `POST /v1/messages` would (errors name the field under
    /// `message.`).
    async fn validate(
        &self,
        services: &Services,
        tenant_id: &str,
        message: &Value,
    ) -> ServiceResult<()>;
    /// Hands the message over. A [`ServiceError::Store`] error is taken as passing: the
    /// run stays claimed and is tried again when its lease ends (idempotent hand-offs
    /// only); any other error fails the run.
    async fn submit(
        &self,
        services: &Services,
        tenant_id: &str,
        message: &Value,
        origin: &Origin,
    ) -> ServiceResult<Handed>;
}

/// The hand-off this build uses.
pub fn default_handoff() -> Arc<dyn Handoff> {
    Arc::new(DirectSend)
}

/// Stand-in until the delivery engine lands: `{"bot_id", "to": {"chat_id"}, "text",
/// "parse_mode"?, "silent"?}` sent at once with `sendMessage`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectSend;

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

struct Plain<'a> {
    bot_id: &'a str,
    chat_id: i64,
    text: &'a str,
    parse_mode: Option<&'a str>,
    silent: bool,
}

fn plain(message: &Value) -> ServiceResult<Plain<'_>> {
    let object = message
        .as_object()
        .ok_or_else(|| invalid("message", "must be a JSON object"))?;
    for key in object.keys() {
        if !matches!(
            key.as_str(),
            "bot_id" | "to" | "text" | "parse_mode" | "silent"
        ) {
            return Err(invalid(
                "message",
                format!(
                    "{key:?} is not supported by this build's scheduler (bot_id, to.chat_id, text, parse_mode, silent are)"
                ),
            ));
        }
    }
    let bot_id = object
        .get("bot_id")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("message.bot_id", "is required"))?;
    let chat_id = object
        .get("to")
        .and_then(|to| to.get("chat_id"))
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid("message.to", "must be {\"chat_id\": <integer>}"))?;
    let text = object
        .get("text")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty() && t.chars().count() <= 4096)
        .ok_or_else(|| invalid("message.text", "must be 1 to 4096 characters"))?;
    let parse_mode = match object.get("parse_mode") {
        None | Some(Value::Null) => None,
        Some(Value::String(mode)) if matches!(mode.as_str(), "HTML" | "MarkdownV2") => {
            Some(mode.as_str())
        }
        Some(_) => return Err(invalid("message.parse_mode", "must be HTML or MarkdownV2")),
    };
    let silent = match object.get("silent") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("message.silent", "must be true or false")),
    };
    Ok(Plain {
        bot_id,
        chat_id,
        text,
        parse_mode,
        silent,
    })
}

async fn tenant_bot(
    services: &Services,
    tenant_id: &str,
    bot_id: &str,
) -> ServiceResult<crate::store::BotRecord> {
    services
        .store
        .get_bot(bot_id)
        .await?
        .filter(|b| b.tenant_id == tenant_id)
        .ok_or_else(|| invalid("message.bot_id", format!("no bot {bot_id} in this tenant")))
}

#[async_trait]
impl Handoff for DirectSend {
    fn idempotent(&self) -> bool {
        false
    }

    async fn validate(
        &self,
        services: &Services,
        tenant_id: &str,
        message: &Value,
    ) -> ServiceResult<()> {
        let p = plain(message)?;
        tenant_bot(services, tenant_id, p.bot_id).await?;
        Ok(())
    }

    async fn submit(
        &self,
        services: &Services,
        tenant_id: &str,
        message: &Value,
        _origin: &Origin,
    ) -> ServiceResult<Handed> {
        let p = plain(message)?;
        let bot = tenant_bot(services, tenant_id, p.bot_id).await?;
        if !bot.enabled {
            return Err(invalid(
                "message.bot_id",
                format!("bot {} is disabled", bot.id),
            ));
        }
        let token = services.token_of(&bot)?;
        let mut params = json!({"chat_id": p.chat_id, "text": p.text});
        if let Some(mode) = p.parse_mode {
            params["parse_mode"] = json!(mode);
        }
        if p.silent {
            params["disable_notification"] = json!(true);
        }
        let sent: Value = services
            .telegram
            .call(&token, "sendMessage", &params)
            .await?;
        let message_id = sent.get("message_id").and_then(Value::as_i64).unwrap_or(0);
        Ok(Handed {
            message_ids: vec![format!("tg:{}:{message_id}", p.chat_id)],
            broadcast_id: None,
        })
    }
}

//! Taking updates in: check the caller, store the update once, wake the processor. Nothing
//! else happens before Telegram gets its answer, so intake stays fast and a crash after the
//! answer loses nothing.

use std::sync::LazyLock;

use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::sync::Notify;

use super::update::{UpdateError, UpdateSummary};
use crate::crypto::ct_eq;
use crate::services::Services;
use crate::store::{BotMode, BotRecord, StoreError, UpdateRecord};

/// Wakes processors in this process when an update was stored (others poll the store).
pub static STORED: LazyLock<Notify> = LazyLock::new(Notify::new);

/// Why an update was not taken.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// No such bot, or it is disabled or not in webhook mode.
    #[error("no such bot")]
    UnknownBot,
    /// The secret header is missing or wrong.
    #[error("missing or wrong secret token")]
    BadSecret,
    /// The body is not an update.
    #[error("{0}")]
    Malformed(String),
    /// Storage failed: Telegram should retry.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored webhook secret cannot be opened (wrong secret key).
    #[error("cannot open the bot's webhook secret")]
    Secret,
}

/// Whether the update was new or a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored now; it will be processed.
    New,
    /// Already stored: acknowledged, not processed again.
    Replay,
}

/// Accepts one webhook delivery for `bot_id`.
pub async fn accept_webhook(
    services: &Services,
    bot_id: &str,
    secret: Option<&str>,
    body: &[u8],
) -> Result<Stored, IntakeError> {
    let bot = services
        .store
        .get_bot(bot_id)
        .await?
        .filter(|b| b.enabled && b.mode == BotMode::Webhook)
        .ok_or(IntakeError::UnknownBot)?;
    let expected = bot
        .webhook_secret_sealed
        .as_deref()
        .ok_or(IntakeError::UnknownBot)?;
    let expected = services
        .secrets
        .open_cached(expected)
        .map_err(|_| IntakeError::Secret)?;
    match secret {
        Some(s) if ct_eq(s, expected.expose_secret()) => {}
        _ => return Err(IntakeError::BadSecret),
    }
    let update: Value = serde_json::from_slice(body)
        .map_err(|e| IntakeError::Malformed(format!("the body is not JSON: {e}")))?;
    store_update(services, &bot, &update, body_text(body, &update)).await
}

fn body_text(body: &[u8], update: &Value) -> String {
    match std::str::from_utf8(body) {
        Ok(s) => s.to_string(),
        Err(_) => update.to_string(),
    }
}

/// Stores one update of `bot` (from a webhook or `getUpdates`).
pub async fn store_update(
    services: &Services,
    bot: &BotRecord,
    update: &Value,
    raw: String,
) -> Result<Stored, IntakeError> {
    let summary = UpdateSummary::read(update).map_err(|e| match e {
        UpdateError::NotAnObject | UpdateError::MissingId => IntakeError::Malformed(e.to_string()),
    })?;
    let record = UpdateRecord {
        bot_id: bot.id.clone(),
        update_id: summary.update_id,
        kind: summary.kind,
        chat_id: summary.chat_id,
        user_id: summary.user_id,
        body: raw,
        status: crate::store::UpdateStatus::Pending,
        outcome: None,
        error: None,
        received_at: crate::ids::now_millis(),
        processed_at: None,
        handling_ms: None,
    };
    let new = services.store.insert_update(record).await?;
    metrics::counter!(
        "relaygram_updates_received_total",
        "outcome" => if new { "new" } else { "replay" }
    )
    .increment(1);
    if new {
        STORED.notify_waiters();
        Ok(Stored::New)
    } else {
        Ok(Stored::Replay)
    }
}

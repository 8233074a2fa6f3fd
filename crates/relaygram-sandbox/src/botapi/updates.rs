//! getUpdates: long polling, with Telegram's offset confirmation and its 409 conflicts.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::Shared;
use crate::params::Params;
use crate::reply::ApiError;

const WEBHOOK_ACTIVE: &str = "can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first";
const SUPERSEDED: &str =
    "terminated by other getUpdates request; make sure that only one bot instance is running";
/// Telegram caps the long-poll timeout.
const MAX_TIMEOUT: i64 = 50;

pub async fn get_updates(
    shared: &Arc<Shared>,
    bot_id: i64,
    params: &Params,
) -> Result<Value, ApiError> {
    let offset = params.i64("offset")?;
    let limit = params.i64("limit")?.unwrap_or(100).clamp(1, 100) as usize;
    let timeout = params.i64("timeout")?.unwrap_or(0).clamp(0, MAX_TIMEOUT);
    let allowed = params.json("allowed_updates", "allowed updates")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout as u64);

    let generation = {
        let mut w = shared.world();
        let bot = w.bots.get_mut(&bot_id).expect("caller checked the bot");
        if bot.webhook.is_some() {
            return Err(ApiError::conflict(WEBHOOK_ACTIVE));
        }
        if let Some(Value::Array(items)) = allowed {
            bot.allowed_updates = Some(
                items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
            );
        }
        match offset {
            Some(o) if o > 0 => bot.updates.retain(|u| u.update_id >= o),
            Some(o) if o < 0 => {
                let keep = o.unsigned_abs() as usize;
                while bot.updates.len() > keep {
                    bot.updates.pop_front();
                }
            }
            _ => {}
        }
        bot.poll_generation += 1;
        bot.poll_notify.notify_waiters();
        bot.poll_generation
    };

    loop {
        let notify = {
            let mut w = shared.world();
            let bot = w.bots.get_mut(&bot_id).ok_or_else(ApiError::unauthorized)?;
            if bot.poll_generation != generation {
                return Err(ApiError::conflict(if bot.webhook.is_some() {
                    WEBHOOK_ACTIVE
                } else {
                    SUPERSEDED
                }));
            }
            bot.prune_old_updates(std::time::Instant::now());
            if !bot.updates.is_empty() || tokio::time::Instant::now() >= deadline {
                let batch: Vec<Value> = bot
                    .updates
                    .iter()
                    .take(limit)
                    .map(|u| u.body.clone())
                    .collect();
                return Ok(json!(batch));
            }
            bot.poll_notify.clone()
        };
        let notified = notify.notified();
        tokio::pin!(notified);
        // Registered before re-checking, so an update queued in between is not missed.
        notified.as_mut().enable();
        let queued = {
            let w = shared.world();
            w.bots
                .get(&bot_id)
                .is_none_or(|b| !b.updates.is_empty() || b.poll_generation != generation)
        };
        if !queued {
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }
}

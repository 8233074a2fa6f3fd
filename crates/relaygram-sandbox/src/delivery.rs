//! Webhook delivery as Telegram does it: updates are POSTed with the secret header, one at a
//! time per chat and in parallel across chats (up to `max_connections`), and retried with
//! doubling backoff after a non-2xx answer, a timeout or a connection error.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Shared;
use crate::world::unix_now;

const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

struct Job {
    bot_id: i64,
    update_id: i64,
    url: String,
    secret: Option<String>,
    body: Value,
}

pub async fn run_dispatcher(shared: Arc<Shared>) {
    loop {
        let notified = shared.dispatch.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (jobs, next_wake) = plan(&shared);
        for job in jobs {
            tokio::spawn(deliver(shared.clone(), job));
        }
        match next_wake {
            Some(at) => {
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep_until(at.into()) => {}
                }
            }
            None => notified.await,
        }
    }
}

/// Picks the updates that may go out now and marks them in flight; says when to look again.
fn plan(shared: &Shared) -> (Vec<Job>, Option<Instant>) {
    let mut w = shared.world();
    let now = Instant::now();
    let mut jobs = Vec::new();
    let mut next_wake: Option<Instant> = None;
    for bot in w.bots.values_mut() {
        let Some(hook) = bot.webhook.clone() else {
            continue;
        };
        bot.prune_old_updates(now);
        let mut in_flight = bot.updates.iter().filter(|u| u.in_flight).count() as u32;
        let mut chats_seen = HashSet::new();
        for u in bot.updates.iter_mut() {
            // Only the oldest update of each chat may be on its way.
            if let Some(chat) = u.chat_key
                && !chats_seen.insert(chat)
            {
                continue;
            }
            if u.in_flight {
                continue;
            }
            if u.next_attempt > now {
                next_wake = Some(next_wake.map_or(u.next_attempt, |t| t.min(u.next_attempt)));
                continue;
            }
            if in_flight >= hook.max_connections {
                break;
            }
            u.in_flight = true;
            in_flight += 1;
            jobs.push(Job {
                bot_id: bot.id,
                update_id: u.update_id,
                url: hook.url.clone(),
                secret: hook.secret_token.clone(),
                body: u.body.clone(),
            });
        }
    }
    (jobs, next_wake)
}

async fn deliver(shared: Arc<Shared>, job: Job) {
    let mut request = shared
        .http
        .post(&job.url)
        .timeout(shared.scaled(shared.config.webhook_timeout))
        .json(&job.body);
    if let Some(secret) = &job.secret {
        request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
    }
    let outcome = match request.send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!(
            "Wrong response from the webhook: {} {}",
            r.status().as_u16(),
            r.status().canonical_reason().unwrap_or("")
        )),
        Err(e) if e.is_timeout() => Err("Read timeout expired".to_string()),
        Err(e) if e.is_connect() => Err("Connection refused".to_string()),
        Err(_) => Err("Connection closed".to_string()),
    };
    {
        let mut w = shared.world();
        if let Some(bot) = w.bots.get_mut(&job.bot_id) {
            match outcome {
                Ok(()) => {
                    bot.updates.retain(|u| u.update_id != job.update_id);
                    bot.stats.webhook_deliveries += 1;
                }
                Err(message) => {
                    bot.stats.webhook_failures += 1;
                    if let Some(h) = bot.webhook.as_mut() {
                        h.last_error_date = Some(unix_now());
                        h.last_error_message = Some(message);
                    }
                    if let Some(u) = bot
                        .updates
                        .iter_mut()
                        .find(|u| u.update_id == job.update_id)
                    {
                        u.in_flight = false;
                        u.attempts += 1;
                        let backoff = FIRST_RETRY
                            .saturating_mul(1 << (u.attempts - 1).min(16))
                            .min(MAX_RETRY);
                        u.next_attempt = Instant::now() + shared.scaled(backoff);
                    }
                }
            }
        }
    }
    shared.dispatch.notify_one();
}

//! Polling intake for bots without a public URL: one `getUpdates` long-poll loop per enabled
//! polling bot, started and stopped as bots come and go. Updates go through the same store
//! and processing as webhook deliveries, so local development needs no tunnel.
//!
//! One instance polls a bot at a time (Telegram answers 409 to a second poller): before each
//! `getUpdates` the poller takes or renews the bot's lease in the store (`poll_leases`), and
//! an instance that finds another's lease running waits, taking over once it has lapsed (the
//! holder stopped or crashed). A stopping instance gives its leases up at once.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::intake::store_update;
use crate::services::Services;
use crate::shutdown::Shutdown;
use crate::store::{BotFilter, BotMode, BotRecord, Page};
use crate::telegram::TelegramError;

/// How long one `getUpdates` waits for updates (below the client's request timeout).
const LONG_POLL_SECONDS: u64 = 10;
/// How often the set of polling bots is re-read.
const RESCAN: Duration = Duration::from_secs(2);
/// Longest pause after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a polling lease lasts: twice a long poll, so the holder renews it in time, and
/// short, so another instance takes over soon after the holder crashed.
const LEASE_MS: i64 = 20_000;
/// How often an instance without the lease looks whether it lapsed.
const LEASE_RETRY: Duration = Duration::from_secs(5);

/// This instance's name on the leases it holds: the host and the data folder, so the same
/// instance restarted after a crash (`kill -9`) takes its own lease back at once instead of
/// waiting for it to lapse. Two processes sharing one data folder on one host share the
/// name (and then both poll; Telegram's 409 makes one of them back off).
pub fn holder_name(data_dir: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into());
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    format!("{}:{}", host.trim(), dir.display())
}

/// Keeps one poll loop per enabled polling bot until shutdown; `holder` names this instance
/// on its leases.
pub async fn run(services: Services, holder: String, mut shutdown: Shutdown) {
    let mut running: HashMap<String, (i64, JoinHandle<()>)> = HashMap::new();
    loop {
        match polling_bots(&services).await {
            Ok(bots) => {
                let wanted: HashMap<String, BotRecord> =
                    bots.into_iter().map(|b| (b.id.clone(), b)).collect();
                running.retain(|id, (updated_at, task)| {
                    let keep = wanted.get(id).is_some_and(|b| b.updated_at == *updated_at)
                        && !task.is_finished();
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                for (id, bot) in wanted {
                    if let std::collections::hash_map::Entry::Vacant(slot) = running.entry(id) {
                        let updated_at = bot.updated_at;
                        let task = tokio::spawn(poll_bot(services.clone(), bot, holder.clone()));
                        slot.insert((updated_at, task));
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list polling bots"),
        }
        tokio::select! {
            _ = tokio::time::sleep(RESCAN) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    for (bot_id, (_, task)) in running {
        task.abort();
        if let Err(e) = services.store.release_polling(&bot_id, &holder).await {
            tracing::warn!(bot_id, error = %e, "cannot give up the polling lease; it lapses by itself");
        }
    }
}

async fn polling_bots(services: &Services) -> Result<Vec<BotRecord>, crate::store::StoreError> {
    let filter = BotFilter {
        tenant_id: None,
        enabled: Some(true),
        mode: Some(BotMode::Polling),
    };
    let mut page = Page::first(crate::store::MAX_PAGE_SIZE);
    let mut bots = Vec::new();
    loop {
        let listed = services.store.list_bots(&filter, &page).await?;
        bots.extend(listed.items);
        match listed.next_cursor {
            Some(c) => page.after = Some(c),
            None => return Ok(bots),
        }
    }
}

async fn poll_bot(services: Services, bot: BotRecord, holder: String) {
    let token = match services.token_of(&bot) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(bot_id = %bot.id, error = %e, "cannot open the bot token; not polling");
            return;
        }
    };
    let mut offset: Option<i64> = None;
    let mut failures = 0u32;
    let mut waiting = false;
    loop {
        let now = services.clock.now_millis();
        match services
            .store
            .lease_polling(&bot.id, &holder, now, now + LEASE_MS)
            .await
        {
            Ok(true) => {
                if waiting {
                    tracing::info!(bot_id = %bot.id, "took over polling this bot");
                    waiting = false;
                }
            }
            Ok(false) => {
                if !waiting {
                    tracing::info!(bot_id = %bot.id, "another instance polls this bot; waiting");
                    waiting = true;
                }
                tokio::time::sleep(LEASE_RETRY).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(bot_id = %bot.id, error = %e, "cannot renew the polling lease");
                tokio::time::sleep(LEASE_RETRY).await;
                continue;
            }
        }
        // The bot's setting as stored now: a change reaches Telegram with the next poll.
        let allowed = match services.store.get_bot(&bot.id).await {
            Ok(Some(b)) => b.allowed_updates,
            _ => bot.allowed_updates.clone(),
        };
        let allowed = crate::telegram::allowed_updates(allowed.as_deref());
        let mut params = json!({"timeout": LONG_POLL_SECONDS, "allowed_updates": allowed});
        if let Some(o) = offset {
            params["offset"] = json!(o);
        }
        let result: Result<Vec<Value>, TelegramError> =
            services.telegram.call(&token, "getUpdates", &params).await;
        match result {
            Ok(updates) => {
                failures = 0;
                for update in updates {
                    let Some(id) = update["update_id"].as_i64() else {
                        continue;
                    };
                    // Stored before the offset moves past it: a crash re-fetches, the store
                    // de-duplicates.
                    if let Err(e) = store_update(&services, &bot, &update, update.to_string()).await
                    {
                        tracing::error!(bot_id = %bot.id, error = %e, "cannot store a polled update");
                        break;
                    }
                    offset = Some(offset.map_or(id + 1, |o| o.max(id + 1)));
                }
            }
            Err(e) => {
                failures += 1;
                let wait = match &e {
                    TelegramError::RetryAfter { seconds, .. } => Duration::from_secs(*seconds),
                    _ => Duration::from_secs(1u64 << failures.min(5)).min(MAX_BACKOFF),
                };
                tracing::warn!(bot_id = %bot.id, error = %e, wait_s = wait.as_secs(), "getUpdates failed");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::holder_name;

    #[test]
    fn a_restarted_instance_keeps_its_lease_name_and_other_folders_get_their_own() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        assert_eq!(holder_name(a.path()), holder_name(a.path()));
        assert_ne!(holder_name(a.path()), holder_name(b.path()));
    }
}

//! Processing stored updates: one at a time per chat (in order), in parallel across chats.
//! A processor claims an update with a lease, handles it, and records the outcome; an update
//! whose processor crashed is taken again when its lease ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use super::intake::STORED;
use super::router::Router;
use crate::ids::now_millis;
use crate::services::Services;
use crate::store::{UpdateOutcome, UpdateStatus};
use crate::workers::Shutdown;

/// How often idle processors look at the store (other instances store updates too).
const IDLE_POLL: Duration = Duration::from_millis(500);
/// How often abandoned updates (lease over) are put back to pending.
const RECLAIM_EVERY_MS: i64 = 1000;

/// Takes stored updates and handles them.
#[derive(Clone)]
pub struct Processor {
    services: Services,
    router: Router,
    /// How long a claimed update stays with this processor before another may take it.
    lease: Duration,
    /// When abandoned updates were last looked for (UTC ms), shared by the clones.
    last_reclaim: Arc<AtomicI64>,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor").finish_non_exhaustive()
    }
}

impl Processor {
    /// A processor limiting each Telegram user to `commands_per_minute` per bot, holding
    /// each update it takes for at most `lease`.
    pub fn new(services: Services, commands_per_minute: u32, lease: Duration) -> Processor {
        Processor {
            router: Router::new(services.clone(), commands_per_minute),
            services,
            lease,
            last_reclaim: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Processes one update if one is ready; `Ok(false)` when there is none.
    pub async fn step(&self) -> Result<bool, crate::store::StoreError> {
        let now = now_millis();
        let last = self.last_reclaim.load(Ordering::Relaxed);
        if now - last >= RECLAIM_EVERY_MS
            && self
                .last_reclaim
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let reclaimed = self.services.store.reclaim_updates(now).await?;
            if reclaimed > 0 {
                tracing::warn!(
                    reclaimed,
                    "took back updates whose processor stopped mid-way"
                );
            }
        }
        let lease_until = now + self.lease.as_millis() as i64;
        let Some(update) = self.services.store.claim_update(lease_until).await? else {
            return Ok(false);
        };
        let started = Instant::now();
        let result = self.router.handle(&update).await;
        let handling_ms = started.elapsed().as_millis() as i64;
        let outcome = match result {
            Ok(h) => UpdateOutcome {
                status: h.status,
                outcome: Some(h.outcome),
                error: None,
                processed_at: now_millis(),
                handling_ms,
            },
            Err(e) => {
                tracing::warn!(bot_id = %update.bot_id, update_id = update.update_id, error = %e, "update processing failed");
                UpdateOutcome {
                    status: UpdateStatus::Failed,
                    outcome: None,
                    error: Some(e.to_string()),
                    processed_at: now_millis(),
                    handling_ms,
                }
            }
        };
        metrics::counter!("relaygram_updates_processed_total", "status" => outcome.status.as_str())
            .increment(1);
        metrics::histogram!("relaygram_update_handling_seconds")
            .record(handling_ms as f64 / 1000.0);
        self.services
            .store
            .finish_update(&update.bot_id, update.update_id, &outcome)
            .await?;
        Ok(true)
    }

    /// Processes until told to stop.
    pub async fn run(self, mut shutdown: Shutdown) {
        loop {
            let notified = STORED.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            loop {
                match self.step().await {
                    Ok(true) => {
                        if *shutdown.borrow() {
                            return;
                        }
                    }
                    Ok(false) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot take updates from the store");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

//! Processing stored updates: one at a time per chat (in order), in parallel across chats.
//! A processor claims a batch of updates of distinct chats with a lease, handles them side
//! by side, and records each outcome; an update whose processor crashed is taken again when
//! its lease ends. How a claim is made is the store's affair (a statement on PostgreSQL, an
//! in-memory queue on SQLite: see `InboundStore::own_updates`).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::intake::STORED;
use super::router::{Effects, Router};
use crate::ids::now_millis;
use crate::services::Services;
use crate::shutdown::Shutdown;
use crate::store::{ProcessedUpdate, UpdateOutcome, UpdateRecord, UpdateStatus};

/// How often idle processors look at the store (other instances store updates too).
const IDLE_POLL: Duration = Duration::from_millis(500);
/// How often abandoned updates (lease over) are put back to pending.
const RECLAIM_EVERY_MS: i64 = 1000;
/// Updates one processor handles at once, each of a different chat. Claimed in batches,
/// so a busy store costs one claim statement per several updates, not one per update.
const IN_FLIGHT: usize = 32;

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

    /// Puts back updates whose processor stopped mid-way, at most once a second per instance.
    async fn reclaim_if_due(&self) -> Result<(), crate::store::StoreError> {
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
        Ok(())
    }

    /// Claims up to `limit` ready updates (of distinct chats), leased to this processor.
    async fn claim(&self, limit: usize) -> Result<Vec<UpdateRecord>, crate::store::StoreError> {
        self.reclaim_if_due().await?;
        let lease_until = now_millis() + self.lease.as_millis() as i64;
        self.services
            .store
            .claim_updates(lease_until, limit as u32)
            .await
    }

    /// Processes one update if one is ready; `Ok(false)` when there is none.
    pub async fn step(&self) -> Result<bool, crate::store::StoreError> {
        let Some(update) = self.claim(1).await?.into_iter().next() else {
            return Ok(false);
        };
        self.process(update).await?;
        Ok(true)
    }

    /// Handles one claimed update and records its outcome with what handling wrote (chats,
    /// events, replies), together with those of other updates finishing at the same time
    /// (one transaction for all).
    async fn process(&self, update: UpdateRecord) -> Result<(), crate::store::StoreError> {
        let started = Instant::now();
        let result = self.router.handle(&update).await;
        let handling_ms = started.elapsed().as_millis() as i64;
        let (outcome, effects) = match result {
            Ok(h) => (
                UpdateOutcome {
                    status: h.status,
                    outcome: Some(h.outcome),
                    error: None,
                    processed_at: now_millis(),
                    handling_ms,
                },
                h.effects,
            ),
            Err(e) => {
                tracing::warn!(bot_id = %update.bot_id, update_id = update.update_id, error = %e, "update processing failed");
                let failed = UpdateOutcome {
                    status: UpdateStatus::Failed,
                    outcome: None,
                    error: Some(e.to_string()),
                    processed_at: now_millis(),
                    handling_ms,
                };
                (failed, Effects::default())
            }
        };
        let status = outcome.status;
        let events = effects.events.len();
        let replying = (!effects.replies.is_empty()).then(|| update.bot_id.clone());
        let report = self
            .services
            .store
            .finish_update(ProcessedUpdate {
                bot_id: update.bot_id,
                update_id: update.update_id,
                outcome,
                chats: effects.chats,
                events: effects.events,
                replies: effects.replies,
            })
            .await?;
        metrics::counter!("relaygram_updates_processed_total", "status" => status.as_str())
            .increment(1);
        metrics::histogram!("relaygram_update_handling_seconds")
            .record(handling_ms as f64 / 1000.0);
        if events > 0 {
            metrics::counter!("relaygram_events_emitted_total").increment(events as u64);
            crate::events::notify(report.deliveries);
        }
        if let Some(bot_id) = replying.filter(|_| report.new_replies > 0) {
            metrics::counter!("relaygram_messages_accepted_total", "status" => "queued")
                .increment(report.new_replies as u64);
            crate::delivery::sender::wake_bot(&bot_id);
        }
        Ok(())
    }

    /// Processes until told to stop: claims ready updates in batches, handles up to
    /// [`IN_FLIGHT`] at once (each of a different chat, so each chat stays in order), and
    /// claims more when half of them are done. On shutdown, finishes what it holds.
    pub async fn run(self, mut shutdown: Shutdown) {
        // Shared by the tasks it spawns (one per update) without copying its services.
        let this = Arc::new(self);
        let mut in_flight: JoinSet<()> = JoinSet::new();
        // Whether the store may hold updates this processor could take now.
        let mut more = true;
        loop {
            let notified = STORED.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if *shutdown.borrow() {
                while in_flight.join_next().await.is_some() {}
                return;
            }
            if more && in_flight.len() <= IN_FLIGHT / 2 {
                let room = IN_FLIGHT - in_flight.len();
                match this.claim(room).await {
                    Ok(batch) => {
                        more = batch.len() == room;
                        let took_some = !batch.is_empty();
                        for update in batch {
                            let processor = this.clone();
                            in_flight.spawn(async move {
                                let key = (update.bot_id.clone(), update.update_id);
                                if let Err(e) = processor.process(update).await {
                                    // Left in hand: taken again when its lease ends.
                                    tracing::error!(bot_id = %key.0, update_id = key.1, error = %e, "cannot record an update's outcome");
                                }
                            });
                        }
                        if took_some {
                            continue;
                        }
                        // Nothing ready: wait below, on the notification armed before the
                        // claim, so an update stored during the claim is not missed.
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot take updates from the store");
                        more = false;
                    }
                }
            }
            tokio::select! {
                // A finished update may make its chat's next one ready.
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => more = true,
                _ = &mut notified => more = true,
                _ = tokio::time::sleep(IDLE_POLL) => more = true,
                _ = shutdown.wait_for(|s| *s) => {}
            }
        }
    }
}

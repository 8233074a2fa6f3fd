//! The scheduler worker: claims due occurrences in the store, hands their messages over,
//! and completes runs a crash left claimed. It waits on the services' clock, so tests move
//! time instead of sleeping.

use std::sync::Arc;
use std::time::Duration;

use super::handoff::Handoff;
use super::service::RUN_LEASE_MS;
use super::service::{decide, execute_many, misfire_grace, timing_of};
use crate::services::{ServiceResult, Services};
use crate::shutdown::Shutdown;
use crate::store::{Advance, RunRecord, ScheduleRecord};

/// Schedules claimed per transaction.
pub const CLAIM_BATCH: u32 = 500;
/// Longest real-time wait between looks at the store (a schedule created by another
/// instance is noticed within this).
const MAX_IDLE: Duration = Duration::from_secs(1);

/// The scheduler.
#[derive(Debug, Clone)]
pub struct Scheduler {
    services: Services,
    handoff: Arc<dyn Handoff>,
}

fn advance_for(schedule: &ScheduleRecord, now: i64) -> Advance {
    match (timing_of(schedule), schedule.next_fire_at) {
        (Ok(timing), Some(due)) => decide(
            &timing,
            schedule.catch_up,
            due,
            now,
            misfire_grace(schedule.recipient_timezone),
        ),
        (Err(e), _) => {
            // Validated on the way in; a stored value that no longer parses (e.g. a zone
            // removed from the database) stops the schedule instead of looping on it.
            tracing::error!(schedule_id = %schedule.id, error = %e, "schedule timing is invalid; stopped");
            Advance {
                next_fire_at: None,
                run: None,
            }
        }
        (Ok(_), None) => Advance {
            next_fire_at: None,
            run: None,
        },
    }
}

impl Scheduler {
    /// A scheduler over `services`, handing messages to `handoff`.
    pub fn new(services: Services, handoff: Arc<dyn Handoff>) -> Scheduler {
        Scheduler { services, handoff }
    }

    /// One round: completes interrupted runs, claims what is due now (up to a batch) and
    /// hands each claimed run over. Returns how many runs it handled.
    pub async fn step(&self) -> ServiceResult<usize> {
        let store = &self.services.store;
        let now = self.services.clock.now_millis();
        let stale = store
            .claim_stale_runs(now, CLAIM_BATCH, now + RUN_LEASE_MS)
            .await?;
        if !stale.is_empty() {
            tracing::info!(runs = stale.len(), "completing interrupted schedule runs");
        }
        let due = store
            .claim_due_schedules(now, CLAIM_BATCH, now + RUN_LEASE_MS, &|s| {
                advance_for(s, now)
            })
            .await?;
        for (run, _) in &due {
            metrics::histogram!("relaygram_schedule_lateness_seconds")
                .record((now - run.occurrence_at).max(0) as f64 / 1000.0);
        }
        let runs: Vec<(RunRecord, Option<ScheduleRecord>)> = stale
            .into_iter()
            .map(|run| (run, None))
            .chain(due.into_iter().map(|(run, schedule)| (run, Some(schedule))))
            .collect();
        let handled = runs.len();
        self.hand_over(runs).await;
        Ok(handled)
    }

    /// Hands the runs over together (one acceptance transaction for the batch).
    async fn hand_over(&self, runs: Vec<(RunRecord, Option<ScheduleRecord>)>) {
        if runs.is_empty() {
            return;
        }
        if let Err(e) = execute_many(&self.services, self.handoff.as_ref(), runs).await {
            tracing::warn!(error = %e, "some schedule runs were not completed");
        }
    }

    /// Runs until shutdown: a step, then a wait for the next due time (or a change).
    pub async fn run(self, mut shutdown: Shutdown) {
        let mut wake = super::wake_signal();
        loop {
            if *shutdown.borrow() {
                break;
            }
            wake.borrow_and_update();
            let handled = match self.step().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler step failed");
                    0
                }
            };
            if handled >= CLAIM_BATCH as usize {
                continue;
            }
            let next = match self.services.store.next_schedule_work_at().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler cannot read its next due time");
                    None
                }
            };
            let now = self.services.clock.now_millis();
            let until = match next {
                Some(at) if at <= now && handled > 0 => continue,
                // Due but not ours (another instance holds it): look again shortly.
                Some(at) if at <= now => now + 50,
                Some(at) => at,
                None => i64::MAX,
            };
            tokio::select! {
                _ = self.services.clock.sleep_until(until, MAX_IDLE) => {}
                _ = wake.changed() => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
    }
}

//! The digest worker: closes due digests and hands each to delivery. It waits on the
//! services' clock, so tests move time instead of sleeping.

use std::time::Duration;

use crate::services::{ServiceResult, Services};
use crate::shutdown::Shutdown;

/// Longest real-time wait between looks at the store.
const MAX_IDLE: Duration = Duration::from_secs(1);
/// Digests closed per step.
const BATCH: i64 = 100;

/// The digest worker.
#[derive(Debug, Clone)]
pub struct Digester {
    services: Services,
}

impl Digester {
    /// A worker over `services`.
    pub fn new(services: Services) -> Digester {
        Digester { services }
    }

    /// Closes what is due now (up to a batch) and hands each digest to delivery. Returns
    /// how many digests it handled.
    pub async fn step(&self) -> ServiceResult<usize> {
        let now = self.services.clock.now_millis();
        let due = self.services.store.due_digests(now, BATCH).await?;
        let n = due.len();
        for digest in due {
            if let Err(e) = self.services.deliver_digest(&digest).await {
                // Left `closing`: the next step tries again, and delivery's acceptance
                // (keyed by the digest) never makes it twice.
                tracing::warn!(digest_id = %digest.id, error = %e, "could not hand a digest over");
            }
        }
        Ok(n)
    }

    /// Steps until shutdown.
    pub async fn run(self, mut shutdown: Shutdown) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            let busy = match self.step().await {
                Ok(n) => n as i64 == BATCH,
                Err(e) => {
                    tracing::error!(error = %e, "digest step failed");
                    false
                }
            };
            if busy {
                continue;
            }
            let clock = self.services.clock.clone();
            tokio::select! {
                _ = shutdown.changed() => {}
                // A manual clock wakes this when a test moves time.
                _ = clock.sleep_until(i64::MAX, MAX_IDLE) => {}
            }
        }
    }
}

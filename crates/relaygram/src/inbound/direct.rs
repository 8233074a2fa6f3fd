//! Updates claimed as they are stored go straight to this instance's processors.
//!
//! A processor normally finds work by claiming stored updates, one statement per batch. When
//! a processor here has room, the intake asks the store to claim the update in the very
//! statement that stores it ([`crate::store::InboundStore::insert_update_claiming`]: only
//! when its chat has nothing else pending or processing, so each chat's order holds) and
//! hands it over in memory. Nothing changes for safety: the update is stored, claimed with
//! a lease, before Telegram gets its answer, and a crash leaves it to be taken again when
//! the lease ends. The room is bounded, so a claimed update never waits in memory long
//! enough for its lease to end.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::store::UpdateRecord;

/// A claimed update with the room it takes.
pub type Handed = (UpdateRecord, OwnedSemaphorePermit);

/// The intake's side of the hand-over (no processors attached: nothing is claimed early).
#[derive(Debug, Clone, Default)]
pub struct Direct {
    inner: Arc<Mutex<Option<Attached>>>,
}

#[derive(Debug)]
struct Attached {
    room: Arc<Semaphore>,
    queue: mpsc::UnboundedSender<Handed>,
    lease_ms: i64,
}

/// Room to claim one update now: its lease end and the permit it holds while processed.
#[derive(Debug)]
pub struct Slot {
    /// Claim until (UTC ms).
    pub claim_until: i64,
    permit: OwnedSemaphorePermit,
    queue: mpsc::UnboundedSender<Handed>,
}

impl Slot {
    /// Hands the update claimed with this slot to the processors. When they are gone
    /// (shutting down), it stays claimed in the store and is taken again after its lease.
    pub fn hand_over(self, update: UpdateRecord) {
        if self.queue.send((update, self.permit)).is_err() {
            tracing::debug!("processors stopped; the claimed update waits for its lease to end");
        }
    }
}

impl Direct {
    /// Attaches processors able to take `room` updates at once, each held for `lease`;
    /// they receive what the intake claims.
    pub fn attach(&self, room: usize, lease: Duration) -> mpsc::UnboundedReceiver<Handed> {
        let (queue, received) = mpsc::unbounded_channel();
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = Some(Attached {
            room: Arc::new(Semaphore::new(room)),
            queue,
            lease_ms: lease.as_millis() as i64,
        });
        received
    }

    /// Stops handing updates over (processors are stopping).
    pub fn detach(&self) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Room for one more update, if a processor has it now.
    pub fn slot(&self, now_ms: i64) -> Option<Slot> {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let attached = guard.as_ref()?;
        let permit = attached.room.clone().try_acquire_owned().ok()?;
        Some(Slot {
            claim_until: now_ms + attached.lease_ms,
            permit,
            queue: attached.queue.clone(),
        })
    }
}

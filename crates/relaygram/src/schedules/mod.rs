//! Schedules: recurring messages that fire once per occurrence, on time, in their time
//! zone. [`occurrence`] is the pure time math, [`service`] the rules, [`worker`] the
//! claiming loop, [`handoff`] the seam to delivery and [`api`] the HTTP edge.

pub mod api;
pub mod cli;
pub mod handoff;
pub mod occurrence;
pub mod service;
pub mod worker;

use std::sync::LazyLock;

use tokio::sync::watch;

pub use worker::Scheduler;

static WAKE: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);

/// Tells schedulers in this process that schedules changed (a new one may be due sooner
/// than what they wait for).
pub fn wake() {
    WAKE.send_modify(|n| *n = n.wrapping_add(1));
}

/// A receiver that changes when [`wake`] is called.
pub fn wake_signal() -> watch::Receiver<u64> {
    WAKE.subscribe()
}

//! The sweep's wake-up call: rules that change the ledger or a gated chat ring it, the sweep
//! waits on it (besides its one-second tick), so nothing waits for the tick.

use tokio::sync::Notify;

static WAKE: Notify = Notify::const_new();

/// Wakes the sweep (the ledger or a gated chat changed).
pub fn wake() {
    WAKE.notify_waiters();
}

/// Resolves at the next [`wake`].
pub async fn woken() {
    WAKE.notified().await;
}

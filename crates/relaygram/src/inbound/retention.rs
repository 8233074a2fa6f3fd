//! Forgets processed updates once they are older than the retention setting, so the audit
//! log does not grow without end. Open updates are never pruned.

use std::time::Duration;

use crate::ids::now_millis;
use crate::services::Services;
use crate::shutdown::Shutdown;

/// How often old updates are pruned.
const EVERY: Duration = Duration::from_secs(3600);

/// Prunes updates older than `keep` now and then every hour, until shutdown.
pub async fn run(services: Services, keep: Duration, mut shutdown: Shutdown) {
    loop {
        let before = now_millis() - keep.as_millis() as i64;
        match services.store.prune_updates(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "forgot old inbound updates"),
            Err(e) => tracing::warn!(error = %e, "cannot prune old inbound updates"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

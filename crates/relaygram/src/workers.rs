//! Background workers (tokio tasks in this process). Each takes its work from the store, not
//! from memory, so a crash loses nothing; each stops when told to.

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::services::Services;

/// Tells workers to stop; `wait_for(|s| *s)` resolves when they should.
pub type Shutdown = watch::Receiver<bool>;

/// The running workers.
#[derive(Debug)]
pub struct Workers {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts every worker.
    pub fn start(services: &Services) -> Workers {
        let (stop, shutdown) = watch::channel(false);
        // Each subsystem adds its workers here.
        let handles: Vec<JoinHandle<()>> = Vec::new();
        let _ = (services, shutdown);
        Workers { stop, handles }
    }

    /// Asks every worker to stop and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for h in self.handles {
            let _ = h.await;
        }
    }
}

//! The stop signal every background worker listens for (its own module so that the workers
//! and the assembly that starts them need not import each other).

use tokio::sync::watch;

/// Tells workers to stop; `wait_for(|s| *s)` resolves when they should.
pub type Shutdown = watch::Receiver<bool>;

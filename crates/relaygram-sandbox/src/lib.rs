//! A Telegram Bot API emulator for trying and testing bots with no Telegram account and no
//! internet: the Bot API over HTTP shaped like Telegram's, simulated users and groups, webhook
//! and `getUpdates` delivery, flood limits, faults on demand, a control API under `/sandbox/`
//! and a chat page at `/`.
//!
//! This crate never depends on the gateway: it is the independent judge the gateway is tested
//! against.

mod botapi;
mod control;
mod delivery;
mod faults;
mod limits;
pub mod markup;
mod membership;
mod page;
mod params;
mod reply;
mod world;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use limits::{LimitModel, Limits};

/// How a sandbox runs.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where to listen; port 0 picks a free one.
    pub bind: SocketAddr,
    /// Whether Telegram's flood limits are enforced.
    pub limits: Limits,
    /// How the limits are counted: a strict sliding window (the default) or token buckets.
    pub limit_model: LimitModel,
    /// Runs the sandbox's clock faster (> 1) or slower (< 1): flood-limit rates, webhook
    /// retry backoff and webhook timeouts are scaled by it, so tests can exercise the same
    /// rules in less time.
    pub time_scale: f64,
    /// How long a webhook may take to answer before the delivery counts as failed
    /// (before scaling).
    pub webhook_timeout: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            limits: Limits::Off,
            limit_model: LimitModel::Window,
            time_scale: 1.0,
            webhook_timeout: Duration::from_secs(10),
        }
    }
}

/// Shared by every handler and worker.
pub(crate) struct Shared {
    pub(crate) world: std::sync::Mutex<world::World>,
    pub(crate) config: SandboxConfig,
    /// Wakes the webhook dispatcher when updates are queued or a webhook changes.
    pub(crate) dispatch: tokio::sync::Notify,
    pub(crate) http: reqwest::Client,
}

impl Shared {
    /// Locks the world. A panic while holding the lock cannot leave it half-updated in a way
    /// that matters for an emulator, so poisoning is ignored.
    pub(crate) fn world(&self) -> std::sync::MutexGuard<'_, world::World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A duration on the sandbox clock, in real time.
    pub(crate) fn scaled(&self, d: Duration) -> Duration {
        d.div_f64(self.config.time_scale.max(0.001))
    }
}

/// A running sandbox. Dropping it does not stop it; call [`Sandbox::shutdown`].
pub struct Sandbox {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    dispatcher: JoinHandle<()>,
}

impl Sandbox {
    /// Binds and starts serving.
    pub async fn start(config: SandboxConfig) -> std::io::Result<Sandbox> {
        if !(config.time_scale.is_finite() && config.time_scale > 0.0) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "time_scale must be a positive number",
            ));
        }
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            world: std::sync::Mutex::new(world::World::new(
                config.limits,
                config.limit_model,
                config.time_scale,
            )),
            config,
            dispatch: tokio::sync::Notify::new(),
            http,
        });
        let (stop, mut stopped) = watch::channel(false);
        let app = router(shared.clone());
        let mut stopped2 = stopped.clone();
        let server = tokio::spawn(async move {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "sandbox server stopped");
            }
        });
        let dispatcher = tokio::spawn(async move {
            tokio::select! {
                _ = delivery::run_dispatcher(shared) => {}
                _ = stopped2.wait_for(|s| *s) => {}
            }
        });
        Ok(Sandbox {
            addr,
            stop,
            server,
            dispatcher,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, e.g. `http://127.0.0.1:8081`; the Bot API is at `{url}/bot<token>/<method>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving: waits for in-flight requests (long polls end at once) and stops
    /// webhook delivery.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.dispatcher.abort();
        let _ = self.dispatcher.await;
        // Long polls hold connections open; do not let them delay shutdown forever.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
    }
}

/// How to use a running sandbox, for `relaygram sandbox` to print.
pub fn banner(sandbox: &Sandbox) -> String {
    let url = sandbox.url();
    format!(
        "relaygram sandbox: a Telegram Bot API emulator is listening on {url}\n\
         \n\
         Chat page:    {url}/\n\
         Bot API:      {url}/bot<token>/<method>   (point your bot library's base URL here)\n\
         Control API:  {url}/sandbox/...           (see docs/sandbox.md)\n\
         \n\
         Try it:\n\
         \x20 curl -s -X POST {url}/sandbox/bots -H 'content-type: application/json' -d '{{\"username\":\"shop_bot\",\"first_name\":\"Shop\"}}'\n\
         \x20 curl -s -X POST {url}/sandbox/users -H 'content-type: application/json' -d '{{\"first_name\":\"Alice\",\"username\":\"alice\"}}'\n\
         \x20 curl -s {url}/bot<token>/getMe\n"
    )
}

fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .merge(control::routes())
        .merge(page::routes())
        .fallback(botapi::handle)
        .layer(axum::extract::DefaultBodyLimit::max(60 * 1024 * 1024))
        // Outermost, so the stamp is taken before the body is read or the world locked.
        .layer(axum::middleware::from_fn(botapi::stamp_arrival))
        .with_state(shared)
}

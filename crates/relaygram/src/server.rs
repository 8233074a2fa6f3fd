//! Building and running the server: store → migrations → secrets → admin key → HTTP.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics::SharedString;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::api;
use crate::config::Config;
use crate::crypto::SecretBox;
use crate::http::{AppError, AppState, problem::types};
use crate::services::{CreatedKey, Services};
use crate::store;
use crate::telegram::TelegramClient;
use crate::workers::Workers;

/// Header carrying the request id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Timeout of one Telegram call.
pub const TELEGRAM_TIMEOUT: Duration = Duration::from_secs(15);

/// What was prepared before serving.
#[derive(Debug)]
pub struct Boot {
    /// The services over the opened store.
    pub services: Services,
    /// An admin key created now, to print once.
    pub new_admin_key: Option<CreatedKey>,
    /// Active admin keys in the store after the start (including a new one).
    pub active_admin_keys: i64,
    /// Whether the secret key file was generated now.
    pub key_file_created: bool,
}

/// Opens and migrates the store, loads the secret key, and makes sure an admin key exists.
pub async fn boot(config: &Config) -> anyhow::Result<Boot> {
    let (services, key_file_created) = open(config).await?;
    let new_admin_key = services
        .bootstrap_admin_key(config.admin_key.as_ref())
        .await?;
    let active_admin_keys = services.store.count_active_admin_keys().await?;
    Ok(Boot {
        services,
        new_admin_key,
        active_admin_keys,
        key_file_created,
    })
}

/// Opens and migrates the store and loads the secret key (the CLI's entry point).
pub async fn open_services(config: &Config) -> anyhow::Result<Services> {
    Ok(open(config).await?.0)
}

async fn open(config: &Config) -> anyhow::Result<(Services, bool)> {
    let store = store::connect(&config.database_url).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot open the database {} (set by database_url / RELAYGRAM_DATABASE_URL): {e}",
            crate::config::mask_database_url(config.database_url.expose_secret())
        )
    })?;
    store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("cannot migrate the database: {e}"))?;
    let (secrets, created) =
        SecretBox::load_or_create(config.secret_key.as_ref(), &config.data_dir)?;
    let services = Services {
        store,
        secrets,
        telegram: TelegramClient::new(&config.telegram_api_url, TELEGRAM_TIMEOUT),
        public_url: config.public_url.clone(),
        clock: crate::clock::Clock::system(),
    };
    services.verify_secret_key().await?;
    Ok((services, created))
}

/// The process-wide Prometheus recorder (installed once; later calls share it).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (embedding); ours still renders.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

#[derive(Clone, Copy, Debug)]
struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&crate::ids::new_id("req"))
            .ok()
            .map(RequestId::new)
    }
}

/// Drops a caller-supplied request id that is too long or has unexpected characters, so
/// that a fresh one is made; ids end up in logs and must stay short and plain.
async fn sanitize_request_id(mut request: Request, next: Next) -> Response {
    let acceptable = request.headers().get(&REQUEST_ID).is_none_or(|v| {
        let bytes = v.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 128
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    });
    if !acceptable {
        request.headers_mut().remove(&REQUEST_ID);
    }
    next.run(request).await
}

async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Labels without a copy where they are known in advance (every request pays for them).
    let method: SharedString = match *request.method() {
        Method::GET => "GET".into(),
        Method::POST => "POST".into(),
        Method::PATCH => "PATCH".into(),
        Method::PUT => "PUT".into(),
        Method::DELETE => "DELETE".into(),
        ref other => other.to_string().into(),
    };
    let route: SharedString = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".into(), |p| p.as_str().to_string().into());
    let response = next.run(request).await;
    let status: SharedString = match response.status().as_u16() {
        200 => "200".into(),
        201 => "201".into(),
        204 => "204".into(),
        code => code.to_string().into(),
    };
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("relaygram_http_requests_total", &labels).increment(1);
    metrics::histogram!("relaygram_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A path with a NUL character (`%00`) names nothing relaygram stores (and PostgreSQL
/// refuses NUL in text): it answers 404 before any handler sees it.
async fn refuse_nul_in_path(request: Request, next: Next) -> Response {
    let path = request.uri().path().as_bytes();
    if path.windows(3).any(|w| w.eq_ignore_ascii_case(b"%00")) {
        return AppError::not_found("no such resource (the path contains a NUL character)")
            .into_response();
    }
    next.run(request).await
}

async fn not_found() -> AppError {
    AppError::not_found("no such route")
}

async fn method_not_allowed() -> AppError {
    AppError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        types::METHOD_NOT_ALLOWED,
        "Method not allowed",
        "this route does not accept this method",
    )
}

/// The full application: API routes plus middleware.
pub fn app(services: Services, config: &Config) -> Router {
    let state = AppState {
        services,
        metrics: metrics_handle(),
    };
    api::router(state, config.max_body_bytes)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(refuse_nul_in_path))
        .layer(middleware::from_fn(record_metrics))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn(sanitize_request_id))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeId))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &axum::http::Request<_>| {
                            let request_id = req
                                .headers()
                                .get(REQUEST_ID)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-");
                            tracing::info_span!(
                                "request",
                                method = %req.method(),
                                path = %req.uri().path(),
                                request_id = %request_id,
                            )
                        })
                        .on_response(DefaultOnResponse::new().level(Level::INFO))
                        .on_failure(DefaultOnFailure::new().level(Level::WARN)),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
        )
}

/// A server running in the background.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound address (the real port when bound to port 0).
    pub addr: SocketAddr,
    /// The services it uses.
    pub services: Services,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    workers: Workers,
}

impl RunningServer {
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, finishes in-flight requests, closes the store.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let result = (&mut self.task).await;
        self.workers.stop().await;
        self.services.store.close().await;
        result??;
        Ok(())
    }
}

/// Binds `config.bind` and serves `services` until [`RunningServer::shutdown`].
pub async fn spawn(config: &Config, services: Services) -> anyhow::Result<RunningServer> {
    // Before listening: a second server on one SQLite database stops here, not mid-way.
    services
        .store
        .own_updates()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (bind): {e}", config.bind))?;
    let addr = listener.local_addr()?;
    let app = app(services.clone(), config);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    tracing::info!(%addr, "listening");
    let workers = Workers::start(&services, config);
    Ok(RunningServer {
        addr,
        services,
        shutdown: Some(tx),
        task,
        workers,
    })
}

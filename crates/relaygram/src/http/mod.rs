//! The HTTP kit every feature's handlers stand on: the shared state, authentication and
//! body/query extractors, problem+json errors, and the views shared across features (pages,
//! page sizes). Features import it; the router assembly (`api`) imports the features; this
//! kit imports neither.

pub mod extract;
pub mod problem;
pub mod views;

use metrics_exporter_prometheus::PrometheusHandle;

pub use extract::{ApiJson, ApiQuery, Auth};
pub use problem::{AppError, Problem};

use crate::services::Services;

/// Shared state of the HTTP handlers.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The services.
    pub services: Services,
    /// Prometheus exposition.
    pub metrics: PrometheusHandle,
}

/// What a handler answers.
pub type ApiResult<T> = Result<T, AppError>;

/// The media type of an error body.
pub const PROBLEM: &str = "application/problem+json";

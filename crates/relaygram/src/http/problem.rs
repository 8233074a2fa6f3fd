//! RFC 9457 problem details: the one error type every HTTP answer goes through.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::services::ServiceError;
use crate::telegram::TelegramError;

/// Media type of problem answers.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Stable problem types: `urn:relaygram:problem:<slug>`.
pub mod types {
    /// The body is not valid JSON.
    pub const MALFORMED_JSON: &str = "urn:relaygram:problem:malformed-json";
    /// The JSON is well formed but a field is missing, of the wrong type or invalid.
    pub const VALIDATION: &str = "urn:relaygram:problem:validation-failed";
    /// The body is not `application/json`.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "urn:relaygram:problem:unsupported-media-type";
    /// The body is larger than `max_body_bytes`.
    pub const PAYLOAD_TOO_LARGE: &str = "urn:relaygram:problem:payload-too-large";
    /// No API key, or an unknown or revoked one.
    pub const UNAUTHORIZED: &str = "urn:relaygram:problem:unauthorized";
    /// The key is valid but may not do this.
    pub const FORBIDDEN: &str = "urn:relaygram:problem:forbidden";
    /// No such resource (or it belongs to another tenant).
    pub const NOT_FOUND: &str = "urn:relaygram:problem:not-found";
    /// The route exists but not with this method.
    pub const METHOD_NOT_ALLOWED: &str = "urn:relaygram:problem:method-not-allowed";
    /// The resource already exists.
    pub const CONFLICT: &str = "urn:relaygram:problem:conflict";
    /// No target of a send reaches anyone (each is listed in `skipped` with the reason).
    pub const NO_RECIPIENTS: &str = "urn:relaygram:problem:no-recipients";
    /// An edit or delete of a message sent more than 48 hours ago.
    pub const EDIT_WINDOW_PASSED: &str = "urn:relaygram:problem:edit-window-passed";
    /// An entitlement already cancelled or revoked cannot change that way.
    pub const ENTITLEMENT_ENDED: &str = "urn:relaygram:problem:entitlement-ended";
    /// An edit or delete of a message that never reached Telegram.
    pub const NOT_DELIVERED: &str = "urn:relaygram:problem:not-delivered";
    /// An edit or delete of a message already deleted.
    pub const MESSAGE_DELETED: &str = "urn:relaygram:problem:message-deleted";
    /// An edit Telegram cannot make (a job, or the text of a message sent in parts).
    pub const NOT_EDITABLE: &str = "urn:relaygram:problem:not-editable";
    /// Telegram refused the bot token.
    pub const BOT_TOKEN_REJECTED: &str = "urn:relaygram:problem:bot-token-rejected";
    /// A webhook needs a public URL and none is configured.
    pub const NO_PUBLIC_URL: &str = "urn:relaygram:problem:no-public-url";
    /// Telegram is unreachable, failing or rate limiting us.
    pub const TELEGRAM_UNAVAILABLE: &str = "urn:relaygram:problem:telegram-unavailable";
    /// The store is not reachable.
    pub const NOT_READY: &str = "urn:relaygram:problem:not-ready";
    /// Something broke on our side; details are in the server log.
    pub const INTERNAL: &str = "urn:relaygram:problem:internal";
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:relaygram:problem:validation-failed",
    "title": "Validation failed",
    "status": 422,
    "detail": "name: invalid type: integer `5`, expected a string",
    "field": "name"
}))]
pub struct Problem {
    /// Stable problem type URI.
    #[serde(rename = "type")]
    pub type_uri: &'static str,
    /// Short summary of the problem type.
    pub title: &'static str,
    /// HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence.
    pub detail: String,
    /// The offending field (dotted path), where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Seconds to wait before retrying (rate limits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// `no-recipients`: every target with why it reaches nobody (`target`, `reason`,
    /// `detail`, as in a `202`'s `skipped`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub skipped: Option<Vec<serde_json::Value>>,
}

/// The error every handler returns.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    /// Boxed: handlers return `Result<_, AppError>` everywhere, and the problem is large.
    problem: Box<Problem>,
}

impl AppError {
    /// A problem with the given status, type, title and detail.
    pub fn new(
        status: StatusCode,
        type_uri: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> AppError {
        AppError {
            status,
            problem: Box::new(Problem {
                type_uri,
                title,
                status: status.as_u16(),
                detail: detail.into(),
                field: None,
                retry_after: None,
                skipped: None,
            }),
        }
    }

    /// Names the offending field.
    pub fn with_field(mut self, field: impl Into<String>) -> AppError {
        let field = field.into();
        if !field.is_empty() && field != "." {
            self.problem.field = Some(field);
        }
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// 400 malformed JSON.
    pub fn malformed_json(detail: impl Into<String>) -> AppError {
        AppError::new(
            StatusCode::BAD_REQUEST,
            types::MALFORMED_JSON,
            "Malformed JSON",
            detail,
        )
    }

    /// 422 validation failure.
    pub fn validation(field: &str, detail: impl Into<String>) -> AppError {
        AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            types::VALIDATION,
            "Validation failed",
            detail,
        )
        .with_field(field)
    }

    /// 400 for a query parameter: unknown, or a bad value (the problem type of a bad body
    /// field).
    pub fn bad_query(field: &str, detail: impl Into<String>) -> AppError {
        AppError::new(
            StatusCode::BAD_REQUEST,
            types::VALIDATION,
            "Invalid query parameter",
            detail,
        )
        .with_field(field)
    }

    /// 401.
    pub fn unauthorized(detail: impl Into<String>) -> AppError {
        AppError::new(
            StatusCode::UNAUTHORIZED,
            types::UNAUTHORIZED,
            "Unauthorized",
            detail,
        )
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> AppError {
        AppError::new(StatusCode::NOT_FOUND, types::NOT_FOUND, "Not found", detail)
    }

    /// 500 with a generic detail; the cause is logged, not returned.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> AppError {
        let mut chain = cause.to_string();
        let mut source = cause.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error = %chain, "internal error");
        AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            types::INTERNAL,
            "Internal error",
            "the server failed to handle this request; see its log",
        )
    }
}

impl From<ServiceError> for AppError {
    fn from(e: ServiceError) -> AppError {
        match e {
            ServiceError::Unauthenticated(d) => AppError::unauthorized(d),
            ServiceError::Forbidden(d) => {
                AppError::new(StatusCode::FORBIDDEN, types::FORBIDDEN, "Forbidden", d)
            }
            ServiceError::NotFound { .. } => AppError::not_found(e.to_string()),
            ServiceError::Invalid { field, message } => {
                AppError::validation(field, format!("{field}: {message}"))
            }
            ServiceError::InvalidQuery { field, message } => {
                AppError::bad_query(field, format!("{field}: {message}"))
            }
            ServiceError::NoRecipients { skipped } => {
                let mut err = AppError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    types::NO_RECIPIENTS,
                    "No recipients",
                    "no target of this request reaches anyone now (see `skipped`); nothing was queued",
                )
                .with_field("to");
                err.problem.skipped = Some(skipped);
                err
            }
            ServiceError::Refused {
                type_uri,
                title,
                detail,
            } => AppError::new(StatusCode::UNPROCESSABLE_ENTITY, type_uri, title, detail),
            ServiceError::BotTokenRejected(description) => AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                types::BOT_TOKEN_REJECTED,
                "Bot token rejected",
                format!("Telegram answered getMe with: {description}"),
            )
            .with_field("token"),
            ServiceError::Conflict(d) => {
                AppError::new(StatusCode::CONFLICT, types::CONFLICT, "Conflict", d)
            }
            ServiceError::NoPublicUrl => AppError::new(
                StatusCode::CONFLICT,
                types::NO_PUBLIC_URL,
                "No public URL",
                e.to_string(),
            ),
            ServiceError::Telegram(TelegramError::RetryAfter { seconds }) => {
                let mut err = AppError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    types::TELEGRAM_UNAVAILABLE,
                    "Telegram unavailable",
                    format!("Telegram asked us to retry after {seconds}s"),
                );
                err.problem.retry_after = Some(seconds);
                err
            }
            ServiceError::Telegram(t) => AppError::new(
                StatusCode::BAD_GATEWAY,
                types::TELEGRAM_UNAVAILABLE,
                "Telegram unavailable",
                t.to_string(),
            ),
            ServiceError::Store(ref s) => AppError::internal(s),
            ServiceError::Crypto(ref c) => AppError::internal(c),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"relaygram\""),
            );
        }
        if let Some(seconds) = self.problem.retry_after
            && let Ok(v) = HeaderValue::from_str(&seconds.to_string())
        {
            headers.insert(header::RETRY_AFTER, v);
        }
        response
    }
}

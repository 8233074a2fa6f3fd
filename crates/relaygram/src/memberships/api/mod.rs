//! HTTP handlers and bodies for `/v1/gated-chats`, `/v1/gated-chat-tokens`,
//! `/v1/entitlements` and `/v1/memberships`, one file each. Registered (with their OpenAPI
//! documentation) in [`crate::api`].

mod entitlements;
mod gated_chats;
mod memberships;
mod tokens;

pub use entitlements::*;
pub use gated_chats::*;
pub use memberships::*;
pub use tokens::*;

use crate::http::AppError;
use crate::schedules::occurrence::Interval;
use crate::services::ServiceError;

pub(super) const PROBLEM: &str = "application/problem+json";
pub(super) type ApiResult<T> = Result<T, AppError>;

pub(super) fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

/// `3d`, `12h`, `30m` as seconds.
pub(super) fn span_seconds(field: &'static str, text: &str) -> Result<i64, ServiceError> {
    Interval::parse(text)
        .map(|i| i.approx_millis() / 1000)
        .map_err(|_| {
            invalid(
                field,
                format!("{text:?} is not a duration such as 3d, 12h or 30m"),
            )
        })
}

pub(super) fn parse_time(field: &'static str, text: &str) -> Result<i64, ServiceError> {
    text.trim()
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| {
            invalid(
                field,
                "must be an RFC 3339 time such as 2026-12-31T09:00:00Z",
            )
        })
}

//! The HTTP edge of digests: list and read them (items are added through
//! `POST /v1/messages` with `digest`).

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::http::problem::Problem;
use crate::http::views::{PageSize, page};
use crate::http::{ApiQuery, AppError, AppState, Auth};
use crate::ids::rfc3339;
use crate::services::ServiceError;
use crate::store::DigestRecord;

type ApiResult<T> = Result<T, AppError>;
const PROBLEM: &str = "application/problem+json";

/// A digest: items collected for one key and recipient, and what became of them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "dig_01jd8y3k7q9x4m2n5p6r7s8t9v", "key": "daily-report",
    "recipient": {"bot_id": null, "to": {"link_id": "link_01jd8y3k7q9x4m2n5p6r7s8t9v"}},
    "status": "sent", "items": 3, "template": null, "schedule_id": null,
    "close_at": "2026-11-23T09:00:00Z", "closed_at": "2026-11-23T09:00:00.120Z",
    "request_id": "req_01jd8y3k7q9x4m2n5p6r7s8t9v", "message_ids": ["msg_01jd8y3k7q9x4m2n5p6r7s8t9v"],
    "error": null, "created_at": "2026-11-23T08:00:00Z"}))]
pub struct DigestView {
    /// Opaque id.
    pub id: String,
    /// The app's digest key.
    pub key: String,
    /// The target as written, and the bot: `{"bot_id", "to"}`.
    #[schema(value_type = Object)]
    pub recipient: Value,
    /// `open` (collecting), `closing` (being handed to delivery), `sent` or `failed`.
    pub status: String,
    /// Items in it.
    pub items: i64,
    /// The stored template that renders it (the built-in list when null).
    pub template: Option<String>,
    /// The schedule that closes it.
    pub schedule_id: Option<String>,
    /// When it closes (RFC 3339).
    pub close_at: String,
    /// When it closed.
    pub closed_at: Option<String>,
    /// The delivery request it became.
    pub request_id: Option<String>,
    /// Its outbox messages (`GET /v1/messages/{id}`).
    pub message_ids: Vec<String>,
    /// Why delivery refused it (`failed`).
    pub error: Option<String>,
    /// When its first item came.
    pub created_at: String,
}

impl From<DigestRecord> for DigestView {
    fn from(d: DigestRecord) -> Self {
        DigestView {
            recipient: serde_json::from_str(&d.recipient).unwrap_or(Value::Null),
            message_ids: serde_json::from_str(&d.message_ids).unwrap_or_default(),
            close_at: rfc3339(d.close_at),
            closed_at: d.closed_at.map(rfc3339),
            created_at: rfc3339(d.created_at),
            id: d.id,
            key: d.key,
            status: d.status,
            items: d.items,
            template: d.template,
            schedule_id: d.schedule_id,
            request_id: d.request_id,
            error: d.error,
        }
    }
}

/// A page of digests.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DigestList {
    /// Digests, oldest first.
    pub data: Vec<DigestView>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Filters and paging for `GET /v1/digests`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DigestListParams {
    /// Only this key.
    pub key: Option<String>,
    /// Only this status: `open`, `closing`, `sent`, `failed`.
    #[param(schema_with = digest_status_schema)]
    pub status: Option<String>,
    /// The tenant (required with an admin key).
    pub tenant_id: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<PageSize>,
    /// Cursor: `next_cursor` of the previous page.
    pub after: Option<String>,
}

/// The tenant's digests, oldest first.
#[utoipa::path(
    get, path = "/v1/digests", tag = "digests",
    params(DigestListParams),
    responses(
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 200, description = "A page of digests", body = DigestList),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "tenant_id names another tenant", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid limit or status, or no tenant_id with an admin key", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn list_digests(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiQuery(params): ApiQuery<DigestListParams>,
) -> ApiResult<Json<DigestList>> {
    let page = page(params.limit, params.after);
    if let Some(s) = &params.status
        && !["open", "closing", "sent", "failed"].contains(&s.as_str())
    {
        return Err(AppError::bad_query(
            "status",
            "status: must be open, closing, sent or failed",
        ));
    }
    let tenant = state
        .services
        .acting_tenant(&principal, params.tenant_id.as_deref())
        .await?;
    let listed = state
        .services
        .store
        .list_digests(
            &tenant,
            params.key.as_deref(),
            params.status.as_deref(),
            &page,
        )
        .await
        .map_err(ServiceError::from)?;
    Ok(Json(DigestList {
        data: listed.items.into_iter().map(Into::into).collect(),
        next_cursor: listed.next_cursor,
    }))
}

/// One digest.
#[utoipa::path(
    get, path = "/v1/digests/{id}", tag = "digests",
    params(("id" = String, Path, description = "Digest id")),
    responses(
        (status = 200, description = "The digest", body = DigestView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such digest (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn get_digest(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<DigestView>> {
    let digest = state
        .services
        .store
        .get_digest(None, &id)
        .await
        .map_err(ServiceError::from)?
        .filter(|d| principal.can_access(&d.tenant_id))
        .ok_or_else(|| ServiceError::NotFound {
            kind: "digest",
            id: id.clone(),
        })?;
    Ok(Json(digest.into()))
}

fn digest_status_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::delivery::request::json_schema(serde_json::json!({
        "type": "string", "enum": ["open", "closing", "sent", "failed"],
        "description": "Only digests in this status"
    }))
}

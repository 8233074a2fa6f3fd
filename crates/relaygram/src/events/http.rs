//! HTTP handlers and bodies of the events API: endpoints, the pull API, event details
//! and replays. Registered in `api::routes()`.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::problem::Problem;
use crate::http::views::{PageSize, page};
use crate::http::{ApiJson, ApiQuery, AppError, AppState, Auth};
use crate::ids::rfc3339;
use crate::store::{AttemptRecord, DeliveryRecord, DeliveryStatus, EndpointRecord, EventRecord};

const PROBLEM: &str = "application/problem+json";

/// `POST /v1/event-endpoints`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://app.example.com/hooks/relaygram",
    "description": "production backend", "event_types": ["command.received", "link.*"]}))]
pub struct CreateEndpointRequest {
    /// Where events are POSTed: an `http://` or `https://` URL.
    pub url: String,
    /// Free text, up to 500 characters.
    pub description: Option<String>,
    /// Types to receive: exact (`link.created`) or prefix patterns (`message.*`).
    /// Omit (or null) for every type.
    #[schema(schema_with = event_types_schema)]
    pub event_types: Option<Vec<String>>,
    /// Owning tenant: required with an admin key, implied by a tenant key.
    pub tenant_id: Option<String>,
}

/// An event endpoint. The secret is never included after creation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "ep_01jd8y3k7q9x4m2n5p6r7s8t9v", "tenant_id": "ten_01jd8y3k7q9x4m2n5p6r7s8t9v",
    "url": "https://app.example.com/hooks/relaygram", "description": "production backend",
    "event_types": ["command.received", "link.*"], "enabled": true, "created_at": "2026-11-21T05:00:00Z"}))]
pub struct EndpointView {
    /// Opaque id.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Where events are POSTed.
    pub url: String,
    /// Free text.
    pub description: String,
    /// Types received; null = every type.
    pub event_types: Option<Vec<String>>,
    /// Whether new events are delivered to it.
    pub enabled: bool,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
}

impl From<EndpointRecord> for EndpointView {
    fn from(e: EndpointRecord) -> Self {
        EndpointView {
            id: e.id,
            tenant_id: e.tenant_id,
            url: e.url,
            description: e.description,
            event_types: e.event_types,
            enabled: e.enabled,
            created_at: rfc3339(e.created_at),
        }
    }
}

/// A new endpoint: `secret` is shown this once; verify deliveries with it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "ep_01jd8y3k7q9x4m2n5p6r7s8t9v", "tenant_id": "ten_01jd8y3k7q9x4m2n5p6r7s8t9v",
    "url": "https://app.example.com/hooks/relaygram", "description": "production backend",
    "event_types": null, "enabled": true, "created_at": "2026-11-21T05:00:00Z",
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}))]
pub struct CreatedEndpointView {
    /// Opaque id.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Where events are POSTed.
    pub url: String,
    /// Free text.
    pub description: String,
    /// Types received; null = every type.
    pub event_types: Option<Vec<String>>,
    /// Whether new events are delivered to it.
    pub enabled: bool,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
    /// The Standard Webhooks signing secret (`whsec_…`). Store it now.
    pub secret: String,
}

/// A page of endpoints.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EndpointList {
    /// Endpoints in id order.
    pub data: Vec<EndpointView>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Endpoint list parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EndpointListParams {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<PageSize>,
    /// Cursor: `next_cursor` of the previous page.
    pub after: Option<String>,
    /// Only this tenant's endpoints (admin keys; tenant keys always see their own).
    pub tenant_id: Option<String>,
}

/// Pull parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PullParams {
    /// Cursor: `next_cursor` of the previous pull. Omit to start from the oldest event.
    pub after: Option<String>,
    /// Seconds to wait when no event is there yet, 0 to 30 (default 0).
    #[param(minimum = 0, maximum = 30)]
    pub wait: Option<u64>,
    /// Most events to return, 1 to 200 (default 50).
    pub limit: Option<PageSize>,
    /// Only this type (`link.created`) or pattern (`message.*`).
    #[serde(rename = "type")]
    #[param(
        rename = "type",
        pattern = r"^(?:[a-z0-9._-]*\.)?\*$|^[a-z0-9._-]+$",
        max_length = 100
    )]
    pub event_type: Option<String>,
    /// The tenant (required with an admin key).
    pub tenant_id: Option<String>,
}

/// An event, as pulled and as POSTed to endpoints (plus `cursor`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "evt_01jd8y3k7q9x4m2n5p6r7s8t9v", "type": "command.received",
    "timestamp": "2026-11-21T05:00:00.123Z", "tenant_id": "ten_01jd8y3k7q9x4m2n5p6r7s8t9v",
    "data": {"command": "/order", "args": "42"}, "cursor": "17"}))]
pub struct EventView {
    /// Opaque id (the `webhook-id` of its deliveries).
    pub id: String,
    /// Event type: `command.received`, `message.received`, `callback.received`,
    /// `chat.stopped`, `chat.member_updated`, `chat.migrated`, `link.created`,
    /// `link.updated`, `link.removed`, `message.failed`, `message.dead`,
    /// `message.cancelled`, …
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it happened (RFC 3339, UTC).
    pub timestamp: String,
    /// The tenant.
    pub tenant_id: String,
    /// The event's data. `message.cancelled` (one per request, when a recipient's link
    /// ended or its chat was lost before sending): `{"request_id", "broadcast_id",
    /// "bot_id", "chat_ids", "reason", "count", "message_ids"}`, `reason` one of
    /// `stopped_by_user`, `link_deleted`, `chat_blocked`, `bot_removed`,
    /// `chat_unreachable`, `link_ended`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// This event's position: pass as `after` to read what follows it.
    pub cursor: String,
}

impl From<EventRecord> for EventView {
    fn from(e: EventRecord) -> Self {
        EventView {
            data: serde_json::from_str(&e.data).unwrap_or(serde_json::Value::Null),
            id: e.id,
            event_type: e.event_type,
            timestamp: rfc3339(e.created_at),
            tenant_id: e.tenant_id,
            cursor: e.seq.to_string(),
        }
    }
}

/// A pull's answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"data": [{"id": "evt_01jd8y3k7q9x4m2n5p6r7s8t9v", "type": "command.received",
    "timestamp": "2026-11-21T05:00:00.123Z", "tenant_id": "ten_01jd8y3k7q9x4m2n5p6r7s8t9v",
    "data": {"command": "/order"}, "cursor": "17"}], "next_cursor": "17"}))]
pub struct EventPage {
    /// Events in order.
    pub data: Vec<EventView>,
    /// Pass as `after` on the next pull (unchanged when no event came).
    pub next_cursor: String,
}

/// One delivery attempt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    /// Opaque id.
    pub id: String,
    /// When it started (RFC 3339, UTC).
    pub attempted_at: String,
    /// HTTP status, when the endpoint answered.
    pub status_code: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: i64,
}

impl From<AttemptRecord> for AttemptView {
    fn from(a: AttemptRecord) -> Self {
        AttemptView {
            id: a.id,
            attempted_at: rfc3339(a.attempted_at),
            status_code: a.status_code,
            error: a.error,
            duration_ms: a.duration_ms,
        }
    }
}

/// An event's delivery to one endpoint.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    /// Opaque id.
    pub id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// `pending`, `delivered` or `failed`.
    pub status: DeliveryStatus,
    /// Attempts in the current round (a replay starts a new one).
    pub attempts: i64,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<String>,
    /// HTTP status of the last attempt.
    pub last_status_code: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the endpoint acknowledged it.
    pub delivered_at: Option<String>,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<AttemptView>,
}

fn delivery_view(d: DeliveryRecord, attempts: &[AttemptRecord]) -> DeliveryView {
    DeliveryView {
        attempt_log: attempts
            .iter()
            .filter(|a| a.delivery_id == d.id)
            .cloned()
            .map(Into::into)
            .collect(),
        id: d.id,
        endpoint_id: d.endpoint_id,
        status: d.status,
        attempts: d.attempts,
        next_attempt_at: (d.status == DeliveryStatus::Pending).then(|| rfc3339(d.next_attempt_at)),
        last_status_code: d.last_status_code,
        last_error: d.last_error,
        delivered_at: d.delivered_at.map(rfc3339),
    }
}

/// An event with its deliveries and their attempts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "evt_01jd8y3k7q9x4m2n5p6r7s8t9v", "type": "command.received",
    "timestamp": "2026-11-21T05:00:00.123Z", "tenant_id": "ten_01jd8y3k7q9x4m2n5p6r7s8t9v",
    "data": {"command": "/order"}, "cursor": "17", "deliveries": [{"id": "dlv_01jd8y3k7q9x4m2n5p6r7s8t9v",
    "endpoint_id": "ep_01jd8y3k7q9x4m2n5p6r7s8t9v", "status": "delivered", "attempts": 2,
    "next_attempt_at": null, "last_status_code": 200, "last_error": null,
    "delivered_at": "2026-11-21T05:00:05.301Z", "attempt_log": [
        {"id": "att_01jd8y3k7q9x4m2n5p6r7s8t9v", "attempted_at": "2026-11-21T05:00:00.130Z",
         "status_code": 500, "error": "endpoint answered HTTP 500", "duration_ms": 12},
        {"id": "att_01jd8y3k7q9x4m2n5p6r7s8t9w", "attempted_at": "2026-11-21T05:00:05.290Z",
         "status_code": 200, "error": null, "duration_ms": 11}]}]}))]
pub struct EventDetailView {
    /// Opaque id.
    pub id: String,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When it happened (RFC 3339, UTC).
    pub timestamp: String,
    /// The tenant.
    pub tenant_id: String,
    /// The event's data.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// Its pull cursor.
    pub cursor: String,
    /// Deliveries to endpoints.
    pub deliveries: Vec<DeliveryView>,
}

/// `POST /v1/events/{id}/replay`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"endpoint_id": "ep_01jd8y3k7q9x4m2n5p6r7s8t9v"}))]
pub struct ReplayRequest {
    /// Only this endpoint (of the event's tenant, whatever its filter). Omit for every
    /// enabled endpoint that wants the event's type.
    pub endpoint_id: Option<String>,
}

/// What a replay scheduled.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"event_id": "evt_01jd8y3k7q9x4m2n5p6r7s8t9v",
    "deliveries": ["dlv_01jd8y3k7q9x4m2n5p6r7s8t9v"]}))]
pub struct ReplayView {
    /// The event.
    pub event_id: String,
    /// Deliveries now pending and due at once.
    pub deliveries: Vec<String>,
}

type ApiResult<T> = Result<T, AppError>;

/// Create an event endpoint. Its `whsec_` signing secret is returned this once.
#[utoipa::path(
    post, path = "/v1/event-endpoints", tag = "events",
    request_body = CreateEndpointRequest,
    responses(
        (status = 201, description = "Created; `secret` is shown only now", body = CreatedEndpointView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "tenant_id names another tenant", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Too many endpoints for this tenant", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid field (e.g. a URL that is not http(s))", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn create_event_endpoint(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiJson(body): ApiJson<CreateEndpointRequest>,
) -> ApiResult<(StatusCode, Json<CreatedEndpointView>)> {
    let created = super::create_endpoint(
        &state.services,
        &principal,
        super::NewEndpoint {
            url: body.url,
            description: body.description,
            event_types: body.event_types,
            tenant_id: body.tenant_id,
        },
    )
    .await?;
    let e = created.endpoint;
    Ok((
        StatusCode::CREATED,
        Json(CreatedEndpointView {
            id: e.id,
            tenant_id: e.tenant_id,
            url: e.url,
            description: e.description,
            event_types: e.event_types,
            enabled: e.enabled,
            created_at: rfc3339(e.created_at),
            secret: created.secret.expose_secret().to_string(),
        }),
    ))
}

/// List event endpoints (a tenant key sees its own; an admin key all, or `tenant_id`'s).
#[utoipa::path(
    get, path = "/v1/event-endpoints", tag = "events",
    params(EndpointListParams),
    responses(
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 200, description = "A page of endpoints", body = EndpointList),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid limit or tenant_id", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn list_event_endpoints(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiQuery(params): ApiQuery<EndpointListParams>,
) -> ApiResult<Json<EndpointList>> {
    let page = page(params.limit, params.after);
    let listed = super::list_endpoints(
        &state.services,
        &principal,
        params.tenant_id.as_deref(),
        &page,
    )
    .await?;
    Ok(Json(EndpointList {
        data: listed.items.into_iter().map(Into::into).collect(),
        next_cursor: listed.next_cursor,
    }))
}

/// Get one event endpoint (without its secret).
#[utoipa::path(
    get, path = "/v1/event-endpoints/{id}", tag = "events",
    params(("id" = String, Path, description = "Endpoint id")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such endpoint (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn get_event_endpoint(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<EndpointView>> {
    let endpoint = super::get_endpoint(&state.services, &principal, &id).await?;
    Ok(Json(endpoint.into()))
}

/// Delete an event endpoint with its deliveries and their attempt log; events stay.
#[utoipa::path(
    delete, path = "/v1/event-endpoints/{id}", tag = "events",
    params(("id" = String, Path, description = "Endpoint id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such endpoint (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn delete_event_endpoint(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    super::delete_endpoint(&state.services, &principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pull events after a cursor (long-poll): answers at once when events are there, else
/// waits up to `wait` seconds for one. Loop with `after = next_cursor`.
#[utoipa::path(
    get, path = "/v1/events", tag = "events",
    params(PullParams),
    responses(
        (status = 200, description = "Events after the cursor (maybe none after waiting)", body = EventPage),
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "tenant_id names another tenant", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid cursor, wait, limit, type or tenant_id", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn pull_events(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiQuery(params): ApiQuery<PullParams>,
) -> ApiResult<Json<EventPage>> {
    let limit = page(params.limit, None).limit;
    if let Some(t) = &params.event_type {
        super::validate_type_pattern("type", t)
            .map_err(|e| AppError::bad_query("type", e.to_string()))?;
    }
    let wait = params.wait.unwrap_or(0);
    if wait > super::MAX_WAIT.as_secs() {
        return Err(AppError::bad_query("wait", "wait: must be 0 to 30 seconds"));
    }
    let pulled = super::pull(
        &state.services,
        &principal,
        super::Pull {
            tenant_id: params.tenant_id,
            after: params.after,
            wait: Duration::from_secs(wait),
            limit,
            event_type: params.event_type,
        },
    )
    .await?;
    Ok(Json(EventPage {
        data: pulled.events.into_iter().map(Into::into).collect(),
        next_cursor: pulled.next_cursor,
    }))
}

/// Get one event with its deliveries and every attempt.
#[utoipa::path(
    get, path = "/v1/events/{id}", tag = "events",
    params(("id" = String, Path, description = "Event id")),
    responses(
        (status = 200, description = "The event", body = EventDetailView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such event (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn get_event(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<EventDetailView>> {
    let detail = super::event_detail(&state.services, &principal, &id).await?;
    let view = EventView::from(detail.event);
    Ok(Json(EventDetailView {
        id: view.id,
        event_type: view.event_type,
        timestamp: view.timestamp,
        tenant_id: view.tenant_id,
        data: view.data,
        cursor: view.cursor,
        deliveries: detail
            .deliveries
            .into_iter()
            .map(|d| delivery_view(d, &detail.attempts))
            .collect(),
    }))
}

/// Deliver an event again now: to every enabled endpoint that wants its type, or to
/// `endpoint_id` only. Starts a new retry round.
#[utoipa::path(
    post, path = "/v1/events/{id}/replay", tag = "events",
    params(("id" = String, Path, description = "Event id")),
    request_body(content = ReplayRequest, description = "Optional; may be empty"),
    responses(
        (status = 202, description = "Scheduled", body = ReplayView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such event (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 422, description = "endpoint_id is not an endpoint of the event's tenant", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn replay_event(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReplayRequest>,
) -> ApiResult<(StatusCode, Json<ReplayView>)> {
    let deliveries = super::replay(
        &state.services,
        &principal,
        &id,
        body.endpoint_id.as_deref(),
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ReplayView {
            event_id: id,
            deliveries,
        }),
    ))
}

/// `event_types`: exact types or prefix patterns, as [`super::validate_type_pattern`] reads them.
fn event_types_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::delivery::request::json_schema(serde_json::json!({
        "type": ["array", "null"],
        "items": {"type": "string", "maxLength": 100,
                  "pattern": r"^(?:[a-z0-9._-]*\.)?\*$|^[a-z0-9._-]+$"},
        "description": "Types to receive: exact (`link.created`) or prefix patterns \
            (`message.*`, `*`); omit (or null) for every type",
        "example": ["link.*", "message.failed"]
    }))
}

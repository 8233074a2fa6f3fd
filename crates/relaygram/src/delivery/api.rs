//! HTTP handlers for `/v1/messages`, `/v1/broadcasts`, `/v1/stats` and
//! `/v1/bots/{id}/limits`. Registered (with their OpenAPI documentation) in [`crate::api`].

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::edit::{EditAccepted, EditRequest};
use super::jobs::{BotLimitsBody, BotLimitsView, BroadcastList, BroadcastView, StatsView};
use super::{Accepted, Origin, SendRequest, default_limits};
use crate::http::problem::Problem;
use crate::http::views::{PageSize, page};
use crate::http::{ApiJson, ApiQuery, AppError, AppState, Auth};
use crate::ids::rfc3339;
use crate::store::{ListOrder, MessageFilter, MessageRecord};

const PROBLEM: &str = "application/problem+json";

type ApiResult<T> = Result<T, AppError>;

/// Which tenant (admin keys only).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TenantParam {
    /// The tenant (required with an admin key; a tenant key acts on its own).
    pub tenant_id: Option<String>,
}

/// One message with its delivery record.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "msg_01jd8y3k7q9x4m2n5p6r7s8t9w", "request_id": "req_01jd8y3k7q9x4m2n5p6r7s8t9v",
    "bot_id": "bot_01jd8y3k7q9x4m2n5p6r7s8t9x", "chat_id": 100000001, "status": "sent", "priority": 0,
    "attempts": 1, "retries": 0, "rate_limited": 0, "parts_sent": 1, "telegram_message_ids": [42],
    "errors": [], "send_at": "2026-11-21T05:00:00Z", "created_at": "2026-11-21T05:00:00Z",
    "updated_at": "2026-11-21T05:00:00.120Z", "finished_at": "2026-11-21T05:00:00.120Z"}))]
pub struct MessageView {
    /// Message id.
    pub id: String,
    /// The request it came from.
    pub request_id: String,
    /// Sending bot.
    pub bot_id: String,
    /// Telegram chat (the new id after a group migration).
    pub chat_id: i64,
    /// Link it was addressed through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_id: Option<String>,
    /// Broadcast it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broadcast_id: Option<String>,
    /// `queued`, `paused`, `sending`, `sent`, `throttled`, `failed`, `dead`, `unknown` or
    /// `cancelled`.
    pub status: String,
    /// Priority.
    pub priority: i64,
    /// Attempts made.
    pub attempts: i64,
    /// Retries after transient failures.
    pub retries: i64,
    /// 429s received.
    pub rate_limited: i64,
    /// Parts delivered (long texts are several Telegram messages).
    pub parts_sent: i64,
    /// Telegram `message_id` of each delivered part.
    pub telegram_message_ids: Vec<i64>,
    /// Class of the last error: `retry_after`, `transient`, `chat_gone`, `migrated`,
    /// `bad_request`, `unauthorized`, `ambiguous`, `interrupted`. For a `cancelled` message
    /// whose recipient withdrew, the reason: `stopped_by_user`, `link_deleted`,
    /// `chat_blocked`, `bot_removed`, `chat_unreachable` or `link_ended` (docs/delivery.md).
    #[schema(example = "chat_blocked")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// The last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Every error (the last 20): `{at, attempt, class, error}`.
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<Value>,
    /// Not before. With `send_at_local`: first the earliest instant that local time occurs
    /// anywhere (UTC+14), then, once the sender has looked at the message, the recipient's
    /// own instant.
    pub send_at: String,
    /// The local send time asked for (`2026-11-22T09:00:00`): the message goes at that
    /// wall-clock time in the recipient's zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_at_local: Option<String>,
    /// With `send_at_local`: the zone for a recipient whose link has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_timezone: Option<String>,
    /// Next attempt (while queued after a failure or a 429).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// Accepted at.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// Reached its final state at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The category of the fan-out (`{"category": …}` target) that made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// While `queued`: why it waits aside, `quiet` (its link's quiet hours, until
    /// `next_attempt_at`) or `local` (its `send_at_local`, until `send_at`). A held
    /// message does not hold up later messages to its chat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// `send` (a message), or `edit` / `delete` for a job changing the sent message
    /// `edit_of` in Telegram (`PATCH`/`DELETE /v1/messages/{id}`).
    pub kind: String,
    /// The message an edit or delete job acts on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edit_of: Option<String>,
    /// When an edit of it last reached Telegram.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<String>,
    /// When a delete of it reached Telegram (it is gone from the chat).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    /// The `metadata` its send carried (shown by `GET /v1/messages/{id}`, not in lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

impl From<MessageRecord> for MessageView {
    fn from(m: MessageRecord) -> Self {
        MessageView {
            next_attempt_at: (m.status == "queued" && m.next_attempt_at > m.send_at)
                .then(|| rfc3339(m.next_attempt_at)),
            held: m
                .held
                .filter(|_| m.status == "queued" || m.status == "paused"),
            id: m.id,
            request_id: m.request_id,
            bot_id: m.bot_id,
            chat_id: m.chat_id,
            link_id: m.link_id,
            broadcast_id: m.broadcast_id,
            status: m.status,
            priority: m.priority,
            attempts: m.attempts,
            retries: m.retries,
            rate_limited: m.rate_limited,
            parts_sent: m.parts_sent,
            telegram_message_ids: serde_json::from_str(&m.telegram_message_ids).unwrap_or_default(),
            error_class: m.error_class,
            last_error: m.last_error,
            errors: serde_json::from_str(&m.errors).unwrap_or_default(),
            send_at: rfc3339(m.send_at),
            send_at_local: m.local_at,
            default_timezone: m.local_zone,
            created_at: rfc3339(m.created_at),
            updated_at: rfc3339(m.updated_at),
            finished_at: m.finished_at.map(rfc3339),
            category: m.category,
            kind: m.kind,
            edit_of: m.edit_of,
            edited_at: m.edited_at.map(rfc3339),
            deleted_at: m.deleted_at.map(rfc3339),
            metadata: None,
        }
    }
}

/// A page of messages.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageList {
    /// Messages, newest first (or oldest first with `order=asc`).
    pub data: Vec<MessageView>,
    /// Cursor for the next page.
    pub next_cursor: Option<String>,
}

/// Filters of `GET /v1/messages`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MessageListParams {
    /// The tenant (required with an admin key; a tenant key acts on its own).
    pub tenant_id: Option<String>,
    /// Only this state.
    #[param(schema_with = message_status_schema)]
    pub status: Option<String>,
    /// Only this bot.
    pub bot_id: Option<String>,
    /// Only this chat.
    pub chat_id: Option<i64>,
    /// Only this broadcast.
    pub broadcast_id: Option<String>,
    /// Only messages addressed through this link.
    pub link_id: Option<String>,
    /// Only messages addressed through a link of this app user (whichever target named it).
    pub external_id: Option<String>,
    /// Only messages of a fan-out to this category (`{"category": …}` targets).
    pub category: Option<String>,
    /// Only the messages of this request (`request_id` of the `202`).
    pub request_id: Option<String>,
    /// Only accepted at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Only accepted before this time (RFC 3339).
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// `desc` (newest first, the default) or `asc`.
    #[param(schema_with = order_schema)]
    pub order: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<PageSize>,
    /// Cursor: `next_cursor` of the previous page (in the same order).
    pub after: Option<String>,
}

/// Filters and window of `GET /v1/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatsParams {
    /// The tenant (an admin key without it counts every tenant).
    pub tenant_id: Option<String>,
    /// Only this state.
    #[param(schema_with = message_status_schema)]
    pub status: Option<String>,
    /// Only this bot.
    pub bot_id: Option<String>,
    /// Only this chat.
    pub chat_id: Option<i64>,
    /// Only this broadcast.
    pub broadcast_id: Option<String>,
    /// Only messages addressed through this link.
    pub link_id: Option<String>,
    /// Only messages addressed through a link of this app user.
    pub external_id: Option<String>,
    /// Only messages of a fan-out to this category.
    pub category: Option<String>,
    /// Only the messages of this request.
    pub request_id: Option<String>,
    /// Window start: accepted at or after this time (RFC 3339).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Window end: accepted before this time (RFC 3339).
    #[param(format = DateTime)]
    pub until: Option<String>,
}

fn time(field: &'static str, value: Option<&str>) -> ApiResult<Option<i64>> {
    value
        .map(|v| {
            v.parse::<jiff::Timestamp>()
                .map(|t| t.as_millisecond())
                .map_err(|e| {
                    AppError::bad_query(field, format!("{field}: must be an RFC 3339 time: {e}"))
                })
        })
        .transpose()
}

fn since(value: Option<&str>) -> ApiResult<Option<i64>> {
    time("since", value)
}

/// The window `[since, until)`; an empty or reversed one is refused (it would count
/// nothing and look like an answer).
fn window(
    since_text: Option<&str>,
    until_text: Option<&str>,
) -> ApiResult<(Option<i64>, Option<i64>)> {
    let (since, until) = (since(since_text)?, time("until", until_text)?);
    if let (Some(s), Some(u)) = (since, until)
        && u <= s
    {
        return Err(AppError::bad_query(
            "until",
            "until: must be later than since",
        ));
    }
    Ok((since, until))
}

/// A message state, as the `status` filters take it.
fn message_status_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    let mut states = vec!["queued", "paused", "sending"];
    states.extend(crate::store::FINAL_STATES);
    super::request::json_schema(serde_json::json!({
        "type": "string", "enum": states, "description": "Only messages in this state"
    }))
}

fn order_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    super::request::json_schema(serde_json::json!({
        "type": "string", "enum": ["desc", "asc"],
        "description": "`desc` (newest first, the default) or `asc`"
    }))
}

fn retry_status_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    super::request::json_schema(serde_json::json!({
        "type": ["string", "null"], "enum": ["dead", "failed", "unknown", null],
        "description": "`dead` (default), `failed`, or `unknown` (with `anyway`)"
    }))
}

/// A `status` filter: a message state, or 400 (a typo must not count or list nothing).
fn status(value: Option<String>) -> ApiResult<Option<String>> {
    match value {
        Some(s) if !super::service::is_status(&s) => Err(AppError::bad_query(
            "status",
            format!(
                "status: {s:?} is not a message state (queued, paused, sending, {})",
                crate::store::FINAL_STATES.join(", ")
            ),
        )),
        other => Ok(other),
    }
}

fn order(value: Option<&str>) -> ApiResult<ListOrder> {
    match value {
        None | Some("desc") => Ok(ListOrder::Desc),
        Some("asc") => Ok(ListOrder::Asc),
        Some(_) => Err(AppError::bad_query(
            "order",
            "order: must be desc (newest first, the default) or asc",
        )),
    }
}

/// `POST /v1/messages/{id}/retry`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryOne {
    /// Send an `unknown` message again although it may have been delivered.
    #[serde(default)]
    pub anyway: bool,
}

/// `POST /v1/messages/retry`: re-drive every message matching the filter.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryMany {
    /// `dead` (default), `failed`, or `unknown` (with `anyway`).
    #[serde(default)]
    #[schema(schema_with = retry_status_schema)]
    pub status: Option<String>,
    /// Only this bot.
    #[serde(default)]
    pub bot_id: Option<String>,
    /// Only this chat.
    #[serde(default)]
    pub chat_id: Option<i64>,
    /// Only this broadcast.
    #[serde(default)]
    pub broadcast_id: Option<String>,
    /// Only accepted at or after (RFC 3339).
    #[serde(default)]
    #[schema(format = DateTime)]
    pub since: Option<String>,
    /// Needed to re-send `unknown` messages.
    #[serde(default)]
    pub anyway: bool,
}

/// How many messages were queued again.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Requeued {
    /// Messages queued again.
    pub requeued: u64,
}

/// Queue a message (or a fan-out) for delivery. The messages are stored before the answer;
/// the senders deliver them within Telegram's limits.
#[utoipa::path(
    post, path = "/v1/messages", tag = "messages",
    params(TenantParam, ("Idempotency-Key" = Option<String>, Header, description = "Same key and body within 24 h → the same answer; another body → 409")),
    request_body = SendRequest,
    responses(
        (status = 202, description = "Stored and queued (or throttled)", body = Accepted),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "tenant_id names another tenant", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The Idempotency-Key was used with another body", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid request (an unknown category or connect code, no bot, a bad field), or no target reaches anyone now (`no-recipients`, each target listed in `skipped` with its reason); nothing stored", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn send_message(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiQuery(q): ApiQuery<TenantParam>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SendRequest>,
) -> ApiResult<(StatusCode, Json<Accepted>)> {
    let tenant = state
        .services
        .acting_tenant(&principal, q.tenant_id.as_deref())
        .await?;
    let idempotency_key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    AppError::validation(
                        "Idempotency-Key",
                        "Idempotency-Key: must be visible ASCII",
                    )
                })?
                .to_string(),
        ),
        None => None,
    };
    let accepted = state
        .services
        .accept_message(&tenant, body, Origin::Api { idempotency_key })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// One message with its attempts, errors and Telegram message ids.
#[utoipa::path(
    get, path = "/v1/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "Message id"), TenantParam),
    responses(
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 200, description = "The message", body = MessageView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such message (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn get_message(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TenantParam>,
) -> ApiResult<Json<MessageView>> {
    let tenant = state
        .services
        .acting_tenant(&principal, q.tenant_id.as_deref())
        .await?;
    let message = state.services.get_message(&tenant, &id).await?;
    let metadata = state.services.send_metadata(&message.request_id).await?;
    Ok(Json(MessageView {
        metadata,
        ..message.into()
    }))
}

/// Edits a message: a sent one in Telegram (through an edit job in its chat's lane, paced
/// like sends), a queued one by replacing what it will send. Telegram's rules are checked
/// first: nothing is queued when they refuse.
#[utoipa::path(
    patch, path = "/v1/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "Message id"), TenantParam),
    request_body = EditRequest,
    responses(
        (status = 202, description = "An edit job was queued (`queued`), or the message, not sent yet, got the new content (`replaced`)", body = EditAccepted),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such message (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The message is being sent right now; try again", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid edit, or Telegram's rules refuse it: `edit-window-passed` (sent over 48 h ago), `not-delivered` (failed, cancelled…), `message-deleted`, `not-editable`; nothing queued", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn edit_message(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TenantParam>,
    ApiJson(body): ApiJson<EditRequest>,
) -> ApiResult<(StatusCode, Json<EditAccepted>)> {
    let tenant = state
        .services
        .acting_tenant(&principal, q.tenant_id.as_deref())
        .await?;
    let done = state.services.edit_message(&tenant, &id, &body).await?;
    Ok((StatusCode::ACCEPTED, Json(done)))
}

/// Deletes a message: a sent one in Telegram (through a delete job in its chat's lane), a
/// queued one by cancelling it (`cancelled`, reason `deleted_by_app`: nothing reaches
/// Telegram).
#[utoipa::path(
    delete, path = "/v1/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "Message id"), TenantParam),
    responses(
        (status = 202, description = "A delete job was queued (`queued`), or the message, not sent yet, was cancelled (`cancelled`)", body = EditAccepted),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such message (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The message is being sent right now; try again", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Telegram's rules refuse it: `edit-window-passed` (sent over 48 h ago), `not-delivered`, `message-deleted`, `not-editable`; nothing queued", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn delete_message(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TenantParam>,
) -> ApiResult<(StatusCode, Json<EditAccepted>)> {
    let tenant = state
        .services
        .acting_tenant(&principal, q.tenant_id.as_deref())
        .await?;
    let done = state.services.delete_message(&tenant, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(done)))
}

/// Messages, filtered, newest first (`order=asc`: oldest first), in cursor pages.
#[utoipa::path(
    get, path = "/v1/messages", tag = "messages",
    params(MessageListParams),
    responses(
        (status = 200, description = "A page of messages", body = MessageList),
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 422, description = "An admin key without `tenant_id`", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn list_messages(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiQuery(q): ApiQuery<MessageListParams>,
) -> ApiResult<Json<MessageList>> {
    // The query first: a bad value is a 400 whoever asks.
    let page = page(q.limit, q.after);
    let (since, until) = window(q.since.as_deref(), q.until.as_deref())?;
    let (status, order) = (status(q.status)?, order(q.order.as_deref())?);
    let tenant = state
        .services
        .acting_tenant(&principal, q.tenant_id.as_deref())
        .await?;
    let filter = MessageFilter {
        tenant_id: tenant,
        status,
        bot_id: q.bot_id,
        chat_id: q.chat_id,
        since,
        until,
        broadcast_id: q.broadcast_id,
        link_id: q.link_id,
        external_id: q.external_id,
        category: q.category,
        request_id: q.request_id,
        order,
    };
    let listed = state.services.list_messages(&filter, &page).await?;
    Ok(Json(MessageList {
        data: listed.items.into_iter().map(Into::into).collect(),
        next_cursor: listed.next_cursor,
    }))
}

/// Re-drive one message: `dead` or `failed`, or `unknown` with `{"anyway": true}`.
#[utoipa::path(
    post, path = "/v1/messages/{id}/retry", tag = "messages",
    params(("id" = String, Path, description = "Message id"), TenantParam),
    request_body = RetryOne,
    responses(
        (status = 200, description = "Queued again", body = MessageView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such message (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Not in a state that is retried", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn retry_message(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TenantParam>,
    ApiJson(body): ApiJson<RetryOne>,
) -> ApiResult<Json<MessageView>> {
    let tenant = state
        .services
        .acting_tenant(&principal, q.tenant_id.as_deref())
        .await?;
    Ok(Json(
        state
            .services
            .retry_message(&tenant, &id, body.anyway)
            .await?
            .into(),
    ))
}

/// Re-drive every message matching a filter (`dead` ones by default).
#[utoipa::path(
    post, path = "/v1/messages/retry", tag = "messages",
    params(TenantParam),
    request_body = RetryMany,
    responses(
        (status = 200, description = "How many were queued again", body = Requeued),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 409, description = "unknown without anyway", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid filter", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn retry_messages(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiQuery(q): ApiQuery<TenantParam>,
    ApiJson(body): ApiJson<RetryMany>,
) -> ApiResult<Json<Requeued>> {
    let tenant = state
        .services
        .acting_tenant(&principal, q.tenant_id.as_deref())
        .await?;
    let filter = MessageFilter {
        tenant_id: tenant,
        status: body.status,
        bot_id: body.bot_id,
        chat_id: body.chat_id,
        since: since(body.since.as_deref())?,
        broadcast_id: body.broadcast_id,
        ..MessageFilter::default()
    };
    let requeued = state.services.retry_messages(&filter, body.anyway).await?;
    Ok(Json(Requeued { requeued }))
}

/// Pages of broadcasts.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BroadcastListParams {
    /// The tenant (required with an admin key; a tenant key acts on its own).
    pub tenant_id: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<PageSize>,
    /// Cursor.
    pub after: Option<String>,
}

/// The tenant's broadcasts.
#[utoipa::path(
    get, path = "/v1/broadcasts", tag = "messages",
    params(BroadcastListParams),
    responses(
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 200, description = "A page of broadcasts", body = BroadcastList),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn list_broadcasts(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiQuery(q): ApiQuery<BroadcastListParams>,
) -> ApiResult<Json<BroadcastList>> {
    let tenant = state
        .services
        .acting_tenant(&principal, q.tenant_id.as_deref())
        .await?;
    let page = page(q.limit, q.after);
    Ok(Json(state.services.list_broadcasts(&tenant, &page).await?))
}

/// A broadcast's progress (sent / failed / remaining) and ETA.
#[utoipa::path(
    get, path = "/v1/broadcasts/{id}", tag = "messages",
    params(("id" = String, Path, description = "Broadcast id"), TenantParam),
    responses(
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 200, description = "The broadcast", body = BroadcastView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such broadcast (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn get_broadcast(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TenantParam>,
) -> ApiResult<Json<BroadcastView>> {
    let tenant = state
        .services
        .acting_tenant(&principal, q.tenant_id.as_deref())
        .await?;
    Ok(Json(
        state
            .services
            .get_broadcast(&tenant, &id, &default_limits())
            .await?,
    ))
}

async fn control(
    state: &AppState,
    principal: &crate::services::Principal,
    id: &str,
    tenant: Option<&str>,
    to: &str,
) -> ApiResult<Json<BroadcastView>> {
    let tenant = state.services.acting_tenant(principal, tenant).await?;
    Ok(Json(
        state
            .services
            .control_broadcast(&tenant, id, to, &default_limits())
            .await?,
    ))
}

/// Pause a running broadcast (its queued messages wait).
#[utoipa::path(
    post, path = "/v1/broadcasts/{id}/pause", tag = "messages",
    params(("id" = String, Path, description = "Broadcast id"), TenantParam),
    responses(
        (status = 200, description = "Paused", body = BroadcastView),
        (status = 404, description = "No such broadcast", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Not running", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn pause_broadcast(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TenantParam>,
) -> ApiResult<Json<BroadcastView>> {
    control(&state, &principal, &id, q.tenant_id.as_deref(), "paused").await
}

/// Resume a paused broadcast.
#[utoipa::path(
    post, path = "/v1/broadcasts/{id}/resume", tag = "messages",
    params(("id" = String, Path, description = "Broadcast id"), TenantParam),
    responses(
        (status = 200, description = "Running again", body = BroadcastView),
        (status = 404, description = "No such broadcast", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Not paused", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn resume_broadcast(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TenantParam>,
) -> ApiResult<Json<BroadcastView>> {
    control(&state, &principal, &id, q.tenant_id.as_deref(), "running").await
}

/// Cancel a broadcast: what is not sent yet is `cancelled`.
#[utoipa::path(
    post, path = "/v1/broadcasts/{id}/cancel", tag = "messages",
    params(("id" = String, Path, description = "Broadcast id"), TenantParam),
    responses(
        (status = 200, description = "Cancelled", body = BroadcastView),
        (status = 404, description = "No such broadcast", body = Problem, content_type = PROBLEM),
        (status = 409, description = "Already cancelled", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn cancel_broadcast(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<TenantParam>,
) -> ApiResult<Json<BroadcastView>> {
    control(&state, &principal, &id, q.tenant_id.as_deref(), "cancelled").await
}

/// Delivery counters of a tenant (a tenant key: its own; an admin key: `tenant_id`'s, or
/// every tenant's), in total and per bot, over the messages matching the filters and
/// accepted in the window (`since`/`until`; all time without them).
#[utoipa::path(
    get, path = "/v1/stats", tag = "messages",
    params(StatsParams),
    responses(
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 200, description = "Counters in total and per bot", body = StatsView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "tenant_id names another tenant", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn stats(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiQuery(q): ApiQuery<StatsParams>,
) -> ApiResult<Json<StatsView>> {
    let (since, until) = window(q.since.as_deref(), q.until.as_deref())?;
    let status = status(q.status)?;
    let tenant = match (principal.tenant(), q.tenant_id.as_deref()) {
        (None, None) => None,
        (_, asked) => Some(state.services.acting_tenant(&principal, asked).await?),
    };
    let filter = MessageFilter {
        tenant_id: tenant.clone().unwrap_or_default(),
        status,
        bot_id: q.bot_id,
        chat_id: q.chat_id,
        since,
        until,
        broadcast_id: q.broadcast_id,
        link_id: q.link_id,
        external_id: q.external_id,
        category: q.category,
        request_id: q.request_id,
        order: ListOrder::default(),
    };
    Ok(Json(
        state
            .services
            .delivery_stats(&filter, tenant.is_none())
            .await?,
    ))
}

/// A bot's sending limits (its own and the effective ones).
#[utoipa::path(
    get, path = "/v1/bots/{id}/limits", tag = "bots",
    params(("id" = String, Path, description = "Bot id")),
    responses(
        (status = 200, description = "The limits", body = BotLimitsView),
        (status = 404, description = "No such bot (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn get_bot_limits(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<BotLimitsView>> {
    Ok(Json(
        state
            .services
            .bot_limits(&principal, &id, &default_limits())
            .await?,
    ))
}

/// Set a bot's own sending limits (null = the deployment's default).
#[utoipa::path(
    put, path = "/v1/bots/{id}/limits", tag = "bots",
    params(("id" = String, Path, description = "Bot id")),
    request_body = BotLimitsBody,
    responses(
        (status = 200, description = "The limits", body = BotLimitsView),
        (status = 404, description = "No such bot (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A limit out of range", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn put_bot_limits(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<BotLimitsBody>,
) -> ApiResult<Json<BotLimitsView>> {
    Ok(Json(
        state
            .services
            .set_bot_limits(&principal, &id, &body, &default_limits())
            .await?,
    ))
}

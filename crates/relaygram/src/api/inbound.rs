//! Telegram's webhook and the update audit log.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::views::PageSize;
use crate::http::{ApiQuery, ApiResult, AppError, AppState, Auth, PROBLEM, Problem};
use crate::ids::rfc3339;
use crate::inbound::intake::{self, IntakeError};
use crate::store::{UpdateFilter, UpdateRecord, UpdateStatus};

/// The header Telegram sends the webhook secret in.
const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

/// Receive an update from Telegram.
///
/// Telegram calls this with the secret set at registration. The update is stored once per
/// `(bot, update_id)` and acknowledged at once; a replay is acknowledged and not processed
/// again.
#[utoipa::path(
    post, path = "/telegram/webhook/{bot_id}", tag = "telegram",
    params(
        ("bot_id" = String, Path, description = "The bot's relaygram id"),
        ("X-Telegram-Bot-Api-Secret-Token" = String, Header, description = "The bot's webhook secret"),
    ),
    request_body(content = Object, description = "A Telegram Update"),
    responses(
        (status = 200, description = "Stored (or already stored)"),
        (status = 400, description = "Not a JSON update", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing or wrong secret", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown or disabled bot, or not in webhook mode", body = Problem, content_type = PROBLEM),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM),
    )
)]
pub async fn telegram_webhook(
    State(state): State<AppState>,
    Path(bot_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let secret = headers.get(SECRET_HEADER).and_then(|v| v.to_str().ok());
    match intake::accept_webhook(&state.services, &bot_id, secret, &body).await {
        Ok(_) => Ok(StatusCode::OK),
        Err(IntakeError::UnknownBot) => Err(AppError::not_found(format!(
            "no enabled webhook bot {bot_id}"
        ))),
        Err(IntakeError::BadSecret) => Err(AppError::unauthorized(
            "missing or wrong X-Telegram-Bot-Api-Secret-Token",
        )),
        Err(IntakeError::Malformed(m)) => Err(AppError::malformed_json(m)),
        Err(e) => {
            // Telegram retries until it gets a 2xx, so nothing is lost.
            Err(AppError::internal(&e))
        }
    }
}

/// `GET /v1/updates` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UpdateListParams {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<PageSize>,
    /// Cursor: `next_cursor` of the previous page.
    pub after: Option<String>,
    /// Only this tenant's bots (admin keys).
    pub tenant_id: Option<String>,
    /// Only this bot.
    pub bot_id: Option<String>,
    /// Only this chat.
    pub chat_id: Option<i64>,
    /// Only this status.
    pub status: Option<UpdateStatus>,
    /// Only this update type (`message`, `callback_query`, …).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
}

/// One inbound update and what became of it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "bot_id": "bot_01jd5v7kq2", "update_id": 512001, "type": "message", "chat_id": 100000001,
    "user_id": 100000001, "status": "handled", "outcome": "replied to /help",
    "received_at": "2026-11-21T08:00:00.000Z", "processed_at": "2026-11-21T08:00:00.012Z",
    "handling_ms": 12, "update": {"update_id": 512001, "message": {"text": "/help"}}
}))]
pub struct UpdateView {
    /// The bot it came to.
    pub bot_id: String,
    /// Telegram's id.
    pub update_id: i64,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its chat.
    pub chat_id: Option<i64>,
    /// The Telegram user who caused it.
    pub user_id: Option<i64>,
    /// Where it is in processing.
    pub status: UpdateStatus,
    /// What processing did.
    pub outcome: Option<String>,
    /// Why processing failed.
    pub error: Option<String>,
    /// When it was stored.
    pub received_at: String,
    /// When processing ended.
    pub processed_at: Option<String>,
    /// How long processing took (ms).
    pub handling_ms: Option<i64>,
    /// The update as Telegram sent it.
    #[schema(value_type = Object)]
    pub update: serde_json::Value,
}

impl From<UpdateRecord> for UpdateView {
    fn from(u: UpdateRecord) -> Self {
        UpdateView {
            update: serde_json::from_str(&u.body).unwrap_or(serde_json::Value::Null),
            bot_id: u.bot_id,
            update_id: u.update_id,
            kind: u.kind,
            chat_id: u.chat_id,
            user_id: u.user_id,
            status: u.status,
            outcome: u.outcome,
            error: u.error,
            received_at: rfc3339(u.received_at),
            processed_at: u.processed_at.map(rfc3339),
            handling_ms: u.handling_ms,
        }
    }
}

/// A page of updates.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpdateList {
    /// Newest first.
    pub data: Vec<UpdateView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The inbound audit log: every update with its outcome and handling time.
#[utoipa::path(
    get, path = "/v1/updates", tag = "updates",
    params(UpdateListParams),
    responses(
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 200, description = "A page of updates, newest first", body = UpdateList),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown bot", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid limit or cursor", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn list_updates(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiQuery(params): ApiQuery<UpdateListParams>,
) -> ApiResult<Json<UpdateList>> {
    let page = crate::http::views::page(params.limit, None);
    let listed = state
        .services
        .list_updates(
            &principal,
            UpdateFilter {
                tenant_id: params.tenant_id,
                bot_id: params.bot_id,
                chat_id: params.chat_id,
                status: params.status,
                kind: params.kind,
            },
            params.after.as_deref().filter(|a| !a.is_empty()),
            page.limit,
        )
        .await?;
    Ok(Json(UpdateList {
        data: listed.items.into_iter().map(Into::into).collect(),
        next_cursor: listed.next_cursor,
    }))
}

//! `/v1/gated-chats`: bind, list, read, change, unbind and sync gated chats.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiResult, PROBLEM, invalid, span_seconds};
use crate::http::problem::Problem;
use crate::http::views::{PageSize, page};
use crate::http::{ApiJson, ApiQuery, AppState, Auth};
use crate::ids::rfc3339;
use crate::memberships::service::GatedChatInput;
use crate::memberships::sweep::Swept;
use crate::services::ServiceError;
use crate::store::{GateStatus, GatedChatRecord, JoinMode};

/// A gated chat.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "gc_01jd8y3k7q9x4m2n5p6r7s8t9v", "bot_id": "bot_01jd8y3k7q9x4m2n5p6r7s8t9x",
    "chat_id": -1001234567890_i64, "chat_type": "supergroup", "title": "Signals VIP", "name": "VIP",
    "join_mode": "request", "grace_seconds": 86400, "reminders": ["3d", "1d"], "remove_unentitled": true,
    "unentitled_grace_seconds": 600, "access_url": "https://example.com/vip", "status": "active",
    "status_reason": null, "created_at": "2026-12-01T09:00:00Z", "updated_at": "2026-12-01T09:00:00Z"}))]
pub struct GatedChatView {
    /// Opaque id.
    pub id: String,
    /// The administering bot.
    pub bot_id: String,
    /// Telegram chat id.
    pub chat_id: i64,
    /// `supergroup` or `channel`.
    pub chat_type: String,
    /// The chat's title when last seen.
    pub title: Option<String>,
    /// The operator's name.
    pub name: String,
    /// `request`, `invite` or `stars_subscription`.
    pub join_mode: JoinMode,
    /// Seconds members keep access after their entitlement ends.
    pub grace_seconds: i64,
    /// Reminders before the end (`3d`, `12h`, `30m`).
    pub reminders: Vec<String>,
    /// Whether members without an entitlement are removed.
    pub remove_unentitled: bool,
    /// After this many seconds in the chat.
    pub unentitled_grace_seconds: i64,
    /// Where people get access (said when a request is declined).
    pub access_url: Option<String>,
    /// `active`, or `degraded` (nobody is removed while degraded).
    pub status: GateStatus,
    /// Why it is degraded.
    pub status_reason: Option<String>,
    /// Created at.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

fn span_text(seconds: i64) -> String {
    match seconds {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s => format!("{}m", s / 60),
    }
}

impl From<GatedChatRecord> for GatedChatView {
    fn from(g: GatedChatRecord) -> Self {
        GatedChatView {
            id: g.id,
            bot_id: g.bot_id,
            chat_id: g.chat_id,
            chat_type: g.chat_type.as_str().into(),
            title: g.title,
            name: g.name,
            join_mode: g.join_mode,
            grace_seconds: g.grace_seconds,
            reminders: g.reminders.into_iter().map(span_text).collect(),
            remove_unentitled: g.remove_unentitled,
            unentitled_grace_seconds: g.unentitled_grace_seconds,
            access_url: g.access_url,
            status: g.status,
            status_reason: g.status_reason,
            created_at: rfc3339(g.created_at),
            updated_at: rfc3339(g.updated_at),
        }
    }
}

/// `POST /v1/gated-chats`: a supergroup or channel the bot administers (with
/// `can_invite_users` and `can_restrict_members`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"chat_id": -1001234567890_i64, "name": "VIP", "grace_seconds": 86400,
    "reminders": ["3d", "1d"], "remove_unentitled": true, "unentitled_grace_seconds": 600,
    "access_url": "https://example.com/vip"}))]
pub struct CreateGatedChat {
    /// The bot (optional when the tenant has one).
    pub bot_id: Option<String>,
    /// The Telegram chat id.
    pub chat_id: i64,
    /// Name (default: the chat's title), 1 to 128 characters.
    pub name: Option<String>,
    /// `request` (default), `invite` or `stars_subscription` (channels).
    pub join_mode: Option<JoinMode>,
    /// Seconds after expiry before removal (default 0).
    pub grace_seconds: Option<i64>,
    /// Reminders before the end, up to 5 (`3d`, `12h`, `30m`).
    pub reminders: Option<Vec<String>>,
    /// Remove members without an entitlement (default false).
    pub remove_unentitled: Option<bool>,
    /// Seconds such a member may stay (default 0).
    pub unentitled_grace_seconds: Option<i64>,
    /// Where people get access: said when a request is declined and in reminders.
    pub access_url: Option<String>,
    /// The tenant (admin keys).
    pub tenant_id: Option<String>,
}

/// `PATCH /v1/gated-chats/{id}`: settings (its chat and bot stay).
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateGatedChat {
    /// New name.
    pub name: Option<String>,
    /// New grace.
    pub grace_seconds: Option<i64>,
    /// New reminders.
    pub reminders: Option<Vec<String>>,
    /// New rule for members without an entitlement.
    pub remove_unentitled: Option<bool>,
    /// New grace for them.
    pub unentitled_grace_seconds: Option<i64>,
    /// New access URL (`""` clears it).
    pub access_url: Option<String>,
}

pub(super) fn reminders(list: &[String]) -> Result<Vec<i64>, ServiceError> {
    list.iter().map(|r| span_seconds("reminders", r)).collect()
}

/// A page of gated chats.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GatedChatList {
    /// In id order.
    pub data: Vec<GatedChatView>,
    /// Pass as `after` for the next page.
    pub next_cursor: Option<String>,
}

/// Paging (and the tenant, for admin keys).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// The tenant (required with an admin key).
    pub tenant_id: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<PageSize>,
    /// Cursor: `next_cursor` of the previous page.
    pub after: Option<String>,
}

/// The tenant, for admin keys.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TenantParam {
    /// The tenant (required with an admin key).
    pub tenant_id: Option<String>,
}

/// Bind a gated chat. Telegram is asked first: the chat must be a supergroup or channel
/// the bot administers with `can_invite_users` and `can_restrict_members` (a basic group
/// is stored `degraded` until it becomes a supergroup).
#[utoipa::path(
    post, path = "/v1/gated-chats", tag = "memberships",
    request_body = CreateGatedChat,
    responses(
        (status = 201, description = "Bound", body = GatedChatView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "tenant_id names another tenant", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The bot's chat is gated already", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field is invalid, or the bot lacks a right (named in the detail)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn create_gated_chat(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiJson(body): ApiJson<CreateGatedChat>,
) -> ApiResult<(StatusCode, Json<GatedChatView>)> {
    let tenant = state
        .services
        .acting_tenant(&principal, body.tenant_id.as_deref())
        .await?;
    let input = GatedChatInput {
        bot_id: body.bot_id,
        chat_id: body.chat_id,
        name: body.name,
        join_mode: body.join_mode.unwrap_or(JoinMode::Request),
        grace_seconds: body.grace_seconds.unwrap_or(0),
        reminders: reminders(&body.reminders.unwrap_or_default())?,
        remove_unentitled: body.remove_unentitled.unwrap_or(false),
        unentitled_grace_seconds: body.unentitled_grace_seconds.unwrap_or(0),
        access_url: body.access_url.filter(|u| !u.is_empty()),
    };
    let g = state.services.create_gated_chat(&tenant, input).await?;
    Ok((StatusCode::CREATED, Json(g.into())))
}

/// The tenant's gated chats.
#[utoipa::path(
    get, path = "/v1/gated-chats", tag = "memberships",
    params(ListParams),
    responses(
        (status = 200, description = "A page of gated chats", body = GatedChatList),
        (status = 400, description = "Unknown query parameter or bad value", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid limit, or no tenant_id with an admin key", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn list_gated_chats(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<GatedChatList>> {
    let tenant = state
        .services
        .acting_tenant(&principal, q.tenant_id.as_deref())
        .await?;
    let listed = state
        .services
        .store
        .list_gated_chats(&tenant, &page(q.limit, q.after))
        .await
        .map_err(ServiceError::from)?;
    Ok(Json(GatedChatList {
        data: listed.items.into_iter().map(Into::into).collect(),
        next_cursor: listed.next_cursor,
    }))
}

/// One gated chat.
#[utoipa::path(
    get, path = "/v1/gated-chats/{id}", tag = "memberships",
    params(("id" = String, Path, description = "Gated chat id")),
    responses(
        (status = 200, description = "The gated chat", body = GatedChatView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such gated chat (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn get_gated_chat(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<GatedChatView>> {
    Ok(Json(
        state.services.gated_chat(&principal, &id).await?.into(),
    ))
}

/// Change a gated chat's settings.
#[utoipa::path(
    patch, path = "/v1/gated-chats/{id}", tag = "memberships",
    params(("id" = String, Path, description = "Gated chat id")),
    request_body = UpdateGatedChat,
    responses(
        (status = 200, description = "Changed", body = GatedChatView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such gated chat (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field is invalid, or nothing to change", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn update_gated_chat(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateGatedChat>,
) -> ApiResult<Json<GatedChatView>> {
    let new_reminders = body.reminders.as_deref().map(reminders).transpose()?;
    let g = state
        .services
        .update_gated_chat(&principal, &id, move |g| {
            let before = g.clone();
            if let Some(n) = body.name {
                g.name = n.trim().to_string();
            }
            if let Some(v) = body.grace_seconds {
                g.grace_seconds = v;
            }
            if let Some(r) = new_reminders {
                g.reminders = r;
            }
            if let Some(v) = body.remove_unentitled {
                g.remove_unentitled = v;
            }
            if let Some(v) = body.unentitled_grace_seconds {
                g.unentitled_grace_seconds = v;
            }
            if let Some(u) = body.access_url {
                g.access_url = (!u.is_empty()).then_some(u);
            }
            if *g == before {
                return Err(invalid(
                    "body",
                    "nothing to change: give name, grace_seconds, reminders, remove_unentitled, unentitled_grace_seconds or access_url with a new value",
                ));
            }
            Ok(())
        })
        .await?;
    Ok(Json(g.into()))
}

/// Stop gating a chat. Its memberships are forgotten; nobody is removed from Telegram.
#[utoipa::path(
    delete, path = "/v1/gated-chats/{id}", tag = "memberships",
    params(("id" = String, Path, description = "Gated chat id")),
    responses(
        (status = 204, description = "No longer gated"),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such gated chat (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn delete_gated_chat(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let g = state.services.gated_chat(&principal, &id).await?;
    state
        .services
        .store
        .delete_gated_chat(Some(&g.tenant_id), &g.id)
        .await
        .map_err(ServiceError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Bring one gated chat in line now: the bot's rights, every entitled holder's membership,
/// and the members relaygram knows of re-checked with `getChatMember`.
#[utoipa::path(
    post, path = "/v1/gated-chats/{id}/sync", tag = "memberships",
    params(("id" = String, Path, description = "Gated chat id")),
    responses(
        (status = 200, description = "What the sync did", body = Swept),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such gated chat (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn sync_gated_chat(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<Swept>> {
    Ok(Json(state.services.sync_gated_chat(&principal, &id).await?))
}

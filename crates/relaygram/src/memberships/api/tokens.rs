//! `/v1/gated-chat-tokens`: binding a group through the bot's startgroup link.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::gated_chats::reminders;
use super::{ApiResult, PROBLEM};
use crate::http::problem::Problem;
use crate::http::{ApiJson, AppState, Auth};
use crate::ids::rfc3339;
use crate::memberships::service::GatedChatInput;
use crate::services::ServiceError;
use crate::store::JoinMode;

/// `POST /v1/gated-chat-tokens`: a gated chat's settings, bound to the group the bot's
/// `startgroup` link is started in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "VIP", "grace_seconds": 86400, "reminders": ["3d"], "ttl_seconds": 86400}))]
pub struct CreateGateToken {
    /// The bot (optional when the tenant has one).
    pub bot_id: Option<String>,
    /// Name (default: the group's title).
    pub name: Option<String>,
    /// `request` (default) or `invite`.
    pub join_mode: Option<JoinMode>,
    /// Seconds after expiry before removal (default 0).
    pub grace_seconds: Option<i64>,
    /// Reminders before the end (`3d`, `12h`, `30m`).
    pub reminders: Option<Vec<String>>,
    /// Remove members without an entitlement (default false).
    pub remove_unentitled: Option<bool>,
    /// Seconds such a member may stay (default 0).
    pub unentitled_grace_seconds: Option<i64>,
    /// Where people get access.
    pub access_url: Option<String>,
    /// How long the link works, 60 to 604800 seconds (default 86400).
    pub ttl_seconds: Option<i64>,
    /// The tenant (admin keys).
    pub tenant_id: Option<String>,
}

/// A binding token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "gct_01jd8y3k7q9x4m2n5p6r7s8t9v", "token": "Zk3…",
    "startgroup_link": "https://t.me/shop_bot?startgroup=Zk3…&admin=invite_users+restrict_members",
    "status": "pending", "gated_chat_id": null, "expires_at": "2026-12-02T09:00:00Z", "created_at": "2026-12-01T09:00:00Z"}))]
pub struct GateTokenView {
    /// Opaque id.
    pub id: String,
    /// The token (only in the answer that made it).
    pub token: Option<String>,
    /// The link that adds the bot as an administrator with the two rights and binds the group.
    pub startgroup_link: Option<String>,
    /// `pending`, `used` or `expired`.
    pub status: String,
    /// The gated chat it bound.
    pub gated_chat_id: Option<String>,
    /// Usable until.
    pub expires_at: String,
    /// Created at.
    pub created_at: String,
}

fn token_view(
    t: crate::store::GateTokenRecord,
    now: i64,
    token: Option<String>,
    link: Option<String>,
) -> GateTokenView {
    let status = match (&t.gated_chat_id, t.expires_at <= now) {
        (Some(_), _) => "used",
        (None, true) => "expired",
        (None, false) => "pending",
    };
    GateTokenView {
        id: t.id,
        token,
        startgroup_link: link,
        status: status.into(),
        gated_chat_id: t.gated_chat_id,
        expires_at: rfc3339(t.expires_at),
        created_at: rfc3339(t.created_at),
    }
}

/// A link that binds a group as a gated chat: the operator opens it, Telegram adds the bot
/// as an administrator with `can_invite_users` and `can_restrict_members`, and the group is
/// bound with these settings (the bot says so in the group, or why not).
#[utoipa::path(
    post, path = "/v1/gated-chat-tokens", tag = "memberships",
    request_body = CreateGateToken,
    responses(
        (status = 201, description = "Made (the token is shown once)", body = GateTokenView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "tenant_id names another tenant", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field is invalid", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn create_gate_token(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiJson(body): ApiJson<CreateGateToken>,
) -> ApiResult<(StatusCode, Json<GateTokenView>)> {
    let tenant = state
        .services
        .acting_tenant(&principal, body.tenant_id.as_deref())
        .await?;
    let settings = GatedChatInput {
        bot_id: body.bot_id,
        chat_id: 0,
        name: body.name,
        join_mode: body.join_mode.unwrap_or(JoinMode::Request),
        grace_seconds: body.grace_seconds.unwrap_or(0),
        reminders: reminders(&body.reminders.unwrap_or_default())?,
        remove_unentitled: body.remove_unentitled.unwrap_or(false),
        unentitled_grace_seconds: body.unentitled_grace_seconds.unwrap_or(0),
        access_url: body.access_url.filter(|u| !u.is_empty()),
    };
    let made = state
        .services
        .create_gate_token(&tenant, settings, body.ttl_seconds)
        .await?;
    let now = state.services.clock.now_millis();
    Ok((
        StatusCode::CREATED,
        Json(token_view(
            made.record,
            now,
            Some(made.token),
            Some(made.startgroup_link),
        )),
    ))
}

/// A binding token: pending, used (with the gated chat it bound) or expired.
#[utoipa::path(
    get, path = "/v1/gated-chat-tokens/{id}", tag = "memberships",
    params(("id" = String, Path, description = "Token id")),
    responses(
        (status = 200, description = "The token", body = GateTokenView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such token (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn get_gate_token(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<GateTokenView>> {
    let t = state
        .services
        .store
        .find_gate_token(principal.tenant(), Some(&id), None)
        .await
        .map_err(ServiceError::from)?
        .ok_or_else(|| ServiceError::NotFound {
            kind: "gated chat token",
            id: id.clone(),
        })?;
    Ok(Json(token_view(
        t,
        state.services.clock.now_millis(),
        None,
        None,
    )))
}

//! `/v1/memberships`: who is in, invited, requested, removed or gone.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiResult, PROBLEM};
use crate::http::problem::Problem;
use crate::http::views::{PageSize, page};
use crate::http::{ApiQuery, AppError, AppState, Auth};
use crate::ids::rfc3339;
use crate::memberships::sync::access_time;
use crate::services::ServiceError;
use crate::store::{MembershipFilter, MembershipRecord, MembershipState};

/// A membership.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MembershipView {
    /// Opaque id.
    pub id: String,
    /// The gated chat.
    pub gated_chat_id: String,
    /// The Telegram user, once known.
    pub telegram_user_id: Option<i64>,
    /// The app user, when known.
    pub external_id: Option<String>,
    /// `invited`, `requested`, `member`, `removing`, `removed`, `left`, `declined`.
    pub state: MembershipState,
    /// Their personal link.
    pub invite_link: Option<String>,
    /// Until when they may be in (RFC 3339, `"forever"`, or null).
    #[schema(value_type = Option<String>)]
    pub access_until: serde_json::Value,
    /// In the chat without an entitlement.
    pub unentitled: bool,
    /// When relaygram removes them.
    pub remove_at: Option<String>,
    /// The member call under way (`GET /v1/messages/{id}` shows Telegram's answers).
    pub job_id: Option<String>,
    /// Telegram's last refusal.
    pub last_error: Option<String>,
    /// Joined.
    pub joined_at: Option<String>,
    /// Left or removed.
    pub left_at: Option<String>,
    /// Created.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

impl From<MembershipRecord> for MembershipView {
    fn from(m: MembershipRecord) -> Self {
        MembershipView {
            id: m.id,
            gated_chat_id: m.gated_chat_id,
            telegram_user_id: m.telegram_user_id,
            external_id: m.external_id,
            state: m.state,
            invite_link: m.invite_link,
            access_until: access_time(m.access_until),
            unentitled: m.unentitled,
            remove_at: m.remove_at.map(rfc3339),
            job_id: m.job_id,
            last_error: m.last_error,
            joined_at: m.joined_at.map(rfc3339),
            left_at: m.left_at.map(rfc3339),
            created_at: rfc3339(m.created_at),
            updated_at: rfc3339(m.updated_at),
        }
    }
}

/// Filters for `GET /v1/memberships`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MembershipListParams {
    /// One gated chat's.
    pub gated_chat_id: Option<String>,
    /// One app user's.
    pub external_id: Option<String>,
    /// One state.
    pub state: Option<String>,
    /// The tenant (required with an admin key).
    pub tenant_id: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<PageSize>,
    /// Cursor.
    pub after: Option<String>,
}

/// A page of memberships.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MembershipList {
    /// In id order.
    pub data: Vec<MembershipView>,
    /// Pass as `after` for the next page.
    pub next_cursor: Option<String>,
}

/// Who is in, invited, requested, removed or gone, with their links.
#[utoipa::path(
    get, path = "/v1/memberships", tag = "memberships",
    params(MembershipListParams),
    responses(
        (status = 200, description = "A page of memberships", body = MembershipList),
        (status = 400, description = "Unknown query parameter or bad value (an unknown state)", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid limit, or no tenant_id with an admin key", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn list_memberships(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiQuery(q): ApiQuery<MembershipListParams>,
) -> ApiResult<Json<MembershipList>> {
    let tenant = state
        .services
        .acting_tenant(&principal, q.tenant_id.as_deref())
        .await?;
    let st = match q.state.as_deref() {
        Some(s) => Some(s.parse::<MembershipState>().map_err(|_| {
            AppError::bad_query(
                "state",
                "state: must be invited, requested, member, removing, removed, left or declined",
            )
        })?),
        None => None,
    };
    let filter = MembershipFilter {
        gated_chat_id: q.gated_chat_id,
        external_id: q.external_id,
        state: st,
    };
    let listed = state
        .services
        .store
        .list_memberships(&tenant, &filter, &page(q.limit, q.after))
        .await
        .map_err(ServiceError::from)?;
    Ok(Json(MembershipList {
        data: listed.items.into_iter().map(Into::into).collect(),
        next_cursor: listed.next_cursor,
    }))
}

/// One membership.
#[utoipa::path(
    get, path = "/v1/memberships/{id}", tag = "memberships",
    params(("id" = String, Path, description = "Membership id")),
    responses(
        (status = 200, description = "The membership", body = MembershipView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such membership (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn get_membership(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<MembershipView>> {
    let m = state
        .services
        .store
        .get_membership(principal.tenant(), &id)
        .await
        .map_err(ServiceError::from)?
        .ok_or_else(|| ServiceError::NotFound {
            kind: "membership",
            id: id.clone(),
        })?;
    Ok(Json(m.into()))
}

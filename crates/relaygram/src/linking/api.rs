//! HTTP handlers and bodies for linking: `/v1/link-tokens`, `/v1/connect-codes`,
//! `/v1/links` and `/v1/categories`. Registered (with their OpenAPI documentation) in
//! [`crate::api`]'s route list.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::service::{CategoryPatch, LinkPatch, NewCategory, NewLinkToken};
use super::{LinkView, TokenStatus, deep_link, group_link};
use crate::http::problem::Problem;
use crate::http::views::{PageSize, page};
use crate::http::{ApiJson, ApiQuery, AppError, AppState, Auth};
use crate::ids::rfc3339;
use crate::store::{BotRecord, CategoryRecord, ConnectCodeRecord, LinkFilter};

const PROBLEM: &str = "application/problem+json";

/// Reads a present field as `Some(value)`, `null` included (`Some(None)`), so PATCH can
/// tell "clear" from "keep".
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

// ---- link tokens ----------------------------------------------------------------------------

/// `POST /v1/link-tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"bot_id": "bot_01jd8y3k7q9x4m2n5p6r7s8t9v", "external_id": "user-42",
    "categories": ["alerts"], "ttl_seconds": 900, "metadata": {"plan": "pro"}}))]
pub struct CreateLinkTokenRequest {
    /// The bot the user will open.
    pub bot_id: String,
    /// The app's user id (1 to 200 characters).
    pub external_id: String,
    /// Category keys turned on when the link is made (they must exist).
    #[serde(default)]
    pub categories: Vec<String>,
    /// Lifetime, 60 to 604800 seconds (default 900: 15 minutes).
    #[schema(minimum = 60, maximum = 604800)]
    pub ttl_seconds: Option<u64>,
    /// A JSON object (at most 4 KiB) copied to the link.
    pub metadata: Option<serde_json::Value>,
    /// Allow the chat to be linked although another app user already linked it (default
    /// false: the user is asked to /stop first).
    #[serde(default)]
    pub allow_shared_chat: bool,
}

/// A link token just made. `token` is shown only now: relaygram keeps its hash.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "ltk_01jd8y3k7q9x4m2n5p6r7s8t9v", "token": "Zk3…", "bot_id": "bot_01jd8y3k7q9x4m2n5p6r7s8t9v",
    "external_id": "user-42", "deep_link": "https://t.me/shop_bot?start=Zk3…",
    "group_link": "https://t.me/shop_bot?startgroup=Zk3…", "status": "pending",
    "expires_at": "2026-11-21T05:15:00Z", "created_at": "2026-11-21T05:00:00Z"}))]
pub struct CreatedLinkTokenView {
    /// Opaque id (`ltk_…`), for `GET /v1/link-tokens/{id}`.
    pub id: String,
    /// The token (32 of `A-Za-z0-9_-`).
    pub token: String,
    /// The bot.
    pub bot_id: String,
    /// The app user.
    pub external_id: String,
    /// Opens a private chat with the bot: `https://t.me/<bot>?start=<token>`.
    pub deep_link: String,
    /// Adds the bot to a group the user picks: `https://t.me/<bot>?startgroup=<token>`.
    pub group_link: String,
    /// Always `pending` here.
    pub status: TokenStatus,
    /// Expiry (RFC 3339, UTC).
    pub expires_at: String,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
}

/// A link token and where it stands (never the token itself).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LinkTokenView {
    /// Opaque id.
    pub id: String,
    /// The bot.
    pub bot_id: String,
    /// The app user.
    pub external_id: String,
    /// `pending`, `used` or `expired`.
    pub status: TokenStatus,
    /// Category keys turned on at link time.
    pub categories: Vec<String>,
    /// Metadata given at creation.
    pub metadata: Option<serde_json::Value>,
    /// Expiry (RFC 3339, UTC).
    pub expires_at: String,
    /// When it was used.
    pub used_at: Option<String>,
    /// The link it made (while that link exists).
    pub link: Option<LinkView>,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
}

/// Make a single-use link token for an app user; show `deep_link` (or its QR code) to the
/// user. The status can be polled; `link.created` is also sent as an event.
#[utoipa::path(
    post, path = "/v1/link-tokens", tag = "linking",
    request_body = CreateLinkTokenRequest,
    responses(
        (status = 201, description = "Made; `token` is shown only now", body = CreatedLinkTokenView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such bot (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field breaks a rule (named in `field`)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn create_link_token(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiJson(body): ApiJson<CreateLinkTokenRequest>,
) -> Result<(StatusCode, Json<CreatedLinkTokenView>), AppError> {
    let created = state
        .services
        .create_link_token(
            &principal,
            NewLinkToken {
                bot_id: body.bot_id,
                external_id: body.external_id,
                categories: body.categories,
                ttl_seconds: body.ttl_seconds,
                metadata: body.metadata,
                allow_shared_chat: body.allow_shared_chat,
            },
        )
        .await?;
    let r = created.record;
    Ok((
        StatusCode::CREATED,
        Json(CreatedLinkTokenView {
            id: r.id,
            token: created.token,
            bot_id: r.bot_id,
            external_id: r.external_id,
            deep_link: created.deep_link,
            group_link: created.group_link,
            status: TokenStatus::Pending,
            expires_at: rfc3339(r.expires_at),
            created_at: rfc3339(r.created_at),
        }),
    ))
}

/// A link token's status: `pending`, `used` (with the link) or `expired`.
#[utoipa::path(
    get, path = "/v1/link-tokens/{id}", tag = "linking",
    params(("id" = String, Path, description = "Link token id")),
    responses(
        (status = 200, description = "The token's state", body = LinkTokenView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such token (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn get_link_token(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<Json<LinkTokenView>, AppError> {
    let s = state.services.get_link_token(&principal, &id).await?;
    let r = s.record;
    Ok(Json(LinkTokenView {
        id: r.id,
        bot_id: r.bot_id,
        external_id: r.external_id,
        status: s.status,
        categories: r.categories,
        metadata: r
            .metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok()),
        expires_at: rfc3339(r.expires_at),
        used_at: r.used_at.map(rfc3339),
        link: s.link,
        created_at: rfc3339(r.created_at),
    }))
}

/// The token's deep link as an SVG QR code, for users on a desktop to scan with their phone.
#[utoipa::path(
    get, path = "/v1/link-tokens/{id}/qr.svg", tag = "linking",
    params(("id" = String, Path, description = "Link token id")),
    responses(
        (status = 200, description = "The QR code", body = String, content_type = "image/svg+xml"),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such token (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The token was used or has expired", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn link_token_qr(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    let svg = state.services.link_token_qr(&principal, &id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    ))
}

// ---- connect codes --------------------------------------------------------------------------

/// `POST /v1/connect-codes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"bot_id": "bot_01jd8y3k7q9x4m2n5p6r7s8t9v", "label": "Night shift", "categories": ["alerts"]}))]
pub struct CreateConnectCodeRequest {
    /// The bot the team opens.
    pub bot_id: String,
    /// A label for the operator (1 to 200 characters).
    pub label: Option<String>,
    /// Category keys turned on for each chat that joins.
    #[serde(default)]
    pub categories: Vec<String>,
}

/// A team connect code.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "ccd_01jd8y3k7q9x4m2n5p6r7s8t9v", "code": "K7QX4M2N", "bot_id": "bot_01jd8y3k7q9x4m2n5p6r7s8t9v",
    "label": "Night shift", "categories": ["alerts"], "deep_link": "https://t.me/shop_bot?start=K7QX4M2N",
    "group_link": "https://t.me/shop_bot?startgroup=K7QX4M2N", "active": true, "revoked_at": null,
    "subscriber_count": 12, "created_at": "2026-11-21T05:00:00Z", "updated_at": "2026-11-21T05:00:00Z"}))]
pub struct ConnectCodeView {
    /// Opaque id (`ccd_…`).
    pub id: String,
    /// The code (8 of `A-Z2-9`); users send `/start <code>`.
    pub code: String,
    /// The bot.
    pub bot_id: String,
    /// Label.
    pub label: Option<String>,
    /// Category keys turned on for each chat that joins.
    pub categories: Vec<String>,
    /// `https://t.me/<bot>?start=<code>`.
    pub deep_link: String,
    /// `https://t.me/<bot>?startgroup=<code>`.
    pub group_link: String,
    /// `false` once revoked.
    pub active: bool,
    /// Revocation time.
    pub revoked_at: Option<String>,
    /// Chats linked with it now (active links); send to them with
    /// `{"connect_code_id": …}`.
    pub subscriber_count: i64,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
    /// Last change (RFC 3339, UTC).
    pub updated_at: String,
}

impl ConnectCodeView {
    fn new((c, bot): (ConnectCodeRecord, BotRecord)) -> ConnectCodeView {
        ConnectCodeView {
            deep_link: deep_link(&bot.username, &c.code),
            group_link: group_link(&bot.username, &c.code),
            id: c.id,
            code: c.code,
            bot_id: c.bot_id,
            label: c.label,
            categories: c.categories,
            active: c.revoked_at.is_none(),
            revoked_at: c.revoked_at.map(rfc3339),
            subscriber_count: c.subscriber_count,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

/// A page of connect codes.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectCodeList {
    /// Codes in id order.
    pub data: Vec<ConnectCodeView>,
    /// Pass as `after` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// Connect code list parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConnectCodeListParams {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<PageSize>,
    /// Cursor: `next_cursor` of the previous page.
    pub after: Option<String>,
    /// Only this tenant's (admin keys; tenant keys always see their own).
    pub tenant_id: Option<String>,
    /// Only this bot's.
    pub bot_id: Option<String>,
}

/// Make a team connect code: any number of chats join with `/start <code>`.
#[utoipa::path(
    post, path = "/v1/connect-codes", tag = "linking",
    request_body = CreateConnectCodeRequest,
    responses(
        (status = 201, description = "Made", body = ConnectCodeView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such bot (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field breaks a rule (named in `field`)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn create_connect_code(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiJson(body): ApiJson<CreateConnectCodeRequest>,
) -> Result<(StatusCode, Json<ConnectCodeView>), AppError> {
    let made = state
        .services
        .create_connect_code(
            &principal,
            &body.bot_id,
            body.label.as_deref(),
            &body.categories,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(ConnectCodeView::new(made))))
}

/// List connect codes.
#[utoipa::path(
    get, path = "/v1/connect-codes", tag = "linking",
    params(ConnectCodeListParams),
    responses(
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 200, description = "A page of codes", body = ConnectCodeList),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid limit", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn list_connect_codes(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiQuery(params): ApiQuery<ConnectCodeListParams>,
) -> Result<Json<ConnectCodeList>, AppError> {
    let page = page(params.limit, params.after);
    let listed = state
        .services
        .list_connect_codes(
            &principal,
            params.tenant_id,
            params.bot_id.as_deref(),
            &page,
        )
        .await?;
    Ok(Json(ConnectCodeList {
        data: listed.items.into_iter().map(ConnectCodeView::new).collect(),
        next_cursor: listed.next_cursor,
    }))
}

/// Get one connect code.
#[utoipa::path(
    get, path = "/v1/connect-codes/{id}", tag = "linking",
    params(("id" = String, Path, description = "Connect code id")),
    responses(
        (status = 200, description = "The code", body = ConnectCodeView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such code (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn get_connect_code(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<Json<ConnectCodeView>, AppError> {
    let code = state.services.get_connect_code(&principal, &id).await?;
    Ok(Json(ConnectCodeView::new(code)))
}

/// Revoke a connect code: no chat can join with it any more; chats that joined stay linked
/// (remove them with `DELETE /v1/links/{id}`).
#[utoipa::path(
    delete, path = "/v1/connect-codes/{id}", tag = "linking",
    params(("id" = String, Path, description = "Connect code id")),
    responses(
        (status = 200, description = "Revoked (revoking again changes nothing)", body = ConnectCodeView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such code (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn revoke_connect_code(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<Json<ConnectCodeView>, AppError> {
    let code = state.services.revoke_connect_code(&principal, &id).await?;
    Ok(Json(ConnectCodeView::new(code)))
}

/// Give a connect code a new code: the old one stops working; chats that joined stay.
#[utoipa::path(
    post, path = "/v1/connect-codes/{id}/rotate", tag = "linking",
    params(("id" = String, Path, description = "Connect code id")),
    responses(
        (status = 200, description = "Rotated", body = ConnectCodeView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such code (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The code is revoked", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn rotate_connect_code(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<Json<ConnectCodeView>, AppError> {
    let code = state.services.rotate_connect_code(&principal, &id).await?;
    Ok(Json(ConnectCodeView::new(code)))
}

/// The chats that joined with a connect code (its links).
#[utoipa::path(
    get, path = "/v1/connect-codes/{id}/subscribers", tag = "linking",
    params(("id" = String, Path, description = "Connect code id"), crate::http::views::ListParams),
    responses(
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 200, description = "A page of links", body = LinkList),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such code (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn connect_code_subscribers(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<crate::http::views::ListParams>,
) -> Result<Json<LinkList>, AppError> {
    let page = page(params.limit, params.after);
    let listed = state
        .services
        .connect_code_subscribers(&principal, &id, &page)
        .await?;
    Ok(Json(LinkList {
        data: listed.items,
        next_cursor: listed.next_cursor,
    }))
}

// ---- links ----------------------------------------------------------------------------------

/// A page of links.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LinkList {
    /// Links in id order.
    pub data: Vec<LinkView>,
    /// Pass as `after` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// Link list parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LinkListParams {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<PageSize>,
    /// Cursor: `next_cursor` of the previous page.
    pub after: Option<String>,
    /// Only this tenant's (admin keys; tenant keys always see their own).
    pub tenant_id: Option<String>,
    /// Only this app user's links.
    pub external_id: Option<String>,
    /// Only links through this bot.
    pub bot_id: Option<String>,
    /// Only links opted in to this category key (combine with `active=true` for the links
    /// that receive it).
    pub category: Option<String>,
    /// Only active (`true`) or inactive (`false`) links.
    pub active: Option<bool>,
    /// Only this Telegram chat.
    pub chat_id: Option<i64>,
    /// Only chats that joined with this connect code.
    pub connect_code_id: Option<String>,
}

/// `PATCH /v1/links/{id}`: any of the fields; `null` clears a value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"categories": {"alerts": true, "reports": false},
    "timezone": "Europe/Berlin", "quiet_start": "22:00", "quiet_end": "07:00"}))]
pub struct UpdateLinkRequest {
    /// Category key → on or off. A mandatory category cannot be turned off.
    pub categories: Option<BTreeMap<String, bool>>,
    /// IANA time zone of the quiet hours (`Europe/Berlin`); `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub timezone: Option<Option<String>>,
    /// Quiet hours start, `HH:MM`; set with `quiet_end`, `null` clears.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub quiet_start: Option<Option<String>>,
    /// Quiet hours end, `HH:MM`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub quiet_end: Option<Option<String>>,
    /// A JSON object (at most 4 KiB) replacing the metadata; `null` clears.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Option<serde_json::Value>>,
}

/// Answer of `POST /v1/links/{id}/test`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TestMessageView {
    /// Always `true`.
    pub sent: bool,
    /// Telegram's id of the test message.
    pub message_id: i64,
}

/// List links (cursor pages, filters).
#[utoipa::path(
    get, path = "/v1/links", tag = "linking",
    params(LinkListParams),
    responses(
        (status = 200, description = "A page of links", body = LinkList),
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid limit", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn list_links(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiQuery(params): ApiQuery<LinkListParams>,
) -> Result<Json<LinkList>, AppError> {
    let page = page(params.limit, params.after);
    let listed = state
        .services
        .list_links(
            &principal,
            LinkFilter {
                tenant_id: params.tenant_id,
                external_id: params.external_id,
                bot_id: params.bot_id,
                category: params.category,
                active: params.active,
                chat_id: params.chat_id,
                connect_code_id: params.connect_code_id,
            },
            &page,
        )
        .await?;
    Ok(Json(LinkList {
        data: listed.items,
        next_cursor: listed.next_cursor,
    }))
}

/// Get one link with its category preferences.
#[utoipa::path(
    get, path = "/v1/links/{id}", tag = "linking",
    params(("id" = String, Path, description = "Link id")),
    responses(
        (status = 200, description = "The link", body = LinkView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such link (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn get_link(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<Json<LinkView>, AppError> {
    Ok(Json(state.services.get_link(&principal, &id).await?))
}

/// Change a link's category preferences, quiet hours or metadata (`link.updated`). A change
/// of quiet hours or time zone re-plans the link's held messages in the same transaction.
#[utoipa::path(
    patch, path = "/v1/links/{id}", tag = "linking",
    params(("id" = String, Path, description = "Link id")),
    request_body = UpdateLinkRequest,
    responses(
        (status = 200, description = "Updated", body = LinkView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such link (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field breaks a rule (named in `field`), e.g. turning off a mandatory category", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn update_link(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateLinkRequest>,
) -> Result<Json<LinkView>, AppError> {
    if body.categories.is_none()
        && body.timezone.is_none()
        && body.quiet_start.is_none()
        && body.quiet_end.is_none()
        && body.metadata.is_none()
    {
        return Err(AppError::validation(
            "",
            "nothing to update: send `categories`, `timezone`, `quiet_start`, `quiet_end` or `metadata`",
        ));
    }
    let view = state
        .services
        .update_link(
            &principal,
            &id,
            LinkPatch {
                categories: body.categories,
                timezone: body.timezone,
                quiet_start: body.quiet_start,
                quiet_end: body.quiet_end,
                metadata: body.metadata,
            },
        )
        .await?;
    Ok(Json(view))
}

/// Unlink: the link is removed, the user is told in the chat, and `link.removed` is sent.
#[utoipa::path(
    delete, path = "/v1/links/{id}", tag = "linking",
    params(("id" = String, Path, description = "Link id")),
    responses(
        (status = 204, description = "Unlinked"),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such link (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn delete_link(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    state.services.delete_link(&principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Send a test message to the link's chat, at once.
#[utoipa::path(
    post, path = "/v1/links/{id}/test", tag = "linking",
    params(("id" = String, Path, description = "Link id")),
    responses(
        (status = 200, description = "Sent", body = TestMessageView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such link (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The link is inactive, or Telegram says the chat is gone (the link becomes inactive)", body = Problem, content_type = PROBLEM),
        (status = 502, description = "Telegram failed", body = Problem, content_type = PROBLEM),
        (status = 503, description = "Telegram asked to retry later", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn test_link(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<Json<TestMessageView>, AppError> {
    let message_id = state.services.test_link(&principal, &id).await?;
    Ok(Json(TestMessageView {
        sent: true,
        message_id,
    }))
}

// ---- categories -----------------------------------------------------------------------------

/// `POST /v1/categories`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"key": "alerts", "name": "Alerts", "description": "When a device goes down",
    "default_enabled": true, "mandatory": false}))]
pub struct CreateCategoryRequest {
    /// Tenant (required with an admin key; a tenant key uses its own).
    pub tenant_id: Option<String>,
    /// 1 to 32 of `a-z`, `0-9`, `_`, `-`, `.`; unique in the tenant.
    pub key: String,
    /// Display name (1 to 64 characters), shown in `/settings`.
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// Description (1 to 512 characters).
    pub description: Option<String>,
    /// Whether links without a preference receive it (default true).
    pub default_enabled: Option<bool>,
    /// Whether users are kept from turning it off (default false).
    pub mandatory: Option<bool>,
}

/// `PATCH /v1/categories/{id}`: any of the fields; the key cannot change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCategoryRequest {
    /// Display name (1 to 64 characters).
    #[schema(min_length = 1, max_length = 64)]
    pub name: Option<String>,
    /// Description; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// Whether links without a preference receive it.
    pub default_enabled: Option<bool>,
    /// Whether users are kept from turning it off.
    pub mandatory: Option<bool>,
}

/// A notification category.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "cat_01jd8y3k7q9x4m2n5p6r7s8t9v", "tenant_id": "ten_01jd8y3k7q9x4m2n5p6r7s8t9v",
    "key": "alerts", "name": "Alerts", "description": null, "default_enabled": true, "mandatory": false,
    "created_at": "2026-11-21T05:00:00Z", "updated_at": "2026-11-21T05:00:00Z"}))]
pub struct CategoryView {
    /// Opaque id (`cat_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Key.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Whether links without a preference receive it.
    pub default_enabled: bool,
    /// Whether users are kept from turning it off.
    pub mandatory: bool,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
    /// Last change (RFC 3339, UTC).
    pub updated_at: String,
}

impl From<CategoryRecord> for CategoryView {
    fn from(c: CategoryRecord) -> Self {
        CategoryView {
            id: c.id,
            tenant_id: c.tenant_id,
            key: c.key,
            name: c.name,
            description: c.description,
            default_enabled: c.default_enabled,
            mandatory: c.mandatory,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
        }
    }
}

/// A page of categories.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CategoryList {
    /// Categories in id order.
    pub data: Vec<CategoryView>,
    /// Pass as `after` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// Category list parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CategoryListParams {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<PageSize>,
    /// Cursor: `next_cursor` of the previous page.
    pub after: Option<String>,
    /// Only this tenant's (admin keys; tenant keys always see their own).
    pub tenant_id: Option<String>,
}

/// Create a notification category.
#[utoipa::path(
    post, path = "/v1/categories", tag = "linking",
    request_body = CreateCategoryRequest,
    responses(
        (status = 201, description = "Created", body = CategoryView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "tenant_id names another tenant", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The tenant has this key already", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field breaks a rule (named in `field`)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn create_category(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiJson(body): ApiJson<CreateCategoryRequest>,
) -> Result<(StatusCode, Json<CategoryView>), AppError> {
    let c = state
        .services
        .create_category(
            &principal,
            NewCategory {
                tenant_id: body.tenant_id,
                key: body.key,
                name: body.name,
                description: body.description,
                default_enabled: body.default_enabled,
                mandatory: body.mandatory,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(c.into())))
}

/// List categories.
#[utoipa::path(
    get, path = "/v1/categories", tag = "linking",
    params(CategoryListParams),
    responses(
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 200, description = "A page of categories", body = CategoryList),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid limit", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn list_categories(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiQuery(params): ApiQuery<CategoryListParams>,
) -> Result<Json<CategoryList>, AppError> {
    let page = page(params.limit, params.after);
    let listed = state
        .services
        .list_categories(&principal, params.tenant_id, &page)
        .await?;
    Ok(Json(CategoryList {
        data: listed.items.into_iter().map(Into::into).collect(),
        next_cursor: listed.next_cursor,
    }))
}

/// Get one category.
#[utoipa::path(
    get, path = "/v1/categories/{id}", tag = "linking",
    params(("id" = String, Path, description = "Category id")),
    responses(
        (status = 200, description = "The category", body = CategoryView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such category (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn get_category(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<Json<CategoryView>, AppError> {
    Ok(Json(
        state.services.get_category(&principal, &id).await?.into(),
    ))
}

/// Change a category's name, description, default or whether it is mandatory.
#[utoipa::path(
    patch, path = "/v1/categories/{id}", tag = "linking",
    params(("id" = String, Path, description = "Category id")),
    request_body = UpdateCategoryRequest,
    responses(
        (status = 200, description = "Updated", body = CategoryView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such category (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field breaks a rule, or nothing to update", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn update_category(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateCategoryRequest>,
) -> Result<Json<CategoryView>, AppError> {
    if body.name.is_none()
        && body.description.is_none()
        && body.default_enabled.is_none()
        && body.mandatory.is_none()
    {
        return Err(AppError::validation(
            "",
            "nothing to update: send `name`, `description`, `default_enabled` or `mandatory`",
        ));
    }
    let c = state
        .services
        .update_category(
            &principal,
            &id,
            CategoryPatch {
                name: body.name,
                description: body.description,
                default_enabled: body.default_enabled,
                mandatory: body.mandatory,
            },
        )
        .await?;
    Ok(Json(c.into()))
}

/// Delete a category and every link's preference for it.
#[utoipa::path(
    delete, path = "/v1/categories/{id}", tag = "linking",
    params(("id" = String, Path, description = "Category id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such category (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn delete_category(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    state.services.delete_category(&principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

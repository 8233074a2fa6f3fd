//! HTTP handlers and bodies for `/v1/gated-chats`, `/v1/entitlements` and
//! `/v1/memberships`. Registered (with their OpenAPI documentation) in [`crate::api`].

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::access::{AccessState, access, state_of};
use super::service::{Change, GatedChatInput, GrantInput, access_time};
use super::sweep::Swept;
use crate::http::problem::Problem;
use crate::http::views::{PageSize, page};
use crate::http::{ApiJson, ApiQuery, AppError, AppState, Auth};
use crate::ids::rfc3339;
use crate::schedules::occurrence::Interval;
use crate::services::{ServiceError, Services};
use crate::store::{
    EntitlementFilter, EntitlementRecord, EntryKind, GateStatus, GatedChatRecord, JoinMode,
    MembershipFilter, MembershipRecord, MembershipState,
};

const PROBLEM: &str = "application/problem+json";
type ApiResult<T> = Result<T, AppError>;

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

/// `3d`, `12h`, `30m` as seconds.
fn span_seconds(field: &'static str, text: &str) -> Result<i64, ServiceError> {
    Interval::parse(text)
        .map(|i| i.approx_millis() / 1000)
        .map_err(|_| {
            invalid(
                field,
                format!("{text:?} is not a duration such as 3d, 12h or 30m"),
            )
        })
}

fn parse_time(field: &'static str, text: &str) -> Result<i64, ServiceError> {
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

fn reminders(list: &[String]) -> Result<Vec<i64>, ServiceError> {
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

/// One chat an entitlement opens, and where its holder stands there.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EntitlementChatView {
    /// The gated chat.
    pub gated_chat_id: String,
    /// The holder's state there (all their entitlements, the chat's grace).
    pub state: AccessState,
    /// Until when they may be in (RFC 3339, `"forever"`, or null).
    #[schema(value_type = Option<String>)]
    pub access_until: serde_json::Value,
    /// Their membership.
    pub membership_id: Option<String>,
    /// Its state.
    pub membership_state: Option<MembershipState>,
    /// Their personal link (for the app to deliver when the user has not started the bot).
    pub invite_link: Option<String>,
}

/// One ledger entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EntryView {
    /// Opaque id.
    pub id: String,
    /// `grant`, `extend`, `cancel` or `revoke`.
    pub kind: EntryKind,
    /// `api`, `telegram` (a Star subscription), later `stars`, `stripe`.
    pub source: String,
    /// The key that made it apply once.
    pub source_key: String,
    /// Its end (grant, extend).
    pub ends_at: Option<String>,
    /// Cancel at period end.
    pub at_period_end: bool,
    /// The caller's reason.
    pub reason: Option<String>,
    /// When.
    pub created_at: String,
}

/// An entitlement.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "ent_01jd8y3k7q9x4m2n5p6r7s8t9v", "external_id": "user-42", "telegram_user_id": null,
    "gated_chat_ids": ["gc_01jd8y3k7q9x4m2n5p6r7s8t9v"], "starts_at": "2026-12-01T09:00:00Z",
    "ends_at": "2026-12-31T09:00:00Z", "state": "active", "cancel_at_period_end": false,
    "cancelled_at": null, "revoked_at": null, "source": "api", "replayed": false,
    "chats": [{"gated_chat_id": "gc_01jd8y3k7q9x4m2n5p6r7s8t9v", "state": "active",
        "access_until": "2026-12-31T09:00:00Z", "membership_id": "mem_01jd8y3k7q9x4m2n5p6r7s8t9v",
        "membership_state": "invited", "invite_link": "https://t.me/+AbCdEf0123456789"}],
    "entries": [], "created_at": "2026-12-01T09:00:00Z", "updated_at": "2026-12-01T09:00:00Z"}))]
pub struct EntitlementView {
    /// Opaque id.
    pub id: String,
    /// The app user.
    pub external_id: Option<String>,
    /// The Telegram user.
    pub telegram_user_id: Option<i64>,
    /// The gated chats it opens.
    pub gated_chat_ids: Vec<String>,
    /// From.
    pub starts_at: String,
    /// Until (null = forever).
    pub ends_at: Option<String>,
    /// Its own state (grace aside): `pending`, `active`, `expired`, `cancelled`, `revoked`.
    pub state: AccessState,
    /// Will not renew; access stays until `ends_at`.
    pub cancel_at_period_end: bool,
    /// Cancelled at once.
    pub cancelled_at: Option<String>,
    /// Revoked.
    pub revoked_at: Option<String>,
    /// The grant's source.
    pub source: String,
    /// This answer repeats an entry applied before (same source key): nothing changed.
    pub replayed: bool,
    /// Per chat: the holder's state, membership and personal link.
    pub chats: Vec<EntitlementChatView>,
    /// The ledger, oldest first (on single reads and changes).
    pub entries: Vec<EntryView>,
    /// Created at.
    pub created_at: String,
    /// Last entry.
    pub updated_at: String,
}

/// An entitlement as the API (and the CLI's `--json`) shows it: per chat the holder's
/// state, membership and personal link; with its ledger when `with_entries`.
pub(crate) async fn entitlement_view(
    services: &Services,
    e: EntitlementRecord,
    replayed: bool,
    with_entries: bool,
) -> Result<EntitlementView, ServiceError> {
    let now = services.clock.now_millis();
    let mut chats = Vec::new();
    for id in &e.gated_chat_ids {
        let Some(chat) = services
            .store
            .get_gated_chat(None, id)
            .await
            .map_err(ServiceError::from)?
        else {
            continue;
        };
        let ents = services
            .store
            .holder_entitlements(
                &chat.tenant_id,
                &chat.id,
                e.external_id.as_deref(),
                e.telegram_user_id,
            )
            .await
            .map_err(ServiceError::from)?;
        let acc = access(&ents, chat.grace_seconds * 1000, now);
        let m = services
            .store
            .find_membership(&chat.id, e.telegram_user_id, e.external_id.as_deref())
            .await
            .map_err(ServiceError::from)?;
        chats.push(EntitlementChatView {
            gated_chat_id: chat.id,
            state: acc.state,
            access_until: access_time(acc.until),
            membership_id: m.as_ref().map(|m| m.id.clone()),
            membership_state: m.as_ref().map(|m| m.state),
            invite_link: m.and_then(|m| m.invite_link),
        });
    }
    let entries = if with_entries {
        services
            .store
            .entitlement_entries(&e.id)
            .await
            .map_err(ServiceError::from)?
            .into_iter()
            .map(|x| EntryView {
                id: x.id,
                kind: x.kind,
                source: x.source,
                source_key: x.source_key,
                ends_at: x.ends_at.map(rfc3339),
                at_period_end: x.at_period_end,
                reason: x.reason,
                created_at: rfc3339(x.created_at),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(EntitlementView {
        state: state_of(&e, 0, now),
        id: e.id,
        external_id: e.external_id,
        telegram_user_id: e.telegram_user_id,
        gated_chat_ids: e.gated_chat_ids,
        starts_at: rfc3339(e.starts_at),
        ends_at: e.ends_at.map(rfc3339),
        cancel_at_period_end: e.cancel_at_period_end,
        cancelled_at: e.cancelled_at.map(rfc3339),
        revoked_at: e.revoked_at.map(rfc3339),
        source: e.source,
        replayed,
        chats,
        entries,
        created_at: rfc3339(e.created_at),
        updated_at: rfc3339(e.updated_at),
    })
}

/// `POST /v1/entitlements`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"external_id": "user-42", "gated_chat_ids": ["gc_01jd8y3k7q9x4m2n5p6r7s8t9v"],
    "duration": "30d", "source_key": "order-1042"}))]
pub struct GrantBody {
    /// The app user (their private chat linked through the gated chat's bot is their
    /// Telegram user). Give this or `telegram_user_id`, or both.
    pub external_id: Option<String>,
    /// The Telegram user.
    pub telegram_user_id: Option<i64>,
    /// The gated chats it opens (1 to 50).
    pub gated_chat_ids: Vec<String>,
    /// From (RFC 3339; default now).
    pub starts_at: Option<String>,
    /// Until (RFC 3339). Give this, `duration`, or neither (forever).
    pub ends_at: Option<String>,
    /// Until, from `starts_at`: `30d`, `12h`.
    pub duration: Option<String>,
    /// Makes the grant apply once (your order id); the `Idempotency-Key` header when absent.
    pub source_key: Option<String>,
    /// Why (kept in the ledger).
    pub reason: Option<String>,
    /// The tenant (admin keys).
    pub tenant_id: Option<String>,
}

fn key_from(headers: &HeaderMap, body: Option<String>) -> ApiResult<Option<String>> {
    if let Some(k) = body {
        if k.is_empty() || k.len() > 200 {
            return Err(invalid("source_key", "must be 1 to 200 characters").into());
        }
        return Ok(Some(k));
    }
    match headers.get("idempotency-key") {
        Some(v) => Ok(Some(
            v.to_str()
                .map_err(|_| {
                    AppError::validation(
                        "Idempotency-Key",
                        "Idempotency-Key: must be visible ASCII",
                    )
                })?
                .to_string(),
        )),
        None => Ok(None),
    }
}

/// Grant an entitlement: the holder may be in these gated chats from `starts_at` until
/// `ends_at` (then the chat's grace). Once per `source_key`: the same grant again answers
/// the entitlement it made (200, `replayed`); the same key with another body is 409. A
/// holder not in a chat gets a personal link (in `chats[].invite_link`, and sent to their
/// linked private chat).
#[utoipa::path(
    post, path = "/v1/entitlements", tag = "memberships",
    request_body = GrantBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "The source key, when the body has none")),
    responses(
        (status = 201, description = "Granted", body = EntitlementView),
        (status = 200, description = "Granted before with this source key: nothing changed", body = EntitlementView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "tenant_id names another tenant", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The source key was used for a different entry", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field is invalid (named in `field`)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn grant_entitlement(
    State(state): State<AppState>,
    Auth(principal): Auth,
    headers: HeaderMap,
    ApiJson(body): ApiJson<GrantBody>,
) -> ApiResult<(StatusCode, Json<EntitlementView>)> {
    let tenant = state
        .services
        .acting_tenant(&principal, body.tenant_id.as_deref())
        .await?;
    let source_key = key_from(&headers, body.source_key)?;
    let starts_at = body
        .starts_at
        .as_deref()
        .map(|t| parse_time("starts_at", t))
        .transpose()?;
    let ends_at = body
        .ends_at
        .as_deref()
        .map(|t| parse_time("ends_at", t))
        .transpose()?;
    // A duration stays a duration: the same grant replayed later is the same grant.
    let duration_ms = body
        .duration
        .as_deref()
        .map(|d| span_seconds("duration", d).map(|s| s * 1000))
        .transpose()?;
    let out = state
        .services
        .grant_entitlement(
            &tenant,
            GrantInput {
                external_id: body.external_id,
                telegram_user_id: body.telegram_user_id,
                gated_chat_ids: body.gated_chat_ids,
                starts_at,
                ends_at,
                duration_ms,
                source: "api".into(),
                source_key,
                reason: body.reason,
            },
        )
        .await?;
    let status = if out.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let view = entitlement_view(&state.services, out.entitlement, out.replayed, true).await?;
    Ok((status, Json(view)))
}

/// Filters for `GET /v1/entitlements`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EntitlementListParams {
    /// One app user's.
    pub external_id: Option<String>,
    /// Those opening this gated chat.
    pub gated_chat_id: Option<String>,
    /// Only those in force now (`true`) or not (`false`), grace aside.
    pub active: Option<bool>,
    /// The tenant (required with an admin key).
    pub tenant_id: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<PageSize>,
    /// Cursor.
    pub after: Option<String>,
}

/// A page of entitlements.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EntitlementList {
    /// In id order.
    pub data: Vec<EntitlementView>,
    /// Pass as `after` for the next page.
    pub next_cursor: Option<String>,
}

/// The tenant's entitlements.
#[utoipa::path(
    get, path = "/v1/entitlements", tag = "memberships",
    params(EntitlementListParams),
    responses(
        (status = 200, description = "A page of entitlements", body = EntitlementList),
        (status = 400, description = "Unknown query parameter or bad value", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid limit, or no tenant_id with an admin key", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn list_entitlements(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiQuery(q): ApiQuery<EntitlementListParams>,
) -> ApiResult<Json<EntitlementList>> {
    let tenant = state
        .services
        .acting_tenant(&principal, q.tenant_id.as_deref())
        .await?;
    let filter = EntitlementFilter {
        external_id: q.external_id,
        gated_chat_id: q.gated_chat_id,
        active: q.active,
        now: state.services.clock.now_millis(),
    };
    let listed = state
        .services
        .store
        .list_entitlements(&tenant, &filter, &page(q.limit, q.after))
        .await
        .map_err(ServiceError::from)?;
    let mut data = Vec::new();
    for e in listed.items {
        data.push(entitlement_view(&state.services, e, false, false).await?);
    }
    Ok(Json(EntitlementList {
        data,
        next_cursor: listed.next_cursor,
    }))
}

/// One entitlement with its ledger.
#[utoipa::path(
    get, path = "/v1/entitlements/{id}", tag = "memberships",
    params(("id" = String, Path, description = "Entitlement id")),
    responses(
        (status = 200, description = "The entitlement", body = EntitlementView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such entitlement (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn get_entitlement(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<EntitlementView>> {
    let e = state.services.entitlement(&principal, &id).await?;
    Ok(Json(
        entitlement_view(&state.services, e, false, true).await?,
    ))
}

/// `POST /v1/entitlements/{id}/extend`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// The new end (RFC 3339). Give this or `duration`.
    pub ends_at: Option<String>,
    /// Added to the current end (or to now, when it ended): `30d`.
    pub duration: Option<String>,
    /// Makes the extension apply once (your renewal's id).
    pub source_key: Option<String>,
    /// Why.
    pub reason: Option<String>,
}

/// `POST /v1/entitlements/{id}/cancel`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// Keep access until the current end (default false: access ends now).
    #[serde(default)]
    pub at_period_end: bool,
    /// Makes the cancellation apply once.
    pub source_key: Option<String>,
    /// Why.
    pub reason: Option<String>,
}

/// `POST /v1/entitlements/{id}/revoke`.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// Makes the revocation apply once.
    pub source_key: Option<String>,
    /// Why.
    pub reason: Option<String>,
}

async fn changed(
    state: &AppState,
    principal: &crate::services::Principal,
    id: &str,
    change: Change,
    key: Option<String>,
    reason: Option<String>,
) -> ApiResult<Json<EntitlementView>> {
    let out = state
        .services
        .change_entitlement(principal, id, change, key, reason)
        .await?;
    Ok(Json(
        entitlement_view(&state.services, out.entitlement, out.replayed, true).await?,
    ))
}

/// Extend an entitlement (a renewal). Members stay in; reminders start again for the new
/// end.
#[utoipa::path(
    post, path = "/v1/entitlements/{id}/extend", tag = "memberships",
    params(("id" = String, Path, description = "Entitlement id"),
        ("Idempotency-Key" = Option<String>, Header, description = "The source key, when the body has none")),
    request_body = ExtendBody,
    responses(
        (status = 200, description = "Extended (or replayed)", body = EntitlementView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such entitlement", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The source key was used for a different entry", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid end, or the entitlement was cancelled or revoked", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn extend_entitlement(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ExtendBody>,
) -> ApiResult<Json<EntitlementView>> {
    let key = key_from(&headers, body.source_key)?;
    let change = match (body.ends_at.as_deref(), body.duration.as_deref()) {
        (Some(t), None) => Change::Extend {
            ends_at: Some(parse_time("ends_at", t)?),
            duration_ms: None,
        },
        (None, Some(d)) => Change::Extend {
            ends_at: None,
            duration_ms: Some(span_seconds("duration", d)? * 1000),
        },
        _ => return Err(invalid("ends_at", "give ends_at or duration (one of them)").into()),
    };
    changed(&state, &principal, &id, change, key, body.reason).await
}

/// Cancel an entitlement: at period end (access stays until `ends_at`, no renewal) or now
/// (members are removed at once).
#[utoipa::path(
    post, path = "/v1/entitlements/{id}/cancel", tag = "memberships",
    params(("id" = String, Path, description = "Entitlement id"),
        ("Idempotency-Key" = Option<String>, Header, description = "The source key, when the body has none")),
    request_body = CancelBody,
    responses(
        (status = 200, description = "Cancelled (or replayed)", body = EntitlementView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such entitlement", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The source key was used for a different entry", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Already cancelled or revoked, or at_period_end without an end", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn cancel_entitlement(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CancelBody>,
) -> ApiResult<Json<EntitlementView>> {
    let key = key_from(&headers, body.source_key)?;
    changed(
        &state,
        &principal,
        &id,
        Change::Cancel {
            at_period_end: body.at_period_end,
        },
        key,
        body.reason,
    )
    .await
}

/// Revoke an entitlement: access ends now, members are removed at once.
#[utoipa::path(
    post, path = "/v1/entitlements/{id}/revoke", tag = "memberships",
    params(("id" = String, Path, description = "Entitlement id"),
        ("Idempotency-Key" = Option<String>, Header, description = "The source key, when the body has none")),
    request_body = RevokeBody,
    responses(
        (status = 200, description = "Revoked (or replayed)", body = EntitlementView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such entitlement", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The source key was used for a different entry", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Already revoked", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn revoke_entitlement(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RevokeBody>,
) -> ApiResult<Json<EntitlementView>> {
    let key = key_from(&headers, body.source_key)?;
    changed(&state, &principal, &id, Change::Revoke, key, body.reason).await
}

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

//! `/v1/entitlements`: grant, list, read, extend, cancel and revoke; each answer shows the
//! holder's state, membership and personal link per chat.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiResult, PROBLEM, invalid, parse_time, span_seconds};
use crate::http::problem::Problem;
use crate::http::views::{PageSize, page};
use crate::http::{ApiJson, ApiQuery, AppError, AppState, Auth};
use crate::ids::rfc3339;
use crate::memberships::access::{AccessState, access, state_of};
use crate::memberships::ledger::{Change, GrantInput};
use crate::memberships::sync::access_time;
use crate::services::{ServiceError, Services};
use crate::store::{EntitlementFilter, EntitlementRecord, EntryKind, MembershipState};

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

//! The HTTP edge: thin handlers (parse, authorize, call a service, map the result), the
//! OpenAPI document, and operational endpoints.

pub mod inbound;

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::{Json, Router};
use secrecy::ExposeSecret;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::views::*;
pub use crate::http::{ApiJson, ApiQuery, AppError, AppState, Auth, Problem};
use crate::http::{ApiResult, PROBLEM};

use crate::store::BotFilter;

/// The OpenAPI document as served.
#[derive(Clone, Debug)]
pub struct OpenApiJson(pub Arc<String>);

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("API key (rg_…)")
                    .description(Some(
                        "An admin key (all tenants) or a tenant key (that tenant only).",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "relaygram",
        description = "Self-hosted Telegram gateway: tenants and API keys, bots and their \
            commands, inbound updates and signed events to the app, linking app users to \
            chats, the outbox (messages, broadcasts, digests), templates and schedules. \
            Every error is RFC 9457 `application/problem+json` with a stable `type`; bad \
            input is a 4xx and changes nothing.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    components(schemas(Problem, PageSize)),
    tags(
        (name = "tenants", description = "Isolation boundaries"),
        (name = "api-keys", description = "Tenant API keys"),
        (name = "bots", description = "Telegram bots"),
        (name = "commands", description = "Custom bot commands and the Telegram menu"),
        (name = "texts", description = "What the bot says on its own (welcome, help, linking answers…), per language"),
        (name = "events", description = "Signed event webhooks to the app, and the pull API"),
        (name = "messages", description = "The outbox: sending, status, re-drive, broadcasts, statistics"),
        (name = "linking", description = "Link tokens, connect codes, links and notification categories"),
        (name = "templates", description = "Message templates, rendered and checked for Telegram"),
        (name = "schedules", description = "Recurring messages: cron or interval, in a time zone, once per occurrence"),
        (name = "digests", description = "Messages collected per key and recipient, sent as one when the window closes"),
        (name = "memberships", description = "Paid access to groups and channels: gated chats, the entitlement ledger, memberships"),
        (name = "operations", description = "Health, readiness, metrics, this document")
    )
)]
struct ApiDoc;

/// The routes; `POST /v1/messages` accepts bodies up to `send_body_bytes` (the others are
/// capped by the server's `max_body_bytes`).
fn routes(send_body_bytes: usize) -> OpenApiRouter<AppState> {
    use utoipa_axum::router::UtoipaMethodRouterExt;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_tenant, list_tenants))
        .routes(routes!(get_tenant))
        .routes(routes!(create_api_key, list_api_keys))
        .routes(routes!(revoke_api_key))
        .routes(routes!(create_bot, list_bots))
        .routes(routes!(get_bot, update_bot, delete_bot))
        .routes(routes!(register_webhook))
        .routes(routes!(
            crate::commands::api::create_command,
            crate::commands::api::list_commands
        ))
        .routes(routes!(
            crate::commands::api::get_command,
            crate::commands::api::update_command,
            crate::commands::api::delete_command
        ))
        .routes(routes!(crate::texts::api::list_texts))
        .routes(routes!(
            crate::texts::api::get_text,
            crate::texts::api::put_text,
            crate::texts::api::delete_text
        ))
        .routes(routes!(inbound::telegram_webhook))
        .routes(routes!(inbound::list_updates))
        .routes(routes!(
            crate::events::http::create_event_endpoint,
            crate::events::http::list_event_endpoints
        ))
        .routes(routes!(
            crate::events::http::get_event_endpoint,
            crate::events::http::delete_event_endpoint
        ))
        .routes(routes!(crate::events::http::pull_events))
        .routes(routes!(crate::events::http::get_event))
        .routes(routes!(crate::events::http::replay_event))
        .routes(
            routes!(crate::delivery::api::send_message)
                .layer(axum::extract::DefaultBodyLimit::max(send_body_bytes)),
        )
        .routes(routes!(crate::delivery::api::list_messages))
        .routes(routes!(
            crate::delivery::api::get_message,
            crate::delivery::api::edit_message,
            crate::delivery::api::delete_message
        ))
        .routes(routes!(crate::delivery::api::retry_message))
        .routes(routes!(crate::delivery::api::retry_messages))
        .routes(routes!(crate::delivery::api::list_broadcasts))
        .routes(routes!(crate::delivery::api::get_broadcast))
        .routes(routes!(crate::delivery::api::pause_broadcast))
        .routes(routes!(crate::delivery::api::resume_broadcast))
        .routes(routes!(crate::delivery::api::cancel_broadcast))
        .routes(routes!(crate::delivery::api::stats))
        .routes(routes!(
            crate::delivery::api::get_bot_limits,
            crate::delivery::api::put_bot_limits
        ))
        .routes(routes!(crate::linking::api::create_link_token))
        .routes(routes!(crate::linking::api::get_link_token))
        .routes(routes!(crate::linking::api::link_token_qr))
        .routes(routes!(
            crate::linking::api::create_connect_code,
            crate::linking::api::list_connect_codes
        ))
        .routes(routes!(
            crate::linking::api::get_connect_code,
            crate::linking::api::revoke_connect_code
        ))
        .routes(routes!(crate::linking::api::rotate_connect_code))
        .routes(routes!(crate::linking::api::connect_code_subscribers))
        .routes(routes!(crate::linking::api::list_links))
        .routes(routes!(
            crate::linking::api::get_link,
            crate::linking::api::update_link,
            crate::linking::api::delete_link
        ))
        .routes(routes!(crate::linking::api::test_link))
        .routes(routes!(
            crate::linking::api::create_category,
            crate::linking::api::list_categories
        ))
        .routes(routes!(
            crate::linking::api::get_category,
            crate::linking::api::update_category,
            crate::linking::api::delete_category
        ))
        .routes(routes!(
            crate::templates::api::create_template,
            crate::templates::api::list_templates
        ))
        .routes(routes!(
            crate::templates::api::get_template,
            crate::templates::api::put_template,
            crate::templates::api::delete_template
        ))
        .routes(routes!(crate::templates::api::preview_template))
        .routes(routes!(
            crate::schedules::api::create_schedule,
            crate::schedules::api::list_schedules
        ))
        .routes(routes!(
            crate::schedules::api::get_schedule,
            crate::schedules::api::update_schedule,
            crate::schedules::api::delete_schedule
        ))
        .routes(routes!(crate::schedules::api::run_schedule))
        .routes(routes!(crate::schedules::api::list_schedule_runs))
        .routes(routes!(crate::digests::api::list_digests))
        .routes(routes!(crate::digests::api::get_digest))
        .routes(routes!(
            crate::memberships::api::create_gated_chat,
            crate::memberships::api::list_gated_chats
        ))
        .routes(routes!(
            crate::memberships::api::get_gated_chat,
            crate::memberships::api::update_gated_chat,
            crate::memberships::api::delete_gated_chat
        ))
        .routes(routes!(crate::memberships::api::sync_gated_chat))
        .routes(routes!(crate::memberships::api::create_gate_token))
        .routes(routes!(crate::memberships::api::get_gate_token))
        .routes(routes!(
            crate::memberships::api::grant_entitlement,
            crate::memberships::api::list_entitlements
        ))
        .routes(routes!(crate::memberships::api::get_entitlement))
        .routes(routes!(crate::memberships::api::extend_entitlement))
        .routes(routes!(crate::memberships::api::cancel_entitlement))
        .routes(routes!(crate::memberships::api::revoke_entitlement))
        .routes(routes!(crate::memberships::api::list_memberships))
        .routes(routes!(crate::memberships::api::get_membership))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
}

/// The OpenAPI 3.1 document generated from the routes, as served.
pub fn openapi() -> serde_json::Value {
    complete(
        routes(crate::delivery::request::send_body_limit(
            crate::config::DEFAULT_MAX_BODY_BYTES,
        ))
        .split_for_parts()
        .1,
    )
}

/// Adds the answers every operation of a kind can give, whatever its handler: `401` to
/// those that need a key; `400` (malformed JSON), `413`, `415` and `422` to those that
/// take a body; `400` to those with query parameters (an unknown one or a bad value);
/// `404` to those with path parameters (no such resource) and to those that take a
/// `tenant_id` (in the query or the body), which may name a tenant the key cannot see; `422` where an admin key must name the tenant; `503` (rate
/// limited, with `Retry-After`) wherever Telegram's failure is a `502`. A body with no
/// required field is optional (an empty body reads as `{}`).
fn complete(openapi: utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut doc = serde_json::to_value(&openapi).expect("the document serializes");
    let schemas = doc["components"]["schemas"].clone();
    let body_has_tenant_id = |op: &serde_json::Value| {
        let schema = &op["requestBody"]["content"]["application/json"]["schema"];
        let schema = match schema["$ref"].as_str() {
            Some(r) => &schemas[r.trim_start_matches("#/components/schemas/")],
            None => schema,
        };
        schema["properties"].get("tenant_id").is_some()
    };
    let body_requires_fields = |op: &serde_json::Value| {
        let schema = &op["requestBody"]["content"]["application/json"]["schema"];
        let schema = match schema["$ref"].as_str() {
            Some(r) => &schemas[r.trim_start_matches("#/components/schemas/")],
            None => schema,
        };
        schema["required"].as_array().is_some_and(|r| !r.is_empty())
    };
    let problem = |description: &str| {
        serde_json::json!({"description": description, "content": {PROBLEM: {
            "schema": {"$ref": "#/components/schemas/Problem"}}}})
    };
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for op in item.values_mut() {
                let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
                let has_body = op.get("requestBody").is_some();
                let has_path_params = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["in"] == "path"));
                let has_query = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
                let tenant_required = op["parameters"].as_array().is_some_and(|ps| {
                    ps.iter().any(|p| {
                        p["name"] == "tenant_id"
                            && p["description"]
                                .as_str()
                                .is_some_and(|d| d.contains("required with an admin key"))
                    })
                });
                let names_tenant = body_has_tenant_id(op)
                    || op["parameters"].as_array().is_some_and(|ps| {
                        ps.iter()
                            .any(|p| p["in"] == "query" && p["name"] == "tenant_id")
                    });
                // An empty body is read as `{}`: where no field is required, the body is
                // optional.
                if has_body && !body_requires_fields(op) {
                    op["requestBody"]["required"] = serde_json::Value::Bool(false);
                }
                let Some(responses) = op["responses"].as_object_mut() else {
                    continue;
                };
                let calls_telegram = responses.contains_key("502");
                let mut add = |code: &str, description: &str| {
                    responses
                        .entry(code)
                        .or_insert_with(|| problem(description));
                };
                if secured {
                    add("401", "Missing, unknown or revoked key");
                }
                if has_body {
                    add("400", "Malformed JSON");
                    add("413", "Body too large (`max_body_bytes`)");
                    add("415", "The body is not `application/json`");
                    add("422", "Invalid field (`field` names it)");
                }
                if has_path_params {
                    add("404", "No such resource (or another tenant's)");
                }
                if names_tenant {
                    add(
                        "404",
                        "No such resource, or `tenant_id` names a tenant this key cannot see",
                    );
                }
                if calls_telegram {
                    add(
                        "503",
                        "Telegram is rate limiting the bot (`retry_after`, `Retry-After`)",
                    );
                }
                if tenant_required {
                    add("422", "An admin key names no `tenant_id`");
                }
                if has_query {
                    add(
                        "400",
                        "Unknown query parameter or bad value (`field` names it)",
                    );
                }
            }
        }
    }
    doc
}

/// Builds the API router (without global middleware); it serves its own OpenAPI document.
/// `max_body_bytes` is the server's body limit; `POST /v1/messages` gets room for the
/// longest list of targets on top ([`crate::delivery::request::send_body_limit`]).
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let (router, openapi) =
        routes(crate::delivery::request::send_body_limit(max_body_bytes)).split_for_parts();
    let json = serde_json::to_string_pretty(&complete(openapi)).expect("the document serializes");
    router
        .layer(Extension(OpenApiJson(Arc::new(json))))
        .with_state(state)
}

// ---- tenants ------------------------------------------------------------------------------

/// Create a tenant (admin key).
#[utoipa::path(
    post, path = "/v1/tenants", tag = "tenants",
    request_body = CreateTenantRequest,
    responses(
        (status = 201, description = "Created", body = TenantView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Not an admin key", body = Problem, content_type = PROBLEM),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid field", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
async fn create_tenant(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiJson(body): ApiJson<CreateTenantRequest>,
) -> ApiResult<(StatusCode, Json<TenantView>)> {
    let tenant = state.services.create_tenant(&principal, &body.name).await?;
    Ok((StatusCode::CREATED, Json(tenant.into())))
}

/// List tenants (a tenant key sees only its own).
#[utoipa::path(
    get, path = "/v1/tenants", tag = "tenants",
    params(ListParams),
    responses(
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 200, description = "A page of tenants", body = TenantList),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid limit", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
async fn list_tenants(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<TenantList>> {
    let page = page(params.limit, params.after);
    let listed = state.services.list_tenants(&principal, &page).await?;
    Ok(Json(TenantList {
        data: listed.items.into_iter().map(Into::into).collect(),
        next_cursor: listed.next_cursor,
    }))
}

/// Get one tenant.
#[utoipa::path(
    get, path = "/v1/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such tenant (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
async fn get_tenant(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<TenantView>> {
    let tenant = state.services.visible_tenant(&principal, &id).await?;
    Ok(Json(tenant.into()))
}

// ---- API keys -----------------------------------------------------------------------------

/// Create an API key for a tenant. The key is returned this once.
#[utoipa::path(
    post, path = "/v1/tenants/{id}/api-keys", tag = "api-keys",
    params(("id" = String, Path, description = "Tenant id")),
    request_body(content = CreateApiKeyRequest, description = "Optional; may be empty"),
    responses(
        (status = 201, description = "Created; `key` is shown only now", body = CreatedApiKeyView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such tenant (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid field", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
async fn create_api_key(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateApiKeyRequest>,
) -> ApiResult<(StatusCode, Json<CreatedApiKeyView>)> {
    let created = state
        .services
        .create_api_key(&principal, &id, body.name.as_deref())
        .await?;
    let r = created.record;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKeyView {
            id: r.id,
            tenant_id: r.tenant_id,
            scope: r.scope,
            name: r.name,
            prefix: r.prefix,
            created_at: crate::ids::rfc3339(r.created_at),
            key: created.key.expose_secret().to_string(),
        }),
    ))
}

/// List a tenant's API keys (prefix only, never the key).
#[utoipa::path(
    get, path = "/v1/tenants/{id}/api-keys", tag = "api-keys",
    params(("id" = String, Path, description = "Tenant id"), ListParams),
    responses(
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 200, description = "A page of keys", body = ApiKeyList),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such tenant (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
async fn list_api_keys(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> ApiResult<Json<ApiKeyList>> {
    let page = page(params.limit, params.after);
    let listed = state.services.list_api_keys(&principal, &id, &page).await?;
    Ok(Json(ApiKeyList {
        data: listed.items.into_iter().map(Into::into).collect(),
        next_cursor: listed.next_cursor,
    }))
}

/// Revoke an API key, effective immediately.
#[utoipa::path(
    delete, path = "/v1/tenants/{id}/api-keys/{key_id}", tag = "api-keys",
    params(
        ("id" = String, Path, description = "Tenant id"),
        ("key_id" = String, Path, description = "API key id")
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such key in this tenant", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
async fn revoke_api_key(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((id, key_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state
        .services
        .revoke_api_key(&principal, Some(&id), &key_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- bots ---------------------------------------------------------------------------------

/// Add a bot: the token is checked with `getMe`, stored encrypted, and the webhook is
/// registered when `public_url` is configured (else the bot runs in polling mode).
#[utoipa::path(
    post, path = "/v1/bots", tag = "bots",
    request_body = CreateBotRequest,
    responses(
        (status = 201, description = "Added", body = BotView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "tenant_id names another tenant", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The bot is already registered", body = Problem, content_type = PROBLEM),
        (status = 413, description = "Body too large", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid field, or Telegram rejected the token", body = Problem, content_type = PROBLEM),
        (status = 502, description = "Telegram unreachable", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
async fn create_bot(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiJson(body): ApiJson<CreateBotRequest>,
) -> ApiResult<(StatusCode, Json<BotView>)> {
    let bot = state
        .services
        .add_bot(&principal, &body.token, body.tenant_id.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(bot.into())))
}

/// List bots.
#[utoipa::path(
    get, path = "/v1/bots", tag = "bots",
    params(BotListParams),
    responses(
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 200, description = "A page of bots", body = BotList),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid limit", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
async fn list_bots(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiQuery(params): ApiQuery<BotListParams>,
) -> ApiResult<Json<BotList>> {
    let page = page(params.limit, params.after);
    let listed = state
        .services
        .list_bots(
            &principal,
            BotFilter {
                tenant_id: params.tenant_id,
                enabled: params.enabled,
                mode: params.mode,
            },
            &page,
        )
        .await?;
    Ok(Json(BotList {
        data: listed.items.into_iter().map(Into::into).collect(),
        next_cursor: listed.next_cursor,
    }))
}

/// Get one bot, with Telegram's live webhook state.
#[utoipa::path(
    get, path = "/v1/bots/{id}", tag = "bots",
    params(("id" = String, Path, description = "Bot id")),
    responses(
        (status = 200, description = "The bot; `telegram` holds getWebhookInfo", body = BotView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such bot (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
async fn get_bot(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<BotView>> {
    let live = state.services.get_bot(&principal, &id).await?;
    Ok(Json(BotView::from(live.bot).with_live(live.webhook_info)))
}

/// Enable or disable a bot, set the update types it asks Telegram for
/// (`allowed_updates`; a webhook bot's webhook is registered again with the new list), or
/// turn built-in commands off and on (`builtin_commands`). Every field is checked before
/// any is applied.
#[utoipa::path(
    patch, path = "/v1/bots/{id}", tag = "bots",
    params(("id" = String, Path, description = "Bot id")),
    request_body = UpdateBotRequest,
    responses(
        (status = 200, description = "Updated", body = BotView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such bot (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid field (e.g. an unknown update type, named)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
async fn update_bot(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateBotRequest>,
) -> ApiResult<Json<BotView>> {
    if body.enabled.is_none() && body.allowed_updates.is_none() && body.builtin_commands.is_none() {
        return Err(AppError::validation(
            "enabled",
            "nothing to update: give enabled, allowed_updates or builtin_commands",
        ));
    }
    let builtins = body
        .builtin_commands
        .as_ref()
        .map(crate::texts::service::parse_builtin_changes)
        .transpose()?;
    let mut bot = None;
    if let Some(allowed) = body.allowed_updates {
        bot = Some(
            state
                .services
                .set_bot_allowed_updates(&principal, &id, allowed)
                .await?,
        );
    }
    if let Some(changes) = builtins {
        bot = Some(
            state
                .services
                .set_bot_builtins(&principal, &id, &changes)
                .await?,
        );
    }
    if let Some(enabled) = body.enabled {
        bot = Some(
            state
                .services
                .set_bot_enabled(&principal, &id, enabled)
                .await?,
        );
    }
    Ok(Json(bot.expect("one of the fields was given").into()))
}

/// Remove a bot (its webhook is deleted at Telegram).
#[utoipa::path(
    delete, path = "/v1/bots/{id}", tag = "bots",
    params(("id" = String, Path, description = "Bot id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such bot (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
async fn delete_bot(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.services.delete_bot(&principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Register the bot's webhook again (new secret), e.g. after the public URL changed.
#[utoipa::path(
    post, path = "/v1/bots/{id}/webhook", tag = "bots",
    params(("id" = String, Path, description = "Bot id")),
    request_body(content = RegisterWebhookRequest, description = "Optional; may be empty"),
    responses(
        (status = 200, description = "Registered", body = BotView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such bot (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 409, description = "No public URL configured and none given", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid base_url", body = Problem, content_type = PROBLEM),
        (status = 502, description = "Telegram unreachable", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
async fn register_webhook(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RegisterWebhookRequest>,
) -> ApiResult<Json<BotView>> {
    let bot = state
        .services
        .register_webhook(&principal, &id, body.base_url.as_deref())
        .await?;
    Ok(Json(bot.into()))
}

// ---- operations ---------------------------------------------------------------------------

/// Liveness: the process answers.
#[utoipa::path(
    get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = HealthView))
)]
async fn healthz() -> Json<HealthView> {
    Json(HealthView {
        status: "ok".into(),
    })
}

/// Readiness: the store answers.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = HealthView),
        (status = 503, description = "Store unreachable", body = Problem, content_type = PROBLEM),
    )
)]
async fn readyz(State(state): State<AppState>) -> ApiResult<Json<HealthView>> {
    state.services.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            crate::http::problem::types::NOT_READY,
            "Not ready",
            "the store is not reachable",
        )
    })?;
    Ok(Json(HealthView {
        status: "ready".into(),
    }))
}

/// Prometheus metrics.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"))
)]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.metrics.render();
    text.push_str(&state.services.delivery_metrics().await);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// This OpenAPI 3.1 document.
#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object, content_type = "application/json"))
)]
async fn openapi_json(Extension(doc): Extension<OpenApiJson>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.as_str().to_owned(),
    )
}

//! HTTP handlers and bodies for `/v1/templates`. Registered (with their OpenAPI
//! documentation) in [`crate::api`]'s route list.
//!
//! A tenant key acts on its own tenant; an admin key names the tenant with `tenant_id`
//! (in the body of `POST /v1/templates`, in the query string elsewhere), as the events API
//! does.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::service::TemplateInput;
use super::{ButtonSpec, ParseMode, Rendered, RenderedButton, TemplateRecord};
use crate::http::problem::Problem;
use crate::http::views::{PageSize, page};
use crate::http::{ApiJson, ApiQuery, AppError, AppState, Auth};
use crate::ids::rfc3339;
use crate::services::ServiceError;

const PROBLEM: &str = "application/problem+json";

type ApiResult<T> = Result<T, AppError>;

/// `POST /v1/templates`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"key": "order.paid",
    "text": "<b>Order {{ order.id }}</b> is paid: {{ order.total }} €\n{% for i in order.items %}• {{ i }}\n{% endfor %}",
    "parse_mode": "html",
    "buttons": [[{"text": "Open order", "url": "https://shop.example.com/orders/{{ order.id }}"}]],
    "description": "Sent when a payment clears"}))]
pub struct CreateTemplateRequest {
    /// 1 to 64 of `A-Z a-z 0-9 _ . : -`, unique in the tenant.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub key: String,
    /// minijinja source of the message text (up to 64 KiB). Variables are escaped for the
    /// parse mode; `|safe` opts out.
    #[schema(min_length = 1)]
    pub text: String,
    /// `html` (default), `markdown_v2` or `plain`.
    #[serde(default)]
    pub parse_mode: ParseMode,
    /// Rows of inline buttons; their strings are templates too.
    #[serde(default)]
    pub buttons: Vec<Vec<ButtonSpec>>,
    /// Free text for people, up to 500 characters.
    pub description: Option<String>,
    /// Owning tenant: required with an admin key, implied by a tenant key.
    pub tenant_id: Option<String>,
}

/// `PUT /v1/templates/{key}`: the whole template (it is created when missing).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"text": "<b>Order {{ order.id }}</b> is paid", "parse_mode": "html", "buttons": []}))]
pub struct PutTemplateRequest {
    /// May be sent; must then equal the key in the path.
    pub key: Option<String>,
    /// minijinja source of the message text.
    #[schema(min_length = 1)]
    pub text: String,
    /// `html` (default), `markdown_v2` or `plain`.
    #[serde(default)]
    pub parse_mode: ParseMode,
    /// Rows of inline buttons.
    #[serde(default)]
    pub buttons: Vec<Vec<ButtonSpec>>,
    /// Free text for people.
    pub description: Option<String>,
}

/// `POST /v1/templates/{key}/preview`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"data": {"order": {"id": "A-17", "total": "12.50", "items": ["Tea", "Cake"]}}}))]
pub struct PreviewRequest {
    /// The template's variables (an object).
    pub data: Option<serde_json::Value>,
}

/// A stored template.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"tenant_id": "ten_01jd8y3k7q9x4m2n5p6r7s8t9v", "key": "order.paid",
    "text": "<b>Order {{ order.id }}</b> is paid", "parse_mode": "html",
    "buttons": [[{"text": "Open order", "url": "https://shop.example.com/orders/{{ order.id }}"}]],
    "description": "Sent when a payment clears",
    "created_at": "2026-11-21T05:00:00Z", "updated_at": "2026-11-21T05:00:00Z"}))]
pub struct TemplateView {
    /// Owning tenant.
    pub tenant_id: String,
    /// The key.
    pub key: String,
    /// minijinja source of the text.
    pub text: String,
    /// Markup of the text.
    pub parse_mode: ParseMode,
    /// Rows of buttons, as written.
    pub buttons: Vec<Vec<ButtonSpec>>,
    /// Free text for people.
    pub description: Option<String>,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
    /// Last change (RFC 3339, UTC).
    pub updated_at: String,
}

impl From<TemplateRecord> for TemplateView {
    fn from(t: TemplateRecord) -> Self {
        TemplateView {
            tenant_id: t.tenant_id,
            key: t.key,
            text: t.text,
            parse_mode: t.parse_mode,
            buttons: t.buttons,
            description: t.description,
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

/// A page of templates.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TemplateList {
    /// Templates in key order.
    pub data: Vec<TemplateView>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// What a send with this data would deliver.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"parts": ["<b>Order A-17</b> is paid"], "parse_mode": "html",
    "buttons": [[{"type": "url", "text": "Open order", "url": "https://shop.example.com/orders/A-17"}]]}))]
pub struct PreviewView {
    /// The message texts in order: one, or several numbered `[i/n]` when the text is over
    /// Telegram's 4096 characters.
    pub parts: Vec<String>,
    /// How the parts are sent (split parts are sent as HTML).
    pub parse_mode: ParseMode,
    /// Rows of rendered buttons.
    pub buttons: Vec<Vec<RenderedButton>>,
}

impl From<Rendered> for PreviewView {
    fn from(r: Rendered) -> Self {
        PreviewView {
            parts: r.parts,
            parse_mode: r.parse_mode,
            buttons: r.buttons,
        }
    }
}

/// Template list parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TemplateListParams {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<PageSize>,
    /// Cursor: `next_cursor` of the previous page.
    pub after: Option<String>,
    /// The tenant (required with an admin key).
    pub tenant_id: Option<String>,
}

/// The tenant of a call on one template.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TenantParam {
    /// The tenant (required with an admin key).
    pub tenant_id: Option<String>,
}

/// Create a template. It is checked now: a syntax error is a 422 naming the line, and a
/// text that needs no data must be markup Telegram accepts.
#[utoipa::path(
    post, path = "/v1/templates", tag = "templates",
    request_body = CreateTemplateRequest,
    responses(
        (status = 201, description = "Created", body = TemplateView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "tenant_id names another tenant", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The tenant has a template with this key", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field breaks a rule (named in `field`): key, template syntax (with the line), buttons...", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn create_template(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiJson(body): ApiJson<CreateTemplateRequest>,
) -> ApiResult<(StatusCode, Json<TemplateView>)> {
    let record = state
        .services
        .create_template(
            &principal,
            body.tenant_id.as_deref(),
            &body.key,
            TemplateInput {
                text: body.text,
                parse_mode: body.parse_mode,
                buttons: body.buttons,
                description: body.description,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// List a tenant's templates in key order.
#[utoipa::path(
    get, path = "/v1/templates", tag = "templates",
    params(TemplateListParams),
    responses(
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 200, description = "A page of templates", body = TemplateList),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "tenant_id names another tenant", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Invalid limit, or no tenant_id with an admin key", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn list_templates(
    State(state): State<AppState>,
    Auth(principal): Auth,
    ApiQuery(params): ApiQuery<TemplateListParams>,
) -> ApiResult<Json<TemplateList>> {
    let page = page(params.limit, params.after);
    let listed = state
        .services
        .list_templates(&principal, params.tenant_id.as_deref(), &page)
        .await?;
    Ok(Json(TemplateList {
        data: listed.items.into_iter().map(Into::into).collect(),
        next_cursor: listed.next_cursor,
    }))
}

/// Get one template.
#[utoipa::path(
    get, path = "/v1/templates/{key}", tag = "templates",
    params(("key" = String, Path, description = "Template key"), TenantParam),
    responses(
        (status = 400, description = "Unknown query parameter or bad value (`field` names it)", body = Problem, content_type = PROBLEM),
        (status = 200, description = "The template", body = TemplateView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such template (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 422, description = "No tenant_id with an admin key", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn get_template(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(key): Path<String>,
    ApiQuery(params): ApiQuery<TenantParam>,
) -> ApiResult<Json<TemplateView>> {
    let record = state
        .services
        .get_template(&principal, params.tenant_id.as_deref(), &key)
        .await?;
    Ok(Json(record.into()))
}

/// Replace a template (text, parse mode, buttons, description), or create it when the key
/// is new. Checked like a new template.
#[utoipa::path(
    put, path = "/v1/templates/{key}", tag = "templates",
    params(("key" = String, Path, description = "Template key"), TenantParam),
    request_body = PutTemplateRequest,
    responses(
        (status = 200, description = "Replaced", body = TemplateView),
        (status = 201, description = "Created", body = TemplateView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "tenant_id names another tenant", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field breaks a rule (named in `field`)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn put_template(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(key): Path<String>,
    ApiQuery(params): ApiQuery<TenantParam>,
    ApiJson(body): ApiJson<PutTemplateRequest>,
) -> ApiResult<(StatusCode, Json<TemplateView>)> {
    if body.key.as_deref().is_some_and(|k| k.trim() != key) {
        return Err(AppError::validation(
            "key",
            "key: must equal the key in the path (keys cannot be renamed)",
        ));
    }
    let input = TemplateInput {
        text: body.text,
        parse_mode: body.parse_mode,
        buttons: body.buttons,
        description: body.description,
    };
    let tenant = params.tenant_id.as_deref();
    let services = &state.services;
    // Replace, else create; a create that lost a race to another one replaces.
    for _ in 0..2 {
        match services
            .update_template(&principal, tenant, &key, input.clone())
            .await
        {
            Err(ServiceError::NotFound {
                kind: "template", ..
            }) => {}
            other => return Ok((StatusCode::OK, Json(other?.into()))),
        }
        match services
            .create_template(&principal, tenant, &key, input.clone())
            .await
        {
            Err(ServiceError::Conflict(_)) => {}
            other => return Ok((StatusCode::CREATED, Json(other?.into()))),
        }
    }
    Err(ServiceError::Conflict(format!(
        "template {key} is being changed concurrently; try again"
    ))
    .into())
}

/// Delete a template.
#[utoipa::path(
    delete, path = "/v1/templates/{key}", tag = "templates",
    params(("key" = String, Path, description = "Template key"), TenantParam),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such template (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 422, description = "No tenant_id with an admin key", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn delete_template(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(key): Path<String>,
    ApiQuery(params): ApiQuery<TenantParam>,
) -> ApiResult<StatusCode> {
    state
        .services
        .delete_template(&principal, params.tenant_id.as_deref(), &key)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Render a template with `data` exactly as a send would: the parts (split and numbered
/// when over 4096 characters) and the buttons, or a 422 saying what is wrong (a missing
/// variable in `data`, markup Telegram would reject...). Nothing is sent.
#[utoipa::path(
    post, path = "/v1/templates/{key}/preview", tag = "templates",
    params(("key" = String, Path, description = "Template key"), TenantParam),
    request_body = PreviewRequest,
    responses(
        (status = 200, description = "What would be sent", body = PreviewView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such template (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Cannot be rendered: `field` is `data` (a missing variable, named), `template` or `buttons`", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn preview_template(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(key): Path<String>,
    ApiQuery(params): ApiQuery<TenantParam>,
    ApiJson(body): ApiJson<PreviewRequest>,
) -> ApiResult<Json<PreviewView>> {
    let rendered = state
        .services
        .preview_template(
            &principal,
            params.tenant_id.as_deref(),
            &key,
            body.data.as_ref(),
        )
        .await?;
    Ok(Json(rendered.into()))
}

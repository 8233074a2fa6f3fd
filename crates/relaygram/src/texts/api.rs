//! HTTP handlers and bodies for `/v1/bots/{id}/texts`. Registered (with their OpenAPI
//! documentation) in [`crate::api`]'s route list.
//!
//! A text is named by its key in the path and its language in the query string
//! (`?language=de`; none is the bot's default text).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::service::{ChosenText, KeyTexts};
use super::{BotTextRecord, COMMON_VARIABLES, TextKey};
use crate::http::problem::Problem;
use crate::http::{ApiJson, ApiQuery, AppError, AppState, Auth};
use crate::ids::rfc3339;

const PROBLEM: &str = "application/problem+json";

/// The language of a text.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LanguageParam {
    /// A language tag like Telegram's `language_code` (`de`, `pt-br`). Absent: the bot's
    /// default text, sent when no translation matches. On `GET`, the user's language: the
    /// answer is the text such a user gets.
    pub language: Option<String>,
}

/// `PUT /v1/bots/{id}/texts/{key}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"text": "Willkommen bei {{ bot.first_name }}, {{ user.first_name }}!"}))]
pub struct PutTextRequest {
    /// minijinja source, sent as plain text (variables are not escaped). It must render
    /// with the key's variables, in a chat with a link and without one.
    pub text: String,
}

/// One stored text, or the one a user of a language gets.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"bot_id": "bot_01jd8y3k7q9x4m2n5p6r7s8t9v", "key": "welcome", "language": "de",
    "text": "Willkommen bei {{ bot.first_name }}, {{ user.first_name }}!", "custom": true,
    "created_at": "2026-11-21T05:00:00Z", "updated_at": "2026-11-21T05:00:00Z"}))]
pub struct TextView {
    /// The bot.
    pub bot_id: String,
    /// Which text.
    pub key: TextKey,
    /// The text's language; `null` for the bot's default (or relaygram's).
    pub language: Option<String>,
    /// The minijinja source.
    pub text: String,
    /// `true` when the bot stored it, `false` for relaygram's built-in default.
    pub custom: bool,
    /// When it was stored (RFC 3339, UTC); `null` for the built-in default.
    pub created_at: Option<String>,
    /// Last change (RFC 3339, UTC); `null` for the built-in default.
    pub updated_at: Option<String>,
}

impl From<BotTextRecord> for TextView {
    fn from(t: BotTextRecord) -> Self {
        TextView {
            bot_id: t.bot_id,
            key: t.key,
            language: t.language,
            text: t.text,
            custom: true,
            created_at: Some(rfc3339(t.created_at)),
            updated_at: Some(rfc3339(t.updated_at)),
        }
    }
}

impl TextView {
    fn chosen(bot_id: String, c: ChosenText) -> TextView {
        match c.stored {
            Some(t) => t.into(),
            None => TextView {
                bot_id,
                key: c.key,
                language: c.language,
                text: c.text,
                custom: false,
                created_at: None,
                updated_at: None,
            },
        }
    }
}

/// One key: relaygram's default, its variables, and what the bot stored.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyTextsView {
    /// The key.
    pub key: TextKey,
    /// relaygram's own text, used when the bot stored none that matches.
    pub default: String,
    /// The variables a template of this key may use.
    pub variables: Vec<String>,
    /// The bot's texts of this key: its default (`language` null) first, then by language.
    pub texts: Vec<TextView>,
}

impl From<KeyTexts> for KeyTextsView {
    fn from(k: KeyTexts) -> Self {
        KeyTextsView {
            key: k.key,
            default: k.key.default_text().to_string(),
            variables: COMMON_VARIABLES
                .iter()
                .chain(k.key.extra_variables())
                .map(|v| v.to_string())
                .collect(),
            texts: k.stored.into_iter().map(Into::into).collect(),
        }
    }
}

/// Every key of a bot's texts (the list is complete, so it has no cursor).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"data": [{"key": "welcome",
    "default": "Welcome to {{ bot.first_name }}! Send /help to see what I can do.",
    "variables": ["bot.username", "bot.first_name", "user.first_name", "user.last_name",
        "user.username", "user.language_code", "link.id", "link.external_id", "payload"],
    "texts": [{"bot_id": "bot_01jd8y3k7q9x4m2n5p6r7s8t9v", "key": "welcome", "language": "de",
        "text": "Willkommen bei {{ bot.first_name }}!", "custom": true,
        "created_at": "2026-11-21T05:00:00Z", "updated_at": "2026-11-21T05:00:00Z"}]}]}))]
pub struct TextList {
    /// Every key, in a fixed order.
    pub data: Vec<KeyTextsView>,
}

/// List every text key of a bot: relaygram's default, the variables, and the bot's own texts
/// per language.
#[utoipa::path(
    get, path = "/v1/bots/{id}/texts", tag = "texts",
    params(("id" = String, Path, description = "Bot id")),
    responses(
        (status = 200, description = "Every key with the bot's texts", body = TextList),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such bot (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn list_texts(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<Json<TextList>, AppError> {
    let keys = state.services.list_bot_texts(&principal, &id).await?;
    Ok(Json(TextList {
        data: keys.into_iter().map(Into::into).collect(),
    }))
}

/// The text a user of `language` gets: the bot's text for that language, else for its base
/// language (`pt` for `pt-br`), else the bot's default, else relaygram's (`custom: false`).
#[utoipa::path(
    get, path = "/v1/bots/{id}/texts/{key}", tag = "texts",
    params(
        ("id" = String, Path, description = "Bot id"),
        ("key" = String, Path, description = "Text key (`welcome`, `help`, `unknown_command`, …)"),
        LanguageParam
    ),
    responses(
        (status = 200, description = "The text in effect", body = TextView),
        (status = 400, description = "Unknown query parameter", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such bot (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Unknown key or a language that is not a tag (`field` names it)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn get_text(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((id, key)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<LanguageParam>,
) -> Result<Json<TextView>, AppError> {
    let chosen = state
        .services
        .get_bot_text(&principal, &id, &key, params.language.as_deref())
        .await?;
    Ok(Json(TextView::chosen(id, chosen)))
}

/// Set the bot's text `key` for `language` (none: the bot's default). The template is
/// rendered with sample values first: a syntax error, an unknown variable or a text over
/// Telegram's limits is a 422 and nothing is stored.
#[utoipa::path(
    put, path = "/v1/bots/{id}/texts/{key}", tag = "texts",
    params(
        ("id" = String, Path, description = "Bot id"),
        ("key" = String, Path, description = "Text key"),
        LanguageParam
    ),
    request_body = PutTextRequest,
    responses(
        (status = 200, description = "Replaced", body = TextView),
        (status = 201, description = "Created", body = TextView),
        (status = 400, description = "Malformed JSON or unknown query parameter", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such bot (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Unknown key, bad language or a template that does not render (`field`: key, language or text)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn put_text(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((id, key)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<LanguageParam>,
    ApiJson(body): ApiJson<PutTextRequest>,
) -> Result<(StatusCode, Json<TextView>), AppError> {
    let (record, created) = state
        .services
        .put_bot_text(&principal, &id, &key, params.language.as_deref(), body.text)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(record.into())))
}

/// Remove the bot's text `key` for `language` (none: the bot's default); the next closest
/// text applies again.
#[utoipa::path(
    delete, path = "/v1/bots/{id}/texts/{key}", tag = "texts",
    params(
        ("id" = String, Path, description = "Bot id"),
        ("key" = String, Path, description = "Text key"),
        LanguageParam
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Unknown query parameter", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such bot, or the bot has no such text", body = Problem, content_type = PROBLEM),
        (status = 422, description = "Unknown key or a language that is not a tag", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn delete_text(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((id, key)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<LanguageParam>,
) -> Result<StatusCode, AppError> {
    state
        .services
        .delete_bot_text(&principal, &id, &key, params.language.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

//! HTTP handlers and bodies for `/v1/bots/{id}/commands`. Registered (with their OpenAPI
//! documentation) in [`crate::api`]'s route list.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::service::{CommandPatch, NewCommand, PlacedCommand};
use super::{BUILT_IN, CommandAction, StoredCommand};
use crate::http::problem::Problem;
use crate::http::{ApiJson, AppError, AppState, Auth};
use crate::ids::rfc3339;

const PROBLEM: &str = "application/problem+json";

/// `POST /v1/bots/{id}/commands`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"command": "price", "description": "Today's price",
    "action": {"type": "reply", "text": "A coffee is 3 €."}}))]
pub struct CreateCommandRequest {
    /// 1 to 32 of `a-z`, `0-9`, `_`; a leading `/` is removed. Not a built-in name.
    pub command: String,
    /// Menu description, 1 to 256 characters, one line.
    pub description: String,
    /// `{"type": "reply", "text": "…"}` (1 to 4096 characters) or `{"type": "forward"}`.
    pub action: CommandAction,
    /// 0-based place among the bot's custom commands (after the built-ins); last when
    /// omitted.
    pub position: Option<usize>,
}

/// `PATCH /v1/bots/{id}/commands/{command}`: any of the fields; the name cannot change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"description": "Prices of the day", "action": {"type": "forward"}, "position": 0}))]
pub struct UpdateCommandRequest {
    /// New menu description.
    pub description: Option<String>,
    /// New action.
    pub action: Option<CommandAction>,
    /// New 0-based place among the bot's custom commands.
    pub position: Option<usize>,
}

/// A custom command.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"bot_id": "bot_01jd8y3k7q9x4m2n5p6r7s8t9v", "command": "price",
    "description": "Today's price", "action": {"type": "reply", "text": "A coffee is 3 €."},
    "position": 0, "created_at": "2026-11-21T05:00:00Z", "updated_at": "2026-11-21T05:00:00Z"}))]
pub struct CommandView {
    /// The bot.
    pub bot_id: String,
    /// Name without the slash.
    pub command: String,
    /// Menu description.
    pub description: String,
    /// What the command does.
    pub action: CommandAction,
    /// 0-based place among the bot's custom commands (the menu shows the built-ins first).
    pub position: usize,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
    /// Last change (RFC 3339, UTC).
    pub updated_at: String,
}

impl CommandView {
    fn new(stored: StoredCommand, position: usize) -> CommandView {
        CommandView {
            bot_id: stored.bot_id,
            command: stored.command.command,
            description: stored.command.description,
            action: stored.command.action,
            position,
            created_at: rfc3339(stored.created_at),
            updated_at: rfc3339(stored.updated_at),
        }
    }
}

impl From<PlacedCommand> for CommandView {
    fn from(p: PlacedCommand) -> Self {
        CommandView::new(p.stored, p.position)
    }
}

/// A built-in command (always in the menu, first; handled by relaygram).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BuiltInCommandView {
    /// Name without the slash.
    pub command: String,
    /// Menu description.
    pub description: String,
}

/// A bot's commands: the built-ins and its custom commands, each in menu order. The list
/// is complete (a bot has at most 100 commands), so it has no cursor.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"data": [{"bot_id": "bot_01jd8y3k7q9x4m2n5p6r7s8t9v", "command": "price",
    "description": "Today's price", "action": {"type": "forward"}, "position": 0,
    "created_at": "2026-11-21T05:00:00Z", "updated_at": "2026-11-21T05:00:00Z"}],
    "built_in": [{"command": "start", "description": "Start the bot or link your account"}]}))]
pub struct CommandList {
    /// Custom commands in menu order.
    pub data: Vec<CommandView>,
    /// Built-in commands, shown before the custom ones.
    pub built_in: Vec<BuiltInCommandView>,
}

/// Add a custom command; the bot's Telegram menu is updated first (`setMyCommands`), and
/// the command is stored only once Telegram accepted it.
#[utoipa::path(
    post, path = "/v1/bots/{id}/commands", tag = "commands",
    params(("id" = String, Path, description = "Bot id")),
    request_body = CreateCommandRequest,
    responses(
        (status = 201, description = "Added and shown in the menu", body = CommandView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such bot (or another tenant's)", body = Problem, content_type = PROBLEM),
        (status = 409, description = "The bot has this command already, or it is a built-in", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field breaks a rule (named in `field`), or the bot has 100 commands", body = Problem, content_type = PROBLEM),
        (status = 502, description = "Telegram refused or failed; nothing was stored", body = Problem, content_type = PROBLEM),
        (status = 503, description = "Telegram asked to retry later; nothing was stored", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn create_command(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateCommandRequest>,
) -> Result<(StatusCode, Json<CommandView>), AppError> {
    let placed = state
        .services
        .create_command(
            &principal,
            &id,
            NewCommand {
                command: body.command,
                description: body.description,
                action: body.action,
                position: body.position,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(placed.into())))
}

/// List a bot's commands: built-ins and custom ones, in menu order.
#[utoipa::path(
    get, path = "/v1/bots/{id}/commands", tag = "commands",
    params(("id" = String, Path, description = "Bot id")),
    responses(
        (status = 200, description = "The bot's commands", body = CommandList),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such bot (or another tenant's)", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn list_commands(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(id): Path<String>,
) -> Result<Json<CommandList>, AppError> {
    let list = state.services.list_commands(&principal, &id).await?;
    Ok(Json(CommandList {
        data: list
            .into_iter()
            .enumerate()
            .map(|(position, stored)| CommandView::new(stored, position))
            .collect(),
        built_in: BUILT_IN
            .iter()
            .map(|(command, description)| BuiltInCommandView {
                command: command.to_string(),
                description: description.to_string(),
            })
            .collect(),
    }))
}

/// Get one custom command.
#[utoipa::path(
    get, path = "/v1/bots/{id}/commands/{command}", tag = "commands",
    params(
        ("id" = String, Path, description = "Bot id"),
        ("command" = String, Path, description = "Command name, without the slash")
    ),
    responses(
        (status = 200, description = "The command", body = CommandView),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such bot or command", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn get_command(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((id, command)): Path<(String, String)>,
) -> Result<Json<CommandView>, AppError> {
    let placed = state
        .services
        .get_command(&principal, &id, &command)
        .await?;
    Ok(Json(placed.into()))
}

/// Change a custom command's description, action or place; the menu is updated first.
#[utoipa::path(
    patch, path = "/v1/bots/{id}/commands/{command}", tag = "commands",
    params(
        ("id" = String, Path, description = "Bot id"),
        ("command" = String, Path, description = "Command name, without the slash")
    ),
    request_body = UpdateCommandRequest,
    responses(
        (status = 200, description = "Updated", body = CommandView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = PROBLEM),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such bot or command", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A field breaks a rule (named in `field`), or nothing to update", body = Problem, content_type = PROBLEM),
        (status = 502, description = "Telegram refused or failed; nothing was changed", body = Problem, content_type = PROBLEM),
        (status = 503, description = "Telegram asked to retry later; nothing was changed", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn update_command(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((id, command)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdateCommandRequest>,
) -> Result<Json<CommandView>, AppError> {
    if body.description.is_none() && body.action.is_none() && body.position.is_none() {
        return Err(AppError::validation(
            "",
            "nothing to update: send `description`, `action` or `position`",
        ));
    }
    let placed = state
        .services
        .update_command(
            &principal,
            &id,
            &command,
            CommandPatch {
                description: body.description,
                action: body.action,
                position: body.position,
            },
        )
        .await?;
    Ok(Json(placed.into()))
}

/// Remove a custom command from the bot and its menu.
#[utoipa::path(
    delete, path = "/v1/bots/{id}/commands/{command}", tag = "commands",
    params(
        ("id" = String, Path, description = "Bot id"),
        ("command" = String, Path, description = "Command name, without the slash")
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Missing, unknown or revoked key", body = Problem, content_type = PROBLEM),
        (status = 404, description = "No such bot or command", body = Problem, content_type = PROBLEM),
        (status = 502, description = "Telegram refused or failed; nothing was changed", body = Problem, content_type = PROBLEM),
        (status = 503, description = "Telegram asked to retry later; nothing was changed", body = Problem, content_type = PROBLEM),
    ),
    security(("bearer" = []))
)]
pub async fn delete_command(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path((id, command)): Path<(String, String)>,
) -> Result<StatusCode, AppError> {
    state
        .services
        .delete_command(&principal, &id, &command)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

//! The bot's command menu: setMyCommands, getMyCommands, deleteMyCommands, per scope and
//! language, checked against Telegram's rules.

use serde_json::{Value, json};

use super::chats::chat_id_param;
use crate::params::Params;
use crate::reply::ApiError;
use crate::world::World;

const MAX_COMMANDS: usize = 100;

/// The (scope, language) key commands are kept under. Telegram answers getMyCommands for the
/// exact scope asked, with no fallback, so the key is the scope itself.
fn scope_key(w: &World, params: &Params) -> Result<(String, String), ApiError> {
    let scope = params
        .json("scope", "BotCommandScope")?
        .unwrap_or(json!({"type": "default"}));
    let kind = scope
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("can't parse BotCommandScope JSON object"))?;
    let key = match kind {
        "default" | "all_private_chats" | "all_group_chats" | "all_chat_administrators" => {
            kind.to_string()
        }
        "chat" | "chat_administrators" | "chat_member" => {
            let mut p = Params::default();
            let chat = scope
                .get("chat_id")
                .cloned()
                .ok_or_else(|| ApiError::bad_request("chat_id is empty"))?;
            p.insert("chat_id", chat);
            let chat_id = chat_id_param(w, &p)?;
            if w.chat_json(chat_id).is_none() {
                return Err(ApiError::chat_not_found());
            }
            if kind == "chat_member" {
                let user = scope
                    .get("user_id")
                    .and_then(Value::as_i64)
                    .ok_or_else(|| ApiError::bad_request("user not found"))?;
                format!("{kind}:{chat_id}:{user}")
            } else {
                format!("{kind}:{chat_id}")
            }
        }
        _ => {
            return Err(ApiError::bad_request(
                "can't parse BotCommandScope JSON object",
            ));
        }
    };
    let lang = params.str("language_code").unwrap_or_default();
    if !(lang.is_empty() || (lang.len() == 2 && lang.chars().all(|c| c.is_ascii_lowercase()))) {
        return Err(ApiError::bad_request("invalid language code specified"));
    }
    Ok((key, lang))
}

fn check_commands(commands: &Value) -> Result<Vec<Value>, ApiError> {
    let list = commands
        .as_array()
        .ok_or_else(|| ApiError::bad_request("can't parse commands JSON object"))?;
    if list.len() > MAX_COMMANDS {
        return Err(ApiError::bad_request("too many commands specified"));
    }
    let mut out = Vec::with_capacity(list.len());
    for c in list {
        let command = c.get("command").and_then(Value::as_str).unwrap_or_default();
        let command = command.strip_prefix('/').unwrap_or(command);
        let description = c
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let name_ok = (1..=32).contains(&command.len())
            && command
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(ApiError::bad_request("BOT_COMMAND_INVALID"));
        }
        let len = description.chars().count();
        if !(1..=256).contains(&len) {
            return Err(ApiError::bad_request("BOT_COMMAND_DESCRIPTION_INVALID"));
        }
        out.push(json!({"command": command, "description": description}));
    }
    Ok(out)
}

pub fn set_my_commands(w: &mut World, bot_id: i64, params: &Params) -> Result<Value, ApiError> {
    let commands = params
        .json("commands", "commands")?
        .ok_or_else(|| ApiError::bad_request("parameter \"commands\" is required"))?;
    let commands = check_commands(&commands)?;
    let key = scope_key(w, params)?;
    let bot = w.bots.get_mut(&bot_id).expect("caller checked the bot");
    if commands.is_empty() {
        bot.commands.remove(&key);
    } else {
        bot.commands.insert(key, Value::Array(commands));
    }
    Ok(json!(true))
}

pub fn get_my_commands(w: &World, bot_id: i64, params: &Params) -> Result<Value, ApiError> {
    let key = scope_key(w, params)?;
    Ok(w.bots[&bot_id]
        .commands
        .get(&key)
        .cloned()
        .unwrap_or(json!([])))
}

pub fn delete_my_commands(w: &mut World, bot_id: i64, params: &Params) -> Result<Value, ApiError> {
    let key = scope_key(w, params)?;
    w.bots
        .get_mut(&bot_id)
        .expect("caller checked the bot")
        .commands
        .remove(&key);
    Ok(json!(true))
}

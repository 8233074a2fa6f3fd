//! Bot commands: the built-ins every bot has, custom commands per bot managed by the app
//! (`/v1/bots/{id}/commands`), the Telegram menu built from both, and the per-user command
//! rate limiter.
//!
//! The menu shown by Telegram is always [`BUILT_IN`] first, then the bot's custom commands
//! in their stored order. Every change is sent to Telegram with `setMyCommands` *before* it
//! is stored, so a change Telegram refuses is never stored (see [`service`]).

pub mod api;
mod limiter;
pub mod service;

pub use crate::store::{CommandAction, CustomCommand, StoredCommand};
pub use limiter::{CommandLimiter, DEFAULT_COMMANDS_PER_MINUTE, LimitDecision, WINDOW};

use crate::services::ServiceError;
use crate::telegram::BotCommand;

/// Built-in commands, in menu order: `(name, menu description)`. They cannot be redefined.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("start", "Start the bot or link your account"),
    ("help", "Show what this bot can do"),
    ("settings", "Choose which notifications you get"),
    ("link", "Link your account with a code"),
    ("stop", "Unlink this chat and stop notifications"),
];

/// Telegram shows at most this many commands in a menu; built-ins count too.
pub const MAX_COMMANDS_PER_BOT: usize = 100;
/// Longest command name Telegram accepts in a menu.
pub const MAX_NAME_LEN: usize = 32;
/// Longest menu description Telegram accepts, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 256;
/// Longest message text Telegram sends, in characters.
pub const MAX_REPLY_LEN: usize = 4096;

/// Whether `name` is a built-in command.
pub fn is_built_in(name: &str) -> bool {
    BUILT_IN.iter().any(|(n, _)| *n == name)
}

/// The menu Telegram shows: built-ins first, then `custom` in order.
pub fn menu(custom: &[CustomCommand]) -> Vec<BotCommand> {
    BUILT_IN
        .iter()
        .map(|(name, description)| bot_command(name, description))
        .chain(
            custom
                .iter()
                .map(|c| bot_command(&c.command, &c.description)),
        )
        .collect()
}

fn bot_command(name: &str, description: &str) -> BotCommand {
    BotCommand {
        command: name.to_string(),
        description: description.to_string(),
        is_ephemeral: None,
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

/// Checks a command name against Telegram's rules: 1 to 32 of `a-z`, `0-9` and `_`.
/// One leading `/` is accepted and removed.
pub fn parse_name(raw: &str) -> Result<String, ServiceError> {
    let name = raw.trim();
    let name = name.strip_prefix('/').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(invalid(
            "command",
            format!(
                "must be 1 to {MAX_NAME_LEN} characters (Telegram's rule), got {}",
                name.len()
            ),
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(invalid(
            "command",
            "may contain only lowercase letters a-z, digits and underscores (Telegram's rule)",
        ));
    }
    Ok(name.to_string())
}

/// Checks a menu description: 1 to 256 characters after trimming, on one line without
/// control characters (Telegram's menu shows one line).
pub fn parse_description(raw: &str) -> Result<String, ServiceError> {
    let text = raw.trim();
    let len = text.chars().count();
    if !(1..=MAX_DESCRIPTION_LEN).contains(&len) {
        return Err(invalid(
            "description",
            format!("must be 1 to {MAX_DESCRIPTION_LEN} characters (Telegram's rule), got {len}"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(invalid(
            "description",
            "must be one line without control characters",
        ));
    }
    Ok(text.to_string())
}

/// Checks an action: a reply needs 1 to 4096 characters of text.
pub fn parse_action(action: CommandAction) -> Result<CommandAction, ServiceError> {
    match action {
        CommandAction::Reply { text } => {
            let len = text.chars().count();
            if text.trim().is_empty() || len > MAX_REPLY_LEN {
                return Err(invalid(
                    "action.text",
                    format!(
                        "must be 1 to {MAX_REPLY_LEN} characters and not only spaces (Telegram's message limit), got {len}"
                    ),
                ));
            }
            Ok(CommandAction::Reply { text })
        }
        CommandAction::Forward => Ok(CommandAction::Forward),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_telegram_rules() {
        assert_eq!(parse_name("price").unwrap(), "price");
        assert_eq!(parse_name("/price_2").unwrap(), "price_2");
        assert_eq!(parse_name(&"a".repeat(32)).unwrap(), "a".repeat(32));
        for bad in [
            "",
            "/",
            "//x",
            "Price",
            "pri ce",
            "prix-1",
            "é",
            &"a".repeat(33),
        ] {
            let err = parse_name(bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    ServiceError::Invalid {
                        field: "command",
                        ..
                    }
                ),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn descriptions_and_replies_are_bounded() {
        assert_eq!(
            parse_description("  Today's price ").unwrap(),
            "Today's price"
        );
        assert!(parse_description("").is_err());
        assert!(parse_description("   ").is_err());
        assert!(parse_description("two\nlines").is_err());
        assert!(parse_description(&"é".repeat(256)).is_ok());
        assert!(parse_description(&"é".repeat(257)).is_err());
        let reply = |t: &str| parse_action(CommandAction::Reply { text: t.into() });
        assert!(reply("hi").is_ok());
        assert!(reply(&"x".repeat(4096)).is_ok());
        assert!(matches!(
            reply(&"x".repeat(4097)),
            Err(ServiceError::Invalid {
                field: "action.text",
                ..
            })
        ));
        assert!(reply(" ").is_err());
        assert_eq!(
            parse_action(CommandAction::Forward).unwrap(),
            CommandAction::Forward
        );
    }

    #[test]
    fn menu_lists_built_ins_first() {
        let custom = [CustomCommand {
            command: "price".into(),
            description: "Today's price".into(),
            action: CommandAction::Forward,
        }];
        let names: Vec<String> = menu(&custom).into_iter().map(|c| c.command).collect();
        assert_eq!(
            names,
            ["start", "help", "settings", "link", "stop", "price"]
        );
        assert!(is_built_in("help"));
        assert!(!is_built_in("price"));
        for (name, description) in BUILT_IN {
            assert_eq!(parse_name(name).unwrap(), *name);
            assert!(parse_description(description).is_ok());
        }
    }

    #[test]
    fn actions_serialize_with_a_type_tag() {
        let reply = CommandAction::Reply { text: "hi".into() };
        assert_eq!(
            serde_json::to_value(&reply).unwrap(),
            serde_json::json!({"type": "reply", "text": "hi"})
        );
        let forward: CommandAction =
            serde_json::from_value(serde_json::json!({"type": "forward"})).unwrap();
        assert_eq!(forward, CommandAction::Forward);
        assert_eq!(reply.kind(), "reply");
        assert_eq!(reply.reply_text(), Some("hi"));
        assert_eq!(forward.reply_text(), None);
    }
}

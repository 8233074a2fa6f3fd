//! Records the engines cache as well as store (a bot's custom commands, the chats it has
//! seen): here, below both the engines and the stores of their areas, so neither imports
//! the other for them.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::StoreError;

/// What a chat is to a bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChatState {
    /// The bot can write there.
    Active,
    /// The user blocked the bot (private chats).
    Blocked,
    /// The bot left or was removed.
    Left,
    /// The bot was banned from the group.
    Kicked,
    /// The group became a supergroup with a new id (`migrated_to`).
    Migrated,
}

impl ChatState {
    /// The state of a chat Telegram refused with `description` (a chat-gone answer:
    /// "bot was kicked", "bot was blocked by the user", "user is deactivated", …).
    pub fn gone(description: &str) -> ChatState {
        let lower = description.to_ascii_lowercase();
        if lower.contains("kicked") {
            ChatState::Kicked
        } else if lower.contains("blocked") || lower.contains("deactivated") {
            ChatState::Blocked
        } else {
            ChatState::Left
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatState::Active => "active",
            ChatState::Blocked => "blocked",
            ChatState::Left => "left",
            ChatState::Kicked => "kicked",
            ChatState::Migrated => "migrated",
        }
    }
}

impl FromStr for ChatState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "active" => ChatState::Active,
            "blocked" => ChatState::Blocked,
            "left" => ChatState::Left,
            "kicked" => ChatState::Kicked,
            "migrated" => ChatState::Migrated,
            other => return Err(StoreError::Corrupt(format!("unknown chat state {other:?}"))),
        })
    }
}

/// A chat a bot has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRecord {
    /// The bot.
    pub bot_id: String,
    /// Telegram's chat id.
    pub chat_id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    pub kind: String,
    /// Group or channel title.
    pub title: Option<String>,
    /// Public username.
    pub username: Option<String>,
    /// What the chat is to the bot.
    pub state: ChatState,
    /// The new id of a migrated group.
    pub migrated_to: Option<i64>,
    /// Last change (UTC ms).
    pub updated_at: i64,
}

/// A custom command of a bot, as the command router uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomCommand {
    /// Name without the slash (`price`).
    pub command: String,
    /// Menu description.
    pub description: String,
    /// What happens when a user sends it.
    pub action: CommandAction,
}

/// What a custom command does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CommandAction {
    /// The bot answers with this text (sent as plain text).
    Reply {
        /// The reply, 1 to 4096 characters.
        text: String,
    },
    /// The command is forwarded to the tenant's app as a `command.received` event.
    Forward,
}

impl CommandAction {
    /// `"reply"` or `"forward"` (as stored).
    pub fn kind(&self) -> &'static str {
        match self {
            CommandAction::Reply { .. } => "reply",
            CommandAction::Forward => "forward",
        }
    }

    /// The reply text, for replies.
    pub fn reply_text(&self) -> Option<&str> {
        match self {
            CommandAction::Reply { text } => Some(text),
            CommandAction::Forward => None,
        }
    }
}

/// A stored custom command with its bot and times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCommand {
    /// The bot it belongs to.
    pub bot_id: String,
    /// Name, description and action.
    pub command: CustomCommand,
    /// Creation time (UTC ms).
    pub created_at: i64,
    /// Last change (UTC ms).
    pub updated_at: i64,
}

//! Records the engines cache or batch as well as store (a bot's custom commands, the chats
//! it has seen, the updates of the inbound queue and what processing them writes): here,
//! below both the engines and the stores of their areas, so neither imports the other.

use std::fmt;
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

/// Where an update is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpdateStatus {
    /// Stored, waiting to be processed.
    Pending,
    /// Taken by a processor until its lease ends (PostgreSQL; on SQLite an update in hand
    /// stays `pending` in the store, see `InboundStore::own_updates`).
    Processing,
    /// Processed: something was done.
    Handled,
    /// Processed: nothing to do (another bot's command, an unhandled type, …).
    Ignored,
    /// Dropped by the per-user command limit.
    RateLimited,
    /// Processing failed; `error` says why.
    Failed,
}

impl UpdateStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateStatus::Pending => "pending",
            UpdateStatus::Processing => "processing",
            UpdateStatus::Handled => "handled",
            UpdateStatus::Ignored => "ignored",
            UpdateStatus::RateLimited => "rate_limited",
            UpdateStatus::Failed => "failed",
        }
    }
}

impl FromStr for UpdateStatus {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => UpdateStatus::Pending,
            "processing" => UpdateStatus::Processing,
            "handled" => UpdateStatus::Handled,
            "ignored" => UpdateStatus::Ignored,
            "rate_limited" => UpdateStatus::RateLimited,
            "failed" => UpdateStatus::Failed,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown update status {other:?}"
                )));
            }
        })
    }
}

/// One stored update.
#[derive(Clone, PartialEq, Eq)]
pub struct UpdateRecord {
    /// The bot it came to.
    pub bot_id: String,
    /// Telegram's id.
    pub update_id: i64,
    /// Its type (`message`, `callback_query`, …).
    pub kind: String,
    /// The chat it belongs to.
    pub chat_id: Option<i64>,
    /// The Telegram user who caused it.
    pub user_id: Option<i64>,
    /// The update as Telegram sent it (JSON text), unknown fields included.
    pub body: String,
    /// Where it is in processing.
    pub status: UpdateStatus,
    /// What processing did.
    pub outcome: Option<String>,
    /// Why processing failed.
    pub error: Option<String>,
    /// When it was stored (UTC ms).
    pub received_at: i64,
    /// When processing ended (UTC ms).
    pub processed_at: Option<i64>,
    /// How long processing took (ms).
    pub handling_ms: Option<i64>,
}

impl fmt::Debug for UpdateRecord {
    // Bodies hold users' messages: keep them out of debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpdateRecord")
            .field("bot_id", &self.bot_id)
            .field("update_id", &self.update_id)
            .field("kind", &self.kind)
            .field("chat_id", &self.chat_id)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// How processing ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateOutcome {
    /// Final status (not `pending` or `processing`).
    pub status: UpdateStatus,
    /// What was done, in a few words.
    pub outcome: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it ended (UTC ms).
    pub processed_at: i64,
    /// How long it took (ms).
    pub handling_ms: i64,
}

/// An update processed: its outcome and everything processing wrote, stored together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessedUpdate {
    /// The bot it came to.
    pub bot_id: String,
    /// Telegram's id.
    pub update_id: i64,
    /// How processing ended.
    pub outcome: UpdateOutcome,
    /// Chats seen or changed (written first; the last write of a chat wins).
    pub chats: Vec<ChatRecord>,
    /// Events for the app.
    pub events: Vec<NewEvent>,
    /// Replies into the outbox. A reply whose key an earlier run of the update stored is
    /// not stored again, and the outcome names the earlier reply's message instead.
    pub replies: Vec<NewReply>,
}

/// What recording a processed update stored besides its outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FinishReport {
    /// Event deliveries created (the dispatcher has work).
    pub deliveries: usize,
    /// Replies stored now (not replays of an earlier run's).
    pub new_replies: usize,
}

/// One operation of the inbound queue: the writes and reads every update makes besides its
/// claim, done in rounds (one transaction per round, see `round`).
#[derive(Debug, Clone)]
pub(super) enum Op {
    /// Store a new update.
    Insert(UpdateRecord),
    /// Record a processed update.
    Finish(ProcessedUpdate),
    /// Read a chat.
    ReadChat((String, i64)),
}

/// The answer to an [`Op`], of the same kind.
#[derive(Debug)]
pub(super) enum Answer {
    Inserted(bool),
    Finished(FinishReport),
    Chat(Option<ChatRecord>),
}

pub(super) fn wrong_answer() -> StoreError {
    StoreError::Corrupt("an inbound round answered with the wrong kind".into())
}

/// One reply to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReply {
    /// The request id (`req_…`).
    pub request_id: String,
    /// The message id (`msg_…`).
    pub message_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The bot that sends it.
    pub bot_id: String,
    /// Telegram chat id.
    pub chat_id: i64,
    /// The request's origin, one per reply of a stored update:
    /// `reply:{bot}:{update_id}:{received_at}:{n}`.
    pub origin: String,
    /// The rendered content, JSON.
    pub content: String,
    /// Server-side button data.
    pub callbacks: Vec<Callback>,
    /// Acceptance time (UTC ms): also when it may be sent.
    pub now: i64,
}

/// An event to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Opaque id (`evt_…`); also the `webhook-id` of its deliveries.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Type, e.g. `command.received`.
    pub event_type: String,
    /// The payload's `data`, as JSON text.
    pub data: String,
    /// Creation time (UTC ms).
    pub created_at: i64,
}

/// The server-side data of one callback button a request sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// The id in the token Telegram gets (`rg:cb:<id>`).
    pub id: String,
    /// The app's data, any length.
    pub data: String,
    /// What a press answers (`{"text", "show_alert"}`, JSON); `None` answers silently.
    pub answer: Option<String>,
}

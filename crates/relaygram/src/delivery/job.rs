//! What an edit or delete job calls: the Bot API methods, their parameters, and which
//! Telegram answers count as done. Shared by the edit service (which queues jobs), the
//! stored content (which carries them) and the sender (which makes the calls).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::JobKind;
use crate::telegram::TelegramError;

/// A Bot API method an edit or delete job calls.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum BotMethod {
    /// New text (and keyboard) of a text message.
    #[serde(rename = "editMessageText")]
    EditText,
    /// New caption (and keyboard) of a photo or document.
    #[serde(rename = "editMessageCaption")]
    EditCaption,
    /// New keyboard only.
    #[serde(rename = "editMessageReplyMarkup")]
    EditReplyMarkup,
    /// Delete one Telegram message.
    #[serde(rename = "deleteMessage")]
    Delete,
}

impl BotMethod {
    /// The Bot API name.
    pub fn as_str(self) -> &'static str {
        match self {
            BotMethod::EditText => "editMessageText",
            BotMethod::EditCaption => "editMessageCaption",
            BotMethod::EditReplyMarkup => "editMessageReplyMarkup",
            BotMethod::Delete => "deleteMessage",
        }
    }
}

/// One call of a job (its `chat_id` is the lane's, added when sent).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BotCall {
    /// The method.
    pub method: BotMethod,
    /// Its parameters but `chat_id`.
    pub params: Value,
}

/// What an edit or delete job's request stores: the message it acts on and its calls.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobContent {
    /// `true` for a delete.
    pub delete: bool,
    /// The sent message.
    pub edit_of: String,
    /// The calls, in order (a long text sent in parts is deleted part by part).
    pub calls: Vec<BotCall>,
}

impl JobContent {
    /// The store's kind of this job.
    pub fn kind(&self) -> JobKind {
        if self.delete {
            JobKind::Delete
        } else {
            JobKind::Edit
        }
    }
}

/// Whether Telegram's answer to a job's call means the job is done anyway: an edit that
/// changes nothing is what the app asked for.
pub fn is_done_anyway(e: &TelegramError) -> bool {
    matches!(e, TelegramError::BadRequest(d) if d.contains("message is not modified"))
}

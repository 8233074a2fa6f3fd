//! What an edit, delete or member job calls: the Bot API methods, their parameters, and which
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
    /// Let a requester in.
    #[serde(rename = "approveChatJoinRequest")]
    ApproveJoinRequest,
    /// Turn a requester away.
    #[serde(rename = "declineChatJoinRequest")]
    DeclineJoinRequest,
    /// On a member: removes them, free to come back (Telegram bans, then lifts the ban).
    #[serde(rename = "unbanChatMember")]
    UnbanMember,
    /// End a personal link.
    #[serde(rename = "revokeChatInviteLink")]
    RevokeInviteLink,
}

impl BotMethod {
    /// The Bot API name.
    pub fn as_str(self) -> &'static str {
        match self {
            BotMethod::EditText => "editMessageText",
            BotMethod::EditCaption => "editMessageCaption",
            BotMethod::EditReplyMarkup => "editMessageReplyMarkup",
            BotMethod::Delete => "deleteMessage",
            BotMethod::ApproveJoinRequest => "approveChatJoinRequest",
            BotMethod::DeclineJoinRequest => "declineChatJoinRequest",
            BotMethod::UnbanMember => "unbanChatMember",
            BotMethod::RevokeInviteLink => "revokeChatInviteLink",
        }
    }
}

/// One call of a job (its `chat_id` is the lane's, added when sent, unless it names its
/// own: a member job's lane is the user's, its calls name the gated chat).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BotCall {
    /// The method.
    pub method: BotMethod,
    /// Its parameters but `chat_id`.
    pub params: Value,
}

/// What a job's request stores: what it acts on and its calls.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobContent {
    /// `true` for a delete.
    #[serde(default)]
    pub delete: bool,
    /// The sent message (edits and deletes).
    #[serde(default)]
    pub edit_of: String,
    /// The calls, in order (a long text sent in parts is deleted part by part).
    pub calls: Vec<BotCall>,
    /// A member job: the membership it acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership_id: Option<String>,
}

impl JobContent {
    /// The store's kind of this job.
    pub fn kind(&self) -> JobKind {
        if self.membership_id.is_some() {
            JobKind::Member
        } else if self.delete {
            JobKind::Delete
        } else {
            JobKind::Edit
        }
    }
}

/// Whether Telegram's answer to a job's call means the job is done anyway: an edit that
/// changes nothing is what the app asked for; an approval of someone already in (or of a
/// request already handled) leaves them where the job wanted.
pub fn is_done_anyway(e: &TelegramError) -> bool {
    matches!(e, TelegramError::BadRequest(d) if d.contains("message is not modified")
        || d.contains("USER_ALREADY_PARTICIPANT")
        || d.contains("HIDE_REQUESTER_MISSING"))
}

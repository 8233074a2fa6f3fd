//! Faults on demand: make the next N calls (or every call for a while) of a bot, chat or
//! method fail the way Telegram fails.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// 403 `Forbidden: bot was blocked by the user`.
    Blocked,
    /// 403 `Forbidden: user is deactivated`.
    Deactivated,
    /// 403 `Forbidden: bot was kicked from the group chat`.
    Kicked,
    /// 400 `Bad Request: chat not found`.
    ChatNotFound,
    /// 400 `Bad Request: group chat was upgraded to a supergroup chat` with
    /// `parameters.migrate_to_chat_id`.
    Migrated,
    /// 429 `Too Many Requests: retry after N`.
    Flood,
    /// A 5xx answer (500 by default).
    ServerError,
    /// No answer until `delay_ms` passes, then 504 and nothing done.
    Timeout,
    /// The connection is closed without an answer and nothing is done.
    DropConnection,
    /// The call takes effect but its answer is lost: the ambiguous failure.
    LostResponse,
}

impl FaultKind {
    /// Faults that only make sense for a call aimed at a chat.
    pub fn needs_chat(self) -> bool {
        matches!(
            self,
            FaultKind::Blocked
                | FaultKind::Deactivated
                | FaultKind::Kicked
                | FaultKind::ChatNotFound
                | FaultKind::Migrated
        )
    }
}

/// What `POST /sandbox/faults` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub kind: FaultKind,
    /// A bot's id or username; every bot when absent.
    pub bot: Option<Value>,
    /// A chat; every chat when absent.
    pub chat_id: Option<i64>,
    /// A user: the same as their private chat's id.
    pub user_id: Option<i64>,
    /// A Bot API method name (case-insensitive); every method when absent.
    pub method: Option<String>,
    /// How many matching calls fail; then the fault is gone.
    pub count: Option<u32>,
    /// For how long matching calls fail.
    pub duration_ms: Option<u64>,
    /// For `server_error`: the status (500 by default).
    pub status: Option<u16>,
    /// For `flood`: the seconds to wait (5 by default).
    pub retry_after: Option<u64>,
    /// For `timeout`: how long to hold the call (30 s by default).
    pub delay_ms: Option<u64>,
    /// For `migrated`: the new chat id (made up when absent).
    pub migrate_to_chat_id: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Fault {
    pub id: u64,
    pub kind: FaultKind,
    pub bot_id: Option<i64>,
    pub chat_id: Option<i64>,
    pub method: Option<String>,
    pub remaining: Option<u32>,
    pub until: Option<Instant>,
    pub status: u16,
    pub retry_after: u64,
    pub delay: Duration,
    pub migrate_to_chat_id: i64,
    pub hits: u64,
}

impl Fault {
    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "kind": self.kind,
            "bot_id": self.bot_id,
            "chat_id": self.chat_id,
            "method": self.method,
            "remaining": self.remaining,
            "hits": self.hits,
        })
    }

    fn expired(&self, now: Instant) -> bool {
        self.remaining == Some(0) || self.until.is_some_and(|u| now >= u)
    }

    fn matches(&self, bot_id: i64, method: &str, chat_id: Option<i64>) -> bool {
        if self.bot_id.is_some_and(|b| b != bot_id) {
            return false;
        }
        if self
            .method
            .as_deref()
            .is_some_and(|m| !m.eq_ignore_ascii_case(method))
        {
            return false;
        }
        match (self.chat_id, chat_id) {
            (Some(want), Some(got)) if want != got => return false,
            (Some(_), None) => return false,
            _ => {}
        }
        !(self.kind.needs_chat() && chat_id.is_none())
    }
}

/// Finds the first live fault for a call, counts the hit and forgets spent faults.
pub fn take(
    faults: &mut Vec<Fault>,
    bot_id: i64,
    method: &str,
    chat_id: Option<i64>,
) -> Option<Fault> {
    let now = Instant::now();
    faults.retain(|f| !f.expired(now));
    let fault = faults
        .iter_mut()
        .find(|f| f.matches(bot_id, method, chat_id))?;
    fault.hits += 1;
    if let Some(r) = fault.remaining.as_mut() {
        *r -= 1;
    }
    let taken = fault.clone();
    faults.retain(|f| !f.expired(now));
    Some(taken)
}

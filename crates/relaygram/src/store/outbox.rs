//! Storage for the outbox: accepted requests, their messages (one row per chat, per-chat
//! order by id), idempotency keys, throttle windows, broadcasts, server-side button data,
//! per-bot limits and per-bot sender leases.
//!
//! Acceptance is one transaction: the request, every message row (fan-outs to links are
//! one `INSERT … SELECT` each, never a loop in memory), the broadcast, button data and the
//! idempotency key. The sender claims lane heads (`FOR UPDATE SKIP LOCKED` on PostgreSQL),
//! calls Telegram outside any transaction and records every outcome of a batch in one.

use async_trait::async_trait;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use super::cancel::CancelReason;
use super::inbound::ChatState;
use super::sql::{Col, JsonRows, PgStore, SqliteStore};
use super::{Listed, Page, StoreError, StoreResult};

/// Message states. `queued`, `paused` and `sending` are on the way; the others are final
/// (`dead` and `unknown` can be re-driven by hand).
pub const FINAL_STATES: &[&str] = &[
    "sent",
    "throttled",
    "failed",
    "dead",
    "unknown",
    "cancelled",
];

/// The request an accepted call stored (its content, once for all its messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    /// Opaque id (`req_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// `api` or `schedule:<id>:<occurrence>`.
    pub origin: String,
    /// The rendered content, JSON.
    pub content: String,
    /// The app's metadata of the send (a JSON object), if any.
    pub metadata: Option<String>,
    /// The targets that reached nobody (JSON, as answered), if any.
    pub skipped: Option<String>,
    /// Acceptance time (UTC ms).
    pub created_at: i64,
}

pub use super::records::Callback;

/// A pressed button's stored data, with what it answers and its send's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRecord {
    /// Owning tenant.
    pub tenant_id: String,
    /// The app's data.
    pub data: String,
    /// What the press answers, JSON (see [`Callback::answer`]).
    pub answer: Option<String>,
    /// The app's metadata of the send that carried the button.
    pub metadata: Option<String>,
}

/// One message row to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// Opaque id (`msg_…`).
    pub id: String,
    /// The bot that sends it.
    pub bot_id: String,
    /// Telegram chat id.
    pub chat_id: i64,
    /// The link it was addressed through, if any.
    pub link_id: Option<String>,
    /// The category it was sent to, when a category fan-out reached it.
    pub category: Option<String>,
    /// Its own rendered content (JSON) when it was rendered for its recipient; `None`
    /// shares the request's.
    pub content: Option<String>,
}

/// A fan-out done inside the store: every link that should receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fanout {
    /// Every active link of an app user.
    ExternalId {
        /// The app's user id.
        external_id: String,
    },
    /// Every active link opted in to a category.
    Category {
        /// The category key.
        key: String,
    },
    /// Every active link made with a team connect code.
    ConnectCode {
        /// The connect code's id.
        connect_code_id: String,
    },
}

/// What one throttle window covers.
#[derive(
    Debug,
    Clone,
    Copy,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
    PartialEq,
    Eq,
    Default,
)]
#[serde(rename_all = "snake_case")]
pub enum ThrottleScope {
    /// Each recipient chat has its own window for the key.
    #[default]
    Recipient,
    /// One window for the key across the tenant.
    Tenant,
}

/// A throttle window an accepted call opens, or is throttled by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttle {
    /// The app's key.
    pub key: String,
    /// The window's end (UTC ms) if this call opens it.
    pub until: i64,
    /// Per recipient chat, or across the tenant.
    pub scope: ThrottleScope,
}

/// How far a fan-out reaches now: active links it finds, and how many of them it would
/// send to (opted in, for a category).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reach {
    /// Active links of the app user, code or tenant (and bot).
    pub active: i64,
    /// Those that would receive it.
    pub receiving: i64,
}

/// Everything one accepted call stores, in one transaction.
#[derive(Debug, Clone)]
pub struct Acceptance {
    /// The request and its content.
    pub request: NewRequest,
    /// Messages to chats named directly or through one link.
    pub rows: Vec<NewMessage>,
    /// Fan-outs (each with the id prefix of its rows) done in SQL.
    pub fanouts: Vec<(String, Fanout)>,
    /// Restricts fan-outs to one bot.
    pub bot_id: Option<String>,
    /// Priority (higher first).
    pub priority: i64,
    /// Not before (UTC ms). With `local`, the earliest instant that local time occurs.
    pub send_at: i64,
    /// A local send time: the wall-clock time (`2026-11-22T09:00:00`) each message waits
    /// for in its recipient's zone, and the zone for recipients without one.
    pub local: Option<(String, String)>,
    /// Throttle window; messages whose window is open are stored as `throttled`.
    pub throttle: Option<Throttle>,
    /// Above this many messages the request is a broadcast with this id.
    pub broadcast: Option<(String, i64)>,
    /// Server-side button data.
    pub callbacks: Vec<Callback>,
    /// Idempotency key and the hash of the body.
    pub idempotency: Option<(String, String)>,
    /// The answer to keep with the idempotency key when the call is stored as it is
    /// ([`Acceptance::is_plain`]): written in the same transaction. Other calls' answers
    /// depend on what the transaction finds and are kept afterwards.
    pub answer: Option<String>,
}

impl Acceptance {
    /// Whether storing this call depends on nothing but itself (no throttle window, no
    /// fan-out, no broadcast): its messages are exactly `rows`, all `queued`. Plain calls
    /// of a batch are stored together, a few statements for the whole batch.
    pub fn is_plain(&self) -> bool {
        self.throttle.is_none() && self.fanouts.is_empty() && self.broadcast.is_none()
    }
}

/// What acceptance stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Stored: how many messages, their status, and the broadcast id when it is one.
    Stored {
        /// Messages stored.
        count: i64,
        /// `queued`, or `throttled` when every message was.
        status: String,
        /// How many of them were throttled.
        throttled: i64,
        /// The broadcast, when the request became one.
        broadcast_id: Option<String>,
    },
    /// The idempotency key was used before: the stored answer and body hash.
    Replay {
        /// The first answer, JSON; empty when the process stopped between storing the
        /// messages and storing the answer.
        response: String,
        /// The first body's hash.
        body_hash: String,
        /// The first request (rebuilds a missing answer).
        request_id: Option<String>,
    },
}

/// A stored message.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    /// Opaque id.
    pub id: String,
    /// The request it came from.
    pub request_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Sending bot.
    pub bot_id: String,
    /// Telegram chat.
    pub chat_id: i64,
    /// Link it was addressed through.
    pub link_id: Option<String>,
    /// Broadcast it belongs to.
    pub broadcast_id: Option<String>,
    /// State.
    pub status: String,
    /// Priority.
    pub priority: i64,
    /// Not before (UTC ms).
    pub send_at: i64,
    /// Next attempt (UTC ms).
    pub next_attempt_at: i64,
    /// Attempts made.
    pub attempts: i64,
    /// Retries scheduled after transient failures.
    pub retries: i64,
    /// 429s received.
    pub rate_limited: i64,
    /// Parts already delivered (long texts are several Telegram messages).
    pub parts_sent: i64,
    /// Telegram message ids, JSON array.
    pub telegram_message_ids: String,
    /// Class of the last error.
    pub error_class: Option<String>,
    /// The last error.
    pub last_error: Option<String>,
    /// Every error, JSON array of `{at, class, error}`.
    pub errors: String,
    /// Acceptance time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
    /// When it reached its final state.
    pub finished_at: Option<i64>,
    /// The local send time (`send_at_local`, `2026-11-22T09:00:00`).
    pub local_at: Option<String>,
    /// The zone of `local_at` for a recipient without one (`default_timezone`).
    pub local_zone: Option<String>,
    /// The category of the fan-out that made it.
    pub category: Option<String>,
    /// Why it waits while `queued`: `quiet` (quiet hours) or `local` (its local time).
    pub held: Option<String>,
    /// `send`, or `edit` / `delete` for a job acting on the sent message `edit_of`.
    pub kind: String,
    /// The sent message an edit or delete job acts on.
    pub edit_of: Option<String>,
    /// When an edit of it last reached Telegram.
    pub edited_at: Option<i64>,
    /// When a delete of it reached Telegram.
    pub deleted_at: Option<i64>,
}

/// Which messages to list, count or re-drive.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    /// Tenant (always set by services).
    pub tenant_id: String,
    /// Only this state.
    pub status: Option<String>,
    /// Only this bot.
    pub bot_id: Option<String>,
    /// Only this chat.
    pub chat_id: Option<i64>,
    /// Only accepted at or after (UTC ms).
    pub since: Option<i64>,
    /// Only accepted before (UTC ms).
    pub until: Option<i64>,
    /// Only this broadcast.
    pub broadcast_id: Option<String>,
    /// Only addressed through this link.
    pub link_id: Option<String>,
    /// Only addressed through a link of this app user.
    pub external_id: Option<String>,
    /// Only from a fan-out to this category.
    pub category: Option<String>,
    /// Only from this request.
    pub request_id: Option<String>,
    /// Listing order (by id, which follows acceptance).
    pub order: ListOrder,
}

/// The order of a message listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ListOrder {
    /// Newest first (the default).
    #[default]
    Desc,
    /// Oldest first.
    Asc,
}

/// A value bound to a filter's placeholder.
enum Arg<'a> {
    Text(&'a str),
    Int(i64),
}

/// The `WHERE` conditions of `filter` over `messages` (no alias), with placeholders from
/// `$first` on, and their values in order. Only the conditions given are written, so each
/// one can use its index (`$n IS NULL OR …` would hide them from both planners). Without
/// `tenant`, every tenant's messages match.
fn filter_sql<'a>(f: &'a MessageFilter, tenant: bool, first: usize) -> (String, Vec<Arg<'a>>) {
    let mut args: Vec<Arg<'a>> = Vec::new();
    // Edit and delete jobs are not messages of their own: read by id, never listed or
    // counted.
    let mut conds: Vec<String> = vec!["kind = 'send'".to_string()];
    let mut add = |cond: &str, arg: Arg<'a>| {
        conds.push(cond.replace("$?", &format!("${}", first + args.len())));
        args.push(arg);
    };
    if tenant {
        add("tenant_id = $?", Arg::Text(&f.tenant_id));
    }
    if let Some(v) = &f.status {
        add("status = $?", Arg::Text(v));
    }
    if let Some(v) = &f.bot_id {
        add("bot_id = $?", Arg::Text(v));
    }
    if let Some(v) = f.chat_id {
        add("chat_id = $?", Arg::Int(v));
    }
    if let Some(v) = f.since {
        add("created_at >= $?", Arg::Int(v));
    }
    if let Some(v) = f.until {
        add("created_at < $?", Arg::Int(v));
    }
    if let Some(v) = &f.broadcast_id {
        add("broadcast_id = $?", Arg::Text(v));
    }
    if let Some(v) = &f.link_id {
        add("link_id = $?", Arg::Text(v));
    }
    if let Some(v) = &f.external_id {
        // Through the links of that app user (`links_external`, then `messages_link`).
        add(
            "link_id IN (SELECT l.id FROM links l WHERE l.tenant_id = messages.tenant_id \
             AND l.external_id = $?)",
            Arg::Text(v),
        );
    }
    if let Some(v) = &f.category {
        add("category = $?", Arg::Text(v));
    }
    if let Some(v) = &f.request_id {
        add("request_id = $?", Arg::Text(v));
    }
    let sql = if conds.is_empty() {
        "1 = 1".to_string()
    } else {
        conds.join(" AND ")
    };
    (sql, args)
}

/// A message claimed by a sender.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Message id.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Its request (content).
    pub request_id: String,
    /// Telegram chat.
    pub chat_id: i64,
    /// Link, if any.
    pub link_id: Option<String>,
    /// Broadcast, if any.
    pub broadcast_id: Option<String>,
    /// Attempts made, this one included.
    pub attempts: i64,
    /// Parts delivered before.
    pub parts_sent: i64,
    /// Message ids of the parts delivered before, JSON array.
    pub telegram_message_ids: String,
    /// Errors so far, JSON array.
    pub errors: String,
    /// The local send time, if any (the sender decides whether it waits).
    pub local_at: Option<String>,
    /// Its own rendered content (JSON), when it has one instead of its request's.
    pub content: Option<String>,
}

/// What an attempt did to a message.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Message id.
    pub id: String,
    /// New state.
    pub status: &'static str,
    /// Next attempt (for `queued`).
    pub next_attempt_at: Option<i64>,
    /// Parts delivered so far.
    pub parts_sent: i64,
    /// Telegram message ids so far, JSON array.
    pub telegram_message_ids: String,
    /// Error class of this attempt.
    pub error_class: Option<String>,
    /// Error of this attempt.
    pub error: Option<String>,
    /// Every error, JSON array.
    pub errors: String,
    /// 1 when this attempt scheduled a retry after a transient failure.
    pub retried: i64,
    /// 1 when this attempt got a 429.
    pub rate_limited: i64,
    /// A new chat id (followed migration).
    pub chat_id: Option<i64>,
}

/// A broadcast and its progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastRecord {
    /// Opaque id.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Sending bot (the first one of the fan-out).
    pub bot_id: String,
    /// The request.
    pub request_id: String,
    /// `running`, `paused`, `cancelled`.
    pub status: String,
    /// Messages in it.
    pub total: i64,
    /// Messages per state.
    pub counts: Vec<(String, i64)>,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

/// Per-bot counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BotStats {
    /// The bot.
    pub bot_id: String,
    /// Messages per state.
    pub counts: Vec<(String, i64)>,
    /// 429s received.
    pub rate_limited: i64,
    /// Retries scheduled.
    pub retries: i64,
}

/// A bot's own limits (each `None` = the deployment's default).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BotLimitsRecord {
    /// Messages per second for the bot.
    pub per_bot_per_second: Option<f64>,
    /// Messages per second to one private chat.
    pub per_chat_per_second: Option<f64>,
    /// Messages per minute to one group.
    pub per_group_per_minute: Option<f64>,
}

/// Storage of the outbox.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// The bot and chat of an active link of the tenant: `(bot_id, chat_id, active)`.
    async fn find_link(
        &self,
        tenant_id: &str,
        link_id: &str,
    ) -> StoreResult<Option<(String, i64, bool)>>;
    /// Whether the tenant has this category.
    async fn category_exists(&self, tenant_id: &str, key: &str) -> StoreResult<bool>;
    /// How far a fan-out reaches now (restricted to `bot_id`).
    async fn fanout_reach(
        &self,
        tenant_id: &str,
        fanout: &Fanout,
        bot_id: Option<&str>,
    ) -> StoreResult<Reach>;
    /// Stores accepted calls in one transaction; the answers are in the same order. A key
    /// given twice in one batch stores the first call; the later ones answer as replays.
    async fn accept_batch(&self, batch: &[Acceptance]) -> StoreResult<Vec<Accepted>>;
    /// Stores an accepted call in one transaction.
    async fn accept(&self, a: &Acceptance) -> StoreResult<Accepted> {
        self.accept_batch(std::slice::from_ref(a))
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("acceptance gave no answer".into()))
    }
    /// Stores the answer of an idempotent acceptance.
    async fn put_idempotent_answer(
        &self,
        tenant_id: &str,
        key: &str,
        body_hash: &str,
        response: &str,
        now: i64,
    ) -> StoreResult<()>;
    /// Ids and chats of a request's messages (small requests only).
    async fn request_messages(&self, request_id: &str) -> StoreResult<Vec<MessageRecord>>;
    /// How many messages a request made.
    async fn count_request_messages(&self, request_id: &str) -> StoreResult<i64>;
    /// A request's content.
    async fn request_content(&self, request_id: &str) -> StoreResult<Option<String>>;
    /// The app's metadata of a request, if it gave some.
    async fn request_metadata(&self, request_id: &str) -> StoreResult<Option<String>>;
    /// The targets of a request that reached nobody (JSON), if any.
    async fn request_skipped(&self, request_id: &str) -> StoreResult<Option<String>>;
    /// One message of a tenant.
    async fn get_message(&self, tenant_id: &str, id: &str) -> StoreResult<Option<MessageRecord>>;
    /// Messages matching `filter` in its order, by id cursor.
    async fn list_messages(
        &self,
        filter: &MessageFilter,
        page: &Page,
    ) -> StoreResult<Listed<MessageRecord>>;
    /// Queues again the messages matching `filter` whose state is in `from`; with `id`,
    /// only that one. Returns how many.
    async fn requeue(
        &self,
        filter: &MessageFilter,
        id: Option<&str>,
        from: &[&str],
        now: i64,
    ) -> StoreResult<u64>;

    /// Takes or renews the sender lease of a bot; `false` when another holder has it.
    async fn acquire_sender_lease(
        &self,
        bot_id: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> StoreResult<bool>;
    /// Gives a lease up.
    async fn release_sender_lease(&self, bot_id: &str, holder: &str) -> StoreResult<()>;
    /// Messages left `sending` by a holder that stopped (crash): they become `unknown`,
    /// since the call may have reached Telegram. Returns (id, tenant) of each.
    async fn recover_interrupted(
        &self,
        bot_id: &str,
        now: i64,
    ) -> StoreResult<Vec<(String, String)>>;
    /// Enabled bots with queued messages.
    async fn bots_with_queued(&self) -> StoreResult<Vec<String>>;
    /// Earliest time a queued message of the bot becomes due.
    async fn next_due(&self, bot_id: &str) -> StoreResult<Option<i64>>;
    /// Ready lane heads of a bot, at most `limit`, locked and marked `sending` when `pick`
    /// accepts them (the filter sees candidates in order: priority, then acceptance).
    async fn claim(
        &self,
        bot_id: &str,
        now: i64,
        limit: i64,
        pick: &mut (dyn for<'c> FnMut(&'c Claimed) -> bool + Send),
    ) -> StoreResult<Vec<Claimed>>;
    /// Records the outcomes of a batch in one transaction.
    async fn record(&self, outcomes: &[Outcome], now: i64) -> StoreResult<()>;
    /// A group became a supergroup: the chat, links and unfinished messages follow.
    async fn migrate_chat(&self, bot_id: &str, from: i64, to: i64, now: i64) -> StoreResult<()>;

    /// A broadcast with its progress.
    async fn get_broadcast(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> StoreResult<Option<BroadcastRecord>>;
    /// A tenant's broadcasts (progress not filled in).
    async fn list_broadcasts(
        &self,
        tenant_id: &str,
        page: &Page,
    ) -> StoreResult<Listed<BroadcastRecord>>;
    /// Pauses, resumes or cancels a broadcast; `false` when the change does not apply.
    async fn set_broadcast_status(&self, id: &str, status: &str, now: i64) -> StoreResult<bool>;
    /// Per-bot counters of the messages matching `filter` (of every tenant with
    /// `every_tenant`; the filter's order is ignored).
    async fn delivery_stats(
        &self,
        filter: &MessageFilter,
        every_tenant: bool,
    ) -> StoreResult<Vec<BotStats>>;
    /// A server-side button's data, answer and its send's metadata.
    async fn get_callback(&self, id: &str) -> StoreResult<Option<CallbackRecord>>;
    /// A bot's own limits.
    async fn get_bot_limits(&self, bot_id: &str) -> StoreResult<BotLimitsRecord>;
    /// Sets a bot's own limits.
    async fn set_bot_limits(
        &self,
        bot_id: &str,
        limits: &BotLimitsRecord,
        now: i64,
    ) -> StoreResult<()>;
}

/// An `idempotency_keys` row set (see [`JsonRows`]).
const KEY_ROWS: &[Col] = &[
    Col::Text("tenant_id"),
    Col::Text("key"),
    Col::Text("body_hash"),
    Col::Text("response"),
    Col::Int("created_at"),
    Col::Text("request_id"),
];

/// A `message_requests` row set: API acceptances and router replies.
pub(super) const REQUEST_ROWS: &[Col] = &[
    Col::Text("id"),
    Col::Text("tenant_id"),
    Col::Text("origin"),
    Col::Text("content"),
    Col::Int("created_at"),
    Col::Text("metadata"),
    Col::Text("skipped"),
];

/// A `callback_data` row set: the server-side data of a request's buttons.
pub(super) const CALLBACK_ROWS: &[Col] = &[
    Col::Text("id"),
    Col::Text("tenant_id"),
    Col::Text("request_id"),
    Col::Text("data"),
    Col::Int("created_at"),
    Col::Text("answer"),
];

/// A row set of queued messages, inserted by [`insert_queued`].
pub(super) const QUEUED_ROWS: &[Col] = &[
    Col::Text("id"),
    Col::Text("request_id"),
    Col::Text("tenant_id"),
    Col::Text("bot_id"),
    Col::Int("chat_id"),
    Col::Text("link_id"),
    Col::Int("priority"),
    Col::Int("send_at"),
    Col::Int("created_at"),
    Col::Text("local_at"),
    Col::Text("local_zone"),
    Col::Text("category"),
    Col::Text("content"),
];

/// `INSERT INTO messages` the `queued` messages of a [`QUEUED_ROWS`] row set bound at `$1`,
/// due at their `send_at`.
pub(super) fn insert_queued<S: JsonRows>() -> String {
    format!(
        "INSERT INTO messages (id, request_id, tenant_id, bot_id, chat_id, link_id, \
         broadcast_id, status, priority, send_at, next_attempt_at, created_at, \
         updated_at, finished_at, local_at, local_zone, category, content) \
         SELECT id, request_id, tenant_id, bot_id, chat_id, link_id, NULL, 'queued', \
         priority, send_at, send_at, created_at, created_at, NULL, local_at, local_zone, \
         category, content FROM ({}) AS r",
        S::json_rows("$1", QUEUED_ROWS)
    )
}

const MESSAGE_COLS: &str = "id, request_id, tenant_id, bot_id, chat_id, link_id, broadcast_id, \
     status, priority, send_at, next_attempt_at, attempts, retries, rate_limited, parts_sent, \
     telegram_message_ids, error_class, last_error, errors, created_at, updated_at, finished_at, \
     local_at, local_zone, category, held, kind, edit_of, edited_at, deleted_at";

fn ids_json(ids: &[&str]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
}

macro_rules! outbox_store {
    ($store:ty, $row:ty, $in_json:literal, $lock:literal, $true:literal, $outcomes:literal, $message_rows:literal) => {
        impl $store {
            fn message(row: &$row) -> StoreResult<MessageRecord> {
                Ok(MessageRecord {
                    id: row.try_get("id")?,
                    request_id: row.try_get("request_id")?,
                    tenant_id: row.try_get("tenant_id")?,
                    bot_id: row.try_get("bot_id")?,
                    chat_id: row.try_get("chat_id")?,
                    link_id: row.try_get("link_id")?,
                    broadcast_id: row.try_get("broadcast_id")?,
                    status: row.try_get("status")?,
                    priority: row.try_get("priority")?,
                    send_at: row.try_get("send_at")?,
                    next_attempt_at: row.try_get("next_attempt_at")?,
                    attempts: row.try_get("attempts")?,
                    retries: row.try_get("retries")?,
                    rate_limited: row.try_get("rate_limited")?,
                    parts_sent: row.try_get("parts_sent")?,
                    telegram_message_ids: row.try_get("telegram_message_ids")?,
                    error_class: row.try_get("error_class")?,
                    last_error: row.try_get("last_error")?,
                    errors: row.try_get("errors")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    finished_at: row.try_get("finished_at")?,
                    local_at: row.try_get("local_at")?,
                    local_zone: row.try_get("local_zone")?,
                    category: row.try_get("category")?,
                    held: row.try_get("held")?,
                    kind: row.try_get("kind")?,
                    edit_of: row.try_get("edit_of")?,
                    edited_at: row.try_get("edited_at")?,
                    deleted_at: row.try_get("deleted_at")?,
                })
            }

            async fn counts_of(&self, sql: &str, key: &str) -> StoreResult<Vec<(String, i64)>> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                    .bind(key)
                    .fetch_all(&self.db)
                    .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
                    .collect()
            }
        }

        #[async_trait]
        impl OutboxStore for $store {
            async fn find_link(
                &self,
                tenant_id: &str,
                link_id: &str,
            ) -> StoreResult<Option<(String, i64, bool)>> {
                let row = sqlx::query(
                    "SELECT bot_id, chat_id, active FROM links WHERE tenant_id = $1 AND id = $2",
                )
                .bind(tenant_id)
                .bind(link_id)
                .fetch_optional(&self.db)
                .await?;
                row.map(|r| Ok((r.try_get("bot_id")?, r.try_get("chat_id")?, r.try_get("active")?)))
                    .transpose()
            }

            async fn category_exists(&self, tenant_id: &str, key: &str) -> StoreResult<bool> {
                let row =
                    sqlx::query("SELECT 1 AS one FROM categories WHERE tenant_id = $1 AND key = $2")
                        .bind(tenant_id)
                        .bind(key)
                        .fetch_optional(&self.db)
                        .await?;
                Ok(row.is_some())
            }

            async fn fanout_reach(
                &self,
                tenant_id: &str,
                fanout: &Fanout,
                bot_id: Option<&str>,
            ) -> StoreResult<Reach> {
                let (base, receiving, arg) = match fanout {
                    Fanout::ExternalId { external_id } => {
                        ("l.external_id = $2", "TRUE", external_id.as_str())
                    }
                    Fanout::ConnectCode { connect_code_id } => {
                        ("l.connect_code_id = $2", "TRUE", connect_code_id.as_str())
                    }
                    Fanout::Category { key } => (
                        "CAST($2 AS TEXT) IS NOT NULL",
                        concat!(
                            "EXISTS (SELECT 1 FROM categories c LEFT JOIN link_preferences p \
                             ON p.link_id = l.id AND p.category_key = c.key \
                             WHERE c.tenant_id = l.tenant_id AND c.key = $2 AND (c.mandatory = ",
                            $true,
                            " OR p.enabled = ",
                            $true,
                            " OR (p.enabled IS NULL AND c.default_enabled = ",
                            $true,
                            ")))"
                        ),
                        key.as_str(),
                    ),
                };
                let sql = format!(
                    "SELECT COUNT(*) AS active, COUNT(CASE WHEN {receiving} THEN 1 END) AS receiving \
                     FROM links l WHERE l.tenant_id = $1 AND l.active = {t} AND {base} \
                     AND (CAST($3 AS TEXT) IS NULL OR l.bot_id = $3)",
                    receiving = receiving.replace("TRUE", $true),
                    t = $true
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(arg)
                    .bind(bot_id)
                    .fetch_one(&self.db)
                    .await?;
                Ok(Reach {
                    active: row.try_get("active")?,
                    receiving: row.try_get("receiving")?,
                })
            }

            async fn accept_batch(&self, batch: &[Acceptance]) -> StoreResult<Vec<Accepted>> {
                let Some(first) = batch.first() else {
                    return Ok(Vec::new());
                };
                let now = first.request.created_at;
                let mut answers: Vec<Option<Accepted>> = vec![None; batch.len()];
                let mut tx = self.db.begin().await?;

                // Idempotency keys, for the whole batch: purge those older than a day,
                // look for the rest, and take the new ones inside this transaction (so two
                // concurrent calls with one key cannot both store messages).
                let keyed: Vec<(usize, &str, &str, &str)> = batch
                    .iter()
                    .enumerate()
                    .filter_map(|(i, a)| {
                        a.idempotency
                            .as_ref()
                            .map(|(k, h)| (i, a.request.tenant_id.as_str(), k.as_str(), h.as_str()))
                    })
                    .collect();
                if !keyed.is_empty() {
                    let pairs = Value::Array(keyed.iter().map(|(_, t, k, _)| json!([t, k])).collect())
                        .to_string();
                    let pair_rows = <$store>::json_rows("$1", &[Col::Text("t"), Col::Text("k")]);
                    let sql = format!(
                        "DELETE FROM idempotency_keys WHERE created_at < $2 \
                         AND (tenant_id, key) IN (SELECT t, k FROM ({pair_rows}) AS p)"
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&pairs)
                        .bind(now - 86_400_000)
                        .execute(&mut *tx)
                        .await?;
                    let sql = format!(
                        "SELECT tenant_id, key, body_hash, response, request_id FROM idempotency_keys \
                         WHERE (tenant_id, key) IN (SELECT t, k FROM ({pair_rows}) AS p)"
                    );
                    let mut known: std::collections::HashMap<(String, String), Accepted> =
                        std::collections::HashMap::new();
                    for r in sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&pairs)
                        .fetch_all(&mut *tx)
                        .await?
                    {
                        known.insert(
                            (r.try_get("tenant_id")?, r.try_get("key")?),
                            Accepted::Replay {
                                response: r.try_get("response")?,
                                body_hash: r.try_get("body_hash")?,
                                request_id: r.try_get("request_id")?,
                            },
                        );
                    }
                    let mut taken = Vec::new();
                    for (i, tenant, key, hash) in keyed {
                        let slot = (tenant.to_string(), key.to_string());
                        if let Some(replay) = known.get(&slot) {
                            answers[i] = Some(replay.clone());
                            continue;
                        }
                        let a = &batch[i];
                        known.insert(
                            slot,
                            Accepted::Replay {
                                response: a.answer.clone().filter(|_| a.is_plain()).unwrap_or_default(),
                                body_hash: hash.to_string(),
                                request_id: Some(a.request.id.clone()),
                            },
                        );
                        taken.push(json!([
                            tenant,
                            key,
                            hash,
                            a.answer.as_deref().filter(|_| a.is_plain()).unwrap_or(""),
                            a.request.created_at,
                            a.request.id
                        ]));
                    }
                    if !taken.is_empty() {
                        let sql = <$store>::json_insert("idempotency_keys", KEY_ROWS);
                        sqlx::query(sqlx::AssertSqlSafe(sql))
                            .bind(Value::Array(taken).to_string())
                            .execute(&mut *tx)
                            .await?;
                    }
                }

                // Plain calls: their requests, messages and buttons, a statement each for
                // the whole batch.
                let plain: Vec<usize> = (0..batch.len())
                    .filter(|&i| answers[i].is_none() && batch[i].is_plain())
                    .collect();
                if !plain.is_empty() {
                    let requests: Vec<Value> = plain
                        .iter()
                        .map(|&i| {
                            let r = &batch[i].request;
                            json!([r.id, r.tenant_id, r.origin, r.content, r.created_at, r.metadata, r.skipped])
                        })
                        .collect();
                    let sql = <$store>::json_insert("message_requests", REQUEST_ROWS);
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(Value::Array(requests).to_string())
                        .execute(&mut *tx)
                        .await?;
                    let rows: Vec<Value> = plain
                        .iter()
                        .flat_map(|&i| {
                            let a = &batch[i];
                            a.rows.iter().map(move |m| {
                                json!([
                                    m.id,
                                    a.request.id,
                                    a.request.tenant_id,
                                    m.bot_id,
                                    m.chat_id,
                                    m.link_id,
                                    a.priority,
                                    a.send_at,
                                    a.request.created_at,
                                    a.local.as_ref().map(|(at, _)| at),
                                    a.local.as_ref().map(|(_, zone)| zone),
                                    m.category,
                                    m.content
                                ])
                            })
                        })
                        .collect();
                    if !rows.is_empty() {
                        let sql = insert_queued::<$store>();
                        sqlx::query(sqlx::AssertSqlSafe(sql))
                            .bind(Value::Array(rows).to_string())
                            .execute(&mut *tx)
                            .await?;
                    }
                    let callbacks: Vec<Value> = plain
                        .iter()
                        .flat_map(|&i| {
                            let a = &batch[i];
                            a.callbacks.iter().map(move |c| {
                                json!([c.id, a.request.tenant_id, a.request.id, c.data, a.request.created_at, c.answer])
                            })
                        })
                        .collect();
                    if !callbacks.is_empty() {
                        let sql = <$store>::json_insert("callback_data", CALLBACK_ROWS);
                        sqlx::query(sqlx::AssertSqlSafe(sql))
                            .bind(Value::Array(callbacks).to_string())
                            .execute(&mut *tx)
                            .await?;
                    }
                    for &i in &plain {
                        answers[i] = Some(Accepted::Stored {
                            count: batch[i].rows.len() as i64,
                            status: "queued".into(),
                            throttled: 0,
                            broadcast_id: None,
                        });
                    }
                }

                // The others one at a time: a throttle window, a fan-out or a broadcast
                // depends on what the statements before it found.
                for (i, a) in batch.iter().enumerate() {
                    if answers[i].is_some() {
                        continue;
                    }
                    let now = a.request.created_at;
                    let tenant = &a.request.tenant_id;
                    // A tenant-wide window is taken (or found open) before the rows: it
                    // decides the status of all of them.
                    let mut opened_tenant_window = false;
                    let status = match &a.throttle {
                        Some(Throttle { key, until, scope: ThrottleScope::Tenant }) => {
                            let opened = sqlx::query(
                                "INSERT INTO throttle_windows (tenant_id, key, until) VALUES ($1, $2, $3) \
                                 ON CONFLICT (tenant_id, key) DO UPDATE SET until = excluded.until \
                                 WHERE throttle_windows.until <= $4",
                            )
                            .bind(tenant)
                            .bind(format!("tenant:{key}"))
                            .bind(until)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                            opened_tenant_window = opened.rows_affected() == 1;
                            if opened_tenant_window { "queued" } else { "throttled" }
                        }
                        _ => "queued",
                    };
                    sqlx::query(
                        "INSERT INTO message_requests (id, tenant_id, origin, content, created_at, metadata, skipped) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(&a.request.id)
                    .bind(tenant)
                    .bind(&a.request.origin)
                    .bind(&a.request.content)
                    .bind(now)
                    .bind(&a.request.metadata)
                    .bind(&a.request.skipped)
                    .execute(&mut *tx)
                    .await?;
                    let broadcast_id = a.broadcast.as_ref().map(|(id, _)| id.as_str());
                    let finished = (status == "throttled").then_some(now);
                    let local_at = a.local.as_ref().map(|(at, _)| at.as_str());
                    let local_zone = a.local.as_ref().map(|(_, zone)| zone.as_str());
                    let mut count: i64 = 0;
                    // One statement for the request's listed recipients, passed as one JSON
                    // array: a statement per message was a round trip each, and multi-row
                    // VALUES with thousands of parameters spent most of their time binding them.
                    if !a.rows.is_empty() {
                        let rows: Vec<Value> = a
                            .rows
                            .iter()
                            .map(|m| {
                                json!([m.id, m.bot_id, m.chat_id, m.link_id, m.category, m.content])
                            })
                            .collect();
                        let sql = format!(
                            "INSERT INTO messages (id, request_id, tenant_id, bot_id, chat_id, link_id, \
                             broadcast_id, status, priority, send_at, next_attempt_at, created_at, \
                             updated_at, finished_at, local_at, local_zone, category, content) \
                             SELECT r.id, $1, $2, r.bot_id, r.chat_id, r.link_id, $3, $4, $5, $6, $6, \
                             $7, $7, $8, $10, $11, r.category, r.content FROM ({rows}) AS r",
                            rows = $message_rows
                        );
                        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                            .bind(&a.request.id)
                            .bind(tenant)
                            .bind(broadcast_id)
                            .bind(status)
                            .bind(a.priority)
                            .bind(a.send_at)
                            .bind(now)
                            .bind(finished)
                            .bind(Value::Array(rows).to_string())
                            .bind(local_at)
                            .bind(local_zone)
                            .execute(&mut *tx)
                            .await?;
                        count += done.rows_affected() as i64;
                    }
                    for (prefix, fanout) in &a.fanouts {
                        let (filter, arg, category) = match fanout {
                            Fanout::ExternalId { external_id } => {
                                ("l.external_id = $10", external_id.as_str(), None)
                            }
                            Fanout::ConnectCode { connect_code_id } => {
                                ("l.connect_code_id = $10", connect_code_id.as_str(), None)
                            }
                            Fanout::Category { key } => (
                                concat!(
                                    "EXISTS (SELECT 1 FROM categories c LEFT JOIN link_preferences p \
                                     ON p.link_id = l.id AND p.category_key = c.key \
                                     WHERE c.tenant_id = l.tenant_id AND c.key = $10 AND (c.mandatory = ",
                                    $true,
                                    " OR p.enabled = ",
                                    $true,
                                    " OR (p.enabled IS NULL AND c.default_enabled = ",
                                    $true,
                                    ")))"
                                ),
                                key.as_str(),
                                Some(key.as_str()),
                            ),
                        };
                        // One statement per fan-out: the rows never travel through memory. A
                        // chat already addressed by this request is skipped (no duplicates).
                        let sql = format!(
                            "INSERT INTO messages (id, request_id, tenant_id, bot_id, chat_id, link_id, \
                             broadcast_id, status, priority, send_at, next_attempt_at, created_at, \
                             updated_at, finished_at, local_at, local_zone, category) \
                             SELECT CAST($1 AS TEXT) || l.id, $2, l.tenant_id, l.bot_id, l.chat_id, l.id, \
                             $4, $5, $6, $7, $7, $8, $8, $9, $12, $13, $14 FROM links l \
                             WHERE l.tenant_id = $3 AND l.active = {t} AND ({filter}) \
                             AND ($11 IS NULL OR l.bot_id = $11) \
                             AND NOT EXISTS (SELECT 1 FROM messages x WHERE x.bot_id = l.bot_id \
                             AND x.chat_id = l.chat_id AND x.request_id = $2)",
                            t = $true
                        );
                        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                            .bind(prefix)
                            .bind(&a.request.id)
                            .bind(tenant)
                            .bind(broadcast_id)
                            .bind(status)
                            .bind(a.priority)
                            .bind(a.send_at)
                            .bind(now)
                            .bind(finished)
                            .bind(arg)
                            .bind(a.bot_id.as_deref())
                            .bind(local_at)
                            .bind(local_zone)
                            .bind(category)
                            .execute(&mut *tx)
                            .await?;
                        count += done.rows_affected() as i64;
                    }
                    if count == 0 {
                        // Every fan-out found nobody (their links ended since the service
                        // looked): nothing is kept, and the service answers 422.
                        sqlx::query("DELETE FROM message_requests WHERE id = $1")
                            .bind(&a.request.id)
                            .execute(&mut *tx)
                            .await?;
                        if let (true, Some(t)) = (opened_tenant_window, &a.throttle) {
                            sqlx::query(
                                "DELETE FROM throttle_windows WHERE tenant_id = $1 AND key = $2 AND until = $3",
                            )
                            .bind(tenant)
                            .bind(format!("tenant:{}", t.key))
                            .bind(t.until)
                            .execute(&mut *tx)
                            .await?;
                        }
                        answers[i] = Some(Accepted::Stored {
                            count: 0,
                            status: "queued".into(),
                            throttled: 0,
                            broadcast_id: None,
                        });
                        continue;
                    }
                    // A window per recipient chat: each message whose window is open now is
                    // throttled; the others open theirs (the INSERT's answer says which did,
                    // so two concurrent calls cannot both find a window closed).
                    let mut status = status.to_string();
                    let mut throttled = if status == "throttled" { count } else { 0 };
                    if let Some(Throttle { key, until, scope: ThrottleScope::Recipient }) = &a.throttle {
                        let prefix = format!("recipient:{key}:");
                        let opened: Vec<String> = sqlx::query_scalar(
                            "INSERT INTO throttle_windows (tenant_id, key, until) \
                             SELECT $1, $2 || bot_id || ':' || CAST(chat_id AS TEXT), $3 FROM messages \
                             WHERE request_id = $4 \
                             ON CONFLICT (tenant_id, key) DO UPDATE SET until = excluded.until \
                             WHERE throttle_windows.until <= $5 RETURNING key",
                        )
                        .bind(tenant)
                        .bind(&prefix)
                        .bind(until)
                        .bind(&a.request.id)
                        .bind(now)
                        .fetch_all(&mut *tx)
                        .await?;
                        if (opened.len() as i64) < count {
                            let sql = format!(
                                "UPDATE messages SET status = 'throttled', finished_at = $2, updated_at = $2 \
                                 WHERE request_id = $1 AND ($3 || bot_id || ':' || CAST(chat_id AS TEXT)) \
                                 NOT {in_json}",
                                in_json = $in_json.replace("$X", "$4")
                            );
                            sqlx::query(sqlx::AssertSqlSafe(sql))
                                .bind(&a.request.id)
                                .bind(now)
                                .bind(&prefix)
                                .bind(serde_json::to_string(&opened).unwrap_or_else(|_| "[]".into()))
                                .execute(&mut *tx)
                                .await?;
                            throttled = count - opened.len() as i64;
                            if opened.is_empty() {
                                status = "throttled".into();
                            }
                        }
                    }
                    let mut broadcast = None;
                    if let Some((id, threshold)) = &a.broadcast {
                        if count > *threshold {
                            // The bot of the first message: known here for a plain list (finding
                            // it in the table by request would scan the outbox).
                            let listed_bot = if a.fanouts.is_empty() {
                                a.rows.iter().min_by(|x, y| x.id.cmp(&y.id)).map(|m| m.bot_id.as_str())
                            } else {
                                None
                            };
                            sqlx::query(
                                "INSERT INTO broadcasts (id, tenant_id, bot_id, request_id, status, total, \
                                 created_at, updated_at) VALUES ($1, $2, COALESCE($6, \
                                 (SELECT bot_id FROM messages WHERE request_id = $3 ORDER BY id LIMIT 1)), \
                                 $3, 'running', $4, $5, $5)",
                            )
                            .bind(id)
                            .bind(tenant)
                            .bind(&a.request.id)
                            .bind(count)
                            .bind(now)
                            .bind(listed_bot)
                            .execute(&mut *tx)
                            .await?;
                            broadcast = Some(id.clone());
                        } else {
                            sqlx::query("UPDATE messages SET broadcast_id = NULL WHERE request_id = $1")
                                .bind(&a.request.id)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                    for c in &a.callbacks {
                        sqlx::query(
                            "INSERT INTO callback_data (id, tenant_id, request_id, data, created_at, answer) \
                             VALUES ($1, $2, $3, $4, $5, $6)",
                        )
                        .bind(&c.id)
                        .bind(tenant)
                        .bind(&a.request.id)
                        .bind(&c.data)
                        .bind(now)
                        .bind(&c.answer)
                        .execute(&mut *tx)
                        .await?;
                    }
                    answers[i] = Some(Accepted::Stored {
                        count,
                        status,
                        throttled,
                        broadcast_id: broadcast,
                    });
                }
                tx.commit().await?;
                answers
                    .into_iter()
                    .map(|a| a.ok_or_else(|| StoreError::Corrupt("acceptance gave no answer".into())))
                    .collect()
            }

            async fn put_idempotent_answer(
                &self,
                tenant_id: &str,
                key: &str,
                body_hash: &str,
                response: &str,
                now: i64,
            ) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE idempotency_keys SET response = $4 WHERE tenant_id = $1 AND key = $2 \
                     AND body_hash = $3 AND created_at <= $5",
                )
                .bind(tenant_id)
                .bind(key)
                .bind(body_hash)
                .bind(response)
                .bind(now)
                .execute(&self.db)
                .await?;
                Ok(())
            }

            async fn request_messages(&self, request_id: &str) -> StoreResult<Vec<MessageRecord>> {
                let sql = format!(
                    "SELECT {MESSAGE_COLS} FROM messages WHERE request_id = $1 ORDER BY id LIMIT 1000"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(request_id)
                    .fetch_all(&self.db)
                    .await?
                    .iter()
                    .map(Self::message)
                    .collect()
            }

            async fn count_request_messages(&self, request_id: &str) -> StoreResult<i64> {
                let row = sqlx::query("SELECT COUNT(*) AS n FROM messages WHERE request_id = $1")
                    .bind(request_id)
                    .fetch_one(&self.db)
                    .await?;
                Ok(row.try_get("n")?)
            }

            async fn request_metadata(&self, request_id: &str) -> StoreResult<Option<String>> {
                let row = sqlx::query("SELECT metadata FROM message_requests WHERE id = $1")
                    .bind(request_id)
                    .fetch_optional(&self.db)
                    .await?;
                Ok(row
                    .map(|r| r.try_get::<Option<String>, _>("metadata"))
                    .transpose()?
                    .flatten())
            }

            async fn request_skipped(&self, request_id: &str) -> StoreResult<Option<String>> {
                let row = sqlx::query("SELECT skipped FROM message_requests WHERE id = $1")
                    .bind(request_id)
                    .fetch_optional(&self.db)
                    .await?;
                Ok(row
                    .map(|r| r.try_get::<Option<String>, _>("skipped"))
                    .transpose()?
                    .flatten())
            }

            async fn request_content(&self, request_id: &str) -> StoreResult<Option<String>> {
                let row = sqlx::query("SELECT content FROM message_requests WHERE id = $1")
                    .bind(request_id)
                    .fetch_optional(&self.db)
                    .await?;
                Ok(row.map(|r| r.try_get("content")).transpose()?)
            }

            async fn get_message(
                &self,
                tenant_id: &str,
                id: &str,
            ) -> StoreResult<Option<MessageRecord>> {
                let sql =
                    format!("SELECT {MESSAGE_COLS} FROM messages WHERE id = $1 AND tenant_id = $2");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(tenant_id)
                    .fetch_optional(&self.db)
                    .await?
                    .as_ref()
                    .map(Self::message)
                    .transpose()
            }

            async fn list_messages(
                &self,
                f: &MessageFilter,
                page: &Page,
            ) -> StoreResult<Listed<MessageRecord>> {
                let (conds, args) = filter_sql(f, true, 1);
                let (cmp, dir) = match f.order {
                    ListOrder::Desc => ("<", "DESC"),
                    ListOrder::Asc => (">", "ASC"),
                };
                let after = page
                    .after
                    .as_deref()
                    .map(|_| format!(" AND id {cmp} ${}", args.len() + 1))
                    .unwrap_or_default();
                let sql = format!(
                    "SELECT {MESSAGE_COLS} FROM messages WHERE {conds}{after} \
                     ORDER BY id {dir} LIMIT {limit}",
                    limit = i64::from(page.size()) + 1
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for a in args {
                    q = match a {
                        Arg::Text(v) => q.bind(v),
                        Arg::Int(v) => q.bind(v),
                    };
                }
                if let Some(after) = page.after.as_deref() {
                    q = q.bind(after);
                }
                let rows = q.fetch_all(&self.db).await?;
                let items = rows.iter().map(Self::message).collect::<StoreResult<Vec<_>>>()?;
                Ok(Listed::from_overfetch(items, page, |m| &m.id))
            }

            async fn requeue(
                &self,
                f: &MessageFilter,
                id: Option<&str>,
                from: &[&str],
                now: i64,
            ) -> StoreResult<u64> {
                let (conds, args) = filter_sql(f, true, 3 + usize::from(id.is_some()));
                let sql = format!(
                    "UPDATE messages SET status = 'queued', next_attempt_at = $1, \
                     claimed_until = NULL, finished_at = NULL, updated_at = $1 \
                     WHERE status {in_json}{one} AND {conds}",
                    in_json = $in_json.replace("$X", "$2"),
                    one = if id.is_some() { " AND id = $3" } else { "" }
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(ids_json(from));
                if let Some(id) = id {
                    q = q.bind(id);
                }
                for a in args {
                    q = match a {
                        Arg::Text(v) => q.bind(v),
                        Arg::Int(v) => q.bind(v),
                    };
                }
                let done = q.execute(&self.db).await?;
                Ok(done.rows_affected())
            }

            async fn acquire_sender_lease(
                &self,
                bot_id: &str,
                holder: &str,
                now: i64,
                until: i64,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "INSERT INTO sender_leases (bot_id, holder, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (bot_id) DO UPDATE SET holder = excluded.holder, \
                     expires_at = excluded.expires_at \
                     WHERE sender_leases.holder = excluded.holder OR sender_leases.expires_at < $4",
                )
                .bind(bot_id)
                .bind(holder)
                .bind(until)
                .bind(now)
                .execute(&self.db)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn release_sender_lease(&self, bot_id: &str, holder: &str) -> StoreResult<()> {
                sqlx::query("DELETE FROM sender_leases WHERE bot_id = $1 AND holder = $2")
                    .bind(bot_id)
                    .bind(holder)
                    .execute(&self.db)
                    .await?;
                Ok(())
            }

            async fn recover_interrupted(
                &self,
                bot_id: &str,
                now: i64,
            ) -> StoreResult<Vec<(String, String)>> {
                // A member call repeated is harmless (approving someone in, removing someone
                // gone, revoking a revoked link change nothing), so it goes again.
                sqlx::query(
                    "UPDATE messages SET status = 'queued', claimed_until = NULL, updated_at = $2 \
                     WHERE bot_id = $1 AND status = 'sending' AND kind = 'member'",
                )
                .bind(bot_id)
                .bind(now)
                .execute(&self.db)
                .await?;
                let rows = sqlx::query(
                    "UPDATE messages SET status = 'unknown', error_class = 'interrupted', \
                     last_error = 'the sender stopped during the attempt; Telegram may or may not have delivered it', \
                     claimed_until = NULL, updated_at = $2, finished_at = $2 \
                     WHERE bot_id = $1 AND status = 'sending' RETURNING id, tenant_id",
                )
                .bind(bot_id)
                .bind(now)
                .fetch_all(&self.db)
                .await?;
                rows.iter()
                    .map(|r| Ok((r.try_get("id")?, r.try_get("tenant_id")?)))
                    .collect()
            }

            async fn bots_with_queued(&self) -> StoreResult<Vec<String>> {
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT b.id FROM bots b WHERE b.enabled = {t} AND EXISTS \
                     (SELECT 1 FROM messages m WHERE m.bot_id = b.id AND m.status = 'queued')",
                    t = $true
                )))
                .fetch_all(&self.db)
                .await?;
                rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
            }

            async fn next_due(&self, bot_id: &str) -> StoreResult<Option<i64>> {
                let row = sqlx::query(
                    "SELECT MIN(CASE WHEN send_at > next_attempt_at THEN send_at ELSE next_attempt_at END) AS due \
                     FROM messages WHERE bot_id = $1 AND status = 'queued'",
                )
                .bind(bot_id)
                .fetch_one(&self.db)
                .await?;
                Ok(row.try_get("due")?)
            }

            async fn claim(
                &self,
                bot_id: &str,
                now: i64,
                limit: i64,
                pick: &mut (dyn for<'c> FnMut(&'c Claimed) -> bool + Send),
            ) -> StoreResult<Vec<Claimed>> {
                let mut tx = self.db.begin().await?;
                // Lane heads: no message of the same chat is in flight, and none accepted
                // earlier with the same or a higher priority is still waiting, except
                // those held aside (quiet hours, a local time) until later: they wait out
                // of the lane, so they never delay what may go now. The limit is
                // written into the text: SQLite plans `LIMIT ?` with the bound value, so it
                // would prepare the statement again on every run.
                let sql = format!(
                    "SELECT m.id, m.tenant_id, m.request_id, m.chat_id, m.link_id, m.broadcast_id, \
                     m.attempts, m.parts_sent, m.telegram_message_ids, m.errors, m.local_at, m.content, \
                     CASE WHEN m.link_id IS NULL THEN 'none' WHEN l.id IS NULL THEN 'gone' \
                     WHEN l.active = {t} THEN 'active' ELSE 'inactive' END AS link_state, c.state AS chat_state \
                     FROM messages m LEFT JOIN links l ON l.id = m.link_id \
                     LEFT JOIN chats c ON c.bot_id = m.bot_id AND c.chat_id = m.chat_id \
                     AND m.kind <> 'member' \
                     WHERE m.bot_id = $1 AND m.status = 'queued' AND m.send_at <= $2 \
                     AND m.next_attempt_at <= $2 \
                     AND NOT EXISTS (SELECT 1 FROM messages e WHERE e.bot_id = m.bot_id \
                     AND e.chat_id = m.chat_id AND (e.status = 'sending' OR (e.status = 'queued' \
                     AND e.id < m.id AND e.send_at <= $2 AND e.priority >= m.priority \
                     AND (e.held IS NULL OR e.next_attempt_at <= $2)))) \
                     ORDER BY m.priority DESC, m.id LIMIT {limit} {lock}",
                    limit = limit.max(1),
                    lock = $lock,
                    t = $true
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(bot_id)
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await?;
                let mut picked = Vec::new();
                let mut chats = std::collections::HashSet::new();
                // Lane heads whose link or chat ended after they were accepted (the two
                // crossed, or the chat's end was learnt without its queue): cancelled here,
                // in the claim's transaction, never sent. Two primary-key reads per
                // candidate, joined in the same statement.
                let mut doomed: Vec<(CancelReason, String)> = Vec::new();
                for r in &rows {
                    let chat_state: Option<String> = r.try_get("chat_state")?;
                    let chat_id: i64 = r.try_get("chat_id")?;
                    let by_chat = chat_state
                        .as_deref()
                        .and_then(|s| s.parse::<ChatState>().ok())
                        .and_then(|s| CancelReason::for_chat(s, chat_id));
                    let by_link = match r.try_get::<&str, _>("link_state")? {
                        "gone" | "inactive" => Some(CancelReason::LinkEnded),
                        _ => None,
                    };
                    if let Some(reason) = by_chat.or(by_link) {
                        doomed.push((reason, r.try_get("id")?));
                        continue;
                    }
                    let c = Claimed {
                        id: r.try_get("id")?,
                        tenant_id: r.try_get("tenant_id")?,
                        request_id: r.try_get("request_id")?,
                        chat_id: r.try_get("chat_id")?,
                        link_id: r.try_get("link_id")?,
                        broadcast_id: r.try_get("broadcast_id")?,
                        attempts: r.try_get::<i64, _>("attempts")? + 1,
                        parts_sent: r.try_get("parts_sent")?,
                        telegram_message_ids: r.try_get("telegram_message_ids")?,
                        errors: r.try_get("errors")?,
                        local_at: r.try_get("local_at")?,
                        content: r.try_get("content")?,
                    };
                    // One message per chat per batch keeps the chat's order.
                    if chats.contains(&c.chat_id) || !pick(&c) {
                        continue;
                    }
                    chats.insert(c.chat_id);
                    picked.push(c);
                }
                if !picked.is_empty() {
                    let ids: Vec<&str> = picked.iter().map(|c| c.id.as_str()).collect();
                    let sql = format!(
                        "UPDATE messages SET status = 'sending', attempts = attempts + 1, \
                         held = NULL, claimed_until = $2, updated_at = $2 \
                         WHERE status = 'queued' AND id {in_json}",
                        in_json = $in_json.replace("$X", "$1")
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(ids_json(&ids))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                if !doomed.is_empty() {
                    doomed.sort_by_key(|(reason, _)| reason.as_str());
                    for group in doomed.chunk_by(|a, b| a.0 == b.0) {
                        let ids: Vec<String> = group.iter().map(|(_, id)| id.clone()).collect();
                        // Their events wait for the dispatcher's next look (within a second).
                        <$store>::cancel_claimed(&mut *tx, &ids, group[0].0, now).await?;
                    }
                }
                tx.commit().await?;
                Ok(picked)
            }

            async fn record(&self, outcomes: &[Outcome], now: i64) -> StoreResult<()> {
                if outcomes.is_empty() {
                    return Ok(());
                }
                // One statement for the whole batch (outcomes as a JSON array): a statement
                // per message made recording the main cost of sending on SQLite, each one a
                // round trip to the store's thread.
                let rows: Vec<Value> = outcomes
                    .iter()
                    .map(|o| {
                        json!({
                            "id": o.id,
                            "status": o.status,
                            "next_attempt_at": o.next_attempt_at,
                            "parts_sent": o.parts_sent,
                            "telegram_message_ids": o.telegram_message_ids,
                            "error_class": o.error_class,
                            "error": o.error,
                            "errors": o.errors,
                            "retried": o.retried,
                            "rate_limited": o.rate_limited,
                            "chat_id": o.chat_id,
                        })
                    })
                    .collect();
                let sql = format!(
                    "UPDATE messages SET status = o.status, \
                     next_attempt_at = COALESCE(o.next_attempt_at, messages.next_attempt_at), \
                     parts_sent = o.parts_sent, telegram_message_ids = o.telegram_message_ids, \
                     error_class = COALESCE(o.error_class, messages.error_class), \
                     last_error = COALESCE(o.error, messages.last_error), errors = o.errors, \
                     retries = messages.retries + o.retried, \
                     rate_limited = messages.rate_limited + o.rate_limited, \
                     chat_id = COALESCE(o.chat_id, messages.chat_id), claimed_until = NULL, \
                     updated_at = $2, \
                     finished_at = CASE WHEN o.status = 'queued' THEN NULL ELSE $2 END \
                     FROM ({outcomes}) AS o WHERE messages.id = o.id AND messages.status = 'sending'",
                    outcomes = $outcomes
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(Value::Array(rows).to_string())
                    .bind(now)
                    .execute(&self.db)
                    .await?;
                Ok(())
            }

            async fn migrate_chat(
                &self,
                bot_id: &str,
                from: i64,
                to: i64,
                now: i64,
            ) -> StoreResult<()> {
                let mut tx = self.db.begin().await?;
                sqlx::query(
                    "INSERT INTO chats (bot_id, chat_id, type, title, username, state, updated_at) \
                     SELECT bot_id, $3, 'supergroup', title, username, 'active', $4 FROM chats \
                     WHERE bot_id = $1 AND chat_id = $2 ON CONFLICT (bot_id, chat_id) DO NOTHING",
                )
                .bind(bot_id)
                .bind(from)
                .bind(to)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE chats SET state = 'migrated', migrated_to = $3, updated_at = $4 \
                     WHERE bot_id = $1 AND chat_id = $2",
                )
                .bind(bot_id)
                .bind(from)
                .bind(to)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE messages SET chat_id = $3, updated_at = $4 WHERE bot_id = $1 \
                     AND chat_id = $2 AND status IN ('queued', 'paused', 'sending')",
                )
                .bind(bot_id)
                .bind(from)
                .bind(to)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                // The links follow in the same transaction: chat, queue and links move together.
                sqlx::query(
                    "UPDATE links SET chat_id = $3, updated_at = $4 WHERE bot_id = $1 AND chat_id = $2",
                )
                .bind(bot_id)
                .bind(from)
                .bind(to)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                for chat in [from, to] {
                    self.hot.chats.forget(&(bot_id.to_string(), chat));
                }
                Ok(())
            }

            async fn get_broadcast(
                &self,
                tenant_id: &str,
                id: &str,
            ) -> StoreResult<Option<BroadcastRecord>> {
                let row = sqlx::query(
                    "SELECT id, tenant_id, bot_id, request_id, status, total, created_at, updated_at \
                     FROM broadcasts WHERE id = $1 AND tenant_id = $2",
                )
                .bind(id)
                .bind(tenant_id)
                .fetch_optional(&self.db)
                .await?;
                let Some(r) = row else { return Ok(None) };
                let counts = self
                    .counts_of(
                        "SELECT status, COUNT(*) AS n FROM messages WHERE broadcast_id = $1 GROUP BY status",
                        id,
                    )
                    .await?;
                Ok(Some(BroadcastRecord {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    bot_id: r.try_get("bot_id")?,
                    request_id: r.try_get("request_id")?,
                    status: r.try_get("status")?,
                    total: r.try_get("total")?,
                    counts,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                }))
            }

            async fn list_broadcasts(
                &self,
                tenant_id: &str,
                page: &Page,
            ) -> StoreResult<Listed<BroadcastRecord>> {
                let rows = sqlx::query(
                    "SELECT id, tenant_id, bot_id, request_id, status, total, created_at, updated_at \
                     FROM broadcasts WHERE tenant_id = $1 AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3",
                )
                .bind(tenant_id)
                .bind(page.after.as_deref())
                .bind(i64::from(page.size()) + 1)
                .fetch_all(&self.db)
                .await?;
                let items = rows
                    .iter()
                    .map(|r| {
                        Ok(BroadcastRecord {
                            id: r.try_get("id")?,
                            tenant_id: r.try_get("tenant_id")?,
                            bot_id: r.try_get("bot_id")?,
                            request_id: r.try_get("request_id")?,
                            status: r.try_get("status")?,
                            total: r.try_get("total")?,
                            counts: vec![],
                            created_at: r.try_get("created_at")?,
                            updated_at: r.try_get("updated_at")?,
                        })
                    })
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(Listed::from_overfetch(items, page, |b| &b.id))
            }

            async fn set_broadcast_status(
                &self,
                id: &str,
                status: &str,
                now: i64,
            ) -> StoreResult<bool> {
                let (from_b, from_m, to_m) = match status {
                    "paused" => ("running", "queued", "paused"),
                    "running" => ("paused", "paused", "queued"),
                    "cancelled" => ("any", "any", "cancelled"),
                    other => {
                        return Err(StoreError::Corrupt(format!("broadcast status {other:?}")));
                    }
                };
                let mut tx = self.db.begin().await?;
                let done = sqlx::query(
                    "UPDATE broadcasts SET status = $2, updated_at = $3 WHERE id = $1 \
                     AND status <> 'cancelled' AND ($4 = 'any' OR status = $4)",
                )
                .bind(id)
                .bind(status)
                .bind(now)
                .bind(from_b)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                sqlx::query(
                    "UPDATE messages SET status = $2, updated_at = $3, \
                     finished_at = CASE WHEN $2 = 'cancelled' THEN $3 ELSE NULL END \
                     WHERE broadcast_id = $1 AND (status = $4 OR ($4 = 'any' AND status IN ('queued', 'paused')))",
                )
                .bind(id)
                .bind(to_m)
                .bind(now)
                .bind(from_m)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn delivery_stats(
                &self,
                f: &MessageFilter,
                every_tenant: bool,
            ) -> StoreResult<Vec<BotStats>> {
                let (conds, args) = filter_sql(f, !every_tenant, 1);
                let sql = format!(
                    "SELECT bot_id, status, COUNT(*) AS n, CAST(SUM(rate_limited) AS BIGINT) AS rl, \
                     CAST(SUM(retries) AS BIGINT) AS rt FROM messages WHERE {conds} \
                     GROUP BY bot_id, status ORDER BY bot_id, status"
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for a in args {
                    q = match a {
                        Arg::Text(v) => q.bind(v),
                        Arg::Int(v) => q.bind(v),
                    };
                }
                let rows = q.fetch_all(&self.db).await?;
                let mut out: Vec<BotStats> = Vec::new();
                for r in &rows {
                    let bot: String = r.try_get("bot_id")?;
                    if out.last().is_none_or(|s| s.bot_id != bot) {
                        out.push(BotStats {
                            bot_id: bot,
                            ..BotStats::default()
                        });
                    }
                    let s = out.last_mut().expect("pushed above");
                    s.counts.push((r.try_get("status")?, r.try_get("n")?));
                    s.rate_limited += r.try_get::<Option<i64>, _>("rl")?.unwrap_or(0);
                    s.retries += r.try_get::<Option<i64>, _>("rt")?.unwrap_or(0);
                }
                Ok(out)
            }

            async fn get_callback(&self, id: &str) -> StoreResult<Option<CallbackRecord>> {
                let row = sqlx::query(
                    "SELECT c.tenant_id, c.data, c.answer, r.metadata FROM callback_data c \
                     LEFT JOIN message_requests r ON r.id = c.request_id WHERE c.id = $1",
                )
                .bind(id)
                .fetch_optional(&self.db)
                .await?;
                row.map(|r| {
                    Ok(CallbackRecord {
                        tenant_id: r.try_get("tenant_id")?,
                        data: r.try_get("data")?,
                        answer: r.try_get("answer")?,
                        metadata: r.try_get("metadata")?,
                    })
                })
                .transpose()
            }

            async fn get_bot_limits(&self, bot_id: &str) -> StoreResult<BotLimitsRecord> {
                let row = sqlx::query(
                    "SELECT per_bot_per_second, per_chat_per_second, per_group_per_minute \
                     FROM bot_limits WHERE bot_id = $1",
                )
                .bind(bot_id)
                .fetch_optional(&self.db)
                .await?;
                Ok(match row {
                    Some(r) => BotLimitsRecord {
                        per_bot_per_second: r.try_get("per_bot_per_second")?,
                        per_chat_per_second: r.try_get("per_chat_per_second")?,
                        per_group_per_minute: r.try_get("per_group_per_minute")?,
                    },
                    None => BotLimitsRecord::default(),
                })
            }

            async fn set_bot_limits(
                &self,
                bot_id: &str,
                l: &BotLimitsRecord,
                now: i64,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO bot_limits (bot_id, per_bot_per_second, per_chat_per_second, \
                     per_group_per_minute, updated_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (bot_id) DO UPDATE SET per_bot_per_second = excluded.per_bot_per_second, \
                     per_chat_per_second = excluded.per_chat_per_second, \
                     per_group_per_minute = excluded.per_group_per_minute, updated_at = excluded.updated_at",
                )
                .bind(bot_id)
                .bind(l.per_bot_per_second)
                .bind(l.per_chat_per_second)
                .bind(l.per_group_per_minute)
                .bind(now)
                .execute(&self.db)
                .await?;
                Ok(())
            }
        }
    };
}

// Membership in a JSON array of ids, `$X` being its parameter; the `FOR UPDATE` of claims;
// true; a JSON array of outcomes (`$1`) as rows; a JSON array of `[id, bot_id, chat_id,
// link_id]` (`$9`) as rows.
outbox_store!(
    SqliteStore,
    SqliteRow,
    "IN (SELECT value FROM json_each($X))",
    "",
    "1",
    "SELECT value ->> 'id' AS id, value ->> 'status' AS status, \
     value ->> 'next_attempt_at' AS next_attempt_at, value ->> 'parts_sent' AS parts_sent, \
     value ->> 'telegram_message_ids' AS telegram_message_ids, \
     value ->> 'error_class' AS error_class, value ->> 'error' AS error, \
     value ->> 'errors' AS errors, value ->> 'retried' AS retried, \
     value ->> 'rate_limited' AS rate_limited, value ->> 'chat_id' AS chat_id FROM jsonb_each($1)",
    "SELECT value ->> 0 AS id, value ->> 1 AS bot_id, value ->> 2 AS chat_id, \
     value ->> 3 AS link_id, value ->> 4 AS category, value ->> 5 AS content FROM jsonb_each($9)"
);
outbox_store!(
    PgStore,
    PgRow,
    "IN (SELECT jsonb_array_elements_text(CAST($X AS TEXT)::jsonb))",
    "FOR UPDATE OF m SKIP LOCKED",
    "TRUE",
    "SELECT * FROM jsonb_to_recordset(CAST($1 AS TEXT)::jsonb) AS r (id TEXT, status TEXT, \
     next_attempt_at BIGINT, parts_sent BIGINT, telegram_message_ids TEXT, error_class TEXT, \
     error TEXT, errors TEXT, retried BIGINT, rate_limited BIGINT, chat_id BIGINT)",
    "SELECT v ->> 0 AS id, v ->> 1 AS bot_id, CAST(v ->> 2 AS BIGINT) AS chat_id, \
     v ->> 3 AS link_id, v ->> 4 AS category, v ->> 5 AS content \
     FROM jsonb_array_elements(CAST($9 AS TEXT)::jsonb) AS v"
);

#[cfg(test)]
mod tests {
    #[test]
    fn final_states_do_not_include_the_unfinished_ones() {
        for s in ["queued", "paused", "sending"] {
            assert!(!super::FINAL_STATES.contains(&s));
        }
    }
}

//! The inbound router's replies: the fast path into the outbox.
//!
//! A reply is always one plain message to one known chat of one known bot, so it needs none
//! of an API acceptance's planning (no fan-out, throttle, broadcast, link lookups). What it
//! does need is to be stored exactly once per reply of a stored update, and with the
//! update's outcome. Replies are written with the outcome of the update that made them, in
//! the transaction that records the outcomes of every update finishing at the same time
//! (`InboundStore::finish_update`), a statement per table for the whole batch. Once is kept
//! by the request's origin, `reply:{bot}:{update_id}:{received_at}:{n}`, unique among
//! replies (a partial unique index): a second run of the update offers the same origins and
//! stores nothing.

use sqlx::Row;

use super::StoreResult;
use super::outbox::{CALLBACK_ROWS, REQUEST_ROWS, insert_queued};
use super::sql::{JsonRows, PgStore, SqliteStore, json_array};

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
    /// Server-side button data: (id, data).
    pub callbacks: Vec<(String, String)>,
    /// Acceptance time (UTC ms): also when it may be sent.
    pub now: i64,
}

macro_rules! reply_store {
    ($store:ty, $row:ty) => {
        impl $store {
            /// Stores replies (their requests, messages and button data, a statement each
            /// for the whole batch) inside the caller's transaction. For each reply: `None`
            /// when stored now, or the message an earlier run of its update stored (its
            /// origin was taken).
            pub(super) async fn write_replies(
                conn: &mut <<$row as sqlx::Row>::Database as sqlx::Database>::Connection,
                batch: &[&NewReply],
            ) -> StoreResult<Vec<Option<String>>> {
                if batch.is_empty() {
                    return Ok(Vec::new());
                }
                // An origin twice in one batch: the first copy is stored, the others replay it.
                let mut seen = std::collections::HashSet::new();
                let firsts: Vec<&NewReply> = batch
                    .iter()
                    .copied()
                    .filter(|r| seen.insert(r.origin.as_str()))
                    .collect();
                // The conflict target names the partial index `message_requests_reply`.
                let sql = format!(
                    "{} WHERE true ON CONFLICT (origin) WHERE origin LIKE 'reply:%' DO NOTHING \
                     RETURNING id",
                    <$store>::json_insert("message_requests", REQUEST_ROWS)
                );
                let rows = json_array(
                    firsts
                        .iter()
                        .map(|r| (&r.request_id, &r.tenant_id, &r.origin, &r.content, r.now)),
                );
                let mut taken = std::collections::HashSet::new();
                for row in sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(rows)
                    .fetch_all(&mut *conn)
                    .await?
                {
                    taken.insert(row.try_get::<String, _>("id")?);
                }
                let new: Vec<&NewReply> = firsts
                    .into_iter()
                    .filter(|r| taken.contains(&r.request_id))
                    .collect();
                if !new.is_empty() {
                    // Due now, with no link, local time or priority.
                    sqlx::query(sqlx::AssertSqlSafe(insert_queued::<$store>()))
                        .bind(json_array(new.iter().map(|r| {
                            let none: Option<&str> = None;
                            (
                                &r.message_id,
                                &r.request_id,
                                &r.tenant_id,
                                &r.bot_id,
                                r.chat_id,
                                none,
                                0,
                                r.now,
                                r.now,
                                none,
                                none,
                            )
                        })))
                        .execute(&mut *conn)
                        .await?;
                    let callbacks: Vec<_> = new
                        .iter()
                        .flat_map(|r| {
                            r.callbacks.iter().map(move |(id, data)| {
                                (id, &r.tenant_id, &r.request_id, data, r.now)
                            })
                        })
                        .collect();
                    if !callbacks.is_empty() {
                        let sql = <$store>::json_insert("callback_data", CALLBACK_ROWS);
                        sqlx::query(sqlx::AssertSqlSafe(sql))
                            .bind(json_array(callbacks))
                            .execute(&mut *conn)
                            .await?;
                    }
                }
                let stored: std::collections::HashSet<&str> =
                    new.iter().map(|r| r.message_id.as_str()).collect();
                let mut answers = Vec::with_capacity(batch.len());
                for r in batch {
                    if stored.contains(r.message_id.as_str()) {
                        answers.push(None);
                        continue;
                    }
                    // A replay (rare: an update processed twice): the first run's message.
                    // The origin test repeats the index's, so the index serves the lookup.
                    let first: Option<String> = sqlx::query(
                        "SELECT m.id FROM message_requests q JOIN messages m ON m.request_id = q.id \
                         WHERE q.origin = $1 AND q.origin LIKE 'reply:%'",
                    )
                    .bind(&r.origin)
                    .fetch_optional(&mut *conn)
                    .await?
                    .map(|row| row.try_get("id"))
                    .transpose()?;
                    answers.push(Some(first.unwrap_or_else(|| "queued".to_string())));
                }
                Ok(answers)
            }
        }
    };
}

reply_store!(SqliteStore, sqlx::sqlite::SqliteRow);
reply_store!(PgStore, sqlx::postgres::PgRow);

//! The inbound router's replies: the fast path into the outbox.
//!
//! A reply is always one plain message to one known chat of one known bot, so it needs none
//! of an API acceptance's planning (no fan-out, throttle, broadcast, link lookups). What it
//! does need is to be stored exactly once per `reply:{bot}:{update}:{seq}` key and before the
//! update's outcome. Replies are written with the outcome of the update that made them, in
//! the transaction that records the outcomes of every update finishing at the same time
//! (`InboundStore::finish_update`), a statement per table for the whole batch. The key is
//! taken by the database (`ON CONFLICT` on the idempotency keys' primary key) in that same
//! transaction, with the answer for replays already in it, so a replayed reply reads one
//! row and stores nothing.

use sqlx::Row;

use super::StoreResult;
use super::outbox::{CALLBACK_ROWS, KEY_ROWS, REQUEST_ROWS, insert_queued};
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
    /// The idempotency key (`reply:{bot}:{update}:{seq}`), also the request's origin.
    pub key: String,
    /// The rendered content, JSON.
    pub content: String,
    /// Server-side button data: (id, data).
    pub callbacks: Vec<(String, String)>,
    /// The answer kept with the key for a replay (the acceptance's JSON).
    pub response: String,
    /// Acceptance time (UTC ms): also when it may be sent.
    pub now: i64,
}

/// The message an earlier run's reply went into, from the answer stored with its key (the
/// acceptance's JSON: `{"messages": [{"id": …}], …}`).
pub(super) fn answered_message_id(answer: &str) -> Option<String> {
    let answer: serde_json::Value = serde_json::from_str(answer).ok()?;
    answer["messages"][0]["id"].as_str().map(str::to_string)
}

macro_rules! reply_store {
    ($store:ty, $row:ty) => {
        impl $store {
            /// Stores replies (their keys, requests, messages and button data, a statement
            /// each for the whole batch) inside the caller's transaction. For each reply:
            /// `None` when stored now, or the answer stored with its key by an earlier run
            /// (a key older than a day is taken again, as for API keys).
            pub(super) async fn write_replies(
                conn: &mut <<$row as sqlx::Row>::Database as sqlx::Database>::Connection,
                batch: &[&NewReply],
            ) -> StoreResult<Vec<Option<String>>> {
                if batch.is_empty() {
                    return Ok(Vec::new());
                }
                // A key twice in one batch: the first copy is stored, the others replay it.
                let mut seen = std::collections::HashSet::new();
                let firsts: Vec<&NewReply> = batch
                    .iter()
                    .copied()
                    .filter(|r| seen.insert((r.tenant_id.as_str(), r.key.as_str())))
                    .collect();
                let cutoff = batch.iter().map(|r| r.now).min().unwrap_or(0) - 86_400_000;
                // A conflict is a replay, unless the key is older than a day.
                let sql = format!(
                    "{} WHERE true ON CONFLICT (tenant_id, key) DO UPDATE SET \
                     body_hash = excluded.body_hash, response = excluded.response, \
                     created_at = excluded.created_at \
                     WHERE idempotency_keys.created_at < $2 RETURNING tenant_id, key",
                    <$store>::json_insert("idempotency_keys", KEY_ROWS)
                );
                let rows = json_array(firsts.iter().map(|r| {
                    (
                        &r.tenant_id,
                        &r.key,
                        "reply",
                        &r.response,
                        r.now,
                        &r.request_id,
                    )
                }));
                let mut taken = std::collections::HashSet::new();
                for row in sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(rows)
                    .bind(cutoff)
                    .fetch_all(&mut *conn)
                    .await?
                {
                    let tenant: String = row.try_get("tenant_id")?;
                    let key: String = row.try_get("key")?;
                    taken.insert((tenant, key));
                }
                let new: Vec<&NewReply> = firsts
                    .into_iter()
                    .filter(|r| taken.contains(&(r.tenant_id.clone(), r.key.clone())))
                    .collect();
                if !new.is_empty() {
                    let sql = <$store>::json_insert("message_requests", REQUEST_ROWS);
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(json_array(new.iter().map(|r| {
                            (&r.request_id, &r.tenant_id, &r.key, &r.content, r.now)
                        })))
                        .execute(&mut *conn)
                        .await?;
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
                    // A replay (rare: an update processed twice): its first answer.
                    let response: Option<String> = sqlx::query(
                        "SELECT response FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
                    )
                    .bind(&r.tenant_id)
                    .bind(&r.key)
                    .fetch_optional(&mut *conn)
                    .await?
                    .map(|row| row.try_get("response"))
                    .transpose()?;
                    answers.push(Some(response.unwrap_or_default()));
                }
                Ok(answers)
            }
        }
    };
}

reply_store!(SqliteStore, sqlx::sqlite::SqliteRow);
reply_store!(PgStore, sqlx::postgres::PgRow);

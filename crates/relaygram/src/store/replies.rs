//! The inbound router's replies: the fast path into the outbox.
//!
//! A reply is always one plain message to one known chat of one known bot, so it needs none
//! of an API acceptance's planning (no fan-out, throttle, broadcast, link lookups). What it
//! does need is to be stored exactly once per reply of a stored update, and with the
//! update's outcome. Replies are written with the outcome of the update that made them, in
//! the transaction that records the outcomes of every update finishing at the same time
//! (`InboundStore::finish_update`), a statement per table for the whole batch, sent with the
//! round's other statements in one script (see `script`). Once is kept
//! by the request's origin, `reply:{bot}:{update_id}:{received_at}:{n}`, unique among
//! replies (a partial unique index): a second run of the update offers the same origins and
//! stores nothing.

use sqlx::Row;

use super::StoreResult;
use super::outbox::{CALLBACK_ROWS, REQUEST_ROWS, insert_queued};
pub use super::records::NewReply;
use super::script::{Param, Script};
use super::sql::{JsonRows, PgStore, SqliteStore, json_array};

macro_rules! reply_store {
    ($store:ty, $row:ty) => {
        impl $store {
            /// Stores replies (their requests, messages and button data, a statement each
            /// for the whole batch) inside the caller's transaction. For each reply: `None`
            /// when stored now, or the message an earlier run of its update stored (its
            /// origin was taken).
            /// Adds the statements storing `batch` to `script`: requests (answering the
            /// ids stored), then their messages and buttons, for the requests stored only,
            /// so none of them waits on an answer. Returns the requests' place.
            pub(super) fn reply_statements(
                script: &mut Script,
                batch: &[&NewReply],
            ) -> Option<usize> {
                if batch.is_empty() {
                    return None;
                }
                // An origin twice in one batch: the first copy is stored, the others replay it.
                let mut seen = std::collections::HashSet::new();
                let firsts: Vec<&NewReply> = batch
                    .iter()
                    .copied()
                    .filter(|r| seen.insert(r.origin.as_str()))
                    .collect();
                let none: Option<&str> = None;
                // The conflict target names the partial index `message_requests_reply`.
                let requests = script.push(
                    format!(
                        "{} WHERE true ON CONFLICT (origin) WHERE origin LIKE 'reply:%' DO NOTHING \
                         RETURNING id",
                        <$store>::json_insert("message_requests", REQUEST_ROWS)
                    ),
                    vec![Param::Text(json_array(firsts.iter().map(|r| {
                        (
                            &r.request_id,
                            &r.tenant_id,
                            &r.origin,
                            &r.content,
                            r.now,
                            none,
                            none,
                        )
                    })))],
                );
                // A request id is new, so a request by that id was stored just now.
                const STORED: &str =
                    " WHERE EXISTS (SELECT 1 FROM message_requests q WHERE q.id = r.request_id)";
                // Due now, with no link, local time or priority.
                script.push(
                    format!("{}{STORED}", insert_queued::<$store>()),
                    vec![Param::Text(json_array(firsts.iter().map(|r| {
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
                            none,
                            none,
                        )
                    })))],
                );
                let callbacks: Vec<_> = firsts
                    .iter()
                    .flat_map(|r| {
                        r.callbacks.iter().map(move |c| {
                            (
                                &c.id,
                                &r.tenant_id,
                                &r.request_id,
                                &c.data,
                                r.now,
                                &c.answer,
                            )
                        })
                    })
                    .collect();
                if !callbacks.is_empty() {
                    script.push(
                        format!(
                            "{}{STORED}",
                            <$store>::json_insert("callback_data", CALLBACK_ROWS)
                        ),
                        vec![Param::Text(json_array(callbacks))],
                    );
                }
                Some(requests)
            }

            /// The ids of the requests a [`Self::reply_statements`] stored (its answer).
            pub(super) fn stored_requests(
                rows: &[$row],
            ) -> StoreResult<std::collections::HashSet<String>> {
                Ok(rows
                    .iter()
                    .map(|row| row.try_get::<String, _>("id"))
                    .collect::<Result<_, _>>()?)
            }
        }
    };
}

reply_store!(SqliteStore, sqlx::sqlite::SqliteRow);
reply_store!(PgStore, sqlx::postgres::PgRow);

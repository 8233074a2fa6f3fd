//! Storage for inbound updates (stored once per bot and `update_id`, then processed in order
//! per chat) and for the chats they reveal.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use super::batch::GroupCommit;
use super::records::{Answer, Op, wrong_answer};
pub use super::records::{
    ChatRecord, ChatState, FinishReport, ProcessedUpdate, UpdateOutcome, UpdateRecord, UpdateStatus,
};
use super::script::{Param, RunScript, Script};
use super::sql::{ChatCache, Col, Engine, JsonRows, PgStore, SqliteStore, json_array};
use super::update_queue::UpdateQueue;
use super::{Listed, NewEvent, NewReply, Page, StoreError, StoreResult};

/// Which updates to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateFilter {
    /// Only bots of this tenant.
    pub tenant_id: Option<String>,
    /// Only this bot.
    pub bot_id: Option<String>,
    /// Only this chat.
    pub chat_id: Option<i64>,
    /// Only this status.
    pub status: Option<UpdateStatus>,
    /// Only this type.
    pub kind: Option<String>,
}

/// Inbound updates and the chats they reveal.
#[async_trait]
pub trait InboundStore: Send + Sync {
    /// Stores a pending update; `false` when `(bot_id, update_id)` is already stored (a replay).
    /// Concurrent calls are written together in one statement (group commit); each returns
    /// once its update is committed, so a caller may acknowledge it.
    async fn insert_update(&self, update: UpdateRecord) -> StoreResult<bool>;
    /// Takes the oldest pending update that may be processed now (the oldest open one of its
    /// chat, with no other of that chat in hand) and marks it `processing` until `lease_until`.
    async fn claim_update(&self, lease_until: i64) -> StoreResult<Option<UpdateRecord>>;
    /// Takes up to `limit` updates the way [`InboundStore::claim_update`] takes one, in one
    /// statement: each is the oldest open update of its chat, so they are of distinct chats
    /// (updates without a chat are independent). Oldest first.
    async fn claim_updates(&self, lease_until: i64, limit: u32) -> StoreResult<Vec<UpdateRecord>>;
    /// Makes this process one that processes the stored updates (call it before the first
    /// claim, to fail early). PostgreSQL: any number of servers may, each claiming with a
    /// statement. SQLite: only one, which then keeps the updates waiting in memory and
    /// claims without a statement (updates in hand stay `pending` in the store); a lock
    /// file next to the database keeps a second away, and this fails when another holds it.
    async fn own_updates(&self) -> StoreResult<()>;
    /// Puts updates whose processor's lease ended before `now` (it crashed) back to pending;
    /// returns how many.
    async fn reclaim_updates(&self, now: i64) -> StoreResult<u64>;
    /// Records how processing ended, with what processing wrote (chats, events, replies),
    /// in one transaction: an update's effects are stored exactly when its outcome is.
    /// Concurrent calls are written together (group commit); each returns once committed.
    async fn finish_update(&self, processed: ProcessedUpdate) -> StoreResult<FinishReport>;
    /// One update.
    async fn get_update(&self, bot_id: &str, update_id: i64) -> StoreResult<Option<UpdateRecord>>;
    /// Updates, newest first, after the cursor; at most `limit` (clamped like pages).
    async fn list_updates(
        &self,
        filter: &UpdateFilter,
        after: Option<&UpdateCursor>,
        limit: u32,
    ) -> StoreResult<(Vec<UpdateRecord>, Option<UpdateCursor>)>;
    /// How many updates are pending or in hand.
    async fn count_open_updates(&self) -> StoreResult<i64>;
    /// Forgets processed updates received before `before` (UTC ms); returns how many.
    async fn prune_updates(&self, before: i64) -> StoreResult<u64>;
    /// Stores or replaces what is known of a chat.
    async fn upsert_chat(&self, chat: &ChatRecord) -> StoreResult<()>;
    /// One chat of a bot.
    async fn get_chat(&self, bot_id: &str, chat_id: i64) -> StoreResult<Option<ChatRecord>>;
    /// Takes or renews the right to poll `bot_id` until `until` (UTC ms) for `holder`;
    /// `false` when another holder's lease is still running at `now`.
    async fn lease_polling(
        &self,
        bot_id: &str,
        holder: &str,
        now: i64,
        until: i64,
    ) -> StoreResult<bool>;
    /// Gives up `holder`'s polling lease on `bot_id` (another instance may take it at once).
    async fn release_polling(&self, bot_id: &str, holder: &str) -> StoreResult<()>;
    /// The outbox message whose delivery made Telegram message `telegram_message_id` in a
    /// chat (the ledger of Telegram message ids), so a user's reply can name what it answers.
    async fn find_sent_message(
        &self,
        bot_id: &str,
        chat_id: i64,
        telegram_message_id: i64,
    ) -> StoreResult<Option<SentMessage>>;
}

/// A message relaygram sent, found by one of its Telegram message ids.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    /// relaygram's id (`msg_…`).
    pub message_id: String,
    /// Its request.
    pub request_id: String,
    /// The app's metadata of its send (a JSON object), if any.
    pub metadata: Option<String>,
}

const UPDATE_COLS: &str = "u.bot_id, u.update_id, u.kind, u.chat_id, u.user_id, u.body, \
     u.status, u.outcome, u.error, u.received_at, u.processed_at, u.handling_ms";
const CHAT_COLS: &str = "bot_id, chat_id, type, title, username, state, migrated_to, updated_at";

/// The oldest pending update whose chat has no update in hand and no older pending one.
/// Shared by both engines; PostgreSQL adds `FOR UPDATE SKIP LOCKED` so concurrent instances
/// never take the same row, and the "older pending" test keeps a chat's second update
/// waiting while another instance is claiming its first. Both indexes on `updates` serve it.
const CLAIMABLE: &str = "SELECT u.bot_id, u.update_id FROM updates u \
     WHERE u.status = 'pending' \
     AND NOT EXISTS (SELECT 1 FROM updates p WHERE p.bot_id = u.bot_id AND p.chat_id = u.chat_id \
         AND p.status = 'processing') \
     AND NOT EXISTS (SELECT 1 FROM updates o WHERE o.bot_id = u.bot_id AND o.chat_id = u.chat_id \
         AND o.status = 'pending' \
         AND (o.received_at < u.received_at OR (o.received_at = u.received_at AND o.update_id < u.update_id))) \
     ORDER BY u.received_at, u.update_id LIMIT ";

/// Items per group-commit batch (its rows travel as one JSON parameter per statement).
const MAX_BATCH: usize = 256;

macro_rules! inbound_store {
    ($store:ty, $row:ty, $lock:literal, $writers:literal) => {
        impl $store {
            /// Adds the statement storing `batch` (new updates, each answered if it was
            /// new) to `script`; returns its place and which updates it offers (the first
            /// copy of each).
            fn insert_statement(
                script: &mut Script,
                batch: &[&UpdateRecord],
            ) -> (Option<usize>, Vec<bool>) {
                // A replay inside the batch is a replay: only the first copy is inserted.
                let mut seen = HashSet::new();
                let firsts: Vec<bool> = batch
                    .iter()
                    .map(|u| seen.insert((u.bot_id.as_str(), u.update_id)))
                    .collect();
                if batch.is_empty() {
                    return (None, firsts);
                }
                let sql = format!(
                    "{} WHERE true ON CONFLICT (bot_id, update_id) DO NOTHING \
                     RETURNING bot_id, update_id",
                    <$store>::json_insert(
                        "updates",
                        &[
                            Col::Text("bot_id"),
                            Col::Int("update_id"),
                            Col::Text("kind"),
                            Col::Int("chat_id"),
                            Col::Int("user_id"),
                            Col::Text("body"),
                            Col::Text("status"),
                            Col::Int("received_at"),
                        ],
                    )
                );
                let rows = json_array(batch.iter().zip(&firsts).filter(|(_, f)| **f).map(
                    |(u, _)| {
                        (
                            &u.bot_id,
                            u.update_id,
                            &u.kind,
                            u.chat_id,
                            u.user_id,
                            &u.body,
                            UpdateStatus::Pending.as_str(),
                            u.received_at,
                        )
                    },
                ));
                (Some(script.push(sql, vec![Param::Text(rows)])), firsts)
            }

            /// For each update of an [`Self::insert_statement`], whether it was new.
            fn inserted(
                batch: &[&UpdateRecord],
                firsts: Vec<bool>,
                rows: &[$row],
            ) -> StoreResult<Vec<bool>> {
                let inserted = rows
                    .iter()
                    .map(|r| {
                        Ok((
                            r.try_get::<String, _>("bot_id")?,
                            r.try_get::<i64, _>("update_id")?,
                        ))
                    })
                    .collect::<StoreResult<HashSet<_>>>()?;
                Ok(batch
                    .iter()
                    .zip(firsts)
                    .map(|(u, first)| first && inserted.contains(&(u.bot_id.clone(), u.update_id)))
                    .collect())
            }

            /// Adds the statement recording the outcomes of `batch` to `script`.
            fn outcome_statement(script: &mut Script, batch: &[&ProcessedUpdate]) {
                if batch.is_empty() {
                    return;
                }
                let sql = format!(
                    "WITH o AS ({}) \
                     UPDATE updates SET status = o.status, outcome = o.outcome, error = o.error, \
                     processed_at = o.processed_at, handling_ms = o.handling_ms, claimed_until = NULL \
                     FROM o WHERE updates.bot_id = o.bot_id AND updates.update_id = o.update_id",
                    <$store>::json_rows(
                        "$1",
                        &[
                            Col::Text("bot_id"),
                            Col::Int("update_id"),
                            Col::Text("status"),
                            Col::Text("outcome"),
                            Col::Text("error"),
                            Col::Int("processed_at"),
                            Col::Int("handling_ms"),
                        ],
                    )
                );
                let rows = json_array(batch.iter().map(|p| {
                    (
                        &p.bot_id,
                        p.update_id,
                        p.outcome.status.as_str(),
                        &p.outcome.outcome,
                        p.outcome.error.as_deref(),
                        p.outcome.processed_at,
                        p.outcome.handling_ms,
                    )
                }));
                script.push(sql, vec![Param::Text(rows)]);
            }

            /// What recording each update of `batch` stored: its event deliveries (`events`:
            /// per event, its id and deliveries) and the replies stored now (the ids of the
            /// requests stored, `stored`; a reply an earlier run of the update stored is not
            /// stored again).
            fn finish_reports(
                batch: &[&ProcessedUpdate],
                events: Vec<(i64, usize)>,
                stored: &HashSet<String>,
            ) -> Vec<FinishReport> {
                let mut events = events.into_iter();
                batch
                    .iter()
                    .map(|p| FinishReport {
                        deliveries: events.by_ref().take(p.events.len()).map(|(_, n)| n).sum(),
                        new_replies: p
                            .replies
                            .iter()
                            .filter(|r| stored.contains(&r.request_id))
                            .count(),
                    })
                    .collect()
            }

            /// The oldest open updates, at most `room`, and whether that is all of them (the
            /// scan of a store whose updates wait in memory). Open includes `processing`,
            /// which a server of an earlier version may have left: nothing holds them now.
            async fn read_pending(&self, room: usize) -> StoreResult<(Vec<UpdateRecord>, bool)> {
                const PAGE: usize = 1000;
                // The status test is written as in SQLite's partial index `updates_open`.
                let sql = format!(
                    "SELECT {UPDATE_COLS} FROM updates u \
                     WHERE u.status IN ('pending', 'processing') \
                     AND (u.received_at, u.update_id, u.bot_id) > ($1, $2, $3) \
                     ORDER BY u.received_at, u.update_id, u.bot_id LIMIT {PAGE}"
                );
                let mut found: Vec<UpdateRecord> = Vec::new();
                let mut after = (i64::MIN, i64::MIN, String::new());
                loop {
                    let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                        .bind(after.0)
                        .bind(after.1)
                        .bind(after.2.as_str())
                        .fetch_all(&self.db)
                        .await?;
                    let last_page = rows.len() < PAGE;
                    for row in &rows {
                        if found.len() == room {
                            return Ok((found, false));
                        }
                        found.push(Self::update_row(row)?);
                    }
                    match found.last() {
                        Some(u) if !last_page => {
                            after = (u.received_at, u.update_id, u.bot_id.clone());
                        }
                        _ => return Ok((found, true)),
                    }
                }
            }

            /// Takes up to `limit` ready updates (see [`InboundStore::claim_updates`]).
            async fn claim_rows(
                conn: &mut <<$row as sqlx::Row>::Database as sqlx::Database>::Connection,
                lease_until: i64,
                limit: u32,
            ) -> StoreResult<Vec<UpdateRecord>> {
                // The limit is written into the text, not bound: SQLite plans `LIMIT ?`
                // with the bound value and so prepares the statement again on every run.
                // Processors ask for a few sizes only, so few texts are cached.
                let sql = format!(
                    "UPDATE updates AS u SET status = 'processing', claimed_until = $1 \
                     WHERE (u.bot_id, u.update_id) IN ({CLAIMABLE}{}{}) \
                     RETURNING {}",
                    limit.max(1),
                    $lock,
                    UPDATE_COLS.replace("u.", "")
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(lease_until)
                    .fetch_all(&mut *conn)
                    .await?;
                let mut claimed = rows
                    .iter()
                    .map(Self::update_row)
                    .collect::<StoreResult<Vec<_>>>()?;
                claimed.sort_by_key(|u| (u.received_at, u.update_id));
                Ok(claimed)
            }

            /// One round of the inbound queue, in one transaction: finished updates first
            /// (freeing their chats), then new updates, then chat reads. The hot path's
            /// writes share one connection on SQLite; a round costs one trip through the
            /// connection instead of one per kind, and a webhook's insert waits for at most the
            /// round ahead. (Claims stay apart: in the rounds, processors waited behind
            /// inserts and fell behind; see BENCHMARKS.md.)
            async fn round(
                db: <$row as Engine>::Db,
                updates: Option<Arc<UpdateQueue>>,
                chat_cache: Arc<ChatCache>,
                ops: Arc<Vec<Op>>,
            ) -> StoreResult<Vec<Answer>> {
                let finished: Vec<&ProcessedUpdate> = ops
                    .iter()
                    .filter_map(|op| match op {
                        Op::Finish(p) => Some(p),
                        _ => None,
                    })
                    .collect();
                let inserts: Vec<&UpdateRecord> = ops
                    .iter()
                    .filter_map(|op| match op {
                        Op::Insert(u) => Some(u),
                        _ => None,
                    })
                    .collect();
                let keys: Vec<&(String, i64)> = ops
                    .iter()
                    .filter_map(|op| match op {
                        Op::ReadChat(key) => Some(key),
                        _ => None,
                    })
                    .collect();
                // One script: finished updates' chats, replies and outcomes (freeing their
                // chats), new updates, chat reads; on SQLite with `BEGIN` (and `COMMIT` when
                // no events follow) in the same text.
                let mut script = Script::default();
                let chats_written: Vec<&ChatRecord> =
                    finished.iter().flat_map(|p| &p.chats).collect();
                Self::chats_statement(&mut script, &chats_written);
                let replies: Vec<&NewReply> = finished.iter().flat_map(|p| &p.replies).collect();
                let requests = Self::reply_statements(&mut script, &replies);
                Self::outcome_statement(&mut script, &finished);
                let (insert_at, firsts) = Self::insert_statement(&mut script, &inserts);
                let read_at = Self::read_statement(&mut script, &keys);
                let events: Vec<&NewEvent> = finished.iter().flat_map(|p| &p.events).collect();
                let (mut tx, mut answers) =
                    <$store as RunScript>::begin_script(&db, script, events.is_empty()).await?;
                // Events after it, in the same transaction: which endpoints get them is read,
                // then decided in Rust.
                let written = Self::write_events(&mut *tx, &events).await?;
                tx.commit().await?;
                let mut take =
                    |at: Option<usize>| at.map(|i| std::mem::take(&mut answers[i])).unwrap_or_default();
                let (stored, new_updates, chat_rows) = (take(requests), take(insert_at), take(read_at));
                let mut inserted = Self::inserted(&inserts, firsts, &new_updates)?.into_iter();
                let mut chats = Self::chat_answers(&keys, &chat_rows)?.into_iter();
                for c in &chats_written {
                    chat_cache.forget(&(c.bot_id.clone(), c.chat_id));
                }
                if let Some(queue) = &updates {
                    // Committed: finished updates free their chats, new ones may be taken.
                    queue.finished(finished.iter().map(|p| (p.bot_id.as_str(), p.update_id)));
                    queue.offer(
                        inserts
                            .iter()
                            .zip(inserted.as_slice())
                            .filter(|(_, new)| **new)
                            .map(|(u, _)| (*u).clone()),
                    );
                }
                let stored = Self::stored_requests(&stored)?;
                let mut reports = Self::finish_reports(&finished, written, &stored).into_iter();
                let missing = || StoreError::Corrupt("an inbound round lost an answer".into());
                ops.iter()
                    .map(|op| {
                        Ok(match op {
                            Op::Finish(_) => Answer::Finished(reports.next().ok_or_else(missing)?),
                            Op::Insert(_) => Answer::Inserted(inserted.next().ok_or_else(missing)?),
                            Op::ReadChat(_) => Answer::Chat(chats.next().ok_or_else(missing)?),
                        })
                    })
                    .collect()
            }

            /// Submits one operation to the inbound queue (group commit of rounds).
            async fn submit(&self, op: Op) -> StoreResult<Answer> {
                let queue = self.hot.inbound.get_or_init(|| {
                    let (a, b) = (self.db.clone(), self.db.clone());
                    let (qa, qb) = (self.hot.updates.clone(), self.hot.updates.clone());
                    let (ca, cb) = (self.hot.chats.clone(), self.hot.chats.clone());
                    GroupCommit::new(
                        MAX_BATCH,
                        $writers,
                        move |ops| Self::round(a.clone(), qa.clone(), ca.clone(), ops),
                        move |op| {
                            let (db, updates, chats) = (b.clone(), qb.clone(), cb.clone());
                            async move {
                                let ops = Arc::new(vec![op]);
                                Ok(Self::round(db, updates, chats, ops).await?.remove(0))
                            }
                        },
                    )
                });
                queue.submit(op).await
            }

            /// Adds the statement storing many chats to `script` (the last write of a chat
            /// wins, as it would one after the other).
            fn chats_statement(script: &mut Script, batch: &[&ChatRecord]) {
                if batch.is_empty() {
                    return;
                }
                let mut last = HashMap::new();
                for (i, c) in batch.iter().enumerate() {
                    last.insert((c.bot_id.as_str(), c.chat_id), i);
                }
                // In key order, so two PostgreSQL writers upserting the same chats lock
                // their rows in the same order (in any other, they could deadlock).
                let mut rows: Vec<&&ChatRecord> = batch
                    .iter()
                    .enumerate()
                    .filter(|(i, c)| last.get(&(c.bot_id.as_str(), c.chat_id)) == Some(i))
                    .map(|(_, c)| c)
                    .collect();
                rows.sort_by_key(|c| (c.bot_id.as_str(), c.chat_id));
                let rows = json_array(
                    rows.into_iter()
                        .map(|c| {
                            (
                                &c.bot_id,
                                c.chat_id,
                                &c.kind,
                                &c.title,
                                &c.username,
                                c.state.as_str(),
                                c.migrated_to,
                                c.updated_at,
                            )
                        }),
                );
                let sql = format!(
                    "{} WHERE true ON CONFLICT (bot_id, chat_id) DO UPDATE SET type = excluded.type, \
                     title = excluded.title, username = excluded.username, state = excluded.state, \
                     migrated_to = excluded.migrated_to, updated_at = excluded.updated_at",
                    <$store>::json_insert(
                        "chats",
                        &[
                            Col::Text("bot_id"),
                            Col::Int("chat_id"),
                            Col::Text("type"),
                            Col::Text("title"),
                            Col::Text("username"),
                            Col::Text("state"),
                            Col::Int("migrated_to"),
                            Col::Int("updated_at"),
                        ],
                    )
                );
                script.push(sql, vec![Param::Text(rows)]);
            }

            /// Stores many chats in one transaction (group commit).
            async fn upsert_chats(
                db: <$row as Engine>::Db,
                cache: Arc<ChatCache>,
                batch: Arc<Vec<ChatRecord>>,
            ) -> StoreResult<Vec<()>> {
                let mut conn = db.acquire().await?;
                let all: Vec<&ChatRecord> = batch.iter().collect();
                let mut script = Script::default();
                Self::chats_statement(&mut script, &all);
                <$store as RunScript>::run_script(&mut *conn, script).await?;
                for c in batch.iter() {
                    cache.forget(&(c.bot_id.clone(), c.chat_id));
                }
                Ok(vec![(); batch.len()])
            }

            /// Adds the statement reading many chats to `script`; returns its place.
            fn read_statement(script: &mut Script, keys: &[&(String, i64)]) -> Option<usize> {
                if keys.is_empty() {
                    return None;
                }
                let sql = format!(
                    "SELECT {CHAT_COLS} FROM chats WHERE (bot_id, chat_id) IN \
                     (SELECT b, c FROM ({}) AS k)",
                    <$store>::json_rows("$1", &[Col::Text("b"), Col::Int("c")])
                );
                Some(script.push(sql, vec![Param::Text(json_array(keys.iter()))]))
            }

            /// For each key of a [`Self::read_statement`], its chat if known.
            fn chat_answers(
                keys: &[&(String, i64)],
                rows: &[$row],
            ) -> StoreResult<Vec<Option<ChatRecord>>> {
                let found: HashMap<(String, i64), ChatRecord> = rows
                    .iter()
                    .map(|row| Self::chat_row(row).map(|c| ((c.bot_id.clone(), c.chat_id), c)))
                    .collect::<StoreResult<_>>()?;
                // The same chat may be asked for twice in one batch.
                Ok(keys.iter().map(|k| found.get(*k).cloned()).collect())
            }

            fn update_row(row: &$row) -> StoreResult<UpdateRecord> {
                Ok(UpdateRecord {
                    bot_id: row.try_get("bot_id")?,
                    update_id: row.try_get("update_id")?,
                    kind: row.try_get("kind")?,
                    chat_id: row.try_get("chat_id")?,
                    user_id: row.try_get("user_id")?,
                    body: row.try_get("body")?,
                    status: UpdateStatus::from_str(row.try_get::<&str, _>("status")?)?,
                    outcome: row.try_get("outcome")?,
                    error: row.try_get("error")?,
                    received_at: row.try_get("received_at")?,
                    processed_at: row.try_get("processed_at")?,
                    handling_ms: row.try_get("handling_ms")?,
                })
            }

            fn chat_row(row: &$row) -> StoreResult<ChatRecord> {
                Ok(ChatRecord {
                    bot_id: row.try_get("bot_id")?,
                    chat_id: row.try_get("chat_id")?,
                    kind: row.try_get("type")?,
                    title: row.try_get("title")?,
                    username: row.try_get("username")?,
                    state: ChatState::from_str(row.try_get::<&str, _>("state")?)?,
                    migrated_to: row.try_get("migrated_to")?,
                    updated_at: row.try_get("updated_at")?,
                })
            }
        }

        #[async_trait]
        impl InboundStore for $store {
            async fn insert_update(&self, u: UpdateRecord) -> StoreResult<bool> {
                match self.submit(Op::Insert(u)).await? {
                    Answer::Inserted(new) => Ok(new),
                    _ => Err(wrong_answer()),
                }
            }

            async fn claim_update(&self, lease_until: i64) -> StoreResult<Option<UpdateRecord>> {
                Ok(self.claim_updates(lease_until, 1).await?.into_iter().next())
            }

            async fn claim_updates(
                &self,
                lease_until: i64,
                limit: u32,
            ) -> StoreResult<Vec<UpdateRecord>> {
                if let Some(queue) = &self.hot.updates {
                    queue.own()?;
                    if let Some(scan) = queue.scan().await {
                        let (found, complete) = self.read_pending(scan.room()).await?;
                        if !found.is_empty() {
                            tracing::info!(updates = found.len(), complete, "taking up stored updates");
                        }
                        scan.done(found, complete);
                    }
                    return Ok(queue.take(lease_until, limit as usize));
                }
                let mut conn = self.db.acquire().await?;
                Self::claim_rows(&mut *conn, lease_until, limit).await
            }

            async fn own_updates(&self) -> StoreResult<()> {
                if let Some(queue) = &self.hot.updates {
                    queue.own()?;
                    // The owner checkpoints the database's log (SQLite).
                    self.start_background().await?;
                }
                Ok(())
            }

            async fn reclaim_updates(&self, now: i64) -> StoreResult<u64> {
                if let Some(queue) = &self.hot.updates {
                    return Ok(queue.reclaim(now));
                }
                let done = sqlx::query(
                    "UPDATE updates SET status = 'pending', claimed_until = NULL \
                     WHERE status = 'processing' AND claimed_until < $1",
                )
                .bind(now)
                .execute(&self.db)
                .await?;
                Ok(done.rows_affected())
            }

            async fn finish_update(&self, p: ProcessedUpdate) -> StoreResult<FinishReport> {
                match self.submit(Op::Finish(p)).await? {
                    Answer::Finished(report) => Ok(report),
                    _ => Err(wrong_answer()),
                }
            }

            async fn get_update(
                &self,
                bot_id: &str,
                update_id: i64,
            ) -> StoreResult<Option<UpdateRecord>> {
                let sql = format!(
                    "SELECT {UPDATE_COLS} FROM updates u WHERE u.bot_id = $1 AND u.update_id = $2"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(bot_id)
                    .bind(update_id)
                    .fetch_optional(&self.db)
                    .await?;
                row.as_ref().map(Self::update_row).transpose()
            }

            async fn list_updates(
                &self,
                f: &UpdateFilter,
                after: Option<&UpdateCursor>,
                limit: u32,
            ) -> StoreResult<(Vec<UpdateRecord>, Option<UpdateCursor>)> {
                let page = Page::first(limit);
                let (c_at, c_bot, c_id) = match after {
                    Some(c) => (Some(c.received_at), Some(c.bot_id.as_str()), Some(c.update_id)),
                    None => (None, None, None),
                };
                let sql = format!(
                    "SELECT {UPDATE_COLS} FROM updates u JOIN bots b ON b.id = u.bot_id \
                     WHERE ($1 IS NULL OR b.tenant_id = $1) AND ($2 IS NULL OR u.bot_id = $2) \
                     AND ($3 IS NULL OR u.chat_id = $3) AND ($4 IS NULL OR u.status = $4) \
                     AND ($5 IS NULL OR u.kind = $5) \
                     AND ($6 IS NULL OR u.received_at < $6 OR (u.received_at = $6 AND \
                          (u.bot_id < $7 OR (u.bot_id = $7 AND u.update_id < $8)))) \
                     ORDER BY u.received_at DESC, u.bot_id DESC, u.update_id DESC LIMIT $9"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(f.tenant_id.as_deref())
                    .bind(f.bot_id.as_deref())
                    .bind(f.chat_id)
                    .bind(f.status.map(UpdateStatus::as_str))
                    .bind(f.kind.as_deref())
                    .bind(c_at)
                    .bind(c_bot)
                    .bind(c_id)
                    .bind(i64::from(page.size()) + 1)
                    .fetch_all(&self.db)
                    .await?;
                let items = rows
                    .iter()
                    .map(Self::update_row)
                    .collect::<StoreResult<Vec<_>>>()?;
                let Listed { items, next_cursor } =
                    Listed::from_overfetch(items, &page, |u| u.body.as_str());
                let next = next_cursor.and(items.last().map(UpdateCursor::of));
                Ok((items, next))
            }

            async fn count_open_updates(&self) -> StoreResult<i64> {
                let row = sqlx::query(
                    "SELECT COUNT(*) AS n FROM updates WHERE status IN ('pending', 'processing')",
                )
                .fetch_one(&self.db)
                .await?;
                Ok(row.try_get("n")?)
            }

            async fn prune_updates(&self, before: i64) -> StoreResult<u64> {
                let done = sqlx::query(
                    "DELETE FROM updates WHERE received_at < $1 \
                     AND status NOT IN ('pending', 'processing')",
                )
                .bind(before)
                .execute(&self.db)
                .await?;
                Ok(done.rows_affected())
            }

            async fn upsert_chat(&self, c: &ChatRecord) -> StoreResult<()> {
                // First-seen chats come in bursts (a campaign brings many new users): their
                // writes go together, like the updates'.
                let queue = self.hot.chat_writes.get_or_init(|| {
                    let (a, b) = (self.db.clone(), self.db.clone());
                    let (ca, cb) = (self.hot.chats.clone(), self.hot.chats.clone());
                    GroupCommit::new(
                        MAX_BATCH,
                        $writers,
                        move |batch| Self::upsert_chats(a.clone(), ca.clone(), batch),
                        move |one| {
                            let (db, cache) = (b.clone(), cb.clone());
                            async move {
                                let batch = Arc::new(vec![one]);
                                Ok(Self::upsert_chats(db, cache, batch).await?.remove(0))
                            }
                        },
                    )
                });
                queue.submit(c.clone()).await
            }

            async fn get_chat(&self, bot_id: &str, chat_id: i64) -> StoreResult<Option<ChatRecord>> {
                // Read for nearly every update: kept in memory where this server is the
                // only one writing chats; otherwise the reads of concurrent processors go to
                // the database in the rounds that carry the writes.
                let key = (bot_id.to_string(), chat_id);
                let cache = self.hot.owned_chats();
                if let Some(known) = cache.and_then(|c| c.get(&key)) {
                    return Ok(known);
                }
                let ticket = cache.map(|c| c.ticket());
                match self.submit(Op::ReadChat(key.clone())).await? {
                    Answer::Chat(chat) => {
                        if let (Some(cache), Some(ticket)) = (cache, ticket) {
                            cache.put(ticket, key, chat.clone());
                        }
                        Ok(chat)
                    }
                    _ => Err(wrong_answer()),
                }
            }

            async fn lease_polling(
                &self,
                bot_id: &str,
                holder: &str,
                now: i64,
                until: i64,
            ) -> StoreResult<bool> {
                // One statement, so two instances racing for a free lease cannot both win.
                let done = sqlx::query(
                    "INSERT INTO poll_leases (bot_id, holder, lease_until) VALUES ($1, $2, $4) \
                     ON CONFLICT (bot_id) DO UPDATE SET holder = excluded.holder, \
                     lease_until = excluded.lease_until \
                     WHERE poll_leases.holder = excluded.holder OR poll_leases.lease_until < $3",
                )
                .bind(bot_id)
                .bind(holder)
                .bind(now)
                .bind(until)
                .execute(&self.db)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn release_polling(&self, bot_id: &str, holder: &str) -> StoreResult<()> {
                sqlx::query("DELETE FROM poll_leases WHERE bot_id = $1 AND holder = $2")
                    .bind(bot_id)
                    .bind(holder)
                    .execute(&self.db)
                    .await?;
                Ok(())
            }

            async fn find_sent_message(
                &self,
                bot_id: &str,
                chat_id: i64,
                telegram_message_id: i64,
            ) -> StoreResult<Option<SentMessage>> {
                // The chat's lane (an index), then the id as an element of the JSON array
                // the sender writes (`[41,42]`, no spaces), checked again after parsing.
                let id = telegram_message_id.to_string();
                let rows = sqlx::query(
                    "SELECT m.id, m.request_id, m.telegram_message_ids, r.metadata FROM messages m \
                     LEFT JOIN message_requests r ON r.id = m.request_id \
                     WHERE m.bot_id = $1 AND m.chat_id = $2 AND (m.telegram_message_ids = $3 \
                     OR m.telegram_message_ids LIKE $4 OR m.telegram_message_ids LIKE $5 \
                     OR m.telegram_message_ids LIKE $6) ORDER BY m.id DESC LIMIT 5",
                )
                .bind(bot_id)
                .bind(chat_id)
                .bind(format!("[{id}]"))
                .bind(format!("[{id},%"))
                .bind(format!("%,{id}]"))
                .bind(format!("%,{id},%"))
                .fetch_all(&self.db)
                .await?;
                for row in rows {
                    let ids: String = row.try_get("telegram_message_ids")?;
                    let ids: Vec<i64> = serde_json::from_str(&ids).unwrap_or_default();
                    if ids.contains(&telegram_message_id) {
                        return Ok(Some(SentMessage {
                            message_id: row.try_get("id")?,
                            request_id: row.try_get("request_id")?,
                            metadata: row.try_get("metadata")?,
                        }));
                    }
                }
                Ok(None)
            }
        }
    };
}

/// Where a page of updates ends: `received_at:bot_id:update_id` of its last item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateCursor {
    /// When the last item was received (UTC ms).
    pub received_at: i64,
    /// Its bot.
    pub bot_id: String,
    /// Its update id.
    pub update_id: i64,
}

impl UpdateCursor {
    fn of(u: &UpdateRecord) -> UpdateCursor {
        UpdateCursor {
            received_at: u.received_at,
            bot_id: u.bot_id.clone(),
            update_id: u.update_id,
        }
    }
}

impl fmt::Display for UpdateCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.received_at, self.bot_id, self.update_id)
    }
}

impl FromStr for UpdateCursor {
    type Err = ();
    fn from_str(c: &str) -> Result<Self, ()> {
        let mut parts = c.splitn(3, ':');
        let received_at = parts.next().and_then(|p| p.parse().ok()).ok_or(())?;
        let bot_id = parts.next().filter(|b| !b.is_empty()).ok_or(())?;
        let update_id = parts.next().and_then(|p| p.parse().ok()).ok_or(())?;
        Ok(UpdateCursor {
            received_at,
            bot_id: bot_id.to_string(),
            update_id,
        })
    }
}

// SQLite has one writer (and this store one connection): one batch at a time. PostgreSQL
// writes batches side by side.
inbound_store!(SqliteStore, SqliteRow, "", 1);
inbound_store!(PgStore, PgRow, " FOR UPDATE SKIP LOCKED", 2);

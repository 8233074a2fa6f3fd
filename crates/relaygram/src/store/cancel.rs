//! Consent stops the queue: when a link ends or a chat can no longer be written to, what was
//! waiting for it (queued, held for quiet hours or a local time, due later, paused with its
//! broadcast) ends `cancelled` with a reason, in the same transaction that ends the link or
//! marks the chat gone, and the app gets one `message.cancelled` event per request. Open
//! digests for that recipient end too. Nothing here calls Telegram.
//!
//! Messages already `sending` cannot be recalled: they are left to their outcome.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use super::inbound::ChatState;
use super::links::LinkRecord;
use super::sql::{PgStore, SqliteStore};
use super::{NewEvent, StoreResult};
use crate::ids::new_id;

/// Why messages were cancelled: the stable strings of `error_class` on a cancelled message
/// and of `reason` in `message.cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The user confirmed `/stop` in the chat.
    StoppedByUser,
    /// The app deleted the link (`DELETE /v1/links/{id}`).
    LinkDeleted,
    /// The user blocked the bot (or the account is deactivated).
    ChatBlocked,
    /// The bot was removed from (or left) the group or channel.
    BotRemoved,
    /// Telegram says the bot cannot reach the private chat (never started, not found).
    ChatUnreachable,
    /// The link the message was addressed through ended before it was sent (found by the
    /// sender: the link's end and the message's acceptance crossed).
    LinkEnded,
    /// The app deleted the message before it was sent (`DELETE /v1/messages/{id}`).
    DeletedByApp,
}

impl CancelReason {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::StoppedByUser => "stopped_by_user",
            CancelReason::LinkDeleted => "link_deleted",
            CancelReason::ChatBlocked => "chat_blocked",
            CancelReason::BotRemoved => "bot_removed",
            CancelReason::ChatUnreachable => "chat_unreachable",
            CancelReason::LinkEnded => "link_ended",
            CancelReason::DeletedByApp => "deleted_by_app",
        }
    }

    /// A sentence for `last_error` and a digest's `error`.
    pub fn describe(self) -> &'static str {
        match self {
            CancelReason::StoppedByUser => {
                "cancelled before sending: the user stopped notifications in this chat (/stop)"
            }
            CancelReason::LinkDeleted => "cancelled before sending: the app deleted the link",
            CancelReason::ChatBlocked => "cancelled before sending: the user blocked the bot",
            CancelReason::BotRemoved => {
                "cancelled before sending: the bot was removed from the chat"
            }
            CancelReason::ChatUnreachable => {
                "cancelled before sending: Telegram says the bot cannot reach this chat"
            }
            CancelReason::LinkEnded => {
                "cancelled before sending: the link it was addressed through has ended"
            }
            CancelReason::DeletedByApp => "cancelled before sending: the app deleted it",
        }
    }

    /// Why a chat in `state` receives nothing (`None` for a chat that can be written to).
    pub fn for_chat(state: ChatState, chat_id: i64) -> Option<CancelReason> {
        match state {
            ChatState::Active | ChatState::Migrated => None,
            ChatState::Blocked => Some(CancelReason::ChatBlocked),
            ChatState::Kicked => Some(CancelReason::BotRemoved),
            // Positive ids are users: a private chat Telegram will not deliver to.
            ChatState::Left if chat_id > 0 => Some(CancelReason::ChatUnreachable),
            ChatState::Left => Some(CancelReason::BotRemoved),
        }
    }
}

/// What a cancellation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cancelled {
    /// Messages cancelled.
    pub messages: usize,
    /// `message.cancelled` events stored (one per request).
    pub events: usize,
    /// Webhook deliveries those events created (wake the dispatcher when > 0).
    pub deliveries: usize,
    /// Open digests ended.
    pub digests: usize,
}

impl Cancelled {
    fn add(&mut self, other: Cancelled) {
        self.messages += other.messages;
        self.events += other.events;
        self.deliveries += other.deliveries;
        self.digests += other.digests;
    }
}

/// Links deleted, and what they cancelled.
#[derive(Debug, Clone, Default)]
pub struct LinksEnded {
    /// The links deleted, as they were.
    pub deleted: Vec<LinkRecord>,
    /// What was cancelled.
    pub cancelled: Cancelled,
}

/// A chat marked gone, and what that ended.
#[derive(Debug, Clone, Default)]
pub struct ChatEnded {
    /// The chat's links that became inactive (as they are now).
    pub deactivated: Vec<LinkRecord>,
    /// What was cancelled.
    pub cancelled: Cancelled,
}

/// Ending links and chats, with what was waiting for them.
#[async_trait]
pub trait ConsentStore: Send + Sync {
    /// Deletes links (and their preferences) and, in the same transaction, cancels the
    /// messages waiting to go through them; for a private chat left without an active
    /// link of the bot, also the app's messages to that chat by `chat_id` (the router's
    /// own replies stay). Open digests of those recipients end `failed`.
    async fn delete_links(
        &self,
        ids: &[String],
        reason: CancelReason,
        now: i64,
    ) -> StoreResult<LinksEnded>;
    /// The bot cannot write to the chat any more (`blocked`, `kicked`, `left`): in one
    /// transaction the chat gets `state` (stored when unknown), its links become inactive,
    /// and everything waiting for it is cancelled (replies too) with open digests ended.
    async fn chat_gone(
        &self,
        bot_id: &str,
        chat_id: i64,
        state: ChatState,
        now: i64,
    ) -> StoreResult<ChatEnded>;
    /// Of these (bot, chat) pairs, those whose chat is known and cannot be written to, with
    /// its state.
    async fn unavailable_chats(
        &self,
        pairs: &[(String, i64)],
    ) -> StoreResult<Vec<(String, i64, ChatState)>>;
}

/// A cancelled row.
struct CancelledRow {
    id: String,
    request_id: String,
    tenant_id: String,
    bot_id: String,
    chat_id: i64,
    broadcast_id: Option<String>,
}

/// One `message.cancelled` event per (tenant, request) of the cancelled rows.
fn cancel_events(rows: &[CancelledRow], reason: CancelReason, now: i64) -> Vec<NewEvent> {
    let mut by_request: BTreeMap<(&str, &str), Vec<&CancelledRow>> = BTreeMap::new();
    for r in rows {
        by_request
            .entry((r.tenant_id.as_str(), r.request_id.as_str()))
            .or_default()
            .push(r);
    }
    by_request
        .into_iter()
        .map(|((tenant, request), rows)| {
            let mut ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
            ids.sort_unstable();
            let mut chats: Vec<i64> = rows.iter().map(|r| r.chat_id).collect();
            chats.sort_unstable();
            chats.dedup();
            let data = json!({
                "request_id": request,
                "broadcast_id": rows[0].broadcast_id,
                "bot_id": rows[0].bot_id,
                "chat_ids": chats,
                "reason": reason.as_str(),
                "count": ids.len(),
                "message_ids": ids,
            });
            NewEvent {
                id: new_id("evt"),
                tenant_id: tenant.to_string(),
                event_type: "message.cancelled".into(),
                data: data.to_string(),
                created_at: now,
            }
        })
        .collect()
}

const CANCELLED_COLS: &str = "id, request_id, tenant_id, bot_id, chat_id, broadcast_id";

/// `SET` of a cancellation (`$R` the reason, `$D` its sentence, `$N` now).
const CANCEL_SET: &str = "status = 'cancelled', error_class = $R, last_error = $D, \
     claimed_until = NULL, updated_at = $N, finished_at = $N";

macro_rules! consent_store {
    ($store:ty, $row:ty, $in_json:literal, $true:literal, $false:literal, $link_of:literal, $chat_of:literal, $bot_of:literal) => {
        impl $store {
            fn cancelled_row(r: &$row) -> StoreResult<CancelledRow> {
                Ok(CancelledRow {
                    id: r.try_get("id")?,
                    request_id: r.try_get("request_id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    bot_id: r.try_get("bot_id")?,
                    chat_id: r.try_get("chat_id")?,
                    broadcast_id: r.try_get("broadcast_id")?,
                })
            }

            /// Cancels, inside the caller's transaction, the waiting messages of one bot's
            /// chat that `filter` (SQL over `messages`, parameters from `$4`) selects, and
            /// stores their events. `$1` bot, `$2` chat, `$3` the JSON array `extra` binds
            /// first.
            pub(super) async fn cancel_where(
                conn: &mut <<$row as sqlx::Row>::Database as sqlx::Database>::Connection,
                bot_id: &str,
                chat_id: i64,
                filter: &str,
                extra: Option<String>,
                reason: CancelReason,
                now: i64,
            ) -> StoreResult<Cancelled> {
                // The lane index (bot_id, chat_id, status) finds them.
                let sql = format!(
                    "UPDATE messages SET {set} WHERE bot_id = $1 AND chat_id = $2 \
                     AND status IN ('queued', 'paused') AND kind <> 'member' AND ({filter}) \
                     RETURNING {CANCELLED_COLS}",
                    set = CANCEL_SET.replace("$R", "$4").replace("$D", "$5").replace("$N", "$6"),
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(bot_id)
                    .bind(chat_id)
                    .bind(extra.unwrap_or_else(|| "[]".into()))
                    .bind(reason.as_str())
                    .bind(reason.describe())
                    .bind(now)
                    .fetch_all(&mut *conn)
                    .await?
                    .iter()
                    .map(Self::cancelled_row)
                    .collect::<StoreResult<Vec<_>>>()?;
                Self::cancelled_events(conn, &rows, reason, now).await
            }

            /// Stores the events of cancelled rows (one per request).
            async fn cancelled_events(
                conn: &mut <<$row as sqlx::Row>::Database as sqlx::Database>::Connection,
                rows: &[CancelledRow],
                reason: CancelReason,
                now: i64,
            ) -> StoreResult<Cancelled> {
                let events = cancel_events(rows, reason, now);
                let refs: Vec<&NewEvent> = events.iter().collect();
                let written = Self::write_events(&mut *conn, &refs).await?;
                Ok(Cancelled {
                    messages: rows.len(),
                    events: events.len(),
                    deliveries: written.iter().map(|(_, n)| n).sum(),
                    digests: 0,
                })
            }

            /// Cancels the queued messages `ids` (a claim's lane heads whose link or chat
            /// ended), with their events, inside the claim's transaction.
            pub(super) async fn cancel_claimed(
                conn: &mut <<$row as sqlx::Row>::Database as sqlx::Database>::Connection,
                ids: &[String],
                reason: CancelReason,
                now: i64,
            ) -> StoreResult<Cancelled> {
                if ids.is_empty() {
                    return Ok(Cancelled::default());
                }
                let sql = format!(
                    "UPDATE messages SET {set} WHERE status = 'queued' AND id {ids} \
                     RETURNING {CANCELLED_COLS}",
                    set = CANCEL_SET.replace("$R", "$2").replace("$D", "$3").replace("$N", "$4"),
                    ids = $in_json.replace("$X", "$1"),
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
                    .bind(reason.as_str())
                    .bind(reason.describe())
                    .bind(now)
                    .fetch_all(&mut *conn)
                    .await?
                    .iter()
                    .map(Self::cancelled_row)
                    .collect::<StoreResult<Vec<_>>>()?;
                Self::cancelled_events(conn, &rows, reason, now).await
            }

            /// Ends the open digests of a tenant addressed to one of `link_ids`, or (with
            /// `chat`) to that chat of the bot by `chat_id`.
            async fn end_digests(
                conn: &mut <<$row as sqlx::Row>::Database as sqlx::Database>::Connection,
                tenant_id: &str,
                link_ids: &[String],
                chat: Option<(&str, i64)>,
                reason: CancelReason,
                now: i64,
            ) -> StoreResult<usize> {
                let sql = format!(
                    "UPDATE digests SET status = 'failed', error = $5, closed_at = $6, updated_at = $6 \
                     WHERE tenant_id = $1 AND status = 'open' AND ({link} {links} \
                     OR ($3 IS NOT NULL AND {chat} = $4 AND ({bot} IS NULL OR {bot} = $3)))",
                    link = $link_of,
                    chat = $chat_of,
                    bot = $bot_of,
                    links = $in_json.replace("$X", "$2"),
                );
                let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(serde_json::to_string(link_ids).unwrap_or_else(|_| "[]".into()))
                    .bind(chat.map(|(bot, _)| bot))
                    .bind(chat.map(|(_, c)| c.to_string()))
                    .bind(format!("{}: {}", reason.as_str(), reason.describe()))
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected() as usize)
            }
        }

        #[async_trait]
        impl ConsentStore for $store {
            async fn delete_links(
                &self,
                ids: &[String],
                reason: CancelReason,
                now: i64,
            ) -> StoreResult<LinksEnded> {
                let mut out = LinksEnded::default();
                if ids.is_empty() {
                    return Ok(out);
                }
                let mut tx = self.db.begin().await?;
                for id in ids {
                    let sql = format!("DELETE FROM links WHERE id = $1 RETURNING {}", super::links::LINK_COLS);
                    sqlx::query("DELETE FROM link_preferences WHERE link_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    if let Some(r) = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?
                    {
                        out.deleted.push(Self::link_row(&r)?);
                    }
                }
                // Per chat: its links' messages; and for a private chat with no active link
                // of the bot left, the app's messages to it by chat_id.
                let mut chats: BTreeMap<(String, i64), (String, bool, Vec<String>)> = BTreeMap::new();
                for l in &out.deleted {
                    let e = chats
                        .entry((l.bot_id.clone(), l.chat_id))
                        .or_insert_with(|| (l.tenant_id.clone(), l.chat_type == "private", Vec::new()));
                    e.2.push(l.id.clone());
                }
                for ((bot_id, chat_id), (tenant_id, private, links)) in chats {
                    let chat_wide = private
                        && sqlx::query(sqlx::AssertSqlSafe(format!(
                            "SELECT 1 AS one FROM links WHERE bot_id = $1 AND chat_id = $2 AND active = {t}",
                            t = $true
                        )))
                        .bind(&bot_id)
                        .bind(chat_id)
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_none();
                    let filter = format!(
                        "link_id {links} OR ({wide} AND link_id IS NULL AND NOT EXISTS \
                         (SELECT 1 FROM message_requests r WHERE r.id = messages.request_id \
                         AND r.origin LIKE 'reply:%'))",
                        links = $in_json.replace("$X", "$3"),
                        wide = if chat_wide { $true } else { $false },
                    );
                    let links_json = serde_json::to_string(&links).unwrap_or_else(|_| "[]".into());
                    out.cancelled.add(
                        Self::cancel_where(&mut *tx, &bot_id, chat_id, &filter, Some(links_json), reason, now)
                            .await?,
                    );
                    let chat = chat_wide.then_some((bot_id.as_str(), chat_id));
                    out.cancelled.digests +=
                        Self::end_digests(&mut *tx, &tenant_id, &links, chat, reason, now).await?;
                }
                tx.commit().await?;
                Ok(out)
            }

            async fn chat_gone(
                &self,
                bot_id: &str,
                chat_id: i64,
                state: ChatState,
                now: i64,
            ) -> StoreResult<ChatEnded> {
                let mut out = ChatEnded::default();
                let mut tx = self.db.begin().await?;
                sqlx::query(
                    "INSERT INTO chats (bot_id, chat_id, type, state, updated_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (bot_id, chat_id) \
                     DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                )
                .bind(bot_id)
                .bind(chat_id)
                .bind(if chat_id > 0 { "private" } else { "group" })
                .bind(state.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let sql = format!(
                    "UPDATE links SET active = {f}, updated_at = $3 WHERE bot_id = $1 \
                     AND chat_id = $2 AND active = {t} RETURNING {cols}",
                    f = $false,
                    t = $true,
                    cols = super::links::LINK_COLS,
                );
                out.deactivated = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(bot_id)
                    .bind(chat_id)
                    .bind(now)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(Self::link_row)
                    .collect::<StoreResult<Vec<_>>>()?;
                if let Some(reason) = CancelReason::for_chat(state, chat_id) {
                    out.cancelled =
                        Self::cancel_where(&mut *tx, bot_id, chat_id, "$3 IS NOT NULL", None, reason, now).await?;
                    let tenant: Option<String> = sqlx::query("SELECT tenant_id FROM bots WHERE id = $1")
                        .bind(bot_id)
                        .fetch_optional(&mut *tx)
                        .await?
                        .map(|r| r.try_get("tenant_id"))
                        .transpose()?;
                    if let Some(tenant) = tenant {
                        let links: Vec<String> = sqlx::query("SELECT id FROM links WHERE bot_id = $1 AND chat_id = $2")
                            .bind(bot_id)
                            .bind(chat_id)
                            .fetch_all(&mut *tx)
                            .await?
                            .iter()
                            .map(|r| r.try_get("id"))
                            .collect::<Result<_, _>>()?;
                        out.cancelled.digests += Self::end_digests(
                            &mut *tx,
                            &tenant,
                            &links,
                            Some((bot_id, chat_id)),
                            reason,
                            now,
                        )
                        .await?;
                    }
                }
                tx.commit().await?;
                self.hot.chats.forget(&(bot_id.to_string(), chat_id));
                Ok(out)
            }

            async fn unavailable_chats(
                &self,
                pairs: &[(String, i64)],
            ) -> StoreResult<Vec<(String, i64, ChatState)>> {
                if pairs.is_empty() {
                    return Ok(Vec::new());
                }
                let keys: Vec<Value> = pairs.iter().map(|(b, c)| json!([b, c])).collect();
                let sql = format!(
                    "SELECT bot_id, chat_id, state FROM chats WHERE (bot_id, chat_id) IN \
                     (SELECT b, c FROM ({}) AS k) AND state IN ('blocked', 'kicked', 'left')",
                    <$store as super::sql::JsonRows>::json_rows(
                        "$1",
                        &[super::sql::Col::Text("b"), super::sql::Col::Int("c")]
                    )
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(Value::Array(keys).to_string())
                    .fetch_all(&self.db)
                    .await?
                    .iter()
                    .map(|r| {
                        Ok((
                            r.try_get("bot_id")?,
                            r.try_get("chat_id")?,
                            r.try_get::<&str, _>("state")?.parse()?,
                        ))
                    })
                    .collect()
            }
        }
    };
}

consent_store!(
    SqliteStore,
    SqliteRow,
    "IN (SELECT value FROM json_each($X))",
    "1",
    "0",
    "json_extract(recipient, '$.to.link_id')",
    "CAST(json_extract(recipient, '$.to.chat_id') AS TEXT)",
    "json_extract(recipient, '$.bot_id')"
);
consent_store!(
    PgStore,
    PgRow,
    "IN (SELECT jsonb_array_elements_text(CAST($X AS TEXT)::jsonb))",
    "TRUE",
    "FALSE",
    "(CAST(recipient AS jsonb) -> 'to' ->> 'link_id')",
    "(CAST(recipient AS jsonb) -> 'to' ->> 'chat_id')",
    "(CAST(recipient AS jsonb) ->> 'bot_id')"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_that_can_be_written_to_cancels_nothing() {
        assert_eq!(CancelReason::for_chat(ChatState::Active, 1), None);
        assert_eq!(CancelReason::for_chat(ChatState::Migrated, -1), None);
        assert_eq!(
            CancelReason::for_chat(ChatState::Blocked, 1),
            Some(CancelReason::ChatBlocked)
        );
        assert_eq!(
            CancelReason::for_chat(ChatState::Left, 5),
            Some(CancelReason::ChatUnreachable)
        );
        assert_eq!(
            CancelReason::for_chat(ChatState::Left, -5),
            Some(CancelReason::BotRemoved)
        );
    }

    #[test]
    fn one_event_per_request() {
        let row = |id: &str, req: &str, chat: i64| CancelledRow {
            id: id.into(),
            request_id: req.into(),
            tenant_id: "ten_1".into(),
            bot_id: "bot_1".into(),
            chat_id: chat,
            broadcast_id: None,
        };
        let rows = [row("m2", "r1", 1), row("m1", "r1", 2), row("m3", "r2", 1)];
        let events = cancel_events(&rows, CancelReason::ChatBlocked, 7);
        assert_eq!(events.len(), 2);
        let data: Value = serde_json::from_str(&events[0].data).unwrap();
        assert_eq!(data["request_id"], "r1");
        assert_eq!(data["message_ids"], json!(["m1", "m2"]));
        assert_eq!(data["chat_ids"], json!([1, 2]));
        assert_eq!(data["count"], 2);
        assert_eq!(data["reason"], "chat_blocked");
        assert_eq!(events[0].event_type, "message.cancelled");
    }
}

//! Storage for paid access: gated chats, the entitlement ledger (append-only entries, each
//! applied once per source key, folded into its entitlement in the same transaction) and
//! memberships (one user in one gated chat), whose Telegram calls are outbox jobs queued in
//! the same transaction as the state that asked for them.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use super::edits::NewJob;
use super::records::NewEvent;
use super::sql::{PgStore, SqliteStore};
use super::{Listed, Page, StoreError, StoreResult};

/// `access_until` of a membership whose access never ends.
pub const FOREVER: i64 = i64::MAX;

macro_rules! stored_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// The stored (and API) name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = StoreError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(StoreError::Corrupt(format!(
                        concat!("unknown ", stringify!($name), " {:?}"), other))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

stored_enum!(
    /// How people get into a gated chat.
    JoinMode {
        /// Personal join-request links; relaygram approves the entitled requester.
        Request = "request",
        /// Personal invite links, revoked once used.
        Invite = "invite",
        /// Telegram's own 30-day Star subscription link (channels), mirrored from
        /// `chat_member` updates.
        StarsSubscription = "stars_subscription",
    }
);

stored_enum!(
    /// Whether relaygram can enforce a gated chat.
    GateStatus {
        /// The bot holds every right it needs.
        Active = "active",
        /// The bot lost a right (or the chat): nobody is removed until it is back.
        Degraded = "degraded",
    }
);

stored_enum!(
    /// The kind of a gated chat.
    GatedChatType {
        /// A supergroup.
        Supergroup = "supergroup",
        /// A channel.
        Channel = "channel",
    }
);

stored_enum!(
    /// One ledger entry's kind.
    EntryKind {
        /// The entitlement begins.
        Grant = "grant",
        /// A new end.
        Extend = "extend",
        /// Cancelled, now or at the period's end.
        Cancel = "cancel",
        /// Taken back at once.
        Revoke = "revoke",
    }
);

stored_enum!(
    /// Where a user stands in a gated chat.
    MembershipState {
        /// Entitled and given a personal link (or about to be), not in yet.
        Invited = "invited",
        /// Asked to join; the answer is on its way.
        Requested = "requested",
        /// In the chat.
        Member = "member",
        /// Being removed (the call is queued).
        Removing = "removing",
        /// Removed by relaygram; may come back when entitled again.
        Removed = "removed",
        /// Left on their own (or removed by someone else).
        Left = "left",
        /// Asked to join without an entitlement and was declined.
        Declined = "declined",
    }
);

stored_enum!(
    /// What a membership's outbox job does.
    MemberAction {
        /// `approveChatJoinRequest`.
        Approve = "approve",
        /// `declineChatJoinRequest`.
        Decline = "decline",
        /// `unbanChatMember` on a member: removed, free to come back.
        Remove = "remove",
        /// `revokeChatInviteLink` (a link used by someone else, or no longer needed).
        RevokeLink = "revoke_link",
    }
);

/// A gated chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatedChatRecord {
    /// Opaque id (`gc_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The administering bot.
    pub bot_id: String,
    /// Telegram chat id.
    pub chat_id: i64,
    /// Supergroup or channel.
    pub chat_type: GatedChatType,
    /// The chat's title when last seen.
    pub title: Option<String>,
    /// The operator's name for it.
    pub name: String,
    /// How people get in.
    pub join_mode: JoinMode,
    /// Seconds members keep access after their entitlement ends.
    pub grace_seconds: i64,
    /// Seconds before the end at which holders are reminded, largest first.
    pub reminders: Vec<i64>,
    /// Whether members without an entitlement are removed.
    pub remove_unentitled: bool,
    /// How long such a member may stay first.
    pub unentitled_grace_seconds: i64,
    /// Where people get access (said when a request is declined); else the bot's `/shop`.
    pub access_url: Option<String>,
    /// Enforceable or not.
    pub status: GateStatus,
    /// Why it is degraded.
    pub status_reason: Option<String>,
    /// Last full sweep.
    pub swept_at: Option<i64>,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

/// An entitlement: its holder, chats and the fold of its ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntitlementRecord {
    /// Opaque id (`ent_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The app user, if given.
    pub external_id: Option<String>,
    /// The Telegram user, if given.
    pub telegram_user_id: Option<i64>,
    /// Gated chats it opens.
    pub gated_chat_ids: Vec<String>,
    /// Access from.
    pub starts_at: i64,
    /// Access until (then the chat's grace); `None` = forever.
    pub ends_at: Option<i64>,
    /// Cancelled at period end: it will not be extended (access stays until `ends_at`).
    pub cancel_at_period_end: bool,
    /// Cancelled at once at this time (access ended then, no grace).
    pub cancelled_at: Option<i64>,
    /// Revoked at this time (access ended then, no grace).
    pub revoked_at: Option<i64>,
    /// When `entitlement.expired` was said.
    pub expired_at: Option<i64>,
    /// The grant's source (`api`, later `stars`, `stripe`).
    pub source: String,
    /// Creation time.
    pub created_at: i64,
    /// Last ledger entry.
    pub updated_at: i64,
}

/// One ledger entry to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// Opaque id (`ee_…`).
    pub id: String,
    /// The entitlement (for a grant: the new one's id).
    pub entitlement_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// What it does.
    pub kind: EntryKind,
    /// `api`, `stars`, `stripe`.
    pub source: String,
    /// Makes the entry apply once.
    pub source_key: String,
    /// Hash of what the entry says: the same key with another body is refused.
    pub body_hash: String,
    /// New end (extend), or the grant's end.
    pub ends_at: Option<i64>,
    /// Cancel at period end (cancel).
    pub at_period_end: bool,
    /// The caller's reason.
    pub reason: Option<String>,
    /// When.
    pub created_at: i64,
}

/// A stored ledger entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRecord {
    /// Opaque id.
    pub id: String,
    /// What it did.
    pub kind: EntryKind,
    /// Its source.
    pub source: String,
    /// Its source key.
    pub source_key: String,
    /// Its end (grant, extend).
    pub ends_at: Option<i64>,
    /// At period end (cancel).
    pub at_period_end: bool,
    /// The caller's reason.
    pub reason: Option<String>,
    /// When.
    pub created_at: i64,
}

/// What applying an entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Applied now.
    New(EntitlementRecord),
    /// Applied before with the same body (a replay): nothing changed.
    Replayed(EntitlementRecord),
    /// The key was used before by a different entry.
    KeyReused,
}

/// One user in one gated chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipRecord {
    /// Opaque id (`mem_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The gated chat.
    pub gated_chat_id: String,
    /// The Telegram user, once known.
    pub telegram_user_id: Option<i64>,
    /// The app user, when known.
    pub external_id: Option<String>,
    /// Where they stand.
    pub state: MembershipState,
    /// Their personal link.
    pub invite_link: Option<String>,
    /// When access ends, grace included (0 = none, [`FOREVER`]).
    pub access_until: i64,
    /// The entitlement's end (reminders count back from it).
    pub ends_at: Option<i64>,
    /// When the sweep removes them.
    pub remove_at: Option<i64>,
    /// The next reminder due.
    pub next_reminder_at: Option<i64>,
    /// Reminders sent for the current `ends_at`.
    pub reminders_sent: i64,
    /// In the chat without an entitlement.
    pub unentitled: bool,
    /// The outbox job under way.
    pub job_id: Option<String>,
    /// What it does.
    pub job_action: Option<MemberAction>,
    /// Telegram's last refusal.
    pub last_error: Option<String>,
    /// Joined at.
    pub joined_at: Option<i64>,
    /// Left or removed at.
    pub left_at: Option<i64>,
    /// Last `getChatMember` check.
    pub checked_at: Option<i64>,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

/// A token that binds a gated chat through the bot's `startgroup` link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateTokenRecord {
    /// Opaque id (`gct_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The bot whose link it is.
    pub bot_id: String,
    /// SHA-256 of the token (the lookup key).
    pub token_hash: String,
    /// The gated chat's settings (JSON).
    pub settings: String,
    /// Usable until.
    pub expires_at: i64,
    /// When it bound a chat.
    pub used_at: Option<i64>,
    /// The chat it bound.
    pub gated_chat_id: Option<String>,
    /// Created at.
    pub created_at: i64,
}

/// A membership whose job finished, and how.
#[derive(Debug, Clone)]
pub struct FinishedJob {
    /// The membership.
    pub membership: MembershipRecord,
    /// The job's final status (`sent`, `failed`, `dead`, `unknown`, `cancelled`).
    pub status: String,
    /// Telegram's refusal, if any.
    pub error: Option<String>,
}

/// Filters for listing memberships.
#[derive(Debug, Clone, Default)]
pub struct MembershipFilter {
    /// One gated chat.
    pub gated_chat_id: Option<String>,
    /// One app user.
    pub external_id: Option<String>,
    /// One state.
    pub state: Option<MembershipState>,
}

/// Filters for listing entitlements.
#[derive(Debug, Clone, Default)]
pub struct EntitlementFilter {
    /// One app user.
    pub external_id: Option<String>,
    /// Opening one gated chat.
    pub gated_chat_id: Option<String>,
    /// Only those giving access at this time (true) or not (false); with `now`.
    pub active: Option<bool>,
    /// The time `active` is judged at.
    pub now: i64,
}

/// Gated chats, the ledger and memberships.
#[async_trait]
pub trait MembershipStore: Send + Sync {
    /// Stores a new gated chat; `Conflict` when the bot's chat is gated already.
    async fn insert_gated_chat(&self, g: &GatedChatRecord) -> StoreResult<()>;
    /// Writes a gated chat's settings, status and chat id.
    async fn update_gated_chat(&self, g: &GatedChatRecord) -> StoreResult<bool>;
    /// Deletes a gated chat (its memberships go with it; nobody is removed from Telegram).
    async fn delete_gated_chat(&self, tenant_id: Option<&str>, id: &str) -> StoreResult<bool>;
    /// One gated chat (of this tenant, when given).
    async fn get_gated_chat(
        &self,
        tenant_id: Option<&str>,
        id: &str,
    ) -> StoreResult<Option<GatedChatRecord>>;
    /// The gated chat of a bot's Telegram chat.
    async fn gated_chat_of(
        &self,
        bot_id: &str,
        chat_id: i64,
    ) -> StoreResult<Option<GatedChatRecord>>;
    /// The tenant's gated chats, in id order.
    async fn list_gated_chats(
        &self,
        tenant_id: &str,
        page: &Page,
    ) -> StoreResult<Listed<GatedChatRecord>>;
    /// Every gated chat (the sweep), in id order.
    async fn all_gated_chats(&self) -> StoreResult<Vec<GatedChatRecord>>;

    /// Stores a binding token.
    async fn insert_gate_token(&self, t: &GateTokenRecord) -> StoreResult<()>;
    /// A binding token by its hash, or by id (of this tenant, when given).
    async fn find_gate_token(
        &self,
        tenant_id: Option<&str>,
        id: Option<&str>,
        token_hash: Option<&str>,
    ) -> StoreResult<Option<GateTokenRecord>>;
    /// Marks a binding token used by `gated_chat_id`; false when it was used already.
    async fn use_gate_token(&self, id: &str, gated_chat_id: &str, now: i64) -> StoreResult<bool>;

    /// Applies a ledger entry once per (tenant, source, source key), folding it into its
    /// entitlement (for a grant, `grant` is the new entitlement) and storing its `event`,
    /// in one transaction, and marks the entitlement for a membership sync.
    async fn apply_entry(
        &self,
        entry: &NewEntry,
        grant: Option<&EntitlementRecord>,
        event: &NewEvent,
    ) -> StoreResult<Applied>;
    /// The entitlement and body hash of the entry a source key made, if any.
    async fn find_entry(
        &self,
        tenant_id: &str,
        source: &str,
        source_key: &str,
    ) -> StoreResult<Option<(String, String)>>;
    /// One entitlement (of this tenant, when given).
    async fn get_entitlement(
        &self,
        tenant_id: Option<&str>,
        id: &str,
    ) -> StoreResult<Option<EntitlementRecord>>;
    /// An entitlement's ledger, oldest first.
    async fn entitlement_entries(&self, id: &str) -> StoreResult<Vec<EntryRecord>>;
    /// The tenant's entitlements, in id order.
    async fn list_entitlements(
        &self,
        tenant_id: &str,
        filter: &EntitlementFilter,
        page: &Page,
    ) -> StoreResult<Listed<EntitlementRecord>>;
    /// The entitlements for one gated chat held by an app user or a Telegram user.
    async fn holder_entitlements(
        &self,
        tenant_id: &str,
        gated_chat_id: &str,
        external_id: Option<&str>,
        telegram_user_id: Option<i64>,
    ) -> StoreResult<Vec<EntitlementRecord>>;
    /// Entitlements changed since their memberships were last brought in line, oldest first.
    async fn unsynced_entitlements(&self, limit: i64) -> StoreResult<Vec<EntitlementRecord>>;
    /// Notes that an entitlement's memberships follow it (unless it changed again since
    /// `updated_at`).
    async fn mark_entitlement_synced(&self, id: &str, updated_at: i64) -> StoreResult<()>;
    /// Marks every entitlement of a gated chat for a membership sync (its settings or
    /// status changed).
    async fn mark_chat_unsynced(&self, gated_chat_id: &str) -> StoreResult<()>;
    /// Entitlements whose end passed without `entitlement.expired` said.
    async fn expired_unsaid(&self, now: i64, limit: i64) -> StoreResult<Vec<EntitlementRecord>>;
    /// Notes that an entitlement expired and stores its `entitlement.expired` event, in one
    /// transaction, once (false when it was noted before).
    async fn mark_expired(&self, id: &str, now: i64, event: &NewEvent) -> StoreResult<bool>;

    /// The membership of a Telegram user in a gated chat; else of the app user.
    async fn find_membership(
        &self,
        gated_chat_id: &str,
        telegram_user_id: Option<i64>,
        external_id: Option<&str>,
    ) -> StoreResult<Option<MembershipRecord>>;
    /// The membership a personal link was made for.
    async fn membership_by_link(
        &self,
        gated_chat_id: &str,
        invite_link: &str,
    ) -> StoreResult<Option<MembershipRecord>>;
    /// One membership (of this tenant, when given).
    async fn get_membership(
        &self,
        tenant_id: Option<&str>,
        id: &str,
    ) -> StoreResult<Option<MembershipRecord>>;
    /// The tenant's memberships, in id order.
    async fn list_memberships(
        &self,
        tenant_id: &str,
        filter: &MembershipFilter,
        page: &Page,
    ) -> StoreResult<Listed<MembershipRecord>>;
    /// Writes a membership (insert or replace), queues its job and stores its events, in
    /// one transaction. `Conflict` when another row holds the same user in the same chat.
    async fn save_membership(
        &self,
        m: &MembershipRecord,
        job: Option<&NewJob>,
        events: &[NewEvent],
    ) -> StoreResult<()>;
    /// Memberships of enforceable chats whose removal is due and not under way.
    async fn due_removals(&self, now: i64, limit: i64) -> StoreResult<Vec<MembershipRecord>>;
    /// Memberships whose next reminder is due.
    async fn due_reminders(&self, now: i64, limit: i64) -> StoreResult<Vec<MembershipRecord>>;
    /// Memberships whose job finished.
    async fn finished_jobs(&self, limit: i64) -> StoreResult<Vec<FinishedJob>>;
    /// Members of a gated chat relaygram believes are in (the sync re-checks them).
    async fn members_to_check(
        &self,
        gated_chat_id: &str,
        checked_before: i64,
        limit: i64,
    ) -> StoreResult<Vec<MembershipRecord>>;
}

const GATED_COLS: &str = "id, tenant_id, bot_id, chat_id, chat_type, title, name, join_mode, \
     grace_seconds, reminders, remove_unentitled, unentitled_grace_seconds, access_url, status, \
     status_reason, swept_at, created_at, updated_at";

const ENT_COLS: &str = "e.id, e.tenant_id, e.external_id, e.telegram_user_id, e.starts_at, \
     e.ends_at, e.cancel_at_period_end, e.cancelled_at, e.revoked_at, e.expired_at, e.source, \
     e.created_at, e.updated_at, \
     (SELECT COALESCE(json_agg(c.gated_chat_id ORDER BY c.gated_chat_id)::text, '[]') \
     FROM entitlement_chats c WHERE c.entitlement_id = e.id) AS chats";

const ENT_COLS_SQLITE: &str = "e.id, e.tenant_id, e.external_id, e.telegram_user_id, \
     e.starts_at, e.ends_at, e.cancel_at_period_end, e.cancelled_at, e.revoked_at, \
     e.expired_at, e.source, e.created_at, e.updated_at, \
     (SELECT COALESCE(json_group_array(c.gated_chat_id), '[]') FROM \
     (SELECT gated_chat_id FROM entitlement_chats WHERE entitlement_id = e.id \
     ORDER BY gated_chat_id) c) AS chats";

const MEM_COLS: &str = "m.id, m.tenant_id, m.gated_chat_id, m.telegram_user_id, m.external_id, \
     m.state, m.invite_link, m.access_until, m.ends_at, m.remove_at, m.next_reminder_at, \
     m.reminders_sent, m.unentitled, m.job_id, m.job_action, m.last_error, m.joined_at, \
     m.left_at, m.checked_at, m.created_at, m.updated_at";

/// Whether an entitlement gives access at `now` (grace aside): started, not ended,
/// cancelled or revoked. SQL over `e`, `$N` the time.
const ACTIVE_SQL: &str = "(e.starts_at <= $N AND (e.ends_at IS NULL OR e.ends_at > $N) \
     AND e.cancelled_at IS NULL AND e.revoked_at IS NULL)";

fn parse<T: FromStr<Err = StoreError>>(s: &str) -> StoreResult<T> {
    s.parse()
}

macro_rules! membership_store {
    ($store:ty, $row:ty, $ent_cols:expr) => {
        impl $store {
            fn gated(r: &$row) -> StoreResult<GatedChatRecord> {
                let reminders: String = r.try_get("reminders")?;
                Ok(GatedChatRecord {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    bot_id: r.try_get("bot_id")?,
                    chat_id: r.try_get("chat_id")?,
                    chat_type: parse(r.try_get("chat_type")?)?,
                    title: r.try_get("title")?,
                    name: r.try_get("name")?,
                    join_mode: parse(r.try_get("join_mode")?)?,
                    grace_seconds: r.try_get("grace_seconds")?,
                    reminders: serde_json::from_str(&reminders)
                        .map_err(|e| StoreError::Corrupt(format!("reminders: {e}")))?,
                    remove_unentitled: r.try_get("remove_unentitled")?,
                    unentitled_grace_seconds: r.try_get("unentitled_grace_seconds")?,
                    access_url: r.try_get("access_url")?,
                    status: parse(r.try_get("status")?)?,
                    status_reason: r.try_get("status_reason")?,
                    swept_at: r.try_get("swept_at")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            }

            fn entitlement(r: &$row) -> StoreResult<EntitlementRecord> {
                let chats: String = r.try_get("chats")?;
                Ok(EntitlementRecord {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    external_id: r.try_get("external_id")?,
                    telegram_user_id: r.try_get("telegram_user_id")?,
                    gated_chat_ids: serde_json::from_str(&chats)
                        .map_err(|e| StoreError::Corrupt(format!("entitlement chats: {e}")))?,
                    starts_at: r.try_get("starts_at")?,
                    ends_at: r.try_get("ends_at")?,
                    cancel_at_period_end: r.try_get("cancel_at_period_end")?,
                    cancelled_at: r.try_get("cancelled_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                    expired_at: r.try_get("expired_at")?,
                    source: r.try_get("source")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            }

            fn membership(r: &$row) -> StoreResult<MembershipRecord> {
                let action: Option<String> = r.try_get("job_action")?;
                Ok(MembershipRecord {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    gated_chat_id: r.try_get("gated_chat_id")?,
                    telegram_user_id: r.try_get("telegram_user_id")?,
                    external_id: r.try_get("external_id")?,
                    state: parse(r.try_get("state")?)?,
                    invite_link: r.try_get("invite_link")?,
                    access_until: r.try_get("access_until")?,
                    ends_at: r.try_get("ends_at")?,
                    remove_at: r.try_get("remove_at")?,
                    next_reminder_at: r.try_get("next_reminder_at")?,
                    reminders_sent: r.try_get("reminders_sent")?,
                    unentitled: r.try_get("unentitled")?,
                    job_id: r.try_get("job_id")?,
                    job_action: action.as_deref().map(parse).transpose()?,
                    last_error: r.try_get("last_error")?,
                    joined_at: r.try_get("joined_at")?,
                    left_at: r.try_get("left_at")?,
                    checked_at: r.try_get("checked_at")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            }

            async fn entitlement_in(
                conn: &mut <<$row as sqlx::Row>::Database as sqlx::Database>::Connection,
                id: &str,
            ) -> StoreResult<EntitlementRecord> {
                let sql = format!("SELECT {} FROM entitlements e WHERE e.id = $1", $ent_cols);
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_one(&mut *conn)
                    .await?;
                Self::entitlement(&row)
            }
        }

        #[async_trait]
        impl MembershipStore for $store {
            async fn insert_gated_chat(&self, g: &GatedChatRecord) -> StoreResult<()> {
                let done = sqlx::query(
                    "INSERT INTO gated_chats (id, tenant_id, bot_id, chat_id, chat_type, title, \
                     name, join_mode, grace_seconds, reminders, remove_unentitled, \
                     unentitled_grace_seconds, access_url, status, status_reason, swept_at, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                     $11, $12, $13, $14, $15, $16, $17, $18) ON CONFLICT (bot_id, chat_id) DO NOTHING",
                )
                .bind(&g.id)
                .bind(&g.tenant_id)
                .bind(&g.bot_id)
                .bind(g.chat_id)
                .bind(g.chat_type.as_str())
                .bind(&g.title)
                .bind(&g.name)
                .bind(g.join_mode.as_str())
                .bind(g.grace_seconds)
                .bind(serde_json::to_string(&g.reminders).unwrap_or_else(|_| "[]".into()))
                .bind(g.remove_unentitled)
                .bind(g.unentitled_grace_seconds)
                .bind(&g.access_url)
                .bind(g.status.as_str())
                .bind(&g.status_reason)
                .bind(g.swept_at)
                .bind(g.created_at)
                .bind(g.updated_at)
                .execute(&self.db)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::Conflict(format!(
                        "chat {} of this bot is gated already",
                        g.chat_id
                    )));
                }
                Ok(())
            }

            async fn update_gated_chat(&self, g: &GatedChatRecord) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE gated_chats SET chat_id = $2, chat_type = $3, title = $4, name = $5, \
                     join_mode = $6, grace_seconds = $7, reminders = $8, remove_unentitled = $9, \
                     unentitled_grace_seconds = $10, access_url = $11, status = $12, \
                     status_reason = $13, swept_at = $14, updated_at = $15 WHERE id = $1",
                )
                .bind(&g.id)
                .bind(g.chat_id)
                .bind(g.chat_type.as_str())
                .bind(&g.title)
                .bind(&g.name)
                .bind(g.join_mode.as_str())
                .bind(g.grace_seconds)
                .bind(serde_json::to_string(&g.reminders).unwrap_or_else(|_| "[]".into()))
                .bind(g.remove_unentitled)
                .bind(g.unentitled_grace_seconds)
                .bind(&g.access_url)
                .bind(g.status.as_str())
                .bind(&g.status_reason)
                .bind(g.swept_at)
                .bind(g.updated_at)
                .execute(&self.db)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_gated_chat(
                &self,
                tenant_id: Option<&str>,
                id: &str,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "DELETE FROM gated_chats WHERE id = $2 AND ($1 IS NULL OR tenant_id = $1)",
                )
                .bind(tenant_id)
                .bind(id)
                .execute(&self.db)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn get_gated_chat(
                &self,
                tenant_id: Option<&str>,
                id: &str,
            ) -> StoreResult<Option<GatedChatRecord>> {
                let sql = format!(
                    "SELECT {GATED_COLS} FROM gated_chats WHERE id = $2 \
                     AND ($1 IS NULL OR tenant_id = $1)"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(id)
                    .fetch_optional(&self.db)
                    .await?;
                row.as_ref().map(Self::gated).transpose()
            }

            async fn gated_chat_of(
                &self,
                bot_id: &str,
                chat_id: i64,
            ) -> StoreResult<Option<GatedChatRecord>> {
                let sql = format!(
                    "SELECT {GATED_COLS} FROM gated_chats WHERE bot_id = $1 AND chat_id = $2"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(bot_id)
                    .bind(chat_id)
                    .fetch_optional(&self.db)
                    .await?;
                row.as_ref().map(Self::gated).transpose()
            }

            async fn list_gated_chats(
                &self,
                tenant_id: &str,
                page: &Page,
            ) -> StoreResult<Listed<GatedChatRecord>> {
                let sql = format!(
                    "SELECT {GATED_COLS} FROM gated_chats WHERE tenant_id = $1 \
                     AND ($2 IS NULL OR id > $2) ORDER BY id LIMIT $3"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(page.after.as_deref())
                    .bind(i64::from(page.size()) + 1)
                    .fetch_all(&self.db)
                    .await?;
                let items = rows.iter().map(Self::gated).collect::<StoreResult<Vec<_>>>()?;
                Ok(Listed::from_overfetch(items, page, |g| g.id.as_str()))
            }

            async fn all_gated_chats(&self) -> StoreResult<Vec<GatedChatRecord>> {
                let sql = format!("SELECT {GATED_COLS} FROM gated_chats ORDER BY id");
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&self.db)
                    .await?;
                rows.iter().map(Self::gated).collect()
            }

            async fn insert_gate_token(&self, t: &GateTokenRecord) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO gated_chat_tokens (id, tenant_id, bot_id, token_hash, settings, \
                     expires_at, used_at, gated_chat_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, $7)",
                )
                .bind(&t.id)
                .bind(&t.tenant_id)
                .bind(&t.bot_id)
                .bind(&t.token_hash)
                .bind(&t.settings)
                .bind(t.expires_at)
                .bind(t.created_at)
                .execute(&self.db)
                .await?;
                Ok(())
            }

            async fn find_gate_token(
                &self,
                tenant_id: Option<&str>,
                id: Option<&str>,
                token_hash: Option<&str>,
            ) -> StoreResult<Option<GateTokenRecord>> {
                let row = sqlx::query(
                    "SELECT id, tenant_id, bot_id, token_hash, settings, expires_at, used_at, \
                     gated_chat_id, created_at FROM gated_chat_tokens \
                     WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR id = $2) \
                     AND ($3 IS NULL OR token_hash = $3) AND ($2 IS NOT NULL OR $3 IS NOT NULL)",
                )
                .bind(tenant_id)
                .bind(id)
                .bind(token_hash)
                .fetch_optional(&self.db)
                .await?;
                row.map(|r| {
                    Ok(GateTokenRecord {
                        id: r.try_get("id")?,
                        tenant_id: r.try_get("tenant_id")?,
                        bot_id: r.try_get("bot_id")?,
                        token_hash: r.try_get("token_hash")?,
                        settings: r.try_get("settings")?,
                        expires_at: r.try_get("expires_at")?,
                        used_at: r.try_get("used_at")?,
                        gated_chat_id: r.try_get("gated_chat_id")?,
                        created_at: r.try_get("created_at")?,
                    })
                })
                .transpose()
            }

            async fn use_gate_token(
                &self,
                id: &str,
                gated_chat_id: &str,
                now: i64,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "UPDATE gated_chat_tokens SET used_at = $3, gated_chat_id = $2 \
                     WHERE id = $1 AND used_at IS NULL",
                )
                .bind(id)
                .bind(gated_chat_id)
                .bind(now)
                .execute(&self.db)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn apply_entry(
                &self,
                entry: &NewEntry,
                grant: Option<&EntitlementRecord>,
                event: &NewEvent,
            ) -> StoreResult<Applied> {
                let mut tx = self.db.begin().await?;
                let known = sqlx::query(
                    "SELECT entitlement_id, body_hash FROM entitlement_entries \
                     WHERE tenant_id = $1 AND source = $2 AND source_key = $3",
                )
                .bind(&entry.tenant_id)
                .bind(&entry.source)
                .bind(&entry.source_key)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = known {
                    let hash: String = row.try_get("body_hash")?;
                    if hash != entry.body_hash {
                        return Ok(Applied::KeyReused);
                    }
                    let id: String = row.try_get("entitlement_id")?;
                    let e = Self::entitlement_in(&mut *tx, &id).await?;
                    return Ok(Applied::Replayed(e));
                }
                if let Some(g) = grant {
                    sqlx::query(
                        "INSERT INTO entitlements (id, tenant_id, external_id, telegram_user_id, \
                         starts_at, ends_at, cancel_at_period_end, source, synced, created_at, \
                         updated_at) VALUES ($1, $2, $3, $4, $5, $6, FALSE, $7, FALSE, $8, $8)",
                    )
                    .bind(&g.id)
                    .bind(&g.tenant_id)
                    .bind(&g.external_id)
                    .bind(g.telegram_user_id)
                    .bind(g.starts_at)
                    .bind(g.ends_at)
                    .bind(&g.source)
                    .bind(g.created_at)
                    .execute(&mut *tx)
                    .await?;
                    for chat in &g.gated_chat_ids {
                        sqlx::query(
                            "INSERT INTO entitlement_chats (entitlement_id, gated_chat_id) \
                             VALUES ($1, $2)",
                        )
                        .bind(&g.id)
                        .bind(chat)
                        .execute(&mut *tx)
                        .await?;
                    }
                } else {
                    // The fold: each kind changes its own column; the ledger keeps why.
                    let set = match entry.kind {
                        EntryKind::Grant => {
                            return Err(StoreError::Corrupt("a grant without its entitlement".into()));
                        }
                        EntryKind::Extend => "ends_at = $2, expired_at = NULL",
                        EntryKind::Cancel if entry.at_period_end => "cancel_at_period_end = TRUE",
                        EntryKind::Cancel => "cancelled_at = $3",
                        EntryKind::Revoke => "revoked_at = $3",
                    };
                    let sql = format!(
                        "UPDATE entitlements SET {set}, synced = FALSE, updated_at = $3 \
                         WHERE id = $1"
                    );
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(&entry.entitlement_id)
                        .bind(entry.ends_at)
                        .bind(entry.created_at)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(
                    "INSERT INTO entitlement_entries (id, entitlement_id, tenant_id, kind, \
                     source, source_key, body_hash, ends_at, at_period_end, reason, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&entry.id)
                .bind(&entry.entitlement_id)
                .bind(&entry.tenant_id)
                .bind(entry.kind.as_str())
                .bind(&entry.source)
                .bind(&entry.source_key)
                .bind(&entry.body_hash)
                .bind(entry.ends_at)
                .bind(entry.at_period_end)
                .bind(&entry.reason)
                .bind(entry.created_at)
                .execute(&mut *tx)
                .await?;
                let e = Self::entitlement_in(&mut *tx, &entry.entitlement_id).await?;
                Self::write_events(&mut *tx, &[event]).await?;
                tx.commit().await?;
                Ok(Applied::New(e))
            }

            async fn find_entry(
                &self,
                tenant_id: &str,
                source: &str,
                source_key: &str,
            ) -> StoreResult<Option<(String, String)>> {
                let row = sqlx::query(
                    "SELECT entitlement_id, body_hash FROM entitlement_entries \
                     WHERE tenant_id = $1 AND source = $2 AND source_key = $3",
                )
                .bind(tenant_id)
                .bind(source)
                .bind(source_key)
                .fetch_optional(&self.db)
                .await?;
                row.map(|r| Ok((r.try_get("entitlement_id")?, r.try_get("body_hash")?)))
                    .transpose()
            }

            async fn get_entitlement(
                &self,
                tenant_id: Option<&str>,
                id: &str,
            ) -> StoreResult<Option<EntitlementRecord>> {
                let sql = format!(
                    "SELECT {} FROM entitlements e WHERE e.id = $2 \
                     AND ($1 IS NULL OR e.tenant_id = $1)",
                    $ent_cols
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(id)
                    .fetch_optional(&self.db)
                    .await?;
                row.as_ref().map(Self::entitlement).transpose()
            }

            async fn entitlement_entries(&self, id: &str) -> StoreResult<Vec<EntryRecord>> {
                let rows = sqlx::query(
                    "SELECT id, kind, source, source_key, ends_at, at_period_end, reason, \
                     created_at FROM entitlement_entries WHERE entitlement_id = $1 \
                     ORDER BY created_at, id",
                )
                .bind(id)
                .fetch_all(&self.db)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(EntryRecord {
                            id: r.try_get("id")?,
                            kind: parse(r.try_get("kind")?)?,
                            source: r.try_get("source")?,
                            source_key: r.try_get("source_key")?,
                            ends_at: r.try_get("ends_at")?,
                            at_period_end: r.try_get("at_period_end")?,
                            reason: r.try_get("reason")?,
                            created_at: r.try_get("created_at")?,
                        })
                    })
                    .collect()
            }

            async fn list_entitlements(
                &self,
                tenant_id: &str,
                filter: &EntitlementFilter,
                page: &Page,
            ) -> StoreResult<Listed<EntitlementRecord>> {
                let active = ACTIVE_SQL.replace("$N", "$6");
                let sql = format!(
                    "SELECT {} FROM entitlements e WHERE e.tenant_id = $1 \
                     AND ($2 IS NULL OR e.external_id = $2) \
                     AND ($3 IS NULL OR EXISTS (SELECT 1 FROM entitlement_chats c \
                     WHERE c.entitlement_id = e.id AND c.gated_chat_id = $3)) \
                     AND ($4 IS NULL OR e.id > $4) \
                     AND ($5 IS NULL OR ($5 = {active}) = TRUE) ORDER BY e.id LIMIT $7",
                    $ent_cols
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(filter.external_id.as_deref())
                    .bind(filter.gated_chat_id.as_deref())
                    .bind(page.after.as_deref())
                    .bind(filter.active)
                    .bind(filter.now)
                    .bind(i64::from(page.size()) + 1)
                    .fetch_all(&self.db)
                    .await?;
                let items = rows
                    .iter()
                    .map(Self::entitlement)
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(Listed::from_overfetch(items, page, |e| e.id.as_str()))
            }

            async fn holder_entitlements(
                &self,
                tenant_id: &str,
                gated_chat_id: &str,
                external_id: Option<&str>,
                telegram_user_id: Option<i64>,
            ) -> StoreResult<Vec<EntitlementRecord>> {
                let sql = format!(
                    "SELECT {} FROM entitlements e JOIN entitlement_chats c \
                     ON c.entitlement_id = e.id AND c.gated_chat_id = $2 \
                     WHERE e.tenant_id = $1 AND ((e.external_id IS NOT NULL AND e.external_id = $3) \
                     OR (e.telegram_user_id IS NOT NULL AND e.telegram_user_id = $4)) ORDER BY e.id",
                    $ent_cols
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(gated_chat_id)
                    .bind(external_id)
                    .bind(telegram_user_id)
                    .fetch_all(&self.db)
                    .await?;
                rows.iter().map(Self::entitlement).collect()
            }

            async fn unsynced_entitlements(
                &self,
                limit: i64,
            ) -> StoreResult<Vec<EntitlementRecord>> {
                let sql = format!(
                    "SELECT {} FROM entitlements e WHERE e.synced = FALSE \
                     ORDER BY e.updated_at, e.id LIMIT $1",
                    $ent_cols
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(limit)
                    .fetch_all(&self.db)
                    .await?;
                rows.iter().map(Self::entitlement).collect()
            }

            async fn mark_entitlement_synced(&self, id: &str, updated_at: i64) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE entitlements SET synced = TRUE WHERE id = $1 AND updated_at = $2",
                )
                .bind(id)
                .bind(updated_at)
                .execute(&self.db)
                .await?;
                Ok(())
            }

            async fn mark_chat_unsynced(&self, gated_chat_id: &str) -> StoreResult<()> {
                sqlx::query(
                    "UPDATE entitlements SET synced = FALSE WHERE id IN \
                     (SELECT entitlement_id FROM entitlement_chats WHERE gated_chat_id = $1)",
                )
                .bind(gated_chat_id)
                .execute(&self.db)
                .await?;
                Ok(())
            }

            async fn expired_unsaid(
                &self,
                now: i64,
                limit: i64,
            ) -> StoreResult<Vec<EntitlementRecord>> {
                let sql = format!(
                    "SELECT {} FROM entitlements e WHERE e.expired_at IS NULL \
                     AND e.ends_at IS NOT NULL AND e.ends_at <= $1 AND e.revoked_at IS NULL \
                     AND e.cancelled_at IS NULL ORDER BY e.ends_at, e.id LIMIT $2",
                    $ent_cols
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.db)
                    .await?;
                rows.iter().map(Self::entitlement).collect()
            }

            async fn mark_expired(
                &self,
                id: &str,
                now: i64,
                event: &NewEvent,
            ) -> StoreResult<bool> {
                let mut tx = self.db.begin().await?;
                let done = sqlx::query(
                    "UPDATE entitlements SET expired_at = $2 WHERE id = $1 AND expired_at IS NULL",
                )
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                Self::write_events(&mut *tx, &[event]).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn find_membership(
                &self,
                gated_chat_id: &str,
                telegram_user_id: Option<i64>,
                external_id: Option<&str>,
            ) -> StoreResult<Option<MembershipRecord>> {
                if let Some(user) = telegram_user_id {
                    let sql = format!(
                        "SELECT {MEM_COLS} FROM memberships m WHERE m.gated_chat_id = $1 \
                         AND m.telegram_user_id = $2"
                    );
                    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(gated_chat_id)
                        .bind(user)
                        .fetch_optional(&self.db)
                        .await?;
                    if let Some(row) = row {
                        return Self::membership(&row).map(Some);
                    }
                }
                let Some(external) = external_id else {
                    return Ok(None);
                };
                // The app user's membership, whether or not its Telegram user is known yet.
                let sql = format!(
                    "SELECT {MEM_COLS} FROM memberships m WHERE m.gated_chat_id = $1 \
                     AND m.external_id = $2 ORDER BY m.telegram_user_id IS NOT NULL, m.id LIMIT 1"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(gated_chat_id)
                    .bind(external)
                    .fetch_optional(&self.db)
                    .await?;
                row.as_ref().map(Self::membership).transpose()
            }

            async fn membership_by_link(
                &self,
                gated_chat_id: &str,
                invite_link: &str,
            ) -> StoreResult<Option<MembershipRecord>> {
                let sql = format!(
                    "SELECT {MEM_COLS} FROM memberships m WHERE m.invite_link = $2 \
                     AND m.gated_chat_id = $1"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(gated_chat_id)
                    .bind(invite_link)
                    .fetch_optional(&self.db)
                    .await?;
                row.as_ref().map(Self::membership).transpose()
            }

            async fn get_membership(
                &self,
                tenant_id: Option<&str>,
                id: &str,
            ) -> StoreResult<Option<MembershipRecord>> {
                let sql = format!(
                    "SELECT {MEM_COLS} FROM memberships m WHERE m.id = $2 \
                     AND ($1 IS NULL OR m.tenant_id = $1)"
                );
                let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(id)
                    .fetch_optional(&self.db)
                    .await?;
                row.as_ref().map(Self::membership).transpose()
            }

            async fn list_memberships(
                &self,
                tenant_id: &str,
                filter: &MembershipFilter,
                page: &Page,
            ) -> StoreResult<Listed<MembershipRecord>> {
                let sql = format!(
                    "SELECT {MEM_COLS} FROM memberships m WHERE m.tenant_id = $1 \
                     AND ($2 IS NULL OR m.gated_chat_id = $2) AND ($3 IS NULL OR m.external_id = $3) \
                     AND ($4 IS NULL OR m.state = $4) AND ($5 IS NULL OR m.id > $5) \
                     ORDER BY m.id LIMIT $6"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(tenant_id)
                    .bind(filter.gated_chat_id.as_deref())
                    .bind(filter.external_id.as_deref())
                    .bind(filter.state.map(|s| s.as_str()))
                    .bind(page.after.as_deref())
                    .bind(i64::from(page.size()) + 1)
                    .fetch_all(&self.db)
                    .await?;
                let items = rows
                    .iter()
                    .map(Self::membership)
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(Listed::from_overfetch(items, page, |m| m.id.as_str()))
            }

            async fn save_membership(
                &self,
                m: &MembershipRecord,
                job: Option<&NewJob>,
                events: &[NewEvent],
            ) -> StoreResult<()> {
                let mut tx = self.db.begin().await?;
                let done = sqlx::query(
                    "INSERT INTO memberships (id, tenant_id, gated_chat_id, telegram_user_id, \
                     external_id, state, invite_link, access_until, ends_at, remove_at, \
                     next_reminder_at, reminders_sent, unentitled, job_id, job_action, last_error, \
                     joined_at, left_at, checked_at, created_at, updated_at) VALUES ($1, $2, $3, \
                     $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
                     $20, $21) ON CONFLICT (id) DO UPDATE SET telegram_user_id = $4, \
                     external_id = $5, state = $6, invite_link = $7, access_until = $8, \
                     ends_at = $9, remove_at = $10, next_reminder_at = $11, reminders_sent = $12, \
                     unentitled = $13, job_id = $14, job_action = $15, last_error = $16, \
                     joined_at = $17, left_at = $18, checked_at = $19, updated_at = $21",
                )
                .bind(&m.id)
                .bind(&m.tenant_id)
                .bind(&m.gated_chat_id)
                .bind(m.telegram_user_id)
                .bind(&m.external_id)
                .bind(m.state.as_str())
                .bind(&m.invite_link)
                .bind(m.access_until)
                .bind(m.ends_at)
                .bind(m.remove_at)
                .bind(m.next_reminder_at)
                .bind(m.reminders_sent)
                .bind(m.unentitled)
                .bind(&m.job_id)
                .bind(m.job_action.map(|a| a.as_str()))
                .bind(&m.last_error)
                .bind(m.joined_at)
                .bind(m.left_at)
                .bind(m.checked_at)
                .bind(m.created_at)
                .bind(m.updated_at)
                .execute(&mut *tx)
                .await;
                match done {
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        return Err(StoreError::Conflict(
                            "this user already has a membership in this chat".into(),
                        ));
                    }
                    other => {
                        other?;
                    }
                }
                if let Some(job) = job {
                    Self::insert_job(&mut *tx, job).await?;
                }
                if !events.is_empty() {
                    let refs: Vec<&NewEvent> = events.iter().collect();
                    Self::write_events(&mut *tx, &refs).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn due_removals(
                &self,
                now: i64,
                limit: i64,
            ) -> StoreResult<Vec<MembershipRecord>> {
                let sql = format!(
                    "SELECT {MEM_COLS} FROM memberships m JOIN gated_chats g \
                     ON g.id = m.gated_chat_id AND g.status = 'active' \
                     WHERE m.remove_at IS NOT NULL AND m.remove_at <= $1 AND m.job_id IS NULL \
                     AND m.state IN ('invited', 'requested', 'member') \
                     ORDER BY m.remove_at, m.id LIMIT $2"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.db)
                    .await?;
                rows.iter().map(Self::membership).collect()
            }

            async fn due_reminders(
                &self,
                now: i64,
                limit: i64,
            ) -> StoreResult<Vec<MembershipRecord>> {
                let sql = format!(
                    "SELECT {MEM_COLS} FROM memberships m WHERE m.next_reminder_at IS NOT NULL \
                     AND m.next_reminder_at <= $1 ORDER BY m.next_reminder_at, m.id LIMIT $2"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.db)
                    .await?;
                rows.iter().map(Self::membership).collect()
            }

            async fn finished_jobs(&self, limit: i64) -> StoreResult<Vec<FinishedJob>> {
                let sql = format!(
                    "SELECT {MEM_COLS}, j.status AS job_status, j.last_error AS job_error \
                     FROM memberships m JOIN messages j ON j.id = m.job_id \
                     WHERE m.job_id IS NOT NULL AND j.status IN ('sent', 'failed', 'dead', \
                     'unknown', 'cancelled', 'throttled') ORDER BY m.id LIMIT $1"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(limit)
                    .fetch_all(&self.db)
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok(FinishedJob {
                            membership: Self::membership(r)?,
                            status: r.try_get("job_status")?,
                            error: r.try_get("job_error")?,
                        })
                    })
                    .collect()
            }

            async fn members_to_check(
                &self,
                gated_chat_id: &str,
                checked_before: i64,
                limit: i64,
            ) -> StoreResult<Vec<MembershipRecord>> {
                let sql = format!(
                    "SELECT {MEM_COLS} FROM memberships m WHERE m.gated_chat_id = $1 \
                     AND m.telegram_user_id IS NOT NULL AND m.job_id IS NULL \
                     AND m.state IN ('invited', 'requested', 'member') \
                     AND (m.checked_at IS NULL OR m.checked_at < $2) \
                     ORDER BY m.checked_at IS NOT NULL, m.checked_at, m.id LIMIT $3"
                );
                let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(gated_chat_id)
                    .bind(checked_before)
                    .bind(limit)
                    .fetch_all(&self.db)
                    .await?;
                rows.iter().map(Self::membership).collect()
            }
        }
    };
}

membership_store!(SqliteStore, SqliteRow, ENT_COLS_SQLITE);
membership_store!(PgStore, PgRow, ENT_COLS);

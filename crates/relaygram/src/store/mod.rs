//! Storage: one trait shaped like the domain, implemented for SQLite and PostgreSQL with
//! the same SQL text (both dialects accept `$1`, `RETURNING` and `ON CONFLICT`).
//! Migrations are embedded in the binary, one set per engine, and run at start.

mod batch;
mod cache;
mod cancel;
mod checkpoints;
mod commands;
mod digests;
mod edits;
mod events;
mod holds;
mod inbound;
mod links;
mod memberships;
mod outbox;
mod records;
mod replies;
mod schedules;
mod script;
mod sql;
mod sqlite_db;
mod templates;
pub mod testing;
mod texts;
mod update_queue;

pub use cancel::{CancelReason, Cancelled, ChatEnded, ConsentStore, LinksEnded};
pub use commands::{CommandAction, CommandStore, CustomCommand, StoredCommand};
pub use digests::{DigestItem, DigestRecord, DigestStore, NewDigest};
pub use edits::{EditStore, JobKind, NewJob};
pub use events::{
    AttemptRecord, ClaimedDelivery, DeliveryOutcome, DeliveryRecord, DeliveryStatus,
    EndpointRecord, EventQuery, EventRecord, EventStore, NewEvent, StoredEvent, type_matches,
};
pub use holds::{Hold, HoldCandidate, HoldStore};
pub use inbound::{
    ChatRecord, ChatState, FinishReport, InboundStore, ProcessedUpdate, SentMessage, UpdateCursor,
    UpdateFilter, UpdateOutcome, UpdateRecord, UpdateStatus,
};
pub use links::{
    CategoryRecord, ConnectCodeRecord, LinkFilter, LinkRecord, LinkStore, LinkTokenRecord,
    LinkWrite,
};
pub use memberships::{
    Applied, EntitlementFilter, EntitlementRecord, EntryKind, EntryRecord, FOREVER, FinishedJob,
    GateStatus, GateTokenRecord, GatedChatRecord, GatedChatType, JoinMode, MemberAction,
    MembershipFilter, MembershipRecord, MembershipState, MembershipStore, NewEntry,
};
pub use outbox::{
    Acceptance, Accepted, BotLimitsRecord, BotStats, BroadcastRecord, Callback, CallbackRecord,
    Claimed, FINAL_STATES, Fanout, ListOrder, MessageFilter, MessageRecord, NewMessage, NewRequest,
    OutboxStore, Outcome, Reach, Throttle, ThrottleScope,
};
pub use replies::NewReply;
pub use schedules::{
    Advance, CatchUp, Decide, RunKind, RunOutcome, RunRecord, RunState, ScheduleRecord,
    ScheduleStore,
};
pub use templates::TemplateStore;
pub use texts::{BotTextRecord, TextKey, TextStore};

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use sql::{PgStore, SqliteStore};

/// Largest page a list call may ask for.
pub const MAX_PAGE_SIZE: u32 = 200;
/// Page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule would be broken.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database answered with an error or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database could not be prepared (e.g. its folder could not be created).
    #[error("cannot prepare the database: {0}")]
    Setup(String),
    /// A stored value could not be understood.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

/// Result alias for storage calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// An isolation boundary: a site, company or workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Opaque id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Creation time, UTC milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// Everything, across all tenants.
    Admin,
    /// One tenant's resources only.
    Tenant,
}

impl KeyScope {
    fn as_str(self) -> &'static str {
        match self {
            KeyScope::Admin => "admin",
            KeyScope::Tenant => "tenant",
        }
    }
}

impl FromStr for KeyScope {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(KeyScope::Admin),
            "tenant" => Ok(KeyScope::Tenant),
            other => Err(StoreError::Corrupt(format!("unknown key scope {other:?}"))),
        }
    }
}

/// A stored API key (its hash, never the key).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Opaque id (`key_…`).
    pub id: String,
    /// The tenant for tenant keys; `None` for admin keys.
    pub tenant_id: Option<String>,
    /// Scope.
    pub scope: KeyScope,
    /// Operator-chosen label.
    pub name: String,
    /// The first characters of the key, shown in lists to recognise it.
    pub prefix: String,
    /// Hex SHA-256 of the whole key.
    pub hash: String,
    /// Creation time (UTC ms).
    pub created_at: i64,
    /// Revocation time (UTC ms), if revoked.
    pub revoked_at: Option<i64>,
}

impl fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("scope", &self.scope)
            .field("prefix", &self.prefix)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// How a bot receives updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BotMode {
    /// Telegram pushes updates to `{public_url}/telegram/webhook/{bot_id}`.
    Webhook,
    /// relaygram pulls updates with `getUpdates` (no public URL configured).
    Polling,
}

impl BotMode {
    fn as_str(self) -> &'static str {
        match self {
            BotMode::Webhook => "webhook",
            BotMode::Polling => "polling",
        }
    }
}

impl FromStr for BotMode {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "webhook" => Ok(BotMode::Webhook),
            "polling" => Ok(BotMode::Polling),
            other => Err(StoreError::Corrupt(format!("unknown bot mode {other:?}"))),
        }
    }
}

/// A built-in command that a bot may turn off, so that the app handles it (`/link` is
/// linking itself and always on).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BuiltinCommand {
    /// `/start`: the welcome (a link token or connect code still links).
    Start,
    /// `/help`.
    Help,
    /// `/settings`.
    Settings,
    /// `/stop`.
    Stop,
}

impl BuiltinCommand {
    /// Every switchable built-in, in menu order.
    pub const ALL: [BuiltinCommand; 4] = [
        BuiltinCommand::Start,
        BuiltinCommand::Help,
        BuiltinCommand::Settings,
        BuiltinCommand::Stop,
    ];

    /// The command's name without the slash, as stored and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            BuiltinCommand::Start => "start",
            BuiltinCommand::Help => "help",
            BuiltinCommand::Settings => "settings",
            BuiltinCommand::Stop => "stop",
        }
    }
}

impl FromStr for BuiltinCommand {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BuiltinCommand::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a built-in command that can be turned off"))
    }
}

/// A stored bot. Token and webhook secret are sealed (encrypted) values.
#[derive(Clone, PartialEq, Eq)]
pub struct BotRecord {
    /// Opaque id (`bot_…`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Telegram user id of the bot.
    pub telegram_id: i64,
    /// Telegram username (without `@`).
    pub username: String,
    /// Telegram display name.
    pub first_name: String,
    /// The bot token, encrypted.
    pub token_sealed: String,
    /// The webhook secret, encrypted (webhook mode only).
    pub webhook_secret_sealed: Option<String>,
    /// The registered webhook URL (webhook mode only).
    pub webhook_url: Option<String>,
    /// Delivery mode.
    pub mode: BotMode,
    /// Whether the bot is in use.
    pub enabled: bool,
    /// Creation time (UTC ms).
    pub created_at: i64,
    /// Last change (UTC ms).
    pub updated_at: i64,
    /// The update types asked of Telegram; `None` = every type (see
    /// [`UPDATE_TYPES`](crate::telegram::UPDATE_TYPES)).
    pub allowed_updates: Option<Vec<String>>,
    /// Built-in commands turned off: the app gets them as `command.received` and relaygram
    /// does not answer them. Sorted, no repeats.
    pub builtins_off: Vec<BuiltinCommand>,
}

impl fmt::Debug for BotRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotRecord")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("telegram_id", &self.telegram_id)
            .field("username", &self.username)
            .field("mode", &self.mode)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// A page request: items with an id greater than `after`, at most `limit` of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Cursor: the last id of the previous page.
    pub after: Option<String>,
    /// Page size (clamped to `1..=MAX_PAGE_SIZE`).
    pub limit: u32,
}

impl Page {
    /// A first page of `limit` items.
    pub fn first(limit: u32) -> Page {
        Page { after: None, limit }
    }

    fn size(&self) -> u32 {
        match self.limit {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        }
    }
}

/// One page of results and the cursor for the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed<T> {
    /// Items in id order.
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Listed<T> {
    fn from_overfetch(mut items: Vec<T>, page: &Page, id: impl Fn(&T) -> &str) -> Listed<T> {
        let size = page.size() as usize;
        let next_cursor = if items.len() > size {
            items.truncate(size);
            items.last().map(|i| id(i).to_string())
        } else {
            None
        };
        Listed { items, next_cursor }
    }
}

/// Which bots to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BotFilter {
    /// Only this tenant's bots.
    pub tenant_id: Option<String>,
    /// Only enabled (or disabled) bots.
    pub enabled: Option<bool>,
    /// Only bots in this mode.
    pub mode: Option<BotMode>,
}

/// Which kind of keys to list.
#[derive(Debug, Clone, Copy)]
pub enum KeyOwner<'a> {
    /// Admin keys.
    Admin,
    /// One tenant's keys.
    Tenant(&'a str),
}

/// The storage interface, shaped like the domain.
#[async_trait]
pub trait Store:
    InboundStore
    + EventStore
    + CommandStore
    + LinkStore
    + TemplateStore
    + OutboxStore
    + ScheduleStore
    + HoldStore
    + DigestStore
    + ConsentStore
    + EditStore
    + TextStore
    + MembershipStore
    + Send
    + Sync
    + fmt::Debug
{
    /// `"sqlite"` or `"postgres"`.
    fn engine(&self) -> &'static str;
    /// Applies the embedded migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// Checks the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// Closes the database connections.
    async fn close(&self);

    /// A stored fact.
    async fn get_meta(&self, name: &str) -> StoreResult<Option<String>>;
    /// Stores a fact unless one with this name exists; returns the value now stored.
    async fn put_meta_if_absent(&self, name: &str, value: &str) -> StoreResult<String>;

    /// Stores a tenant.
    async fn insert_tenant(&self, tenant: &Tenant) -> StoreResult<()>;
    /// One tenant.
    async fn get_tenant(&self, id: &str) -> StoreResult<Option<Tenant>>;
    /// Tenants, optionally only the one with `only` as id.
    async fn list_tenants(&self, only: Option<&str>, page: &Page) -> StoreResult<Listed<Tenant>>;

    /// Stores an API key record.
    async fn insert_api_key(&self, key: &ApiKeyRecord) -> StoreResult<()>;
    /// One API key record.
    async fn get_api_key(&self, id: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// Key records whose prefix matches (candidates for authentication).
    async fn find_api_keys_by_prefix(&self, prefix: &str) -> StoreResult<Vec<ApiKeyRecord>>;
    /// A key record by its hash.
    async fn find_api_key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKeyRecord>>;
    /// Keys of one owner, revoked ones included.
    async fn list_api_keys(
        &self,
        owner: KeyOwner<'_>,
        page: &Page,
    ) -> StoreResult<Listed<ApiKeyRecord>>;
    /// Revokes a key; `false` when it does not exist or was already revoked.
    async fn revoke_api_key(&self, id: &str, at: i64) -> StoreResult<bool>;
    /// Admin keys not revoked.
    async fn count_active_admin_keys(&self) -> StoreResult<i64>;

    /// Stores a bot; [`StoreError::Conflict`] when its Telegram id is already stored.
    async fn insert_bot(&self, bot: &BotRecord) -> StoreResult<()>;
    /// One bot.
    async fn get_bot(&self, id: &str) -> StoreResult<Option<BotRecord>>;
    /// A bot by its Telegram id.
    async fn get_bot_by_telegram_id(&self, telegram_id: i64) -> StoreResult<Option<BotRecord>>;
    /// Bots matching `filter`.
    async fn list_bots(&self, filter: &BotFilter, page: &Page) -> StoreResult<Listed<BotRecord>>;
    /// Sets `enabled`; `false` when the bot does not exist.
    async fn set_bot_enabled(&self, id: &str, enabled: bool, at: i64) -> StoreResult<bool>;
    /// Sets the update types asked of Telegram (`None` = all); `false` when the bot does not exist.
    async fn set_bot_allowed_updates(
        &self,
        id: &str,
        allowed: Option<&[String]>,
        at: i64,
    ) -> StoreResult<bool>;
    /// Sets the built-in commands turned off; `false` when the bot does not exist.
    async fn set_bot_builtins_off(
        &self,
        id: &str,
        off: &[BuiltinCommand],
        at: i64,
    ) -> StoreResult<bool>;
    /// Records the delivery mode and webhook; `false` when the bot does not exist.
    async fn set_bot_webhook(
        &self,
        id: &str,
        mode: BotMode,
        webhook_url: Option<&str>,
        webhook_secret_sealed: Option<&str>,
        at: i64,
    ) -> StoreResult<bool>;
    /// Deletes a bot; `false` when it did not exist.
    async fn delete_bot(&self, id: &str) -> StoreResult<bool>;
}

/// Opens the store named by `database_url` (without migrating).
pub async fn connect(database_url: &SecretString) -> StoreResult<Arc<dyn Store>> {
    let url = database_url.expose_secret();
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else {
        Ok(Arc::new(
            PgStore::connect(url, Duration::from_secs(10)).await?,
        ))
    }
}

#[cfg(test)]
mod inbound_tests;
#[cfg(test)]
mod tests;

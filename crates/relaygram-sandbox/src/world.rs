//! Everything the sandbox knows: bots, users, groups, conversations, queued updates, files,
//! callback queries, faults and statistics. Plain data behind one mutex; the HTTP layers
//! turn requests into calls on it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Value, json};

use crate::faults::Fault;
use crate::limits::{FloodLimiter, LimitModel, Limits, RateStats, RefusalCounts};

/// Telegram keeps undelivered updates for a day.
pub const UPDATE_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How many Bot API calls the call log keeps.
const CALL_LOG_CAP: usize = 10_000;

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Telegram's rule for bot usernames: 5-32 of `A-Za-z0-9_`, ending in "bot".
pub fn valid_bot_username(name: &str) -> bool {
    (5..=32).contains(&name.len())
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && name.to_ascii_lowercase().ends_with("bot")
}

pub fn random_string(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub secret_token: Option<String>,
    pub max_connections: u32,
    pub last_error_date: Option<i64>,
    pub last_error_message: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PendingUpdate {
    pub update_id: i64,
    /// Updates of one chat are delivered one at a time, in order.
    pub chat_key: Option<i64>,
    pub body: Value,
    pub queued_at: Instant,
    pub attempts: u32,
    pub next_attempt: Instant,
    pub in_flight: bool,
}

#[derive(Debug, Clone, Default)]
pub struct BotStats {
    pub calls: u64,
    pub sends_accepted: u64,
    /// Edits that changed a message (they take flood-limit slots like sends).
    pub edits_accepted: u64,
    /// Every 429, flood-limit refusals and injected `flood` faults alike.
    pub too_many_requests: u64,
    /// Flood-limit refusals by the limit that refused.
    pub refused: RefusalCounts,
    pub webhook_deliveries: u64,
    pub webhook_failures: u64,
    pub rates: RateStats,
}

pub struct Bot {
    pub id: i64,
    pub token: String,
    pub username: String,
    pub first_name: String,
    pub webhook: Option<Webhook>,
    pub allowed_updates: Option<Vec<String>>,
    pub updates: VecDeque<PendingUpdate>,
    pub next_update_id: i64,
    /// Commands per (scope, language) key.
    pub commands: BTreeMap<(String, String), Value>,
    /// Bumped by every getUpdates call, so an older long poll knows it was superseded.
    pub poll_generation: u64,
    pub poll_notify: std::sync::Arc<tokio::sync::Notify>,
    pub stats: BotStats,
}

impl Bot {
    pub fn user_json(&self) -> Value {
        json!({"id": self.id, "is_bot": true, "first_name": self.first_name, "username": self.username})
    }

    pub fn me_json(&self) -> Value {
        json!({
            "id": self.id, "is_bot": true, "first_name": self.first_name, "username": self.username,
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false, "can_connect_to_business": false,
            "has_main_web_app": false
        })
    }

    pub fn pending_count(&self) -> usize {
        self.updates.len()
    }

    pub fn prune_old_updates(&mut self, now: Instant) {
        self.updates
            .retain(|u| now.duration_since(u.queued_at) < UPDATE_RETENTION);
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub first_name: String,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub language_code: Option<String>,
    pub is_premium: bool,
    /// Bots this user has talked to: a bot cannot start a conversation on its own.
    pub started: HashSet<i64>,
    /// Bots this user has blocked.
    pub blocked: HashSet<i64>,
}

impl User {
    pub fn json(&self) -> Value {
        let mut v = json!({"id": self.id, "is_bot": false, "first_name": self.first_name});
        if let Some(l) = &self.last_name {
            v["last_name"] = json!(l);
        }
        if let Some(u) = &self.username {
            v["username"] = json!(u);
        }
        if let Some(l) = &self.language_code {
            v["language_code"] = json!(l);
        }
        if self.is_premium {
            v["is_premium"] = json!(true);
        }
        v
    }

    pub fn private_chat_json(&self) -> Value {
        let mut v = json!({"id": self.id, "type": "private", "first_name": self.first_name});
        if let Some(l) = &self.last_name {
            v["last_name"] = json!(l);
        }
        if let Some(u) = &self.username {
            v["username"] = json!(u);
        }
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    Group,
    Supergroup,
    Channel,
}

impl GroupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupKind::Group => "group",
            GroupKind::Supergroup => "supergroup",
            GroupKind::Channel => "channel",
        }
    }
}

/// A bot's place in a group.
#[derive(Debug, Clone)]
pub struct BotMember {
    /// `member`, `administrator`, `left` or `kicked`.
    pub status: String,
    /// Administrator rights (`can_invite_users`, `can_restrict_members`, …) when an admin.
    pub rights: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: i64,
    pub kind: GroupKind,
    pub title: String,
    pub username: Option<String>,
    pub is_forum: bool,
    /// Users with a standing in the chat; someone absent has left (or never came).
    pub members: BTreeMap<i64, MemberStatus>,
    pub bots: BTreeMap<i64, BotMember>,
    pub migrated_to: Option<i64>,
    /// Every link ever made for the chat, revoked ones too (Telegram lists those).
    pub invite_links: Vec<InviteLink>,
    /// Join requests by requester; handled ones stay so a second answer can be refused.
    pub join_requests: BTreeMap<i64, JoinRequest>,
}

/// A user's standing in a group or channel, as Telegram's ChatMember kinds. Dates are Unix
/// time; an `until` of 0 means no end.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberStatus {
    Creator,
    Administrator,
    /// `until`: when the paid subscription the user joined with runs out.
    Member {
        until: i64,
    },
    /// Someone whose permissions differ from the chat's (supergroups only); `is_member` is
    /// false for someone restricted while out of the chat.
    Restricted {
        is_member: bool,
        until: i64,
        permissions: serde_json::Map<String, Value>,
    },
    Left,
    /// Banned: cannot come back until `until`.
    Kicked {
        until: i64,
    },
}

impl MemberStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            MemberStatus::Creator => "creator",
            MemberStatus::Administrator => "administrator",
            MemberStatus::Member { .. } => "member",
            MemberStatus::Restricted { .. } => "restricted",
            MemberStatus::Left => "left",
            MemberStatus::Kicked { .. } => "kicked",
        }
    }

    /// Whether the user is in the chat (sees it, counts as a member).
    pub fn is_in(&self) -> bool {
        match self {
            MemberStatus::Creator | MemberStatus::Administrator | MemberStatus::Member { .. } => {
                true
            }
            MemberStatus::Restricted { is_member, .. } => *is_member,
            MemberStatus::Left | MemberStatus::Kicked { .. } => false,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, MemberStatus::Creator | MemberStatus::Administrator)
    }

    pub fn member() -> Self {
        MemberStatus::Member { until: 0 }
    }
}

/// A chat invite link, as Telegram keeps it.
#[derive(Debug, Clone)]
pub struct InviteLink {
    /// `https://t.me/+<hash>`.
    pub url: String,
    /// A user's or a bot's id.
    pub creator: i64,
    pub creates_join_request: bool,
    pub is_primary: bool,
    pub is_revoked: bool,
    pub name: Option<String>,
    /// 0: never.
    pub expire_date: i64,
    /// 0: no limit. Counts current members who joined through the link, not uses.
    pub member_limit: i64,
    /// Users who joined through the link.
    pub joined: HashSet<i64>,
    /// Set for a paid link of a channel: joining costs Stars every period.
    pub subscription: Option<Subscription>,
}

/// The price of a subscription link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    /// Seconds; Telegram allows only 30 days.
    pub period: i64,
    /// Telegram Stars per period.
    pub price: i64,
}

impl InviteLink {
    pub fn new(creator: i64) -> Self {
        InviteLink {
            url: format!("https://t.me/+{}", random_string(16)),
            creator,
            creates_join_request: false,
            is_primary: false,
            is_revoked: false,
            name: None,
            expire_date: 0,
            member_limit: 0,
            joined: HashSet::new(),
            subscription: None,
        }
    }

    pub fn expired(&self, now: i64) -> bool {
        self.is_revoked || (self.expire_date != 0 && self.expire_date <= now)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Pending,
    Approved,
    Declined,
    /// Left unanswered for too long: it is gone, as if never sent.
    Expired,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Declined => "declined",
            RequestState::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The link the request came through.
    pub link: String,
    pub date: i64,
    pub state: RequestState,
}

impl Group {
    pub fn chat_json(&self) -> Value {
        let mut v = json!({"id": self.id, "type": self.kind.as_str(), "title": self.title});
        if let Some(u) = &self.username {
            v["username"] = json!(u);
        }
        if self.is_forum {
            v["is_forum"] = json!(true);
        }
        v
    }
}

/// One message in a conversation, as Telegram's Message object plus what the sandbox notes.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub message: Value,
    /// `in` (from a user to the bot) or `out` (sent by the bot).
    pub direction: &'static str,
    pub bot_id: i64,
    pub silent: bool,
    pub deleted: bool,
    /// When the bot deleted it (the transcript keeps deleted messages, marked).
    pub deleted_date: Option<i64>,
}

/// Messages of one chat. Private chats are per (bot, user); groups are shared by their bots.
#[derive(Debug, Default)]
pub struct Conversation {
    pub next_message_id: i64,
    pub messages: Vec<StoredMessage>,
}

impl Conversation {
    pub fn allocate_id(&mut self) -> i64 {
        self.next_message_id += 1;
        self.next_message_id
    }

    pub fn find(&self, message_id: i64) -> Option<&StoredMessage> {
        self.messages
            .iter()
            .find(|m| !m.deleted && m.message["message_id"].as_i64() == Some(message_id))
    }

    pub fn find_mut(&mut self, message_id: i64) -> Option<&mut StoredMessage> {
        self.messages
            .iter_mut()
            .find(|m| !m.deleted && m.message["message_id"].as_i64() == Some(message_id))
    }
}

/// Private conversations are keyed by their bot; groups use 0 so all their bots share one.
pub type ConvKey = (i64, i64);

pub fn conv_key(bot_id: i64, chat_id: i64) -> ConvKey {
    if chat_id > 0 {
        (bot_id, chat_id)
    } else {
        (0, chat_id)
    }
}

#[derive(Debug, Clone)]
pub struct StoredFile {
    pub file_unique_id: String,
    pub kind: &'static str,
    pub file_name: Option<String>,
    pub mime_type: Option<String>,
    pub size: usize,
}

#[derive(Debug, Clone)]
pub struct CallbackRecord {
    pub bot_id: i64,
    pub user_id: i64,
    pub created: Instant,
    pub answer: Option<Value>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CallRecord {
    pub at: i64,
    pub bot_id: i64,
    pub method: String,
    pub params: Value,
    pub status: u16,
    pub description: Option<String>,
}

pub struct World {
    pub bots: BTreeMap<i64, Bot>,
    pub users: BTreeMap<i64, User>,
    pub groups: BTreeMap<i64, Group>,
    pub conversations: HashMap<ConvKey, Conversation>,
    pub files: HashMap<String, StoredFile>,
    pub callbacks: HashMap<String, CallbackRecord>,
    pub faults: Vec<Fault>,
    pub calls: VecDeque<CallRecord>,
    pub limiter: FloodLimiter,
    next_bot_id: i64,
    next_user_id: i64,
    next_group_id: i64,
    pub next_fault_id: u64,
    /// Seconds the sandbox's calendar runs ahead of the real one (POST /sandbox/clock), so
    /// tests can let bans, join requests and subscriptions run out without waiting.
    pub clock_offset: i64,
}

impl World {
    pub fn new(limits: Limits, model: LimitModel, time_scale: f64) -> Self {
        World {
            bots: BTreeMap::new(),
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            conversations: HashMap::new(),
            files: HashMap::new(),
            callbacks: HashMap::new(),
            faults: Vec::new(),
            calls: VecDeque::new(),
            limiter: FloodLimiter::new(limits, model, time_scale),
            next_bot_id: 7_000_000_000,
            next_user_id: 100_000_000,
            next_group_id: 0,
            next_fault_id: 0,
            clock_offset: 0,
        }
    }

    /// The sandbox's Unix time: the real one moved by `clock_offset`.
    pub fn now(&self) -> i64 {
        unix_now() + self.clock_offset
    }

    /// Forgets everything but the limiter's configuration.
    pub fn reset(&mut self) {
        let l = &self.limiter;
        *self = World::new(l.limits(), l.model(), l.time_scale());
    }

    pub fn add_bot(&mut self, username: String, first_name: String) -> &Bot {
        self.next_bot_id += 1;
        let id = self.next_bot_id;
        // Telegram tokens are `<bot id>:<35 characters>`.
        let token = format!("{id}:AA{}", random_string(33));
        self.bots.insert(
            id,
            Bot {
                id,
                token,
                username,
                first_name,
                webhook: None,
                allowed_updates: None,
                updates: VecDeque::new(),
                next_update_id: rand::rng().random_range(100_000..900_000),
                commands: BTreeMap::new(),
                poll_generation: 0,
                poll_notify: Default::default(),
                stats: BotStats::default(),
            },
        );
        &self.bots[&id]
    }

    pub fn bot_by_token(&self, token: &str) -> Option<i64> {
        let id: i64 = token.split(':').next()?.parse().ok()?;
        let bot = self.bots.get(&id)?;
        (bot.token == token).then_some(id)
    }

    /// A bot by id or by username (with or without `@`).
    pub fn find_bot(&self, key: &str) -> Option<i64> {
        let key = key.trim_start_matches('@');
        if let Ok(id) = key.parse::<i64>()
            && self.bots.contains_key(&id)
        {
            return Some(id);
        }
        self.bots
            .values()
            .find(|b| b.username.eq_ignore_ascii_case(key))
            .map(|b| b.id)
    }

    pub fn add_user(&mut self, mut user: User) -> i64 {
        self.next_user_id += 1;
        user.id = self.next_user_id;
        let id = user.id;
        self.users.insert(id, user);
        id
    }

    pub fn add_group(
        &mut self,
        kind: GroupKind,
        title: String,
        username: Option<String>,
        is_forum: bool,
    ) -> i64 {
        self.next_group_id += 1;
        let id = match kind {
            GroupKind::Group => -(4_000_000_000 + self.next_group_id),
            // Supergroups and channels carry the -100 prefix.
            _ => -(1_000_000_000_000 + 2_000_000_000 + self.next_group_id),
        };
        self.groups.insert(
            id,
            Group {
                id,
                kind,
                title,
                username,
                is_forum,
                members: BTreeMap::new(),
                bots: BTreeMap::new(),
                migrated_to: None,
                invite_links: Vec::new(),
                join_requests: BTreeMap::new(),
            },
        );
        id
    }

    pub fn conversation(&mut self, bot_id: i64, chat_id: i64) -> &mut Conversation {
        self.conversations
            .entry(conv_key(bot_id, chat_id))
            .or_default()
    }

    pub fn chat_json(&self, chat_id: i64) -> Option<Value> {
        if chat_id > 0 {
            self.users.get(&chat_id).map(User::private_chat_json)
        } else {
            self.groups.get(&chat_id).map(Group::chat_json)
        }
    }

    /// Queues an update for a bot unless its `allowed_updates` exclude that type (Telegram
    /// does not even create those). An explicit `update_id` is kept, so replays can be
    /// simulated. Returns the update id, or None when the type is filtered out.
    pub fn enqueue_update(&mut self, bot_id: i64, mut update: Value) -> Option<i64> {
        let bot = self.bots.get_mut(&bot_id)?;
        let kind = update_kind(&update)?;
        if !type_allowed(bot.allowed_updates.as_deref(), &kind) {
            return None;
        }
        let update_id = match update.get("update_id").and_then(Value::as_i64) {
            Some(id) => {
                bot.next_update_id = bot.next_update_id.max(id);
                id
            }
            None => {
                bot.next_update_id += 1;
                update["update_id"] = json!(bot.next_update_id);
                bot.next_update_id
            }
        };
        let now = Instant::now();
        bot.prune_old_updates(now);
        bot.updates.push_back(PendingUpdate {
            update_id,
            chat_key: update_chat_id(&update),
            body: update,
            queued_at: now,
            attempts: 0,
            next_attempt: now,
            in_flight: false,
        });
        bot.poll_notify.notify_waiters();
        Some(update_id)
    }

    pub fn record_call(&mut self, record: CallRecord) {
        if self.calls.len() >= CALL_LOG_CAP {
            self.calls.pop_front();
        }
        self.calls.push_back(record);
    }
}

/// The update's type: the name of its one field besides `update_id`.
pub fn update_kind(update: &Value) -> Option<String> {
    update
        .as_object()?
        .keys()
        .find(|k| k.as_str() != "update_id")
        .cloned()
}

/// Telegram's default when `allowed_updates` is unset or empty: every type but these.
const OPT_IN_TYPES: [&str; 3] = ["chat_member", "message_reaction", "message_reaction_count"];

pub fn type_allowed(allowed: Option<&[String]>, kind: &str) -> bool {
    match allowed {
        Some(list) if !list.is_empty() => list.iter().any(|t| t == kind),
        _ => !OPT_IN_TYPES.contains(&kind),
    }
}

/// The chat an update belongs to, for per-chat ordering.
pub fn update_chat_id(update: &Value) -> Option<i64> {
    let obj = update.as_object()?;
    for (key, v) in obj {
        if key == "update_id" {
            continue;
        }
        let chat = v
            .get("chat")
            .or_else(|| v.get("message").and_then(|m| m.get("chat")));
        if let Some(id) = chat.and_then(|c| c.get("id")).and_then(Value::as_i64) {
            return Some(id);
        }
        if let Some(id) = v
            .get("from")
            .and_then(|f| f.get("id"))
            .and_then(Value::as_i64)
        {
            return Some(id);
        }
    }
    None
}

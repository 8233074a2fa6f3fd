//! Request and response bodies of the REST API.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::ids::rfc3339;
use crate::store::{ApiKeyRecord, BotMode, BotRecord, KeyScope, Page, Tenant};
use crate::telegram::{TelegramError, WebhookInfo};

/// Cursor pagination parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<PageSize>,
    /// Cursor: `next_cursor` of the previous page.
    pub after: Option<String>,
}

/// Bot list parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct BotListParams {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<PageSize>,
    /// Cursor: `next_cursor` of the previous page.
    pub after: Option<String>,
    /// Only bots of this tenant (admin keys; tenant keys always see their own).
    pub tenant_id: Option<String>,
    /// Only enabled (`true`) or disabled (`false`) bots.
    pub enabled: Option<bool>,
    /// Only bots in this mode.
    pub mode: Option<BotMode>,
}

/// A page size from a query, 1 to 200: refused while the query is parsed (a 400 before
/// anything else is looked at).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "u32")]
pub struct PageSize(u32);

impl utoipa::PartialSchema for PageSize {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Int32,
            )))
            .minimum(Some(1))
            .maximum(Some(crate::store::MAX_PAGE_SIZE))
            .description(Some("Page size, 1 to 200 (default 50)."))
            .into()
    }
}

impl ToSchema for PageSize {}

impl TryFrom<u32> for PageSize {
    type Error = String;

    fn try_from(n: u32) -> Result<PageSize, String> {
        if (1..=crate::store::MAX_PAGE_SIZE).contains(&n) {
            Ok(PageSize(n))
        } else {
            Err(format!(
                "must be between 1 and {}",
                crate::store::MAX_PAGE_SIZE
            ))
        }
    }
}

/// Turns `limit`/`after` into a page request.
pub fn page(limit: Option<PageSize>, after: Option<String>) -> Page {
    Page {
        after: after.filter(|a| !a.is_empty()),
        limit: limit.map_or(crate::store::DEFAULT_PAGE_SIZE, |PageSize(n)| n),
    }
}

/// `POST /v1/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Acme shop"}))]
pub struct CreateTenantRequest {
    /// Display name, 1 to 200 characters.
    pub name: String,
}

/// A tenant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "ten_01jd8y3k7q9x4m2n5p6r7s8t9v", "name": "Acme shop", "created_at": "2026-11-21T05:00:00Z"}))]
pub struct TenantView {
    /// Opaque id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        TenantView {
            id: t.id,
            name: t.name,
            created_at: rfc3339(t.created_at),
        }
    }
}

/// A page of tenants.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantList {
    /// Tenants in id order.
    pub data: Vec<TenantView>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `POST /v1/tenants/{id}/api-keys`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "django backend"}))]
pub struct CreateApiKeyRequest {
    /// A label to recognise the key by.
    pub name: Option<String>,
}

/// An API key as listed: never the key itself.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "key_01jd8y3k7q9x4m2n5p6r7s8t9v", "tenant_id": "ten_01jd8y3k7q9x4m2n5p6r7s8t9v",
    "scope": "tenant", "name": "django backend", "prefix": "rg_8k2m4n6p", "created_at": "2026-11-21T05:00:00Z",
    "revoked_at": null}))]
pub struct ApiKeyView {
    /// Opaque id.
    pub id: String,
    /// Tenant (null for admin keys).
    pub tenant_id: Option<String>,
    /// Scope.
    pub scope: KeyScope,
    /// Label.
    pub name: String,
    /// First characters of the key.
    pub prefix: String,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
    /// Revocation time, null while active.
    pub revoked_at: Option<String>,
}

impl From<ApiKeyRecord> for ApiKeyView {
    fn from(k: ApiKeyRecord) -> Self {
        ApiKeyView {
            id: k.id,
            tenant_id: k.tenant_id,
            scope: k.scope,
            name: k.name,
            prefix: k.prefix,
            created_at: rfc3339(k.created_at),
            revoked_at: k.revoked_at.map(rfc3339),
        }
    }
}

/// A newly created key: `key` is shown this once and cannot be retrieved again.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "key_01jd8y3k7q9x4m2n5p6r7s8t9v", "tenant_id": "ten_01jd8y3k7q9x4m2n5p6r7s8t9v",
    "scope": "tenant", "name": "django backend", "prefix": "rg_8k2m4n6p", "created_at": "2026-11-21T05:00:00Z",
    "key": "rg_8k2m4n6p0a1b2c3d4e5f6g7h8j9k0m1n2p3q4r5s"}))]
pub struct CreatedApiKeyView {
    /// Opaque id.
    pub id: String,
    /// Tenant.
    pub tenant_id: Option<String>,
    /// Scope.
    pub scope: KeyScope,
    /// Label.
    pub name: String,
    /// First characters of the key.
    pub prefix: String,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
    /// The key. Store it now: only its hash is kept.
    pub key: String,
}

/// A page of API keys.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyList {
    /// Keys in id order.
    pub data: Vec<ApiKeyView>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `POST /v1/bots`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"token": "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"}))]
pub struct CreateBotRequest {
    /// The bot token from @BotFather. Stored encrypted; never returned.
    pub token: String,
    /// Owning tenant: required with an admin key, implied by a tenant key.
    pub tenant_id: Option<String>,
}

impl std::fmt::Debug for CreateBotRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateBotRequest")
            .field("tenant_id", &self.tenant_id)
            .finish_non_exhaustive()
    }
}

/// `PATCH /v1/bots/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"enabled": true, "allowed_updates": ["message", "callback_query", "chat_join_request"]}))]
pub struct UpdateBotRequest {
    /// Whether the bot is in use.
    pub enabled: Option<bool>,
    /// The update types the bot asks Telegram for (names of the Bot API's `Update`
    /// fields); `null` = every type, including `chat_member`, `message_reaction` and
    /// `message_reaction_count`, which Telegram sends only when asked. Absent: unchanged.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = allowed_updates_schema)]
    pub allowed_updates: Option<Option<Vec<String>>>,
    /// Built-in commands on (`true`, relaygram answers) or off (`false`: the app gets them
    /// as `command.received` and relaygram says nothing), by name: `start`, `help`,
    /// `settings`, `stop`. Names not given keep their state.
    #[schema(example = json!({"help": false}))]
    pub builtin_commands: Option<std::collections::BTreeMap<String, bool>>,
}

/// A field that may be set to `null`: `Some(None)` when null, `None` when absent.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /v1/bots/{id}/webhook`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"base_url": "https://relaygram.example.com"}))]
pub struct RegisterWebhookRequest {
    /// Public base URL; defaults to the configured `public_url`.
    pub base_url: Option<String>,
}

/// Telegram's live webhook state for a bot.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookInfoView {
    /// URL Telegram delivers to; empty in polling mode.
    pub url: String,
    /// Updates waiting at Telegram.
    pub pending_update_count: u64,
    /// Time of the last delivery error (RFC 3339, UTC).
    pub last_error_date: Option<String>,
    /// The last delivery error.
    pub last_error_message: Option<String>,
    /// Maximum simultaneous connections.
    pub max_connections: Option<u32>,
    /// Update types subscribed to.
    pub allowed_updates: Option<Vec<String>>,
}

impl From<WebhookInfo> for WebhookInfoView {
    fn from(w: WebhookInfo) -> Self {
        WebhookInfoView {
            url: w.url,
            pending_update_count: w.pending_update_count,
            last_error_date: w.last_error_date.map(|s| rfc3339(s.saturating_mul(1000))),
            last_error_message: w.last_error_message,
            max_connections: w.max_connections,
            allowed_updates: w.allowed_updates,
        }
    }
}

/// Live state fetched from Telegram when one bot is read.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TelegramStateView {
    /// `getWebhookInfo`, or null when Telegram could not be asked.
    pub webhook_info: Option<WebhookInfoView>,
    /// Why `webhook_info` is null.
    pub error: Option<String>,
}

/// A bot. The token is never included.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "bot_01jd8y3k7q9x4m2n5p6r7s8t9v", "tenant_id": "ten_01jd8y3k7q9x4m2n5p6r7s8t9v",
    "telegram_id": 123456789, "username": "shop_bot", "first_name": "Shop", "mode": "webhook", "enabled": true,
    "webhook_url": "https://relaygram.example.com/telegram/webhook/bot_01jd8y3k7q9x4m2n5p6r7s8t9v",
    "allowed_updates": null,
    "builtin_commands": {"help": true, "settings": true, "start": true, "stop": true}, "created_at": "2026-11-21T05:00:00Z", "updated_at": "2026-11-21T05:00:00Z"}))]
pub struct BotView {
    /// Opaque id.
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// The bot's Telegram user id.
    pub telegram_id: i64,
    /// Telegram username, without `@`.
    pub username: String,
    /// Telegram display name.
    pub first_name: String,
    /// `webhook` or `polling`.
    pub mode: BotMode,
    /// Whether the bot is in use.
    pub enabled: bool,
    /// Where Telegram delivers updates (webhook mode).
    pub webhook_url: Option<String>,
    /// The update types the bot asks Telegram for; `null` = every type Telegram sends.
    pub allowed_updates: Option<Vec<String>>,
    /// Whether relaygram answers each built-in command (`false`: turned off, the app
    /// handles it from `command.received`).
    pub builtin_commands: std::collections::BTreeMap<String, bool>,
    /// Creation time (RFC 3339, UTC).
    pub created_at: String,
    /// Last change (RFC 3339, UTC).
    pub updated_at: String,
    /// Live state (only on `GET /v1/bots/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telegram: Option<TelegramStateView>,
}

impl From<BotRecord> for BotView {
    fn from(b: BotRecord) -> Self {
        BotView {
            id: b.id,
            tenant_id: b.tenant_id,
            telegram_id: b.telegram_id,
            username: b.username,
            first_name: b.first_name,
            mode: b.mode,
            enabled: b.enabled,
            webhook_url: b.webhook_url,
            builtin_commands: crate::store::BuiltinCommand::ALL
                .into_iter()
                .map(|c| (c.as_str().to_string(), !b.builtins_off.contains(&c)))
                .collect(),
            allowed_updates: b.allowed_updates,
            created_at: rfc3339(b.created_at),
            updated_at: rfc3339(b.updated_at),
            telegram: None,
        }
    }
}

impl BotView {
    /// Adds Telegram's live state.
    pub fn with_live(mut self, live: Result<WebhookInfo, TelegramError>) -> Self {
        self.telegram = Some(match live {
            Ok(info) => TelegramStateView {
                webhook_info: Some(info.into()),
                error: None,
            },
            Err(e) => TelegramStateView {
                webhook_info: None,
                error: Some(e.to_string()),
            },
        });
        self
    }
}

/// A page of bots.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BotList {
    /// Bots in id order.
    pub data: Vec<BotView>,
    /// Pass as `after` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `/healthz` and `/readyz` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    /// `ok` or `ready`.
    pub status: String,
}

/// `allowed_updates`: Telegram's update types, or `null` for every one.
fn allowed_updates_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::delivery::request::json_schema(serde_json::json!({
        "type": ["array", "null"],
        "items": {"type": "string", "enum": crate::telegram::UPDATE_TYPES},
        "description": "The update types the bot asks Telegram for (names of the Bot API's \
            `Update` fields); `null` = every type, including `chat_member`, `message_reaction` \
            and `message_reaction_count`, which Telegram sends only when asked. Absent: \
            unchanged.",
        "example": ["message", "callback_query"]
    }))
}

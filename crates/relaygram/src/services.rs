//! The rules for tenants, API keys and bots. Handlers and the CLI call these; they talk to
//! storage and Telegram through narrow interfaces and know nothing about HTTP.

use std::sync::Arc;

use secrecy::ExposeSecret;

use crate::crypto::{CryptoError, SecretBox, ct_eq, hash_api_key};
use crate::ids::{new_id, now_millis, random_base32, random_token};
use crate::store::{
    ApiKeyRecord, BotFilter, BotMode, BotRecord, KeyOwner, KeyScope, Listed, Page, Store,
    StoreError, Tenant,
};
use crate::telegram::{BotToken, SetWebhookParams, TelegramClient, TelegramError, WebhookInfo};

/// Length of the key prefix kept in clear for lists (`rg_` + 8 characters).
pub const KEY_PREFIX_LEN: usize = 11;
/// Length of a per-bot webhook secret (Telegram allows up to 256 of `A-Za-z0-9_-`).
pub const WEBHOOK_SECRET_LEN: usize = 64;

/// Who is calling, established from an API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An admin key: every tenant.
    Admin {
        /// The key's id.
        key_id: String,
    },
    /// A tenant key: that tenant only.
    Tenant {
        /// The key's id.
        key_id: String,
        /// The tenant.
        tenant_id: String,
    },
    /// The operator on the command line (same rights as an admin key).
    Operator,
}

impl Principal {
    /// The tenant of a tenant key; `None` for admin keys and the operator.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Principal::Tenant { tenant_id, .. } => Some(tenant_id),
            _ => None,
        }
    }

    /// Whether this principal may act on `tenant_id`.
    pub fn can_access(&self, tenant_id: &str) -> bool {
        self.tenant().is_none_or(|own| own == tenant_id)
    }
}

/// Service failures. Each maps to one documented HTTP problem.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No credentials, or unknown or revoked ones.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Valid credentials without the right to do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The resource does not exist, or belongs to another tenant.
    #[error("{kind} {id} not found")]
    NotFound {
        /// What was looked for (`tenant`, `bot`, `api key`).
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// A field is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// A query parameter is invalid (answered 400, not 422: the resource was not read).
    #[error("{field}: {message}")]
    InvalidQuery {
        /// The parameter.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// No target of a send reaches anyone now: nothing was stored. Each entry is a
    /// delivery `Skipped` (target, reason, detail) as JSON: this kit does not know the
    /// delivery types.
    #[error("to: no target reaches anyone; nothing was queued")]
    NoRecipients {
        /// Every target, with why it reaches nobody.
        skipped: Vec<serde_json::Value>,
    },
    /// A rule of the feature refuses the call (nothing changed): answered 422 with the
    /// feature's own problem type (an edit after Telegram's window, …).
    #[error("{detail}")]
    Refused {
        /// The problem type URI.
        type_uri: &'static str,
        /// Its short title.
        title: &'static str,
        /// What happened.
        detail: String,
    },
    /// Telegram refused the bot token (`getMe` failed); carries Telegram's description.
    #[error("Telegram rejected the bot token: {0}")]
    BotTokenRejected(String),
    /// The resource already exists.
    #[error("{0}")]
    Conflict(String),
    /// A webhook cannot be registered without a public URL.
    #[error("no public URL: set `public_url` (RELAYGRAM_PUBLIC_URL) or pass `base_url`")]
    NoPublicUrl,
    /// Telegram could not be reached or failed.
    #[error("Telegram call failed: {0}")]
    Telegram(#[from] TelegramError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored secret could not be decrypted.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Result alias for service calls.
pub type ServiceResult<T> = Result<T, ServiceError>;

/// A newly created API key: the record and the key itself (shown once).
#[derive(Debug)]
pub struct CreatedKey {
    /// Stored record.
    pub record: ApiKeyRecord,
    /// The key in clear. Never stored.
    pub key: secrecy::SecretString,
}

/// A bot with the live state Telegram reports for it.
#[derive(Debug)]
pub struct BotWithLiveState {
    /// Stored bot.
    pub bot: BotRecord,
    /// `getWebhookInfo`, or why it could not be fetched.
    pub webhook_info: Result<WebhookInfo, TelegramError>,
}

/// The services, sharing one store, secret box and Telegram client.
#[derive(Debug, Clone)]
pub struct Services {
    /// Storage.
    pub store: Arc<dyn Store>,
    /// Encryption of secrets at rest.
    pub secrets: SecretBox,
    /// Bot API client.
    pub telegram: TelegramClient,
    /// Public base URL for webhooks.
    pub public_url: Option<String>,
    /// "Now" for every rule that depends on time (a manual clock in tests).
    pub clock: crate::clock::Clock,
}

fn validate_name(field: &'static str, name: &str) -> ServiceResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ServiceError::Invalid {
            field,
            message: "must be 1 to 200 characters".into(),
        });
    }
    if name.chars().any(char::is_control) {
        return Err(ServiceError::Invalid {
            field,
            message: "must not contain control characters".into(),
        });
    }
    Ok(name.to_string())
}

fn validate_base_url(url: &str) -> ServiceResult<String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| ServiceError::Invalid {
        field: "base_url",
        message: format!("is not a valid URL: {e}"),
    })?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host_str().is_none()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
    {
        return Err(ServiceError::Invalid {
            field: "base_url",
            message: "must be an http(s) URL without query or fragment".into(),
        });
    }
    Ok(url.trim_end_matches('/').to_string())
}

const KEY_CHECK: &str = "secret_key_check";
const KEY_CHECK_PLAINTEXT: &str = "relaygram secret key check v1";

impl Services {
    /// Makes sure the configured secret key is the one this store's secrets were sealed
    /// with (a sealed check value is stored on first use).
    pub async fn verify_secret_key(&self) -> ServiceResult<()> {
        let sealed = match self.store.get_meta(KEY_CHECK).await? {
            Some(sealed) => sealed,
            None => {
                self.store
                    .put_meta_if_absent(KEY_CHECK, &self.secrets.seal(KEY_CHECK_PLAINTEXT))
                    .await?
            }
        };
        match self.secrets.open(&sealed) {
            Ok(plain) if plain.expose_secret() == KEY_CHECK_PLAINTEXT => Ok(()),
            _ => Err(ServiceError::Crypto(CryptoError::WrongKey)),
        }
    }

    // ---- authentication -------------------------------------------------------------

    /// The principal for a presented API key.
    pub async fn authenticate(&self, presented: &str) -> ServiceResult<Principal> {
        const UNKNOWN: &str = "unknown or revoked API key";
        let presented = presented.trim();
        if presented.len() < KEY_PREFIX_LEN || presented.len() > 512 {
            return Err(ServiceError::Unauthenticated(UNKNOWN));
        }
        let prefix = presented
            .get(..KEY_PREFIX_LEN)
            .ok_or(ServiceError::Unauthenticated(UNKNOWN))?;
        let hash = hash_api_key(presented);
        let candidates = self.store.find_api_keys_by_prefix(prefix).await?;
        let mut matched = None;
        for candidate in candidates {
            // Constant-time comparison; no early exit over candidates either.
            if ct_eq(&candidate.hash, &hash) {
                matched = Some(candidate);
            }
        }
        let key = matched
            .filter(|k| k.revoked_at.is_none())
            .ok_or(ServiceError::Unauthenticated(UNKNOWN))?;
        Ok(match (key.scope, key.tenant_id) {
            (KeyScope::Tenant, Some(tenant_id)) => Principal::Tenant {
                key_id: key.id,
                tenant_id,
            },
            _ => Principal::Admin { key_id: key.id },
        })
    }

    fn require_admin(principal: &Principal) -> ServiceResult<()> {
        match principal {
            Principal::Tenant { .. } => Err(ServiceError::Forbidden(
                "this needs an admin API key; tenant keys manage their own tenant only",
            )),
            _ => Ok(()),
        }
    }

    // ---- API keys ---------------------------------------------------------------------

    fn new_key(tenant_id: Option<&str>, name: String) -> CreatedKey {
        let key = format!("rg_{}", random_base32(40));
        let record = ApiKeyRecord {
            id: new_id("key"),
            tenant_id: tenant_id.map(str::to_string),
            scope: if tenant_id.is_some() {
                KeyScope::Tenant
            } else {
                KeyScope::Admin
            },
            name,
            prefix: key[..KEY_PREFIX_LEN].to_string(),
            hash: hash_api_key(&key),
            created_at: now_millis(),
            revoked_at: None,
        };
        CreatedKey {
            record,
            key: key.into(),
        }
    }

    /// Makes sure an admin key exists. With `configured`, that key is stored (once) and
    /// nothing is returned; otherwise, when no active admin key exists, one is created and
    /// returned so the caller can print it once.
    pub async fn bootstrap_admin_key(
        &self,
        configured: Option<&secrecy::SecretString>,
    ) -> ServiceResult<Option<CreatedKey>> {
        if let Some(configured) = configured {
            let key = configured.expose_secret().trim();
            let hash = hash_api_key(key);
            match self.store.find_api_key_by_hash(&hash).await? {
                Some(existing) if existing.revoked_at.is_some() => {
                    tracing::warn!(
                        key_id = %existing.id,
                        "RELAYGRAM_ADMIN_KEY was revoked; it stays revoked"
                    );
                }
                Some(_) => {}
                None => {
                    let record = ApiKeyRecord {
                        id: new_id("key"),
                        tenant_id: None,
                        scope: KeyScope::Admin,
                        name: "RELAYGRAM_ADMIN_KEY".into(),
                        prefix: key.chars().take(KEY_PREFIX_LEN).collect(),
                        hash,
                        created_at: now_millis(),
                        revoked_at: None,
                    };
                    self.store.insert_api_key(&record).await?;
                    tracing::info!(key_id = %record.id, "admin key from RELAYGRAM_ADMIN_KEY stored");
                }
            }
            return Ok(None);
        }
        if self.store.count_active_admin_keys().await? > 0 {
            return Ok(None);
        }
        let created = self.create_admin_key("initial admin key").await?;
        Ok(Some(created))
    }

    /// Creates an admin key (operator only).
    pub async fn create_admin_key(&self, name: &str) -> ServiceResult<CreatedKey> {
        let created = Self::new_key(None, validate_name("name", name)?);
        self.store.insert_api_key(&created.record).await?;
        Ok(created)
    }

    /// Creates a key for `tenant_id`.
    pub async fn create_api_key(
        &self,
        principal: &Principal,
        tenant_id: &str,
        name: Option<&str>,
    ) -> ServiceResult<CreatedKey> {
        let name = validate_name("name", name.unwrap_or("api key"))?;
        self.visible_tenant(principal, tenant_id).await?;
        let created = Self::new_key(Some(tenant_id), name);
        self.store.insert_api_key(&created.record).await?;
        tracing::info!(key_id = %created.record.id, tenant_id, "api key created");
        Ok(created)
    }

    /// Keys of `tenant_id` (revoked ones included, marked).
    pub async fn list_api_keys(
        &self,
        principal: &Principal,
        tenant_id: &str,
        page: &Page,
    ) -> ServiceResult<Listed<ApiKeyRecord>> {
        self.visible_tenant(principal, tenant_id).await?;
        Ok(self
            .store
            .list_api_keys(KeyOwner::Tenant(tenant_id), page)
            .await?)
    }

    /// Admin keys (operator only).
    pub async fn list_admin_keys(&self, page: &Page) -> ServiceResult<Listed<ApiKeyRecord>> {
        Ok(self.store.list_api_keys(KeyOwner::Admin, page).await?)
    }

    /// Revokes a key. With `tenant_id`, the key must belong to that tenant. Revoking an
    /// already revoked key succeeds.
    pub async fn revoke_api_key(
        &self,
        principal: &Principal,
        tenant_id: Option<&str>,
        key_id: &str,
    ) -> ServiceResult<ApiKeyRecord> {
        let not_found = || ServiceError::NotFound {
            kind: "api key",
            id: key_id.to_string(),
        };
        if let Some(tenant_id) = tenant_id {
            self.visible_tenant(principal, tenant_id).await?;
        }
        let key = self
            .store
            .get_api_key(key_id)
            .await?
            .ok_or_else(not_found)?;
        let belongs = match (tenant_id, key.tenant_id.as_deref()) {
            (Some(wanted), Some(actual)) => wanted == actual,
            (Some(_), None) => false,
            (None, owner) => match principal {
                Principal::Tenant { tenant_id, .. } => owner == Some(tenant_id.as_str()),
                _ => true,
            },
        };
        if !belongs {
            return Err(not_found());
        }
        self.store.revoke_api_key(key_id, now_millis()).await?;
        tracing::info!(key_id, "api key revoked");
        self.store.get_api_key(key_id).await?.ok_or_else(not_found)
    }

    // ---- tenants -----------------------------------------------------------------------

    /// Creates a tenant (admin only).
    pub async fn create_tenant(&self, principal: &Principal, name: &str) -> ServiceResult<Tenant> {
        Self::require_admin(principal)?;
        let tenant = Tenant {
            id: new_id("ten"),
            name: validate_name("name", name)?,
            created_at: now_millis(),
        };
        self.store.insert_tenant(&tenant).await?;
        tracing::info!(tenant_id = %tenant.id, "tenant created");
        Ok(tenant)
    }

    /// Tenants visible to the principal.
    pub async fn list_tenants(
        &self,
        principal: &Principal,
        page: &Page,
    ) -> ServiceResult<Listed<Tenant>> {
        Ok(self.store.list_tenants(principal.tenant(), page).await?)
    }

    /// One tenant, if visible to the principal.
    pub async fn visible_tenant(&self, principal: &Principal, id: &str) -> ServiceResult<Tenant> {
        let not_found = || ServiceError::NotFound {
            kind: "tenant",
            id: id.to_string(),
        };
        if !principal.can_access(id) {
            return Err(not_found());
        }
        self.store.get_tenant(id).await?.ok_or_else(not_found)
    }

    // ---- bots --------------------------------------------------------------------------

    async fn visible_bot(&self, principal: &Principal, id: &str) -> ServiceResult<BotRecord> {
        self.store
            .get_bot(id)
            .await?
            .filter(|b| principal.can_access(&b.tenant_id))
            .ok_or_else(|| ServiceError::NotFound {
                kind: "bot",
                id: id.to_string(),
            })
    }

    /// The bot's token, opened from its sealed form.
    pub fn token_of(&self, bot: &BotRecord) -> ServiceResult<BotToken> {
        let plain = self.secrets.open_cached(&bot.token_sealed)?;
        BotToken::parse(plain.expose_secret()).map_err(|_| {
            ServiceError::Store(StoreError::Corrupt(format!(
                "bot {} has an invalid stored token",
                bot.id
            )))
        })
    }

    /// Adds a bot: validates the token with `getMe`, refuses duplicates, registers the
    /// webhook (or switches to polling) and stores the token encrypted.
    pub async fn add_bot(
        &self,
        principal: &Principal,
        token: &str,
        tenant_id: Option<&str>,
    ) -> ServiceResult<BotRecord> {
        let tenant_id = match (principal, tenant_id) {
            (Principal::Tenant { tenant_id: own, .. }, None) => own.clone(),
            (Principal::Tenant { tenant_id: own, .. }, Some(asked)) if own == asked => own.clone(),
            (Principal::Tenant { .. }, Some(asked)) => {
                return Err(ServiceError::NotFound {
                    kind: "tenant",
                    id: asked.to_string(),
                });
            }
            (_, None) => {
                return Err(ServiceError::Invalid {
                    field: "tenant_id",
                    message: "is required with an admin key".into(),
                });
            }
            (_, Some(asked)) => {
                self.store
                    .get_tenant(asked)
                    .await?
                    .ok_or_else(|| ServiceError::Invalid {
                        field: "tenant_id",
                        message: format!("no tenant {asked}"),
                    })?;
                asked.to_string()
            }
        };
        let token = BotToken::parse(token).map_err(|e| ServiceError::Invalid {
            field: "token",
            message: e.to_string(),
        })?;
        let me = match self.telegram.get_me(&token).await {
            Ok(me) => me,
            Err(TelegramError::Unauthorized(d) | TelegramError::BadRequest(d)) => {
                return Err(ServiceError::BotTokenRejected(d));
            }
            Err(e) => return Err(e.into()),
        };
        let telegram_id = i64::try_from(me.id).map_err(|_| {
            ServiceError::Telegram(TelegramError::BadRequest("bot id out of range".into()))
        })?;
        if let Some(existing) = self.store.get_bot_by_telegram_id(telegram_id).await? {
            let detail = if principal.can_access(&existing.tenant_id) {
                format!(
                    "bot @{} is already registered as {}",
                    existing.username, existing.id
                )
            } else {
                format!("bot @{} is already registered", existing.username)
            };
            return Err(ServiceError::Conflict(detail));
        }
        let now = now_millis();
        let mut bot = BotRecord {
            id: new_id("bot"),
            tenant_id,
            telegram_id,
            username: me.username.clone().unwrap_or_default(),
            first_name: me.first_name.clone(),
            token_sealed: self.secrets.seal(token.expose()),
            webhook_secret_sealed: None,
            webhook_url: None,
            mode: BotMode::Polling,
            enabled: true,
            created_at: now,
            updated_at: now,
            allowed_updates: None,
            builtins_off: Vec::new(),
        };
        // Store first: the unique Telegram id settles concurrent adds before Telegram is
        // touched. If Telegram then fails, the row is removed again.
        self.store.insert_bot(&bot).await.map_err(|e| match e {
            StoreError::Conflict(d) => ServiceError::Conflict(d),
            other => other.into(),
        })?;
        let delivery = match self.public_url.clone() {
            Some(base) => self
                .register_webhook_at(&token, &bot.id, &base, None)
                .await
                .map(Some),
            None => self
                .telegram
                .delete_webhook(&token, false)
                .await
                .map(|_| None)
                .map_err(ServiceError::from),
        };
        match delivery {
            Ok(Some((url, secret_sealed))) => {
                let at = now_millis();
                self.store
                    .set_bot_webhook(
                        &bot.id,
                        BotMode::Webhook,
                        Some(&url),
                        Some(&secret_sealed),
                        at,
                    )
                    .await?;
                bot.mode = BotMode::Webhook;
                bot.webhook_url = Some(url);
                bot.webhook_secret_sealed = Some(secret_sealed);
                bot.updated_at = at;
            }
            Ok(None) => {}
            Err(e) => {
                if let Err(cleanup) = self.store.delete_bot(&bot.id).await {
                    tracing::error!(bot_id = %bot.id, error = %cleanup, "could not undo a failed bot add");
                }
                return Err(e);
            }
        }
        // The commands menu (built-ins; a new bot has no custom commands yet). Best effort:
        // the bot works without a menu, and every command change syncs it again.
        if let Err(e) = self.sync_command_menu(&bot, &token).await {
            tracing::warn!(bot_id = %bot.id, error = %e, "could not sync the commands menu");
        }
        tracing::info!(
            bot_id = %bot.id,
            tenant_id = %bot.tenant_id,
            telegram_id,
            username = %bot.username,
            mode = ?bot.mode,
            "bot added"
        );
        Ok(bot)
    }

    async fn register_webhook_at(
        &self,
        token: &BotToken,
        bot_id: &str,
        base: &str,
        allowed: Option<&[String]>,
    ) -> ServiceResult<(String, String)> {
        let url = format!("{base}/telegram/webhook/{bot_id}");
        let secret = random_token(WEBHOOK_SECRET_LEN);
        let params = SetWebhookParams {
            url: url.clone(),
            certificate: None,
            ip_address: None,
            max_connections: None,
            // Every name is one of Telegram's types (checked when set), so each parses.
            allowed_updates: Some(
                serde_json::from_value(serde_json::json!(crate::telegram::allowed_updates(
                    allowed
                )))
                .map_err(|e| ServiceError::Invalid {
                    field: "allowed_updates",
                    message: e.to_string(),
                })?,
            ),
            drop_pending_updates: None,
            secret_token: Some(secret.clone()),
        };
        match self.telegram.set_webhook(token, &params).await {
            Ok(_) => {}
            Err(TelegramError::BadRequest(d)) => {
                return Err(ServiceError::Invalid {
                    field: "base_url",
                    message: format!("Telegram refused the webhook URL: {d}"),
                });
            }
            Err(e) => return Err(e.into()),
        }
        Ok((url, self.secrets.seal(&secret)))
    }

    /// Bots visible to the principal that match `filter`.
    pub async fn list_bots(
        &self,
        principal: &Principal,
        mut filter: BotFilter,
        page: &Page,
    ) -> ServiceResult<Listed<BotRecord>> {
        if let Some(own) = principal.tenant() {
            if filter
                .tenant_id
                .as_deref()
                .is_some_and(|asked| asked != own)
            {
                return Ok(Listed {
                    items: vec![],
                    next_cursor: None,
                });
            }
            filter.tenant_id = Some(own.to_string());
        }
        Ok(self.store.list_bots(&filter, page).await?)
    }

    /// One bot with Telegram's live webhook state.
    pub async fn get_bot(
        &self,
        principal: &Principal,
        id: &str,
    ) -> ServiceResult<BotWithLiveState> {
        let bot = self.visible_bot(principal, id).await?;
        let token = self.token_of(&bot)?;
        let webhook_info = self.telegram.get_webhook_info(&token).await;
        Ok(BotWithLiveState { bot, webhook_info })
    }

    /// One stored bot, without calling Telegram.
    pub async fn get_bot_record(
        &self,
        principal: &Principal,
        id: &str,
    ) -> ServiceResult<BotRecord> {
        self.visible_bot(principal, id).await
    }

    /// Enables or disables a bot.
    pub async fn set_bot_enabled(
        &self,
        principal: &Principal,
        id: &str,
        enabled: bool,
    ) -> ServiceResult<BotRecord> {
        self.visible_bot(principal, id).await?;
        self.store
            .set_bot_enabled(id, enabled, now_millis())
            .await?;
        tracing::info!(bot_id = id, enabled, "bot updated");
        self.visible_bot(principal, id).await
    }

    /// Sets the update types the bot asks Telegram for (`None` = every type) and tells
    /// Telegram at once: a webhook bot's webhook is registered again with the new list (a
    /// polling bot passes it with its next `getUpdates`). Unknown type names are refused.
    pub async fn set_bot_allowed_updates(
        &self,
        principal: &Principal,
        id: &str,
        allowed: Option<Vec<String>>,
    ) -> ServiceResult<BotRecord> {
        if let Some(list) = &allowed {
            let unknown: Vec<&str> = list
                .iter()
                .map(String::as_str)
                .filter(|t| !crate::telegram::UPDATE_TYPES.contains(t))
                .collect();
            if !unknown.is_empty() {
                return Err(ServiceError::Invalid {
                    field: "allowed_updates",
                    message: format!(
                        "not Telegram update types: {} (known: {})",
                        unknown.join(", "),
                        crate::telegram::UPDATE_TYPES.join(", ")
                    ),
                });
            }
            if list.is_empty() {
                return Err(ServiceError::Invalid {
                    field: "allowed_updates",
                    message: "must name at least one update type, or be null for every type".into(),
                });
            }
        }
        let bot = self.visible_bot(principal, id).await?;
        let mut allowed = allowed;
        if let Some(list) = &mut allowed {
            list.sort();
            list.dedup();
        }
        if bot.mode == BotMode::Webhook
            && let Some(url) = &bot.webhook_url
            && let Some(base) = url.strip_suffix(&format!("/telegram/webhook/{id}"))
        {
            let token = self.token_of(&bot)?;
            let (url, secret_sealed) = self
                .register_webhook_at(&token, id, base, allowed.as_deref())
                .await?;
            self.store
                .set_bot_webhook(
                    id,
                    BotMode::Webhook,
                    Some(&url),
                    Some(&secret_sealed),
                    now_millis(),
                )
                .await?;
        }
        self.store
            .set_bot_allowed_updates(id, allowed.as_deref(), now_millis())
            .await?;
        tracing::info!(bot_id = id, allowed_updates = ?allowed, "bot's update types set");
        self.visible_bot(principal, id).await
    }

    /// Removes a bot: deletes its webhook at Telegram (best effort), then the record.
    pub async fn delete_bot(&self, principal: &Principal, id: &str) -> ServiceResult<()> {
        let bot = self.visible_bot(principal, id).await?;
        let token = self.token_of(&bot)?;
        if let Err(e) = self.telegram.delete_webhook(&token, false).await {
            tracing::warn!(bot_id = id, error = %e, "deleteWebhook failed; removing the bot anyway");
        }
        self.store.delete_bot(id).await?;
        tracing::info!(bot_id = id, "bot removed");
        Ok(())
    }

    /// Registers the bot's webhook again at `base_url` or the configured public URL.
    pub async fn register_webhook(
        &self,
        principal: &Principal,
        id: &str,
        base_url: Option<&str>,
    ) -> ServiceResult<BotRecord> {
        let base = match base_url {
            Some(url) => validate_base_url(url)?,
            None => self.public_url.clone().ok_or(ServiceError::NoPublicUrl)?,
        };
        let bot = self.visible_bot(principal, id).await?;
        let token = self.token_of(&bot)?;
        let (url, secret_sealed) = self
            .register_webhook_at(&token, id, &base, bot.allowed_updates.as_deref())
            .await?;
        self.store
            .set_bot_webhook(
                id,
                BotMode::Webhook,
                Some(&url),
                Some(&secret_sealed),
                now_millis(),
            )
            .await?;
        tracing::info!(bot_id = id, webhook_url = %url, "webhook registered");
        self.visible_bot(principal, id).await
    }
}

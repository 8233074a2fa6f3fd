//! The rules of linking, for the API (tokens, codes, links, categories) and for the Telegram
//! side (`/start <token or code>`, `/settings`, `/stop`, blocking, migration), which the
//! inbound router calls. Every change to a link is emitted as an event
//! (`link.created`, `link.updated`, `link.removed`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{
    CODE_LEN, DEFAULT_TTL_SECONDS, LinkView, MAX_METADATA_BYTES, MAX_TTL_SECONDS, MIN_TTL_SECONDS,
    TOKEN_LEN, TokenStatus, deep_link, group_link, hash_token, looks_like_code, new_code, opted_in,
    parse_category_key, parse_clock_time, parse_timezone,
};
use crate::ids::{new_id, random_token};
use crate::services::{Principal, ServiceError, ServiceResult, Services};
use crate::store::{
    BotRecord, CancelReason, CategoryRecord, ChatState, ConnectCodeRecord, LinkFilter, LinkRecord,
    LinkTokenRecord, LinkWrite, Listed, Page, StoreError, TextKey,
};
use crate::telegram::{BotToken, TelegramError};

/// Callback data prefix of the `/settings` buttons: `rg:cat:<category id>:on|off` (at most 41 bytes,
/// within Telegram's 64).
pub const SETTINGS_BUTTON: &str = "rg:cat:";

// What the bot says is the app's to word (crate::texts): linking names the reply by its key.
const NOT_LINKED: &str = "This chat is not linked yet. Open the link from the app to connect it.";

/// The chat an update came from.
#[derive(Debug, Clone, Copy)]
pub struct ChatRef<'a> {
    /// Telegram chat id.
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    pub kind: &'a str,
    /// The Telegram user who sent the command.
    pub user_id: Option<i64>,
}

/// What a `/start <payload>` or `/link <payload>` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// A token or code was recognised; reply with the text `reply`. `outcome` goes to the
    /// update log.
    Known {
        /// What the bot says.
        reply: TextKey,
        /// What happened, for the audit log.
        outcome: String,
    },
    /// Neither a token nor a code relaygram knows: the app may have its own payloads
    /// (`/link` answers [`TextKey::LinkUnknown`]).
    Unknown,
}

fn known(reply: TextKey, outcome: impl Into<String>) -> Redeemed {
    Redeemed::Known {
        reply,
        outcome: outcome.into(),
    }
}

/// What `/settings` shows.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingsView {
    /// The chat has no link.
    NotLinked(String),
    /// The tenant has no categories.
    NoCategories(String),
    /// A text and an inline keyboard of the categories.
    Menu {
        /// Message text.
        text: String,
        /// `reply_markup`.
        keyboard: Value,
    },
}

/// What pressing a `/settings` button did.
#[derive(Debug, Clone, PartialEq)]
pub struct Toggled {
    /// The answer shown to the user (`answerCallbackQuery` text).
    pub answer: String,
    /// The new keyboard for the settings message, when something changed.
    pub keyboard: Option<Value>,
    /// For the audit log.
    pub outcome: String,
}

/// A new link token as the app asks for it.
#[derive(Debug, Clone, Default)]
pub struct NewLinkToken {
    /// The bot the user will open.
    pub bot_id: String,
    /// The app's user id.
    pub external_id: String,
    /// Category keys to turn on at link time.
    pub categories: Vec<String>,
    /// Lifetime in seconds (default 900).
    pub ttl_seconds: Option<u64>,
    /// A JSON object copied to the link.
    pub metadata: Option<Value>,
    /// Allow linking a chat already linked for another app user.
    pub allow_shared_chat: bool,
}

/// A link token just made: the token is in clear only here.
#[derive(Debug, Clone)]
pub struct CreatedLinkToken {
    /// The stored record.
    pub record: LinkTokenRecord,
    /// The token.
    pub token: String,
    /// `t.me/<bot>?start=<token>`.
    pub deep_link: String,
    /// `t.me/<bot>?startgroup=<token>`.
    pub group_link: String,
}

/// A link token and where it stands.
#[derive(Debug, Clone)]
pub struct LinkTokenState {
    /// The stored record.
    pub record: LinkTokenRecord,
    /// Pending, used or expired (by the services' clock).
    pub status: TokenStatus,
    /// The link it made, while that link exists.
    pub link: Option<LinkView>,
}

/// A new category.
#[derive(Debug, Clone, Default)]
pub struct NewCategory {
    /// Tenant (required with an admin key).
    pub tenant_id: Option<String>,
    /// Key.
    pub key: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Default on (true when absent).
    pub default_enabled: Option<bool>,
    /// Cannot be turned off (false when absent).
    pub mandatory: Option<bool>,
}

/// Changes to a category; `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct CategoryPatch {
    /// Display name.
    pub name: Option<String>,
    /// Description (`Some(None)` clears it).
    pub description: Option<Option<String>>,
    /// Default on.
    pub default_enabled: Option<bool>,
    /// Cannot be turned off.
    pub mandatory: Option<bool>,
}

/// Changes to a link; `None` keeps the value, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct LinkPatch {
    /// Category preferences to set.
    pub categories: Option<BTreeMap<String, bool>>,
    /// IANA time zone.
    pub timezone: Option<Option<String>>,
    /// Quiet hours start.
    pub quiet_start: Option<Option<String>>,
    /// Quiet hours end.
    pub quiet_end: Option<Option<String>>,
    /// Metadata object.
    pub metadata: Option<Option<Value>>,
}

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

fn not_found(kind: &'static str, id: &str) -> ServiceError {
    ServiceError::NotFound {
        kind,
        id: id.to_string(),
    }
}

fn text_field(field: &'static str, value: &str, max: usize) -> ServiceResult<String> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(invalid(field, format!("must be 1 to {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(value.to_string())
}

fn metadata_text(value: Option<&Value>) -> ServiceResult<Option<String>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) => {
            let text = v.to_string();
            if text.len() > MAX_METADATA_BYTES {
                return Err(invalid(
                    "metadata",
                    format!("must be at most {MAX_METADATA_BYTES} bytes of JSON"),
                ));
            }
            Ok(Some(text))
        }
        Some(_) => Err(invalid("metadata", "must be a JSON object")),
    }
}

fn prefs_map(rows: Vec<(String, bool)>) -> BTreeMap<String, bool> {
    rows.into_iter().collect()
}

impl Services {
    // ---- tenants and scoping -------------------------------------------------------------

    /// The tenant a new resource belongs to: the key's own, or `asked` for admin keys.
    async fn owning_tenant(
        &self,
        principal: &Principal,
        asked: Option<&str>,
    ) -> ServiceResult<String> {
        match (principal.tenant(), asked) {
            (Some(own), None) => Ok(own.to_string()),
            (Some(own), Some(a)) if own == a => Ok(own.to_string()),
            (Some(_), Some(a)) => Err(not_found("tenant", a)),
            (None, None) => Err(invalid("tenant_id", "is required with an admin key")),
            (None, Some(a)) => Ok(self.visible_tenant(principal, a).await?.id),
        }
    }

    /// The tenant filter of a list: `Err(())` when a tenant key asks for another tenant.
    fn list_scope(principal: &Principal, asked: Option<String>) -> Result<Option<String>, ()> {
        match (principal.tenant(), asked) {
            (Some(own), Some(a)) if a != own => Err(()),
            (Some(own), _) => Ok(Some(own.to_string())),
            (None, asked) => Ok(asked),
        }
    }

    async fn known_categories(
        &self,
        tenant_id: &str,
        keys: &[String],
    ) -> ServiceResult<Vec<String>> {
        let all = self.store.tenant_categories(tenant_id).await?;
        let mut out: Vec<String> = Vec::new();
        for key in keys {
            let key = parse_category_key("categories", key)?;
            if !all.iter().any(|c| c.key == key) {
                return Err(invalid(
                    "categories",
                    format!("no category {key:?}: create it with POST /v1/categories first"),
                ));
            }
            if !out.contains(&key) {
                out.push(key);
            }
        }
        Ok(out)
    }

    // ---- categories ------------------------------------------------------------------------

    /// Creates a category.
    pub async fn create_category(
        &self,
        principal: &Principal,
        new: NewCategory,
    ) -> ServiceResult<CategoryRecord> {
        let tenant_id = self
            .owning_tenant(principal, new.tenant_id.as_deref())
            .await?;
        let now = self.clock.now_millis();
        let category = CategoryRecord {
            id: new_id("cat"),
            tenant_id,
            key: parse_category_key("key", &new.key)?,
            name: text_field("name", &new.name, 64)?,
            description: new
                .description
                .as_deref()
                .map(|d| text_field("description", d, 512))
                .transpose()?,
            default_enabled: new.default_enabled.unwrap_or(true),
            mandatory: new.mandatory.unwrap_or(false),
            created_at: now,
            updated_at: now,
        };
        self.store
            .insert_category(&category)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(d) => ServiceError::Conflict(d),
                other => other.into(),
            })?;
        Ok(category)
    }

    /// Categories visible to the principal.
    pub async fn list_categories(
        &self,
        principal: &Principal,
        tenant_id: Option<String>,
        page: &Page,
    ) -> ServiceResult<Listed<CategoryRecord>> {
        match Self::list_scope(principal, tenant_id) {
            Ok(scope) => Ok(self.store.list_categories(scope.as_deref(), page).await?),
            Err(()) => Ok(Listed {
                items: vec![],
                next_cursor: None,
            }),
        }
    }

    /// One category.
    pub async fn get_category(
        &self,
        principal: &Principal,
        id: &str,
    ) -> ServiceResult<CategoryRecord> {
        self.store
            .get_category(id)
            .await?
            .filter(|c| principal.can_access(&c.tenant_id))
            .ok_or_else(|| not_found("category", id))
    }

    /// Changes a category (its key stays).
    pub async fn update_category(
        &self,
        principal: &Principal,
        id: &str,
        patch: CategoryPatch,
    ) -> ServiceResult<CategoryRecord> {
        let mut c = self.get_category(principal, id).await?;
        if let Some(name) = patch.name {
            c.name = text_field("name", &name, 64)?;
        }
        if let Some(description) = patch.description {
            c.description = description
                .as_deref()
                .map(|d| text_field("description", d, 512))
                .transpose()?;
        }
        if let Some(d) = patch.default_enabled {
            c.default_enabled = d;
        }
        if let Some(m) = patch.mandatory {
            c.mandatory = m;
        }
        c.updated_at = self.clock.now_millis();
        if !self.store.update_category(&c).await? {
            return Err(not_found("category", id));
        }
        Ok(c)
    }

    /// Deletes a category and the links' preferences for it.
    pub async fn delete_category(&self, principal: &Principal, id: &str) -> ServiceResult<()> {
        self.get_category(principal, id).await?;
        self.store.delete_category(id).await?;
        Ok(())
    }

    // ---- link tokens -----------------------------------------------------------------------

    /// Makes a single-use link token for an app user.
    pub async fn create_link_token(
        &self,
        principal: &Principal,
        new: NewLinkToken,
    ) -> ServiceResult<CreatedLinkToken> {
        let bot = self.get_bot_record(principal, &new.bot_id).await?;
        let external_id = text_field("external_id", &new.external_id, 200)?;
        let ttl = new.ttl_seconds.unwrap_or(DEFAULT_TTL_SECONDS);
        if !(MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&ttl) {
            return Err(invalid(
                "ttl_seconds",
                format!("must be between {MIN_TTL_SECONDS} and {MAX_TTL_SECONDS}"),
            ));
        }
        let categories = self
            .known_categories(&bot.tenant_id, &new.categories)
            .await?;
        let metadata = metadata_text(new.metadata.as_ref())?;
        let token = random_token(TOKEN_LEN);
        let now = self.clock.now_millis();
        let record = LinkTokenRecord {
            id: new_id("ltk"),
            tenant_id: bot.tenant_id.clone(),
            bot_id: bot.id.clone(),
            token_hash: hash_token(&token),
            token_sealed: self.secrets.seal(&token),
            external_id,
            categories,
            metadata,
            allow_shared_chat: new.allow_shared_chat,
            expires_at: now + i64::try_from(ttl).unwrap_or(0) * 1000,
            used_at: None,
            link_id: None,
            created_at: now,
        };
        self.store.insert_link_token(&record).await?;
        tracing::info!(token_id = %record.id, bot_id = %bot.id, "link token created");
        Ok(CreatedLinkToken {
            deep_link: deep_link(&bot.username, &token),
            group_link: group_link(&bot.username, &token),
            record,
            token,
        })
    }

    fn token_status(&self, t: &LinkTokenRecord) -> TokenStatus {
        if t.used_at.is_some() {
            TokenStatus::Used
        } else if t.expires_at <= self.clock.now_millis() {
            TokenStatus::Expired
        } else {
            TokenStatus::Pending
        }
    }

    /// A link token and where it stands.
    pub async fn get_link_token(
        &self,
        principal: &Principal,
        id: &str,
    ) -> ServiceResult<LinkTokenState> {
        let record = self
            .store
            .get_link_token(id)
            .await?
            .filter(|t| principal.can_access(&t.tenant_id))
            .ok_or_else(|| not_found("link token", id))?;
        let link = match &record.link_id {
            Some(link_id) => match self.store.get_link(link_id).await? {
                Some(l) => Some(self.link_view(l).await?),
                None => None,
            },
            None => None,
        };
        Ok(LinkTokenState {
            status: self.token_status(&record),
            record,
            link,
        })
    }

    /// The token's deep link drawn as an SVG QR code.
    pub async fn link_token_qr(&self, principal: &Principal, id: &str) -> ServiceResult<String> {
        let state = self.get_link_token(principal, id).await?;
        if state.status != TokenStatus::Pending {
            return Err(ServiceError::Conflict(format!(
                "the link token is {}: make a new one",
                match state.status {
                    TokenStatus::Used => "used",
                    _ => "expired",
                }
            )));
        }
        let bot = self
            .store
            .get_bot(&state.record.bot_id)
            .await?
            .ok_or_else(|| not_found("bot", &state.record.bot_id))?;
        let token = self.secrets.open(&state.record.token_sealed)?;
        let url = deep_link(&bot.username, secrecy::ExposeSecret::expose_secret(&token));
        let code = qrcode::QrCode::new(url.as_bytes())
            .map_err(|e| ServiceError::Store(StoreError::Corrupt(format!("QR code: {e}"))))?;
        Ok(code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(256, 256)
            .quiet_zone(true)
            .build())
    }

    // ---- connect codes ---------------------------------------------------------------------

    /// Makes a team connect code for a bot.
    pub async fn create_connect_code(
        &self,
        principal: &Principal,
        bot_id: &str,
        label: Option<&str>,
        categories: &[String],
    ) -> ServiceResult<(ConnectCodeRecord, BotRecord)> {
        let bot = self.get_bot_record(principal, bot_id).await?;
        let label = label.map(|l| text_field("label", l, 200)).transpose()?;
        let categories = self.known_categories(&bot.tenant_id, categories).await?;
        let now = self.clock.now_millis();
        let mut record = ConnectCodeRecord {
            id: new_id("ccd"),
            tenant_id: bot.tenant_id.clone(),
            bot_id: bot.id.clone(),
            code: new_code(),
            label,
            categories,
            revoked_at: None,
            created_at: now,
            updated_at: now,
            subscriber_count: 0,
        };
        // 31^8 codes: a collision is rare; try a few times rather than fail.
        for attempt in 0.. {
            match self.store.insert_connect_code(&record).await {
                Ok(()) => break,
                Err(StoreError::Conflict(_)) if attempt < 5 => record.code = new_code(),
                Err(e) => return Err(e.into()),
            }
        }
        Ok((record, bot))
    }

    /// One connect code with its bot.
    pub async fn get_connect_code(
        &self,
        principal: &Principal,
        id: &str,
    ) -> ServiceResult<(ConnectCodeRecord, BotRecord)> {
        let code = self
            .store
            .get_connect_code(id)
            .await?
            .filter(|c| principal.can_access(&c.tenant_id))
            .ok_or_else(|| not_found("connect code", id))?;
        let bot = self
            .store
            .get_bot(&code.bot_id)
            .await?
            .ok_or_else(|| not_found("bot", &code.bot_id))?;
        Ok((code, bot))
    }

    /// Connect codes visible to the principal, with their bots.
    pub async fn list_connect_codes(
        &self,
        principal: &Principal,
        tenant_id: Option<String>,
        bot_id: Option<&str>,
        page: &Page,
    ) -> ServiceResult<Listed<(ConnectCodeRecord, BotRecord)>> {
        let Ok(scope) = Self::list_scope(principal, tenant_id) else {
            return Ok(Listed {
                items: vec![],
                next_cursor: None,
            });
        };
        let listed = self
            .store
            .list_connect_codes(scope.as_deref(), bot_id, page)
            .await?;
        let mut items = Vec::with_capacity(listed.items.len());
        for code in listed.items {
            if let Some(bot) = self.store.get_bot(&code.bot_id).await? {
                items.push((code, bot));
            }
        }
        Ok(Listed {
            items,
            next_cursor: listed.next_cursor,
        })
    }

    /// Gives a connect code a new code; the old one stops working, subscribers stay.
    pub async fn rotate_connect_code(
        &self,
        principal: &Principal,
        id: &str,
    ) -> ServiceResult<(ConnectCodeRecord, BotRecord)> {
        let (mut code, bot) = self.get_connect_code(principal, id).await?;
        if code.revoked_at.is_some() {
            return Err(ServiceError::Conflict(
                "the connect code is revoked; make a new one".into(),
            ));
        }
        code.updated_at = self.clock.now_millis();
        for attempt in 0.. {
            code.code = new_code();
            match self.store.update_connect_code(&code).await {
                Ok(_) => break,
                Err(StoreError::Conflict(_)) if attempt < 5 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok((code, bot))
    }

    /// Revokes a connect code: no new chat can join with it; its subscribers stay linked.
    pub async fn revoke_connect_code(
        &self,
        principal: &Principal,
        id: &str,
    ) -> ServiceResult<(ConnectCodeRecord, BotRecord)> {
        let (mut code, bot) = self.get_connect_code(principal, id).await?;
        if code.revoked_at.is_none() {
            let now = self.clock.now_millis();
            code.revoked_at = Some(now);
            code.updated_at = now;
            self.store.update_connect_code(&code).await?;
        }
        Ok((code, bot))
    }

    // ---- links (API) -----------------------------------------------------------------------

    /// A link with the tenant's categories and its preferences.
    pub async fn link_view(&self, link: LinkRecord) -> ServiceResult<LinkView> {
        let categories = self.store.tenant_categories(&link.tenant_id).await?;
        let prefs = prefs_map(self.store.link_preferences(&link.id).await?);
        Ok(LinkView::new(link, &categories, &prefs))
    }

    async fn visible_link(&self, principal: &Principal, id: &str) -> ServiceResult<LinkRecord> {
        let link = match principal.tenant() {
            Some(own) => self.store.get_tenant_link(own, id).await?,
            None => self.store.get_link(id).await?,
        };
        link.ok_or_else(|| not_found("link", id))
    }

    /// Links visible to the principal matching `filter`.
    pub async fn list_links(
        &self,
        principal: &Principal,
        mut filter: LinkFilter,
        page: &Page,
    ) -> ServiceResult<Listed<LinkView>> {
        match Self::list_scope(principal, filter.tenant_id.take()) {
            Ok(scope) => filter.tenant_id = scope,
            Err(()) => {
                return Ok(Listed {
                    items: vec![],
                    next_cursor: None,
                });
            }
        }
        // A category the tenant does not have is a typo, not an empty audience.
        if let (Some(tenant), Some(key)) = (&filter.tenant_id, &filter.category)
            && !self.store.category_exists(tenant, key).await?
        {
            return Err(ServiceError::InvalidQuery {
                field: "category",
                message: format!("no category {key:?} in this tenant"),
            });
        }
        let listed = self.store.list_links(&filter, page).await?;
        let mut items = Vec::with_capacity(listed.items.len());
        for link in listed.items {
            items.push(self.link_view(link).await?);
        }
        Ok(Listed {
            items,
            next_cursor: listed.next_cursor,
        })
    }

    /// The subscribers of a connect code.
    pub async fn connect_code_subscribers(
        &self,
        principal: &Principal,
        id: &str,
        page: &Page,
    ) -> ServiceResult<Listed<LinkView>> {
        let (code, _) = self.get_connect_code(principal, id).await?;
        let filter = LinkFilter {
            tenant_id: Some(code.tenant_id),
            connect_code_id: Some(code.id),
            ..LinkFilter::default()
        };
        self.list_links(principal, filter, page).await
    }

    /// One link.
    pub async fn get_link(&self, principal: &Principal, id: &str) -> ServiceResult<LinkView> {
        let link = self.visible_link(principal, id).await?;
        self.link_view(link).await
    }

    /// Changes a link's preferences, quiet hours or metadata.
    pub async fn update_link(
        &self,
        principal: &Principal,
        id: &str,
        patch: LinkPatch,
    ) -> ServiceResult<LinkView> {
        let mut link = self.visible_link(principal, id).await?;
        let categories = self.store.tenant_categories(&link.tenant_id).await?;
        let mut prefs: Vec<(String, bool)> = Vec::new();
        if let Some(asked) = &patch.categories {
            for (key, enabled) in asked {
                let category = categories.iter().find(|c| &c.key == key).ok_or_else(|| {
                    invalid("categories", format!("no category {key:?} in this tenant"))
                })?;
                if category.mandatory && !enabled {
                    return Err(invalid(
                        "categories",
                        format!("{key:?} is mandatory: it cannot be turned off"),
                    ));
                }
                prefs.push((key.clone(), *enabled));
            }
        }
        if let Some(tz) = patch.timezone {
            link.timezone = tz.as_deref().map(parse_timezone).transpose()?;
        }
        if let Some(q) = patch.quiet_start {
            link.quiet_start = q
                .as_deref()
                .map(|t| parse_clock_time("quiet_start", t))
                .transpose()?;
        }
        if let Some(q) = patch.quiet_end {
            link.quiet_end = q
                .as_deref()
                .map(|t| parse_clock_time("quiet_end", t))
                .transpose()?;
        }
        if link.quiet_start.is_some() != link.quiet_end.is_some() {
            return Err(invalid(
                "quiet_end",
                "set quiet_start and quiet_end together (or clear both)",
            ));
        }
        if let Some(m) = patch.metadata {
            link.metadata = metadata_text(m.as_ref())?;
        }
        let now = self.clock.now_millis();
        link.updated_at = now;
        // Its held messages are re-planned with the link, in one transaction: cleared
        // quiet hours release them now, a changed window or zone moves their ends.
        let replan = |c: &crate::store::HoldCandidate| crate::delivery::hold::hold_for(c, now);
        let Some(replanned) = self
            .store
            .update_link_replanning(&link, &replan, now)
            .await?
        else {
            return Err(not_found("link", id));
        };
        if replanned > 0 {
            // The sender may be asleep until an old end: let it look at the new ones.
            crate::delivery::sender::wake();
        }
        if !prefs.is_empty() {
            self.store
                .set_link_preferences(&link.id, &prefs, now)
                .await?;
        }
        let view = self.link_view(link).await?;
        self.emit_link("link.updated", &view, "api").await?;
        Ok(view)
    }

    /// Unlinks: the link is deleted, the chat is told (when it can still be reached) and
    /// `link.removed` is emitted.
    pub async fn delete_link(&self, principal: &Principal, id: &str) -> ServiceResult<()> {
        let link = self.visible_link(principal, id).await?;
        let view = self.link_view(link.clone()).await?;
        // What was still waiting for the link is cancelled with it: the app withdrew it.
        let ended = self
            .store
            .delete_links(
                std::slice::from_ref(&link.id),
                CancelReason::LinkDeleted,
                self.clock.now_millis(),
            )
            .await?;
        crate::events::notify(ended.cancelled.deliveries);
        if link.active
            && let Some(bot) = self.store.get_bot(&link.bot_id).await?
        {
            let text = format!(
                "This chat was unlinked by the app. You will no longer get its notifications \
                 here from {}.",
                bot.first_name
            );
            let sent = match self.token_of(&bot) {
                Ok(token) => self
                    .send_text(&token, link.chat_id, &text)
                    .await
                    .map(|_| ()),
                Err(e) => Err(TelegramError::BadRequest(e.to_string())),
            };
            if let Err(e) = sent {
                tracing::info!(link_id = %link.id, error = %e, "could not tell the chat about the unlink");
            }
        }
        self.emit_link("link.removed", &view, "api").await?;
        Ok(())
    }

    /// Sends a test message to the link's chat; returns Telegram's `message_id`.
    pub async fn test_link(&self, principal: &Principal, id: &str) -> ServiceResult<i64> {
        let link = self.visible_link(principal, id).await?;
        if !link.active {
            return Err(ServiceError::Conflict(
                "the link is inactive (the user blocked the bot or the bot left the chat)".into(),
            ));
        }
        let bot = self
            .store
            .get_bot(&link.bot_id)
            .await?
            .ok_or_else(|| not_found("bot", &link.bot_id))?;
        let token = self.token_of(&bot)?;
        let text = format!(
            "This is a test message from {}. Notifications to this chat work.",
            bot.first_name
        );
        match self.send_text(&token, link.chat_id, &text).await {
            Ok(sent) => Ok(sent["message_id"].as_i64().unwrap_or_default()),
            Err(e @ TelegramError::ChatGone(_)) => {
                self.chat_gone(
                    &bot.id,
                    link.chat_id,
                    ChatState::gone(&e.description()),
                    "unreachable",
                )
                .await?;
                Err(ServiceError::Conflict(format!(
                    "Telegram says the chat is gone ({e}); the link is now inactive"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn send_text(
        &self,
        token: &BotToken,
        chat_id: i64,
        text: &str,
    ) -> Result<Value, TelegramError> {
        self.telegram
            .call::<_, Value>(
                token,
                "sendMessage",
                &json!({"chat_id": chat_id, "text": text}),
            )
            .await
    }

    async fn emit_link(&self, kind: &str, view: &LinkView, reason: &str) -> ServiceResult<()> {
        let data = json!({"link": view, "reason": reason});
        crate::events::emit(&*self.store, &view.tenant_id, kind, data).await?;
        Ok(())
    }

    // ---- the Telegram side -----------------------------------------------------------------

    /// Whether the bot is an administrator (or the creator) of a group or channel.
    async fn bot_is_admin(&self, bot: &BotRecord, chat_id: i64) -> ServiceResult<bool> {
        let token = self.token_of(bot)?;
        let member: Value = self
            .telegram
            .call(
                &token,
                "getChatMember",
                &json!({"chat_id": chat_id, "user_id": bot.telegram_id}),
            )
            .await?;
        Ok(matches!(
            member["status"].as_str(),
            Some("administrator" | "creator")
        ))
    }

    /// `/start <payload>` or `/link <payload>` in a chat: a link token or a connect code.
    pub async fn redeem(
        &self,
        bot: &BotRecord,
        chat: ChatRef<'_>,
        payload: &str,
    ) -> ServiceResult<Redeemed> {
        let payload = payload.trim();
        if payload.len() <= 64
            && let Some(token) = self.store.find_link_token(&hash_token(payload)).await?
        {
            return self.redeem_token(bot, chat, token).await;
        }
        if payload.len() == CODE_LEN && looks_like_code(payload) {
            let upper = payload.to_ascii_uppercase();
            if let Some(code) = self.store.find_connect_code(&upper).await? {
                return self.redeem_code(bot, chat, code).await;
            }
        }
        Ok(Redeemed::Unknown)
    }

    async fn redeem_token(
        &self,
        bot: &BotRecord,
        chat: ChatRef<'_>,
        token: LinkTokenRecord,
    ) -> ServiceResult<Redeemed> {
        if token.tenant_id != bot.tenant_id {
            return Ok(known(
                TextKey::LinkNotForThisBot,
                "another tenant's link token: refused",
            ));
        }
        if token.bot_id != bot.id {
            return Ok(known(
                TextKey::LinkNotForThisBot,
                "a link token for another bot: refused",
            ));
        }
        match self.token_status(&token) {
            TokenStatus::Used => return Ok(known(TextKey::LinkUsed, "a used link token: refused")),
            TokenStatus::Expired => {
                return Ok(known(
                    TextKey::LinkExpired,
                    "an expired link token: refused",
                ));
            }
            TokenStatus::Pending => {}
        }
        let group = chat.kind != "private";
        if group && !self.bot_is_admin(bot, chat.id).await? {
            return Ok(known(
                TextKey::BotNotAdmin,
                "the bot is not an administrator of the group: token kept",
            ));
        }
        let existing = self.store.chat_links(&bot.id, chat.id).await?;
        let mine = existing
            .iter()
            .find(|l| l.external_id.as_deref() == Some(token.external_id.as_str()));
        let taken = existing.iter().any(|l| {
            l.active
                && l.external_id.is_some()
                && l.external_id.as_deref() != Some(token.external_id.as_str())
        });
        if taken && !token.allow_shared_chat {
            return Ok(known(
                TextKey::ChatLinkedToAnother,
                "the chat is linked to another app user: token kept",
            ));
        }
        let now = self.clock.now_millis();
        let (link, how) = match mine {
            Some(l) => {
                let mut l = l.clone();
                l.active = true;
                l.chat_type = chat.kind.to_string();
                l.telegram_user_id = chat.user_id.or(l.telegram_user_id);
                l.metadata = token.metadata.clone().or(l.metadata);
                l.updated_at = now;
                (l, LinkWrite::Reactivate)
            }
            None => (
                LinkRecord {
                    id: new_id("link"),
                    tenant_id: bot.tenant_id.clone(),
                    bot_id: bot.id.clone(),
                    external_id: Some(token.external_id.clone()),
                    chat_id: chat.id,
                    chat_type: chat.kind.to_string(),
                    active: true,
                    source: "token".into(),
                    connect_code_id: None,
                    link_token_id: Some(token.id.clone()),
                    telegram_user_id: chat.user_id,
                    metadata: token.metadata.clone(),
                    timezone: None,
                    quiet_start: None,
                    quiet_end: None,
                    created_at: now,
                    updated_at: now,
                },
                LinkWrite::Insert,
            ),
        };
        if !self
            .store
            .write_link(&link, how, &token.categories, Some(&token.id), now)
            .await?
        {
            // Another chat used it (or it expired) in the meantime.
            return Ok(known(TextKey::LinkUsed, "a used link token: refused"));
        }
        let view = self.link_view(link).await?;
        match how {
            LinkWrite::Insert => self.emit_link("link.created", &view, "token").await?,
            LinkWrite::Reactivate => self.emit_link("link.updated", &view, "relinked").await?,
        }
        tracing::info!(link_id = %view.id, token_id = %token.id, "chat linked with a token");
        Ok(known(
            if group {
                TextKey::GroupLinked
            } else {
                TextKey::Linked
            },
            format!("linked chat {} as {}", chat.id, view.id),
        ))
    }

    async fn redeem_code(
        &self,
        bot: &BotRecord,
        chat: ChatRef<'_>,
        code: ConnectCodeRecord,
    ) -> ServiceResult<Redeemed> {
        if code.tenant_id != bot.tenant_id {
            return Ok(known(
                TextKey::LinkNotForThisBot,
                "another tenant's connect code: refused",
            ));
        }
        if code.bot_id != bot.id {
            return Ok(known(
                TextKey::LinkNotForThisBot,
                "a connect code for another bot: refused",
            ));
        }
        if code.revoked_at.is_some() {
            return Ok(known(
                TextKey::CodeRevoked,
                "a revoked connect code: refused",
            ));
        }
        let group = chat.kind != "private";
        if group && !self.bot_is_admin(bot, chat.id).await? {
            return Ok(known(
                TextKey::BotNotAdmin,
                "the bot is not an administrator of the group: nothing changed",
            ));
        }
        let existing = self.store.chat_links(&bot.id, chat.id).await?;
        let now = self.clock.now_millis();
        let (link, how) = match existing
            .iter()
            .find(|l| l.connect_code_id.as_deref() == Some(code.id.as_str()))
        {
            Some(l) if l.active => {
                return Ok(known(
                    TextKey::CodeAlreadyConnected,
                    "already connected with this code",
                ));
            }
            Some(l) => {
                let mut l = l.clone();
                l.active = true;
                l.updated_at = now;
                (l, LinkWrite::Reactivate)
            }
            None => (
                LinkRecord {
                    id: new_id("link"),
                    tenant_id: bot.tenant_id.clone(),
                    bot_id: bot.id.clone(),
                    external_id: None,
                    chat_id: chat.id,
                    chat_type: chat.kind.to_string(),
                    active: true,
                    source: "code".into(),
                    connect_code_id: Some(code.id.clone()),
                    link_token_id: None,
                    telegram_user_id: chat.user_id,
                    metadata: None,
                    timezone: None,
                    quiet_start: None,
                    quiet_end: None,
                    created_at: now,
                    updated_at: now,
                },
                LinkWrite::Insert,
            ),
        };
        self.store
            .write_link(&link, how, &code.categories, None, now)
            .await?;
        let view = self.link_view(link).await?;
        match how {
            LinkWrite::Insert => self.emit_link("link.created", &view, "code").await?,
            LinkWrite::Reactivate => self.emit_link("link.updated", &view, "relinked").await?,
        }
        Ok(known(
            if group {
                TextKey::GroupLinked
            } else {
                TextKey::CodeConnected
            },
            format!(
                "connected chat {} with code {} as {}",
                chat.id, code.id, view.id
            ),
        ))
    }

    /// Makes the chat's links active or inactive (blocked, unblocked, the bot removed from
    /// or added back to a group); emits `link.updated` for each that changed.
    pub async fn set_chat_active(
        &self,
        bot: &BotRecord,
        chat_id: i64,
        active: bool,
        reason: &str,
    ) -> ServiceResult<usize> {
        let changed = self
            .store
            .set_chat_links_active(&bot.id, chat_id, active, self.clock.now_millis())
            .await?;
        for link in &changed {
            let view = self.link_view(link.clone()).await?;
            self.emit_link("link.updated", &view, reason).await?;
        }
        Ok(changed.len())
    }

    /// A group became a supergroup: its links follow the new chat id.
    pub async fn follow_migration(
        &self,
        bot: &BotRecord,
        from: i64,
        to: i64,
    ) -> ServiceResult<usize> {
        let moved = self
            .store
            .migrate_chat_links(&bot.id, from, to, self.clock.now_millis())
            .await?;
        for link in &moved {
            let view = self.link_view(link.clone()).await?;
            self.emit_link("link.updated", &view, "migrated").await?;
        }
        Ok(moved.len())
    }

    /// `/stop` confirmed: every link of the chat is removed, and what was waiting for them
    /// (and, in a private chat, the app's messages to it by `chat_id`) is cancelled in the
    /// same transaction.
    pub async fn stop_chat(&self, bot: &BotRecord, chat_id: i64) -> ServiceResult<usize> {
        let links = self.store.chat_links(&bot.id, chat_id).await?;
        let mut views = Vec::with_capacity(links.len());
        for link in &links {
            views.push(self.link_view(link.clone()).await?);
        }
        let ids: Vec<String> = links.iter().map(|l| l.id.clone()).collect();
        let ended = self
            .store
            .delete_links(&ids, CancelReason::StoppedByUser, self.clock.now_millis())
            .await?;
        crate::events::notify(ended.cancelled.deliveries);
        for view in views
            .iter()
            .filter(|v| ended.deleted.iter().any(|l| l.id == v.id))
        {
            self.emit_link("link.removed", view, "stop").await?;
        }
        Ok(ended.deleted.len())
    }

    /// The bot can no longer write to a chat (`blocked`, `kicked`, `left`): the chat takes
    /// that state, its links become inactive (`link.updated` with `reason`) and everything
    /// waiting for it is cancelled, in one transaction.
    pub async fn chat_gone(
        &self,
        bot_id: &str,
        chat_id: i64,
        state: ChatState,
        reason: &str,
    ) -> ServiceResult<usize> {
        let ended = self
            .store
            .chat_gone(bot_id, chat_id, state, self.clock.now_millis())
            .await?;
        crate::events::notify(ended.cancelled.deliveries);
        if ended.cancelled.messages > 0 {
            tracing::info!(
                bot_id,
                chat_id,
                cancelled = ended.cancelled.messages,
                "chat gone: its waiting messages were cancelled"
            );
        }
        for link in &ended.deactivated {
            let view = self.link_view(link.clone()).await?;
            self.emit_link("link.updated", &view, reason).await?;
        }
        Ok(ended.deactivated.len())
    }

    /// The chat's settings: the state shown is the first active link's (a chat usually has
    /// one); a toggle applies to every link of the chat.
    async fn chat_state(
        &self,
        bot: &BotRecord,
        chat_id: i64,
    ) -> ServiceResult<Option<(Vec<LinkRecord>, BTreeMap<String, bool>)>> {
        let links = self.store.chat_links(&bot.id, chat_id).await?;
        let Some(first) = links.iter().find(|l| l.active).or(links.first()) else {
            return Ok(None);
        };
        let prefs = prefs_map(self.store.link_preferences(&first.id).await?);
        Ok(Some((links, prefs)))
    }

    fn settings_keyboard(categories: &[CategoryRecord], prefs: &BTreeMap<String, bool>) -> Value {
        let rows: Vec<Value> = categories
            .iter()
            .map(|c| {
                // The state in words too: where no emoji font is installed the marks are boxes.
                let (mark, state) = if c.mandatory {
                    ("🔒", "always on")
                } else if opted_in(c, prefs) {
                    ("✅", "on")
                } else {
                    ("⬜", "off")
                };
                // The state a press sets, so pressing (or processing a press) twice is
                // the same as once.
                let target = if opted_in(c, prefs) { "off" } else { "on" };
                json!([{"text": format!("{mark} {}: {state}", c.name), "callback_data": format!("{SETTINGS_BUTTON}{}:{target}", c.id)}])
            })
            .collect();
        json!({"inline_keyboard": rows})
    }

    /// What `/settings` shows in a chat.
    pub async fn chat_settings(
        &self,
        bot: &BotRecord,
        chat_id: i64,
    ) -> ServiceResult<SettingsView> {
        let Some((_, prefs)) = self.chat_state(bot, chat_id).await? else {
            return Ok(SettingsView::NotLinked(NOT_LINKED.into()));
        };
        let categories = self.store.tenant_categories(&bot.tenant_id).await?;
        if categories.is_empty() {
            return Ok(SettingsView::NoCategories(
                "There are no notification settings to choose from yet.".into(),
            ));
        }
        Ok(SettingsView::Menu {
            text:
                "Your notifications. Tap one to turn it on (✅) or off (⬜); 🔒 ones are always on."
                    .into(),
            keyboard: Self::settings_keyboard(&categories, &prefs),
        })
    }

    /// A `/settings` button (`rg:cat:<category id>:on|off`) was pressed in a chat: sets
    /// the category to `target` (toggles it when `None`, for keyboards drawn before the
    /// buttons named their state).
    pub async fn toggle_category(
        &self,
        bot: &BotRecord,
        chat_id: i64,
        category_id: &str,
        target: Option<bool>,
    ) -> ServiceResult<Toggled> {
        let stale = |outcome: &str| Toggled {
            answer: "This button is no longer valid. Send /settings again.".into(),
            keyboard: None,
            outcome: outcome.into(),
        };
        let Some(category) = self
            .store
            .get_category(category_id)
            .await?
            .filter(|c| c.tenant_id == bot.tenant_id)
        else {
            return Ok(stale("settings button of an unknown category"));
        };
        let Some((links, prefs)) = self.chat_state(bot, chat_id).await? else {
            return Ok(Toggled {
                answer: NOT_LINKED.into(),
                keyboard: None,
                outcome: "settings button in a chat without links".into(),
            });
        };
        if category.mandatory {
            return Ok(Toggled {
                answer: format!(
                    "{} cannot be turned off: these notifications are always sent.",
                    category.name
                ),
                keyboard: None,
                outcome: format!("refused to turn off mandatory category {}", category.key),
            });
        }
        let enabled = target.unwrap_or_else(|| !opted_in(&category, &prefs));
        let now = self.clock.now_millis();
        let links: Vec<_> = if opted_in(&category, &prefs) == enabled {
            // Already so (a second press, or the same press processed again).
            Vec::new()
        } else {
            links
        };
        for link in &links {
            self.store
                .set_link_preferences(&link.id, &[(category.key.clone(), enabled)], now)
                .await?;
            let view = self.link_view(link.clone()).await?;
            self.emit_link("link.updated", &view, "settings").await?;
        }
        let mut prefs = prefs;
        prefs.insert(category.key.clone(), enabled);
        let categories = self.store.tenant_categories(&bot.tenant_id).await?;
        let state = if enabled { "on" } else { "off" };
        Ok(Toggled {
            answer: format!("{}: {state}", category.name),
            keyboard: Some(Self::settings_keyboard(&categories, &prefs)),
            outcome: format!("turned category {} {state}", category.key),
        })
    }
}

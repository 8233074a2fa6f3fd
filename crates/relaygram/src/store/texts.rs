//! Storage for the app's words for its bot: one template per bot, text key and language.

use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use utoipa::ToSchema;

use super::sql::{PgStore, SqliteStore};
use super::{StoreError, StoreResult};

/// What the bot says on its own, each a text an app may replace per language.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TextKey {
    /// `/start` (plain, or with the app's own payload).
    Welcome,
    /// The first lines of `/help`; the command list follows.
    Help,
    /// An unknown command; the `/help` text follows.
    UnknownCommand,
    /// The first command over the per-user rate limit.
    SlowDown,
    /// `/stop`: the question.
    StopConfirm,
    /// `/stop`: the button that confirms.
    StopYesButton,
    /// `/stop`: the button that cancels.
    StopNoButton,
    /// `/stop` confirmed (the button's answer).
    Stopped,
    /// `/stop` cancelled (the button's answer).
    StopCancelled,
    /// `/link` without a code.
    LinkUsage,
    /// A private chat linked with a link token.
    Linked,
    /// A group linked with a link token or a connect code.
    GroupLinked,
    /// A chat connected with a connect code.
    CodeConnected,
    /// A connect code used again in a chat it already connected.
    CodeAlreadyConnected,
    /// A revoked connect code.
    CodeRevoked,
    /// A link token already used.
    LinkUsed,
    /// An expired link token.
    LinkExpired,
    /// A token or code of another bot or tenant.
    LinkNotForThisBot,
    /// `/link` with something that is neither a token nor a code.
    LinkUnknown,
    /// A token for a chat already linked to another app user.
    ChatLinkedToAnother,
    /// A group link while the bot is not an administrator there.
    BotNotAdmin,
    /// A personal link to a gated chat, sent when access begins.
    MembershipInvite,
    /// Access to a gated chat ends soon.
    MembershipReminder,
    /// Removed from a gated chat when access ended.
    MembershipRemoved,
    /// A join request without access, answered through `user_chat_id`.
    JoinDeclined,
    /// A group bound as a gated chat through the bot's startgroup link.
    GateBound,
    /// A binding link refused (the bot lacks a right, the link expired…).
    GateRefused,
}

impl TextKey {
    /// Every key, in the order the API lists them.
    pub const ALL: [TextKey; 27] = [
        TextKey::Welcome,
        TextKey::Help,
        TextKey::UnknownCommand,
        TextKey::SlowDown,
        TextKey::StopConfirm,
        TextKey::StopYesButton,
        TextKey::StopNoButton,
        TextKey::Stopped,
        TextKey::StopCancelled,
        TextKey::LinkUsage,
        TextKey::Linked,
        TextKey::GroupLinked,
        TextKey::CodeConnected,
        TextKey::CodeAlreadyConnected,
        TextKey::CodeRevoked,
        TextKey::LinkUsed,
        TextKey::LinkExpired,
        TextKey::LinkNotForThisBot,
        TextKey::LinkUnknown,
        TextKey::ChatLinkedToAnother,
        TextKey::BotNotAdmin,
        TextKey::MembershipInvite,
        TextKey::MembershipReminder,
        TextKey::MembershipRemoved,
        TextKey::JoinDeclined,
        TextKey::GateBound,
        TextKey::GateRefused,
    ];

    /// The key as stored and in the API (`welcome`, `unknown_command`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            TextKey::Welcome => "welcome",
            TextKey::Help => "help",
            TextKey::UnknownCommand => "unknown_command",
            TextKey::SlowDown => "slow_down",
            TextKey::StopConfirm => "stop_confirm",
            TextKey::StopYesButton => "stop_yes_button",
            TextKey::StopNoButton => "stop_no_button",
            TextKey::Stopped => "stopped",
            TextKey::StopCancelled => "stop_cancelled",
            TextKey::LinkUsage => "link_usage",
            TextKey::Linked => "linked",
            TextKey::GroupLinked => "group_linked",
            TextKey::CodeConnected => "code_connected",
            TextKey::CodeAlreadyConnected => "code_already_connected",
            TextKey::CodeRevoked => "code_revoked",
            TextKey::LinkUsed => "link_used",
            TextKey::LinkExpired => "link_expired",
            TextKey::LinkNotForThisBot => "link_not_for_this_bot",
            TextKey::LinkUnknown => "link_unknown",
            TextKey::ChatLinkedToAnother => "chat_linked_to_another",
            TextKey::BotNotAdmin => "bot_not_admin",
            TextKey::MembershipInvite => "membership_invite",
            TextKey::MembershipReminder => "membership_reminder",
            TextKey::MembershipRemoved => "membership_removed",
            TextKey::JoinDeclined => "join_declined",
            TextKey::GateBound => "gate_bound",
            TextKey::GateRefused => "gate_refused",
        }
    }
}

impl FromStr for TextKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TextKey::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown text key {s:?}"))
    }
}

/// One stored text of a bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotTextRecord {
    /// The bot.
    pub bot_id: String,
    /// Which text.
    pub key: TextKey,
    /// A lower-case IETF language tag (`de`, `pt-br`); `None` for the bot's default.
    pub language: Option<String>,
    /// The minijinja source.
    pub text: String,
    /// Creation time (UTC ms).
    pub created_at: i64,
    /// Last change (UTC ms).
    pub updated_at: i64,
}

/// The app's texts for its bots.
#[async_trait]
pub trait TextStore: Send + Sync {
    /// A bot's stored texts, by key then language (the default first). Read for every reply
    /// the router makes: cached briefly.
    async fn list_bot_texts(&self, bot_id: &str) -> StoreResult<Vec<BotTextRecord>>;
    /// Stores a text, replacing the one of the same bot, key and language (its
    /// `created_at` is kept); `true` when it was new.
    async fn put_bot_text(&self, text: &BotTextRecord) -> StoreResult<bool>;
    /// Deletes a text; `false` when there was none.
    async fn delete_bot_text(
        &self,
        bot_id: &str,
        key: TextKey,
        language: Option<&str>,
    ) -> StoreResult<bool>;
}

/// The stored form of "no language": the bot's default.
const DEFAULT_LANGUAGE: &str = "";

macro_rules! texts_store {
    ($store:ty, $row:ty) => {
        impl $store {
            fn bot_text(row: &$row) -> StoreResult<BotTextRecord> {
                let key: &str = row.try_get("key")?;
                let language: String = row.try_get("language")?;
                Ok(BotTextRecord {
                    bot_id: row.try_get("bot_id")?,
                    key: key
                        .parse()
                        .map_err(|e| StoreError::Corrupt(format!("bot_texts.key: {e}")))?,
                    language: (language != DEFAULT_LANGUAGE).then_some(language),
                    text: row.try_get("text")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            }
        }

        #[async_trait]
        impl TextStore for $store {
            async fn list_bot_texts(&self, bot_id: &str) -> StoreResult<Vec<BotTextRecord>> {
                if let Some(texts) = self.hot.texts.get(bot_id) {
                    return Ok(texts);
                }
                let ticket = self.hot.texts.ticket();
                let texts = sqlx::query(
                    "SELECT bot_id, key, language, text, created_at, updated_at FROM bot_texts \
                     WHERE bot_id = $1 ORDER BY key, language",
                )
                .bind(bot_id)
                .fetch_all(&self.db)
                .await?
                .iter()
                .map(Self::bot_text)
                .collect::<StoreResult<Vec<_>>>()?;
                self.hot.texts.put(ticket, bot_id, texts.clone());
                Ok(texts)
            }

            async fn put_bot_text(&self, t: &BotTextRecord) -> StoreResult<bool> {
                let language = t.language.as_deref().unwrap_or(DEFAULT_LANGUAGE);
                let replaced = sqlx::query(
                    "UPDATE bot_texts SET text = $4, updated_at = $5 \
                     WHERE bot_id = $1 AND key = $2 AND language = $3",
                )
                .bind(&t.bot_id)
                .bind(t.key.as_str())
                .bind(language)
                .bind(&t.text)
                .bind(t.updated_at)
                .execute(&self.db)
                .await;
                let replaced = match replaced {
                    Ok(done) => done.rows_affected() == 1,
                    Err(e) => {
                        self.hot.texts.forget(&t.bot_id);
                        return Err(e.into());
                    }
                };
                let done = if replaced {
                    Ok(())
                } else {
                    // New; one stored meanwhile by another writer is replaced.
                    sqlx::query(
                        "INSERT INTO bot_texts (bot_id, key, language, text, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $5) \
                         ON CONFLICT (bot_id, key, language) DO UPDATE \
                         SET text = excluded.text, updated_at = excluded.updated_at",
                    )
                    .bind(&t.bot_id)
                    .bind(t.key.as_str())
                    .bind(language)
                    .bind(&t.text)
                    .bind(t.updated_at)
                    .execute(&self.db)
                    .await
                    .map(|_| ())
                };
                self.hot.texts.forget(&t.bot_id);
                done?;
                Ok(!replaced)
            }

            async fn delete_bot_text(
                &self,
                bot_id: &str,
                key: TextKey,
                language: Option<&str>,
            ) -> StoreResult<bool> {
                let done = sqlx::query(
                    "DELETE FROM bot_texts WHERE bot_id = $1 AND key = $2 AND language = $3",
                )
                .bind(bot_id)
                .bind(key.as_str())
                .bind(language.unwrap_or(DEFAULT_LANGUAGE))
                .execute(&self.db)
                .await;
                self.hot.texts.forget(bot_id);
                Ok(done?.rows_affected() == 1)
            }
        }
    };
}

texts_store!(SqliteStore, SqliteRow);
texts_store!(PgStore, PgRow);

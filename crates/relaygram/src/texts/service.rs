//! The rules for a bot's texts: keys and languages checked, templates render-checked before
//! anything is stored, tenant scoping through the bot; the built-in commands a bot turns
//! off; and choosing and rendering a reply's text for the router.

use std::collections::BTreeMap;

use super::{BotTextRecord, TextKey, TextVars, check, parse_language, pick, render_text};
use crate::services::{Principal, ServiceError, ServiceResult, Services};
use crate::store::{BotRecord, BuiltinCommand};

/// A text as a user of some language gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChosenText {
    /// Which text.
    pub key: TextKey,
    /// The language of the stored text chosen (`None`: the bot's default, or built-in).
    pub language: Option<String>,
    /// The template source.
    pub text: String,
    /// The stored text, or `None` when relaygram's default applies.
    pub stored: Option<BotTextRecord>,
}

/// Every text of a bot: each key with its default and the bot's stored texts.
#[derive(Debug, Clone)]
pub struct KeyTexts {
    /// The key.
    pub key: TextKey,
    /// The bot's stored texts of this key, the default (no language) first.
    pub stored: Vec<BotTextRecord>,
}

pub(crate) fn parse_key(raw: &str) -> ServiceResult<TextKey> {
    raw.trim().parse().map_err(|_| ServiceError::Invalid {
        field: "key",
        message: format!(
            "{raw:?} is not a text key (known: {})",
            TextKey::ALL.map(TextKey::as_str).join(", ")
        ),
    })
}

fn parse_optional_language(raw: Option<&str>) -> ServiceResult<Option<String>> {
    raw.map(parse_language).transpose()
}

/// Checks `{"help": false, …}` (a name per built-in command that can be turned off); an
/// unknown name is refused, naming it.
pub fn parse_builtin_changes(
    changes: &BTreeMap<String, bool>,
) -> ServiceResult<Vec<(BuiltinCommand, bool)>> {
    changes
        .iter()
        .map(|(name, on)| {
            let command: BuiltinCommand = name.parse().map_err(|_| ServiceError::Invalid {
                field: "builtin_commands",
                message: format!(
                    "{name:?} is not a built-in command that can be turned off (known: {})",
                    BuiltinCommand::ALL.map(BuiltinCommand::as_str).join(", ")
                ),
            })?;
            Ok((command, *on))
        })
        .collect()
}

impl Services {
    /// Every key of a bot's texts, with what the bot stored for it.
    pub async fn list_bot_texts(
        &self,
        principal: &Principal,
        bot_id: &str,
    ) -> ServiceResult<Vec<KeyTexts>> {
        let bot = self.get_bot_record(principal, bot_id).await?;
        let stored = self.store.list_bot_texts(&bot.id).await?;
        Ok(TextKey::ALL
            .into_iter()
            .map(|key| {
                let mut of_key: Vec<BotTextRecord> =
                    stored.iter().filter(|t| t.key == key).cloned().collect();
                of_key.sort_by(|a, b| a.language.cmp(&b.language));
                KeyTexts {
                    key,
                    stored: of_key,
                }
            })
            .collect())
    }

    /// The text a user whose `language_code` is `language` gets (the bot's default, or
    /// relaygram's, without one).
    pub async fn get_bot_text(
        &self,
        principal: &Principal,
        bot_id: &str,
        key: &str,
        language: Option<&str>,
    ) -> ServiceResult<ChosenText> {
        let key = parse_key(key)?;
        let language = parse_optional_language(language)?;
        let bot = self.get_bot_record(principal, bot_id).await?;
        let stored = self.store.list_bot_texts(&bot.id).await?;
        Ok(match pick(&stored, key, language.as_deref()) {
            Some(t) => ChosenText {
                key,
                language: t.language.clone(),
                text: t.text.clone(),
                stored: Some(t.clone()),
            },
            None => ChosenText {
                key,
                language: None,
                text: key.default_text().to_string(),
                stored: None,
            },
        })
    }

    /// Stores the bot's text `key` for `language` (`None`: its default) after checking
    /// the key, the language and the template; `true` when it is new.
    pub async fn put_bot_text(
        &self,
        principal: &Principal,
        bot_id: &str,
        key: &str,
        language: Option<&str>,
        text: String,
    ) -> ServiceResult<(BotTextRecord, bool)> {
        let key = parse_key(key)?;
        let language = parse_optional_language(language)?;
        check(key, &text)?;
        let bot = self.get_bot_record(principal, bot_id).await?;
        let now = self.clock.now_millis();
        let mut record = BotTextRecord {
            bot_id: bot.id.clone(),
            key,
            language,
            text,
            created_at: now,
            updated_at: now,
        };
        let created = self.store.put_bot_text(&record).await?;
        if !created
            && let Some(stored) = self
                .store
                .list_bot_texts(&bot.id)
                .await?
                .into_iter()
                .find(|t| t.key == key && t.language == record.language)
        {
            record.created_at = stored.created_at;
        }
        tracing::info!(bot_id = %bot.id, key = key.as_str(), language = ?record.language, "bot text stored");
        Ok((record, created))
    }

    /// Removes the bot's text `key` for `language` (`None`: its default), so the next
    /// closest one applies.
    pub async fn delete_bot_text(
        &self,
        principal: &Principal,
        bot_id: &str,
        key: &str,
        language: Option<&str>,
    ) -> ServiceResult<()> {
        let key = parse_key(key)?;
        let language = parse_optional_language(language)?;
        let bot = self.get_bot_record(principal, bot_id).await?;
        if !self
            .store
            .delete_bot_text(&bot.id, key, language.as_deref())
            .await?
        {
            return Err(ServiceError::NotFound {
                kind: "text",
                id: format!(
                    "{} ({}) of bot {}",
                    key.as_str(),
                    language.as_deref().unwrap_or("default"),
                    bot.id
                ),
            });
        }
        tracing::info!(bot_id = %bot.id, key = key.as_str(), language = ?language, "bot text removed");
        Ok(())
    }

    /// Turns built-in commands on or off (names not given keep their state); `changes`
    /// from [`parse_builtin_changes`].
    pub async fn set_bot_builtins(
        &self,
        principal: &Principal,
        bot_id: &str,
        changes: &[(BuiltinCommand, bool)],
    ) -> ServiceResult<BotRecord> {
        let bot = self.get_bot_record(principal, bot_id).await?;
        let mut off = bot.builtins_off.clone();
        for &(command, on) in changes {
            off.retain(|c| *c != command);
            if !on {
                off.push(command);
            }
        }
        off.sort();
        if !self
            .store
            .set_bot_builtins_off(&bot.id, &off, self.clock.now_millis())
            .await?
        {
            return Err(ServiceError::NotFound {
                kind: "bot",
                id: bot.id,
            });
        }
        tracing::info!(bot_id = %bot.id, off = ?off, "bot's built-in commands set");
        self.get_bot_record(principal, bot_id).await
    }

    /// The text of `key` for a reply to a user of `language_code`: the bot's closest stored
    /// text, rendered with `vars` (`link` is filled in here, only for a stored text), else
    /// relaygram's default. A stored text that fails on real values is logged and the
    /// default is sent instead (it was checked with samples, so this is rare).
    pub async fn reply_text(
        &self,
        bot: &BotRecord,
        chat_id: Option<i64>,
        key: TextKey,
        language_code: Option<&str>,
        mut vars: TextVars,
    ) -> ServiceResult<String> {
        let stored = self.store.list_bot_texts(&bot.id).await?;
        if let Some(t) = pick(&stored, key, language_code) {
            if let Some(chat_id) = chat_id
                && let Some(link) = self
                    .store
                    .chat_links(&bot.id, chat_id)
                    .await?
                    .into_iter()
                    .find(|l| l.active)
            {
                vars.link = serde_json::json!({"id": link.id, "external_id": link.external_id});
            }
            match render_text(key, &t.text, &vars) {
                Ok(text) => return Ok(text),
                Err(e) => {
                    tracing::warn!(bot_id = %bot.id, key = key.as_str(), language = ?t.language, error = %e, "a bot text could not be rendered; sent the default");
                }
            }
        }
        // The defaults use only variables every reply has (a unit test renders each).
        Ok(render_text(key, key.default_text(), &vars)
            .unwrap_or_else(|_| key.default_text().to_string()))
    }
}

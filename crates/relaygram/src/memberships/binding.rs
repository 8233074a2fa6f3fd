//! Binding a gated chat through the bot's `startgroup` link, as link tokens bind groups:
//! the app asks for a token carrying the chat's settings; the operator opens
//! `t.me/<bot>?startgroup=<token>&admin=invite_users+restrict_members` (Telegram offers to
//! add the bot as an administrator with exactly those rights) and Telegram's client sends
//! `/start@<bot> <token>` in the group, which binds it once.

use serde_json::json;

use super::service::{GatedChatInput, validate_settings};
use crate::ids::{new_id, random_token};
use crate::linking::hash_token;
use crate::services::{ServiceError, ServiceResult, Services};
use crate::store::{BotRecord, GateTokenRecord, TextKey};
use crate::texts::TextVars;

/// Longest a binding token lives: 7 days (the default is a day).
pub const MAX_TTL_SECONDS: i64 = 7 * 86_400;

/// A new binding token and its link (the token itself is shown once).
#[derive(Debug, Clone)]
pub struct NewGateToken {
    /// The stored record.
    pub record: GateTokenRecord,
    /// The token.
    pub token: String,
    /// `https://t.me/<bot>?startgroup=<token>&admin=invite_users+restrict_members`.
    pub startgroup_link: String,
}

impl Services {
    /// A token that binds the group it is started in, with `settings` (`chat_id` unused).
    pub async fn create_gate_token(
        &self,
        tenant_id: &str,
        settings: GatedChatInput,
        ttl_seconds: Option<i64>,
    ) -> ServiceResult<NewGateToken> {
        validate_settings(&settings)?;
        let ttl = ttl_seconds.unwrap_or(86_400);
        if !(60..=MAX_TTL_SECONDS).contains(&ttl) {
            return Err(ServiceError::Invalid {
                field: "ttl_seconds",
                message: format!("must be 60 to {MAX_TTL_SECONDS} (7 days)"),
            });
        }
        if settings.join_mode == crate::store::JoinMode::StarsSubscription {
            return Err(ServiceError::Invalid {
                field: "join_mode",
                message: "stars_subscription is for channels, which have no startgroup link: bind the channel by chat_id".into(),
            });
        }
        let bot = self
            .tenant_bot(tenant_id, settings.bot_id.as_deref())
            .await?;
        let token = random_token(crate::linking::TOKEN_LEN);
        let now = self.clock.now_millis();
        let mut settings = settings;
        settings.bot_id = Some(bot.id.clone());
        let record = GateTokenRecord {
            id: new_id("gct"),
            tenant_id: tenant_id.to_string(),
            bot_id: bot.id.clone(),
            token_hash: hash_token(&token),
            settings: serde_json::to_string(&settings).unwrap_or_default(),
            expires_at: now + ttl * 1000,
            used_at: None,
            gated_chat_id: None,
            created_at: now,
        };
        self.store.insert_gate_token(&record).await?;
        Ok(NewGateToken {
            startgroup_link: format!(
                "https://t.me/{}?startgroup={token}&admin=invite_users+restrict_members",
                bot.username
            ),
            record,
            token,
        })
    }

    /// `/start <payload>` in a group: binds the group when the payload is a binding token of
    /// this bot. `None` when it is not one (the payload may be a link token). The answer is
    /// what the bot says in the group and what the update log keeps.
    pub async fn redeem_gate_token(
        &self,
        bot: &BotRecord,
        chat_id: i64,
        payload: &str,
    ) -> ServiceResult<Option<(String, String)>> {
        let payload = payload.trim();
        if payload.len() > 64 {
            return Ok(None);
        }
        let Some(t) = self
            .store
            .find_gate_token(None, None, Some(&hash_token(payload)))
            .await?
        else {
            return Ok(None);
        };
        let now = self.clock.now_millis();
        let refuse = |reason: String| async move {
            let text = self
                .gate_text(bot, TextKey::GateRefused, json!({"reason": reason}))
                .await?;
            Ok::<_, ServiceError>(Some((text, format!("gated-chat token refused: {reason}"))))
        };
        if t.tenant_id != bot.tenant_id || t.bot_id != bot.id {
            return refuse("this link was made for another bot".into()).await;
        }
        if let Some(done) = &t.gated_chat_id {
            return refuse(format!("this link was used already (gated chat {done})")).await;
        }
        if t.expires_at <= now {
            return refuse("this link has expired: ask for a new one".into()).await;
        }
        let mut settings: GatedChatInput = serde_json::from_str(&t.settings)
            .map_err(|e| crate::store::StoreError::Corrupt(format!("gated chat token: {e}")))?;
        settings.chat_id = chat_id;
        let chat = match self.create_gated_chat(&t.tenant_id, settings).await {
            Ok(chat) => chat,
            Err(ServiceError::Invalid { message, .. }) | Err(ServiceError::Conflict(message)) => {
                // Nothing is bound; the token stays usable once the rights are given.
                return refuse(message).await;
            }
            Err(e) => return Err(e),
        };
        if !self.store.use_gate_token(&t.id, &chat.id, now).await? {
            // Used at the same moment elsewhere: keep the first.
            self.store.delete_gated_chat(None, &chat.id).await?;
            return refuse("this link was used already".into()).await;
        }
        crate::events::emit(
            self.store.as_ref(),
            &chat.tenant_id,
            "gated_chat.bound",
            json!({"gated_chat_id": chat.id, "chat_id": chat.chat_id, "token_id": t.id,
                "status": chat.status.as_str(), "status_reason": chat.status_reason}),
        )
        .await?;
        let text = self
            .gate_text(
                bot,
                TextKey::GateBound,
                json!({"gated_chat": {"name": chat.name}}),
            )
            .await?;
        Ok(Some((text, format!("bound as gated chat {}", chat.id))))
    }

    async fn gate_text(
        &self,
        bot: &BotRecord,
        key: TextKey,
        vars: serde_json::Value,
    ) -> ServiceResult<String> {
        let mut v = TextVars::new(&bot.username, &bot.first_name, &json!({}));
        v.membership = vars;
        self.reply_text(bot, None, key, None, v).await
    }
}

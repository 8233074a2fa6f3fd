//! The rules of gated chats: binding a supergroup or channel the bot administers (the
//! chat and the bot's rights checked with Telegram first), its settings, and the rights it
//! needs.

use serde_json::{Value, json};

use crate::ids::new_id;
use crate::services::{Principal, ServiceError, ServiceResult, Services};
use crate::store::{
    BotFilter, BotRecord, GateStatus, GatedChatRecord, GatedChatType, JoinMode, Page,
};

/// The rights a gated chat's bot needs, and why.
pub const NEEDED_RIGHTS: [(&str, &str); 2] = [
    (
        "can_invite_users",
        "to make personal links and approve join requests",
    ),
    (
        "can_restrict_members",
        "to remove members whose access ended",
    ),
];

/// Why a basic group is not enforced.
pub const BASIC_GROUP: &str = "a basic group cannot keep a removed user out (Telegram lets \
     them back through any link): relaygram gates it once it becomes a supergroup. Telegram \
     converts it when you turn on 'Approve new members' or make the chat history visible to \
     new members";

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

/// What binding a gated chat takes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GatedChatInput {
    /// The bot (optional when the tenant has one).
    pub bot_id: Option<String>,
    /// The Telegram chat.
    pub chat_id: i64,
    /// The operator's name for it.
    pub name: Option<String>,
    /// How people get in.
    pub join_mode: JoinMode,
    /// Seconds members keep access after their entitlement ends.
    pub grace_seconds: i64,
    /// Reminders before the end, in seconds.
    pub reminders: Vec<i64>,
    /// Remove members without an entitlement.
    pub remove_unentitled: bool,
    /// After this many seconds.
    pub unentitled_grace_seconds: i64,
    /// Where people get access.
    pub access_url: Option<String>,
}

impl Services {
    pub(super) async fn tenant_bot(
        &self,
        tenant_id: &str,
        bot_id: Option<&str>,
    ) -> ServiceResult<BotRecord> {
        match bot_id {
            Some(id) => self
                .store
                .get_bot(id)
                .await?
                .filter(|b| b.tenant_id == tenant_id)
                .ok_or_else(|| invalid("bot_id", format!("no bot {id} in this tenant"))),
            None => {
                let filter = BotFilter {
                    tenant_id: Some(tenant_id.to_string()),
                    ..BotFilter::default()
                };
                let mut bots = self.store.list_bots(&filter, &Page::first(2)).await?.items;
                match bots.len() {
                    1 => Ok(bots.remove(0)),
                    0 => Err(invalid("bot_id", "this tenant has no bot: add one first")),
                    _ => Err(invalid("bot_id", "this tenant has several bots: say which")),
                }
            }
        }
    }

    /// The bot's rights in a chat, as Telegram reports them: the missing ones (empty when
    /// it holds every needed right).
    pub async fn missing_rights(
        &self,
        bot: &BotRecord,
        chat_id: i64,
    ) -> ServiceResult<Vec<&'static str>> {
        let token = self.token_of(bot)?;
        let me: Value = self
            .telegram
            .call(
                &token,
                "getChatMember",
                &json!({"chat_id": chat_id, "user_id": bot.telegram_id}),
            )
            .await?;
        Ok(missing_from(&me))
    }

    /// Binds a supergroup or channel the bot administers. The chat and the bot's rights are
    /// checked with Telegram first; a basic group is stored `degraded` until it becomes a
    /// supergroup.
    pub async fn create_gated_chat(
        &self,
        tenant_id: &str,
        input: GatedChatInput,
    ) -> ServiceResult<GatedChatRecord> {
        validate_settings(&input)?;
        if input.chat_id == 0 {
            return Err(invalid(
                "chat_id",
                "give the chat's id, or bind through the bot's startgroup link (POST /v1/gated-chat-tokens)",
            ));
        }
        let bot = self.tenant_bot(tenant_id, input.bot_id.as_deref()).await?;
        if let Some(allowed) = &bot.allowed_updates {
            for needed in ["chat_member", "chat_join_request", "my_chat_member"] {
                if !allowed.iter().any(|a| a == needed) {
                    return Err(invalid(
                        "bot_id",
                        format!(
                            "the bot's allowed_updates leave out {needed}, which a gated chat needs: add it (PATCH /v1/bots/{})",
                            bot.id
                        ),
                    ));
                }
            }
        }
        let token = self.token_of(&bot)?;
        let chat: Value = self
            .telegram
            .call(&token, "getChat", &json!({"chat_id": input.chat_id}))
            .await
            .map_err(|e| {
                invalid(
                    "chat_id",
                    format!(
                        "the bot cannot see chat {}: add it as an administrator first ({})",
                        input.chat_id,
                        e.description()
                    ),
                )
            })?;
        let (chat_type, status, reason) = match chat["type"].as_str() {
            Some("supergroup") => (GatedChatType::Supergroup, GateStatus::Active, None),
            Some("channel") => (GatedChatType::Channel, GateStatus::Active, None),
            Some("group") => (
                GatedChatType::Supergroup,
                GateStatus::Degraded,
                Some(BASIC_GROUP.to_string()),
            ),
            other => {
                return Err(invalid(
                    "chat_id",
                    format!(
                        "chat {} is a {} chat: only supergroups and channels can be gated",
                        input.chat_id,
                        other.unwrap_or("unknown")
                    ),
                ));
            }
        };
        if input.join_mode == JoinMode::StarsSubscription && chat["type"] != "channel" {
            return Err(invalid(
                "join_mode",
                "stars_subscription works in channels only (Telegram's Star subscription links)",
            ));
        }
        if status == GateStatus::Active {
            let missing = self.missing_rights(&bot, input.chat_id).await?;
            if !missing.is_empty() {
                return Err(invalid("chat_id", missing_explained(&missing)));
            }
        }
        let now = self.clock.now_millis();
        let title = chat["title"].as_str().map(str::to_string);
        let record = GatedChatRecord {
            id: new_id("gc"),
            tenant_id: tenant_id.to_string(),
            bot_id: bot.id.clone(),
            chat_id: input.chat_id,
            chat_type,
            name: input
                .name
                .clone()
                .or_else(|| title.clone())
                .unwrap_or_else(|| input.chat_id.to_string()),
            title,
            join_mode: input.join_mode,
            grace_seconds: input.grace_seconds,
            reminders: sorted(input.reminders),
            remove_unentitled: input.remove_unentitled,
            unentitled_grace_seconds: input.unentitled_grace_seconds,
            access_url: input.access_url,
            status,
            status_reason: reason,
            swept_at: None,
            created_at: now,
            updated_at: now,
        };
        self.store
            .insert_gated_chat(&record)
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Conflict(d) => ServiceError::Conflict(d),
                e => e.into(),
            })?;
        tracing::info!(gated_chat_id = %record.id, chat_id = record.chat_id, "gated chat bound");
        Ok(record)
    }

    /// One gated chat of the caller's tenant.
    pub async fn gated_chat(
        &self,
        principal: &Principal,
        id: &str,
    ) -> ServiceResult<GatedChatRecord> {
        self.store
            .get_gated_chat(principal.tenant(), id)
            .await?
            .ok_or_else(|| ServiceError::NotFound {
                kind: "gated chat",
                id: id.to_string(),
            })
    }

    /// Changes a gated chat's settings (its chat and bot stay). Access ends computed from the
    /// old grace are brought in line by the next sweep.
    pub async fn update_gated_chat(
        &self,
        principal: &Principal,
        id: &str,
        change: impl FnOnce(&mut GatedChatRecord) -> ServiceResult<()>,
    ) -> ServiceResult<GatedChatRecord> {
        let mut g = self.gated_chat(principal, id).await?;
        change(&mut g)?;
        g.reminders = sorted(std::mem::take(&mut g.reminders));
        validate_record(&g)?;
        g.updated_at = self.clock.now_millis();
        self.store.update_gated_chat(&g).await?;
        self.store.mark_chat_unsynced(&g.id).await?;
        super::wakeup::wake();
        Ok(g)
    }
}

/// The needed rights a `getChatMember` answer for the bot lacks.
pub fn missing_from(me: &Value) -> Vec<&'static str> {
    if me["status"] != "administrator" {
        return NEEDED_RIGHTS.iter().map(|(r, _)| *r).collect();
    }
    NEEDED_RIGHTS
        .iter()
        .filter(|(r, _)| me[*r] != true)
        .map(|(r, _)| *r)
        .collect()
}

/// A sentence saying which rights are missing and why each is needed.
pub fn missing_explained(missing: &[&str]) -> String {
    let why: Vec<String> = NEEDED_RIGHTS
        .iter()
        .filter(|(r, _)| missing.contains(r))
        .map(|(r, w)| format!("{r} ({w})"))
        .collect();
    format!("make the bot an administrator with {}", why.join(" and "))
}

fn sorted(mut reminders: Vec<i64>) -> Vec<i64> {
    reminders.sort_unstable_by(|a, b| b.cmp(a));
    reminders.dedup();
    reminders
}

pub(super) fn validate_settings(i: &GatedChatInput) -> ServiceResult<()> {
    if let Some(n) = &i.name
        && (n.trim().is_empty() || n.chars().count() > 128)
    {
        return Err(invalid("name", "must be 1 to 128 characters"));
    }
    check_numbers(
        i.grace_seconds,
        i.unentitled_grace_seconds,
        &i.reminders,
        i.access_url.as_deref(),
    )
}

fn validate_record(g: &GatedChatRecord) -> ServiceResult<()> {
    if g.name.trim().is_empty() || g.name.chars().count() > 128 {
        return Err(invalid("name", "must be 1 to 128 characters"));
    }
    check_numbers(
        g.grace_seconds,
        g.unentitled_grace_seconds,
        &g.reminders,
        g.access_url.as_deref(),
    )
}

fn check_numbers(
    grace: i64,
    unentitled: i64,
    reminders: &[i64],
    url: Option<&str>,
) -> ServiceResult<()> {
    const YEAR: i64 = 366 * 86_400;
    if !(0..=YEAR).contains(&grace) {
        return Err(invalid("grace_seconds", "must be 0 to 31622400 (366 days)"));
    }
    if !(0..=YEAR).contains(&unentitled) {
        return Err(invalid(
            "unentitled_grace_seconds",
            "must be 0 to 31622400 (366 days)",
        ));
    }
    if reminders.len() > 5 {
        return Err(invalid("reminders", "at most 5 reminders"));
    }
    if let Some(u) = url
        && !(u.starts_with("https://") || u.starts_with("http://") || u.starts_with("tg://"))
    {
        return Err(invalid("access_url", "must be an http(s) or tg:// URL"));
    }
    Ok(())
}

//! From a request's targets to its recipients: the chats and links it reaches now, the
//! fan-outs the store runs, and every target that reaches nobody with the reason.
//!
//! A target that reaches nobody (an ended link, an app user without an active link, a
//! category nobody is opted in to, a blocked chat) is skipped and reported; the others
//! still get the message. A target that is wrong whatever the moment (an unknown category
//! or connect code, a link of another bot) is a 422 naming it.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::request::{Listed, MAX_TARGETS, Target};
use crate::ids::new_id;
use crate::services::{ServiceError, ServiceResult, Services};
use crate::store::{BotFilter, ChatState, Fanout, LinkFilter, LinkRecord, NewMessage, Page};

/// Why a target reaches nobody.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// No link with this id in the tenant (deleted, or never made).
    NoSuchLink,
    /// The link ended (`/stop`, unlinked, the user blocked the bot).
    LinkInactive,
    /// The app user, or the connect code, has no active link (with this bot).
    NoActiveLink,
    /// The category's links have all opted out of it.
    OptedOut,
    /// The tenant has no active link (with this bot) at all.
    CategoryEmpty,
    /// The user blocked the bot.
    ChatBlocked,
    /// The bot was removed from the chat.
    BotRemoved,
    /// The bot is not in the chat or cannot write there.
    ChatUnreachable,
    /// A personal message's template needs a variable this recipient's data or link lacks.
    MissingVariable,
    /// A personal message could not be rendered for this recipient (its text would not
    /// parse, or is too long).
    RenderFailed,
}

/// A target that reaches nobody, in the `202` answer (`skipped`) or the 422.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[schema(example = json!({"target": {"external_id": "u-never"}, "reason": "no_active_link",
    "detail": "app user \"u-never\" has no active link"}))]
pub struct Skipped {
    /// The target as the request gave it.
    #[schema(value_type = Object)]
    pub target: Value,
    /// Why it reaches nobody.
    pub reason: SkipReason,
    /// The same in words.
    pub detail: String,
}

impl Skipped {
    pub(super) fn new(target: &Target, reason: SkipReason, detail: String) -> Skipped {
        Skipped {
            target: target.to_json(),
            reason,
            detail,
        }
    }
}

/// Where a request goes.
#[derive(Debug, Default)]
pub struct Recipients {
    /// Messages to chats named directly or through one link.
    pub rows: Vec<NewMessage>,
    /// Fan-outs the store runs (each with the id prefix of its rows).
    pub fanouts: Vec<(String, Fanout)>,
    /// Targets that reach nobody now.
    pub skipped: Vec<Skipped>,
    /// Whether a fan-out target (app user, category, connect code) was expanded into
    /// `rows` (a personal message): the request is a broadcast as if the store had run it.
    pub fanned_out: bool,
    /// For a personal message, by message id: the data of the target that reached it and
    /// its recipient's link.
    pub personal: HashMap<String, Personal>,
}

/// What one recipient of a personal message renders with.
#[derive(Debug, Clone, Default)]
pub struct Personal {
    /// The listed target's own `data`.
    pub data: Option<Value>,
    /// The recipient's active link, when it has one.
    pub link: Option<LinkRecord>,
}

/// How far targets are resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Fan-outs are left to the store (their rows never travel through memory).
    Shared,
    /// Every recipient is listed with its link, to be rendered on its own.
    Personal,
}

impl Recipients {
    /// Whether nothing would be stored.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.fanouts.is_empty()
    }

    /// A fan-out that reaches someone: left to the store, or, for a personal message,
    /// listed here link by link (a chat already addressed by the request is skipped, as
    /// the store skips it).
    #[allow(clippy::too_many_arguments)]
    async fn fan_out(
        &mut self,
        services: &Services,
        tenant_id: &str,
        bot_id: Option<&str>,
        fanout: Fanout,
        data: Option<Value>,
        personal: bool,
        seen: &mut HashSet<(String, i64)>,
    ) -> ServiceResult<()> {
        if !personal {
            self.fanouts.push((format!("{}-", new_id("msg")), fanout));
            return Ok(());
        }
        self.fanned_out = true;
        let mut filter = LinkFilter {
            tenant_id: Some(tenant_id.to_string()),
            bot_id: bot_id.map(str::to_string),
            active: Some(true),
            ..LinkFilter::default()
        };
        let category = match &fanout {
            Fanout::ExternalId { external_id } => {
                filter.external_id = Some(external_id.clone());
                None
            }
            Fanout::ConnectCode { connect_code_id } => {
                filter.connect_code_id = Some(connect_code_id.clone());
                None
            }
            Fanout::Category { key } => {
                filter.category = Some(key.clone());
                Some(key.clone())
            }
        };
        let mut page = Page::first(200);
        loop {
            let links = services.store.list_links(&filter, &page).await?;
            for link in links.items {
                if !seen.insert((link.bot_id.clone(), link.chat_id)) {
                    continue;
                }
                if self.rows.len() >= MAX_TARGETS {
                    return Err(invalid(
                        "to",
                        format!(
                            "a personal message (a target's own data, or a template that reads \
                             `link`) reaches at most {MAX_TARGETS} recipients per request; \
                             split the audience"
                        ),
                    ));
                }
                let id = new_id("msg");
                self.rows.push(NewMessage {
                    id: id.clone(),
                    bot_id: link.bot_id.clone(),
                    chat_id: link.chat_id,
                    link_id: Some(link.id.clone()),
                    category: category.clone(),
                    content: None,
                });
                self.personal.insert(
                    id,
                    Personal {
                        data: data.clone(),
                        link: Some(link),
                    },
                );
            }
            match links.next_cursor {
                Some(after) => page.after = Some(after),
                None => return Ok(()),
            }
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

impl Services {
    /// Resolves `targets` for the tenant (and `bot_id`, when the request names one).
    pub(crate) async fn resolve_recipients(
        &self,
        tenant_id: &str,
        bot_id: Option<&str>,
        targets: Vec<Listed>,
        resolution: Resolution,
    ) -> ServiceResult<Recipients> {
        let personal = resolution == Resolution::Personal;
        let mut sole_bot: Option<Option<String>> = None;
        let mut out = Recipients::default();
        let mut seen = HashSet::new();
        for Listed { target, data } in targets {
            match &target {
                Target::Chat(chat_id) => {
                    let bot = match bot_id {
                        Some(b) => b.to_string(),
                        None => {
                            if sole_bot.is_none() {
                                sole_bot = Some(self.sole_bot(tenant_id).await?);
                            }
                            sole_bot.clone().flatten().ok_or_else(|| {
                                invalid(
                                    "bot_id",
                                    "is required to send to a chat_id unless the tenant has exactly one bot",
                                )
                            })?
                        }
                    };
                    if seen.insert((bot.clone(), *chat_id)) {
                        let id = new_id("msg");
                        if personal {
                            // Addressed by chat, it still renders with the chat's link.
                            let link = self
                                .store
                                .chat_links(&bot, *chat_id)
                                .await?
                                .into_iter()
                                .find(|l| l.active && l.tenant_id == tenant_id);
                            out.personal.insert(id.clone(), Personal { data, link });
                        }
                        out.rows.push(NewMessage {
                            id,
                            bot_id: bot,
                            chat_id: *chat_id,
                            link_id: None,
                            category: None,
                            content: None,
                        });
                    }
                }
                Target::Link(link_id) => {
                    let Some((bot, chat_id, active)) =
                        self.store.find_link(tenant_id, link_id).await?
                    else {
                        out.skipped.push(Skipped::new(
                            &target,
                            SkipReason::NoSuchLink,
                            format!("no link {link_id} in this tenant"),
                        ));
                        continue;
                    };
                    if !active {
                        out.skipped.push(Skipped::new(
                            &target,
                            SkipReason::LinkInactive,
                            format!("link {link_id} has ended"),
                        ));
                        continue;
                    }
                    if bot_id.is_some_and(|b| b != bot) {
                        return Err(invalid(
                            "bot_id",
                            format!("link {link_id} belongs to another bot"),
                        ));
                    }
                    if seen.insert((bot.clone(), chat_id)) {
                        let id = new_id("msg");
                        if personal {
                            let link = self.store.get_tenant_link(tenant_id, link_id).await?;
                            out.personal.insert(id.clone(), Personal { data, link });
                        }
                        out.rows.push(NewMessage {
                            id,
                            bot_id: bot,
                            chat_id,
                            link_id: Some(link_id.clone()),
                            category: None,
                            content: None,
                        });
                    }
                }
                Target::ExternalId(external_id) => {
                    let fanout = Fanout::ExternalId {
                        external_id: external_id.clone(),
                    };
                    let reach = self.store.fanout_reach(tenant_id, &fanout, bot_id).await?;
                    if reach.receiving == 0 {
                        out.skipped.push(Skipped::new(
                            &target,
                            SkipReason::NoActiveLink,
                            format!(
                                "app user {external_id:?} has no active link{}",
                                with(bot_id)
                            ),
                        ));
                    } else {
                        out.fan_out(self, tenant_id, bot_id, fanout, data, personal, &mut seen)
                            .await?;
                    }
                }
                Target::ConnectCode(code_id) => {
                    self.store
                        .get_connect_code(code_id)
                        .await?
                        .filter(|c| c.tenant_id == tenant_id)
                        .ok_or_else(|| {
                            invalid("to", format!("no connect code {code_id} in this tenant"))
                        })?;
                    let fanout = Fanout::ConnectCode {
                        connect_code_id: code_id.clone(),
                    };
                    let reach = self.store.fanout_reach(tenant_id, &fanout, bot_id).await?;
                    if reach.receiving == 0 {
                        out.skipped.push(Skipped::new(
                            &target,
                            SkipReason::NoActiveLink,
                            format!("no chat joined with connect code {code_id} is still linked"),
                        ));
                    } else {
                        out.fan_out(self, tenant_id, bot_id, fanout, data, personal, &mut seen)
                            .await?;
                    }
                }
                Target::GatedChat { id, members } => {
                    let gated = self
                        .store
                        .get_gated_chat(Some(tenant_id), id)
                        .await?
                        .ok_or_else(|| {
                            invalid("to", format!("no gated chat {id} in this tenant"))
                        })?;
                    if bot_id.is_some_and(|b| b != gated.bot_id) {
                        return Err(invalid(
                            "bot_id",
                            format!("gated chat {id} belongs to another bot"),
                        ));
                    }
                    if !*members {
                        if seen.insert((gated.bot_id.clone(), gated.chat_id)) {
                            let id = new_id("msg");
                            if personal {
                                out.personal
                                    .insert(id.clone(), Personal { data, link: None });
                            }
                            out.rows.push(NewMessage {
                                id,
                                bot_id: gated.bot_id.clone(),
                                chat_id: gated.chat_id,
                                link_id: None,
                                category: None,
                                content: None,
                            });
                        }
                        continue;
                    }
                    let before = out.rows.len();
                    self.members_of(&gated, data, personal, &mut out, &mut seen)
                        .await?;
                    if out.rows.len() == before {
                        out.skipped.push(Skipped::new(
                            &target,
                            SkipReason::NoActiveLink,
                            format!("gated chat {id} has no member with access whose private chat the bot can write to"),
                        ));
                    }
                }
                Target::Category(key) => {
                    if !self.store.category_exists(tenant_id, key).await? {
                        return Err(invalid("to", format!("no category {key:?}")));
                    }
                    let fanout = Fanout::Category { key: key.clone() };
                    let reach = self.store.fanout_reach(tenant_id, &fanout, bot_id).await?;
                    if reach.receiving > 0 {
                        out.fan_out(self, tenant_id, bot_id, fanout, data, personal, &mut seen)
                            .await?;
                    } else if reach.active > 0 {
                        out.skipped.push(Skipped::new(
                            &target,
                            SkipReason::OptedOut,
                            format!(
                                "all {} active links{} opted out of {key:?}",
                                reach.active,
                                with(bot_id)
                            ),
                        ));
                    } else {
                        out.skipped.push(Skipped::new(
                            &target,
                            SkipReason::CategoryEmpty,
                            format!("no active link{} to send {key:?} to", with(bot_id)),
                        ));
                    }
                }
            }
        }
        self.skip_unavailable_chats(&mut out).await?;
        Ok(out)
    }

    /// The private chats of a gated chat's members with access: through their link when
    /// they have one (so `/stop` holds), else the chat the bot knows; members who never
    /// started the bot are left out (Telegram would refuse).
    async fn members_of(
        &self,
        gated: &crate::store::GatedChatRecord,
        data: Option<Value>,
        personal: bool,
        out: &mut Recipients,
        seen: &mut HashSet<(String, i64)>,
    ) -> ServiceResult<()> {
        let now = self.clock.now_millis();
        let filter = crate::store::MembershipFilter {
            gated_chat_id: Some(gated.id.clone()),
            state: Some(crate::store::MembershipState::Member),
            ..Default::default()
        };
        let mut page = Page::first(200);
        out.fanned_out = true;
        loop {
            let listed = self
                .store
                .list_memberships(&gated.tenant_id, &filter, &page)
                .await?;
            for m in listed.items {
                let Some(user) = m
                    .telegram_user_id
                    .filter(|_| m.access_until > now && !m.unentitled)
                else {
                    continue;
                };
                let link = self
                    .store
                    .chat_links(&gated.bot_id, user)
                    .await?
                    .into_iter()
                    .find(|l| l.tenant_id == gated.tenant_id);
                let reachable = match &link {
                    Some(l) => l.active,
                    None => self
                        .store
                        .get_chat(&gated.bot_id, user)
                        .await?
                        .is_some_and(|c| c.state == ChatState::Active),
                };
                if !reachable || !seen.insert((gated.bot_id.clone(), user)) {
                    continue;
                }
                if out.rows.len() >= MAX_TARGETS {
                    return Err(invalid(
                        "to",
                        format!(
                            "a gated chat's members reach at most {MAX_TARGETS} recipients per request"
                        ),
                    ));
                }
                let id = new_id("msg");
                if personal {
                    out.personal.insert(
                        id.clone(),
                        Personal {
                            data: data.clone(),
                            link: link.clone(),
                        },
                    );
                }
                out.rows.push(NewMessage {
                    id,
                    bot_id: gated.bot_id.clone(),
                    chat_id: user,
                    link_id: link.map(|l| l.id),
                    category: None,
                    content: None,
                });
            }
            match listed.next_cursor {
                Some(after) => page.after = Some(after),
                None => return Ok(()),
            }
        }
    }

    /// The tenant's bot when it has exactly one.
    async fn sole_bot(&self, tenant_id: &str) -> ServiceResult<Option<String>> {
        let bots = self
            .store
            .list_bots(
                &BotFilter {
                    tenant_id: Some(tenant_id.to_string()),
                    ..BotFilter::default()
                },
                &Page::first(2),
            )
            .await?;
        Ok(match bots.items.as_slice() {
            [one] => Some(one.id.clone()),
            _ => None,
        })
    }

    /// A chat the bot can no longer write to (blocked, removed) gets nothing: one read for
    /// every `chat_id` target (a race with the chat's end is caught by the sender's claim).
    async fn skip_unavailable_chats(&self, out: &mut Recipients) -> ServiceResult<()> {
        let direct: Vec<(String, i64)> = out
            .rows
            .iter()
            .filter(|m| m.link_id.is_none())
            .map(|m| (m.bot_id.clone(), m.chat_id))
            .collect();
        let mut gone = self.store.unavailable_chats(&direct).await?;
        if gone.is_empty() {
            return Ok(());
        }
        gone.sort_by_key(|(_, chat, _)| *chat);
        for (bot, chat_id, state) in &gone {
            let (reason, why) = match state {
                ChatState::Blocked => (SkipReason::ChatBlocked, "the user blocked the bot"),
                ChatState::Kicked => (SkipReason::BotRemoved, "the bot was removed from it"),
                _ => (
                    SkipReason::ChatUnreachable,
                    "the bot is not in it or cannot reach it",
                ),
            };
            out.rows
                .retain(|m| !(m.link_id.is_none() && m.bot_id == *bot && m.chat_id == *chat_id));
            out.skipped.push(Skipped::new(
                &Target::Chat(*chat_id),
                reason,
                format!("chat {chat_id} is {}: {why}", state.as_str()),
            ));
        }
        Ok(())
    }
}

/// " with this bot" when the request names one.
fn with(bot_id: Option<&str>) -> &'static str {
    if bot_id.is_some() {
        " with this bot"
    } else {
        ""
    }
}

//! Invite links and join requests: createChatInviteLink, editChatInviteLink,
//! createChatSubscriptionInviteLink, editChatSubscriptionInviteLink, revokeChatInviteLink,
//! exportChatInviteLink, approveChatJoinRequest, declineChatJoinRequest. All need an
//! administrator with `can_invite_users`. Lowercase texts are TDLib's checks, capitals are
//! Telegram's server errors, in the order the Bot API server meets them.

use serde_json::{Value, json};

use super::members::{reachable_chat, require_right};
use crate::membership::{self, Via, link_json, status_of};
use crate::params::Params;
use crate::reply::ApiError;
use crate::world::{GroupKind, InviteLink, MemberStatus, RequestState, Subscription, World};

const LINK_RIGHTS: &str = "not enough rights to manage chat invite link";
const PRIVATE: &str = "can't invite members to a private chat";
/// TDLib cuts longer names silently.
const MAX_NAME: usize = 32;
/// The Bot API server clamps member_limit into 0..=100000; Telegram then takes 1..=99999.
const MEMBER_LIMIT_CLAMP: i64 = 100_000;
/// Telegram's only subscription period: 30 days.
const SUBSCRIPTION_PERIOD: i64 = 30 * 24 * 3600;
/// The `stars_subscription_amount_max` of Telegram's app config (Bot API docs: 1-10000).
const MAX_SUBSCRIPTION_PRICE: i64 = 10_000;

/// TDLib's check for every link method: a private chat has no links, and the bot must be an
/// administrator with `can_invite_users`.
fn manage_links(w: &World, bot_id: i64, chat_id: i64) -> Result<(), ApiError> {
    if chat_id > 0 {
        return Err(ApiError::bad_request(PRIVATE));
    }
    require_right(w, bot_id, chat_id, "can_invite_users", LINK_RIGHTS)
}

/// The fields createChatInviteLink and editChatInviteLink take, clamped as the Bot API
/// server clamps them; an edit sets every one, so those left out go back to defaults.
struct Fields {
    name: Option<String>,
    expire_date: i64,
    member_limit: i64,
    creates_join_request: bool,
}

fn fields(params: &Params) -> Result<Fields, ApiError> {
    let creates_join_request = params.bool("creates_join_request");
    let member_limit = params
        .i64("member_limit")?
        .unwrap_or(0)
        .clamp(0, MEMBER_LIMIT_CLAMP);
    if creates_join_request && member_limit > 0 {
        return Err(ApiError::bad_request(
            "member limit can't be specified for links requiring administrator approval",
        ));
    }
    Ok(Fields {
        name: name_param(params),
        expire_date: params.i64("expire_date")?.unwrap_or(0).max(0),
        member_limit,
        creates_join_request,
    })
}

fn name_param(params: &Params) -> Option<String> {
    params
        .str("name")
        .map(|n| n.chars().take(MAX_NAME).collect::<String>())
        .filter(|n| !n.is_empty())
}

impl Fields {
    /// What Telegram's server refuses of otherwise well-formed fields.
    fn check(&self) -> Result<(), ApiError> {
        if self.member_limit >= MEMBER_LIMIT_CLAMP {
            return Err(ApiError::bad_request("USAGE_LIMIT_INVALID"));
        }
        Ok(())
    }

    fn apply(self, link: &mut InviteLink) {
        link.name = self.name;
        link.expire_date = self.expire_date;
        link.member_limit = self.member_limit;
        link.creates_join_request = self.creates_join_request;
    }
}

pub fn create_chat_invite_link(
    w: &mut World,
    bot_id: i64,
    params: &Params,
) -> Result<Value, ApiError> {
    let chat_id = reachable_chat(w, bot_id, params)?;
    // TDLib refuses a limited approval link before it looks at rights.
    let f = fields(params)?;
    manage_links(w, bot_id, chat_id)?;
    f.check()?;
    if f.expire_date != 0 && f.expire_date <= w.now() {
        return Err(ApiError::bad_request("EXPIRE_DATE_INVALID"));
    }
    let mut link = InviteLink::new(bot_id);
    f.apply(&mut link);
    add_link(w, chat_id, bot_id, link)
}

fn add_link(w: &mut World, chat_id: i64, bot_id: i64, link: InviteLink) -> Result<Value, ApiError> {
    let g = w.groups.get_mut(&chat_id).expect("checked");
    g.invite_links.push(link.clone());
    let g = &w.groups[&chat_id];
    Ok(link_json(w, g, &link, bot_id))
}

pub fn create_chat_subscription_invite_link(
    w: &mut World,
    bot_id: i64,
    params: &Params,
) -> Result<Value, ApiError> {
    let chat_id = reachable_chat(w, bot_id, params)?;
    // The Bot API server clamps both numbers; TDLib then wants both positive.
    let period = params
        .i64("subscription_period")?
        .unwrap_or(0)
        .clamp(0, 1_000_000_000);
    let price = params
        .i64("subscription_price")?
        .unwrap_or(0)
        .clamp(0, 1_000_000);
    if period <= 0 || price <= 0 {
        return Err(ApiError::bad_request(
            "invalid subscription pricing specified",
        ));
    }
    manage_links(w, bot_id, chat_id)?;
    if w.groups[&chat_id].kind != GroupKind::Channel {
        // Only channels sell subscriptions (the answer's wording is not confirmed).
        return Err(ApiError::bad_request("PRICING_CHAT_INVALID"));
    }
    if period != SUBSCRIPTION_PERIOD {
        return Err(ApiError::bad_request("SUBSCRIPTION_PERIOD_INVALID"));
    }
    if price > MAX_SUBSCRIPTION_PRICE {
        return Err(ApiError::bad_request("PRICING_CHAT_INVALID"));
    }
    let mut link = InviteLink::new(bot_id);
    link.name = name_param(params);
    link.subscription = Some(Subscription { period, price });
    add_link(w, chat_id, bot_id, link)
}

/// The index of the bot's own live link named by `invite_link`.
fn own_link(w: &World, chat_id: i64, bot_id: i64, params: &Params) -> Result<usize, ApiError> {
    let url = params
        .str("invite_link")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("invite link must be non-empty"))?;
    let g = &w.groups[&chat_id];
    let i = g
        .invite_links
        .iter()
        .position(|l| l.url == url)
        .ok_or_else(|| ApiError::bad_request("INVITE_HASH_EXPIRED"))?;
    if g.invite_links[i].creator != bot_id {
        // An administrator manages only the links they made.
        return Err(ApiError::bad_request("CHAT_ADMIN_REQUIRED"));
    }
    Ok(i)
}

fn live_own_link(w: &World, chat_id: i64, bot_id: i64, params: &Params) -> Result<usize, ApiError> {
    let i = own_link(w, chat_id, bot_id, params)?;
    if w.groups[&chat_id].invite_links[i].is_revoked {
        return Err(ApiError::bad_request("INVITE_HASH_EXPIRED"));
    }
    Ok(i)
}

pub fn edit_chat_invite_link(
    w: &mut World,
    bot_id: i64,
    params: &Params,
) -> Result<Value, ApiError> {
    let chat_id = reachable_chat(w, bot_id, params)?;
    manage_links(w, bot_id, chat_id)?;
    let f = fields(params)?;
    let i = live_own_link(w, chat_id, bot_id, params)?;
    let mut link = w.groups[&chat_id].invite_links[i].clone();
    if link.is_primary && (f.expire_date != 0 || f.member_limit != 0) {
        return Err(ApiError::bad_request("CHAT_INVITE_PERMANENT"));
    }
    f.check()?;
    f.apply(&mut link);
    w.groups.get_mut(&chat_id).expect("checked").invite_links[i] = link.clone();
    Ok(link_json(w, &w.groups[&chat_id], &link, bot_id))
}

/// Only the name of a subscription link can change (TDLib sends nothing else).
pub fn edit_chat_subscription_invite_link(
    w: &mut World,
    bot_id: i64,
    params: &Params,
) -> Result<Value, ApiError> {
    let chat_id = reachable_chat(w, bot_id, params)?;
    manage_links(w, bot_id, chat_id)?;
    let i = live_own_link(w, chat_id, bot_id, params)?;
    let g = w.groups.get_mut(&chat_id).expect("checked");
    g.invite_links[i].name = name_param(params);
    let link = g.invite_links[i].clone();
    Ok(link_json(w, &w.groups[&chat_id], &link, bot_id))
}

pub fn revoke_chat_invite_link(
    w: &mut World,
    bot_id: i64,
    params: &Params,
) -> Result<Value, ApiError> {
    let chat_id = reachable_chat(w, bot_id, params)?;
    manage_links(w, bot_id, chat_id)?;
    let i = own_link(w, chat_id, bot_id, params)?;
    let g = w.groups.get_mut(&chat_id).expect("checked");
    let was_primary = g.invite_links[i].is_primary;
    g.invite_links[i].is_revoked = true;
    g.invite_links[i].is_primary = false;
    let link = g.invite_links[i].clone();
    if was_primary {
        // The chat always has a primary link: revoking it makes a new one.
        let mut fresh = InviteLink::new(bot_id);
        fresh.is_primary = true;
        g.invite_links.push(fresh);
    }
    let mut v = link_json(w, &w.groups[&chat_id], &link, bot_id);
    if was_primary {
        v["is_primary"] = json!(true);
    }
    Ok(v)
}

pub fn export_chat_invite_link(
    w: &mut World,
    bot_id: i64,
    params: &Params,
) -> Result<Value, ApiError> {
    let chat_id = reachable_chat(w, bot_id, params)?;
    manage_links(w, bot_id, chat_id)?;
    let g = w.groups.get_mut(&chat_id).expect("checked");
    // A new primary link for the bot; the previous one is revoked.
    for l in g.invite_links.iter_mut().filter(|l| l.is_primary) {
        l.is_primary = false;
        l.is_revoked = true;
    }
    let mut link = InviteLink::new(bot_id);
    link.is_primary = true;
    let url = link.url.clone();
    g.invite_links.push(link);
    Ok(json!(url))
}

/// The pending request of `user_id`, after the checks the Bot API server and TDLib make.
fn pending_request(w: &World, bot_id: i64, params: &Params) -> Result<(i64, i64), ApiError> {
    let user_id = params
        .i64("user_id")
        .ok()
        .flatten()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request("invalid user_id specified"))?;
    let chat_id = reachable_chat(w, bot_id, params)?;
    if !w.users.contains_key(&user_id) {
        return Err(ApiError::bad_request("user not found"));
    }
    if chat_id > 0 {
        return Err(ApiError::bad_request("the chat can't have join requests"));
    }
    require_right(
        w,
        bot_id,
        chat_id,
        "can_invite_users",
        "not enough rights to manage chat join requests",
    )?;
    let g = &w.groups[&chat_id];
    if status_of(g, user_id).is_in() {
        return Err(ApiError::bad_request("USER_ALREADY_PARTICIPANT"));
    }
    match g.join_requests.get(&user_id) {
        Some(r) if r.state == RequestState::Pending => Ok((chat_id, user_id)),
        // Handled, expired or never sent.
        _ => Err(ApiError::bad_request("HIDE_REQUESTER_MISSING")),
    }
}

pub fn approve_chat_join_request(
    w: &mut World,
    bot_id: i64,
    params: &Params,
) -> Result<Value, ApiError> {
    let (chat_id, user_id) = pending_request(w, bot_id, params)?;
    let g = w.groups.get_mut(&chat_id).expect("checked");
    let request = g.join_requests.get_mut(&user_id).expect("checked");
    request.state = RequestState::Approved;
    let url = request.link.clone();
    if let Some(l) = g.invite_links.iter_mut().find(|l| l.url == url) {
        l.joined.insert(user_id);
    }
    let actor = w.bots[&bot_id].user_json();
    let via = Via {
        invite_link: Some(url),
        join_request: true,
    };
    membership::set_status(w, chat_id, user_id, MemberStatus::member(), actor, via);
    Ok(json!(true))
}

pub fn decline_chat_join_request(
    w: &mut World,
    bot_id: i64,
    params: &Params,
) -> Result<Value, ApiError> {
    let (chat_id, user_id) = pending_request(w, bot_id, params)?;
    let g = w.groups.get_mut(&chat_id).expect("checked");
    g.join_requests.get_mut(&user_id).expect("checked").state = RequestState::Declined;
    Ok(json!(true))
}

//! Invite links and join requests: createChatInviteLink, editChatInviteLink,
//! revokeChatInviteLink, exportChatInviteLink, approveChatJoinRequest, declineChatJoinRequest.
//! All need an administrator with `can_invite_users`; the error texts are TDLib's.

use serde_json::{Value, json};

use super::members::admin_with_right;
use crate::membership::{self, Via, is_in, link_json, status_of};
use crate::params::Params;
use crate::reply::ApiError;
use crate::world::{InviteLink, RequestState, World};

const LINK_RIGHTS: &str = "not enough rights to manage chat invite link";
const PRIVATE: &str = "can't invite members to a private chat";
/// TDLib cuts longer names silently.
const MAX_NAME: usize = 32;
const MAX_MEMBER_LIMIT: i64 = 99_999;

fn link_admin(w: &World, bot_id: i64, params: &Params) -> Result<i64, ApiError> {
    admin_with_right(w, bot_id, params, "can_invite_users", PRIVATE, LINK_RIGHTS)
}

/// Applies name, expire_date, member_limit and creates_join_request; an edit sets every
/// field, so the ones left out go back to their defaults.
fn apply_fields(link: &mut InviteLink, params: &Params) -> Result<(), ApiError> {
    let creates_join_request = params.bool("creates_join_request");
    // Out-of-range limits are clamped, not refused.
    let member_limit = params
        .i64("member_limit")?
        .unwrap_or(0)
        .clamp(0, MAX_MEMBER_LIMIT);
    if creates_join_request && member_limit > 0 {
        return Err(ApiError::bad_request(
            "member limit can't be specified for links requiring administrator approval",
        ));
    }
    link.name = params
        .str("name")
        .map(|n| n.chars().take(MAX_NAME).collect::<String>())
        .filter(|n| !n.is_empty());
    link.expire_date = params.i64("expire_date")?.unwrap_or(0).max(0);
    link.member_limit = member_limit;
    link.creates_join_request = creates_join_request;
    Ok(())
}

pub fn create_chat_invite_link(
    w: &mut World,
    bot_id: i64,
    params: &Params,
) -> Result<Value, ApiError> {
    let chat_id = link_admin(w, bot_id, params)?;
    let mut link = InviteLink::new(bot_id);
    apply_fields(&mut link, params)?;
    let g = w.groups.get_mut(&chat_id).expect("checked");
    g.invite_links.push(link.clone());
    let g = &w.groups[&chat_id];
    Ok(link_json(w, g, &link, bot_id))
}

/// The index of the bot's own link named by `invite_link`.
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

pub fn edit_chat_invite_link(
    w: &mut World,
    bot_id: i64,
    params: &Params,
) -> Result<Value, ApiError> {
    let chat_id = link_admin(w, bot_id, params)?;
    let i = own_link(w, chat_id, bot_id, params)?;
    let mut link = w.groups[&chat_id].invite_links[i].clone();
    if link.is_revoked {
        return Err(ApiError::bad_request("INVITE_HASH_EXPIRED"));
    }
    apply_fields(&mut link, params)?;
    w.groups.get_mut(&chat_id).expect("checked").invite_links[i] = link.clone();
    Ok(link_json(w, &w.groups[&chat_id], &link, bot_id))
}

pub fn revoke_chat_invite_link(
    w: &mut World,
    bot_id: i64,
    params: &Params,
) -> Result<Value, ApiError> {
    let chat_id = link_admin(w, bot_id, params)?;
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
    let chat_id = link_admin(w, bot_id, params)?;
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

/// The pending request of `user_id`, after the checks Telegram makes.
fn pending_request(w: &World, bot_id: i64, params: &Params) -> Result<(i64, i64), ApiError> {
    let chat_id = admin_with_right(
        w,
        bot_id,
        params,
        "can_invite_users",
        "can't manage join requests in a private chat",
        LINK_RIGHTS,
    )?;
    let user_id = params
        .i64("user_id")?
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request("invalid user_id specified"))?;
    if !w.users.contains_key(&user_id) {
        return Err(ApiError::bad_request("user not found"));
    }
    let g = &w.groups[&chat_id];
    if is_in(status_of(g, user_id)) {
        return Err(ApiError::bad_request("USER_ALREADY_PARTICIPANT"));
    }
    match g.join_requests.get(&user_id) {
        Some(r) if r.state == RequestState::Pending => Ok((chat_id, user_id)),
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
    membership::set_status(w, chat_id, user_id, "member", actor, via);
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

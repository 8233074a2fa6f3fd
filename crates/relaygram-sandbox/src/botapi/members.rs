//! Moderating members: banChatMember, unbanChatMember, restrictChatMember,
//! getChatMemberCount, getChatAdministrators, and the administrator-rights check they share
//! with invite links. Error texts and their order follow the Bot API server and TDLib.

use serde_json::{Value, json};

use super::chats::{chat_id_param, check_can_send, visible_chat};
use super::permissions;
use crate::membership::{self, Via, administrator, is_in, status_of};
use crate::params::Params;
use crate::reply::ApiError;
use crate::world::{GroupKind, MemberStatus, World};

const RESTRICT_RIGHTS: &str = "not enough rights to restrict/unrestrict chat member";

/// The chat named by `chat_id`, if the bot may act in it: a known user's private chat, or a
/// group the bot is in (the Bot API server's own check, before TDLib's).
pub fn reachable_chat(w: &World, bot_id: i64, params: &Params) -> Result<i64, ApiError> {
    let chat_id = chat_id_param(w, params)?;
    if chat_id > 0 {
        return if w.users.contains_key(&chat_id) {
            Ok(chat_id)
        } else {
            Err(ApiError::chat_not_found())
        };
    }
    check_can_send(w, bot_id, chat_id)?;
    Ok(chat_id)
}

pub fn require_right(
    w: &World,
    bot_id: i64,
    chat_id: i64,
    right: &str,
    no_rights: &str,
) -> Result<(), ApiError> {
    let member = &w.groups[&chat_id].bots[&bot_id];
    if member.status != "administrator" || member.rights.get(right) != Some(&json!(true)) {
        return Err(ApiError::bad_request(no_rights));
    }
    Ok(())
}

/// `user_id` as the Bot API server reads it, before it looks at the chat.
fn user_id_param(params: &Params) -> Result<i64, ApiError> {
    params
        .i64("user_id")
        .ok()
        .flatten()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request("invalid user_id specified"))
}

/// The user, who must be someone Telegram knows.
fn known_user(w: &World, id: i64) -> Result<i64, ApiError> {
    if w.users.contains_key(&id) {
        Ok(id)
    } else {
        Err(ApiError::bad_request("user not found"))
    }
}

/// TDLib's order for changing someone's status in a supergroup or channel: the owner cannot
/// be touched at all, then the bot needs `can_restrict_members`, then the server refuses to
/// touch administrators (USER_ADMIN_INVALID, which the Bot API words as below).
fn check_changeable(
    w: &World,
    bot_id: i64,
    chat_id: i64,
    status: &MemberStatus,
) -> Result<(), ApiError> {
    if *status == MemberStatus::Creator {
        return Err(ApiError::bad_request("can't remove chat owner"));
    }
    require_right(w, bot_id, chat_id, "can_restrict_members", RESTRICT_RIGHTS)?;
    if *status == MemberStatus::Administrator {
        return Err(ApiError::bad_request(
            "user is an administrator of the chat",
        ));
    }
    Ok(())
}

/// Telegram's rule for `until_date`: under 30 s or over 366 days from now means forever.
fn until_param(w: &World, params: &Params) -> Result<i64, ApiError> {
    let now = w.now();
    let until = params.i64("until_date")?.unwrap_or(0);
    Ok(if until < now + 30 || until > now + 366 * 86400 {
        0
    } else {
        until
    })
}

pub fn ban_chat_member(w: &mut World, bot_id: i64, params: &Params) -> Result<Value, ApiError> {
    let user_id = user_id_param(params)?;
    let chat_id = reachable_chat(w, bot_id, params)?;
    if chat_id > 0 {
        return Err(ApiError::bad_request("can't ban members in private chats"));
    }
    known_user(w, user_id)?;
    let until = until_param(w, params)?;
    let g = &w.groups[&chat_id];
    let status = status_of(g, user_id).clone();
    let actor = w.bots[&bot_id].user_json();
    if g.kind == GroupKind::Group {
        // A basic group keeps no ban list: TDLib turns the ban into removing the member, and
        // the server's messages.deleteChatUser answers with its error names.
        let bot = &g.bots[&bot_id];
        if bot.status != "administrator"
            || bot.rights.get("can_restrict_members") != Some(&json!(true))
            || status.is_admin()
        {
            return Err(ApiError::bad_request("CHAT_ADMIN_REQUIRED"));
        }
        if !status.is_in() {
            return Err(ApiError::bad_request("USER_NOT_PARTICIPANT"));
        }
        membership::set_status(
            w,
            chat_id,
            user_id,
            MemberStatus::Left,
            actor,
            Via::default(),
        );
        return Ok(json!(true));
    }
    check_changeable(w, bot_id, chat_id, &status)?;
    let new = MemberStatus::Kicked { until };
    if let MemberStatus::Kicked { .. } = status {
        // Banning again only moves until_date: no update.
        w.groups
            .get_mut(&chat_id)
            .expect("checked")
            .members
            .insert(user_id, new);
    } else {
        membership::set_status(w, chat_id, user_id, new, actor, Via::default());
    }
    Ok(json!(true))
}

pub fn unban_chat_member(w: &mut World, bot_id: i64, params: &Params) -> Result<Value, ApiError> {
    const ONLY_SUPERGROUPS: &str = "method is available for supergroup and channel chats only";
    let user_id = user_id_param(params)?;
    let chat_id = reachable_chat(w, bot_id, params)?;
    if chat_id > 0 || w.groups[&chat_id].kind == GroupKind::Group {
        return Err(ApiError::bad_request(ONLY_SUPERGROUPS));
    }
    known_user(w, user_id)?;
    let status = status_of(&w.groups[&chat_id], user_id).clone();
    let only_if_banned = params.bool("only_if_banned");
    if (only_if_banned && !matches!(status, MemberStatus::Kicked { .. }))
        || status == MemberStatus::Left
    {
        return Ok(json!(true));
    }
    check_changeable(w, bot_id, chat_id, &status)?;
    let actor = w.bots[&bot_id].user_json();
    if status.is_in() {
        // Telegram removes a member by banning them for a moment and then lifting the ban:
        // bots see member → kicked, then kicked → left.
        let soon = MemberStatus::Kicked {
            until: w.now() + 60,
        };
        membership::set_status(w, chat_id, user_id, soon, actor.clone(), Via::default());
    }
    membership::set_status(
        w,
        chat_id,
        user_id,
        MemberStatus::Left,
        actor,
        Via::default(),
    );
    Ok(json!(true))
}

pub fn restrict_chat_member(
    w: &mut World,
    bot_id: i64,
    params: &Params,
) -> Result<Value, ApiError> {
    let user_id = user_id_param(params)?;
    let permissions = permissions::parse(params)?;
    let chat_id = reachable_chat(w, bot_id, params)?;
    if chat_id > 0 || w.groups[&chat_id].kind != GroupKind::Supergroup {
        return Err(ApiError::bad_request(
            "method is available only for supergroups",
        ));
    }
    known_user(w, user_id)?;
    let until = until_param(w, params)?;
    let old = status_of(&w.groups[&chat_id], user_id).clone();
    let is_member = old.is_in();
    // A restriction that takes nothing away is no restriction: TDLib makes it a plain member
    // (or nothing, for someone who is not in the chat). That is how bots lift restrictions.
    let new = if permissions::grants_everything(&permissions) {
        if is_member {
            MemberStatus::member()
        } else {
            MemberStatus::Left
        }
    } else {
        MemberStatus::Restricted {
            is_member,
            until,
            permissions,
        }
    };
    // A subscriber who stays a member keeps the subscription's end.
    let new = match (&old, new) {
        (MemberStatus::Member { until }, MemberStatus::Member { .. }) => {
            MemberStatus::Member { until: *until }
        }
        (_, new) => new,
    };
    if new == old {
        return Ok(json!(true));
    }
    check_changeable(w, bot_id, chat_id, &old)?;
    let actor = w.bots[&bot_id].user_json();
    membership::set_status(w, chat_id, user_id, new, actor, Via::default());
    Ok(json!(true))
}

pub fn get_chat_member_count(w: &World, bot_id: i64, params: &Params) -> Result<Value, ApiError> {
    let chat_id = chat_id_param(w, params)?;
    visible_chat(w, bot_id, chat_id)?;
    if chat_id > 0 {
        // The user and the bot.
        return Ok(json!(2));
    }
    let g = &w.groups[&chat_id];
    let users = g.members.values().filter(|s| s.is_in()).count();
    let bots = g.bots.values().filter(|m| is_in(&m.status)).count();
    Ok(json!(users + bots))
}

pub fn get_chat_administrators(w: &World, bot_id: i64, params: &Params) -> Result<Value, ApiError> {
    let chat_id = chat_id_param(w, params)?;
    visible_chat(w, bot_id, chat_id)?;
    if chat_id > 0 {
        return Err(ApiError::bad_request(
            "there are no administrators in the private chat",
        ));
    }
    let g = &w.groups[&chat_id];
    let mut out: Vec<Value> = g
        .members
        .iter()
        .filter(|(_, s)| s.is_admin())
        .filter_map(|(id, s)| Some(membership::member_object(s, &w.users.get(id)?.json())))
        .collect();
    out.extend(
        g.bots
            .iter()
            .filter(|(_, m)| m.status == "administrator")
            .filter_map(|(id, m)| Some(administrator(w.bots.get(id)?.user_json(), &m.rights))),
    );
    Ok(json!(out))
}

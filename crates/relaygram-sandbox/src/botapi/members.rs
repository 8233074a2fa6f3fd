//! Moderating members: banChatMember, unbanChatMember, getChatMemberCount,
//! getChatAdministrators, and the administrator-rights check they share with invite links.

use serde_json::{Value, json};

use super::chats::{chat_id_param, check_can_send, visible_chat};
use crate::membership::{self, Via, administrator, is_in, status_of};
use crate::params::Params;
use crate::reply::ApiError;
use crate::world::{GroupKind, World, unix_now};

const RESTRICT_RIGHTS: &str = "not enough rights to restrict/unrestrict chat member";

/// The group the bot administers with `right`; `private` is Telegram's answer for a private
/// chat, `no_rights` for a bot that is not an administrator or lacks the right.
pub fn admin_with_right(
    w: &World,
    bot_id: i64,
    params: &Params,
    right: &str,
    private: &str,
    no_rights: &str,
) -> Result<i64, ApiError> {
    let chat_id = chat_id_param(w, params)?;
    if chat_id > 0 {
        return Err(if w.users.contains_key(&chat_id) {
            ApiError::bad_request(private)
        } else {
            ApiError::chat_not_found()
        });
    }
    check_can_send(w, bot_id, chat_id)?;
    let member = &w.groups[&chat_id].bots[&bot_id];
    if member.status != "administrator" || member.rights.get(right) != Some(&json!(true)) {
        return Err(ApiError::bad_request(no_rights));
    }
    Ok(chat_id)
}

/// `user_id`, which must name someone Telegram knows.
fn target_user(w: &World, params: &Params) -> Result<i64, ApiError> {
    let id = params
        .i64("user_id")?
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request("invalid user_id specified"))?;
    if w.users.contains_key(&id) {
        Ok(id)
    } else {
        Err(ApiError::bad_request("user not found"))
    }
}

/// Refuses to remove the owner or another administrator.
fn check_removable(status: &str) -> Result<(), ApiError> {
    match status {
        "creator" => Err(ApiError::bad_request("can't remove chat owner")),
        "administrator" => Err(ApiError::bad_request(
            "user is an administrator of the chat",
        )),
        _ => Ok(()),
    }
}

pub fn ban_chat_member(w: &mut World, bot_id: i64, params: &Params) -> Result<Value, ApiError> {
    let chat_id = admin_with_right(
        w,
        bot_id,
        params,
        "can_restrict_members",
        "can't ban members in private chats",
        RESTRICT_RIGHTS,
    )?;
    let user_id = target_user(w, params)?;
    let g = &w.groups[&chat_id];
    let status = status_of(g, user_id).to_string();
    check_removable(&status)?;
    // Telegram bans forever when until_date is under 30 s or over 366 days away.
    let now = unix_now();
    let until = params.i64("until_date")?.unwrap_or(0);
    let until = if until < now + 30 || until > now + 366 * 86400 {
        0
    } else {
        until
    };
    let actor = w.bots[&bot_id].user_json();
    if g.kind == GroupKind::Group {
        // A basic group cannot keep anyone out: a ban only removes.
        if is_in(&status) {
            membership::set_status(w, chat_id, user_id, "left", actor, Via::default());
        }
        return Ok(json!(true));
    }
    w.groups
        .get_mut(&chat_id)
        .expect("checked")
        .ban_until
        .insert(user_id, until);
    // Banning again only moves until_date: no update.
    if status != "kicked" {
        membership::set_status(w, chat_id, user_id, "kicked", actor, Via::default());
    }
    Ok(json!(true))
}

pub fn unban_chat_member(w: &mut World, bot_id: i64, params: &Params) -> Result<Value, ApiError> {
    const ONLY_SUPERGROUPS: &str = "method is available for supergroup and channel chats only";
    let chat_id = admin_with_right(
        w,
        bot_id,
        params,
        "can_restrict_members",
        ONLY_SUPERGROUPS,
        RESTRICT_RIGHTS,
    )?;
    if w.groups[&chat_id].kind == GroupKind::Group {
        return Err(ApiError::bad_request(ONLY_SUPERGROUPS));
    }
    let user_id = target_user(w, params)?;
    let status = status_of(&w.groups[&chat_id], user_id).to_string();
    let only_if_banned = params.bool("only_if_banned");
    if only_if_banned && status != "kicked" {
        return Ok(json!(true));
    }
    check_removable(&status)?;
    let actor = w.bots[&bot_id].user_json();
    if is_in(&status) {
        // Telegram removes a member by banning them for a moment and then lifting the ban:
        // bots see member → kicked, then kicked → left.
        let soon = unix_now() + 60;
        w.groups
            .get_mut(&chat_id)
            .expect("checked")
            .ban_until
            .insert(user_id, soon);
        membership::set_status(w, chat_id, user_id, "kicked", actor.clone(), Via::default());
    }
    if is_in(&status) || status == "kicked" {
        membership::set_status(w, chat_id, user_id, "left", actor, Via::default());
    }
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
    let users = g.members.values().filter(|s| is_in(s)).count();
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
        .filter(|(_, s)| matches!(s.as_str(), "creator" | "administrator"))
        .filter_map(|(id, s)| Some(membership::member_object(g, s, &w.users.get(id)?.json())))
        .collect();
    out.extend(
        g.bots
            .iter()
            .filter(|(_, m)| m.status == "administrator")
            .filter_map(|(id, m)| Some(administrator(w.bots.get(id)?.user_json(), &m.rights))),
    );
    Ok(json!(out))
}

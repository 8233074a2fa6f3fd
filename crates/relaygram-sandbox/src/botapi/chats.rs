//! Which chats a bot may reach, and the chat methods: getChat, getChatMember, sendChatAction.

use serde_json::{Value, json};

use crate::membership::administrator;
use crate::params::Params;
use crate::reply::ApiError;
use crate::world::{GroupKind, World};

/// Reads `chat_id`: an integer or `@username` of a public group or channel.
pub fn chat_id_param(w: &World, params: &Params) -> Result<i64, ApiError> {
    let raw = params
        .str("chat_id")
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::bad_request("chat_id is empty"))?;
    match raw.strip_prefix('@') {
        Some(name) => w
            .groups
            .values()
            .find(|g| {
                g.username
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(name))
            })
            .map(|g| g.id)
            .ok_or_else(ApiError::chat_not_found),
        None => raw.trim().parse().map_err(|_| ApiError::chat_not_found()),
    }
}

/// The chat a bot wants to send to, if Telegram would let it.
pub fn send_target(w: &World, bot_id: i64, params: &Params) -> Result<i64, ApiError> {
    let chat_id = chat_id_param(w, params)?;
    check_can_send(w, bot_id, chat_id)?;
    Ok(chat_id)
}

pub fn check_can_send(w: &World, bot_id: i64, chat_id: i64) -> Result<(), ApiError> {
    if chat_id > 0 {
        if w.bots.contains_key(&chat_id) {
            return Err(ApiError::forbidden("bot can't send messages to bots"));
        }
        let user = w.users.get(&chat_id).ok_or_else(ApiError::chat_not_found)?;
        if user.blocked.contains(&bot_id) {
            return Err(ApiError::forbidden("bot was blocked by the user"));
        }
        if !user.started.contains(&bot_id) {
            return Err(ApiError::forbidden(
                "bot can't initiate conversation with a user",
            ));
        }
        return Ok(());
    }
    let group = w
        .groups
        .get(&chat_id)
        .ok_or_else(ApiError::chat_not_found)?;
    if let Some(to) = group.migrated_to {
        return Err(ApiError::migrated(to));
    }
    let kind = match group.kind {
        GroupKind::Group => "group chat",
        GroupKind::Supergroup => "supergroup chat",
        GroupKind::Channel => "channel chat",
    };
    let status = group.bots.get(&bot_id).map(|m| m.status.as_str());
    match (group.kind, status) {
        (_, Some("kicked")) => Err(ApiError::forbidden(format!(
            "bot was kicked from the {kind}"
        ))),
        (GroupKind::Channel, Some("administrator")) => Ok(()),
        (GroupKind::Channel, Some("member")) => Err(ApiError::bad_request(
            "need administrator rights in the channel chat",
        )),
        (GroupKind::Channel, _) => Err(ApiError::chat_not_found()),
        (_, Some("member" | "administrator")) => Ok(()),
        _ => Err(ApiError::forbidden(format!(
            "bot is not a member of the {kind}"
        ))),
    }
}

/// A chat the bot can see (for reading): it has talked to the user, or is in the group.
pub fn visible_chat(w: &World, bot_id: i64, chat_id: i64) -> Result<(), ApiError> {
    if chat_id > 0 {
        let user = w.users.get(&chat_id).ok_or_else(ApiError::chat_not_found)?;
        if user.started.contains(&bot_id) || user.blocked.contains(&bot_id) {
            return Ok(());
        }
        return Err(ApiError::chat_not_found());
    }
    let group = w
        .groups
        .get(&chat_id)
        .ok_or_else(ApiError::chat_not_found)?;
    if let Some(to) = group.migrated_to {
        return Err(ApiError::migrated(to));
    }
    if group.username.is_some() || group.bots.contains_key(&bot_id) {
        Ok(())
    } else {
        Err(ApiError::chat_not_found())
    }
}

pub fn get_chat(w: &World, bot_id: i64, params: &Params) -> Result<Value, ApiError> {
    let chat_id = chat_id_param(w, params)?;
    visible_chat(w, bot_id, chat_id)?;
    let mut chat = w.chat_json(chat_id).ok_or_else(ApiError::chat_not_found)?;
    // Fields ChatFullInfo always carries.
    chat["accent_color_id"] = json!(0);
    chat["max_reaction_count"] = json!(11);
    chat["accepted_gift_types"] = json!({
        "unlimited_gifts": false, "limited_gifts": false, "unique_gifts": false,
        "premium_subscription": false, "gifts_from_channels": false
    });
    if let Some(g) = w.groups.get(&chat_id)
        && g.kind != GroupKind::Channel
    {
        chat["permissions"] = json!({
            "can_send_messages": true, "can_send_audios": true, "can_send_documents": true,
            "can_send_photos": true, "can_send_videos": true, "can_send_video_notes": true,
            "can_send_voice_notes": true, "can_send_polls": true,
            "can_send_other_messages": true, "can_add_web_page_previews": true,
            "can_change_info": false, "can_invite_users": true, "can_pin_messages": false,
            "can_manage_topics": false
        });
    }
    Ok(chat)
}

pub fn member_json(status: &str, user: Value) -> Value {
    match status {
        "creator" => json!({"status": "creator", "user": user, "is_anonymous": false}),
        "kicked" => json!({"status": "kicked", "user": user, "until_date": 0}),
        "administrator" => administrator(user, &serde_json::Map::new()),
        other => json!({"status": other, "user": user}),
    }
}

pub fn get_chat_member(w: &World, bot_id: i64, params: &Params) -> Result<Value, ApiError> {
    let chat_id = chat_id_param(w, params)?;
    visible_chat(w, bot_id, chat_id)?;
    let user_id = params
        .i64("user_id")?
        .ok_or_else(|| ApiError::bad_request("user not found"))?;
    if let Some(bot) = w.bots.get(&user_id) {
        if chat_id > 0 {
            return Ok(member_json("member", bot.user_json()));
        }
        let group = &w.groups[&chat_id];
        return Ok(match group.bots.get(&user_id) {
            Some(m) if m.status == "administrator" => administrator(bot.user_json(), &m.rights),
            Some(m) => member_json(&m.status, bot.user_json()),
            None => member_json("left", bot.user_json()),
        });
    }
    let user = w
        .users
        .get(&user_id)
        .ok_or_else(|| ApiError::bad_request("user not found"))?;
    if chat_id > 0 {
        return if chat_id == user_id {
            Ok(member_json("member", user.json()))
        } else {
            Err(ApiError::bad_request("user not found"))
        };
    }
    let g = &w.groups[&chat_id];
    let status = crate::membership::status_of(g, user_id);
    Ok(crate::membership::member_object(status, &user.json()))
}

const CHAT_ACTIONS: &[&str] = &[
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
];

pub fn send_chat_action(w: &World, bot_id: i64, params: &Params) -> Result<Value, ApiError> {
    let _ = send_target(w, bot_id, params)?;
    let action = params.str("action").unwrap_or_default();
    if !CHAT_ACTIONS.contains(&action.as_str()) {
        return Err(ApiError::bad_request("wrong parameter action in request"));
    }
    Ok(json!(true))
}

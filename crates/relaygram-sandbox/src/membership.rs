//! Membership changes in groups and channels, shared by the Bot API (bans, approvals) and the
//! control API (users joining, leaving, opening links): every change is told to the chat's
//! bots the way Telegram tells them — a service message to bots in the chat, `chat_member`
//! to its administrators (who get it only when they asked for it in `allowed_updates`).

use serde_json::{Value, json};

use crate::world::{Group, GroupKind, InviteLink, StoredMessage, World, unix_now};

/// Every administrator right, false unless granted.
const ADMIN_RIGHTS: &[&str] = &[
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_send_welcome_messages",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
    "can_post_messages",
    "can_edit_messages",
    "can_pin_messages",
    "can_manage_topics",
];

/// A ChatMemberAdministrator object with `rights` (every other right false).
pub fn administrator(user: Value, rights: &serde_json::Map<String, Value>) -> Value {
    let mut v = json!({"status": "administrator", "user": user, "can_be_edited": false, "is_anonymous": false});
    for r in ADMIN_RIGHTS {
        v[*r] = rights.get(*r).cloned().unwrap_or(json!(false));
    }
    v
}

/// Statuses of someone who is in the chat.
pub fn is_in(status: &str) -> bool {
    matches!(status, "creator" | "administrator" | "member")
}

pub fn status_of(g: &Group, user_id: i64) -> &str {
    g.members.get(&user_id).map_or("left", String::as_str)
}

/// A ChatMember object for a user's status in a group.
pub fn member_object(g: &Group, status: &str, user: &Value) -> Value {
    match status {
        "kicked" => json!({"status": "kicked", "user": user,
            "until_date": g.ban_until.get(&user["id"].as_i64().unwrap_or(0)).copied().unwrap_or(0)}),
        "creator" => json!({"status": "creator", "user": user, "is_anonymous": false}),
        "administrator" => administrator(user.clone(), &Default::default()),
        other => json!({"status": other, "user": user}),
    }
}

/// A ChatInviteLink object as `bot_id` sees it: links of others have their tail hidden.
pub fn link_json(w: &World, g: &Group, link: &InviteLink, bot_id: i64) -> Value {
    let creator = w
        .bots
        .get(&link.creator)
        .map(|b| b.user_json())
        .or_else(|| w.users.get(&link.creator).map(|u| u.json()))
        .unwrap_or(json!({"id": link.creator, "is_bot": false, "first_name": "Deleted Account"}));
    let url = if link.creator == bot_id {
        link.url.clone()
    } else {
        // "the second part of the link will be replaced with “…”"
        let cut = link.url.len() - 8;
        format!("{}...", &link.url[..cut])
    };
    let mut v = json!({
        "invite_link": url, "creator": creator,
        "creates_join_request": link.creates_join_request,
        "is_primary": link.is_primary, "is_revoked": link.is_revoked,
    });
    if let Some(n) = &link.name {
        v["name"] = json!(n);
    }
    if link.expire_date != 0 {
        v["expire_date"] = json!(link.expire_date);
    }
    if link.member_limit != 0 {
        v["member_limit"] = json!(link.member_limit);
    }
    let pending = g
        .join_requests
        .values()
        .filter(|r| r.link == link.url && r.state == crate::world::RequestState::Pending)
        .count();
    if pending > 0 {
        v["pending_join_request_count"] = json!(pending);
    }
    v
}

/// How a change came about, for the `chat_member` update.
#[derive(Default, Clone)]
pub struct Via {
    pub invite_link: Option<String>,
    pub join_request: bool,
}

/// What a change queued.
#[derive(Default)]
pub struct Change {
    /// The service message, when the user came in or went out (not in channels).
    pub message_id: Option<i64>,
    /// Per bot, the update carrying the service message.
    pub message_updates: Vec<(i64, i64)>,
    /// Every update queued.
    pub updates: Vec<i64>,
}

/// Sets a user's status and tells the bots. `actor` is who made the change (the user
/// themselves, or the administrator who banned or approved them).
pub fn set_status(
    w: &mut World,
    chat_id: i64,
    user_id: i64,
    new: &str,
    actor: Value,
    via: Via,
) -> Change {
    let mut change = Change::default();
    let Some(user) = w.users.get(&user_id).map(|u| u.json()) else {
        return change;
    };
    let Some(g) = w.groups.get_mut(&chat_id) else {
        return change;
    };
    let old = status_of(g, user_id).to_string();
    if new == "left" {
        g.members.remove(&user_id);
    } else {
        g.members.insert(user_id, new.to_string());
    }
    if new != "kicked" {
        g.ban_until.remove(&user_id);
    }
    let g = &w.groups[&chat_id];
    let chat = g.chat_json();
    let old_member = member_object(g, &old, &user);
    let new_member = member_object(g, new, &user);
    let in_chat: Vec<(i64, bool)> = g
        .bots
        .iter()
        .filter(|(_, m)| is_in(&m.status))
        .map(|(id, m)| (*id, m.status == "administrator"))
        .collect();
    let links: Vec<(i64, Value)> = match &via.invite_link {
        Some(url) => g
            .invite_links
            .iter()
            .filter(|l| &l.url == url)
            .flat_map(|l| in_chat.iter().map(|(b, _)| (*b, link_json(w, g, l, *b))))
            .collect(),
        None => Vec::new(),
    };
    // Channels show no service messages for joins and leaves.
    let message = (g.kind != GroupKind::Channel && is_in(&old) != is_in(new)).then(|| {
        let mut m = json!({"from": if is_in(new) { user.clone() } else { actor.clone() },
            "chat": chat, "date": unix_now()});
        if is_in(new) {
            m["new_chat_members"] = json!([user]);
            m["new_chat_member"] = user.clone();
            m["new_chat_participant"] = user.clone();
        } else {
            m["left_chat_member"] = user.clone();
            m["left_chat_participant"] = user.clone();
        }
        m
    });
    let message = message.map(|mut m| {
        let conv = w.conversation(0, chat_id);
        m["message_id"] = json!(conv.allocate_id());
        conv.messages.push(StoredMessage {
            message: m.clone(),
            direction: "in",
            bot_id: 0,
            silent: false,
            deleted: false,
            deleted_date: None,
        });
        m
    });
    change.message_id = message.as_ref().and_then(|m| m["message_id"].as_i64());
    for (bot, admin) in in_chat {
        if let Some(m) = &message
            && let Some(id) = w.enqueue_update(bot, json!({"message": m}))
        {
            change.message_updates.push((bot, id));
            change.updates.push(id);
        }
        if admin {
            let mut update = json!({
                "chat": chat, "from": actor, "date": unix_now(),
                "old_chat_member": old_member, "new_chat_member": new_member,
            });
            if let Some((_, l)) = links.iter().find(|(b, _)| *b == bot) {
                update["invite_link"] = l.clone();
            }
            if via.join_request {
                update["via_join_request"] = json!(true);
            }
            if let Some(id) = w.enqueue_update(bot, json!({ "chat_member": update })) {
                change.updates.push(id);
            }
        }
    }
    change
}

/// Bots that see join requests: administrators who may invite users.
pub fn request_handlers(g: &Group) -> Vec<i64> {
    g.bots
        .iter()
        .filter(|(_, m)| {
            m.status == "administrator" && m.rights.get("can_invite_users") == Some(&json!(true))
        })
        .map(|(id, _)| *id)
        .collect()
}

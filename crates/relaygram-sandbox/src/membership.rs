//! Membership changes in groups and channels, shared by the Bot API (bans, approvals) and the
//! control API (users joining, leaving, opening links): every change is told to the chat's
//! bots the way Telegram tells them — a service message to bots in the chat, `chat_member`
//! to its administrators (who get it only when they asked for it in `allowed_updates`) — and
//! what the passing of time does to memberships.

use serde_json::{Value, json};

use crate::world::{
    Group, GroupKind, InviteLink, MemberStatus, RequestState, StoredMessage, World,
};

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

/// Whether a bot's status (kept as Telegram's word) puts it in the chat.
pub fn is_in(status: &str) -> bool {
    matches!(status, "creator" | "administrator" | "member")
}

static LEFT: MemberStatus = MemberStatus::Left;

pub fn status_of(g: &Group, user_id: i64) -> &MemberStatus {
    g.members.get(&user_id).unwrap_or(&LEFT)
}

/// user id → status word, for the control API's listings.
pub fn members_json(g: &Group) -> Value {
    Value::Object(
        g.members
            .iter()
            .map(|(id, s)| (id.to_string(), json!(s.as_str())))
            .collect(),
    )
}

/// A ChatMember object for a user's status.
pub fn member_object(status: &MemberStatus, user: &Value) -> Value {
    match status {
        MemberStatus::Creator => json!({"status": "creator", "user": user, "is_anonymous": false}),
        MemberStatus::Administrator => administrator(user.clone(), &Default::default()),
        MemberStatus::Member { until } => {
            let mut v = json!({"status": "member", "user": user});
            if *until > 0 {
                v["until_date"] = json!(until);
            }
            v
        }
        MemberStatus::Restricted {
            is_member,
            until,
            permissions,
        } => {
            let mut v = json!({"status": "restricted", "user": user,
                "is_member": is_member, "until_date": until});
            for (k, p) in permissions {
                v[k] = p.clone();
            }
            v
        }
        MemberStatus::Left => json!({"status": "left", "user": user}),
        MemberStatus::Kicked { until } => {
            json!({"status": "kicked", "user": user, "until_date": until})
        }
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
    if let Some(sub) = link.subscription {
        v["subscription_period"] = json!(sub.period);
        v["subscription_price"] = json!(sub.price);
    }
    let pending = g
        .join_requests
        .values()
        .filter(|r| r.link == link.url && r.state == RequestState::Pending)
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
    new: MemberStatus,
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
    let old = status_of(g, user_id).clone();
    if new == MemberStatus::Left {
        g.members.remove(&user_id);
    } else {
        g.members.insert(user_id, new.clone());
    }
    let now = w.now();
    let g = &w.groups[&chat_id];
    let chat = g.chat_json();
    let old_member = member_object(&old, &user);
    let new_member = member_object(&new, &user);
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
    let message = (g.kind != GroupKind::Channel && old.is_in() != new.is_in()).then(|| {
        let mut m = json!({"from": if new.is_in() { user.clone() } else { actor.clone() },
            "chat": chat, "date": now});
        if new.is_in() {
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
                "chat": chat, "from": actor, "date": now,
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

/// Unanswered join requests vanish after this long. The figure is not Telegram's documented
/// behaviour (see docs/sandbox.md, Differences).
pub const JOIN_REQUEST_TTL: i64 = 24 * 3600;

/// Applies what time has done since the last look: bans and restrictions whose `until_date`
/// passed are lifted without an update (TDLib works them out itself: a banned user becomes
/// `left`, a restricted one `member` or `left`); old join requests expire; members whose
/// subscription ran out are removed, which bots are told as for a leave. Called before
/// every Bot API call and control verb that reads memberships, so it happens lazily.
pub fn settle(w: &mut World) {
    let now = w.now();
    let mut lapsed = Vec::new();
    for g in w.groups.values_mut() {
        g.members.retain(|_, s| {
            let ended = match s {
                MemberStatus::Kicked { until } | MemberStatus::Restricted { until, .. } => {
                    *until != 0 && *until <= now
                }
                _ => false,
            };
            if !ended {
                return true;
            }
            let stays = s.is_in();
            *s = MemberStatus::member();
            stays
        });
        for (user, s) in &g.members {
            if let MemberStatus::Member { until } = s
                && *until != 0
                && *until <= now
            {
                lapsed.push((g.id, *user));
            }
        }
        for r in g.join_requests.values_mut() {
            if r.state == RequestState::Pending && r.date + JOIN_REQUEST_TTL <= now {
                r.state = RequestState::Expired;
            }
        }
    }
    for (chat_id, user_id) in lapsed {
        lapse(w, chat_id, user_id);
    }
}

/// A subscription runs out: the member leaves the channel. Returns the updates queued.
pub fn lapse(w: &mut World, chat_id: i64, user_id: i64) -> Vec<i64> {
    let Some(user) = w.users.get(&user_id).map(|u| u.json()) else {
        return Vec::new();
    };
    set_status(
        w,
        chat_id,
        user_id,
        MemberStatus::Left,
        user,
        Via::default(),
    )
    .updates
}

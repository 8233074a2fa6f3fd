//! The control API under `/sandbox/`: act as Telegram's users and groups, inject updates,
//! set faults, read transcripts and statistics. Documented in docs/sandbox.md and kept
//! stable: users script it in their own CI.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Shared;
use crate::faults::{Fault, FaultSpec};
use crate::markup;
use crate::membership;
use crate::world::{
    BotMember, CallbackRecord, GroupKind, InviteLink, JoinRequest, MemberStatus, RequestState,
    StoredMessage, User, World, unix_now, valid_bot_username,
};

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/sandbox/bots", post(create_bot).get(list_bots))
        .route("/sandbox/bots/{bot}", get(get_bot))
        .route("/sandbox/bots/{bot}/updates", post(inject_update))
        .route("/sandbox/users", post(create_user).get(list_users))
        .route("/sandbox/users/{user}", get(get_user))
        .route("/sandbox/users/{user}/messages", post(user_message))
        .route("/sandbox/users/{user}/callback", post(user_callback))
        .route("/sandbox/users/{user}/block", post(block))
        .route("/sandbox/users/{user}/unblock", post(unblock))
        .route("/sandbox/users/{user}/join", post(open_invite_link))
        .route("/sandbox/users/{user}/leave", post(leave_chat))
        .route(
            "/sandbox/users/{user}/subscriptions/{chat}/lapse",
            post(lapse_subscription),
        )
        .route("/sandbox/clock", get(get_clock).post(advance_clock))
        .route("/sandbox/callbacks/{id}", get(get_callback))
        .route("/sandbox/groups", post(create_group).get(list_groups))
        .route("/sandbox/groups/{chat}/members", post(join_group))
        .route("/sandbox/groups/{chat}/members/{user}", delete(leave_group))
        .route("/sandbox/groups/{chat}/bots", post(add_bot_to_group))
        .route(
            "/sandbox/groups/{chat}/bots/{bot}/rights",
            post(set_bot_rights),
        )
        .route(
            "/sandbox/groups/{chat}/invite-links",
            post(create_invite_link),
        )
        .route("/sandbox/groups/{chat}/migrate", post(migrate_group))
        .route("/sandbox/chats/{chat}/messages", get(transcript))
        .route(
            "/sandbox/faults",
            post(add_fault).get(list_faults).delete(clear_faults),
        )
        .route("/sandbox/faults/{id}", delete(remove_fault))
        .route("/sandbox/reset", post(reset))
        .route("/sandbox/stats", get(stats))
        .route("/sandbox/calls", get(calls))
}

/// A control API error: `{"error": "…"}` with a fitting status.
#[derive(Debug)]
pub struct ControlError(StatusCode, String);

impl ControlError {
    fn not_found(what: impl Into<String>) -> Self {
        ControlError(StatusCode::NOT_FOUND, what.into())
    }
    fn invalid(what: impl Into<String>) -> Self {
        ControlError(StatusCode::UNPROCESSABLE_ENTITY, what.into())
    }
    fn conflict(what: impl Into<String>) -> Self {
        ControlError(StatusCode::CONFLICT, what.into())
    }
    pub fn message(&self) -> &str {
        &self.1
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

type Result<T> = std::result::Result<T, ControlError>;

/// The JSON body, with a readable error instead of axum's plain-text rejection.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ControlError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ControlError::invalid(e.to_string()))?;
        let bytes = if bytes.is_empty() {
            axum::body::Bytes::from_static(b"{}")
        } else {
            bytes
        };
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| ControlError(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
    }
}

fn bot_key(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn find_bot(w: &World, key: &str) -> Result<i64> {
    w.find_bot(key)
        .ok_or_else(|| ControlError::not_found(format!("no bot {key:?}")))
}

fn find_user(w: &World, id: i64) -> Result<&User> {
    w.users
        .get(&id)
        .ok_or_else(|| ControlError::not_found(format!("no user {id}")))
}

// ---- bots ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBot {
    username: String,
    first_name: Option<String>,
}

async fn create_bot(
    State(s): State<Arc<Shared>>,
    Body(b): Body<NewBot>,
) -> Result<(StatusCode, Json<Value>)> {
    let name = b.username.trim_start_matches('@').to_string();
    if !valid_bot_username(&name) {
        return Err(ControlError::invalid(
            "username must be 5-32 characters of A-Z, a-z, 0-9 and _, ending in \"bot\"",
        ));
    }
    let mut w = s.world();
    if w.find_bot(&name).is_some() {
        return Err(ControlError::conflict(format!(
            "bot @{name} already exists"
        )));
    }
    let first_name = b.first_name.unwrap_or_else(|| name.clone());
    let bot = w.add_bot(name, first_name);
    Ok((StatusCode::CREATED, Json(bot_summary(bot))))
}

fn bot_summary(b: &crate::world::Bot) -> Value {
    json!({"id": b.id, "token": b.token, "username": b.username, "first_name": b.first_name})
}

async fn list_bots(State(s): State<Arc<Shared>>) -> Json<Value> {
    let w = s.world();
    Json(json!({"bots": w.bots.values().map(bot_summary).collect::<Vec<_>>()}))
}

async fn get_bot(State(s): State<Arc<Shared>>, Path(key): Path<String>) -> Result<Json<Value>> {
    let w = s.world();
    let id = find_bot(&w, &key)?;
    let b = &w.bots[&id];
    let mut v = bot_summary(b);
    v["pending_update_count"] = json!(b.pending_count());
    v["webhook"] = match &b.webhook {
        Some(h) => json!({
            "url": h.url, "secret_token": h.secret_token, "max_connections": h.max_connections,
            "last_error_date": h.last_error_date, "last_error_message": h.last_error_message,
        }),
        None => Value::Null,
    };
    v["allowed_updates"] = json!(b.allowed_updates);
    v["commands"] = Value::Array(
        b.commands
            .iter()
            .map(|((scope, lang), cmds)| json!({"scope": scope, "language_code": lang, "commands": cmds}))
            .collect(),
    );
    Ok(Json(v))
}

async fn inject_update(
    State(s): State<Arc<Shared>>,
    Path(key): Path<String>,
    Body(update): Body<Value>,
) -> Result<Json<Value>> {
    if !update.is_object() || crate::world::update_kind(&update).is_none() {
        return Err(ControlError::invalid(
            "an Update object with one field besides update_id is required",
        ));
    }
    if update.get("update_id").is_some_and(|v| !v.is_i64()) {
        return Err(ControlError::invalid("update_id must be an integer"));
    }
    let id = {
        let mut w = s.world();
        let bot = find_bot(&w, &key)?;
        w.enqueue_update(bot, update)
    };
    s.dispatch.notify_one();
    Ok(Json(json!({"update_id": id, "queued": id.is_some()})))
}

// ---- users ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    first_name: String,
    last_name: Option<String>,
    username: Option<String>,
    language_code: Option<String>,
    #[serde(default)]
    is_premium: bool,
}

async fn create_user(
    State(s): State<Arc<Shared>>,
    Body(u): Body<NewUser>,
) -> Result<(StatusCode, Json<Value>)> {
    if u.first_name.trim().is_empty() {
        return Err(ControlError::invalid("first_name must not be empty"));
    }
    let username = u.username.map(|n| n.trim_start_matches('@').to_string());
    let mut w = s.world();
    if let Some(name) = &username {
        let taken = w.users.values().any(|x| {
            x.username
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        });
        if taken {
            return Err(ControlError::conflict(format!("username @{name} is taken")));
        }
    }
    let id = w.add_user(User {
        id: 0,
        first_name: u.first_name,
        last_name: u.last_name,
        username,
        language_code: u.language_code,
        is_premium: u.is_premium,
        started: Default::default(),
        blocked: Default::default(),
    });
    Ok((StatusCode::CREATED, Json(w.users[&id].json())))
}

async fn list_users(State(s): State<Arc<Shared>>) -> Json<Value> {
    let w = s.world();
    Json(json!({"users": w.users.values().map(User::json).collect::<Vec<_>>()}))
}

async fn get_user(State(s): State<Arc<Shared>>, Path(id): Path<i64>) -> Result<Json<Value>> {
    let w = s.world();
    let u = find_user(&w, id)?;
    let mut v = u.json();
    v["started_bots"] = json!(u.started);
    v["blocked_bots"] = json!(u.blocked);
    Ok(Json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserMessage {
    /// Required for private chats; in a group, only that bot gets the update when given.
    bot: Option<Value>,
    text: String,
    /// A group the user is in; the user's private chat with `bot` when absent.
    chat_id: Option<i64>,
    reply_to_message_id: Option<i64>,
}

async fn user_message(
    State(s): State<Arc<Shared>>,
    Path(user_id): Path<i64>,
    Body(m): Body<UserMessage>,
) -> Result<Json<Value>> {
    let out = {
        let mut w = s.world();
        send_user_message(&mut w, user_id, m)?
    };
    s.dispatch.notify_one();
    Ok(Json(out))
}

/// Stores a user's message and queues the updates; shared with the chat page. With `chat`,
/// the message goes to that group or channel (every bot in it gets the update).
pub fn send_user_message_text(
    w: &mut World,
    user_id: i64,
    bot: &str,
    chat: Option<i64>,
    text: &str,
) -> Result<Value> {
    send_user_message(
        w,
        user_id,
        UserMessage {
            bot: chat.is_none().then(|| json!(bot)),
            text: text.to_string(),
            chat_id: chat,
            reply_to_message_id: None,
        },
    )
}

fn send_user_message(w: &mut World, user_id: i64, m: UserMessage) -> Result<Value> {
    if m.text.is_empty() {
        return Err(ControlError::invalid("text must not be empty"));
    }
    if markup::utf16_len(&m.text) > 4096 {
        return Err(ControlError::invalid("text is longer than 4096 characters"));
    }
    let user = find_user(w, user_id)?.clone();
    let bot = match &m.bot {
        Some(v) => Some(find_bot(
            w,
            &bot_key(v).ok_or_else(|| ControlError::invalid("bot must be a username or an id"))?,
        )?),
        None => None,
    };
    let mut channel = false;
    let (chat_id, recipients) = match m.chat_id {
        None | Some(0) => {
            let bot =
                bot.ok_or_else(|| ControlError::invalid("bot is required for a private chat"))?;
            if user.blocked.contains(&bot) {
                return Err(ControlError::conflict(
                    "the user has blocked this bot: unblock it first",
                ));
            }
            (user_id, vec![bot])
        }
        Some(chat_id) => {
            let g = w
                .groups
                .get(&chat_id)
                .ok_or_else(|| ControlError::not_found(format!("no group {chat_id}")))?;
            if g.migrated_to.is_some() {
                return Err(ControlError::conflict(format!(
                    "group {chat_id} was migrated to {}",
                    g.migrated_to.unwrap_or_default()
                )));
            }
            channel = g.kind == GroupKind::Channel;
            let status = membership::status_of(g, user_id);
            // In a channel only its admins post; members read.
            let may_post = match status {
                s if s.is_admin() => true,
                MemberStatus::Member { .. } => !channel,
                MemberStatus::Restricted {
                    is_member: true,
                    permissions,
                    ..
                } => permissions.get("can_send_messages") == Some(&json!(true)),
                _ => false,
            };
            if !may_post {
                return Err(ControlError::conflict(if channel {
                    format!("user {user_id} is not an administrator of channel {chat_id}")
                } else if status.is_in() {
                    format!("user {user_id} is restricted in {chat_id}: may not send messages")
                } else {
                    format!("user {user_id} is not a member of {chat_id}")
                }));
            }
            // A bot in a channel sees its posts only as an administrator.
            let bot_statuses = if channel {
                &["administrator"][..]
            } else {
                &["member", "administrator"][..]
            };
            let in_group: Vec<i64> = g
                .bots
                .iter()
                .filter(|(_, m)| bot_statuses.contains(&m.status.as_str()))
                .map(|(id, _)| *id)
                .filter(|id| bot.is_none_or(|b| b == *id))
                .collect();
            (chat_id, in_group)
        }
    };
    let conv_bot = bot.unwrap_or(0);
    let chat = w.chat_json(chat_id).expect("chat checked above");
    let entities = markup::detect_entities(&m.text);
    let replied = match m.reply_to_message_id {
        Some(id) => Some(
            w.conversation(conv_bot, chat_id)
                .find(id)
                .map(|r| r.message.clone())
                .ok_or_else(|| ControlError::not_found(format!("no message {id} to reply to")))?,
        ),
        None => None,
    };
    let conv = w.conversation(conv_bot, chat_id);
    let message_id = conv.allocate_id();
    let mut message = json!({
        "message_id": message_id, "from": user.json(), "chat": chat, "date": unix_now(), "text": m.text,
    });
    if channel {
        // Channel posts are sent on behalf of the channel: `sender_chat`, no `from`.
        message["sender_chat"] = message["chat"].clone();
        if let Some(m) = message.as_object_mut() {
            m.remove("from");
        }
    }
    if !entities.is_empty() {
        message["entities"] = json!(entities);
    }
    if let Some(r) = replied {
        message["reply_to_message"] = r;
    }
    conv.messages.push(StoredMessage {
        message: message.clone(),
        direction: "in",
        bot_id: conv_bot,
        silent: false,
        deleted: false,
        deleted_date: None,
    });
    if chat_id > 0
        && let Some(u) = w.users.get_mut(&user_id)
    {
        u.started.insert(conv_bot);
    }
    let mut update_ids = serde_json::Map::new();
    for b in &recipients {
        let kind = if channel { "channel_post" } else { "message" };
        if let Some(id) = w.enqueue_update(*b, json!({ kind: message })) {
            update_ids.insert(b.to_string(), json!(id));
        }
    }
    let update_id = bot
        .and_then(|b| update_ids.get(&b.to_string()).cloned())
        .unwrap_or(Value::Null);
    Ok(
        json!({"update_id": update_id, "update_ids": update_ids, "message_id": message_id, "chat_id": chat_id}),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Press {
    bot: Value,
    message_id: i64,
    data: String,
    chat_id: Option<i64>,
}

async fn user_callback(
    State(s): State<Arc<Shared>>,
    Path(user_id): Path<i64>,
    Body(p): Body<Press>,
) -> Result<Json<Value>> {
    let out = {
        let mut w = s.world();
        let bot = bot_key(&p.bot)
            .ok_or_else(|| ControlError::invalid("bot must be a username or an id"))?;
        press_button(
            &mut w,
            user_id,
            &bot,
            p.chat_id.unwrap_or(user_id),
            p.message_id,
            &p.data,
        )?
    };
    s.dispatch.notify_one();
    Ok(Json(out))
}

/// Presses an inline button of a message the bot sent; shared with the chat page.
pub fn press_button(
    w: &mut World,
    user_id: i64,
    bot: &str,
    chat_id: i64,
    message_id: i64,
    data: &str,
) -> Result<Value> {
    let user = find_user(w, user_id)?.json();
    let bot = find_bot(w, bot)?;
    let message = w
        .conversation(bot, chat_id)
        .find(message_id)
        .filter(|m| m.direction == "out" && m.bot_id == bot)
        .map(|m| m.message.clone())
        .ok_or_else(|| {
            ControlError::not_found(format!(
                "the bot sent no message {message_id} in chat {chat_id}"
            ))
        })?;
    let has_button = message["reply_markup"]["inline_keyboard"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .any(|b| b["callback_data"].as_str() == Some(data));
    if !has_button {
        return Err(ControlError::not_found(format!(
            "message {message_id} has no button with callback_data {data:?}"
        )));
    }
    let id = format!("{}", rand::random::<u64>() >> 1);
    w.callbacks.insert(
        id.clone(),
        CallbackRecord {
            bot_id: bot,
            user_id,
            created: Instant::now(),
            answer: None,
        },
    );
    let update = json!({"callback_query": {
        "id": id, "from": user, "message": message,
        "chat_instance": format!("{}", (chat_id ^ bot).unsigned_abs()), "data": data,
    }});
    let update_id = w.enqueue_update(bot, update);
    Ok(json!({"update_id": update_id, "callback_query_id": id}))
}

async fn get_callback(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Result<Json<Value>> {
    let w = s.world();
    let c = w
        .callbacks
        .get(&id)
        .ok_or_else(|| ControlError::not_found(format!("no callback query {id}")))?;
    Ok(Json(
        json!({"id": id, "bot_id": c.bot_id, "user_id": c.user_id, "answered": c.answer.is_some(), "answer": c.answer}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BotRef {
    bot: Value,
}

async fn block(
    State(s): State<Arc<Shared>>,
    Path(user_id): Path<i64>,
    Body(b): Body<BotRef>,
) -> Result<Json<Value>> {
    set_blocked(&s, user_id, &b.bot, true)
}

async fn unblock(
    State(s): State<Arc<Shared>>,
    Path(user_id): Path<i64>,
    Body(b): Body<BotRef>,
) -> Result<Json<Value>> {
    set_blocked(&s, user_id, &b.bot, false)
}

fn set_blocked(s: &Shared, user_id: i64, bot: &Value, blocked: bool) -> Result<Json<Value>> {
    let out = {
        let mut w = s.world();
        let key =
            bot_key(bot).ok_or_else(|| ControlError::invalid("bot must be a username or an id"))?;
        let bot = find_bot(&w, &key)?;
        let user = find_user(&w, user_id)?.clone();
        if user.blocked.contains(&bot) == blocked {
            return Err(ControlError::conflict(if blocked {
                "the user has already blocked this bot"
            } else {
                "the user has not blocked this bot"
            }));
        }
        let u = w.users.get_mut(&user_id).expect("found above");
        if blocked {
            u.blocked.insert(bot);
        } else {
            u.blocked.remove(&bot);
            u.started.insert(bot);
        }
        let bot_user = w.bots[&bot].user_json();
        let (old, new) = if blocked {
            (
                json!({"user": bot_user, "status": "member"}),
                json!({"user": bot_user, "status": "kicked", "until_date": 0}),
            )
        } else {
            (
                json!({"user": bot_user, "status": "kicked", "until_date": 0}),
                json!({"user": bot_user, "status": "member"}),
            )
        };
        let update = json!({"my_chat_member": {
            "chat": user.private_chat_json(), "from": user.json(), "date": unix_now(),
            "old_chat_member": old, "new_chat_member": new,
        }});
        json!({"update_id": w.enqueue_update(bot, update)})
    };
    s.dispatch.notify_one();
    Ok(Json(out))
}

// ---- groups ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGroup {
    title: String,
    #[serde(rename = "type", default = "default_group_type")]
    kind: String,
    username: Option<String>,
    #[serde(default)]
    is_forum: bool,
    /// The creator; must be a sandbox user.
    owner: Option<i64>,
    #[serde(default)]
    members: Vec<i64>,
    /// Human administrators (they may post in channels; bots cannot ban or restrict them).
    #[serde(default)]
    admins: Vec<i64>,
}

fn default_group_type() -> String {
    "supergroup".into()
}

async fn create_group(
    State(s): State<Arc<Shared>>,
    Body(g): Body<NewGroup>,
) -> Result<(StatusCode, Json<Value>)> {
    let kind = match g.kind.as_str() {
        "group" => GroupKind::Group,
        "supergroup" => GroupKind::Supergroup,
        "channel" => GroupKind::Channel,
        other => {
            return Err(ControlError::invalid(format!(
                "type must be group, supergroup or channel, not {other:?}"
            )));
        }
    };
    if g.title.trim().is_empty() {
        return Err(ControlError::invalid("title must not be empty"));
    }
    if g.is_forum && kind != GroupKind::Supergroup {
        return Err(ControlError::invalid("only supergroups can be forums"));
    }
    let mut w = s.world();
    for id in g.owner.iter().chain(&g.members).chain(&g.admins) {
        find_user(&w, *id)?;
    }
    let id = w.add_group(kind, g.title, g.username, g.is_forum);
    let group = w.groups.get_mut(&id).expect("just added");
    if let Some(owner) = g.owner {
        group.members.insert(owner, MemberStatus::Creator);
    }
    for a in g.admins {
        group
            .members
            .entry(a)
            .or_insert(MemberStatus::Administrator);
    }
    for m in g.members {
        group.members.entry(m).or_insert_with(MemberStatus::member);
    }
    let mut v = group.chat_json();
    v["members"] = membership::members_json(group);
    Ok((StatusCode::CREATED, Json(v)))
}

async fn list_groups(State(s): State<Arc<Shared>>) -> Json<Value> {
    let mut w = s.world();
    membership::settle(&mut w);
    let w = &*w;
    let groups: Vec<Value> = w
        .groups
        .values()
        .map(|g| {
            let mut v = g.chat_json();
            v["members"] = membership::members_json(g);
            v["bots"] = json!(
                g.bots
                    .iter()
                    .map(|(id, m)| (
                        id.to_string(),
                        json!({"status": m.status, "rights": m.rights})
                    ))
                    .collect::<serde_json::Map<_, _>>()
            );
            v["migrated_to"] = json!(g.migrated_to);
            v["invite_links"] = json!(
                g.invite_links
                    .iter()
                    .map(|l| membership::link_json(w, g, l, l.creator))
                    .collect::<Vec<_>>()
            );
            v["join_requests"] = json!(
                g.join_requests
                    .iter()
                    .map(|(user, r)| json!({
                        "user_id": user, "invite_link": r.link, "date": r.date,
                        "state": r.state.as_str(),
                    }))
                    .collect::<Vec<_>>()
            );
            v
        })
        .collect();
    Json(json!({"groups": groups}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Join {
    user_id: i64,
}

async fn join_group(
    State(s): State<Arc<Shared>>,
    Path(chat_id): Path<i64>,
    Body(j): Body<Join>,
) -> Result<Json<Value>> {
    change_membership(&s, chat_id, j.user_id, true)
}

async fn leave_group(
    State(s): State<Arc<Shared>>,
    Path((chat_id, user_id)): Path<(i64, i64)>,
) -> Result<Json<Value>> {
    change_membership(&s, chat_id, user_id, false)
}

/// A user joins or leaves: bots in the group see the service message, and administrators
/// also get `chat_member` (when they asked for it in `allowed_updates`).
fn change_membership(s: &Shared, chat_id: i64, user_id: i64, join: bool) -> Result<Json<Value>> {
    let out = {
        let mut w = s.world();
        membership::settle(&mut w);
        let user = find_user(&w, user_id)?.json();
        let group = w
            .groups
            .get(&chat_id)
            .ok_or_else(|| ControlError::not_found(format!("no group {chat_id}")))?;
        let old = membership::status_of(group, user_id);
        if join == old.is_in() {
            return Err(ControlError::conflict(if join {
                "already a member"
            } else {
                "not a member"
            }));
        }
        if join && matches!(old, MemberStatus::Kicked { .. }) {
            return Err(ControlError::conflict("the user is banned from this chat"));
        }
        let new = if join {
            MemberStatus::member()
        } else {
            MemberStatus::Left
        };
        let change =
            membership::set_status(&mut w, chat_id, user_id, new, user, Default::default());
        let update_ids: serde_json::Map<String, Value> = change
            .message_updates
            .iter()
            .map(|(bot, id)| (bot.to_string(), json!(id)))
            .collect();
        json!({"message_id": change.message_id, "update_ids": update_ids})
    };
    s.dispatch.notify_one();
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBot {
    bot: Value,
    #[serde(default = "default_bot_status")]
    status: String,
    #[serde(default)]
    rights: serde_json::Map<String, Value>,
    /// The user who adds the bot (the group's creator when absent).
    by: Option<i64>,
}

fn default_bot_status() -> String {
    "member".into()
}

async fn add_bot_to_group(
    State(s): State<Arc<Shared>>,
    Path(chat_id): Path<i64>,
    Body(a): Body<AddBot>,
) -> Result<Json<Value>> {
    if !matches!(
        a.status.as_str(),
        "member" | "administrator" | "left" | "kicked"
    ) {
        return Err(ControlError::invalid(
            "status must be member, administrator, left or kicked",
        ));
    }
    let out = {
        let mut w = s.world();
        let key = bot_key(&a.bot)
            .ok_or_else(|| ControlError::invalid("bot must be a username or an id"))?;
        let bot = find_bot(&w, &key)?;
        set_bot_member(&mut w, chat_id, bot, &a.status, a.rights, a.by)?
    };
    s.dispatch.notify_one();
    Ok(Json(out))
}

/// Puts a bot in a group with a status and rights, and sends it `my_chat_member`.
fn set_bot_member(
    w: &mut World,
    chat_id: i64,
    bot: i64,
    status: &str,
    rights: serde_json::Map<String, Value>,
    by: Option<i64>,
) -> Result<Value> {
    let bot_user = w.bots[&bot].user_json();
    let group = w
        .groups
        .get(&chat_id)
        .ok_or_else(|| ControlError::not_found(format!("no group {chat_id}")))?;
    let by = by
        .or_else(|| {
            group
                .members
                .iter()
                .find(|(_, s)| **s == MemberStatus::Creator)
                .map(|(id, _)| *id)
        })
        .ok_or_else(|| ControlError::invalid("by is required: the group has no creator"))?;
    let from = find_user(w, by)?.json();
    let now = w.now();
    let group = w.groups.get_mut(&chat_id).expect("found above");
    let old_member = match group.bots.get(&bot) {
        Some(m) if m.status == "administrator" => {
            crate::botapi::administrator_json(bot_user.clone(), &m.rights)
        }
        Some(m) => json!({"status": m.status, "user": bot_user}),
        None => json!({"status": "left", "user": bot_user}),
    };
    group.bots.insert(
        bot,
        BotMember {
            status: status.to_string(),
            rights: rights.clone(),
        },
    );
    let chat = group.chat_json();
    let new_member = if status == "administrator" {
        crate::botapi::administrator_json(bot_user.clone(), &rights)
    } else {
        json!({"status": status, "user": bot_user})
    };
    let update = json!({"my_chat_member": {
        "chat": chat, "from": from, "date": now,
        "old_chat_member": old_member,
        "new_chat_member": new_member,
    }});
    Ok(json!({"update_id": w.enqueue_update(bot, update)}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BotRights {
    /// `administrator` (promote, the default) or `member` (demote).
    #[serde(default = "default_rights_status")]
    status: String,
    #[serde(default)]
    rights: serde_json::Map<String, Value>,
    by: Option<i64>,
}

fn default_rights_status() -> String {
    "administrator".into()
}

/// Promotes or demotes a bot already in the group.
async fn set_bot_rights(
    State(s): State<Arc<Shared>>,
    Path((chat_id, key)): Path<(i64, String)>,
    Body(r): Body<BotRights>,
) -> Result<Json<Value>> {
    if !matches!(r.status.as_str(), "administrator" | "member") {
        return Err(ControlError::invalid(
            "status must be administrator or member",
        ));
    }
    if let Some((k, _)) = r.rights.iter().find(|(_, v)| !v.is_boolean()) {
        return Err(ControlError::invalid(format!(
            "right {k} must be true or false"
        )));
    }
    let out = {
        let mut w = s.world();
        let bot = find_bot(&w, &key)?;
        let in_group = w
            .groups
            .get(&chat_id)
            .ok_or_else(|| ControlError::not_found(format!("no group {chat_id}")))?
            .bots
            .get(&bot)
            .is_some_and(|m| membership::is_in(&m.status));
        if !in_group {
            return Err(ControlError::conflict(format!(
                "the bot is not in group {chat_id}: add it first"
            )));
        }
        let rights = if r.status == "administrator" {
            r.rights
        } else {
            Default::default()
        };
        set_bot_member(&mut w, chat_id, bot, &r.status, rights, r.by)?
    };
    s.dispatch.notify_one();
    Ok(Json(out))
}

// ---- invite links ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewLink {
    /// The administrator who makes it (the group's creator when absent).
    by: Option<i64>,
    name: Option<String>,
    #[serde(default)]
    expire_date: i64,
    #[serde(default)]
    member_limit: i64,
    #[serde(default)]
    creates_join_request: bool,
}

/// A human administrator's own link, as made in a Telegram app.
async fn create_invite_link(
    State(s): State<Arc<Shared>>,
    Path(chat_id): Path<i64>,
    Body(n): Body<NewLink>,
) -> Result<(StatusCode, Json<Value>)> {
    if n.creates_join_request && n.member_limit > 0 {
        return Err(ControlError::invalid(
            "a link that creates join requests cannot have a member_limit",
        ));
    }
    if !(0..=99_999).contains(&n.member_limit) {
        return Err(ControlError::invalid("member_limit must be 0-99999"));
    }
    let mut w = s.world();
    let g = w
        .groups
        .get(&chat_id)
        .ok_or_else(|| ControlError::not_found(format!("no group {chat_id}")))?;
    let by =
        n.by.or_else(|| {
            g.members
                .iter()
                .find(|(_, s)| **s == MemberStatus::Creator)
                .map(|(id, _)| *id)
        })
        .ok_or_else(|| ControlError::invalid("by is required: the group has no creator"))?;
    if !membership::status_of(g, by).is_admin() {
        return Err(ControlError::conflict(format!(
            "user {by} is not an administrator of {chat_id}"
        )));
    }
    let mut link = InviteLink::new(by);
    link.name = n.name.filter(|x| !x.is_empty());
    link.expire_date = n.expire_date;
    link.member_limit = n.member_limit;
    link.creates_join_request = n.creates_join_request;
    let g = w.groups.get_mut(&chat_id).expect("found above");
    g.invite_links.push(link.clone());
    let g = &w.groups[&chat_id];
    // Shown in full: the sandbox is the link's creator here.
    let v = membership::link_json(&w, g, &link, by);
    Ok((StatusCode::CREATED, Json(v)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenLink {
    invite_link: String,
}

/// The user opens an invite link: joins at once, or sends a join request when the link asks
/// for approval. Refusals carry Telegram's error names.
async fn open_invite_link(
    State(s): State<Arc<Shared>>,
    Path(user_id): Path<i64>,
    Body(o): Body<OpenLink>,
) -> Result<Json<Value>> {
    let out = {
        let mut w = s.world();
        membership::settle(&mut w);
        open_link(&mut w, user_id, &o.invite_link)?
    };
    s.dispatch.notify_one();
    Ok(Json(out))
}

/// What opening a link does; the page's form uses it too.
pub fn open_link(w: &mut World, user_id: i64, url: &str) -> Result<Value> {
    let user = find_user(w, user_id)?.json();
    let (chat_id, link) = w
        .groups
        .values()
        .find_map(|g| {
            g.invite_links
                .iter()
                .find(|l| l.url == url)
                .map(|l| (g.id, l.clone()))
        })
        .ok_or_else(|| ControlError::not_found("no such invite link"))?;
    let now = w.now();
    let g = &w.groups[&chat_id];
    if link.expired(now) {
        return Err(ControlError::conflict("INVITE_HASH_EXPIRED"));
    }
    let status = membership::status_of(g, user_id);
    if status.is_in() {
        return Err(ControlError::conflict("USER_ALREADY_PARTICIPANT"));
    }
    if matches!(status, MemberStatus::Kicked { .. }) {
        return Err(ControlError::conflict("USER_BANNED_IN_CHANNEL"));
    }
    if link.creates_join_request {
        if g.join_requests
            .get(&user_id)
            .is_some_and(|r| r.state == RequestState::Pending)
        {
            return Err(ControlError::conflict("INVITE_REQUEST_SENT"));
        }
        let g = w.groups.get_mut(&chat_id).expect("found above");
        g.join_requests.insert(
            user_id,
            JoinRequest {
                link: link.url.clone(),
                date: now,
                state: RequestState::Pending,
            },
        );
        let g = &w.groups[&chat_id];
        let chat = g.chat_json();
        let updates: Vec<(i64, Value)> = membership::request_handlers(g)
            .into_iter()
            .map(|bot| {
                (
                    bot,
                    json!({"chat_join_request": {
                        "chat": chat, "from": user, "user_chat_id": user_id, "date": now,
                        "invite_link": membership::link_json(w, g, &link, bot),
                    }}),
                )
            })
            .collect();
        let ids: Vec<i64> = updates
            .into_iter()
            .filter_map(|(bot, u)| w.enqueue_update(bot, u))
            .collect();
        return Ok(json!({"result": "requested", "chat_id": chat_id, "update_ids": ids}));
    }
    let members = link
        .joined
        .iter()
        .filter(|u| membership::status_of(g, **u).is_in())
        .count() as i64;
    if link.member_limit != 0 && members >= link.member_limit {
        return Err(ControlError::conflict("USERS_TOO_MUCH"));
    }
    let g = w.groups.get_mut(&chat_id).expect("found above");
    if let Some(l) = g.invite_links.iter_mut().find(|l| l.url == link.url) {
        l.joined.insert(user_id);
    }
    // A subscription link takes the first period's Stars (the sandbox's users always have
    // them) and makes a member until the period ends.
    let new = match membership::status_of(&w.groups[&chat_id], user_id) {
        // Someone restricted while out comes in with the restriction.
        MemberStatus::Restricted {
            until, permissions, ..
        } => MemberStatus::Restricted {
            is_member: true,
            until: *until,
            permissions: permissions.clone(),
        },
        _ => MemberStatus::Member {
            until: link.subscription.map_or(0, |sub| now + sub.period),
        },
    };
    let via = membership::Via {
        invite_link: Some(link.url.clone()),
        join_request: false,
    };
    let ids = membership::set_status(w, chat_id, user_id, new.clone(), user, via).updates;
    let mut out = json!({"result": "joined", "chat_id": chat_id, "update_ids": ids});
    if let MemberStatus::Member { until } = new
        && until != 0
    {
        out["until_date"] = json!(until);
    }
    Ok(out)
}

/// The user's subscription to a channel runs out now (as if it was not renewed).
async fn lapse_subscription(
    State(s): State<Arc<Shared>>,
    Path((user_id, chat_id)): Path<(i64, i64)>,
) -> Result<Json<Value>> {
    let out = {
        let mut w = s.world();
        membership::settle(&mut w);
        find_user(&w, user_id)?;
        let g = w
            .groups
            .get(&chat_id)
            .ok_or_else(|| ControlError::not_found(format!("no group {chat_id}")))?;
        if !matches!(membership::status_of(g, user_id), MemberStatus::Member { until } if *until != 0)
        {
            return Err(ControlError::conflict(
                "the user has no running subscription to this chat",
            ));
        }
        let ids = membership::lapse(&mut w, chat_id, user_id);
        json!({"result": "lapsed", "chat_id": chat_id, "update_ids": ids})
    };
    s.dispatch.notify_one();
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    /// Seconds to move the sandbox's calendar forward.
    advance: i64,
}

fn clock_json(w: &World) -> Value {
    json!({"now": w.now(), "offset": w.clock_offset})
}

async fn get_clock(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(clock_json(&s.world()))
}

/// Moves the sandbox's calendar forward; what ran out meanwhile (bans, restrictions, join
/// requests, subscriptions) is settled at once.
async fn advance_clock(
    State(s): State<Arc<Shared>>,
    Body(a): Body<Advance>,
) -> Result<Json<Value>> {
    if a.advance < 0 {
        return Err(ControlError::invalid("the clock only moves forward"));
    }
    let out = {
        let mut w = s.world();
        w.clock_offset = w.clock_offset.saturating_add(a.advance);
        membership::settle(&mut w);
        clock_json(&w)
    };
    s.dispatch.notify_one();
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Leave {
    chat_id: i64,
}

async fn leave_chat(
    State(s): State<Arc<Shared>>,
    Path(user_id): Path<i64>,
    Body(l): Body<Leave>,
) -> Result<Json<Value>> {
    let out = {
        let mut w = s.world();
        membership::settle(&mut w);
        let user = find_user(&w, user_id)?.json();
        let g = w
            .groups
            .get(&l.chat_id)
            .ok_or_else(|| ControlError::not_found(format!("no group {}", l.chat_id)))?;
        match membership::status_of(g, user_id) {
            MemberStatus::Creator => {
                return Err(ControlError::conflict("the creator cannot leave"));
            }
            s if !s.is_in() => return Err(ControlError::conflict("not a member")),
            _ => {}
        }
        let ids = membership::set_status(
            &mut w,
            l.chat_id,
            user_id,
            MemberStatus::Left,
            user,
            Default::default(),
        )
        .updates;
        json!({"result": "left", "chat_id": l.chat_id, "update_ids": ids})
    };
    s.dispatch.notify_one();
    Ok(Json(out))
}

async fn migrate_group(
    State(s): State<Arc<Shared>>,
    Path(chat_id): Path<i64>,
) -> Result<Json<Value>> {
    let out = {
        let mut w = s.world();
        let old = w
            .groups
            .get(&chat_id)
            .cloned()
            .ok_or_else(|| ControlError::not_found(format!("no group {chat_id}")))?;
        if old.kind != GroupKind::Group || old.migrated_to.is_some() {
            return Err(ControlError::conflict(
                "only a basic group that has not migrated can migrate",
            ));
        }
        let new_id = w.add_group(
            GroupKind::Supergroup,
            old.title.clone(),
            old.username.clone(),
            false,
        );
        let new = w.groups.get_mut(&new_id).expect("just added");
        new.members = old.members.clone();
        new.bots = old.bots.clone();
        // The supergroup takes over the group's invite links (they keep working and lead
        // to it) and its pending join requests.
        new.invite_links = old.invite_links.clone();
        new.join_requests = old.join_requests.clone();
        let new_chat = new.chat_json();
        let old_group = w.groups.get_mut(&chat_id).expect("found above");
        old_group.migrated_to = Some(new_id);
        old_group.invite_links.clear();
        old_group.join_requests.clear();
        let from = old
            .members
            .iter()
            .find(|(_, s)| **s == MemberStatus::Creator)
            .and_then(|(id, _)| w.users.get(id))
            .map(User::json)
            .unwrap_or(json!({"id": 1087968824, "is_bot": true, "first_name": "Group", "username": "GroupAnonymousBot"}));
        let old_conv = w.conversation(0, chat_id);
        let m1 = json!({"message_id": old_conv.allocate_id(), "from": from, "chat": old.chat_json(), "date": unix_now(), "migrate_to_chat_id": new_id});
        old_conv.messages.push(StoredMessage {
            message: m1.clone(),
            direction: "in",
            bot_id: 0,
            silent: false,
            deleted: false,
            deleted_date: None,
        });
        let new_conv = w.conversation(0, new_id);
        let m2 = json!({"message_id": new_conv.allocate_id(), "from": from, "chat": new_chat, "date": unix_now(), "migrate_from_chat_id": chat_id});
        new_conv.messages.push(StoredMessage {
            message: m2.clone(),
            direction: "in",
            bot_id: 0,
            silent: false,
            deleted: false,
            deleted_date: None,
        });
        for (bot, m) in &old.bots {
            if matches!(m.status.as_str(), "member" | "administrator") {
                w.enqueue_update(*bot, json!({"message": m1}));
                w.enqueue_update(*bot, json!({"message": m2}));
            }
        }
        json!({"migrate_to_chat_id": new_id})
    };
    s.dispatch.notify_one();
    Ok(Json(out))
}

// ---- transcripts ----

#[derive(Deserialize)]
struct TranscriptQuery {
    bot: Option<String>,
}

pub fn transcript_items(w: &World, chat_id: i64, bot: Option<i64>) -> Vec<Value> {
    let mut items: Vec<(usize, &StoredMessage)> = Vec::new();
    for ((conv_bot, conv_chat), conv) in &w.conversations {
        if *conv_chat != chat_id || (chat_id > 0 && bot.is_some_and(|b| b != *conv_bot)) {
            continue;
        }
        items.extend(conv.messages.iter().enumerate());
    }
    // Conversations of different bots with one user interleave by time.
    items.sort_by_key(|(i, m)| (m.message["date"].as_i64().unwrap_or(0), *i));
    items
        .into_iter()
        .map(|(_, m)| {
            let mut v = m.message.clone();
            v["direction"] = json!(m.direction);
            v["bot_id"] = json!(m.bot_id);
            v["silent"] = json!(m.silent);
            v["deleted"] = json!(m.deleted);
            if let Some(at) = m.deleted_date {
                v["deleted_date"] = json!(at);
            }
            v
        })
        .collect()
}

async fn transcript(
    State(s): State<Arc<Shared>>,
    Path(chat_id): Path<i64>,
    Query(q): Query<TranscriptQuery>,
) -> Result<Json<Value>> {
    let w = s.world();
    let bot = match q.bot.as_deref() {
        Some(key) => Some(find_bot(&w, key)?),
        None => None,
    };
    if w.chat_json(chat_id).is_none() {
        return Err(ControlError::not_found(format!("no chat {chat_id}")));
    }
    Ok(Json(
        json!({"chat_id": chat_id, "messages": transcript_items(&w, chat_id, bot)}),
    ))
}

// ---- faults, reset, stats, calls ----

async fn add_fault(
    State(s): State<Arc<Shared>>,
    Body(spec): Body<FaultSpec>,
) -> Result<(StatusCode, Json<Value>)> {
    let mut w = s.world();
    let bot_id = match &spec.bot {
        Some(v) => Some(find_bot(
            &w,
            &bot_key(v).ok_or_else(|| ControlError::invalid("bot must be a username or an id"))?,
        )?),
        None => None,
    };
    if spec.chat_id.is_some() && spec.user_id.is_some() && spec.chat_id != spec.user_id {
        return Err(ControlError::invalid("give chat_id or user_id, not both"));
    }
    if spec.count == Some(0) {
        return Err(ControlError::invalid("count must be at least 1"));
    }
    if let Some(status) = spec.status
        && !(500..=599).contains(&status)
    {
        return Err(ControlError::invalid("status must be a 5xx code"));
    }
    w.next_fault_id += 1;
    let fault = Fault {
        id: w.next_fault_id,
        kind: spec.kind,
        bot_id,
        chat_id: spec.chat_id.or(spec.user_id),
        method: spec.method,
        remaining: spec.count,
        until: spec
            .duration_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms)),
        status: spec.status.unwrap_or(500),
        retry_after: spec.retry_after.unwrap_or(5).max(1),
        delay: Duration::from_millis(spec.delay_ms.unwrap_or(30_000)),
        migrate_to_chat_id: spec
            .migrate_to_chat_id
            .unwrap_or(-1_000_000_000_000 - 9_000_000_000 - w.next_fault_id as i64),
        hits: 0,
    };
    let v = fault.json();
    w.faults.push(fault);
    Ok((StatusCode::CREATED, Json(v)))
}

async fn list_faults(State(s): State<Arc<Shared>>) -> Json<Value> {
    let w = s.world();
    Json(json!({"faults": w.faults.iter().map(Fault::json).collect::<Vec<_>>()}))
}

async fn clear_faults(State(s): State<Arc<Shared>>) -> StatusCode {
    s.world().faults.clear();
    StatusCode::NO_CONTENT
}

async fn remove_fault(State(s): State<Arc<Shared>>, Path(id): Path<u64>) -> Result<StatusCode> {
    let mut w = s.world();
    let before = w.faults.len();
    w.faults.retain(|f| f.id != id);
    if w.faults.len() == before {
        return Err(ControlError::not_found(format!("no fault {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn reset(State(s): State<Arc<Shared>>) -> StatusCode {
    s.world().reset();
    StatusCode::NO_CONTENT
}

/// Milliseconds from a fixed instant of this process (the first time asked) to `at`, for
/// arrival times in stats: only their differences mean anything.
fn since_start(at: std::time::Instant) -> f64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    match at.checked_duration_since(start) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(start.duration_since(at).as_secs_f64() * 1000.0),
    }
}

async fn stats(State(s): State<Arc<Shared>>) -> Json<Value> {
    let w = s.world();
    let bots: Vec<Value> = w
        .bots
        .values()
        .map(|b| {
            json!({
                "id": b.id, "username": b.username, "calls": b.stats.calls,
                "accepted": b.stats.sends_accepted,
                "sends_accepted": b.stats.sends_accepted,
                "edits_accepted": b.stats.edits_accepted,
                "too_many_requests": b.stats.too_many_requests,
                "too_many_requests_by_cause": {
                    "bot": b.stats.refused.bot,
                    "chat": b.stats.refused.chat,
                    "group": b.stats.refused.group,
                },
                "webhook_deliveries": b.stats.webhook_deliveries,
                "webhook_failures": b.stats.webhook_failures,
                "pending_update_count": b.pending_count(),
                "max_bot_per_second": b.stats.rates.max_bot_per_second,
                "max_private_chat_per_second": b.stats.rates.max_private_chat_per_second,
                "max_group_per_minute": b.stats.rates.max_group_per_minute,
                "max_chat_per_second": b.stats.rates.max_chat_per_second,
                "max_chat_per_minute": b.stats.rates.max_chat_per_minute,
                "first_accepted_ms": b.stats.rates.first.map(since_start),
                "last_accepted_ms": b.stats.rates.last.map(since_start),
            })
        })
        .collect();
    Json(json!({
        "limits": w.limiter.limits().as_str(),
        "limit_model": w.limiter.model().as_str(),
        "time_scale": w.limiter.time_scale(),
        "bots": bots,
    }))
}

#[derive(Deserialize)]
struct CallsQuery {
    bot: Option<String>,
    method: Option<String>,
    limit: Option<usize>,
}

async fn calls(State(s): State<Arc<Shared>>, Query(q): Query<CallsQuery>) -> Result<Json<Value>> {
    let w = s.world();
    let bot = match q.bot.as_deref() {
        Some(key) => Some(find_bot(&w, key)?),
        None => None,
    };
    let limit = q.limit.unwrap_or(100).min(10_000);
    let mut out: Vec<Value> = w
        .calls
        .iter()
        .rev()
        .filter(|c| bot.is_none_or(|b| c.bot_id == b))
        .filter(|c| {
            q.method
                .as_deref()
                .is_none_or(|m| c.method.eq_ignore_ascii_case(m))
        })
        .take(limit)
        .map(|c| json!(c))
        .collect();
    out.reverse();
    Ok(Json(json!({"calls": out})))
}

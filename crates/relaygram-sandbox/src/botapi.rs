//! The Bot API: `GET|POST /bot<TOKEN>/<method>`, answered the way Telegram answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::Shared;
use crate::faults::{self, Fault, FaultKind};
use crate::params::Params;
use crate::reply::ApiError;
use crate::world::{CallRecord, World, unix_now};

mod chats;
mod commands;
mod invites;
mod members;
mod messages;
mod permissions;
mod updates;
mod webhook;

pub use crate::membership::administrator as administrator_json;

/// Every method the sandbox speaks, lower-cased (Telegram matches names case-insensitively).
const METHODS: &[&str] = &[
    "getme",
    "logout",
    "close",
    "setwebhook",
    "deletewebhook",
    "getwebhookinfo",
    "getupdates",
    "sendmessage",
    "editmessagetext",
    "editmessagecaption",
    "editmessagereplymarkup",
    "deletemessage",
    "sendphoto",
    "senddocument",
    "sendchataction",
    "answercallbackquery",
    "setmycommands",
    "getmycommands",
    "deletemycommands",
    "getchat",
    "getchatmember",
    "getchatmembercount",
    "getchatadministrators",
    "banchatmember",
    "kickchatmember",
    "unbanchatmember",
    "restrictchatmember",
    "createchatinvitelink",
    "createchatsubscriptioninvitelink",
    "editchatsubscriptioninvitelink",
    "editchatinvitelink",
    "revokechatinvitelink",
    "exportchatinvitelink",
    "approvechatjoinrequest",
    "declinechatjoinrequest",
];

/// Splits `/bot<token>/<method>`.
fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/bot")?;
    let (token, method) = rest.split_once('/')?;
    (!token.is_empty() && !method.is_empty() && !method.contains('/')).then_some((token, method))
}

/// When a request reached the sandbox: flood limits and rate statistics time a send by it,
/// as Telegram would see it, so waiting here for the world lock cannot make a client that
/// keeps to the limits look like it bursts.
#[derive(Debug, Clone, Copy)]
pub struct Arrival(pub Instant);

pub async fn stamp_arrival(mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(Arrival(Instant::now()));
    next.run(request).await
}

pub async fn handle(
    State(shared): State<Arc<Shared>>,
    Extension(Arrival(arrived)): Extension<Arrival>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((token, method_name)) = split_path(uri.path()) else {
        return ApiError::not_found().into_response();
    };
    let method = method_name.to_ascii_lowercase();
    let Some(bot_id) = shared.world().bot_by_token(token) else {
        return ApiError::unauthorized().into_response();
    };
    if !METHODS.contains(&method.as_str()) {
        let mut w = shared.world();
        if let Some(bot) = w.bots.get_mut(&bot_id) {
            bot.stats.calls += 1;
        }
        return ApiError::not_found().into_response();
    }
    let params = match Params::parse(uri.query(), &headers, body).await {
        Ok(p) => p,
        Err(e) => return finish(&shared, bot_id, &method, Value::Null, Err(e)),
    };
    let params_json = params.to_json();

    let fault = {
        let mut w = shared.world();
        if let Some(bot) = w.bots.get_mut(&bot_id) {
            bot.stats.calls += 1;
        }
        let chat = fault_chat(&w, &params);
        faults::take(&mut w.faults, bot_id, &method, chat)
    };
    if let Some(fault) = fault {
        match fault.kind {
            FaultKind::DropConnection => {
                record(
                    &shared,
                    bot_id,
                    &method,
                    params_json,
                    0,
                    Some("dropped".into()),
                );
                return dropped_connection();
            }
            FaultKind::Timeout => {
                tokio::time::sleep(fault.delay).await;
                record(&shared, bot_id, &method, params_json, 504, None);
                return gateway_page(504);
            }
            FaultKind::ServerError if fault.status != 500 => {
                record(&shared, bot_id, &method, params_json, fault.status, None);
                return gateway_page(fault.status);
            }
            FaultKind::LostResponse => {
                let result = call(&shared, bot_id, &method, &params, arrived).await;
                let status = result.as_ref().map_or_else(|e| e.code, |_| 200);
                record(
                    &shared,
                    bot_id,
                    &method,
                    params_json,
                    status,
                    Some("response lost".into()),
                );
                return dropped_connection();
            }
            _ => {
                return finish(
                    &shared,
                    bot_id,
                    &method,
                    params_json,
                    Err(fault_error(&fault)),
                );
            }
        }
    }
    let result = call(&shared, bot_id, &method, &params, arrived).await;
    if matches!(method.as_str(), "setwebhook" | "deletewebhook") {
        shared.dispatch.notify_one();
    }
    finish(&shared, bot_id, &method, params_json, result)
}

/// The chat a call aims at, for matching chat-scoped faults.
fn fault_chat(w: &World, params: &Params) -> Option<i64> {
    let raw = params.str("chat_id")?;
    match raw.strip_prefix('@') {
        Some(name) => w
            .groups
            .values()
            .find(|g| g.username.as_deref() == Some(name))
            .map(|g| g.id),
        None => raw.trim().parse().ok(),
    }
}

fn fault_error(fault: &Fault) -> ApiError {
    match fault.kind {
        FaultKind::Blocked => ApiError::forbidden("bot was blocked by the user"),
        FaultKind::Deactivated => ApiError::forbidden("user is deactivated"),
        FaultKind::Kicked => ApiError::forbidden("bot was kicked from the group chat"),
        FaultKind::ChatNotFound => ApiError::chat_not_found(),
        FaultKind::Migrated => ApiError::migrated(fault.migrate_to_chat_id),
        FaultKind::Flood => ApiError::too_many_requests(fault.retry_after),
        _ => ApiError::new(500, "Internal Server Error"),
    }
}

/// A response whose body fails at once: the client sees the connection close mid-answer.
fn dropped_connection() -> Response {
    let stream = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other(
            "connection dropped by a sandbox fault",
        ))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert(
        header::CONTENT_LENGTH,
        header::HeaderValue::from_static("4096"),
    );
    response
}

/// Telegram's front end answers gateway errors with an nginx HTML page, not JSON.
fn gateway_page(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let title = format!(
        "{} {}",
        code.as_u16(),
        code.canonical_reason().unwrap_or("Error")
    );
    let html = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n"
    );
    (code, [(header::CONTENT_TYPE, "text/html")], html).into_response()
}

fn record(
    shared: &Shared,
    bot_id: i64,
    method: &str,
    params: Value,
    status: u16,
    description: Option<String>,
) {
    shared.world().record_call(CallRecord {
        at: unix_now(),
        bot_id,
        method: method.to_string(),
        params,
        status,
        description,
    });
}

fn finish(
    shared: &Shared,
    bot_id: i64,
    method: &str,
    params: Value,
    result: Result<Answer, ApiError>,
) -> Response {
    match result {
        Ok(answer) => {
            record(shared, bot_id, method, params, 200, None);
            let mut body = json!({"ok": true, "result": answer.result});
            if let Some(d) = answer.description {
                body["description"] = json!(d);
            }
            axum::Json(body).into_response()
        }
        Err(e) => {
            {
                let mut w = shared.world();
                if e.code == 429
                    && let Some(bot) = w.bots.get_mut(&bot_id)
                {
                    bot.stats.too_many_requests += 1;
                }
            }
            record(
                shared,
                bot_id,
                method,
                params,
                e.code,
                Some(e.description.clone()),
            );
            e.into_response()
        }
    }
}

/// A successful result, with the description Telegram adds to some of them.
pub struct Answer {
    pub result: Value,
    pub description: Option<&'static str>,
}

impl From<Value> for Answer {
    fn from(result: Value) -> Self {
        Answer {
            result,
            description: None,
        }
    }
}

async fn call(
    shared: &Arc<Shared>,
    bot_id: i64,
    method: &str,
    params: &Params,
    arrived: Instant,
) -> Result<Answer, ApiError> {
    if method == "getupdates" {
        return updates::get_updates(shared, bot_id, params)
            .await
            .map(Answer::from);
    }
    let mut w = shared.world();
    let w = &mut *w;
    crate::membership::settle(w);
    let now = arrived;
    match method {
        "getme" => Ok(w.bots[&bot_id].me_json().into()),
        "logout" | "close" => Ok(json!(true).into()),
        "setwebhook" => webhook::set_webhook(w, bot_id, params),
        "deletewebhook" => webhook::delete_webhook(w, bot_id, params),
        "getwebhookinfo" => webhook::get_webhook_info(w, bot_id).map(Answer::from),
        "sendmessage" => messages::send_message(w, bot_id, params, now).map(Answer::from),
        "editmessagetext" => messages::edit_message_text(w, bot_id, params, now).map(Answer::from),
        "editmessagecaption" => {
            messages::edit_message_caption(w, bot_id, params, now).map(Answer::from)
        }
        "editmessagereplymarkup" => {
            messages::edit_message_reply_markup(w, bot_id, params, now).map(Answer::from)
        }
        "deletemessage" => messages::delete_message(w, bot_id, params).map(Answer::from),
        "sendphoto" => messages::send_media(w, bot_id, params, now, "photo").map(Answer::from),
        "senddocument" => {
            messages::send_media(w, bot_id, params, now, "document").map(Answer::from)
        }
        "sendchataction" => chats::send_chat_action(w, bot_id, params).map(Answer::from),
        "answercallbackquery" => {
            messages::answer_callback_query(w, bot_id, params).map(Answer::from)
        }
        "setmycommands" => commands::set_my_commands(w, bot_id, params).map(Answer::from),
        "getmycommands" => commands::get_my_commands(w, bot_id, params).map(Answer::from),
        "deletemycommands" => commands::delete_my_commands(w, bot_id, params).map(Answer::from),
        "getchat" => chats::get_chat(w, bot_id, params).map(Answer::from),
        "getchatmember" => chats::get_chat_member(w, bot_id, params).map(Answer::from),
        "getchatmembercount" => members::get_chat_member_count(w, bot_id, params).map(Answer::from),
        "getchatadministrators" => {
            members::get_chat_administrators(w, bot_id, params).map(Answer::from)
        }
        // The old name is still served.
        "banchatmember" | "kickchatmember" => {
            members::ban_chat_member(w, bot_id, params).map(Answer::from)
        }
        "unbanchatmember" => members::unban_chat_member(w, bot_id, params).map(Answer::from),
        "restrictchatmember" => members::restrict_chat_member(w, bot_id, params).map(Answer::from),
        "createchatsubscriptioninvitelink" => {
            invites::create_chat_subscription_invite_link(w, bot_id, params).map(Answer::from)
        }
        "editchatsubscriptioninvitelink" => {
            invites::edit_chat_subscription_invite_link(w, bot_id, params).map(Answer::from)
        }
        "createchatinvitelink" => {
            invites::create_chat_invite_link(w, bot_id, params).map(Answer::from)
        }
        "editchatinvitelink" => invites::edit_chat_invite_link(w, bot_id, params).map(Answer::from),
        "revokechatinvitelink" => {
            invites::revoke_chat_invite_link(w, bot_id, params).map(Answer::from)
        }
        "exportchatinvitelink" => {
            invites::export_chat_invite_link(w, bot_id, params).map(Answer::from)
        }
        "approvechatjoinrequest" => {
            invites::approve_chat_join_request(w, bot_id, params).map(Answer::from)
        }
        "declinechatjoinrequest" => {
            invites::decline_chat_join_request(w, bot_id, params).map(Answer::from)
        }
        _ => Err(ApiError::not_found()),
    }
}

/// How long after the press a callback query can be answered (on the sandbox clock, so
/// scaled by `time_scale`). Telegram publishes no figure; answers later than about 15 s
/// are refused with `query is too old and response timeout expired or query ID is invalid`
/// (what every bot library reports for presses queued while the bot was down).
pub const CALLBACK_ANSWER_WINDOW: Duration = Duration::from_secs(15);

//! The chat page at `/`: pick a user, then a private chat with a bot or one of the user's
//! groups and channels; read the conversation as Telegram would show it (formatting
//! rendered, inline buttons pressable, button answers as toasts and alerts, ✅/⬜/🔒 also in
//! words for screens without an emoji font) and type messages. Server-rendered HTML; a few
//! lines of JavaScript refresh the conversation as the bot answers.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::Value;

mod groups;

use crate::Shared;
use crate::control::{open_link, press_button, send_user_message_text, transcript_items};
use crate::markup::{self, Entity};
use crate::world::{Group, GroupKind, User, World, valid_bot_username};

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(index))
        .route("/ui/transcript", get(transcript_fragment))
        .route("/ui/send", post(send))
        .route("/ui/press", post(press))
        .route("/ui/users", post(new_user))
        .route("/ui/bots", post(new_bot))
        .route("/ui/join", post(join))
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[derive(Deserialize, Default)]
struct Selection {
    user: Option<i64>,
    bot: Option<i64>,
    /// A group or channel of the user; the private chat with `bot` when absent.
    chat: Option<i64>,
    /// A callback query just sent from this page, to show the bot's answer.
    cb: Option<String>,
    error: Option<String>,
    /// What an action did, when it did not open a chat (e.g. a join request sent).
    notice: Option<String>,
}

/// The page's address for a chat (`extra` is more query, e.g. `cb=…`).
fn chat_url(user: Option<i64>, bot: Option<i64>, chat: Option<i64>, extra: &str) -> String {
    let mut url = "/?".to_string();
    for (name, value) in [("user", user), ("bot", bot), ("chat", chat)] {
        if let Some(v) = value {
            url.push_str(&format!("{name}={v}&"));
        }
    }
    url.push_str(extra);
    url.trim_end_matches(['&', '?']).to_string()
}

/// Whether the user is in the group now (so it is listed and can be written to).
fn is_member(g: &Group, user: i64) -> bool {
    g.migrated_to.is_none() && g.members.get(&user).is_some_and(|s| s.is_in())
}

/// Telegram's state marks, in words: no emoji font is installed on many machines, and
/// then ✅ and ⬜ are the same empty box.
const STATE_WORDS: &[(char, &str)] = &[
    ('✅', "on"),
    ('☑', "on"),
    ('✔', "on"),
    ('⬜', "off"),
    ('☐', "off"),
    ('🔒', "locked"),
];

/// Adds the word after each state mark in rendered HTML (outside tags). A label that
/// already says it (relaygram's "✅ Alerts: on") is left as it is.
fn worded(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    let mut chars = html.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => {
                if let Some((_, word)) = STATE_WORDS.iter().find(|(mark, _)| *mark == c) {
                    if chars.peek() == Some(&'\u{FE0F}') {
                        out.push(chars.next().unwrap_or_default());
                    }
                    if !html.contains(&format!(": {word}")) {
                        out.push_str(&format!("<span class=\"state-word\"> ({word})</span>"));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn user_label(u: &User) -> String {
    match &u.username {
        Some(n) => format!("{} (@{n})", u.first_name),
        None => u.first_name.clone(),
    }
}

const STYLE: &str = r#"
body{font-family:system-ui,sans-serif;margin:0;background:#e7ebf0;color:#111}
header{background:#517da2;color:#fff;padding:.6rem 1rem;display:flex;gap:1rem;align-items:center;flex-wrap:wrap}
header h1{font-size:1.1rem;margin:0}
header form{display:flex;gap:.4rem;align-items:center}
main{max-width:760px;margin:0 auto;padding:1rem}
#transcript{background:#fff;border-radius:8px;padding:1rem;min-height:300px;display:flex;flex-direction:column;gap:.5rem}
.msg{max-width:80%;padding:.45rem .7rem;border-radius:10px;white-space:normal;word-wrap:break-word}
.msg.in{align-self:flex-end;background:#effdde}
.msg.out{align-self:flex-start;background:#f1f1f4}
.meta{font-size:.75rem;color:#777}
.kb{display:flex;flex-direction:column;gap:.25rem;margin-top:.4rem}
.kb .row{display:flex;gap:.25rem}
.kb button,.kb a{flex:1;padding:.35rem;border:0;border-radius:6px;background:#dce8f3;color:#2a5885;cursor:pointer;text-align:center;text-decoration:none;font:inherit}
.spoiler{background:#999;color:transparent}.spoiler:hover{color:inherit;background:none}
.cmd{color:#2a5885}
code,pre{background:#eef;border-radius:4px}
blockquote{border-left:3px solid #517da2;margin:.2rem 0;padding-left:.5rem}
#composer{display:flex;gap:.5rem;margin-top:.7rem}
#composer input{flex:1;padding:.5rem;font:inherit}
.notice{background:#fff7d6;padding:.4rem .7rem;border-radius:6px}
.error{background:#fde2e2;padding:.4rem .7rem;border-radius:6px}
.setup{display:flex;gap:1rem;flex-wrap:wrap;margin-top:1rem;font-size:.9rem}
.setup form{background:#fff;padding:.6rem;border-radius:8px;display:flex;gap:.4rem;align-items:center}
.layout{display:flex;gap:1rem;align-items:flex-start}
#chats{background:#fff;border-radius:8px;padding:.6rem;min-width:180px;font-size:.9rem}
#chats h2{font-size:.8rem;text-transform:uppercase;color:#777;margin:.4rem 0}
#chats ul{list-style:none;margin:0;padding:0}
#chats a{display:block;padding:.3rem .4rem;border-radius:6px;color:#2a5885;text-decoration:none}
#chats a.current{background:#dce8f3;font-weight:600}
.chat-area{flex:1;min-width:0}
#chat-title{font-size:1rem;margin:0 0 .5rem}
.from{font-size:.8rem;font-weight:600;color:#2a5885}
.state-word{font-size:.8em;color:#555}
.toast{position:fixed;left:50%;bottom:1.5rem;transform:translateX(-50%);background:rgba(0,0,0,.8);color:#fff;padding:.55rem 1rem;border-radius:8px;max-width:90%}
.modal{position:fixed;inset:0;background:rgba(0,0,0,.4);display:flex;align-items:center;justify-content:center}
.modal .dialog{background:#fff;border-radius:10px;padding:1rem 1.2rem;max-width:360px;box-shadow:0 6px 24px rgba(0,0,0,.3)}
.modal .dialog a{float:right;color:#2a5885;font-weight:600;text-decoration:none}
#groups{background:#fff;border-radius:8px;padding:.6rem 1rem;margin-top:1rem;font-size:.9rem}
#groups h2{font-size:.8rem;text-transform:uppercase;color:#777;margin:.4rem 0}
#groups h3{font-size:1rem;margin:.8rem 0 .3rem}
#groups h4{font-size:.8rem;color:#555;margin:.5rem 0 .2rem}
#groups ul{margin:0;padding-left:1.2rem}
#groups .status{font-size:.8rem;color:#2a5885}
#groups form.join{display:flex;gap:.4rem}
#groups form.join input{flex:1;padding:.35rem;font:inherit}
#groups form.inline{display:inline}
"#;

const SCRIPT: &str = r#"
(function(){
  var t = document.getElementById('transcript');
  if (!t || !t.dataset.src) return;
  // Replace the conversation only when it changed, so buttons stay put while unchanged.
  var probe = document.createElement('div');
  setInterval(function(){
    fetch(t.dataset.src).then(function(r){ return r.ok ? r.text() : null; }).then(function(html){
      if (html === null) return;
      probe.innerHTML = html;
      if (probe.innerHTML !== t.innerHTML) { t.innerHTML = html; t.scrollTop = t.scrollHeight; }
    }).catch(function(){});
  }, 700);
  var input = document.getElementById('text');
  if (input) input.focus();
})();
"#;

async fn index(State(s): State<Arc<Shared>>, Query(sel): Query<Selection>) -> Html<String> {
    let mut w = s.world();
    crate::membership::settle(&mut w);
    let w = &*w;
    let user = sel.user.filter(|u| w.users.contains_key(u));
    let bot = sel.bot.filter(|b| w.bots.contains_key(b));
    let chat = sel
        .chat
        .filter(|c| user.is_some_and(|u| w.groups.get(c).is_some_and(|g| is_member(g, u))));
    let mut users = String::new();
    for u in w.users.values() {
        let selected = if Some(u.id) == user { " selected" } else { "" };
        users.push_str(&format!(
            "<option value=\"{}\"{selected}>{}</option>",
            u.id,
            esc(&user_label(u))
        ));
    }
    let mut bots = String::new();
    for b in w.bots.values() {
        let selected = if Some(b.id) == bot { " selected" } else { "" };
        bots.push_str(&format!(
            "<option value=\"{}\"{selected}>@{}</option>",
            b.id,
            esc(&b.username)
        ));
    }
    let error = sel
        .error
        .as_deref()
        .map(|e| format!("<p class=\"error\" id=\"error\">{}</p>", esc(e)))
        .unwrap_or_default()
        + &sel
            .notice
            .as_deref()
            .map(|n| format!("<p class=\"notice\" id=\"notice\">{}</p>", esc(n)))
            .unwrap_or_default();
    let chats = user.map(|u| chat_list(w, u, bot, chat)).unwrap_or_default();
    let open = match (user, bot, chat) {
        (Some(u), _, Some(c)) => Some((u, bot.unwrap_or(0), Some(c))),
        (Some(u), Some(b), None) => Some((u, b, None)),
        _ => None,
    };
    let conversation = match open {
        Some((u, b, c)) => {
            let cb = sel
                .cb
                .as_deref()
                .map(|c| format!("&amp;cb={}", esc(c)))
                .unwrap_or_default();
            let chat_field = c
                .map(|c| format!("<input type=\"hidden\" name=\"chat\" value=\"{c}\">"))
                .unwrap_or_default();
            let chat_query = c.map(|c| format!("&amp;chat={c}")).unwrap_or_default();
            let title = match c.and_then(|c| w.groups.get(&c)) {
                Some(g) => format!("{} · {}", esc(&g.title), g.kind.as_str()),
                None => format!(
                    "Private chat with @{}",
                    esc(w.bots.get(&b).map_or("", |b| b.username.as_str()))
                ),
            };
            format!(
                "<h2 id=\"chat-title\">{title}</h2>\
                 <div id=\"transcript\" data-src=\"/ui/transcript?user={u}&amp;bot={b}{chat_query}{cb}\">{}</div>\
                 <form id=\"composer\" method=\"post\" action=\"/ui/send\">\
                 <input type=\"hidden\" name=\"user\" value=\"{u}\"><input type=\"hidden\" name=\"bot\" value=\"{b}\">{chat_field}\
                 <input id=\"text\" name=\"text\" autocomplete=\"off\" placeholder=\"Message or /command\" required>\
                 <button id=\"send\" type=\"submit\">Send</button></form>",
                render_transcript(w, u, b, c, sel.cb.as_deref()),
            )
        }
        None => "<p class=\"notice\">Choose a user and a bot above, or create them below, to start a chat.</p>".to_string(),
    };
    let groups = groups::panel(w, user, bot);
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>relaygram sandbox</title>\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><style>{STYLE}</style></head><body>\
         <header><h1>relaygram sandbox</h1><form method=\"get\" action=\"/\">\
         <label>User <select name=\"user\" id=\"user\">{users}</select></label>\
         <label>Bot <select name=\"bot\" id=\"bot\">{bots}</select></label>\
         <button type=\"submit\" id=\"open\">Open chat</button></form></header>\
         <main>{error}<div class=\"layout\">{chats}<div class=\"chat-area\">{conversation}</div></div>{groups}\
         <div class=\"setup\">\
         <form method=\"post\" action=\"/ui/users\"><b>New user</b><input name=\"first_name\" placeholder=\"First name\" required>\
         <input name=\"username\" placeholder=\"username\"><button type=\"submit\">Create</button></form>\
         <form method=\"post\" action=\"/ui/bots\"><b>New bot</b><input name=\"username\" placeholder=\"shop_bot\" required>\
         <button type=\"submit\">Create</button></form></div>\
         <p class=\"meta\">Bot API: <code>/bot&lt;token&gt;/&lt;method&gt;</code> · control API: <code>/sandbox/…</code> (docs/sandbox.md)</p>\
         </main><script>{SCRIPT}</script></body></html>"
    ))
}

/// The user's chats: a private one per bot, then the groups and channels they are in.
fn chat_list(w: &World, user: i64, bot: Option<i64>, chat: Option<i64>) -> String {
    let link = |href: String, current: bool, id: String, label: String| {
        let class = if current { " class=\"current\"" } else { "" };
        format!(
            "<li><a href=\"{}\"{class} id=\"{id}\">{label}</a></li>",
            esc(&href)
        )
    };
    let mut out = String::from("<nav id=\"chats\"><h2>Private chats</h2><ul>");
    for b in w.bots.values() {
        out.push_str(&link(
            chat_url(Some(user), Some(b.id), None, ""),
            chat.is_none() && bot == Some(b.id),
            format!("chat-bot-{}", b.id),
            format!("@{}", esc(&b.username)),
        ));
    }
    out.push_str("</ul><h2>Groups and channels</h2><ul>");
    let mut any = false;
    for g in w.groups.values().filter(|g| is_member(g, user)) {
        any = true;
        let kind = match g.kind {
            GroupKind::Channel => "channel",
            GroupKind::Group | GroupKind::Supergroup => "group",
        };
        out.push_str(&link(
            chat_url(Some(user), bot, Some(g.id), ""),
            chat == Some(g.id),
            format!("chat-{}", g.id.unsigned_abs()),
            format!("{} <span class=\"meta\">{kind}</span>", esc(&g.title)),
        ));
    }
    out.push_str("</ul>");
    if !any {
        out.push_str(
            "<p class=\"meta\">None yet: <code>POST /sandbox/groups</code> makes one.</p>",
        );
    }
    out.push_str("</nav>");
    out
}

fn render_transcript(
    w: &World,
    user: i64,
    bot: i64,
    chat: Option<i64>,
    cb: Option<&str>,
) -> String {
    let mut out = String::new();
    let chat_id = chat.unwrap_or(user);
    let items = transcript_items(w, chat_id, chat.is_none().then_some(bot));
    if items.is_empty() {
        out.push_str(if chat.is_some() {
            "<p class=\"meta\">No messages yet.</p>"
        } else {
            "<p class=\"meta\">No messages yet. Send /start.</p>"
        });
    }
    for m in items.iter().filter(|m| m["deleted"] != Value::Bool(true)) {
        out.push_str(&render_message(w, m, user, bot, chat));
    }
    if let Some(id) = cb
        && let Some(c) = w.callbacks.get(id)
    {
        out.push_str(&render_callback_answer(c.answer.as_ref(), user, bot, chat));
    }
    out
}

/// A button's answer as Telegram shows it: a toast for `text`, a dialog to dismiss for
/// `show_alert`.
fn render_callback_answer(
    answer: Option<&Value>,
    user: i64,
    bot: i64,
    chat: Option<i64>,
) -> String {
    let Some(a) = answer else {
        return "<p class=\"notice\" id=\"callback-pending\">Waiting for the bot to answer the button…</p>"
            .to_string();
    };
    let text = a["text"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(|t| worded(&esc(t)));
    match text {
        Some(text) if a["show_alert"] == Value::Bool(true) => format!(
            "<div class=\"modal\" id=\"callback-alert\" role=\"alertdialog\" aria-modal=\"true\">\
             <div class=\"dialog\"><p id=\"alert-text\">{text}</p>\
             <a id=\"alert-ok\" href=\"{}\">OK</a></div></div>",
            esc(&chat_url(Some(user), Some(bot), chat, ""))
        ),
        Some(text) => format!(
            "<div class=\"toast\" id=\"callback-answer\" role=\"status\">The bot answered: {text}</div>"
        ),
        None => "<div class=\"toast\" id=\"callback-answer\" role=\"status\">The bot acknowledged the button.</div>"
            .to_string(),
    }
}

fn render_message(w: &World, m: &Value, user: i64, bot: i64, chat: Option<i64>) -> String {
    let direction = m["direction"].as_str().unwrap_or("out");
    let id = m["message_id"].as_i64().unwrap_or(0);
    // In a group the page says who wrote; the bot that sent a message is the one pressed.
    let sender_bot = m["bot_id"].as_i64().filter(|b| *b != 0).unwrap_or(bot);
    let from = match chat {
        None => String::new(),
        Some(_) if direction == "out" => w
            .bots
            .get(&sender_bot)
            .map(|b| format!("<div class=\"from\">@{}</div>", esc(&b.username)))
            .unwrap_or_default(),
        Some(_) => match (
            m["from"]["first_name"].as_str(),
            m["sender_chat"]["title"].as_str(),
        ) {
            (Some(name), _) => format!("<div class=\"from\">{}</div>", esc(name)),
            (None, Some(title)) => format!("<div class=\"from\">{}</div>", esc(title)),
            (None, None) => String::new(),
        },
    };
    let chat_field = chat
        .map(|c| format!("<input type=\"hidden\" name=\"chat\" value=\"{c}\">"))
        .unwrap_or_default();
    let entities = |field: &str| -> Vec<Entity> {
        serde_json::from_value(m[field].clone()).unwrap_or_default()
    };
    let mut body = String::new();
    if let Some(text) = m["text"].as_str() {
        body.push_str(&worded(&markup::render_html(text, &entities("entities"))));
    } else {
        if m.get("photo").is_some() {
            body.push_str("<div class=\"meta\">[photo]</div>");
        }
        if let Some(d) = m.get("document") {
            body.push_str(&format!(
                "<div class=\"meta\">[document {}]</div>",
                esc(d["file_name"].as_str().unwrap_or("file"))
            ));
        }
        if let Some(c) = m["caption"].as_str() {
            body.push_str(&worded(&markup::render_html(
                c,
                &entities("caption_entities"),
            )));
        }
        if let Some(users) = m["new_chat_members"].as_array() {
            let names: Vec<String> = users
                .iter()
                .filter_map(|u| u["first_name"].as_str())
                .map(esc)
                .collect();
            body.push_str(&format!("<i>{} joined</i>", names.join(", ")));
        }
    }
    let mut keyboard = String::new();
    if let Some(rows) = m["reply_markup"]["inline_keyboard"].as_array() {
        keyboard.push_str("<div class=\"kb\">");
        for row in rows {
            keyboard.push_str("<div class=\"row\">");
            for b in row.as_array().into_iter().flatten() {
                let label = worded(&esc(b["text"].as_str().unwrap_or("")));
                if let Some(data) = b["callback_data"].as_str() {
                    keyboard.push_str(&format!(
                        "<form method=\"post\" action=\"/ui/press\" style=\"flex:1;display:flex\">\
                         <input type=\"hidden\" name=\"user\" value=\"{user}\"><input type=\"hidden\" name=\"bot\" value=\"{sender_bot}\">{chat_field}\
                         <input type=\"hidden\" name=\"message_id\" value=\"{id}\"><input type=\"hidden\" name=\"data\" value=\"{}\">\
                         <button type=\"submit\" class=\"callback\">{label}</button></form>",
                        esc(data)
                    ));
                } else if let Some(url) = b["url"].as_str() {
                    keyboard.push_str(&format!(
                        "<a href=\"{}\" target=\"_blank\" rel=\"noopener\">{label} ↗</a>",
                        esc(url)
                    ));
                } else {
                    keyboard.push_str(&format!(
                        "<button type=\"button\" disabled>{label}</button>"
                    ));
                }
            }
            keyboard.push_str("</div>");
        }
        keyboard.push_str("</div>");
    }
    let edited = if m.get("edit_date").is_some() {
        " · edited"
    } else {
        ""
    };
    let silent = if m["silent"] == Value::Bool(true) {
        " · silent"
    } else {
        ""
    };
    format!(
        "<div class=\"msg {direction}\" data-message-id=\"{id}\">{from}{body}{keyboard}<div class=\"meta\">#{id}{edited}{silent}</div></div>"
    )
}

async fn transcript_fragment(
    State(s): State<Arc<Shared>>,
    Query(sel): Query<Selection>,
) -> Response {
    let w = s.world();
    match (sel.user, sel.bot, sel.chat) {
        (Some(u), Some(b), Some(c))
            if w.users.contains_key(&u) && w.groups.get(&c).is_some_and(|g| is_member(g, u)) =>
        {
            Html(render_transcript(&w, u, b, Some(c), sel.cb.as_deref())).into_response()
        }
        (Some(u), Some(b), None) if w.users.contains_key(&u) && w.bots.contains_key(&b) => {
            Html(render_transcript(&w, u, b, None, sel.cb.as_deref())).into_response()
        }
        _ => (axum::http::StatusCode::NOT_FOUND, "no such chat").into_response(),
    }
}

fn back(user: Option<i64>, bot: Option<i64>, extra: &str) -> Redirect {
    Redirect::to(&chat_url(user, bot, None, extra))
}

fn error_param(e: &str) -> String {
    format!(
        "error={}",
        serde_urlencoded::to_string([("e", e)])
            .unwrap_or_default()
            .trim_start_matches("e=")
    )
}

#[derive(Deserialize)]
struct SendForm {
    user: i64,
    bot: i64,
    chat: Option<i64>,
    text: String,
}

async fn send(State(s): State<Arc<Shared>>, Form(f): Form<SendForm>) -> Redirect {
    let result = {
        let mut w = s.world();
        send_user_message_text(&mut w, f.user, &f.bot.to_string(), f.chat, &f.text)
    };
    s.dispatch.notify_one();
    let extra = match result {
        Ok(_) => String::new(),
        Err(e) => error_param(e.message()),
    };
    Redirect::to(&chat_url(Some(f.user), Some(f.bot), f.chat, &extra))
}

#[derive(Deserialize)]
struct PressForm {
    user: i64,
    bot: i64,
    chat: Option<i64>,
    message_id: i64,
    data: String,
}

async fn press(State(s): State<Arc<Shared>>, Form(f): Form<PressForm>) -> Redirect {
    let result = {
        let mut w = s.world();
        press_button(
            &mut w,
            f.user,
            &f.bot.to_string(),
            f.chat.unwrap_or(f.user),
            f.message_id,
            &f.data,
        )
    };
    s.dispatch.notify_one();
    let extra = match result {
        Ok(v) => format!("cb={}", v["callback_query_id"].as_str().unwrap_or_default()),
        Err(e) => error_param(e.message()),
    };
    Redirect::to(&chat_url(Some(f.user), Some(f.bot), f.chat, &extra))
}

#[derive(Deserialize)]
struct UserForm {
    first_name: String,
    username: Option<String>,
}

async fn new_user(State(s): State<Arc<Shared>>, Form(f): Form<UserForm>) -> Redirect {
    let mut w = s.world();
    let first_name = f.first_name.trim().to_string();
    if first_name.is_empty() {
        return back(None, None, &error_param("first name must not be empty"));
    }
    let username = f
        .username
        .map(|u| u.trim().trim_start_matches('@').to_string())
        .filter(|u| !u.is_empty());
    let id = w.add_user(User {
        id: 0,
        first_name,
        last_name: None,
        username,
        language_code: Some("en".into()),
        is_premium: false,
        started: Default::default(),
        blocked: Default::default(),
    });
    let bot = w.bots.keys().next().copied();
    back(Some(id), bot, "")
}

#[derive(Deserialize)]
struct BotForm {
    username: String,
}

async fn new_bot(State(s): State<Arc<Shared>>, Form(f): Form<BotForm>) -> Redirect {
    let mut w = s.world();
    let name = f.username.trim().trim_start_matches('@').to_string();
    if !valid_bot_username(&name) || w.find_bot(&name).is_some() {
        return back(
            None,
            None,
            &error_param(
                "a new bot needs a free username of 5-32 letters, digits or _ ending in \"bot\"",
            ),
        );
    }
    let id = w.add_bot(name.clone(), name).id;
    let user = w.users.keys().next().copied();
    back(user, Some(id), "")
}

#[derive(Deserialize)]
struct JoinForm {
    user: i64,
    bot: Option<i64>,
    invite_link: String,
}

/// The user opens an invite link: into the chat when they joined, back with a notice when
/// they asked to join, or with Telegram's refusal.
async fn join(State(s): State<Arc<Shared>>, Form(f): Form<JoinForm>) -> Redirect {
    let result = {
        let mut w = s.world();
        crate::membership::settle(&mut w);
        open_link(&mut w, f.user, f.invite_link.trim())
    };
    s.dispatch.notify_one();
    match result {
        Ok(v) if v["result"] == "joined" => {
            Redirect::to(&chat_url(Some(f.user), f.bot, v["chat_id"].as_i64(), ""))
        }
        Ok(_) => back(
            Some(f.user),
            f.bot,
            &format!(
                "notice={}",
                serde_urlencoded::to_string([(
                    "n",
                    "Join request sent: an administrator must approve it"
                )])
                .unwrap_or_default()
                .trim_start_matches("n=")
            ),
        ),
        Err(e) => back(Some(f.user), f.bot, &error_param(e.message())),
    }
}

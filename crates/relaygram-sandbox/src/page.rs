//! The chat page at `/`: pick a user and a bot, read the conversation as Telegram would show
//! it (formatting rendered, inline buttons pressable) and type messages. Server-rendered
//! HTML; a few lines of JavaScript refresh the conversation as the bot answers.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::Value;

use crate::Shared;
use crate::control::{press_button, send_user_message_text, transcript_items};
use crate::markup::{self, Entity};
use crate::world::{User, World, valid_bot_username};

pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(index))
        .route("/ui/transcript", get(transcript_fragment))
        .route("/ui/send", post(send))
        .route("/ui/press", post(press))
        .route("/ui/users", post(new_user))
        .route("/ui/bots", post(new_bot))
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
    /// A callback query just sent from this page, to show the bot's answer.
    cb: Option<String>,
    error: Option<String>,
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
    let w = s.world();
    let user = sel.user.filter(|u| w.users.contains_key(u));
    let bot = sel.bot.filter(|b| w.bots.contains_key(b));
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
        .unwrap_or_default();
    let chat = match (user, bot) {
        (Some(u), Some(b)) => {
            let cb = sel.cb.as_deref().map(|c| format!("&cb={}", esc(c))).unwrap_or_default();
            format!(
                "<div id=\"transcript\" data-src=\"/ui/transcript?user={u}&amp;bot={b}{cb}\">{}</div>\
                 <form id=\"composer\" method=\"post\" action=\"/ui/send\">\
                 <input type=\"hidden\" name=\"user\" value=\"{u}\"><input type=\"hidden\" name=\"bot\" value=\"{b}\">\
                 <input id=\"text\" name=\"text\" autocomplete=\"off\" placeholder=\"Message or /command\" required>\
                 <button id=\"send\" type=\"submit\">Send</button></form>",
                render_transcript(&w, u, b, sel.cb.as_deref()),
            )
        }
        _ => "<p class=\"notice\">Choose a user and a bot above, or create them below, to start a chat.</p>".to_string(),
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>relaygram sandbox</title>\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><style>{STYLE}</style></head><body>\
         <header><h1>relaygram sandbox</h1><form method=\"get\" action=\"/\">\
         <label>User <select name=\"user\" id=\"user\">{users}</select></label>\
         <label>Bot <select name=\"bot\" id=\"bot\">{bots}</select></label>\
         <button type=\"submit\" id=\"open\">Open chat</button></form></header>\
         <main>{error}{chat}\
         <div class=\"setup\">\
         <form method=\"post\" action=\"/ui/users\"><b>New user</b><input name=\"first_name\" placeholder=\"First name\" required>\
         <input name=\"username\" placeholder=\"username\"><button type=\"submit\">Create</button></form>\
         <form method=\"post\" action=\"/ui/bots\"><b>New bot</b><input name=\"username\" placeholder=\"shop_bot\" required>\
         <button type=\"submit\">Create</button></form></div>\
         <p class=\"meta\">Bot API: <code>/bot&lt;token&gt;/&lt;method&gt;</code> · control API: <code>/sandbox/…</code> (docs/sandbox.md)</p>\
         </main><script>{SCRIPT}</script></body></html>"
    ))
}

fn render_transcript(w: &World, user: i64, bot: i64, cb: Option<&str>) -> String {
    let mut out = String::new();
    let items = transcript_items(w, user, Some(bot));
    if items.is_empty() {
        out.push_str("<p class=\"meta\">No messages yet. Send /start.</p>");
    }
    for m in items.iter().filter(|m| m["deleted"] != Value::Bool(true)) {
        out.push_str(&render_message(m, user, bot));
    }
    if let Some(id) = cb
        && let Some(c) = w.callbacks.get(id)
    {
        let text = match &c.answer {
            Some(a) => match a["text"].as_str() {
                Some(t) if !t.is_empty() => format!("The bot answered: {}", esc(t)),
                _ => "The bot acknowledged the button.".to_string(),
            },
            None => "Waiting for the bot to answer the button…".to_string(),
        };
        out.push_str(&format!(
            "<p class=\"notice\" id=\"callback-answer\">{text}</p>"
        ));
    }
    out
}

fn render_message(m: &Value, user: i64, bot: i64) -> String {
    let direction = m["direction"].as_str().unwrap_or("out");
    let id = m["message_id"].as_i64().unwrap_or(0);
    let entities = |field: &str| -> Vec<Entity> {
        serde_json::from_value(m[field].clone()).unwrap_or_default()
    };
    let mut body = String::new();
    if let Some(text) = m["text"].as_str() {
        body.push_str(&markup::render_html(text, &entities("entities")));
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
            body.push_str(&markup::render_html(c, &entities("caption_entities")));
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
                let label = esc(b["text"].as_str().unwrap_or(""));
                if let Some(data) = b["callback_data"].as_str() {
                    keyboard.push_str(&format!(
                        "<form method=\"post\" action=\"/ui/press\" style=\"flex:1;display:flex\">\
                         <input type=\"hidden\" name=\"user\" value=\"{user}\"><input type=\"hidden\" name=\"bot\" value=\"{bot}\">\
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
        "<div class=\"msg {direction}\" data-message-id=\"{id}\">{body}{keyboard}<div class=\"meta\">#{id}{edited}{silent}</div></div>"
    )
}

async fn transcript_fragment(
    State(s): State<Arc<Shared>>,
    Query(sel): Query<Selection>,
) -> Response {
    let w = s.world();
    match (sel.user, sel.bot) {
        (Some(u), Some(b)) if w.users.contains_key(&u) && w.bots.contains_key(&b) => {
            Html(render_transcript(&w, u, b, sel.cb.as_deref())).into_response()
        }
        _ => (axum::http::StatusCode::NOT_FOUND, "no such chat").into_response(),
    }
}

fn back(user: Option<i64>, bot: Option<i64>, extra: &str) -> Redirect {
    let mut url = "/?".to_string();
    if let Some(u) = user {
        url.push_str(&format!("user={u}&"));
    }
    if let Some(b) = bot {
        url.push_str(&format!("bot={b}&"));
    }
    url.push_str(extra);
    Redirect::to(url.trim_end_matches(['&', '?']))
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
    text: String,
}

async fn send(State(s): State<Arc<Shared>>, Form(f): Form<SendForm>) -> Redirect {
    let result = {
        let mut w = s.world();
        send_user_message_text(&mut w, f.user, &f.bot.to_string(), &f.text)
    };
    s.dispatch.notify_one();
    match result {
        Ok(_) => back(Some(f.user), Some(f.bot), ""),
        Err(e) => back(Some(f.user), Some(f.bot), &error_param(e.message())),
    }
}

#[derive(Deserialize)]
struct PressForm {
    user: i64,
    bot: i64,
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
            f.user,
            f.message_id,
            &f.data,
        )
    };
    s.dispatch.notify_one();
    match result {
        Ok(v) => {
            let cb = v["callback_query_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            back(Some(f.user), Some(f.bot), &format!("cb={cb}"))
        }
        Err(e) => back(Some(f.user), Some(f.bot), &error_param(e.message())),
    }
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

//! Routing one stored update to its handler: built-in commands, custom commands, buttons
//! and chat-state changes. Called by the [`Processor`](super::processor::Processor), which
//! owns claiming and recording; this module owns what an update means.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};

use super::command::{self, Parsed};
use crate::commands::{BUILT_IN, CommandAction, CommandLimiter, LimitDecision};
use crate::delivery::reply::Reply;
use crate::ids::now_millis;
use crate::linking::service::{ChatRef, Redeemed, SETTINGS_BUTTON, SettingsView};
use crate::services::Services;
use crate::store::{
    BotRecord, BuiltinCommand, ChatRecord, ChatState, NewEvent, NewReply, TextKey, UpdateRecord,
    UpdateStatus,
};
use crate::telegram::{BotToken, TelegramError};
use crate::templates::CallbackAnswer;
use crate::texts::TextVars;

/// Callback data of relaygram's own buttons starts with this.
const OWN_BUTTON: &str = "rg:";

/// Decides what each update means and acts on it.
#[derive(Clone)]
pub struct Router {
    services: Services,
    limiter: Arc<CommandLimiter>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}

/// What handling an update did.
pub struct Handled {
    /// How the update ended.
    pub status: UpdateStatus,
    /// A short description for the audit log.
    pub outcome: String,
    /// What is to be stored with the outcome.
    pub effects: Effects,
}

/// What handling an update writes: stored by the processor together with the update's
/// outcome, in one transaction. So an update's chats, events and replies are stored
/// exactly when its outcome is: a crash before leaves none of them, and the update is
/// processed again from the start. (Changes made through other services, such as a link
/// redeemed, are written at once; they are idempotent.)
#[derive(Debug, Default)]
pub struct Effects {
    /// Chats seen or changed.
    pub chats: Vec<ChatRecord>,
    /// Events for the app.
    pub events: Vec<NewEvent>,
    /// Replies for the outbox.
    pub replies: Vec<NewReply>,
}

impl Handled {
    fn done(outcome: impl Into<String>) -> Handled {
        Handled {
            status: UpdateStatus::Handled,
            outcome: outcome.into(),
            effects: Effects::default(),
        }
    }

    fn ignored(outcome: impl Into<String>) -> Handled {
        Handled {
            status: UpdateStatus::Ignored,
            outcome: outcome.into(),
            effects: Effects::default(),
        }
    }

    fn rate_limited(outcome: impl Into<String>) -> Handled {
        Handled {
            status: UpdateStatus::RateLimited,
            outcome: outcome.into(),
            effects: Effects::default(),
        }
    }
}

/// Why handling failed.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Telegram refused a call.
    #[error("Telegram: {0}")]
    Telegram(#[from] TelegramError),
    /// Anything else (store, stored data).
    #[error("{0}")]
    Other(String),
}

impl From<crate::store::StoreError> for HandleError {
    fn from(e: crate::store::StoreError) -> Self {
        HandleError::Other(e.to_string())
    }
}

impl From<crate::services::ServiceError> for HandleError {
    fn from(e: crate::services::ServiceError) -> Self {
        HandleError::Other(e.to_string())
    }
}

impl Router {
    /// A router limiting each Telegram user to `commands_per_minute` per bot.
    pub fn new(services: Services, commands_per_minute: u32) -> Router {
        Router {
            services,
            limiter: Arc::new(CommandLimiter::new(commands_per_minute)),
        }
    }

    /// Handles one update.
    pub async fn handle(&self, update: &UpdateRecord) -> Result<Handled, HandleError> {
        let Some(bot) = self.services.store.get_bot(&update.bot_id).await? else {
            return Ok(Handled::ignored("the bot was removed"));
        };
        if !bot.enabled {
            return Ok(Handled::ignored("the bot is disabled"));
        }
        let body: Value = serde_json::from_str(&update.body)
            .map_err(|e| HandleError::Other(format!("stored update is not JSON: {e}")))?;
        let payload = &body[update.kind.as_str()];
        let ctx = Ctx {
            router: self,
            token: self.services.token_of(&bot)?,
            bot,
            update_id: update.update_id,
            received_at: update.received_at,
            effects: Mutex::new(Effects::default()),
            notes: Mutex::new(Vec::new()),
        };
        let mut handled = match update.kind.as_str() {
            "message" => ctx.message(payload, update).await,
            "callback_query" => ctx.callback_query(payload).await,
            "my_chat_member" => ctx.my_chat_member(payload).await,
            "chat_join_request" => {
                match self.services.gate_join_request(&ctx.bot, payload).await? {
                    Some(outcome) => Ok(Handled::done(outcome)),
                    None => ctx.forward_update("chat_join_request", &body, update).await,
                }
            }
            "chat_member" => match self.services.gate_chat_member(&ctx.bot, payload).await? {
                Some(outcome) => Ok(Handled::done(outcome)),
                None => ctx.forward_update("chat_member", &body, update).await,
            },
            other => ctx.forward_update(other, &body, update).await,
        }?;
        let notes = ctx
            .notes
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !notes.is_empty() {
            handled.outcome = format!("{} ({})", handled.outcome, notes.join("; "));
        }
        handled.effects = ctx
            .effects
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let replies = &handled.effects.replies;
        if !replies.is_empty() {
            // The replies' messages: `GET /v1/messages/{id}` follows their delivery.
            let ids: Vec<&str> = replies.iter().map(|r| r.message_id.as_str()).collect();
            handled.outcome = format!("{} (reply {})", handled.outcome, ids.join(", "));
        }
        Ok(handled)
    }
}

/// One update's bot and token, and the replies it queued.
struct Ctx<'a> {
    router: &'a Router,
    bot: BotRecord,
    token: BotToken,
    /// Telegram's id of the update and when it was stored (its replies' origins).
    update_id: i64,
    received_at: i64,
    /// What handling wrote so far.
    effects: Mutex<Effects>,
    /// Remarks for the outcome (an answer Telegram refused).
    notes: Mutex<Vec<String>>,
}

/// Names of the update types the router handles itself; every other type reaches the app
/// as `update.received`.
pub const HANDLED_TYPES: &[&str] = &[
    "message",
    "callback_query",
    "my_chat_member",
    "chat_join_request",
    "chat_member",
];

impl Ctx<'_> {
    fn services(&self) -> &Services {
        &self.router.services
    }

    /// Replies in `chat_id` through the outbox (plain text, exactly as given): the sender
    /// delivers it at the bot's limits and records its message id; a blocked or migrated
    /// chat is handled as for any message. Its origin names the stored update and the
    /// reply's number in it, so processing the update again sends nothing twice.
    fn send(&self, chat_id: i64, text: &str, markup: Option<Value>) -> Result<(), HandleError> {
        let buttons: Vec<Vec<crate::delivery::ButtonSpec>> = match markup {
            // relaygram's own buttons (`rg:stop:yes`, `rg:cat:<id>`) are sent as they are
            // and handled by the router when pressed.
            Some(m) => serde_json::from_value(m["inline_keyboard"].clone())
                .map_err(|e| HandleError::Other(format!("a reply's keyboard: {e}")))?,
            None => Vec::new(),
        };
        let mut effects = self.effects();
        let reply = self.services().prepare_reply(Reply {
            tenant_id: &self.bot.tenant_id,
            bot_id: &self.bot.id,
            chat_id,
            text,
            buttons: &buttons,
            update_id: self.update_id,
            received_at: self.received_at,
            seq: effects.replies.len() as u32,
        })?;
        effects.replies.push(reply);
        Ok(())
    }

    /// The bot's text `key` for the user `from` (Telegram's `from`, whose `language_code`
    /// chooses the translation) in `chat_id`; `fill` sets the key's own variables.
    async fn say(
        &self,
        key: TextKey,
        chat_id: i64,
        from: &Value,
        fill: impl FnOnce(&mut TextVars),
    ) -> Result<String, HandleError> {
        self.say_in(key, Some(chat_id), from, fill).await
    }

    /// [`Ctx::say`] where the chat may be unknown (a press on an inline message).
    async fn say_in(
        &self,
        key: TextKey,
        chat_id: Option<i64>,
        from: &Value,
        fill: impl FnOnce(&mut TextVars),
    ) -> Result<String, HandleError> {
        let mut vars = TextVars::new(&self.bot.username, &self.bot.first_name, from);
        fill(&mut vars);
        let language = from["language_code"].as_str();
        Ok(self
            .services()
            .reply_text(&self.bot, chat_id, key, language, vars)
            .await?)
    }

    /// `/help`: the bot's header, then the built-in and custom commands.
    async fn help_text(
        &self,
        chat_id: i64,
        from: &Value,
        custom: &[crate::commands::CustomCommand],
    ) -> Result<String, HandleError> {
        let header = self.say(TextKey::Help, chat_id, from, |_| {}).await?;
        Ok(format!("{header}\n{}", command_list(custom)))
    }

    /// An event for the app, stored with the update's outcome.
    fn emit(&self, kind: &str, data: Value) {
        let event = crate::events::new_event(&self.bot.tenant_id, kind, &data);
        self.effects().events.push(event);
    }

    /// An event about chat `chat_id`: it names the chat's links and their app users
    /// (`link_ids`, `external_ids`; empty lists when the chat is not linked), so the app
    /// need not look up whose chat it is.
    async fn emit_about(
        &self,
        kind: &str,
        chat_id: Option<i64>,
        mut data: Value,
    ) -> Result<(), HandleError> {
        let links = match chat_id {
            Some(id) => self.services().store.chat_links(&self.bot.id, id).await?,
            None => Vec::new(),
        };
        let links: Vec<_> = links.iter().filter(|l| l.active).collect();
        data["link_ids"] = json!(links.iter().map(|l| &l.id).collect::<Vec<_>>());
        let mut external: Vec<&String> = links
            .iter()
            .filter_map(|l| l.external_id.as_ref())
            .collect();
        external.dedup();
        data["external_ids"] = json!(external);
        self.emit(kind, data);
        Ok(())
    }

    /// Answers a callback query, best effort: the press's effect does not depend on it.
    /// Telegram refuses answers that come late (a press queued while relaygram was down)
    /// or twice; the outcome notes it, and the update is still handled.
    async fn answer_callback(&self, query_id: &str, text: Option<&str>, show_alert: bool) {
        let mut p = json!({"callback_query_id": query_id});
        if let Some(t) = text {
            p["text"] = json!(t);
        }
        if show_alert {
            p["show_alert"] = json!(true);
        }
        self.best_effort("answerCallbackQuery", &p).await;
    }

    /// Adds a remark to the update's outcome.
    fn note(&self, note: String) {
        self.notes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(note);
    }

    /// A call whose failure must not undo what the update did (answers due within seconds,
    /// a keyboard redrawn): a refusal is noted in the outcome.
    async fn best_effort(&self, method: &str, params: &Value) {
        if let Err(e) = self
            .services()
            .telegram
            .call::<_, Value>(&self.token, method, params)
            .await
        {
            tracing::info!(bot_id = %self.bot.id, update_id = self.update_id, method, error = %e, "a best-effort call failed");
            self.notes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(format!("{method} not accepted: {e}"));
        }
    }

    /// An update relaygram does not handle itself: the app gets it whole.
    async fn forward_update(
        &self,
        kind: &str,
        body: &Value,
        update: &UpdateRecord,
    ) -> Result<Handled, HandleError> {
        self.emit_about(
            "update.received",
            update.chat_id,
            json!({"bot_id": self.bot.id, "type": kind, "update_id": update.update_id,
                   "chat_id": update.chat_id, "user_id": update.user_id, "update": body}),
        )
        .await?;
        Ok(Handled::done(format!(
            "forwarded {kind} as update.received"
        )))
    }

    fn effects(&self) -> std::sync::MutexGuard<'_, Effects> {
        self.effects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn set_chat_state(
        &self,
        chat_id: i64,
        chat: Option<&Value>,
        state: ChatState,
    ) -> Result<Option<ChatState>, HandleError> {
        let existing = self
            .services()
            .store
            .get_chat(&self.bot.id, chat_id)
            .await?;
        let text = |k: &str| chat.and_then(|c| c[k].as_str()).map(str::to_string);
        let record = ChatRecord {
            bot_id: self.bot.id.clone(),
            chat_id,
            kind: text("type")
                .or_else(|| existing.as_ref().map(|c| c.kind.clone()))
                .unwrap_or_else(|| if chat_id > 0 { "private" } else { "group" }.into()),
            title: text("title").or_else(|| existing.as_ref().and_then(|c| c.title.clone())),
            username: text("username")
                .or_else(|| existing.as_ref().and_then(|c| c.username.clone())),
            state,
            migrated_to: existing.as_ref().and_then(|c| c.migrated_to),
            updated_at: now_millis(),
        };
        let before = existing.as_ref().map(|c| c.state);
        // Most messages come from chats already known as they are: skip the write.
        let unchanged = existing.is_some_and(|c| {
            c.kind == record.kind
                && c.title == record.title
                && c.username == record.username
                && c.state == record.state
        });
        if !unchanged {
            self.effects().chats.push(record);
        }
        Ok(before)
    }

    async fn message(&self, m: &Value, update: &UpdateRecord) -> Result<Handled, HandleError> {
        let chat = &m["chat"];
        let Some(chat_id) = chat["id"].as_i64() else {
            return Ok(Handled::ignored("a message without a chat"));
        };
        if let Some(to) = m["migrate_to_chat_id"].as_i64() {
            return self.migrated(chat_id, to, chat).await;
        }
        if m.get("migrate_from_chat_id").is_some() {
            self.set_chat_state(chat_id, Some(chat), ChatState::Active)
                .await?;
            return Ok(Handled::ignored("the new supergroup's first message"));
        }
        let before = self
            .set_chat_state(chat_id, Some(chat), ChatState::Active)
            .await?;
        // A first /start, or one after the user blocked the bot (or removed it from a group).
        let new_here = before.is_none_or(|s| s != ChatState::Active);
        let text = m["text"].as_str().unwrap_or_default();
        let parsed = command::parse(text, &self.bot.username);
        let cmd = match parsed {
            Parsed::OtherBot => return Ok(Handled::ignored("a command for another bot")),
            Parsed::Text => {
                let mut data =
                    json!({"bot_id": self.bot.id, "chat": chat, "from": m["from"], "message": m});
                if let Some(replied) = self.replied_to(chat_id, m).await? {
                    data["reply_to"] = replied;
                }
                self.emit_about("message.received", Some(chat_id), data)
                    .await?;
                return Ok(Handled::done("forwarded as message.received"));
            }
            Parsed::Command(cmd) => cmd,
        };
        let user = update.user_id.unwrap_or(chat_id);
        match self
            .router
            .limiter
            .check(&self.bot.id, user, Instant::now())
        {
            LimitDecision::Allow => {}
            LimitDecision::Warn => {
                let text = self
                    .say(TextKey::SlowDown, chat_id, &m["from"], |_| {})
                    .await?;
                self.send(chat_id, &text, None)?;
                return Ok(Handled::rate_limited(format!(
                    "/{} over the command limit: asked to slow down",
                    cmd.name
                )));
            }
            LimitDecision::Drop => {
                return Ok(Handled::rate_limited(format!(
                    "/{} over the command limit: dropped",
                    cmd.name
                )));
            }
        }
        let custom = self
            .services()
            .store
            .list_bot_commands(&self.bot.id)
            .await?;
        let from = &m["from"];
        let command_event = json!({"bot_id": self.bot.id, "command": cmd.name, "args": cmd.args,
            "built_in": true, "chat": chat, "from": from, "message": m});
        // A built-in the bot turned off is the app's: it gets the command (`built_in: false`)
        // and relaygram does not answer. A link token or code in `/start` still links.
        let off = cmd
            .name
            .parse::<BuiltinCommand>()
            .is_ok_and(|c| self.bot.builtins_off.contains(&c));
        let start_payload = cmd.name == "start" && !cmd.args.is_empty();
        if BUILT_IN.iter().any(|(name, _)| *name == cmd.name) && !(off && start_payload) {
            // The app hears of built-in commands too (it may log or add to them).
            let mut data = command_event.clone();
            data["built_in"] = json!(!off);
            self.emit_about("command.received", Some(chat_id), data)
                .await?;
        }
        let started = |payload: Option<&str>| {
            json!({"bot_id": self.bot.id, "chat": chat, "from": m["from"], "payload": payload,
                   "returning": before.is_some()})
        };
        match cmd.name.as_str() {
            "start" if cmd.args.is_empty() => {
                // A user coming back (after blocking the bot) makes their links active again.
                self.services()
                    .set_chat_active(&self.bot, chat_id, true, "restarted")
                    .await?;
                if new_here {
                    self.emit_about("chat.started", Some(chat_id), started(None))
                        .await?;
                }
                if off {
                    return Ok(Handled::done(
                        "/start is turned off: forwarded as command.received",
                    ));
                }
                let text = self.say(TextKey::Welcome, chat_id, from, |_| {}).await?;
                self.send(chat_id, &text, None)?;
                Ok(Handled::done("replied to /start"))
            }
            "start" | "link" if !cmd.args.is_empty() => {
                // A gated chat's binding link, started in the group it binds.
                if matches!(chat["type"].as_str(), Some("group" | "supergroup"))
                    && let Some((reply, outcome)) = self
                        .services()
                        .redeem_gate_token(&self.bot, chat_id, &cmd.args)
                        .await?
                {
                    self.send(chat_id, &reply, None)?;
                    return Ok(Handled::done(format!("/{}: {outcome}", cmd.name)));
                }
                let chat_ref = ChatRef {
                    id: chat_id,
                    kind: chat["type"].as_str().unwrap_or("private"),
                    user_id: m["from"]["id"].as_i64(),
                };
                let redeemed = self
                    .services()
                    .redeem(&self.bot, chat_ref, &cmd.args)
                    .await?;
                if off {
                    // /start is the app's, but a token or code relaygram made still links.
                    let mut data = command_event.clone();
                    data["built_in"] = json!(matches!(redeemed, Redeemed::Known { .. }));
                    self.emit_about("command.received", Some(chat_id), data)
                        .await?;
                }
                match redeemed {
                    Redeemed::Known { reply, outcome } => {
                        let text = self
                            .say(reply, chat_id, from, |v| v.payload = Some(cmd.args.clone()))
                            .await?;
                        self.send(chat_id, &text, None)?;
                        Ok(Handled::done(format!("/{}: {outcome}", cmd.name)))
                    }
                    Redeemed::Unknown if cmd.name == "start" => {
                        // Not a token or code relaygram made: the app's own payload
                        // (referrals, campaigns). The user is welcomed as for a plain /start.
                        self.services()
                            .set_chat_active(&self.bot, chat_id, true, "restarted")
                            .await?;
                        self.emit_about("chat.started", Some(chat_id), started(Some(&cmd.args)))
                            .await?;
                        if off {
                            return Ok(Handled::done(
                                "/start with the app's payload, /start turned off: forwarded as command.received and chat.started",
                            ));
                        }
                        let text = self
                            .say(TextKey::Welcome, chat_id, from, |v| {
                                v.payload = Some(cmd.args.clone())
                            })
                            .await?;
                        self.send(chat_id, &text, None)?;
                        Ok(Handled::done(
                            "/start with the app's payload: welcomed, forwarded as chat.started",
                        ))
                    }
                    Redeemed::Unknown => {
                        let text = self
                            .say(TextKey::LinkUnknown, chat_id, from, |_| {})
                            .await?;
                        self.send(chat_id, &text, None)?;
                        Ok(Handled::done(format!(
                            "/{} with a code the gateway does not know",
                            cmd.name
                        )))
                    }
                }
            }
            "link" => {
                let text = self.say(TextKey::LinkUsage, chat_id, from, |_| {}).await?;
                self.send(chat_id, &text, None)?;
                Ok(Handled::done("explained /link"))
            }
            "help" | "settings" | "stop" if off => Ok(Handled::done(format!(
                "/{} is turned off: forwarded as command.received",
                cmd.name
            ))),
            "help" => {
                let text = self.help_text(chat_id, from, &custom).await?;
                self.send(chat_id, &text, None)?;
                Ok(Handled::done("replied to /help"))
            }
            "settings" => {
                match self.services().chat_settings(&self.bot, chat_id).await? {
                    SettingsView::NotLinked(text) | SettingsView::NoCategories(text) => {
                        self.send(chat_id, &text, None)?;
                    }
                    SettingsView::Menu { text, keyboard } => {
                        self.send(chat_id, &text, Some(keyboard))?;
                    }
                }
                Ok(Handled::done("replied to /settings"))
            }
            "stop" => {
                let yes = self
                    .say(TextKey::StopYesButton, chat_id, from, |_| {})
                    .await?;
                let no = self
                    .say(TextKey::StopNoButton, chat_id, from, |_| {})
                    .await?;
                let keyboard = json!({"inline_keyboard": [[
                    {"text": yes, "callback_data": "rg:stop:yes"},
                    {"text": no, "callback_data": "rg:stop:no"}
                ]]});
                let text = self
                    .say(TextKey::StopConfirm, chat_id, from, |_| {})
                    .await?;
                self.send(chat_id, &text, Some(keyboard))?;
                Ok(Handled::done("asked to confirm /stop"))
            }
            name => match custom.iter().find(|c| c.command == name) {
                Some(c) => match &c.action {
                    CommandAction::Reply { text } => {
                        self.send(chat_id, text, None)?;
                        Ok(Handled::done(format!("replied to custom /{name}")))
                    }
                    CommandAction::Forward => {
                        let mut data = command_event.clone();
                        data["built_in"] = json!(false);
                        self.emit_about("command.received", Some(chat_id), data)
                            .await?;
                        Ok(Handled::done(format!(
                            "forwarded /{name} as command.received"
                        )))
                    }
                },
                None => {
                    let sorry = self
                        .say(TextKey::UnknownCommand, chat_id, from, |v| {
                            v.command = Some(name.to_string())
                        })
                        .await?;
                    let help = self.help_text(chat_id, from, &custom).await?;
                    let text = format!("{sorry}\n\n{help}");
                    self.send(chat_id, &text, None)?;
                    Ok(Handled::done(format!(
                        "unknown command /{name}: replied with help"
                    )))
                }
            },
        }
    }

    /// The message relaygram sent that `m` replies to, if any: `{"message_id", "request_id"}`.
    async fn replied_to(&self, chat_id: i64, m: &Value) -> Result<Option<Value>, HandleError> {
        let Some(replied) = m["reply_to_message"]["message_id"].as_i64() else {
            return Ok(None);
        };
        let found = self
            .services()
            .store
            .find_sent_message(&self.bot.id, chat_id, replied)
            .await?;
        Ok(found.map(|f| {
            let mut v = json!({"message_id": f.message_id, "request_id": f.request_id,
                               "telegram_message_id": replied});
            if let Some(metadata) = f
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str::<Value>(m).ok())
            {
                v["metadata"] = metadata;
            }
            v
        }))
    }

    async fn migrated(&self, chat_id: i64, to: i64, chat: &Value) -> Result<Handled, HandleError> {
        let store = &self.services().store;
        let existing = store.get_chat(&self.bot.id, chat_id).await?;
        store
            .upsert_chat(&ChatRecord {
                bot_id: self.bot.id.clone(),
                chat_id,
                kind: chat["type"].as_str().unwrap_or("group").to_string(),
                title: chat["title"].as_str().map(str::to_string),
                username: existing.and_then(|c| c.username),
                state: ChatState::Migrated,
                migrated_to: Some(to),
                updated_at: now_millis(),
            })
            .await?;
        self.services()
            .follow_migration(&self.bot, chat_id, to)
            .await?;
        if let Some(note) = self
            .services()
            .gate_migrated(&self.bot, chat_id, to)
            .await?
        {
            self.note(note);
        }
        store
            .upsert_chat(&ChatRecord {
                bot_id: self.bot.id.clone(),
                chat_id: to,
                kind: "supergroup".into(),
                title: chat["title"].as_str().map(str::to_string),
                username: None,
                state: ChatState::Active,
                migrated_to: None,
                updated_at: now_millis(),
            })
            .await?;
        self.emit(
            "chat.migrated",
            json!({"bot_id": self.bot.id, "chat_id": chat_id, "migrate_to_chat_id": to}),
        );
        Ok(Handled::done(format!("group {chat_id} migrated to {to}")))
    }

    /// A button press. Its effect (a confirmed `/stop`, a settings toggle, the app's
    /// `callback.received`) never depends on the answer reaching Telegram: a press queued
    /// while relaygram was down is answered too late, and Telegram refuses the answer.
    async fn callback_query(&self, q: &Value) -> Result<Handled, HandleError> {
        let id = q["id"].as_str().unwrap_or_default();
        let data = q["data"].as_str().unwrap_or_default();
        let chat_id = q["message"]["chat"]["id"].as_i64();
        // A button sent through the outbox: its data is stored server-side (delivery).
        let stored = match data.strip_prefix(crate::delivery::content::CALLBACK_PREFIX) {
            Some(id) => self
                .services()
                .store
                .get_callback(id)
                .await?
                .filter(|c| c.tenant_id == self.bot.tenant_id),
            None => None,
        };
        let data = stored.as_ref().map_or(data, |c| c.data.as_str());
        if let Some(button) = data.strip_prefix(SETTINGS_BUTTON)
            && let Some(chat_id) = chat_id
        {
            return self.settings_button(q, id, chat_id, button).await;
        }
        if let Some(own) = data.strip_prefix(OWN_BUTTON) {
            let in_group = q["message"]["chat"]["type"] != "private";
            if own == "stop:yes"
                && in_group
                && let Some(chat_id) = chat_id
                && !self
                    .is_chat_admin(chat_id, q["from"]["id"].as_i64())
                    .await?
            {
                self.answer_callback(id, Some(ADMINS_ONLY), false).await;
                return Ok(Handled::done(
                    "refused stop:yes from a group member who is not an administrator",
                ));
            }
            if own == "stop:yes"
                && let Some(chat_id) = chat_id
            {
                // Named before they are removed: the app learns whose chat stopped.
                self.emit_about(
                    "chat.stopped",
                    Some(chat_id),
                    json!({"bot_id": self.bot.id, "chat_id": chat_id, "from": q["from"]}),
                )
                .await?;
                // Idempotent: a second run of the update stops nothing more.
                self.services().stop_chat(&self.bot, chat_id).await?;
            }
            let key = match own {
                "stop:yes" => Some(TextKey::Stopped),
                "stop:no" => Some(TextKey::StopCancelled),
                _ => None,
            };
            let reply = match key {
                Some(key) => self.say_in(key, chat_id, &q["from"], |_| {}).await?,
                None => "This button is no longer valid.".to_string(),
            };
            self.answer_callback(id, Some(&reply), false).await;
            return Ok(Handled::done(format!("answered relaygram button {own}")));
        }
        let mut event = json!({"bot_id": self.bot.id, "data": data, "from": q["from"],
                               "message": q["message"], "chat_id": chat_id});
        if let Some(metadata) = stored
            .as_ref()
            .and_then(|c| c.metadata.as_deref())
            .and_then(|m| serde_json::from_str::<Value>(m).ok())
        {
            event["metadata"] = metadata;
        }
        self.emit_about("callback.received", chat_id, event).await?;
        // The button's own answer, when the send gave it one (a toast or an alert).
        let answer: Option<CallbackAnswer> = stored
            .as_ref()
            .and_then(|c| c.answer.as_deref())
            .and_then(|a| serde_json::from_str(a).ok());
        match &answer {
            Some(a) => self.answer_callback(id, Some(&a.text), a.show_alert).await,
            None => self.answer_callback(id, None, false).await,
        }
        Ok(Handled::done("answered and forwarded as callback.received"))
    }

    async fn my_chat_member(&self, m: &Value) -> Result<Handled, HandleError> {
        let chat = &m["chat"];
        let Some(chat_id) = chat["id"].as_i64() else {
            return Ok(Handled::ignored("a member change without a chat"));
        };
        let status = m["new_chat_member"]["status"].as_str().unwrap_or_default();
        let private = chat["type"] == "private";
        let state = match status {
            "kicked" if private => ChatState::Blocked,
            "kicked" => ChatState::Kicked,
            "left" => ChatState::Left,
            _ => ChatState::Active,
        };
        self.set_chat_state(chat_id, Some(chat), state).await?;
        if let Some(note) = self.services().gate_my_chat_member(&self.bot, m).await? {
            self.note(note);
        }
        let reason = match state {
            ChatState::Blocked => "blocked",
            ChatState::Kicked | ChatState::Left => "removed",
            _ if private => "unblocked",
            _ => "added",
        };
        if state == ChatState::Active {
            self.services()
                .set_chat_active(&self.bot, chat_id, true, reason)
                .await?;
        } else {
            // Blocked or removed: the chat's state and links change, and what was waiting
            // for it is cancelled, at once (not with the update's outcome).
            self.services()
                .chat_gone(&self.bot.id, chat_id, state, reason)
                .await?;
        }
        self.emit(
            "chat.member_updated",
            json!({"bot_id": self.bot.id, "chat": chat, "from": m["from"], "status": status,
                   "old_status": m["old_chat_member"]["status"], "state": state.as_str()}),
        );
        Ok(Handled::done(format!(
            "chat {chat_id} is now {}",
            state.as_str()
        )))
    }
}

impl Ctx<'_> {
    /// Whether a user is an administrator (or the creator) of a group.
    async fn is_chat_admin(&self, chat_id: i64, user_id: Option<i64>) -> Result<bool, HandleError> {
        let Some(user_id) = user_id else {
            return Ok(false);
        };
        let member: Value = self
            .services()
            .telegram
            .call(
                &self.token,
                "getChatMember",
                &json!({"chat_id": chat_id, "user_id": user_id}),
            )
            .await?;
        Ok(matches!(
            member["status"].as_str(),
            Some("administrator" | "creator")
        ))
    }

    /// A `/settings` button (`<category id>:on|off`, the state it sets; older keyboards
    /// carry only the id and toggle): sets the category for the chat's links and redraws
    /// the keyboard. Setting a state is idempotent, so a second run of the update changes
    /// nothing more. In groups only administrators may change settings.
    async fn settings_button(
        &self,
        q: &Value,
        query_id: &str,
        chat_id: i64,
        button: &str,
    ) -> Result<Handled, HandleError> {
        if q["message"]["chat"]["type"] != "private"
            && !self
                .is_chat_admin(chat_id, q["from"]["id"].as_i64())
                .await?
        {
            self.answer_callback(query_id, Some(ADMINS_ONLY), false)
                .await;
            return Ok(Handled::done(
                "refused a settings change from a group member who is not an administrator",
            ));
        }
        let (category_id, target) = match button.rsplit_once(':') {
            Some((id, "on")) => (id, Some(true)),
            Some((id, "off")) => (id, Some(false)),
            _ => (button, None),
        };
        let toggled = self
            .services()
            .toggle_category(&self.bot, chat_id, category_id, target)
            .await?;
        self.answer_callback(query_id, Some(&toggled.answer), false)
            .await;
        if let (Some(keyboard), Some(message_id)) =
            (toggled.keyboard, q["message"]["message_id"].as_i64())
        {
            self.best_effort(
                "editMessageReplyMarkup",
                &json!({"chat_id": chat_id, "message_id": message_id, "reply_markup": keyboard}),
            )
            .await;
        }
        Ok(Handled::done(toggled.outcome))
    }
}

/// What a group member who is not an administrator is told when pressing a settings button.
const ADMINS_ONLY: &str = "Only the group's administrators can change this.";

/// The lines of `/help`: the built-in commands, then the bot's custom ones.
fn command_list(custom: &[crate::commands::CustomCommand]) -> String {
    let mut text = String::new();
    for (name, description) in BUILT_IN {
        text.push_str(&format!("/{name} — {description}\n"));
    }
    for c in custom {
        text.push_str(&format!("/{} — {}\n", c.command, c.description));
    }
    text
}

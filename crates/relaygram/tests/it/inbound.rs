//! Inbound end to end: sandbox users talk to a bot added to relaygram, in webhook mode and in
//! polling mode; every update is stored once, processed in order and given an outcome.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, engines, exec_sql, outcome, outgoing, until};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Webhook,
    Polling,
}

/// Every engine, in both intake modes: what the router does must not depend on how the
/// update arrived.
fn engines_and_modes() -> Vec<(&'static str, Mode)> {
    engines()
        .into_iter()
        .flat_map(|e| [(e, Mode::Webhook), (e, Mode::Polling)])
        .collect()
}

/// A bot added to relaygram and a sandbox user who talks to it.
struct Chat {
    tenant: String,
    bot_id: String,
    telegram_id: i64,
    username: String,
    token: String,
    user: i64,
}

async fn setup(app: &TestApp, username: &str, mode: Mode) -> Chat {
    let (telegram_id, token) = app.sandbox_bot(username).await;
    let tenant = app.tenant("Shop").await;
    let a = app
        .post(
            "/v1/bots",
            &app.admin_key,
            json!({"token": token, "tenant_id": tenant}),
        )
        .await;
    assert_eq!(a.status.as_u16(), 201, "{}", a.text);
    let bot_id = a.body["id"].as_str().unwrap().to_string();
    if mode == Mode::Webhook {
        let a = app
            .post(
                &format!("/v1/bots/{bot_id}/webhook"),
                &app.admin_key,
                json!({"base_url": app.server.url()}),
            )
            .await;
        assert_eq!(a.status.as_u16(), 200, "{}", a.text);
        assert_eq!(a.body["mode"], "webhook", "{}", a.text);
    }
    let user = sandbox_user(app, "Alice").await;
    Chat {
        tenant,
        bot_id,
        telegram_id,
        username: username.to_string(),
        token,
        user,
    }
}

async fn sandbox_user(app: &TestApp, name: &str) -> i64 {
    let r: Value = app
        .http
        .post(format!("{}/sandbox/users", app.sandbox.url()))
        .json(&json!({"first_name": name}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["id"].as_i64().unwrap()
}

async fn say(app: &TestApp, chat: &Chat, text: &str) -> Value {
    app.sandbox_post(
        &format!("/sandbox/users/{}/messages", chat.user),
        json!({"bot": chat.username, "text": text}),
    )
    .await
}

async fn transcript(app: &TestApp, chat: &Chat) -> Vec<Value> {
    app.transcript(chat.user, Some(&chat.username)).await
}

/// The bot's next reply after `after` messages in the transcript.
async fn reply_after(app: &TestApp, chat: &Chat, after: usize) -> Value {
    until("the bot's reply", || async {
        transcript(app, chat)
            .await
            .into_iter()
            .skip(after)
            .find(|m| m["direction"] == "out")
    })
    .await
}

async fn updates(app: &TestApp, query: &str) -> Vec<Value> {
    let a = app
        .get(&format!("/v1/updates?{query}"), &app.admin_key)
        .await;
    assert_eq!(a.status.as_u16(), 200, "{}", a.text);
    a.body["data"].as_array().unwrap().clone()
}

/// Waits until every update of the bot is processed; returns them, oldest first.
async fn settled(app: &TestApp, chat: &Chat, count: usize) -> Vec<Value> {
    until("updates to be processed", || async {
        let mut list = updates(app, &format!("bot_id={}&limit=200", chat.bot_id)).await;
        let done = list.len() == count
            && list
                .iter()
                .all(|u| u["status"] != "pending" && u["status"] != "processing");
        list.reverse();
        done.then_some(list)
    })
    .await
}

async fn conversation(mode: Mode) {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let chat = setup(&app, "talk_bot", mode).await;

        say(&app, &chat, "/start").await;
        let welcome = reply_after(&app, &chat, 1).await;
        assert_eq!(
            welcome["text"],
            "Welcome to Test! Send /help to see what I can do."
        );

        let seen = transcript(&app, &chat).await.len();
        say(&app, &chat, "/help").await;
        let help = reply_after(&app, &chat, seen + 1).await;
        let help_text = help["text"].as_str().unwrap();
        for c in ["/start", "/help", "/settings", "/stop"] {
            assert!(help_text.contains(c), "{help_text}");
        }

        let seen = transcript(&app, &chat).await.len();
        say(&app, &chat, "/teleport now").await;
        let unknown = reply_after(&app, &chat, seen + 1).await;
        assert!(
            unknown["text"]
                .as_str()
                .unwrap()
                .starts_with("Sorry, I don't know /teleport."),
            "{unknown}"
        );

        let seen = transcript(&app, &chat).await.len();
        say(&app, &chat, "/settings").await;
        reply_after(&app, &chat, seen + 1).await;

        // A command for another bot and plain text get no reply.
        say(&app, &chat, "/help@other_bot").await;
        say(&app, &chat, "just saying hi").await;

        let list = settled(&app, &chat, 6).await;
        let outcomes: Vec<(&str, &str)> = list
            .iter()
            .map(|u| (u["status"].as_str().unwrap(), outcome(u)))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("handled", "replied to /start"),
                ("handled", "replied to /help"),
                ("handled", "unknown command /teleport: replied with help"),
                ("handled", "replied to /settings"),
                ("ignored", "a command for another bot"),
                ("handled", "forwarded as message.received"),
            ],
            "{engine} {mode:?}"
        );
        for u in &list {
            assert_eq!(u["type"], "message");
            assert_eq!(u["chat_id"], json!(chat.user));
            assert!(u["handling_ms"].is_i64());
            assert!(
                u["update"]["message"]["text"].is_string(),
                "the raw update is kept"
            );
        }
        let filtered = updates(&app, &format!("bot_id={}&status=ignored", chat.bot_id)).await;
        assert_eq!(filtered.len(), 1);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_conversation_in_webhook_mode() {
    conversation(Mode::Webhook).await;
}

#[tokio::test]
async fn a_conversation_in_polling_mode() {
    conversation(Mode::Polling).await;
}

#[tokio::test]
async fn stop_asks_to_confirm_and_buttons_are_answered() {
    for (engine, mode) in engines_and_modes() {
        let app = TestApp::spawn(engine).await;
        let chat = setup(&app, "stop_bot", mode).await;
        say(&app, &chat, "/stop").await;
        let ask = reply_after(&app, &chat, 1).await;
        assert_eq!(
            ask["reply_markup"]["inline_keyboard"][0][0]["callback_data"],
            "rg:stop:yes"
        );
        let press = app.sandbox_post(&format!("/sandbox/users/{}/callback", chat.user),
            json!({"bot": chat.username, "message_id": ask["message_id"], "data": "rg:stop:yes"}),
        )
        .await;
        let cq = press["callback_query_id"].as_str().unwrap().to_string();
        let answer = until("the callback answer", || async {
            let v: Value = app
                .http
                .get(format!("{}/sandbox/callbacks/{cq}", app.sandbox.url()))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (v["answered"] == json!(true)).then_some(v)
        })
        .await;
        assert_eq!(
            answer["answer"]["text"],
            "Stopped. Send /start to come back."
        );

        // A button of the app's own message is answered and forwarded.
        let sent: Value = app
            .http
            .post(format!("{}/bot{}/sendMessage", app.sandbox.url(), chat.token))
            .json(&json!({"chat_id": chat.user, "text": "Order #1",
                "reply_markup": {"inline_keyboard": [[{"text": "Ship it", "callback_data": "ship:1"}]]}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let press = app.sandbox_post(&format!("/sandbox/users/{}/callback", chat.user),
            json!({"bot": chat.username, "message_id": sent["result"]["message_id"], "data": "ship:1"}),
        )
        .await;
        let cq = press["callback_query_id"].as_str().unwrap().to_string();
        until("the app button's answer", || async {
            let v: Value = app
                .http
                .get(format!("{}/sandbox/callbacks/{cq}", app.sandbox.url()))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (v["answered"] == json!(true)).then_some(())
        })
        .await;
        let list = settled(&app, &chat, 3).await;
        assert_eq!(
            list[1]["outcome"], "answered relaygram button stop:yes",
            "{engine} {mode:?}"
        );
        assert_eq!(
            list[2]["outcome"],
            "answered and forwarded as callback.received"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn blocking_the_bot_and_a_group_migration_change_chat_state() {
    for (engine, mode) in engines_and_modes() {
        let app = TestApp::spawn(engine).await;
        let chat = setup(&app, "state_bot", mode).await;
        say(&app, &chat, "/start").await;
        reply_after(&app, &chat, 1).await;
        app.sandbox_post(
            &format!("/sandbox/users/{}/block", chat.user),
            json!({"bot": chat.username}),
        )
        .await;
        let group = app
            .sandbox_post(
                "/sandbox/groups",
                json!({"title": "Club", "type": "group", "owner": chat.user}),
            )
            .await;
        let gid = group["id"].as_i64().unwrap();
        app.sandbox_post(
            &format!("/sandbox/groups/{gid}/bots"),
            json!({"bot": chat.username}),
        )
        .await;
        let migrated = app
            .sandbox_post(&format!("/sandbox/groups/{gid}/migrate"), json!({}))
            .await;
        let new_id = migrated["migrate_to_chat_id"].as_i64().unwrap();
        // In order within each chat; across chats (the old group's last message and the
        // new supergroup's first) in either, as webhooks arrive side by side.
        let list = settled(&app, &chat, 5).await;
        let in_chat = |id: i64| -> Vec<String> {
            list.iter()
                .filter(|u| u["chat_id"] == json!(id))
                .map(|u| outcome(u).to_string())
                .collect()
        };
        assert_eq!(
            in_chat(chat.user),
            [
                "replied to /start".to_string(),
                format!("chat {} is now blocked", chat.user),
            ],
            "{engine} {mode:?}"
        );
        assert_eq!(
            in_chat(gid),
            [
                format!("chat {gid} is now active"),
                format!("group {gid} migrated to {new_id}"),
            ],
            "{engine} {mode:?}"
        );
        assert_eq!(
            in_chat(new_id),
            ["the new supergroup's first message"],
            "{engine} {mode:?}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn commands_over_the_limit_get_one_warning_then_are_dropped() {
    let app = TestApp::spawn("sqlite").await;
    let chat = setup(&app, "busy_bot", Mode::Webhook).await;
    for _ in 0..12 {
        say(&app, &chat, "/help").await;
    }
    let list = settled(&app, &chat, 12).await;
    let statuses: Vec<&str> = list.iter().map(|u| u["status"].as_str().unwrap()).collect();
    assert_eq!(statuses[..10], ["handled"; 10]);
    assert_eq!(statuses[10..], ["rate_limited", "rate_limited"]);
    assert!(list[11]["outcome"].as_str().unwrap().ends_with("dropped"));
    // Replies go through the outbox at the chat's pace (one a second): wait for them all
    // (every update is settled, so these are all the replies there will be).
    let replies: Vec<String> = until("ten answers and one request to slow down", || async {
        let out: Vec<String> = transcript(&app, &chat)
            .await
            .iter()
            .filter(|m| m["direction"] == "out")
            .map(|m| m["text"].as_str().unwrap().to_string())
            .collect();
        (out.len() >= 11).then_some(out)
    })
    .await;
    assert_eq!(
        replies.len(),
        11,
        "ten answers and one request to slow down"
    );
    assert!(replies[10].contains("a little fast"));
    app.stop().await;
}

/// The webhook secret the sandbox was given for this bot.
async fn webhook_secret(app: &TestApp, chat: &Chat) -> String {
    let state = app.sandbox_bot_state(chat.telegram_id).await;
    state["webhook"]["secret_token"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn webhook_intake_checks_the_caller_and_stores_each_update_once() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let chat = setup(&app, "intake_bot", Mode::Webhook).await;
        let secret = webhook_secret(&app, &chat).await;
        let path = format!("/telegram/webhook/{}", chat.bot_id);
        let update = json!({"update_id": 777, "message": {"message_id": 1, "date": 0, "text": "hi",
            "chat": {"id": chat.user, "type": "private"}, "from": {"id": chat.user, "is_bot": false, "first_name": "A"},
            "a_field_from_the_future": {"x": 1}}});
        let post = |secret: Option<String>, body: Vec<u8>, path: String| {
            let app = &app;
            async move {
                let mut req = app
                    .http
                    .post(app.url(&path))
                    .header("content-type", "application/json")
                    .body(body);
                if let Some(s) = secret {
                    req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
                }
                app.send(req).await
            }
        };
        let body = serde_json::to_vec(&update).unwrap();
        assert_eq!(post(None, body.clone(), path.clone()).await.status, 401);
        assert_eq!(
            post(Some("wrong".into()), body.clone(), path.clone())
                .await
                .status,
            401
        );
        let r = post(
            Some(secret.clone()),
            body.clone(),
            "/telegram/webhook/bot_nope".into(),
        )
        .await;
        assert_eq!(r.status, 404);
        assert_eq!(r.headers["content-type"], "application/problem+json");
        let r = post(Some(secret.clone()), b"{not json".to_vec(), path.clone()).await;
        assert_eq!(r.status, 400);
        let r = post(
            Some(secret.clone()),
            b"{\"no_update_id\": true}".to_vec(),
            path.clone(),
        )
        .await;
        assert_eq!(r.status, 400);
        assert!(
            updates(&app, &format!("bot_id={}", chat.bot_id))
                .await
                .is_empty(),
            "nothing stored"
        );

        // The same update a hundred times: acknowledged each time, processed once.
        for _ in 0..100 {
            assert_eq!(
                post(Some(secret.clone()), body.clone(), path.clone())
                    .await
                    .status,
                200
            );
        }
        let list = settled(&app, &chat, 1).await;
        assert_eq!(list[0]["update_id"], json!(777));
        assert_eq!(list[0]["outcome"], "forwarded as message.received");
        assert_eq!(
            list[0]["update"]["message"]["a_field_from_the_future"],
            json!({"x": 1})
        );

        // An unknown update type is stored and acknowledged, never rejected.
        let odd =
            serde_json::to_vec(&json!({"update_id": 778, "business_connection": {"id": "b"}}))
                .unwrap();
        assert_eq!(
            post(Some(secret.clone()), odd, path.clone()).await.status,
            200
        );
        let list = settled(&app, &chat, 2).await;
        assert_eq!(list[1]["status"], "handled");
        assert_eq!(
            list[1]["outcome"],
            "forwarded business_connection as update.received"
        );

        // A disabled bot's webhook answers 404.
        let a = app
            .call(
                Method::PATCH,
                &format!("/v1/bots/{}", chat.bot_id),
                Some(&app.admin_key),
                Some(json!({"enabled": false})),
            )
            .await;
        assert_eq!(a.status.as_u16(), 200, "{}", a.text);
        let again = serde_json::to_vec(&json!({"update_id": 779, "message": {"message_id": 2, "date": 0, "chat": {"id": 1, "type": "private"}}})).unwrap();
        assert_eq!(post(Some(secret), again, path).await.status, 404);
        app.stop().await;
    }
}

#[tokio::test]
async fn the_update_log_is_tenant_scoped_and_paginated() {
    let app = TestApp::spawn("sqlite").await;
    let chat = setup(&app, "log_bot", Mode::Webhook).await;
    for i in 0..5 {
        say(&app, &chat, &format!("message {i}")).await;
    }
    settled(&app, &chat, 5).await;
    let first = app
        .get(
            &format!("/v1/updates?bot_id={}&limit=2", chat.bot_id),
            &app.admin_key,
        )
        .await;
    assert_eq!(first.body["data"].as_array().unwrap().len(), 2);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_string();
    let mut seen: Vec<i64> = first.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["update_id"].as_i64().unwrap())
        .collect();
    let mut next = Some(cursor);
    while let Some(c) = next {
        let page = app
            .get(
                &format!("/v1/updates?bot_id={}&limit=2&after={c}", chat.bot_id),
                &app.admin_key,
            )
            .await;
        seen.extend(
            page.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["update_id"].as_i64().unwrap()),
        );
        next = page.body["next_cursor"].as_str().map(str::to_string);
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first, no repeats");
    assert_eq!(seen.len(), 5);

    let other = app.tenant("Other").await;
    let (_, other_key) = app.tenant_key(&other).await;
    let theirs = app.get("/v1/updates", &other_key).await;
    assert_eq!(
        theirs.body["data"],
        json!([]),
        "another tenant sees nothing"
    );
    app.get(&format!("/v1/updates?bot_id={}", chat.bot_id), &other_key)
        .await
        .assert_problem(404, "not-found");
    app.get("/v1/updates?after=garbage", &app.admin_key)
        .await
        .assert_problem(400, "validation-failed");
    app.stop().await;
}

#[tokio::test]
async fn commands_work_in_groups() {
    let app = TestApp::spawn("sqlite").await;
    let chat = setup(&app, "club_bot", Mode::Webhook).await;
    let member = sandbox_user(&app, "Bob").await;
    let group = app
        .sandbox_post(
            "/sandbox/groups",
            json!({"title": "Club", "type": "supergroup", "owner": chat.user, "members": [member]}),
        )
        .await;
    let gid = group["id"].as_i64().unwrap();
    app.sandbox_post(
        &format!("/sandbox/groups/{gid}/bots"),
        json!({"bot": chat.username}),
    )
    .await;
    app.sandbox_post(
        &format!("/sandbox/users/{member}/messages"),
        json!({"chat_id": gid, "text": "/help@club_bot"}),
    )
    .await;
    let reply = until("the reply in the group", || async {
        outgoing(app.transcript(gid, None).await).into_iter().next()
    })
    .await;
    assert!(
        reply["text"]
            .as_str()
            .unwrap()
            .starts_with("Here is what I can do")
    );
    assert_eq!(reply["chat"]["id"], json!(gid));
    app.stop().await;
}

#[tokio::test]
async fn the_app_hears_forwarded_commands_and_messages_as_events() {
    for (engine, mode) in engines_and_modes() {
        let app = TestApp::spawn(engine).await;
        let chat = setup(&app, "events_bot", mode).await;
        let a = app
            .post(
                &format!("/v1/bots/{}/commands", chat.bot_id),
                &app.admin_key,
                json!({"command": "order", "description": "Track an order", "action": {"type": "forward"}}),
            )
            .await;
        assert_eq!(a.status.as_u16(), 201, "{}", a.text);
        let a = app
            .post(
                &format!("/v1/bots/{}/commands", chat.bot_id),
                &app.admin_key,
                json!({"command": "hours", "description": "Opening hours", "action": {"type": "reply", "text": "9 to 5"}}),
            )
            .await;
        assert_eq!(a.status.as_u16(), 201, "{}", a.text);
        say(&app, &chat, "/hours").await;
        assert_eq!(reply_after(&app, &chat, 1).await["text"], "9 to 5");
        say(&app, &chat, "/order 42").await;
        say(&app, &chat, "where is my parcel?").await;
        let list = settled(&app, &chat, 3).await;
        assert_eq!(outcome(&list[0]), "replied to custom /hours");
        assert_eq!(list[1]["outcome"], "forwarded /order as command.received");

        let events = until("the events", || async {
            let a = app
                .get(
                    &format!("/v1/events?tenant_id={}&limit=50", chat.tenant),
                    &app.admin_key,
                )
                .await;
            let data = a.body["data"].as_array()?.clone();
            (data.len() >= 2).then_some(data)
        })
        .await;
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["command.received", "message.received"]);
        assert_eq!(events[0]["data"]["command"], "order");
        assert_eq!(events[0]["data"]["args"], "42");
        assert_eq!(events[0]["data"]["from"]["id"], json!(chat.user));
        assert_eq!(events[0]["data"]["bot_id"], json!(chat.bot_id));
        assert_eq!(events[1]["data"]["message"]["text"], "where is my parcel?");
        app.stop().await;
    }
}

/// The tenant's messages to the test chat, as `GET /v1/messages?chat_id=` lists them.
async fn chat_messages(app: &TestApp, chat: &Chat) -> Vec<Value> {
    let a = app
        .get(
            &format!(
                "/v1/messages?tenant_id={}&chat_id={}",
                chat.tenant, chat.user
            ),
            &app.admin_key,
        )
        .await;
    assert_eq!(a.status.as_u16(), 200, "{}", a.text);
    a.body["data"].as_array().unwrap().clone()
}

/// Puts a processed update back to `pending`, as if its first run had left no outcome: an
/// update runs twice when its lease ran out while a slow first run was still going
/// (PostgreSQL), and after a restart its stored effects must not repeat.
async fn put_back(app: &TestApp, bot_id: &str, update_id: i64) {
    let changed = exec_sql(
        app.database_url(),
        "UPDATE updates SET status = 'pending', outcome = NULL, processed_at = NULL, \
         claimed_until = NULL WHERE bot_id = $1 AND update_id = CAST($2 AS BIGINT)",
        &[bot_id, &update_id.to_string()],
    )
    .await;
    assert_eq!(changed, 1);
}

#[tokio::test]
async fn a_reprocessed_update_does_not_repeat_its_reply() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let chat = setup(&app, "again_bot", Mode::Webhook).await;
        say(&app, &chat, "/help").await;
        let reply = reply_after(&app, &chat, 1).await;
        let first = settled(&app, &chat, 1).await.remove(0);
        assert_eq!(first["status"], "handled");
        assert_eq!(outcome(&first), "replied to /help");

        // Processed again (a second run after a lease ran out, here after a restart, which
        // takes up every pending update): the same reply origin is offered again, which
        // stores nothing new and names the same message.
        let update_id = first["update_id"].as_i64().unwrap();
        put_back(&app, &chat.bot_id, update_id).await;
        let app = app.restarted().await;
        let again = until("the update to be processed again", || async {
            let list = updates(&app, &format!("bot_id={}", chat.bot_id)).await;
            list.into_iter()
                .next()
                .filter(|u| u["status"] == "handled" && u["outcome"].is_string())
        })
        .await;
        assert_eq!(again["update_id"], json!(update_id));
        assert_eq!(again["outcome"], first["outcome"], "{engine}");

        // One message, delivered once: nothing is left to send, and the user saw one reply.
        let messages = until("the reply to be final", || async {
            let m = chat_messages(&app, &chat).await;
            m.iter().all(|m| m["status"] == "sent").then_some(m)
        })
        .await;
        assert_eq!(messages.len(), 1, "{engine}: {messages:?}");
        let out: Vec<Value> = transcript(&app, &chat)
            .await
            .into_iter()
            .filter(|m| m["direction"] == "out")
            .collect();
        assert_eq!(out.len(), 1, "{engine}: {out:?}");
        assert_eq!(out[0]["message_id"], reply["message_id"]);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_reply_is_recorded_as_a_message() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let chat = setup(&app, "record_bot", Mode::Polling).await;
        let a = app
            .post(
                &format!("/v1/bots/{}/commands", chat.bot_id),
                &app.admin_key,
                // User-provided text is sent as plain text: no markup is interpreted.
                json!({"command": "hours", "description": "Opening hours",
                       "action": {"type": "reply", "text": "<b>9 to 5</b> & *weekends* off"}}),
            )
            .await;
        assert_eq!(a.status.as_u16(), 201, "{}", a.text);
        say(&app, &chat, "/hours").await;
        let reply = reply_after(&app, &chat, 1).await;
        assert_eq!(reply["text"], "<b>9 to 5</b> & *weekends* off");
        let update = settled(&app, &chat, 1).await.remove(0);
        let msg_id = update["outcome"]
            .as_str()
            .unwrap()
            .strip_prefix("replied to custom /hours (reply ")
            .and_then(|s| s.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{update}"))
            .to_string();

        let messages = until("the reply to be recorded as sent", || async {
            let m = chat_messages(&app, &chat).await;
            (m.len() == 1 && m[0]["status"] == "sent").then_some(m)
        })
        .await;
        let m = &messages[0];
        assert_eq!(m["id"], json!(msg_id), "{engine}");
        assert_eq!(m["bot_id"], json!(chat.bot_id));
        assert_eq!(m["chat_id"], json!(chat.user));
        assert_eq!(m["telegram_message_ids"], json!([reply["message_id"]]));
        let one = app
            .get(
                &format!("/v1/messages/{msg_id}?tenant_id={}", chat.tenant),
                &app.admin_key,
            )
            .await;
        assert_eq!(one.status.as_u16(), 200, "{}", one.text);
        assert_eq!(one.body["status"], "sent");
        app.stop().await;
    }
}

/// The tenant's events, oldest first, once there are at least `count`.
async fn events_of(app: &TestApp, chat: &Chat, count: usize) -> Vec<Value> {
    until("the events", || async {
        let a = app
            .get(
                &format!("/v1/events?tenant_id={}&limit=200", chat.tenant),
                &app.admin_key,
            )
            .await;
        let data = a.body["data"].as_array()?.clone();
        (data.len() >= count).then_some(data)
    })
    .await
}

/// Telegram's update types as the Bot API lists them.
const UPDATE_TYPES: [&str; 23] = [
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction",
    "message_reaction_count",
    "inline_query",
    "chosen_inline_result",
    "callback_query",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
];

/// A small but well-formed payload of each type, from `user` in their chat with the bot.
fn payload(kind: &str, user: i64, bot: i64) -> Value {
    let from = json!({"id": user, "is_bot": false, "first_name": "Alice"});
    let chat = json!({"id": user, "type": "private", "first_name": "Alice"});
    let channel = json!({"id": -1001, "type": "channel", "title": "News"});
    let message = json!({"message_id": 900, "date": 1, "chat": chat, "from": from, "text": "hi"});
    let member = |status: &str| json!({"status": status, "user": from});
    match kind {
        "message" | "edited_message" | "business_message" | "edited_business_message" => message,
        "channel_post" | "edited_channel_post" => {
            json!({"message_id": 901, "date": 1, "chat": channel, "text": "news"})
        }
        "business_connection" => json!({"id": "bc1", "user": from, "user_chat_id": user,
            "date": 1, "is_enabled": true}),
        "deleted_business_messages" => {
            json!({"business_connection_id": "bc1", "chat": chat, "message_ids": [1]})
        }
        "message_reaction" => json!({"chat": chat, "message_id": 1, "user": from, "date": 1,
            "old_reaction": [], "new_reaction": [{"type": "emoji", "emoji": "👍"}]}),
        "message_reaction_count" => json!({"chat": channel, "message_id": 1, "date": 1,
            "reactions": [{"type": {"type": "emoji", "emoji": "👍"}, "total_count": 2}]}),
        "inline_query" => json!({"id": "iq1", "from": from, "query": "shoes", "offset": ""}),
        "chosen_inline_result" => json!({"result_id": "r1", "from": from, "query": "shoes"}),
        "callback_query" => json!({"id": "cq-raw", "from": from, "chat_instance": "ci",
            "message": message, "data": "app:1"}),
        "shipping_query" => json!({"id": "sq1", "from": from, "invoice_payload": "p",
            "shipping_address": {"country_code": "FR", "state": "", "city": "Paris",
                "street_line1": "1 rue", "street_line2": "", "post_code": "75001"}}),
        "pre_checkout_query" => json!({"id": "pc1", "from": from, "currency": "XTR",
            "total_amount": 5, "invoice_payload": "order-42"}),
        "purchased_paid_media" => json!({"from": from, "paid_media_payload": "m1"}),
        "poll" => json!({"id": "p1", "question": "Q?", "options": [], "total_voter_count": 0,
            "is_closed": false, "is_anonymous": true, "type": "regular",
            "allows_multiple_answers": false}),
        "poll_answer" => json!({"poll_id": "p1", "user": from, "option_ids": [0]}),
        "my_chat_member" | "chat_member" => json!({"chat": chat, "from": from, "date": 1,
            "old_chat_member": member("member"), "new_chat_member": member("member")}),
        "chat_join_request" => json!({"chat": {"id": -1002, "type": "supergroup", "title": "Club"},
            "from": from, "user_chat_id": user, "date": 1}),
        "chat_boost" => json!({"chat": channel, "boost": {"boost_id": "b1", "add_date": 1,
            "expiration_date": 2, "source": {"source": "premium", "user": from}}}),
        "removed_chat_boost" => json!({"chat": channel, "boost_id": "b1", "remove_date": 1,
            "source": {"source": "premium", "user": from}}),
        other => panic!("no payload for {other} (bot {bot})"),
    }
}

#[tokio::test]
async fn every_update_type_reaches_the_app_once() {
    for (engine, mode) in engines_and_modes() {
        let app = TestApp::spawn(engine).await;
        let chat = setup(&app, "all_bot", mode).await;
        // The bot asks for every type, the opt-in ones too (a polling bot with its first
        // getUpdates).
        until("the bot to ask for every update type", || async {
            let state = app.sandbox_bot_state(chat.telegram_id).await;
            let asked: Vec<String> =
                serde_json::from_value(state["allowed_updates"].clone()).ok()?;
            (asked.len() == UPDATE_TYPES.len()).then_some(())
        })
        .await;
        for kind in UPDATE_TYPES {
            let queued = app
                .sandbox_post(
                    &format!("/sandbox/bots/{}/updates", chat.username),
                    json!({kind: payload(kind, chat.user, chat.telegram_id)}),
                )
                .await;
            assert_eq!(queued["queued"], true, "{engine} {mode:?} {kind}: {queued}");
        }
        let list = settled(&app, &chat, UPDATE_TYPES.len()).await;
        for u in &list {
            assert_ne!(u["status"], "failed", "{engine} {mode:?}: {u}");
            assert_ne!(u["status"], "ignored", "{engine} {mode:?}: {u}");
        }
        let events = events_of(&app, &chat, UPDATE_TYPES.len()).await;
        assert_eq!(
            events.len(),
            UPDATE_TYPES.len(),
            "{engine} {mode:?}: {events:?}"
        );
        for kind in UPDATE_TYPES {
            let expected = match kind {
                "message" => "message.received",
                "callback_query" => "callback.received",
                "my_chat_member" => "chat.member_updated",
                _ => "update.received",
            };
            let of_kind: Vec<&Value> = events
                .iter()
                .filter(|e| match expected {
                    "update.received" => e["type"] == expected && e["data"]["type"] == kind,
                    _ => e["type"] == expected,
                })
                .collect();
            assert_eq!(of_kind.len(), 1, "{engine} {mode:?} {kind}: {events:?}");
            if expected == "update.received" {
                assert_eq!(
                    of_kind[0]["data"]["update"][kind],
                    payload(kind, chat.user, chat.telegram_id)
                );
                assert_eq!(of_kind[0]["data"]["bot_id"], json!(chat.bot_id));
            }
        }
        // The raw callback query's answer came too late (Telegram does not know its id): the
        // press still reached the app, and the outcome says so.
        let press = list
            .iter()
            .find(|u| u["type"] == "callback_query")
            .expect("the callback query");
        assert_eq!(press["status"], "handled", "{press}");
        assert!(
            outcome(press).contains("answerCallbackQuery not accepted"),
            "{press}"
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn a_bots_update_types_can_be_narrowed_and_unknown_ones_are_refused() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let chat = setup(&app, "narrow_bot", Mode::Webhook).await;
        let path = format!("/v1/bots/{}", chat.bot_id);
        let bad = app
            .patch(
                &path,
                &app.admin_key,
                json!({"allowed_updates": ["message", "mesage", "polls"]}),
            )
            .await;
        bad.assert_problem(422, "validation-failed");
        assert!(bad.text.contains("mesage, polls"), "{}", bad.text);
        assert!(app.get(&path, &app.admin_key).await.body["allowed_updates"].is_null());

        let a = app
            .patch(
                &path,
                &app.admin_key,
                json!({"allowed_updates": ["message", "chat_join_request"]}),
            )
            .await;
        assert_eq!(a.status.as_u16(), 200, "{}", a.text);
        assert_eq!(
            a.body["allowed_updates"],
            json!(["chat_join_request", "message"])
        );
        assert_eq!(a.body["enabled"], true);
        let state = app.sandbox_bot_state(chat.telegram_id).await;
        assert_eq!(
            state["allowed_updates"],
            json!(["chat_join_request", "message"])
        );
        // Telegram (the sandbox) now sends no polls.
        let queued = app
            .sandbox_post(
                &format!("/sandbox/bots/{}/updates", chat.username),
                json!({"poll": payload("poll", chat.user, chat.telegram_id)}),
            )
            .await;
        assert_eq!(queued["queued"], false, "{queued}");

        // Back to every type.
        let a = app
            .patch(&path, &app.admin_key, json!({"allowed_updates": null}))
            .await;
        assert_eq!(a.status.as_u16(), 200, "{}", a.text);
        assert!(a.body["allowed_updates"].is_null());
        let state = app.sandbox_bot_state(chat.telegram_id).await;
        assert_eq!(
            state["allowed_updates"].as_array().unwrap().len(),
            UPDATE_TYPES.len()
        );
        let empty = app.patch(&path, &app.admin_key, json!({})).await;
        empty.assert_problem(422, "validation-failed");
        app.stop().await;
    }
}

#[tokio::test]
async fn start_links_referrals_and_replies_reach_the_app() {
    for (engine, mode) in engines_and_modes() {
        let app = TestApp::spawn(engine).await;
        let chat = setup(&app, "hello_bot", mode).await;
        // A plain /start: the welcome, and the app learns of the new user.
        say(&app, &chat, "/start").await;
        let welcome = reply_after(&app, &chat, 1).await;
        assert!(
            welcome["text"].as_str().unwrap().starts_with("Welcome"),
            "{welcome}"
        );
        let events = events_of(&app, &chat, 2).await;
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            ["command.received", "chat.started"],
            "{engine} {mode:?}"
        );
        assert_eq!(events[0]["data"]["command"], "start");
        assert_eq!(events[0]["data"]["built_in"], true);
        assert_eq!(events[1]["data"]["payload"], Value::Null);
        assert_eq!(events[1]["data"]["from"]["id"], json!(chat.user));
        assert_eq!(events[1]["data"]["link_ids"], json!([]));

        // A referral payload: welcomed, and the app gets it.
        say(&app, &chat, "/start ref_42").await;
        let reply = reply_after(&app, &chat, 3).await;
        assert_eq!(reply["text"], welcome["text"], "{engine} {mode:?}");
        let events = events_of(&app, &chat, 4).await;
        assert_eq!(events[3]["type"], "chat.started");
        assert_eq!(events[3]["data"]["payload"], "ref_42");
        assert_eq!(events[3]["data"]["returning"], true);

        // Linked: events name the link and the app user.
        let t = app
            .post(
                "/v1/link-tokens",
                &app.admin_key,
                json!({"bot_id": chat.bot_id, "external_id": "user-7"}),
            )
            .await;
        assert_eq!(t.status.as_u16(), 201, "{}", t.text);
        say(
            &app,
            &chat,
            &format!("/start {}", t.body["token"].as_str().unwrap()),
        )
        .await;
        reply_after(&app, &chat, 5).await;
        // A notification, and the user's reply to it.
        let sent = app
            .post(
                "/v1/messages",
                &app.tenant_key(&chat.tenant).await.1,
                json!({"bot_id": chat.bot_id, "to": {"external_id": "user-7"}, "text": "Visitor: hello?"}),
            )
            .await;
        assert_eq!(sent.status.as_u16(), 202, "{}", sent.text);
        let message_id = sent.body["messages"][0]["id"].as_str().unwrap().to_string();
        let notification = reply_after(&app, &chat, 6).await;
        app.sandbox_post(
            &format!("/sandbox/users/{}/messages", chat.user),
            json!({"bot": chat.username, "text": "On my way", "reply_to_message_id": notification["message_id"]}),
        )
        .await;
        let received = until("the reply's event", || async {
            let a = app
                .get(
                    &format!(
                        "/v1/events?tenant_id={}&limit=200&type=message.received",
                        chat.tenant
                    ),
                    &app.admin_key,
                )
                .await;
            a.body["data"].as_array()?.first().cloned()
        })
        .await;
        let link = received["data"]["link_ids"][0].as_str().unwrap();
        assert!(link.starts_with("link_"), "{received}");
        assert_eq!(received["data"]["external_ids"], json!(["user-7"]));
        assert_eq!(
            received["data"]["reply_to"]["message_id"],
            json!(message_id),
            "{received}"
        );
        assert_eq!(
            received["data"]["reply_to"]["telegram_message_id"],
            notification["message_id"]
        );
        let list = settled(&app, &chat, 4).await;
        assert!(list.iter().all(|u| u["status"] == "handled"), "{list:?}");
        assert!(
            !outcome(&list[1]).contains("does not know"),
            "{:?}",
            list[1]
        );
        app.stop().await;
    }
}

/// A sandbox user presses a button of a message the bot sent.
async fn press_in(
    sandbox: &relaygram_sandbox::Sandbox,
    http: &reqwest::Client,
    chat: &Chat,
    message: &Value,
    data: &str,
) {
    let r = http
        .post(format!(
            "{}/sandbox/users/{}/callback",
            sandbox.url(),
            chat.user
        ))
        .json(&json!({"bot": chat.username, "message_id": message["message_id"], "data": data}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn presses_made_while_relaygram_is_down_are_applied_once() {
    for (engine, mode) in engines_and_modes() {
        // A sandbox 30 times faster: answers later than half a second are refused.
        let app = TestApp::spawn_with(
            engine,
            crate::helpers::Options {
                sandbox_time_scale: Some(30.0),
                ..Default::default()
            },
        )
        .await;
        let chat = setup(&app, "outage_bot", mode).await;
        let a = app
            .post(
                "/v1/categories",
                &app.admin_key,
                json!({"tenant_id": chat.tenant, "key": "alerts", "name": "Alerts"}),
            )
            .await;
        assert_eq!(a.status.as_u16(), 201, "{}", a.text);
        let t = app
            .post(
                "/v1/link-tokens",
                &app.admin_key,
                json!({"bot_id": chat.bot_id, "external_id": "user-7"}),
            )
            .await;
        say(
            &app,
            &chat,
            &format!("/start {}", t.body["token"].as_str().unwrap()),
        )
        .await;
        reply_after(&app, &chat, 1).await;
        let toggled = |events: &[Value]| {
            events
                .iter()
                .filter(|e| e["type"] == "link.updated" && e["data"]["reason"] == "settings")
                .map(|e| e["data"]["link"]["categories"][0]["enabled"].clone())
                .collect::<Vec<_>>()
        };
        // A settings press processed twice (as after a crash) is applied once.
        say(&app, &chat, "/settings").await;
        let first = reply_after(&app, &chat, 3).await;
        assert_eq!(
            first["reply_markup"]["inline_keyboard"][0][0]["text"],
            "✅ Alerts: on"
        );
        let off = first["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
            .as_str()
            .unwrap()
            .to_string();
        press_in(&app.sandbox, &app.http, &chat, &first, &off).await;
        let list = settled(&app, &chat, 3).await;
        put_back(&app, &chat.bot_id, list[2]["update_id"].as_i64().unwrap()).await;
        let app = app.restarted().await;
        settled(&app, &chat, 3).await;
        assert_eq!(
            toggled(&events_of(&app, &chat, 1).await),
            [json!(false)],
            "{engine} {mode:?}"
        );

        say(&app, &chat, "/settings").await;
        let menu = until("the new settings message", || async {
            outgoing(transcript(&app, &chat).await)
                .into_iter()
                .filter(|m| m["reply_markup"]["inline_keyboard"][0][0]["text"] == "⬜ Alerts: off")
                .nth(1)
        })
        .await;
        let toggle = menu["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
            .as_str()
            .unwrap()
            .to_string();
        let seen = transcript(&app, &chat).await.len();
        let sent = app
            .post(
                "/v1/messages",
                &app.tenant_key(&chat.tenant).await.1,
                json!({"bot_id": chat.bot_id, "to": {"chat_id": chat.user}, "text": "Order #1",
                       "buttons": [[{"text": "Ship it", "callback_data": "ship:1"}]]}),
            )
            .await;
        assert_eq!(sent.status.as_u16(), 202, "{}", sent.text);
        let order = reply_after(&app, &chat, seen).await;
        let ship = order["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
            .as_str()
            .unwrap()
            .to_string();
        say(&app, &chat, "/stop").await;
        let ask = reply_after(&app, &chat, seen + 2).await;
        let before = settled(&app, &chat, 5).await.len();

        let chat_ref = &chat;
        let http = app.http.clone();
        let app = app
            .restarted_after(async |sandbox| {
                press_in(sandbox, &http, chat_ref, &menu, &toggle).await;
                press_in(sandbox, &http, chat_ref, &order, &ship).await;
                press_in(sandbox, &http, chat_ref, &ask, "rg:stop:yes").await;
                // Past the (scaled) 15 s Telegram gives an answer.
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            })
            .await;
        let list = settled(&app, &chat, before + 3).await;
        let presses = &list[before..];
        for p in presses {
            assert_eq!(p["status"], "handled", "{engine} {mode:?}: {p}");
            assert!(
                outcome(p).contains("answerCallbackQuery not accepted"),
                "{p}"
            );
        }
        let events = events_of(&app, &chat, 1).await;
        let count = |t: &str| events.iter().filter(|e| e["type"] == t).count();
        assert_eq!(count("callback.received"), 1, "{events:?}");
        assert_eq!(count("chat.stopped"), 1, "{events:?}");
        let cb = events
            .iter()
            .find(|e| e["type"] == "callback.received")
            .unwrap();
        assert_eq!(cb["data"]["data"], "ship:1");
        assert_eq!(cb["data"]["external_ids"], json!(["user-7"]));
        assert_eq!(toggled(&events), [json!(false), json!(true)], "{events:?}");
        let stopped = events.iter().find(|e| e["type"] == "chat.stopped").unwrap();
        assert_eq!(stopped["data"]["external_ids"], json!(["user-7"]));
        assert_eq!(count("link.removed"), 1, "{events:?}");
        app.stop().await;
    }
}

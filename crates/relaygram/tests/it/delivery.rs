//! The outbox against the sandbox: sending and recording, buttons routed back, throttle and
//! idempotency keys, send_at, 429s, retries to dead and re-drive, blocked users, group
//! migration, the ambiguous lost response, broadcasts, bad input and tenant isolation.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, engines, outgoing, until};

pub(crate) struct Setup {
    pub(crate) tenant: String,
    pub(crate) key: String,
    pub(crate) bot_id: String,
    pub(crate) username: String,
}

pub(crate) async fn setup(app: &TestApp, name: &str) -> Setup {
    let tenant = app.tenant(name).await;
    let (_, key) = app.tenant_key(&tenant).await;
    let username = format!("{name}_bot");
    let (_, token) = app.sandbox_bot(&username).await;
    let added = app.post("/v1/bots", &key, json!({"token": token})).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    Setup {
        tenant,
        key,
        bot_id: added.body["id"].as_str().unwrap().to_string(),
        username,
    }
}

/// A sandbox user who has written to the bot (Telegram lets bots write only to those).
pub(crate) async fn user(app: &TestApp, name: &str, bot: &str) -> i64 {
    let id = app
        .sandbox_post("/sandbox/users", json!({"first_name": name}))
        .await["id"]
        .as_i64()
        .unwrap();
    app.sandbox_post(
        &format!("/sandbox/users/{id}/messages"),
        json!({"bot": bot, "text": "hello"}),
    )
    .await;
    id
}

async fn transcript(app: &TestApp, chat: i64, bot: &str) -> Vec<Value> {
    outgoing(app.transcript(chat, Some(bot)).await)
}

pub(crate) async fn send(app: &TestApp, key: &str, body: Value) -> Value {
    let a = app.post("/v1/messages", key, body).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    a.body
}

/// Waits until message `id` is in `status`; returns it.
pub(crate) async fn settled(app: &TestApp, key: &str, id: &str, status: &str) -> Value {
    until(&format!("message {id} to be {status}"), || async {
        let a = app.get(&format!("/v1/messages/{id}"), key).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        let fin = ["sent", "failed", "dead", "unknown", "throttled"];
        if a.body["status"] != status && fin.contains(&a.body["status"].as_str().unwrap_or("")) {
            panic!(
                "message {id} ended {} instead of {status}: {}",
                a.body["status"], a.text
            );
        }
        (a.body["status"] == status).then_some(a.body)
    })
    .await
}

#[tokio::test]
async fn a_message_is_stored_sent_and_recorded_and_its_buttons_come_back() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "notify").await;
        let alice = user(&app, "Alice", &s.username).await;
        let long = "x".repeat(200);
        let accepted = send(
            &app,
            &s.key,
            json!({"to": {"chat_id": alice}, "text": "Order <b>#42</b> shipped", "parse_mode": "HTML",
                "silent": true,
                "buttons": [[{"text": "Track", "url": "https://example.com/42"},
                             {"text": "Ack", "callback_data": long}]]}),
        )
        .await;
        assert_eq!(accepted["status"], "queued");
        assert_eq!(accepted["count"], 1);
        let id = accepted["messages"][0]["id"].as_str().unwrap().to_string();
        assert_eq!(accepted["messages"][0]["bot_id"], s.bot_id.as_str());
        let sent = settled(&app, &s.key, &id, "sent").await;
        assert_eq!(sent["attempts"], 1);
        let ids = sent["telegram_message_ids"].as_array().unwrap().clone();
        assert_eq!(ids.len(), 1);
        let out = transcript(&app, alice, &s.username).await;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["message_id"], ids[0]);
        assert_eq!(out[0]["silent"], true);
        let token = out[0]["reply_markup"]["inline_keyboard"][0][1]["callback_data"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(token.starts_with("rg:cb:") && token.len() <= 64, "{token}");

        // Pressing the button brings the full data back to the app.
        app.sandbox_post(
            &format!("/sandbox/users/{alice}/callback"),
            json!({"bot": s.username, "message_id": ids[0], "data": token}),
        )
        .await;
        until("callback.received with the stored data", || async {
            let events = app.get("/v1/events?limit=50", &s.key).await;
            events.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["type"] == "callback.received")
                .filter(|e| e["data"]["data"] == long.as_str())
                .cloned()
        })
        .await;

        // Lists filter by status, bot and chat; another tenant sees nothing.
        let list = app
            .get(
                &format!(
                    "/v1/messages?status=sent&bot_id={}&chat_id={alice}",
                    s.bot_id
                ),
                &s.key,
            )
            .await;
        assert_eq!(
            list.body["data"].as_array().unwrap().len(),
            1,
            "{}",
            list.text
        );
        let other = setup(&app, "other").await;
        app.get(&format!("/v1/messages/{id}"), &other.key)
            .await
            .assert_problem(404, "not-found");
        let theirs = app.get("/v1/messages", &other.key).await;
        assert!(theirs.body["data"].as_array().unwrap().is_empty());
        let stats = app.get("/v1/stats", &s.key).await;
        assert_eq!(stats.body["bots"][0]["sent"], 1, "{}", stats.text);
        app.stop().await;
    }
}

#[tokio::test]
async fn throttle_and_idempotency_keys_and_bad_input() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "keys").await;
        let alice = user(&app, "Alice", &s.username).await;
        let body = json!({"to": {"chat_id": alice}, "text": "disk full", "throttle_key": "disk", "throttle_seconds": 600});
        let first = send(&app, &s.key, body.clone()).await;
        assert_eq!(first["status"], "queued");
        let second = send(&app, &s.key, body.clone()).await;
        assert_eq!(second["status"], "throttled");
        settled(
            &app,
            &s.key,
            second["messages"][0]["id"].as_str().unwrap(),
            "throttled",
        )
        .await;

        let call = |body: Value, key: &'static str| {
            app.send(
                app.http
                    .post(app.url("/v1/messages"))
                    .bearer_auth(&s.key)
                    .header("Idempotency-Key", key)
                    .json(&body),
            )
        };
        let body = json!({"to": {"chat_id": alice}, "text": "once"});
        let a: Value = call(body.clone(), "k1").await.body;
        let b = call(body.clone(), "k1").await;
        assert_eq!(b.status, StatusCode::ACCEPTED);
        let b: Value = b.body;
        assert_eq!(a, b, "the same key and body answer the same");
        let c = call(json!({"to": {"chat_id": alice}, "text": "twice"}), "k1").await;
        assert_eq!(c.status, StatusCode::CONFLICT);

        // A crash after the messages were stored but before the answer was: the replay
        // rebuilds the answer from the stored messages and stores nothing new.
        // It reports the skipped targets too: they are kept with the request.
        let lost = json!({"to": [{"chat_id": alice}, {"link_id": "link_missing"}],
                          "text": "answer lost"});
        let first: Value = call(lost.clone(), "k2").await.body;
        assert_eq!(first["skipped"][0]["reason"], "no_such_link", "{first}");
        let forgotten = crate::helpers::exec_sql(
            app.database_url(),
            "UPDATE idempotency_keys SET response = '' WHERE key = $1",
            &["api:k2"],
        )
        .await;
        assert_eq!(forgotten, 1);
        let again = call(lost.clone(), "k2").await;
        assert_eq!(again.status, StatusCode::ACCEPTED);
        let again: Value = again.body;
        assert_eq!(again["messages"], first["messages"], "{again}");
        assert_eq!(again["request_id"], first["request_id"]);
        assert_eq!(again["skipped"], first["skipped"], "{again}");
        let sent_twice = app.get("/v1/messages?limit=200", &s.key).await.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["request_id"] == first["request_id"])
            .count();
        assert_eq!(sent_twice, 1, "one message for the key");

        let before = app.get("/v1/messages?limit=200", &s.key).await.body["data"]
            .as_array()
            .unwrap()
            .len();
        for (bad, field) in [
            (json!({"to": {"category": "nope"}, "text": "x"}), "to"),
            (json!({"to": {"chat_id": alice}}), "text"),
            (
                json!({"to": {"chat_id": alice}, "text": "x", "parse_mode": "bbcode"}),
                "parse_mode",
            ),
            (
                json!({"to": {"chat_id": alice}, "text": "x", "send_at": "tomorrow"}),
                "send_at",
            ),
            (json!({"to": {"phone": "1"}, "text": "x"}), "to"),
            (
                json!({"to": {"chat_id": alice}, "text": "x", "buttons": [[{"text": "a"}]]}),
                "buttons",
            ),
            (
                json!({"to": {"chat_id": alice}, "text": "x",
                       "buttons": [[{"text": "a", "callback_data": "rg:stop:yes"}]]}),
                "buttons",
            ),
            (
                json!({"to": {"chat_id": alice}, "text": "x", "bot_id": "bot_other"}),
                "bot_id",
            ),
        ] {
            let a = app.post("/v1/messages", &s.key, bad.clone()).await;
            a.assert_problem(422, "validation-failed");
            assert_eq!(a.body["field"], field, "{bad}: {}", a.text);
        }
        // A second bot: a chat id alone no longer says which bot sends.
        let (_, token) = app.sandbox_bot("keys2_bot").await;
        let added = app.post("/v1/bots", &s.key, json!({"token": token})).await;
        assert_eq!(added.status, StatusCode::CREATED);
        let a = app
            .post(
                "/v1/messages",
                &s.key,
                json!({"to": {"chat_id": alice}, "text": "x"}),
            )
            .await;
        a.assert_problem(422, "validation-failed");
        let after = app.get("/v1/messages?limit=200", &s.key).await.body["data"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(before, after, "bad input stores nothing");
        let _ = &s.tenant;
        app.stop().await;
    }
}

#[tokio::test]
async fn send_at_429_retries_dead_redrive_and_the_lost_response() {
    for engine in engines() {
        let app = TestApp::spawn_with(
            engine,
            Options {
                manual_clock: true,
                ..Options::default()
            },
        )
        .await;
        let s = setup(&app, "faults").await;
        let alice = user(&app, "Alice", &s.username).await;
        let bob = user(&app, "Bob", &s.username).await;

        // send_at: nothing goes before the clock reaches it.
        let later = jiff::Timestamp::from_millisecond(app.clock().now_millis() + 3_600_000)
            .unwrap()
            .to_string();
        let a = send(
            &app,
            &s.key,
            json!({"to": {"chat_id": alice}, "text": "later", "send_at": later}),
        )
        .await;
        let later_id = a["messages"][0]["id"].as_str().unwrap().to_string();
        // A 429 for Bob's chat: only that chat waits retry_after; Alice's message is unaffected.
        app.fault(json!({"kind": "flood", "retry_after": 30, "chat_id": bob, "count": 1}))
            .await;
        let b = send(
            &app,
            &s.key,
            json!({"to": {"chat_id": bob}, "text": "flooded"}),
        )
        .await;
        let bob_id = b["messages"][0]["id"].as_str().unwrap().to_string();
        let c = send(
            &app,
            &s.key,
            json!({"to": {"chat_id": alice}, "text": "now"}),
        )
        .await;
        settled(
            &app,
            &s.key,
            c["messages"][0]["id"].as_str().unwrap(),
            "sent",
        )
        .await;
        let waiting = until("the 429 to be recorded", || async {
            let m = app
                .get(&format!("/v1/messages/{bob_id}"), &s.key)
                .await
                .body;
            (m["rate_limited"] == 1).then_some(m)
        })
        .await;
        assert_eq!(waiting["status"], "queued");
        assert_eq!(
            app.get(&format!("/v1/messages/{later_id}"), &s.key)
                .await
                .body["status"],
            "queued"
        );
        app.clock().advance(std::time::Duration::from_secs(31));
        settled(&app, &s.key, &bob_id, "sent").await;
        app.clock().advance(std::time::Duration::from_secs(3600));
        settled(&app, &s.key, &later_id, "sent").await;

        // Transient failures back off, then the message is dead; a re-drive sends it.
        app.fault(json!({"kind": "server_error", "chat_id": alice}))
            .await;
        let d = send(
            &app,
            &s.key,
            json!({"to": {"chat_id": alice}, "text": "flaky"}),
        )
        .await;
        let dead_id = d["messages"][0]["id"].as_str().unwrap().to_string();
        let dead = until("the message to die", || async {
            app.clock().advance(std::time::Duration::from_secs(400));
            let m = app
                .get(&format!("/v1/messages/{dead_id}"), &s.key)
                .await
                .body;
            (m["status"] == "dead").then_some(m)
        })
        .await;
        assert_eq!(dead["attempts"], 5, "{dead}");
        assert_eq!(dead["errors"].as_array().unwrap().len(), 5);
        app.http
            .delete(format!("{}/sandbox/faults", app.sandbox.url()))
            .send()
            .await
            .unwrap();
        let r = app
            .post("/v1/messages/retry", &s.key, json!({"status": "dead"}))
            .await;
        assert_eq!(r.body["requeued"], 1, "{}", r.text);
        settled(&app, &s.key, &dead_id, "sent").await;

        // A lost response: delivered once, recorded as unknown, not sent again by itself.
        app.fault(json!({"kind": "lost_response", "chat_id": bob, "count": 1}))
            .await;
        let e = send(
            &app,
            &s.key,
            json!({"to": {"chat_id": bob}, "text": "ambiguous"}),
        )
        .await;
        let unknown_id = e["messages"][0]["id"].as_str().unwrap().to_string();
        let unknown = settled(&app, &s.key, &unknown_id, "unknown").await;
        assert_eq!(unknown["error_class"], "ambiguous");
        let count = |t: Vec<Value>| t.iter().filter(|m| m["text"] == "ambiguous").count();
        assert_eq!(count(transcript(&app, bob, &s.username).await), 1);
        app.post(
            &format!("/v1/messages/{unknown_id}/retry"),
            &s.key,
            json!({}),
        )
        .await
        .assert_problem(409, "conflict");
        let r = app
            .post(
                &format!("/v1/messages/{unknown_id}/retry"),
                &s.key,
                json!({"anyway": true}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        settled(&app, &s.key, &unknown_id, "sent").await;
        assert_eq!(count(transcript(&app, bob, &s.username).await), 2);

        // message.dead and message.failed reached the app.
        let events = app.get("/v1/events?limit=100", &s.key).await;
        let types: Vec<&str> = events.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["type"].as_str())
            .collect();
        assert!(types.contains(&"message.dead"), "{types:?}");
        assert!(types.contains(&"message.failed"), "{types:?}");
        let stats = app.get("/v1/stats", &s.key).await;
        assert_eq!(stats.body["bots"][0]["rate_limited"], 1, "{}", stats.text);
        assert_eq!(stats.body["bots"][0]["retries"], 4, "{}", stats.text);

        // /metrics carries the same per-bot counters, labelled by bot_id.
        let metrics = app.send(app.http.get(app.url("/metrics"))).await.text;
        let bot = &stats.body["bots"][0];
        let bot_id = bot["bot_id"].as_str().unwrap();
        let value = |series: String| -> i64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{series} ")))
                .unwrap_or_else(|| panic!("no {series} in {metrics}"))
                .trim()
                .parse()
                .unwrap()
        };
        for status in ["queued", "sent", "throttled", "failed", "dead", "unknown"] {
            assert_eq!(
                value(format!(
                    "relaygram_bot_messages{{bot_id=\"{bot_id}\",status=\"{status}\"}}"
                )),
                bot[status].as_i64().unwrap(),
                "{status}"
            );
        }
        assert!(
            value(format!(
                "relaygram_bot_messages{{bot_id=\"{bot_id}\",status=\"sent\"}}"
            )) > 0
        );
        assert_eq!(
            value(format!(
                "relaygram_bot_rate_limited_total{{bot_id=\"{bot_id}\"}}"
            )),
            1
        );
        assert_eq!(
            value(format!(
                "relaygram_bot_retries_total{{bot_id=\"{bot_id}\"}}"
            )),
            4
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn blocked_users_fail_without_retries_and_migrated_groups_are_followed() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "chats").await;
        let alice = user(&app, "Alice", &s.username).await;
        app.fault(json!({"kind": "blocked", "user_id": alice}))
            .await;
        let a = send(
            &app,
            &s.key,
            json!({"to": {"chat_id": alice}, "text": "hello?"}),
        )
        .await;
        let failed = settled(
            &app,
            &s.key,
            a["messages"][0]["id"].as_str().unwrap(),
            "failed",
        )
        .await;
        assert_eq!(failed["attempts"], 1);
        assert_eq!(failed["error_class"], "chat_gone");

        let group = app
            .sandbox_post(
                "/sandbox/groups",
                json!({"title": "Ops", "type": "group", "owner": alice}),
            )
            .await;
        let old = group["id"].as_i64().unwrap();
        app.sandbox_post(
            &format!("/sandbox/groups/{old}/bots"),
            json!({"bot": s.username, "status": "member"}),
        )
        .await;
        let migrated = app
            .sandbox_post(&format!("/sandbox/groups/{old}/migrate"), json!({}))
            .await;
        let new = migrated["migrate_to_chat_id"].as_i64().unwrap();
        let b = send(
            &app,
            &s.key,
            json!({"to": {"chat_id": old}, "text": "to the group"}),
        )
        .await;
        let sent = settled(
            &app,
            &s.key,
            b["messages"][0]["id"].as_str().unwrap(),
            "sent",
        )
        .await;
        assert_eq!(sent["chat_id"], new);
        let out = transcript(&app, new, &s.username).await;
        assert!(out.iter().any(|m| m["text"] == "to the group"), "{out:?}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_large_list_is_a_broadcast_that_pauses_resumes_and_finishes_once_each() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "bcast").await;
        // Not sent before the broadcast is paused: the bot sends one message a second.
        let limits = app
            .call(
                reqwest::Method::PUT,
                &format!("/v1/bots/{}/limits", s.bot_id),
                Some(&s.key),
                Some(json!({"per_bot_per_second": 1})),
            )
            .await;
        assert_eq!(limits.status, StatusCode::OK, "{}", limits.text);
        let mut users = Vec::new();
        for i in 0..210 {
            users.push(user(&app, &format!("U{i}"), &s.username).await);
        }
        let to: Vec<Value> = users.iter().map(|u| json!({"chat_id": u})).collect();
        let a = send(&app, &s.key, json!({"to": to, "text": "news"})).await;
        let bc = a["broadcast_id"].as_str().expect("a broadcast").to_string();
        assert_eq!(a["count"], 210);
        let paused = app
            .post(&format!("/v1/broadcasts/{bc}/pause"), &s.key, json!({}))
            .await;
        assert_eq!(paused.status, StatusCode::OK, "{}", paused.text);
        assert_eq!(paused.body["status"], "paused");
        let view = app.get(&format!("/v1/broadcasts/{bc}"), &s.key).await;
        assert_eq!(view.body["total"], 210);
        assert!(
            view.body["remaining"].as_i64().unwrap() > 150,
            "{}",
            view.text
        );
        // Faster again, and resumed: every message ends sent, each delivered once.
        app.call(
            reqwest::Method::PUT,
            &format!("/v1/bots/{}/limits", s.bot_id),
            Some(&s.key),
            Some(json!({})),
        )
        .await;
        let resumed = app
            .post(&format!("/v1/broadcasts/{bc}/resume"), &s.key, json!({}))
            .await;
        assert_eq!(resumed.body["status"], "running", "{}", resumed.text);
        let done = until("the broadcast to finish", || async {
            let v = app.get(&format!("/v1/broadcasts/{bc}"), &s.key).await.body;
            (v["remaining"] == 0).then_some(v)
        })
        .await;
        assert_eq!(done["sent"], 210, "{done}");
        for u in users.iter().take(20) {
            assert_eq!(transcript(&app, *u, &s.username).await.len(), 1);
        }
        app.post(&format!("/v1/broadcasts/{bc}/resume"), &s.key, json!({}))
            .await
            .assert_problem(409, "conflict");
        app.stop().await;
    }
}

/// Links a new sandbox user to `external_id` through a link token; returns (user, link id).
pub(crate) async fn linked(
    app: &TestApp,
    s: &Setup,
    name: &str,
    external_id: &str,
) -> (i64, String) {
    let t = app
        .post(
            "/v1/link-tokens",
            &s.key,
            json!({"bot_id": s.bot_id, "external_id": external_id}),
        )
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
    let token = t.body["token"].as_str().unwrap().to_string();
    let id = app
        .sandbox_post("/sandbox/users", json!({"first_name": name}))
        .await["id"]
        .as_i64()
        .unwrap();
    app.sandbox_post(
        &format!("/sandbox/users/{id}/messages"),
        json!({"bot": s.username, "text": format!("/start {token}")}),
    )
    .await;
    let link = until("the link", || async {
        let l = app
            .get(&format!("/v1/links?external_id={external_id}"), &s.key)
            .await;
        l.body["data"]
            .as_array()?
            .iter()
            .find(|l| l["chat_id"] == id)
            .and_then(|l| l["id"].as_str().map(str::to_string))
    })
    .await;
    (id, link)
}

#[tokio::test]
async fn links_app_users_and_categories_are_targets() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "targets").await;
        let c = app
            .post(
                "/v1/categories",
                &s.key,
                json!({"key": "alerts", "name": "Alerts", "default_enabled": true}),
            )
            .await;
        assert_eq!(c.status, StatusCode::CREATED, "{}", c.text);
        let (alice, alice_link) = linked(&app, &s, "Alice", "user-1").await;
        let (bob, _) = linked(&app, &s, "Bob", "user-2").await;
        let a = send(
            &app,
            &s.key,
            json!({"to": {"link_id": alice_link}, "text": "by link"}),
        )
        .await;
        assert_eq!(a["messages"][0]["chat_id"], alice);
        let b = send(
            &app,
            &s.key,
            json!({"to": {"external_id": "user-2"}, "text": "by user"}),
        )
        .await;
        assert_eq!(b["count"], 1);
        let c = send(
            &app,
            &s.key,
            json!({"to": {"category": "alerts"}, "text": "to all"}),
        )
        .await;
        assert_eq!(c["count"], 2, "{c}");
        // A fan-out is a broadcast however small, and a small one lists its messages.
        assert!(c["broadcast_id"].is_string(), "{c}");
        assert_eq!(c["messages"].as_array().unwrap().len(), 2, "{c}");
        until("every target to receive its messages", || async {
            let (a, b) = (
                texts(&app, alice, &s.username).await,
                texts(&app, bob, &s.username).await,
            );
            (a.contains(&"by link".to_string())
                && a.contains(&"to all".to_string())
                && b.contains(&"by user".to_string())
                && b.contains(&"to all".to_string()))
            .then_some(())
        })
        .await;
        app.stop().await;
    }
}

async fn texts(app: &TestApp, user: i64, bot: &str) -> Vec<String> {
    transcript(app, user, bot)
        .await
        .into_iter()
        .filter_map(|m| m["text"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn templates_render_escaped_split_in_order_with_templated_buttons() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "tpl").await;
        let alice = user(&app, "Alice", &s.username).await;
        let t = app
            .post(
                "/v1/templates",
                &s.key,
                json!({"key": "order.paid", "text": "<b>Order {{ id }}</b> for {{ name }}",
                    "buttons": [[{"text": "Open {{ id }}", "url": "https://shop.example.com/o/{{ id }}"},
                                 {"text": "Refund", "callback_data": "refund:{{ id }}"}]]}),
            )
            .await;
        assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);

        // A variable with markup arrives literally; the template's own markup is bold.
        let a = send(
            &app,
            &s.key,
            json!({"to": {"chat_id": alice}, "template": "order.paid",
                "data": {"id": "A-17", "name": "Bob <b>&"}}),
        )
        .await;
        let id = a["messages"][0]["id"].as_str().unwrap().to_string();
        settled(&app, &s.key, &id, "sent").await;
        let out = transcript(&app, alice, &s.username).await;
        let last = out.last().unwrap();
        assert_eq!(last["text"], "Order A-17 for Bob <b>&", "{last}");
        assert_eq!(last["entities"][0]["type"], "bold", "{last}");
        let row = &last["reply_markup"]["inline_keyboard"][0];
        assert_eq!(row[0]["text"], "Open A-17");
        assert_eq!(row[0]["url"], "https://shop.example.com/o/A-17");
        let token = row[1]["callback_data"].as_str().unwrap().to_string();
        assert!(token.starts_with("rg:cb:"), "{token}");
        app.sandbox_post(
            &format!("/sandbox/users/{alice}/callback"),
            json!({"bot": s.username, "message_id": last["message_id"], "data": token}),
        )
        .await;
        until("the templated callback data to come back", || async {
            let events = app.get("/v1/events?limit=50", &s.key).await;
            events.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["type"] == "callback.received" && e["data"]["data"] == "refund:A-17")
                .cloned()
        })
        .await;

        // A missing variable, an unknown template, markup Telegram would refuse: 422 and
        // nothing queued.
        let before = app.get("/v1/messages?limit=200", &s.key).await.body["data"]
            .as_array()
            .unwrap()
            .len();
        for (bad, field, says) in [
            (
                json!({"to": {"chat_id": alice}, "template": "order.paid", "data": {"id": "A-18"}}),
                "data",
                "name",
            ),
            (
                json!({"to": {"chat_id": alice}, "template": "nope", "data": {}}),
                "template",
                "nope",
            ),
            (
                json!({"to": {"chat_id": alice}, "text": "<b>open", "parse_mode": "HTML"}),
                "text",
                "can't parse entities",
            ),
            (
                json!({"to": {"chat_id": alice}, "text": "a*b", "parse_mode": "MarkdownV2"}),
                "text",
                "can't parse entities",
            ),
        ] {
            let a = app.post("/v1/messages", &s.key, bad.clone()).await;
            a.assert_problem(422, "validation-failed");
            assert_eq!(a.body["field"], field, "{bad}: {}", a.text);
            assert!(a.text.contains(says), "{bad}: {}", a.text);
        }
        let after = app.get("/v1/messages?limit=200", &s.key).await.body["data"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(before, after, "refused requests store nothing");

        // A long text arrives as numbered parts, in order, the keyboard on the last one.
        let paragraphs: Vec<String> = (0..12)
            .map(|i| format!("<b>Section {i}</b> {}", "word ".repeat(150).trim_end()))
            .collect();
        let long = paragraphs.join("\n\n");
        let a = send(
            &app,
            &s.key,
            json!({"to": {"chat_id": alice}, "text": long, "parse_mode": "HTML",
                "buttons": [[{"text": "Done", "url": "https://example.com/done"}]]}),
        )
        .await;
        let id = a["messages"][0]["id"].as_str().unwrap().to_string();
        let sent = settled(&app, &s.key, &id, "sent").await;
        let n = sent["telegram_message_ids"].as_array().unwrap().len();
        assert!(n >= 3, "{sent}");
        let out = transcript(&app, alice, &s.username).await;
        let parts = &out[out.len() - n..];
        for (i, part) in parts.iter().enumerate() {
            let text = part["text"].as_str().unwrap();
            assert!(
                text.starts_with(&format!("[{}/{n}]", i + 1)),
                "part {i}: {text}"
            );
            assert_eq!(
                part["reply_markup"].is_object(),
                i + 1 == n,
                "the keyboard goes with the last part only"
            );
        }
        let joined: String = parts.iter().map(|p| p["text"].as_str().unwrap()).collect();
        let order: Vec<usize> = (0..12)
            .map(|i| {
                joined
                    .find(&format!("Section {i} "))
                    .expect("every section")
            })
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "in order");

        // Media without a caption.
        let a = send(
            &app,
            &s.key,
            json!({"to": {"chat_id": alice}, "photo": "https://example.com/p.png"}),
        )
        .await;
        settled(
            &app,
            &s.key,
            a["messages"][0]["id"].as_str().unwrap(),
            "sent",
        )
        .await;
        app.stop().await;
    }
}

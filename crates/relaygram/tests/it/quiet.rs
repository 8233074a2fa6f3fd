//! Quiet hours per link, end to end with the manual clock: a non-urgent message to a link
//! in its quiet window waits for the window's end (read in the link's zone); an urgent one
//! goes at once; messages to chats without quiet hours are not held.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, engines, until};

async fn send(app: &TestApp, key: &str, body: Value) -> String {
    let a = app.post("/v1/messages", key, body).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    a.body["messages"][0]["id"].as_str().unwrap().to_string()
}

async fn message(app: &TestApp, key: &str, id: &str) -> Value {
    let a = app.get(&format!("/v1/messages/{id}"), key).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.body
}

async fn sent(app: &TestApp, key: &str, id: &str) -> Value {
    until(&format!("message {id} to be sent"), || async {
        let m = message(app, key, id).await;
        (m["status"] == "sent").then_some(m)
    })
    .await
}

fn ms(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

#[tokio::test]
async fn quiet_hours_hold_messages_until_the_window_ends_and_urgent_ones_go_at_once() {
    for engine in engines() {
        let app = TestApp::spawn_with(
            engine,
            Options {
                manual_clock: true,
                ..Options::default()
            },
        )
        .await;
        // 23:30 in Berlin (CET) on a winter night; quiet hours there are 22:00–08:00.
        app.clock().set_millis(ms("2027-01-15T22:30:00Z"));
        let tenant = app.tenant("quiet").await;
        let (_, key) = app.tenant_key(&tenant).await;
        let (_, token) = app.sandbox_bot("quiet_bot").await;
        let bot = app.post("/v1/bots", &key, json!({"token": token})).await;
        assert_eq!(bot.status, StatusCode::CREATED, "{}", bot.text);
        let bot_id = bot.body["id"].as_str().unwrap().to_string();

        // Alice links her chat and sets quiet hours; Bob just writes to the bot.
        let t = app
            .post(
                "/v1/link-tokens",
                &key,
                json!({"bot_id": bot_id, "external_id": "alice"}),
            )
            .await;
        assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
        let alice = app
            .sandbox_post("/sandbox/users", json!({"first_name": "Alice"}))
            .await["id"]
            .as_i64()
            .unwrap();
        app.sandbox_post(&format!("/sandbox/users/{alice}/messages"),
            json!({"bot": "quiet_bot", "text": format!("/start {}", t.body["token"].as_str().unwrap())}),
        )
        .await;
        let link = until("the link", || async {
            let l = app.get("/v1/links?external_id=alice", &key).await;
            l.body["data"][0]["id"].as_str().map(str::to_string)
        })
        .await;
        let p = app
            .patch(
                &format!("/v1/links/{link}"),
                &key,
                json!({"timezone": "Europe/Berlin", "quiet_start": "22:00", "quiet_end": "08:00"}),
            )
            .await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.text);
        let bob = app
            .sandbox_post("/sandbox/users", json!({"first_name": "Bob"}))
            .await["id"]
            .as_i64()
            .unwrap();
        app.sandbox_post(
            &format!("/sandbox/users/{bob}/messages"),
            json!({"bot": "quiet_bot", "text": "hello"}),
        )
        .await;
        // The link's confirmation is an outbox reply too: count from after it arrived.
        let welcome = until("the link's confirmation", || async {
            let n = app.bot_texts(alice, "quiet_bot").await.len();
            (n > 0).then_some(n)
        })
        .await;

        // A normal message to Alice's link waits; one to Bob, accepted after it, goes. The
        // sender takes lanes in acceptance order, so once Bob's is sent Alice's was decided.
        let held = send(
            &app,
            &key,
            json!({"to": {"link_id": link}, "text": "good night news"}),
        )
        .await;
        let to_bob = send(
            &app,
            &key,
            json!({"bot_id": bot_id, "to": {"chat_id": bob}, "text": "for bob"}),
        )
        .await;
        sent(&app, &key, &to_bob).await;
        // The pipelined sender may claim Alice's lane in a later batch than Bob's: wait
        // until it has looked at her message and held it.
        let m = until("the quiet-hours hold", || async {
            let m = message(&app, &key, &held).await;
            m["next_attempt_at"].is_string().then_some(m)
        })
        .await;
        assert_eq!(m["status"], "queued", "{m}");
        assert_eq!(m["attempts"], 0, "a hold is not an attempt: {m}");
        assert_eq!(
            m["next_attempt_at"], "2027-01-16T07:00:00Z",
            "08:00 CET: {m}"
        );
        assert_eq!(app.bot_texts(alice, "quiet_bot").await.len(), welcome);

        // An urgent message to the same link goes at once (and "urgent" is priority 100).
        let urgent = send(
            &app,
            &key,
            json!({"to": {"link_id": link}, "text": "server down", "priority": "urgent"}),
        )
        .await;
        let u = sent(&app, &key, &urgent).await;
        assert_eq!(u["priority"], 100);
        assert_eq!(
            app.bot_texts(alice, "quiet_bot").await[welcome..],
            ["server down".to_string()]
        );
        assert_eq!(message(&app, &key, &held).await["status"], "queued");

        // Not yet at 07:59 local; at 08:00 the held message goes.
        app.clock().set_millis(ms("2027-01-16T06:59:00Z"));
        let to_bob = send(
            &app,
            &key,
            json!({"bot_id": bot_id, "to": {"chat_id": bob}, "text": "still night"}),
        )
        .await;
        sent(&app, &key, &to_bob).await;
        assert_eq!(message(&app, &key, &held).await["status"], "queued");
        app.clock().set_millis(ms("2027-01-16T07:00:01Z"));
        let m = sent(&app, &key, &held).await;
        assert_eq!(m["attempts"], 1, "{m}");
        assert_eq!(
            app.bot_texts(alice, "quiet_bot").await[welcome..],
            ["server down".to_string(), "good night news".to_string()]
        );

        // By day nothing waits.
        let day = send(
            &app,
            &key,
            json!({"to": {"link_id": link}, "text": "lunch"}),
        )
        .await;
        sent(&app, &key, &day).await;

        // A priority that is neither a number nor "urgent" is refused.
        app.post(
            "/v1/messages",
            &key,
            json!({"to": {"link_id": link}, "text": "x", "priority": "soon"}),
        )
        .await
        .assert_problem(422, "validation-failed");
        app.stop().await;
    }
}

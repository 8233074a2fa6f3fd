//! Digests end to end with the manual clock: items collect per key and recipient and go
//! out as one message when the window closes or the schedule fires; later items start the
//! next digest; a stored template renders count, list, first and last; handing a digest
//! over again sends nothing new.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, engines, until};

struct Setup {
    key: String,
    tenant: String,
    bot_id: String,
    alice: i64,
    bob: i64,
}

async fn user(app: &TestApp, name: &str) -> i64 {
    let id = app
        .sandbox_post("/sandbox/users", json!({"first_name": name}))
        .await["id"]
        .as_i64()
        .unwrap();
    app.sandbox_post(
        &format!("/sandbox/users/{id}/messages"),
        json!({"bot": "digest_bot", "text": "hello"}),
    )
    .await;
    id
}

async fn setup(app: &TestApp) -> Setup {
    app.clock().set_millis(ms("2027-02-01T08:00:00Z"));
    let tenant = app.tenant("digests").await;
    let (_, key) = app.tenant_key(&tenant).await;
    let (_, token) = app.sandbox_bot("digest_bot").await;
    let bot = app.post("/v1/bots", &key, json!({"token": token})).await;
    assert_eq!(bot.status, StatusCode::CREATED, "{}", bot.text);
    Setup {
        key,
        tenant,
        bot_id: bot.body["id"].as_str().unwrap().to_string(),
        alice: user(app, "Alice").await,
        bob: user(app, "Bob").await,
    }
}

async fn texts(app: &TestApp, chat: i64) -> Vec<String> {
    app.bot_texts(chat, "digest_bot").await
}

fn ms(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

async fn item(app: &TestApp, s: &Setup, chat: i64, text: &str, digest: Value) -> Value {
    let a = app
        .post(
            "/v1/messages",
            &s.key,
            json!({"bot_id": s.bot_id, "to": {"chat_id": chat}, "text": text, "digest": digest}),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    assert_eq!(a.body["status"], "digested", "{}", a.text);
    assert_eq!(a.body["count"], 1, "{}", a.text);
    a.body
}

/// Sends a plain message and waits until it is sent: the sender works in acceptance
/// order, so anything sendable accepted before it has been sent by then.
async fn flush(app: &TestApp, s: &Setup, chat: i64, text: &str) {
    let a = app
        .post(
            "/v1/messages",
            &s.key,
            json!({"bot_id": s.bot_id, "to": {"chat_id": chat}, "text": text}),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    let id = a.body["messages"][0]["id"].as_str().unwrap().to_string();
    until("the flush message to be sent", || async {
        let m = app.get(&format!("/v1/messages/{id}"), &s.key).await;
        (m.body["status"] == "sent").then_some(())
    })
    .await;
}

async fn received(app: &TestApp, chat: i64, text: &str) {
    until(&format!("{chat} to receive {text:?}"), || async {
        texts(app, chat)
            .await
            .iter()
            .any(|t| t == text)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn items_collect_per_key_and_recipient_and_go_out_when_the_window_closes() {
    for engine in engines() {
        let app = TestApp::spawn_with(
            engine,
            Options {
                manual_clock: true,
                ..Options::default()
            },
        )
        .await;
        let s = setup(&app).await;
        let window = json!({"key": "daily-report", "window": "1h"});
        let first = item(&app, &s, s.alice, "order 1 paid", window.clone()).await;
        let digest_id = first["digest_ids"][0].as_str().unwrap().to_string();
        // The same Idempotency-Key twice adds one item and answers the same digest.
        for _ in 0..2 {
            let a: Value = app
                .send(
                    app.http
                        .post(app.url("/v1/messages"))
                        .bearer_auth(&s.key)
                        .header("Idempotency-Key", "order-1b")
                        .json(&json!({"bot_id": s.bot_id, "to": {"chat_id": s.alice},
                                      "text": "order 1b paid", "digest": window})),
                )
                .await
                .body;
            assert_eq!(a["digest_ids"][0], digest_id.as_str(), "{a}");
        }
        let bobs = item(&app, &s, s.bob, "order 9 paid", window.clone()).await;
        assert_ne!(
            bobs["digest_ids"][0],
            digest_id.as_str(),
            "another recipient"
        );
        app.clock().advance(std::time::Duration::from_secs(600));
        for text in ["order 2 paid", "order 3 & co"] {
            let b = item(&app, &s, s.alice, text, window.clone()).await;
            assert_eq!(
                b["digest_ids"][0],
                digest_id.as_str(),
                "same key and recipient"
            );
        }
        let other_key = item(
            &app,
            &s,
            s.alice,
            "signup",
            json!({"key": "signups", "window": "2h"}),
        )
        .await;
        assert_ne!(other_key["digest_ids"][0], digest_id.as_str());

        // Nothing goes before the window closes (one hour after the first item).
        app.clock().set_millis(ms("2027-02-01T08:59:00Z"));
        flush(&app, &s, s.alice, "plain").await;
        assert_eq!(texts(&app, s.alice).await, ["plain"]);

        app.clock().set_millis(ms("2027-02-01T09:00:01Z"));
        received(
            &app,
            s.alice,
            "daily-report: 4 updates\n• order 1 paid\n• order 1b paid\n• order 2 paid\n• order 3 & co",
        )
        .await;
        received(&app, s.bob, "daily-report: 1 update\n• order 9 paid").await;
        let view = until("the digest to be recorded sent", || async {
            let d = app.get(&format!("/v1/digests/{digest_id}"), &s.key).await;
            assert_eq!(d.status, StatusCode::OK, "{}", d.text);
            (d.body["status"] == "sent").then_some(d.body)
        })
        .await;
        assert_eq!(view["items"], 4, "{view}");
        assert_eq!(view["key"], "daily-report");
        assert_eq!(view["recipient"]["to"]["chat_id"], s.alice);
        assert_eq!(view["message_ids"].as_array().unwrap().len(), 1, "{view}");
        let request_id = view["request_id"].as_str().unwrap().to_string();
        // Another tenant sees nothing.
        let other = app.tenant("other").await;
        let (_, other_key) = app.tenant_key(&other).await;
        app.get(&format!("/v1/digests/{digest_id}"), &other_key)
            .await
            .assert_problem(404, "not-found");
        let listed = app.get("/v1/digests?key=daily-report", &s.key).await;
        assert_eq!(
            listed.body["data"].as_array().unwrap().len(),
            2,
            "{}",
            listed.text
        );
        let page = app.get("/v1/digests?limit=1", &s.key).await;
        assert_eq!(
            page.body["data"][0]["id"],
            digest_id.as_str(),
            "oldest first"
        );
        assert!(page.body["next_cursor"].is_string());
        assert!(
            app.get("/v1/digests", &other_key).await.body["data"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        let open = app.get("/v1/digests?status=open", &s.key).await;
        assert_eq!(open.body["data"][0]["key"], "signups", "{}", open.text);
        app.get("/v1/digests?status=late", &s.key)
            .await
            .assert_problem(400, "validation-failed");
        let store = &app.server.services.store;
        let d = store
            .get_digest(Some(&s.tenant), &digest_id)
            .await
            .unwrap()
            .unwrap();

        // Items after the digest went start the next one.
        let next = item(&app, &s, s.alice, "order 4 paid", window.clone()).await;
        assert_ne!(next["digest_ids"][0], digest_id.as_str());

        // Handing the sent digest over again (as after a crash) makes nothing new.
        let mut again = d.clone();
        again.status = "closing".into();
        app.server.services.deliver_digest(&again).await.unwrap();
        let d2 = store
            .get_digest(Some(&s.tenant), &digest_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d2.request_id.as_deref(), Some(request_id.as_str()));
        flush(&app, &s, s.alice, "plain 2").await;
        let digests = texts(&app, s.alice)
            .await
            .into_iter()
            .filter(|t| t.starts_with("daily-report"))
            .count();
        assert_eq!(digests, 1, "{:?}", texts(&app, s.alice).await);

        // The signups digest (2 h) closes later, on its own.
        app.clock().set_millis(ms("2027-02-01T10:11:00Z"));
        received(&app, s.alice, "signups: 1 update\n• signup").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_digest_closes_when_its_schedule_fires_and_a_template_renders_it() {
    for engine in engines() {
        let app = TestApp::spawn_with(
            engine,
            Options {
                manual_clock: true,
                ..Options::default()
            },
        )
        .await;
        let s = setup(&app).await;
        let t = app
            .post(
                "/v1/templates",
                &s.key,
                json!({"key": "orders.digest",
                       "text": "{{ count }} orders:{% for i in items %} {{ i.data.id }}{% endfor %} (first {{ first.data.id }}, last {{ last.data.id }})"}),
            )
            .await;
        assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
        let schedule = app
            .post(
                "/v1/schedules",
                &s.key,
                json!({"name": "Morning", "cron": "0 9 * * *", "timezone": "Europe/Berlin",
                       "message": {"bot_id": s.bot_id, "to": {"chat_id": s.bob}, "text": "good morning"}}),
            )
            .await;
        assert_eq!(schedule.status, StatusCode::CREATED, "{}", schedule.text);
        let schedule_id = schedule.body["id"].as_str().unwrap().to_string();
        // 09:00 in Berlin is 08:00 UTC; it is 08:00 UTC now, so the next is tomorrow's.
        assert_eq!(schedule.body["next_fire_times"][0], "2027-02-02T08:00:00Z");

        let digest =
            json!({"key": "orders", "schedule_id": schedule_id, "template": "orders.digest"});
        for id in ["A-1", "A-2", "A-3"] {
            let a = app
                .post(
                    "/v1/messages",
                    &s.key,
                    json!({"bot_id": s.bot_id, "to": {"chat_id": s.alice}, "data": {"id": id}, "digest": digest}),
                )
                .await;
            assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
            assert_eq!(a.body["status"], "digested");
        }
        app.clock().set_millis(ms("2027-02-02T07:59:00Z"));
        flush(&app, &s, s.alice, "plain").await;
        assert_eq!(texts(&app, s.alice).await, ["plain"]);
        app.clock().set_millis(ms("2027-02-02T08:00:01Z"));
        received(&app, s.alice, "3 orders: A-1 A-2 A-3 (first A-1, last A-3)").await;
        received(&app, s.bob, "good morning").await;
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_digest_items_are_refused_and_store_nothing() {
    for engine in engines() {
        let app = TestApp::spawn_with(
            engine,
            Options {
                manual_clock: true,
                ..Options::default()
            },
        )
        .await;
        let s = setup(&app).await;
        let cases = [
            (json!({"key": "k"}), "digest"),
            (
                json!({"key": "k", "window": "1h", "schedule_id": "sch_x"}),
                "digest",
            ),
            (json!({"key": "", "window": "1h"}), "digest.key"),
            (json!({"key": "k", "window": "soon"}), "digest.window"),
            (
                json!({"key": "k", "schedule_id": "sch_nope"}),
                "digest.schedule_id",
            ),
            (
                json!({"key": "k", "window": "1h", "template": "nope"}),
                "digest.template",
            ),
        ];
        for (digest, field) in cases {
            let a = app
                .post(
                    "/v1/messages",
                    &s.key,
                    json!({"bot_id": s.bot_id, "to": {"chat_id": s.alice}, "text": "x", "digest": digest}),
                )
                .await;
            a.assert_problem(422, "validation-failed");
            assert_eq!(a.body["field"], field, "{}", a.text);
        }
        let a = app
            .post(
                "/v1/messages",
                &s.key,
                json!({"bot_id": s.bot_id, "to": {"link_id": "link_nope"}, "text": "x",
                       "digest": {"key": "k", "window": "1h"}}),
            )
            .await;
        a.assert_problem(422, "no-recipients");
        assert_eq!(a.body["field"], "to", "{}", a.text);
        let store = &app.server.services.store;
        assert!(
            store
                .list_digests(&s.tenant, None, None, &relaygram::store::Page::first(10))
                .await
                .unwrap()
                .items
                .is_empty()
        );
        app.stop().await;
    }
}

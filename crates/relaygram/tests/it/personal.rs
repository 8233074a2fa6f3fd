//! Per-recipient data, end to end on both engines: a listed target's own `data` merged over
//! the request's, the recipient's link in every render (`link.external_id`,
//! `link.metadata.*`, `link.timezone`), a recipient whose render misses a variable skipped
//! with the reason while the others get theirs, and a schedule whose one message greets
//! each recipient by name.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::delivery::{Setup, linked, send, settled, setup};
use crate::helpers::{TestApp, engines, outgoing, until};

async fn template(app: &TestApp, s: &Setup, key: &str, text: &str) {
    let t = app
        .post("/v1/templates", &s.key, json!({"key": key, "text": text}))
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.text);
}

async fn set_link(app: &TestApp, s: &Setup, link: &str, body: Value) {
    let p = app.patch(&format!("/v1/links/{link}"), &s.key, body).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
}

/// Waits until every message of an answer is sent.
async fn all_sent(app: &TestApp, s: &Setup, answer: &Value) {
    for m in answer["messages"].as_array().unwrap() {
        settled(app, &s.key, m["id"].as_str().unwrap(), "sent").await;
    }
}

async fn last_text(app: &TestApp, s: &Setup, chat: i64) -> String {
    app.bot_texts(chat, &s.username)
        .await
        .last()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn each_recipient_renders_with_its_own_data_and_link() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "personal").await;
        let (ada, ada_link) = linked(&app, &s, "Ada", "u-ada").await;
        let (bob, bob_link) = linked(&app, &s, "Bob", "u-bob").await;
        let (cy, cy_link) = linked(&app, &s, "Cy", "u-cy").await;
        set_link(
            &app,
            &s,
            &ada_link,
            json!({"metadata": {"name": "Ada"}, "timezone": "Europe/Paris"}),
        )
        .await;
        set_link(&app, &s, &bob_link, json!({"metadata": {"name": "Bob"}})).await;

        // A target's own data is merged over the request's (objects key by key).
        template(
            &app,
            &s,
            "summary",
            "{{ greeting }} {{ user.name }}: {{ user.orders }} orders ({{ period }})",
        )
        .await;
        // An unknown key beside `data` is refused like any malformed target.
        let bad = app
            .post(
                "/v1/messages",
                &s.key,
                json!({"template": "summary", "to": [{"link_id": bob_link, "data": {}, "x": 1}]}),
            )
            .await;
        bad.assert_problem(422, "validation-failed");
        let a = send(
            &app,
            &s.key,
            json!({"template": "summary",
                   "data": {"greeting": "Hi", "period": "today", "user": {"orders": 0}},
                   "to": [{"link_id": ada_link, "data": {"user": {"name": "Ada", "orders": 3}}},
                          {"link_id": bob_link, "data": {"user": {"name": "Bob"}}}]}),
        )
        .await;
        assert_eq!(a["count"], 2, "{a}");
        all_sent(&app, &s, &a).await;
        assert_eq!(last_text(&app, &s, ada).await, "Hi Ada: 3 orders (today)");
        assert_eq!(last_text(&app, &s, bob).await, "Hi Bob: 0 orders (today)");

        // The recipient's link in a fan-out: Cy has no name, so Cy is skipped (and said
        // why) while Ada and Bob get theirs.
        template(
            &app,
            &s,
            "hello",
            "Hello {{ link.metadata.name }} ({{ link.external_id }}, {{ link.timezone | default(\"UTC\") }})",
        )
        .await;
        let a = send(
            &app,
            &s.key,
            json!({"template": "hello", "to": [{"external_id": "u-ada"}, {"external_id": "u-bob"},
                                               {"external_id": "u-cy"}]}),
        )
        .await;
        assert_eq!(a["count"], 2, "{a}");
        assert!(
            a["broadcast_id"].is_string(),
            "a fan-out is a broadcast: {a}"
        );
        let skipped = a["skipped"].as_array().unwrap();
        assert_eq!(skipped.len(), 1, "{a}");
        assert_eq!(skipped[0]["target"], json!({"link_id": cy_link}), "{a}");
        assert_eq!(skipped[0]["reason"], "missing_variable", "{a}");
        assert!(
            skipped[0]["detail"]
                .as_str()
                .unwrap()
                .contains("link.metadata.name"),
            "{a}"
        );
        all_sent(&app, &s, &a).await;
        assert_eq!(
            last_text(&app, &s, ada).await,
            "Hello Ada (u-ada, Europe/Paris)"
        );
        assert_eq!(last_text(&app, &s, bob).await, "Hello Bob (u-bob, UTC)");
        assert!(
            !app.bot_texts(cy, &s.username)
                .await
                .iter()
                .any(|t| t.starts_with("Hello")),
            "Cy got nothing"
        );

        // A chat_id target renders with the chat's link too.
        let a = send(
            &app,
            &s.key,
            json!({"template": "hello", "to": {"chat_id": ada}}),
        )
        .await;
        all_sent(&app, &s, &a).await;
        assert_eq!(
            last_text(&app, &s, ada).await,
            "Hello Ada (u-ada, Europe/Paris)"
        );

        // Nobody renders: 422 no-recipients naming each, and nothing stored.
        let before = app.get("/v1/messages?limit=200", &s.key).await.body["data"]
            .as_array()
            .unwrap()
            .len();
        let none = app
            .post(
                "/v1/messages",
                &s.key,
                json!({"template": "hello", "to": {"link_id": cy_link}}),
            )
            .await;
        none.assert_problem(422, "no-recipients");
        assert_eq!(none.body["skipped"][0]["reason"], "missing_variable");
        let after = app.get("/v1/messages?limit=200", &s.key).await.body["data"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(before, after, "nothing stored");

        // An app's own `link` variable wins over the recipient's link.
        template(&app, &s, "open", "Open {{ link }}").await;
        let a = send(
            &app,
            &s.key,
            json!({"template": "open", "data": {"link": "https://e.x/1"}, "to": {"link_id": ada_link}}),
        )
        .await;
        all_sent(&app, &s, &a).await;
        assert_eq!(last_text(&app, &s, ada).await, "Open https://e.x/1");

        // Edits keep a personal message personal: a waiting one keeps its own text when only
        // its buttons change, a sent one re-renders with its recipient's link.
        template(&app, &s, "bye", "Bye {{ link.metadata.name }}").await;
        let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(5)).to_string();
        let a = send(
            &app,
            &s.key,
            json!({"template": "hello", "send_at": later,
                   "to": [{"link_id": ada_link}, {"link_id": bob_link}]}),
        )
        .await;
        let ids: Vec<String> = a["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
        let bobs = a["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["link_id"] == bob_link.as_str())
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let replaced = app
            .patch(
                &format!("/v1/messages/{bobs}"),
                &s.key,
                json!({"buttons": [[{"text": "Open", "url": "https://e.x/b"}]]}),
            )
            .await;
        assert_eq!(replaced.status, StatusCode::ACCEPTED, "{}", replaced.text);
        assert_eq!(replaced.body["status"], "replaced", "{}", replaced.text);
        for id in &ids {
            settled(&app, &s.key, id, "sent").await;
        }
        let shown = outgoing(app.transcript(bob, Some(&s.username)).await);
        let last = shown.last().unwrap();
        assert_eq!(last["text"], "Hello Bob (u-bob, UTC)", "{last}");
        assert_eq!(
            last["reply_markup"]["inline_keyboard"][0][0]["text"],
            "Open"
        );
        let adas = ids.iter().find(|id| **id != bobs).unwrap();
        let sent = app.get(&format!("/v1/messages/{adas}"), &s.key).await;
        let telegram_id = sent.body["telegram_message_ids"][0].clone();
        let job = app
            .patch(
                &format!("/v1/messages/{adas}"),
                &s.key,
                json!({"template": "bye"}),
            )
            .await;
        assert_eq!(job.status, StatusCode::ACCEPTED, "{}", job.text);
        settled(&app, &s.key, job.body["job_id"].as_str().unwrap(), "sent").await;
        let shown = outgoing(app.transcript(ada, Some(&s.username)).await);
        let edited = shown
            .iter()
            .find(|m| m["message_id"] == telegram_id)
            .unwrap();
        assert_eq!(edited["text"], "Bye Ada", "{edited}");

        // Bad input: a target's data without a template, data that is not an object.
        app.post(
            "/v1/messages",
            &s.key,
            json!({"text": "x", "to": [{"link_id": ada_link, "data": {"a": 1}}]}),
        )
        .await
        .assert_problem(422, "validation-failed");
        app.post(
            "/v1/messages",
            &s.key,
            json!({"template": "summary", "to": [{"link_id": ada_link, "data": [1]}]}),
        )
        .await
        .assert_problem(422, "validation-failed");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_schedule_greets_each_recipient_by_name() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "greet").await;
        let c = app
            .post(
                "/v1/categories",
                &s.key,
                json!({"key": "daily", "name": "Daily summary", "default_enabled": true}),
            )
            .await;
        assert_eq!(c.status, StatusCode::CREATED, "{}", c.text);
        let mut chats = Vec::new();
        for name in ["Ada", "Bob", "Cy"] {
            let (chat, link) = linked(&app, &s, name, &format!("u-{name}")).await;
            set_link(&app, &s, &link, json!({"metadata": {"name": name}})).await;
            chats.push((chat, name));
        }
        template(
            &app,
            &s,
            "morning",
            "Good morning, {{ link.metadata.name }}! {{ headline }}",
        )
        .await;
        let created = app
            .post(
                "/v1/schedules",
                &s.key,
                json!({"name": "morning", "cron": "0 9 * * *", "timezone": "Europe/Paris",
                       "message": {"template": "morning", "data": {"headline": "3 new leads."},
                                   "to": {"category": "daily"}}}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let id = created.body["id"].as_str().unwrap();
        let run = app
            .post(&format!("/v1/schedules/{id}/run"), &s.key, json!({}))
            .await;
        assert_eq!(run.status, StatusCode::CREATED, "{}", run.text);
        assert_eq!(run.body["state"], "submitted", "{}", run.text);
        for (chat, name) in chats {
            let want = format!("Good morning, {name}! 3 new leads.");
            until(&format!("{name}'s greeting"), || async {
                app.bot_texts(chat, &s.username)
                    .await
                    .contains(&want)
                    .then_some(())
            })
            .await;
        }
        app.stop().await;
    }
}

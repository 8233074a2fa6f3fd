//! Editing and deleting what was sent (`PATCH`/`DELETE /v1/messages/{id}`) against the
//! sandbox: edits and deletes reach Telegram through the outbox, an unchanged edit is done,
//! a message not sent yet is changed in place or cancelled, and Telegram's rules answer 422
//! before anything is queued.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::delivery::{send, settled, setup, user};
use crate::helpers::{Options, TestApp, engines, outgoing, until};

/// The bot's message `telegram_id` as the sandbox shows it now.
async fn in_sandbox(app: &TestApp, chat: i64, bot: &str, telegram_id: &Value) -> Value {
    outgoing(app.transcript(chat, Some(bot)).await)
        .into_iter()
        .find(|m| &m["message_id"] == telegram_id)
        .unwrap_or_else(|| panic!("message {telegram_id} is not in the sandbox"))
}

/// PATCHes or DELETEs message `id`; expects 202 and returns the answer.
async fn change(app: &TestApp, key: &str, id: &str, edit: Option<Value>) -> Value {
    let path = format!("/v1/messages/{id}");
    let a = match edit {
        Some(body) => app.patch(&path, key, body).await,
        None => app.delete(&path, key).await,
    };
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.text);
    a.body
}

async fn sent_message(app: &TestApp, key: &str, body: Value) -> (String, Value) {
    let accepted = send(app, key, body).await;
    let id = accepted["messages"][0]["id"].as_str().unwrap().to_string();
    let sent = settled(app, key, &id, "sent").await;
    (id, sent["telegram_message_ids"][0].clone())
}

#[tokio::test]
async fn a_sent_message_is_edited_in_telegram_and_an_unchanged_edit_counts_as_done() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "edits").await;
        let alice = user(&app, "Alice", &s.username).await;
        let (id, tg) = sent_message(
            &app,
            &s.key,
            json!({"to": {"chat_id": alice}, "text": "Revenue: 10",
                "buttons": [[{"text": "Open", "url": "https://example.com/d"}]]}),
        )
        .await;

        // New text: an edit job in the chat's lane; the keyboard left out stays.
        let job = change(
            &app,
            &s.key,
            &id,
            Some(json!({"text": "Revenue: <b>12</b>", "parse_mode": "HTML"})),
        )
        .await;
        assert_eq!(job["status"], "queued", "{job}");
        assert_eq!(job["action"], "edit");
        let job_id = job["job_id"].as_str().unwrap().to_string();
        let done = settled(&app, &s.key, &job_id, "sent").await;
        assert_eq!(done["kind"], "edit");
        assert_eq!(done["edit_of"], id.as_str());
        let shown = in_sandbox(&app, alice, &s.username, &tg).await;
        assert_eq!(shown["text"], "Revenue: 12");
        assert!(shown["edit_date"].is_i64(), "{shown}");
        assert_eq!(
            shown["reply_markup"]["inline_keyboard"][0][0]["text"], "Open",
            "the keyboard stays: {shown}"
        );
        let message = app.get(&format!("/v1/messages/{id}"), &s.key).await;
        assert!(message.body["edited_at"].is_string(), "{}", message.text);
        assert_eq!(message.body["status"], "sent");

        // The same text again: Telegram says "not modified", which is what was asked.
        let again = change(
            &app,
            &s.key,
            &id,
            Some(json!({"text": "Revenue: <b>12</b>", "parse_mode": "HTML"})),
        )
        .await;
        let again = settled(&app, &s.key, again["job_id"].as_str().unwrap(), "sent").await;
        assert_eq!(again["attempts"], 1, "{again}");

        // Buttons alone: `[]` removes the keyboard (editMessageReplyMarkup).
        let bare = change(&app, &s.key, &id, Some(json!({"buttons": []}))).await;
        settled(&app, &s.key, bare["job_id"].as_str().unwrap(), "sent").await;
        let shown = in_sandbox(&app, alice, &s.username, &tg).await;
        assert!(shown.get("reply_markup").is_none(), "{shown}");
        assert_eq!(shown["text"], "Revenue: 12");

        // A photo's caption is edited with editMessageCaption.
        let (photo, photo_tg) = sent_message(
            &app,
            &s.key,
            json!({"to": {"chat_id": alice}, "photo": "https://example.com/chart.png", "text": "Chart v1"}),
        )
        .await;
        let job = change(&app, &s.key, &photo, Some(json!({"text": "Chart v2"}))).await;
        settled(&app, &s.key, job["job_id"].as_str().unwrap(), "sent").await;
        let shown = in_sandbox(&app, alice, &s.username, &photo_tg).await;
        assert_eq!(shown["caption"], "Chart v2");
        assert!(shown["edit_date"].is_i64());

        // Jobs are not messages: lists and stats count the two messages only.
        let list = app.get("/v1/messages", &s.key).await;
        assert_eq!(
            list.body["data"].as_array().unwrap().len(),
            2,
            "{}",
            list.text
        );
        let stats = app.get("/v1/stats", &s.key).await;
        assert_eq!(stats.body["totals"]["sent"], 2, "{}", stats.text);

        // The app hears of each edit.
        until("message.edited events", || async {
            let events = app.get("/v1/events?limit=50", &s.key).await;
            let edited = events.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["type"] == "message.edited" && e["data"]["message_id"] == id.as_str())
                .count();
            (edited == 3).then_some(())
        })
        .await;
        app.stop().await;
    }
}

#[tokio::test]
async fn a_sent_message_is_deleted_and_a_queued_one_is_replaced_or_cancelled() {
    for engine in engines() {
        let app = TestApp::spawn_with(
            engine,
            Options {
                manual_clock: true,
                ..Options::default()
            },
        )
        .await;
        let s = setup(&app, "deletes").await;
        let alice = user(&app, "Alice", &s.username).await;
        let (id, tg) = sent_message(
            &app,
            &s.key,
            json!({"to": {"chat_id": alice}, "text": "Temporary"}),
        )
        .await;
        let job = change(&app, &s.key, &id, None).await;
        assert_eq!(job["action"], "delete");
        let done = settled(&app, &s.key, job["job_id"].as_str().unwrap(), "sent").await;
        assert_eq!(done["kind"], "delete");
        let shown = in_sandbox(&app, alice, &s.username, &tg).await;
        assert_eq!(shown["deleted"], true, "{shown}");
        let message = app.get(&format!("/v1/messages/{id}"), &s.key).await;
        assert!(message.body["deleted_at"].is_string(), "{}", message.text);
        // Gone: neither edited nor deleted again.
        app.patch(&format!("/v1/messages/{id}"), &s.key, json!({"text": "x"}))
            .await
            .assert_problem(422, "message-deleted");
        app.delete(&format!("/v1/messages/{id}"), &s.key)
            .await
            .assert_problem(422, "message-deleted");

        // Not sent yet (send_at in an hour): an edit replaces what it will send…
        let later = jiff::Timestamp::from_millisecond(app.clock().now_millis() + 3_600_000)
            .unwrap()
            .to_string();
        let replaced = send(
            &app,
            &s.key,
            json!({"to": {"chat_id": alice}, "text": "Draft", "send_at": later}),
        )
        .await["messages"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let answer = change(&app, &s.key, &replaced, Some(json!({"text": "Final"}))).await;
        assert_eq!(answer["status"], "replaced", "{answer}");
        assert!(answer.get("job_id").is_none());
        // …and a delete cancels it: nothing of it reaches Telegram.
        let cancelled = send(
            &app,
            &s.key,
            json!({"to": {"chat_id": alice}, "text": "Never", "send_at": later}),
        )
        .await["messages"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let answer = change(&app, &s.key, &cancelled, None).await;
        assert_eq!(answer["status"], "cancelled", "{answer}");
        let message = app.get(&format!("/v1/messages/{cancelled}"), &s.key).await;
        assert_eq!(message.body["status"], "cancelled");
        assert_eq!(message.body["error_class"], "deleted_by_app");
        app.patch(
            &format!("/v1/messages/{cancelled}"),
            &s.key,
            json!({"text": "x"}),
        )
        .await
        .assert_problem(422, "not-delivered");

        app.clock().advance(Duration::from_secs(3_700));
        settled(&app, &s.key, &replaced, "sent").await;
        let texts: Vec<Value> = outgoing(app.transcript(alice, Some(&s.username)).await)
            .iter()
            .map(|m| m["text"].clone())
            .collect();
        assert_eq!(texts, [json!("Temporary"), json!("Final")]);
        app.stop().await;
    }
}

#[tokio::test]
async fn edits_follow_telegrams_rules_and_stay_in_their_tenant() {
    for engine in engines() {
        let app = TestApp::spawn_with(
            engine,
            Options {
                manual_clock: true,
                ..Options::default()
            },
        )
        .await;
        let s = setup(&app, "rules").await;
        let other = setup(&app, "others").await;
        let alice = user(&app, "Alice", &s.username).await;
        let (id, _) = sent_message(
            &app,
            &s.key,
            json!({"to": {"chat_id": alice}, "text": "Old news"}),
        )
        .await;
        let path = format!("/v1/messages/{id}");

        // Another tenant's message does not exist for it.
        app.patch(&path, &other.key, json!({"text": "mine"}))
            .await
            .assert_problem(404, "not-found");
        app.delete(&path, &other.key)
            .await
            .assert_problem(404, "not-found");
        // Nothing to change, or text and template both.
        app.patch(&path, &s.key, json!({}))
            .await
            .assert_problem(422, "validation-failed");
        app.patch(&path, &s.key, json!({"text": "a", "template": "t"}))
            .await
            .assert_problem(422, "validation-failed");

        // Past 48 hours Telegram no longer lets the bot change it: refused, nothing queued.
        app.clock().advance(Duration::from_secs(48 * 3600 + 1));
        app.patch(&path, &s.key, json!({"text": "too late"}))
            .await
            .assert_problem(422, "edit-window-passed");
        app.delete(&path, &s.key)
            .await
            .assert_problem(422, "edit-window-passed");
        let list = app.get("/v1/messages", &s.key).await;
        assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
        let out = outgoing(app.transcript(alice, Some(&s.username)).await);
        assert!(out[0].get("edit_date").is_none(), "{}", out[0]);
        app.stop().await;
    }
}

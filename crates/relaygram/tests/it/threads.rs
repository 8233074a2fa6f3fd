//! What a send carries back, end to end on both engines: its `metadata` comes back with a
//! user's reply to it and with a press of its buttons, and a button's `answer` is what the
//! user sees when pressing it (a toast, or an alert).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::delivery::{send, settled, setup, user};
use crate::helpers::{TestApp, engines, outgoing, until};

async fn event(app: &TestApp, key: &str, kind: &str, n: usize) -> Value {
    until(&format!("{n} {kind} events"), || async {
        let a = app
            .get(&format!("/v1/events?type={kind}&limit=200"), key)
            .await;
        let data = a.body["data"].as_array()?.clone();
        (data.len() >= n).then(|| data[n - 1].clone())
    })
    .await
}

#[tokio::test]
async fn metadata_comes_back_with_replies_and_presses_and_buttons_answer_as_told() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "threads").await;
        let ann = user(&app, "Ann", &s.username).await;
        let a = send(
            &app,
            &s.key,
            json!({"to": {"chat_id": ann}, "text": "Visitor on /pricing: hello?",
                   "metadata": {"conversation": "c-17", "visitor": {"page": "/pricing"}},
                   "buttons": [[{"text": "Take it", "callback_data": "take:c-17",
                                 "answer": "Taken: c-17 is yours", "show_alert": true},
                                {"text": "Skip", "callback_data": "skip:c-17", "answer": "Skipped"},
                                {"text": "Later", "callback_data": "later:c-17"}]]}),
        )
        .await;
        let sent = settled(
            &app,
            &s.key,
            a["messages"][0]["id"].as_str().unwrap(),
            "sent",
        )
        .await;
        assert_eq!(
            sent["metadata"]["conversation"], "c-17",
            "the message shows its send's metadata: {sent}"
        );
        let shown = outgoing(app.transcript(ann, Some(&s.username)).await);
        // Found by its text: the bot's answer to the user's first "hello" may come later.
        let notification = shown
            .iter()
            .find(|m| m["text"] == "Visitor on /pricing: hello?")
            .unwrap()
            .clone();
        let row = notification["reply_markup"]["inline_keyboard"][0].clone();

        // Each button answers as its send said: an alert, a toast, or silently. (Once
        // relaygram takes the bot's updates: Telegram refuses an answer that comes late.)
        until("relaygram to take the bot's updates", || async {
            let u = app.get("/v1/updates?limit=1", &s.key).await;
            (!u.body["data"].as_array()?.is_empty()).then_some(())
        })
        .await;
        let take = app
            .press(&s.username, ann, &notification, &row[0]["callback_data"])
            .await;
        assert_eq!(take["text"], "Taken: c-17 is yours", "{take}");
        assert_eq!(take["show_alert"], true, "{take}");
        let skip = app
            .press(&s.username, ann, &notification, &row[1]["callback_data"])
            .await;
        assert_eq!(skip["text"], "Skipped", "{skip}");
        assert_eq!(skip["show_alert"], false, "{skip}");
        let later = app
            .press(&s.username, ann, &notification, &row[2]["callback_data"])
            .await;
        assert!(later["text"].is_null(), "{later}");

        // The press reaches the app with the send's metadata.
        let pressed = event(&app, &s.key, "callback.received", 1).await;
        assert_eq!(pressed["data"]["data"], "take:c-17", "{pressed}");
        assert_eq!(
            pressed["data"]["metadata"],
            json!({"conversation": "c-17", "visitor": {"page": "/pricing"}}),
            "{pressed}"
        );

        // So does a reply to the message.
        app.sandbox_post(
            &format!("/sandbox/users/{ann}/messages"),
            json!({"bot": s.username, "text": "On my way",
                   "reply_to_message_id": notification["message_id"]}),
        )
        .await;
        let replied = until("the reply's event", || async {
            let a = app
                .get("/v1/events?type=message.received&limit=200", &s.key)
                .await;
            a.body["data"]
                .as_array()?
                .iter()
                .find(|e| e["data"]["message"]["text"] == "On my way")
                .cloned()
        })
        .await;
        assert_eq!(
            replied["data"]["reply_to"]["message_id"], a["messages"][0]["id"],
            "{replied}"
        );
        assert_eq!(
            replied["data"]["reply_to"]["metadata"]["conversation"], "c-17",
            "{replied}"
        );

        // Bad input: metadata that is not an object or is too long, an answer on a URL
        // button, show_alert without an answer, an answer over Telegram's 200.
        for (body, field) in [
            (json!({"metadata": [1]}), "metadata"),
            (json!({"metadata": {"x": "y".repeat(5000)}}), "metadata"),
            (
                json!({"buttons": [[{"text": "Go", "url": "https://e.x", "answer": "hi"}]]}),
                "buttons",
            ),
            (
                json!({"buttons": [[{"text": "Go", "callback_data": "go", "show_alert": true}]]}),
                "buttons",
            ),
            (
                json!({"buttons": [[{"text": "Go", "callback_data": "go", "answer": "a".repeat(201)}]]}),
                "buttons",
            ),
        ] {
            let mut request = json!({"to": {"chat_id": ann}, "text": "x"});
            for (k, v) in body.as_object().unwrap() {
                request[k] = v.clone();
            }
            let refused = app.post("/v1/messages", &s.key, request).await;
            assert_eq!(
                refused.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{field}: {}",
                refused.text
            );
            assert_eq!(refused.body["field"], field, "{}", refused.text);
        }
        app.stop().await;
    }
}

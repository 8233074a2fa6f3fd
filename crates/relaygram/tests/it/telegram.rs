//! The Bot API client against the sandbox: every failure lands in its class.

use std::time::Duration;

use relaygram::telegram::{BotToken, TelegramClient, TelegramError};
use relaygram_sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};

/// Whether an error is in the expected class.
type Expect = fn(&TelegramError) -> bool;

async fn fault(http: &reqwest::Client, sandbox: &Sandbox, spec: Value) {
    let r = http
        .post(format!("{}/sandbox/faults", sandbox.url()))
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
}

#[tokio::test]
async fn failures_are_classified_against_the_sandbox() {
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    let made: Value = http
        .post(format!("{}/sandbox/bots", sandbox.url()))
        .json(&json!({"username": "classify_bot"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = BotToken::parse(made["token"].as_str().unwrap()).unwrap();
    let client = TelegramClient::new(&sandbox.url(), Duration::from_secs(20));

    let me = client.get_me(&token).await.unwrap();
    assert_eq!(me.username.as_deref(), Some("classify_bot"));
    assert!(me.is_bot);

    let send = async |chat: i64| {
        client
            .call::<_, Value>(
                &token,
                "sendMessage",
                &json!({"chat_id": chat, "text": "hi"}),
            )
            .await
            .unwrap_err()
    };
    let cases: Vec<(Value, Expect)> = vec![
        (
            json!({"kind": "blocked"}),
            |e| matches!(e, TelegramError::ChatGone(d) if d.contains("blocked")),
        ),
        (json!({"kind": "deactivated"}), |e| {
            matches!(e, TelegramError::ChatGone(_))
        }),
        (json!({"kind": "kicked"}), |e| {
            matches!(e, TelegramError::ChatGone(_))
        }),
        (json!({"kind": "chat_not_found"}), |e| {
            matches!(e, TelegramError::ChatGone(_))
        }),
        (
            json!({"kind": "migrated", "migrate_to_chat_id": -1001234567890_i64}),
            |e| {
                *e == TelegramError::Migrated {
                    new_chat_id: -1001234567890,
                }
            },
        ),
        (json!({"kind": "flood", "retry_after": 3}), |e| {
            *e == TelegramError::RetryAfter { seconds: 3 }
        }),
        (json!({"kind": "server_error"}), |e| {
            matches!(e, TelegramError::Transient(_))
        }),
        (json!({"kind": "server_error", "status": 502}), |e| {
            matches!(e, TelegramError::Transient(_))
        }),
        // The connection closes after the request was read: Telegram may have acted.
        (json!({"kind": "drop_connection"}), |e| {
            matches!(e, TelegramError::Unanswered(_))
        }),
        (
            json!({"kind": "timeout", "delay_ms": 100}),
            |e| matches!(e, TelegramError::Transient(d) if d.contains("504")),
        ),
    ];
    for (i, (spec, check)) in cases.into_iter().enumerate() {
        let chat = 1000 + i64::try_from(i).unwrap();
        let mut spec = spec;
        spec["bot"] = json!("classify_bot");
        spec["method"] = json!("sendMessage");
        spec["chat_id"] = json!(chat);
        spec["count"] = json!(1);
        fault(&http, &sandbox, spec.clone()).await;
        let err = send(chat).await;
        assert!(check(&err), "{spec} classified as {err:?}");
        assert!(!err.to_string().contains(token.expose()), "{err}");
    }

    // A call that outlives the client's timeout is unanswered (it may have been done).
    fault(
        &http,
        &sandbox,
        json!({"kind": "timeout", "delay_ms": 3000, "bot": "classify_bot", "method": "getMe", "count": 1}),
    )
    .await;
    let impatient = TelegramClient::new(&sandbox.url(), Duration::from_millis(300));
    let timed_out = impatient.get_me(&token).await.unwrap_err();
    assert!(
        matches!(&timed_out, TelegramError::Unanswered(d) if d.contains("timeout")),
        "{timed_out:?}"
    );

    // Telegram's own refusals.
    let empty = client
        .call::<_, Value>(&token, "sendMessage", &json!({"chat_id": 1, "text": ""}))
        .await
        .unwrap_err();
    assert!(
        matches!(
            empty,
            TelegramError::BadRequest(_) | TelegramError::ChatGone(_)
        ),
        "{empty:?}"
    );
    let unknown = BotToken::parse("1:AAnotRegisteredAnywhere").unwrap();
    assert!(matches!(
        client.get_me(&unknown).await.unwrap_err(),
        TelegramError::Unauthorized(_)
    ));
    sandbox.shutdown().await;
}

//! Webhook delivery to a real HTTP server on loopback: secret header, retries with backoff,
//! per-chat order, getWebhookInfo, and the 409 for getUpdates while a webhook is set.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use relaygram_sandbox::SandboxConfig;
use serde_json::{Value, json};

use crate::{Harness, eventually};

/// What a webhook received: the secret header and the update.
type Deliveries = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A webhook receiver that records what it gets and fails the first `fail_first` deliveries.
#[derive(Clone, Default)]
struct Receiver {
    got: Deliveries,
    fail_first: Arc<Mutex<usize>>,
}

impl Receiver {
    async fn serve(&self) -> String {
        let r = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            post(
                move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
                    let r = r.clone();
                    async move {
                        let mut fail = r.fail_first.lock().unwrap();
                        if *fail > 0 {
                            *fail -= 1;
                            return StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        let secret = headers
                            .get("x-telegram-bot-api-secret-token")
                            .map(|v| v.to_str().unwrap().to_string());
                        r.got.lock().unwrap().push((secret, body));
                        StatusCode::OK
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/hook")
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

#[tokio::test]
async fn updates_are_posted_with_the_secret_header() {
    let h = Harness::start().await;
    let (token, _) = h.bot("hook_bot").await;
    let rx = Receiver::default();
    let url = rx.serve().await;
    let (status, body) = h
        .api(&token, "setWebhook", json!({"url": url, "secret_token": "s3cr3t-_X", "max_connections": 5, "allowed_updates": ["message"]}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["description"], "Webhook was set");
    let info = h.ok(&token, "getWebhookInfo", json!({})).await;
    assert_eq!(info["url"], json!(url));
    assert_eq!(info["max_connections"], json!(5));
    assert_eq!(info["allowed_updates"], json!(["message"]));
    assert_eq!(
        h.err(&token, "getUpdates", json!({})).await,
        (409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first".into())
    );
    let user = h.user("Alice").await;
    h.say(user, "hook_bot", "/start").await;
    eventually("the update to arrive", || async {
        (rx.count() == 1).then_some(())
    })
    .await;
    let (secret, update) = rx.got.lock().unwrap()[0].clone();
    assert_eq!(secret.as_deref(), Some("s3cr3t-_X"));
    assert_eq!(update["message"]["text"], "/start");
    let info = h.ok(&token, "getWebhookInfo", json!({})).await;
    assert_eq!(info["pending_update_count"], json!(0));

    let (status, body) = h.api(&token, "deleteWebhook", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(body["description"], "Webhook was deleted");
    assert_eq!(h.ok(&token, "getWebhookInfo", json!({})).await["url"], "");
}

#[tokio::test]
async fn bad_webhook_settings_are_refused() {
    let h = Harness::start().await;
    let (token, _) = h.bot("bad_hook_bot").await;
    for (params, wording) in [
        (
            json!({"url": "http://example.com/hook"}),
            "Bad Request: bad webhook: An HTTPS URL must be provided for webhook",
        ),
        (
            json!({"url": "https://example.com:9999/hook"}),
            "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443",
        ),
        (
            json!({"url": "not a url"}),
            "Bad Request: bad webhook: invalid webhook URL specified",
        ),
        (
            json!({"url": "https://example.com/hook", "secret_token": "has space"}),
            "Bad Request: secret token contains unallowed characters",
        ),
        (
            json!({"url": "https://example.com/hook", "secret_token": "x".repeat(257)}),
            "Bad Request: secret token contains unallowed characters",
        ),
        (
            json!({"url": "https://example.com/hook", "max_connections": 101}),
            "Bad Request: bad webhook: max_connections must be between 1 and 100",
        ),
        (
            json!({"url": "https://example.com/hook", "max_connections": 0}),
            "Bad Request: bad webhook: max_connections must be between 1 and 100",
        ),
    ] {
        assert_eq!(
            h.err(&token, "setWebhook", params.clone()).await,
            (400, wording.into()),
            "for {params}"
        );
    }
    assert_eq!(
        h.ok(&token, "getWebhookInfo", json!({})).await["url"],
        "",
        "nothing was set"
    );
    h.ok(
        &token,
        "setWebhook",
        json!({"url": "https://example.com:8443/hook", "secret_token": "A".repeat(256)}),
    )
    .await;
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_backoff_and_reported() {
    // Ten times faster: the 1 s, 2 s backoff steps take 0.1 s, 0.2 s.
    let h = Harness::with(SandboxConfig {
        time_scale: 10.0,
        ..SandboxConfig::default()
    })
    .await;
    let (token, _) = h.bot("retry_bot").await;
    let rx = Receiver::default();
    *rx.fail_first.lock().unwrap() = 2;
    let url = rx.serve().await;
    h.ok(&token, "setWebhook", json!({"url": url})).await;
    let user = h.user("Alice").await;
    h.say(user, "retry_bot", "one").await;
    h.say(user, "retry_bot", "two").await;
    eventually("both updates after two failures", || async {
        (rx.count() == 2).then_some(())
    })
    .await;
    let texts: Vec<Value> = rx
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|(_, u)| u["message"]["text"].clone())
        .collect();
    assert_eq!(
        texts,
        [json!("one"), json!("two")],
        "one chat's updates stay in order across retries"
    );
    let info = h.ok(&token, "getWebhookInfo", json!({})).await;
    assert_eq!(
        info["last_error_message"],
        "Wrong response from the webhook: 500 Internal Server Error"
    );
    assert!(info["last_error_date"].is_i64());
    let stats = h.get("/sandbox/stats").await;
    assert_eq!(stats["bots"][0]["webhook_failures"], json!(2));
    assert_eq!(stats["bots"][0]["webhook_deliveries"], json!(2));
}

#[tokio::test]
async fn an_unreachable_webhook_keeps_updates_pending() {
    let h = Harness::with(SandboxConfig {
        time_scale: 10.0,
        ..SandboxConfig::default()
    })
    .await;
    let (token, _) = h.bot("down_bot").await;
    // A port nothing listens on: bind one, note it, drop it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    h.ok(
        &token,
        "setWebhook",
        json!({"url": format!("http://127.0.0.1:{port}/hook")}),
    )
    .await;
    let user = h.user("Alice").await;
    h.say(user, "down_bot", "hello?").await;
    let info = eventually("a delivery error", || async {
        let info = h.ok(&token, "getWebhookInfo", json!({})).await;
        info.get("last_error_message").is_some().then_some(info)
    })
    .await;
    assert_eq!(info["last_error_message"], "Connection refused");
    assert_eq!(info["pending_update_count"], json!(1));
    // Switching to polling hands the update over.
    h.ok(&token, "deleteWebhook", json!({})).await;
    let got = h.ok(&token, "getUpdates", json!({})).await;
    assert_eq!(got[0]["message"]["text"], "hello?");
}

#[tokio::test]
async fn a_slow_chat_does_not_hold_up_other_chats() {
    let h = Harness::with(SandboxConfig {
        webhook_timeout: Duration::from_secs(60),
        ..SandboxConfig::default()
    })
    .await;
    let (token, _) = h.bot("par_bot").await;
    let slow_user = h.user("Slow").await;
    let fast_user = h.user("Fast").await;
    let release = Arc::new(tokio::sync::Notify::new());
    let got = Arc::new(Mutex::new(Vec::<Value>::new()));
    let app = {
        let release = release.clone();
        let got = got.clone();
        axum::Router::new().route(
            "/hook",
            post(move |axum::Json(body): axum::Json<Value>| {
                let release = release.clone();
                let got = got.clone();
                async move {
                    if body["message"]["text"] == "slow" {
                        release.notified().await;
                    }
                    got.lock().unwrap().push(body["message"]["text"].clone());
                    StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    h.ok(
        &token,
        "setWebhook",
        json!({"url": format!("http://{addr}/hook")}),
    )
    .await;
    h.say(slow_user, "par_bot", "slow").await;
    h.say(slow_user, "par_bot", "after slow").await;
    h.say(fast_user, "par_bot", "fast").await;
    eventually("the other chat's update", || async {
        (got.lock().unwrap().as_slice() == [json!("fast")]).then_some(())
    })
    .await;
    release.notify_one();
    eventually("the slow chat in order", || async {
        (got.lock().unwrap().len() == 3).then_some(())
    })
    .await;
    assert_eq!(
        got.lock().unwrap().as_slice(),
        [json!("fast"), json!("slow"), json!("after slow")]
    );
}

#[tokio::test]
async fn a_webhook_that_does_not_answer_in_time_is_retried() {
    let h = Harness::with(SandboxConfig {
        webhook_timeout: Duration::from_millis(200),
        ..SandboxConfig::default()
    })
    .await;
    let (token, _) = h.bot("slow_hook_bot").await;
    let calls = Arc::new(Mutex::new(0usize));
    let app = {
        let calls = calls.clone();
        axum::Router::new().route(
            "/hook",
            post(move || {
                let calls = calls.clone();
                async move {
                    let first = {
                        let mut n = calls.lock().unwrap();
                        *n += 1;
                        *n == 1
                    };
                    if first {
                        // Never answers: the sandbox must give up and retry.
                        std::future::pending::<()>().await;
                    }
                    StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    h.ok(
        &token,
        "setWebhook",
        json!({"url": format!("http://{addr}/hook")}),
    )
    .await;
    let user = h.user("Alice").await;
    h.say(user, "slow_hook_bot", "are you there?").await;
    let info = eventually("the retry to succeed", || async {
        let info = h.ok(&token, "getWebhookInfo", json!({})).await;
        (info["pending_update_count"] == json!(0)).then_some(info)
    })
    .await;
    assert_eq!(info["last_error_message"], "Read timeout expired");
    assert_eq!(*calls.lock().unwrap(), 2);
}

//! Bots against the sandbox: add, list, read with live state, update, webhook, remove.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Options, PUBLIC_URL, TestApp, engines};

#[tokio::test]
async fn bot_with_public_url_gets_a_webhook_with_a_secret() {
    for engine in engines() {
        let app = TestApp::spawn_with(
            engine,
            Options {
                public_url: Some(PUBLIC_URL.into()),
                ..Options::default()
            },
        )
        .await;
        let tenant = app.tenant("Shop").await;
        let (_, key) = app.tenant_key(&tenant).await;
        let (tg_id, token) = app.sandbox_bot("shop_bot").await;

        let added = app.post("/v1/bots", &key, json!({"token": token})).await;
        assert_eq!(
            added.status,
            StatusCode::CREATED,
            "{engine}: {}",
            added.text
        );
        let bot_id = added.body["id"].as_str().unwrap().to_string();
        assert!(bot_id.starts_with("bot_"));
        assert_eq!(added.body["telegram_id"], tg_id);
        assert_eq!(added.body["username"], "shop_bot");
        assert_eq!(added.body["mode"], "webhook");
        assert_eq!(added.body["enabled"], true);
        let expected_url = format!("{PUBLIC_URL}/telegram/webhook/{bot_id}");
        assert_eq!(added.body["webhook_url"], expected_url.as_str());

        // The sandbox (standing in for Telegram) holds the webhook with a random secret.
        let state = app.sandbox_bot_state(tg_id).await;
        assert_eq!(state["webhook"]["url"], expected_url.as_str(), "{state}");
        let secret = state["webhook"]["secret_token"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(secret.len() >= 32 && secret.len() <= 256, "{secret}");
        assert!(
            secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        );
        let allowed: Vec<String> =
            serde_json::from_value(state["allowed_updates"].clone()).unwrap();
        assert!(allowed.contains(&"message".to_string()), "{allowed:?}");
        assert!(
            allowed.contains(&"callback_query".to_string()),
            "{allowed:?}"
        );
        // The secret is never in our API.
        assert!(!added.text.contains(&secret));

        // GET one includes Telegram's live webhook info.
        let one = app.get(&format!("/v1/bots/{bot_id}"), &key).await;
        assert_eq!(one.status, StatusCode::OK, "{}", one.text);
        assert_eq!(
            one.body["telegram"]["webhook_info"]["url"],
            expected_url.as_str(),
            "{}",
            one.text
        );
        assert!(one.body["telegram"]["webhook_info"]["pending_update_count"].is_u64());
        assert!(!one.text.contains(&secret));

        // Registering again rotates the secret and can move the URL.
        let again = app
            .post(
                &format!("/v1/bots/{bot_id}/webhook"),
                &key,
                json!({"base_url": "https://moved.example.com/"}),
            )
            .await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.text);
        let moved = format!("https://moved.example.com/telegram/webhook/{bot_id}");
        assert_eq!(again.body["webhook_url"], moved.as_str());
        let state = app.sandbox_bot_state(tg_id).await;
        assert_eq!(state["webhook"]["url"], moved.as_str());
        assert_ne!(
            state["webhook"]["secret_token"],
            Value::from(secret.clone())
        );
        // Without a body, the configured public URL is used.
        let back = app
            .call(
                reqwest::Method::POST,
                &format!("/v1/bots/{bot_id}/webhook"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(back.status, StatusCode::OK, "{}", back.text);
        assert_eq!(back.body["webhook_url"], expected_url.as_str());

        // Telegram refusing the URL is the caller's problem (422), and changes nothing.
        let refused = app
            .post(
                &format!("/v1/bots/{bot_id}/webhook"),
                &key,
                json!({"base_url": "http://insecure.example.com"}),
            )
            .await;
        refused.assert_problem(422, "validation-failed");
        assert_eq!(refused.body["field"], "base_url");
        let state = app.sandbox_bot_state(tg_id).await;
        assert_eq!(state["webhook"]["url"], expected_url.as_str());

        // Removing the bot deletes its webhook.
        let removed = app.delete(&format!("/v1/bots/{bot_id}"), &key).await;
        assert_eq!(removed.status, StatusCode::NO_CONTENT);
        let state = app.sandbox_bot_state(tg_id).await;
        assert_eq!(state["webhook"], Value::Null, "{state}");
        app.get(&format!("/v1/bots/{bot_id}"), &key)
            .await
            .assert_problem(404, "not-found");
        app.stop().await;
    }
}

#[tokio::test]
async fn bot_without_public_url_polls_and_can_be_disabled() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let tenant = app.tenant("Shop").await;
        let (tg_id, token) = app.sandbox_bot("poller_bot").await;

        // An admin key must name the tenant.
        app.post("/v1/bots", &app.admin_key, json!({"token": token}))
            .await
            .assert_problem(422, "validation-failed");
        app.post(
            "/v1/bots",
            &app.admin_key,
            json!({"token": token, "tenant_id": "ten_nope"}),
        )
        .await
        .assert_problem(422, "validation-failed");

        let added = app
            .post(
                "/v1/bots",
                &app.admin_key,
                json!({"token": token, "tenant_id": tenant}),
            )
            .await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
        assert_eq!(added.body["mode"], "polling");
        assert_eq!(added.body["webhook_url"], Value::Null);
        let bot_id = added.body["id"].as_str().unwrap().to_string();
        assert_eq!(app.sandbox_bot_state(tg_id).await["webhook"], Value::Null);

        // No public URL: registering a webhook needs a base URL.
        app.call(
            reqwest::Method::POST,
            &format!("/v1/bots/{bot_id}/webhook"),
            Some(&app.admin_key),
            None,
        )
        .await
        .assert_problem(409, "no-public-url");

        let off = app
            .patch(
                &format!("/v1/bots/{bot_id}"),
                &app.admin_key,
                json!({"enabled": false}),
            )
            .await;
        assert_eq!(off.status, StatusCode::OK, "{}", off.text);
        assert_eq!(off.body["enabled"], false);
        app.patch(&format!("/v1/bots/{bot_id}"), &app.admin_key, json!({}))
            .await
            .assert_problem(422, "validation-failed");

        let list = app
            .get(&format!("/v1/bots?tenant_id={tenant}"), &app.admin_key)
            .await;
        assert_eq!(list.status, StatusCode::OK);
        let data = list.body["data"].as_array().unwrap();
        assert_eq!(data.len(), 1);
        assert_eq!(data[0]["id"], bot_id.as_str());
        assert_eq!(data[0]["enabled"], false);
        assert!(
            data[0].get("telegram").is_none(),
            "lists do not call Telegram"
        );

        let one = app.get(&format!("/v1/bots/{bot_id}"), &app.admin_key).await;
        assert_eq!(one.body["telegram"]["webhook_info"]["url"], "");

        // Telegram calls are counted by method and outcome.
        let metrics = app
            .call(reqwest::Method::GET, "/metrics", None, None)
            .await
            .text;
        let get_me = metrics
            .lines()
            .find(|l| {
                l.starts_with("relaygram_telegram_requests_total")
                    && l.contains("method=\"getMe\"")
                    && l.contains("outcome=\"ok\"")
            })
            .unwrap_or_else(|| panic!("no getMe counter in {metrics}"));
        assert!(!get_me.ends_with(" 0"), "{get_me}");
        app.stop().await;
    }
}

#[tokio::test]
async fn telegram_failures_are_classified() {
    let app = TestApp::spawn("sqlite").await;
    let tenant = app.tenant("Shop").await;
    let (_, key) = app.tenant_key(&tenant).await;
    let (_, token) = app.sandbox_bot("flaky_bot").await;

    app.fault(json!({"kind": "server_error", "bot": "flaky_bot", "method": "getMe", "count": 1, "status": 502}))
        .await;
    app.post("/v1/bots", &key, json!({"token": token}))
        .await
        .assert_problem(502, "telegram-unavailable");

    app.fault(json!({"kind": "flood", "bot": "flaky_bot", "method": "getMe", "count": 1, "retry_after": 7}))
        .await;
    let flood = app.post("/v1/bots", &key, json!({"token": token})).await;
    flood.assert_problem(503, "telegram-unavailable");
    assert_eq!(flood.body["retry_after"], 7);
    assert_eq!(flood.headers["retry-after"], "7");

    // Nothing was stored by the failed attempts; the next one works.
    assert_eq!(
        app.get("/v1/bots", &key).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let added = app.post("/v1/bots", &key, json!({"token": token})).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);

    // Live state degrades gracefully when Telegram fails.
    let bot_id = added.body["id"].as_str().unwrap();
    app.fault(
        json!({"kind": "server_error", "bot": "flaky_bot", "method": "getWebhookInfo", "count": 1}),
    )
    .await;
    let one = app.get(&format!("/v1/bots/{bot_id}"), &key).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text);
    assert_eq!(one.body["telegram"]["webhook_info"], Value::Null);
    assert!(one.body["telegram"]["error"].is_string());
    app.stop().await;
}

//! Faults on demand: each kind, scoped by bot, chat and method, for N calls or a while.

use std::time::Duration;

use relaygram_sandbox::SandboxConfig;
use serde_json::json;

use crate::Harness;

async fn send(h: &Harness, token: &str, chat: i64) -> (u16, serde_json::Value) {
    h.api(token, "sendMessage", json!({"chat_id": chat, "text": "hi"}))
        .await
}

#[tokio::test]
async fn chat_faults_answer_like_telegram() {
    let h = Harness::start().await;
    let p = h.pair("fault_bot").await;
    for (kind, status, wording) in [
        ("blocked", 403, "Forbidden: bot was blocked by the user"),
        ("deactivated", 403, "Forbidden: user is deactivated"),
        (
            "kicked",
            403,
            "Forbidden: bot was kicked from the group chat",
        ),
        ("chat_not_found", 400, "Bad Request: chat not found"),
    ] {
        h.control(
            "/sandbox/faults",
            json!({"kind": kind, "user_id": p.user_id, "count": 1}),
        )
        .await;
        let (s, body) = send(&h, &p.token, p.user_id).await;
        assert_eq!(
            (s, body["description"].as_str().unwrap()),
            (status, wording),
            "{kind}"
        );
        assert_eq!(
            send(&h, &p.token, p.user_id).await.0,
            200,
            "{kind} was for one call only"
        );
    }
    h.control("/sandbox/faults", json!({"kind": "migrated", "chat_id": p.user_id, "migrate_to_chat_id": -1001234, "count": 1})).await;
    let (s, body) = send(&h, &p.token, p.user_id).await;
    assert_eq!(s, 400);
    assert_eq!(body["parameters"]["migrate_to_chat_id"], json!(-1001234));
}

#[tokio::test]
async fn faults_are_scoped_to_their_chat_bot_and_method() {
    let h = Harness::start().await;
    let p = h.pair("scope_bot").await;
    let other = h.user("Bob").await;
    h.say(other, "scope_bot", "/start").await;
    h.control(
        "/sandbox/faults",
        json!({"kind": "blocked", "user_id": p.user_id}),
    )
    .await;
    assert_eq!(
        send(&h, &p.token, other).await.0,
        200,
        "another chat is fine"
    );
    assert_eq!(send(&h, &p.token, p.user_id).await.0, 403);
    assert_eq!(
        send(&h, &p.token, p.user_id).await.0,
        403,
        "without count it lasts"
    );
    assert_eq!(
        h.ok(&p.token, "getMe", json!({})).await["is_bot"],
        json!(true),
        "methods without a chat are unaffected"
    );
    let faults = h.get("/sandbox/faults").await;
    assert_eq!(faults["faults"][0]["hits"], json!(2));
    let r = h
        .http
        .delete(format!("{}/sandbox/faults", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(send(&h, &p.token, p.user_id).await.0, 200);

    let (other_token, _) = h.bot("other_bot").await;
    h.control(
        "/sandbox/faults",
        json!({"kind": "server_error", "bot": "scope_bot", "method": "sendMessage"}),
    )
    .await;
    assert_eq!(h.api(&other_token, "getMe", json!({})).await.0, 200);
    assert_eq!(h.api(&p.token, "getMe", json!({})).await.0, 200);
    let (s, body) = send(&h, &p.token, p.user_id).await;
    assert_eq!(s, 500);
    assert_eq!(body["description"], "Internal Server Error");
    let id = h.get("/sandbox/faults").await["faults"][0]["id"]
        .as_u64()
        .unwrap();
    let r = h
        .http
        .delete(format!("{}/sandbox/faults/{id}", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(send(&h, &p.token, p.user_id).await.0, 200);
    assert_eq!(
        h.post("/sandbox/faults", json!({"kind": "earthquake"}))
            .await
            .0,
        400
    );
    assert_eq!(
        h.post(
            "/sandbox/faults",
            json!({"kind": "server_error", "status": 404})
        )
        .await
        .0,
        422
    );
}

#[tokio::test]
async fn flood_faults_and_gateway_errors() {
    let h = Harness::start().await;
    let p = h.pair("gw_bot").await;
    h.control(
        "/sandbox/faults",
        json!({"kind": "flood", "retry_after": 7, "count": 1}),
    )
    .await;
    let (s, body) = send(&h, &p.token, p.user_id).await;
    assert_eq!(s, 429);
    assert_eq!(body["parameters"]["retry_after"], json!(7));
    h.control(
        "/sandbox/faults",
        json!({"kind": "server_error", "status": 502, "count": 1}),
    )
    .await;
    let r = h
        .http
        .post(format!("{}/bot{}/sendMessage", h.url, p.token))
        .json(&json!({"chat_id": p.user_id, "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(
        r.text().await.unwrap().contains("502 Bad Gateway"),
        "an nginx page, not JSON"
    );
    assert_eq!(
        h.transcript(p.user_id, "gw_bot").await.len(),
        1,
        "neither was sent"
    );
}

#[tokio::test]
async fn a_fault_window_ends_by_itself() {
    let h = Harness::start().await;
    let p = h.pair("window_bot").await;
    h.control(
        "/sandbox/faults",
        json!({"kind": "server_error", "duration_ms": 300}),
    )
    .await;
    assert_eq!(send(&h, &p.token, p.user_id).await.0, 500);
    crate::eventually("the window to close", || async {
        (send(&h, &p.token, p.user_id).await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn dropped_connections_timeouts_and_lost_responses() {
    let h = Harness::with(SandboxConfig::default()).await;
    let p = h.pair("net_bot").await;
    let url = format!("{}/bot{}/sendMessage", h.url, p.token);
    let body = |t: &str| json!({"chat_id": p.user_id, "text": t});
    async fn outcome(
        h: &Harness,
        url: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, reqwest::Error> {
        h.http.post(url).json(&body).send().await?.json().await
    }

    h.control(
        "/sandbox/faults",
        json!({"kind": "drop_connection", "count": 1}),
    )
    .await;
    assert!(
        outcome(&h, &url, body("dropped")).await.is_err(),
        "the client sees a broken connection"
    );

    h.control(
        "/sandbox/faults",
        json!({"kind": "lost_response", "count": 1}),
    )
    .await;
    assert!(outcome(&h, &url, body("lost")).await.is_err());

    h.control(
        "/sandbox/faults",
        json!({"kind": "timeout", "delay_ms": 60_000, "count": 1}),
    )
    .await;
    let timed_out = h
        .http
        .post(&url)
        .timeout(Duration::from_millis(300))
        .json(&body("timed out"))
        .send()
        .await;
    assert!(timed_out.unwrap_err().is_timeout());

    let texts: Vec<String> = h
        .transcript(p.user_id, "net_bot")
        .await
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_string())
        .collect();
    // Only the ambiguous failure took effect.
    assert_eq!(texts, ["/start", "lost"]);
    let calls = h.get("/sandbox/calls?method=sendMessage").await;
    assert_eq!(
        calls["calls"].as_array().unwrap().len(),
        2,
        "the timed-out call is still held"
    );
}

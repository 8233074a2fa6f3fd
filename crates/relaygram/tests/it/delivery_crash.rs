//! kill -9 of the real binary in the middle of a broadcast: after a restart every message
//! ends in exactly one final state, none is lost, none is delivered twice (checked against
//! the sandbox's transcripts); only messages in flight at the kill may be `unknown`.

use relaygram::store::testing;
use relaygram_sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};

use crate::crash::{ADMIN_KEY, free_port, start};
use crate::helpers::until;

const USERS: usize = 240;

async fn get(http: &reqwest::Client, url: String) -> Option<Value> {
    http.get(url)
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

#[tokio::test]
async fn kill_9_during_a_broadcast_loses_and_doubles_nothing() {
    for engine in testing::engines() {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let s = sandbox.url();
        let dir = tempfile::tempdir().unwrap();
        let db = testing::fresh(engine, dir.path()).await.unwrap();
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut child = start(&db.url, &dir.path().join("data"), port, &s).await;

        let bot: Value = http
            .post(format!("{s}/sandbox/bots"))
            .json(&json!({"username": "bcast_bot", "first_name": "B"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let tenant: Value = http
            .post(format!("{base}/v1/tenants"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"name": "t"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let tenant = tenant["id"].as_str().unwrap().to_string();
        let added: Value = http
            .post(format!("{base}/v1/bots"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"token": bot["token"], "tenant_id": tenant}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(added["id"].is_string(), "{added}");
        let mut users = Vec::new();
        for i in 0..USERS {
            let u: Value = http
                .post(format!("{s}/sandbox/users"))
                .json(&json!({"first_name": format!("U{i}")}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let id = u["id"].as_i64().unwrap();
            // Telegram lets a bot write only to users who wrote to it first.
            http.post(format!("{s}/sandbox/users/{id}/messages"))
                .json(&json!({"bot": "bcast_bot", "text": "hi"}))
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap();
            users.push(id);
        }
        let to: Vec<Value> = users.iter().map(|u| json!({"chat_id": u})).collect();
        let accepted: Value = http
            .post(format!("{base}/v1/messages?tenant_id={tenant}"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"to": to, "text": "breaking news"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let bc = accepted["broadcast_id"]
            .as_str()
            .expect("a broadcast")
            .to_string();
        let progress = |http: reqwest::Client, url: String| async move { get(&http, url).await };
        let url = format!("{base}/v1/broadcasts/{bc}?tenant_id={tenant}");
        until("a part of the broadcast to be sent", || async {
            let v = progress(http.clone(), url.clone()).await?;
            (v["sent"].as_i64()? >= 40).then_some(())
        })
        .await;
        let pid = child.id().unwrap().to_string();
        assert!(
            std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status()
                .unwrap()
                .success()
        );
        child.wait().await.unwrap();

        let mut child = start(&db.url, &dir.path().join("data"), port, &s).await;
        let done = until("the broadcast to finish after the restart", || async {
            let v = progress(http.clone(), url.clone()).await?;
            (v["remaining"] == 0).then_some(v)
        })
        .await;
        assert_eq!(done["total"], USERS as i64);

        // Every message: one final state, matching what the users received.
        let mut statuses = std::collections::HashMap::new();
        let mut after: Option<String> = None;
        loop {
            let mut url =
                format!("{base}/v1/messages?tenant_id={tenant}&broadcast_id={bc}&limit=200");
            if let Some(a) = &after {
                url.push_str(&format!("&after={a}"));
            }
            let page = get(&http, url).await.unwrap();
            for m in page["data"].as_array().unwrap() {
                statuses.insert(
                    m["chat_id"].as_i64().unwrap(),
                    m["status"].as_str().unwrap().to_string(),
                );
            }
            match page["next_cursor"].as_str() {
                Some(c) => after = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(statuses.len(), USERS, "one message per user");
        let mut unknown = 0;
        for u in &users {
            let t = get(
                &http,
                format!("{s}/sandbox/chats/{u}/messages?bot=bcast_bot"),
            )
            .await
            .unwrap();
            let received = t["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["direction"] == "out" && m["text"] == "breaking news")
                .count();
            match statuses[u].as_str() {
                "sent" => assert_eq!(received, 1, "user {u}: sent means delivered once"),
                "unknown" => {
                    unknown += 1;
                    assert!(received <= 1, "user {u}: never twice");
                }
                other => panic!("user {u}: unexpected final state {other}"),
            }
        }
        // Only what was in flight at the kill can be unknown: one batch at most.
        assert!(unknown <= 10, "{unknown} unknown");
        child.kill().await.unwrap();
        sandbox.shutdown().await;
    }
}

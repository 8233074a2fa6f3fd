//! kill -9 of the real binary while removals are due: after a restart every member whose
//! access ended is removed, each exactly once (one leave in the group's history), and
//! nobody with access is touched.

use relaygram::store::testing;
use relaygram_sandbox::{Sandbox, SandboxConfig};
use serde_json::{Value, json};

use crate::crash::{ADMIN_KEY, free_port, start};
use crate::helpers::{sandbox_transcript, until};

const USERS: usize = 30;

async fn post(http: &reqwest::Client, url: String, key: Option<&str>, body: Value) -> Value {
    let mut r = http.post(url).json(&body);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    let r = r.send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {v}");
    v
}

async fn states(http: &reqwest::Client, base: &str, tenant: &str, gated: &str) -> Vec<Value> {
    let Ok(r) = http
        .get(format!(
            "{base}/v1/memberships?gated_chat_id={gated}&limit=200&tenant_id={tenant}"
        ))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
    else {
        return Vec::new();
    };
    let v: Value = r.json().await.unwrap_or(Value::Null);
    v["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn kill_9_with_removals_due_removes_each_member_once() {
    for engine in testing::engines() {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let s = sandbox.url();
        let dir = tempfile::tempdir().unwrap();
        let db = testing::fresh(engine, dir.path()).await.unwrap();
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let mut child = start(&db.url, &dir.path().join("data"), port, &s).await;

        let bot = post(
            &http,
            format!("{s}/sandbox/bots"),
            None,
            json!({"username": "gate_crash_bot", "first_name": "G"}),
        )
        .await;
        let tenant = post(
            &http,
            format!("{base}/v1/tenants"),
            Some(ADMIN_KEY),
            json!({"name": "t"}),
        )
        .await;
        let tenant = tenant["id"].as_str().unwrap().to_string();
        post(
            &http,
            format!("{base}/v1/bots"),
            Some(ADMIN_KEY),
            json!({"token": bot["token"], "tenant_id": tenant}),
        )
        .await;
        let owner = post(
            &http,
            format!("{s}/sandbox/users"),
            None,
            json!({"first_name": "Owner"}),
        )
        .await["id"]
            .as_i64()
            .unwrap();
        let group = post(
            &http,
            format!("{s}/sandbox/groups"),
            None,
            json!({"title": "VIP", "type": "supergroup", "owner": owner}),
        )
        .await["id"]
            .as_i64()
            .unwrap();
        post(
            &http,
            format!("{s}/sandbox/groups/{group}/bots"),
            None,
            json!({"bot": "gate_crash_bot", "status": "administrator",
                   "rights": {"can_invite_users": true, "can_restrict_members": true}}),
        )
        .await;
        let gated = post(
            &http,
            format!("{base}/v1/gated-chats"),
            Some(ADMIN_KEY),
            json!({"chat_id": group, "tenant_id": tenant}),
        )
        .await["id"]
            .as_str()
            .unwrap()
            .to_string();

        // Everyone's access ends a few seconds from now, but one keeps access forever.
        let ends = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(25);
        let mut users = Vec::new();
        for i in 0..=USERS {
            let u = post(
                &http,
                format!("{s}/sandbox/users"),
                None,
                json!({"first_name": format!("U{i}")}),
            )
            .await["id"]
                .as_i64()
                .unwrap();
            let mut grant =
                json!({"telegram_user_id": u, "gated_chat_ids": [gated], "tenant_id": tenant});
            if i < USERS {
                grant["ends_at"] = json!(ends.to_string());
            }
            let g = post(
                &http,
                format!("{base}/v1/entitlements"),
                Some(ADMIN_KEY),
                grant,
            )
            .await;
            let link = g["chats"][0]["invite_link"].as_str().unwrap().to_string();
            post(
                &http,
                format!("{s}/sandbox/users/{u}/join"),
                None,
                json!({"invite_link": link}),
            )
            .await;
            users.push(u);
        }
        until("everyone in", || async {
            let st = states(&http, &base, &tenant, &gated).await;
            (st.iter()
                .filter(|m| m["state"] == "member" && m["job_id"].is_null())
                .count()
                == USERS + 1)
                .then_some(())
        })
        .await;
        assert!(
            jiff::Timestamp::now() < ends,
            "setting up took longer than the access lasts"
        );

        // The moment the first removal is under way, kill -9.
        until("a removal under way", || async {
            let st = states(&http, &base, &tenant, &gated).await;
            st.iter()
                .any(|m| m["state"] == "removing" || m["state"] == "removed")
                .then_some(())
        })
        .await;
        std::process::Command::new("kill")
            .args(["-9", &child.id().unwrap().to_string()])
            .status()
            .unwrap();
        child.wait().await.unwrap();
        let mut child = start(&db.url, &dir.path().join("data"), port, &s).await;

        until("every lapsed member removed", || async {
            let st = states(&http, &base, &tenant, &gated).await;
            (st.iter().filter(|m| m["state"] == "removed").count() == USERS).then_some(())
        })
        .await;
        let st = states(&http, &base, &tenant, &gated).await;
        let keeper = users[USERS];
        let kept = st
            .iter()
            .find(|m| m["telegram_user_id"] == json!(keeper))
            .unwrap();
        assert_eq!(kept["state"], "member", "{kept}");

        // Each removal once: one "left" service message per removed user in the group.
        let history = sandbox_transcript(&http, &s, &group.to_string(), None).await;
        for u in &users[..USERS] {
            let leaves = history
                .iter()
                .filter(|m| m["left_chat_member"]["id"] == json!(u))
                .count();
            assert_eq!(leaves, 1, "user {u} left {leaves} times");
        }
        assert!(
            !history
                .iter()
                .any(|m| m["left_chat_member"]["id"] == json!(keeper)),
            "the member with access stays"
        );
        child.kill().await.unwrap();
    }
}

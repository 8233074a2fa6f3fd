//! Tenants, API keys and isolation.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, engines};

#[tokio::test]
async fn tenants_and_keys_lifecycle() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let admin = app.admin_key.clone();

        let created = app
            .post("/v1/tenants", &admin, json!({"name": "  Acme shop "}))
            .await;
        assert_eq!(
            created.status,
            StatusCode::CREATED,
            "{engine}: {}",
            created.text
        );
        let tenant = created.body["id"].as_str().unwrap().to_string();
        assert!(tenant.starts_with("ten_"));
        assert_eq!(created.body["name"], "Acme shop");
        assert!(created.body["created_at"].as_str().unwrap().ends_with('Z'));

        let got = app.get(&format!("/v1/tenants/{tenant}"), &admin).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.body["id"], tenant);

        // A key is shown once; lists show only the prefix.
        let made = app
            .post(
                &format!("/v1/tenants/{tenant}/api-keys"),
                &admin,
                json!({"name": "django"}),
            )
            .await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
        let key = made.body["key"].as_str().unwrap().to_string();
        let key_id = made.body["id"].as_str().unwrap().to_string();
        assert!(key.starts_with("rg_"), "{key}");
        assert!(key.starts_with(made.body["prefix"].as_str().unwrap()));
        assert_eq!(made.body["scope"], "tenant");

        let listed = app
            .get(&format!("/v1/tenants/{tenant}/api-keys"), &admin)
            .await;
        assert_eq!(listed.status, StatusCode::OK);
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
        assert!(!listed.text.contains(&key), "lists never show the key");
        assert!(listed.body["data"][0].get("key").is_none());
        assert_eq!(
            listed.body["data"][0]["revoked_at"],
            serde_json::Value::Null
        );

        // An empty body is fine for key creation.
        let unnamed = app
            .raw(
                reqwest::Method::POST,
                &format!("/v1/tenants/{tenant}/api-keys"),
                Some(&admin),
                "application/json",
                vec![],
            )
            .await;
        assert_eq!(unnamed.status, StatusCode::CREATED, "{}", unnamed.text);

        // The tenant key works, sees its tenant, and may not create tenants.
        let mine = app.get("/v1/tenants", &key).await;
        assert_eq!(mine.status, StatusCode::OK);
        assert_eq!(mine.body["data"].as_array().unwrap().len(), 1);
        assert_eq!(mine.body["data"][0]["id"], tenant);
        app.post("/v1/tenants", &key, json!({"name": "sneaky"}))
            .await
            .assert_problem(403, "forbidden");

        // Revocation is immediate.
        let revoked = app
            .delete(&format!("/v1/tenants/{tenant}/api-keys/{key_id}"), &admin)
            .await;
        assert_eq!(revoked.status, StatusCode::NO_CONTENT);
        app.get("/v1/tenants", &key)
            .await
            .assert_problem(401, "unauthorized");
        let listed = app
            .get(&format!("/v1/tenants/{tenant}/api-keys"), &admin)
            .await;
        let revoked_row = listed.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == key_id)
            .unwrap()
            .clone();
        assert!(revoked_row["revoked_at"].is_string());

        app.stop().await;
    }
}

#[tokio::test]
async fn tenant_keys_see_only_their_tenant() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let a = app.tenant("A").await;
        let b = app.tenant("B").await;
        let (_, key_a) = app.tenant_key(&a).await;
        let (key_b_id, key_b) = app.tenant_key(&b).await;

        // Another tenant's resources answer 404, as if they did not exist.
        app.get(&format!("/v1/tenants/{b}"), &key_a)
            .await
            .assert_problem(404, "not-found");
        app.get(&format!("/v1/tenants/{b}/api-keys"), &key_a)
            .await
            .assert_problem(404, "not-found");
        app.post(&format!("/v1/tenants/{b}/api-keys"), &key_a, json!({}))
            .await
            .assert_problem(404, "not-found");
        app.delete(&format!("/v1/tenants/{b}/api-keys/{key_b_id}"), &key_a)
            .await
            .assert_problem(404, "not-found");
        // … also when addressed through one's own tenant.
        app.delete(&format!("/v1/tenants/{a}/api-keys/{key_b_id}"), &key_a)
            .await
            .assert_problem(404, "not-found");
        // B's key still works: nothing changed.
        assert_eq!(app.get("/v1/tenants", &key_b).await.status, StatusCode::OK);

        // Bots: A's bot is invisible to B.
        let (_, token) = app.sandbox_bot("tenant_a_bot").await;
        let added = app.post("/v1/bots", &key_a, json!({"token": token})).await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
        let bot = added.body["id"].as_str().unwrap().to_string();
        assert_eq!(added.body["tenant_id"], a);
        for answer in [
            app.get(&format!("/v1/bots/{bot}"), &key_b).await,
            app.patch(
                &format!("/v1/bots/{bot}"),
                &key_b,
                json!({"enabled": false}),
            )
            .await,
            app.delete(&format!("/v1/bots/{bot}"), &key_b).await,
            app.post(
                &format!("/v1/bots/{bot}/webhook"),
                &key_b,
                json!({"base_url": "https://x.example.com"}),
            )
            .await,
        ] {
            answer.assert_problem(404, "not-found");
        }
        let b_list = app.get("/v1/bots", &key_b).await;
        assert_eq!(b_list.body["data"].as_array().unwrap().len(), 0);
        let b_list = app.get(&format!("/v1/bots?tenant_id={a}"), &key_b).await;
        assert_eq!(b_list.body["data"].as_array().unwrap().len(), 0);
        // A tenant key cannot add a bot to another tenant.
        let (_, token2) = app.sandbox_bot("other_tenant_bot").await;
        app.post("/v1/bots", &key_a, json!({"token": token2, "tenant_id": b}))
            .await
            .assert_problem(404, "not-found");
        // A's bot is untouched.
        let a_bot = app.get(&format!("/v1/bots/{bot}"), &key_a).await;
        assert_eq!(a_bot.status, StatusCode::OK);
        assert_eq!(a_bot.body["enabled"], true);
        app.stop().await;
    }
}

#[tokio::test]
async fn lists_are_cursor_paginated() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let mut made = Vec::new();
        for i in 0..5 {
            made.push(app.tenant(&format!("T{i}")).await);
        }
        let mut seen = Vec::new();
        let mut path = "/v1/tenants?limit=2".to_string();
        loop {
            let page = app.get(&path, &app.admin_key).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.text);
            let data = page.body["data"].as_array().unwrap();
            assert!(data.len() <= 2);
            seen.extend(data.iter().map(|t| t["id"].as_str().unwrap().to_string()));
            match page.body["next_cursor"].as_str() {
                Some(next) => path = format!("/v1/tenants?limit=2&after={next}"),
                None => break,
            }
        }
        assert_eq!(seen, made, "{engine}: every tenant once, in creation order");
        app.get("/v1/tenants?limit=0", &app.admin_key)
            .await
            .assert_problem(400, "validation-failed");
        app.get("/v1/tenants?limit=1000", &app.admin_key)
            .await
            .assert_problem(400, "validation-failed");
        app.get("/v1/tenants?limit=abc", &app.admin_key)
            .await
            .assert_problem(400, "validation-failed");
        app.stop().await;
    }
}

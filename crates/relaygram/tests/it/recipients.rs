//! No silent no-ops, end to end on both engines: a send that reaches nobody is a 422
//! naming each target and why (nothing stored), a partial list goes to the usable targets
//! and reports the others in `skipped`, a connect code is a target with a subscriber
//! count, throttle keys are per recipient unless scoped to the tenant, and every list
//! endpoint refuses an unknown query parameter or a bad value.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::delivery::{linked, send, settled, setup, user};
use crate::helpers::{TestApp, engines, until};

async fn message_count(app: &TestApp, key: &str) -> i64 {
    let s = app.get("/v1/stats", key).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.text);
    s.body["totals"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap_or(0))
        .sum()
}

fn reasons(skipped: &Value) -> Vec<(Value, String)> {
    skipped
        .as_array()
        .unwrap_or_else(|| panic!("no skipped list: {skipped}"))
        .iter()
        .map(|s| {
            assert!(s["detail"].as_str().is_some_and(|d| !d.is_empty()), "{s}");
            (
                s["target"].clone(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_send_that_reaches_nobody_is_refused_and_a_partial_list_reports_what_it_skipped() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "reach").await;
        let c = app
            .post(
                "/v1/categories",
                &s.key,
                json!({"key": "alerts", "name": "Alerts", "default_enabled": false}),
            )
            .await;
        assert_eq!(c.status, StatusCode::CREATED, "{}", c.text);
        let (alice, alice_link) = linked(&app, &s, "Alice", "user-1").await;
        // Bob blocks the bot (his link ends); Carol's link is deleted.
        let (bob, bob_link) = linked(&app, &s, "Bob", "user-2").await;
        app.sandbox_post(
            &format!("/sandbox/users/{bob}/block"),
            json!({"bot": s.username}),
        )
        .await;
        until("Bob's link to end", || async {
            let l = app.get(&format!("/v1/links/{bob_link}"), &s.key).await;
            (l.body["active"] == false).then_some(())
        })
        .await;
        let (carol, carol_link) = linked(&app, &s, "Carol", "user-3").await;
        // The link is visible a moment before its confirmation reply is stored: wait for
        // the reply, so the count below only changes if a refused send stored something.
        until("Carol's link confirmation", || async {
            (!app.bot_texts(carol, &s.username).await.is_empty()).then_some(())
        })
        .await;
        let d = app.delete(&format!("/v1/links/{carol_link}"), &s.key).await;
        assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.text);
        let before = message_count(&app, &s.key).await;

        // Nobody: 422 naming each target and why, and nothing stored.
        for (to, want) in [
            (json!({"external_id": "u-never"}), vec!["no_active_link"]),
            (json!({"category": "alerts"}), vec!["opted_out"]),
            (json!({"link_id": bob_link}), vec!["link_inactive"]),
            (
                json!([{"link_id": carol_link}, {"external_id": "user-2"}, {"chat_id": bob}]),
                vec!["no_such_link", "no_active_link", "chat_blocked"],
            ),
        ] {
            let a = app
                .post("/v1/messages", &s.key, json!({"to": to, "text": "hello?"}))
                .await;
            a.assert_problem(422, "no-recipients");
            assert_eq!(a.body["field"], "to", "{}", a.text);
            let got: Vec<String> = reasons(&a.body["skipped"])
                .into_iter()
                .map(|(_, r)| r)
                .collect();
            assert_eq!(got, want, "{engine} {to}: {}", a.text);
        }
        assert_eq!(message_count(&app, &s.key).await, before, "nothing stored");
        // A target that is wrong whatever the moment stays a validation error.
        app.post(
            "/v1/messages",
            &s.key,
            json!({"to": {"category": "alertz"}, "text": "typo"}),
        )
        .await
        .assert_problem(422, "validation-failed");

        // Some usable: they get it, the others are reported.
        let a = send(
            &app,
            &s.key,
            json!({"to": [{"link_id": alice_link}, {"link_id": bob_link},
                          {"external_id": "u-never"}, {"link_id": "link_missing"}],
                   "text": "lead #7 is yours"}),
        )
        .await;
        assert_eq!(a["count"], 1, "{a}");
        assert_eq!(a["messages"][0]["status"], "queued", "{a}");
        assert_eq!(
            reasons(&a["skipped"]),
            [
                (json!({"link_id": bob_link}), "link_inactive".to_string()),
                (json!({"external_id": "u-never"}), "no_active_link".into()),
                (json!({"link_id": "link_missing"}), "no_such_link".into()),
            ],
            "{engine}"
        );
        let id = a["messages"][0]["id"].as_str().unwrap();
        settled(&app, &s.key, id, "sent").await;
        assert!(
            app.bot_texts(alice, &s.username)
                .await
                .contains(&"lead #7 is yours".to_string())
        );

        // A connect code is a target; its subscriber count is on the code.
        let code = app
            .post(
                "/v1/connect-codes",
                &s.key,
                json!({"bot_id": s.bot_id, "label": "Night shift"}),
            )
            .await;
        assert_eq!(code.status, StatusCode::CREATED, "{}", code.text);
        assert_eq!(code.body["subscriber_count"], 0, "{}", code.text);
        let code_id = code.body["id"].as_str().unwrap().to_string();
        let to_code = json!({"to": {"connect_code_id": code_id}, "text": "shift starts"});
        let a = app.post("/v1/messages", &s.key, to_code.clone()).await;
        a.assert_problem(422, "no-recipients");
        assert_eq!(a.body["skipped"][0]["reason"], "no_active_link");
        let operator = user(&app, "Olga", &s.username).await;
        app.sandbox_post(
            &format!("/sandbox/users/{operator}/messages"),
            json!({"bot": s.username, "text": format!("/start {}", code.body["code"].as_str().unwrap())}),
        )
        .await;
        until("the operator's link", || async {
            let c = app
                .get(&format!("/v1/connect-codes/{code_id}"), &s.key)
                .await;
            (c.body["subscriber_count"] == 1).then_some(())
        })
        .await;
        let a = send(&app, &s.key, to_code).await;
        assert_eq!(a["count"], 1, "{a}");
        assert_eq!(a["messages"][0]["chat_id"], operator, "{a}");
        let listed = app
            .get(&format!("/v1/connect-codes?bot_id={}", s.bot_id), &s.key)
            .await;
        assert_eq!(
            listed.body["data"][0]["subscriber_count"], 1,
            "{}",
            listed.text
        );
        app.post(
            "/v1/messages",
            &s.key,
            json!({"to": {"connect_code_id": "ccd_missing"}, "text": "x"}),
        )
        .await
        .assert_problem(422, "validation-failed");
        app.stop().await;
    }
}

#[tokio::test]
async fn throttle_keys_are_per_recipient_unless_scoped_to_the_tenant() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "throttle").await;
        let alice = user(&app, "Alice", &s.username).await;
        let bob = user(&app, "Bob", &s.username).await;
        let carol = user(&app, "Carol", &s.username).await;
        let alert = |to: Value, extra: Value| {
            let mut body = json!({"bot_id": s.bot_id, "to": to, "text": "disk full",
                                  "throttle_key": "disk", "throttle_seconds": 600});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            body
        };
        let statuses = |a: &Value| -> Vec<(i64, String)> {
            let mut v: Vec<(i64, String)> = a["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["chat_id"].as_i64().unwrap(),
                        m["status"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            v.sort();
            v
        };

        // Per recipient (the default): Bob's alert is not silenced by Alice's.
        let a = send(&app, &s.key, alert(json!({"chat_id": alice}), json!({}))).await;
        assert_eq!(a["status"], "queued", "{a}");
        let b = send(&app, &s.key, alert(json!({"chat_id": bob}), json!({}))).await;
        assert_eq!(b["status"], "queued", "{engine}: {b}");
        let again = send(&app, &s.key, alert(json!({"chat_id": alice}), json!({}))).await;
        assert_eq!(again["status"], "throttled", "{again}");
        // A list: each recipient's own window decides.
        let list = send(
            &app,
            &s.key,
            alert(
                json!([{"chat_id": alice}, {"chat_id": bob}, {"chat_id": carol}]),
                json!({}),
            ),
        )
        .await;
        assert_eq!(list["status"], "queued", "{list}");
        let mut want = vec![
            (alice, "throttled".to_string()),
            (bob, "throttled".to_string()),
            (carol, "queued".to_string()),
        ];
        want.sort();
        assert_eq!(statuses(&list), want, "{engine}");
        for m in list["messages"].as_array().unwrap() {
            let id = m["id"].as_str().unwrap();
            let end = match m["status"].as_str().unwrap() {
                "queued" => "sent",
                other => other,
            };
            settled(&app, &s.key, id, end).await;
        }
        settled(
            &app,
            &s.key,
            a["messages"][0]["id"].as_str().unwrap(),
            "sent",
        )
        .await;
        let texts = app.bot_texts(carol, &s.username).await;
        assert_eq!(texts.iter().filter(|t| *t == "disk full").count(), 1);
        let texts = app.bot_texts(alice, &s.username).await;
        assert_eq!(texts.iter().filter(|t| *t == "disk full").count(), 1);

        // Across the tenant: the first request with the key goes, the next is throttled.
        let tenant = json!({"throttle_key": "deploy", "throttle_scope": "tenant"});
        let a = send(
            &app,
            &s.key,
            alert(json!({"chat_id": alice}), tenant.clone()),
        )
        .await;
        assert_eq!(a["status"], "queued", "{a}");
        let b = send(&app, &s.key, alert(json!({"chat_id": bob}), tenant.clone())).await;
        assert_eq!(b["status"], "throttled", "{b}");
        assert_eq!(b["messages"][0]["status"], "throttled", "{b}");
        // The two scopes keep their own windows for one key.
        let r = send(
            &app,
            &s.key,
            alert(json!({"chat_id": carol}), json!({"throttle_key": "deploy"})),
        )
        .await;
        assert_eq!(r["status"], "queued", "{r}");

        let bad = app
            .post(
                "/v1/messages",
                &s.key,
                json!({"bot_id": s.bot_id, "to": {"chat_id": alice}, "text": "x", "throttle_scope": "tenant"}),
            )
            .await;
        bad.assert_problem(422, "validation-failed");
        assert_eq!(bad.body["field"], "throttle_scope");
        app.post(
            "/v1/messages",
            &s.key,
            json!({"bot_id": s.bot_id, "to": {"chat_id": alice}, "text": "x",
                   "throttle_key": "k", "throttle_scope": "world"}),
        )
        .await
        .assert_problem(422, "validation-failed");
        app.stop().await;
    }
}

/// Every `GET` that takes query parameters, from the OpenAPI document, refuses an unknown
/// one naming it, and a bad `limit` where it has one: 400 with the problem type of a bad
/// body field, whatever else the call would have done.
#[tokio::test]
async fn every_list_endpoint_refuses_an_unknown_query_parameter_or_a_bad_value() {
    let app = TestApp::spawn("sqlite").await;
    let doc = app.get("/v1/openapi.json", &app.admin_key).await.body;
    let mut checked = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(get) = item.get("get") else { continue };
        let params: Vec<&str> = get["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "query")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        if params.is_empty() {
            continue;
        }
        let concrete = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    "x_missing"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let mut cases = vec![("categroy=alerts", "categroy")];
        if params.contains(&"limit") {
            cases.extend([
                ("limit=abc", "limit"),
                ("limit=0", "limit"),
                ("limit=201", "limit"),
            ]);
        }
        for (query, field) in cases {
            let a = app
                .get(&format!("{concrete}?{query}"), &app.admin_key)
                .await;
            assert_eq!(
                a.status,
                StatusCode::BAD_REQUEST,
                "{path}?{query}: {}",
                a.text
            );
            a.assert_problem(400, "validation-failed");
            assert_eq!(a.body["field"], field, "{path}?{query}: {}", a.text);
        }
        checked.insert(path.clone());
    }
    // The list endpoints are all among them.
    for must in [
        "/v1/tenants",
        "/v1/bots",
        "/v1/links",
        "/v1/connect-codes",
        "/v1/categories",
        "/v1/templates",
        "/v1/messages",
        "/v1/broadcasts",
        "/v1/stats",
        "/v1/schedules",
        "/v1/schedules/{id}/runs",
        "/v1/digests",
        "/v1/updates",
        "/v1/event-endpoints",
        "/v1/events",
    ] {
        assert!(checked.contains(must), "{must} not checked: {checked:?}");
    }
    // Bad values of typed filters, each named.
    for (query, field) in [
        ("/v1/messages?tenant_id=t&status=sentt", "status"),
        ("/v1/stats?status=sentt", "status"),
        ("/v1/messages?tenant_id=t&order=up", "order"),
        ("/v1/messages?tenant_id=t&since=yesterday", "since"),
        ("/v1/messages?tenant_id=t&chat_id=abc", "chat_id"),
        ("/v1/bots?enabled=maybe", "enabled"),
        ("/v1/links?active=yes&tenant_id=t", "active"),
        ("/v1/updates?status=done", "status"),
        ("/v1/events?tenant_id=t&wait=99", "wait"),
    ] {
        let a = app.get(query, &app.admin_key).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}: {}", a.text);
        a.assert_problem(400, "validation-failed");
        assert_eq!(a.body["field"], field, "{query}: {}", a.text);
    }
    app.stop().await;
}

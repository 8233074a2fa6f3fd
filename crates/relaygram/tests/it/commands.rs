//! Custom commands against the sandbox: the API, the Telegram menu kept in step with the
//! store, bad input, Telegram failures and tenant isolation.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, engines, until};

const BUILT_IN: [&str; 5] = ["start", "help", "settings", "link", "stop"];

/// A tenant with a key and one bot added through the API.
struct Setup {
    key: String,
    bot_id: String,
    token: String,
    telegram_id: i64,
}

async fn setup(app: &TestApp, name: &str) -> Setup {
    let tenant = app.tenant(name).await;
    let (_, key) = app.tenant_key(&tenant).await;
    let (telegram_id, token) = app.sandbox_bot(&format!("{name}_bot")).await;
    let added = app.post("/v1/bots", &key, json!({"token": token})).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    Setup {
        key,
        bot_id: added.body["id"].as_str().unwrap().to_string(),
        token,
        telegram_id,
    }
}

/// The menu as Telegram (the sandbox) answers `getMyCommands`: (name, description) pairs.
async fn menu(app: &TestApp, token: &str) -> Vec<(String, String)> {
    let answer: Value = app
        .http
        .post(format!("{}/bot{token}/getMyCommands", app.sandbox.url()))
        .json(&json!({}))
        .send()
        .await
        .expect("sandbox answers")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["ok"], true, "{answer}");
    answer["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["command"].as_str().unwrap().to_string(),
                c["description"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn menu_names(app: &TestApp, token: &str) -> Vec<String> {
    menu(app, token).await.into_iter().map(|(n, _)| n).collect()
}

fn with_built_ins(custom: &[&str]) -> Vec<String> {
    BUILT_IN
        .iter()
        .chain(custom)
        .map(|s| s.to_string())
        .collect()
}

async fn custom_names(app: &TestApp, s: &Setup) -> Vec<String> {
    let list = app
        .get(&format!("/v1/bots/{}/commands", s.bot_id), &s.key)
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["command"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn commands_are_stored_and_synced_to_the_menu() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "shop").await;
        let base = format!("/v1/bots/{}/commands", s.bot_id);

        // Adding the bot synced the menu: the built-ins, with their descriptions.
        let initial = menu(&app, &s.token).await;
        assert_eq!(
            initial.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
            with_built_ins(&[]),
            "{engine}"
        );
        assert!(initial.iter().all(|(_, d)| !d.is_empty()));

        // Create a reply command and a forwarded one (a leading slash is accepted).
        let price = app
            .post(
                &base,
                &s.key,
                json!({"command": "price", "description": "Today's price",
                       "action": {"type": "reply", "text": "A coffee is 3 €."}}),
            )
            .await;
        assert_eq!(
            price.status,
            StatusCode::CREATED,
            "{engine}: {}",
            price.text
        );
        assert_eq!(price.body["command"], "price");
        assert_eq!(price.body["bot_id"], s.bot_id.as_str());
        assert_eq!(price.body["description"], "Today's price");
        assert_eq!(
            price.body["action"],
            json!({"type": "reply", "text": "A coffee is 3 €."})
        );
        assert_eq!(price.body["position"], 0);
        assert!(price.body["created_at"].as_str().unwrap().ends_with('Z'));
        let order = app
            .post(
                &base,
                &s.key,
                json!({"command": "/order", "description": "Place an order",
                       "action": {"type": "forward"}}),
            )
            .await;
        assert_eq!(order.status, StatusCode::CREATED, "{}", order.text);
        assert_eq!(order.body["command"], "order");
        assert_eq!(order.body["action"], json!({"type": "forward"}));
        assert_eq!(order.body["position"], 1);

        // The menu shows built-ins first, then the custom commands in order.
        assert_eq!(
            menu(&app, &s.token).await.last().unwrap(),
            &("order".to_string(), "Place an order".to_string())
        );
        assert_eq!(
            menu_names(&app, &s.token).await,
            with_built_ins(&["price", "order"])
        );
        // The sandbox's control API agrees.
        let state = app.sandbox_bot_state(s.telegram_id).await;
        let default_menu = state["commands"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["scope"] == "default")
            .expect("a default-scope menu");
        assert_eq!(default_menu["commands"].as_array().unwrap().len(), 7);

        // List and get.
        let list = app.get(&base, &s.key).await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.text);
        assert_eq!(list.body["data"].as_array().unwrap().len(), 2);
        assert_eq!(list.body["data"][0]["command"], "price");
        assert_eq!(list.body["data"][1]["position"], 1);
        let built: Vec<&str> = list.body["built_in"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["command"].as_str().unwrap())
            .collect();
        assert_eq!(built, BUILT_IN);
        let one = app.get(&format!("{base}/order"), &s.key).await;
        assert_eq!(one.status, StatusCode::OK, "{}", one.text);
        assert_eq!(one.body["description"], "Place an order");
        assert_eq!(one.body["position"], 1);

        // Patch: new description and action, then move to the front.
        let patched = app
            .patch(
                &format!("{base}/price"),
                &s.key,
                json!({"description": "Prices of the day", "action": {"type": "forward"}}),
            )
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
        assert_eq!(patched.body["description"], "Prices of the day");
        assert_eq!(patched.body["action"], json!({"type": "forward"}));
        assert!(
            menu(&app, &s.token)
                .await
                .contains(&("price".into(), "Prices of the day".into()))
        );
        let moved = app
            .patch(&format!("{base}/order"), &s.key, json!({"position": 0}))
            .await;
        assert_eq!(moved.status, StatusCode::OK, "{}", moved.text);
        assert_eq!(moved.body["position"], 0);
        assert_eq!(custom_names(&app, &s).await, ["order", "price"]);
        assert_eq!(
            menu_names(&app, &s.token).await,
            with_built_ins(&["order", "price"])
        );
        // Insert at a given place.
        let hours = app
            .post(
                &base,
                &s.key,
                json!({"command": "hours", "description": "Opening hours",
                       "action": {"type": "reply", "text": "9 to 5"}, "position": 1}),
            )
            .await;
        assert_eq!(hours.status, StatusCode::CREATED, "{}", hours.text);
        assert_eq!(custom_names(&app, &s).await, ["order", "hours", "price"]);
        assert_eq!(
            menu_names(&app, &s.token).await,
            with_built_ins(&["order", "hours", "price"])
        );

        // The admin key works across tenants.
        let as_admin = app.get(&format!("{base}/hours"), &app.admin_key).await;
        assert_eq!(as_admin.status, StatusCode::OK, "{}", as_admin.text);

        // Delete.
        let deleted = app.delete(&format!("{base}/order"), &s.key).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
        app.get(&format!("{base}/order"), &s.key)
            .await
            .assert_problem(404, "not-found");
        app.delete(&format!("{base}/order"), &s.key)
            .await
            .assert_problem(404, "not-found");
        assert_eq!(custom_names(&app, &s).await, ["hours", "price"]);
        assert_eq!(
            menu_names(&app, &s.token).await,
            with_built_ins(&["hours", "price"])
        );

        // Removing the bot removes its commands.
        let gone = app.delete(&format!("/v1/bots/{}", s.bot_id), &s.key).await;
        assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.text);
        app.get(&base, &s.key)
            .await
            .assert_problem(404, "not-found");
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_input_is_a_problem_and_changes_nothing() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "cafe").await;
        let base = format!("/v1/bots/{}/commands", s.bot_id);
        let ok = app
            .post(
                &base,
                &s.key,
                json!({"command": "price", "description": "Today's price",
                       "action": {"type": "reply", "text": "3 €"}}),
            )
            .await;
        assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
        let before_list = app.get(&base, &s.key).await.body;
        let before_menu = menu(&app, &s.token).await;

        let reply = |text: String| json!({"type": "reply", "text": text});
        let create = |command: &str, description: &str, action: Value| json!({"command": command, "description": description, "action": action});
        let fwd = json!({"type": "forward"});
        // (body, status, problem slug, field)
        let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
            (
                create("Price2", "d", fwd.clone()),
                422,
                "validation-failed",
                Some("command"),
            ),
            (
                create("", "d", fwd.clone()),
                422,
                "validation-failed",
                Some("command"),
            ),
            (
                create("/", "d", fwd.clone()),
                422,
                "validation-failed",
                Some("command"),
            ),
            (
                create(&"a".repeat(33), "d", fwd.clone()),
                422,
                "validation-failed",
                Some("command"),
            ),
            (
                create("pri-ce", "d", fwd.clone()),
                422,
                "validation-failed",
                Some("command"),
            ),
            (
                create("prix é", "d", fwd.clone()),
                422,
                "validation-failed",
                Some("command"),
            ),
            (
                create("ok", "", fwd.clone()),
                422,
                "validation-failed",
                Some("description"),
            ),
            (
                create("ok", "  ", fwd.clone()),
                422,
                "validation-failed",
                Some("description"),
            ),
            (
                create("ok", &"d".repeat(257), fwd.clone()),
                422,
                "validation-failed",
                Some("description"),
            ),
            (
                create("ok", "two\nlines", fwd.clone()),
                422,
                "validation-failed",
                Some("description"),
            ),
            (
                create("ok", "d", reply(String::new())),
                422,
                "validation-failed",
                Some("action.text"),
            ),
            (
                create("ok", "d", reply("x".repeat(4097))),
                422,
                "validation-failed",
                Some("action.text"),
            ),
            (
                create("ok", "d", json!({"type": "shout"})),
                422,
                "validation-failed",
                Some("action.type"),
            ),
            (
                create("ok", "d", json!({"type": "reply"})),
                422,
                "validation-failed",
                Some("action"),
            ),
            (
                create("ok", "d", json!("forward")),
                422,
                "validation-failed",
                Some("action"),
            ),
            (
                json!({"command": "ok", "description": "d"}),
                422,
                "validation-failed",
                None,
            ),
            (
                json!({"command": 5, "description": "d", "action": fwd.clone()}),
                422,
                "validation-failed",
                Some("command"),
            ),
            (
                json!({"command": "ok", "description": "d", "action": fwd.clone(), "extra": 1}),
                422,
                "validation-failed",
                None,
            ),
            (
                json!({"command": "ok", "description": "d", "action": fwd.clone(), "position": 2}),
                422,
                "validation-failed",
                Some("position"),
            ),
            (
                json!({"command": "ok", "description": "d", "action": fwd.clone(), "position": -1}),
                422,
                "validation-failed",
                Some("position"),
            ),
            (create("start", "d", fwd.clone()), 409, "conflict", None),
            (create("/help", "d", fwd.clone()), 409, "conflict", None),
            (create("price", "again", fwd.clone()), 409, "conflict", None),
        ];
        for (body, status, slug, field) in cases {
            let a = app.post(&base, &s.key, body.clone()).await;
            a.assert_problem(status, slug);
            if let Some(field) = field {
                assert_eq!(a.body["field"], field, "{engine}: {body} → {}", a.text);
            }
        }
        let malformed = app
            .raw(
                reqwest::Method::POST,
                &base,
                Some(&s.key),
                "application/json",
                b"{\"command\": ".to_vec(),
            )
            .await;
        malformed.assert_problem(400, "malformed-json");

        // Patches.
        let price = format!("{base}/price");
        let patches: Vec<(Value, u16, &str, Option<&str>)> = vec![
            (json!({}), 422, "validation-failed", None),
            (
                json!({"description": ""}),
                422,
                "validation-failed",
                Some("description"),
            ),
            (
                json!({"action": {"type": "reply", "text": ""}}),
                422,
                "validation-failed",
                Some("action.text"),
            ),
            (
                json!({"position": 1}),
                422,
                "validation-failed",
                Some("position"),
            ),
            (
                json!({"command": "renamed"}),
                422,
                "validation-failed",
                None,
            ),
        ];
        for (body, status, slug, field) in patches {
            let a = app.patch(&price, &s.key, body.clone()).await;
            a.assert_problem(status, slug);
            if let Some(field) = field {
                assert_eq!(a.body["field"], field, "{engine}: {body} → {}", a.text);
            }
        }
        app.patch(&format!("{base}/nope"), &s.key, json!({"description": "d"}))
            .await
            .assert_problem(404, "not-found");
        app.get(&format!("{base}/nope"), &s.key)
            .await
            .assert_problem(404, "not-found");
        app.post(
            "/v1/bots/bot_missing/commands",
            &s.key,
            create("ok", "d", fwd.clone()),
        )
        .await
        .assert_problem(404, "not-found");
        let anonymous = app.call(reqwest::Method::GET, &base, None, None).await;
        anonymous.assert_problem(401, "unauthorized");

        // Nothing changed, in the store or in the menu.
        assert_eq!(app.get(&base, &s.key).await.body, before_list, "{engine}");
        assert_eq!(menu(&app, &s.token).await, before_menu, "{engine}");
        app.stop().await;
    }
}

#[tokio::test]
async fn a_bot_has_at_most_100_commands_including_built_ins() {
    let app = TestApp::spawn("sqlite").await;
    let s = setup(&app, "many").await;
    let base = format!("/v1/bots/{}/commands", s.bot_id);
    for i in 0..95 {
        let a = app
            .post(
                &base,
                &s.key,
                json!({"command": format!("c{i}"), "description": format!("command {i}"),
                       "action": {"type": "forward"}}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{i}: {}", a.text);
    }
    assert_eq!(menu(&app, &s.token).await.len(), 100);
    let over = app
        .post(
            &base,
            &s.key,
            json!({"command": "one_more", "description": "d", "action": {"type": "forward"}}),
        )
        .await;
    over.assert_problem(422, "validation-failed");
    assert_eq!(over.body["field"], "command");
    assert!(
        over.body["detail"].as_str().unwrap().contains("100"),
        "{}",
        over.text
    );
    assert_eq!(custom_names(&app, &s).await.len(), 95);
    assert_eq!(menu(&app, &s.token).await.len(), 100);
    app.stop().await;
}

#[tokio::test]
async fn a_telegram_failure_answers_502_and_stores_nothing() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "flaky").await;
        let base = format!("/v1/bots/{}/commands", s.bot_id);
        let price = json!({"command": "price", "description": "Today's price",
                           "action": {"type": "reply", "text": "3 €"}});
        let fault = json!({"kind": "server_error", "method": "setMyCommands", "count": 1});

        // Create fails at Telegram: nothing stored, menu as before.
        app.fault(fault.clone()).await;
        let failed = app.post(&base, &s.key, price.clone()).await;
        failed.assert_problem(502, "telegram-unavailable");
        assert!(custom_names(&app, &s).await.is_empty(), "{engine}");
        assert_eq!(menu_names(&app, &s.token).await, with_built_ins(&[]));
        // The fault was used up: the same request now works.
        let created = app.post(&base, &s.key, price).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let before = app.get(&format!("{base}/price"), &s.key).await.body;

        // Patch fails: unchanged.
        app.fault(fault.clone()).await;
        app.patch(
            &format!("{base}/price"),
            &s.key,
            json!({"description": "Changed", "action": {"type": "forward"}}),
        )
        .await
        .assert_problem(502, "telegram-unavailable");
        assert_eq!(
            app.get(&format!("{base}/price"), &s.key).await.body,
            before,
            "{engine}"
        );
        assert!(
            menu(&app, &s.token)
                .await
                .contains(&("price".into(), "Today's price".into()))
        );

        // Delete fails: still there.
        app.fault(fault).await;
        app.delete(&format!("{base}/price"), &s.key)
            .await
            .assert_problem(502, "telegram-unavailable");
        assert_eq!(custom_names(&app, &s).await, ["price"]);
        assert_eq!(menu_names(&app, &s.token).await, with_built_ins(&["price"]));
        app.stop().await;
    }
}

#[tokio::test]
async fn another_tenants_bot_is_not_found() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let a = setup(&app, "alpha").await;
        let b = setup(&app, "beta").await;
        let base = format!("/v1/bots/{}/commands", a.bot_id);
        let created = app
            .post(
                &base,
                &a.key,
                json!({"command": "price", "description": "d", "action": {"type": "forward"}}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let menu_before = menu(&app, &a.token).await;

        // Tenant B's key sees none of it and can change none of it.
        app.get(&base, &b.key)
            .await
            .assert_problem(404, "not-found");
        app.get(&format!("{base}/price"), &b.key)
            .await
            .assert_problem(404, "not-found");
        app.post(
            &base,
            &b.key,
            json!({"command": "evil", "description": "d", "action": {"type": "forward"}}),
        )
        .await
        .assert_problem(404, "not-found");
        app.patch(
            &format!("{base}/price"),
            &b.key,
            json!({"description": "evil"}),
        )
        .await
        .assert_problem(404, "not-found");
        app.delete(&format!("{base}/price"), &b.key)
            .await
            .assert_problem(404, "not-found");

        assert_eq!(custom_names(&app, &a).await, ["price"], "{engine}");
        assert_eq!(menu(&app, &a.token).await, menu_before);
        // B's own bot is untouched too.
        assert!(custom_names(&app, &b).await.is_empty());
        assert_eq!(menu_names(&app, &b.token).await, with_built_ins(&[]));
        app.stop().await;
    }
}

#[tokio::test]
async fn commands_are_documented_in_openapi() {
    let app = TestApp::spawn("sqlite").await;
    let doc = app
        .call(reqwest::Method::GET, "/v1/openapi.json", None, None)
        .await
        .body;
    let schemas = &doc["components"]["schemas"];
    for name in [
        "CreateCommandRequest",
        "UpdateCommandRequest",
        "CommandView",
        "CommandList",
    ] {
        assert!(
            schemas[name]["example"].is_object(),
            "{name} has no example"
        );
    }
    assert_eq!(
        schemas["CommandAction"]["oneOf"].as_array().unwrap().len(),
        2
    );
    let post = &doc["paths"]["/v1/bots/{id}/commands"]["post"];
    for status in ["201", "409", "422", "502"] {
        assert!(post["responses"][status].is_object(), "POST lacks {status}");
    }
    assert_eq!(post["tags"][0], "commands");
    app.stop().await;
}

#[tokio::test]
async fn a_custom_reply_is_answered_and_excess_commands_are_limited_and_counted() {
    let app = TestApp::spawn("sqlite").await;
    let s = setup(&app, "limits").await;
    let created = app
        .post(
            &format!("/v1/bots/{}/commands", s.bot_id),
            &s.key,
            json!({"command": "price", "description": "Today's price",
                   "action": {"type": "reply", "text": "A coffee is 3 €."}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let user: Value = app
        .http
        .post(format!("{}/sandbox/users", app.sandbox.url()))
        .json(&json!({"first_name": "Alice"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = user["id"].as_i64().unwrap();
    // The default limit is 10 per minute: 12 commands → 10 answers, 1 warning, 1 dropped.
    for _ in 0..12 {
        let r = app
            .http
            .post(format!(
                "{}/sandbox/users/{user}/messages",
                app.sandbox.url()
            ))
            .json(&json!({"bot": "limits_bot", "text": "/price"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    let replies: Vec<String> = until("the bot's replies", || async {
        let out = app.bot_texts(user, "limits_bot").await;
        (out.len() >= 11).then_some(out)
    })
    .await;
    assert_eq!(replies.len(), 11, "{replies:?}");
    assert!(
        replies[..10].iter().all(|r| r == "A coffee is 3 €."),
        "{replies:?}"
    );
    assert_ne!(
        replies[10], "A coffee is 3 €.",
        "the 11th is a request to slow down"
    );

    // The drop is counted in Prometheus, labelled with the bot.
    let series = format!("bot_id=\"{}\"", s.bot_id);
    until("the rate-limit counter", || async {
        let text = app.send(app.http.get(app.url("/metrics"))).await.text;
        text.lines()
            .any(|l| {
                l.starts_with("relaygram_commands_rate_limited_total")
                    && l.contains(&series)
                    && l.contains("decision=\"drop\"")
                    && l.ends_with(" 1")
            })
            .then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn concurrent_changes_leave_the_menu_matching_the_store() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "busy").await;
        let url = app.url(&format!("/v1/bots/{}/commands", s.bot_id));
        let tasks = (0..12).map(|i| {
            app.send(app.http.post(&url).bearer_auth(&s.key).json(
                &json!({"command": format!("c{i}"), "description": format!("command {i}"),
                        "action": {"type": "forward"}}),
            ))
        });
        for answer in futures_util::future::join_all(tasks).await {
            assert_eq!(
                answer.status,
                StatusCode::CREATED,
                "{engine}: {}",
                answer.text
            );
        }
        let stored = custom_names(&app, &s).await;
        assert_eq!(stored.len(), 12, "{engine}");
        let stored: Vec<&str> = stored.iter().map(String::as_str).collect();
        assert_eq!(menu_names(&app, &s.token).await, with_built_ins(&stored));
        app.stop().await;
    }
}

//! Templates over HTTP: saving (checked at save time), listing, replacing, previews that
//! render exactly as a send would, bad input, and tenant isolation.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Answer, TestApp, engines};

async fn put(app: &TestApp, path: &str, key: &str, body: Value) -> Answer {
    app.call(Method::PUT, path, Some(key), Some(body)).await
}

async fn keys(app: &TestApp, key: &str) -> Vec<String> {
    let list = app.get("/v1/templates?limit=200", key).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn templates_are_stored_listed_replaced_previewed_and_deleted() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let tenant = app.tenant("shop").await;
        let (_, key) = app.tenant_key(&tenant).await;

        let created = app
            .post(
                "/v1/templates",
                &key,
                json!({
                    "key": "order.paid",
                    "text": "<b>Order {{ order.id }}</b> from {{ customer }}\n{% for i in order.items %}• {{ i.name }}{% if i.qty > 1 %} ×{{ i.qty }}{% endif %}\n{% endfor %}",
                    "buttons": [[
                        {"text": "Open {{ order.id }}", "url": "https://shop.example.com/o/{{ order.id }}"},
                        {"text": "Refund", "callback_data": "refund:{{ order.id }}"}
                    ]],
                    "description": "When a payment clears"
                }),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        assert_eq!(created.body["tenant_id"], tenant.as_str());
        assert_eq!(created.body["parse_mode"], "html");
        assert_eq!(created.body["description"], "When a payment clears");
        assert_eq!(
            created.body["buttons"][0][1]["callback_data"],
            "refund:{{ order.id }}"
        );

        let got = app.get("/v1/templates/order.paid", &key).await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.text);
        assert_eq!(got.body, created.body);

        // The preview escapes variables for Telegram HTML and renders the buttons.
        let preview = app
            .post(
                "/v1/templates/order.paid/preview",
                &key,
                json!({"data": {
                    "customer": "Bob <bob@example.com> & co",
                    "order": {"id": "A-17", "items": [{"name": "Tea", "qty": 2}, {"name": "<Cake>", "qty": 1}]}
                }}),
            )
            .await;
        assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
        assert_eq!(
            preview.body,
            json!({
                "parts": ["<b>Order A-17</b> from Bob &lt;bob@example.com&gt; &amp; co\n• Tea ×2\n• &lt;Cake&gt;\n"],
                "parse_mode": "html",
                "buttons": [[
                    {"type": "url", "text": "Open A-17", "url": "https://shop.example.com/o/A-17"},
                    {"type": "callback", "text": "Refund", "data": "refund:A-17"}
                ]]
            })
        );

        // A missing variable is a 422 naming it; nothing is rendered.
        let missing = app
            .post(
                "/v1/templates/order.paid/preview",
                &key,
                json!({"data": {"order": {"id": "A-17", "items": []}}}),
            )
            .await;
        missing.assert_problem(422, "validation-failed");
        assert_eq!(missing.body["field"], "data");
        assert!(
            missing.body["detail"]
                .as_str()
                .unwrap()
                .contains("`customer`"),
            "{}",
            missing.text
        );

        // PUT replaces (200) an existing template and creates (201) a new one.
        let replaced = put(
            &app,
            "/v1/templates/order.paid",
            &key,
            json!({"key": "order.paid", "text": "*Order {{ id }}* is paid\\!", "parse_mode": "markdown_v2"}),
        )
        .await;
        assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
        assert_eq!(replaced.body["parse_mode"], "markdown_v2");
        assert_eq!(replaced.body["buttons"], json!([]));
        assert_eq!(replaced.body["description"], Value::Null);
        assert_eq!(replaced.body["created_at"], created.body["created_at"]);
        let preview = app
            .post(
                "/v1/templates/order.paid/preview",
                &key,
                json!({"data": {"id": "A-17.1"}}),
            )
            .await;
        assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
        assert_eq!(
            preview.body["parts"],
            json!(["*Order A\\-17\\.1* is paid\\!"])
        );
        assert_eq!(preview.body["parse_mode"], "markdown_v2");

        let long = put(
            &app,
            "/v1/templates/digest",
            &key,
            json!({"text": "<b>Digest</b>\n\n{% for e in events %}<i>{{ e }}</i>\n\n{% endfor %}"}),
        )
        .await;
        assert_eq!(long.status, StatusCode::CREATED, "{}", long.text);
        // Over 4096 characters: split into numbered parts, each one valid HTML.
        let events: Vec<String> = (0..300)
            .map(|i| format!("event {i} <ok> ").repeat(3))
            .collect();
        let preview = app
            .post(
                "/v1/templates/digest/preview",
                &key,
                json!({"data": {"events": events}}),
            )
            .await;
        assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
        let parts = preview.body["parts"].as_array().unwrap();
        assert!(parts.len() >= 3, "{}", parts.len());
        for (i, part) in parts.iter().enumerate() {
            let part = part.as_str().unwrap();
            assert!(
                part.starts_with(&format!("[{}/{}] ", i + 1, parts.len())),
                "{part}"
            );
            let (text, _) = relaygram_sandbox::markup::parse_html(part).unwrap();
            assert!(relaygram_sandbox::markup::utf16_len(&text) <= 4096);
        }

        // Cursor pages in key order.
        for k in ["a.one", "b.two", "c.three"] {
            let r = app
                .post(
                    "/v1/templates",
                    &key,
                    json!({"key": k, "text": "hi", "parse_mode": "plain"}),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        }
        let first = app.get("/v1/templates?limit=2", &key).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.text);
        assert_eq!(first.body["data"].as_array().unwrap().len(), 2);
        assert_eq!(first.body["data"][0]["key"], "a.one");
        assert_eq!(first.body["next_cursor"], "b.two");
        let second = app.get("/v1/templates?limit=2&after=b.two", &key).await;
        assert_eq!(second.body["data"][0]["key"], "c.three");
        assert_eq!(second.body["data"][1]["key"], "digest");
        let third = app
            .get(
                &format!(
                    "/v1/templates?limit=2&after={}",
                    second.body["next_cursor"].as_str().unwrap()
                ),
                &key,
            )
            .await;
        assert_eq!(third.body["data"][0]["key"], "order.paid");
        assert_eq!(third.body["next_cursor"], Value::Null);

        let deleted = app.delete("/v1/templates/order.paid", &key).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
        app.get("/v1/templates/order.paid", &key)
            .await
            .assert_problem(404, "not-found");
        app.delete("/v1/templates/order.paid", &key)
            .await
            .assert_problem(404, "not-found");
        app.post(
            "/v1/templates/order.paid/preview",
            &key,
            json!({"data": {}}),
        )
        .await
        .assert_problem(404, "not-found");
        assert_eq!(
            keys(&app, &key).await,
            ["a.one", "b.two", "c.three", "digest"]
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_templates_are_refused_at_save_time_and_change_nothing() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let tenant = app.tenant("cafe").await;
        let (_, key) = app.tenant_key(&tenant).await;
        let ok = app
            .post(
                "/v1/templates",
                &key,
                json!({"key": "hello", "text": "Hi {{ name }}"}),
            )
            .await;
        assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);

        let cases: Vec<(Value, &str, &str)> = vec![
            (
                json!({"key": "t", "text": "line one\n{% for x in items %}\n{{ x }"}),
                "text",
                "line 3",
            ),
            (
                json!({"key": "t", "text": "{% if x %}open"}),
                "text",
                "not a valid template",
            ),
            (
                json!({"key": "t", "text": "<b>static</i>"}),
                "text",
                "can't parse entities",
            ),
            (
                json!({"key": "t", "text": "Price: 3.50", "parse_mode": "markdown_v2"}),
                "text",
                "reserved",
            ),
            (
                json!({"key": "t", "text": "   "}),
                "text",
                "not only spaces",
            ),
            (json!({"key": "bad key", "text": "hi"}), "key", "A-Z"),
            (
                json!({"key": "t", "text": "hi", "buttons": [[{"text": "x", "url": "https://a.b", "callback_data": "d"}]]}),
                "buttons",
                "exactly one",
            ),
            (
                json!({"key": "t", "text": "hi", "buttons": [[{"text": "x", "url": "{{ u "}]]}),
                "buttons",
                "buttons[0][0].url",
            ),
            (
                json!({"key": "t", "text": "hi", "buttons": [[]]}),
                "buttons",
                "buttons[0]",
            ),
            (
                json!({"key": "t", "text": "hi", "buttons": [[{"text": "x", "url": "ftp://a.b"}]]}),
                "buttons",
                "http(s)",
            ),
            (
                json!({"key": "t", "text": "hi", "description": "a\u{0}b"}),
                "description",
                "control",
            ),
            (
                json!({"key": "t", "text": "hi", "parse_mode": "markdown"}),
                "parse_mode",
                "",
            ),
        ];
        for (body, field, detail) in cases {
            let answer = app.post("/v1/templates", &key, body.clone()).await;
            answer.assert_problem(422, "validation-failed");
            assert_eq!(answer.body["field"], field, "{body}: {}", answer.text);
            assert!(
                answer.body["detail"].as_str().unwrap().contains(detail),
                "{body}: {}",
                answer.text
            );
        }
        // The same checks guard PUT, and a PUT cannot rename.
        put(
            &app,
            "/v1/templates/hello",
            &key,
            json!({"text": "{{ oops"}),
        )
        .await
        .assert_problem(422, "validation-failed");
        let renamed = put(
            &app,
            "/v1/templates/hello",
            &key,
            json!({"key": "other", "text": "x"}),
        )
        .await;
        renamed.assert_problem(422, "validation-failed");
        assert_eq!(renamed.body["field"], "key");
        // Duplicates conflict; unknown fields are refused.
        app.post(
            "/v1/templates",
            &key,
            json!({"key": "hello", "text": "again"}),
        )
        .await
        .assert_problem(409, "conflict");
        let unknown = app
            .post(
                "/v1/templates",
                &key,
                json!({"key": "u", "text": "x", "colour": "red"}),
            )
            .await;
        assert!(unknown.status.is_client_error(), "{}", unknown.text);
        // A preview with data that is not an object.
        let preview = app
            .post("/v1/templates/hello/preview", &key, json!({"data": [1, 2]}))
            .await;
        preview.assert_problem(422, "validation-failed");
        assert_eq!(preview.body["field"], "data");
        // A variable escaped into markup that breaks only with this data (|safe).
        let safe = app
            .post(
                "/v1/templates",
                &key,
                json!({"key": "raw", "text": "{{ html|safe }}"}),
            )
            .await;
        assert_eq!(safe.status, StatusCode::CREATED, "{}", safe.text);
        let broken = app
            .post(
                "/v1/templates/raw/preview",
                &key,
                json!({"data": {"html": "<b>unclosed"}}),
            )
            .await;
        broken.assert_problem(422, "validation-failed");
        assert_eq!(broken.body["field"], "template");
        assert!(
            broken.text.contains("can't parse entities"),
            "{}",
            broken.text
        );

        // Nothing changed.
        assert_eq!(keys(&app, &key).await, ["hello", "raw"]);
        let hello = app.get("/v1/templates/hello", &key).await;
        assert_eq!(hello.body["text"], "Hi {{ name }}");
        app.stop().await;
    }
}

#[tokio::test]
async fn templates_are_isolated_per_tenant_and_admin_keys_name_the_tenant() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let a = app.tenant("a").await;
        let b = app.tenant("b").await;
        let (_, key_a) = app.tenant_key(&a).await;
        let (_, key_b) = app.tenant_key(&b).await;
        let admin = app.admin_key.clone();

        // An admin key must name the tenant.
        let no_tenant = app
            .post(
                "/v1/templates",
                &admin,
                json!({"key": "welcome", "text": "hi"}),
            )
            .await;
        no_tenant.assert_problem(422, "validation-failed");
        assert_eq!(no_tenant.body["field"], "tenant_id");
        app.get("/v1/templates", &admin)
            .await
            .assert_problem(422, "validation-failed");
        let by_admin = app
            .post(
                "/v1/templates",
                &admin,
                json!({"key": "welcome", "text": "Welcome to A", "tenant_id": a}),
            )
            .await;
        assert_eq!(by_admin.status, StatusCode::CREATED, "{}", by_admin.text);
        assert_eq!(by_admin.body["tenant_id"], a.as_str());
        // Both tenants may use the same key.
        let b_own = app
            .post(
                "/v1/templates",
                &key_b,
                json!({"key": "welcome", "text": "Welcome to B"}),
            )
            .await;
        assert_eq!(b_own.status, StatusCode::CREATED, "{}", b_own.text);

        let a_view = app.get("/v1/templates/welcome", &key_a).await;
        assert_eq!(a_view.body["text"], "Welcome to A");
        let admin_b = app
            .get(&format!("/v1/templates/welcome?tenant_id={b}"), &admin)
            .await;
        assert_eq!(admin_b.body["text"], "Welcome to B");

        // A tenant key naming another tenant finds nothing, and changes nothing.
        let other = format!("?tenant_id={b}");
        app.get(&format!("/v1/templates/welcome{other}"), &key_a)
            .await
            .assert_problem(404, "not-found");
        app.get(&format!("/v1/templates{other}"), &key_a)
            .await
            .assert_problem(404, "not-found");
        app.delete(&format!("/v1/templates/welcome{other}"), &key_a)
            .await
            .assert_problem(404, "not-found");
        put(
            &app,
            &format!("/v1/templates/welcome{other}"),
            &key_a,
            json!({"text": "hijack"}),
        )
        .await
        .assert_problem(404, "not-found");
        app.post(
            &format!("/v1/templates/welcome/preview{other}"),
            &key_a,
            json!({"data": {}}),
        )
        .await
        .assert_problem(404, "not-found");
        app.post(
            "/v1/templates",
            &key_a,
            json!({"key": "x", "text": "x", "tenant_id": b}),
        )
        .await
        .assert_problem(404, "not-found");

        // B deleting its own leaves A's.
        let gone = app.delete("/v1/templates/welcome", &key_b).await;
        assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.text);
        assert_eq!(keys(&app, &key_a).await, ["welcome"]);
        assert!(keys(&app, &key_b).await.is_empty());
        app.get("/v1/templates", "rg_not_a_key_at_all")
            .await
            .assert_problem(401, "unauthorized");
        app.stop().await;
    }
}

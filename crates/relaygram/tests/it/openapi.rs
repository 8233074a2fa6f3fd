//! The OpenAPI document: valid 3.1 structure, every route listed, every route real.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::TestApp;

const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/tenants"),
    ("get", "/v1/tenants"),
    ("get", "/v1/tenants/{id}"),
    ("post", "/v1/tenants/{id}/api-keys"),
    ("get", "/v1/tenants/{id}/api-keys"),
    ("delete", "/v1/tenants/{id}/api-keys/{key_id}"),
    ("post", "/v1/bots"),
    ("get", "/v1/bots"),
    ("get", "/v1/bots/{id}"),
    ("patch", "/v1/bots/{id}"),
    ("delete", "/v1/bots/{id}"),
    ("post", "/v1/bots/{id}/webhook"),
    ("post", "/v1/bots/{id}/commands"),
    ("get", "/v1/bots/{id}/commands"),
    ("get", "/v1/bots/{id}/commands/{command}"),
    ("patch", "/v1/bots/{id}/commands/{command}"),
    ("delete", "/v1/bots/{id}/commands/{command}"),
    ("get", "/v1/bots/{id}/texts"),
    ("get", "/v1/bots/{id}/texts/{key}"),
    ("put", "/v1/bots/{id}/texts/{key}"),
    ("delete", "/v1/bots/{id}/texts/{key}"),
    ("post", "/telegram/webhook/{bot_id}"),
    ("get", "/v1/updates"),
    ("post", "/v1/event-endpoints"),
    ("get", "/v1/event-endpoints"),
    ("get", "/v1/event-endpoints/{id}"),
    ("delete", "/v1/event-endpoints/{id}"),
    ("get", "/v1/events"),
    ("get", "/v1/events/{id}"),
    ("post", "/v1/events/{id}/replay"),
    ("post", "/v1/messages"),
    ("get", "/v1/messages"),
    ("get", "/v1/messages/{id}"),
    ("patch", "/v1/messages/{id}"),
    ("delete", "/v1/messages/{id}"),
    ("post", "/v1/messages/{id}/retry"),
    ("post", "/v1/messages/retry"),
    ("get", "/v1/broadcasts"),
    ("get", "/v1/broadcasts/{id}"),
    ("post", "/v1/broadcasts/{id}/pause"),
    ("post", "/v1/broadcasts/{id}/resume"),
    ("post", "/v1/broadcasts/{id}/cancel"),
    ("get", "/v1/stats"),
    ("get", "/v1/bots/{id}/limits"),
    ("put", "/v1/bots/{id}/limits"),
    ("post", "/v1/link-tokens"),
    ("get", "/v1/link-tokens/{id}"),
    ("get", "/v1/link-tokens/{id}/qr.svg"),
    ("post", "/v1/connect-codes"),
    ("get", "/v1/connect-codes"),
    ("get", "/v1/connect-codes/{id}"),
    ("delete", "/v1/connect-codes/{id}"),
    ("post", "/v1/connect-codes/{id}/rotate"),
    ("get", "/v1/connect-codes/{id}/subscribers"),
    ("get", "/v1/links"),
    ("get", "/v1/links/{id}"),
    ("patch", "/v1/links/{id}"),
    ("delete", "/v1/links/{id}"),
    ("post", "/v1/links/{id}/test"),
    ("post", "/v1/categories"),
    ("get", "/v1/categories"),
    ("get", "/v1/categories/{id}"),
    ("patch", "/v1/categories/{id}"),
    ("delete", "/v1/categories/{id}"),
    ("post", "/v1/templates"),
    ("get", "/v1/templates"),
    ("get", "/v1/templates/{key}"),
    ("put", "/v1/templates/{key}"),
    ("delete", "/v1/templates/{key}"),
    ("post", "/v1/templates/{key}/preview"),
    ("post", "/v1/schedules"),
    ("get", "/v1/schedules"),
    ("get", "/v1/schedules/{id}"),
    ("patch", "/v1/schedules/{id}"),
    ("delete", "/v1/schedules/{id}"),
    ("post", "/v1/schedules/{id}/run"),
    ("get", "/v1/schedules/{id}/runs"),
    ("get", "/v1/digests"),
    ("get", "/v1/digests/{id}"),
    ("post", "/v1/gated-chats"),
    ("get", "/v1/gated-chats"),
    ("get", "/v1/gated-chats/{id}"),
    ("patch", "/v1/gated-chats/{id}"),
    ("delete", "/v1/gated-chats/{id}"),
    ("post", "/v1/gated-chats/{id}/sync"),
    ("post", "/v1/gated-chat-tokens"),
    ("get", "/v1/gated-chat-tokens/{id}"),
    ("post", "/v1/entitlements"),
    ("get", "/v1/entitlements"),
    ("get", "/v1/entitlements/{id}"),
    ("post", "/v1/entitlements/{id}/extend"),
    ("post", "/v1/entitlements/{id}/cancel"),
    ("post", "/v1/entitlements/{id}/revoke"),
    ("get", "/v1/memberships"),
    ("get", "/v1/memberships/{id}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/v1/openapi.json"),
];

fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    if let Some(s) = v.as_str() {
                        out.push(s.to_string());
                    }
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn openapi_document_is_valid_and_lists_every_route() {
    let app = TestApp::spawn("sqlite").await;
    let answer = app.call(Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(answer.status, 200);
    let doc = answer.body;

    // Structure required by OpenAPI 3.1.
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string());
    assert!(doc["info"]["version"].is_string());
    let paths = doc["paths"].as_object().expect("paths object");
    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut documented = BTreeSet::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in paths {
        assert!(path.starts_with('/'), "{path}");
        for (method, op) in item.as_object().unwrap() {
            if !methods.contains(&method.as_str()) {
                continue;
            }
            documented.insert((method.clone(), path.clone()));
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                !responses.is_empty(),
                "{method} {path} documents no response"
            );
            for (code, _) in responses {
                assert!(
                    code == "default" || (code.len() == 3 && code.parse::<u16>().is_ok()),
                    "{method} {path}: bad status key {code}"
                );
            }
            let id = op["operationId"].as_str().expect("operationId").to_string();
            assert!(
                operation_ids.insert(id.clone()),
                "duplicate operationId {id}"
            );
            // Path templates and parameters agree.
            let mut named: Vec<String> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(str::to_string)
                .collect();
            named.sort();
            let mut declared: Vec<String> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .map(|p| p["name"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default();
            declared.sort();
            assert_eq!(named, declared, "{method} {path}: path parameters");
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, expected,
        "documented routes differ from the API"
    );

    // Every reference resolves.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in &refs {
        assert!(resolve(&doc, r).is_some(), "dangling $ref {r}");
    }
    for schema in [
        "Problem",
        "TenantView",
        "BotView",
        "CreatedApiKeyView",
        "BotList",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["TenantView"]["example"].is_object());

    // Fields of local-time delivery and of schedules in each recipient's zone.
    for (schema, fields) in [
        ("SendRequest", &["send_at_local", "default_timezone"][..]),
        ("MessageView", &["send_at_local", "default_timezone"][..]),
        ("CreateScheduleRequest", &["recipient_timezone"][..]),
        ("UpdateScheduleRequest", &["recipient_timezone"][..]),
        (
            "ScheduleView",
            &["recipient_timezone", "next_fire_times", "next_local_times"][..],
        ),
    ] {
        for field in fields {
            assert!(
                doc["components"]["schemas"][schema]["properties"][field].is_object(),
                "{schema}.{field} is not documented"
            );
        }
    }

    // What the document once got wrong (#16): `limit` is 1..=200, `priority` a number or
    // "urgent", `to` one target or a list, `parse_mode` has no legacy Markdown, every
    // operation with a body can answer 413 and 415, examples use real `link_` ids.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["PageSize"]["minimum"], 1);
    assert_eq!(schemas["PageSize"]["maximum"], 200);
    let send = &schemas["SendRequest"]["properties"];
    let priority: Vec<&Value> = send["priority"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(priority[0]["type"], "integer");
    assert_eq!(priority[0]["minimum"], -100);
    assert_eq!(priority[1]["enum"], serde_json::json!(["urgent"]));
    let to = send["to"]["oneOf"].as_array().unwrap();
    assert!(to[0]["oneOf"].is_array(), "one target: {}", send["to"]);
    assert_eq!(to[1]["type"], "array");
    assert_eq!(to[1]["minItems"], 1);
    assert_eq!(
        send["parse_mode"]["enum"],
        serde_json::json!(["HTML", "MarkdownV2", null])
    );
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if op.get("requestBody").is_some() {
                for code in ["400", "413", "415", "422"] {
                    assert!(
                        op["responses"][code].is_object(),
                        "{method} {path} does not document {code}"
                    );
                }
            }
        }
    }
    let text = doc.to_string();
    assert!(
        !text.contains("lnk_"),
        "examples use real link ids (link_…)"
    );
    let description = doc["info"]["description"].as_str().unwrap();
    for word in ["linking", "outbox", "templates", "schedules", "events"] {
        assert!(description.contains(word), "{description}");
    }

    // Every documented route is served (no fallback 404/405 for it).
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{id}", "x_missing")
            .replace("{key_id}", "key_missing")
            .replace("{command}", "missing");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let answer = app.call(method.clone(), &concrete, None, None).await;
        assert_ne!(answer.status, 405, "{method} {path}");
        assert!(
            !(answer.status == 404 && answer.text.contains("no such route")),
            "{method} {path} is documented but not routed"
        );
    }
    app.stop().await;
}

/// An independent validator (openapi-spec-validator, installed by scripts/test) accepts the
/// document as OpenAPI 3.1.
#[tokio::test]
async fn openapi_document_passes_an_independent_validator() {
    let doc = serde_json::to_string(&relaygram::api::openapi()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, doc).unwrap();
    let python = crate::helpers::python();
    assert!(
        python.exists(),
        "{} is missing: run scripts/test, which creates the venv",
        python.display()
    );
    let out = tokio::process::Command::new(&python)
        .args([
            "-c",
            "import json, sys\n\
             from openapi_spec_validator import validate, OpenAPIV31SpecValidator\n\
             validate(json.load(open(sys.argv[1])), cls=OpenAPIV31SpecValidator)\n\
             print('valid')",
        ])
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "the OpenAPI document is invalid:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

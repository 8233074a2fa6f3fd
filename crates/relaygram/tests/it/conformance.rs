//! Every answer the suites get from the server is checked against the OpenAPI document:
//! the status must be documented for that path and method, the content type must be one the
//! document names, and a JSON body must match the schema (problem+json bodies the Problem
//! schema). The test HTTP helpers ([`crate::helpers::TestApp::send`]) call [`check`] on every
//! answer; a violation fails the test that met it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use serde_json::{Value, json};

/// The document (as `GET /v1/openapi.json` serves it) and its compiled schemas.
struct Document {
    doc: Value,
    /// `(method, path template, segments)` of every documented operation.
    operations: Vec<(String, String, Vec<String>)>,
    /// The components with every object closed ([`close_objects`]).
    closed_components: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

static DOCUMENT: LazyLock<Document> = LazyLock::new(|| {
    let doc = serde_json::to_value(relaygram::api::openapi()).expect("the document serializes");
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            let segments = path.split('/').map(str::to_string).collect();
            operations.push((method.clone(), path.clone(), segments));
        }
    }
    let mut closed_components = doc["components"].clone();
    close_objects(&mut closed_components, false);
    // A schema an `allOf` refers to is completed by the other branches: it stays open.
    let mut refs = Vec::new();
    allof_refs(&doc, &mut refs);
    for name in refs {
        if let Some(Value::Object(map)) = closed_components["schemas"].get_mut(&name) {
            map.remove("unevaluatedProperties");
        }
    }
    Document {
        doc,
        closed_components,
        operations,
        validators: Mutex::new(HashMap::new()),
    }
});

/// The documented path template `path` (without its query) belongs to, with the methods
/// documented for it; the template with the most literal segments wins
/// (`/v1/messages/retry` over `/v1/messages/{id}`).
fn template(path: &str) -> Option<(&'static str, Vec<&'static str>)> {
    let given: Vec<&str> = path.split('/').collect();
    let mut best: Option<(&'static str, usize)> = None;
    for (_, template, segments) in &DOCUMENT.operations {
        if segments.len() != given.len() {
            continue;
        }
        let mut literal = 0;
        let fits = segments.iter().zip(&given).all(|(s, g)| {
            if s.starts_with('{') && s.ends_with('}') {
                !g.is_empty()
            } else {
                literal += 1;
                s == g
            }
        });
        if fits && best.is_none_or(|(_, n)| literal > n) {
            best = Some((template.as_str(), literal));
        }
    }
    let (template, _) = best?;
    let methods = DOCUMENT
        .operations
        .iter()
        .filter(|(_, t, _)| t == template)
        .map(|(m, _, _)| m.as_str())
        .collect();
    Some((template, methods))
}

/// A validator for the schema at `pointer` in the document; `#/components/…` references
/// resolve against the document's components.
fn validator(pointer: &str) -> Result<Arc<jsonschema::Validator>, String> {
    let mut cache = DOCUMENT.validators.lock().unwrap();
    if let Some(v) = cache.get(pointer) {
        return Ok(v.clone());
    }
    let schema = DOCUMENT
        .doc
        .pointer(pointer)
        .ok_or_else(|| format!("no schema at {pointer}"))?;
    // The schema as the root of a resource that also holds the components, so that the
    // document's own `#/components/schemas/…` references resolve. Every object that lists
    // its properties is closed: a field the document does not name is a contradiction too
    // (a generated client would drop it).
    let components = DOCUMENT.closed_components.clone();
    let mut schema = schema.clone();
    close_objects(&mut schema, false);
    let schema = &schema;
    let mut root = json!({"components": components});
    match schema {
        Value::Object(map) => {
            for (k, v) in map {
                root[k] = v.clone();
            }
        }
        Value::Bool(true) => {}
        other => return Err(format!("schema at {pointer} is not an object: {other}")),
    }
    let compiled = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&root)
        .map_err(|e| format!("the schema at {pointer} does not compile: {e}"))?;
    let compiled = Arc::new(compiled);
    cache.insert(pointer.to_string(), compiled.clone());
    Ok(compiled)
}

/// Adds `unevaluatedProperties: false` to every object schema that lists `properties` and
/// says nothing of others, except the direct branches of an `allOf` (their parent is closed
/// instead, as `unevaluatedProperties` sees through `allOf`).
fn close_objects(schema: &mut Value, allof_branch: bool) {
    match schema {
        Value::Object(map) => {
            let lists = map.contains_key("properties") || map.contains_key("allOf");
            if lists
                && !allof_branch
                && !map.contains_key("additionalProperties")
                && !map.contains_key("unevaluatedProperties")
            {
                map.insert("unevaluatedProperties".into(), Value::Bool(false));
            }
            for (key, value) in map.iter_mut() {
                match (key.as_str(), value) {
                    ("allOf", Value::Array(branches)) => {
                        branches.iter_mut().for_each(|b| close_objects(b, true))
                    }
                    // Property names and examples are data, not schemas.
                    ("example" | "examples" | "enum" | "const" | "default", _) => {}
                    ("properties", Value::Object(props)) => {
                        props.values_mut().for_each(|p| close_objects(p, false))
                    }
                    (_, v) => close_objects(v, false),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| close_objects(i, false)),
        _ => {}
    }
}

/// The component names that `allOf` branches refer to.
fn allof_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(branches)) = map.get("allOf") {
                for b in branches {
                    if let Some(r) = b["$ref"].as_str() {
                        out.push(r.trim_start_matches("#/components/schemas/").to_string());
                    }
                }
            }
            map.values().for_each(|x| allof_refs(x, out));
        }
        Value::Array(items) => items.iter().for_each(|x| allof_refs(x, out)),
        _ => {}
    }
}

fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn schema_errors(pointer: &str, body: &Value) -> Result<(), String> {
    let v = validator(pointer)?;
    let errors: Vec<String> = v
        .iter_errors(body)
        .take(5)
        .map(|e| {
            let at = e.instance_path().to_string();
            format!("at `{}`: {e}", if at.is_empty() { "/" } else { &at })
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the body does not match its schema: {}",
            errors.join("; ")
        ))
    }
}

/// Checks one answer; `Err` says what contradicts the document.
pub fn check(
    method: &str,
    path: &str,
    status: u16,
    content_type: Option<&str>,
    text: &str,
) -> Result<(), String> {
    let media = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|m| !m.is_empty());
    let method = method.to_ascii_lowercase();
    let Some((template, methods)) = template(path) else {
        // Not a documented path (a test of the fallback, or another server): a problem
        // answer still has to be a Problem.
        return check_problem(media.as_deref(), status, text);
    };
    if !methods.contains(&method.as_str()) {
        // A method the path does not have: the fallback's 405.
        if status != 405 {
            return Err(format!(
                "{} {template} is not documented, yet answered {status}",
                method.to_uppercase()
            ));
        }
        return check_problem(media.as_deref(), status, text);
    }
    let op = format!("/paths/{}/{method}", escape(template));
    let responses = &DOCUMENT.doc.pointer(&op).expect("operation")["responses"];
    let code = status.to_string();
    let (key, response) = match responses.get(&code) {
        Some(r) => (code, r),
        None => match responses.get("default") {
            Some(r) => ("default".to_string(), r),
            None => {
                let documented: Vec<&String> = responses
                    .as_object()
                    .map(|m| m.keys().collect())
                    .unwrap_or_default();
                return Err(format!(
                    "status {status} is not documented (documented: {documented:?}); body: {}",
                    short(text)
                ));
            }
        },
    };
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        if text.is_empty() {
            return Ok(());
        }
        return Err(format!(
            "the document gives status {status} no body, yet it has one ({}): {}",
            media.as_deref().unwrap_or("no content type"),
            short(text)
        ));
    };
    let Some(media) = media else {
        return Err(format!(
            "no content type; the document names {:?}",
            content.keys().collect::<Vec<_>>()
        ));
    };
    let Some(entry) = content.get(&media) else {
        return Err(format!(
            "content type {media} is not documented for status {status} (documented: {:?}); body: {}",
            content.keys().collect::<Vec<_>>(),
            short(text)
        ));
    };
    if !is_json(&media) {
        return Ok(());
    }
    let body: Value = serde_json::from_str(text)
        .map_err(|e| format!("the {media} body is not JSON ({e}): {}", short(text)))?;
    if entry.get("schema").is_some() {
        let pointer = format!(
            "{op}/responses/{}/content/{}/schema",
            escape(&key),
            escape(&media)
        );
        schema_errors(&pointer, &body).map_err(|e| format!("{e}; body: {}", short(text)))?;
    }
    if media == "application/problem+json" {
        check_problem(Some(&media), status, text)?;
    }
    Ok(())
}

fn is_json(media: &str) -> bool {
    media == "application/json" || media.ends_with("+json")
}

/// A problem+json body matches the Problem schema and repeats the HTTP status.
fn check_problem(media: Option<&str>, status: u16, text: &str) -> Result<(), String> {
    if media != Some("application/problem+json") {
        return Ok(());
    }
    let body: Value = serde_json::from_str(text)
        .map_err(|e| format!("the problem body is not JSON ({e}): {}", short(text)))?;
    schema_errors("/components/schemas/Problem", &body)
        .map_err(|e| format!("{e}; body: {}", short(text)))?;
    if body["status"] != status {
        return Err(format!(
            "the problem's status {} is not the HTTP status {status}",
            body["status"]
        ));
    }
    Ok(())
}

fn short(text: &str) -> String {
    const MAX: usize = 600;
    if text.len() <= MAX {
        text.to_string()
    } else {
        let mut end = MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes)", &text[..end], text.len())
    }
}

/// The violations one test met: reported as they happen, and failing the test when it
/// stops the app or drops it.
#[derive(Debug, Default)]
pub struct Violations(Arc<Mutex<Vec<String>>>);

impl Violations {
    pub fn record(&self, what: String) {
        eprintln!("OpenAPI violation: {what}");
        self.0.lock().unwrap().push(what);
    }

    /// Fails the test when a violation was met (and clears them, so it fails once).
    #[track_caller]
    pub fn assert_none(&self) {
        let met = std::mem::take(&mut *self.0.lock().unwrap());
        assert!(
            met.is_empty(),
            "{} answer(s) contradict the OpenAPI document:\n{}",
            met.len(),
            met.join("\n")
        );
    }
}

impl Drop for Violations {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_none();
        }
    }
}

/// The checker itself: it accepts a true answer and names each kind of contradiction.
#[test]
fn the_checker_catches_contradictions() {
    let tenant = r#"{"id": "ten_1", "name": "Shop", "created_at": "2026-11-21T05:00:00Z"}"#;
    let json = Some("application/json");
    let problem = Some("application/problem+json");
    check("GET", "/v1/tenants/ten_1", 200, json, tenant).unwrap();
    let not_found = r#"{"type": "urn:relaygram:problem:not-found", "title": "Not found",
        "status": 404, "detail": "no such tenant"}"#;
    check("GET", "/v1/tenants/ten_1", 404, problem, not_found).unwrap();
    let errors = [
        // A status the operation does not list.
        check("GET", "/v1/tenants/ten_1", 409, problem, not_found),
        // A field the schema does not name.
        check(
            "GET",
            "/v1/tenants/ten_1",
            200,
            json,
            &tenant.replace('}', r#", "extra": 1}"#),
        ),
        // A field of the wrong type, and a missing one.
        check(
            "GET",
            "/v1/tenants/ten_1",
            200,
            json,
            r#"{"id": 5, "name": "Shop"}"#,
        ),
        // A content type the document does not name.
        check("GET", "/v1/tenants/ten_1", 200, Some("text/plain"), "hi"),
        // A problem whose status is not the HTTP one.
        check("GET", "/v1/tenants/ten_1", 401, problem, not_found),
        // A body where the document promises none.
        check("DELETE", "/v1/bots/bot_1", 204, json, "{}"),
    ];
    for (i, e) in errors.iter().enumerate() {
        assert!(e.is_err(), "case {i} passed");
    }
}

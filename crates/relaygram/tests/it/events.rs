//! Events to the app: signed webhooks to a real loopback receiver (verified here and by
//! the independent `standardwebhooks` Python package), retries and failure on a
//! millisecond schedule, replay, the long-poll pull API, and tenant isolation.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use relaygram::crypto::SecretBox;
use relaygram::events::signing;
use relaygram::events::{DispatchConfig, Dispatcher, NewEndpoint, StepReport};
use relaygram::services::{Principal, Services};
use relaygram::store::{self, DeliveryOutcome, DeliveryStatus, Store, Tenant, testing};
use relaygram::telegram::TelegramClient;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::helpers::{TestApp, engines};

/// A request as the receiver saw it.
#[derive(Debug, Clone)]
struct Captured {
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

/// Status `0` in a script means: never answer (the sender must time out).
const HANG: u16 = 0;

#[derive(Clone)]
struct ReceiverState {
    scripts: Arc<Mutex<HashMap<String, VecDeque<u16>>>>,
    seen: mpsc::UnboundedSender<Captured>,
}

/// A loopback HTTP server that records every request and answers 200 unless a script
/// for the path says otherwise.
struct Receiver {
    base: String,
    scripts: Arc<Mutex<HashMap<String, VecDeque<u16>>>>,
    seen: mpsc::UnboundedReceiver<Captured>,
    task: tokio::task::JoinHandle<()>,
}

async fn receive(
    State(state): State<ReceiverState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let path = uri.path().to_string();
    let _ = state.seen.send(Captured {
        path: path.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let scripted = state
        .scripts
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    match scripted {
        Some(HANG) => std::future::pending().await,
        Some(code) => StatusCode::from_u16(code).unwrap(),
        None => StatusCode::OK,
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let (tx, rx) = mpsc::unbounded_channel();
        let scripts = Arc::new(Mutex::new(HashMap::new()));
        let state = ReceiverState {
            scripts: scripts.clone(),
            seen: tx,
        };
        let app = Router::new().fallback(receive).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            base,
            scripts,
            seen: rx,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn script(&self, path: &str, codes: &[u16]) {
        self.scripts
            .lock()
            .unwrap()
            .insert(path.to_string(), codes.iter().copied().collect());
    }

    /// The next request, waiting up to 20 s.
    async fn next(&mut self) -> Captured {
        tokio::time::timeout(Duration::from_secs(20), self.seen.recv())
            .await
            .expect("the receiver got a request in time")
            .expect("receiver alive")
    }

    /// Nothing else arrived so far.
    fn assert_idle(&mut self) {
        if let Ok(c) = self.seen.try_recv() {
            panic!("unexpected request to {}: {}", c.path, c.body);
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

use crate::helpers::{python, repo_root};

/// Checks a captured delivery with the Rust verifier and returns its payload.
fn verify_in_rust(c: &Captured, secret: &str) -> Value {
    let id = &c.headers["webhook-id"];
    let timestamp: i64 = c.headers["webhook-timestamp"].parse().unwrap();
    let signature = &c.headers["webhook-signature"];
    assert!(signature.starts_with("v1,"), "{signature}");
    assert!(signing::verify(
        secret,
        id,
        timestamp,
        c.body.as_bytes(),
        signature
    ));
    assert!(!signing::verify(
        secret,
        id,
        timestamp,
        format!("{} ", c.body).as_bytes(),
        signature
    ));
    assert_eq!(c.headers["content-type"], "application/json");
    let payload: Value = serde_json::from_str(&c.body).unwrap();
    assert_eq!(&payload["id"], id.as_str());
    payload
}

/// Polls `GET /v1/events/{id}` until `done` holds for it.
async fn event_until(app: &TestApp, key: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        let a = app.get(&format!("/v1/events/{id}"), key).await;
        assert_eq!(a.status, 200, "{}", a.text);
        if done(&a.body) {
            return a.body;
        }
        assert!(
            Instant::now() < deadline,
            "event never got there: {}",
            a.text
        );
        tick.tick().await;
    }
}

fn all_delivered(event: &Value) -> bool {
    event["deliveries"]
        .as_array()
        .is_some_and(|d| !d.is_empty() && d.iter().all(|d| d["status"] == "delivered"))
}

#[tokio::test]
async fn events_are_signed_delivered_replayed_and_pulled() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let admin = app.admin_key.clone();
        let mut rx = Receiver::start().await;
        let a = app.tenant("A").await;
        let b = app.tenant("B").await;
        let (_, key_a) = app.tenant_key(&a).await;
        let (_, key_b) = app.tenant_key(&b).await;
        let store = app.server.services.store.clone();

        // An endpoint: the secret is shown once.
        let created = app
            .post(
                "/v1/event-endpoints",
                &key_a,
                json!({"url": rx.url("/a"), "description": "backend A"}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let ep_a = created.body["id"].as_str().unwrap().to_string();
        let secret_a = created.body["secret"].as_str().unwrap().to_string();
        assert!(secret_a.starts_with("whsec_"), "{secret_a}");
        assert_eq!(created.body["tenant_id"], a.as_str());
        assert_eq!(created.body["event_types"], Value::Null);
        let got = app
            .get(&format!("/v1/event-endpoints/{ep_a}"), &key_a)
            .await;
        assert_eq!(got.status, 200);
        assert!(got.body.get("secret").is_none(), "{}", got.text);
        assert!(!got.text.contains(&secret_a));
        assert_eq!(got.body["description"], "backend A");

        // Tenant B only wants link events; an admin key creates it for B.
        let created_b = app
            .post(
                "/v1/event-endpoints",
                &admin,
                json!({"url": rx.url("/b"), "event_types": ["link.*"], "tenant_id": b}),
            )
            .await;
        assert_eq!(created_b.status, 201, "{}", created_b.text);
        let ep_b = created_b.body["id"].as_str().unwrap().to_string();
        let secret_b = created_b.body["secret"].as_str().unwrap().to_string();

        // Emit → signed POST → verified here and by the standardwebhooks package.
        let id = relaygram::events::emit(
            &*store,
            &a,
            "command.received",
            json!({"command": "/order", "args": "42", "chat_id": 7}),
        )
        .await
        .unwrap();
        let c = rx.next().await;
        assert_eq!(c.path, "/a");
        let payload = verify_in_rust(&c, &secret_a);
        assert_eq!(payload["id"], id.as_str());
        assert_eq!(payload["type"], "command.received");
        assert_eq!(payload["tenant_id"], a.as_str());
        assert_eq!(payload["data"]["args"], "42");
        assert!(payload["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(!signing::verify(
            &secret_b,
            &id,
            c.headers["webhook-timestamp"].parse().unwrap(),
            c.body.as_bytes(),
            &c.headers["webhook-signature"]
        ));

        let python = python();
        assert!(
            python.exists(),
            "{} is missing: run scripts/test, which creates the venv from tests/python/requirements.txt",
            python.display()
        );
        let capture = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            capture.path(),
            serde_json::to_vec(&json!({"secret": secret_a, "headers": c.headers, "body": c.body}))
                .unwrap(),
        )
        .unwrap();
        let out = tokio::process::Command::new(&python)
            .arg(repo_root().join("tests/python/verify_standard_webhook.py"))
            .arg(capture.path())
            .output()
            .await
            .expect("python runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "standardwebhooks rejected our signature:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("verified OK"), "{stdout}");

        let detail = event_until(&app, &key_a, &id, all_delivered).await;
        let deliveries = detail["deliveries"].as_array().unwrap();
        assert_eq!(deliveries.len(), 1, "B's endpoint does not get A's events");
        assert_eq!(deliveries[0]["endpoint_id"], ep_a.as_str());
        assert_eq!(deliveries[0]["attempts"], 1);
        assert_eq!(deliveries[0]["attempt_log"][0]["status_code"], 200);
        assert_eq!(detail["data"]["command"], "/order");

        // B's filter: a command event is stored but not sent; a link event is.
        let skipped = relaygram::events::emit(&*store, &b, "command.received", json!({}))
            .await
            .unwrap();
        let link =
            relaygram::events::emit(&*store, &b, "link.created", json!({"external_id": "u1"}))
                .await
                .unwrap();
        let c = rx.next().await;
        assert_eq!(c.path, "/b");
        assert_eq!(verify_in_rust(&c, &secret_b)["id"], link.as_str());
        let s = app.get(&format!("/v1/events/{skipped}"), &key_b).await;
        assert_eq!(s.body["deliveries"], json!([]), "{}", s.text);

        // Replay: the same event (same webhook-id) again, to every endpoint or one.
        let r = app
            .post(&format!("/v1/events/{id}/replay"), &key_a, json!({}))
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
        assert_eq!(r.body["deliveries"].as_array().unwrap().len(), 1);
        let c = rx.next().await;
        assert_eq!(verify_in_rust(&c, &secret_a)["id"], id.as_str());
        let r = app
            .post(
                &format!("/v1/events/{skipped}/replay"),
                &key_b,
                json!({"endpoint_id": ep_b}),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.text);
        let c = rx.next().await;
        assert_eq!(c.path, "/b", "an explicit replay ignores the filter");
        assert_eq!(verify_in_rust(&c, &secret_b)["id"], skipped.as_str());
        let detail = event_until(&app, &key_a, &id, |e| {
            all_delivered(e) && e["deliveries"][0]["attempt_log"].as_array().unwrap().len() == 2
        })
        .await;
        assert_eq!(
            detail["deliveries"][0]["attempts"], 1,
            "a replay starts a new round"
        );

        // Pull: everything after the cursor, in order; then nothing, same cursor.
        let pulled = app.get("/v1/events", &key_a).await;
        assert_eq!(pulled.status, 200, "{}", pulled.text);
        let data = pulled.body["data"].as_array().unwrap();
        assert_eq!(data.len(), 1, "only A's events: {}", pulled.text);
        assert_eq!(data[0]["id"], id.as_str());
        assert_eq!(data[0]["data"]["chat_id"], 7);
        let cursor = pulled.body["next_cursor"].as_str().unwrap().to_string();
        let empty = app
            .get(&format!("/v1/events?after={cursor}&wait=0"), &key_a)
            .await;
        assert_eq!(empty.body["data"], json!([]));
        assert_eq!(empty.body["next_cursor"], cursor.as_str());
        let b_links = app.get("/v1/events?type=link.*", &key_b).await;
        assert_eq!(
            b_links.body["data"].as_array().unwrap().len(),
            1,
            "{}",
            b_links.text
        );
        assert_eq!(b_links.body["data"][0]["id"], link.as_str());
        let b_cmd = app
            .get("/v1/events?type=command.received&limit=5", &key_b)
            .await;
        assert_eq!(
            b_cmd.body["data"][0]["id"],
            skipped.as_str(),
            "{}",
            b_cmd.text
        );
        let by_admin = app.get(&format!("/v1/events?tenant_id={b}"), &admin).await;
        assert_eq!(by_admin.body["data"].as_array().unwrap().len(), 2);

        // Long-poll: a waiting pull returns with the event emitted meanwhile.
        let waiting = app.send(
            app.http
                .get(app.url(&format!("/v1/events?after={cursor}&wait=30")))
                .bearer_auth(&key_a),
        );
        let emitting = async {
            relaygram::events::emit(&*store, &a, "message.received", json!({"text": "hi"}))
                .await
                .unwrap()
        };
        let (woke, later) = tokio::time::timeout(Duration::from_secs(25), async {
            tokio::join!(waiting, emitting)
        })
        .await
        .expect("the long-poll answered");
        let woke = woke.body;
        assert_eq!(woke["data"][0]["id"], later.as_str(), "{woke}");
        assert_ne!(woke["next_cursor"], cursor.as_str());
        assert_eq!(rx.next().await.path, "/a");

        // Tenant isolation: B sees none of A's endpoints or events, and vice versa.
        for path in [
            format!("/v1/events/{id}"),
            format!("/v1/event-endpoints/{ep_a}"),
        ] {
            app.get(&path, &key_b)
                .await
                .assert_problem(404, "not-found");
        }
        app.delete(&format!("/v1/event-endpoints/{ep_a}"), &key_b)
            .await
            .assert_problem(404, "not-found");
        app.post(&format!("/v1/events/{id}/replay"), &key_b, json!({}))
            .await
            .assert_problem(404, "not-found");
        app.post(
            &format!("/v1/events/{id}/replay"),
            &key_a,
            json!({"endpoint_id": ep_b}),
        )
        .await
        .assert_problem(422, "validation-failed");
        app.get(&format!("/v1/events?tenant_id={a}"), &key_b)
            .await
            .assert_problem(404, "not-found");
        let b_list = app.get("/v1/event-endpoints", &key_b).await;
        assert_eq!(b_list.body["data"].as_array().unwrap().len(), 1);
        assert_eq!(b_list.body["data"][0]["id"], ep_b.as_str());
        let all = app.get("/v1/event-endpoints?limit=1", &admin).await;
        assert_eq!(all.body["data"].as_array().unwrap().len(), 1);
        assert!(all.body["next_cursor"].is_string(), "{}", all.text);
        app.get("/v1/events", &admin)
            .await
            .assert_problem(422, "validation-failed");

        // Deleting an endpoint: gone, and new events are no longer sent to it.
        assert_eq!(
            app.delete(&format!("/v1/event-endpoints/{ep_a}"), &key_a)
                .await
                .status,
            204
        );
        app.get(&format!("/v1/event-endpoints/{ep_a}"), &key_a)
            .await
            .assert_problem(404, "not-found");
        let orphan = relaygram::events::emit(&*store, &a, "command.received", json!({}))
            .await
            .unwrap();
        let o = app.get(&format!("/v1/events/{orphan}"), &key_a).await;
        assert_eq!(o.body["deliveries"], json!([]));
        rx.assert_idle();
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_event_input_answers_problems_and_changes_nothing() {
    let app = TestApp::spawn("sqlite").await;
    let admin = app.admin_key.clone();
    let a = app.tenant("A").await;
    let (_, key) = app.tenant_key(&a).await;
    let ok = app
        .post(
            "/v1/event-endpoints",
            &key,
            json!({"url": "http://127.0.0.1:9/hook"}),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    let before = app.get("/v1/event-endpoints", &admin).await.body;

    for (body, field) in [
        (json!({"url": "ftp://example.com/x"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "mailto:a@example.com"}), "url"),
        (json!({"url": 5}), "url"),
        (json!({}), ""),
        (
            json!({"url": "https://e.example", "event_types": []}),
            "event_types",
        ),
        (
            json!({"url": "https://e.example", "event_types": ["Bad Type"]}),
            "event_types",
        ),
        (
            json!({"url": "https://e.example", "event_types": ["a*"]}),
            "event_types",
        ),
        (json!({"url": "https://e.example", "colour": "red"}), ""),
        (
            json!({"url": "https://e.example", "description": "x".repeat(501)}),
            "description",
        ),
    ] {
        let r = app.post("/v1/event-endpoints", &key, body.clone()).await;
        r.assert_problem(422, "validation-failed");
        if !field.is_empty() {
            assert_eq!(r.body["field"], field, "{body}: {}", r.text);
        }
    }
    app.post(
        "/v1/event-endpoints",
        &admin,
        json!({"url": "https://e.example"}),
    )
    .await
    .assert_problem(422, "validation-failed");
    app.post(
        "/v1/event-endpoints",
        &key,
        json!({"url": "https://e.example", "tenant_id": "ten_other"}),
    )
    .await
    .assert_problem(404, "not-found");
    app.raw(
        reqwest::Method::POST,
        "/v1/event-endpoints",
        Some(&key),
        "application/json",
        b"{\"url\":".to_vec(),
    )
    .await
    .assert_problem(400, "malformed-json");

    for query in [
        "after=abc",
        "after=-1",
        "wait=31",
        "limit=0",
        "limit=201",
        "type=Bad%20Type",
    ] {
        let r = app.get(&format!("/v1/events?{query}"), &key).await;
        r.assert_problem(400, "validation-failed");
    }
    app.get("/v1/events?wait=soon", &key)
        .await
        .assert_problem(400, "validation-failed");
    app.get("/v1/events/evt_missing", &key)
        .await
        .assert_problem(404, "not-found");
    app.post("/v1/events/evt_missing/replay", &key, json!({}))
        .await
        .assert_problem(404, "not-found");
    app.call(reqwest::Method::GET, "/v1/events", None, None)
        .await
        .assert_problem(401, "unauthorized");

    assert_eq!(app.get("/v1/event-endpoints", &admin).await.body, before);

    // The pull's query parameters are documented under their wire names.
    let doc = app
        .call(reqwest::Method::GET, "/v1/openapi.json", None, None)
        .await
        .body;
    let mut params: Vec<&str> = doc["paths"]["/v1/events"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    params.sort();
    assert_eq!(params, ["after", "limit", "tenant_id", "type", "wait"]);
    for schema in ["CreatedEndpointView", "EventPage", "EventDetailView"] {
        assert!(
            doc["components"]["schemas"][schema]["example"].is_object(),
            "{schema} has an example"
        );
    }
    app.stop().await;
}

/// Services over a fresh store, without a server (so no other dispatcher competes).
async fn bare_services(engine: &str, dir: &std::path::Path) -> (Services, testing::TestDatabase) {
    let db = testing::fresh(engine, dir).await.unwrap();
    let store = store::connect(&SecretString::from(db.url.clone()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let services = Services {
        store,
        secrets: SecretBox::new(&[9u8; 32]),
        telegram: TelegramClient::new("http://127.0.0.1:9", Duration::from_secs(1)),
        public_url: None,
        clock: relaygram::clock::Clock::system(),
    };
    services
        .store
        .insert_tenant(&Tenant {
            id: "ten_t".into(),
            name: "T".into(),
            created_at: 1,
        })
        .await
        .unwrap();
    (services, db)
}

async fn endpoint(services: &Services, url: String) -> (String, String) {
    let created = relaygram::events::create_endpoint(
        services,
        &Principal::Operator,
        NewEndpoint {
            url,
            tenant_id: Some("ten_t".into()),
            ..NewEndpoint::default()
        },
    )
    .await
    .unwrap();
    (
        created.endpoint.id,
        created.secret.expose_secret().to_string(),
    )
}

/// Steps the dispatcher until it reports `until`, ticking while nothing is due.
async fn drive(dispatcher: &Dispatcher, until: impl Fn(&StepReport) -> bool) -> Vec<StepReport> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut reports = Vec::new();
    loop {
        match dispatcher.step().await.unwrap() {
            Some(report) => {
                let done = until(&report);
                reports.push(report);
                if done {
                    return reports;
                }
            }
            None => {
                assert!(Instant::now() < deadline, "dispatcher stalled: {reports:?}");
                tick.tick().await;
            }
        }
    }
}

#[tokio::test]
async fn deliveries_retry_on_a_schedule_then_succeed_or_fail() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let (services, _db) = bare_services(engine, dir.path()).await;
        let store: &dyn Store = &*services.store;
        let mut rx = Receiver::start().await;
        let config = DispatchConfig {
            schedule: vec![Duration::from_millis(10); 3],
            timeout: Duration::from_secs(1),
            lease_margin: Duration::from_millis(50),
            ..DispatchConfig::default()
        };
        let dispatcher = Dispatcher::new(services.store.clone(), services.secrets.clone(), config);

        // 500, a timeout, 503, then 200: four attempts, all recorded, then delivered.
        let (_, secret) = endpoint(&services, rx.url("/flaky")).await;
        rx.script("/flaky", &[500, HANG, 503, 200]);
        let id =
            relaygram::events::emit(store, "ten_t", "payment.succeeded", json!({"amount": 500}))
                .await
                .unwrap();
        let reports = drive(&dispatcher, |r| r.outcome == DeliveryOutcome::Delivered).await;
        assert_eq!(reports.len(), 4, "{engine}: {reports:?}");
        assert_eq!(
            reports.iter().map(|r| r.status_code).collect::<Vec<_>>(),
            [Some(500), None, Some(503), Some(200)]
        );
        let mut webhook_ids = Vec::new();
        for _ in 0..4 {
            let c = rx.next().await;
            verify_in_rust(&c, &secret);
            webhook_ids.push(c.headers["webhook-id"].clone());
        }
        assert!(
            webhook_ids.iter().all(|w| *w == id),
            "retries keep the webhook-id"
        );
        let attempts = store.list_event_attempts(&id).await.unwrap();
        assert_eq!(
            attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(),
            [Some(500), None, Some(503), Some(200)],
            "{engine}"
        );
        assert!(attempts[1].error.as_deref().unwrap().contains("timed out"));
        assert!(attempts[3].error.is_none());
        let d = &store.list_event_deliveries(&id).await.unwrap()[0];
        assert_eq!(d.status, DeliveryStatus::Delivered);
        assert_eq!(d.attempts, 4);
        assert!(d.delivered_at.is_some());

        // Nothing listening: the schedule runs out and the delivery fails.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let (dead_ep, _) = endpoint(&services, format!("http://{closed}/gone")).await;
        let dead = relaygram::events::emit(store, "ten_t", "message.failed", json!({}))
            .await
            .unwrap();
        let reports = drive(&dispatcher, |r| r.outcome == DeliveryOutcome::Failed).await;
        let refused = reports
            .iter()
            .filter(|r| r.event_id == dead && r.status_code.is_none())
            .count();
        assert_eq!(refused, 4, "{engine}: 1 + 3 retries: {reports:?}");
        let dead_delivery = store
            .list_event_deliveries(&dead)
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.endpoint_id == dead_ep)
            .unwrap();
        assert_eq!(dead_delivery.status, DeliveryStatus::Failed);
        assert!(
            dead_delivery
                .last_error
                .as_deref()
                .unwrap()
                .contains("connect")
        );
        let logged = store.list_event_attempts(&dead).await.unwrap();
        assert_eq!(
            logged
                .iter()
                .filter(|a| a.delivery_id == dead_delivery.id)
                .count(),
            4
        );
        // The flaky endpoint got this one at once.
        assert_eq!(rx.next().await.headers["webhook-id"], dead);

        // A crash mid-attempt: the claim is never finished; once the lease runs out the
        // delivery is claimed again and delivered.
        let lost = relaygram::events::emit(store, "ten_t", "link.created", json!({}))
            .await
            .unwrap();
        let mut abandoned = Vec::new();
        while let Some(c) = store
            .claim_delivery(relaygram::ids::now_millis(), 30)
            .await
            .unwrap()
        {
            abandoned.push(c.delivery.id);
        }
        assert_eq!(abandoned.len(), 2, "{engine}: one per endpoint");
        let reports = drive(&dispatcher, |r| {
            r.event_id == lost && r.outcome == DeliveryOutcome::Delivered
        })
        .await;
        assert!(reports.iter().any(|r| r.event_id == lost));
        let c = rx.next().await;
        assert_eq!(c.headers["webhook-id"], lost);
        let flaky = store
            .list_event_deliveries(&lost)
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.endpoint_id != dead_ep)
            .unwrap();
        assert_eq!(flaky.status, DeliveryStatus::Delivered);
        assert_eq!(flaky.attempts, 2, "the lost attempt counts");
        services.store.close().await;
    }
}

#[tokio::test]
async fn a_message_to_the_bot_reaches_the_app_as_a_signed_event() {
    let app = TestApp::spawn("sqlite").await;
    let mut rx = Receiver::start().await;
    let tenant = app.tenant("Shop").await;
    let (_, key) = app.tenant_key(&tenant).await;
    let (_, token) = app.sandbox_bot("events_e2e_bot").await;
    let added = app.post("/v1/bots", &key, json!({"token": token})).await;
    assert_eq!(added.status, 201, "{}", added.text);
    assert_eq!(added.body["mode"], "polling");
    let created = app
        .post(
            "/v1/event-endpoints",
            &key,
            json!({"url": rx.url("/app"), "event_types": ["message.*"]}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let secret = created.body["secret"].as_str().unwrap().to_string();

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
    let said = app
        .http
        .post(format!(
            "{}/sandbox/users/{user}/messages",
            app.sandbox.url()
        ))
        .json(&json!({"bot": "events_e2e_bot", "text": "where is my order?"}))
        .send()
        .await
        .unwrap();
    assert!(said.status().is_success(), "{}", said.status());

    let c = rx.next().await;
    let payload = verify_in_rust(&c, &secret);
    assert_eq!(payload["type"], "message.received", "{payload}");
    assert_eq!(payload["tenant_id"], tenant.as_str());
    assert_eq!(payload["data"]["message"]["text"], "where is my order?");
    let pulled = app.get("/v1/events?type=message.*", &key).await;
    assert_eq!(
        pulled.body["data"][0]["id"], payload["id"],
        "{}",
        pulled.text
    );
    app.stop().await;
}

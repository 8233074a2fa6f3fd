//! Health, readiness, metrics, request ids, graceful shutdown, first-start admin key.

use reqwest::Method;
use secrecy::SecretString;

use crate::helpers::{TestApp, engines};

#[tokio::test]
async fn health_readiness_metrics_and_request_ids() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let h = app.call(Method::GET, "/healthz", None, None).await;
        assert_eq!(h.status, 200);
        assert_eq!(h.body["status"], "ok");
        let r = app.call(Method::GET, "/readyz", None, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["status"], "ready");

        // Every answer has a request id; ids differ; a caller's id is kept.
        let one = h.headers["x-request-id"].to_str().unwrap().to_string();
        let two = r.headers["x-request-id"].to_str().unwrap().to_string();
        assert!(one.starts_with("req_"));
        assert_ne!(one, two);
        let mine = app
            .send(
                app.http
                    .get(app.url("/healthz"))
                    .header("x-request-id", "caller-chosen-42"),
            )
            .await;
        assert_eq!(mine.headers["x-request-id"], "caller-chosen-42");
        let odd = app
            .send(
                app.http
                    .get(app.url("/healthz"))
                    .header("x-request-id", "has spaces and \"quotes\""),
            )
            .await;
        let replaced = odd.headers["x-request-id"].to_str().unwrap();
        assert!(replaced.starts_with("req_"), "{replaced}");

        let m = app.call(Method::GET, "/metrics", None, None).await;
        assert_eq!(m.status, 200);
        assert!(
            m.text.contains("relaygram_http_requests_total"),
            "{}",
            m.text
        );
        assert!(m.text.contains("route=\"/healthz\""), "{}", m.text);

        // Readiness follows the store.
        app.server.services.store.close().await;
        app.call(Method::GET, "/readyz", None, None)
            .await
            .assert_problem(503, "not-ready");
        app.stop().await;
    }
}

#[tokio::test]
async fn admin_key_is_created_once_or_taken_from_the_environment() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let db = relaygram::store::testing::fresh(engine, dir.path())
            .await
            .unwrap();
        let config = relaygram::config::Config {
            database_url: SecretString::from(db.url.clone()),
            data_dir: dir.path().join("data"),
            telegram_api_url: "http://127.0.0.1:9".into(),
            bind: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        let first = relaygram::server::boot(&config).await.unwrap();
        let key = first
            .new_admin_key
            .as_ref()
            .expect("first start makes a key");
        first.services.store.close().await;
        let second = relaygram::server::boot(&config).await.unwrap();
        assert!(second.new_admin_key.is_none(), "printed once only");
        assert!(!second.key_file_created);
        let principal = second
            .services
            .authenticate(secrecy::ExposeSecret::expose_secret(&key.key))
            .await
            .unwrap();
        assert!(matches!(
            principal,
            relaygram::services::Principal::Admin { .. }
        ));
        second.services.store.close().await;

        // RELAYGRAM_ADMIN_KEY on an empty store: used instead of generating one.
        let dir2 = tempfile::tempdir().unwrap();
        let db2 = relaygram::store::testing::fresh(engine, dir2.path())
            .await
            .unwrap();
        let env_key = "rg_from_the_environment_0123456789";
        let config2 = relaygram::config::Config {
            database_url: SecretString::from(db2.url.clone()),
            data_dir: dir2.path().join("data"),
            admin_key: Some(SecretString::from(env_key)),
            ..config.clone()
        };
        let booted = relaygram::server::boot(&config2).await.unwrap();
        assert!(booted.new_admin_key.is_none());
        let server = relaygram::server::spawn(&config2, booted.services)
            .await
            .unwrap();
        let answer = reqwest::Client::new()
            .get(format!("{}/v1/tenants", server.url()))
            .bearer_auth(env_key)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        // Graceful shutdown completes.
        server.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn a_start_with_the_wrong_secret_key_is_refused() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let db = relaygram::store::testing::fresh(engine, dir.path())
            .await
            .unwrap();
        let config = relaygram::config::Config {
            database_url: SecretString::from(db.url.clone()),
            data_dir: dir.path().join("data"),
            secret_key: Some(SecretString::from("11".repeat(32))),
            telegram_api_url: "http://127.0.0.1:9".into(),
            ..Default::default()
        };
        let first = relaygram::server::boot(&config).await.unwrap();
        first.services.store.close().await;
        let same = relaygram::server::boot(&config).await.unwrap();
        same.services.store.close().await;
        let wrong = relaygram::config::Config {
            secret_key: Some(SecretString::from("22".repeat(32))),
            ..config.clone()
        };
        let err = relaygram::server::boot(&wrong).await.unwrap_err();
        assert!(
            err.to_string().contains("secret key does not match"),
            "{err:#}"
        );
    }
}

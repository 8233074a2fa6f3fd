//! Schedules against the sandbox, on a manual clock: the API, bad input, firing once per
//! occurrence across DST changes in two zones, catch-up after downtime, running now, a
//! second scheduler racing the server's, and tenant isolation.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, engines, until};

fn ms(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

/// A tenant with a key, a bot added through the API and a sandbox user who started it.
struct Setup {
    key: String,
    bot_id: String,
    bot_username: String,
    user: i64,
}

async fn setup(app: &TestApp, name: &str) -> Setup {
    let tenant = app.tenant(name).await;
    let (_, key) = app.tenant_key(&tenant).await;
    let bot_username = format!("{name}_bot");
    let (_, token) = app.sandbox_bot(&bot_username).await;
    let added = app.post("/v1/bots", &key, json!({"token": token})).await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
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
    let r = app
        .http
        .post(format!(
            "{}/sandbox/users/{user}/messages",
            app.sandbox.url()
        ))
        .json(&json!({"bot": bot_username, "text": "hello"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    Setup {
        key,
        bot_id: added.body["id"].as_str().unwrap().to_string(),
        bot_username,
        user,
    }
}

fn message(s: &Setup, text: &str) -> Value {
    json!({"bot_id": s.bot_id, "to": {"chat_id": s.user}, "text": text})
}

/// Texts the bot sent the user.
async fn received(app: &TestApp, s: &Setup) -> Vec<String> {
    app.bot_texts(s.user, &s.bot_username).await
}

async fn count_received(app: &TestApp, s: &Setup, text: &str) -> usize {
    received(app, s).await.iter().filter(|t| *t == text).count()
}

async fn runs(app: &TestApp, key: &str, id: &str) -> Vec<Value> {
    let a = app
        .get(&format!("/v1/schedules/{id}/runs?limit=200"), key)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.body["data"].as_array().unwrap().clone()
}

/// Waits until the schedule has `n` runs, all finished; returns them.
async fn finished_runs(app: &TestApp, key: &str, id: &str, n: usize) -> Vec<Value> {
    until(&format!("{n} finished runs of {id}"), || async {
        let r = runs(app, key, id).await;
        (r.len() >= n && r.iter().all(|r| r["state"] != "claimed")).then_some(r)
    })
    .await
}

fn occurrences(runs: &[Value]) -> Vec<String> {
    runs.iter()
        .map(|r| r["occurrence_at"].as_str().unwrap().to_string())
        .collect()
}

async fn manual(engine: &'static str) -> TestApp {
    TestApp::spawn_with(
        engine,
        Options {
            manual_clock: true,
            ..Options::default()
        },
    )
    .await
}

#[tokio::test]
async fn crud_with_next_fire_times_pause_resume_and_cursor_pages() {
    for engine in engines() {
        let app = manual(engine).await;
        app.clock().set_millis(ms("2027-03-26T12:00:00Z"));
        let s = setup(&app, "crud").await;
        let created = app
            .post(
                "/v1/schedules",
                &s.key,
                json!({"name": "Nightly", "cron": "30 2 * * *", "timezone": "Europe/Berlin",
                       "message": message(&s, "nightly"), "catch_up": "once"}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let id = created.body["id"].as_str().unwrap().to_string();
        // The skipped 02:30 of 28 March 2027 fires at 03:00 CEST.
        assert_eq!(
            created.body["next_fire_times"],
            json!([
                "2027-03-27T01:30:00Z",
                "2027-03-28T01:00:00Z",
                "2027-03-29T00:30:00Z",
                "2027-03-30T00:30:00Z",
                "2027-03-31T00:30:00Z"
            ]),
            "{engine}"
        );
        assert_eq!(created.body["catch_up"], "once");
        assert_eq!(created.body["enabled"], true);
        assert_eq!(created.body["message"]["text"], "nightly");
        assert_eq!(created.body["every"], Value::Null);

        let got = app.get(&format!("/v1/schedules/{id}"), &s.key).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.body["next_fire_times"], created.body["next_fire_times"]);

        // Pause: no fire times; resume: counted from now.
        let paused = app
            .patch(
                &format!("/v1/schedules/{id}"),
                &s.key,
                json!({"enabled": false}),
            )
            .await;
        assert_eq!(paused.status, StatusCode::OK, "{}", paused.text);
        assert_eq!(paused.body["next_fire_times"], json!([]));
        let resumed = app
            .patch(
                &format!("/v1/schedules/{id}"),
                &s.key,
                json!({"enabled": true}),
            )
            .await;
        assert_eq!(resumed.body["next_fire_times"][0], "2027-03-27T01:30:00Z");

        // Switch to an interval with a start: cron is cleared.
        let every = app
            .patch(
                &format!("/v1/schedules/{id}"),
                &s.key,
                json!({"every": "15m", "timezone": "UTC", "start_at": "2027-04-01T00:00:00Z",
                       "end_at": "2027-04-01T00:30:00Z"}),
            )
            .await;
        assert_eq!(every.status, StatusCode::OK, "{}", every.text);
        assert_eq!(every.body["cron"], Value::Null);
        assert_eq!(every.body["every"], "15m");
        assert_eq!(
            every.body["next_fire_times"],
            json!([
                "2027-04-01T00:00:00Z",
                "2027-04-01T00:15:00Z",
                "2027-04-01T00:30:00Z"
            ])
        );
        let cleared = app
            .patch(
                &format!("/v1/schedules/{id}"),
                &s.key,
                json!({"end_at": null}),
            )
            .await;
        assert_eq!(cleared.body["end_at"], Value::Null);
        assert_eq!(cleared.body["next_fire_times"].as_array().unwrap().len(), 5);

        // Cursor pages.
        let second = app
            .post(
                "/v1/schedules",
                &s.key,
                json!({"name": "Hourly", "every": "1h", "message": message(&s, "hourly")}),
            )
            .await;
        assert_eq!(second.status, StatusCode::CREATED, "{}", second.text);
        let page1 = app.get("/v1/schedules?limit=1", &s.key).await;
        assert_eq!(page1.body["data"].as_array().unwrap().len(), 1);
        assert_eq!(page1.body["data"][0]["id"], id.as_str());
        let cursor = page1.body["next_cursor"].as_str().unwrap().to_string();
        let page2 = app
            .get(&format!("/v1/schedules?limit=1&after={cursor}"), &s.key)
            .await;
        assert_eq!(page2.body["data"][0]["id"], second.body["id"]);
        assert_eq!(page2.body["next_cursor"], Value::Null);

        // An admin key must name the tenant to create; it sees every tenant's list.
        let admin = app
            .post(
                "/v1/schedules",
                &app.admin_key,
                json!({"name": "x", "every": "1h", "message": message(&s, "x")}),
            )
            .await;
        admin.assert_problem(422, "validation-failed");
        assert_eq!(admin.body["field"], "tenant_id");
        let all = app.get("/v1/schedules", &app.admin_key).await;
        assert_eq!(all.body["data"].as_array().unwrap().len(), 2);

        let deleted = app.delete(&format!("/v1/schedules/{id}"), &s.key).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        app.get(&format!("/v1/schedules/{id}"), &s.key)
            .await
            .assert_problem(404, "not-found");
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_definitions_are_422_naming_the_field_and_store_nothing() {
    for engine in engines() {
        let app = manual(engine).await;
        let s = setup(&app, "bad").await;
        let base = json!({"name": "n", "cron": "0 9 * * *", "message": message(&s, "t")});
        let cases: Vec<(Value, &str)> = vec![
            (json!({"cron": "0 25 * * *"}), "cron"),
            (json!({"cron": "* * * *"}), "cron"),
            (json!({"cron": "0 0 30 2 *"}), "cron"),
            (json!({"timezone": "Mars/Olympus_Mons"}), "timezone"),
            (json!({"cron": null, "every": "5x"}), "every"),
            (json!({"cron": null, "every": "0m"}), "every"),
            (json!({"every": "1h"}), "every"),
            (json!({"cron": null}), "cron"),
            (json!({"start_at": "tomorrow"}), "start_at"),
            (
                json!({"start_at": "2030-01-02T00:00:00Z", "end_at": "2030-01-01T00:00:00Z"}),
                "end_at",
            ),
            (json!({"end_at": "2001-01-01T00:00:00Z"}), "end_at"),
            (json!({"name": ""}), "name"),
            (
                json!({"message": {"bot_id": s.bot_id, "to": {"chat_id": s.user}}}),
                "message.text",
            ),
            (
                json!({"message": {"bot_id": "bot_nope", "to": {"chat_id": 1}, "text": "x"}}),
                "message.bot_id",
            ),
            (json!({"message": "hello"}), "message"),
        ];
        for (change, field) in cases {
            let mut body = base.clone();
            for (k, v) in change.as_object().unwrap() {
                if v.is_null() {
                    body.as_object_mut().unwrap().remove(k);
                } else {
                    body[k] = v.clone();
                }
            }
            let a = app.post("/v1/schedules", &s.key, body.clone()).await;
            a.assert_problem(422, "validation-failed");
            assert_eq!(a.body["field"], field, "{engine} {body}: {}", a.text);
        }
        let a = app
            .post(
                "/v1/schedules",
                &s.key,
                json!({"name": "n", "cron": "0 9 * * *", "message": {}, "bogus": 1}),
            )
            .await;
        assert!(a.status.is_client_error(), "{}", a.text);
        let list = app.get("/v1/schedules", &s.key).await;
        assert_eq!(list.body["data"], json!([]), "{engine}");

        // PATCH validates the same way and changes nothing.
        let ok = app.post("/v1/schedules", &s.key, base.clone()).await;
        let id = ok.body["id"].as_str().unwrap();
        let a = app
            .patch(
                &format!("/v1/schedules/{id}"),
                &s.key,
                json!({"timezone": "Nowhere/Land"}),
            )
            .await;
        a.assert_problem(422, "validation-failed");
        assert_eq!(a.body["field"], "timezone");
        let a = app
            .patch(
                &format!("/v1/schedules/{id}"),
                &s.key,
                json!({"cron": "0 9 * * *", "every": "1h"}),
            )
            .await;
        assert_eq!(a.body["field"], "every");
        let after = app.get(&format!("/v1/schedules/{id}"), &s.key).await;
        assert_eq!(after.body["timezone"], "UTC");
        assert_eq!(after.body["cron"], "0 9 * * *");
        app.stop().await;
    }
}

/// Moves the clock to each expected occurrence in turn and checks that exactly one run
/// (and one message) comes of each.
async fn walk(app: &TestApp, s: &Setup, id: &str, text: &str, expected: &[&str]) {
    walk_from(app, s, id, text, expected, 0).await;
}

/// [`walk`] from the `from`-th occurrence (the earlier ones already fired).
async fn walk_from(app: &TestApp, s: &Setup, id: &str, text: &str, expected: &[&str], from: usize) {
    for (i, at) in expected.iter().enumerate().skip(from) {
        app.clock().set_millis(ms(at));
        let r = finished_runs(app, &s.key, id, i + 1).await;
        assert_eq!(r.len(), i + 1, "{r:?}");
        assert_eq!(occurrences(&r), expected[..=i], "{r:?}");
        assert!(
            r.iter()
                .all(|r| r["state"] == "submitted" && r["kind"] == "scheduled"),
            "{r:?}"
        );
        until("the message", || async {
            (count_received(app, s, text).await == i + 1).then_some(())
        })
        .await;
    }
}

/// Sets the clock to `now` and creates a schedule; its id.
async fn create_at(app: &TestApp, s: &Setup, now: &str, body: Value) -> String {
    app.clock().set_millis(ms(now));
    let created = app.post("/v1/schedules", &s.key, body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created.body["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn fires_once_per_occurrence_across_dst_in_two_zones() {
    for engine in engines() {
        let app = manual(engine).await;
        let s = setup(&app, "dst").await;

        // America/New_York, spring forward (14 March 2027), by an interval of one day from
        // 02:30: 02:30 does not exist → 03:00 EDT.
        let spring_id = create_at(
            &app,
            &s,
            "2027-03-12T12:00:00Z",
            json!({"name": "nys", "every": "1d", "timezone": "America/New_York",
                       "start_at": "2027-03-13T07:30:00Z", "message": message(&s, "ny spring")}),
        )
        .await;
        walk(
            &app,
            &s,
            &spring_id,
            "ny spring",
            &[
                "2027-03-13T07:30:00Z",
                "2027-03-14T07:00:00Z",
                "2027-03-15T06:30:00Z",
            ],
        )
        .await;
        app.delete(&format!("/v1/schedules/{spring_id}"), &s.key)
            .await;

        // Europe/Berlin, spring forward (28 March 2027): 02:30 does not exist → 03:00.
        let berlin_id = create_at(
            &app,
            &s,
            "2027-03-26T12:00:00Z",
            json!({"name": "b", "cron": "30 2 * * *", "timezone": "Europe/Berlin",
                       "message": message(&s, "berlin")}),
        )
        .await;
        walk(
            &app,
            &s,
            &berlin_id,
            "berlin",
            &[
                "2027-03-27T01:30:00Z",
                "2027-03-28T01:00:00Z",
                "2027-03-29T00:30:00Z",
            ],
        )
        .await;
        app.delete(&format!("/v1/schedules/{berlin_id}"), &s.key)
            .await;

        // Europe/Berlin, fall back (31 October 2027): 02:30 happens twice → once.
        let fall_id = create_at(
            &app,
            &s,
            "2027-10-29T12:00:00Z",
            json!({"name": "bf", "cron": "30 2 * * *", "timezone": "Europe/Berlin",
                       "message": message(&s, "berlin fall")}),
        )
        .await;
        walk(
            &app,
            &s,
            &fall_id,
            "berlin fall",
            &["2027-10-30T00:30:00Z", "2027-10-31T00:30:00Z"],
        )
        .await;
        // The second 02:30 (CET, 01:30Z) is not an occurrence: the next one is a day later.
        app.clock().set_millis(ms("2027-10-31T01:30:00Z"));
        let got = app.get(&format!("/v1/schedules/{fall_id}"), &s.key).await;
        assert_eq!(got.body["next_fire_times"][0], "2027-11-01T01:30:00Z");
        walk_from(
            &app,
            &s,
            &fall_id,
            "berlin fall",
            &[
                "2027-10-30T00:30:00Z",
                "2027-10-31T00:30:00Z",
                "2027-11-01T01:30:00Z",
            ],
            2,
        )
        .await;
        app.delete(&format!("/v1/schedules/{fall_id}"), &s.key)
            .await;

        // America/New_York, fall back (7 November 2027): 01:30 happens twice → once.
        let ny_id = create_at(
            &app,
            &s,
            "2027-11-05T12:00:00Z",
            json!({"name": "ny", "cron": "30 1 * * *", "timezone": "America/New_York",
                       "message": message(&s, "new york")}),
        )
        .await;
        walk(
            &app,
            &s,
            &ny_id,
            "new york",
            &[
                "2027-11-06T05:30:00Z",
                "2027-11-07T05:30:00Z",
                "2027-11-08T06:30:00Z",
            ],
        )
        .await;
        app.delete(&format!("/v1/schedules/{ny_id}"), &s.key).await;

        app.stop().await;
    }
}

#[tokio::test]
async fn catch_up_after_downtime_skips_or_fires_once() {
    for engine in engines() {
        let app = manual(engine).await;
        let s = setup(&app, "catchup").await;
        app.clock().set_millis(ms("2027-05-01T09:30:00Z"));
        let mut ids = Vec::new();
        for (name, catch_up) in [("skip", "skip"), ("once", "once")] {
            let a = app
                .post(
                    "/v1/schedules",
                    &s.key,
                    json!({"name": name, "cron": "0 * * * *", "catch_up": catch_up,
                           "message": message(&s, name)}),
                )
                .await;
            assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
            ids.push(a.body["id"].as_str().unwrap().to_string());
        }
        // Three and a half hours pass at once (10:00, 11:00, 12:00 and 13:00 are missed).
        app.clock().set_millis(ms("2027-05-01T13:30:00Z"));
        let once = finished_runs(&app, &s.key, &ids[1], 1).await;
        assert_eq!(once.len(), 1, "{once:?}");
        assert_eq!(once[0]["kind"], "catch_up");
        assert_eq!(once[0]["occurrence_at"], "2027-05-01T10:00:00Z");
        for id in &ids {
            let got = until("the schedule moved past the downtime", || async {
                let got = app.get(&format!("/v1/schedules/{id}"), &s.key).await;
                (got.body["next_fire_times"][0] == "2027-05-01T14:00:00Z").then_some(got)
            })
            .await;
            assert_eq!(got.body["next_fire_times"][0], "2027-05-01T14:00:00Z");
        }
        assert!(runs(&app, &s.key, &ids[0]).await.is_empty());

        // Back on time: both fire at 14:00.
        app.clock().set_millis(ms("2027-05-01T14:00:00Z"));
        let skip = finished_runs(&app, &s.key, &ids[0], 1).await;
        assert_eq!(occurrences(&skip), ["2027-05-01T14:00:00Z"]);
        let once = finished_runs(&app, &s.key, &ids[1], 2).await;
        assert_eq!(
            occurrences(&once),
            ["2027-05-01T10:00:00Z", "2027-05-01T14:00:00Z"]
        );
        until("the messages", || async {
            (count_received(&app, &s, "once").await == 2
                && count_received(&app, &s, "skip").await == 1)
                .then_some(())
        })
        .await;
        app.stop().await;
    }
}

#[tokio::test]
async fn run_now_records_the_run_with_its_message_or_its_error() {
    for engine in engines() {
        let app = manual(engine).await;
        let s = setup(&app, "runnow").await;
        let created = app
            .post(
                "/v1/schedules",
                &s.key,
                json!({"name": "r", "cron": "0 9 * * *", "enabled": false,
                       "message": message(&s, "right now")}),
            )
            .await;
        let id = created.body["id"].as_str().unwrap().to_string();
        let run = app
            .post(&format!("/v1/schedules/{id}/run"), &s.key, json!({}))
            .await;
        assert_eq!(run.status, StatusCode::CREATED, "{}", run.text);
        assert_eq!(run.body["kind"], "manual");
        assert_eq!(run.body["state"], "submitted", "{}", run.text);
        let ids = run.body["message_ids"].as_array().unwrap().clone();
        assert_eq!(ids.len(), 1, "{}", run.text);
        let message_id = ids[0].as_str().unwrap();
        assert!(message_id.starts_with("msg_"), "{message_id}");
        // Delivery's outbox sends it; the message's status says so.
        until("the message sent", || async {
            let m = app.get(&format!("/v1/messages/{message_id}"), &s.key).await;
            (m.body["status"] == "sent").then_some(())
        })
        .await;
        until("the user got it", || async {
            (count_received(&app, &s, "right now").await == 1).then_some(())
        })
        .await;

        // The bot goes away: the next run fails and says why.
        let gone = app.delete(&format!("/v1/bots/{}", s.bot_id), &s.key).await;
        assert!(gone.status.is_success(), "{}", gone.text);
        let failed = app
            .post(&format!("/v1/schedules/{id}/run"), &s.key, json!({}))
            .await;
        assert_eq!(failed.body["state"], "failed", "{}", failed.text);
        assert!(
            failed.body["error"].as_str().unwrap().contains("bot"),
            "{}",
            failed.text
        );

        let listed = runs(&app, &s.key, &id).await;
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0]["id"], run.body["id"]);
        assert_eq!(listed[1]["state"], "failed");
        app.stop().await;
    }
}

#[tokio::test]
async fn other_tenants_see_404_everywhere() {
    for engine in engines() {
        let app = manual(engine).await;
        let s = setup(&app, "owner").await;
        let other_tenant = app.tenant("other").await;
        let (_, other) = app.tenant_key(&other_tenant).await;
        let created = app
            .post(
                "/v1/schedules",
                &s.key,
                json!({"name": "mine", "every": "1h", "message": message(&s, "mine")}),
            )
            .await;
        let id = created.body["id"].as_str().unwrap().to_string();
        let path = format!("/v1/schedules/{id}");
        app.get(&path, &other)
            .await
            .assert_problem(404, "not-found");
        app.patch(&path, &other, json!({"enabled": false}))
            .await
            .assert_problem(404, "not-found");
        app.delete(&path, &other)
            .await
            .assert_problem(404, "not-found");
        app.post(&format!("{path}/run"), &other, json!({}))
            .await
            .assert_problem(404, "not-found");
        app.get(&format!("{path}/runs"), &other)
            .await
            .assert_problem(404, "not-found");
        assert_eq!(
            app.get("/v1/schedules", &other).await.body["data"],
            json!([])
        );
        // Another tenant's bot cannot be named in a message either.
        let foreign = app
            .post(
                "/v1/schedules",
                &other,
                json!({"name": "x", "every": "1h", "message": message(&s, "x")}),
            )
            .await;
        foreign.assert_problem(422, "validation-failed");
        assert_eq!(foreign.body["field"], "message.bot_id");
        assert!(runs(&app, &s.key, &id).await.is_empty());
        app.stop().await;
    }
}

#[tokio::test]
async fn racing_schedulers_fire_each_occurrence_once() {
    for engine in engines() {
        let app = manual(engine).await;
        let s = setup(&app, "race").await;
        app.clock().set_millis(ms("2027-06-01T08:59:00Z"));
        let mut ids = Vec::new();
        for i in 0..12 {
            let a = app
                .post(
                    "/v1/schedules",
                    &s.key,
                    json!({"name": format!("s{i}"), "cron": "0 9 * * *",
                           "message": message(&s, &format!("race {i}"))}),
                )
                .await;
            assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
            ids.push(a.body["id"].as_str().unwrap().to_string());
        }
        // Three more schedulers step alongside the server's own as time reaches 09:00.
        let extra: Vec<_> = (0..3)
            .map(|_| {
                relaygram::schedules::Scheduler::new(
                    app.server.services.clone(),
                    relaygram::schedules::handoff::default_handoff(),
                )
            })
            .collect();
        app.clock().set_millis(ms("2027-06-01T09:00:00Z"));
        let steps = extra.iter().map(|sch| async move {
            for _ in 0..5 {
                sch.step().await.expect("step");
            }
        });
        futures_join_all(steps).await;
        for (i, id) in ids.iter().enumerate() {
            let r = finished_runs(&app, &s.key, id, 1).await;
            assert_eq!(r.len(), 1, "{engine} {r:?}");
            assert_eq!(r[0]["state"], "submitted");
            until("the message", || async {
                (count_received(&app, &s, &format!("race {i}")).await == 1).then_some(())
            })
            .await;
        }
        // Nothing more is due: further steps fire nothing.
        for sch in &extra {
            assert_eq!(sch.step().await.expect("step"), 0);
        }
        let texts = received(&app, &s).await;
        assert_eq!(
            texts.iter().filter(|t| t.starts_with("race ")).count(),
            12,
            "{texts:?}"
        );
        app.stop().await;
    }
}

async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut set = Vec::new();
    for f in futures {
        set.push(f);
    }
    // Poll them together on this task.
    let mut pinned: Vec<_> = set.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        pinned.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pinned.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

/// Runs the real binary with `envs`; returns (success, stdout, stderr).
async fn relaygram_cli(envs: &[(&str, String)], args: &[&str]) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_relaygram"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("relaygram runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cli_lists_adds_runs_pauses_resumes_and_removes() {
    use relaygram_sandbox::{Sandbox, SandboxConfig};
    for engine in engines() {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = relaygram::store::testing::fresh(engine, dir.path())
            .await
            .unwrap();
        let envs = [
            ("RELAYGRAM_DATABASE_URL", db.url.clone()),
            ("RELAYGRAM_TELEGRAM_API_URL", sandbox.url()),
            (
                "RELAYGRAM_DATA_DIR",
                dir.path().join("data").display().to_string(),
            ),
        ];
        let ok = |args: Vec<String>| {
            let envs = envs.clone();
            async move {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let (success, out, err) = relaygram_cli(&envs, &args).await;
                assert!(success, "relaygram {args:?} failed: {err}");
                out
            }
        };
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let tenant = ok(args(&["tenants", "create", "--name", "Acme"])).await;
        let tenant = tenant.split('\t').next().unwrap().trim().to_string();
        let http = reqwest::Client::new();
        let made: Value = http
            .post(format!("{}/sandbox/bots", sandbox.url()))
            .json(&json!({"username": "sched_cli_bot"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = made["token"].as_str().unwrap().to_string();
        let mut with_token = envs.to_vec();
        with_token.push(("RELAYGRAM_BOT_TOKEN", token));
        let (success, added, err) =
            relaygram_cli(&with_token, &["bots", "add", "--tenant", &tenant]).await;
        assert!(success, "{err}");
        let bot_id = added.split('\t').next().unwrap().to_string();
        let user: Value = http
            .post(format!("{}/sandbox/users", sandbox.url()))
            .json(&json!({"first_name": "Op"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let user = user["id"].as_i64().unwrap();
        http.post(format!("{}/sandbox/users/{user}/messages", sandbox.url()))
            .json(&json!({"bot": "sched_cli_bot", "text": "hi"}))
            .send()
            .await
            .unwrap();
        let message =
            json!({"bot_id": bot_id, "to": {"chat_id": user}, "text": "from the cli"}).to_string();

        let out = ok(args(&[
            "schedules",
            "add",
            "--tenant",
            &tenant,
            "--name",
            "Morning",
            "--cron",
            "0 9 * * MON-FRI",
            "--timezone",
            "Europe/Berlin",
            "--message",
            &message,
        ]))
        .await;
        let id = out.split('\t').next().unwrap().to_string();
        assert!(id.starts_with("sch_"), "{out}");
        assert!(out.contains("enabled"), "{out}");
        let next = out.split("next: ").nth(1).unwrap();
        assert_eq!(next.trim().split(", ").count(), 5, "{out}");
        assert!(ok(args(&["schedules", "list"])).await.contains(&id));

        // In each recipient's zone: the line says so and shows the local times.
        let out = ok(args(&[
            "schedules",
            "add",
            "--tenant",
            &tenant,
            "--name",
            "Nine",
            "--cron",
            "0 9 * * *",
            "--timezone",
            "Europe/Paris",
            "--recipient-timezone",
            "--message",
            &message,
        ]))
        .await;
        let local_id = out.split('\t').next().unwrap().to_string();
        assert!(
            out.contains("each recipient's zone (default Europe/Paris)"),
            "{out}"
        );
        let local = out.split("local: ").nth(1).unwrap();
        assert_eq!(local.trim().split(", ").count(), 5, "{out}");
        assert!(
            local.trim().split(", ").all(|t| t.ends_with("T09:00:00")),
            "{out}"
        );
        assert!(
            ok(args(&["schedules", "list"]))
                .await
                .contains("each recipient's zone")
        );
        let (success, _, err) = relaygram_cli(
            &envs,
            &[
                "schedules",
                "add",
                "--tenant",
                &tenant,
                "--name",
                "bad",
                "--every",
                "1d",
                "--recipient-timezone",
                "--message",
                &message,
            ],
        )
        .await;
        assert!(!success && err.contains("recipient_timezone"), "{err}");
        assert!(
            ok(args(&["schedules", "remove", &local_id]))
                .await
                .contains("removed")
        );

        // Bad input: a plain message naming the field, non-zero exit, nothing stored.
        for (flag, value, field) in [
            ("--cron", "99 * * * *", "cron"),
            ("--every", "soon", "every"),
        ] {
            let (success, _, err) = relaygram_cli(
                &envs,
                &[
                    "schedules",
                    "add",
                    "--tenant",
                    &tenant,
                    "--name",
                    "bad",
                    flag,
                    value,
                    "--message",
                    &message,
                ],
            )
            .await;
            assert!(!success);
            assert!(err.contains(field), "{err}");
        }
        let (success, _, err) = relaygram_cli(
            &envs,
            &[
                "schedules",
                "add",
                "--tenant",
                &tenant,
                "--name",
                "bad",
                "--every",
                "1h",
                "--timezone",
                "Atlantis/Capital",
                "--message",
                &message,
            ],
        )
        .await;
        assert!(!success && err.contains("timezone"), "{err}");
        assert_eq!(ok(args(&["schedules", "list"])).await.lines().count(), 1);

        let paused = ok(args(&["schedules", "pause", &id])).await;
        assert!(
            paused.contains("paused") && paused.contains("next: -"),
            "{paused}"
        );
        let resumed = ok(args(&["schedules", "resume", &id])).await;
        assert!(resumed.contains("enabled"), "{resumed}");

        // The CLI hands the run to the outbox (the server's senders deliver it).
        let ran = ok(args(&["schedules", "run", &id])).await;
        assert!(
            ran.contains("manual") && ran.contains("submitted") && ran.contains("msg_"),
            "{ran}"
        );

        assert!(
            ok(args(&["schedules", "remove", &id]))
                .await
                .contains("removed")
        );
        assert_eq!(ok(args(&["schedules", "list"])).await.trim(), "");
        let (success, _, err) = relaygram_cli(&envs, &["schedules", "run", &id]).await;
        assert!(!success && err.contains("not found"), "{err}");
        sandbox.shutdown().await;
    }
}

const CRASH_ADMIN_KEY: &str = "rg_schedule_crash_admin_key_0123456789";

async fn start_binary(
    db_url: &str,
    data_dir: &std::path::Path,
    port: u16,
    sandbox: &str,
) -> tokio::process::Child {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_relaygram"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RELAYGRAM_DATABASE_URL", db_url)
        .env("RELAYGRAM_DATA_DIR", data_dir)
        .env("RELAYGRAM_BIND", format!("127.0.0.1:{port}"))
        .env("RELAYGRAM_TELEGRAM_API_URL", sandbox)
        .env("RELAYGRAM_ADMIN_KEY", CRASH_ADMIN_KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the relaygram binary starts");
    let http = reqwest::Client::new();
    until("the server to answer", || async {
        http.get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
    child
}

/// Sets a run back to `claimed` with its lease over (the server is stopped).
async fn reclaim(db_url: &str, run_id: &str) {
    let sql = "UPDATE schedule_runs SET state = 'claimed', finished_at = NULL, lease_until = 0 \
               WHERE id = $1";
    let changed = crate::helpers::exec_sql(db_url, sql, &[run_id]).await;
    assert_eq!(changed, 1);
}

#[tokio::test]
async fn kill_9_mid_run_and_restart_never_fire_an_occurrence_twice() {
    use relaygram_sandbox::{Sandbox, SandboxConfig};
    for engine in engines() {
        let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
        let sb = sandbox.url();
        let dir = tempfile::tempdir().unwrap();
        let db = relaygram::store::testing::fresh(engine, dir.path())
            .await
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let data = dir.path().join("data");
        let http = reqwest::Client::new();
        let mut child = start_binary(&db.url, &data, port, &sb).await;
        let call = |method: reqwest::Method, path: String, body: Option<Value>| {
            let http = http.clone();
            let url = format!("{base}{path}");
            async move {
                let mut r = http.request(method, url).bearer_auth(CRASH_ADMIN_KEY);
                if let Some(body) = body {
                    r = r.json(&body);
                }
                let r = r.send().await.ok()?;
                r.json::<Value>().await.ok()
            }
        };

        let bot: Value = http
            .post(format!("{sb}/sandbox/bots"))
            .json(&json!({"username": "crash_sched_bot"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let tenant = call(
            reqwest::Method::POST,
            "/v1/tenants".into(),
            Some(json!({"name": "t"})),
        )
        .await
        .unwrap();
        let added = call(
            reqwest::Method::POST,
            "/v1/bots".into(),
            Some(json!({"token": bot["token"], "tenant_id": tenant["id"]})),
        )
        .await
        .unwrap();
        let bot_id = added["id"].as_str().unwrap().to_string();
        let user: Value = http
            .post(format!("{sb}/sandbox/users"))
            .json(&json!({"first_name": "Alice"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let user = user["id"].as_i64().unwrap();
        http.post(format!("{sb}/sandbox/users/{user}/messages"))
            .json(&json!({"bot": "crash_sched_bot", "text": "/start"}))
            .send()
            .await
            .unwrap();
        let texts = |http: reqwest::Client| {
            let sb = sb.clone();
            async move {
                let t: Value = http
                    .get(format!(
                        "{sb}/sandbox/chats/{user}/messages?bot=crash_sched_bot"
                    ))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                Some(
                    t["messages"]
                        .as_array()?
                        .iter()
                        .filter(|m| m["direction"] == "out")
                        .filter_map(|m| m["text"].as_str().map(str::to_string))
                        .collect::<Vec<_>>(),
                )
            }
        };
        until("the welcome reply", || async {
            texts(http.clone()).await.filter(|t| !t.is_empty())
        })
        .await;
        // The welcome reply is an outbox message too: count only what the schedules made.
        let after_welcome = relaygram::ids::rfc3339(relaygram::ids::now_millis());

        // A: five occurrences, one a second, from three seconds from now; the process is
        // killed among them.
        let first = (relaygram::ids::now_millis() / 1000 + 3) * 1000;
        let create = |body: Value| call(reqwest::Method::POST, "/v1/schedules".into(), Some(body));
        let message = |text: &str| json!({"bot_id": bot_id, "to": {"chat_id": user}, "text": text});
        let a = create(
            json!({"name": "ticks", "cron": "* * * * * *", "tenant_id": tenant["id"],
            "start_at": relaygram::ids::rfc3339(first),
            "end_at": relaygram::ids::rfc3339(first + 4_000),
            "message": message("tick")}),
        )
        .await
        .unwrap();
        // On a loaded machine the first seconds may have passed by now: the answer says
        // which occurrences are still ahead (at most five).
        let expected: Vec<String> = a["next_fire_times"]
            .as_array()
            .expect("created")
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        assert!(
            expected.len() >= 3,
            "the machine is too slow for this test: {a}"
        );
        let n = expected.len();
        let a = a["id"].as_str().expect("created").to_string();
        // B: paused; run once by hand, so its hand-off was accepted before the crash.
        let b = create(json!({"name": "manual", "every": "1h", "enabled": false,
            "tenant_id": tenant["id"], "message": message("recovered")}))
        .await
        .unwrap();
        let b = b["id"].as_str().expect("created").to_string();
        let run = call(
            reqwest::Method::POST,
            format!("/v1/schedules/{b}/run"),
            Some(json!({})),
        )
        .await
        .unwrap();
        assert_eq!(run["state"], "submitted", "{run}");
        let run_id = run["id"].as_str().unwrap().to_string();
        let accepted = run["message_ids"].clone();
        let runs_of = |id: String| {
            let call = &call;
            async move {
                let v = call(
                    reqwest::Method::GET,
                    format!("/v1/schedules/{id}/runs"),
                    None,
                )
                .await?;
                v["data"].as_array().cloned()
            }
        };
        until("two ticks fired", || async {
            let r = runs_of(a.clone()).await?;
            (r.len() >= 2).then_some(())
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
        // As if the process had died after delivery accepted B's run but before the run was
        // marked submitted: claimed, its lease over.
        reclaim(&db.url, &run_id).await;

        let mut child = start_binary(&db.url, &data, port, &sb).await;
        let done = until("the interrupted run handed over again", || async {
            let r = runs_of(b.clone()).await?;
            (r.len() == 1 && r[0]["state"] == "submitted").then_some(r)
        })
        .await;
        // Delivery answered as the first time: same message, nothing new stored.
        assert_eq!(done[0]["message_ids"], accepted, "{done:?}");
        // Every occurrence has a finished run (a run the kill interrupted is completed when
        // its lease ends); a failure shows what there is.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
        let mut poll = tokio::time::interval(std::time::Duration::from_millis(50));
        let ticks = loop {
            poll.tick().await;
            let r = runs_of(a.clone()).await.unwrap_or_default();
            if r.len() >= n && r.iter().all(|r| r["state"] != "claimed") {
                break r;
            }
            if tokio::time::Instant::now() >= deadline {
                let schedule = call(reqwest::Method::GET, format!("/v1/schedules/{a}"), None).await;
                panic!(
                    "not every occurrence fired; expected {expected:?}, runs {r:?}, \
                     schedule {schedule:?}"
                );
            }
        };
        assert!(ticks.iter().all(|r| r["state"] == "submitted"), "{ticks:?}");
        let mut at: Vec<&str> = ticks
            .iter()
            .map(|r| r["occurrence_at"].as_str().unwrap())
            .collect();
        at.sort();
        at.dedup();
        assert_eq!(at, expected, "each occurrence once: {ticks:?}");
        // Delivery takes it from here; its own crash rule applies to sends cut by the kill
        // (`unknown`: maybe sent, never repeated). Wait until every message is final.
        let messages_path = format!(
            "/v1/messages?chat_id={user}&limit=200&tenant_id={}&since={after_welcome}",
            tenant["id"].as_str().unwrap()
        );
        let outbox = until("every message in a final state", || async {
            let v = call(reqwest::Method::GET, messages_path.clone(), None).await?;
            let list = v["data"].as_array()?.clone();
            list.iter()
                .all(|m| {
                    relaygram::store::FINAL_STATES.contains(&m["status"].as_str().unwrap_or(""))
                })
                .then_some(list)
        })
        .await;
        assert_eq!(
            outbox.len(),
            n + 1,
            "each tick and the recovered run's message, each stored once: {outbox:?}"
        );
        // The delivery states of B's message and of the ticks (all the others: a tick whose
        // acceptance the kill cut short has no ids on its run, but its message exists).
        let status_of = |text: &str| -> Vec<String> {
            let recovered = accepted.as_array().unwrap();
            outbox
                .iter()
                .filter(|m| recovered.contains(&m["id"]) == (text == "recovered"))
                .map(|m| m["status"].as_str().unwrap().to_string())
                .collect()
        };
        let sent = texts(http.clone()).await.unwrap();
        for (text, stored) in [("tick", n), ("recovered", 1)] {
            let statuses = status_of(text);
            assert_eq!(statuses.len(), stored, "{text}: {outbox:?}");
            let received = sent.iter().filter(|t| *t == text).count();
            let surely = statuses.iter().filter(|s| *s == "sent").count();
            let maybe = statuses.iter().filter(|s| *s == "unknown").count();
            assert!(
                received >= surely && received <= surely + maybe && received <= stored,
                "{text}: received {received}, statuses {statuses:?}"
            );
        }
        child.kill().await.unwrap();
        sandbox.shutdown().await;
    }
}

//! The app's words for its bot (`/v1/bots/{id}/texts`): custom welcome, help and
//! unknown-command texts chosen by the user's language, built-in commands turned off so the
//! app handles them, bad input refused with nothing changed, and the CLI.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Answer, TestApp, engines, outcome, until};

/// A tenant with a key and a bot (polling the sandbox).
struct Setup {
    tenant: String,
    key: String,
    bot_id: String,
    username: String,
}

async fn setup(app: &TestApp, username: &str) -> Setup {
    let tenant = app.tenant("Words").await;
    let (_, key) = app.tenant_key(&tenant).await;
    let (_, token) = app.sandbox_bot(username).await;
    let added = app.post("/v1/bots", &key, json!({"token": token})).await;
    assert_eq!(added.status.as_u16(), 201, "{}", added.text);
    Setup {
        tenant,
        key,
        bot_id: added.body["id"].as_str().unwrap().to_string(),
        username: username.to_string(),
    }
}

/// A sandbox user with a Telegram `language_code` (or none).
async fn user(app: &TestApp, name: &str, language: Option<&str>) -> i64 {
    let mut body = json!({"first_name": name});
    if let Some(l) = language {
        body["language_code"] = json!(l);
    }
    app.sandbox_post("/sandbox/users", body).await["id"]
        .as_i64()
        .unwrap()
}

async fn put_text(
    app: &TestApp,
    s: &Setup,
    key: &str,
    language: Option<&str>,
    text: &str,
) -> Answer {
    let query = language
        .map(|l| format!("?language={l}"))
        .unwrap_or_default();
    app.call(
        Method::PUT,
        &format!("/v1/bots/{}/texts/{key}{query}", s.bot_id),
        Some(&s.key),
        Some(json!({"text": text})),
    )
    .await
}

/// Sends `text` as `user` and returns the bot's next reply.
async fn ask(app: &TestApp, s: &Setup, user: i64, text: &str) -> String {
    let before = app.bot_texts(user, &s.username).await.len();
    app.sandbox_post(
        &format!("/sandbox/users/{user}/messages"),
        json!({"bot": s.username, "text": text}),
    )
    .await;
    until("the bot's reply", || async {
        app.bot_texts(user, &s.username).await.get(before).cloned()
    })
    .await
}

async fn say(app: &TestApp, s: &Setup, user: i64, text: &str) {
    app.sandbox_post(
        &format!("/sandbox/users/{user}/messages"),
        json!({"bot": s.username, "text": text}),
    )
    .await;
}

/// The tenant's events, oldest first, once there are at least `count`.
async fn events(app: &TestApp, s: &Setup, count: usize) -> Vec<Value> {
    until("the events", || async {
        let a = app.get("/v1/events?limit=200", &s.key).await;
        let data = a.body["data"].as_array()?.clone();
        (data.len() >= count).then_some(data)
    })
    .await
}

/// Every update of the bot, oldest first, once `count` are processed.
async fn settled(app: &TestApp, s: &Setup, count: usize) -> Vec<Value> {
    until("updates to be processed", || async {
        let a = app
            .get(
                &format!("/v1/updates?bot_id={}&limit=200", s.bot_id),
                &s.key,
            )
            .await;
        let mut list = a.body["data"].as_array()?.clone();
        let done = list.len() == count
            && list
                .iter()
                .all(|u| u["status"] != "pending" && u["status"] != "processing");
        list.reverse();
        done.then_some(list)
    })
    .await
}

#[tokio::test]
async fn custom_texts_are_chosen_by_the_users_language() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "words_bot").await;

        // The bot's own default welcome, then a German one; a second PUT replaces.
        let a = put_text(&app, &s, "welcome", None, "Hi {{ user.first_name }}").await;
        assert_eq!(a.status.as_u16(), 201, "{engine}: {}", a.text);
        assert_eq!(a.body["language"], Value::Null);
        assert_eq!(a.body["custom"], true);
        let welcome = "Hello {{ user.first_name }}, this is @{{ bot.username }}\
                       {% if link %} ({{ link.external_id }}){% endif %}.";
        let a = put_text(&app, &s, "welcome", None, welcome).await;
        assert_eq!(a.status.as_u16(), 200, "{}", a.text);
        assert_eq!(a.body["text"], welcome);
        let a = put_text(
            &app,
            &s,
            "welcome",
            Some("DE"),
            "Willkommen, {{ user.first_name }}!",
        )
        .await;
        assert_eq!(a.status.as_u16(), 201, "{}", a.text);
        assert_eq!(a.body["language"], "de", "stored lower-case");
        for (key, language, text) in [
            ("help", Some("de"), "Das kann ich:"),
            ("unknown_command", None, "No /{{ command }} here."),
            ("unknown_command", Some("de"), "Kein /{{ command }}."),
        ] {
            let a = put_text(&app, &s, key, language, text).await;
            assert_eq!(a.status.as_u16(), 201, "{key}: {}", a.text);
        }

        let anna = user(&app, "Anna", Some("de")).await;
        let carla = user(&app, "Carla", Some("de-AT")).await;
        let bob = user(&app, "Bob", Some("en")).await;
        let eve = user(&app, "Eve", None).await;

        // German, also for de-AT (its base language).
        assert_eq!(ask(&app, &s, anna, "/start").await, "Willkommen, Anna!");
        assert_eq!(ask(&app, &s, carla, "/start").await, "Willkommen, Carla!");
        let help = ask(&app, &s, anna, "/help").await;
        assert!(help.starts_with("Das kann ich:\n/start — "), "{help}");
        let unknown = ask(&app, &s, anna, "/nope").await;
        assert!(
            unknown.starts_with("Kein /nope.\n\nDas kann ich:\n/start — "),
            "{unknown}"
        );
        // Everyone else: the bot's default, or relaygram's where the bot set none.
        for (who, name) in [(bob, "Bob"), (eve, "Eve")] {
            assert_eq!(
                ask(&app, &s, who, "/start").await,
                format!("Hello {name}, this is @words_bot.")
            );
            let help = ask(&app, &s, who, "/help").await;
            assert!(
                help.starts_with("Here is what I can do:\n/start — "),
                "{help}"
            );
            let unknown = ask(&app, &s, who, "/nope").await;
            assert!(
                unknown.starts_with("No /nope here.\n\nHere is what I can do:\n"),
                "{unknown}"
            );
        }

        // A linked user's text names their app user.
        let token = app
            .post(
                "/v1/link-tokens",
                &s.key,
                json!({"bot_id": s.bot_id, "external_id": "user-7"}),
            )
            .await;
        assert_eq!(token.status.as_u16(), 201, "{}", token.text);
        let token = token.body["token"].as_str().unwrap().to_string();
        let linked = ask(&app, &s, bob, &format!("/start {token}")).await;
        assert!(
            linked.starts_with("Done! This chat is now linked"),
            "{linked}"
        );
        assert_eq!(
            ask(&app, &s, bob, "/start").await,
            "Hello Bob, this is @words_bot (user-7)."
        );
        // Linking answers are the app's too.
        let a = put_text(&app, &s, "link_unknown", Some("de"), "Unbekannter Code.").await;
        assert_eq!(a.status.as_u16(), 201, "{}", a.text);
        assert_eq!(ask(&app, &s, anna, "/link XYZ").await, "Unbekannter Code.");

        // What a user of a language gets, and where it comes from.
        let path = |rest: &str| format!("/v1/bots/{}/texts{rest}", s.bot_id);
        let got = app.get(&path("/welcome?language=de-at"), &s.key).await;
        assert_eq!(got.status.as_u16(), 200, "{}", got.text);
        assert_eq!(got.body["language"], "de");
        assert_eq!(got.body["text"], "Willkommen, {{ user.first_name }}!");
        let got = app.get(&path("/welcome?language=fr"), &s.key).await;
        assert_eq!(got.body["language"], Value::Null);
        assert_eq!(got.body["text"], welcome);
        assert_eq!(got.body["custom"], true);
        let got = app.get(&path("/help"), &s.key).await;
        assert_eq!(got.body["custom"], false);
        assert_eq!(got.body["text"], "Here is what I can do:");
        assert_eq!(got.body["updated_at"], Value::Null);

        // The list: every key, its default and variables, the bot's texts (default first).
        let list = app.get(&path(""), &s.key).await;
        assert_eq!(list.status.as_u16(), 200, "{}", list.text);
        let keys = list.body["data"].as_array().unwrap();
        assert_eq!(keys.len(), 27);
        let of = |k: &str| keys.iter().find(|e| e["key"] == k).unwrap().clone();
        let w = of("welcome");
        assert_eq!(w["texts"].as_array().unwrap().len(), 2);
        assert_eq!(w["texts"][0]["language"], Value::Null);
        assert_eq!(w["texts"][1]["language"], "de");
        assert!(
            w["variables"]
                .as_array()
                .unwrap()
                .contains(&json!("link.external_id"))
        );
        assert!(
            of("unknown_command")["variables"]
                .as_array()
                .unwrap()
                .contains(&json!("command"))
        );
        assert!(of("stop_confirm")["texts"].as_array().unwrap().is_empty());
        assert!(
            of("stop_confirm")["default"]
                .as_str()
                .unwrap()
                .starts_with("Stop")
        );

        // Removing the German welcome: Anna gets the bot's default again.
        let gone = app.delete(&path("/welcome?language=de"), &s.key).await;
        assert_eq!(gone.status.as_u16(), 204, "{}", gone.text);
        assert_eq!(
            ask(&app, &s, anna, "/start").await,
            "Hello Anna, this is @words_bot."
        );
        app.delete(&path("/welcome?language=de"), &s.key)
            .await
            .assert_problem(404, "not-found");
        // And the bot's default: relaygram's own.
        let gone = app.delete(&path("/welcome"), &s.key).await;
        assert_eq!(gone.status.as_u16(), 204, "{}", gone.text);
        assert_eq!(
            ask(&app, &s, eve, "/start").await,
            "Welcome to words_bot! Send /help to see what I can do."
                .replace("words_bot", &bot_first_name(&app, &s).await)
        );
        app.stop().await;
    }
}

async fn bot_first_name(app: &TestApp, s: &Setup) -> String {
    app.get(&format!("/v1/bots/{}", s.bot_id), &s.key)
        .await
        .body["first_name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_builtin_turned_off_reaches_the_app_instead() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "own_bot").await;
        let path = format!("/v1/bots/{}", s.bot_id);
        let all_on = json!({"help": true, "settings": true, "start": true, "stop": true});
        assert_eq!(
            app.get(&path, &s.key).await.body["builtin_commands"],
            all_on
        );

        let a = app
            .patch(
                &path,
                &s.key,
                json!({"builtin_commands": {"help": false, "start": false, "stop": false}}),
            )
            .await;
        assert_eq!(a.status.as_u16(), 200, "{engine}: {}", a.text);
        assert_eq!(
            a.body["builtin_commands"],
            json!({"help": false, "settings": true, "start": false, "stop": false})
        );

        let ann = user(&app, "Ann", Some("en")).await;
        say(&app, &s, ann, "/start").await;
        say(&app, &s, ann, "/help").await;
        say(&app, &s, ann, "/stop").await;
        // /settings is still relaygram's: its answer is the only reply.
        let settings = ask(&app, &s, ann, "/settings").await;
        assert!(
            settings.starts_with("This chat is not linked yet"),
            "{settings}"
        );
        let updates = settled(&app, &s, 4).await;
        assert_eq!(app.bot_texts(ann, &s.username).await.len(), 1);
        assert_eq!(
            outcome(&updates[0]),
            "/start is turned off: forwarded as command.received"
        );
        assert_eq!(
            outcome(&updates[1]),
            "/help is turned off: forwarded as command.received"
        );

        // The app got each one as command.received (built_in: false), and the new chat.
        let evs = events(&app, &s, 5).await;
        let kinds: Vec<(&str, &str, bool)> = evs
            .iter()
            .filter(|e| e["type"] == "command.received")
            .map(|e| {
                (
                    e["data"]["command"].as_str().unwrap(),
                    e["type"].as_str().unwrap(),
                    e["data"]["built_in"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("start", "command.received", false),
                ("help", "command.received", false),
                ("stop", "command.received", false),
                ("settings", "command.received", true),
            ]
        );
        assert!(evs.iter().any(|e| e["type"] == "chat.started"), "{evs:?}");

        // A link token in /start still links: linking stays relaygram's.
        let token = app
            .post(
                "/v1/link-tokens",
                &s.key,
                json!({"bot_id": s.bot_id, "external_id": "ann"}),
            )
            .await;
        let token = token.body["token"].as_str().unwrap().to_string();
        let linked = ask(&app, &s, ann, &format!("/start {token}")).await;
        assert!(
            linked.starts_with("Done! This chat is now linked"),
            "{linked}"
        );

        // On again.
        let a = app
            .patch(&path, &s.key, json!({"builtin_commands": {"help": true}}))
            .await;
        assert_eq!(a.status.as_u16(), 200, "{}", a.text);
        assert_eq!(a.body["builtin_commands"]["help"], true);
        assert_eq!(a.body["builtin_commands"]["start"], false);
        let help = ask(&app, &s, ann, "/help").await;
        assert!(help.starts_with("Here is what I can do:"), "{help}");
        app.stop().await;
    }
}

#[tokio::test]
async fn bad_texts_are_refused_and_change_nothing() {
    for engine in engines() {
        let app = TestApp::spawn(engine).await;
        let s = setup(&app, "strict_bot").await;
        let texts = |rest: &str| format!("/v1/bots/{}/texts{rest}", s.bot_id);
        let put = |rest: &str, body: Value| {
            let path = texts(rest);
            let key = s.key.clone();
            let app = &app;
            async move { app.call(Method::PUT, &path, Some(&key), Some(body)).await }
        };

        let cases = [
            ("/welcom", json!({"text": "Hi"}), "key", "welcom"),
            (
                "/welcome?language=german",
                json!({"text": "Hi"}),
                "language",
                "german",
            ),
            (
                "/welcome?language=de_",
                json!({"text": "Hi"}),
                "language",
                "de_",
            ),
            (
                "/welcome",
                json!({"text": "Hi {{ user.first_name }"}),
                "text",
                "not a valid template",
            ),
            (
                "/welcome",
                json!({"text": "Hi {{ nobody }}"}),
                "text",
                "nobody",
            ),
            (
                "/welcome",
                json!({"text": "Hi {{ command }}"}),
                "text",
                "command",
            ),
            (
                "/welcome",
                json!({"text": "Hi {{ link.external_id }}"}),
                "text",
                "{% if link %}",
            ),
            ("/welcome", json!({"text": "  "}), "text", "not only spaces"),
            (
                "/stop_yes_button",
                json!({"text": "Yes\nstop"}),
                "text",
                "one line",
            ),
            ("/stopped", json!({"text": "x".repeat(201)}), "text", "200"),
        ];
        for (rest, body, field, says) in cases {
            let a = put(rest, body).await;
            a.assert_problem(422, "validation-failed");
            assert_eq!(a.body["field"], field, "{engine} {rest}: {}", a.text);
            assert!(a.text.contains(says), "{rest}: {}", a.text);
        }
        // Bodies with unknown or missing fields, and unknown parameters.
        put("/welcome", json!({"text": "Hi", "lang": "de"}))
            .await
            .assert_problem(422, "validation-failed");
        put("/welcome", json!({}))
            .await
            .assert_problem(422, "validation-failed");
        let a = app.get(&texts("/welcome?lang=de"), &s.key).await;
        assert_eq!(a.status.as_u16(), 400, "{}", a.text);
        app.get(&texts("/nope"), &s.key)
            .await
            .assert_problem(422, "validation-failed");
        app.get(&texts("/welcome?language=1"), &s.key)
            .await
            .assert_problem(422, "validation-failed");
        app.delete(&texts("/nope"), &s.key)
            .await
            .assert_problem(422, "validation-failed");
        app.delete(&texts("/welcome"), &s.key)
            .await
            .assert_problem(404, "not-found");

        // Built-in switches: only start, help, settings and stop; a bad field anywhere in
        // the body changes nothing.
        let bot = format!("/v1/bots/{}", s.bot_id);
        let a = app
            .patch(&bot, &s.key, json!({"builtin_commands": {"link": false}}))
            .await;
        a.assert_problem(422, "validation-failed");
        assert_eq!(a.body["field"], "builtin_commands");
        assert!(a.text.contains("\\\"link\\\""), "{}", a.text);
        let a = app
            .patch(
                &bot,
                &s.key,
                json!({"builtin_commands": {"help": false}, "allowed_updates": ["nope"]}),
            )
            .await;
        a.assert_problem(422, "validation-failed");
        let a = app
            .patch(&bot, &s.key, json!({"builtin_commands": {"help": "no"}}))
            .await;
        assert!(a.status.is_client_error(), "{}", a.text);

        // Another tenant sees no bot.
        let other = app.tenant("Other").await;
        let (_, other_key) = app.tenant_key(&other).await;
        app.call(
            Method::PUT,
            &texts("/welcome"),
            Some(&other_key),
            Some(json!({"text": "Hi"})),
        )
        .await
        .assert_problem(404, "not-found");
        app.get(&texts(""), &other_key)
            .await
            .assert_problem(404, "not-found");
        app.patch(
            &bot,
            &other_key,
            json!({"builtin_commands": {"help": false}}),
        )
        .await
        .assert_problem(404, "not-found");

        // Nothing was stored or changed.
        let list = app.get(&texts(""), &s.key).await;
        assert!(
            list.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|k| k["texts"].as_array().unwrap().is_empty()),
            "{}",
            list.text
        );
        let b = app.get(&bot, &s.key).await;
        assert_eq!(
            b.body["builtin_commands"],
            json!({"help": true, "settings": true, "start": true, "stop": true})
        );
        assert!(b.body["allowed_updates"].is_null());
        let _ = &s.tenant;
        app.stop().await;
    }
}

#[tokio::test]
async fn the_cli_sets_texts_and_builtins() {
    for engine in engines() {
        let sandbox = relaygram_sandbox::Sandbox::start(Default::default())
            .await
            .unwrap();
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
        let run = |args: Vec<String>, extra: Vec<(&'static str, String)>| {
            let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_relaygram"));
            cmd.args(&args)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default());
            for (k, v) in envs.iter().cloned().chain(extra) {
                cmd.env(k, v);
            }
            async move { cmd.output().await.expect("relaygram runs") }
        };
        let ok = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            let out = run(args.clone(), Vec::new());
            async move {
                let out = out.await;
                assert!(
                    out.status.success(),
                    "relaygram {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8(out.stdout).unwrap()
            }
        };
        ok(&["migrate"]).await;
        let tenant = ok(&["tenants", "create", "--name", "Acme"]).await;
        let tenant = tenant.split('\t').next().unwrap().trim().to_string();
        let made: Value = reqwest::Client::new()
            .post(format!("{}/sandbox/bots", sandbox.url()))
            .json(&json!({"username": "cli_words_bot"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let added = run(
            ["bots", "add", "--tenant", &tenant]
                .map(str::to_string)
                .to_vec(),
            vec![(
                "RELAYGRAM_BOT_TOKEN",
                made["token"].as_str().unwrap().to_string(),
            )],
        )
        .await;
        assert!(
            added.status.success(),
            "{}",
            String::from_utf8_lossy(&added.stderr)
        );
        let bot = String::from_utf8(added.stdout).unwrap();
        let bot = bot.split('\t').next().unwrap().trim().to_string();

        let set = ok(&[
            "bots",
            "texts",
            "set",
            &bot,
            "welcome",
            "Hallo {{ user.first_name }}",
            "--language",
            "de",
        ])
        .await;
        assert!(set.starts_with("set welcome\tde\tHallo"), "{set}");
        let got = ok(&[
            "bots",
            "texts",
            "get",
            &bot,
            "welcome",
            "--language",
            "de-ch",
        ])
        .await;
        assert_eq!(got.trim(), "welcome\tde\tHallo {{ user.first_name }}");
        let got = ok(&["bots", "texts", "get", &bot, "help"]).await;
        assert!(got.trim().ends_with("(built-in)"), "{got}");
        let list = ok(&["bots", "texts", "list", &bot]).await;
        assert!(list.contains("welcome\tde\tHallo"), "{list}");
        assert!(list.lines().count() >= 22, "{list}");
        let bad = run(
            ["bots", "texts", "set", &bot, "welcome", "{{ nobody }}"]
                .map(str::to_string)
                .to_vec(),
            Vec::new(),
        )
        .await;
        assert!(!bad.status.success());
        assert!(String::from_utf8_lossy(&bad.stderr).contains("nobody"));
        let reset = ok(&[
            "bots",
            "texts",
            "reset",
            &bot,
            "welcome",
            "--language",
            "de",
        ])
        .await;
        assert!(reset.contains("removed welcome (de)"), "{reset}");

        let off = ok(&["bots", "builtin", &bot, "help", "off"]).await;
        assert!(off.contains("built-in commands off: help"), "{off}");
        let on = ok(&["bots", "builtin", &bot, "help", "on"]).await;
        assert!(on.contains("built-in commands off: none"), "{on}");
        let bad = run(
            ["bots", "builtin", &bot, "link", "off"]
                .map(str::to_string)
                .to_vec(),
            Vec::new(),
        )
        .await;
        assert!(!bad.status.success());
        drop(db);
    }
}

//! The story-style storage suite, run on every engine.

use super::testing::{self, engines, fresh};
use super::*;

async fn open(engine: &str, dir: &std::path::Path) -> (Arc<dyn Store>, testing::TestDatabase) {
    let db = fresh(engine, dir).await.expect("fresh database");
    let store = connect(&SecretString::from(db.url.clone()))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    store.migrate().await.expect("migrating twice is a no-op");
    (store, db)
}

fn tenant(id: &str, name: &str) -> Tenant {
    Tenant {
        id: id.into(),
        name: name.into(),
        created_at: 1_700_000_000_000,
    }
}

fn key(id: &str, tenant_id: Option<&str>, hash: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        tenant_id: tenant_id.map(str::to_string),
        scope: if tenant_id.is_some() {
            KeyScope::Tenant
        } else {
            KeyScope::Admin
        },
        name: "k".into(),
        prefix: format!("rg_{}", &hash[..4]),
        hash: hash.into(),
        created_at: 1,
        revoked_at: None,
    }
}

fn bot(id: &str, tenant_id: &str, telegram_id: i64) -> BotRecord {
    BotRecord {
        id: id.into(),
        tenant_id: tenant_id.into(),
        telegram_id,
        username: format!("bot{telegram_id}_bot"),
        first_name: "Bot".into(),
        token_sealed: "v1:sealed".into(),
        webhook_secret_sealed: None,
        webhook_url: None,
        mode: BotMode::Polling,
        enabled: true,
        created_at: 5,
        updated_at: 5,
        allowed_updates: None,
        builtins_off: Vec::new(),
    }
}

async fn story(store: Arc<dyn Store>) {
    let engine = store.engine();
    store.ping().await.unwrap();

    // Facts: first writer wins.
    assert_eq!(store.get_meta("k").await.unwrap(), None);
    assert_eq!(store.put_meta_if_absent("k", "one").await.unwrap(), "one");
    assert_eq!(store.put_meta_if_absent("k", "two").await.unwrap(), "one");
    assert_eq!(store.get_meta("k").await.unwrap().as_deref(), Some("one"));

    // Tenants, paginated by cursor.
    for i in 0..5 {
        store
            .insert_tenant(&tenant(&format!("ten_{i:02}"), &format!("T{i}")))
            .await
            .unwrap();
    }
    let first = store.list_tenants(None, &Page::first(2)).await.unwrap();
    assert_eq!(first.items.len(), 2, "{engine}");
    assert_eq!(first.items[0].id, "ten_00");
    assert_eq!(first.next_cursor.as_deref(), Some("ten_01"));
    let mut seen: Vec<String> = first.items.iter().map(|t| t.id.clone()).collect();
    let mut cursor = first.next_cursor;
    while let Some(after) = cursor {
        let page = store
            .list_tenants(
                None,
                &Page {
                    after: Some(after),
                    limit: 2,
                },
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|t| t.id.clone()));
        cursor = page.next_cursor;
    }
    assert_eq!(seen, ["ten_00", "ten_01", "ten_02", "ten_03", "ten_04"]);
    let only = store
        .list_tenants(Some("ten_03"), &Page::first(10))
        .await
        .unwrap();
    assert_eq!(only.items, vec![tenant("ten_03", "T3")]);
    assert!(store.get_tenant("ten_99").await.unwrap().is_none());
    let dup = store.insert_tenant(&tenant("ten_00", "again")).await;
    assert!(dup.is_err(), "{engine}: duplicate tenant id must fail");

    // API keys: admin and tenant scoped, found by prefix and hash, revoked once.
    assert_eq!(store.count_active_admin_keys().await.unwrap(), 0);
    store
        .insert_api_key(&key("key_a", None, "aaaa1"))
        .await
        .unwrap();
    store
        .insert_api_key(&key("key_b", Some("ten_00"), "bbbb1"))
        .await
        .unwrap();
    store
        .insert_api_key(&key("key_c", Some("ten_01"), "cccc1"))
        .await
        .unwrap();
    assert!(matches!(
        store.insert_api_key(&key("key_d", None, "aaaa1")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.count_active_admin_keys().await.unwrap(), 1);
    let found = store.find_api_keys_by_prefix("rg_bbbb").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].tenant_id.as_deref(), Some("ten_00"));
    assert_eq!(
        store
            .find_api_key_by_hash("cccc1")
            .await
            .unwrap()
            .unwrap()
            .id,
        "key_c"
    );
    let admin_keys = store
        .list_api_keys(KeyOwner::Admin, &Page::first(10))
        .await
        .unwrap();
    assert_eq!(admin_keys.items.len(), 1);
    let t0_keys = store
        .list_api_keys(KeyOwner::Tenant("ten_00"), &Page::first(10))
        .await
        .unwrap();
    assert_eq!(t0_keys.items.len(), 1);
    assert_eq!(t0_keys.items[0].id, "key_b");
    assert!(store.revoke_api_key("key_b", 99).await.unwrap());
    assert!(!store.revoke_api_key("key_b", 100).await.unwrap());
    assert!(!store.revoke_api_key("key_zz", 100).await.unwrap());
    assert_eq!(
        store
            .get_api_key("key_b")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(99)
    );
    assert!(store.revoke_api_key("key_a", 5).await.unwrap());
    assert_eq!(store.count_active_admin_keys().await.unwrap(), 0);

    // Bots: unique per Telegram id, scoped lists, updates, deletion.
    store
        .insert_bot(&bot("bot_1", "ten_00", 111))
        .await
        .unwrap();
    store
        .insert_bot(&bot("bot_2", "ten_01", 222))
        .await
        .unwrap();
    let dup = store.insert_bot(&bot("bot_3", "ten_01", 111)).await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "{engine}: {dup:?}"
    );
    let orphan = store.insert_bot(&bot("bot_4", "ten_nope", 444)).await;
    assert!(orphan.is_err(), "{engine}: foreign key must hold");
    assert_eq!(
        store.get_bot("bot_1").await.unwrap().unwrap(),
        bot("bot_1", "ten_00", 111)
    );
    assert_eq!(
        store.get_bot_by_telegram_id(222).await.unwrap().unwrap().id,
        "bot_2"
    );
    let t1 = store
        .list_bots(
            &BotFilter {
                tenant_id: Some("ten_01".into()),
                ..BotFilter::default()
            },
            &Page::first(10),
        )
        .await
        .unwrap();
    assert_eq!(t1.items.len(), 1);
    assert_eq!(t1.items[0].id, "bot_2");
    assert_eq!(
        store
            .list_bots(&BotFilter::default(), &Page::first(10))
            .await
            .unwrap()
            .items
            .len(),
        2
    );

    assert!(store.set_bot_enabled("bot_1", false, 7).await.unwrap());
    assert!(!store.set_bot_enabled("bot_x", false, 7).await.unwrap());
    assert!(
        store
            .set_bot_webhook(
                "bot_1",
                BotMode::Webhook,
                Some("https://example.test/telegram/webhook/bot_1"),
                Some("v1:secret"),
                8
            )
            .await
            .unwrap()
    );
    let only = |enabled: Option<bool>, mode: Option<BotMode>| BotFilter {
        tenant_id: None,
        enabled,
        mode,
    };
    let disabled = store
        .list_bots(&only(Some(false), None), &Page::first(10))
        .await
        .unwrap();
    assert_eq!(disabled.items.len(), 1, "{engine}");
    assert_eq!(disabled.items[0].id, "bot_1");
    let webhook = store
        .list_bots(&only(None, Some(BotMode::Webhook)), &Page::first(10))
        .await
        .unwrap();
    assert_eq!(webhook.items.len(), 1, "{engine}");
    let polling_enabled = store
        .list_bots(&only(Some(true), Some(BotMode::Polling)), &Page::first(10))
        .await
        .unwrap();
    assert_eq!(polling_enabled.items.len(), 1, "{engine}");
    assert_eq!(polling_enabled.items[0].id, "bot_2");
    let b1 = store.get_bot("bot_1").await.unwrap().unwrap();
    assert!(!b1.enabled);
    assert_eq!(b1.mode, BotMode::Webhook);
    assert_eq!(b1.webhook_secret_sealed.as_deref(), Some("v1:secret"));
    assert_eq!(b1.updated_at, 8);
    assert_eq!(b1.created_at, 5);

    assert!(store.delete_bot("bot_1").await.unwrap());
    assert!(!store.delete_bot("bot_1").await.unwrap());
    assert!(store.get_bot("bot_1").await.unwrap().is_none());
    // The Telegram id is free again once the bot is gone.
    store
        .insert_bot(&bot("bot_5", "ten_02", 111))
        .await
        .unwrap();
    store.close().await;
}

#[tokio::test]
async fn storage_story_on_every_engine() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _db) = open(engine, dir.path()).await;
        story(store).await;
    }
}

#[tokio::test]
async fn sqlite_uses_wal_and_creates_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nested/deeper/relaygram.db");
    let store = SqliteStore::connect(&format!("sqlite:{}", file.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&store.db)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    assert!(file.exists());
}

#[tokio::test]
async fn sqlite_in_memory_keeps_its_data_across_calls() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    store.insert_tenant(&tenant("ten_m", "mem")).await.unwrap();
    for _ in 0..3 {
        assert!(store.get_tenant("ten_m").await.unwrap().is_some());
    }
}

/// Custom commands: ordered per bot, unique per (bot, name), updated, reordered, deleted,
/// and removed with their bot.
async fn commands_story(store: Arc<dyn Store>) {
    use crate::commands::{CommandAction, CustomCommand, StoredCommand};
    let engine = store.engine();
    store.insert_tenant(&tenant("ten_c", "C")).await.unwrap();
    store
        .insert_bot(&bot("bot_c1", "ten_c", 901))
        .await
        .unwrap();
    store
        .insert_bot(&bot("bot_c2", "ten_c", 902))
        .await
        .unwrap();
    let cmd = |bot_id: &str, name: &str, action: CommandAction| StoredCommand {
        bot_id: bot_id.into(),
        command: CustomCommand {
            command: name.into(),
            description: format!("about {name}"),
            action,
        },
        created_at: 10,
        updated_at: 10,
    };
    let names =
        |list: Vec<CustomCommand>| -> Vec<String> { list.into_iter().map(|c| c.command).collect() };
    assert!(store.list_bot_commands("bot_c1").await.unwrap().is_empty());
    let reply = |t: &str| CommandAction::Reply { text: t.into() };
    store
        .insert_bot_command(&cmd("bot_c1", "price", reply("3 €")), None)
        .await
        .unwrap();
    store
        .insert_bot_command(&cmd("bot_c1", "order", CommandAction::Forward), None)
        .await
        .unwrap();
    store
        .insert_bot_command(&cmd("bot_c2", "price", CommandAction::Forward), None)
        .await
        .unwrap();
    // Appended in order; the same name on another bot is fine, twice on one bot is not.
    assert_eq!(
        names(store.list_bot_commands("bot_c1").await.unwrap()),
        ["price", "order"],
        "{engine}"
    );
    let dup = store
        .insert_bot_command(&cmd("bot_c1", "price", CommandAction::Forward), None)
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict(_))),
        "{engine}: {dup:?}"
    );
    let orphan = store
        .insert_bot_command(&cmd("bot_nope", "x", CommandAction::Forward), None)
        .await;
    assert!(orphan.is_err(), "{engine}: the bot must exist");

    // Insert at the front with an explicit order.
    let order: Vec<String> = ["help_me", "price", "order"].map(String::from).to_vec();
    store
        .insert_bot_command(&cmd("bot_c1", "help_me", reply("ask us")), Some(&order))
        .await
        .unwrap();
    let listed = store.list_bot_commands("bot_c1").await.unwrap();
    assert_eq!(names(listed.clone()), order, "{engine}");
    assert_eq!(listed[1].action, reply("3 €"));
    assert_eq!(listed[2].action, CommandAction::Forward);

    // Update: action and description change, then move to the end.
    let mut changed = cmd("bot_c1", "price", CommandAction::Forward);
    changed.command.description = "Prices".into();
    changed.updated_at = 20;
    assert!(store.update_bot_command(&changed, None).await.unwrap());
    let got = store
        .get_bot_command("bot_c1", "price")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.command.action, CommandAction::Forward);
    assert_eq!(got.command.description, "Prices");
    assert_eq!((got.created_at, got.updated_at), (10, 20));
    changed.command.action = reply("back to a reply");
    let order: Vec<String> = ["help_me", "order", "price"].map(String::from).to_vec();
    assert!(
        store
            .update_bot_command(&changed, Some(&order))
            .await
            .unwrap()
    );
    let stored = store.list_stored_commands("bot_c1").await.unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|c| c.command.command.as_str())
            .collect::<Vec<_>>(),
        ["help_me", "order", "price"],
        "{engine}"
    );
    assert_eq!(stored[2].command.action, reply("back to a reply"));
    assert!(
        !store
            .update_bot_command(&cmd("bot_c1", "nope", CommandAction::Forward), None)
            .await
            .unwrap()
    );
    assert!(
        store
            .get_bot_command("bot_c1", "nope")
            .await
            .unwrap()
            .is_none()
    );

    // Delete one; then deleting the bot removes the rest.
    assert!(store.delete_bot_command("bot_c1", "order").await.unwrap());
    assert!(!store.delete_bot_command("bot_c1", "order").await.unwrap());
    assert_eq!(
        names(store.list_bot_commands("bot_c1").await.unwrap()),
        ["help_me", "price"]
    );
    store
        .insert_bot_command(&cmd("bot_c1", "last", CommandAction::Forward), None)
        .await
        .unwrap();
    assert_eq!(
        names(store.list_bot_commands("bot_c1").await.unwrap()),
        ["help_me", "price", "last"],
        "{engine}: new commands go after the last one"
    );
    assert!(store.delete_bot("bot_c1").await.unwrap());
    assert!(store.list_bot_commands("bot_c1").await.unwrap().is_empty());
    assert_eq!(store.list_bot_commands("bot_c2").await.unwrap().len(), 1);
    store.close().await;
}

#[tokio::test]
async fn commands_story_on_every_engine() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _db) = open(engine, dir.path()).await;
        commands_story(store).await;
    }
}

/// The router's replies, stored with their updates' outcomes: one message per origin however
/// often (and however concurrently) it is queued, a replay's outcome naming the message
/// that holds the reply (message ids are named by their origin), button data stored, an
/// origin taken for good.
async fn replies_story(store: Arc<dyn Store>) {
    let engine = store.engine();
    store.insert_tenant(&tenant("ten_r", "R")).await.unwrap();
    store.insert_bot(&bot("bot_r", "ten_r", 931)).await.unwrap();
    let reply = |n: u32, key: &str, now: i64| {
        NewReply {
        request_id: format!("req_r{n}"),
        message_id: crate::ids::derived_id("msg", 1, key),
        tenant_id: "ten_r".into(),
        bot_id: "bot_r".into(),
        chat_id: 42,
        origin: key.into(),
        content: r#"{"parts":["hi"],"parse_mode":null,"media":null,"reply_markup":null,"message_thread_id":null,"silent":false}"#.into(),
        callbacks: vec![super::Callback {
            id: format!("cb_r{n}"),
            data: "app:data".into(),
            answer: None,
        }],
        now,
    }
    };
    let processed = |n: u32, reply: NewReply| ProcessedUpdate {
        bot_id: "bot_r".into(),
        update_id: i64::from(n),
        outcome: UpdateOutcome {
            status: UpdateStatus::Handled,
            outcome: Some(format!("replied (reply {})", reply.message_id)),
            error: None,
            processed_at: 1_000,
            handling_ms: 1,
        },
        chats: vec![],
        events: vec![],
        replies: vec![reply],
    };
    // Twenty updates finishing concurrently, four reply origins: four messages; the others'
    // outcomes name the message their origin holds.
    for n in 0..20u32 {
        let u = UpdateRecord {
            bot_id: "bot_r".into(),
            update_id: i64::from(n),
            kind: "message".into(),
            chat_id: Some(42),
            user_id: Some(42),
            body: "{}".into(),
            status: UpdateStatus::Pending,
            outcome: None,
            error: None,
            received_at: 1,
            processed_at: None,
            handling_ms: None,
        };
        assert!(store.insert_update(u.clone()).await.unwrap());
    }
    let calls: Vec<_> = (0..20u32)
        .map(|n| {
            let store = store.clone();
            let r = reply(n, &format!("reply:bot_r:7:{}", n % 4), 1_000);
            tokio::spawn(async move { (n, store.finish_update(processed(n, r)).await.unwrap()) })
        })
        .collect();
    let mut stored = Vec::new();
    for call in calls {
        let (n, report) = call.await.unwrap();
        assert_eq!(report.deliveries, 0, "{engine}");
        if report.new_replies == 1 {
            stored.push(n);
        }
    }
    assert_eq!(stored.len(), 4, "{engine}: one message per key: {stored:?}");
    let filter = MessageFilter {
        tenant_id: "ten_r".into(),
        ..MessageFilter::default()
    };
    let listed = store
        .list_messages(&filter, &Page::first(100))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 4, "{engine}");
    assert!(
        listed
            .items
            .iter()
            .all(|m| m.status == "queued" && m.chat_id == 42)
    );
    // Every outcome names a stored message: the one its origin holds.
    let ids: Vec<&str> = listed.items.iter().map(|m| m.id.as_str()).collect();
    for n in 0..20u32 {
        let u = store
            .get_update("bot_r", i64::from(n))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(u.status, UpdateStatus::Handled, "{engine}");
        let named = crate::ids::derived_id("msg", 1, &format!("reply:bot_r:7:{}", n % 4));
        assert_eq!(
            u.outcome.as_deref(),
            Some(format!("replied (reply {named})").as_str()),
            "{engine}: update {n}"
        );
        assert!(
            ids.contains(&named.as_str()),
            "{engine}: {named} in {ids:?}"
        );
    }
    let n = stored[0];
    assert_eq!(
        store
            .get_callback(&format!("cb_r{n}"))
            .await
            .unwrap()
            .map(|c| c.data),
        Some("app:data".to_string()),
        "{engine}"
    );
    assert!(store.get_callback("cb_r99").await.unwrap().is_none());
    // An origin names one stored update's reply (its time of receipt included, so a reused
    // update id makes new origins): taken for good, a day later too.
    let again = reply(50, "reply:bot_r:7:0", 1_000 + 86_400_001);
    let report = store.finish_update(processed(0, again)).await.unwrap();
    assert_eq!(report.new_replies, 0, "{engine}");
    let other = reply(51, "reply:bot_r:7:86401001:0", 1_000 + 86_400_001);
    let report = store.finish_update(processed(1, other)).await.unwrap();
    assert_eq!(report.new_replies, 1, "{engine}");
    let listed = store
        .list_messages(&filter, &Page::first(100))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 5, "{engine}");
}

#[tokio::test]
async fn replies_story_on_every_engine() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _db) = open(engine, dir.path()).await;
        replies_story(store).await;
    }
}

fn acceptance(n: u32, bot_id: &str, key: Option<&str>) -> Acceptance {
    Acceptance {
        request: NewRequest {
            id: format!("req_{n}"),
            tenant_id: "ten_a".into(),
            origin: "api".into(),
            content: "{}".into(),
            metadata: None,
            skipped: None,
            created_at: 1_700_000_000_000,
        },
        rows: vec![NewMessage {
            id: format!("msg_{n}"),
            bot_id: bot_id.into(),
            chat_id: 100 + i64::from(n),
            link_id: None,
            category: None,
            content: None,
        }],
        fanouts: vec![],
        bot_id: None,
        priority: 0,
        send_at: 1_700_000_000_000,
        local: None,
        throttle: None,
        broadcast: None,
        callbacks: vec![super::Callback {
            id: format!("cb_{n}"),
            data: "data".into(),
            answer: None,
        }],
        idempotency: key.map(|k| (k.to_string(), format!("hash-{k}"))),
        answer: Some(format!("answer-{n}")),
    }
}

/// Acceptance in batches: plain calls stored together with their keys' answers, a key
/// given twice answered as a replay of the first, a known key as a replay, a throttled
/// call among plain ones, and a batch the store refuses leaves nothing behind.
async fn batch_acceptance_story(store: Arc<dyn Store>) {
    store.insert_tenant(&tenant("ten_a", "a")).await.unwrap();
    store.insert_bot(&bot("bot_a", "ten_a", 1)).await.unwrap();
    let mut throttled = acceptance(3, "bot_a", None);
    throttled.throttle = Some(Throttle {
        key: "t".into(),
        until: 1_700_000_060_000,
        scope: ThrottleScope::Tenant,
    });
    let batch = vec![
        acceptance(1, "bot_a", Some("k1")),
        acceptance(2, "bot_a", Some("k1")),
        throttled,
        acceptance(4, "bot_a", None),
    ];
    let answers = store.accept_batch(&batch).await.unwrap();
    let stored = |count: i64, status: &str| Accepted::Stored {
        count,
        status: status.into(),
        throttled: if status == "throttled" { count } else { 0 },
        broadcast_id: None,
    };
    assert_eq!(answers[0], stored(1, "queued"));
    assert_eq!(
        answers[1],
        Accepted::Replay {
            response: "answer-1".into(),
            body_hash: "hash-k1".into(),
            request_id: Some("req_1".into()),
        }
    );
    assert_eq!(answers[2], stored(1, "queued"));
    assert_eq!(answers[3], stored(1, "queued"));
    for (request, present) in [
        ("req_1", true),
        ("req_2", false),
        ("req_3", true),
        ("req_4", true),
    ] {
        assert_eq!(
            store.request_messages(request).await.unwrap().len(),
            usize::from(present),
            "{request}"
        );
    }
    assert!(store.get_callback("cb_1").await.unwrap().is_some());
    assert!(store.get_callback("cb_2").await.unwrap().is_none());

    // Later: the key answers with the answer kept in the same transaction; the throttle
    // window is still open.
    let mut again = acceptance(5, "bot_a", Some("k1"));
    again.request.created_at += 1000;
    let mut throttled = acceptance(6, "bot_a", None);
    throttled.throttle = Some(Throttle {
        key: "t".into(),
        until: 1_700_000_061_000,
        scope: ThrottleScope::Tenant,
    });
    let answers = store.accept_batch(&[again, throttled]).await.unwrap();
    assert_eq!(
        answers[0],
        Accepted::Replay {
            response: "answer-1".into(),
            body_hash: "hash-k1".into(),
            request_id: Some("req_1".into()),
        }
    );
    assert_eq!(answers[1], stored(1, "throttled"));

    // A message for a bot that does not exist: the whole batch is refused, nothing stays.
    let refused = store
        .accept_batch(&[
            acceptance(7, "bot_a", Some("k7")),
            acceptance(8, "bot_gone", None),
        ])
        .await;
    assert!(refused.is_err());
    assert!(store.request_messages("req_7").await.unwrap().is_empty());
    let retried = store
        .accept_batch(&[acceptance(7, "bot_a", Some("k7"))])
        .await
        .unwrap();
    assert_eq!(
        retried[0],
        stored(1, "queued"),
        "the key was not kept either"
    );
}

#[tokio::test]
async fn batch_acceptance_on_every_engine() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _db) = open(engine, dir.path()).await;
        batch_acceptance_story(store).await;
    }
}

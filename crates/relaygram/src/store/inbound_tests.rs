//! Inbound storage under concurrency, on every engine: group-committed inserts answer each
//! caller truthfully (new or replay), batch claims keep each chat in order, batched
//! outcomes land on the right rows, and cached bots and commands follow writes.

use std::collections::HashMap;

use super::testing::{engines, fresh};
use super::*;

async fn open(engine: &str, dir: &std::path::Path) -> (Arc<dyn Store>, testing::TestDatabase) {
    let db = fresh(engine, dir).await.expect("fresh database");
    let store = connect(&SecretString::from(db.url.clone()))
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    (store, db)
}

/// `u` processed to `outcome`, having written nothing else.
fn finished(u: &UpdateRecord, outcome: UpdateOutcome) -> ProcessedUpdate {
    ProcessedUpdate {
        bot_id: u.bot_id.clone(),
        update_id: u.update_id,
        outcome,
        chats: vec![],
        events: vec![],
        replies: vec![],
    }
}

fn update(bot_id: &str, update_id: i64, chat_id: Option<i64>, received_at: i64) -> UpdateRecord {
    UpdateRecord {
        bot_id: bot_id.into(),
        update_id,
        kind: "message".into(),
        chat_id,
        user_id: chat_id,
        body: format!(r#"{{"update_id":{update_id}}}"#),
        status: UpdateStatus::Pending,
        outcome: None,
        error: None,
        received_at,
        processed_at: None,
        handling_ms: None,
    }
}

async fn setup(store: &Arc<dyn Store>) {
    store
        .insert_tenant(&Tenant {
            id: "ten_i".into(),
            name: "i".into(),
            created_at: 1,
        })
        .await
        .unwrap();
    store
        .insert_bot(&BotRecord {
            id: "bot_i".into(),
            tenant_id: "ten_i".into(),
            telegram_id: 77,
            username: "inbound_bot".into(),
            first_name: "Bot".into(),
            token_sealed: "v1:sealed".into(),
            webhook_secret_sealed: None,
            webhook_url: None,
            mode: BotMode::Webhook,
            enabled: true,
            created_at: 1,
            updated_at: 1,
            allowed_updates: None,
            builtins_off: Vec::new(),
        })
        .await
        .unwrap();
}

async fn concurrent_inserts(store: Arc<dyn Store>) {
    let engine = store.engine();
    setup(&store).await;
    // 200 distinct updates, each delivered three times at once: exactly one delivery of
    // each is new, whatever batches the writer makes of them.
    let mut calls = tokio::task::JoinSet::new();
    for copy in 0..3 {
        for id in 1..=200i64 {
            let store = store.clone();
            calls.spawn(async move {
                let new = store
                    .insert_update(update("bot_i", id, Some(id % 7), 1000 + id))
                    .await
                    .unwrap();
                (id, copy, new)
            });
        }
    }
    let mut new_per_id = std::collections::HashMap::<i64, u32>::new();
    while let Some(done) = calls.join_next().await {
        let (id, _, new) = done.unwrap();
        *new_per_id.entry(id).or_default() += u32::from(new);
    }
    assert_eq!(new_per_id.len(), 200, "{engine}");
    assert!(
        new_per_id.values().all(|n| *n == 1),
        "{engine}: each update is new exactly once"
    );
    assert_eq!(store.count_open_updates().await.unwrap(), 200, "{engine}");

    // An insert that cannot be stored fails alone (here: an unknown bot, a foreign key),
    // even when it shares a batch with good ones.
    let mut calls = tokio::task::JoinSet::new();
    for id in 300..340i64 {
        let store = store.clone();
        let bot = if id == 320 { "bot_gone" } else { "bot_i" };
        calls.spawn(async move { (id, store.insert_update(update(bot, id, None, 5000)).await) });
    }
    while let Some(done) = calls.join_next().await {
        let (id, result) = done.unwrap();
        if id == 320 {
            assert!(result.is_err(), "{engine}: the unknown bot's update fails");
        } else {
            assert!(result.unwrap(), "{engine}: update {id} is stored");
        }
    }
    store.close().await;
}

async fn batch_claims(store: Arc<dyn Store>) {
    let engine = store.engine();
    setup(&store).await;
    // Chat 1 has three updates, chat 2 two, chat 3 one, and two updates have no chat.
    let rows = [
        (1, Some(1), 10),
        (2, Some(2), 11),
        (3, Some(1), 12),
        (4, None, 13),
        (5, Some(3), 14),
        (6, Some(2), 15),
        (7, Some(1), 16),
        (8, None, 17),
    ];
    for (id, chat, at) in rows {
        assert!(
            store
                .insert_update(update("bot_i", id, chat, at))
                .await
                .unwrap()
        );
    }
    let ids = |v: &[UpdateRecord]| v.iter().map(|u| u.update_id).collect::<Vec<_>>();
    let first = store.claim_updates(i64::MAX, 100).await.unwrap();
    assert_eq!(
        ids(&first),
        vec![1, 2, 4, 5, 8],
        "{engine}: the oldest of each chat, oldest first, and chatless ones"
    );
    assert!(first.iter().all(|u| u.status == UpdateStatus::Processing));
    assert!(
        store.claim_updates(i64::MAX, 100).await.unwrap().is_empty(),
        "{engine}: nothing more while each chat has one in hand"
    );
    // Outcomes finishing together are written together, each to its own row.
    let mut calls = tokio::task::JoinSet::new();
    for u in first {
        let store = store.clone();
        calls.spawn(async move {
            let outcome = UpdateOutcome {
                status: if u.update_id == 2 {
                    UpdateStatus::Failed
                } else {
                    UpdateStatus::Handled
                },
                outcome: Some(format!("done {}", u.update_id)),
                error: (u.update_id == 2).then(|| "boom".to_string()),
                processed_at: 99,
                handling_ms: u.update_id,
            };
            store.finish_update(finished(&u, outcome)).await.unwrap();
        });
    }
    while calls.join_next().await.is_some() {}
    for id in [1, 2, 4, 5, 8] {
        let u = store.get_update("bot_i", id).await.unwrap().unwrap();
        assert_eq!(u.handling_ms, Some(id), "{engine}: update {id}");
        assert_eq!(u.outcome.as_deref(), Some(format!("done {id}").as_str()));
        assert_eq!(u.error.is_some(), id == 2, "{engine}: update {id}");
    }
    // Limits hold, and each chat moves on in order.
    let second = store.claim_updates(i64::MAX, 1).await.unwrap();
    assert_eq!(ids(&second), vec![3], "{engine}");
    let rest = store.claim_updates(i64::MAX, 100).await.unwrap();
    assert_eq!(ids(&rest), vec![6], "{engine}: chat 1 waits for update 3");
    store.close().await;
}

async fn caches_follow_writes(store: Arc<dyn Store>) {
    use crate::commands::{CommandAction, CustomCommand, StoredCommand};
    let engine = store.engine();
    setup(&store).await;
    assert!(store.get_bot("bot_i").await.unwrap().unwrap().enabled);
    store.set_bot_enabled("bot_i", false, 2).await.unwrap();
    assert!(
        !store.get_bot("bot_i").await.unwrap().unwrap().enabled,
        "{engine}: a cached bot is forgotten when it changes"
    );
    store
        .set_bot_webhook("bot_i", BotMode::Polling, None, None, 3)
        .await
        .unwrap();
    assert_eq!(
        store.get_bot("bot_i").await.unwrap().unwrap().mode,
        BotMode::Polling,
        "{engine}"
    );
    assert!(store.list_bot_commands("bot_i").await.unwrap().is_empty());
    let command = StoredCommand {
        bot_id: "bot_i".into(),
        command: CustomCommand {
            command: "price".into(),
            description: "Prices".into(),
            action: CommandAction::Forward,
        },
        created_at: 1,
        updated_at: 1,
    };
    store.insert_bot_command(&command, None).await.unwrap();
    assert_eq!(
        store.list_bot_commands("bot_i").await.unwrap().len(),
        1,
        "{engine}: cached commands are forgotten when one is added"
    );
    let mut changed = command.clone();
    changed.command.description = "Today's prices".into();
    store.update_bot_command(&changed, None).await.unwrap();
    assert_eq!(
        store.list_bot_commands("bot_i").await.unwrap()[0].description,
        "Today's prices",
        "{engine}"
    );
    store.delete_bot_command("bot_i", "price").await.unwrap();
    assert!(store.list_bot_commands("bot_i").await.unwrap().is_empty());

    // Chats (kept in memory on SQLite, whose one server writes them all): every way a chat
    // is written is seen by the next read, an unknown chat included.
    store.own_updates().await.unwrap();
    let state = |chat: i64| {
        let store = store.clone();
        async move {
            store
                .get_chat("bot_i", chat)
                .await
                .unwrap()
                .map(|c| c.state)
        }
    };
    assert_eq!(state(5).await, None);
    let chat = ChatRecord {
        bot_id: "bot_i".into(),
        chat_id: 5,
        kind: "group".into(),
        title: Some("G".into()),
        username: None,
        state: ChatState::Active,
        migrated_to: None,
        updated_at: 1,
    };
    store.upsert_chat(&chat).await.unwrap();
    assert_eq!(state(5).await, Some(ChatState::Active), "{engine}");
    store
        .chat_gone("bot_i", 5, ChatState::Kicked, 2)
        .await
        .unwrap();
    assert_eq!(state(5).await, Some(ChatState::Kicked), "{engine}");
    assert_eq!(state(-100).await, None);
    store.migrate_chat("bot_i", 5, -100, 3).await.unwrap();
    assert_eq!(state(5).await, Some(ChatState::Migrated), "{engine}");
    assert_eq!(state(-100).await, Some(ChatState::Active), "{engine}");
    let u = update("bot_i", 1, Some(6), 1);
    assert!(store.insert_update(u.clone()).await.unwrap());
    assert_eq!(state(6).await, None);
    let mut processed = finished(
        &u,
        UpdateOutcome {
            status: UpdateStatus::Handled,
            outcome: None,
            error: None,
            processed_at: 4,
            handling_ms: 0,
        },
    );
    processed.chats.push(ChatRecord {
        chat_id: 6,
        state: ChatState::Blocked,
        ..chat.clone()
    });
    store.finish_update(processed).await.unwrap();
    assert_eq!(state(6).await, Some(ChatState::Blocked), "{engine}");

    store.delete_bot("bot_i").await.unwrap();
    assert!(
        store.get_bot("bot_i").await.unwrap().is_none(),
        "{engine}: a deleted bot is gone at once"
    );
    store.close().await;
}

/// Polling leases: one holder at a time, renewed by its holder, taken over once lapsed,
/// free at once when given up.
async fn poll_leases(store: Arc<dyn Store>) {
    let engine = store.engine();
    setup(&store).await;
    assert!(store.lease_polling("bot_i", "a", 100, 200).await.unwrap());
    assert!(
        !store.lease_polling("bot_i", "b", 150, 250).await.unwrap(),
        "{engine}: another holder waits while the lease runs"
    );
    assert!(
        store.lease_polling("bot_i", "a", 190, 290).await.unwrap(),
        "{engine}: the holder renews"
    );
    assert!(!store.lease_polling("bot_i", "b", 280, 380).await.unwrap());
    assert!(
        store.lease_polling("bot_i", "b", 291, 391).await.unwrap(),
        "{engine}: a lapsed lease is taken over"
    );
    assert!(!store.lease_polling("bot_i", "a", 300, 400).await.unwrap());
    store.release_polling("bot_i", "a").await.unwrap();
    assert!(
        !store.lease_polling("bot_i", "a", 300, 400).await.unwrap(),
        "{engine}: only the holder can give a lease up"
    );
    store.release_polling("bot_i", "b").await.unwrap();
    assert!(
        store.lease_polling("bot_i", "a", 300, 400).await.unwrap(),
        "{engine}: a released lease is free at once"
    );
    store.close().await;
}

/// Concurrent chat reads (batched into one statement) each get their own chat; concurrent
/// events (stored together) each get their own record and deliveries.
async fn batched_reads_and_events(store: Arc<dyn Store>) {
    let engine = store.engine();
    setup(&store).await;
    let chat = |chat_id: i64, title: &str| ChatRecord {
        bot_id: "bot_i".into(),
        chat_id,
        kind: "private".into(),
        title: Some(title.to_string()),
        username: None,
        state: ChatState::Active,
        migrated_to: None,
        updated_at: 1,
    };
    // Concurrent writes of distinct chats are written together; a later write of a chat
    // replaces the earlier one.
    let mut writes = tokio::task::JoinSet::new();
    for chat_id in [1, 2, 3] {
        let store = store.clone();
        let first = chat(chat_id, "before");
        writes.spawn(async move { store.upsert_chat(&first).await });
    }
    for done in writes.join_all().await {
        done.unwrap();
    }
    for chat_id in [1, 2, 3] {
        let title = format!("chat {chat_id}");
        store.upsert_chat(&chat(chat_id, &title)).await.unwrap();
    }
    let mut reads = tokio::task::JoinSet::new();
    for chat_id in [1, 2, 3, 4, 1, 3, 5] {
        let store = store.clone();
        reads.spawn(async move { (chat_id, store.get_chat("bot_i", chat_id).await.unwrap()) });
    }
    while let Some(done) = reads.join_next().await {
        let (chat_id, chat) = done.unwrap();
        match chat {
            Some(c) => {
                assert!(chat_id <= 3, "{engine}: chat {chat_id} is unknown");
                assert_eq!(c.chat_id, chat_id, "{engine}");
                assert_eq!(c.title, Some(format!("chat {chat_id}")), "{engine}");
            }
            None => assert!(chat_id > 3, "{engine}: chat {chat_id} is known"),
        }
    }

    store
        .insert_event_endpoint(&EndpointRecord {
            id: "ep_msgs".into(),
            tenant_id: "ten_i".into(),
            url: "http://127.0.0.1:9/hook".into(),
            secret_sealed: "v1:sealed".into(),
            description: String::new(),
            enabled: true,
            event_types: Some(vec!["message.*".into()]),
            created_at: 1,
        })
        .await
        .unwrap();
    let mut emits = tokio::task::JoinSet::new();
    for i in 0..40 {
        let store = store.clone();
        emits.spawn(async move {
            let ev = NewEvent {
                id: format!("evt_{i:02}"),
                tenant_id: "ten_i".into(),
                event_type: if i % 2 == 0 {
                    "message.received"
                } else {
                    "chat.stopped"
                }
                .into(),
                data: format!(r#"{{"i":{i}}}"#),
                created_at: 10 + i,
            };
            (ev.clone(), store.insert_event(&ev).await.unwrap().event)
        });
    }
    let mut seqs = std::collections::HashSet::new();
    while let Some(done) = emits.join_next().await {
        let (asked, stored) = done.unwrap();
        assert_eq!(stored.id, asked.id, "{engine}");
        assert_eq!(stored.data, asked.data, "{engine}");
        assert!(seqs.insert(stored.seq), "{engine}: seq is unique");
        let deliveries = store.list_event_deliveries(&asked.id).await.unwrap();
        let wanted = asked.event_type.starts_with("message.");
        assert_eq!(
            deliveries.len(),
            usize::from(wanted),
            "{engine}: {}",
            asked.id
        );
    }
    store.close().await;
}

#[tokio::test]
async fn batched_reads_and_events_on_every_engine() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _db) = open(engine, dir.path()).await;
        batched_reads_and_events(store).await;
    }
}

#[tokio::test]
async fn poll_leases_on_every_engine() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _db) = open(engine, dir.path()).await;
        poll_leases(store).await;
    }
}

#[tokio::test]
async fn concurrent_inserts_on_every_engine() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _db) = open(engine, dir.path()).await;
        concurrent_inserts(store).await;
    }
}

#[tokio::test]
async fn batch_claims_on_every_engine() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _db) = open(engine, dir.path()).await;
        batch_claims(store).await;
    }
}

#[tokio::test]
async fn caches_follow_writes_on_every_engine() {
    for engine in engines() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _db) = open(engine, dir.path()).await;
        caches_follow_writes(store).await;
    }
}

/// A SQLite store whose in-memory update queue holds at most `capacity` updates.
async fn sqlite_with_queue(db: &testing::TestDatabase, capacity: usize) -> Arc<dyn Store> {
    let store = SqliteStore::connect(&db.url).await.expect("connect");
    store.migrate().await.expect("migrate");
    let queue = super::update_queue::UpdateQueue::new(db.sqlite_file.clone(), capacity);
    Arc::new(SqliteStore {
        db: store.db.clone(),
        checkpoints: store.checkpoints.clone(),
        hot: Arc::new(super::sql::Hot {
            updates: Some(Arc::new(queue)),
            ..Default::default()
        }),
    })
}

fn done(u: &UpdateRecord) -> ProcessedUpdate {
    finished(
        u,
        UpdateOutcome {
            status: UpdateStatus::Handled,
            outcome: Some("done".into()),
            error: None,
            processed_at: 1,
            handling_ms: 0,
        },
    )
}

/// A SQLite store in `dir`, set up, whose updates this server owns.
async fn owning_sqlite(dir: &std::path::Path) -> (Arc<dyn Store>, testing::TestDatabase) {
    let (store, db) = open("sqlite", dir).await;
    setup(&store).await;
    store.own_updates().await.unwrap();
    (store, db)
}

/// The next server on `db`, owning its updates (after the first closed).
async fn next_owner(db: &testing::TestDatabase) -> Arc<dyn Store> {
    let next = connect(&SecretString::from(db.url.clone())).await.unwrap();
    next.own_updates().await.unwrap();
    next
}

#[tokio::test]
async fn one_sqlite_server_processes_and_the_next_takes_up_what_was_left() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = owning_sqlite(dir.path()).await;
    for (id, chat, at) in [(1, 1, 10), (2, 2, 11), (3, 1, 12)] {
        assert!(
            store
                .insert_update(update("bot_i", id, Some(chat), at))
                .await
                .unwrap()
        );
    }
    let ids = |v: &[UpdateRecord]| v.iter().map(|u| u.update_id).collect::<Vec<_>>();
    let first = store.claim_updates(i64::MAX, 100).await.unwrap();
    assert_eq!(ids(&first), vec![1, 2]);
    store.finish_update(done(&first[0])).await.unwrap();
    // In hand without a statement: the store still says pending.
    let held = store.get_update("bot_i", 2).await.unwrap().unwrap();
    assert_eq!(held.status, UpdateStatus::Pending);

    // A second server on the same database may not process its updates.
    let other = connect(&SecretString::from(db.url.clone())).await.unwrap();
    let refused = other.own_updates().await.unwrap_err().to_string();
    assert!(refused.contains("another relaygram server"), "{refused}");
    assert!(other.claim_updates(i64::MAX, 100).await.is_err());
    other.close().await;

    // The first stops with 2 in hand and 3 waiting: the next server takes both up.
    store.close().await;
    let next = next_owner(&db).await;
    let again = next.claim_updates(i64::MAX, 100).await.unwrap();
    assert_eq!(ids(&again), vec![2, 3]);
    next.close().await;
}

#[tokio::test]
async fn a_full_sqlite_queue_loses_nothing_and_keeps_each_chat_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let db = fresh("sqlite", dir.path()).await.unwrap();
    // Smaller than the backlog, and larger than a page of the scan (1,000).
    let store = sqlite_with_queue(&db, 1_500).await;
    setup(&store).await;
    store.own_updates().await.unwrap();
    let mut next_id = 0i64;
    let mut store_some = |n: usize| {
        let store = store.clone();
        let ids: Vec<i64> = (0..n)
            .map(|_| {
                next_id += 1;
                next_id
            })
            .collect();
        async move {
            let mut calls = tokio::task::JoinSet::new();
            for id in ids {
                let store = store.clone();
                calls.spawn(async move {
                    store
                        .insert_update(update("bot_i", id, Some(id % 40), id))
                        .await
                        .unwrap()
                });
            }
            while let Some(new) = calls.join_next().await {
                assert!(new.unwrap());
            }
        }
    };
    // A backlog at start (read by scans: pages, then a full queue), more stored while the
    // backlog is processed.
    store_some(2_600).await;
    let mut seen: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut rounds = 0;
    loop {
        let batch = store.claim_updates(i64::MAX, 300).await.unwrap();
        if batch.is_empty() {
            if rounds > 0 && seen.values().map(Vec::len).sum::<usize>() == 3_400 {
                break;
            }
            assert!(rounds < 1_000, "stuck");
        }
        for u in &batch {
            seen.entry(u.chat_id.unwrap())
                .or_default()
                .push(u.update_id);
            store.finish_update(done(u)).await.unwrap();
        }
        rounds += 1;
        if rounds == 3 {
            store_some(800).await;
        }
    }
    for (chat, ids) in &seen {
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "chat {chat}: {ids:?}");
    }
    assert_eq!(store.count_open_updates().await.unwrap(), 0);
    store.close().await;
}

#[tokio::test]
async fn the_owning_sqlite_server_checkpoints_its_log_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = owning_sqlite(dir.path()).await;
    let file = db.sqlite_file.clone().unwrap();
    let size = || std::fs::metadata(&file).map(|m| m.len()).unwrap();
    let before = size();
    // Far fewer log pages than SQLite's own checkpoint threshold (1,000): without the
    // background checkpoints, these rows would stay in the log and the file keep its size.
    let inserts = (1..=300).map(|id| store.insert_update(update("bot_i", id, Some(id % 7), id)));
    for new in futures_util::future::join_all(inserts).await {
        assert!(new.unwrap());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while size() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint copied the log into {} ({} bytes)",
            file.display(),
            before
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Closing stops the checkpoints; a new owner finds every update.
    store.close().await;
    let next = next_owner(&db).await;
    assert_eq!(next.count_open_updates().await.unwrap(), 300);
    next.close().await;
}

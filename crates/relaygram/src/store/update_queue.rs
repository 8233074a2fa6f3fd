//! Stored updates waiting for processing, kept in memory by a store that one server owns
//! (SQLite: a lock file next to the database keeps a second server away). Claims then cost
//! no statement: the rounds that store updates hand them here after their commit, and
//! finished updates free their chat here after theirs.
//!
//! The store stays the truth. Memory holds, for every chat, a prefix (in order) of its
//! pending updates; when that may not be everything pending — at start, or after the queue
//! was full and dropped hand-offs — the store is scanned once nothing is queued or in hand,
//! so no update is missed, none is taken twice and each chat stays in order.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fs::{File, TryLockError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::{StoreError, StoreResult, UpdateRecord, UpdateStatus};

/// Updates kept in memory at most (their bodies included); beyond, the store holds them
/// until the queue has room again.
pub(super) const CAPACITY: usize = 20_000;

/// Updates that must be processed one after another: a chat's, in order. An update
/// without a chat stands alone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Lane {
    Chat(String, i64),
    Alone(String, i64),
}

impl Lane {
    fn of(u: &UpdateRecord) -> Lane {
        match u.chat_id {
            Some(chat) => Lane::Chat(u.bot_id.clone(), chat),
            None => Lane::Alone(u.bot_id.clone(), u.update_id),
        }
    }
}

/// Whether memory holds every pending update.
#[derive(Debug)]
enum Coverage {
    /// Yes: updates are added as they are stored.
    Complete,
    /// Not known (at start, or after hand-offs were dropped): hand-offs are dropped until
    /// a scan of the store, which starts once nothing is queued or in hand.
    Behind,
    /// A scan is reading the store; hand-offs wait beside it until it ends.
    Scanning(Vec<UpdateRecord>),
}

#[derive(Debug, Default)]
struct LaneState {
    /// Oldest first (by `received_at`, then `update_id`).
    waiting: VecDeque<UpdateRecord>,
    /// One of the lane's updates is in hand.
    busy: bool,
}

#[derive(Debug)]
struct InHand {
    lane: Lane,
    lease_until: i64,
    update: UpdateRecord,
}

#[derive(Debug)]
struct State {
    lanes: HashMap<Lane, LaneState>,
    /// The heads of lanes with nothing in hand, oldest first.
    ready: BTreeSet<(i64, i64, Lane)>,
    in_hand: HashMap<(String, i64), InHand>,
    queued: usize,
    coverage: Coverage,
}

/// The in-memory queue of one store.
#[derive(Debug)]
pub(super) struct UpdateQueue {
    state: Mutex<State>,
    capacity: usize,
    /// One scan at a time.
    scanning: tokio::sync::Mutex<()>,
    /// The database file, locked while this store processes its updates (`None` in memory).
    lock_path: Option<PathBuf>,
    lock: Mutex<Option<File>>,
    /// [`UpdateQueue::own`] succeeded and the store is open.
    owned: AtomicBool,
}

impl UpdateQueue {
    /// A queue for the database at `db_file` (`None`: an in-memory database, which no
    /// other process can open).
    pub(super) fn new(db_file: Option<PathBuf>, capacity: usize) -> UpdateQueue {
        UpdateQueue {
            state: Mutex::new(State {
                lanes: HashMap::new(),
                ready: BTreeSet::new(),
                in_hand: HashMap::new(),
                queued: 0,
                coverage: Coverage::Behind,
            }),
            capacity,
            scanning: tokio::sync::Mutex::new(()),
            lock_path: db_file.map(|f| {
                let mut name = f.into_os_string();
                name.push(".lock");
                PathBuf::from(name)
            }),
            lock: Mutex::new(None),
            owned: AtomicBool::new(false),
        }
    }

    /// Whether this process owns the database's updates (and so is the only one writing
    /// what processing writes, such as chats).
    pub(super) fn owned(&self) -> bool {
        self.owned.load(Ordering::Acquire)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes this process the one that processes the database's updates, for as long as
    /// the store is open: fails when another process (or store) already is.
    pub(super) fn own(&self) -> StoreResult<()> {
        let Some(path) = &self.lock_path else {
            self.owned.store(true, Ordering::Release);
            return Ok(());
        };
        let mut held = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_some() {
            return Ok(());
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| {
                StoreError::Setup(format!("cannot open the lock file {}: {e}", path.display()))
            })?;
        match file.try_lock() {
            Ok(()) => {
                *held = Some(file);
                self.owned.store(true, Ordering::Release);
                Ok(())
            }
            Err(TryLockError::WouldBlock) => Err(StoreError::Setup(format!(
                "another relaygram server is serving this SQLite database (it holds {}); \
                 SQLite allows one server per database: stop the other one, or use \
                 PostgreSQL to run several",
                path.display()
            ))),
            Err(TryLockError::Error(e)) => Err(StoreError::Setup(format!(
                "cannot lock {}: {e}",
                path.display()
            ))),
        }
    }

    /// Lets another process own the database (the store is closing).
    pub(super) fn disown(&self) {
        self.owned.store(false, Ordering::Release);
        *self.lock.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Takes updates just stored (committed, each new), in the order they were stored.
    pub(super) fn offer(&self, updates: impl IntoIterator<Item = UpdateRecord>) {
        let mut s = self.state();
        for u in updates {
            let full = s.queued >= self.capacity;
            match &mut s.coverage {
                Coverage::Complete if !full => s.add(u),
                Coverage::Complete => {
                    // Full: this one and what follows stay in the store until a scan.
                    tracing::warn!(
                        capacity = self.capacity,
                        "the update queue is full: further updates wait in the store"
                    );
                    s.coverage = Coverage::Behind;
                }
                Coverage::Behind => {}
                Coverage::Scanning(beside) => beside.push(u),
            }
        }
    }

    /// Up to `limit` updates, each the oldest waiting of a chat with none in hand, oldest
    /// first; each stays in hand until finished or until `lease_until` passes.
    pub(super) fn take(&self, lease_until: i64, limit: usize) -> Vec<UpdateRecord> {
        let mut s = self.state();
        let mut taken = Vec::new();
        while taken.len() < limit {
            let Some((_, _, lane)) = s.ready.pop_first() else {
                break;
            };
            let Some(state) = s.lanes.get_mut(&lane) else {
                continue;
            };
            let Some(mut update) = state.waiting.pop_front() else {
                continue;
            };
            state.busy = true;
            s.queued -= 1;
            update.status = UpdateStatus::Processing;
            s.in_hand.insert(
                (update.bot_id.clone(), update.update_id),
                InHand {
                    lane,
                    lease_until,
                    update: update.clone(),
                },
            );
            taken.push(update);
        }
        taken
    }

    /// Frees the chats of updates whose outcomes are committed: their next updates may be
    /// taken.
    pub(super) fn finished<'a>(&self, keys: impl IntoIterator<Item = (&'a str, i64)>) {
        let mut s = self.state();
        for (bot_id, update_id) in keys {
            // Not in hand: its lease ran out and it was put back (or taken again); the
            // second run finishes it too, as on a store shared by several servers.
            if let Some(done) = s.in_hand.remove(&(bot_id.to_string(), update_id)) {
                s.release(done.lane);
            }
        }
    }

    /// Puts back updates whose lease ended before `now` (their processor stopped without an
    /// outcome); returns how many.
    pub(super) fn reclaim(&self, now: i64) -> u64 {
        let mut s = self.state();
        let expired: Vec<(String, i64)> = s
            .in_hand
            .iter()
            .filter(|(_, h)| h.lease_until < now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &expired {
            if let Some(h) = s.in_hand.remove(key) {
                let mut update = h.update;
                update.status = UpdateStatus::Pending;
                let lane = s.lanes.entry(h.lane.clone()).or_default();
                lane.waiting.push_front(update);
                s.queued += 1;
                s.release(h.lane);
            }
        }
        expired.len() as u64
    }

    /// Starts a scan of the store when one is due (memory may miss pending updates) and
    /// possible (nothing queued or in hand, so nothing read can be finished meanwhile).
    /// The scan must end with [`Scan::done`]; dropped unfinished, it is due again.
    pub(super) async fn scan(&self) -> Option<Scan<'_>> {
        if !self.state().scan_due() {
            return None;
        }
        let guard = self.scanning.lock().await;
        let mut s = self.state();
        if !s.scan_due() {
            return None;
        }
        s.coverage = Coverage::Scanning(Vec::new());
        Some(Scan {
            queue: self,
            room: self.capacity,
            _one_at_a_time: guard,
            ended: false,
        })
    }
}

impl State {
    fn scan_due(&self) -> bool {
        matches!(self.coverage, Coverage::Behind) && self.queued == 0 && self.in_hand.is_empty()
    }

    /// Queues `u` in its lane, in order.
    fn add(&mut self, u: UpdateRecord) {
        let lane = Lane::of(&u);
        let state = self.lanes.entry(lane.clone()).or_default();
        let key = (u.received_at, u.update_id);
        let old_head = state.waiting.front().map(|h| (h.received_at, h.update_id));
        // Usually the newest: stored in order. A later commit can hold an older update.
        let at = state
            .waiting
            .partition_point(|w| (w.received_at, w.update_id) <= key);
        state.waiting.insert(at, u);
        self.queued += 1;
        if !state.busy && at == 0 {
            if let Some((r, i)) = old_head {
                self.ready.remove(&(r, i, lane.clone()));
            }
            self.ready.insert((key.0, key.1, lane));
        }
    }

    /// The lane has nothing in hand any more.
    fn release(&mut self, lane: Lane) {
        let Some(state) = self.lanes.get_mut(&lane) else {
            return;
        };
        state.busy = false;
        match state.waiting.front() {
            Some(head) => {
                let key = (head.received_at, head.update_id, lane);
                self.ready.insert(key);
            }
            None => {
                self.lanes.remove(&lane);
            }
        }
    }
}

/// A scan of the store in progress (see [`UpdateQueue::scan`]).
#[derive(Debug)]
pub(super) struct Scan<'a> {
    queue: &'a UpdateQueue,
    room: usize,
    _one_at_a_time: tokio::sync::MutexGuard<'a, ()>,
    ended: bool,
}

impl Scan<'_> {
    /// How many updates the scan may still read.
    pub(super) fn room(&self) -> usize {
        self.room
    }

    /// Ends the scan with the pending updates it read, oldest first: every pending one
    /// when `complete`, else the oldest ones that fit (the rest wait for the next scan).
    pub(super) fn done(mut self, found: Vec<UpdateRecord>, complete: bool) {
        self.ended = true;
        let mut s = self.queue.state();
        let beside = match std::mem::replace(&mut s.coverage, Coverage::Behind) {
            Coverage::Scanning(beside) => beside,
            _ => Vec::new(),
        };
        let mut seen = HashSet::new();
        for mut u in found {
            u.status = UpdateStatus::Pending;
            seen.insert((u.bot_id.clone(), u.update_id));
            s.add(u);
        }
        if complete {
            // Stored during the scan: the scan may have read them too.
            for u in beside {
                if !seen.contains(&(u.bot_id.clone(), u.update_id)) {
                    s.add(u);
                }
            }
            s.coverage = Coverage::Complete;
        }
        // Otherwise what was stored during the scan is newer than what it could read, and
        // is read by the next scan.
    }
}

impl Drop for Scan<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.queue.state().coverage = Coverage::Behind;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(id: i64, chat: Option<i64>, at: i64) -> UpdateRecord {
        UpdateRecord {
            bot_id: "b".into(),
            update_id: id,
            kind: "message".into(),
            chat_id: chat,
            user_id: None,
            body: "{}".into(),
            status: UpdateStatus::Pending,
            outcome: None,
            error: None,
            received_at: at,
            processed_at: None,
            handling_ms: None,
        }
    }

    fn ids(v: &[UpdateRecord]) -> Vec<i64> {
        v.iter().map(|u| u.update_id).collect()
    }

    async fn complete(q: &UpdateQueue) {
        q.scan().await.expect("a scan is due").done(vec![], true);
    }

    #[tokio::test]
    async fn chats_in_order_and_side_by_side() {
        let q = UpdateQueue::new(None, 100);
        complete(&q).await;
        q.offer([
            update(1, Some(1), 10),
            update(2, Some(2), 11),
            update(3, Some(1), 12),
            update(4, None, 13),
            update(5, None, 14),
        ]);
        // Stored later, received earlier: still first in its chat.
        q.offer([update(6, Some(2), 5)]);
        let first = q.take(100, 10);
        assert_eq!(ids(&first), vec![6, 1, 4, 5]);
        assert!(first.iter().all(|u| u.status == UpdateStatus::Processing));
        assert!(q.take(100, 10).is_empty(), "each chat has one in hand");
        q.finished([("b", 1), ("b", 6)]);
        assert_eq!(ids(&q.take(100, 1)), vec![2], "oldest first, limit kept");
        assert_eq!(ids(&q.take(100, 10)), vec![3]);
        q.finished([("b", 2), ("b", 3), ("b", 4), ("b", 5)]);
        assert!(q.take(100, 10).is_empty());
        assert!(q.state().lanes.is_empty() && q.state().in_hand.is_empty());
    }

    #[tokio::test]
    async fn an_expired_lease_puts_the_update_back_first_in_its_chat() {
        let q = UpdateQueue::new(None, 100);
        complete(&q).await;
        q.offer([update(1, Some(1), 10), update(2, Some(1), 11)]);
        assert_eq!(ids(&q.take(50, 10)), vec![1]);
        assert_eq!(q.reclaim(50), 0, "the lease still runs");
        assert_eq!(q.reclaim(51), 1);
        assert_eq!(ids(&q.take(100, 10)), vec![1]);
    }

    #[tokio::test]
    async fn nothing_is_taken_before_the_first_scan_and_stores_during_it_wait_beside() {
        let q = UpdateQueue::new(None, 100);
        q.offer([update(1, Some(1), 10)]);
        assert!(q.take(100, 10).is_empty(), "dropped: the scan will read it");
        let scan = q.scan().await.expect("due at start");
        assert!(q.scan().await.is_none(), "one at a time");
        // Stored while the scan reads: 2 was committed before the scan read (so it reads it
        // too), 3 after.
        q.offer([update(2, Some(1), 11), update(3, Some(1), 12)]);
        assert!(q.take(100, 10).is_empty(), "nothing is taken during a scan");
        scan.done(vec![update(1, Some(1), 10), update(2, Some(1), 11)], true);
        let mut order = Vec::new();
        while let Some(u) = q.take(100, 10).pop() {
            order.push(u.update_id);
            q.finished([("b", u.update_id)]);
        }
        assert_eq!(order, vec![1, 2, 3], "each once, in order");
    }

    #[tokio::test]
    async fn a_full_queue_leaves_updates_in_the_store_until_a_scan_reads_them() {
        let q = UpdateQueue::new(None, 2);
        complete(&q).await;
        q.offer([
            update(1, Some(1), 10),
            update(2, Some(1), 11),
            update(3, Some(1), 12),
        ]);
        q.offer([update(4, Some(2), 13)]);
        assert!(q.scan().await.is_none(), "not while updates are queued");
        assert_eq!(ids(&q.take(100, 10)), vec![1]);
        assert!(q.scan().await.is_none(), "not while one is in hand");
        q.finished([("b", 1)]);
        assert_eq!(ids(&q.take(100, 10)), vec![2]);
        q.finished([("b", 2)]);
        // Empty: the store's pending updates (3 and 4) are read, as many as fit.
        let scan = q.scan().await.expect("due once empty");
        assert_eq!(scan.room(), 2);
        q.offer([update(5, Some(2), 14)]);
        scan.done(vec![update(3, Some(1), 12), update(4, Some(2), 13)], false);
        assert_eq!(ids(&q.take(100, 10)), vec![3, 4]);
        q.finished([("b", 3), ("b", 4)]);
        // 5 was stored during an incomplete scan: the next scan reads it.
        assert!(q.take(100, 10).is_empty());
        q.scan()
            .await
            .expect("due")
            .done(vec![update(5, Some(2), 14)], true);
        assert_eq!(ids(&q.take(100, 10)), vec![5]);
    }

    #[tokio::test]
    async fn a_scan_dropped_midway_is_due_again() {
        let q = UpdateQueue::new(None, 10);
        drop(q.scan().await.expect("due"));
        assert!(q.scan().await.is_some());
    }

    #[test]
    fn one_owner_per_database_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relaygram.db");
        let a = UpdateQueue::new(Some(file.clone()), 10);
        let b = UpdateQueue::new(Some(file), 10);
        a.own().unwrap();
        a.own().unwrap();
        let e = b.own().unwrap_err().to_string();
        assert!(e.contains("another relaygram server"), "{e}");
        a.disown();
        b.own().unwrap();
    }
}

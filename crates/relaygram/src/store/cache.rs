//! Caches of data read on every inbound update, so the webhook check and the router do not
//! each cost a round trip: the bot record and its custom commands (trusted for [`TTL`]), and,
//! on a store this server owns (SQLite), the chats.
//!
//! Every write through this store forgets what it changes, so this process never reads its
//! own writes stale. Another process (a second instance, or the CLI) changing a bot is seen
//! within [`TTL`]; chats are written only by the server that owns the store, so they are kept
//! until written. A value read while a write was forgetting it is not kept (a generation
//! counter tells), so a slow read cannot put an old value back after the write.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a cached bot value is trusted.
pub(super) const TTL: Duration = Duration::from_secs(1);
/// Entries kept at most (then the cache starts over): bounds memory whatever the ids.
const CAPACITY: usize = 10_000;

/// A map from bot id to a value, each entry valid for [`TTL`].
pub(super) type BotCache<V> = Cache<String, V>;

/// A map of values read from the store, each valid for a time (or, with no time limit, until
/// this process writes it: only for data no other process writes).
#[derive(Debug)]
pub(super) struct Cache<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
    generation: AtomicU64,
    ttl: Option<Duration>,
    capacity: usize,
}

impl<K, V> Default for Cache<K, V> {
    fn default() -> Self {
        Cache::new(Some(TTL), CAPACITY)
    }
}

impl<K, V> Cache<K, V> {
    /// A cache whose entries are trusted for `ttl` (`None`: until forgotten), holding at
    /// most `capacity`.
    pub(super) fn new(ttl: Option<Duration>, capacity: usize) -> Self {
        Cache {
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            ttl,
            capacity,
        }
    }
}

impl<K: Hash + Eq, V: Clone> Cache<K, V> {
    /// The cached value, when fresh.
    pub(super) fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| self.ttl.is_none_or(|ttl| at.elapsed() < ttl))
            .map(|(_, v)| v.clone())
    }

    /// Call before reading the store; pass the result to [`Cache::put`].
    pub(super) fn ticket(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Keeps `value` read from the store, unless something was forgotten since `ticket`.
    pub(super) fn put(&self, ticket: u64, key: impl Into<K>, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) != ticket {
            return;
        }
        if entries.len() >= self.capacity {
            entries.clear();
        }
        entries.insert(key.into(), (Instant::now(), value));
    }

    /// Forgets one key's value (its data was just written: call after the commit).
    pub(super) fn forget<Q: Hash + Eq + ?Sized>(&self, key: &Q)
    where
        K: Borrow<Q>,
    {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_and_forgets() {
        let cache = BotCache::<u32>::default();
        let t = cache.ticket();
        cache.put(t, "bot_a", 1);
        assert_eq!(cache.get("bot_a"), Some(1));
        cache.forget("bot_a");
        assert_eq!(cache.get("bot_a"), None);
    }

    #[test]
    fn without_a_time_limit_values_stay_until_forgotten() {
        let cache = Cache::<(String, i64), u32>::new(None, 2);
        cache.put(cache.ticket(), ("b".to_string(), 1), 1);
        cache.put(cache.ticket(), ("b".to_string(), 2), 2);
        assert_eq!(cache.get(&("b".to_string(), 1)), Some(1));
        // Full: it starts over.
        cache.put(cache.ticket(), ("b".to_string(), 3), 3);
        assert_eq!(cache.get(&("b".to_string(), 1)), None);
        assert_eq!(cache.get(&("b".to_string(), 3)), Some(3));
    }

    #[test]
    fn a_read_overtaken_by_a_write_is_not_kept() {
        let cache = BotCache::<u32>::default();
        let t = cache.ticket();
        // A write happens while the read is in flight.
        cache.forget("bot_a");
        cache.put(t, "bot_a", 1);
        assert_eq!(cache.get("bot_a"), None);
    }
}

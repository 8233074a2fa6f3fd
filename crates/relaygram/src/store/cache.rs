//! Short-lived caches of per-bot data read on every inbound update (the bot record, its
//! custom commands), so the webhook check and the router do not each cost a round trip.
//!
//! Every write through this store forgets what it changes, so this process never reads its
//! own writes stale. Another process (a second instance, or the CLI) changing a bot is seen
//! within [`TTL`]. A value read while a write was forgetting it is not kept (a generation
//! counter tells), so a slow read cannot put an old value back after the write.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a cached value is trusted.
pub(super) const TTL: Duration = Duration::from_secs(1);
/// Entries kept at most (then the cache starts over): bounds memory whatever the ids.
const CAPACITY: usize = 10_000;

/// A map from bot id to a value, each entry valid for [`TTL`].
#[derive(Debug)]
pub(super) struct BotCache<V> {
    entries: Mutex<HashMap<String, (Instant, V)>>,
    generation: AtomicU64,
}

impl<V> Default for BotCache<V> {
    fn default() -> Self {
        BotCache {
            entries: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }
}

impl<V: Clone> BotCache<V> {
    /// The cached value, when fresh.
    pub(super) fn get(&self, bot_id: &str) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(bot_id)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, v)| v.clone())
    }

    /// Call before reading the store; pass the result to [`BotCache::put`].
    pub(super) fn ticket(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Keeps `value` read from the store, unless something was forgotten since `ticket`.
    pub(super) fn put(&self, ticket: u64, bot_id: &str, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) != ticket {
            return;
        }
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(bot_id.to_string(), (Instant::now(), value));
    }

    /// Forgets one bot's value (its data was just written).
    pub(super) fn forget(&self, bot_id: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.remove(bot_id);
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
    fn a_read_overtaken_by_a_write_is_not_kept() {
        let cache = BotCache::<u32>::default();
        let t = cache.ticket();
        // A write happens while the read is in flight.
        cache.forget("bot_a");
        cache.put(t, "bot_a", 1);
        assert_eq!(cache.get("bot_a"), None);
    }
}

//! The per-user command rate limiter: at most N commands per minute per Telegram user per
//! bot. The first command over the limit in a window gets one polite "slow down" reply
//! ([`LimitDecision::Warn`]); later ones are dropped and counted ([`LimitDecision::Drop`]).
//!
//! **Per process.** Counts live in this process's memory. That is enough because each
//! bot's updates are processed by the one instance that holds the bot's lease, so a user's
//! commands to a bot are all counted in one place; a restart starts the counts afresh.
//!
//! Windows are fixed: a user's window opens with their first command and lasts
//! [`WINDOW`]; the next command after it opens a new one. Memory is bounded: users whose
//! window has ended are forgotten (swept as the table grows), and a hard cap evicts the
//! oldest windows if more users than that are active at once.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Length of a rate-limit window.
pub const WINDOW: Duration = Duration::from_secs(60);
pub use crate::config::DEFAULT_COMMANDS_PER_MINUTE;

/// Number of independently locked shards (less contention across chats).
const SHARDS: usize = 16;
/// Users tracked at most, across shards (about 100 bytes each).
const DEFAULT_CAPACITY: usize = 200_000;
/// A shard sweeps ended windows once it holds this many users (then at twice the size
/// left), and at least once per window.
const MIN_SWEEP_AT: usize = 64;

/// What to do with one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitDecision {
    /// Within the limit: handle it.
    Allow,
    /// The first command over the limit in this window: reply once, politely, and do not
    /// handle it.
    Warn,
    /// A later command over the limit: drop it silently (it is counted in metrics).
    Drop,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    count: u32,
}

#[derive(Debug)]
struct Shard {
    users: HashMap<(Box<str>, i64), Window>,
    sweep_at: usize,
    last_sweep: Option<Instant>,
}

/// Counts commands per `(bot, Telegram user)`; thread-safe through `&self`.
#[derive(Debug)]
pub struct CommandLimiter {
    per_minute: u32,
    shard_capacity: usize,
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

impl CommandLimiter {
    /// A limiter allowing `per_minute` commands per user per bot per minute. A value of 0
    /// is treated as 1 (configuration refuses 0 before it gets here).
    pub fn new(per_minute: u32) -> Self {
        Self::with_capacity(per_minute, DEFAULT_CAPACITY)
    }

    /// Like [`CommandLimiter::new`], tracking at most about `capacity` users at once.
    pub fn with_capacity(per_minute: u32, capacity: usize) -> Self {
        let shard_capacity = capacity.div_ceil(SHARDS).max(1);
        CommandLimiter {
            per_minute: per_minute.max(1),
            shard_capacity,
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        users: HashMap::new(),
                        sweep_at: MIN_SWEEP_AT.min(shard_capacity),
                        last_sweep: None,
                    })
                })
                .collect(),
        }
    }

    /// The configured limit.
    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Counts one command from `telegram_user_id` to `bot_id` at `now` and says what to do
    /// with it.
    pub fn check(&self, bot_id: &str, telegram_user_id: i64, now: Instant) -> LimitDecision {
        let index = (self.hasher.hash_one((bot_id, telegram_user_id)) as usize) % self.shards.len();
        let mut shard = match self.shards[index].lock() {
            Ok(guard) => guard,
            // A panic while holding the lock cannot leave a window half-updated in a
            // harmful way; keep counting.
            Err(poisoned) => poisoned.into_inner(),
        };
        let key = (Box::<str>::from(bot_id), telegram_user_id);
        let count = match shard.users.get_mut(&key) {
            Some(w) if now.saturating_duration_since(w.started) < WINDOW => {
                w.count = w.count.saturating_add(1);
                w.count
            }
            Some(w) => {
                *w = Window {
                    started: now,
                    count: 1,
                };
                1
            }
            None => {
                self.make_room(&mut shard, now);
                shard.users.insert(
                    key,
                    Window {
                        started: now,
                        count: 1,
                    },
                );
                1
            }
        };
        let decision = if count <= self.per_minute {
            LimitDecision::Allow
        } else if count == self.per_minute + 1 {
            LimitDecision::Warn
        } else {
            LimitDecision::Drop
        };
        if decision != LimitDecision::Allow {
            let label = if decision == LimitDecision::Warn {
                "warn"
            } else {
                "drop"
            };
            metrics::counter!(
                "relaygram_commands_rate_limited_total",
                "bot_id" => bot_id.to_string(),
                "decision" => label
            )
            .increment(1);
        }
        decision
    }

    /// Users currently tracked (for tests and diagnostics).
    pub fn tracked_users(&self) -> usize {
        self.shards
            .iter()
            .map(|s| match s.lock() {
                Ok(g) => g.users.len(),
                Err(p) => p.into_inner().users.len(),
            })
            .sum()
    }

    /// Before adding a user: forget ended windows when the shard has grown or a window has
    /// passed since the last sweep, and evict the oldest windows when it is full.
    fn make_room(&self, shard: &mut Shard, now: Instant) {
        let last = *shard.last_sweep.get_or_insert(now);
        if shard.users.len() >= shard.sweep_at || now.saturating_duration_since(last) >= WINDOW {
            shard.last_sweep = Some(now);
            shard
                .users
                .retain(|_, w| now.saturating_duration_since(w.started) < WINDOW);
            shard.sweep_at = (shard.users.len() * 2)
                .max(MIN_SWEEP_AT)
                .min(self.shard_capacity);
        }
        if shard.users.len() >= self.shard_capacity {
            // More users active within one window than we track: drop the oldest tenth.
            let mut starts: Vec<Instant> = shard.users.values().map(|w| w.started).collect();
            starts.sort_unstable();
            let cut = starts[(starts.len() / 10).min(starts.len() - 1)];
            shard.users.retain(|_, w| w.started > cut);
            if shard.users.len() >= self.shard_capacity {
                shard.users.clear();
            }
        }
    }
}

impl Default for CommandLimiter {
    fn default() -> Self {
        Self::new(DEFAULT_COMMANDS_PER_MINUTE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LimitDecision::*;

    fn decisions(
        l: &CommandLimiter,
        bot: &str,
        user: i64,
        n: usize,
        at: Instant,
    ) -> Vec<LimitDecision> {
        (0..n).map(|_| l.check(bot, user, at)).collect()
    }

    #[test]
    fn allows_the_limit_warns_once_then_drops() {
        let l = CommandLimiter::new(10);
        let t0 = Instant::now();
        let got = decisions(&l, "bot_a", 7, 14, t0);
        assert_eq!(&got[..10], &[Allow; 10]);
        assert_eq!(got[10], Warn);
        assert_eq!(&got[11..], &[Drop; 3]);
        // Still within the window, a little later: still dropped, never warned again.
        assert_eq!(l.check("bot_a", 7, t0 + Duration::from_secs(59)), Drop);
    }

    #[test]
    fn a_new_window_starts_after_a_minute() {
        let l = CommandLimiter::new(3);
        let t0 = Instant::now();
        assert_eq!(
            decisions(&l, "bot_a", 1, 5, t0),
            [Allow, Allow, Allow, Warn, Drop]
        );
        let t1 = t0 + WINDOW;
        assert_eq!(
            decisions(&l, "bot_a", 1, 5, t1),
            [Allow, Allow, Allow, Warn, Drop]
        );
    }

    #[test]
    fn users_and_bots_are_independent() {
        let l = CommandLimiter::new(2);
        let t0 = Instant::now();
        assert_eq!(decisions(&l, "bot_a", 1, 3, t0), [Allow, Allow, Warn]);
        assert_eq!(decisions(&l, "bot_a", 2, 3, t0), [Allow, Allow, Warn]);
        assert_eq!(decisions(&l, "bot_b", 1, 3, t0), [Allow, Allow, Warn]);
        assert_eq!(l.check("bot_a", 1, t0), Drop);
    }

    #[test]
    fn idle_users_are_forgotten() {
        let l = CommandLimiter::with_capacity(5, 16 * 1000);
        let t0 = Instant::now();
        for user in 0..5_000 {
            assert_eq!(l.check("bot_a", user, t0), Allow);
        }
        assert_eq!(l.tracked_users(), 5_000);
        // A minute later, new users arrive: the ended windows are swept as they do.
        let t1 = t0 + WINDOW + Duration::from_secs(1);
        for user in 10_000..10_100 {
            assert_eq!(l.check("bot_a", user, t1), Allow);
        }
        assert!(
            l.tracked_users() < 1_000,
            "idle users should be forgotten, {} tracked",
            l.tracked_users()
        );
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_users() {
        let capacity = 16 * 50;
        let l = CommandLimiter::with_capacity(5, capacity);
        let t0 = Instant::now();
        for user in 0..20_000 {
            l.check("bot_a", user, t0 + Duration::from_millis(user as u64));
            assert!(
                l.tracked_users() <= capacity,
                "{} tracked",
                l.tracked_users()
            );
        }
        // Recent users are still counted correctly.
        let last = 19_999;
        let at = t0 + Duration::from_millis(last as u64);
        assert_eq!(
            decisions(&l, "bot_a", last, 5, at),
            [Allow, Allow, Allow, Allow, Warn]
        );
    }

    #[test]
    fn shared_across_threads() {
        let l = std::sync::Arc::new(CommandLimiter::new(100));
        let t0 = Instant::now();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    (0..50).filter(|_| l.check("bot_a", 1, t0) == Allow).count()
                })
            })
            .collect();
        let allowed: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(allowed, 100);
        assert_eq!(l.check("bot_a", 1, t0), Drop);
    }

    #[test]
    fn zero_is_treated_as_one() {
        let l = CommandLimiter::new(0);
        assert_eq!(l.per_minute(), 1);
        assert_eq!(
            CommandLimiter::default().per_minute(),
            DEFAULT_COMMANDS_PER_MINUTE
        );
    }
}

//! Pacing: a bot never sends faster than Telegram allows, so Telegram never has to say no.
//!
//! A small GCRA (generic cell rate algorithm, what governor implements) that *reserves*
//! slots: the sender asks "when may this part go?" and gets an instant at or after which
//! it may. One limiter per bot and one per chat (private chats by the second, groups by the
//! minute). Pacing uses real (monotonic) time, not the services' clock: it models Telegram's
//! own counters, which run on real time whatever a test does to the clock.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::SendLimits;
use crate::store::BotLimitsRecord;

/// One rate: `emission` between cells, up to `burst` cells at once.
#[derive(Debug, Clone)]
pub struct Gcra {
    emission: Duration,
    tolerance: Duration,
    tat: Option<Instant>,
}

impl Gcra {
    /// `per_second` cells a second (0 = unlimited), bursts of `burst` cells.
    pub fn new(per_second: f64, burst: u32) -> Gcra {
        let emission = if per_second > 0.0 {
            Duration::from_secs_f64(1.0 / per_second)
        } else {
            Duration::ZERO
        };
        Gcra {
            emission,
            tolerance: emission * burst.saturating_sub(1),
            tat: None,
        }
    }

    /// Whether this limiter limits nothing.
    pub fn unlimited(&self) -> bool {
        self.emission.is_zero()
    }

    /// The earliest instant a cell may go, at or after `earliest`, without taking it.
    pub fn peek(&self, earliest: Instant) -> Instant {
        match self.tat {
            Some(tat) if tat > earliest + self.tolerance => tat - self.tolerance,
            _ => earliest,
        }
    }

    /// Takes the earliest slot at or after `earliest` and returns it.
    pub fn reserve(&mut self, earliest: Instant) -> Instant {
        if self.unlimited() {
            return earliest;
        }
        let at = self.peek(earliest);
        let tat = self.tat.map_or(at, |t| t.max(at));
        self.tat = Some(tat + self.emission);
        at
    }

    /// Gives back a slot [`Gcra::reserve`] took that went unused: the next cell may go one
    /// emission sooner.
    pub fn release(&mut self) {
        if let Some(tat) = self.tat {
            self.tat = Some(tat.checked_sub(self.emission).unwrap_or(tat));
        }
    }
}

/// The limits one bot keeps to, resolved from the deployment's and the bot's own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Messages per second for the bot (0 = none).
    pub per_bot_per_second: f64,
    /// Messages per second to a private chat (0 = none).
    pub per_chat_per_second: f64,
    /// Messages per minute to a group (0 = none).
    pub per_group_per_minute: f64,
}

impl Limits {
    /// The deployment's defaults with a bot's overrides.
    pub fn resolve(defaults: &SendLimits, own: &BotLimitsRecord) -> Limits {
        Limits {
            per_bot_per_second: own
                .per_bot_per_second
                .unwrap_or(defaults.per_bot_per_second),
            per_chat_per_second: own
                .per_chat_per_second
                .unwrap_or(defaults.per_chat_per_second),
            per_group_per_minute: own
                .per_group_per_minute
                .unwrap_or(defaults.per_group_per_minute),
        }
    }

    /// Seconds a send of `n` messages takes at the bot's rate (for ETAs).
    pub fn seconds_for(&self, n: i64) -> Option<f64> {
        (self.per_bot_per_second > 0.0).then(|| n.max(0) as f64 / self.per_bot_per_second)
    }
}

/// The bot's limiter and its chats' limiters.
#[derive(Debug)]
pub struct Pacer {
    limits: Limits,
    bot: Gcra,
    chats: HashMap<i64, Gcra>,
}

/// Bot bursts stay well under Telegram's (about 30): the slack absorbs the jitter between
/// our clock and Telegram's, so a full-rate send never meets a 429.
const BOT_BURST: u32 = 5;

impl Pacer {
    /// A pacer for these limits.
    pub fn new(limits: Limits) -> Pacer {
        Pacer {
            limits,
            bot: Gcra::new(limits.per_bot_per_second, BOT_BURST),
            chats: HashMap::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Changes the limits (a bot's own limits were edited), keeping the chats' state.
    pub fn set_limits(&mut self, limits: Limits) {
        if limits != self.limits {
            *self = Pacer::new(limits);
        }
    }

    fn chat_gcra(&mut self, chat_id: i64) -> &mut Gcra {
        let limits = self.limits;
        self.chats.entry(chat_id).or_insert_with(|| {
            // Negative ids are groups, supergroups and channels.
            if chat_id < 0 {
                Gcra::new(limits.per_group_per_minute / 60.0, 1)
            } else {
                Gcra::new(limits.per_chat_per_second, 1)
            }
        })
    }

    /// When the bot's next slot is.
    pub fn bot_ready_at(&self, now: Instant) -> Instant {
        self.bot.peek(now)
    }

    /// When the chat's next slot is.
    pub fn chat_ready_at(&mut self, chat_id: i64, now: Instant) -> Instant {
        self.chat_gcra(chat_id).peek(now)
    }

    /// How many chats have no slot before `horizon`: at most this many lane heads are
    /// passed over for their chat's pace in a claim before `horizon`.
    pub fn chats_paced_past(&self, now: Instant, horizon: Instant) -> usize {
        self.chats
            .values()
            .filter(|g| g.peek(now) > horizon)
            .count()
    }

    /// Reserves the slot for one message to `chat_id`: the chat's slot first, then the
    /// bot's at or after it.
    pub fn reserve(&mut self, chat_id: i64, now: Instant) -> Instant {
        let chat_at = self.chat_gcra(chat_id).peek(now);
        let at = self.bot.reserve(chat_at);
        self.chat_gcra(chat_id).reserve(at)
    }

    /// Gives back the slot [`Pacer::reserve`] took for a message to `chat_id` that was not
    /// sent after all (held back for its local time or quiet hours), so held messages do not
    /// use up the bot's rate.
    pub fn release(&mut self, chat_id: i64) {
        self.bot.release();
        if let Some(chat) = self.chats.get_mut(&chat_id) {
            chat.release();
        }
    }

    /// Forgets chats whose limiter is back to rest (keeps memory flat on broadcasts).
    pub fn prune(&mut self, now: Instant) {
        if self.chats.len() > 10_000 {
            self.chats.retain(|_, g| g.tat.is_some_and(|tat| tat > now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pacer with Telegram's chat limits (1/s per chat, 20/min per group) and `per_bot`.
    fn telegram_pacer(per_bot: f64) -> Pacer {
        Pacer::new(Limits {
            per_bot_per_second: per_bot,
            per_chat_per_second: 1.0,
            per_group_per_minute: 20.0,
        })
    }

    #[test]
    fn chats_paced_past_a_horizon_are_counted() {
        let now = Instant::now();
        let mut p = telegram_pacer(0.0);
        assert_eq!(p.chats_paced_past(now, now), 0);
        p.reserve(1, now);
        p.reserve(2, now);
        p.reserve(2, now);
        // Chat 1's next slot is a second away, chat 2's two.
        assert_eq!(p.chats_paced_past(now, now + Duration::from_millis(100)), 2);
        assert_eq!(
            p.chats_paced_past(now, now + Duration::from_millis(1500)),
            1
        );
    }

    #[test]
    fn reservations_are_spaced_by_the_rate_after_the_burst() {
        let now = Instant::now();
        let mut g = Gcra::new(10.0, 3);
        let slots: Vec<Duration> = (0..5).map(|_| g.reserve(now) - now).collect();
        assert_eq!(slots[0], Duration::ZERO);
        assert_eq!(slots[2], Duration::ZERO);
        assert!(slots[3] > Duration::from_millis(90) && slots[3] < Duration::from_millis(110));
        assert!(slots[4] > slots[3]);
    }

    #[test]
    fn a_private_chat_gets_one_message_a_second_and_a_group_one_per_three() {
        let now = Instant::now();
        let mut p = telegram_pacer(30.0);
        assert_eq!(p.reserve(1, now), now);
        let second = p.reserve(1, now) - now;
        assert!(second >= Duration::from_millis(999), "{second:?}");
        p.reserve(-5, now);
        let group = p.reserve(-5, now) - now;
        assert!(group >= Duration::from_millis(2999), "{group:?}");
    }

    #[test]
    fn a_released_slot_is_taken_again() {
        let now = Instant::now();
        let mut p = telegram_pacer(30.0);
        assert_eq!(p.reserve(1, now), now);
        // The message was held instead of sent: its chat's next slot is free again.
        p.release(1);
        assert_eq!(p.reserve(1, now), now);
        let mut g = Gcra::new(10.0, 1);
        let first = g.reserve(now);
        g.release();
        assert_eq!(g.reserve(now), first);
        // Nothing reserved: nothing to give back.
        let mut idle = Gcra::new(10.0, 1);
        idle.release();
        assert_eq!(idle.reserve(now), now);
    }

    #[test]
    fn zero_means_no_limit() {
        let now = Instant::now();
        let mut p = Pacer::new(Limits {
            per_bot_per_second: 0.0,
            per_chat_per_second: 0.0,
            per_group_per_minute: 0.0,
        });
        for _ in 0..100 {
            assert_eq!(p.reserve(1, now), now);
        }
    }
}

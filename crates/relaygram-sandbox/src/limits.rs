//! Telegram's flood limits: about 30 messages a second per bot, one a second per private chat
//! (with a small burst) and 20 a minute per group. Past them a send answers 429 with
//! `retry_after`. Token buckets, with rates multiplied by the time scale.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Whether flood limits are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Limits {
    /// Every send is accepted.
    #[default]
    Off,
    /// Telegram's limits.
    Telegram,
}

impl std::str::FromStr for Limits {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Limits::Off),
            "telegram" => Ok(Limits::Telegram),
            other => Err(format!(
                "unknown limits mode {other:?}: expected \"off\" or \"telegram\""
            )),
        }
    }
}

pub const BOT_PER_SECOND: f64 = 30.0;
pub const BOT_BURST: f64 = 30.0;
pub const PRIVATE_PER_SECOND: f64 = 1.0;
pub const PRIVATE_BURST: f64 = 3.0;
pub const GROUP_PER_MINUTE: f64 = 20.0;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(capacity: f64, now: Instant) -> Self {
        Bucket {
            tokens: capacity,
            updated: now,
        }
    }

    fn refill(&mut self, capacity: f64, per_second: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(capacity);
        self.updated = now;
    }

    /// Seconds until one token is available (0 when one is).
    fn wait(&self, per_second: f64) -> f64 {
        if self.tokens >= 1.0 {
            0.0
        } else {
            (1.0 - self.tokens) / per_second
        }
    }
}

/// The highest rates a bot has been seen sending at.
#[derive(Debug, Clone, Default)]
pub struct RateStats {
    /// Most sends accepted by the bot in any one-second window.
    pub max_bot_per_second: u32,
    /// Most sends accepted into one chat in any one-second window.
    pub max_chat_per_second: u32,
    /// Most sends accepted into one chat in any one-minute window.
    pub max_chat_per_minute: u32,
    bot_window: VecDeque<Instant>,
    chat_windows: HashMap<i64, VecDeque<Instant>>,
}

impl RateStats {
    pub fn record(&mut self, chat_id: i64, now: Instant) {
        self.bot_window.push_back(now);
        trim(&mut self.bot_window, now, Duration::from_secs(1));
        self.max_bot_per_second = self.max_bot_per_second.max(self.bot_window.len() as u32);
        let w = self.chat_windows.entry(chat_id).or_default();
        w.push_back(now);
        trim(w, now, Duration::from_secs(60));
        let last_second = w
            .iter()
            .rev()
            .take_while(|t| now.duration_since(**t) < Duration::from_secs(1))
            .count() as u32;
        self.max_chat_per_second = self.max_chat_per_second.max(last_second);
        self.max_chat_per_minute = self.max_chat_per_minute.max(w.len() as u32);
    }
}

fn trim(window: &mut VecDeque<Instant>, now: Instant, span: Duration) {
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= span)
    {
        window.pop_front();
    }
}

pub struct FloodLimiter {
    limits: Limits,
    time_scale: f64,
    bots: HashMap<i64, Bucket>,
    chats: HashMap<(i64, i64), Bucket>,
}

impl FloodLimiter {
    pub fn new(limits: Limits, time_scale: f64) -> Self {
        FloodLimiter {
            limits,
            time_scale,
            bots: HashMap::new(),
            chats: HashMap::new(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn time_scale(&self) -> f64 {
        self.time_scale
    }

    /// Takes a send slot for `bot_id` into `chat_id`, or returns the whole seconds to wait
    /// (at least 1, as Telegram never says 0).
    pub fn try_send(&mut self, bot_id: i64, chat_id: i64, now: Instant) -> Result<(), u64> {
        if self.limits == Limits::Off {
            return Ok(());
        }
        let (chat_rate, chat_cap) = if chat_id > 0 {
            (PRIVATE_PER_SECOND, PRIVATE_BURST)
        } else {
            (GROUP_PER_MINUTE / 60.0, GROUP_PER_MINUTE)
        };
        let chat_rate = chat_rate * self.time_scale;
        let bot_rate = BOT_PER_SECOND * self.time_scale;
        let chat = self
            .chats
            .entry((bot_id, chat_id))
            .or_insert_with(|| Bucket::full(chat_cap, now));
        chat.refill(chat_cap, chat_rate, now);
        let bot = self
            .bots
            .entry(bot_id)
            .or_insert_with(|| Bucket::full(BOT_BURST, now));
        bot.refill(BOT_BURST, bot_rate, now);
        let wait = chat.wait(chat_rate).max(bot.wait(bot_rate));
        if wait > 0.0 {
            return Err((wait.ceil() as u64).max(1));
        }
        chat.tokens -= 1.0;
        bot.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_chat_allows_a_small_burst_then_one_per_second() {
        let mut l = FloodLimiter::new(Limits::Telegram, 1.0);
        let t0 = Instant::now();
        for _ in 0..PRIVATE_BURST as usize {
            assert!(l.try_send(1, 42, t0).is_ok());
        }
        assert_eq!(l.try_send(1, 42, t0), Err(1));
        assert!(l.try_send(1, 42, t0 + Duration::from_millis(1000)).is_ok());
        // Another chat is not affected.
        assert!(l.try_send(1, 43, t0).is_ok());
    }

    #[test]
    fn group_allows_twenty_a_minute() {
        let mut l = FloodLimiter::new(Limits::Telegram, 1.0);
        let t0 = Instant::now();
        for _ in 0..20 {
            assert!(l.try_send(1, -5, t0).is_ok());
        }
        assert_eq!(l.try_send(1, -5, t0), Err(3));
    }

    #[test]
    fn bot_wide_limit_holds_across_chats() {
        let mut l = FloodLimiter::new(Limits::Telegram, 1.0);
        let t0 = Instant::now();
        for chat in 0..30 {
            assert!(l.try_send(1, 1000 + chat, t0).is_ok());
        }
        assert_eq!(l.try_send(1, 5000, t0), Err(1));
        assert!(
            l.try_send(2, 5000, t0).is_ok(),
            "other bots have their own limit"
        );
    }

    #[test]
    fn time_scale_speeds_up_refill() {
        let mut l = FloodLimiter::new(Limits::Telegram, 10.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            l.try_send(1, 42, t0).unwrap();
        }
        assert!(l.try_send(1, 42, t0).is_err());
        assert!(l.try_send(1, 42, t0 + Duration::from_millis(100)).is_ok());
    }

    #[test]
    fn off_accepts_everything() {
        let mut l = FloodLimiter::new(Limits::Off, 1.0);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert!(l.try_send(1, 42, t0).is_ok());
        }
    }

    #[test]
    fn rate_stats_track_the_busiest_second() {
        let mut s = RateStats::default();
        let t0 = Instant::now();
        for i in 0..5 {
            s.record(42, t0 + Duration::from_millis(i * 100));
        }
        s.record(42, t0 + Duration::from_millis(2000));
        assert_eq!(s.max_chat_per_second, 5);
        assert_eq!(s.max_chat_per_minute, 6);
        assert_eq!(s.max_bot_per_second, 5);
    }
}

//! Telegram's flood limits: about 30 messages a second per bot, one a second per private chat
//! and 20 a minute per group. Past them a send answers 429 with `retry_after`. Two models:
//! a strict sliding window of accepted arrivals (what an independent judge counts), and token
//! buckets that allow bursts (closer to how Telegram tolerates short bursts in practice).

mod arrivals;
mod rates;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arrivals::Arrivals;
pub use rates::RateStats;

/// Whether flood limits are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Limits {
    /// Every send is accepted.
    #[default]
    Off,
    /// Telegram's limits.
    Telegram,
}

impl Limits {
    pub fn as_str(self) -> &'static str {
        match self {
            Limits::Off => "off",
            Limits::Telegram => "telegram",
        }
    }
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

/// How the limits are counted when they are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimitModel {
    /// At most N accepted sends in any sliding window: per bot 30 a second, per private chat
    /// one a second, per group 20 a minute (counts times the time scale, windows in real time).
    #[default]
    Window,
    /// Token buckets: rates times the time scale, with bursts (30 per bot, 3 per private
    /// chat, 20 per group).
    Bucket,
}

impl LimitModel {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitModel::Window => "window",
            LimitModel::Bucket => "bucket",
        }
    }
}

impl std::str::FromStr for LimitModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "window" => Ok(LimitModel::Window),
            "bucket" => Ok(LimitModel::Bucket),
            other => Err(format!(
                "unknown limit model {other:?}: expected \"window\" or \"bucket\""
            )),
        }
    }
}

/// Which limit refused a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The bot's own limit, across all its chats.
    Bot,
    /// One private chat's.
    Chat,
    /// One group's, supergroup's or channel's.
    Group,
}

impl Scope {
    fn of_chat(chat_id: i64) -> Scope {
        if chat_id > 0 {
            Scope::Chat
        } else {
            Scope::Group
        }
    }
}

/// A send refused by a flood limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Whole seconds until the limit has room, at least 1 (Telegram never says 0).
    pub retry_after: u64,
    pub scope: Scope,
}

/// 429s by the limit that caused them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RefusalCounts {
    pub bot: u64,
    pub chat: u64,
    pub group: u64,
}

impl RefusalCounts {
    pub fn count(&mut self, scope: Scope) {
        match scope {
            Scope::Bot => self.bot += 1,
            Scope::Chat => self.chat += 1,
            Scope::Group => self.group += 1,
        }
    }
}

pub const BOT_PER_SECOND: f64 = 30.0;
pub const BOT_BURST: f64 = 30.0;
pub const PRIVATE_PER_SECOND: f64 = 1.0;
pub const PRIVATE_BURST: f64 = 3.0;
pub const GROUP_PER_MINUTE: f64 = 20.0;

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

/// The refusal for the longer of two waits (the chat's on a tie): that is what `retry_after`
/// must cover.
fn refusal(chat_id: i64, chat_wait: Duration, bot_wait: Duration) -> Option<Refusal> {
    let (wait, scope) = if bot_wait > chat_wait {
        (bot_wait, Scope::Bot)
    } else {
        (chat_wait, Scope::of_chat(chat_id))
    };
    if wait.is_zero() {
        return None;
    }
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Some(Refusal {
        retry_after: whole.max(1),
        scope,
    })
}

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
        self.updated = self.updated.max(now);
    }

    /// How long until one token is available (zero when one is).
    fn wait(&self, per_second: f64) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / per_second)
        }
    }
}

#[derive(Default)]
struct Buckets {
    bots: HashMap<i64, Bucket>,
    chats: HashMap<(i64, i64), Bucket>,
}

impl Buckets {
    fn try_send(
        &mut self,
        scale: f64,
        bot_id: i64,
        chat_id: i64,
        now: Instant,
    ) -> Result<(), Refusal> {
        let (chat_rate, chat_cap) = if chat_id > 0 {
            (PRIVATE_PER_SECOND, PRIVATE_BURST)
        } else {
            (GROUP_PER_MINUTE / 60.0, GROUP_PER_MINUTE)
        };
        let chat_rate = chat_rate * scale;
        let bot_rate = BOT_PER_SECOND * scale;
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
        if let Some(r) = refusal(chat_id, chat.wait(chat_rate), bot.wait(bot_rate)) {
            return Err(r);
        }
        chat.tokens -= 1.0;
        bot.tokens -= 1.0;
        Ok(())
    }
}

/// Telegram's count for a window, times the time scale: whole sends, at least one.
fn scaled_count(per_window: f64, scale: f64) -> usize {
    // The epsilon keeps 30 × 0.7 from flooring to 20.
    ((per_window * scale + 1e-9).floor() as usize).max(1)
}

struct Windows {
    bot_max: usize,
    private_max: usize,
    group_max: usize,
    bots: HashMap<i64, Arrivals>,
    chats: HashMap<(i64, i64), Arrivals>,
    swept: Option<Instant>,
}

impl Windows {
    fn new(scale: f64) -> Self {
        Windows {
            bot_max: scaled_count(BOT_PER_SECOND, scale),
            private_max: scaled_count(PRIVATE_PER_SECOND, scale),
            group_max: scaled_count(GROUP_PER_MINUTE, scale),
            bots: HashMap::new(),
            chats: HashMap::new(),
            swept: None,
        }
    }

    /// Accepts a send arriving at `at` when every window of the scope holding `at` has room:
    /// with arrivals in order, fewer than N accepted sends lie in `(at - W, at]`.
    fn try_send(&mut self, bot_id: i64, chat_id: i64, at: Instant) -> Result<(), Refusal> {
        let (chat_max, chat_span) = if chat_id > 0 {
            (self.private_max, SECOND)
        } else {
            (self.group_max, MINUTE)
        };
        let chat = self.chats.entry((bot_id, chat_id)).or_default();
        chat.prune_for(at, chat_span);
        let bot = self.bots.entry(bot_id).or_default();
        bot.prune_for(at, SECOND);
        let chat_wait = wait(chat, chat_max, chat_span, at);
        let bot_wait = wait(bot, self.bot_max, SECOND, at);
        if let Some(r) = refusal(chat_id, chat_wait, bot_wait) {
            return Err(r);
        }
        chat.insert(at);
        bot.insert(at);
        self.sweep(at);
        Ok(())
    }

    /// Drops chats quiet for two minutes, so memory follows recent traffic only.
    fn sweep(&mut self, at: Instant) {
        if self
            .swept
            .is_some_and(|s| at.saturating_duration_since(s) < MINUTE)
        {
            return;
        }
        self.swept = Some(at);
        if let Some(horizon) = at.checked_sub(MINUTE * 2) {
            self.chats
                .retain(|_, a| a.last().is_some_and(|t| t >= horizon));
        }
    }
}

/// How long until a send at `at` fits in `arrivals` (zero when it fits now).
fn wait(arrivals: &Arrivals, max: usize, span: Duration, at: Instant) -> Duration {
    if arrivals.busiest_around(at, span) < max {
        return Duration::ZERO;
    }
    arrivals
        .room_for(max, span)
        .map_or(Duration::ZERO, |room| room.saturating_duration_since(at))
        // Full now: never answer "retry after 0".
        .max(Duration::from_nanos(1))
}

enum Model {
    Window(Windows),
    Bucket(Buckets),
}

pub struct FloodLimiter {
    limits: Limits,
    time_scale: f64,
    model: Model,
}

impl FloodLimiter {
    pub fn new(limits: Limits, model: LimitModel, time_scale: f64) -> Self {
        let model = match model {
            LimitModel::Window => Model::Window(Windows::new(time_scale)),
            LimitModel::Bucket => Model::Bucket(Buckets::default()),
        };
        FloodLimiter {
            limits,
            time_scale,
            model,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn model(&self) -> LimitModel {
        match self.model {
            Model::Window(_) => LimitModel::Window,
            Model::Bucket(_) => LimitModel::Bucket,
        }
    }

    pub fn time_scale(&self) -> f64 {
        self.time_scale
    }

    /// Takes a send slot for `bot_id` into `chat_id` for a request that arrived at `at`, or
    /// says which limit refused it and for how long.
    pub fn try_send(&mut self, bot_id: i64, chat_id: i64, at: Instant) -> Result<(), Refusal> {
        if self.limits == Limits::Off {
            return Ok(());
        }
        match &mut self.model {
            Model::Window(w) => w.try_send(bot_id, chat_id, at),
            Model::Bucket(b) => b.try_send(self.time_scale, bot_id, chat_id, at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn window(scale: f64) -> FloodLimiter {
        FloodLimiter::new(Limits::Telegram, LimitModel::Window, scale)
    }

    fn bucket(scale: f64) -> FloodLimiter {
        FloodLimiter::new(Limits::Telegram, LimitModel::Bucket, scale)
    }

    fn refused(retry_after: u64, scope: Scope) -> Result<(), Refusal> {
        Err(Refusal { retry_after, scope })
    }

    #[test]
    fn window_private_chat_takes_one_a_second_and_room_comes_exactly_when_the_oldest_leaves() {
        let mut l = window(1.0);
        let t0 = Instant::now();
        assert!(l.try_send(1, 42, t0).is_ok());
        // No burst: a second send in the same second is refused, and does not count.
        assert_eq!(l.try_send(1, 42, t0 + ms(1)), refused(1, Scope::Chat));
        assert_eq!(l.try_send(1, 42, t0 + ms(999)), refused(1, Scope::Chat));
        // (t0, t0 + 1 s] no longer holds the first.
        assert!(l.try_send(1, 42, t0 + ms(1000)).is_ok());
        assert!(l.try_send(1, 42, t0 + ms(1999)).is_err());
        assert!(l.try_send(1, 42, t0 + ms(2000)).is_ok());
        // Another chat, and the same chat id of another bot, are not affected.
        assert!(l.try_send(1, 43, t0 + ms(2000)).is_ok());
        assert!(l.try_send(2, 42, t0 + ms(2000)).is_ok());
    }

    #[test]
    fn window_private_chat_at_scale_ten_takes_ten_in_any_second() {
        let mut l = window(10.0);
        let t0 = Instant::now();
        for i in 0..10 {
            assert!(l.try_send(1, 42, t0 + ms(i * 50)).is_ok(), "send {i}");
        }
        assert_eq!(l.try_send(1, 42, t0 + ms(500)), refused(1, Scope::Chat));
        // The window stays one real second: the first leaves at 1000 ms, the second at 1050.
        assert!(l.try_send(1, 42, t0 + ms(999)).is_err());
        assert!(l.try_send(1, 42, t0 + ms(1000)).is_ok());
        assert!(l.try_send(1, 42, t0 + ms(1049)).is_err());
        assert!(l.try_send(1, 42, t0 + ms(1050)).is_ok());
    }

    #[test]
    fn window_group_takes_twenty_a_minute_and_says_when_the_oldest_leaves() {
        let mut l = window(1.0);
        let t0 = Instant::now();
        for i in 0..20 {
            assert!(l.try_send(1, -5, t0 + Duration::from_secs(i)).is_ok());
        }
        // At 20.5 s the oldest (0 s) leaves in 39.5 s: rounded up.
        assert_eq!(
            l.try_send(1, -5, t0 + ms(20_500)),
            refused(40, Scope::Group)
        );
        assert_eq!(l.try_send(1, -5, t0 + ms(59_999)), refused(1, Scope::Group));
        assert!(l.try_send(1, -5, t0 + ms(60_000)).is_ok());
        assert_eq!(l.try_send(1, -5, t0 + ms(60_000)), refused(1, Scope::Group));
        // Groups are counted per minute, not per second: a private chat next to it is free.
        assert!(l.try_send(1, 42, t0 + ms(60_000)).is_ok());
    }

    #[test]
    fn window_bot_limit_holds_across_chats() {
        let mut l = window(1.0);
        let t0 = Instant::now();
        for chat in 0..30 {
            assert!(
                l.try_send(1, 1000 + chat, t0 + ms(chat as u64 * 10))
                    .is_ok()
            );
        }
        assert_eq!(l.try_send(1, 5000, t0 + ms(400)), refused(1, Scope::Bot));
        assert!(
            l.try_send(2, 5000, t0 + ms(400)).is_ok(),
            "other bots have their own"
        );
        // The first left at 1000 ms: one more fits, then the one of 10 ms must leave.
        assert!(l.try_send(1, 5000, t0 + ms(1000)).is_ok());
        assert_eq!(l.try_send(1, 5001, t0 + ms(1009)), refused(1, Scope::Bot));
        assert!(l.try_send(1, 5001, t0 + ms(1010)).is_ok());
    }

    #[test]
    fn window_refusal_names_the_longer_wait() {
        let mut l = window(1.0);
        let t0 = Instant::now();
        for i in 0..20 {
            assert!(l.try_send(1, -5, t0 + ms(i)).is_ok());
        }
        for chat in 0..10 {
            assert!(l.try_send(1, 100 + chat, t0 + ms(20 + chat as u64)).is_ok());
        }
        // The bot is full for another second, the group for a minute: the group is the cause.
        assert_eq!(l.try_send(1, -5, t0 + ms(100)), refused(60, Scope::Group));
        assert_eq!(l.try_send(1, 7, t0 + ms(100)), refused(1, Scope::Bot));
    }

    #[test]
    fn window_counts_are_floored_but_at_least_one() {
        let l = Windows::new(0.7);
        assert_eq!((l.bot_max, l.private_max, l.group_max), (21, 1, 14));
        let l = Windows::new(0.01);
        assert_eq!((l.bot_max, l.private_max, l.group_max), (1, 1, 1));
        let l = Windows::new(10.0);
        assert_eq!((l.bot_max, l.private_max, l.group_max), (300, 10, 200));
        let l = Windows::new(2.5);
        assert_eq!((l.bot_max, l.private_max, l.group_max), (75, 2, 50));
    }

    #[test]
    fn window_judges_a_send_recorded_late_by_its_arrival() {
        let mut l = window(1.0);
        let t0 = Instant::now();
        assert!(l.try_send(1, 42, t0 + ms(500)).is_ok());
        // Arrived before the accepted one but got the lock after it: they share a second.
        assert!(l.try_send(1, 42, t0 + ms(100)).is_err());
        assert!(l.try_send(1, 42, t0 + ms(1500)).is_ok());
    }

    #[test]
    fn window_memory_follows_recent_traffic() {
        let mut l = Windows::new(1.0);
        let t0 = Instant::now();
        for i in 0..1000u64 {
            l.try_send(1, 1 + i as i64, t0 + ms(i * 40)).unwrap();
        }
        l.try_send(1, 1, t0 + Duration::from_secs(300)).unwrap();
        assert_eq!(l.chats.len(), 1, "quiet chats are dropped");
        l.try_send(1, 2, t0 + Duration::from_secs(301)).unwrap();
        assert_eq!(l.bots[&1].len(), 2, "the bot keeps two seconds of arrivals");
        assert_eq!(l.chats[&(1, 1)].len(), 1);
    }

    #[test]
    fn bucket_private_chat_allows_a_small_burst_then_one_per_second() {
        let mut l = bucket(1.0);
        let t0 = Instant::now();
        for _ in 0..PRIVATE_BURST as usize {
            assert!(l.try_send(1, 42, t0).is_ok());
        }
        assert_eq!(l.try_send(1, 42, t0), refused(1, Scope::Chat));
        assert!(l.try_send(1, 42, t0 + Duration::from_millis(1000)).is_ok());
        // Another chat is not affected.
        assert!(l.try_send(1, 43, t0).is_ok());
    }

    #[test]
    fn bucket_group_allows_twenty_a_minute() {
        let mut l = bucket(1.0);
        let t0 = Instant::now();
        for _ in 0..20 {
            assert!(l.try_send(1, -5, t0).is_ok());
        }
        assert_eq!(l.try_send(1, -5, t0), refused(3, Scope::Group));
    }

    #[test]
    fn bucket_bot_wide_limit_holds_across_chats() {
        let mut l = bucket(1.0);
        let t0 = Instant::now();
        for chat in 0..30 {
            assert!(l.try_send(1, 1000 + chat, t0).is_ok());
        }
        assert_eq!(l.try_send(1, 5000, t0), refused(1, Scope::Bot));
        assert!(
            l.try_send(2, 5000, t0).is_ok(),
            "other bots have their own limit"
        );
    }

    #[test]
    fn bucket_time_scale_speeds_up_refill() {
        let mut l = bucket(10.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            l.try_send(1, 42, t0).unwrap();
        }
        assert!(l.try_send(1, 42, t0).is_err());
        assert!(l.try_send(1, 42, t0 + Duration::from_millis(100)).is_ok());
    }

    #[test]
    fn off_accepts_everything() {
        for model in [LimitModel::Window, LimitModel::Bucket] {
            let mut l = FloodLimiter::new(Limits::Off, model, 1.0);
            let t0 = Instant::now();
            for _ in 0..1000 {
                assert!(l.try_send(1, 42, t0).is_ok());
            }
        }
    }

    #[test]
    fn models_parse_by_name() {
        assert_eq!("window".parse(), Ok(LimitModel::Window));
        assert_eq!("bucket".parse(), Ok(LimitModel::Bucket));
        assert!("Window".parse::<LimitModel>().is_err());
        assert_eq!(LimitModel::default(), LimitModel::Window);
    }
}

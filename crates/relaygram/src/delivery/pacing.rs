//! Pacing: a bot never sends faster than Telegram allows, so Telegram never has to say no.
//!
//! Telegram's exact algorithm is not published, so the model is the strictest one: at most
//! `N` sends may *arrive* at Telegram in any sliding window (30 a second per bot, 1 a second
//! per private chat, 20 a minute per group). Two pieces keep to it:
//!
//! - a [`Window`] per bot and per chat, checked right before each request leaves. A send
//!   counts from the moment it leaves until one window after its answer came back: its
//!   arrival lies somewhere between the two, so counting it that long is exact whatever the
//!   network's jitter, and a send still in flight always counts. No margin is guessed; the
//!   only cost is the round trip, a few milliseconds against a one-second window;
//! - a small GCRA (generic cell rate algorithm, what governor implements) that *plans*
//!   slots: the sender asks "when may this part go?" before it claims work, so messages
//!   leave smoothly (a burst of a few, then one every `1/rate`) instead of `N` at once, and
//!   few wait at the window.
//!
//! Pacing uses real (monotonic) time, not the services' clock: it models Telegram's own
//! counters, which run on real time whatever a test does to the clock.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
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

/// A strict sliding window: at most `max` sends whose arrival may lie in any `span`.
///
/// A send in flight counts; an answered one counts until `span` after its answer. Answers
/// are recorded as they come, so `answered` is in time order.
#[derive(Debug, Clone)]
pub struct Window {
    max: usize,
    span: Duration,
    in_flight: usize,
    answered: VecDeque<Instant>,
}

impl Window {
    /// A window for `rate` sends per `unit` (0 = unlimited): `max(1, floor(rate))` sends per
    /// the span that makes that rate (30 a second is 30 per second; 0.5 a second is 1 per
    /// two seconds).
    pub fn for_rate(rate: f64, unit: Duration) -> Window {
        if rate <= 0.0 || !rate.is_finite() {
            return Window::new(usize::MAX, Duration::ZERO);
        }
        let max = rate.floor().max(1.0);
        Window::new(max as usize, unit.mul_f64(max / rate))
    }

    /// At most `max` sends in any `span`.
    pub fn new(max: usize, span: Duration) -> Window {
        Window {
            max,
            span,
            in_flight: 0,
            answered: VecDeque::new(),
        }
    }

    /// Whether this window limits nothing.
    pub fn unlimited(&self) -> bool {
        self.span.is_zero()
    }

    /// Changes the limit, keeping what was sent (a limit edit must not open a burst).
    fn set(&mut self, other: &Window) {
        self.max = other.max;
        self.span = other.span;
    }

    fn forget_before(&mut self, now: Instant) {
        while self.answered.front().is_some_and(|t| *t + self.span <= now) {
            self.answered.pop_front();
        }
    }

    /// Sends that still count at `now`.
    fn live(&mut self, now: Instant) -> usize {
        self.forget_before(now);
        self.in_flight + self.answered.len()
    }

    /// Whether a send may leave at `now`.
    pub fn admits(&mut self, now: Instant) -> bool {
        self.unlimited() || self.live(now) < self.max
    }

    /// When a send may leave, supposing the sends in flight were answered at `now`: exact
    /// when none is in flight, an estimate for planning otherwise.
    pub fn ready_at(&mut self, now: Instant) -> Instant {
        if self.unlimited() {
            return now;
        }
        let live = self.live(now);
        if live < self.max {
            return now;
        }
        // This many must stop counting first; answered ones stop in order, then those in
        // flight (taken as answered now).
        let expire = live - self.max + 1;
        match self.answered.get(expire - 1) {
            Some(t) => *t + self.span,
            None => now + self.span,
        }
    }

    /// A send leaves now.
    pub fn start(&mut self) {
        self.in_flight += 1;
    }

    /// A send that left was answered (or given up on) at `at`.
    pub fn answered(&mut self, at: Instant) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if !self.unlimited() {
            // Answers come in time order but `at` may be a hair older than the last one.
            let at = self.answered.back().map_or(at, |last| at.max(*last));
            self.answered.push_back(at);
        }
    }

    /// Whether nothing counts any more (the window can be forgotten).
    fn idle(&mut self, now: Instant) -> bool {
        self.live(now) == 0
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

/// A bot's or a chat's pace: the planner and the window.
#[derive(Debug, Clone)]
struct Pace {
    plan: Gcra,
    window: Window,
}

impl Pace {
    fn ready_at(&mut self, now: Instant) -> Instant {
        self.plan.peek(now).max(self.window.ready_at(now))
    }
}

/// The bot's limiter and its chats' limiters.
#[derive(Debug)]
pub struct Pacer {
    limits: Limits,
    bot: Pace,
    chats: HashMap<i64, Pace>,
}

/// The planner lets a few of the bot's sends go at once, then one every `1/rate`; the
/// window is what keeps the limit, so the burst costs no safety.
const BOT_BURST: u32 = 5;

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

impl Pacer {
    /// A pacer for these limits.
    pub fn new(limits: Limits) -> Pacer {
        Pacer {
            limits,
            bot: Pace {
                plan: Gcra::new(limits.per_bot_per_second, BOT_BURST),
                window: Window::for_rate(limits.per_bot_per_second, SECOND),
            },
            chats: HashMap::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Changes the limits (a bot's own limits were edited). The windows keep what was sent,
    /// so the change cannot open a burst; the planners start afresh.
    pub fn set_limits(&mut self, limits: Limits) {
        if limits == self.limits {
            return;
        }
        let fresh = Pacer::new(limits);
        self.limits = limits;
        self.bot.plan = fresh.bot.plan;
        self.bot.window.set(&fresh.bot.window);
        for (chat_id, pace) in &mut self.chats {
            let fresh = Self::chat_pace(limits, *chat_id);
            pace.plan = fresh.plan;
            pace.window.set(&fresh.window);
        }
    }

    fn chat_pace(limits: Limits, chat_id: i64) -> Pace {
        // Negative ids are groups, supergroups and channels.
        if chat_id < 0 {
            Pace {
                plan: Gcra::new(limits.per_group_per_minute / 60.0, 1),
                window: Window::for_rate(limits.per_group_per_minute, MINUTE),
            }
        } else {
            Pace {
                plan: Gcra::new(limits.per_chat_per_second, 1),
                window: Window::for_rate(limits.per_chat_per_second, SECOND),
            }
        }
    }

    fn chat(&mut self, chat_id: i64) -> &mut Pace {
        let limits = self.limits;
        self.chats
            .entry(chat_id)
            .or_insert_with(|| Self::chat_pace(limits, chat_id))
    }

    /// When the bot's next slot is.
    pub fn bot_ready_at(&mut self, now: Instant) -> Instant {
        self.bot.ready_at(now)
    }

    /// When the chat's next slot is.
    pub fn chat_ready_at(&mut self, chat_id: i64, now: Instant) -> Instant {
        self.chat(chat_id).ready_at(now)
    }

    /// How many chats have no slot before `horizon`: at most this many lane heads are
    /// passed over for their chat's pace in a claim before `horizon`.
    pub fn chats_paced_past(&mut self, now: Instant, horizon: Instant) -> usize {
        let mut n = 0;
        for p in self.chats.values_mut() {
            n += usize::from(p.ready_at(now) > horizon);
        }
        n
    }

    /// Plans the slot for one message to `chat_id`: the chat's slot first, then the bot's
    /// at or after it. The send still passes [`SharedPacer::admit`] before it leaves.
    pub fn reserve(&mut self, chat_id: i64, now: Instant) -> Instant {
        let chat_at = self.chat(chat_id).ready_at(now);
        let at = chat_at.max(self.bot.window.ready_at(now));
        let at = self.bot.plan.reserve(at);
        self.chat(chat_id).plan.reserve(at)
    }

    /// Gives back the slot [`Pacer::reserve`] took for a message to `chat_id` that was not
    /// sent after all (held back for its local time or quiet hours), so held messages do not
    /// use up the bot's rate.
    pub fn release(&mut self, chat_id: i64) {
        self.bot.plan.release();
        if let Some(chat) = self.chats.get_mut(&chat_id) {
            chat.plan.release();
        }
    }

    /// Lets a send to `chat_id` leave at `now` if both windows have room (counting it from
    /// now on), or says when to ask again.
    pub fn try_admit(&mut self, chat_id: i64, now: Instant) -> Result<(), Instant> {
        let bot_ok = self.bot.window.admits(now);
        let chat = self.chat(chat_id);
        if bot_ok && chat.window.admits(now) {
            chat.window.start();
            self.bot.window.start();
            return Ok(());
        }
        // A lower bound: answered sends stop counting at known times, sends in flight not
        // before a window from now.
        let chat_at = chat.window.ready_at(now);
        Err(chat_at.max(self.bot.window.ready_at(now)).max(now))
    }

    /// A send [`Pacer::try_admit`] let go was answered (or given up on) at `at`.
    pub fn answered(&mut self, chat_id: i64, at: Instant) {
        self.bot.window.answered(at);
        self.chat(chat_id).window.answered(at);
    }

    /// Forgets chats whose limiter is back to rest (keeps memory flat on broadcasts).
    pub fn prune(&mut self, now: Instant) {
        if self.chats.len() > 10_000 {
            self.chats
                .retain(|_, p| p.plan.tat.is_some_and(|tat| tat > now) || !p.window.idle(now));
        }
    }
}

/// The pacer a sender and its sends share.
#[derive(Debug, Clone)]
pub struct SharedPacer(Arc<Mutex<Pacer>>);

impl SharedPacer {
    /// A shared pacer for these limits.
    pub fn new(limits: Limits) -> SharedPacer {
        SharedPacer(Arc::new(Mutex::new(Pacer::new(limits))))
    }

    /// The pacer (a panic elsewhere cannot leave it in a state that matters).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Pacer> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until a send to `chat_id` may leave without any window going over its limit,
    /// and counts it as leaving. Call right before the request goes out; the send counts
    /// until the returned permit is dropped (when its answer came, or it was given up).
    pub async fn admit(&self, chat_id: i64) -> Permit {
        loop {
            let now = Instant::now();
            let next = self.lock().try_admit(chat_id, now);
            match next {
                Ok(()) => {
                    return Permit {
                        pacer: self.clone(),
                        chat_id,
                    };
                }
                Err(at) => tokio::time::sleep_until(at).await,
            }
        }
    }
}

/// A send that left; dropping it records its answer (now).
#[derive(Debug)]
pub struct Permit {
    pacer: SharedPacer,
    chat_id: i64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.pacer.lock().answered(self.chat_id, Instant::now());
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
    fn a_window_counts_a_send_from_leaving_until_a_span_after_its_answer() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = Window::new(2, SECOND);
        assert!(w.admits(t0));
        w.start();
        w.start();
        // Two in flight: full, and no sooner than a span from now.
        assert!(!w.admits(t0));
        assert_eq!(w.ready_at(t0), t0 + SECOND);
        w.answered(t0 + ms(5));
        w.answered(t0 + ms(9));
        assert!(!w.admits(t0 + ms(1004)));
        assert_eq!(w.ready_at(t0 + ms(10)), t0 + ms(1005));
        // Exactly a span after the first answer, one more may go; not a second.
        assert!(w.admits(t0 + ms(1005)));
        w.start();
        assert!(!w.admits(t0 + ms(1005)));
        assert_eq!(w.ready_at(t0 + ms(1005)), t0 + ms(1009));
    }

    #[test]
    fn windows_for_rates_round_down_to_whole_sends() {
        let w = Window::for_rate(30.0, SECOND);
        assert_eq!((w.max, w.span), (30, SECOND));
        let w = Window::for_rate(0.5, SECOND);
        assert_eq!((w.max, w.span), (1, Duration::from_secs(2)));
        let w = Window::for_rate(20.0, MINUTE);
        assert_eq!((w.max, w.span), (20, MINUTE));
        assert!(Window::for_rate(0.0, SECOND).unlimited());
    }

    /// Sends that each take `latency` to be answered, let go as soon as the pacer admits
    /// them: no sliding second ever sees more than the limit arrive, wherever in its round
    /// trip each arrival falls, and the rate stays close to the limit.
    #[test]
    fn admitted_sends_never_exceed_the_limit_in_any_sliding_second() {
        let t0 = Instant::now();
        let latency = Duration::from_millis(3);
        let mut p = telegram_pacer(30.0);
        let mut now = t0;
        let mut sent: Vec<(Instant, Instant)> = Vec::new();
        let mut in_flight: VecDeque<(Instant, i64)> = VecDeque::new();
        let mut chat = 0i64;
        while sent.len() < 300 {
            while in_flight.front().is_some_and(|(done, _)| *done <= now) {
                let (done, c) = in_flight.pop_front().unwrap();
                p.answered(c, done);
            }
            let slot = p.reserve(chat, now);
            now = now.max(slot);
            match p.try_admit(chat, now) {
                Ok(()) => {
                    sent.push((now, now + latency));
                    in_flight.push_back((now + latency, chat));
                    chat += 1;
                }
                Err(at) => {
                    p.release(chat);
                    let next_answer = in_flight.front().map(|(d, _)| *d);
                    now = next_answer.map_or(at, |d| d.min(at)).max(now);
                }
            }
        }
        // Worst case for each send: the earlier ones arrive as late as they can (at their
        // answer), this one as early as it can (when it left).
        for (i, (left, _)) in sent.iter().enumerate() {
            let in_window = sent[..i]
                .iter()
                .filter(|(_, answered)| *answered > *left - SECOND)
                .count();
            assert!(
                in_window < 30,
                "send {i} had {in_window} before it in a second"
            );
        }
        let span = sent.last().unwrap().0 - sent[0].0;
        let rate = (sent.len() - 1) as f64 / span.as_secs_f64();
        assert!(rate > 29.0 && rate <= 30.5, "rate {rate}");
    }

    #[test]
    fn a_limit_edit_keeps_what_was_sent() {
        let now = Instant::now();
        let mut p = telegram_pacer(2.0);
        for chat in 0..2 {
            p.try_admit(chat, now).unwrap();
            p.answered(chat, now);
        }
        assert!(p.try_admit(5, now).is_err());
        p.set_limits(Limits {
            per_bot_per_second: 3.0,
            ..p.limits()
        });
        p.try_admit(5, now).unwrap();
        assert!(
            p.try_admit(6, now).is_err(),
            "the two earlier sends still count"
        );
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
            assert_eq!(p.try_admit(1, now), Ok(()));
        }
    }
}

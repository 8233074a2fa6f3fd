//! The highest rates a bot was seen sending at, as a strict judge counts them: accepted sends
//! only, timed at arrival, in any sliding window (not only windows ending at a send).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::arrivals::Arrivals;

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default)]
pub struct RateStats {
    /// Most sends accepted from the bot in any sliding second.
    pub max_bot_per_second: u32,
    /// Most sends accepted into one chat (of any kind) in any sliding second.
    pub max_chat_per_second: u32,
    /// Most sends accepted into one chat (of any kind) in any sliding minute.
    pub max_chat_per_minute: u32,
    /// Most sends accepted into one private chat in any sliding second.
    pub max_private_chat_per_second: u32,
    /// Most sends accepted into one group, supergroup or channel in any sliding minute.
    pub max_group_per_minute: u32,
    /// The first and the last accepted send's arrival (a judge's throughput is the sends
    /// between them over the time between them).
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    bot: Arrivals,
    chats: HashMap<i64, Arrivals>,
    swept: Option<Instant>,
}

impl RateStats {
    /// Counts an accepted send that arrived at `at`.
    pub fn record(&mut self, chat_id: i64, at: Instant) {
        self.first = Some(self.first.map_or(at, |f| f.min(at)));
        self.last = Some(self.last.map_or(at, |l| l.max(at)));
        // The busiest window holding the new send is the only one whose count changes.
        self.bot.prune_for(at, SECOND);
        let bot = self.bot.busiest_around(at, SECOND) + 1;
        self.bot.insert(at);
        self.max_bot_per_second = self.max_bot_per_second.max(bot as u32);

        let chat = self.chats.entry(chat_id).or_default();
        chat.prune_for(at, MINUTE);
        let second = chat.busiest_around(at, SECOND) as u32 + 1;
        let minute = chat.busiest_around(at, MINUTE) as u32 + 1;
        chat.insert(at);
        self.max_chat_per_second = self.max_chat_per_second.max(second);
        self.max_chat_per_minute = self.max_chat_per_minute.max(minute);
        if chat_id > 0 {
            self.max_private_chat_per_second = self.max_private_chat_per_second.max(second);
        } else {
            self.max_group_per_minute = self.max_group_per_minute.max(minute);
        }
        self.sweep(at);
    }

    /// Drops chats that have been quiet for long, so memory stays bounded by recent traffic.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_busiest_second_is_found_between_sends_too() {
        let mut s = RateStats::default();
        let t0 = Instant::now();
        for i in 0..5 {
            s.record(42, t0 + ms(i * 100));
        }
        s.record(42, t0 + ms(2000));
        assert_eq!(s.max_chat_per_second, 5);
        assert_eq!(s.max_private_chat_per_second, 5);
        assert_eq!(s.max_chat_per_minute, 6);
        assert_eq!(s.max_bot_per_second, 5);
        assert_eq!(s.max_group_per_minute, 0);
    }

    #[test]
    fn a_second_is_half_open() {
        let mut s = RateStats::default();
        let t0 = Instant::now();
        s.record(42, t0);
        s.record(42, t0 + ms(1000));
        assert_eq!(s.max_bot_per_second, 1, "the first left as the second came");
        s.record(42, t0 + ms(1999));
        assert_eq!(s.max_bot_per_second, 2);
    }

    #[test]
    fn sends_recorded_out_of_order_count_where_they_arrived() {
        let mut s = RateStats::default();
        let t0 = Instant::now();
        s.record(1, t0);
        s.record(2, t0 + ms(900));
        // Arrived between the two, recorded last: all three lie in one second.
        s.record(3, t0 + ms(400));
        assert_eq!(s.max_bot_per_second, 3);
        // Arrived a second after the first: it shares a second with 400 and 900 only.
        s.record(4, t0 + ms(1000));
        assert_eq!(s.max_bot_per_second, 3);
    }

    #[test]
    fn groups_are_counted_per_minute_and_apart_from_private_chats() {
        let mut s = RateStats::default();
        let t0 = Instant::now();
        for i in 0..4 {
            s.record(-5, t0 + Duration::from_secs(i * 19));
        }
        s.record(-5, t0 + Duration::from_secs(60));
        assert_eq!(s.max_group_per_minute, 4, "the first left at 60 s");
        assert_eq!(s.max_private_chat_per_second, 0);
        assert_eq!(s.max_chat_per_second, 1);
    }
}

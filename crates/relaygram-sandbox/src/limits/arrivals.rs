//! Arrival times of accepted sends, kept sorted, and the count in the busiest sliding window
//! that contains a given instant. Arrivals are stamped when a request reaches the sandbox but
//! recorded after it got the world lock, so they may be recorded slightly out of order.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct Arrivals(VecDeque<Instant>);

impl Arrivals {
    pub fn insert(&mut self, at: Instant) {
        let i = self.0.partition_point(|t| *t <= at);
        self.0.insert(i, at);
    }

    /// Forgets arrivals before `horizon`.
    pub fn prune(&mut self, horizon: Instant) {
        while self.0.front().is_some_and(|t| *t < horizon) {
            self.0.pop_front();
        }
    }

    /// Forgets arrivals that cannot share a window of `span` with an arrival at `at` or later,
    /// keeping one extra `span` for arrivals recorded out of order.
    pub fn prune_for(&mut self, at: Instant, span: Duration) {
        if let Some(horizon) = at.checked_sub(span * 2) {
            self.prune(horizon);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn last(&self) -> Option<Instant> {
        self.0.back().copied()
    }

    /// The most recorded arrivals in one window `(u - span, u]` that also contains `at`.
    /// With arrivals recorded in order this is simply the count in `(at - span, at]`.
    pub fn busiest_around(&self, at: Instant, span: Duration) -> usize {
        // Arrivals that can share a window with `at`: those in (at - span, at + span).
        let lo = self
            .0
            .partition_point(|t| at.saturating_duration_since(*t) >= span);
        let mid = self.0.partition_point(|t| *t <= at);
        let hi = self
            .0
            .partition_point(|t| t.saturating_duration_since(at) < span);
        // A window holding `at` holds a tail of (at - span, at] and a head of (at, at + span)
        // no wider than `span`. Taking only the head: all of it fits before at + span.
        let mut best = hi - mid;
        let mut head_end = mid;
        for i in lo..mid {
            let first = self.0[i];
            while head_end < hi && self.0[head_end].duration_since(first) < span {
                head_end += 1;
            }
            best = best.max((mid - i) + (head_end - mid));
        }
        best
    }

    /// When a window of `span` holding at most `n - 1` of these begins to exist at or after
    /// every recorded arrival: the `n`-th newest leaves it. Exact when `at` is the newest.
    pub fn room_for(&self, n: usize, span: Duration) -> Option<Instant> {
        let len = self.0.len();
        if len < n {
            return None;
        }
        let leaves = self.0[len - n] + span;
        Some(leaves.max(self.0[len - 1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn in_order_counts_the_trailing_window() {
        let t0 = Instant::now();
        let mut a = Arrivals::default();
        for i in 0..5 {
            a.insert(t0 + ms(i * 300));
        }
        // At 1200: 300, 600, 900, 1200 lie in (200, 1200]; 0 left at 1000.
        assert_eq!(a.busiest_around(t0 + ms(1200), ms(1000)), 4);
        assert_eq!(a.busiest_around(t0 + ms(2199), ms(1000)), 1);
        assert_eq!(a.busiest_around(t0 + ms(2200), ms(1000)), 0);
    }

    #[test]
    fn out_of_order_counts_windows_on_both_sides() {
        let t0 = Instant::now() + ms(5000);
        let mut a = Arrivals::default();
        for t in [0, 100, 900, 1500] {
            a.insert(t0 + ms(t));
        }
        // Recorded late, at 500: (-500, 500] holds two, but (-1, 999] holds 0, 100 and 900,
        // and 1500 shares no window with 500.
        assert_eq!(a.busiest_around(t0 + ms(500), ms(1000)), 3);
        // Only arrivals later than the instant: the window (at - span, last] with them all.
        let mut b = Arrivals::default();
        for t in [600, 700] {
            b.insert(t0 + ms(t));
        }
        assert_eq!(b.busiest_around(t0, ms(1000)), 2);
    }

    #[test]
    fn prune_keeps_two_spans() {
        let t0 = Instant::now();
        let mut a = Arrivals::default();
        for i in 0..10 {
            a.insert(t0 + ms(i * 1000));
        }
        a.prune_for(t0 + ms(9000), ms(1000));
        assert_eq!(a.0.len(), 3);
        assert_eq!(a.0.front().copied(), Some(t0 + ms(7000)));
    }
}

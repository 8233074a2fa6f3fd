//! The time services read: the system clock in production, a manual clock in tests, so
//! expiry, `send_at`, schedules and quiet hours are tested by moving time, never by sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// A source of "now" (UTC milliseconds since the Unix epoch). Cheap to clone; clones share
/// the same time.
#[derive(Clone, Default)]
pub struct Clock {
    manual: Option<Arc<Manual>>,
}

#[derive(Default)]
struct Manual {
    now: AtomicI64,
    changed: Notify,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::System"),
            Some(m) => write!(f, "Clock::Manual({})", m.now.load(Ordering::SeqCst)),
        }
    }
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that stands still at `start_ms` until moved with [`Clock::advance`] or
    /// [`Clock::set_millis`].
    pub fn manual(start_ms: i64) -> Clock {
        let m = Manual::default();
        m.now.store(start_ms, Ordering::SeqCst);
        Clock {
            manual: Some(Arc::new(m)),
        }
    }

    /// Whether this is a manual (test) clock.
    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }

    /// Now, UTC milliseconds since the Unix epoch.
    pub fn now_millis(&self) -> i64 {
        match &self.manual {
            None => crate::ids::now_millis(),
            Some(m) => m.now.load(Ordering::SeqCst),
        }
    }

    /// Now, as a `jiff` timestamp.
    pub fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::from_millisecond(self.now_millis()).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    /// Moves a manual clock forward and wakes everything waiting on it. A no-op on the
    /// system clock.
    pub fn advance(&self, by: Duration) {
        if let Some(m) = &self.manual {
            m.now.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
            m.changed.notify_waiters();
        }
    }

    /// Sets a manual clock and wakes everything waiting on it. A no-op on the system clock.
    pub fn set_millis(&self, at: i64) {
        if let Some(m) = &self.manual {
            m.now.store(at, Ordering::SeqCst);
            m.changed.notify_waiters();
        }
    }

    /// Waits until the clock reads `at_ms` or later, or until `max` of real time has
    /// passed, whichever is first. Workers use it to wait for due work: on a manual clock it
    /// wakes when the test moves time.
    pub async fn sleep_until(&self, at_ms: i64, max: Duration) {
        match &self.manual {
            None => {
                let wait = (at_ms - self.now_millis()).max(0) as u64;
                tokio::time::sleep(Duration::from_millis(wait).min(max)).await;
            }
            Some(m) => {
                let deadline = tokio::time::Instant::now() + max;
                loop {
                    let changed = m.changed.notified();
                    tokio::pin!(changed);
                    changed.as_mut().enable();
                    if m.now.load(Ordering::SeqCst) >= at_ms {
                        return;
                    }
                    tokio::select! {
                        _ = &mut changed => {}
                        _ = tokio::time::sleep_until(deadline) => return,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = Clock::manual(1_000);
        assert_eq!(clock.now_millis(), 1_000);
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.now_millis(), 3_000);
        clock.set_millis(10);
        assert_eq!(clock.clone().now_millis(), 10);
    }

    #[tokio::test]
    async fn sleepers_wake_when_a_manual_clock_passes_their_time() {
        let clock = Clock::manual(0);
        let waiter = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep_until(5_000, Duration::from_secs(30)).await })
        };
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(5));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by the clock")
            .unwrap();
    }
}

/// Times written as text in unit tests.
#[cfg(test)]
pub(crate) mod test_times {
    use jiff::Timestamp;

    /// `2026-03-29T01:00:00Z` as UTC ms.
    pub(crate) fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    /// UTC ms as RFC 3339.
    pub(crate) fn iso(ms: i64) -> String {
        Timestamp::from_millisecond(ms).unwrap().to_string()
    }
}

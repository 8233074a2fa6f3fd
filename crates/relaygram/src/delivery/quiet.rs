//! Quiet hours per link: a non-urgent message to a link whose quiet window is on waits
//! until the window ends, read in the link's time zone (UTC when it has none).
//!
//! [`quiet_until`] is the pure rule; the sender's hook in [`super::hold`] applies it (after
//! a message's local send time, if it has one): a held message is put back in its lane
//! (`queued`, due at the window's end, the claim's attempt not counted).
//!
//! Daylight saving time: the window is wall-clock time in the link's zone. An end time the
//! clock skips ends the window at the first valid instant after the gap (as schedules
//! do); an end time the clock repeats ends it the first time it happens, so a window ends
//! once per night.

use jiff::Timestamp;
use jiff::civil::Time;

use crate::schedules::occurrence::Zone;

/// The priority from which a message is urgent (`"priority": "urgent"` means this).
pub const URGENT: i64 = 100;

/// Whether a message of this priority ignores quiet hours.
pub fn is_urgent(priority: i64) -> bool {
    priority >= URGENT
}

/// A link's quiet window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuietWindow {
    zone: Zone,
    start: Time,
    end: Time,
}

fn parse_hhmm(text: &str) -> Option<Time> {
    let (h, m) = text.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

impl QuietWindow {
    /// A window from a link's stored fields; `None` when it has none (or they cannot be
    /// read: links validate them, so that is a window that never holds anything).
    pub fn from_link(
        timezone: Option<&str>,
        start: Option<&str>,
        end: Option<&str>,
    ) -> Option<QuietWindow> {
        let zone = match timezone {
            Some(name) => Zone::parse(name).ok()?,
            None => Zone::utc(),
        };
        let start = parse_hhmm(start?)?;
        let end = parse_hhmm(end?)?;
        (start != end).then_some(QuietWindow { zone, start, end })
    }

    /// When the window that is on at `now_ms` ends (UTC ms), or `None` when it is off.
    pub fn quiet_until(&self, now_ms: i64) -> Option<i64> {
        quiet_until(now_ms, &self.zone, self.start, self.end)
    }
}

/// When the quiet window `[start, end)` (local wall-clock times in `zone`; `start > end`
/// crosses midnight) that is on at `now_ms` ends, or `None` when it is off at `now_ms`.
/// The answer is always later than `now_ms`.
pub fn quiet_until(now_ms: i64, zone: &Zone, start: Time, end: Time) -> Option<i64> {
    if start == end {
        return None;
    }
    let local = Timestamp::from_millisecond(now_ms)
        .ok()?
        .to_zoned(zone.tz().clone());
    let (date, t) = (local.date(), local.time());
    let end_date = if start < end {
        if t < start || t >= end {
            return None;
        }
        date
    } else if t >= start {
        date.tomorrow().ok()?
    } else if t < end {
        date
    } else {
        return None;
    };
    let until = zone.resolve(end_date.to_datetime(end))?.as_millisecond();
    // In a repeated hour the end may already be behind us: the window ended that night.
    (until > now_ms).then_some(until)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::test_times::{iso, ms};

    fn window(zone: &str, start: &str, end: &str) -> QuietWindow {
        QuietWindow::from_link(Some(zone), Some(start), Some(end)).unwrap()
    }

    fn until(w: &QuietWindow, now: &str) -> Option<String> {
        w.quiet_until(ms(now)).map(iso)
    }

    #[test]
    fn a_window_crossing_midnight_holds_until_the_morning() {
        let w = window("Europe/Berlin", "22:00", "08:00");
        // 23:30 CET on a winter evening → 08:00 CET the next day.
        assert_eq!(
            until(&w, "2026-12-01T22:30:00Z").as_deref(),
            Some("2026-12-02T07:00:00Z")
        );
        // 03:00 CET → 08:00 the same day.
        assert_eq!(
            until(&w, "2026-12-02T02:00:00Z").as_deref(),
            Some("2026-12-02T07:00:00Z")
        );
        // The edges: 22:00 is quiet, 08:00 is not, 21:59 is not.
        assert!(until(&w, "2026-12-01T21:00:00Z").is_some());
        assert_eq!(until(&w, "2026-12-02T07:00:00Z"), None);
        assert_eq!(until(&w, "2026-12-01T20:59:00Z"), None);
        // Midday: off.
        assert_eq!(until(&w, "2026-12-02T11:00:00Z"), None);
    }

    #[test]
    fn a_daytime_window_holds_within_the_day() {
        let w = window("UTC", "12:00", "13:30");
        assert_eq!(
            until(&w, "2026-12-02T12:10:00Z").as_deref(),
            Some("2026-12-02T13:30:00Z")
        );
        assert_eq!(until(&w, "2026-12-02T13:30:00Z"), None);
        assert_eq!(until(&w, "2026-12-02T11:59:59Z"), None);
    }

    #[test]
    fn the_night_the_clocks_go_forward_the_window_ends_at_local_eight() {
        // Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST. The night is an hour shorter.
        let w = window("Europe/Berlin", "22:00", "08:00");
        assert_eq!(
            until(&w, "2026-03-28T22:00:00Z").as_deref(), // 23:00 CET
            Some("2026-03-29T06:00:00Z")                  // 08:00 CEST
        );
        // New York, 2026-03-08: 02:00 EST becomes 03:00 EDT.
        let w = window("America/New_York", "22:00", "07:00");
        assert_eq!(
            until(&w, "2026-03-08T05:00:00Z").as_deref(), // 00:00 EST
            Some("2026-03-08T11:00:00Z")                  // 07:00 EDT
        );
    }

    #[test]
    fn the_night_the_clocks_go_back_the_window_ends_at_local_eight() {
        // Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET. The night is an hour longer.
        let w = window("Europe/Berlin", "22:00", "08:00");
        assert_eq!(
            until(&w, "2026-10-24T21:00:00Z").as_deref(), // 23:00 CEST
            Some("2026-10-25T07:00:00Z")                  // 08:00 CET
        );
        // New York, 2026-11-01: 02:00 EDT becomes 01:00 EST.
        let w = window("America/New_York", "22:00", "07:00");
        assert_eq!(
            until(&w, "2026-11-01T03:00:00Z").as_deref(), // 23:00 EDT
            Some("2026-11-01T12:00:00Z")                  // 07:00 EST
        );
    }

    #[test]
    fn an_end_the_clock_skips_ends_the_window_after_the_gap() {
        // Quiet 01:00–02:30 in Berlin; 02:30 does not exist on 2026-03-29.
        let w = window("Europe/Berlin", "01:00", "02:30");
        assert_eq!(
            until(&w, "2026-03-29T00:30:00Z").as_deref(), // 01:30 CET
            Some("2026-03-29T01:00:00Z")                  // 03:00 CEST, the first valid instant
        );
        assert_eq!(until(&w, "2026-03-29T01:10:00Z"), None); // 03:10 CEST
    }

    #[test]
    fn an_end_the_clock_repeats_ends_the_window_once() {
        // Quiet 22:00–02:30 in Berlin; 02:30 happens twice on 2026-10-25.
        let w = window("Europe/Berlin", "22:00", "02:30");
        assert_eq!(
            until(&w, "2026-10-25T00:10:00Z").as_deref(), // 02:10 CEST
            Some("2026-10-25T00:30:00Z")                  // 02:30 CEST, the first one
        );
        assert_eq!(until(&w, "2026-10-25T00:40:00Z"), None); // 02:40 CEST
        // 02:10 CET, the second time round: the window already ended tonight.
        assert_eq!(until(&w, "2026-10-25T01:10:00Z"), None);
    }

    #[test]
    fn no_zone_means_utc_and_odd_fields_mean_no_window() {
        let w = QuietWindow::from_link(None, Some("00:00"), Some("06:00")).unwrap();
        assert_eq!(
            until(&w, "2026-12-02T05:00:00Z").as_deref(),
            Some("2026-12-02T06:00:00Z")
        );
        assert_eq!(
            QuietWindow::from_link(None, Some("07:00"), Some("07:00")),
            None
        );
        assert_eq!(
            QuietWindow::from_link(None, Some("7:00"), Some("08:00")),
            None
        );
        assert_eq!(QuietWindow::from_link(None, None, Some("08:00")), None);
        assert_eq!(
            QuietWindow::from_link(Some("Mars/Base"), Some("01:00"), Some("08:00")),
            None
        );
    }

    #[test]
    fn urgent_is_priority_one_hundred() {
        assert!(is_urgent(100));
        assert!(!is_urgent(99));
        assert!(!is_urgent(0));
    }
}

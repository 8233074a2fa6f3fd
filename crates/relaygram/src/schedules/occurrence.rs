//! When a schedule fires: the pure occurrence math (no store, no clock).
//!
//! A schedule recurs by a cron expression (5 fields, or 6 with seconds first) or by an
//! interval (`15m`, `1h`, `1d`), read in an IANA time zone, between an optional `start_at`
//! and `end_at`. Daylight saving time:
//! - a local time the clock skips (02:30 on a spring-forward night) fires once, at the
//!   first valid instant after the gap (03:00);
//! - a local time the clock repeats (02:30 on a fall-back night) fires once, the first
//!   time it happens;
//! - cron expressions that recur within the hour (`*/15 * * * *`, every hour) keep their
//!   rhythm in real time through both changes (croner's documented rule), so they neither
//!   stop for an hour nor fire twice at the same instant;
//! - `every` in minutes or hours is a fixed real-time interval; `every` in days keeps the
//!   local time of day of its anchor (`start_at`, or the creation time).

use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, Mutex};

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};
use jiff::{Timestamp, ToSpan, Zoned};

/// The earliest offset on Earth, in hours (UTC+14): a wall-clock time happens there first.
pub const EARLIEST_OFFSET_HOURS: i8 = 14;
/// How long one wall-clock time takes to have happened everywhere: from UTC+14 to UTC−12,
/// the latest offset.
pub const LOCAL_SPREAD_MS: i64 = 26 * 3_600_000;

/// A rejected schedule definition: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct TimingError {
    /// The offending field (`cron`, `every`, `timezone`, `start_at`, `end_at`).
    pub field: &'static str,
    /// Why.
    pub message: String,
}

fn err(field: &'static str, message: impl Into<String>) -> TimingError {
    TimingError {
        field,
        message: message.into(),
    }
}

/// An IANA time zone, checked against the time zone database on construction.
#[derive(Clone, PartialEq, Eq)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zone({})", self.name)
    }
}

impl Zone {
    /// Parses an IANA name (`Europe/Berlin`, `UTC`).
    pub fn parse(name: &str) -> Result<Zone, TimingError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 {
            return Err(err(
                "timezone",
                "must be an IANA time zone name such as Europe/Berlin",
            ));
        }
        let tz = TimeZone::get(name).map_err(|_| {
            err(
                "timezone",
                format!("unknown time zone {name:?}; use an IANA name such as Europe/Berlin"),
            )
        })?;
        Ok(Zone {
            name: name.to_string(),
            tz,
        })
    }

    /// UTC.
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            tz: TimeZone::UTC,
        }
    }

    /// The fixed zone UTC+14 (Pacific/Kiritimati's offset, the earliest on Earth): every
    /// wall-clock time happens there first.
    pub fn earliest() -> Zone {
        Zone {
            name: "UTC+14".into(),
            tz: TimeZone::fixed(Offset::constant(EARLIEST_OFFSET_HOURS)),
        }
    }

    /// The name as given.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `jiff` time zone.
    pub fn tz(&self) -> &TimeZone {
        &self.tz
    }

    /// The instant a local date and time names in this zone: in a gap, the first valid
    /// instant after it; in a fold, the earlier of the two.
    pub fn resolve(&self, dt: DateTime) -> Option<Timestamp> {
        let ambiguous = self.tz.to_ambiguous_timestamp(dt);
        match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok(),
            AmbiguousOffset::Fold { before, .. } => before.to_timestamp(dt).ok(),
            AmbiguousOffset::Gap { before, .. } => {
                // Read with the offset before the gap, the time lands after the change;
                // the change itself is the first valid instant.
                let past_gap = before.to_timestamp(dt).ok()?;
                let edge = self.tz.preceding(past_gap).next().map(|t| t.timestamp())?;
                Some(edge)
            }
        }
    }
}

/// The unit of an `every` interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Minutes (real time).
    Minutes,
    /// Hours (real time).
    Hours,
    /// Calendar days in the schedule's time zone (same local time each day).
    Days,
}

/// An interval such as `15m`, `1h`, `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// How many units (at least 1).
    pub amount: u32,
    /// Which unit.
    pub unit: Unit,
}

impl Interval {
    /// Parses `<n>m`, `<n>h` or `<n>d` (from 1 minute up to 366 days).
    pub fn parse(text: &str) -> Result<Interval, TimingError> {
        let text = text.trim();
        let bad = || {
            err(
                "every",
                format!(
                    "{text:?} is not an interval: use a number and m, h or d, such as 15m, 1h, 1d"
                ),
            )
        };
        // At the last character, not the last byte: `"1\u{80}"` must be refused, not split
        // inside a character (a panic the fuzz run found).
        let last = text.char_indices().last().map_or(0, |(i, _)| i);
        let (digits, unit) = text.split_at(last);
        let unit = match unit {
            "m" => Unit::Minutes,
            "h" => Unit::Hours,
            "d" => Unit::Days,
            _ => return Err(bad()),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let amount: u32 = digits.parse().map_err(|_| bad())?;
        let interval = Interval { amount, unit };
        if amount == 0 || interval.approx_millis() > 366 * 86_400_000 {
            return Err(err("every", "must be from 1m to 366d"));
        }
        Ok(interval)
    }

    /// The length in milliseconds (days counted as 24 hours).
    pub fn approx_millis(&self) -> i64 {
        let unit = match self.unit {
            Unit::Minutes => 60_000,
            Unit::Hours => 3_600_000,
            Unit::Days => 86_400_000,
        };
        i64::from(self.amount) * unit
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            Unit::Minutes => "m",
            Unit::Hours => "h",
            Unit::Days => "d",
        };
        write!(f, "{}{unit}", self.amount)
    }
}

/// A parsed cron expression (5 fields, or 6 with seconds first).
#[derive(Clone)]
pub struct CronExpr {
    text: String,
    cron: Cron,
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronExpr({:?})", self.text)
    }
}

impl CronExpr {
    /// Parses `min hour dom month dow`, `sec min hour dom month dow`, or a nickname
    /// (`@daily`, `@hourly`, …).
    ///
    /// Parsed expressions are remembered (a few thousand of them): the claimer reads every
    /// due schedule's timing again, many schedules share an expression, and parsing was
    /// most of a burst's claiming time.
    pub fn parse(text: &str) -> Result<CronExpr, TimingError> {
        const REMEMBERED: usize = 4096;
        static PARSED: LazyLock<Mutex<HashMap<String, CronExpr>>> = LazyLock::new(Default::default);
        let text = text.trim();
        if let Some(known) = PARSED.lock().ok().and_then(|p| p.get(text).cloned()) {
            return Ok(known);
        }
        let parsed = Self::parse_new(text)?;
        if let Ok(mut known) = PARSED.lock() {
            if known.len() >= REMEMBERED {
                known.clear();
            }
            known.insert(text.to_string(), parsed.clone());
        }
        Ok(parsed)
    }

    fn parse_new(text: &str) -> Result<CronExpr, TimingError> {
        let fields = text.split_whitespace().count();
        let nickname = text.starts_with('@') && fields == 1;
        if !(nickname || fields == 5 || fields == 6) {
            return Err(err(
                "cron",
                format!(
                    "has {fields} fields; use 5 (minute hour day month weekday) or 6 (seconds first)"
                ),
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(text)
            .map_err(|e| {
                err(
                    "cron",
                    format!("{text:?} is not a valid cron expression: {e}"),
                )
            })?;
        Ok(CronExpr {
            text: text.to_string(),
            cron,
        })
    }

    /// The expression as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// How a schedule recurs.
#[derive(Debug, Clone)]
pub enum Recurrence {
    /// By a cron expression in the schedule's time zone.
    Cron(Box<CronExpr>),
    /// By a fixed interval from the anchor.
    Every(Interval),
}

/// Everything that decides when a schedule fires.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Cron or interval.
    pub recurrence: Recurrence,
    /// The time zone the recurrence is read in.
    pub zone: Zone,
    /// No occurrence before this (UTC ms).
    pub start_at: Option<i64>,
    /// No occurrence after this (UTC ms).
    pub end_at: Option<i64>,
    /// Where an `every` series starts: `start_at`, or the schedule's creation time.
    pub anchor: i64,
}

fn ts(ms: i64) -> Option<Timestamp> {
    Timestamp::from_millisecond(ms).ok()
}

impl Timing {
    /// Checks the bounds (`end_at` after `start_at`).
    pub fn check(&self) -> Result<(), TimingError> {
        if let (Some(start), Some(end)) = (self.start_at, self.end_at)
            && end < start
        {
            return Err(err("end_at", "must not be before start_at"));
        }
        Ok(())
    }

    /// The first occurrence strictly after `after` (UTC ms), within the bounds; `None`
    /// when the schedule has no further occurrence.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        // Occurrences are at or after start_at: search from just before it.
        let from = match self.start_at {
            Some(start) => after.max(start - 1),
            None => after,
        };
        let next = match &self.recurrence {
            Recurrence::Cron(expr) => self.next_cron(expr, from),
            Recurrence::Every(interval) => self.next_every(*interval, from),
        }?;
        match self.end_at {
            Some(end) if next > end => None,
            _ => Some(next),
        }
    }

    /// Up to `n` occurrences strictly after `after`.
    pub fn next_n(&self, after: i64, n: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        let mut cursor = after;
        while out.len() < n {
            match self.next_after(cursor) {
                Some(next) => {
                    out.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
        out
    }

    fn next_cron(&self, expr: &CronExpr, after: i64) -> Option<i64> {
        // Cron works in whole seconds: start from the second `after` falls in, so the
        // exclusive search returns a time strictly after `after`.
        let second = after.div_euclid(1000) * 1000;
        let start = Zoned::new(ts(second)?, self.zone.tz.clone());
        let next = expr.cron.find_next_occurrence(&start, false).ok()?;
        Some(next.timestamp().as_millisecond())
    }

    fn next_every(&self, interval: Interval, after: i64) -> Option<i64> {
        let anchor = self.anchor;
        if after < anchor {
            return Some(anchor);
        }
        match interval.unit {
            Unit::Minutes | Unit::Hours => {
                let step = interval.approx_millis();
                let k = (after - anchor).div_euclid(step) + 1;
                anchor.checked_add(k.checked_mul(step)?)
            }
            Unit::Days => {
                let local = Zoned::new(ts(anchor)?, self.zone.tz.clone()).datetime();
                let step = i64::from(interval.amount);
                // Local days drift from 24-hour days by at most the DST offset: start
                // one step early and walk forward.
                let mut k = ((after - anchor) / interval.approx_millis() - 1).max(0);
                loop {
                    let day = local.checked_add((k * step).days()).ok()?;
                    let at = self.zone.resolve(day)?.as_millisecond();
                    if at > after {
                        return Some(at);
                    }
                    k += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::test_times::{iso, ms};

    fn cron(expr: &str, zone: &str) -> Timing {
        Timing {
            recurrence: Recurrence::Cron(Box::new(CronExpr::parse(expr).unwrap())),
            zone: Zone::parse(zone).unwrap(),
            start_at: None,
            end_at: None,
            anchor: 0,
        }
    }

    fn every(text: &str, zone: &str, anchor: &str) -> Timing {
        Timing {
            recurrence: Recurrence::Every(Interval::parse(text).unwrap()),
            zone: Zone::parse(zone).unwrap(),
            start_at: None,
            end_at: None,
            anchor: ms(anchor),
        }
    }

    fn next5(t: &Timing, after: &str) -> Vec<String> {
        t.next_n(ms(after), 5).into_iter().map(iso).collect()
    }

    #[test]
    fn berlin_spring_forward_fires_a_skipped_time_once_at_the_next_valid_time() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00Z); 02:30 does not exist.
        let t = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            next5(&t, "2026-03-27T12:00:00Z")[..3],
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST, the first valid time after the gap
                "2026-03-30T00:30:00Z", // 02:30 CEST
            ]
        );
    }

    #[test]
    fn berlin_fall_back_fires_a_repeated_time_once() {
        // 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00Z); 02:30 happens twice.
        let t = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            next5(&t, "2026-10-23T12:00:00Z")[..3],
            [
                "2026-10-24T00:30:00Z", // 02:30 CEST
                "2026-10-25T00:30:00Z", // the first 02:30 (CEST) only
                "2026-10-26T01:30:00Z", // 02:30 CET
            ]
        );
        // Asked from inside the repeated hour, the second 02:30 is not offered either.
        assert_eq!(
            iso(t.next_after(ms("2026-10-25T00:45:00Z")).unwrap()),
            "2026-10-26T01:30:00Z"
        );
    }

    #[test]
    fn new_york_spring_forward_and_fall_back() {
        // 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00Z).
        let t = cron("30 2 * * *", "America/New_York");
        assert_eq!(
            next5(&t, "2026-03-07T00:00:00Z")[..3],
            [
                "2026-03-07T07:30:00Z", // 02:30 EST
                "2026-03-08T07:00:00Z", // 03:00 EDT
                "2026-03-09T06:30:00Z", // 02:30 EDT
            ]
        );
        // 2026-11-01: 02:00 EDT becomes 01:00 EST (06:00Z); 01:30 happens twice.
        let t = cron("30 1 * * *", "America/New_York");
        assert_eq!(
            next5(&t, "2026-10-31T00:00:00Z")[..3],
            [
                "2026-10-31T05:30:00Z", // 01:30 EDT
                "2026-11-01T05:30:00Z", // the first 01:30 (EDT) only
                "2026-11-02T06:30:00Z", // 01:30 EST
            ]
        );
    }

    #[test]
    fn sub_hourly_cron_keeps_real_time_rhythm_through_both_changes() {
        for (zone, around) in [
            ("America/New_York", "2026-11-01T04:50:00Z"),
            ("America/New_York", "2026-03-08T06:50:00Z"),
            ("Europe/Berlin", "2026-10-24T23:50:00Z"),
            ("Europe/Berlin", "2026-03-28T23:50:00Z"),
        ] {
            let t = cron("*/30 * * * *", zone);
            let times = t.next_n(ms(around), 8);
            assert_eq!(times.len(), 8);
            for pair in times.windows(2) {
                assert_eq!(
                    pair[1] - pair[0],
                    30 * 60_000,
                    "{zone} around {around}: {:?}",
                    times.iter().map(|m| iso(*m)).collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn six_fields_have_seconds_first() {
        let t = cron("15 0 9 * * MON-FRI", "UTC");
        assert_eq!(
            next5(&t, "2026-11-20T10:00:00Z"),
            [
                "2026-11-23T09:00:15Z",
                "2026-11-24T09:00:15Z",
                "2026-11-25T09:00:15Z",
                "2026-11-26T09:00:15Z",
                "2026-11-27T09:00:15Z",
            ]
        );
    }

    #[test]
    fn next_is_strictly_after_even_within_a_second() {
        let t = cron("* * * * * *", "UTC");
        assert_eq!(
            t.next_after(ms("2026-01-01T00:00:00.500Z")),
            Some(ms("2026-01-01T00:00:01Z"))
        );
        assert_eq!(
            t.next_after(ms("2026-01-01T00:00:01Z")),
            Some(ms("2026-01-01T00:00:02Z"))
        );
    }

    #[test]
    fn daily_interval_keeps_the_local_time_across_dst() {
        // Anchored at 02:30 Berlin on the 27th: the 29th has no 02:30.
        let t = every("1d", "Europe/Berlin", "2026-03-27T01:30:00Z");
        assert_eq!(
            next5(&t, "2026-03-27T01:30:00Z")[..3],
            [
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z",
            ]
        );
        // 09:00 New York stays 09:00 through the fall change.
        let t = every("1d", "America/New_York", "2026-10-30T13:00:00Z");
        assert_eq!(
            next5(&t, "2026-10-30T13:00:00Z")[..3],
            [
                "2026-10-31T13:00:00Z",
                "2026-11-01T14:00:00Z",
                "2026-11-02T14:00:00Z",
            ]
        );
        // And 01:30 New York on the repeated night fires once.
        let t = every("1d", "America/New_York", "2026-10-31T05:30:00Z");
        assert_eq!(
            next5(&t, "2026-10-31T05:30:00Z")[..2],
            ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]
        );
    }

    #[test]
    fn minute_and_hour_intervals_are_real_time() {
        let t = every("1h", "Europe/Berlin", "2026-10-24T22:00:00Z");
        let times = t.next_n(ms("2026-10-24T22:00:00Z"), 6);
        for pair in times.windows(2) {
            assert_eq!(pair[1] - pair[0], 3_600_000);
        }
        let t = every("15m", "UTC", "2026-01-01T00:00:00Z");
        assert_eq!(
            next5(&t, "2026-01-01T00:20:00Z")[..2],
            ["2026-01-01T00:30:00Z", "2026-01-01T00:45:00Z"]
        );
        // Before the anchor, the anchor itself is the first occurrence.
        assert_eq!(
            t.next_after(ms("2025-12-31T00:00:00Z")),
            Some(ms("2026-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn start_and_end_bound_the_occurrences() {
        let mut t = cron("0 * * * *", "UTC");
        t.start_at = Some(ms("2026-01-01T10:00:00Z"));
        t.end_at = Some(ms("2026-01-01T12:00:00Z"));
        assert_eq!(
            next5(&t, "2025-06-01T00:00:00Z"),
            [
                "2026-01-01T10:00:00Z",
                "2026-01-01T11:00:00Z",
                "2026-01-01T12:00:00Z"
            ]
        );
        assert_eq!(t.next_after(ms("2026-01-01T12:00:00Z")), None);
        t.end_at = Some(ms("2026-01-01T09:00:00Z"));
        assert_eq!(t.check().unwrap_err().field, "end_at");
    }

    #[test]
    fn bad_definitions_name_their_field() {
        for bad in [
            "",
            "* * * *",
            "* * * * * * *",
            "61 * * * *",
            "* * 32 * *",
            "nope",
            "@sometimes",
        ] {
            assert_eq!(CronExpr::parse(bad).unwrap_err().field, "cron", "{bad:?}");
        }
        for bad in [
            "",
            "0m",
            "15",
            "m",
            "1w",
            "-1h",
            "1.5h",
            "367d",
            "99999999999m",
            "\u{80}",
            "1\u{80}",
            "1é",
            "é",
        ] {
            assert_eq!(Interval::parse(bad).unwrap_err().field, "every", "{bad:?}");
        }
        for bad in ["", "Mars/Olympus", "Europe/Berlin2", "../etc/passwd"] {
            assert_eq!(Zone::parse(bad).unwrap_err().field, "timezone", "{bad:?}");
        }
        assert!(CronExpr::parse("@daily").is_ok());
        assert_eq!(Interval::parse("15m").unwrap().to_string(), "15m");
    }

    #[test]
    fn an_impossible_date_has_no_occurrence() {
        let t = cron("0 0 30 2 *", "UTC");
        assert_eq!(t.next_after(ms("2026-01-01T00:00:00Z")), None);
    }

    #[test]
    fn the_bundled_database_knows_the_zones() {
        // The fallback for machines without /usr/share/zoneinfo.
        let db = jiff::tz::TimeZoneDatabase::bundled();
        assert!(db.get("Europe/Berlin").is_ok());
        assert!(db.get("America/New_York").is_ok());
    }
}

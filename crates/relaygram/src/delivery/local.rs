//! Local-time delivery: `"send_at_local": "2026-11-22T09:00"` sends each recipient's copy
//! at that wall-clock time in the recipient's zone (the link's `timezone`, else the
//! request's `default_timezone`, else UTC).
//!
//! Acceptance stores the local time and the default zone with each message and sets its
//! `send_at` to the earliest instant that local time occurs anywhere (read at UTC+14), so
//! the sender does not claim it needlessly before. When the sender claims it, the hook in
//! [`super::hold`] works out the recipient's instant ([`local_hold_until`]) and puts the
//! message back until then (moving its `send_at`).
//!
//! Daylight saving time, as schedules and quiet hours: a local time the clock skips goes at
//! the first valid instant after the gap; one it repeats goes the first time it happens. A
//! local time already past for a recipient sends at once.

use jiff::Timestamp;
use jiff::civil::DateTime;

use crate::schedules::occurrence::Zone;

/// Parses a naive local date-time, `YYYY-MM-DDTHH:MM` or `YYYY-MM-DDTHH:MM:SS` (no offset,
/// no zone: the zone is each recipient's).
pub fn parse_local(text: &str) -> Result<DateTime, String> {
    let text = text.trim();
    let shape = |pattern: &str| {
        text.len() == pattern.len()
            && text.bytes().zip(pattern.bytes()).all(|(c, p)| match p {
                b'd' => c.is_ascii_digit(),
                _ => c == p,
            })
    };
    if !(shape("dddd-dd-ddTdd:dd") || shape("dddd-dd-ddTdd:dd:dd")) {
        return Err(format!(
            "{text:?} is not a local date and time: use YYYY-MM-DDTHH:MM or YYYY-MM-DDTHH:MM:SS, \
             without an offset (such as 2026-11-22T09:00)"
        ));
    }
    let dt: DateTime = text
        .parse()
        .map_err(|e| format!("{text:?} is not a valid date and time: {e}"))?;
    // Both ends must be representable as instants in every zone.
    if earliest_instant(dt).is_none() || Zone::utc().resolve(dt).is_none() {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(dt)
}

/// The stored and shown form: `2026-11-22T09:00:00`.
pub fn format_local(dt: DateTime) -> String {
    dt.strftime("%Y-%m-%dT%H:%M:%S").to_string()
}

/// The earliest instant (UTC ms) a local time occurs anywhere: read at UTC+14.
pub fn earliest_instant(dt: DateTime) -> Option<i64> {
    Zone::earliest().resolve(dt).map(|t| t.as_millisecond())
}

/// The wall-clock time an instant shows at UTC+14 (the inverse of [`earliest_instant`]).
pub fn wall_time_at_earliest(ms: i64) -> Option<DateTime> {
    Some(
        Timestamp::from_millisecond(ms)
            .ok()?
            .to_zoned(Zone::earliest().tz().clone())
            .datetime(),
    )
}

/// The instant (UTC ms) a local time occurs in `zone`: in a gap, the first valid instant
/// after it; in a fold, the first of the two.
pub fn instant_in(dt: DateTime, zone: &Zone) -> Option<i64> {
    zone.resolve(dt).map(|t| t.as_millisecond())
}

/// Until when a message for local time `dt` waits for a recipient in `zone` at `now_ms`:
/// `None` when that time has come (or passed) there.
pub fn local_hold_until(now_ms: i64, dt: DateTime, zone: &Zone) -> Option<i64> {
    instant_in(dt, zone).filter(|at| *at > now_ms)
}

/// The recipient's zone: the link's (when it has a readable one), else the message's
/// default, else UTC.
pub fn recipient_zone(link_zone: Option<&str>, default_zone: Option<&str>) -> Zone {
    link_zone
        .and_then(|z| Zone::parse(z).ok())
        .or_else(|| default_zone.and_then(|z| Zone::parse(z).ok()))
        .unwrap_or_else(Zone::utc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::test_times::{iso, ms};

    fn local(text: &str) -> DateTime {
        parse_local(text).unwrap()
    }

    fn zone(name: &str) -> Zone {
        Zone::parse(name).unwrap()
    }

    #[test]
    fn local_times_are_naive_with_or_without_seconds() {
        assert_eq!(
            format_local(local("2026-11-22T09:00")),
            "2026-11-22T09:00:00"
        );
        assert_eq!(
            format_local(local("2026-11-22T09:00:30")),
            "2026-11-22T09:00:30"
        );
        for bad in [
            "",
            "2026-11-22",
            "2026-11-22 09:00",
            "2026-11-22T9:00",
            "2026-11-22T09:00Z",
            "2026-11-22T09:00:00+01:00",
            "2026-11-22T09:00:00.5",
            "2026-02-30T09:00",
            "2026-11-22T24:00",
            "tomorrow at nine",
        ] {
            assert!(parse_local(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_earliest_instant_is_the_time_at_utc_plus_14() {
        let at = local("2026-11-22T09:00");
        assert_eq!(iso(earliest_instant(at).unwrap()), "2026-11-21T19:00:00Z");
        assert_eq!(wall_time_at_earliest(ms("2026-11-21T19:00:00Z")), Some(at));
        // No zone on Earth is earlier: Kiritimati itself is at the same instant.
        assert_eq!(
            instant_in(at, &zone("Pacific/Kiritimati")),
            earliest_instant(at)
        );
        // And the latest (UTC−12) is 26 hours later.
        assert_eq!(
            instant_in(at, &zone("Etc/GMT+12")).unwrap() - earliest_instant(at).unwrap(),
            crate::schedules::occurrence::LOCAL_SPREAD_MS
        );
    }

    #[test]
    fn each_recipient_waits_for_its_own_nine_oclock() {
        let at = local("2026-11-22T09:00");
        let now = earliest_instant(at).unwrap();
        let until = |z: &str| local_hold_until(now, at, &zone(z)).map(iso);
        assert_eq!(until("Asia/Tokyo").as_deref(), Some("2026-11-22T00:00:00Z"));
        assert_eq!(
            until("Europe/Paris").as_deref(),
            Some("2026-11-22T08:00:00Z")
        );
        assert_eq!(
            until("America/New_York").as_deref(),
            Some("2026-11-22T14:00:00Z")
        );
        // At (or after) the recipient's instant nothing waits: a past time sends at once.
        let tokyo = ms("2026-11-22T00:00:00Z");
        assert_eq!(local_hold_until(tokyo, at, &zone("Asia/Tokyo")), None);
        assert_eq!(local_hold_until(tokyo + 1, at, &zone("Asia/Tokyo")), None);
        assert_eq!(
            local_hold_until(tokyo - 1, at, &zone("Asia/Tokyo")),
            Some(tokyo)
        );
    }

    #[test]
    fn a_skipped_local_time_goes_after_the_gap_and_a_repeated_one_the_first_time() {
        // New York, 2027-03-14: 02:00 EST becomes 03:00 EDT; 02:30 does not exist.
        let ny = zone("America/New_York");
        assert_eq!(
            iso(instant_in(local("2027-03-14T02:30"), &ny).unwrap()),
            "2027-03-14T07:00:00Z" // 03:00 EDT
        );
        // New York, 2027-11-07: 02:00 EDT becomes 01:00 EST; 01:30 happens twice.
        assert_eq!(
            iso(instant_in(local("2027-11-07T01:30"), &ny).unwrap()),
            "2027-11-07T05:30:00Z" // 01:30 EDT, the first one
        );
        // 09:00 on the day of the change is 09:00 EST.
        assert_eq!(
            iso(instant_in(local("2027-11-07T09:00"), &ny).unwrap()),
            "2027-11-07T14:00:00Z"
        );
        assert_eq!(
            iso(instant_in(local("2027-11-06T09:00"), &ny).unwrap()),
            "2027-11-06T13:00:00Z"
        );
    }

    #[test]
    fn the_link_zone_wins_then_the_default_then_utc() {
        assert_eq!(
            recipient_zone(Some("Asia/Tokyo"), Some("Europe/Paris")).name(),
            "Asia/Tokyo"
        );
        assert_eq!(
            recipient_zone(None, Some("Europe/Paris")).name(),
            "Europe/Paris"
        );
        assert_eq!(recipient_zone(Some("Mars/Base"), None).name(), "UTC");
        assert_eq!(recipient_zone(None, None).name(), "UTC");
    }
}

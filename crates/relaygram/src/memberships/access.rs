//! What a holder's entitlements mean for one gated chat at one time: whether they may be
//! in, until when, and the state the API reports. Pure functions over the ledger's fold.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::{EntitlementRecord, FOREVER};

/// The computed state of an entitlement, or of a holder in one chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccessState {
    /// Starts later.
    Pending,
    /// In force.
    Active,
    /// Ended, inside the chat's grace period: still in.
    Grace,
    /// Ended.
    Expired,
    /// Cancelled (at once, or at a period end now passed).
    Cancelled,
    /// Revoked.
    Revoked,
}

/// One entitlement's window of access in a chat with `grace_ms`: from its start until its
/// end plus grace, or until it was cancelled at once or revoked (no grace then).
fn window(e: &EntitlementRecord, grace_ms: i64) -> (i64, i64) {
    let natural = e
        .ends_at
        .map_or(FOREVER, |end| end.saturating_add(grace_ms));
    let cut = [e.cancelled_at, e.revoked_at].into_iter().flatten().min();
    let until = cut.map_or(natural, |c| c.min(natural)).max(e.starts_at);
    (e.starts_at, until)
}

/// A holder's access to one chat at one time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// When access ends, grace included: `0` when there is none now, [`FOREVER`].
    pub until: i64,
    /// The end (without grace) reminders count back from; `None` when access does not end
    /// by expiry (forever, or cut short by a cancellation or revocation).
    pub ends_at: Option<i64>,
    /// The state reported for the holder in this chat.
    pub state: AccessState,
}

impl Access {
    /// Whether the holder may be in at `now`.
    pub fn allows(&self, now: i64) -> bool {
        self.until > now
    }
}

/// Folds a holder's entitlements for one chat: the windows that chain from `now` (a
/// renewal that starts before the current one ends continues it).
pub fn access(entitlements: &[EntitlementRecord], grace_ms: i64, now: i64) -> Access {
    let mut windows: Vec<(i64, i64, &EntitlementRecord)> = entitlements
        .iter()
        .map(|e| {
            let (from, until) = window(e, grace_ms);
            (from, until, e)
        })
        .filter(|(from, until, _)| from < until)
        .collect();
    windows.sort_by_key(|(from, _, _)| *from);
    let mut until = 0;
    let mut last: Option<&EntitlementRecord> = None;
    for (from, end, e) in &windows {
        let reaches = if until == 0 {
            *from <= now
        } else {
            *from <= until
        };
        if reaches && *end > now && *end > until {
            until = *end;
            last = Some(e);
        }
    }
    if let Some(e) = last {
        let cut_short = e.cancelled_at.is_some() || e.revoked_at.is_some();
        let state = match e.ends_at {
            Some(end) if end <= now => AccessState::Grace,
            _ => AccessState::Active,
        };
        return Access {
            until,
            ends_at: if cut_short { None } else { e.ends_at },
            state,
        };
    }
    // No access now: the state of the one that ended last, or of one still to come.
    let state = if windows.iter().any(|(from, _, _)| *from > now) {
        AccessState::Pending
    } else {
        entitlements
            .iter()
            .max_by_key(|e| window(e, grace_ms).1)
            .map_or(AccessState::Expired, |e| state_of(e, grace_ms, now))
    };
    Access {
        until: 0,
        ends_at: None,
        state,
    }
}

/// One entitlement's own state in a chat with `grace_ms` (0: the entitlement alone).
pub fn state_of(e: &EntitlementRecord, grace_ms: i64, now: i64) -> AccessState {
    if e.revoked_at.is_some() {
        return AccessState::Revoked;
    }
    if e.cancelled_at.is_some() {
        return AccessState::Cancelled;
    }
    if e.starts_at > now {
        return AccessState::Pending;
    }
    match e.ends_at {
        None => AccessState::Active,
        Some(end) if now < end => AccessState::Active,
        Some(end) if now < end.saturating_add(grace_ms) => AccessState::Grace,
        Some(_) if e.cancel_at_period_end => AccessState::Cancelled,
        Some(_) => AccessState::Expired,
    }
}

/// The time of the next reminder for an end, given the chat's reminders (seconds before
/// the end, any order) and how many of them, earliest first, count as sent.
pub fn next_reminder(ends_at: Option<i64>, reminders: &[i64], sent: i64) -> Option<i64> {
    let end = ends_at?;
    let mut times: Vec<i64> = reminders.iter().map(|s| end - s * 1000).collect();
    times.sort_unstable();
    times.into_iter().nth(sent.max(0) as usize)
}

/// How many of the chat's reminders for `ends_at` are already past at `now` (counted as
/// sent when an end is set: a reminder is never sent after its moment was known to pass).
pub fn reminders_past(ends_at: Option<i64>, reminders: &[i64], now: i64) -> i64 {
    let Some(end) = ends_at else { return 0 };
    reminders.iter().filter(|s| end - *s * 1000 < now).count() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ent(starts: i64, ends: Option<i64>) -> EntitlementRecord {
        EntitlementRecord {
            id: format!("ent_{starts}"),
            tenant_id: "t".into(),
            external_id: Some("u".into()),
            telegram_user_id: None,
            gated_chat_ids: vec!["gc".into()],
            starts_at: starts,
            ends_at: ends,
            cancel_at_period_end: false,
            cancelled_at: None,
            revoked_at: None,
            expired_at: None,
            source: "api".into(),
            created_at: starts,
            updated_at: starts,
        }
    }

    #[test]
    fn grace_follows_the_end_and_renewals_chain() {
        let a = ent(0, Some(100));
        let got = access(std::slice::from_ref(&a), 10, 50);
        assert_eq!(
            (got.until, got.ends_at, got.state),
            (110, Some(100), AccessState::Active)
        );
        assert_eq!(
            access(std::slice::from_ref(&a), 10, 105).state,
            AccessState::Grace
        );
        assert_eq!(access(std::slice::from_ref(&a), 10, 110).until, 0);
        assert_eq!(
            access(std::slice::from_ref(&a), 10, 110).state,
            AccessState::Expired
        );
        // A renewal bought ahead, starting when the first ends.
        let b = ent(100, Some(200));
        let got = access(&[a, b], 10, 50);
        assert_eq!((got.until, got.ends_at), (210, Some(200)));
    }

    #[test]
    fn revoking_and_cancelling_now_cut_access_without_grace() {
        let mut a = ent(0, Some(100));
        a.revoked_at = Some(40);
        let got = access(std::slice::from_ref(&a), 10, 50);
        assert_eq!((got.until, got.state), (0, AccessState::Revoked));
        let mut c = ent(0, None);
        c.cancelled_at = Some(60);
        let got = access(std::slice::from_ref(&c), 10, 50);
        assert_eq!((got.until, got.ends_at), (60, None));
        assert_eq!(access(&[c], 10, 60).state, AccessState::Cancelled);
    }

    #[test]
    fn reminders_count_back_from_the_end() {
        let day = 86_400;
        let end = 10 * day * 1000;
        let r = [3 * day, day];
        assert_eq!(next_reminder(Some(end), &r, 0), Some(7 * day * 1000));
        assert_eq!(next_reminder(Some(end), &r, 1), Some(9 * day * 1000));
        assert_eq!(next_reminder(Some(end), &r, 2), None);
        assert_eq!(reminders_past(Some(end), &r, 8 * day * 1000), 1);
        assert_eq!(next_reminder(None, &r, 0), None);
    }
}

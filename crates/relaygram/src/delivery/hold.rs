//! The sender's hook between claiming and sending: of the messages it just claimed, those
//! that must wait are put aside (`queued`, due later, marked `held`, the claim's attempt
//! not counted) and the rest are returned to be sent.
//!
//! One store read decides both rules, in this order:
//! 1. a **local send time** (`send_at_local`, [`super::local`]): the message waits until
//!    that wall-clock time in the recipient's zone (the link's `timezone`, else the
//!    message's `default_timezone`, else UTC). Its `send_at` moves there too (`held` =
//!    `local`). Every message has this rule, with or without a link; urgency does not skip
//!    it (the app asked for it);
//! 2. **quiet hours** ([`super::quiet`]): a non-urgent message to a link whose window is on
//!    waits until the window ends (`next_attempt_at` moves, `held` = `quiet`).
//!
//! A held message waits out of its chat's lane (the claim skips held messages not yet
//! due), so it never delays a later message to the chat that may go now. [`hold_for`] is
//! also the rule a link's `PATCH` re-plans its held messages with, in the same transaction
//! ([`crate::store::HoldStore::update_link_replanning`]).

use super::local::{local_hold_until, parse_local, recipient_zone};
use super::quiet::{QuietWindow, is_urgent};
use crate::services::{ServiceResult, Services};
use crate::store::{Claimed, Hold, HoldCandidate};

/// Whether a candidate waits at `now_ms`, and until when (pure).
pub fn hold_for(c: &HoldCandidate, now_ms: i64) -> Option<Hold> {
    if let Some(text) = &c.local_at {
        match parse_local(text) {
            Ok(at) => {
                let zone = recipient_zone(c.timezone.as_deref(), c.local_zone.as_deref());
                if let Some(until) = local_hold_until(now_ms, at, &zone) {
                    return Some(Hold {
                        message_id: c.message_id.clone(),
                        until,
                        moves_send_at: true,
                    });
                }
            }
            // Acceptance stored it in this form: unreadable means corrupt, and a message
            // sent at the wrong time is better than one that never goes.
            Err(e) => {
                tracing::warn!(message_id = %c.message_id, error = %e, "unreadable local send time; not waiting for it")
            }
        }
    }
    if is_urgent(c.priority) {
        return None;
    }
    let window = QuietWindow::from_link(
        c.timezone.as_deref(),
        c.quiet_start.as_deref(),
        c.quiet_end.as_deref(),
    )?;
    window.quiet_until(now_ms).map(|until| Hold {
        message_id: c.message_id.clone(),
        until,
        moves_send_at: false,
    })
}

/// The sender's hook: holds the claimed messages that must wait (a local send time not yet
/// reached, or quiet hours) and returns the others, to be sent now. When the store cannot
/// answer, nothing is held: a message sent early is better than one left claimed (which a
/// restart would have to call `unknown`).
pub async fn hold_claimed(services: &Services, claimed: Vec<Claimed>) -> Vec<Claimed> {
    match held(services, &claimed).await {
        Ok(holds) if !holds.is_empty() => claimed
            .into_iter()
            .filter(|c| !holds.iter().any(|h| h.message_id == c.id))
            .collect(),
        Ok(_) => claimed,
        Err(e) => {
            tracing::warn!(error = %e, "could not check local send times and quiet hours; sending");
            claimed
        }
    }
}

/// Decides and stores the holds; returns them.
async fn held(services: &Services, claimed: &[Claimed]) -> ServiceResult<Vec<Hold>> {
    // Only messages with a local send time or a link can wait: the others cost no read.
    let maybe: Vec<String> = claimed
        .iter()
        .filter(|c| c.link_id.is_some() || c.local_at.is_some())
        .map(|c| c.id.clone())
        .collect();
    if maybe.is_empty() {
        return Ok(vec![]);
    }
    let candidates = services.store.hold_candidates(&maybe).await?;
    let now = services.clock.now_millis();
    let holds: Vec<Hold> = candidates.iter().filter_map(|c| hold_for(c, now)).collect();
    if !holds.is_empty() {
        services.store.hold_messages(&holds, now).await?;
        tracing::debug!(
            held = holds.len(),
            "messages held for their local time or quiet hours"
        );
    }
    Ok(holds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::test_times::ms;

    fn candidate() -> HoldCandidate {
        HoldCandidate {
            message_id: "msg_1".into(),
            priority: 0,
            local_at: None,
            local_zone: None,
            timezone: None,
            quiet_start: None,
            quiet_end: None,
        }
    }

    #[test]
    fn the_local_time_is_read_in_the_link_zone_else_the_default() {
        let c = HoldCandidate {
            local_at: Some("2027-11-07T09:00:00".into()),
            local_zone: Some("Europe/Paris".into()),
            ..candidate()
        };
        let now = ms("2027-11-06T19:00:00Z");
        let h = hold_for(&c, now).unwrap();
        assert_eq!(h.until, ms("2027-11-07T08:00:00Z"));
        assert!(h.moves_send_at);
        let tokyo = HoldCandidate {
            timezone: Some("Asia/Tokyo".into()),
            ..c.clone()
        };
        assert_eq!(
            hold_for(&tokyo, now).unwrap().until,
            ms("2027-11-07T00:00:00Z")
        );
        // Its time has come: no hold. No default zone: UTC.
        assert_eq!(hold_for(&tokyo, ms("2027-11-07T00:00:00Z")), None);
        let utc = HoldCandidate {
            local_zone: None,
            ..c
        };
        assert_eq!(
            hold_for(&utc, now).unwrap().until,
            ms("2027-11-07T09:00:00Z")
        );
    }

    #[test]
    fn the_local_time_comes_first_then_quiet_hours_and_urgent_skips_only_quiet_hours() {
        // Tokyo, quiet 22:00–10:00 local; the message is for 09:00 local.
        let c = HoldCandidate {
            local_at: Some("2027-11-07T09:00:00".into()),
            timezone: Some("Asia/Tokyo".into()),
            quiet_start: Some("22:00".into()),
            quiet_end: Some("10:00".into()),
            ..candidate()
        };
        let before = hold_for(&c, ms("2027-11-06T19:00:00Z")).unwrap();
        assert_eq!(before.until, ms("2027-11-07T00:00:00Z"));
        assert!(before.moves_send_at);
        // At 09:00 local the local time has come, but the window is on until 10:00.
        let quiet = hold_for(&c, ms("2027-11-07T00:00:00Z")).unwrap();
        assert_eq!(quiet.until, ms("2027-11-07T01:00:00Z"));
        assert!(!quiet.moves_send_at);
        // Urgent: still waits for its local time, not for quiet hours.
        let urgent = HoldCandidate {
            priority: 100,
            ..c.clone()
        };
        assert_eq!(
            hold_for(&urgent, ms("2027-11-06T19:00:00Z")).map(|h| h.until),
            Some(ms("2027-11-07T00:00:00Z"))
        );
        assert_eq!(hold_for(&urgent, ms("2027-11-07T00:00:00Z")), None);
        // Without a local time, quiet hours alone.
        let plain = HoldCandidate {
            local_at: None,
            ..c
        };
        assert_eq!(
            hold_for(&plain, ms("2027-11-06T19:00:00Z")).map(|h| h.until),
            Some(ms("2027-11-07T01:00:00Z"))
        );
        assert_eq!(hold_for(&plain, ms("2027-11-07T02:00:00Z")), None);
    }
}

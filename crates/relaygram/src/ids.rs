//! Opaque, time-ordered identifiers and random secrets.
//!
//! Ids look like `ten_01jd8y3k7q9x4m2n5p6r7s8t9v`: a type prefix, then 26 characters of
//! Crockford base32 (48 bits of milliseconds since the Unix epoch followed by 80 random
//! bits). Sorting ids as strings sorts them by creation time, which is what cursor
//! pagination relies on.

use rand::RngCore;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Milliseconds since the Unix epoch, in UTC.
pub fn now_millis() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// A new id with the given prefix, e.g. `new_id("bot")` → `bot_01jd…`.
///
/// Within one process ids are strictly increasing, even within one millisecond (the random
/// part is incremented, as in monotonic ULIDs), so creation order is list order.
pub fn new_id(prefix: &str) -> String {
    static LAST: Mutex<(i64, u128)> = Mutex::new((0, 0));
    let mut fresh = [0u8; 10];
    rand::rng().fill_bytes(&mut fresh);
    let mut random = fresh
        .iter()
        .fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
    let mut millis = now_millis();
    {
        let mut last = LAST
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if millis <= last.0 {
            millis = last.0;
            random = last.1 + 1;
            if random >= 1u128 << 80 {
                millis += 1;
                random = 0;
            }
        }
        *last = (millis, random);
    }
    let bytes: [u8; 10] = std::array::from_fn(|i| (random >> (8 * (9 - i))) as u8);
    id_from_parts(prefix, millis, &bytes)
}

/// The id named by `key`: `millis` for its time, the first 80 bits of `key`'s SHA-256 for
/// the rest. The same key and time always give the same id, so work that may run twice
/// (an update processed again) names what it makes the same way both times.
pub fn derived_id(prefix: &str, millis: i64, key: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let random: [u8; 10] = std::array::from_fn(|i| digest[i]);
    id_from_parts(prefix, millis, &random)
}

fn id_from_parts(prefix: &str, millis: i64, random: &[u8; 10]) -> String {
    let millis = u128::try_from(millis.max(0)).unwrap_or(0) & ((1u128 << 48) - 1);
    let mut value: u128 = millis << 80;
    for (i, byte) in random.iter().enumerate() {
        value |= u128::from(*byte) << (8 * (9 - i));
    }
    let mut out = String::with_capacity(prefix.len() + 27);
    out.push_str(prefix);
    out.push('_');
    for i in (0..26).rev() {
        let idx = ((value >> (5 * i)) & 0x1f) as usize;
        out.push(char::from(CROCKFORD[idx]));
    }
    out
}

/// A random string of `len` characters from `A-Za-z0-9-_` (6 bits of entropy each).
pub fn random_token(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| char::from(URL_SAFE[usize::from(b & 0x3f)]))
        .collect()
}

/// A random string of `len` lower-case Crockford base32 characters (5 bits each).
pub fn random_base32(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::rng().fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| char::from(CROCKFORD[usize::from(b & 0x1f)]))
        .collect()
}

/// RFC 3339 UTC text for milliseconds since the Unix epoch.
pub fn rfc3339(millis: i64) -> String {
    jiff::Timestamp::from_millisecond(millis)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| millis.to_string())
}

/// Lower-case hex encoding.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Decodes lower- or upper-case hex; `None` when the input is not valid hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some((nibble(pair[0])? << 4) | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_fixed_length() {
        let id = new_id("bot");
        assert!(id.starts_with("bot_"));
        assert_eq!(id.len(), 4 + 26);
        assert!(id[4..].bytes().all(|c| CROCKFORD.contains(&c)));
    }

    #[test]
    fn ids_sort_by_creation_time() {
        let a = id_from_parts("ten", 1_700_000_000_000, &[0xff; 10]);
        let b = id_from_parts("ten", 1_700_000_000_001, &[0; 10]);
        assert!(a < b, "{a} should sort before {b}");
        assert_eq!(
            id_from_parts("x", 0, &[0; 10]),
            "x_00000000000000000000000000"
        );
        let many: Vec<String> = (0..1000).map(|_| new_id("t")).collect();
        assert!(
            many.windows(2).all(|w| w[0] < w[1]),
            "ids from one process increase"
        );
    }

    #[test]
    fn derived_ids_depend_on_key_and_time_only() {
        let a = derived_id("msg", 1_700_000_000_000, "reply:bot_1:7:1:0");
        assert_eq!(a, derived_id("msg", 1_700_000_000_000, "reply:bot_1:7:1:0"));
        assert_ne!(a, derived_id("msg", 1_700_000_000_000, "reply:bot_1:7:1:1"));
        assert!(a < derived_id("msg", 1_700_000_000_001, "reply:bot_1:7:1:0"));
        assert_eq!(a.len(), 4 + 26);
    }

    #[test]
    fn random_tokens_use_the_telegram_secret_alphabet() {
        let t = random_token(64);
        assert_eq!(t.len(), 64);
        assert!(
            t.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(t, random_token(64));
    }

    #[test]
    fn times_render_as_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(random_base32(40).len(), 40);
    }

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(hex(&bytes), "0001abff");
        assert_eq!(unhex("0001ABff").unwrap(), bytes);
        assert!(unhex("0g").is_none());
        assert!(unhex("abc").is_none());
    }
}

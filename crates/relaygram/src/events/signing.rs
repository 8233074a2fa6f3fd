//! Standard Webhooks signing (<https://www.standardwebhooks.com>): `whsec_` secrets,
//! `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256>`
//! over `"{id}.{timestamp}.{body}"`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Prefix of endpoint secrets.
pub const SECRET_PREFIX: &str = "whsec_";
/// Header carrying the event id.
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the send time (Unix seconds).
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying the signature(s).
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// A secret that is not `whsec_` followed by base64.
#[derive(Debug, thiserror::Error)]
#[error("an endpoint secret must be `whsec_` followed by base64")]
pub struct BadSecret;

/// A fresh secret: `whsec_` + base64 of 24 random bytes.
pub fn new_secret() -> String {
    let mut key = [0u8; 24];
    rand::rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

fn key_of(secret: &str) -> Result<Vec<u8>, BadSecret> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    STANDARD
        .decode(encoded)
        .ok()
        .filter(|k| !k.is_empty())
        .ok_or(BadSecret)
}

/// The `webhook-signature` value for one message: `v1,<base64 HMAC-SHA256>`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, BadSecret> {
    let key = key_of(secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| BadSecret)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Checks a `webhook-signature` header (space-separated `v1,<sig>` entries) in constant
/// time. Receivers should also reject timestamps far from their clock.
pub fn verify(secret: &str, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Ok(key) = key_of(secret) else {
        return false;
    };
    header.split(' ').any(|entry| {
        let Some(sig) = entry.strip_prefix("v1,") else {
            return false;
        };
        let Ok(sig) = STANDARD.decode(sig) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
            return false;
        };
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_reference_vector() {
        // From the Standard Webhooks specification's test suite.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(secret, id, 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(secret, id, 1614265330, body, &sig));
        assert!(verify(
            secret,
            id,
            1614265330,
            body,
            &format!("v1,bm9wZQ== {sig}")
        ));
        assert!(!verify(secret, id, 1614265331, body, &sig));
        assert!(!verify(secret, id, 1614265330, b"{\"test\": 1}", &sig));
    }

    #[test]
    fn new_secrets_are_prefixed_base64_and_distinct() {
        let s = new_secret();
        assert!(s.starts_with(SECRET_PREFIX));
        assert_eq!(key_of(&s).unwrap().len(), 24);
        assert_ne!(s, new_secret());
        assert!(sign("whsec_***", "x", 1, b"").is_err());
    }
}

//! Secrets at rest: XChaCha20-Poly1305 for bot tokens and webhook secrets, SHA-256 hashes
//! for API keys, constant-time comparisons.

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

use crate::ids::{hex, unhex};

/// Name of the generated key file inside the data folder.
pub const KEY_FILE: &str = "secret.key";
const VERSION_PREFIX: &str = "v1:";

/// Errors of the secret box.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The stored value was not produced by this key (or was altered).
    #[error("stored secret cannot be decrypted with the configured secret key")]
    Decrypt,
    /// The configured key is not the one the store's secrets were sealed with.
    #[error(
        "the secret key does not match this store's secrets: set RELAYGRAM_SECRET_KEY \
         (or restore {{data_dir}}/secret.key) to the key used when they were stored"
    )]
    WrongKey,
    /// The key file could not be read or written.
    #[error("secret key file {path}: {message}")]
    KeyFile {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// Encrypts and decrypts short secrets with one 32-byte key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
    /// Secrets opened by [`SecretBox::open_cached`], by sealed form. Every inbound update
    /// opens its bot's webhook secret and token; a sealed value always opens to the same
    /// plaintext, so entries never go stale (a changed secret is a new sealed value).
    opened: Arc<Mutex<HashMap<String, Arc<SecretString>>>>,
}

/// Opened secrets kept by one [`SecretBox`]; past this the cache starts over.
const MAX_OPENED: usize = 4096;

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// A box from raw key bytes.
    pub fn new(key: &[u8; 32]) -> Self {
        let cipher = XChaCha20Poly1305::new_from_slice(key).expect("32-byte key");
        SecretBox {
            cipher,
            opened: Arc::default(),
        }
    }

    /// The key from `RELAYGRAM_SECRET_KEY` (64 hex characters, already validated by the
    /// configuration), or else from `{data_dir}/secret.key`, generated there once with mode
    /// 0600 when missing. Returns the box and whether a key file was created.
    pub fn load_or_create(
        configured: Option<&SecretString>,
        data_dir: &Path,
    ) -> Result<(SecretBox, bool), CryptoError> {
        if let Some(key) = configured {
            let bytes = unhex(key.expose_secret().trim())
                .filter(|b| b.len() == 32)
                .ok_or_else(|| CryptoError::KeyFile {
                    path: "RELAYGRAM_SECRET_KEY".into(),
                    message: "must be 64 hex characters".into(),
                })?;
            let mut key = [0u8; 32];
            key.copy_from_slice(&bytes);
            return Ok((SecretBox::new(&key), false));
        }
        let path = data_dir.join(KEY_FILE);
        let err = |message: String| CryptoError::KeyFile {
            path: path.display().to_string(),
            message,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes = unhex(text.trim())
                    .filter(|b| b.len() == 32)
                    .ok_or_else(|| err("must hold 64 hex characters".into()))?;
                let mut key = [0u8; 32];
                key.copy_from_slice(&bytes);
                Ok((SecretBox::new(&key), false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir).map_err(|e| err(e.to_string()))?;
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut file = options.open(&path).map_err(|e| err(e.to_string()))?;
                file.write_all(format!("{}\n", hex(&key)).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| err(e.to_string()))?;
                Ok((SecretBox::new(&key), true))
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// Encrypts `plaintext` under a fresh random nonce: `v1:` + hex(nonce ‖ ciphertext).
    pub fn seal(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(&XNonce::from(nonce), plaintext.as_bytes())
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(24 + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!("{VERSION_PREFIX}{}", hex(&out))
    }

    /// [`SecretBox::open`], remembering the answer: for secrets read on hot paths.
    pub fn open_cached(&self, sealed: &str) -> Result<Arc<SecretString>, CryptoError> {
        let cache = || self.opened.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(plain) = cache().get(sealed) {
            return Ok(plain.clone());
        }
        let plain = Arc::new(self.open(sealed)?);
        let mut opened = cache();
        if opened.len() >= MAX_OPENED {
            opened.clear();
        }
        opened.insert(sealed.to_string(), plain.clone());
        Ok(plain)
    }

    /// Decrypts a value made by [`SecretBox::seal`].
    pub fn open(&self, sealed: &str) -> Result<SecretString, CryptoError> {
        let bytes = sealed
            .strip_prefix(VERSION_PREFIX)
            .and_then(unhex)
            .filter(|b| b.len() > 24)
            .ok_or(CryptoError::Decrypt)?;
        let (nonce, ciphertext) = bytes.split_at(24);
        let mut nonce_bytes = [0u8; 24];
        nonce_bytes.copy_from_slice(nonce);
        let plain = self
            .cipher
            .decrypt(&XNonce::from(nonce_bytes), ciphertext)
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Decrypt)
    }
}

/// Hex SHA-256 of an API key, as stored.
pub fn hash_api_key(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// Constant-time equality of two strings (length is not hidden).
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_without_leaking_plaintext() {
        let sb = SecretBox::new(&[7u8; 32]);
        let token = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
        let sealed = sb.seal(token);
        assert!(!sealed.contains(token));
        assert!(!sealed.contains("AAHdqTcv"));
        assert_ne!(sealed, sb.seal(token), "nonces must differ");
        assert_eq!(sb.open(&sealed).unwrap().expose_secret(), token);
        assert_eq!(sb.open_cached(&sealed).unwrap().expose_secret(), token);
        assert_eq!(sb.open_cached(&sealed).unwrap().expose_secret(), token);
    }

    #[test]
    fn wrong_key_or_tampering_fails() {
        let sealed = SecretBox::new(&[1u8; 32]).seal("secret");
        assert!(SecretBox::new(&[2u8; 32]).open(&sealed).is_err());
        assert!(SecretBox::new(&[2u8; 32]).open_cached(&sealed).is_err());
        let mut tampered = sealed.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        assert!(SecretBox::new(&[1u8; 32]).open(&tampered).is_err());
        assert!(SecretBox::new(&[1u8; 32]).open("garbage").is_err());
    }

    #[test]
    fn key_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (first, created) = SecretBox::load_or_create(None, &data).unwrap();
        assert!(created);
        let (second, created_again) = SecretBox::load_or_create(None, &data).unwrap();
        assert!(!created_again);
        let sealed = first.seal("hello");
        assert_eq!(second.open(&sealed).unwrap().expose_secret(), "hello");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(data.join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn configured_key_wins() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretString::from("11".repeat(32));
        let (sb, created) = SecretBox::load_or_create(Some(&key), dir.path()).unwrap();
        assert!(!created);
        assert!(!dir.path().join(KEY_FILE).exists());
        let sealed = sb.seal("x");
        assert_eq!(
            SecretBox::new(&[0x11; 32])
                .open(&sealed)
                .unwrap()
                .expose_secret(),
            "x"
        );
    }

    #[test]
    fn api_key_hash_and_compare() {
        let h = hash_api_key("rg_abc");
        assert_eq!(h.len(), 64);
        assert_eq!(h, hash_api_key("rg_abc"));
        assert!(ct_eq(&h, &hash_api_key("rg_abc")));
        assert!(!ct_eq(&h, &hash_api_key("rg_abd")));
    }
}

//! Operator API keys: `obol_live_<key id>_<secret>`, 160-bit secrets, argon2id hashes at rest.
//!
//! Verifying argon2id costs tens of milliseconds by design, so a key that verified once is
//! remembered by its SHA-256 digest for the life of the process (bounded); later requests pay a
//! hash and a map lookup. Only the digest is kept: the key itself is never stored or logged.

use std::collections::HashSet;
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use sha2::{Digest, Sha256};

/// Prefix of every obol key.
pub const KEY_PREFIX: &str = "obol_live_";
/// Metadata key under which the operator key's id and hash are stored.
pub const OPERATOR_KEY_META: &str = "operator_api_key";
/// How many verified key digests are remembered.
const VERIFIED_CACHE_MAX: usize = 1024;

/// The stored form of a key: its public id and the argon2id PHC string of its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    /// Public key id (hex), also part of the key text.
    pub key_id: String,
    /// argon2id PHC string of the secret.
    pub phc: String,
}

impl StoredKey {
    /// `<key id>:<phc>`, for the store's metadata.
    pub fn encode(&self) -> Vec<u8> {
        format!("{}:{}", self.key_id, self.phc).into_bytes()
    }

    /// Parses [`StoredKey::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Option<StoredKey> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (key_id, phc) = text.split_once(':')?;
        PasswordHash::new(phc).ok()?;
        Some(StoredKey { key_id: key_id.into(), phc: phc.into() })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes a new key. Returns the key text (show it once) and what to store.
pub fn generate_key() -> (String, StoredKey) {
    let mut key_id = [0u8; 8];
    let mut secret = [0u8; 20];
    rand::fill(&mut key_id);
    rand::fill(&mut secret);
    let key_id = hex(&key_id);
    let secret = hex(&secret);
    let phc = Argon2::default().hash_password(secret.as_bytes()).expect("argon2id with default parameters").to_string();
    (format!("{KEY_PREFIX}{key_id}_{secret}"), StoredKey { key_id, phc })
}

/// Checks bearer tokens against the operator key.
pub struct Authenticator {
    keys: Vec<StoredKey>,
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl Authenticator {
    /// Accepts the given keys.
    pub fn new(keys: Vec<StoredKey>) -> Authenticator {
        Authenticator { keys, verified: Mutex::new(HashSet::new()) }
    }

    /// Whether `token` is one of the keys.
    pub fn check(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if self.verified.lock().unwrap_or_else(|p| p.into_inner()).contains(&digest) {
            return true;
        }
        let Some(rest) = token.strip_prefix(KEY_PREFIX) else {
            return false;
        };
        let Some((key_id, secret)) = rest.split_once('_') else {
            return false;
        };
        let Some(stored) = self.keys.iter().find(|k| k.key_id == key_id) else {
            return false;
        };
        let Ok(phc) = PasswordHash::new(&stored.phc) else {
            return false;
        };
        if Argon2::default().verify_password(secret.as_bytes(), &phc).is_err() {
            return false;
        }
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_CACHE_MAX {
            verified.clear();
        }
        verified.insert(digest);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_verifies_and_a_changed_one_does_not() {
        let (key, stored) = generate_key();
        assert!(key.starts_with(KEY_PREFIX));
        assert!(stored.phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{}", stored.phc);
        assert!(!stored.phc.contains(key.rsplit('_').next().unwrap()));
        let auth = Authenticator::new(vec![StoredKey::decode(&stored.encode()).unwrap()]);
        assert!(auth.check(&key));
        assert!(auth.check(&key), "cached");
        let mut wrong = key.clone();
        wrong.pop();
        wrong.push(if key.ends_with('0') { '1' } else { '0' });
        assert!(!auth.check(&wrong));
        assert!(!auth.check(""));
        assert!(!auth.check("obol_live_"));
        assert!(!auth.check("Bearer x"));
    }
}

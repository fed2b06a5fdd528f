//! Secrets at rest, in a two-level key hierarchy.
//!
//! The **master key** (the 32 bytes of `master.key`, outside the store) is a key-encryption key:
//! it only wraps other keys, with XChaCha20-Poly1305, each wrap bound to what the key is for.
//! Wrapped keys live in the store's metadata, *outside* the append-only record log, because a
//! person's key must be destroyable (crypto-shredding) and nothing in the log ever is:
//! - the **system key** (`vault/system_key`) seals small secrets journaled in the log (TOTP
//!   seeds) with ChaCha20-Poly1305; a new store draws it at random, and a store whose seeds were
//!   sealed under the master key itself, before the hierarchy existed, adopts the master key's
//!   bytes so they still open (for such a store, rotating the master key does not retire those
//!   bytes: re-enrolling TOTP does);
//! - a **data key** per person (`vault/person/<id>`) seals that person's personal fields
//!   (`crate::privacy`); erasing the person erases the key, and every copy of the fields in the
//!   log becomes unreadable.
//!
//! Rotating the master key re-wraps the system and data keys and touches no data. Each wrap
//! names the master key that made it (8 bytes of a hash of it), so a rotation that stopped
//! half-way can be finished. `Secret<T>` keeps secrets out of logs and `Debug` output.

use std::fmt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// Metadata key of the wrapped system key.
pub const SYSTEM_KEY_META: &str = "vault/system_key";
/// Metadata key prefix of the wrapped per-person data keys (`vault/person/<32 hex digits>`).
pub const PERSON_KEY_META_PREFIX: &str = "vault/person/";
/// Format byte of a wrapped key: `1 || master key id (8) || nonce (24) || key sealed (32 + 16)`.
const WRAP_FORMAT: u8 = 1;
/// Length of a wrapped key.
pub const WRAPPED_KEY_BYTES: usize = 1 + 8 + 24 + 32 + 16;

/// Where a master-key rotation keeps the new key until every key is re-wrapped:
/// `<master key file>.next`.
pub fn next_key_path(master_key_path: &Path) -> std::path::PathBuf {
    let mut next = master_key_path.as_os_str().to_owned();
    next.push(".next");
    std::path::PathBuf::from(next)
}

/// The metadata key that holds person `id`'s wrapped data key.
pub fn person_key_meta(id: u128) -> String {
    format!("{PERSON_KEY_META_PREFIX}{id:032x}")
}

/// The id of a master key: the first 8 bytes of `SHA-256("obol/master-key-id/v1" || key)`.
/// Safe to show: it names a key without revealing it.
pub fn master_key_id(master_key: &Secret<[u8; 32]>) -> [u8; 8] {
    let digest =
        Sha256::new().chain_update(b"obol/master-key-id/v1").chain_update(master_key.expose_secret()).finalize();
    let mut id = [0u8; 8];
    id.iter_mut().zip(digest.iter()).for_each(|(byte, digest_byte)| *byte = *digest_byte);
    id
}

/// Why a wrapped key did not open.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnwrapError {
    /// Wrapped by another master key (its id, hex).
    #[error("wrapped by another master key (id {0}; this one is {1})")]
    OtherMaster(String, String),
    /// Not a wrapped key, altered, or wrapped for another purpose.
    #[error("damaged or wrapped for another purpose")]
    Damaged,
}

/// Wraps and unwraps keys under one master key.
pub struct KeyWrap {
    cipher: XChaCha20Poly1305,
    id: [u8; 8],
}

impl fmt::Debug for KeyWrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyWrap(id {})", obol_core::audit::hex(&self.id))
    }
}

impl KeyWrap {
    /// Wrapping under `master_key`.
    pub fn new(master_key: &Secret<[u8; 32]>) -> KeyWrap {
        KeyWrap {
            cipher: XChaCha20Poly1305::new(&Key::from(*master_key.expose_secret())),
            id: master_key_id(master_key),
        }
    }

    /// This master key's id.
    pub fn id(&self) -> [u8; 8] {
        self.id
    }

    /// Wraps `key` for `purpose` (the metadata key it is stored under).
    #[expect(clippy::expect_used, reason = "XChaCha20-Poly1305 fails only past 2^38 bytes; a key is 32")]
    pub fn wrap(&self, env: &dyn crate::Env, purpose: &str, key: &Secret<[u8; 32]>) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        env.fill(&mut nonce);
        let aad = [b"obol/vault/wrap/v1/".as_slice(), purpose.as_bytes()].concat();
        let sealed = self
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: key.expose_secret(), aad: &aad })
            .expect("XChaCha20-Poly1305 wraps a 32-byte key");
        let wrapped = [&[WRAP_FORMAT], self.id.as_slice(), &nonce, &sealed].concat();
        debug_assert_eq!(wrapped.len(), WRAPPED_KEY_BYTES);
        wrapped
    }

    /// The master key id a wrapped key names, if it is one.
    pub fn wrapped_by(wrapped: &[u8]) -> Option<[u8; 8]> {
        if wrapped.len() != WRAPPED_KEY_BYTES || wrapped.first() != Some(&WRAP_FORMAT) {
            return None;
        }
        wrapped.get(1..9)?.try_into().ok()
    }

    /// Opens what [`KeyWrap::wrap`] made for the same `purpose`.
    pub fn unwrap(&self, purpose: &str, wrapped: &[u8]) -> Result<Secret<[u8; 32]>, UnwrapError> {
        let by = KeyWrap::wrapped_by(wrapped).ok_or(UnwrapError::Damaged)?;
        if by != self.id {
            return Err(UnwrapError::OtherMaster(obol_core::audit::hex(&by), obol_core::audit::hex(&self.id)));
        }
        let nonce: [u8; 24] = wrapped.get(9..33).and_then(|n| n.try_into().ok()).ok_or(UnwrapError::Damaged)?;
        let sealed = wrapped.get(33..).ok_or(UnwrapError::Damaged)?;
        let aad = [b"obol/vault/wrap/v1/".as_slice(), purpose.as_bytes()].concat();
        let key = self
            .cipher
            .decrypt(&XNonce::from(nonce), Payload { msg: sealed, aad: &aad })
            .map_err(|_| UnwrapError::Damaged)?;
        let key: [u8; 32] = key.try_into().map_err(|_| UnwrapError::Damaged)?;
        Ok(Secret::new(key))
    }
}

/// Seals and opens one person's personal fields under their data key (XChaCha20-Poly1305,
/// a random 24-byte nonce per sealing, bound to the person's id).
pub struct DataKey {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(***)")
    }
}

impl DataKey {
    /// A cipher over an unwrapped data key.
    pub fn new(key: &Secret<[u8; 32]>) -> DataKey {
        DataKey { cipher: XChaCha20Poly1305::new(&Key::from(*key.expose_secret())) }
    }

    /// `nonce (24) || ciphertext || tag`, bound to `purpose`.
    #[expect(clippy::expect_used, reason = "XChaCha20-Poly1305 fails only past 2^38 bytes; a profile is a few KiB")]
    pub fn seal(&self, env: &dyn crate::Env, purpose: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        env.fill(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: purpose })
            .expect("XChaCha20-Poly1305 seals a profile");
        [nonce.as_slice(), &sealed].concat()
    }

    /// Opens what [`DataKey::seal`] made for `purpose`, or `None`.
    pub fn open(&self, purpose: &[u8], sealed: &[u8]) -> Option<Secret<Vec<u8>>> {
        let (nonce, ciphertext) = sealed.split_at_checked(24)?;
        let nonce: [u8; 24] = nonce.try_into().ok()?;
        self.cipher.decrypt(&XNonce::from(nonce), Payload { msg: ciphertext, aad: purpose }).ok().map(Secret::new)
    }
}

/// A value that must never be printed: `Debug` shows `Secret(***)`, there is no `Display`, and
/// the value is reached only through `expose_secret`.
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret.
    pub fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The secret itself; every call site is a place a reviewer should look at.
    pub fn expose_secret(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The vault: seals log secrets under the system key and wraps data keys under the master key.
pub struct Vault {
    cipher: ChaCha20Poly1305,
    wrap: KeyWrap,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vault(***)")
    }
}

impl Vault {
    /// A vault over a 32-byte master key whose system key is the master key itself (a store
    /// that never recorded a system key; see [`Vault::with_system_key`]).
    pub fn new(master_key: &Secret<[u8; 32]>) -> Vault {
        Vault::with_system_key(master_key, master_key)
    }

    /// A vault whose master key wraps data keys and whose system key seals log secrets.
    pub fn with_system_key(master_key: &Secret<[u8; 32]>, system_key: &Secret<[u8; 32]>) -> Vault {
        Vault { cipher: ChaCha20Poly1305::new(&Key::from(*system_key.expose_secret())), wrap: KeyWrap::new(master_key) }
    }

    /// Wraps and unwraps data keys under the master key.
    pub fn key_wrap(&self) -> &KeyWrap {
        &self.wrap
    }

    /// A vault with a fresh random key (tests, and servers that keep nothing sealed).
    pub fn ephemeral(env: &dyn crate::Env) -> Vault {
        let mut key = [0u8; 32];
        env.fill(&mut key);
        Vault::new(&Secret::new(key))
    }

    /// Encrypts `plaintext`, bound to `purpose`: `nonce (12 bytes) || ciphertext || tag`.
    #[expect(clippy::expect_used, reason = "ChaCha20-Poly1305 fails only past 2^38 bytes; secrets are a few dozen")]
    pub fn seal(&self, env: &dyn crate::Env, purpose: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        env.fill(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad: purpose })
            .expect("ChaCha20-Poly1305 seals small secrets");
        [nonce.as_slice(), &sealed].concat()
    }

    /// Decrypts what `seal` produced for the same `purpose`, or `None` if it was altered, sealed
    /// for another purpose, or under another key.
    pub fn open(&self, purpose: &[u8], sealed: &[u8]) -> Option<Secret<Vec<u8>>> {
        let (nonce, ciphertext) = sealed.split_at_checked(12)?;
        let nonce: [u8; 12] = nonce.try_into().ok()?;
        self.cipher.decrypt(&Nonce::from(nonce), Payload { msg: ciphertext, aad: purpose }).ok().map(Secret::new)
    }
}

/// Reads a 32-byte key (the master key, the audit key) from `path`, creating it (32 random
/// bytes, mode 0600) if missing.
pub fn load_or_create_key(path: &Path, env: &dyn crate::Env) -> std::io::Result<Secret<[u8; 32]>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let key: [u8; 32] = bytes.try_into().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} must hold exactly 32 bytes", path.display()),
                )
            })?;
            Ok(Secret::new(key))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut key = [0u8; 32];
            env.fill(&mut key);
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
            file.write_all(&key)?;
            file.sync_all()?;
            // The file's name is durable only once its directory is: without this, a power
            // loss could keep what the key sealed and lose the key.
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            std::fs::File::open(parent)?.sync_all()?;
            Ok(Secret::new(key))
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_for_their_purpose_and_key() {
        let vault = Vault::ephemeral(&crate::SystemEnv);
        let sealed = vault.seal(&crate::SystemEnv, b"totp:1", b"seed bytes");
        assert_eq!(vault.open(b"totp:1", &sealed).unwrap().expose_secret(), b"seed bytes");
        assert!(vault.open(b"totp:2", &sealed).is_none());
        assert!(Vault::ephemeral(&crate::SystemEnv).open(b"totp:1", &sealed).is_none());
        let mut altered = sealed.clone();
        altered[15] ^= 1;
        assert!(vault.open(b"totp:1", &altered).is_none());
        assert!(!sealed.windows(10).any(|w| w == b"seed bytes"));
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}

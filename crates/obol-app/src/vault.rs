//! Secrets at rest: a master key seals small secrets (TOTP seeds) with ChaCha20-Poly1305, each
//! bound by its associated data to what it is for, and `Secret<T>` keeps secrets out of logs.

use std::fmt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

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

/// Seals and opens secrets under the master key.
pub struct Vault {
    cipher: ChaCha20Poly1305,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vault(***)")
    }
}

impl Vault {
    /// A vault over a 32-byte master key.
    pub fn new(master_key: &Secret<[u8; 32]>) -> Vault {
        Vault { cipher: ChaCha20Poly1305::new(&Key::from(*master_key.expose_secret())) }
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

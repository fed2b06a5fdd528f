//! API keys and callers: `obol_live_<key id>_<secret>`, 160-bit secrets, argon2id hashes at rest
//! (m=19 MiB, t=2, p=1) in the identity registry.
//!
//! Verifying argon2id costs tens of milliseconds by design, so a key that verified once is
//! remembered by the SHA-256 digest of its full text for the life of the process (bounded).
//! Every request, cached or not, still checks the key's status and expiry and its principal's
//! status in the registry, so revocation and suspension take effect at once. The key text itself
//! is never stored or logged.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64ct::Encoding;
use obol_core::identity::{Role, Scopes, Status};
use obol_core::ledger::Ledger;
use sha2::{Digest, Sha256};

/// Prefix of every obol key.
pub const KEY_PREFIX: &str = "obol_live_";
/// How many verified key digests are remembered.
const VERIFIED_CACHE_MAX: usize = 4096;
/// The principal created on first start to run the platform.
pub const BOOTSTRAP_OPERATOR_ID: u128 = 1;

/// A new key: the text to show once, and what the registry keeps. Its `Debug` shows only the
/// public id: the key text and its hash never reach a log.
pub struct KeyMaterial {
    /// The full key; shown once, never stored.
    pub text: String,
    /// Public id (16 hex characters).
    pub key_id: String,
    /// argon2id PHC string of the secret.
    pub phc: String,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("key_id", &self.key_id)
            .field("text", &"<redacted>")
            .field("phc", &"<redacted>")
            .finish()
    }
}

use obol_core::audit::hex;

/// Makes a new key with a random id and a 160-bit random secret.
#[expect(clippy::expect_used, reason = "argon2id with its default parameters and a fresh salt cannot fail")]
pub fn generate_key(env: &dyn crate::Env) -> KeyMaterial {
    let mut key_id = [0u8; 8];
    let mut secret = [0u8; 20];
    env.fill(&mut key_id);
    env.fill(&mut secret);
    let key_id = hex(&key_id);
    let secret = hex(&secret);
    let phc = Argon2::default().hash_password(secret.as_bytes()).expect("argon2id with default parameters").to_string();
    KeyMaterial { text: format!("{KEY_PREFIX}{key_id}_{secret}"), key_id, phc }
}

/// Splits a key into its public id and secret.
pub fn split_key(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(KEY_PREFIX)?;
    let (key_id, secret) = rest.split_once('_')?;
    (key_id.len() == 16 && !secret.is_empty()).then_some((key_id, secret))
}

/// How the caller proved who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// An API key (its public id).
    ApiKey(String),
    /// A device's signed request (the device id).
    Device(u128),
    /// A dashboard session opened with a passkey (its credential id, base64url): the person
    /// themselves, with user verification, so it may do what a full API key may.
    Passkey(String),
}

impl Via {
    /// The credential as audit notes, reviews and access logs name it: `key:<id>`,
    /// `device:<id>` or `passkey:<id>`.
    pub fn label(&self) -> String {
        match self {
            Via::ApiKey(key_id) => format!("key:{key_id}"),
            Via::Device(device_id) => format!("device:{device_id}"),
            Via::Passkey(credential_id) => format!("passkey:{credential_id}"),
        }
    }

    /// Whether a person holds this credential (an API key or a passkey), not a device: only a
    /// person manages devices, factors and keys.
    pub fn is_person(&self) -> bool {
        matches!(self, Via::ApiKey(_) | Via::Passkey(_))
    }
}

/// Who is calling, after authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The principal acting (for a device: its holder).
    pub principal_id: u128,
    /// The principal's role.
    pub role: Role,
    /// What this credential may do.
    pub scopes: Scopes,
    /// The credential.
    pub via: Via,
    /// The address the request came from, when known (the risk engine's network feature).
    pub peer: Option<std::net::IpAddr>,
}

/// Why a token was not accepted. The HTTP answer does not say which (all are 401), except for a
/// suspended principal, whose owner needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// Malformed, unknown, wrong secret, revoked or expired.
    BadKey,
    /// The key is fine but its principal is suspended.
    Suspended,
}

/// Checks bearer tokens against the registry.
#[derive(Default)]
pub struct Authenticator {
    verified: Mutex<HashMap<[u8; 32], String>>,
}

impl Authenticator {
    /// A fresh authenticator with an empty cache.
    pub fn new() -> Authenticator {
        Authenticator::default()
    }

    /// Whether `token` verified before (no argon2 needed).
    pub fn is_cached(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.verified.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&digest)
    }

    /// Resolves `token` to a caller at ledger time `now_ns`. Slow (argon2id) the first time a
    /// key is seen; call it off the async workers.
    pub fn authenticate(
        &self,
        token: &str,
        ledger: &std::sync::RwLock<Ledger>,
        now_ns: u64,
    ) -> Result<Caller, AuthFailure> {
        let (key_id, secret) = split_key(token).ok_or(AuthFailure::BadKey)?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached =
            self.verified.lock().unwrap_or_else(|p| p.into_inner()).get(&digest).is_some_and(|id| id == key_id);
        if !cached {
            // Only an unseen token reads the key's hash; a cached one goes straight to the
            // checks every request gets (status, expiry, principal).
            let phc_text = {
                let ledger = ledger.read().unwrap_or_else(|p| p.into_inner());
                ledger.identity().key(key_id).map(|key| key.phc.clone()).ok_or(AuthFailure::BadKey)?
            };
            let phc = PasswordHash::new(&phc_text).map_err(|_| AuthFailure::BadKey)?;
            Argon2::default().verify_password(secret.as_bytes(), &phc).map_err(|_| AuthFailure::BadKey)?;
            let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if verified.len() >= VERIFIED_CACHE_MAX {
                verified.clear();
            }
            verified.insert(digest, key_id.to_string());
        }
        self.caller_for_key(key_id, ledger, now_ns)
    }

    /// The caller key `key_id` (already verified) stands for at ledger time `now_ns`: refused if
    /// the key was revoked or has expired, or its principal is not active.
    pub fn caller_for_key(
        &self,
        key_id: &str,
        ledger: &std::sync::RwLock<Ledger>,
        now_ns: u64,
    ) -> Result<Caller, AuthFailure> {
        let ledger = ledger.read().unwrap_or_else(|p| p.into_inner());
        let key = ledger.identity().key(key_id).ok_or(AuthFailure::BadKey)?;
        if !key.usable_at(now_ns) {
            return Err(AuthFailure::BadKey);
        }
        let principal = ledger.identity().principal(key.principal_id).ok_or(AuthFailure::BadKey)?;
        if principal.status != Status::Active {
            return Err(AuthFailure::Suspended);
        }
        Ok(Caller {
            principal_id: principal.id,
            role: principal.role,
            scopes: key.scopes,
            via: Via::ApiKey(key.key_id.clone()),
            peer: None,
        })
    }
}

/// The caller a passkey session of `principal_id` stands for, checked again now: the principal
/// is active and the passkey (`credential_id`, base64url) is still theirs and usable (not
/// disabled as a suspected clone). A passkey session has every scope.
pub fn caller_for_passkey(ledger: &Ledger, principal_id: u128, credential_id: &str) -> Result<Caller, AuthFailure> {
    let principal = ledger.identity().principal(principal_id).ok_or(AuthFailure::BadKey)?;
    let raw = base64ct::Base64UrlUnpadded::decode_vec(credential_id).map_err(|_| AuthFailure::BadKey)?;
    if !principal.usable_passkeys().any(|passkey| passkey.credential_id == raw) {
        return Err(AuthFailure::BadKey);
    }
    if principal.status != Status::Active {
        return Err(AuthFailure::Suspended);
    }
    Ok(Caller {
        principal_id,
        role: principal.role,
        scopes: Scopes(Scopes::READ | Scopes::PAY | Scopes::MANAGE),
        via: Via::Passkey(credential_id.to_string()),
        peer: None,
    })
}

/// Issues a key for `principal_id` through `node` (before the engine starts). Returns the key
/// text, to be shown once.
pub fn issue_key_offline<S: obol_store::Store>(
    node: &mut obol_store::Node<S>,
    principal_id: u128,
    scopes: Scopes,
    expires_ns: u64,
    env: &dyn crate::Env,
) -> Result<String, obol_store::StoreError> {
    let now_ns = env.now_ns();
    use obol_core::identity::IdentityCommand;
    use obol_core::record::{Op, Record};
    let material = generate_key(env);
    let command = IdentityCommand::CreateApiKey {
        key_id: material.key_id.clone(),
        principal_id,
        phc: material.phc,
        scopes,
        expires_ns,
    };
    node.commit(&Record { now_ns, ops: vec![Op::Identity(command)] })?;
    Ok(material.text)
}

/// On a fresh store, creates the operator principal and its first key (returned, to be shown
/// once). On a store that has one, does nothing and returns `None`.
pub fn bootstrap_operator<S: obol_store::Store>(
    node: &mut obol_store::Node<S>,
    env: &dyn crate::Env,
) -> Result<Option<String>, obol_store::StoreError> {
    let now_ns = env.now_ns();
    use obol_core::identity::IdentityCommand;
    use obol_core::record::{Op, Record};
    let exists =
        node.ledger().read().unwrap_or_else(|p| p.into_inner()).identity().principal(BOOTSTRAP_OPERATOR_ID).is_some();
    if exists {
        return Ok(None);
    }
    let create =
        IdentityCommand::CreatePrincipal { id: BOOTSTRAP_OPERATOR_ID, role: Role::Operator, name: "operator".into() };
    node.commit(&Record { now_ns, ops: vec![Op::Identity(create)] })?;
    issue_key_offline(node, BOOTSTRAP_OPERATOR_ID, Scopes(Scopes::ALL), 0, env).map(Some)
}

/// Revokes every key of the bootstrap operator and issues a new one (server stopped).
pub fn reset_operator_key<S: obol_store::Store>(
    node: &mut obol_store::Node<S>,
    env: &dyn crate::Env,
) -> Result<String, obol_store::StoreError> {
    let now_ns = env.now_ns();
    use obol_core::identity::IdentityCommand;
    use obol_core::record::{Op, Record};
    if let Some(key) = bootstrap_operator(node, env)? {
        return Ok(key);
    }
    let (active, passkeys): (Vec<String>, Vec<Vec<u8>>) = {
        let ledger = node.ledger();
        let ledger = ledger.read().unwrap_or_else(|p| p.into_inner());
        let keys = ledger
            .identity()
            .keys_of(BOOTSTRAP_OPERATOR_ID)
            .into_iter()
            .filter(|k| k.status == Status::Active)
            .map(|k| k.key_id.clone())
            .collect();
        // A passkey signs in as the operator too: a reset that left it would leave whoever
        // registered it (with a leaked key, say) in charge.
        let passkeys = ledger.identity().principal(BOOTSTRAP_OPERATOR_ID).map_or_else(Vec::new, |operator| {
            operator.usable_passkeys().map(|passkey| passkey.credential_id.clone()).collect()
        });
        (keys, passkeys)
    };
    for key_id in active {
        node.commit(&Record { now_ns, ops: vec![Op::Identity(IdentityCommand::RevokeApiKey { key_id })] })?;
    }
    for credential_id in passkeys {
        let command = IdentityCommand::RemovePasskey { principal_id: BOOTSTRAP_OPERATOR_ID, credential_id };
        node.commit(&Record { now_ns, ops: vec![Op::Identity(command)] })?;
    }
    issue_key_offline(node, BOOTSTRAP_OPERATOR_ID, Scopes(Scopes::ALL), 0, env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resetting_the_operator_removes_its_passkeys_too() {
        use obol_core::identity::IdentityCommand;
        use obol_core::record::{Op, Record};
        let dir = std::env::temp_dir().join(format!("obol-reset-operator-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = obol_store::SqliteStore::open(&dir).unwrap();
        let mut node = obol_store::Node::open(store, 7).unwrap();
        reset_operator_key(&mut node, &crate::SystemEnv).unwrap();
        // A passkey registered on the operator (with a leaked key, say).
        let command = IdentityCommand::PutPasskey {
            principal_id: BOOTSTRAP_OPERATOR_ID,
            credential_id: vec![7; 32],
            data: b"{}".to_vec(),
        };
        node.commit(&Record { now_ns: 1, ops: vec![Op::Identity(command)] }).unwrap();
        let passkeys = |node: &obol_store::Node<obol_store::SqliteStore>| {
            let ledger = node.ledger();
            let ledger = ledger.read().unwrap();
            ledger.identity().principal(BOOTSTRAP_OPERATOR_ID).unwrap().passkeys.len()
        };
        assert_eq!(passkeys(&node), 1);
        reset_operator_key(&mut node, &crate::SystemEnv).unwrap();
        assert_eq!(passkeys(&node), 0, "the reset leaves no way in but the new key");
        drop(node);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn generated_keys_have_the_documented_shape_and_hash() {
        let key = generate_key(&crate::SystemEnv);
        let (key_id, secret) = split_key(&key.text).unwrap();
        assert_eq!(key_id, key.key_id);
        assert_eq!(secret.len(), 40, "160 bits as hex");
        assert!(key.phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{}", key.phc);
        assert!(!key.phc.contains(secret));
        let debug = format!("{key:?}");
        assert!(debug.contains(&key.key_id) && !debug.contains(secret) && !debug.contains(&key.phc), "{debug}");
        for bad in ["", "obol_live_", "obol_live_abc_def", "Bearer x", "obol_test_0123456789abcdef_00"] {
            assert!(split_key(bad).is_none(), "{bad}");
        }
    }
}

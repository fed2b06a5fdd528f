//! Device authentication: RFC 9421 HTTP Message Signatures with Ed25519 keys, RFC 9530
//! `Content-Digest` (sha-512) for bodies, and RFC 8037 JWKs for registering keys.
//!
//! A device signs each request. obol requires the signature to cover `@method`, `@target-uri`,
//! `authorization` when the request has one, and `content-digest` when it has a body; to carry
//! `created` and `keyid` (and `expires` or `nonce` if the client likes); to be at most
//! [`SIGNATURE_AGE_MAX_S`] old and at most [`CLOCK_SKEW_MAX_S`] in the future; and never to be
//! seen twice. Both signature forms are accepted: the dictionary member `sig1=:<base64>:` and a
//! bare base64 value (what the open-payments Rust client sends).

use std::collections::HashMap;
use std::sync::Mutex;

use base64ct::{Base64, Base64UrlUnpadded, Encoding};
use ed25519_dalek::{Signature, VerifyingKey};
use http::HeaderMap;
use sfv::{BareItem, FieldType, InnerList, Item, ListEntry, Parser};
use sha2::{Digest, Sha256, Sha512};

/// Oldest accepted `created`, in seconds before now.
pub const SIGNATURE_AGE_MAX_S: u64 = 300;
/// Furthest accepted `created` in the future (clock skew), in seconds. After a restart,
/// signatures created before the process started plus this much are refused: one made ahead of
/// time before the restart could not otherwise be told from a fresh one.
pub const CLOCK_SKEW_MAX_S: u64 = 15;
/// Most signatures remembered for replay detection per key id; past it that key's new
/// signatures are refused (fail closed) while other keys go on.
pub const REPLAY_ENTRIES_PER_KEY_MAX: usize = 1 << 16;

/// Why a signed request was refused. Each has a stable problem code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// Signature-Input or Signature is not valid structured-field syntax, or lacks a member.
    #[error("signature headers are malformed: {0}")]
    Malformed(String),
    /// A required component is not covered.
    #[error("the signature must cover {0}")]
    ComponentMissing(String),
    /// A covered component is absent from the request or not supported.
    #[error("covered component {0} cannot be built from this request")]
    ComponentUnavailable(String),
    /// `alg` names something other than ed25519.
    #[error("only ed25519 signatures are accepted")]
    AlgorithmUnsupported,
    /// `created` is too far in the future.
    #[error("the signature was created in the future: check the device clock")]
    CreatedInFuture,
    /// `created` is too old, or `expires` has passed, or the signature predates this server.
    #[error("the signature has expired; sign the request again")]
    Expired,
    /// The same signature (or nonce) was already used.
    #[error("this signature was already used; sign each request afresh")]
    Replayed,
    /// No active device has this key id.
    #[error("no device is registered with this key id")]
    UnknownKey,
    /// The device is revoked or suspended, or its holder is suspended.
    #[error("this device may not act: {0}")]
    DeviceInactive(&'static str),
    /// The signature does not verify.
    #[error("the signature does not verify")]
    Invalid,
    /// A body without a Content-Digest.
    #[error("a request with a body needs a Content-Digest header with sha-512")]
    DigestMissing,
    /// The Content-Digest does not match the body.
    #[error("the Content-Digest does not match the body")]
    DigestMismatch,
}

impl SigError {
    /// Stable problem code.
    pub fn code(&self) -> &'static str {
        match self {
            SigError::Malformed(_) => "signature_malformed",
            SigError::ComponentMissing(_) => "signature_component_missing",
            SigError::ComponentUnavailable(_) => "signature_component_unavailable",
            SigError::AlgorithmUnsupported => "signature_algorithm_unsupported",
            SigError::CreatedInFuture => "signature_clock_skew",
            SigError::Expired => "signature_expired",
            SigError::Replayed => "signature_replayed",
            SigError::UnknownKey => "signature_key_unknown",
            SigError::DeviceInactive(_) => "device_inactive",
            SigError::Invalid => "signature_invalid",
            SigError::DigestMissing => "content_digest_missing",
            SigError::DigestMismatch => "content_digest_mismatch",
        }
    }
}

/// One parsed `Signature-Input` member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureInput {
    /// The member's label (e.g. `sig1`).
    pub label: String,
    /// Covered component identifiers, in order (e.g. `@method`, `content-digest`).
    pub components: Vec<String>,
    /// The serialized inner list with its parameters: the `@signature-params` value.
    pub params_text: String,
    /// `created`, seconds since the Unix epoch.
    pub created_s: i64,
    /// `expires`, if given.
    pub expires_s: Option<i64>,
    /// `nonce`, if given.
    pub nonce: Option<String>,
    /// `keyid`.
    pub keyid: String,
    /// `alg`, if given.
    pub alg: Option<String>,
}

/// Parses every member of a `Signature-Input` header.
pub fn parse_signature_input(header: &str) -> Result<Vec<SignatureInput>, SigError> {
    let dictionary: sfv::Dictionary =
        Parser::new(header).parse().map_err(|e| SigError::Malformed(format!("Signature-Input: {e}")))?;
    let mut inputs = Vec::new();
    for (label, entry) in &dictionary {
        let ListEntry::InnerList(inner) = entry else {
            return Err(SigError::Malformed(format!("Signature-Input member {label} is not an inner list")));
        };
        let mut components = Vec::new();
        for item in &inner.items {
            let Some(name) = item.bare_item.as_string() else {
                return Err(SigError::Malformed("covered components are quoted strings".into()));
            };
            if !item.params.is_empty() {
                return Err(SigError::ComponentUnavailable(format!("{:?} with parameters", name.as_str())));
            }
            components.push(name.as_str().to_string());
        }
        let integer = |name: &str| -> Result<Option<i64>, SigError> {
            match inner.params.get(name) {
                None => Ok(None),
                Some(item) => item
                    .as_integer()
                    .map(|v| Some(i64::from(v)))
                    .ok_or_else(|| SigError::Malformed(format!("{name} must be an integer"))),
            }
        };
        let string = |name: &str| -> Result<Option<String>, SigError> {
            match inner.params.get(name) {
                None => Ok(None),
                Some(item) => item
                    .as_string()
                    .map(|v| Some(v.as_str().to_string()))
                    .ok_or_else(|| SigError::Malformed(format!("{name} must be a string"))),
            }
        };
        let created_s =
            integer("created")?.ok_or_else(|| SigError::ComponentMissing("the created parameter".into()))?;
        let keyid = string("keyid")?.ok_or_else(|| SigError::ComponentMissing("the keyid parameter".into()))?;
        let list: sfv::List = vec![ListEntry::InnerList(inner.clone())];
        let params_text = list.serialize().ok_or_else(|| SigError::Malformed("empty signature parameters".into()))?;
        inputs.push(SignatureInput {
            label: label.as_str().to_string(),
            components,
            params_text,
            created_s,
            expires_s: integer("expires")?,
            nonce: string("nonce")?,
            keyid,
            alg: string("alg")?,
        });
    }
    if inputs.is_empty() {
        return Err(SigError::Malformed("Signature-Input has no members".into()));
    }
    Ok(inputs)
}

/// The signature bytes for `label`: from a `Signature` dictionary member, or, when the header
/// is not a dictionary with that member, from a bare base64 value.
pub fn parse_signature(header: &str, label: &str) -> Result<Vec<u8>, SigError> {
    if let Ok(dictionary) = Parser::new(header).parse::<sfv::Dictionary>()
        && let Some(ListEntry::Item(item)) = dictionary.get(label)
        && let Some(bytes) = item.bare_item.as_byte_sequence()
    {
        return Ok(bytes.to_vec());
    }
    let bare = header.trim().trim_matches(':');
    Base64::decode_vec(bare)
        .map_err(|_| SigError::Malformed(format!("Signature has no byte sequence for {label} and is not base64")))
}

/// What a signature base is built from.
pub struct Message<'a> {
    /// Request method, upper case.
    pub method: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Host (and port) as the client addressed it.
    pub authority: &'a str,
    /// Path, at least `/`.
    pub path: &'a str,
    /// Query without `?`, if any.
    pub query: Option<&'a str>,
    /// Header fields.
    pub headers: &'a HeaderMap,
}

/// Builds the RFC 9421 §2.5 signature base.
pub fn signature_base(input: &SignatureInput, message: &Message<'_>) -> Result<String, SigError> {
    let mut base = String::new();
    for component in &input.components {
        let value = match component.as_str() {
            "@method" => message.method.to_string(),
            "@scheme" => message.scheme.to_string(),
            "@authority" => message.authority.to_ascii_lowercase(),
            "@path" => message.path.to_string(),
            "@query" => format!("?{}", message.query.unwrap_or("")),
            "@target-uri" => match message.query {
                Some(query) => format!("{}://{}{}?{}", message.scheme, message.authority, message.path, query),
                None => format!("{}://{}{}", message.scheme, message.authority, message.path),
            },
            "@request-target" => match message.query {
                Some(query) => format!("{}?{}", message.path, query),
                None => message.path.to_string(),
            },
            derived if derived.starts_with('@') => return Err(SigError::ComponentUnavailable(derived.into())),
            field => {
                if field.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(SigError::ComponentUnavailable(field.into()));
                }
                let values: Vec<&str> = message
                    .headers
                    .get_all(field)
                    .iter()
                    .map(|v| v.to_str().map(str::trim))
                    .collect::<Result<_, _>>()
                    .map_err(|_| SigError::ComponentUnavailable(field.into()))?;
                if values.is_empty() {
                    return Err(SigError::ComponentUnavailable(field.into()));
                }
                values.join(", ")
            }
        };
        if value.contains('\n') {
            return Err(SigError::ComponentUnavailable(component.clone()));
        }
        base.push_str(&format!("\"{component}\": {value}\n"));
    }
    base.push_str(&format!("\"@signature-params\": {}", input.params_text));
    Ok(base)
}

/// The `Content-Digest` value for `body` (RFC 9530, sha-512).
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-512=:{}:", Base64::encode_string(&Sha512::digest(body)))
}

/// Checks a `Content-Digest` header against `body`: its sha-512 member must match.
pub fn check_content_digest(header: Option<&str>, body: &[u8]) -> Result<(), SigError> {
    let header = header.ok_or(SigError::DigestMissing)?;
    let dictionary: sfv::Dictionary =
        Parser::new(header).parse().map_err(|e| SigError::Malformed(format!("Content-Digest: {e}")))?;
    let Some(ListEntry::Item(item)) = dictionary.get("sha-512") else {
        return Err(SigError::DigestMissing);
    };
    let claimed = item.bare_item.as_byte_sequence().ok_or(SigError::DigestMismatch)?;
    let actual = Sha512::digest(body);
    if claimed.len() != actual.len() || !constant_time_eq(claimed, &actual) {
        return Err(SigError::DigestMismatch);
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Verifies an Ed25519 signature (strictly: no malleable signatures, no weak keys).
pub fn verify_ed25519(public_key: &[u8; 32], base: &str, signature: &[u8]) -> Result<(), SigError> {
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| SigError::Invalid)?;
    let signature: [u8; 64] = signature.try_into().map_err(|_| SigError::Invalid)?;
    key.verify_strict(base.as_bytes(), &Signature::from_bytes(&signature)).map_err(|_| SigError::Invalid)
}

/// A public Ed25519 JWK (RFC 8037).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    /// The key.
    pub public_key: [u8; 32],
    /// `kid` if given, else the RFC 7638 thumbprint.
    pub kid: String,
}

/// Reads an RFC 8037 OKP/Ed25519 public JWK. A JWK with a private part (`d`) is refused: the
/// private key must never leave the device.
pub fn parse_jwk(jwk: &serde_json::Value) -> Result<PublicJwk, String> {
    let field = |name: &str| jwk.get(name).and_then(serde_json::Value::as_str);
    if field("kty") != Some("OKP") || field("crv") != Some("Ed25519") {
        return Err("the key must be a JWK with kty OKP and crv Ed25519".into());
    }
    if jwk.get("d").is_some() {
        return Err("the JWK holds a private key (d); send only the public key".into());
    }
    let x = field("x").ok_or("the JWK has no x")?;
    let bytes = Base64UrlUnpadded::decode_vec(x).map_err(|_| "x is not base64url without padding".to_string())?;
    let public_key: [u8; 32] = bytes.try_into().map_err(|_| "x must be 32 bytes".to_string())?;
    let key = VerifyingKey::from_bytes(&public_key).map_err(|_| "x is not a valid Ed25519 point".to_string())?;
    if key.is_weak() {
        // A small-order point verifies signatures that no secret key made.
        return Err("x is a small-order Ed25519 point, which any signature can match; use a real key".into());
    }
    let kid = match field("kid") {
        Some(kid) => kid.to_string(),
        None => thumbprint(x),
    };
    let max = obol_core::identity::KID_BYTES_MAX;
    if kid.is_empty() || kid.len() > max || !kid.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("kid must be 1 to {max} visible ASCII characters"));
    }
    Ok(PublicJwk { public_key, kid })
}

/// RFC 7638 thumbprint of an Ed25519 JWK with public value `x` (RFC 8037 §A.3).
pub fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    Base64UrlUnpadded::encode_string(&Sha256::digest(canonical.as_bytes()))
}

/// Remembers recent signatures, per key id, so that none is accepted twice, and refuses
/// signatures created before it could remember them (whose replay status it cannot know).
pub struct ReplayGuard {
    /// Key id to (signature or nonce digest to the time it may be forgotten, s).
    seen: Mutex<HashMap<String, HashMap<[u8; 32], u64>>>,
    /// Oldest `created` accepted.
    not_before_s: u64,
}

impl ReplayGuard {
    /// A guard for a server on a fresh store, started at `started_s`: no signature was seen
    /// before, so any created since the start is new.
    pub fn new(started_s: u64) -> ReplayGuard {
        ReplayGuard { seen: Mutex::new(HashMap::new()), not_before_s: started_s }
    }

    /// A guard for a server restarted at `started_s` on a store that served before: the
    /// previous run may have accepted signatures created up to [`CLOCK_SKEW_MAX_S`] ahead of
    /// the restart, so only later ones are accepted (a device whose request arrives in those
    /// first seconds signs again).
    pub fn after_restart(started_s: u64) -> ReplayGuard {
        ReplayGuard { seen: Mutex::new(HashMap::new()), not_before_s: started_s.saturating_add(CLOCK_SKEW_MAX_S) }
    }

    /// Checks the time window of `input` at `now_s`.
    pub fn check_time(&self, input: &SignatureInput, now_s: u64) -> Result<(), SigError> {
        let created = u64::try_from(input.created_s).map_err(|_| SigError::Expired)?;
        if created > now_s.saturating_add(CLOCK_SKEW_MAX_S) {
            return Err(SigError::CreatedInFuture);
        }
        if created.saturating_add(SIGNATURE_AGE_MAX_S) < now_s || created < self.not_before_s {
            return Err(SigError::Expired);
        }
        if let Some(expires) = input.expires_s
            && (expires < 0 || expires as u64 <= now_s)
        {
            return Err(SigError::Expired);
        }
        Ok(())
    }

    /// Records the signature (and nonce); fails if either was seen within the window.
    pub fn check_and_remember(&self, input: &SignatureInput, signature: &[u8], now_s: u64) -> Result<(), SigError> {
        // Remembered until `check_time` refuses it by age: past `created` + the age limit (a
        // future-dated signature is not forgotten while it is still young enough to pass).
        let created = u64::try_from(input.created_s).unwrap_or(0);
        let forget_at = created.max(now_s).saturating_add(SIGNATURE_AGE_MAX_S + 1);
        let signature_key: [u8; 32] =
            Sha256::digest([input.keyid.as_bytes(), b"\x00sig\x00", signature].concat()).into();
        let nonce_key: Option<[u8; 32]> = input
            .nonce
            .as_ref()
            .map(|nonce| Sha256::digest([input.keyid.as_bytes(), b"\x00nonce\x00", nonce.as_bytes()].concat()).into());
        let mut all = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let seen = all.entry(input.keyid.clone()).or_default();
        if seen.len() >= REPLAY_ENTRIES_PER_KEY_MAX {
            seen.retain(|_, until| *until > now_s);
            if seen.len() >= REPLAY_ENTRIES_PER_KEY_MAX {
                // Fail closed for this key only: better refuse than forget, and one device's
                // flood locks out no one else.
                return Err(SigError::Replayed);
            }
        }
        let seen = &mut *seen;
        let live = |key: &[u8; 32], seen: &HashMap<[u8; 32], u64>| seen.get(key).is_some_and(|until| *until > now_s);
        if live(&signature_key, seen) || nonce_key.is_some_and(|k| live(&k, seen)) {
            return Err(SigError::Replayed);
        }
        seen.insert(signature_key, forget_at);
        if let Some(key) = nonce_key {
            seen.insert(key, forget_at);
        }
        Ok(())
    }
}

/// Signs a request the way a device does (used by the CLI, the SDK and the tests): returns the
/// `Signature-Input` and `Signature` header values for label `sig1`.
pub fn sign_request(
    signing_key: &ed25519_dalek::SigningKey,
    keyid: &str,
    components: &[&str],
    created_s: i64,
    nonce: Option<&str>,
    message: &Message<'_>,
) -> Result<(String, String), SigError> {
    use ed25519_dalek::Signer;
    let items: Vec<Item> = components
        .iter()
        .map(|c| sfv::String::from_string((*c).to_string()).map(|s| Item::new(BareItem::String(s))))
        .collect::<Result<_, _>>()
        .map_err(|_| SigError::Malformed("component names are ASCII".into()))?;
    let mut inner = InnerList::new(items);
    inner.params.insert(
        sfv::key_ref("created").to_owned(),
        BareItem::Integer(sfv::Integer::try_from(created_s).map_err(|_| SigError::Malformed("created".into()))?),
    );
    inner.params.insert(
        sfv::key_ref("keyid").to_owned(),
        BareItem::String(sfv::String::from_string(keyid.to_string()).map_err(|_| SigError::Malformed("keyid".into()))?),
    );
    if let Some(nonce) = nonce {
        inner.params.insert(
            sfv::key_ref("nonce").to_owned(),
            BareItem::String(
                sfv::String::from_string(nonce.to_string()).map_err(|_| SigError::Malformed("nonce".into()))?,
            ),
        );
    }
    inner.params.insert(
        sfv::key_ref("alg").to_owned(),
        BareItem::String(
            sfv::String::from_string("ed25519".to_string()).map_err(|_| SigError::Malformed("alg".into()))?,
        ),
    );
    let list: sfv::List = vec![ListEntry::InnerList(inner)];
    let params_text = list.serialize().ok_or_else(|| SigError::Malformed("empty".into()))?;
    let input = SignatureInput {
        label: "sig1".into(),
        components: components.iter().map(|c| (*c).to_string()).collect(),
        params_text: params_text.clone(),
        created_s,
        expires_s: None,
        nonce: nonce.map(str::to_string),
        keyid: keyid.into(),
        alg: Some("ed25519".into()),
    };
    let base = signature_base(&input, message)?;
    let signature = signing_key.sign(base.as_bytes());
    Ok((format!("sig1={params_text}"), format!("sig1=:{}:", Base64::encode_string(&signature.to_bytes()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(keyid: &str, created_s: i64) -> SignatureInput {
        SignatureInput {
            label: "sig1".into(),
            components: vec!["@method".into()],
            params_text: String::new(),
            created_s,
            expires_s: None,
            nonce: None,
            keyid: keyid.into(),
            alg: None,
        }
    }

    #[test]
    fn r10_11_a_future_dated_signature_is_never_accepted_twice() {
        let guard = ReplayGuard::new(1_000);
        let created = 2_000 + CLOCK_SKEW_MAX_S;
        let signed = input("meter", created as i64);
        assert_eq!(guard.check_time(&signed, 2_000), Ok(()));
        assert_eq!(guard.check_and_remember(&signed, b"sig", 2_000), Ok(()));
        for later in [2_001, created + SIGNATURE_AGE_MAX_S - 1, created + SIGNATURE_AGE_MAX_S] {
            assert_eq!(guard.check_time(&signed, later), Ok(()), "still young enough at {later}");
            assert_eq!(guard.check_and_remember(&signed, b"sig", later), Err(SigError::Replayed), "at {later}");
        }
        assert_eq!(guard.check_time(&signed, created + SIGNATURE_AGE_MAX_S + 1), Err(SigError::Expired));
    }

    #[test]
    fn r10_11_after_a_restart_signatures_the_last_run_could_have_seen_are_refused() {
        let guard = ReplayGuard::after_restart(5_000);
        // Made ahead of time before the restart, and fresh-looking after it.
        assert_eq!(
            guard.check_time(&input("meter", 5_000 + CLOCK_SKEW_MAX_S as i64 - 1), 5_010),
            Err(SigError::Expired)
        );
        assert_eq!(guard.check_time(&input("meter", 5_000 + CLOCK_SKEW_MAX_S as i64), 5_020), Ok(()));
    }

    #[test]
    fn r10_10_one_key_filling_its_replay_memory_locks_out_no_other_key() {
        let guard = ReplayGuard::new(1_000);
        for n in 0..REPLAY_ENTRIES_PER_KEY_MAX {
            let signature = (n as u64).to_le_bytes();
            assert_eq!(guard.check_and_remember(&input("flood", 1_000), &signature, 1_000), Ok(()));
        }
        assert_eq!(guard.check_and_remember(&input("flood", 1_000), b"one more", 1_000), Err(SigError::Replayed));
        assert_eq!(guard.check_and_remember(&input("meter", 1_000), b"honest", 1_000), Ok(()), "other keys go on");
    }
}

//! Browser sessions for the dashboard. A person signs in once, with a passkey, or with an API key
//! and, when their principal has confirmed TOTP, its current code. The browser then carries an
//! opaque token in a `__Host-` cookie (HttpOnly, Secure, SameSite=Strict) instead of the key.
//! Every request through a session is checked again against the key or passkey it came from, so a
//! revoked key, a disabled passkey, a suspended principal or an expired key ends its sessions at
//! once. A session ends when it has been idle
//! [`IDLE_NS_DEFAULT`], or [`ABSOLUTE_NS_DEFAULT`] after sign-in, whichever comes first. These are
//! NIST SP 800-63B-4's AAL3 limits (12 h, 15 min), stricter than the AAL2 limits (24 h, 1 h).
//!
//! Sessions live in memory only, and a restart signs everyone out. That fails closed: no
//! session outlives a sign-out everywhere, a revoked key or a restart. Only SHA-256 digests of
//! the tokens are held. A session also has a CSRF token, which the browser sends back in the
//! `X-CSRF-Token` header with every request that changes something.

use std::collections::HashMap;
use std::sync::Mutex;

use base64ct::{Base64UrlUnpadded, Encoding};
use sha2::{Digest, Sha256};

use crate::App;
use crate::auth::{Caller, Via};
use crate::env::Env;
use crate::error::Error;
use obol_core::identity::Role;

/// A session ends after this long without a request (15 minutes).
pub const IDLE_NS_DEFAULT: u64 = 15 * 60 * 1_000_000_000;
/// A session ends this long after sign-in, however busy (12 hours).
pub const ABSOLUTE_NS_DEFAULT: u64 = 12 * 3_600 * 1_000_000_000;
/// Sessions held at most; the least recently used one goes first.
pub const SESSIONS_MAX: usize = 10_000;
/// Sessions per principal at most; signing in once more ends its least recently used one.
pub const SESSIONS_PER_PRINCIPAL_MAX: usize = 16;
/// The cookie's name. The `__Host-` prefix makes browsers refuse it unless it is Secure, has
/// `Path=/` and no `Domain`, so no other host or path can set or read it.
pub const COOKIE_NAME: &str = "__Host-obol_session";

/// One signed-in browser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Who signed in.
    pub principal_id: u128,
    /// What signed in: an API key (the session may do what the key may) or a passkey (every
    /// scope). Never a device.
    pub credential: Via,
    /// Whether a second factor (TOTP, or the passkey's user verification) was checked at sign-in.
    pub second_factor: bool,
    /// The token the browser sends back in `X-CSRF-Token` with requests that change something.
    pub csrf_token: String,
    /// When the person signed in, ns since the Unix epoch.
    pub created_ns: u64,
    /// The last request through the session.
    pub last_seen_ns: u64,
}

/// The sessions of a server.
pub struct Sessions {
    by_digest: Mutex<HashMap<[u8; 32], Session>>,
    idle_ns: u64,
    absolute_ns: u64,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions::new(IDLE_NS_DEFAULT, ABSOLUTE_NS_DEFAULT)
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn random_token(env: &dyn Env) -> String {
    let mut bytes = [0u8; 32];
    env.fill(&mut bytes);
    Base64UrlUnpadded::encode_string(&bytes)
}

/// Whether two texts are equal, in time that depends only on their lengths.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

impl Sessions {
    /// Sessions that end after `idle_ns` without a request or `absolute_ns` after sign-in.
    pub fn new(idle_ns: u64, absolute_ns: u64) -> Sessions {
        assert!(idle_ns > 0 && absolute_ns >= idle_ns, "a session needs an idle limit within its absolute one");
        Sessions { by_digest: Mutex::new(HashMap::new()), idle_ns, absolute_ns }
    }

    /// The idle limit, ns.
    pub fn idle_ns(&self) -> u64 {
        self.idle_ns
    }

    /// The absolute limit, ns.
    pub fn absolute_ns(&self) -> u64 {
        self.absolute_ns
    }

    fn live(&self, session: &Session, now_ns: u64) -> bool {
        now_ns < session.created_ns.saturating_add(self.absolute_ns)
            && now_ns < session.last_seen_ns.saturating_add(self.idle_ns)
    }

    /// When `session` ends if no request comes: the earlier of its idle and absolute ends.
    pub fn ends_ns(&self, session: &Session) -> u64 {
        session.last_seen_ns.saturating_add(self.idle_ns).min(session.created_ns.saturating_add(self.absolute_ns))
    }

    /// Opens a session: answers the token for the cookie (shown once) and the session.
    pub fn open(
        &self,
        env: &dyn Env,
        principal_id: u128,
        credential: Via,
        second_factor: bool,
        now_ns: u64,
    ) -> (String, Session) {
        let token = random_token(env);
        let session = Session {
            principal_id,
            credential,
            second_factor,
            csrf_token: random_token(env),
            created_ns: now_ns,
            last_seen_ns: now_ns,
        };
        let mut sessions = self.by_digest.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| self.live(s, now_ns));
        let least_recent = |sessions: &HashMap<[u8; 32], Session>, of: Option<u128>| {
            sessions
                .iter()
                .filter(|(_, s)| of.is_none_or(|p| s.principal_id == p))
                .min_by_key(|(_, s)| s.last_seen_ns)
                .map(|(d, _)| *d)
        };
        if sessions.values().filter(|s| s.principal_id == principal_id).count() >= SESSIONS_PER_PRINCIPAL_MAX
            && let Some(oldest) = least_recent(&sessions, Some(principal_id))
        {
            sessions.remove(&oldest);
        }
        if sessions.len() >= SESSIONS_MAX
            && let Some(oldest) = least_recent(&sessions, None)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(digest(&token), session.clone());
        (token, session)
    }

    /// The session of `token` at `now_ns`, if it is live; a request through it restarts its idle
    /// timer. An ended session is forgotten.
    pub fn touch(&self, token: &str, now_ns: u64) -> Option<Session> {
        let key = digest(token);
        let mut sessions = self.by_digest.lock().unwrap_or_else(|p| p.into_inner());
        let session = sessions.get_mut(&key)?;
        if !self.live(session, now_ns) {
            sessions.remove(&key);
            return None;
        }
        session.last_seen_ns = session.last_seen_ns.max(now_ns);
        Some(session.clone())
    }

    /// Records that the session of `token` has checked a second factor (its person confirmed
    /// TOTP through it with a current code).
    pub fn mark_second_factor(&self, token: &str) {
        if let Some(session) = self.by_digest.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&digest(token)) {
            session.second_factor = true;
        }
    }

    /// Ends the session of `token`; answers whether there was one.
    pub fn close(&self, token: &str) -> bool {
        self.by_digest.lock().unwrap_or_else(|p| p.into_inner()).remove(&digest(token)).is_some()
    }

    /// Ends every session of `principal_id` (sign out everywhere); answers how many.
    pub fn close_all(&self, principal_id: u128) -> usize {
        let mut sessions = self.by_digest.lock().unwrap_or_else(|p| p.into_inner());
        let before = sessions.len();
        sessions.retain(|_, s| s.principal_id != principal_id);
        before - sessions.len()
    }

    /// Ends every session opened with `key_id` (the key was revoked; a rotated key's sessions
    /// end when its overlap does, checked at each request).
    pub fn close_key(&self, key_id: &str) -> usize {
        let mut sessions = self.by_digest.lock().unwrap_or_else(|p| p.into_inner());
        let before = sessions.len();
        sessions.retain(|_, s| !matches!(&s.credential, Via::ApiKey(k) if k == key_id));
        before - sessions.len()
    }

    /// Live sessions of `principal_id` at `now_ns`.
    pub fn count(&self, principal_id: u128, now_ns: u64) -> usize {
        let sessions = self.by_digest.lock().unwrap_or_else(|p| p.into_inner());
        sessions.values().filter(|s| s.principal_id == principal_id && self.live(s, now_ns)).count()
    }
}

/// Whether `session` no longer meets [`sign_in`]'s rule: opened with a key alone, before its
/// person set up TOTP, which signing in needs now (the session TOTP was confirmed through
/// checked a code, [`Sessions::mark_second_factor`]). Such a session ends.
pub fn needs_code_now(ledger: &obol_core::ledger::Ledger, session: &Session) -> bool {
    matches!(session.credential, Via::ApiKey(_))
        && !session.second_factor
        && ledger.identity().principal(session.principal_id).is_some_and(|p| p.has_totp())
}

/// Signs in `caller` (authenticated by an API key): when its principal has confirmed TOTP, `code`
/// must be its current code, or `recovery_code` one of its recovery codes (checked with the
/// same lockout as a step-up). Answers the cookie's token and the session.
pub async fn sign_in(
    state: &App,
    caller: &Caller,
    code: Option<&str>,
    recovery_code: Option<&str>,
) -> Result<(String, Session), Error> {
    let Via::ApiKey(key_id) = &caller.via else { return Err(Error::Unauthorized) };
    let has_totp = {
        let ledger = crate::read_ledger(state);
        let principal = ledger.identity().principal(caller.principal_id).ok_or(Error::Unauthorized)?;
        principal.has_totp()
    };
    let code = code.map(str::trim).filter(|c| !c.is_empty());
    let recovery_code = recovery_code.map(str::trim).filter(|c| !c.is_empty());
    let second_factor = match (has_totp, code, recovery_code) {
        (true, None, None) => return Err(Error::SecondFactorRequired),
        (true, code, recovery_code) => {
            crate::stepup::check_factor(state, caller.principal_id, code, recovery_code).await?;
            true
        }
        (false, _, _) => false,
    };
    let credential = Via::ApiKey(key_id.clone());
    Ok(state.sessions.open(&*state.env, caller.principal_id, credential, second_factor, state.env.now_ns()))
}

/// Signs in with a passkey: finishes the assertion of sign-in ceremony `ceremony_id` (started by
/// [`crate::passkeys::start_sign_in`]) and opens a session for its principal. Every failure is
/// the same `unauthorized`, whether the principal exists or not.
pub async fn sign_in_with_passkey(
    state: &App,
    ceremony_id: &str,
    credential: serde_json::Value,
) -> Result<(String, Session), Error> {
    let (principal_id, credential_id) = crate::passkeys::finish_sign_in(state, ceremony_id, credential).await?;
    Ok(state.sessions.open(&*state.env, principal_id, Via::Passkey(credential_id), true, state.env.now_ns()))
}

/// Ends every session of principal `principal` (sign out everywhere): the principal itself or
/// the operator may. Answers how many ended.
pub fn sign_out_everywhere(state: &App, caller: &Caller, principal: &str) -> Result<usize, Error> {
    crate::authz::need_scope(caller, obol_core::identity::Scopes::MANAGE)?;
    let principal_id = crate::parse_id("id", principal)?;
    if caller.role != Role::Operator && caller.principal_id != principal_id {
        return Err(Error::PrincipalNotFound(principal_id));
    }
    Ok(state.sessions.close_all(principal_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::SystemEnv;

    const MINUTE_NS: u64 = 60 * 1_000_000_000;

    fn key(id: &str) -> Via {
        Via::ApiKey(id.to_string())
    }

    #[test]
    fn a_session_ends_when_idle_and_at_its_absolute_limit_whichever_is_first() {
        let sessions = Sessions::default();
        let start = 1_000 * MINUTE_NS;
        let (token, opened) = sessions.open(&SystemEnv, 7, key("k"), true, start);
        assert_eq!(opened.csrf_token.len(), 43, "256 bits, base64url");
        assert_ne!(token, opened.csrf_token);
        // Busy all day: a request every 14 minutes keeps it alive until 12 hours.
        let mut now = start;
        while now + 14 * MINUTE_NS < start + 12 * 60 * MINUTE_NS {
            now += 14 * MINUTE_NS;
            assert!(sessions.touch(&token, now).is_some(), "alive at {} min", (now - start) / MINUTE_NS);
        }
        assert!(sessions.touch(&token, start + 12 * 60 * MINUTE_NS).is_none(), "12 hours is the most");
        assert!(sessions.touch(&token, start).is_none(), "an ended session is forgotten");
        // Idle: 15 minutes without a request ends it.
        let (token, _) = sessions.open(&SystemEnv, 7, key("k"), true, start);
        assert!(sessions.touch(&token, start + 15 * MINUTE_NS - 1).is_some());
        assert!(sessions.touch(&token, start + 29 * MINUTE_NS).is_some());
        assert!(sessions.touch(&token, start + 45 * MINUTE_NS).is_none(), "idle from 29 to 45 minutes");
        assert!(sessions.touch("not a token", start).is_none());
    }

    #[test]
    fn sign_out_everywhere_ends_only_that_principals_sessions_and_each_principal_has_a_bound() {
        let sessions = Sessions::default();
        let (a1, _) = sessions.open(&SystemEnv, 1, key("ka"), false, 10);
        let (a2, _) = sessions.open(&SystemEnv, 1, key("ka"), false, 11);
        let (b, _) = sessions.open(&SystemEnv, 2, key("kb"), false, 12);
        assert_eq!(sessions.close_all(1), 2);
        assert!(sessions.touch(&a1, 13).is_none() && sessions.touch(&a2, 13).is_none());
        assert!(sessions.touch(&b, 13).is_some(), "another principal's session stays");
        assert!(sessions.close(&b) && !sessions.close(&b));
        let tokens: Vec<String> = (0..SESSIONS_PER_PRINCIPAL_MAX as u64 + 1)
            .map(|n| sessions.open(&SystemEnv, 3, key("kc"), false, 100 + n).0)
            .collect();
        assert_eq!(sessions.count(3, 200), SESSIONS_PER_PRINCIPAL_MAX);
        assert!(sessions.touch(&tokens[0], 200).is_none(), "the least recently used went first");
        assert!(sessions.touch(&tokens[1], 200).is_some());
        assert_eq!(sessions.close_key("kc"), SESSIONS_PER_PRINCIPAL_MAX);
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("abc", "ab"));
    }
}

//! Passkeys (WebAuthn, via webauthn-rs): registration and authentication ceremonies through the
//! API. Authentication always requires user verification; a signature counter that goes
//! backwards marks the credential as cloned and disables it. A passkey approves step-up
//! challenges like a TOTP code does, through `POST /v1/challenges/{id}/approve`, and signs a
//! person in to the dashboard (`POST /v1/sessions/passkey`, then `POST /v1/sessions`): the
//! person names their principal, and every answer lists no credential (passkeys are registered
//! as discoverable credentials, which the authenticator finds by itself): a principal that does
//! not exist or has no passkey gets options identical but for the random challenge, so the answer
//! does not tell who has one, nor how many.

use std::collections::HashMap;
use std::sync::Mutex;

use base64ct::{Base64UrlUnpadded, Encoding};
use serde::Serialize;
use webauthn_rs::prelude::{
    AuthenticationResult, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder, WebauthnError,
};

use crate::auth::Caller;
use crate::authz::need_scope;
use crate::error::Error;
use crate::identity::run_identity;
use crate::{App, read_ledger};
use obol_core::identity::{IdentityCommand, IdentityResult, Scopes};

/// How long a ceremony may take between start and finish.
pub(crate) const CEREMONY_TTL_NS: u64 = 300 * 1_000_000_000;
/// Most ceremonies in flight.
pub(crate) const CEREMONIES_MAX: usize = 10_000;
/// Most ceremonies in flight per principal: one principal cannot fill the table for everyone.
/// Sign-ins are counted per client address instead, so nobody can keep another person from
/// signing in by opening ceremonies in their name.
pub(crate) const CEREMONIES_PER_PRINCIPAL_MAX: usize = 8;
/// How long a browser may take over a sign-in assertion, ms (the options' `timeout`).
const SIGN_IN_TIMEOUT_MS: u64 = 300_000;

pub(crate) enum CeremonyState {
    Register(Box<PasskeyRegistration>),
    Authenticate { challenge_id: String, state: Box<PasskeyAuthentication> },
}

pub(crate) struct Ceremony {
    principal_id: u128,
    expires_ns: u64,
    state: CeremonyState,
}

/// A dashboard sign-in in flight. Sign-ins have their own table, bounded per client address
/// (an IPv6 client by its /64): nobody fills the table registrations and step-up approvals use,
/// and a client over its bound pushes out its own oldest sign-in, not someone else's. When the
/// whole table is full, the oldest sign-in of the network holding the most (an IPv4 /16, an IPv6
/// /48) goes: one who floods it from many addresses of a few networks pushes out its own.
/// A decoy (a principal without passkeys) is kept like a real sign-in, without its state, so
/// the table behaves the same whoever was named.
struct SignIn {
    principal_id: u128,
    client: u128,
    network: u128,
    started_ns: u64,
    authentication: Option<Box<PasskeyAuthentication>>,
}

/// Where a sign-in comes from: its client (an IPv4 address, an IPv6 /64) and network (an IPv4
/// /16, an IPv6 /48), each a number with the family in its top bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignInOrigin {
    client: u128,
    network: u128,
}

impl SignInOrigin {
    /// The origin of a request from `address` (none: one shared origin).
    pub fn of(address: Option<std::net::IpAddr>) -> SignInOrigin {
        const V4: u128 = 1 << 127;
        match address {
            Some(std::net::IpAddr::V4(v4)) => {
                let bits = u128::from(v4.to_bits());
                SignInOrigin { client: V4 | bits, network: V4 | (bits >> 16) }
            }
            Some(std::net::IpAddr::V6(v6)) => {
                let bits = v6.to_bits();
                SignInOrigin { client: bits >> 64, network: bits >> 80 }
            }
            None => SignInOrigin { client: 0, network: 0 },
        }
    }
}

/// Sign-ins in flight at most; past it, the oldest of the busiest network goes.
const SIGN_INS_MAX: usize = 10_000;
/// Sign-ins in flight per client address at most; past it, that client's oldest goes.
const SIGN_INS_PER_CLIENT_MAX: usize = 8;

/// The relying party and the ceremonies in flight (in memory: a restart ends them).
pub struct Passkeys {
    webauthn: Webauthn,
    rp_id: String,
    ceremonies: Mutex<HashMap<String, Ceremony>>,
    sign_ins: Mutex<HashMap<String, SignIn>>,
}

fn new_ceremony_id(env: &dyn crate::Env) -> String {
    let mut id = [0u8; 16];
    env.fill(&mut id);
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl Passkeys {
    /// A relying party `rp_id` (a domain, e.g. `localhost` or `pay.example.com`) whose pages run at
    /// `origin` (any port of it is accepted).
    pub fn new(rp_id: &str, origin: &str) -> Result<Passkeys, String> {
        let origin = Url::parse(origin).map_err(|e| format!("invalid WebAuthn origin {origin:?}: {e}"))?;
        let webauthn = WebauthnBuilder::new(rp_id, &origin)
            .and_then(|b| b.rp_name("obol").allow_any_port(true).build())
            .map_err(|e| format!("WebAuthn relying party {rp_id:?} at {origin}: {e}"))?;
        Ok(Passkeys {
            webauthn,
            rp_id: rp_id.to_string(),
            ceremonies: Mutex::new(HashMap::new()),
            sign_ins: Mutex::new(HashMap::new()),
        })
    }

    fn start(&self, env: &dyn crate::Env, principal_id: u128, state: CeremonyState) -> Result<String, Error> {
        let now = env.now_ns();
        let mut ceremonies = self.ceremonies.lock().unwrap_or_else(|p| p.into_inner());
        let open_of = |ceremonies: &HashMap<String, Ceremony>| {
            ceremonies.values().filter(|c| c.principal_id == principal_id && c.expires_ns > now).count()
        };
        if open_of(&ceremonies) >= CEREMONIES_PER_PRINCIPAL_MAX {
            return Err(Error::RateLimited(CEREMONY_TTL_NS / 1_000_000_000));
        }
        if ceremonies.len() >= CEREMONIES_MAX {
            ceremonies.retain(|_, c| c.expires_ns > now);
            if ceremonies.len() >= CEREMONIES_MAX {
                return Err(Error::Overloaded);
            }
        }
        let id = new_ceremony_id(env);
        ceremonies.insert(id.clone(), Ceremony { principal_id, expires_ns: now + CEREMONY_TTL_NS, state });
        Ok(id)
    }

    /// Keeps a sign-in of `principal_id` from `origin` (`authentication` is none for a decoy);
    /// answers its ceremony id.
    fn start_sign_in(
        &self,
        env: &dyn crate::Env,
        principal_id: u128,
        origin: SignInOrigin,
        authentication: Option<PasskeyAuthentication>,
    ) -> String {
        let now = env.now_ns();
        let mut sign_ins = self.sign_ins.lock().unwrap_or_else(|p| p.into_inner());
        sign_ins.retain(|_, s| s.started_ns.saturating_add(CEREMONY_TTL_NS) > now);
        let oldest_where = |sign_ins: &HashMap<String, SignIn>, keep: &dyn Fn(&SignIn) -> bool| {
            sign_ins.iter().filter(|(_, s)| keep(s)).min_by_key(|(_, s)| s.started_ns).map(|(id, _)| id.clone())
        };
        if sign_ins.values().filter(|s| s.client == origin.client).count() >= SIGN_INS_PER_CLIENT_MAX
            && let Some(id) = oldest_where(&sign_ins, &|s| s.client == origin.client)
        {
            sign_ins.remove(&id);
        }
        if sign_ins.len() >= SIGN_INS_MAX {
            let mut per_network: HashMap<u128, usize> = HashMap::new();
            for sign_in in sign_ins.values() {
                *per_network.entry(sign_in.network).or_default() += 1;
            }
            // This origin's network counts the sign-in it is adding, so a tie goes against it.
            *per_network.entry(origin.network).or_default() += 1;
            let busiest = per_network
                .iter()
                .max_by_key(|(network, count)| (**count, **network == origin.network))
                .map(|(network, _)| *network);
            if let Some(network) = busiest
                && let Some(id) = oldest_where(&sign_ins, &|s| s.network == network)
            {
                sign_ins.remove(&id);
            }
        }
        let id = new_ceremony_id(env);
        let sign_in = SignIn {
            principal_id,
            client: origin.client,
            network: origin.network,
            started_ns: now,
            authentication: authentication.map(Box::new),
        };
        sign_ins.insert(id.clone(), sign_in);
        id
    }

    /// Takes a sign-in (each is used once) if it is still open: its principal and state (none
    /// for a decoy).
    fn take_sign_in(&self, id: &str, now_ns: u64) -> Option<(u128, Option<Box<PasskeyAuthentication>>)> {
        let mut sign_ins = self.sign_ins.lock().unwrap_or_else(|p| p.into_inner());
        match sign_ins.remove(id) {
            Some(s) if s.started_ns.saturating_add(CEREMONY_TTL_NS) > now_ns => {
                Some((s.principal_id, s.authentication))
            }
            _ => None,
        }
    }

    /// The options of a sign-in with `challenge` (base64url): the same fields for everyone, with
    /// no credential listed, so they say nothing of the principal named but the challenge.
    fn sign_in_options(&self, challenge: &str) -> serde_json::Value {
        serde_json::json!({"publicKey": {
            "challenge": challenge,
            "timeout": SIGN_IN_TIMEOUT_MS,
            "rpId": self.rp_id,
            "allowCredentials": [],
            "userVerification": "required",
        }})
    }

    /// Takes a ceremony (each is used once) if it belongs to `principal_id` and is still open.
    fn take(&self, id: &str, principal_id: u128, now_ns: u64) -> Result<CeremonyState, Error> {
        let mut ceremonies = self.ceremonies.lock().unwrap_or_else(|p| p.into_inner());
        match ceremonies.remove(id) {
            Some(c) if c.principal_id == principal_id && c.expires_ns > now_ns => Ok(c.state),
            _ => Err(Error::InvalidField(format!("passkey ceremony {id} is unknown, expired or already used"))),
        }
    }
}

pub(crate) fn stored_passkeys(state: &App, principal_id: u128) -> Result<Vec<Passkey>, Error> {
    let ledger = read_ledger(state);
    let principal = ledger.identity().principal(principal_id).ok_or(Error::PrincipalNotFound(principal_id))?;
    principal
        .usable_passkeys()
        .map(|record| {
            serde_json::from_slice(&record.data).map_err(|e| Error::Internal(format!("stored passkey unreadable: {e}")))
        })
        .collect()
}

pub(crate) fn to_value<T: Serialize>(value: &T) -> Result<serde_json::Value, Error> {
    serde_json::to_value(value).map_err(|e| Error::Internal(format!("WebAuthn options: {e}")))
}

/// How a passkey assertion went.
pub(crate) enum AssertionOutcome {
    /// Verified with user verification; the stored counter is updated.
    Verified,
    /// Not verified (wrong credential, no user verification, bad signature).
    Failed,
    /// The counter went backwards: the credential is disabled.
    CloneSuspected,
}

/// Verifies `assertion` for challenge `challenge_id` and keeps the stored credential current.
pub(crate) async fn verify_assertion(
    state: &App,
    principal_id: u128,
    challenge_id: &str,
    ceremony_id: &str,
    credential: serde_json::Value,
) -> Result<AssertionOutcome, Error> {
    let CeremonyState::Authenticate { challenge_id: bound, state: authentication } =
        state.passkeys.take(ceremony_id, principal_id, state.env.now_ns())?
    else {
        return Err(Error::InvalidField("that ceremony is not an assertion".into()));
    };
    if bound != challenge_id {
        return Err(Error::InvalidField("that passkey ceremony belongs to another challenge".into()));
    }
    let Ok(credential) = serde_json::from_value::<PublicKeyCredential>(credential) else {
        return Ok(AssertionOutcome::Failed);
    };
    Ok(assert_with(state, principal_id, &credential, &authentication).await?.0)
}

/// Checks `credential` against `authentication` for `principal_id`: a verified assertion (with
/// user verification) keeps the stored counter current and answers the credential's id; a
/// counter that went backwards disables the credential.
async fn assert_with(
    state: &App,
    principal_id: u128,
    credential: &PublicKeyCredential,
    authentication: &PasskeyAuthentication,
) -> Result<(AssertionOutcome, Option<Vec<u8>>), Error> {
    if made_in_a_frame(credential) {
        return Ok((AssertionOutcome::Failed, None));
    }
    match state.passkeys.webauthn.finish_passkey_authentication(credential, authentication) {
        Ok(result) if result.user_verified() => {
            keep_current(state, principal_id, &result).await?;
            Ok((AssertionOutcome::Verified, Some(AsRef::<[u8]>::as_ref(result.cred_id()).to_vec())))
        }
        Ok(_) => Ok((AssertionOutcome::Failed, None)),
        Err(WebauthnError::CredentialPossibleCompromise) => {
            let credential_id = AsRef::<[u8]>::as_ref(&credential.raw_id).to_vec();
            run_identity(state, IdentityCommand::DisablePasskey { principal_id, credential_id }).await?;
            Ok((AssertionOutcome::CloneSuspected, None))
        }
        Err(_) => Ok((AssertionOutcome::Failed, None)),
    }
}

/// Whether the browser says the assertion was made in a frame of another origin (client data
/// `crossOrigin: true`). webauthn-rs refuses that at registration only; obol's pages may not be
/// framed at all, so an assertion from a frame is refused too, and one whose client data does
/// not parse fails webauthn-rs's own checks.
fn made_in_a_frame(credential: &PublicKeyCredential) -> bool {
    let client_data: &[u8] = credential.response.client_data_json.as_ref();
    serde_json::from_slice::<serde_json::Value>(client_data)
        .ok()
        .and_then(|data| data.get("crossOrigin").and_then(serde_json::Value::as_bool))
        .unwrap_or(false)
}

/// Stores the passkey's new signature counter after a verified assertion.
async fn keep_current(state: &App, principal_id: u128, result: &AuthenticationResult) -> Result<(), Error> {
    let mut passkeys = stored_passkeys(state, principal_id)?;
    if let Some(passkey) = passkeys.iter_mut().find(|p| p.cred_id() == result.cred_id())
        && passkey.update_credential(result) == Some(true)
    {
        let data = serde_json::to_vec(&*passkey).map_err(|e| Error::Internal(format!("passkey: {e}")))?;
        let credential_id = AsRef::<[u8]>::as_ref(passkey.cred_id()).to_vec();
        run_identity(state, IdentityCommand::PutPasskey { principal_id, credential_id, data }).await?;
    }
    Ok(())
}

/// Starts a dashboard sign-in for the principal a person named (`principal`, its id as typed),
/// from `client` (the address sign-ins are counted against): answers the ceremony id and the
/// options for `navigator.credentials.get`. The options list no credential, whoever is named:
/// the person's authenticator offers the discoverable passkeys it holds for this site, and the
/// finish accepts only one of the named principal's. A principal that does not exist or has no
/// usable passkey gets the same options (a fresh challenge of the same length) and a sign-in
/// kept like a real one, which fails as a wrong passkey would.
pub fn start_sign_in(
    state: &App,
    principal: &str,
    client: Option<std::net::IpAddr>,
) -> Result<(String, serde_json::Value), Error> {
    let principal_id = crate::parse_id("principal_id", principal.trim())?;
    let origin = SignInOrigin::of(client);
    let passkeys = stored_passkeys(state, principal_id).unwrap_or_default();
    let env = &*state.env;
    if passkeys.is_empty() {
        let mut challenge = [0u8; SIGN_IN_CHALLENGE_BYTES];
        env.fill(&mut challenge);
        let options = state.passkeys.sign_in_options(&Base64UrlUnpadded::encode_string(&challenge));
        return Ok((state.passkeys.start_sign_in(env, principal_id, origin, None), options));
    }
    let (options, authentication) = state
        .passkeys
        .webauthn
        .start_passkey_authentication(&passkeys)
        .map_err(|e| Error::Internal(format!("WebAuthn authentication start: {e}")))?;
    // webauthn-rs keeps the challenge and the allowed credentials in `authentication`; the client
    // gets the challenge alone, re-encoded as the decoy's is.
    let challenge: &[u8] = options.public_key.challenge.as_ref();
    if challenge.len() != SIGN_IN_CHALLENGE_BYTES {
        return Err(Error::Internal(format!("WebAuthn challenge of {} bytes", challenge.len())));
    }
    let options = state.passkeys.sign_in_options(&Base64UrlUnpadded::encode_string(challenge));
    let ceremony_id = state.passkeys.start_sign_in(env, principal_id, origin, Some(authentication));
    Ok((ceremony_id, options))
}

/// Bytes of a sign-in challenge: webauthn-rs's, and the decoy's to match.
const SIGN_IN_CHALLENGE_BYTES: usize = 32;

/// Finishes a dashboard sign-in: answers the principal and the passkey's credential id
/// (base64url) when `credential` is a verified assertion (with user verification) for ceremony
/// `ceremony_id`. Any other answer, for a real principal or a decoy, is `unauthorized`; a
/// suspended principal that proved its passkey is told it is suspended.
pub async fn finish_sign_in(
    state: &App,
    ceremony_id: &str,
    credential: serde_json::Value,
) -> Result<(u128, String), Error> {
    let Some((principal_id, authentication)) = state.passkeys.take_sign_in(ceremony_id, state.env.now_ns()) else {
        return Err(Error::Unauthorized);
    };
    let Ok(credential) = serde_json::from_value::<PublicKeyCredential>(credential) else {
        return Err(Error::Unauthorized);
    };
    // A decoy's sign-in: no passkey of that principal can answer it.
    let Some(authentication) = authentication else {
        return Err(Error::Unauthorized);
    };
    let (AssertionOutcome::Verified, Some(credential_id)) =
        assert_with(state, principal_id, &credential, &authentication).await?
    else {
        return Err(Error::Unauthorized);
    };
    // Checked again now, not as it stood when the ceremony began: a passkey removed or disabled
    // meanwhile opens nothing.
    let credential_id = Base64UrlUnpadded::encode_string(&credential_id);
    match crate::auth::caller_for_passkey(&read_ledger(state), principal_id, &credential_id) {
        Ok(_) => Ok((principal_id, credential_id)),
        Err(crate::auth::AuthFailure::Suspended) => Err(Error::PrincipalSuspended),
        Err(crate::auth::AuthFailure::BadKey) => Err(Error::Unauthorized),
    }
}

/// Starts registering a passkey for the caller itself (`principal_id`), with its current
/// factor's approval once it has one: answers the ceremony id and the options for
/// `navigator.credentials.create`.
pub async fn start_registration(
    state: &App,
    caller: &Caller,
    principal_id: u128,
    approval: Option<&str>,
) -> Result<(String, serde_json::Value), Error> {
    need_scope(caller, Scopes::MANAGE)?;
    if caller.principal_id != principal_id || !caller.via.is_person() {
        return Err(Error::PrincipalNotFound(principal_id));
    }
    crate::freeze::no_factor_while_frozen(state, principal_id)?;
    {
        // Adding a factor, like replacing TOTP, needs a current one once there is any.
        let checked = {
            let ledger = read_ledger(state);
            state.step_up.check_change(
                &*state.env,
                &ledger,
                principal_id,
                "add_passkey",
                &principal_id.to_le_bytes(),
                approval,
            )
        };
        // Spent before the ceremony starts: an approval starts one registration, whatever
        // happens after.
        if let Some(id) = crate::approvals::journaled(state, checked).await? {
            state.engine.execute(crate::approvals::spent(&id)).await?;
        }
    }
    let name = crate::privacy::own_name(state, caller, principal_id, "passkey_user").await?;
    let exclude: Vec<_> = stored_passkeys(state, principal_id)?.iter().map(|p| p.cred_id().clone()).collect();
    let (options, registration) = state
        .passkeys
        .webauthn
        .start_passkey_registration(Uuid::from_u128(principal_id), &name, &name, Some(exclude))
        .map_err(|e| Error::Internal(format!("WebAuthn registration start: {e}")))?;
    let ceremony_id =
        state.passkeys.start(&*state.env, principal_id, CeremonyState::Register(Box::new(registration)))?;
    Ok((ceremony_id, discoverable(to_value(&options)?)))
}

/// Registration `options` that ask for a discoverable credential (a resident key): sign-in lists
/// no credential, so the authenticator must find the passkey by itself.
fn discoverable(mut options: serde_json::Value) -> serde_json::Value {
    if let Some(public_key) = options.get_mut("publicKey").and_then(|v| v.as_object_mut()) {
        let selection = public_key.entry("authenticatorSelection").or_insert_with(|| serde_json::json!({}));
        if let Some(selection) = selection.as_object_mut() {
            selection.insert("residentKey".into(), "required".into());
            selection.insert("requireResidentKey".into(), true.into());
            selection.insert("userVerification".into(), "required".into());
        }
    }
    options
}

/// Finishes registering a passkey with the authenticator's answer; answers its credential id.
pub async fn finish_registration(
    state: &App,
    caller: &Caller,
    principal_id: u128,
    ceremony_id: &str,
    credential: serde_json::Value,
) -> Result<Vec<u8>, Error> {
    need_scope(caller, Scopes::MANAGE)?;
    if caller.principal_id != principal_id {
        return Err(Error::PrincipalNotFound(principal_id));
    }
    let CeremonyState::Register(registration) = state.passkeys.take(ceremony_id, principal_id, state.env.now_ns())?
    else {
        return Err(Error::InvalidField("that ceremony is not a registration".into()));
    };
    let credential: RegisterPublicKeyCredential = serde_json::from_value(credential)
        .map_err(|e| Error::InvalidField(format!("credential is not a WebAuthn registration: {e}")))?;
    let passkey = state
        .passkeys
        .webauthn
        .finish_passkey_registration(&credential, &registration)
        .map_err(|e| Error::InvalidField(format!("the passkey registration did not verify: {e}")))?;
    let data = serde_json::to_vec(&passkey).map_err(|e| Error::Internal(format!("passkey: {e}")))?;
    let credential_id = AsRef::<[u8]>::as_ref(passkey.cred_id()).to_vec();
    // A credential id names one credential (WebAuthn §7.1 step 22): one registered already, by
    // anyone, is refused, so nobody shares another's sessions, limits or audit name by copying
    // its public id.
    let taken = read_ledger(state)
        .identity()
        .principals()
        .any(|principal| principal.passkeys.iter().any(|p| p.credential_id == credential_id));
    if taken {
        return Err(Error::InvalidField("this credential is registered already".into()));
    }
    let command = IdentityCommand::PutPasskey { principal_id, credential_id: credential_id.clone(), data };
    match run_identity(state, command).await? {
        IdentityResult::Ok => {}
        other => return Err(Error::IdentityRejected(other)),
    }
    Ok(credential_id)
}

/// Starts a passkey assertion that approves step-up challenge `challenge_id`: answers the
/// ceremony id and the options for `navigator.credentials.get`.
pub fn start_assertion(state: &App, caller: &Caller, challenge_id: &str) -> Result<(String, serde_json::Value), Error> {
    need_scope(caller, Scopes::PAY)?;
    state.step_up.challenge_for(challenge_id, caller.principal_id, state.env.now_ns())?;
    let passkeys = stored_passkeys(state, caller.principal_id)?;
    if passkeys.is_empty() {
        return Err(Error::IdentityRejected(IdentityResult::FactorNotEnrolled));
    }
    let (options, authentication) = state
        .passkeys
        .webauthn
        .start_passkey_authentication(&passkeys)
        .map_err(|e| Error::Internal(format!("WebAuthn authentication start: {e}")))?;
    let ceremony =
        CeremonyState::Authenticate { challenge_id: challenge_id.to_string(), state: Box::new(authentication) };
    let ceremony_id = state.passkeys.start(&*state.env, caller.principal_id, ceremony)?;
    Ok((ceremony_id, to_value(&options)?))
}

/// A principal's passkey as its holder and the operator see it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PasskeyView {
    /// The credential id, base64url.
    pub credential_id: String,
    /// Whether it still signs in and approves (a suspected clone is disabled).
    pub usable: bool,
}

/// Who may see and remove `principal_id`'s passkeys: the person (with an API key or a passkey,
/// never a device) or the operator.
fn may_manage_passkeys(caller: &Caller, principal_id: u128, scope: u32) -> Result<(), Error> {
    need_scope(caller, scope)?;
    if caller.role == obol_core::identity::Role::Operator
        || (caller.principal_id == principal_id && caller.via.is_person())
    {
        return Ok(());
    }
    Err(Error::PrincipalNotFound(principal_id))
}

/// The passkeys of `principal_id`.
pub fn list(state: &App, caller: &Caller, principal_id: u128) -> Result<Vec<PasskeyView>, Error> {
    may_manage_passkeys(caller, principal_id, Scopes::READ)?;
    let ledger = read_ledger(state);
    let principal = ledger.identity().principal(principal_id).ok_or(Error::PrincipalNotFound(principal_id))?;
    Ok(principal
        .passkeys
        .iter()
        .map(|p| PasskeyView { credential_id: Base64UrlUnpadded::encode_string(&p.credential_id), usable: !p.disabled })
        .collect())
}

/// Removes passkey `credential_id` (base64url) of `principal_id`: it signs nothing from now on,
/// and every session it opened ends at its next request. No second factor is asked: removing a
/// factor is what a person does when one is lost or stolen.
pub async fn remove(state: &App, caller: &Caller, principal_id: u128, credential_id: &str) -> Result<(), Error> {
    may_manage_passkeys(caller, principal_id, Scopes::MANAGE)?;
    let not_found = || Error::PasskeyNotFound(credential_id.to_string());
    let raw = Base64UrlUnpadded::decode_vec(credential_id.trim_end_matches('=')).map_err(|_| not_found())?;
    let command = IdentityCommand::RemovePasskey { principal_id, credential_id: raw };
    match run_identity(state, command).await? {
        IdentityResult::Ok => Ok(()),
        IdentityResult::FactorNotEnrolled => Err(not_found()),
        other => Err(Error::IdentityRejected(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Env;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn relying_party() -> Passkeys {
        Passkeys::new("localhost", "http://localhost:8402").unwrap_or_else(|e| panic!("{e}"))
    }

    fn v4(a: u8, b: u8, c: u8, d: u8) -> SignInOrigin {
        SignInOrigin::of(Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d))))
    }

    #[test]
    fn a_flood_from_many_addresses_of_a_few_networks_pushes_out_its_own_sign_ins() {
        let passkeys = relying_party();
        let env = crate::SystemEnv;
        let victim = passkeys.start_sign_in(&env, 7, v4(192, 0, 2, 1), None);
        // Eight sign-ins from each of 2,500 addresses in two /16s: far past the table's bound.
        let mut flooded = 0usize;
        for n in 0..2_500u32 {
            let [_, _, c, d] = n.to_be_bytes();
            for _ in 0..SIGN_INS_PER_CLIENT_MAX {
                passkeys.start_sign_in(&env, 8, v4(10, 8 + (n % 2) as u8, c, d), None);
                flooded += 1;
            }
        }
        assert!(flooded > SIGN_INS_MAX);
        assert!(passkeys.sign_ins.lock().unwrap_or_else(|p| p.into_inner()).len() <= SIGN_INS_MAX);
        assert!(passkeys.take_sign_in(&victim, env.now_ns()).is_some(), "the victim's sign-in is still there");
    }

    fn assertion_with(client_data: &str) -> PublicKeyCredential {
        let encoded = Base64UrlUnpadded::encode_string(client_data.as_bytes());
        let credential = serde_json::json!({"id": "AAAA", "rawId": "AAAA", "type": "public-key",
            "response": {"clientDataJSON": encoded, "authenticatorData": "AAAA", "signature": "AAAA"},
            "extensions": {}});
        serde_json::from_value(credential).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_assertion_made_in_a_frame_of_another_origin_is_refused() {
        let framed = r#"{"type":"webauthn.get","challenge":"AA","origin":"http://localhost:8402","crossOrigin":true}"#;
        assert!(made_in_a_frame(&assertion_with(framed)));
        let top = r#"{"type":"webauthn.get","challenge":"AA","origin":"http://localhost:8402","crossOrigin":false}"#;
        assert!(!made_in_a_frame(&assertion_with(top)));
        let silent = r#"{"type":"webauthn.get","challenge":"AA","origin":"http://localhost:8402"}"#;
        assert!(!made_in_a_frame(&assertion_with(silent)), "most browsers leave it out at the top level");
    }

    #[test]
    fn a_client_over_its_bound_pushes_out_its_own_oldest_sign_in_and_decoys_count_alike() {
        let passkeys = relying_party();
        let env = crate::SystemEnv;
        let origin = SignInOrigin::of(Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, 1))));
        let same_64 = SignInOrigin::of(Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 9, 9, 9, 9))));
        assert_eq!(origin, same_64, "an IPv6 client counts by its /64");
        let first = passkeys.start_sign_in(&env, 1, origin, None);
        let second = passkeys.start_sign_in(&env, 2, origin, None);
        for _ in 1..SIGN_INS_PER_CLIENT_MAX {
            passkeys.start_sign_in(&env, 3, same_64, None);
        }
        assert!(passkeys.take_sign_in(&first, env.now_ns()).is_none(), "the oldest went");
        let (principal, authentication) = passkeys.take_sign_in(&second, env.now_ns()).unwrap_or((0, None));
        assert_eq!(principal, 2);
        assert!(authentication.is_none(), "a decoy keeps no state");
        assert!(passkeys.take_sign_in(&second, env.now_ns()).is_none(), "each is taken once");
    }
}

//! Second factors and step-up: TOTP enrolment (RFC 6238: SHA-1, 6 digits, 30 s, ±1 step),
//! recovery codes, factor checks with lockout (PSD2 RTS art. 4), and step-up challenges bound to
//! the exact operation (RTS art. 5 dynamic linking).
//!
//! A payment the holder's policy marks answers `requires_action` with a challenge that names the
//! amount, asset and payees. Approving it (a TOTP code or a recovery code) lets exactly that
//! operation through once, within five minutes: the retried request must carry
//! `Obol-Approval: <challenge id>` and hash to the same operation digest, so changing one minor
//! unit, the payee or the asset voids the approval.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use obol_core::identity::{
    FACTOR_FAILURES_MAX, FactorProof, IdentityCommand, IdentityResult, Role, Scopes, StepUpPolicy,
};
use obol_core::ledger::{Ledger, NewTransfer};
use sha2::{Digest, Sha256};

use crate::approvals::{CHALLENGE_PREFIX, execute_spending, journaled};
use crate::auth::{Caller, Via};
use crate::authz::need_scope;
use crate::error::Error;
use crate::identity::run_identity;
use crate::risk::PaymentKind;
use crate::vault::Secret;
pub use crate::views::ChallengeDto;
use crate::{App, read_ledger};

/// TOTP time step.
pub(crate) const TOTP_STEP_S: u64 = 30;
/// Steps of clock skew accepted either side.
pub(crate) const TOTP_SKEW_STEPS: u16 = 1;
/// Digits per code.
pub(crate) const TOTP_DIGITS: usize = 6;
/// Recovery codes issued at confirmation.
pub(crate) const RECOVERY_CODES_COUNT: usize = 10;
/// How long a challenge (and its approval) lives.
pub(crate) const CHALLENGE_TTL_NS: u64 = 300 * 1_000_000_000;
/// Most open challenges kept before the oldest expired ones are dropped.
pub(crate) const CHALLENGES_MAX: usize = 100_000;
/// Most open challenges per principal: one principal cannot fill the table for everyone.
pub(crate) const CHALLENGES_PER_PRINCIPAL_MAX: usize = 16;

/// The TOTP generator for a seed (SHA-1, 6 digits, 30 s steps, one step of skew).
pub(crate) fn totp_for(secret: &[u8], account_name: &str) -> Result<totp_rs::Totp, Error> {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(TOTP_DIGITS as u8)
        .with_step_duration(TOTP_STEP_S)
        .with_skew(TOTP_SKEW_STEPS)
        .with_secret(secret.to_vec())
        .with_issuer(Some("obol"))
        .with_account_name(account_name.replace(':', " "))
        .build()
        .map_err(|error| Error::Internal(format!("TOTP parameters rejected: {error}")))
}

/// What a principal's TOTP seed is sealed for, so a seal opens for its principal only.
pub(crate) fn totp_purpose(principal_id: u128) -> Vec<u8> {
    format!("obol:totp:{principal_id}").into_bytes()
}

/// SHA-256 of a normalized recovery code, bound to its principal.
pub(crate) fn recovery_hash(principal_id: u128, code: &str) -> [u8; 32] {
    let normalized: String =
        code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect();
    Sha256::digest(format!("obol:recovery:{principal_id}:{normalized}").as_bytes()).into()
}

/// Symbols of a recovery code: Crockford's base32 (no I, L, O or U to misread), 5 bits each.
pub(crate) const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Symbols in a recovery code: 20 x 5 = 100 random bits, so its SHA-256 at rest cannot be
/// reversed by trying codes (a slow hash would be needed below about 80 bits).
pub(crate) const RECOVERY_SYMBOLS: usize = 20;

/// A fresh recovery code: 20 Crockford base32 symbols (100 random bits) in groups of five.
#[expect(clippy::indexing_slicing, reason = "`b & 31` indexes the 32-symbol alphabet")]
pub fn recovery_code(env: &dyn crate::Env) -> String {
    let mut bytes = [0u8; RECOVERY_SYMBOLS];
    env.fill(&mut bytes);
    let symbols: Vec<char> = bytes.iter().map(|b| char::from(RECOVERY_ALPHABET[usize::from(b & 31)])).collect();
    symbols.chunks(5).map(|group| group.iter().collect::<String>()).collect::<Vec<_>>().join("-")
}

/// Renders `text` as a QR code in SVG.
pub fn qr_svg(text: &str) -> Result<String, Error> {
    let qr = qrcodegen::QrCode::encode_text(text, qrcodegen::QrCodeEcc::Medium)
        .map_err(|_| Error::Internal("the otpauth URI is too long for a QR code".into()))?;
    let border = 4;
    let size = qr.size() + border * 2;
    let mut path = String::new();
    for y in 0..qr.size() {
        for x in 0..qr.size() {
            if qr.get_module(x, y) {
                path.push_str(&format!("M{},{}h1v1h-1z", x + border, y + border));
            }
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" shape-rendering=\"crispEdges\">\
         <rect width=\"100%\" height=\"100%\" fill=\"#fff\"/><path d=\"{path}\" fill=\"#000\"/></svg>"
    ))
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Challenge {
    principal_id: u128,
    digest: [u8; 32],
    expires_ns: u64,
    approved: bool,
    used: bool,
    dto: ChallengeDto,
}

/// Open challenges and known payees. Challenges are journaled (state table, `stepup/challenge/`)
/// when they are issued and when they are approved, and removed in the record of the operation
/// that spends them, so a restart keeps every open and approved challenge and never revives a
/// spent one; memory holds them for lookups. Known payees are a cache of the ledger's history,
/// rebuilt from it on first use after a start.
pub struct StepUp {
    challenges: Mutex<HashMap<String, Challenge>>,
    known_payees: Mutex<HashMap<u128, HashSet<u128>>>,
    ttl_ns: u64,
}

impl Default for StepUp {
    fn default() -> StepUp {
        StepUp::with_ttl_ns(CHALLENGE_TTL_NS)
    }
}

/// SHA-256 over the kind of payment (its name: `transfer`, `tab_open`, `tab_topup`) and the
/// events that need approval: id (a tab's id for its opening or top-up), debit, credit, amount
/// and asset of each. An approval pays that one operation: not another id, tab or kind of
/// payment.
pub(crate) fn operation_digest(kind: PaymentKind, events: &[&NewTransfer]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"obol:payment:");
    hasher.update(kind.as_str().as_bytes());
    hasher.update([0u8]);
    for event in events {
        hasher.update(event.id.to_le_bytes());
        hasher.update(event.debit_account_id.to_le_bytes());
        hasher.update(event.credit_account_id.to_le_bytes());
        hasher.update(event.amount.to_le_bytes());
        hasher.update(event.asset.map_or([0; 4], |a| a.to_bytes()));
    }
    hasher.finalize().into()
}

impl StepUp {
    /// Challenges (and approvals) that live `ttl_ns` (the default is five minutes, RTS art. 4).
    pub fn with_ttl_ns(ttl_ns: u64) -> StepUp {
        StepUp { challenges: Mutex::default(), known_payees: Mutex::default(), ttl_ns }
    }

    /// Which of `payees` the principal has never paid. The principal's known payees are built
    /// from the ledger once, then kept current by [`StepUp::paid`].
    fn unknown_payees(&self, ledger: &Ledger, principal_id: u128, payees: impl Iterator<Item = u128>) -> HashSet<u128> {
        let mut known = self.known_payees.lock().unwrap_or_else(|p| p.into_inner());
        let known = known.entry(principal_id).or_insert_with(|| {
            let mut paid = HashSet::new();
            for account in ledger.accounts().iter().filter(|a| a.owner_id == principal_id) {
                for entry in ledger.account_history(account.id, 0, usize::MAX).unwrap_or_default() {
                    if entry.transfer.debit_account_id == account.id {
                        paid.insert(entry.transfer.credit_account_id);
                    }
                }
            }
            paid
        });
        payees.filter(|payee| !known.contains(payee)).collect()
    }

    /// Challenge `id` as journaled, if it is open.
    pub(crate) fn encoded(&self, id: &str) -> Option<Vec<u8>> {
        let challenges = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
        challenges.get(id).filter(|c| !c.used).and_then(|c| serde_json::to_vec(c).ok())
    }

    /// Restores the journaled challenges at start, and removes the expired ones from the table.
    pub async fn restore(&self, engine: &obol_store::Engine, now_ns: u64) -> Result<usize, Error> {
        let now = now_ns;
        let mut expired = Vec::new();
        let mut restored = 0;
        for (key, value) in engine.table_scan(CHALLENGE_PREFIX) {
            let id = key.trim_start_matches(CHALLENGE_PREFIX).to_string();
            match serde_json::from_slice::<Challenge>(&value) {
                Ok(challenge) if challenge.expires_ns > now && !challenge.used => {
                    self.challenges.lock().unwrap_or_else(|p| p.into_inner()).insert(id, challenge);
                    restored += 1;
                }
                // Expired, or unreadable (never spendable): gone from the table too.
                _ => expired.push(key),
            }
        }
        for key in expired {
            engine.put(&key, Vec::new()).await?;
        }
        Ok(restored)
    }

    /// Forgets the challenges that expired (in memory and in the table); answers how many.
    pub async fn prune(&self, engine: &obol_store::Engine, now_ns: u64) -> Result<usize, Error> {
        let now = now_ns;
        let expired: Vec<String> = {
            let mut challenges = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
            let expired = challenges.iter().filter(|(_, c)| c.expires_ns <= now).map(|(id, _)| id.clone()).collect();
            challenges.retain(|_, c| c.expires_ns > now);
            expired
        };
        for id in &expired {
            if engine.table_get(&format!("{CHALLENGE_PREFIX}{id}")).is_some() {
                engine.put(&format!("{CHALLENGE_PREFIX}{id}"), Vec::new()).await?;
            }
        }
        Ok(expired.len())
    }

    /// The open challenge `id` of `principal_id`.
    pub fn challenge_for(&self, id: &str, principal_id: u128, now_ns: u64) -> Result<ChallengeDto, Error> {
        let challenges = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
        challenges
            .get(id)
            .filter(|c| c.principal_id == principal_id && c.expires_ns > now_ns && !c.used)
            .map(|c| c.dto.clone())
            .ok_or_else(|| Error::ChallengeNotFound(id.to_string()))
    }

    /// `result`, with the challenge a refusal carries (`requires_action`) forgotten again: for a
    /// payment that cannot come back with an approval (x402), so none is left open.
    pub(crate) fn withdrawn<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        if let Err(Error::RequiresAction(challenge)) = &result {
            self.challenges.lock().unwrap_or_else(|p| p.into_inner()).remove(&challenge.id);
        }
        result
    }

    /// Records payees paid by a committed request.
    pub fn paid(&self, principal_id: u128, payees: impl IntoIterator<Item = u128>) {
        let mut known = self.known_payees.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = known.get_mut(&principal_id) {
            set.extend(payees);
        }
    }

    /// Decides whether these transfers (a payment of `kind`: a transfer, a tab's opening or
    /// top-up) need step-up and, if they do, whether `approval` covers exactly them
    /// (consuming it in memory): `Ok(Some(id))` when approval `id` was used, which the caller
    /// journals as [`spent`] in the record of the payment. `risk_marked` lists the events the risk
    /// policy wants strongly authenticated, and `risk` why. `Err(RequiresAction)` carries a fresh
    /// challenge.
    pub fn check(
        &self,
        (env, ledger): (&dyn crate::Env, &Ledger),
        caller: &Caller,
        (kind, events): (PaymentKind, &[NewTransfer]),
        approval: Option<&str>,
        risk_marked: &[usize],
        risk: Option<crate::risk::RiskDto>,
    ) -> Result<Option<String>, Error> {
        let (marked, reasons) = self.marks(ledger, caller, events, risk_marked);
        if marked.is_empty() {
            return Ok(None);
        }
        let digest = operation_digest(kind, &marked);
        let first_asset = marked.iter().find_map(|e| e.asset);
        let total: u128 = marked.iter().map(|e| e.amount).fold(0, u128::saturating_add);
        self.approved_or_challenge(env, caller.principal_id, digest, approval, |id, expires_ns| ChallengeDto {
            id,
            reasons: reasons.iter().map(|r| (*r).to_string()).collect(),
            amount: total.to_string(),
            asset_code: first_asset.map_or_else(String::new, |a| a.code().to_string()),
            asset_scale: first_asset.map_or(0, |a| a.scale()),
            payees: marked.iter().map(|e| e.credit_account_id.to_string()).collect(),
            change: None,
            details: None,
            methods: vec!["totp".into(), "recovery_code".into()],
            expires_ns: expires_ns.to_string(),
            risk: if reasons.contains(&"risk_policy") { risk } else { None },
        })
    }

    /// Whether the holder's own step-up policy (amount, new payee, new device) would ask a second
    /// factor for these transfers, decided dry: no challenge is issued and no approval used (the
    /// facilitator's `verify`).
    pub(crate) fn would_challenge(&self, ledger: &Ledger, caller: &Caller, events: &[NewTransfer]) -> bool {
        !self.marks(ledger, caller, events, &[]).0.is_empty()
    }

    /// The transfers among `events` that need a second factor, and why: those `risk_marked`, and
    /// those the holder's own policy names. Empty for a caller who is not a holder with a factor.
    fn marks<'e>(
        &self,
        ledger: &Ledger,
        caller: &Caller,
        events: &'e [NewTransfer],
        risk_marked: &[usize],
    ) -> (Vec<&'e NewTransfer>, Vec<&'static str>) {
        let mut reasons: Vec<&'static str> = Vec::new();
        let mut marked: Vec<&NewTransfer> = Vec::new();
        if caller.role != Role::Holder {
            return (marked, reasons);
        }
        let Some(principal) = ledger.identity().principal(caller.principal_id) else {
            return (marked, reasons);
        };
        if !principal.has_factor() {
            return (marked, reasons);
        }
        let policy: StepUpPolicy = principal.step_up;
        let payments = || events.iter().filter(|e| !e.flags.resolves_pending());
        let new_payees = self.unknown_payees(ledger, caller.principal_id, payments().map(|e| e.credit_account_id));
        let new_device = match caller.via {
            Via::Device(id) => ledger.identity().device(id).is_some_and(|d| !d.has_paid),
            Via::ApiKey(_) | Via::Passkey(_) => false,
        };
        // A transfer the ledger has already (a retry whose first answer was lost) pays nothing
        // again: the ledger answers `exists`, so it asks for no second factor either.
        let new_payments =
            events.iter().enumerate().filter(|(_, e)| !e.flags.resolves_pending() && ledger.transfer(e.id).is_none());
        for (index, event) in new_payments {
            let mut event_reasons = Vec::new();
            if risk_marked.contains(&index) {
                event_reasons.push("risk_policy");
            }
            if let Some((asset, above)) = policy.above
                && event.asset == Some(asset)
                && event.amount > above
            {
                event_reasons.push("amount_over_threshold");
            }
            if policy.new_payee && new_payees.contains(&event.credit_account_id) {
                event_reasons.push("new_payee");
            }
            if policy.new_device && new_device {
                event_reasons.push("new_device");
            }
            if !event_reasons.is_empty() {
                marked.push(event);
                for reason in event_reasons {
                    if !reasons.contains(&reason) {
                        reasons.push(reason);
                    }
                }
            }
        }
        (marked, reasons)
    }

    /// A security change (`change` says which, e.g. "step_up_policy") to `principal_id`'s own
    /// protection: once the principal has a second factor, it needs that factor's approval, bound
    /// to exactly this change (`details` are hashed into the challenge), so a stolen `manage` key
    /// alone can neither weaken step-up nor add a factor of the thief's.
    pub fn check_change(
        &self,
        env: &dyn crate::Env,
        ledger: &Ledger,
        principal_id: u128,
        change: &str,
        details: &[u8],
        approval: Option<&str>,
    ) -> Result<Option<String>, Error> {
        let has_factor = ledger.identity().principal(principal_id).is_some_and(|p| p.has_factor());
        if !has_factor {
            return Ok(None);
        }
        let mut hasher = Sha256::new();
        hasher.update(b"obol:change:");
        hasher.update(change.as_bytes());
        hasher.update([0]);
        hasher.update(details);
        let digest: [u8; 32] = hasher.finalize().into();
        self.approved_or_challenge(env, principal_id, digest, approval, |id, expires_ns| ChallengeDto {
            id,
            reasons: vec!["security_change".into()],
            amount: "0".into(),
            asset_code: String::new(),
            asset_scale: 0,
            payees: Vec::new(),
            change: Some(change.to_string()),
            details: std::str::from_utf8(details)
                .ok()
                .filter(|text| !text.is_empty() && text.chars().all(|c| c.is_ascii_graphic() || c == ' '))
                .map(str::to_string),
            methods: vec!["totp".into(), "recovery_code".into(), "passkey".into()],
            expires_ns: expires_ns.to_string(),
            risk: None,
        })
    }

    /// `Ok(Some(id))` when `approval` names an approved, unused, live challenge of the
    /// principal's for exactly `digest` (it is used up); otherwise a new challenge, answered as
    /// `requires_action` (journal it with [`journaled`] before the answer leaves).
    fn approved_or_challenge(
        &self,
        env: &dyn crate::Env,
        principal_id: u128,
        digest: [u8; 32],
        approval: Option<&str>,
        dto: impl FnOnce(String, u64) -> ChallengeDto,
    ) -> Result<Option<String>, Error> {
        let now = env.now_ns();
        let mut challenges = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = approval
            && let Some(challenge) = challenges.get_mut(id)
            && challenge.principal_id == principal_id
            && challenge.approved
            && !challenge.used
            && challenge.expires_ns > now
            && challenge.digest == digest
        {
            challenge.used = true;
            return Ok(Some(id.to_string()));
        }
        // The same operation asked again while its challenge waits gets that challenge: a
        // resend (or someone repeating a refused request) does not use up the holder's slots.
        if let Some(waiting) = challenges.values().find(|c| {
            c.principal_id == principal_id && c.digest == digest && !c.approved && !c.used && c.expires_ns > now
        }) {
            return Err(Error::RequiresAction(Box::new(waiting.dto.clone())));
        }
        let open =
            challenges.values().filter(|c| c.principal_id == principal_id && c.expires_ns > now && !c.used).count();
        if open >= CHALLENGES_PER_PRINCIPAL_MAX {
            return Err(Error::RateLimited(self.ttl_ns / 1_000_000_000));
        }
        if challenges.len() >= CHALLENGES_MAX {
            challenges.retain(|_, c| c.expires_ns > now && !c.used);
            if challenges.len() >= CHALLENGES_MAX {
                return Err(Error::Overloaded);
            }
        }
        let mut id_bytes = [0u8; 16];
        env.fill(&mut id_bytes);
        let id: String = id_bytes.iter().map(|b| format!("{b:02x}")).collect();
        let dto = dto(id.clone(), now + self.ttl_ns);
        challenges.insert(
            id,
            Challenge {
                principal_id,
                digest,
                expires_ns: now + self.ttl_ns,
                approved: false,
                used: false,
                dto: dto.clone(),
            },
        );
        Err(Error::RequiresAction(Box::new(dto)))
    }
}

/// Checks a TOTP or recovery code for `principal_id`; records the outcome durably (a used step
/// or code, or a failure that counts toward the lockout). Never says which factor failed.
pub(crate) async fn check_factor(
    state: &App,
    principal_id: u128,
    code: Option<&str>,
    recovery_code: Option<&str>,
) -> Result<(), Error> {
    let (sealed, locked) = {
        let ledger = read_ledger(state);
        let principal = ledger.identity().principal(principal_id).ok_or(Error::PrincipalNotFound(principal_id))?;
        (principal.totp.as_ref().filter(|t| t.confirmed).map(|t| t.sealed_secret.clone()), principal.locked)
    };
    if locked {
        return Err(Error::IdentityRejected(IdentityResult::FactorLocked));
    }
    let proof = match (code, recovery_code) {
        (Some(code), _) => sealed.as_ref().and_then(|sealed| {
            let secret = state.vault.open(&totp_purpose(principal_id), sealed)?;
            let totp = totp_for(secret.expose_secret(), "check").ok()?;
            totp.check(code.trim(), state.env.now_s()).map(FactorProof::TotpStep)
        }),
        (None, Some(recovery)) => Some(FactorProof::RecoveryCode(recovery_hash(principal_id, recovery))),
        (None, None) => return Err(Error::InvalidField("send a code (TOTP) or a recovery_code".into())),
    };
    if let Some(proof) = proof {
        let result = run_identity(state, IdentityCommand::UseFactor { principal_id, proof }).await?;
        match result {
            IdentityResult::Ok => return Ok(()),
            IdentityResult::FactorLocked => return Err(Error::IdentityRejected(IdentityResult::FactorLocked)),
            // A reused code is a failed check like any other.
            _ => {}
        }
    }
    Err(record_failure(state, principal_id).await)
}

/// Records a failed factor check and says how many tries are left (or that checks are locked).
pub(crate) async fn record_failure(state: &App, principal_id: u128) -> Error {
    if let Err(error) = run_identity(state, IdentityCommand::FailFactor { principal_id }).await {
        return error;
    }
    let ledger = read_ledger(state);
    match ledger.identity().principal(principal_id) {
        None => Error::PrincipalNotFound(principal_id),
        Some(principal) if principal.locked => Error::IdentityRejected(IdentityResult::FactorLocked),
        Some(principal) => Error::FactorCheckFailed {
            attempts_left: FACTOR_FAILURES_MAX.saturating_sub(principal.failed_factor_count),
        },
    }
}

/// Refuses all but the principal itself, with a `manage` API key (never a device).
pub(crate) fn self_with_key(caller: &Caller, principal_id: u128) -> Result<(), Error> {
    need_scope(caller, Scopes::MANAGE)?;
    if caller.principal_id != principal_id || !caller.via.is_person() {
        return Err(Error::PrincipalNotFound(principal_id));
    }
    Ok(())
}

pub(crate) async fn approve_with_passkey(
    state: &App,
    principal_id: u128,
    challenge_id: &str,
    ceremony_id: &str,
    credential: serde_json::Value,
) -> Result<(), Error> {
    use crate::passkeys::AssertionOutcome;
    if read_ledger(state).identity().principal(principal_id).is_some_and(|p| p.locked) {
        return Err(Error::IdentityRejected(IdentityResult::FactorLocked));
    }
    match crate::passkeys::verify_assertion(state, principal_id, challenge_id, ceremony_id, credential).await? {
        AssertionOutcome::Verified => {
            match run_identity(state, IdentityCommand::UseFactor { principal_id, proof: FactorProof::Passkey }).await? {
                IdentityResult::Ok => Ok(()),
                other => Err(Error::IdentityRejected(other)),
            }
        }
        AssertionOutcome::Failed => Err(record_failure(state, principal_id).await),
        AssertionOutcome::CloneSuspected => {
            let _ = record_failure(state, principal_id).await;
            Err(Error::PasskeyCloneSuspected)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r10_13_recovery_codes_carry_100_random_bits() {
        let codes: Vec<String> = (0..200).map(|_| recovery_code(&crate::SystemEnv)).collect();
        for code in &codes {
            let groups: Vec<&str> = code.split('-').collect();
            assert_eq!(groups.len(), 4, "{code}");
            assert!(groups.iter().all(|g| g.len() == 5 && g.bytes().all(|b| RECOVERY_ALPHABET.contains(&b))), "{code}");
        }
        let distinct: HashSet<&String> = codes.iter().collect();
        assert_eq!(distinct.len(), codes.len());
        // Every symbol turns up: the 5-bit mapping has no holes (or bias toward a few).
        let seen: HashSet<char> = codes.iter().flat_map(|c| c.chars()).filter(|c| *c != '-').collect();
        assert_eq!(seen.len(), 32);
        assert_eq!(recovery_hash(7, &codes[0].to_lowercase()), recovery_hash(7, &codes[0]), "typed in lower case");
    }
}

/// Approves step-up challenge `challenge_id` of the caller's with a second factor (a TOTP code,
/// a recovery code, or a passkey assertion: its ceremony id and credential); answers the
/// challenge approved. The retried request then names it in `Obol-Approval`.
pub async fn approve(
    state: &App,
    caller: &Caller,
    challenge_id: &str,
    code: Option<&str>,
    recovery_code: Option<&str>,
    passkey: Option<(String, serde_json::Value)>,
) -> Result<ChallengeDto, Error> {
    // Payment challenges come to `pay` keys, security-change challenges to `manage` keys.
    if !caller.scopes.allows(Scopes::MANAGE) {
        need_scope(caller, Scopes::PAY)?;
    }
    let dto = state.step_up.challenge_for(challenge_id, caller.principal_id, state.env.now_ns())?;
    match passkey {
        Some((ceremony_id, credential)) => {
            approve_with_passkey(state, caller.principal_id, challenge_id, &ceremony_id, credential).await?;
        }
        None => check_factor(state, caller.principal_id, code, recovery_code).await?,
    }
    // Approved is journaled before it is answered: after a restart the approval still spends.
    // (A crash before this put leaves the factor used and the challenge unapproved: the holder
    // approves again, and nothing ran.) The put is queued under the lock that marks it approved:
    // a payment can spend the approval only after that, so its record, which removes the
    // challenge, always follows this put in the log and a restart never revives a spent one.
    let written = {
        let mut challenges = state.step_up.challenges.lock().unwrap_or_else(|p| p.into_inner());
        let challenge =
            challenges.get_mut(challenge_id).ok_or_else(|| Error::ChallengeNotFound(challenge_id.to_string()))?;
        challenge.approved = true;
        let bytes = serde_json::to_vec(&*challenge).map_err(|e| Error::Internal(e.to_string()))?;
        let put = obol_core::table::Put { key: format!("{CHALLENGE_PREFIX}{challenge_id}"), value: bytes };
        state.engine.submit(obol_core::record::Op::Put(put))?
    };
    written.await.unwrap_or(Err(obol_store::EngineError::Stopped))?;
    Ok(dto)
}

/// A TOTP authenticator just enrolled: its seed (base32, for typing), the `otpauth://` URI, and
/// that URI as a QR code (SVG). Shown once.
pub struct Enrollment {
    /// The seed, base32.
    pub secret_base32: String,
    /// The `otpauth://totp/...` URI.
    pub otpauth_uri: String,
    /// The URI as an SVG QR code.
    pub qr_svg: String,
}

/// Enrolls a TOTP authenticator for the caller itself (a `manage` API key); replacing one needs
/// a current `code` from it. The seed is sealed under the master key before it is journaled.
pub async fn enroll_totp(
    state: &App,
    caller: &Caller,
    principal_id: &str,
    code: Option<&str>,
) -> Result<Enrollment, Error> {
    let principal_id = crate::parse_id("id", principal_id)?;
    self_with_key(caller, principal_id)?;
    crate::freeze::no_factor_while_frozen(state, principal_id)?;
    let has_factor = {
        let ledger = read_ledger(state);
        let principal = ledger.identity().principal(principal_id).ok_or(Error::PrincipalNotFound(principal_id))?;
        principal.has_factor()
    };
    // The authenticator app shows the person's own name; it is read from the vault for them.
    let name = crate::privacy::own_name(state, caller, principal_id, "totp_label").await?;
    if has_factor {
        let code = code.ok_or_else(|| {
            Error::Forbidden("replacing an authenticator needs a current code from the existing one".into())
        })?;
        check_factor(state, principal_id, Some(code), None).await?;
    }
    let mut secret = [0u8; 20];
    state.env.fill(&mut secret);
    let secret = Secret::new(secret);
    let totp = totp_for(secret.expose_secret(), &name)?;
    let uri = totp.to_url().map_err(|e| Error::Internal(format!("otpauth URI: {e}")))?;
    let sealed = state.vault.seal(&*state.env, &totp_purpose(principal_id), secret.expose_secret());
    let result = crate::identity::run_identity_by(
        state,
        Some(caller),
        IdentityCommand::EnrollTotp { principal_id, sealed_secret: sealed },
    )
    .await?;
    if result != IdentityResult::Ok {
        return Err(Error::IdentityRejected(result));
    }
    Ok(Enrollment { secret_base32: totp.secret().to_base32(), qr_svg: qr_svg(&uri)?, otpauth_uri: uri })
}

/// Confirms an enrolled authenticator with the code it shows now; answers the recovery codes
/// (shown once; only their hashes are kept).
pub async fn confirm_totp(
    state: &App,
    caller: &Caller,
    principal_id: &str,
    code: Option<&str>,
) -> Result<Vec<String>, Error> {
    let principal_id = crate::parse_id("id", principal_id)?;
    self_with_key(caller, principal_id)?;
    let code = code.ok_or_else(|| Error::InvalidField("send the code your app shows".into()))?;
    let sealed = {
        let ledger = read_ledger(state);
        let principal = ledger.identity().principal(principal_id).ok_or(Error::PrincipalNotFound(principal_id))?;
        principal
            .totp
            .as_ref()
            .filter(|t| !t.confirmed)
            .map(|t| t.sealed_secret.clone())
            .ok_or(Error::IdentityRejected(IdentityResult::FactorNotEnrolled))?
    };
    let secret = state
        .vault
        .open(&totp_purpose(principal_id), &sealed)
        .ok_or_else(|| Error::Internal("TOTP seed unreadable".into()))?;
    let step = totp_for(secret.expose_secret(), "confirm")?.check(code.trim(), state.env.now_s());
    let Some(step) = step else {
        return Err(record_failure(state, principal_id).await);
    };
    let codes: Vec<String> = (0..RECOVERY_CODES_COUNT).map(|_| recovery_code(&*state.env)).collect();
    let recovery_hashes = codes.iter().map(|c| recovery_hash(principal_id, c)).collect();
    let result = crate::identity::run_identity_by(
        state,
        Some(caller),
        IdentityCommand::ConfirmTotp { principal_id, step, recovery_hashes },
    )
    .await?;
    if result != IdentityResult::Ok {
        return Err(Error::IdentityRejected(result));
    }
    Ok(codes)
}

/// Unlocks a principal's factor checks after a lockout (the operator).
pub async fn unlock(state: &App, caller: &Caller, principal_id: &str) -> Result<(), Error> {
    need_scope(caller, Scopes::MANAGE)?;
    crate::authz::need_role(caller, &[Role::Operator])?;
    let principal_id = crate::parse_id("id", principal_id)?;
    match crate::identity::run_identity_by(state, Some(caller), IdentityCommand::UnlockFactors { principal_id }).await?
    {
        IdentityResult::Ok => Ok(()),
        other => Err(Error::IdentityRejected(other)),
    }
}

/// A step-up policy as sent: above which amount (asset code, scale, amount), and whether a new
/// payee or a new device needs approval.
#[derive(Clone, Copy, Debug)]
pub struct PolicyAsk<'a> {
    /// `(asset_code, asset_scale, amount)`: payments above it need approval.
    pub above: Option<(&'a str, u8, &'a str)>,
    /// A payee the holder never paid needs approval.
    pub new_payee: bool,
    /// A device's first payment needs approval.
    pub new_device: bool,
}

/// Sets a holder's step-up policy (itself with a `manage` key, or the operator). Once the holder
/// has a second factor, its own change needs that factor's approval of exactly this policy.
pub async fn set_step_up(
    state: &App,
    caller: &Caller,
    principal_id: &str,
    ask: PolicyAsk<'_>,
    approval: Option<&str>,
) -> Result<(), Error> {
    let principal_id = crate::parse_id("id", principal_id)?;
    if caller.role != Role::Operator {
        self_with_key(caller, principal_id)?;
    } else {
        need_scope(caller, Scopes::MANAGE)?;
    }
    let above = match ask.above {
        None => None,
        Some((code, scale, amount)) => {
            let asset = crate::parse_asset(code, scale)?;
            // A threshold in an asset no account holds would never fire, and the holder would
            // believe itself protected.
            crate::assets::check_registered(state, asset)?;
            Some((asset, crate::parse_amount("above.amount", amount)?))
        }
    };
    let policy = StepUpPolicy { above, new_payee: ask.new_payee, new_device: ask.new_device };
    let mut spends = None;
    if caller.role != Role::Operator {
        // The approval binds this exact policy: any other threshold, asset or flag voids it.
        let details = format!(
            "above={};new_payee={};new_device={}",
            above.map_or_else(String::new, |(asset, amount)| format!("{amount} {asset}")),
            policy.new_payee,
            policy.new_device
        );
        let checked = {
            let ledger = read_ledger(state);
            state.step_up.check_change(
                &*state.env,
                &ledger,
                principal_id,
                "step_up_policy",
                details.as_bytes(),
                approval,
            )
        };
        spends = journaled(state, checked).await?;
    }
    let command = obol_core::record::Op::Identity(IdentityCommand::SetStepUpPolicy { principal_id, policy });
    // The approval is spent in the record of the change it approved.
    match execute_spending(state, spends.as_deref(), command).await? {
        obol_core::ledger::OpResults::Identity(IdentityResult::Ok) => Ok(()),
        obol_core::ledger::OpResults::Identity(other) => Err(Error::IdentityRejected(other)),
        _ => Err(Error::Internal("engine answered an identity command with the wrong shape".into())),
    }
}

//! Personal data: the vault of profiles, reads with a stated purpose (each one logged where the
//! person can see it), consent, erasure by crypto-shredding with the law's retention, and the
//! person's data export.
//!
//! The ledger, the risk features and the audit log hold only opaque ids. A person's personal
//! fields (name, email, phone, postal address, free-text notes) are one JSON profile sealed with
//! XChaCha20-Poly1305 under the person's own data key ([`crate::vault`]) and journaled as a put
//! in the state table (`vault/profile/<id>`), so every copy the log will ever hold is
//! ciphertext. The data key, wrapped by the master key, lives in the store's metadata, outside
//! the log; erasure destroys it (and scrubs the store's files of it), after which no copy of the
//! profile can be read, while the ledger, the log and every audit proof stay exactly as they
//! were.
//!
//! Every state here (erasures, the access log, consents) is a put in the state table, through
//! the log, journaled in the same record as the audit note that describes it.

use std::fmt;

use obol_core::identity::{Role, Scopes, Status};
use obol_core::record::Op;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::authz::{need_role, need_scope};
use crate::error::Error;
use crate::vault::{DataKey, Secret, person_key_meta};
use crate::{App, read_ledger};

/// The label a principal whose personal fields are in the vault carries in the identity
/// registry (the registry's `name` field; older logs hold names there).
pub const VAULT_LABEL: &str = "-";
/// State-table prefix of sealed profiles (`vault/profile/<id>`).
pub const PROFILE_PREFIX: &str = "vault/profile/";
/// State-table prefix of erasures (`privacy/erasure/<id>`).
pub const ERASURE_PREFIX: &str = "privacy/erasure/";
/// State-table prefix of the access log (`privacy/access/<id>/<time_ns, 20 digits>-<reader>`).
pub const ACCESS_PREFIX: &str = "privacy/access/";
/// State-table prefix of consents (`privacy/consent/<id>/<purpose>`).
pub const CONSENT_PREFIX: &str = "privacy/consent/";
/// How long records the law requires are kept after the relationship's last payment before a
/// requested erasure runs: 5 years (AMLR 2024/1624 art. 77; Korea's Electronic Financial
/// Transactions Act art. 22), as days.
pub const RETENTION_DAYS_DEFAULT: u64 = 1826;
/// Entries of a person's access log one page holds at most.
pub const ACCESS_LOG_ENTRIES_MAX: usize = 1000;

const NAME_BYTES_MAX: usize = obol_core::identity::NAME_BYTES_MAX;
const EMAIL_BYTES_MAX: usize = 254;
const PHONE_BYTES_MAX: usize = 32;
const POSTAL_ADDRESS_BYTES_MAX: usize = 512;
const NOTES_BYTES_MAX: usize = 4096;
const NS_PER_DAY: u64 = 86_400_000_000_000;

/// A person's personal fields. `Debug` shows none of them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Name.
    pub name: String,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Postal address (lines separated by `\n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_address: Option<String>,
    /// Free-text notes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Profile(***)")
    }
}

/// Changes to a profile: a field given replaces it; an empty string clears an optional field.
#[derive(Clone, Default)]
pub struct ProfileChange {
    /// New name.
    pub name: Option<String>,
    /// New email.
    pub email: Option<String>,
    /// New phone.
    pub phone: Option<String>,
    /// New postal address.
    pub postal_address: Option<String>,
    /// New notes.
    pub notes: Option<String>,
}

impl fmt::Debug for ProfileChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProfileChange(***)")
    }
}

impl Profile {
    /// Checks every field's length and characters.
    pub fn check(&self) -> Result<(), Error> {
        if self.name.is_empty() || self.name.len() > NAME_BYTES_MAX {
            return Err(Error::InvalidField(format!("name must be 1 to {NAME_BYTES_MAX} bytes")));
        }
        crate::plain_text("name", &self.name)?;
        if let Some(email) = &self.email {
            crate::plain_text("email", email)?;
            let valid = email.len() <= EMAIL_BYTES_MAX
                && email.split('@').count() == 2
                && email.split('@').all(|part| !part.is_empty())
                && !email.contains(char::is_whitespace);
            if !valid {
                return Err(Error::InvalidField(format!(
                    "email must look like name@domain, at most {EMAIL_BYTES_MAX} bytes"
                )));
            }
        }
        if let Some(phone) = &self.phone {
            let digits = phone.chars().filter(char::is_ascii_digit).count();
            let valid = phone.len() <= PHONE_BYTES_MAX
                && (3..=20).contains(&digits)
                && phone.chars().enumerate().all(|(i, c)| {
                    c.is_ascii_digit() || matches!(c, ' ' | '-' | '(' | ')' | '.') || (c == '+' && i == 0)
                });
            if !valid {
                return Err(Error::InvalidField(format!(
                    "phone must be 3 to 20 digits with optional leading +, spaces, dashes, dots or parentheses, at most {PHONE_BYTES_MAX} bytes"
                )));
            }
        }
        for (field, text, max) in [
            ("postal_address", &self.postal_address, POSTAL_ADDRESS_BYTES_MAX),
            ("notes", &self.notes, NOTES_BYTES_MAX),
        ] {
            let Some(text) = text else { continue };
            if text.len() > max {
                return Err(Error::InvalidField(format!("{field} must be at most {max} bytes")));
            }
            for line in text.split('\n') {
                crate::plain_text(field, line)?;
            }
        }
        Ok(())
    }

    fn apply(&mut self, change: ProfileChange) {
        let optional = |value: String| if value.is_empty() { None } else { Some(value) };
        if let Some(name) = change.name {
            self.name = name;
        }
        if let Some(email) = change.email {
            self.email = optional(email);
        }
        if let Some(phone) = change.phone {
            self.phone = optional(phone);
        }
        if let Some(postal_address) = change.postal_address {
            self.postal_address = optional(postal_address);
        }
        if let Some(notes) = change.notes {
            self.notes = optional(notes);
        }
    }
}

/// Why someone other than the person reads personal fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Helping the person (a support request).
    Support,
    /// Handling a dispute or refund.
    Dispute,
    /// Investigating fraud on the person's payments.
    FraudInvestigation,
    /// A legal obligation (a court order, an AML report); the only purpose that may read data
    /// kept for retention after the person asked for erasure.
    LegalObligation,
    /// Answering the person's own data request (export).
    DataSubjectRequest,
    /// Marketing: needs the person's consent.
    Marketing,
    /// Analytics: needs the person's consent.
    Analytics,
    /// Sharing threat intelligence: needs the person's consent.
    ThreatIntel,
}

impl Purpose {
    /// Every purpose, by name.
    pub const ALL: [Purpose; 8] = [
        Purpose::Support,
        Purpose::Dispute,
        Purpose::FraudInvestigation,
        Purpose::LegalObligation,
        Purpose::DataSubjectRequest,
        Purpose::Marketing,
        Purpose::Analytics,
        Purpose::ThreatIntel,
    ];

    /// The purpose's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Support => "support",
            Purpose::Dispute => "dispute",
            Purpose::FraudInvestigation => "fraud_investigation",
            Purpose::LegalObligation => "legal_obligation",
            Purpose::DataSubjectRequest => "data_subject_request",
            Purpose::Marketing => "marketing",
            Purpose::Analytics => "analytics",
            Purpose::ThreatIntel => "threat_intel",
        }
    }

    /// Parses a purpose's name.
    pub fn parse(text: &str) -> Result<Purpose, Error> {
        Purpose::ALL.into_iter().find(|p| p.as_str() == text).ok_or_else(|| {
            let names: Vec<&str> = Purpose::ALL.iter().map(|p| p.as_str()).collect();
            Error::InvalidField(format!("purpose must be one of {}", names.join(", ")))
        })
    }

    /// Whether this use goes beyond the payment itself and needs the person's consent.
    pub fn needs_consent(self) -> bool {
        matches!(self, Purpose::Marketing | Purpose::Analytics | Purpose::ThreatIntel)
    }
}

/// One read of a person's personal fields by someone else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// When, ns since the Unix epoch.
    pub time_ns: u64,
    /// Who read (a principal id).
    pub reader_id: u128,
    /// The reader's role.
    pub reader_role: String,
    /// The credential (`key:<id>` or `device:<id>`).
    pub via: String,
    /// The purpose stated.
    pub purpose: String,
    /// What was read (`profile` or `export`).
    pub what: String,
}

/// A consent the person gave or withdrew.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// The purpose.
    pub purpose: String,
    /// Whether it is given now.
    pub granted: bool,
    /// When it last changed, ns.
    pub changed_ns: u64,
}

/// A requested erasure and its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    /// The person.
    pub principal_id: u128,
    /// When it was asked, ns.
    pub requested_ns: u64,
    /// Who asked (the person or an operator).
    pub requested_by: u128,
    /// The person's last payment (or creation), from which the retention period runs, ns.
    pub last_activity_ns: u64,
    /// When the law's retention ends and the data key is destroyed, ns (from the retention in
    /// force: recomputed on every read until the erasure is done).
    pub erase_after_ns: u64,
    /// When the data key was destroyed, if it was.
    pub erased_ns: Option<u64>,
}

impl Erasure {
    /// `erased`, or `retained` (kept under the law's retention, restricted).
    pub fn state(&self) -> &'static str {
        if self.erased_ns.is_some() { "erased" } else { "retained" }
    }
}

fn profile_key(id: u128) -> String {
    format!("{PROFILE_PREFIX}{id}")
}

fn erasure_key(id: u128) -> String {
    format!("{ERASURE_PREFIX}{id}")
}

fn consent_key(id: u128, purpose: Purpose) -> String {
    format!("{CONSENT_PREFIX}{id}/{}", purpose.as_str())
}

fn profile_purpose(id: u128) -> Vec<u8> {
    format!("obol/profile/v1/{id}").into_bytes()
}

fn put(key: String, value: Vec<u8>) -> Op {
    Op::Put(obol_core::table::Put { key, value })
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|error| Error::Internal(format!("encoding privacy state: {error}")))
}

/// The person's data key, unwrapped; created (and stored, wrapped) first if `create`.
async fn data_key(state: &App, id: u128, create: bool) -> Result<Option<DataKey>, Error> {
    let meta_key = person_key_meta(id);
    let wrap = state.vault.key_wrap();
    if let Some(wrapped) = state.engine.meta_get(&meta_key).await? {
        let key = wrap
            .unwrap(&meta_key, &wrapped)
            .map_err(|error| Error::Internal(format!("principal {id}'s data key does not open: {error}")))?;
        return Ok(Some(DataKey::new(&key)));
    }
    if !create {
        return Ok(None);
    }
    let mut key = [0u8; 32];
    state.env.fill(&mut key);
    let key = Secret::new(key);
    // Stored (synced) before any record sealed under it: a crash in between leaves a key that
    // seals nothing, never a profile no key opens.
    state.engine.meta_put(&meta_key, wrap.wrap(&*state.env, &meta_key, &key)).await?;
    Ok(Some(DataKey::new(&key)))
}

/// The put that stores `profile`, sealed under the person's data key (created if needed).
pub(crate) async fn seal_profile(state: &App, id: u128, profile: &Profile) -> Result<Op, Error> {
    profile.check()?;
    let key = data_key(state, id, true).await?.ok_or_else(|| Error::Internal("no data key".into()))?;
    let plaintext = Secret::new(json(profile)?);
    Ok(put(profile_key(id), key.seal(&*state.env, &profile_purpose(id), plaintext.expose_secret())))
}

/// The person's profile, opened; `None` if there is none, `PersonalDataErased` if its key is
/// gone.
pub(crate) async fn open_profile(state: &App, id: u128) -> Result<Option<Profile>, Error> {
    let Some(sealed) = state.engine.table_get(&profile_key(id)) else { return Ok(None) };
    // A sealed profile whose key is gone was erased (the erasure's record may still be on its
    // way: the key goes first).
    let Some(key) = data_key(state, id, false).await? else { return Err(Error::PersonalDataErased(id)) };
    let plaintext = key
        .open(&profile_purpose(id), &sealed)
        .ok_or_else(|| Error::Internal(format!("principal {id}'s profile does not open under its key")))?;
    serde_json::from_slice(plaintext.expose_secret())
        .map(Some)
        .map_err(|error| Error::Internal(format!("principal {id}'s profile is not valid: {error}")))
}

/// The person's name for their own screens (an authenticator app's label, a passkey's user
/// name): the vault's, else the label older logs kept in the principal itself.
pub(crate) async fn display_name(state: &App, id: u128) -> Result<String, Error> {
    if let Some(profile) = open_profile(state, id).await? {
        return Ok(profile.name);
    }
    let ledger = read_ledger(state);
    let principal = ledger.identity().principal(id).ok_or(Error::PrincipalNotFound(id))?;
    Ok(principal.name.clone())
}

/// Whether a retried creation asks for exactly the profile that exists (role aside): the
/// comparison reads the profile, so it is journaled as a read (`create_retry`) first, and an
/// erased or restricted person never matches.
pub(crate) async fn same_profile(state: &App, caller: &Caller, id: u128, profile: &Profile) -> Result<bool, Error> {
    if erasure(state, id).is_some() {
        return Ok(false);
    }
    let stored = match open_profile(state, id).await? {
        Some(stored) => stored,
        // A principal from before the vault: its label is all there is.
        None => Profile { name: display_name(state, id).await?, ..Profile::default() },
    };
    write_access(state, caller, id, "create_retry", "profile").await?;
    Ok(stored == *profile)
}

/// The erasure asked for a person, if any, with the retention in force now: retention is
/// policy, so a changed `--retention-days` (a changed law) applies to erasures already waiting.
pub fn erasure(state: &App, id: u128) -> Option<Erasure> {
    state
        .engine
        .table_get(&erasure_key(id))
        .and_then(|bytes| serde_json::from_slice::<Erasure>(&bytes).ok())
        .map(|erasure| in_force(state, erasure))
}

fn in_force(state: &App, mut erasure: Erasure) -> Erasure {
    if erasure.erased_ns.is_none() {
        // A suspended person pays nothing, but can still be paid: the retention runs from the
        // last payment, whenever it came.
        if let Ok(last) = last_activity_ns(state, erasure.principal_id) {
            erasure.last_activity_ns = erasure.last_activity_ns.max(last);
        }
        erasure.erase_after_ns =
            erasure.last_activity_ns.saturating_add(state.retention_days.saturating_mul(NS_PER_DAY));
    }
    erasure
}

fn consent(state: &App, id: u128, purpose: Purpose) -> Option<Consent> {
    state.engine.table_get(&consent_key(id, purpose)).and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

fn principal_exists(state: &App, id: u128) -> Result<(), Error> {
    read_ledger(state).identity().principal(id).map(|_| ()).ok_or(Error::PrincipalNotFound(id))
}

/// Who may read the person's personal fields: the person, or an operator stating a purpose.
/// Anyone who may not see the principal at all is told it does not exist.
fn may_read_personal(caller: &Caller, id: u128) -> Result<bool, Error> {
    need_scope(caller, Scopes::READ)?;
    if caller.principal_id == id {
        // A device pays for its holder; it has no business with the holder's personal data.
        if matches!(caller.via, crate::auth::Via::Device(_)) {
            return Err(Error::Forbidden("personal data is read with an API key, not a device".into()));
        }
        return Ok(true);
    }
    if !crate::authz::can_see_principal(caller, id) {
        return Err(Error::PrincipalNotFound(id));
    }
    if caller.role != Role::Operator {
        return Err(Error::Forbidden(
            "personal fields are read by the person, or by an operator who states a purpose".into(),
        ));
    }
    Ok(false)
}

/// Checks that a read by someone else for `purpose` is allowed now, and journals it (the
/// access log entry and its audit note, one record) before anything is read.
async fn journal_access(state: &App, caller: &Caller, id: u128, purpose: Purpose, what: &str) -> Result<(), Error> {
    if let Some(erasure) = erasure(state, id) {
        if erasure.erased_ns.is_some() {
            return Err(Error::PersonalDataErased(id));
        }
        if purpose != Purpose::LegalObligation {
            return Err(Error::PersonalDataRestricted(
                id,
                obol_core::time::rfc3339(u128::from(erasure.erase_after_ns)),
            ));
        }
    }
    if purpose.needs_consent() && !consent(state, id, purpose).is_some_and(|c| c.granted) {
        return Err(Error::ConsentRequired(id, purpose.as_str().into()));
    }
    write_access(state, caller, id, purpose.as_str(), what).await
}

/// Journals the person's own read of its data, at most once an hour per credential (each read
/// would otherwise be a record for ever: a read-only key could grow the log without bound). A
/// key someone else holds for the person still shows, under its key id.
async fn write_own_access(state: &App, caller: &Caller, id: u128, what: &str) -> Result<(), Error> {
    const OWN_READ_LOG_INTERVAL_NS: u64 = 3_600_000_000_000;
    const OWN_READ_CREDENTIALS_MAX: usize = 100_000;
    let now_ns = state.env.now_ns();
    let credential = (id, caller.via.label());
    {
        let mut seen = state.own_reads.lock().unwrap_or_else(|p| p.into_inner());
        if seen.get(&credential).is_some_and(|last| now_ns.saturating_sub(*last) < OWN_READ_LOG_INTERVAL_NS) {
            return Ok(());
        }
        if seen.len() >= OWN_READ_CREDENTIALS_MAX {
            seen.clear();
        }
        seen.insert(credential, now_ns);
    }
    write_access(state, caller, id, "own", what).await
}

/// The person's name for its own screens (an authenticator app's label, a passkey's user name),
/// read as the person's own read.
pub(crate) async fn own_name(state: &App, caller: &Caller, id: u128, what: &str) -> Result<String, Error> {
    write_own_access(state, caller, id, what).await?;
    display_name(state, id).await
}

/// Journals one read of person `id`'s personal data (its access-log entry and audit note, one
/// record) before it happens. `purpose` is a [`Purpose`]'s name, `own` for the person's own
/// reads, or `create_retry` for a creation retried with the same id.
async fn write_access(state: &App, caller: &Caller, id: u128, purpose: &str, what: &str) -> Result<(), Error> {
    let now_ns = state.env.now_ns();
    let access = Access {
        time_ns: now_ns,
        reader_id: caller.principal_id,
        reader_role: caller.role.as_str().into(),
        via: caller.via.label(),
        purpose: purpose.into(),
        what: what.into(),
    };
    let mut nonce = [0u8; 4];
    state.env.fill(&mut nonce);
    let key = format!("{ACCESS_PREFIX}{id}/{now_ns:020}-{}-{}", caller.principal_id, obol_core::audit::hex(&nonce));
    let note = crate::audit::note(state, caller, "personal.read", &format!("principal:{id}"), purpose);
    state.engine.execute_together(vec![note, put(key, json(&access)?)]).await?;
    Ok(())
}

/// A person's profile: the person reads it freely; an operator states a `purpose`, which is
/// logged (who, when, why) where the person can read it before anything is shown.
pub async fn profile(state: &App, caller: &Caller, id: &str, purpose: Option<&str>) -> Result<Profile, Error> {
    let id = crate::parse_id("id", id)?;
    let own = may_read_personal(caller, id)?;
    principal_exists(state, id)?;
    if !own {
        let purpose = purpose.ok_or_else(|| {
            Error::InvalidField("state a purpose (?purpose=support, dispute, fraud_investigation, ...)".into())
        })?;
        journal_access(state, caller, id, Purpose::parse(purpose)?, "profile").await?;
    } else if erasure(state, id).is_some_and(|e| e.erased_ns.is_some()) {
        return Err(Error::PersonalDataErased(id));
    } else {
        // The person's own reads are logged too: a key someone else holds for the person (an
        // operator can issue one) shows in the person's log under its key id.
        write_own_access(state, caller, id, "profile").await?;
    }
    match open_profile(state, id).await? {
        Some(profile) => Ok(profile),
        None if erasure(state, id).is_some_and(|e| e.erased_ns.is_some()) => Err(Error::PersonalDataErased(id)),
        // A principal from before the vault: its name is the label the principal itself holds.
        None => Ok(Profile { name: display_name(state, id).await?, ..Profile::default() }),
    }
}

/// The id a change asks about, if the caller may ask it: the person, or an operator, with a
/// `manage` key (anyone who may not see the principal is told it does not exist).
fn person_or_operator(caller: &Caller, id: &str) -> Result<u128, Error> {
    need_scope(caller, Scopes::MANAGE)?;
    let id = crate::parse_id("id", id)?;
    if caller.principal_id != id {
        if !crate::authz::can_see_principal(caller, id) {
            return Err(Error::PrincipalNotFound(id));
        }
        need_role(caller, &[Role::Operator])?;
    }
    Ok(id)
}

/// Changes a profile (the person, or an operator; a `manage` key) and answers nothing of it
/// (changing is no way to read). Each change is sealed anew; the old ciphertext stays in the
/// log, readable only while the data key lives.
pub async fn update_profile(state: &App, caller: &Caller, id: &str, change: ProfileChange) -> Result<(), Error> {
    let id = person_or_operator(caller, id)?;
    principal_exists(state, id)?;
    let _vault_writes = state.vault_writes.lock().await;
    if let Some(erasure) = erasure(state, id) {
        return Err(match erasure.erased_ns {
            Some(_) => Error::PersonalDataErased(id),
            None => Error::PersonalDataRestricted(id, obol_core::time::rfc3339(u128::from(erasure.erase_after_ns))),
        });
    }
    let mut profile = match open_profile(state, id).await? {
        Some(profile) => profile,
        None => Profile { name: display_name(state, id).await?, ..Profile::default() },
    };
    profile.apply(change);
    let sealed = seal_profile(state, id, &profile).await?;
    let note = crate::audit::note(state, caller, "profile.update", &format!("principal:{id}"), "ok");
    state.engine.execute_together(vec![note, sealed]).await?;
    Ok(())
}

/// The person's access log, newest first, a page at a time (the person, operators and
/// auditors): at most `limit` (1 to [`ACCESS_LOG_ENTRIES_MAX`]) entries older than the cursor
/// `before` (the previous page's `next`); answers the page and the next cursor, if more remain.
pub fn access_log(
    state: &App,
    caller: &Caller,
    id: &str,
    before: Option<&str>,
    limit: usize,
) -> Result<(Vec<Access>, Option<String>), Error> {
    need_scope(caller, Scopes::READ)?;
    let id = crate::parse_id("id", id)?;
    see_privacy_records(caller, id)?;
    principal_exists(state, id)?;
    if limit == 0 || limit > ACCESS_LOG_ENTRIES_MAX {
        return Err(Error::InvalidQuery(format!("limit must be 1 to {ACCESS_LOG_ENTRIES_MAX}")));
    }
    let prefix = format!("{ACCESS_PREFIX}{id}/");
    let before = before.map(|cursor| format!("{prefix}{cursor}"));
    // One page (and one more entry, to know whether another page follows), never the whole log.
    let mut entries: Vec<(String, Access)> = state
        .engine
        .table_scan_back(&prefix, before.as_deref(), limit.saturating_add(1))
        .into_iter()
        .filter_map(|(key, bytes)| {
            let cursor = key.strip_prefix(&prefix)?.to_string();
            Some((cursor, serde_json::from_slice(&bytes).ok()?))
        })
        .collect();
    let more = entries.len() > limit;
    entries.truncate(limit);
    let next = if more { entries.last().map(|(cursor, _)| cursor.clone()) } else { None };
    Ok((entries.into_iter().map(|(_, access)| access).collect(), next))
}

/// Every entry of the person's access log, newest first (for the person's export).
fn whole_access_log(state: &App, id: u128) -> Vec<Access> {
    state
        .engine
        .table_scan_back(&format!("{ACCESS_PREFIX}{id}/"), None, usize::MAX)
        .into_iter()
        .filter_map(|(_, bytes)| serde_json::from_slice(&bytes).ok())
        .collect()
}

/// Who may read the records *about* a person's data (access log, consents, erasure: ids and
/// times, no personal fields): the person, operators and auditors.
fn see_privacy_records(caller: &Caller, id: u128) -> Result<(), Error> {
    if caller.principal_id == id {
        return Ok(());
    }
    if !crate::authz::can_see_principal(caller, id) {
        return Err(Error::PrincipalNotFound(id));
    }
    need_role(caller, &[Role::Operator, Role::Auditor])
}

/// The person's consents, one per purpose that needs one (never given: not granted).
pub fn consents(state: &App, caller: &Caller, id: &str) -> Result<Vec<Consent>, Error> {
    need_scope(caller, Scopes::READ)?;
    let id = crate::parse_id("id", id)?;
    see_privacy_records(caller, id)?;
    principal_exists(state, id)?;
    Ok(Purpose::ALL
        .into_iter()
        .filter(|p| p.needs_consent())
        .map(|purpose| {
            consent(state, id, purpose).unwrap_or(Consent {
                purpose: purpose.as_str().into(),
                granted: false,
                changed_ns: 0,
            })
        })
        .collect())
}

/// Gives or withdraws a consent: only the person, with a `manage` key; it takes effect for the
/// next read and is in the audit log.
pub async fn set_consent(
    state: &App,
    caller: &Caller,
    id: &str,
    purpose: &str,
    granted: bool,
) -> Result<Consent, Error> {
    need_scope(caller, Scopes::MANAGE)?;
    let id = crate::parse_id("id", id)?;
    if caller.principal_id != id {
        if !crate::authz::can_see_principal(caller, id) {
            return Err(Error::PrincipalNotFound(id));
        }
        return Err(Error::Forbidden("only the person gives or withdraws a consent".into()));
    }
    principal_exists(state, id)?;
    let purpose = Purpose::parse(purpose)?;
    if !purpose.needs_consent() {
        return Err(Error::InvalidField(format!(
            "{} needs no consent; consents are for marketing, analytics and threat_intel",
            purpose.as_str()
        )));
    }
    let consent = Consent { purpose: purpose.as_str().into(), granted, changed_ns: state.env.now_ns() };
    let what = if granted { "consent.grant" } else { "consent.withdraw" };
    let note = crate::audit::note(state, caller, what, &format!("principal:{id}"), purpose.as_str());
    state.engine.execute_together(vec![note, put(consent_key(id, purpose), json(&consent)?)]).await?;
    Ok(consent)
}

/// The last payment touching any of the person's accounts, else when the principal was made.
fn last_activity_ns(state: &App, id: u128) -> Result<u64, Error> {
    let ledger = read_ledger(state);
    let principal = ledger.identity().principal(id).ok_or(Error::PrincipalNotFound(id))?;
    let mut last = principal.created_ns;
    for account in ledger.accounts().iter().filter(|a| a.owner_id == id) {
        if let Some(entry) = ledger.account_history_from(account.id, 0).and_then(Iterator::last) {
            last = last.max(entry.transfer.timestamp);
        }
    }
    Ok(last)
}

/// Erases a person (GDPR art. 17): the person or an operator asks (a `manage` key). The
/// principal is suspended at once and its personal data restricted; the data key is destroyed
/// now if the law's retention (from the last payment) has ended, else by the retention
/// scheduler when it does. Asking again answers the erasure already asked.
pub async fn erase(state: &App, caller: &Caller, id: &str) -> Result<Erasure, Error> {
    let id = person_or_operator(caller, id)?;
    let status = read_ledger(state).identity().principal(id).map(|p| (p.status, p.role));
    let Some((status, role)) = status else { return Err(Error::PrincipalNotFound(id)) };
    if role == Role::Operator {
        return Err(Error::Forbidden("an operator's principal is not erased; suspend it instead".into()));
    }
    let _vault_writes = state.vault_writes.lock().await;
    if let Some(existing) = erasure(state, id) {
        return Ok(existing);
    }
    let now_ns = state.env.now_ns();
    let last_activity_ns = last_activity_ns(state, id)?;
    let erasure = Erasure {
        principal_id: id,
        requested_ns: now_ns,
        requested_by: caller.principal_id,
        last_activity_ns,
        erase_after_ns: last_activity_ns.saturating_add(state.retention_days.saturating_mul(NS_PER_DAY)),
        erased_ns: None,
    };
    let mut ops = vec![
        crate::audit::note(state, caller, "principal.erase.request", &format!("principal:{id}"), "ok"),
        put(erasure_key(id), json(&erasure)?),
    ];
    if status == Status::Active {
        ops.push(Op::Identity(obol_core::identity::IdentityCommand::SetPrincipalStatus {
            id,
            status: Status::Suspended,
        }));
    }
    state.engine.execute_together(ops).await?;
    state.sessions.close_all(id);
    if erasure.erase_after_ns <= now_ns {
        return shred(state, vec![erasure], now_ns)
            .await?
            .pop()
            .ok_or_else(|| Error::Internal("an erasure vanished".into()));
    }
    Ok(erasure)
}

/// Destroys the person's data key (scrubbed from the store's files), then journals that it is
/// gone: the profile's key in the state table is removed and the erasure marked, with an audit
/// note. The key goes first: a crash in between leaves an erasure the next sweep finishes.
/// The caller holds `vault_writes`.
async fn shred(state: &App, erasures: Vec<Erasure>, now_ns: u64) -> Result<Vec<Erasure>, Error> {
    if erasures.is_empty() {
        return Ok(erasures);
    }
    // Every key first, in one scrub of the key area (its cost grows with the vault, not with
    // how many are erased together).
    state.engine.meta_erase(erasures.iter().map(|e| person_key_meta(e.principal_id)).collect()).await?;
    let mut done = Vec::with_capacity(erasures.len());
    for mut erasure in erasures {
        let id = erasure.principal_id;
        erasure.erased_ns = Some(now_ns);
        let note = Op::Note(obol_core::audit::Note {
            actor_id: 0,
            role: "system".into(),
            via: obol_core::audit::Note::field("retention"),
            origin: String::new(),
            what: obol_core::audit::Note::field("principal.erase"),
            subject: obol_core::audit::Note::field(&format!("principal:{id}")),
            outcome: obol_core::audit::Note::field("key_destroyed"),
        });
        state
            .engine
            .execute_together(vec![note, put(profile_key(id), Vec::new()), put(erasure_key(id), json(&erasure)?)])
            .await?;
        tracing::info!(principal = %id, "personal data erased (data key destroyed)");
        done.push(erasure);
    }
    Ok(done)
}

/// Every erasure asked and not done, with whether it is due at `at_ns`: the retention
/// scheduler's plan, for a dry run (operators and auditors).
pub fn retention_plan(state: &App, caller: &Caller, at_ns: u64) -> Result<Vec<(Erasure, bool)>, Error> {
    need_scope(caller, Scopes::READ)?;
    need_role(caller, &[Role::Operator, Role::Auditor])?;
    Ok(pending_erasures(state).into_iter().map(|e| (e.clone(), e.erase_after_ns <= at_ns)).collect())
}

fn pending_erasures(state: &App) -> Vec<Erasure> {
    state
        .engine
        .table_scan(ERASURE_PREFIX)
        .into_iter()
        .filter_map(|(_, bytes)| serde_json::from_slice::<Erasure>(&bytes).ok())
        .filter(|e| e.erased_ns.is_none())
        .map(|e| in_force(state, e))
        .collect()
}

/// The retention scheduler: destroys the data keys of every erasure whose retention has ended.
/// Runs at start and on the server's sweep; returns how many it erased.
pub async fn sweep(state: &App) -> Result<usize, Error> {
    let now_ns = state.env.now_ns();
    let mut erased = 0;
    let _vault_writes = state.vault_writes.lock().await;
    let due: Vec<Erasure> = pending_erasures(state).into_iter().filter(|e| e.erase_after_ns <= now_ns).collect();
    erased += shred(state, due, now_ns).await?.len();
    Ok(erased)
}

/// What obol holds about a person (GDPR art. 15 and 20), for the person or an operator (whose
/// read is logged with the purpose `data_subject_request`).
#[derive(Debug)]
pub struct Export {
    /// When it was made, ns.
    pub generated_ns: u64,
    /// The principal (id, role, status, creation).
    pub principal: obol_core::identity::Principal,
    /// The profile, unless erased (or never stored).
    pub profile: Option<Profile>,
    /// The erasure asked, if any.
    pub erasure: Option<Erasure>,
    /// Accounts the person owns.
    pub accounts: Vec<obol_core::ledger::Account>,
    /// Every transfer touching them, in ledger order.
    pub transfers: Vec<obol_core::ledger::Transfer>,
    /// Tabs paid from or to them.
    pub tabs: Vec<obol_core::channel::Tab>,
    /// Devices acting for the person.
    pub devices: Vec<obol_core::identity::Device>,
    /// API keys (no secrets: ids, scopes, dates).
    pub keys: Vec<obol_core::identity::ApiKey>,
    /// Risk reviews of the person's payments, with their reasons.
    pub reviews: Vec<crate::views::ReviewDto>,
    /// Consents.
    pub consents: Vec<Consent>,
    /// Reads of the personal fields by others.
    pub access_log: Vec<Access>,
}

/// Everything obol holds about a person.
pub async fn export(state: &App, caller: &Caller, id: &str) -> Result<Export, Error> {
    let id_text = id;
    let id = crate::parse_id("id", id)?;
    let own = may_read_personal(caller, id)?;
    principal_exists(state, id)?;
    let erasure = erasure(state, id);
    let profile = match &erasure {
        Some(e) if e.erased_ns.is_some() => None,
        _ => {
            if own {
                write_own_access(state, caller, id, "export").await?;
            } else {
                journal_access(state, caller, id, Purpose::DataSubjectRequest, "export").await?;
            }
            match open_profile(state, id).await {
                Err(Error::PersonalDataErased(_)) => None,
                other => other?,
            }
        }
    };
    let reviews = crate::reviews::reviews_of_owner(state, id);
    let ledger = read_ledger(state);
    let principal = ledger.identity().principal(id).cloned().ok_or(Error::PrincipalNotFound(id))?;
    let accounts: Vec<_> = ledger.accounts().iter().filter(|a| a.owner_id == id).cloned().collect();
    let owned: std::collections::HashSet<u128> = accounts.iter().map(|a| a.id).collect();
    // Each owned account's own history (an index), never a scan of the whole ledger; a transfer
    // between two of the person's accounts is listed once.
    let mut seen = std::collections::HashSet::new();
    let mut transfers: Vec<obol_core::ledger::Transfer> = Vec::new();
    for account in &accounts {
        for entry in ledger.account_history_from(account.id, 0).into_iter().flatten() {
            if seen.insert(entry.transfer.id) {
                transfers.push(entry.transfer);
            }
        }
    }
    transfers.sort_by_key(|t| t.timestamp);
    let tabs = ledger
        .tabs()
        .iter()
        .filter(|entry| {
            owned.contains(&entry.tab.payee_id) || ledger.tab_payer(&entry.tab).is_some_and(|p| owned.contains(&p))
        })
        .map(|entry| entry.tab.clone())
        .collect();
    let devices = ledger.identity().devices_of(id).into_iter().cloned().collect();
    let keys = ledger.identity().keys_of(id).into_iter().cloned().collect();
    drop(ledger);
    Ok(Export {
        generated_ns: state.env.now_ns(),
        principal,
        profile,
        erasure,
        accounts,
        transfers,
        tabs,
        devices,
        keys,
        reviews,
        consents: consents(state, &as_self(caller, id), id_text)?,
        access_log: whole_access_log(state, id),
    })
}

/// The caller seen as the person itself, to read records it may already see.
fn as_self(caller: &Caller, id: u128) -> Caller {
    Caller { principal_id: id, ..caller.clone() }
}

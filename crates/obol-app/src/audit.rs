//! The audit log's use cases: signed checkpoints, entries, inclusion and consistency proofs, and
//! export pages that `obol audit verify` checks offline.
//!
//! Who may read what: any signed-in caller may read a checkpoint, the log's verifier key and a
//! consistency proof (hashes only: what lets anyone hold the server to its history); entries,
//! inclusion proofs and exports (what happened, to which ids, when) are for the operator and
//! auditors.

use std::fmt;

use base64ct::{Base64, Encoding};
use ed25519_dalek::SigningKey;
use obol_core::audit::{self, Checkpoint};
use obol_core::identity::{Role, Scopes};
use obol_core::merkle::{Hash, ProofError};

use crate::App;
use crate::auth::Caller;
use crate::authz::{need_role, need_scope};
use crate::error::Error;

/// Export pages hold at most this many entries.
pub const EXPORT_PAGE_ENTRIES_MAX: u64 = 4096;
/// An export carries a signed checkpoint after every this many entries (and after its last):
/// a verifier names the span of entries between two checkpoints that was altered, when the
/// alteration also rewrote the entries' own leaf hashes.
pub const EXPORT_CHECKPOINT_EVERY: u64 = 256;
/// The first line of an export names its format.
pub const EXPORT_FORMAT: &str = "obol-audit-export/1";

/// The key that signs checkpoints, and the log's name (its C2SP origin).
pub struct AuditKey {
    origin: String,
    key: SigningKey,
    /// Keys the pseudonyms of client addresses in audit notes (derived from the signing key's
    /// seed): an address is personal data, so notes hold `ip:<keyed hash>`, the same for every
    /// request from one address, which only the key's keeper can test a suspect address against.
    address_key: [u8; 32],
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditKey({}, ***)", self.origin)
    }
}

impl AuditKey {
    /// The signing key from its 32-byte seed, for the log of instance `instance_id`.
    pub fn new(instance_id: &str, seed: &crate::vault::Secret<[u8; 32]>) -> AuditKey {
        let address_key = keyed(seed.expose_secret(), b"obol audit address pseudonyms");
        AuditKey { origin: origin(instance_id), key: SigningKey::from_bytes(seed.expose_secret()), address_key }
    }

    /// The pseudonym of client address `address` in audit notes: `ip:` and 16 hex digits.
    pub fn address_pseudonym(&self, address: std::net::IpAddr) -> String {
        let mac = keyed(&self.address_key, address.to_string().as_bytes());
        format!("ip:{}", audit::hex(mac.get(..8).unwrap_or(&mac)))
    }

    /// The log's name: `obol/<instance id>/audit`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The note verifier key of the log: `origin+hash+base64(0x01 || key)`.
    pub fn verifier_key(&self) -> String {
        audit::verifier_key(&self.origin, &self.key.verifying_key())
    }

    /// The same key, named for another instance.
    pub(crate) fn renamed(&self, instance_id: &str) -> AuditKey {
        AuditKey { origin: origin(instance_id), key: self.key.clone(), address_key: self.address_key }
    }

    fn sign(&self, size: u64, root: Hash) -> String {
        Checkpoint { origin: self.origin.clone(), size, root }.sign(&self.key)
    }
}

/// HMAC-SHA256 of `message` under `key`.
fn keyed(key: &[u8; 32], message: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key) else { return [0; 32] };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn origin(instance_id: &str) -> String {
    format!("obol/{instance_id}/audit")
}

/// An audit note of what `caller` did to `subject`, and how it ended (PCI DSS 10.2.2: the
/// record's time is when; ids only).
pub(crate) fn note(state: &App, caller: &Caller, what: &str, subject: &str, outcome: &str) -> obol_core::record::Op {
    let via = caller.via.label();
    obol_core::record::Op::Note(audit::Note {
        actor_id: caller.principal_id,
        role: caller.role.as_str().to_string(),
        via: audit::Note::field(&via),
        origin: caller.peer.map(|peer| state.audit_key.address_pseudonym(peer)).unwrap_or_default(),
        what: audit::Note::field(what),
        subject: audit::Note::field(subject),
        outcome: audit::Note::field(outcome),
    })
}

/// Journals a refusal that moved nothing (a payment the risk policy blocked) before the caller
/// is answered; a log that cannot take it is logged and does not change the answer. A block
/// also alerts the payer (`payment.blocked`), with `details` (what was refused and why, in
/// words: never the rule or the score) beside the subject.
pub(crate) async fn journal_refusal(
    state: &App,
    caller: &Caller,
    what: &str,
    subject: &str,
    outcome: &str,
    details: serde_json::Map<String, serde_json::Value>,
) {
    let mut ops = vec![note(state, caller, what, subject, outcome)];
    if what == "risk.block" {
        let mut data = details;
        data.insert("subject".into(), subject.into());
        let data = serde_json::Value::Object(data);
        ops.push(crate::webhooks::event(state, "payment.blocked", &[caller.principal_id], data));
    }
    if let Err(error) = state.engine.execute_together(ops).await {
        tracing::error!(%error, what, "an audit note could not be journaled");
    }
}

/// Why a payment was blocked, in the payer's words (English and Korean): what a
/// `payment.blocked` alert carries.
pub(crate) fn block_reason(risk: &crate::views::RiskDto) -> serde_json::Map<String, serde_json::Value> {
    let mut details = serde_json::Map::new();
    details.insert("reason_en".into(), risk.reason_en.clone().into());
    details.insert("reason_ko".into(), risk.reason_ko.clone().into());
    details
}

fn read_log(state: &App) -> std::sync::RwLockReadGuard<'_, audit::Log> {
    state.engine.audit().read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn proof_error(error: ProofError) -> Error {
    match error {
        ProofError::IndexBeyondSize { .. } | ProofError::SizeBeyondTree { .. } => {
            Error::AuditNotFound(error.to_string())
        }
        ProofError::SizesOutOfOrder { .. } => Error::InvalidQuery(error.to_string()),
    }
}

fn may_read_entries(caller: &Caller) -> Result<(), Error> {
    need_scope(caller, Scopes::READ)?;
    need_role(caller, &[Role::Operator, Role::Auditor])
}

/// The signed checkpoint of the log's first `size` entries (all of them by default).
pub fn checkpoint(state: &App, caller: &Caller, size: Option<u64>) -> Result<String, Error> {
    need_scope(caller, Scopes::READ)?;
    let log = read_log(state);
    let size = size.unwrap_or(log.size());
    let root = log.tree().root(size).map_err(proof_error)?;
    drop(log);
    Ok(state.audit_key.sign(size, root))
}

/// Entry `index` of the log, exactly as its leaf hashes it.
pub struct EntryView {
    /// 0-based position (record `index + 1`).
    pub index: u64,
    /// The entry's canonical JSON.
    pub entry: String,
    /// Its leaf hash, hex.
    pub leaf_hash: String,
}

/// Entry `index`.
pub fn entry(state: &App, caller: &Caller, index: u64) -> Result<EntryView, Error> {
    may_read_entries(caller)?;
    let log = read_log(state);
    let bytes = log.entry(index).ok_or_else(|| Error::AuditNotFound(format!("the log has no entry {index}")))?;
    Ok(EntryView {
        index,
        entry: String::from_utf8_lossy(bytes).into_owned(),
        leaf_hash: audit::hex(&obol_core::merkle::leaf_hash(bytes)),
    })
}

/// An inclusion proof, with the root it leads to.
pub struct InclusionView {
    /// The entry.
    pub index: u64,
    /// The tree size the proof is for.
    pub size: u64,
    /// The entry's leaf hash, hex.
    pub leaf_hash: String,
    /// The tree's root at `size`, base64 (as a checkpoint prints it).
    pub root: String,
    /// The audit path, bottom up, base64.
    pub path: Vec<String>,
}

/// The proof that entry `index` is in the log's first `size` entries (all of them by default).
pub fn inclusion(state: &App, caller: &Caller, index: u64, size: Option<u64>) -> Result<InclusionView, Error> {
    may_read_entries(caller)?;
    let log = read_log(state);
    let size = size.unwrap_or(log.size());
    let path = log.tree().inclusion_proof(index, size).map_err(proof_error)?;
    let root = log.tree().root(size).map_err(proof_error)?;
    let leaf = log.tree().leaf(index).ok_or_else(|| Error::AuditNotFound(format!("the log has no entry {index}")))?;
    Ok(InclusionView {
        index,
        size,
        leaf_hash: audit::hex(&leaf),
        root: Base64::encode_string(&root),
        path: path.iter().map(|hash| Base64::encode_string(hash)).collect(),
    })
}

/// A consistency proof between two sizes, with both roots.
pub struct ConsistencyView {
    /// The older size.
    pub from: u64,
    /// The newer size.
    pub to: u64,
    /// Root at `from`, base64.
    pub from_root: String,
    /// Root at `to`, base64.
    pub to_root: String,
    /// The proof, base64.
    pub proof: Vec<String>,
}

/// The proof that the log's first `from` entries are a prefix of its first `to` (all of them by
/// default).
pub fn consistency(state: &App, caller: &Caller, from: u64, to: Option<u64>) -> Result<ConsistencyView, Error> {
    need_scope(caller, Scopes::READ)?;
    let log = read_log(state);
    if from > log.size() {
        return Err(Error::AuditNotFound(format!("the log holds {} entries; {from} were asked for", log.size())));
    }
    let to = to.unwrap_or(log.size());
    let proof = log.tree().consistency_proof(from, to).map_err(proof_error)?;
    let from_root = log.tree().root(from).map_err(proof_error)?;
    let to_root = log.tree().root(to).map_err(proof_error)?;
    Ok(ConsistencyView {
        from,
        to,
        from_root: Base64::encode_string(&from_root),
        to_root: Base64::encode_string(&to_root),
        proof: proof.iter().map(|hash| Base64::encode_string(hash)).collect(),
    })
}

/// Entries `[from, to)` as export lines (`{"index":..,"leaf":..,"entry":..}`), with a signed
/// checkpoint line after every [`EXPORT_CHECKPOINT_EVERY`]th entry and after entry `to - 1`.
/// `to - from` is at most [`EXPORT_PAGE_ENTRIES_MAX`].
pub fn export_page(state: &App, caller: &Caller, from: u64, to: u64) -> Result<String, Error> {
    may_read_entries(caller)?;
    if from > to || to - from > EXPORT_PAGE_ENTRIES_MAX {
        return Err(Error::InvalidQuery(format!(
            "an export page runs from an entry to a later one, at most {EXPORT_PAGE_ENTRIES_MAX} entries"
        )));
    }
    let log = read_log(state);
    if to > log.size() {
        return Err(Error::AuditNotFound(format!("the log holds {} entries; {to} were asked for", log.size())));
    }
    let mut text = String::new();
    let mut heads = Vec::new();
    for index in from..to {
        let bytes = log.entry(index).ok_or_else(|| Error::Internal(format!("audit entry {index} missing")))?;
        let leaf = obol_core::merkle::leaf_hash(bytes);
        text.push_str(&format!("{{\"index\":{index},\"leaf\":\"{}\",\"entry\":", audit::hex(&leaf)));
        text.push_str(&String::from_utf8_lossy(bytes));
        text.push_str("}\n");
        let size = index + 1;
        if size % EXPORT_CHECKPOINT_EVERY == 0 || size == to {
            let root = log.tree().root(size).map_err(proof_error)?;
            heads.push((text.len(), size, root));
        }
    }
    drop(log);
    // Signing happens outside the lock; the lines go where their entries ended.
    let mut out = String::with_capacity(text.len() + heads.len() * 200);
    let mut written = 0usize;
    for (at, size, root) in heads {
        out.push_str(text.get(written..at).unwrap_or(""));
        written = at;
        let note = state.audit_key.sign(size, root);
        out.push_str(&serde_json::json!({ "checkpoint": note }).to_string());
        out.push('\n');
    }
    out.push_str(text.get(written..).unwrap_or(""));
    Ok(out)
}

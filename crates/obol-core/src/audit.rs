//! The audit log: one entry per durable record, each a leaf of an RFC 9162 Merkle tree
//! ([`crate::merkle`]), and checkpoints of that tree signed in the C2SP `tlog-checkpoint` signed
//! note format.
//!
//! An entry is derived from its record alone (so the log is rebuilt on replay and never stored
//! twice): its position, its time, the HMAC-SHA256 of the record's exact bytes under the store's record
//! key ([`record_digest`]: so no byte of the
//! history can change without changing the tree) and one line per operation naming what it did
//! and to which pseudonymous ids. It carries no secret and no personal field: key hashes, sealed
//! seeds, names and values written to the state table stay in the record, behind the digest.
//!
//! The entry is canonical JSON (fixed key order, no spaces, ASCII), written here by hand: the
//! bytes that are hashed are the bytes an export prints, one entry per line.

use std::fmt::Write as _;

use base64ct::{Base64, Encoding};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::channel::TabCommand;
use crate::identity::IdentityCommand;
use crate::merkle::Hash;
use crate::record::{Op, Record};

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// Fields of a [`Note`] besides its actor.
pub const NOTE_FIELDS: usize = 6;
/// Each of a note's text fields is at most this long.
pub const NOTE_FIELD_BYTES_MAX: usize = 128;

/// An audit note (PCI DSS 10.2.2: who, what, when (the record's time), where from, outcome,
/// which resource), journaled as `Op::Note` beside what it describes or alone for a decision that
/// moved nothing. Every text field is printable ASCII without quotes or backslashes, at most
/// [`NOTE_FIELD_BYTES_MAX`] bytes; ids only, never a name or a secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Note {
    /// The principal who acted (0: the server itself).
    pub actor_id: u128,
    /// Its role, as `Role::as_str` names it.
    pub role: String,
    /// The credential: `key:<key id>` or `device:<id>`.
    pub via: String,
    /// The address the request came from, if known.
    pub origin: String,
    /// What happened, e.g. `risk.block`, `review.approve`, `policy.change`.
    pub what: String,
    /// The resource: ids, e.g. `transfer:12` or `review:r-77`.
    pub subject: String,
    /// The outcome: a result or reason code.
    pub outcome: String,
}

impl Note {
    /// The text fields in their stored order.
    pub fn fields(&self) -> [&str; NOTE_FIELDS] {
        [&self.role, &self.via, &self.origin, &self.what, &self.subject, &self.outcome]
    }

    /// A note from its stored fields.
    pub fn from_fields(actor_id: u128, fields: [String; NOTE_FIELDS]) -> Note {
        let [role, via, origin, what, subject, outcome] = fields;
        Note { actor_id, role, via, origin, what, subject, outcome }
    }

    /// Whether every field may be written as it is.
    pub fn fits(&self) -> bool {
        self.fields().iter().all(|field| field.len() <= NOTE_FIELD_BYTES_MAX && field.chars().all(note_char))
    }

    /// Bytes of text in the note.
    pub fn text_bytes(&self) -> usize {
        self.fields().iter().map(|field| field.len()).sum()
    }

    /// `text` cut to what a note field holds: printable ASCII, no quotes or backslashes.
    pub fn field(text: &str) -> String {
        text.chars().filter(|c| note_char(*c)).take(NOTE_FIELD_BYTES_MAX).collect()
    }
}

fn note_char(c: char) -> bool {
    (c.is_ascii_graphic() || c == ' ') && !matches!(c, '"' | '\\')
}

/// What an operation did, and to which id, for its entry's `events`.
fn event(op: &Op) -> (&'static str, Option<String>, usize) {
    match op {
        Op::CreateAccounts(events) => ("accounts.create", None, events.len()),
        Op::CreateTransfers(events) => ("transfers.create", None, events.len()),
        Op::Dispute(events) => ("dispute.transfers", None, events.len()),
        Op::Pay(payment) => ("payment", Some(payment.device_id.to_string()), payment.transfers.len()),
        Op::Put(put) => {
            // The namespace only: a key's tail may name what its value is about.
            let namespace = put.key.split([':', '/']).next().unwrap_or("");
            let namespace: String = namespace
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                .take(32)
                .collect();
            ("state.put", Some(namespace), 1)
        }
        Op::Tab(command) => {
            let (what, tab_id) = match command {
                TabCommand::Open { tab_id, .. } => ("tab.open", *tab_id),
                TabCommand::Voucher(voucher) => ("tab.voucher", voucher.tab_id),
                TabCommand::Commit(commitment) => ("tab.commit", commitment.tab_id),
                TabCommand::Tick { tab_id, .. } => ("tab.tick", *tab_id),
                TabCommand::TopUp { tab_id, .. } => ("tab.top_up", *tab_id),
                TabCommand::Settle { tab_id, .. } => ("tab.settle", *tab_id),
            };
            (what, Some(tab_id.to_string()), 1)
        }
        Op::Identity(command) => {
            let (what, subject) = identity_event(command);
            (what, Some(subject), 1)
        }
        Op::Note(_) => ("note", None, 1),
    }
}

/// What an identity command does, and to which id, as its entry's event names it.
pub fn identity_event(command: &IdentityCommand) -> (&'static str, String) {
    use IdentityCommand as C;
    match command {
        C::CreatePrincipal { id, .. } => ("principal.create", id.to_string()),
        C::SetPrincipalStatus { id, .. } => ("principal.status", id.to_string()),
        C::CreateApiKey { principal_id, .. } => ("api_key.create", principal_id.to_string()),
        C::RevokeApiKey { key_id } => ("api_key.revoke", printable(key_id)),
        C::SetApiKeyExpiry { key_id, .. } => ("api_key.expiry", printable(key_id)),
        C::RegisterDevice { id, .. } => ("device.register", id.to_string()),
        C::SetDeviceStatus { id, .. } => ("device.status", id.to_string()),
        C::RotateDeviceKey { id, .. } => ("device.rotate_key", id.to_string()),
        C::SetDeviceLimits { id, .. } => ("device.limits", id.to_string()),
        C::EnrollTotp { principal_id, .. } => ("factor.totp_enroll", principal_id.to_string()),
        C::ConfirmTotp { principal_id, .. } => ("factor.totp_confirm", principal_id.to_string()),
        C::UseFactor { principal_id, .. } => ("factor.used", principal_id.to_string()),
        C::FailFactor { principal_id } => ("factor.failed", principal_id.to_string()),
        C::UnlockFactors { principal_id } => ("factor.unlock", principal_id.to_string()),
        C::SetStepUpPolicy { principal_id, .. } => ("step_up.policy", principal_id.to_string()),
        C::MarkDevicePaid { id } => ("device.first_payment", id.to_string()),
        C::PutPasskey { principal_id, .. } => ("factor.passkey", principal_id.to_string()),
        C::ChargeDevice { id, .. } => ("device.charge", id.to_string()),
        C::DisablePasskey { principal_id, .. } => ("factor.passkey_disable", principal_id.to_string()),
        C::RemovePasskey { principal_id, .. } => ("factor.passkey_remove", principal_id.to_string()),
        C::SetFrozen { principal_id, frozen: true, .. } => ("payments.freeze", principal_id.to_string()),
        C::SetFrozen { principal_id, frozen: false, .. } => ("payments.unfreeze", principal_id.to_string()),
    }
}

/// An id as it may appear in an entry: printable ASCII without quotes or backslashes.
fn printable(text: &str) -> String {
    text.chars().filter(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\')).take(64).collect()
}

/// What an entry names a record by: HMAC-SHA256 of its exact stored bytes under the store's
/// record key. Keyed, so that no reader of the log can confirm a guess of a record's contents
/// (a name, an amount) by hashing it; the store's keeper can check every record against it.
pub fn record_digest(record_key: &[u8; 32], record_bytes: &[u8]) -> Hash {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(record_key).unwrap_or_else(|_| unreachable_key());
    mac.update(record_bytes);
    mac.finalize().into_bytes().into()
}

#[expect(clippy::panic, reason = "HMAC takes a key of any length; a 32-byte one cannot be refused")]
fn unreachable_key() -> hmac::Hmac<Sha256> {
    panic!("HMAC refused a 32-byte key")
}

/// The audit entry of record `seq` (1-based), whose exact stored bytes are `record_bytes`.
pub fn entry(seq: u64, record: &Record, record_key: &[u8; 32], record_bytes: &[u8]) -> Vec<u8> {
    entry_of(seq, record, &record_digest(record_key, record_bytes))
}

/// [`entry`], from the record's [`record_digest`] (which the shell may compute while it syncs).
pub fn entry_of(seq: u64, record: &Record, digest: &Hash) -> Vec<u8> {
    let mut text = String::with_capacity(128 + record.ops.len() * 48);
    let _ =
        write!(text, "{{\"seq\":{seq},\"time_ns\":{},\"record_hmac\":\"{}\",\"events\":[", record.now_ns, hex(digest));
    for (index, op) in record.ops.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        if let Op::Note(note) = op {
            // Fields were checked printable, quote-free ASCII when the note was encoded.
            let _ = write!(
                text,
                "{{\"what\":\"{}\",\"id\":\"{}\",\"by\":\"{}\",\"role\":\"{}\",\"via\":\"{}\",\"from\":\"{}\",\"outcome\":\"{}\"}}",
                Note::field(&note.what),
                Note::field(&note.subject),
                note.actor_id,
                Note::field(&note.role),
                Note::field(&note.via),
                Note::field(&note.origin),
                Note::field(&note.outcome)
            );
            continue;
        }
        let (what, subject, count) = event(op);
        let _ = write!(text, "{{\"what\":\"{what}\"");
        if let Some(subject) = subject {
            let _ = write!(text, ",\"id\":\"{subject}\"");
        }
        if count != 1 {
            let _ = write!(text, ",\"count\":{count}");
        }
        text.push('}');
    }
    text.push_str("]}");
    text.into_bytes()
}

/// The audit log: every entry, in order, and the Merkle tree over them.
#[derive(Debug, Default)]
pub struct Log {
    tree: crate::merkle::Tree,
    entries: Vec<Box<[u8]>>,
}

impl Log {
    /// An empty log.
    pub fn new() -> Log {
        Log::default()
    }

    /// Appends the entry of the next record.
    pub fn append(&mut self, entry: Vec<u8>) {
        self.tree.push(crate::merkle::leaf_hash(&entry));
        self.entries.push(entry.into_boxed_slice());
        assert_eq!(self.tree.size(), self.entries.len() as u64, "one leaf per entry");
    }

    /// Entries in the log.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// Entry `index` (0-based; record `index + 1`), exactly as its leaf hashes it.
    pub fn entry(&self, index: u64) -> Option<&[u8]> {
        self.entries.get(usize::try_from(index).ok()?).map(|entry| &entry[..])
    }

    /// The tree, for roots and proofs.
    pub fn tree(&self) -> &crate::merkle::Tree {
        &self.tree
    }
}

/// Why a checkpoint or a key was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The text is not a signed note holding a checkpoint.
    #[error("not a checkpoint: {0}")]
    Malformed(String),
    /// The verifier key is not `name+hash+base64(0x01 || key)` of an Ed25519 key.
    #[error("not an Ed25519 note verifier key: {0}")]
    BadKey(String),
    /// No signature by the expected key.
    #[error("the checkpoint carries no signature by {0}")]
    Unsigned(String),
    /// The note is another log's checkpoint.
    #[error("the checkpoint is of log {origin:?}, not {name:?}")]
    OtherLog {
        /// The note's origin line.
        origin: String,
        /// The log the key signs for.
        name: String,
    },
    /// A signature by the expected key that does not verify.
    #[error("the checkpoint's signature by {0} does not verify")]
    BadSignature(String),
}

/// A tree head: the log `origin` holds `size` entries under `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name (the C2SP origin line); also its key's name.
    pub origin: String,
    /// Entries in the tree.
    pub size: u64,
    /// The tree's root hash.
    pub root: Hash,
}

/// The 4-byte key id of an Ed25519 note key: `SHA-256(name || "\n" || 0x01 || key)[..4]`.
fn key_hash(name: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([1u8]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let mut id = [0u8; 4];
    id.copy_from_slice(digest.get(..4).unwrap_or(&[0; 4]));
    id
}

/// A key name, as a note allows one: non-empty, no spaces and no `+`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(char::is_whitespace) && !name.contains('+')
}

/// The note verifier key of `key` under `name`: `name+hash+base64(0x01 || key)`.
pub fn verifier_key(name: &str, key: &VerifyingKey) -> String {
    let mut typed = Vec::with_capacity(33);
    typed.push(1u8);
    typed.extend_from_slice(key.as_bytes());
    format!("{name}+{}+{}", hex(&key_hash(name, key)), Base64::encode_string(&typed))
}

/// Reads a note verifier key: its name and Ed25519 key (the hash must match both).
pub fn parse_verifier_key(text: &str) -> Result<(String, VerifyingKey), CheckpointError> {
    let bad = |why: &str| CheckpointError::BadKey(why.to_string());
    let mut parts = text.trim().splitn(3, '+');
    let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected name+hash+key"));
    };
    if !valid_name(name) {
        return Err(bad("the name is empty or holds a space or +"));
    }
    let typed = Base64::decode_vec(key).map_err(|_| bad("the key is not base64"))?;
    let Some((&1, key_bytes)) = typed.split_first() else { return Err(bad("the key is not an Ed25519 (type 1) key")) };
    let key_bytes: [u8; 32] = key_bytes.try_into().map_err(|_| bad("an Ed25519 key has 32 bytes"))?;
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| bad("not a valid Ed25519 point"))?;
    if hash != hex(&key_hash(name, &key)) {
        return Err(bad("the key hash does not match the name and key"));
    }
    Ok((name.to_string(), key))
}

impl Checkpoint {
    /// The checkpoint's note text: origin, size and base64 root, one per line.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, Base64::encode_string(&self.root))
    }

    /// The signed note: the body, a blank line, and one signature line by `key` named for the
    /// origin (`— origin base64(key hash || signature)`).
    pub fn sign(&self, key: &SigningKey) -> String {
        let body = self.body();
        let signature = key.sign(body.as_bytes());
        let mut stamp = Vec::with_capacity(68);
        stamp.extend_from_slice(&key_hash(&self.origin, &key.verifying_key()));
        stamp.extend_from_slice(&signature.to_bytes());
        format!("{body}\n\u{2014} {} {}\n", self.origin, Base64::encode_string(&stamp))
    }

    /// Reads a signed checkpoint and checks its signature by the key `name` (the note may carry
    /// other signatures, e.g. witnesses' cosignatures, which are ignored).
    pub fn open(note: &str, name: &str, key: &VerifyingKey) -> Result<Checkpoint, CheckpointError> {
        let bad = |why: &str| CheckpointError::Malformed(why.to_string());
        let Some((body, signatures)) = note.split_once("\n\n") else {
            return Err(bad("no blank line before the signatures"));
        };
        let body = format!("{body}\n");
        let mut lines = body.lines();
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next()) else {
            return Err(bad("a checkpoint has an origin, a size and a root hash"));
        };
        if origin.is_empty() {
            return Err(bad("the origin is empty"));
        }
        // A key signs for one log: a note naming another (a copy of the store renamed, signing
        // with the same key) is not this log's, however valid its signature.
        if origin != name {
            return Err(CheckpointError::OtherLog { origin: origin.to_string(), name: name.to_string() });
        }
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
            return Err(bad("the size is not a decimal number"));
        }
        let size: u64 = size.parse().map_err(|_| bad("the size is too large"))?;
        let root: Hash = Base64::decode_vec(root)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| bad("the root is not 32 bytes of base64"))?;
        let id = key_hash(name, key);
        let mut found = false;
        for line in signatures.lines() {
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                return Err(bad("a signature line starts with an em dash and a space"));
            };
            let Some((signer, stamp)) = rest.split_once(' ') else { return Err(bad("a signature line names its key")) };
            if signer != name {
                continue;
            }
            let stamp = Base64::decode_vec(stamp).map_err(|_| bad("a signature is not base64"))?;
            let Some((stamp_id, signature)) = stamp.split_first_chunk::<4>() else { continue };
            if *stamp_id != id {
                continue;
            }
            found = true;
            let signature = ed25519_dalek::Signature::from_slice(signature)
                .map_err(|_| CheckpointError::BadSignature(name.to_string()))?;
            key.verify(body.as_bytes(), &signature).map_err(|_| CheckpointError::BadSignature(name.to_string()))?;
        }
        if !found {
            return Err(CheckpointError::Unsigned(name.to_string()));
        }
        Ok(Checkpoint { origin: origin.to_string(), size, root })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    //! Entries are canonical and carry no personal field; checkpoints round-trip through the
    //! C2SP signed-note format and refuse every alteration.
    use super::*;
    use crate::identity::Role;
    use crate::table::Put;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    #[test]
    fn an_entry_names_each_operation_and_hides_names_and_values() {
        let record = Record {
            now_ns: 42,
            ops: vec![
                Op::Identity(IdentityCommand::CreatePrincipal {
                    id: 9,
                    role: Role::Holder,
                    name: "Ada Lovelace".into(),
                }),
                Op::Put(Put { key: "review:77".into(), value: b"secret note".to_vec() }),
                Op::CreateTransfers(Vec::new()),
                Op::Note(Note {
                    actor_id: 500,
                    role: "auditor".into(),
                    via: "key:k1".into(),
                    origin: "10.0.0.7".into(),
                    what: "audit.export".into(),
                    subject: "entries:0-9".into(),
                    outcome: "ok".into(),
                }),
            ],
        };
        let text = String::from_utf8(entry(3, &record, &[1; 32], b"bytes")).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"seq\":3,\"time_ns\":42,\"record_hmac\":\"{}\",\"events\":[{{\"what\":\"principal.create\",\"id\":\"9\"}},\
                 {{\"what\":\"state.put\",\"id\":\"review\"}},{{\"what\":\"transfers.create\",\"count\":0}},\
                 {{\"what\":\"audit.export\",\"id\":\"entries:0-9\",\"by\":\"500\",\"role\":\"auditor\",\"via\":\"key:k1\",\
                 \"from\":\"10.0.0.7\",\"outcome\":\"ok\"}}]}}",
                hex(&record_digest(&[1; 32], b"bytes"))
            )
        );
        assert!(!text.contains("Ada") && !text.contains("secret"));
        assert_eq!(entry(3, &record, &[1; 32], b"bytes"), entry(3, &record, &[1; 32], b"bytes"));
        assert_ne!(entry(3, &record, &[1; 32], b"bytes"), entry(3, &record, &[1; 32], b"bytez"));
        // Without the key, nobody can tell which bytes a record held.
        assert_ne!(entry(3, &record, &[1; 32], b"bytes"), entry(3, &record, &[2; 32], b"bytes"));
    }

    #[test]
    fn a_signed_checkpoint_round_trips_and_refuses_alterations() {
        let checkpoint = Checkpoint { origin: "obol/test/audit".into(), size: 12, root: [5u8; 32] };
        let note = checkpoint.sign(&key());
        let verifier = verifier_key(&checkpoint.origin, &key().verifying_key());
        let (name, public) = parse_verifier_key(&verifier).unwrap();
        assert_eq!(name, "obol/test/audit");
        assert_eq!(Checkpoint::open(&note, &name, &public).unwrap(), checkpoint);
        assert!(note.starts_with(
            "obol/test/audit\n12\nBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU=\n\n\u{2014} obol/test/audit "
        ));

        let grown = note.replacen("\n12\n", "\n13\n", 1);
        assert_eq!(Checkpoint::open(&grown, &name, &public), Err(CheckpointError::BadSignature(name.clone())));
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert_eq!(Checkpoint::open(&note, &name, &other), Err(CheckpointError::Unsigned(name.clone())));
        assert!(matches!(Checkpoint::open("obol\n1\n", &name, &public), Err(CheckpointError::Malformed(_))));
        assert!(matches!(
            Checkpoint::open(&note.replacen("\n12\n", "\n012\n", 1), &name, &public),
            Err(CheckpointError::Malformed(_))
        ));
        // The same key's signature over another log's checkpoint is not this log's.
        let other_log = Checkpoint { origin: "obol/staging/audit".into(), ..checkpoint.clone() }.sign(&key());
        let relabelled = other_log.replace("\u{2014} obol/staging/audit ", "\u{2014} obol/test/audit ");
        assert!(matches!(Checkpoint::open(&relabelled, &name, &public), Err(CheckpointError::OtherLog { .. })));
        // A witness's cosignature beside ours is ignored.
        let cosigned = format!("{note}\u{2014} witness.example AAAA\n");
        assert_eq!(Checkpoint::open(&cosigned, &name, &public).unwrap(), checkpoint);
    }

    proptest::proptest! {
        /// For random records, every entry's inclusion proof verifies under every checkpoint that
        /// covers it, and every pair of checkpoints is consistent.
        #[test]
        fn every_proof_verifies_and_every_pair_of_checkpoints_is_consistent(
            records in proptest::collection::vec((0u64..1_000_000, 0usize..4, proptest::collection::vec(0u8..=255, 0..64)), 1..48),
            pairs in proptest::collection::vec((0u64..48, 0u64..48), 1..24),
        ) {
            let mut log = Log::new();
            for (seq, (now_ns, shape, bytes)) in records.iter().enumerate() {
                let ops = match shape {
                    0 => Vec::new(),
                    1 => vec![Op::CreateTransfers(Vec::new())],
                    2 => vec![Op::Put(Put { key: format!("k:{now_ns}"), value: bytes.clone() })],
                    _ => vec![Op::Identity(IdentityCommand::FailFactor { principal_id: u128::from(*now_ns) })],
                };
                log.append(entry(seq as u64 + 1, &Record { now_ns: *now_ns, ops }, &[3; 32], bytes));
            }
            let size = log.size();
            for (a, b) in pairs {
                let (from, to) = ((a % (size + 1)).min(b % (size + 1)), (a % (size + 1)).max(b % (size + 1)));
                let (from_root, to_root) = (log.tree().root(from).unwrap(), log.tree().root(to).unwrap());
                let proof = log.tree().consistency_proof(from, to).unwrap();
                proptest::prop_assert!(crate::merkle::verify_consistency(from, to, &from_root, &to_root, &proof));
                for index in 0..to {
                    let leaf = crate::merkle::leaf_hash(log.entry(index).unwrap());
                    let path = log.tree().inclusion_proof(index, to).unwrap();
                    proptest::prop_assert!(crate::merkle::verify_inclusion(&leaf, index, to, &path, &to_root));
                }
            }
        }
    }

    #[test]
    fn a_verifier_key_must_match_its_name() {
        let verifier = verifier_key("obol/a/audit", &key().verifying_key());
        assert!(parse_verifier_key(&verifier).is_ok());
        let renamed = verifier.replacen("obol/a/audit", "obol/b/audit", 1);
        assert!(matches!(parse_verifier_key(&renamed), Err(CheckpointError::BadKey(_))));
        assert!(matches!(parse_verifier_key("nonsense"), Err(CheckpointError::BadKey(_))));
    }
}

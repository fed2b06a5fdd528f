//! Tabs and what pays into them: signed cumulative vouchers and PayWord hash-chain ticks.
//!
//! A tab escrows a budget from a payer to one payee. The payer then pays by signing vouchers
//! `{tab, payee, cumulative, seq}` with its device key (each voucher supersedes the last: the
//! payee needs only the latest), or, on devices too small to sign per payment, by signing one
//! PayWord commitment to the root of a SHA-256 hash chain and revealing the chain's preimages one
//! per tick. Verification is pure: a signature check or a hash, against the tab's state in memory.
//! The formats are specified in `docs/vouchers.md`.
//!
//! Every signature names the obol deployment it is for ([`Network`]: the hash of the server's
//! network id `obol:<instance-id>`), so a voucher, commitment or authorization made for one
//! server pays nothing on another, even where tab, account and device ids and keys coincide.

use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// First bytes of a binary voucher, version 2 (signed for one network).
pub const VOUCHER_MAGIC: [u8; 4] = *b"OBV2";
/// Version 1 (signed for no network): kept in logs written before version 2, never accepted anew.
const VOUCHER_MAGIC_V1: [u8; 4] = *b"OBV1";
/// Bytes of a binary voucher: magic, tab, payee, cumulative, seq, signature.
pub const VOUCHER_BYTES: usize = 4 + 16 + 16 + 16 + 8 + 64;
/// Domain separation for voucher signatures.
const VOUCHER_DOMAIN: &[u8; 16] = b"obol voucher v2\0";
/// Bytes a voucher's signature covers: domain, network, tab, payee, cumulative, seq.
pub const VOUCHER_MESSAGE_BYTES: usize = 16 + 32 + 16 + 16 + 16 + 8;
/// First bytes of a binary PayWord commitment, version 2 (signed for one network).
pub const COMMITMENT_MAGIC: [u8; 4] = *b"OBP2";
/// Version 1 (signed for no network): kept in logs written before version 2.
pub const COMMITMENT_MAGIC_V1: [u8; 4] = *b"OBP1";
/// Bytes of a binary commitment: magic, network, tab, payee, root, length, value per tick, signature.
pub const COMMITMENT_BYTES: usize = 4 + 32 + 16 + 16 + 32 + 4 + 16 + 64;
/// Bytes of a version 1 commitment (no network).
pub const COMMITMENT_BYTES_V1: usize = COMMITMENT_BYTES - 32;
/// Domain separation for commitment signatures.
const COMMITMENT_DOMAIN: &[u8; 16] = b"obol payword v2\0";
const COMMITMENT_DOMAIN_V1: &[u8; 16] = b"obol payword v1\0";
/// Longest hash chain a commitment may announce.
pub const PAYWORD_LENGTH_MAX: u32 = 1 << 24;

/// Which obol deployment a signature is for: SHA-256 of the server's network id, the UTF-8 text
/// `obol:<instance-id>` that `GET /v1/x402/supported`, every tab and every x402 offer show.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Network(pub [u8; 32]);

impl Network {
    /// The network whose id is `id` (for example `obol:3f9a0c`).
    pub fn named(id: &str) -> Network {
        Network(Sha256::digest(id.as_bytes()).into())
    }

    /// No network: what a version 1 commitment (from a log written before version 2) was
    /// signed for. No server accepts it anew: it matches no named network.
    pub const UNBOUND: Network = Network([0; 32]);
}

/// A payer's promise: the tab has paid the payee `cumulative` in total, as of `seq`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Voucher {
    /// The tab.
    pub tab_id: u128,
    /// The payee account the tab pays.
    pub payee_id: u128,
    /// Total paid through the tab so far, minor units.
    pub cumulative: u128,
    /// Strictly increasing per tab.
    pub seq: u64,
    /// Ed25519 signature over the domain and the fields above.
    pub signature: [u8; 64],
}

/// A payer's one signature that starts PayWord payments on a tab.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Commitment {
    /// The tab.
    pub tab_id: u128,
    /// The payee account the tab pays.
    pub payee_id: u128,
    /// The server it is for ([`Network::UNBOUND`] for a version 1 commitment from an old log).
    pub network: Network,
    /// w0 = H^length(w_length): the chain's root.
    pub root: [u8; 32],
    /// How many ticks the chain holds.
    pub length: u32,
    /// What one tick is worth, minor units.
    pub value_per_tick: u128,
    /// Ed25519 signature over the domain and the fields above.
    pub signature: [u8; 64],
}

/// Why bytes are not a voucher or commitment.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum CodecError {
    /// Wrong length.
    #[error("wrong length")]
    Length,
    /// Wrong magic or version.
    #[error("unknown format or version")]
    Magic,
    /// Version 1, which names no network: no server accepts it any more.
    #[error("format version 1 names no network; sign version 2 for this server's network (docs/vouchers.md)")]
    Unbound,
}

#[expect(clippy::indexing_slicing, reason = "callers read fields of a buffer whose length they checked first")]
fn u128_at(bytes: &[u8], at: usize) -> u128 {
    let mut buffer = [0u8; 16];
    buffer.copy_from_slice(&bytes[at..at + 16]);
    u128::from_le_bytes(buffer)
}

impl Voucher {
    /// The bytes the payer signs (104): domain, network, tab, payee, cumulative, seq.
    pub fn signed_message(
        network: &Network,
        tab_id: u128,
        payee_id: u128,
        cumulative: u128,
        seq: u64,
    ) -> [u8; VOUCHER_MESSAGE_BYTES] {
        let mut message = [0u8; VOUCHER_MESSAGE_BYTES];
        message[..16].copy_from_slice(VOUCHER_DOMAIN);
        message[16..48].copy_from_slice(&network.0);
        message[48..64].copy_from_slice(&tab_id.to_le_bytes());
        message[64..80].copy_from_slice(&payee_id.to_le_bytes());
        message[80..96].copy_from_slice(&cumulative.to_le_bytes());
        message[96..104].copy_from_slice(&seq.to_le_bytes());
        message
    }

    /// The compact binary form (124 bytes).
    pub fn encode(&self) -> [u8; VOUCHER_BYTES] {
        let mut out = [0u8; VOUCHER_BYTES];
        out[..4].copy_from_slice(&VOUCHER_MAGIC);
        out[4..20].copy_from_slice(&self.tab_id.to_le_bytes());
        out[20..36].copy_from_slice(&self.payee_id.to_le_bytes());
        out[36..52].copy_from_slice(&self.cumulative.to_le_bytes());
        out[52..60].copy_from_slice(&self.seq.to_le_bytes());
        out[60..].copy_from_slice(&self.signature);
        out
    }

    /// Reads the binary form a payer sends: version 2 only.
    #[expect(
        clippy::indexing_slicing,
        reason = "bytes[..4] is read only once the length is VOUCHER_BYTES (the `&&` checks it first)"
    )]
    pub fn decode(bytes: &[u8]) -> Result<Voucher, CodecError> {
        if bytes.len() == VOUCHER_BYTES && bytes[..4] == VOUCHER_MAGIC_V1 {
            return Err(CodecError::Unbound);
        }
        Voucher::decode_logged(bytes)
    }

    /// Reads a voucher from the log, where records written before version 2 hold version 1.
    /// The log never re-verifies a voucher (it was verified before it was written), so both
    /// read the same.
    #[expect(clippy::indexing_slicing, reason = "the length is checked against VOUCHER_BYTES first")]
    pub fn decode_logged(bytes: &[u8]) -> Result<Voucher, CodecError> {
        if bytes.len() != VOUCHER_BYTES {
            return Err(CodecError::Length);
        }
        if bytes[..4] != VOUCHER_MAGIC && bytes[..4] != VOUCHER_MAGIC_V1 {
            return Err(CodecError::Magic);
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[52..60]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[60..]);
        Ok(Voucher {
            tab_id: u128_at(bytes, 4),
            payee_id: u128_at(bytes, 20),
            cumulative: u128_at(bytes, 36),
            seq: u64::from_le_bytes(seq),
            signature,
        })
    }

    /// Whether `key` signed this voucher for `network` (strict Ed25519).
    pub fn verify(&self, key: &VerifyingKey, network: &Network) -> bool {
        let message = Voucher::signed_message(network, self.tab_id, self.payee_id, self.cumulative, self.seq);
        key.verify_strict(&message, &Signature::from_bytes(&self.signature)).is_ok()
    }
}

impl Commitment {
    /// The bytes the payer signs: domain, network, tab, payee, root, length, value per tick
    /// (version 1, for [`Network::UNBOUND`]: its own domain and no network).
    pub fn signed_message(
        network: &Network,
        tab_id: u128,
        payee_id: u128,
        root: &[u8; 32],
        length: u32,
        value_per_tick: u128,
    ) -> Vec<u8> {
        let mut message = Vec::with_capacity(16 + 32 + 84);
        if *network == Network::UNBOUND {
            message.extend_from_slice(COMMITMENT_DOMAIN_V1);
        } else {
            message.extend_from_slice(COMMITMENT_DOMAIN);
            message.extend_from_slice(&network.0);
        }
        message.extend_from_slice(&tab_id.to_le_bytes());
        message.extend_from_slice(&payee_id.to_le_bytes());
        message.extend_from_slice(root);
        message.extend_from_slice(&length.to_le_bytes());
        message.extend_from_slice(&value_per_tick.to_le_bytes());
        message
    }

    /// The compact binary form: 184 bytes (version 2), or 152 for an [`Network::UNBOUND`]
    /// version 1 commitment from an old log, byte for byte as it was written.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(COMMITMENT_BYTES);
        if self.network == Network::UNBOUND {
            out.extend_from_slice(&COMMITMENT_MAGIC_V1);
        } else {
            out.extend_from_slice(&COMMITMENT_MAGIC);
            out.extend_from_slice(&self.network.0);
        }
        out.extend_from_slice(&self.tab_id.to_le_bytes());
        out.extend_from_slice(&self.payee_id.to_le_bytes());
        out.extend_from_slice(&self.root);
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.value_per_tick.to_le_bytes());
        out.extend_from_slice(&self.signature);
        out
    }

    /// How many bytes the commitment starting `bytes` takes, from its magic (none if unknown).
    pub fn encoded_len(bytes: &[u8]) -> Option<usize> {
        match bytes.get(..4)? {
            magic if magic == COMMITMENT_MAGIC => Some(COMMITMENT_BYTES),
            magic if magic == COMMITMENT_MAGIC_V1 => Some(COMMITMENT_BYTES_V1),
            _ => None,
        }
    }

    /// Reads the binary form, either version (a version 1 commitment reads as
    /// [`Network::UNBOUND`], which no server's network matches).
    #[expect(
        clippy::indexing_slicing,
        reason = "bytes[..4] is read only once the length is VOUCHER_BYTES (the `&&` checks it first)"
    )]
    pub fn decode(bytes: &[u8]) -> Result<Commitment, CodecError> {
        if bytes.len() != COMMITMENT_BYTES && bytes.len() != COMMITMENT_BYTES_V1 {
            return Err(CodecError::Length);
        }
        let expected = Commitment::encoded_len(bytes).ok_or(CodecError::Magic)?;
        if bytes.len() != expected {
            return Err(CodecError::Length);
        }
        let (network, at) = if expected == COMMITMENT_BYTES {
            let mut network = [0u8; 32];
            network.copy_from_slice(&bytes[4..36]);
            if Network(network) == Network::UNBOUND {
                // No network id hashes to zeros; only version 1 means "no network".
                return Err(CodecError::Unbound);
            }
            (Network(network), 36)
        } else {
            (Network::UNBOUND, 4)
        };
        let mut root = [0u8; 32];
        root.copy_from_slice(&bytes[at + 32..at + 64]);
        let mut length = [0u8; 4];
        length.copy_from_slice(&bytes[at + 64..at + 68]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[at + 84..]);
        Ok(Commitment {
            tab_id: u128_at(bytes, at),
            payee_id: u128_at(bytes, at + 16),
            network,
            root,
            length: u32::from_le_bytes(length),
            value_per_tick: u128_at(bytes, at + 68),
            signature,
        })
    }

    /// Whether `key` signed this commitment for its network (strict Ed25519).
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let message = Commitment::signed_message(
            &self.network,
            self.tab_id,
            self.payee_id,
            &self.root,
            self.length,
            self.value_per_tick,
        );
        key.verify_strict(&message, &Signature::from_bytes(&self.signature)).is_ok()
    }
}

/// Domain separation for one-off payment authorizations (the x402 `exact` scheme).
const EXACT_DOMAIN: &[u8; 16] = b"obol exact v2\0\0\0";
/// Bytes an `exact` authorization's signature covers.
pub const EXACT_MESSAGE_BYTES: usize = 16 + 32 + 16 + 16 + 16 + 16 + 4 + 4 + 16 + 8;

/// A payer device's signed permission for one ledger transfer (x402 scheme `exact`): the
/// transfer's id is the nonce, so the same authorization can pay only once.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ExactAuthorization {
    /// The server it is for.
    pub network: Network,
    /// Id of the transfer it creates.
    pub transfer_id: u128,
    /// The account debited (the payer's).
    pub from: u128,
    /// The account credited (the payee's).
    pub to: u128,
    /// Minor units.
    pub amount: u128,
    /// The accounts' asset.
    pub asset: crate::money::Asset,
    /// The device that signs.
    pub device_id: u128,
    /// Unix time (s) after which the authorization is void.
    pub valid_before_s: u64,
}

impl ExactAuthorization {
    /// The bytes the device signs (144): domain, network, transfer id, from, to, amount, asset
    /// (3-letter code and scale), 4 zero bytes, device id, valid-before (all little-endian).
    pub fn signed_message(&self) -> [u8; EXACT_MESSAGE_BYTES] {
        let mut message = [0u8; EXACT_MESSAGE_BYTES];
        message[..16].copy_from_slice(EXACT_DOMAIN);
        message[16..48].copy_from_slice(&self.network.0);
        message[48..64].copy_from_slice(&self.transfer_id.to_le_bytes());
        message[64..80].copy_from_slice(&self.from.to_le_bytes());
        message[80..96].copy_from_slice(&self.to.to_le_bytes());
        message[96..112].copy_from_slice(&self.amount.to_le_bytes());
        message[112..116].copy_from_slice(&self.asset.to_bytes());
        message[120..136].copy_from_slice(&self.device_id.to_le_bytes());
        message[136..144].copy_from_slice(&self.valid_before_s.to_le_bytes());
        message
    }

    /// Whether `key` signed this authorization (strict Ed25519).
    pub fn verify(&self, key: &VerifyingKey, signature: &[u8; 64]) -> bool {
        key.verify_strict(&self.signed_message(), &Signature::from_bytes(signature)).is_ok()
    }
}

/// SHA-256 of a 32-byte word: one PayWord step.
pub fn payword_hash(word: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(word).into()
}

/// Builds a chain from its last word: returns `[w0 (root), w1, ..., w_length]` where
/// `w_i = H(w_{i+1})`. The payer keeps it and reveals w1, w2, ... one per tick.
pub fn payword_chain(last: [u8; 32], length: u32) -> Vec<[u8; 32]> {
    let mut chain = vec![last];
    let mut word = last;
    for _ in 0..length {
        word = payword_hash(&word);
        chain.push(word);
    }
    chain.reverse();
    chain
}

/// Why a payment into a tab was refused. `Stale` is not an error for the payer: an older
/// voucher re-presented changes nothing and is answered with the current state.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum PayReject {
    /// The signature does not verify under the tab's key.
    #[error("the signature does not verify")]
    BadSignature,
    /// The voucher names another tab.
    #[error("the voucher is for another tab")]
    WrongTab,
    /// The voucher names another payee than the tab pays.
    #[error("the voucher names another payee")]
    WrongPayee,
    /// The tab is closed.
    #[error("the tab is closed")]
    TabClosed,
    /// The tab's expiry has passed.
    #[error("the tab has expired")]
    TabExpired,
    /// The sequence number does not increase while the cumulative amount does (or the reverse).
    #[error("seq and cumulative must both increase")]
    NotIncreasing,
    /// The voucher is older than the latest accepted one.
    #[error("an older voucher; the tab is unchanged")]
    Stale,
    /// The cumulative amount exceeds the escrow.
    #[error("the amount exceeds the tab's escrow")]
    BeyondEscrow,
    /// No PayWord commitment on this tab.
    #[error("no PayWord commitment on this tab")]
    NoCommitment,
    /// The tab already has another PayWord chain (one per tab).
    #[error("the tab already has a PayWord chain: one per tab; open another tab for a new chain")]
    AlreadyCommitted,
    /// The revealed word does not hash to the last accepted word.
    #[error("the word does not hash to the last accepted word")]
    BadPreimage,
    /// The tick index is beyond the chain's length.
    #[error("the tick is beyond the committed chain")]
    BeyondChain,
    /// The revealed word skips more ticks than one payment may.
    #[error("the tick skips more than 4096 ticks")]
    SkipTooFar,
    /// The tab's device is suspended or revoked, or no longer exists.
    #[error("the tab's device may not pay")]
    DeviceInactive,
    /// The payer froze its payments (all of them, this tab's device's, or this tab's).
    #[error("the payer froze these payments")]
    PayerFrozen,
    /// Escrowing this much would pass the signing device's limits (another asset, more than one
    /// payment may be, or more than is left of the day's limit).
    #[error("the escrow is beyond the tab's device limits")]
    DeviceLimit,
}

/// PayWord progress on a tab.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PaywordState {
    /// The commitment's root.
    pub root: [u8; 32],
    /// Committed chain length.
    pub length: u32,
    /// Value of one tick.
    pub value_per_tick: u128,
    /// Index of the last accepted word (0: the root).
    pub last_index: u32,
    /// The last accepted word.
    pub last_word: [u8; 32],
}

/// A tab as the verifier sees it. Kept small: a server holds one per open tab (the benchmark
/// opens a million), so the PayWord state, which few tabs use, lives behind a box.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Tab {
    /// Tab id.
    pub id: u128,
    /// The payee account.
    pub payee_id: u128,
    /// Escrowed budget, minor units.
    pub escrow: u128,
    /// The total paid so far (latest voucher's cumulative, or ticks x value).
    pub cumulative: u128,
    /// The pending transfer holding the escrow (its debit account is the payer's).
    pub escrow_transfer_id: u128,
    /// The device whose key signs for the tab; its revocation stops the tab's payments.
    pub device_id: u128,
    /// Ledger time after which no payment is accepted, ns.
    pub expires_ns: u64,
    /// The latest accepted voucher's seq (0 before any).
    pub seq: u64,
    /// PayWord progress, once a commitment was accepted.
    pub payword: Option<Box<PaywordState>>,
    /// Whether the tab is closed (settled): it takes no more payments.
    pub closed: bool,
}

/// Most ticks one revealed word may skip: a skip of k costs k hashes to check, so this bounds
/// the work one request can ask for (about 0.2 ms).
pub const PAYWORD_SKIP_MAX: u32 = 4096;

impl Tab {
    fn check_open(&self, now_ns: u64) -> Result<(), PayReject> {
        if self.closed {
            return Err(PayReject::TabClosed);
        }
        if now_ns >= self.expires_ns {
            return Err(PayReject::TabExpired);
        }
        Ok(())
    }

    /// Checks everything about a voucher except its signature (batched by the caller), and
    /// returns the amount it adds. Changes nothing.
    pub fn check_voucher_fields(&self, voucher: &Voucher, now_ns: u64) -> Result<u128, PayReject> {
        if voucher.tab_id != self.id {
            return Err(PayReject::WrongTab);
        }
        if voucher.payee_id != self.payee_id {
            return Err(PayReject::WrongPayee);
        }
        self.check_open(now_ns)?;
        if voucher.seq <= self.seq && voucher.cumulative <= self.cumulative {
            return Err(PayReject::Stale);
        }
        if voucher.seq <= self.seq || voucher.cumulative <= self.cumulative {
            return Err(PayReject::NotIncreasing);
        }
        // A committed PayWord chain's unspent ticks stay reserved: a voucher may raise the total
        // only as far as the escrow leaves room beside them, so the chain can always be paid.
        let reserved = self.payword_reserved();
        if voucher.cumulative.checked_add(reserved).is_none_or(|total| total > self.escrow) {
            return Err(PayReject::BeyondEscrow);
        }
        Ok(voucher.cumulative - self.cumulative)
    }

    /// Accepts a voucher whose signature the caller verified: the tab now owes `cumulative`.
    pub fn accept_verified_voucher(&mut self, voucher: &Voucher, now_ns: u64) -> Result<u128, PayReject> {
        let added = self.check_voucher_fields(voucher, now_ns)?;
        self.cumulative = voucher.cumulative;
        self.seq = voucher.seq;
        Ok(added)
    }

    /// Verifies a voucher under the payer's device key and accepts it; returns the amount it adds.
    pub fn accept_voucher(
        &mut self,
        voucher: &Voucher,
        key: &VerifyingKey,
        network: &Network,
        now_ns: u64,
    ) -> Result<u128, PayReject> {
        self.check_voucher_fields(voucher, now_ns)?;
        if !voucher.verify(key, network) {
            return Err(PayReject::BadSignature);
        }
        self.accept_verified_voucher(voucher, now_ns)
    }

    /// Verifies a PayWord commitment under the payer's device key and accepts it (once per tab).
    pub fn accept_commitment(
        &mut self,
        commitment: &Commitment,
        key: &VerifyingKey,
        now_ns: u64,
    ) -> Result<(), PayReject> {
        if commitment.tab_id != self.id {
            return Err(PayReject::WrongTab);
        }
        if commitment.payee_id != self.payee_id {
            return Err(PayReject::WrongPayee);
        }
        self.check_open(now_ns)?;
        if let Some(state) = self.payword.as_deref() {
            // The same commitment again (a retry) changes nothing; another chain is refused.
            let same = state.root == commitment.root
                && state.length == commitment.length
                && state.value_per_tick == commitment.value_per_tick;
            return Err(if same { PayReject::Stale } else { PayReject::AlreadyCommitted });
        }
        if commitment.length == 0 || commitment.length > PAYWORD_LENGTH_MAX {
            return Err(PayReject::BeyondChain);
        }
        let most =
            u128::from(commitment.length).checked_mul(commitment.value_per_tick).ok_or(PayReject::BeyondEscrow)?;
        if self.cumulative.checked_add(most).is_none_or(|total| total > self.escrow) {
            return Err(PayReject::BeyondEscrow);
        }
        if !commitment.verify(key) {
            return Err(PayReject::BadSignature);
        }
        self.payword = Some(Box::new(PaywordState {
            root: commitment.root,
            length: commitment.length,
            value_per_tick: commitment.value_per_tick,
            last_index: 0,
            last_word: commitment.root,
        }));
        Ok(())
    }

    /// Checks PayWord tick `index` revealing `word` without changing the tab: `H^(index - last)(word)`
    /// must equal the last accepted word. Returns the amount it would add.
    pub fn check_tick(&self, index: u32, word: &[u8; 32], now_ns: u64) -> Result<u128, PayReject> {
        self.check_open(now_ns)?;
        let state = self.payword.as_deref().ok_or(PayReject::NoCommitment)?;
        if index <= state.last_index {
            return Err(PayReject::Stale);
        }
        if index > state.length {
            return Err(PayReject::BeyondChain);
        }
        let skipped = index - state.last_index;
        if skipped > PAYWORD_SKIP_MAX {
            return Err(PayReject::SkipTooFar);
        }
        let mut hashed = *word;
        for _ in 0..skipped {
            hashed = payword_hash(&hashed);
        }
        if hashed != state.last_word {
            return Err(PayReject::BadPreimage);
        }
        // Checked, not assumed: whatever else the tab was paid, a tick never takes it past the
        // escrow (vouchers leave a committed chain's value reserved, and this holds regardless).
        let added = u128::from(skipped).checked_mul(state.value_per_tick).ok_or(PayReject::BeyondEscrow)?;
        if self.cumulative.checked_add(added).is_none_or(|total| total > self.escrow) {
            return Err(PayReject::BeyondEscrow);
        }
        Ok(added)
    }

    /// The value of a committed chain's ticks not yet paid: held back from vouchers.
    pub fn payword_reserved(&self) -> u128 {
        self.payword.as_deref().map_or(0, |state| {
            let left = state.length.saturating_sub(state.last_index);
            u128::from(left).saturating_mul(state.value_per_tick)
        })
    }

    /// Accepts PayWord tick `index` revealing `word`. Skipping ahead k ticks pays k ticks.
    /// Returns the amount added.
    pub fn accept_tick(&mut self, index: u32, word: &[u8; 32], now_ns: u64) -> Result<u128, PayReject> {
        let added = self.check_tick(index, word, now_ns)?;
        let state = self.payword.as_deref_mut().ok_or(PayReject::NoCommitment)?;
        state.last_index = index;
        state.last_word = *word;
        // `check_tick` proved cumulative + added <= escrow.
        self.cumulative = self.cumulative.saturating_add(added);
        Ok(added)
    }
}

/// Verifies many vouchers at once, each against its key, with one Ed25519 batch equation
/// (about twice as fast per signature as one by one). Answers per voucher; when the batch
/// fails, each is checked alone to find which.
pub fn verify_vouchers(network: &Network, vouchers: &[(&Voucher, &VerifyingKey)]) -> Vec<bool> {
    if vouchers.len() < 2 {
        return vouchers.iter().map(|(voucher, key)| voucher.verify(key, network)).collect();
    }
    let messages: Vec<[u8; VOUCHER_MESSAGE_BYTES]> = vouchers
        .iter()
        .map(|(v, _)| Voucher::signed_message(network, v.tab_id, v.payee_id, v.cumulative, v.seq))
        .collect();
    let message_refs: Vec<&[u8]> = messages.iter().map(|m| &m[..]).collect();
    let signatures: Vec<Signature> = vouchers.iter().map(|(v, _)| Signature::from_bytes(&v.signature)).collect();
    let keys: Vec<VerifyingKey> = vouchers.iter().map(|(_, key)| **key).collect();
    // The batch equation holds only for signatures made with each key's secret, as
    // `verify_strict` requires; it may accept an odd encoding a key's owner makes of its own
    // signature, which changes nothing a voucher says.
    if ed25519_dalek::verify_batch(&message_refs, &signatures, &keys).is_ok() {
        return vec![true; vouchers.len()];
    }
    vouchers.iter().map(|(voucher, key)| voucher.verify(key, network)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn tab() -> Tab {
        Tab {
            id: 11,
            payee_id: 22,
            escrow: 1_000,
            cumulative: 0,
            escrow_transfer_id: 12,
            device_id: 13,
            expires_ns: 1_000_000,
            seq: 0,
            payword: None,
            closed: false,
        }
    }

    fn vk() -> VerifyingKey {
        key().verifying_key()
    }

    /// The network the tests' signatures are for.
    fn net() -> Network {
        Network::named("obol:test")
    }

    /// A commitment of `chain` (root first) to tab 11 paying 22, signed with `key()`.
    fn commitment(chain: &[[u8; 32]], length: u32, value_per_tick: u128) -> Commitment {
        let message = Commitment::signed_message(&net(), 11, 22, &chain[0], length, value_per_tick);
        let signature = key().sign(&message).to_bytes();
        Commitment { tab_id: 11, payee_id: 22, network: net(), root: chain[0], length, value_per_tick, signature }
    }

    fn voucher(cumulative: u128, seq: u64) -> Voucher {
        let message = Voucher::signed_message(&net(), 11, 22, cumulative, seq);
        Voucher { tab_id: 11, payee_id: 22, cumulative, seq, signature: key().sign(&message).to_bytes() }
    }

    #[test]
    fn vouchers_round_trip_and_supersede_each_other() {
        let first = voucher(100, 1);
        assert_eq!(Voucher::decode(&first.encode()), Ok(first));
        let mut tab = tab();
        assert_eq!(tab.accept_voucher(&first, &vk(), &net(), 5), Ok(100));
        assert_eq!(tab.accept_voucher(&voucher(250, 2), &vk(), &net(), 5), Ok(150));
        assert_eq!(tab.accept_voucher(&first, &vk(), &net(), 5), Err(PayReject::Stale), "re-presenting is harmless");
        assert_eq!(
            tab.accept_voucher(&voucher(260, 2), &vk(), &net(), 5),
            Err(PayReject::NotIncreasing),
            "seq must grow"
        );
        assert_eq!(
            tab.accept_voucher(&voucher(250, 3), &vk(), &net(), 5),
            Err(PayReject::NotIncreasing),
            "amount must grow"
        );
        assert_eq!(tab.accept_voucher(&voucher(1_001, 4), &vk(), &net(), 5), Err(PayReject::BeyondEscrow));
        assert_eq!(tab.accept_voucher(&voucher(1_000, 4), &vk(), &net(), 5), Ok(750));
        assert_eq!(tab.cumulative, 1_000);
    }

    #[test]
    fn forged_misdirected_and_late_vouchers_are_refused() {
        let mut tab = tab();
        let mut forged = voucher(100, 1);
        forged.cumulative = 101;
        assert_eq!(tab.accept_voucher(&forged, &vk(), &net(), 5), Err(PayReject::BadSignature));
        let other_key = SigningKey::from_bytes(&[8u8; 32]);
        let message = Voucher::signed_message(&net(), 11, 22, 100, 1);
        let foreign = Voucher { signature: other_key.sign(&message).to_bytes(), ..voucher(100, 1) };
        assert_eq!(tab.accept_voucher(&foreign, &vk(), &net(), 5), Err(PayReject::BadSignature));
        let mut elsewhere = voucher(100, 1);
        elsewhere.payee_id = 23;
        assert_eq!(tab.accept_voucher(&elsewhere, &vk(), &net(), 5), Err(PayReject::WrongPayee));
        assert_eq!(tab.accept_voucher(&voucher(100, 1), &vk(), &net(), 1_000_000), Err(PayReject::TabExpired));
        tab.closed = true;
        assert_eq!(tab.accept_voucher(&voucher(100, 1), &vk(), &net(), 5), Err(PayReject::TabClosed));
        assert_eq!(tab.cumulative, 0, "nothing was accepted");
    }

    #[test]
    fn payword_ticks_pay_one_hash_each_and_skips_pay_the_gap() {
        let chain = payword_chain([9u8; 32], 50);
        assert_eq!(chain.len(), 51);
        assert_eq!(payword_hash(&chain[1]), chain[0]);
        let commitment = commitment(&chain, 50, 10);
        assert_eq!(Commitment::decode(&commitment.encode()), Ok(commitment));
        let mut tab = tab();
        assert_eq!(tab.accept_tick(1, &chain[1], 5), Err(PayReject::NoCommitment));
        tab.accept_commitment(&commitment, &vk(), 5).unwrap();
        assert_eq!(tab.accept_tick(1, &chain[1], 5), Ok(10));
        assert_eq!(tab.accept_tick(1, &chain[1], 5), Err(PayReject::Stale));
        assert_eq!(tab.accept_tick(5, &chain[5], 5), Ok(40), "skipping three ticks pays four");
        assert_eq!(tab.accept_tick(6, &[0u8; 32], 5), Err(PayReject::BadPreimage));
        assert_eq!(tab.accept_tick(51, &chain[50], 5), Err(PayReject::BeyondChain));
        assert_eq!(tab.cumulative, 50);
    }

    #[test]
    fn one_reveal_may_not_ask_for_unbounded_hashing() {
        let length = PAYWORD_SKIP_MAX + 2;
        let chain = payword_chain([5u8; 32], length);
        let message = Commitment::signed_message(&net(), 11, 22, &chain[0], length, 0);
        let commitment = Commitment {
            tab_id: 11,
            payee_id: 22,
            network: net(),
            root: chain[0],
            length,
            value_per_tick: 0,
            signature: key().sign(&message).to_bytes(),
        };
        let mut tab = tab();
        tab.accept_commitment(&commitment, &vk(), 5).unwrap();
        let far = (PAYWORD_SKIP_MAX + 1) as usize;
        assert_eq!(tab.accept_tick(far as u32, &chain[far], 5), Err(PayReject::SkipTooFar));
        let near = PAYWORD_SKIP_MAX as usize;
        assert_eq!(tab.accept_tick(near as u32, &chain[near], 5), Ok(0));
    }

    #[test]
    fn batch_verification_agrees_with_one_by_one() {
        let good: Vec<Voucher> = (1..=8).map(|seq| voucher(seq * 10, seq as u64)).collect();
        let key = vk();
        let all: Vec<(&Voucher, &VerifyingKey)> = good.iter().map(|v| (v, &key)).collect();
        assert_eq!(verify_vouchers(&net(), &all), vec![true; 8]);
        let mut forged = good.clone();
        forged[5].cumulative += 1;
        let some: Vec<(&Voucher, &VerifyingKey)> = forged.iter().map(|v| (v, &key)).collect();
        let expected: Vec<bool> = (0..8).map(|i| i != 5).collect();
        assert_eq!(verify_vouchers(&net(), &some), expected, "the batch fails and the culprit is found");
        assert_eq!(verify_vouchers(&net(), &some[5..6]), vec![false]);
        assert!(verify_vouchers(&net(), &[]).is_empty());
    }

    #[test]
    fn a_commitment_worth_more_than_the_escrow_is_refused() {
        let chain = payword_chain([1u8; 32], 200);
        let commitment = commitment(&chain, 200, 10);
        assert_eq!(tab().accept_commitment(&commitment, &vk(), 5), Err(PayReject::BeyondEscrow));
    }

    #[test]
    fn r10_vouchers_and_ticks_on_one_tab_never_pass_the_escrow() {
        // 60 ticks of 10 are committed on a 1,000 tab: 600 stays reserved for the chain, so a
        // voucher may raise the total to 400 beside it and no further; every tick still pays.
        let chain = payword_chain([3u8; 32], 60);
        let commitment = commitment(&chain, 60, 10);
        let mut tab = tab();
        tab.accept_commitment(&commitment, &vk(), 5).unwrap();
        assert_eq!(tab.accept_voucher(&voucher(1_000, 1), &vk(), &net(), 5), Err(PayReject::BeyondEscrow));
        assert_eq!(tab.accept_voucher(&voucher(401, 1), &vk(), &net(), 5), Err(PayReject::BeyondEscrow));
        assert_eq!(tab.accept_voucher(&voucher(400, 1), &vk(), &net(), 5), Ok(400));
        assert_eq!(tab.accept_tick(60, &chain[60], 5), Ok(600), "the reserved chain is paid in full");
        assert_eq!(tab.cumulative, 1_000);
        assert_eq!(tab.payword_reserved(), 0);

        // A tab whose state says otherwise (as an older log could hold) refuses the tick with a
        // result, never a panic.
        let mut tab = self::tab();
        tab.accept_commitment(&commitment, &vk(), 5).unwrap();
        tab.cumulative = 995;
        assert_eq!(tab.accept_tick(1, &chain[1], 5), Err(PayReject::BeyondEscrow));
        assert_eq!(tab.cumulative, 995, "a refused tick changes nothing");
        assert_eq!(tab.payword.as_ref().unwrap().last_index, 0);
    }

    #[test]
    fn a_signature_for_another_network_pays_nothing_here() {
        let elsewhere = Network::named("obol:staging");
        let message = Voucher::signed_message(&elsewhere, 11, 22, 100, 1);
        let replayed = Voucher { signature: key().sign(&message).to_bytes(), ..voucher(100, 1) };
        assert_eq!(tab().accept_voucher(&replayed, &vk(), &net(), 5), Err(PayReject::BadSignature));
        assert_eq!(verify_vouchers(&net(), &[(&replayed, &vk()), (&voucher(100, 1), &vk())]), vec![false, true]);
        let chain = payword_chain([2u8; 32], 10);
        let mut moved = commitment(&chain, 10, 10);
        moved.network = elsewhere;
        assert_eq!(tab().accept_commitment(&moved, &vk(), 5), Err(PayReject::BadSignature));
        let exact = ExactAuthorization {
            network: net(),
            transfer_id: 1,
            from: 2,
            to: 3,
            amount: 4,
            asset: crate::money::Asset::new("USD", 2).unwrap(),
            device_id: 5,
            valid_before_s: 6,
        };
        let signature = key().sign(&exact.signed_message()).to_bytes();
        assert!(exact.verify(&vk(), &signature));
        assert!(!ExactAuthorization { network: elsewhere, ..exact }.verify(&vk(), &signature));
    }

    #[test]
    fn version_1_reads_from_old_logs_but_is_never_accepted_anew() {
        // A version 1 voucher is refused from a payer and still read from the log.
        let mut v1 = voucher(100, 1).encode();
        v1[..4].copy_from_slice(b"OBV1");
        assert_eq!(Voucher::decode(&v1), Err(CodecError::Unbound));
        assert_eq!(Voucher::decode_logged(&v1).map(|v| v.cumulative), Ok(100));
        // A version 1 commitment reads as unbound, verifies as it was signed, and encodes back to
        // the same 152 bytes.
        let chain = payword_chain([4u8; 32], 10);
        let message = Commitment::signed_message(&Network::UNBOUND, 11, 22, &chain[0], 10, 10);
        assert!(message.starts_with(b"obol payword v1\0"));
        let old = Commitment {
            network: Network::UNBOUND,
            signature: key().sign(&message).to_bytes(),
            ..commitment(&chain, 10, 10)
        };
        let bytes = old.encode();
        assert_eq!(bytes.len(), COMMITMENT_BYTES_V1);
        assert_eq!(&bytes[..4], b"OBP1");
        assert_eq!(Commitment::decode(&bytes), Ok(old));
        assert!(old.verify(&vk()));
        assert_eq!(commitment(&chain, 10, 10).encode().len(), COMMITMENT_BYTES);
    }

    #[test]
    fn malformed_bytes_are_refused_not_misread() {
        let bytes = voucher(5, 1).encode();
        assert_eq!(Voucher::decode(&bytes[..107]), Err(CodecError::Length));
        let mut wrong = bytes;
        wrong[3] = b'9';
        assert_eq!(Voucher::decode(&wrong), Err(CodecError::Magic));
        assert_eq!(Commitment::decode(&[0u8; 10]), Err(CodecError::Length));
    }
}

#[cfg(test)]
mod spec_examples {
    //! The examples in docs/vouchers.md, recomputed: the spec cannot drift from the code.
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    const SPEC: &str = include_str!("../../../docs/vouchers.md");

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The network id of the examples.
    const EXAMPLE_NETWORK: &str = "obol:example";

    pub(super) fn example_voucher() -> Voucher {
        // Payer key: the RFC 8037 appendix A Ed25519 private key.
        let seed: [u8; 32] = [
            0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4, 0x44, 0x49,
            0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
        ];
        let key = SigningKey::from_bytes(&seed);
        let message = Voucher::signed_message(&Network::named(EXAMPLE_NETWORK), 42, 7, 250_000, 3);
        Voucher { tab_id: 42, payee_id: 7, cumulative: 250_000, seq: 3, signature: key.sign(&message).to_bytes() }
    }

    #[test]
    fn the_spec_shows_the_bytes_the_code_makes() {
        let voucher = example_voucher();
        let encoded = hex(&voucher.encode());
        assert!(SPEC.contains(&encoded), "docs/vouchers.md must show the example voucher as:\n{encoded}");
        let network = Network::named(EXAMPLE_NETWORK);
        assert!(
            SPEC.contains(&hex(&network.0)),
            "docs/vouchers.md must show the example network as:\n{}",
            hex(&network.0)
        );
        let signed = hex(&Voucher::signed_message(&network, 42, 7, 250_000, 3));
        assert!(SPEC.contains(&signed), "docs/vouchers.md must show the signed message as:\n{signed}");
        let chain = payword_chain([0u8; 32], 3);
        for word in &chain {
            assert!(SPEC.contains(&hex(word)), "docs/vouchers.md must list the example chain word {}", hex(word));
        }
    }
}

#[cfg(test)]
mod properties {
    //! Goal: whatever vouchers and ticks arrive, in any order, forged or not, a tab never pays
    //! beyond its escrow, and what it says it owes is exactly the sum of what it accepted.
    //! Method: proptest draws streams of signed, forged and stale vouchers against one tab.
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_tab_pays_exactly_what_it_accepted_and_never_beyond_escrow(
            stream in prop::collection::vec((0u128..1_500, 0u64..40, any::<bool>()), 0..80),
        ) {
            let key = SigningKey::from_bytes(&[3u8; 32]);
            let verifying_key = key.verifying_key();
            let net = Network::named("obol:properties");
            let mut tab = Tab {
                id: 1, payee_id: 2, escrow: 1_000, cumulative: 0, escrow_transfer_id: 3, device_id: 4,
                expires_ns: u64::MAX, seq: 0, payword: None, closed: false,
            };
            let mut paid = 0u128;
            for (cumulative, seq, forge) in stream {
                let message = Voucher::signed_message(&net, 1, 2, cumulative, seq);
                let mut voucher = Voucher { tab_id: 1, payee_id: 2, cumulative, seq, signature: key.sign(&message).to_bytes() };
                if forge {
                    voucher.cumulative += 1;
                }
                let before = tab.clone();
                match tab.accept_voucher(&voucher, &verifying_key, &net, 0) {
                    Ok(added) => {
                        prop_assert!(!forge, "a forged voucher was accepted");
                        paid += added;
                    }
                    Err(_) => prop_assert_eq!(&tab, &before, "a refused voucher changed the tab"),
                }
                prop_assert!(tab.cumulative <= tab.escrow);
                prop_assert_eq!(tab.cumulative, paid);
            }
        }
    }
}

/// Transfer code of a tab's escrow and settlement transfers.
pub const TAB_TRANSFER_CODE: u16 = 0x7AB;
/// A tab as the ledger keeps it: about 200 bytes with its index entry.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TabEntry {
    /// What payments are checked against.
    pub tab: Tab,
    /// The latest accepted voucher's signature (evidence for disputes), zero before any.
    pub last_signature: [u8; 64],
}

/// A change to a tab, as it is persisted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TabCommand {
    /// Escrow `budget` from the payer to the payee as a pending transfer and open the tab.
    Open {
        /// Tab id, unique.
        tab_id: u128,
        /// Id of the escrow (pending) transfer.
        escrow_transfer_id: u128,
        /// Account debited.
        payer_account_id: u128,
        /// Account credited.
        payee_account_id: u128,
        /// The device that signs vouchers and commitments; it must be active and act for the
        /// payer account's owner.
        device_id: u128,
        /// Escrowed budget.
        budget: u128,
        /// The accounts' asset.
        asset: crate::money::Asset,
        /// Seconds the tab accepts payments.
        timeout_s: u32,
    },
    /// A voucher whose signature the shell verified.
    Voucher(Voucher),
    /// A PayWord commitment (its signature is checked here).
    Commit(Commitment),
    /// A PayWord tick.
    Tick {
        /// The tab.
        tab_id: u128,
        /// Word index.
        index: u32,
        /// The revealed word.
        word: [u8; 32],
    },
    /// Add to the escrow: the old pending transfer is voided and a larger one made, together.
    TopUp {
        /// The tab.
        tab_id: u128,
        /// What to add, minor units.
        amount: u128,
        /// Id of the transfer voiding the old escrow.
        void_transfer_id: u128,
        /// Id of the new escrow (pending) transfer.
        escrow_transfer_id: u128,
    },
    /// Post what the tab owes from the escrow, release the rest, and close the tab.
    Settle {
        /// The tab.
        tab_id: u128,
        /// Id of the posting transfer.
        settle_transfer_id: u128,
    },
}

impl TabCommand {
    /// Ledger events (timestamps) the command uses: a top-up voids and escrows anew.
    pub fn events_count(&self) -> usize {
        match self {
            TabCommand::TopUp { .. } => 2,
            TabCommand::Open { .. }
            | TabCommand::Voucher(_)
            | TabCommand::Commit(_)
            | TabCommand::Tick { .. }
            | TabCommand::Settle { .. } => 1,
        }
    }
}

/// The outcome of a tab command.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TabResult {
    /// Done; `added` is what a payment added to what the tab owes (0 for other commands).
    Ok {
        /// Amount added by this payment.
        added: u128,
    },
    /// The tab exists already.
    Exists,
    /// No such tab.
    NotFound,
    /// The escrow transfer was refused.
    Escrow(crate::ledger::CreateTransferResult),
    /// The settling transfer was refused.
    Settlement(crate::ledger::CreateTransferResult),
    /// The payment was refused.
    Rejected(PayReject),
}

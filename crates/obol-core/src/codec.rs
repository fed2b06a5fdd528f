//! The durable record format: the bytes the storage layer writes for a [`Record`], one record
//! per group commit, and how they are read back and checked. Layout (all integers
//! little-endian):
//!
//! ```text
//! header (16 bytes): magic "OBR2" | crc32 of the body (u32) | body length (u32) | reserved (u32)
//! body:              now_ns (u64) | op count (u32) | reserved (u32) | ops...
//! op:                kind (u8: 1 accounts, 2 transfers, 3 identity, 4 tab, 5 put, 6 payment)
//!                    | 3 zero bytes | count (u32) | events
//! account event:     80 bytes (NEW_ACCOUNT_BYTES): id, owner_id, user data, asset, code, flags
//! transfer event:    128 bytes (NEW_TRANSFER_BYTES)
//! identity op:       count is 1; then the command's length (u32) and its bytes: a tag (u8)
//!                    and its fields, integers little-endian, strings as u16 length + UTF-8
//! tab op:            count is the command's events; then its length (u32) and its bytes
//! put op:            count is 1; key length (u16), key (UTF-8), value length (u32), value
//! payment op:        count is the transfers'; device id (u128), flags (u32: bit 0
//!                    authenticated), 12 zero bytes; then the transfer events
//! ```
//! Changes to this layout need a new magic and a changelog entry.

use crate::identity::{DeviceLimits, FactorProof, IdentityCommand, Role, Scopes, Status, StepUpPolicy};
use crate::ledger::{AccountFlags, BATCH_EVENTS_MAX, NewAccount, NewTransfer, TransferFlags};
use crate::money::Asset;
use crate::record::{Op, Record};

/// First bytes of every record.
pub const RECORD_MAGIC: [u8; 4] = *b"OBR2";
/// Bytes of the record header.
pub const RECORD_HEADER_BYTES: usize = 16;
/// Bytes of one encoded account event.
pub const NEW_ACCOUNT_BYTES: usize = 80;
/// Bytes of one encoded transfer event.
pub const NEW_TRANSFER_BYTES: usize = 128;
/// The most events one record may hold across its ops.
pub const RECORD_EVENTS_MAX: usize = BATCH_EVENTS_MAX;
/// The most bytes of puts (keys and values) the writer puts in one record; one put larger than
/// this cannot exist ([`crate::table::VALUE_BYTES_MAX`] is smaller).
pub const RECORD_PUT_BYTES_MAX: usize = 64 * 1024 * 1024;

const _: () = assert!(RECORD_EVENTS_MAX * NEW_TRANSFER_BYTES < u32::MAX as usize);

impl Op {
    /// Whether the op can be written to the log exactly as it is: at most
    /// [`RECORD_EVENTS_MAX`] events, every string and blob within its length prefix. The writer
    /// refuses an op that fails this before it forms a record, so nothing that was cut or
    /// cannot be read back is ever persisted.
    pub fn check_encodable(&self) -> Result<(), EncodeError> {
        if self.len() > RECORD_EVENTS_MAX {
            return Err(EncodeError::TooManyEvents);
        }
        match self {
            Op::Identity(command) => encode_identity(command).map(|_| ()),
            Op::Put(put) if !put.fits() => Err(EncodeError::FieldTooLong),
            Op::Note(note) if !note.fits() => Err(EncodeError::FieldTooLong),
            Op::CreateAccounts(_)
            | Op::CreateTransfers(_)
            | Op::Dispute(_)
            | Op::Tab(_)
            | Op::Put(_)
            | Op::Pay(_)
            | Op::Note(_) => Ok(()),
        }
    }
}

/// Why an op cannot be written to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A string or blob is longer than its length prefix allows (65,535 bytes; a put's key 255
    /// and its value 4 MiB).
    #[error("a field is longer than its limit")]
    FieldTooLong,
    /// More events than one record may hold.
    #[error("more than 8,190 events")]
    TooManyEvents,
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the header or the declared body.
    #[error("record truncated")]
    Truncated,
    /// The magic is not `OBR2`.
    #[error("record magic mismatch")]
    BadMagic,
    /// The body does not match its checksum (a torn or corrupted write).
    #[error("record checksum mismatch")]
    BadChecksum,
    /// An op kind other than 1 to 6.
    #[error("unknown op kind {0}")]
    BadOpKind(u8),
    /// More events than a record may hold.
    #[error("record holds too many events")]
    TooManyEvents,
    /// An asset field is not a valid asset.
    #[error("invalid asset in event")]
    BadAsset,
    /// Reserved bytes are not zero, or bytes follow the last op.
    #[error("reserved bytes are not zero")]
    Reserved,
    /// An identity command is malformed.
    #[error("invalid identity command")]
    BadIdentity,
    /// A put's key is empty, too long or not UTF-8, or its value is too long.
    #[error("invalid put")]
    BadPut,
    /// An audit note's field is too long or not printable ASCII.
    #[error("bad audit note")]
    BadNote,
}

impl Record {
    /// Encodes the record, header and checksum included; fails (writing nothing) if an op
    /// cannot be encoded exactly ([`Op::check_encodable`]).
    #[expect(
        clippy::indexing_slicing,
        reason = "the header's RECORD_HEADER_BYTES were pushed first, so the slices are inside `out`"
    )]
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        if self.events_count() > RECORD_EVENTS_MAX {
            return Err(EncodeError::TooManyEvents);
        }
        if self.ops.iter().map(Op::put_bytes).sum::<usize>() > RECORD_PUT_BYTES_MAX {
            return Err(EncodeError::TooManyEvents);
        }
        let body_bytes_hint = 16
            + self
                .ops
                .iter()
                .map(|op| {
                    8 + match op {
                        Op::CreateAccounts(events) => events.len() * NEW_ACCOUNT_BYTES,
                        Op::CreateTransfers(events) | Op::Dispute(events) => events.len() * NEW_TRANSFER_BYTES,
                        Op::Identity(_) | Op::Tab(_) => 256,
                        Op::Put(put) => 6 + put.key.len() + put.value.len(),
                        Op::Pay(payment) => 32 + payment.transfers.len() * NEW_TRANSFER_BYTES,
                        Op::Note(note) => 32 + note.text_bytes(),
                    }
                })
                .sum::<usize>();
        let mut out = Vec::with_capacity(RECORD_HEADER_BYTES + body_bytes_hint);
        out.extend_from_slice(&RECORD_MAGIC);
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(&self.now_ns.to_le_bytes());
        out.extend_from_slice(&(self.ops.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for op in &self.ops {
            match op {
                Op::CreateAccounts(events) => {
                    out.extend_from_slice(&[1, 0, 0, 0]);
                    out.extend_from_slice(&(events.len() as u32).to_le_bytes());
                    for event in events {
                        encode_new_account(event, &mut out);
                    }
                }
                Op::CreateTransfers(events) => {
                    out.extend_from_slice(&[2, 0, 0, 0]);
                    out.extend_from_slice(&(events.len() as u32).to_le_bytes());
                    for event in events {
                        encode_new_transfer(event, &mut out);
                    }
                }
                Op::Dispute(events) => {
                    out.extend_from_slice(&[8, 0, 0, 0]);
                    out.extend_from_slice(&(events.len() as u32).to_le_bytes());
                    for event in events {
                        encode_new_transfer(event, &mut out);
                    }
                }
                Op::Tab(command) => {
                    out.extend_from_slice(&[4, 0, 0, 0]);
                    out.extend_from_slice(&1u32.to_le_bytes());
                    let bytes = encode_tab(command);
                    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    out.extend_from_slice(&bytes);
                }
                Op::Identity(command) => {
                    out.extend_from_slice(&[3, 0, 0, 0]);
                    out.extend_from_slice(&1u32.to_le_bytes());
                    let bytes = encode_identity(command)?;
                    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    out.extend_from_slice(&bytes);
                }
                Op::Pay(payment) => {
                    out.extend_from_slice(&[6, 0, 0, 0]);
                    out.extend_from_slice(&(payment.transfers.len() as u32).to_le_bytes());
                    out.extend_from_slice(&payment.device_id.to_le_bytes());
                    out.extend_from_slice(&u32::from(payment.authenticated).to_le_bytes());
                    out.extend_from_slice(&[0; 12]);
                    for event in &payment.transfers {
                        encode_new_transfer(event, &mut out);
                    }
                }
                Op::Note(note) => {
                    if !note.fits() {
                        return Err(EncodeError::FieldTooLong);
                    }
                    out.extend_from_slice(&[7, 0, 0, 0]);
                    out.extend_from_slice(&1u32.to_le_bytes());
                    out.extend_from_slice(&note.actor_id.to_le_bytes());
                    for field in note.fields() {
                        out.extend_from_slice(&[field.len() as u8]);
                        out.extend_from_slice(field.as_bytes());
                    }
                }
                Op::Put(put) => {
                    if !put.fits() {
                        return Err(EncodeError::FieldTooLong);
                    }
                    out.extend_from_slice(&[5, 0, 0, 0]);
                    out.extend_from_slice(&1u32.to_le_bytes());
                    out.extend_from_slice(&(put.key.len() as u16).to_le_bytes());
                    out.extend_from_slice(put.key.as_bytes());
                    out.extend_from_slice(&(put.value.len() as u32).to_le_bytes());
                    out.extend_from_slice(&put.value);
                }
            }
        }
        let body_len = (out.len() - RECORD_HEADER_BYTES) as u32;
        let crc = crc32fast::hash(&out[RECORD_HEADER_BYTES..]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        out[8..12].copy_from_slice(&body_len.to_le_bytes());
        Ok(out)
    }

    /// Decodes and checks a record produced by [`Record::encode`].
    #[expect(clippy::indexing_slicing, reason = "`take(4)` answers exactly 4 bytes or an error")]
    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(4)? != RECORD_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let crc = reader.u32()?;
        let body_len = reader.u32()? as usize;
        if reader.u32()? != 0 {
            return Err(DecodeError::Reserved);
        }
        let body = bytes.get(RECORD_HEADER_BYTES..).ok_or(DecodeError::Truncated)?;
        if body.len() < body_len {
            return Err(DecodeError::Truncated);
        }
        if body.len() > body_len {
            return Err(DecodeError::Reserved);
        }
        if crc32fast::hash(body) != crc {
            return Err(DecodeError::BadChecksum);
        }
        let now_ns = reader.u64()?;
        let ops_count = reader.u32()? as usize;
        if reader.u32()? != 0 {
            return Err(DecodeError::Reserved);
        }
        if ops_count > RECORD_EVENTS_MAX {
            return Err(DecodeError::TooManyEvents);
        }
        let mut events_total = 0usize;
        let mut ops = Vec::with_capacity(ops_count);
        for _ in 0..ops_count {
            let kind = reader.take(4)?;
            if kind[1..] != [0, 0, 0] {
                return Err(DecodeError::Reserved);
            }
            let kind = kind[0];
            let count = reader.u32()? as usize;
            events_total = events_total.saturating_add(count);
            if events_total > RECORD_EVENTS_MAX {
                return Err(DecodeError::TooManyEvents);
            }
            match kind {
                1 => {
                    let mut events = Vec::with_capacity(count);
                    for _ in 0..count {
                        events.push(decode_new_account(reader.take(NEW_ACCOUNT_BYTES)?)?);
                    }
                    ops.push(Op::CreateAccounts(events));
                }
                2 => {
                    let mut events = Vec::with_capacity(count);
                    for _ in 0..count {
                        events.push(decode_new_transfer(reader.take(NEW_TRANSFER_BYTES)?)?);
                    }
                    ops.push(Op::CreateTransfers(events));
                }
                8 => {
                    let mut events = Vec::with_capacity(count);
                    for _ in 0..count {
                        events.push(decode_new_transfer(reader.take(NEW_TRANSFER_BYTES)?)?);
                    }
                    ops.push(Op::Dispute(events));
                }
                3 => {
                    if count != 1 {
                        return Err(DecodeError::BadIdentity);
                    }
                    let len = reader.u32()? as usize;
                    ops.push(Op::Identity(decode_identity(reader.take(len)?)?));
                }
                4 => {
                    if count != 1 {
                        return Err(DecodeError::BadIdentity);
                    }
                    let len = reader.u32()? as usize;
                    ops.push(Op::Tab(decode_tab(reader.take(len)?)?));
                }
                6 => {
                    let device_id = reader.u128()?;
                    let authenticated = match reader.u32()? {
                        0 => false,
                        1 => true,
                        _ => return Err(DecodeError::Reserved),
                    };
                    if reader.take(12)? != [0; 12] {
                        return Err(DecodeError::Reserved);
                    }
                    let mut transfers = Vec::with_capacity(count);
                    for _ in 0..count {
                        transfers.push(decode_new_transfer(reader.take(NEW_TRANSFER_BYTES)?)?);
                    }
                    ops.push(Op::Pay(crate::ledger::Payment { device_id, authenticated, transfers }));
                }
                5 => {
                    if count != 1 {
                        return Err(DecodeError::BadPut);
                    }
                    let key_len = usize::from(reader.u16()?);
                    let key = std::str::from_utf8(reader.take(key_len)?).map_err(|_| DecodeError::BadPut)?.to_string();
                    let value_len = reader.u32()? as usize;
                    if value_len > crate::table::VALUE_BYTES_MAX {
                        return Err(DecodeError::BadPut);
                    }
                    let put = crate::table::Put { key, value: reader.take(value_len)?.to_vec() };
                    if !put.fits() {
                        return Err(DecodeError::BadPut);
                    }
                    ops.push(Op::Put(put));
                }
                7 => {
                    if count != 1 {
                        return Err(DecodeError::BadNote);
                    }
                    let actor_id = reader.u128()?;
                    let mut fields: [String; crate::audit::NOTE_FIELDS] = Default::default();
                    for field in &mut fields {
                        let len = usize::from(reader.take(1)?[0]);
                        *field = std::str::from_utf8(reader.take(len)?).map_err(|_| DecodeError::BadNote)?.to_string();
                    }
                    let note = crate::audit::Note::from_fields(actor_id, fields);
                    if !note.fits() {
                        return Err(DecodeError::BadNote);
                    }
                    ops.push(Op::Note(note));
                }
                other => return Err(DecodeError::BadOpKind(other)),
            }
        }
        if reader.at != bytes.len() {
            return Err(DecodeError::Reserved);
        }
        Ok(Record { now_ns, ops })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).ok_or(DecodeError::Truncated)?;
        let slice = self.bytes.get(self.at..end).ok_or(DecodeError::Truncated)?;
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn u128(&mut self) -> Result<u128, DecodeError> {
        Ok(u128::from_le_bytes(self.array()?))
    }
}

fn encode_new_account(event: &NewAccount, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&event.id.to_le_bytes());
    out.extend_from_slice(&event.owner_id.to_le_bytes());
    out.extend_from_slice(&event.user_data_128.to_le_bytes());
    out.extend_from_slice(&event.user_data_64.to_le_bytes());
    out.extend_from_slice(&event.user_data_32.to_le_bytes());
    out.extend_from_slice(&event.asset.to_bytes());
    out.extend_from_slice(&event.code.to_le_bytes());
    out.extend_from_slice(&event.flags.0.to_le_bytes());
    out.resize(start + NEW_ACCOUNT_BYTES, 0);
}

fn decode_new_account(bytes: &[u8]) -> Result<NewAccount, DecodeError> {
    let mut reader = Reader { bytes, at: 0 };
    let event = NewAccount {
        id: reader.u128()?,
        owner_id: reader.u128()?,
        user_data_128: reader.u128()?,
        user_data_64: reader.u64()?,
        user_data_32: reader.u32()?,
        asset: Asset::from_bytes(reader.array()?).map_err(|_| DecodeError::BadAsset)?,
        code: reader.u16()?,
        flags: AccountFlags(reader.u16()?),
    };
    if reader.take(NEW_ACCOUNT_BYTES - reader.at)?.iter().any(|&byte| byte != 0) {
        return Err(DecodeError::Reserved);
    }
    Ok(event)
}

fn encode_new_transfer(event: &NewTransfer, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&event.id.to_le_bytes());
    out.extend_from_slice(&event.debit_account_id.to_le_bytes());
    out.extend_from_slice(&event.credit_account_id.to_le_bytes());
    out.extend_from_slice(&event.amount.to_le_bytes());
    out.extend_from_slice(&event.pending_id.to_le_bytes());
    out.extend_from_slice(&event.user_data_128.to_le_bytes());
    out.extend_from_slice(&event.user_data_64.to_le_bytes());
    out.extend_from_slice(&event.user_data_32.to_le_bytes());
    out.extend_from_slice(&event.timeout_s.to_le_bytes());
    out.extend_from_slice(&event.asset.map_or([0; 4], Asset::to_bytes));
    out.extend_from_slice(&event.code.to_le_bytes());
    out.extend_from_slice(&event.flags.0.to_le_bytes());
    out.resize(start + NEW_TRANSFER_BYTES, 0);
}

fn decode_new_transfer(bytes: &[u8]) -> Result<NewTransfer, DecodeError> {
    let mut reader = Reader { bytes, at: 0 };
    let id = reader.u128()?;
    let debit_account_id = reader.u128()?;
    let credit_account_id = reader.u128()?;
    let amount = reader.u128()?;
    let pending_id = reader.u128()?;
    let user_data_128 = reader.u128()?;
    let user_data_64 = reader.u64()?;
    let user_data_32 = reader.u32()?;
    let timeout_s = reader.u32()?;
    let asset_bytes: [u8; 4] = reader.array()?;
    let asset = if asset_bytes == [0; 4] {
        None
    } else {
        Some(Asset::from_bytes(asset_bytes).map_err(|_| DecodeError::BadAsset)?)
    };
    let event = NewTransfer {
        id,
        debit_account_id,
        credit_account_id,
        amount,
        pending_id,
        user_data_128,
        user_data_64,
        user_data_32,
        timeout_s,
        asset,
        code: reader.u16()?,
        flags: TransferFlags(reader.u16()?),
    };
    if reader.take(NEW_TRANSFER_BYTES - reader.at)?.iter().any(|&byte| byte != 0) {
        return Err(DecodeError::Reserved);
    }
    Ok(event)
}

/// Appends identity fields. A string or blob too long for its u16 length prefix is not cut
/// (that would split UTF-8 and make a record that cannot be read back): the writer remembers it
/// and the encoding fails whole.
struct Writer(Vec<u8>, bool);

impl Writer {
    fn u8(&mut self, value: u8) -> &mut Self {
        self.0.push(value);
        self
    }
    fn u64(&mut self, value: u64) -> &mut Self {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }
    fn u128(&mut self, value: u128) -> &mut Self {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }
    fn u32(&mut self, value: u32) -> &mut Self {
        self.0.extend_from_slice(&value.to_le_bytes());
        self
    }
    fn str(&mut self, value: &str) -> &mut Self {
        self.bytes(value.as_bytes())
    }
    fn bytes(&mut self, value: &[u8]) -> &mut Self {
        match u16::try_from(value.len()) {
            Ok(len) => {
                self.0.extend_from_slice(&len.to_le_bytes());
                self.0.extend_from_slice(value);
            }
            Err(_) => self.1 = true,
        }
        self
    }
    fn finish(self) -> Result<Vec<u8>, EncodeError> {
        if self.1 { Err(EncodeError::FieldTooLong) } else { Ok(self.0) }
    }
    fn key(&mut self, value: &[u8; 32]) -> &mut Self {
        self.0.extend_from_slice(value);
        self
    }
    fn limits(&mut self, limits: &Option<DeviceLimits>) -> &mut Self {
        match limits {
            None => self.u8(0),
            Some(l) => {
                self.u8(1);
                self.0.extend_from_slice(&l.asset.to_bytes());
                self.u128(l.per_payment).u128(l.per_day)
            }
        }
    }
}

fn encode_identity(command: &IdentityCommand) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer(Vec::with_capacity(128), false);
    match command {
        IdentityCommand::CreatePrincipal { id, role, name } => {
            w.u8(1).u128(*id).u8(*role as u8).str(name);
        }
        IdentityCommand::SetPrincipalStatus { id, status } => {
            w.u8(2).u128(*id).u8(*status as u8);
        }
        IdentityCommand::CreateApiKey { key_id, principal_id, phc, scopes, expires_ns } => {
            w.u8(3).str(key_id).u128(*principal_id).str(phc).u32(scopes.0).u64(*expires_ns);
        }
        IdentityCommand::RevokeApiKey { key_id } => {
            w.u8(4).str(key_id);
        }
        IdentityCommand::SetApiKeyExpiry { key_id, expires_ns } => {
            w.u8(5).str(key_id).u64(*expires_ns);
        }
        IdentityCommand::RegisterDevice { id, holder_id, kid, public_key, limits } => {
            w.u8(6).u128(*id).u128(*holder_id).str(kid).key(public_key).limits(limits);
        }
        IdentityCommand::SetDeviceStatus { id, status } => {
            w.u8(7).u128(*id).u8(*status as u8);
        }
        IdentityCommand::RotateDeviceKey { id, kid, public_key } => {
            w.u8(8).u128(*id).str(kid).key(public_key);
        }
        IdentityCommand::SetDeviceLimits { id, limits } => {
            w.u8(9).u128(*id).limits(limits);
        }
        IdentityCommand::EnrollTotp { principal_id, sealed_secret } => {
            w.u8(10).u128(*principal_id).bytes(sealed_secret);
        }
        IdentityCommand::ConfirmTotp { principal_id, step, recovery_hashes } => {
            match u8::try_from(recovery_hashes.len()) {
                Ok(count) => {
                    w.u8(11).u128(*principal_id).u64(*step).u8(count);
                    for hash in recovery_hashes {
                        w.key(hash);
                    }
                }
                Err(_) => w.1 = true,
            }
        }
        IdentityCommand::UseFactor { principal_id, proof } => {
            w.u8(12).u128(*principal_id);
            match proof {
                FactorProof::TotpStep(step) => w.u8(1).u64(*step),
                FactorProof::RecoveryCode(hash) => w.u8(2).key(hash),
                FactorProof::Passkey => w.u8(3),
            };
        }
        IdentityCommand::FailFactor { principal_id } => {
            w.u8(13).u128(*principal_id);
        }
        IdentityCommand::UnlockFactors { principal_id } => {
            w.u8(14).u128(*principal_id);
        }
        IdentityCommand::SetStepUpPolicy { principal_id, policy } => {
            w.u8(15).u128(*principal_id);
            match policy.above {
                None => w.u8(0),
                Some((asset, amount)) => {
                    w.u8(1);
                    w.0.extend_from_slice(&asset.to_bytes());
                    w.u128(amount)
                }
            };
            w.u8(u8::from(policy.new_payee)).u8(u8::from(policy.new_device));
        }
        IdentityCommand::MarkDevicePaid { id } => {
            w.u8(16).u128(*id);
        }
        IdentityCommand::PutPasskey { principal_id, credential_id, data } => {
            w.u8(17).u128(*principal_id).bytes(credential_id).bytes(data);
        }
        IdentityCommand::DisablePasskey { principal_id, credential_id } => {
            w.u8(18).u128(*principal_id).bytes(credential_id);
        }
        IdentityCommand::RemovePasskey { principal_id, credential_id } => {
            w.u8(21).u128(*principal_id).bytes(credential_id);
        }
        IdentityCommand::SetFrozen { principal_id, target, frozen } => {
            let (kind, id) = match target {
                crate::identity::FreezeTarget::All => (0, 0),
                crate::identity::FreezeTarget::Device(id) => (1, *id),
                crate::identity::FreezeTarget::Tab(id) => (2, *id),
            };
            w.u8(20).u128(*principal_id).u8(kind).u128(id).u8(u8::from(*frozen));
        }
        IdentityCommand::ChargeDevice { id, day, amount } => {
            w.u8(19).u128(*id).u64(*day).u128(*amount);
        }
    }
    w.finish()
}

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let [byte] = self.array::<1>()?;
        Ok(byte)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = usize::from(self.u16()?);
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| DecodeError::BadIdentity)
    }

    fn blob(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = usize::from(self.u16()?);
        Ok(self.take(len)?.to_vec())
    }

    fn role(&mut self) -> Result<Role, DecodeError> {
        Role::from_code(self.u8()?).ok_or(DecodeError::BadIdentity)
    }

    fn status(&mut self) -> Result<Status, DecodeError> {
        Status::from_code(self.u8()?).ok_or(DecodeError::BadIdentity)
    }

    fn limits(&mut self) -> Result<Option<DeviceLimits>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(DeviceLimits {
                asset: Asset::from_bytes(self.array()?).map_err(|_| DecodeError::BadAsset)?,
                per_payment: self.u128()?,
                per_day: self.u128()?,
            })),
            _ => Err(DecodeError::BadIdentity),
        }
    }
}

fn encode_tab(command: &crate::channel::TabCommand) -> Vec<u8> {
    use crate::channel::TabCommand;
    let mut w = Writer(Vec::with_capacity(160), false);
    match command {
        TabCommand::Open {
            tab_id,
            escrow_transfer_id,
            payer_account_id,
            payee_account_id,
            device_id,
            budget,
            asset,
            timeout_s,
        } => {
            w.u8(1).u128(*tab_id).u128(*escrow_transfer_id).u128(*payer_account_id).u128(*payee_account_id);
            w.u128(*device_id).u128(*budget);
            w.0.extend_from_slice(&asset.to_bytes());
            w.u32(*timeout_s);
        }
        TabCommand::Voucher(voucher) => {
            w.u8(2);
            w.0.extend_from_slice(&voucher.encode());
        }
        TabCommand::Commit(commitment) => {
            w.u8(3);
            w.0.extend_from_slice(&commitment.encode());
        }
        TabCommand::Tick { tab_id, index, word } => {
            w.u8(4).u128(*tab_id).u32(*index).key(word);
        }
        TabCommand::Settle { tab_id, settle_transfer_id } => {
            w.u8(5).u128(*tab_id).u128(*settle_transfer_id);
        }
        TabCommand::TopUp { tab_id, amount, void_transfer_id, escrow_transfer_id } => {
            w.u8(6).u128(*tab_id).u128(*amount).u128(*void_transfer_id).u128(*escrow_transfer_id);
        }
    }
    w.0
}

#[expect(
    clippy::indexing_slicing,
    reason = "the reader's position never passes the end of its bytes (`take` checks before it moves)"
)]
fn decode_tab(bytes: &[u8]) -> Result<crate::channel::TabCommand, DecodeError> {
    use crate::channel::{Commitment, TabCommand, VOUCHER_BYTES, Voucher};
    let mut r = Reader { bytes, at: 0 };
    let command = match r.u8()? {
        1 => TabCommand::Open {
            tab_id: r.u128()?,
            escrow_transfer_id: r.u128()?,
            payer_account_id: r.u128()?,
            payee_account_id: r.u128()?,
            device_id: r.u128()?,
            budget: r.u128()?,
            asset: Asset::from_bytes(r.array()?).map_err(|_| DecodeError::BadAsset)?,
            timeout_s: r.u32()?,
        },
        // Records written before version 2 hold version 1 vouchers and commitments; both read.
        2 => TabCommand::Voucher(Voucher::decode_logged(r.take(VOUCHER_BYTES)?).map_err(|_| DecodeError::BadIdentity)?),
        3 => {
            let length = Commitment::encoded_len(&r.bytes[r.at..]).ok_or(DecodeError::BadIdentity)?;
            TabCommand::Commit(Commitment::decode(r.take(length)?).map_err(|_| DecodeError::BadIdentity)?)
        }
        4 => TabCommand::Tick { tab_id: r.u128()?, index: r.u32()?, word: r.array()? },
        5 => TabCommand::Settle { tab_id: r.u128()?, settle_transfer_id: r.u128()? },
        6 => TabCommand::TopUp {
            tab_id: r.u128()?,
            amount: r.u128()?,
            void_transfer_id: r.u128()?,
            escrow_transfer_id: r.u128()?,
        },
        _ => return Err(DecodeError::BadIdentity),
    };
    if r.at != bytes.len() {
        return Err(DecodeError::BadIdentity);
    }
    Ok(command)
}

fn decode_identity(bytes: &[u8]) -> Result<IdentityCommand, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let command = match r.u8()? {
        1 => IdentityCommand::CreatePrincipal { id: r.u128()?, role: r.role()?, name: r.string()? },
        2 => IdentityCommand::SetPrincipalStatus { id: r.u128()?, status: r.status()? },
        3 => IdentityCommand::CreateApiKey {
            key_id: r.string()?,
            principal_id: r.u128()?,
            phc: r.string()?,
            scopes: Scopes(r.u32()?),
            expires_ns: r.u64()?,
        },
        4 => IdentityCommand::RevokeApiKey { key_id: r.string()? },
        5 => IdentityCommand::SetApiKeyExpiry { key_id: r.string()?, expires_ns: r.u64()? },
        6 => IdentityCommand::RegisterDevice {
            id: r.u128()?,
            holder_id: r.u128()?,
            kid: r.string()?,
            public_key: r.array()?,
            limits: r.limits()?,
        },
        7 => IdentityCommand::SetDeviceStatus { id: r.u128()?, status: r.status()? },
        8 => IdentityCommand::RotateDeviceKey { id: r.u128()?, kid: r.string()?, public_key: r.array()? },
        9 => IdentityCommand::SetDeviceLimits { id: r.u128()?, limits: r.limits()? },
        10 => {
            let principal_id = r.u128()?;
            let len = usize::from(r.u16()?);
            IdentityCommand::EnrollTotp { principal_id, sealed_secret: r.take(len)?.to_vec() }
        }
        11 => {
            let principal_id = r.u128()?;
            let step = r.u64()?;
            let count = r.u8()?;
            let mut recovery_hashes = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                recovery_hashes.push(r.array()?);
            }
            IdentityCommand::ConfirmTotp { principal_id, step, recovery_hashes }
        }
        12 => {
            let principal_id = r.u128()?;
            let proof = match r.u8()? {
                1 => FactorProof::TotpStep(r.u64()?),
                2 => FactorProof::RecoveryCode(r.array()?),
                3 => FactorProof::Passkey,
                _ => return Err(DecodeError::BadIdentity),
            };
            IdentityCommand::UseFactor { principal_id, proof }
        }
        13 => IdentityCommand::FailFactor { principal_id: r.u128()? },
        14 => IdentityCommand::UnlockFactors { principal_id: r.u128()? },
        15 => {
            let principal_id = r.u128()?;
            let above = match r.u8()? {
                0 => None,
                1 => Some((Asset::from_bytes(r.array()?).map_err(|_| DecodeError::BadAsset)?, r.u128()?)),
                _ => return Err(DecodeError::BadIdentity),
            };
            let flag = |value: u8| match value {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(DecodeError::BadIdentity),
            };
            let new_payee = flag(r.u8()?)?;
            let new_device = flag(r.u8()?)?;
            IdentityCommand::SetStepUpPolicy { principal_id, policy: StepUpPolicy { above, new_payee, new_device } }
        }
        16 => IdentityCommand::MarkDevicePaid { id: r.u128()? },
        17 => {
            let principal_id = r.u128()?;
            let credential_id = r.blob()?;
            IdentityCommand::PutPasskey { principal_id, credential_id, data: r.blob()? }
        }
        18 => IdentityCommand::DisablePasskey { principal_id: r.u128()?, credential_id: r.blob()? },
        19 => IdentityCommand::ChargeDevice { id: r.u128()?, day: r.u64()?, amount: r.u128()? },
        20 => {
            let principal_id = r.u128()?;
            let kind = r.u8()?;
            let id = r.u128()?;
            let target = match kind {
                0 if id == 0 => crate::identity::FreezeTarget::All,
                1 => crate::identity::FreezeTarget::Device(id),
                2 => crate::identity::FreezeTarget::Tab(id),
                _ => return Err(DecodeError::BadIdentity),
            };
            let frozen = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(DecodeError::BadIdentity),
            };
            IdentityCommand::SetFrozen { principal_id, target, frozen }
        }
        21 => IdentityCommand::RemovePasskey { principal_id: r.u128()?, credential_id: r.blob()? },
        _ => return Err(DecodeError::BadIdentity),
    };
    if r.at != bytes.len() {
        return Err(DecodeError::BadIdentity);
    }
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Asset {
        Asset::new("USD", 2).unwrap()
    }

    fn sample() -> Record {
        Record {
            now_ns: 1_700_000_000_000_000_000,
            ops: vec![
                Op::CreateAccounts(vec![NewAccount {
                    owner_id: 42,
                    id: u128::MAX - 1,
                    user_data_128: 7,
                    user_data_64: 8,
                    user_data_32: 9,
                    asset: usd(),
                    code: 10,
                    flags: AccountFlags(AccountFlags::HISTORY),
                }]),
                Op::CreateTransfers(vec![NewTransfer {
                    id: 1,
                    debit_account_id: 2,
                    credit_account_id: 3,
                    amount: u128::MAX,
                    pending_id: 4,
                    user_data_128: 5,
                    user_data_64: 6,
                    user_data_32: 7,
                    timeout_s: 8,
                    asset: None,
                    code: 9,
                    flags: TransferFlags(TransferFlags::POST_PENDING),
                }]),
                Op::Identity(sample_identity()),
                Op::Dispute(vec![NewTransfer {
                    id: 11,
                    debit_account_id: 3,
                    credit_account_id: 2,
                    amount: 250,
                    pending_id: 0,
                    user_data_128: 1,
                    user_data_64: 0,
                    user_data_32: 0,
                    timeout_s: 0,
                    asset: None,
                    code: crate::ledger::DISPUTE_TRANSFER_CODE,
                    flags: TransferFlags(TransferFlags::PENDING),
                }]),
                Op::Put(crate::table::Put {
                    key: "risk/review/ü".into(), value: b"{\"status\":\"pending\"}".to_vec()
                }),
            ],
        }
    }

    fn sample_identity() -> IdentityCommand {
        IdentityCommand::RegisterDevice {
            id: 5,
            holder_id: 6,
            kid: "phone-1".into(),
            public_key: [9; 32],
            limits: Some(DeviceLimits { asset: usd(), per_payment: 100, per_day: 1000 }),
        }
    }

    #[test]
    fn every_identity_command_round_trips() {
        let commands = vec![
            IdentityCommand::CreatePrincipal { id: 1, role: Role::Auditor, name: "Ünïcode name".into() },
            IdentityCommand::SetPrincipalStatus { id: 1, status: Status::Suspended },
            IdentityCommand::CreateApiKey {
                key_id: "0123456789abcdef".into(),
                principal_id: 1,
                phc: "$argon2id$v=19$m=19456,t=2,p=1$abc$def".into(),
                scopes: Scopes(Scopes::READ | Scopes::PAY),
                expires_ns: 77,
            },
            IdentityCommand::RevokeApiKey { key_id: "k".into() },
            IdentityCommand::SetApiKeyExpiry { key_id: "k".into(), expires_ns: u64::MAX },
            sample_identity(),
            IdentityCommand::SetDeviceStatus { id: 5, status: Status::Revoked },
            IdentityCommand::RotateDeviceKey { id: 5, kid: "phone-2".into(), public_key: [1; 32] },
            IdentityCommand::SetDeviceLimits { id: 5, limits: None },
            IdentityCommand::EnrollTotp { principal_id: 1, sealed_secret: vec![3; 60] },
            IdentityCommand::ConfirmTotp { principal_id: 1, step: 99, recovery_hashes: vec![[1; 32], [2; 32]] },
            IdentityCommand::UseFactor { principal_id: 1, proof: FactorProof::TotpStep(100) },
            IdentityCommand::UseFactor { principal_id: 1, proof: FactorProof::RecoveryCode([2; 32]) },
            IdentityCommand::FailFactor { principal_id: 1 },
            IdentityCommand::UnlockFactors { principal_id: 1 },
            IdentityCommand::SetStepUpPolicy {
                principal_id: 1,
                policy: StepUpPolicy { above: Some((usd(), 3000)), new_payee: false, new_device: true },
            },
            IdentityCommand::MarkDevicePaid { id: 5 },
            IdentityCommand::PutPasskey { principal_id: 1, credential_id: vec![9; 16], data: b"{\"cred\":1}".to_vec() },
            IdentityCommand::DisablePasskey { principal_id: 1, credential_id: vec![9; 16] },
            IdentityCommand::RemovePasskey { principal_id: 1, credential_id: vec![9; 32] },
            IdentityCommand::ChargeDevice { id: 5, day: 20_000, amount: 250 },
            IdentityCommand::SetFrozen { principal_id: 1, target: crate::identity::FreezeTarget::All, frozen: true },
            IdentityCommand::SetFrozen {
                principal_id: 1,
                target: crate::identity::FreezeTarget::Device(5),
                frozen: false,
            },
            IdentityCommand::SetFrozen { principal_id: 1, target: crate::identity::FreezeTarget::Tab(9), frozen: true },
        ];
        for command in commands {
            let record = Record { now_ns: 3, ops: vec![Op::Identity(command)] };
            assert_eq!(Record::decode(&record.encode().unwrap()), Ok(record));
        }
    }

    #[test]
    fn records_round_trip() {
        let record = sample();
        let bytes = record.encode().unwrap();
        assert_eq!(
            bytes.len(),
            16 + 16
                + 8
                + 80
                + 8
                + 128
                + 8
                + 4
                + encode_identity(&sample_identity()).unwrap().len()
                + 8
                + 128
                + 8
                + 2
                + "risk/review/ü".len()
                + 4
                + 20
        );
        assert_eq!(Record::decode(&bytes), Ok(record));
    }

    #[test]
    fn a_put_that_does_not_fit_is_refused_both_ways() {
        use crate::table::{KEY_BYTES_MAX, Put, VALUE_BYTES_MAX};
        let long_key = Op::Put(Put { key: "k".repeat(KEY_BYTES_MAX + 1), value: b"v".to_vec() });
        assert_eq!(long_key.check_encodable(), Err(EncodeError::FieldTooLong));
        let big = Op::Put(Put { key: "k".into(), value: vec![1; VALUE_BYTES_MAX + 1] });
        assert_eq!(Record { now_ns: 1, ops: vec![big] }.encode(), Err(EncodeError::FieldTooLong));
        let largest =
            Record { now_ns: 1, ops: vec![Op::Put(Put { key: "k".into(), value: vec![1; VALUE_BYTES_MAX] })] };
        assert_eq!(Record::decode(&largest.encode().unwrap()), Ok(largest));
        // An empty key written by hand is refused on decode, as is a key that is not UTF-8.
        for key in [&b""[..], &[0xff, 0xfe][..]] {
            let mut body = Vec::new();
            body.extend_from_slice(&1u64.to_le_bytes());
            body.extend_from_slice(&1u32.to_le_bytes());
            body.extend_from_slice(&0u32.to_le_bytes());
            body.extend_from_slice(&[5, 0, 0, 0]);
            body.extend_from_slice(&1u32.to_le_bytes());
            body.extend_from_slice(&(key.len() as u16).to_le_bytes());
            body.extend_from_slice(key);
            body.extend_from_slice(&1u32.to_le_bytes());
            body.push(7);
            let mut bytes = RECORD_MAGIC.to_vec();
            bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&0u32.to_le_bytes());
            bytes.extend_from_slice(&body);
            assert_eq!(Record::decode(&bytes), Err(DecodeError::BadPut));
        }
    }

    #[test]
    fn an_audit_note_round_trips_and_one_that_does_not_fit_is_refused_both_ways() {
        use crate::audit::Note;
        let note = Note {
            actor_id: 7,
            role: "analyst".into(),
            via: "key:abc123".into(),
            origin: "2001:db8::1".into(),
            what: "review.approve".into(),
            subject: "review:r-1 transfer:9".into(),
            outcome: "approved".into(),
        };
        let record = Record { now_ns: 5, ops: vec![Op::Note(note.clone()), Op::Note(Note::default())] };
        assert_eq!(Record::decode(&record.encode().unwrap()), Ok(record));
        for bad in [Note { what: "x".repeat(129), ..note.clone() }, Note { outcome: "a\"b".into(), ..note.clone() }] {
            assert_eq!(Op::Note(bad.clone()).check_encodable(), Err(EncodeError::FieldTooLong));
            assert_eq!(Record { now_ns: 1, ops: vec![Op::Note(bad)] }.encode(), Err(EncodeError::FieldTooLong));
        }
        assert_eq!(Note::field("Zoë \"said\" hi\\"), "Zo said hi");
        // A quote written by hand is refused on decode.
        let mut body = Vec::new();
        body.extend_from_slice(&1u64.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&[7, 0, 0, 0]);
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&7u128.to_le_bytes());
        for field in ["holder", "", "", "\"", "", ""] {
            body.push(field.len() as u8);
            body.extend_from_slice(field.as_bytes());
        }
        let mut bytes = RECORD_MAGIC.to_vec();
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&body);
        assert_eq!(Record::decode(&bytes), Err(DecodeError::BadNote));
    }

    #[test]
    fn r10_a_field_too_long_for_its_prefix_fails_to_encode_instead_of_being_cut() {
        // 65,536 bytes of a two-byte character: cutting at 65,535 would split one.
        let kid = "é".repeat(32_768);
        let command = IdentityCommand::RotateDeviceKey { id: 5, kid, public_key: [1; 32] };
        let op = Op::Identity(command);
        assert_eq!(op.check_encodable(), Err(EncodeError::FieldTooLong));
        let record = Record { now_ns: 3, ops: vec![op] };
        assert_eq!(record.encode(), Err(EncodeError::FieldTooLong));
        let fits = IdentityCommand::RotateDeviceKey { id: 5, kid: "k".repeat(65_535), public_key: [1; 32] };
        let record = Record { now_ns: 3, ops: vec![Op::Identity(fits)] };
        assert_eq!(Record::decode(&record.encode().unwrap()), Ok(record), "the longest field that fits round-trips");
        let hashes = IdentityCommand::ConfirmTotp { principal_id: 1, step: 1, recovery_hashes: vec![[0; 32]; 256] };
        assert_eq!(Op::Identity(hashes).check_encodable(), Err(EncodeError::FieldTooLong));
    }

    #[test]
    fn a_torn_record_is_detected() {
        let bytes = sample().encode().unwrap();
        for cut in 0..bytes.len() {
            assert!(Record::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_bit_is_detected() {
        let bytes = sample().encode().unwrap();
        for index in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[index] ^= 0x10;
            assert!(Record::decode(&corrupt).is_err(), "flip at {index}");
        }
    }
}

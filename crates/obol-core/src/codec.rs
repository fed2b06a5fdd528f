//! The durable record format: what the storage layer writes, one record per group commit.
//!
//! A record is the *input* of [`Ledger::apply`](crate::ledger::Ledger::apply): the wall-clock
//! time the shell read and the requests it coalesced. The ledger is a deterministic function of
//! its records, so replaying them rebuilds it exactly. Layout (all integers little-endian):
//!
//! ```text
//! header (16 bytes): magic "OBR1" | crc32 of the body (u32) | body length (u32) | reserved (u32)
//! body:              now_ns (u64) | op count (u32) | reserved (u32) | ops...
//! op:                kind (u8: 1 accounts, 2 transfers) | 3 zero bytes | event count (u32) | events
//! account event:     64 bytes (NEW_ACCOUNT_BYTES)
//! transfer event:    128 bytes (NEW_TRANSFER_BYTES)
//! ```
//! Changes to this layout need a new magic and a changelog entry.

use crate::ledger::{AccountFlags, BATCH_EVENTS_MAX, NewAccount, NewTransfer, TransferFlags};
use crate::money::Asset;

/// First bytes of every record.
pub const RECORD_MAGIC: [u8; 4] = *b"OBR1";
/// Bytes of the record header.
pub const RECORD_HEADER_BYTES: usize = 16;
/// Bytes of one encoded account event.
pub const NEW_ACCOUNT_BYTES: usize = 64;
/// Bytes of one encoded transfer event.
pub const NEW_TRANSFER_BYTES: usize = 128;
/// The most events one record may hold across its ops.
pub const RECORD_EVENTS_MAX: usize = BATCH_EVENTS_MAX;

const _: () = assert!(RECORD_EVENTS_MAX * NEW_TRANSFER_BYTES < u32::MAX as usize);

/// One client request inside a record.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Op {
    /// Create accounts, in order.
    CreateAccounts(Vec<NewAccount>),
    /// Create transfers, in order.
    CreateTransfers(Vec<NewTransfer>),
}

impl Op {
    /// Number of events.
    pub fn len(&self) -> usize {
        match self {
            Op::CreateAccounts(events) => events.len(),
            Op::CreateTransfers(events) => events.len(),
        }
    }

    /// Whether the op has no events.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The unit of durability: applied whole or not at all.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Record {
    /// Wall-clock time the shell read when it formed the record, ns since the Unix epoch.
    pub now_ns: u64,
    /// The requests, in the order they are applied.
    pub ops: Vec<Op>,
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the header or the declared body.
    #[error("record truncated")]
    Truncated,
    /// The magic is not `OBR1`.
    #[error("record magic mismatch")]
    BadMagic,
    /// The body does not match its checksum (a torn or corrupted write).
    #[error("record checksum mismatch")]
    BadChecksum,
    /// An op kind other than 1 or 2.
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
}

impl Record {
    /// Total events across ops.
    pub fn events_count(&self) -> usize {
        self.ops.iter().map(Op::len).sum()
    }

    /// Encodes the record, header and checksum included.
    pub fn encode(&self) -> Vec<u8> {
        let body_bytes = 16
            + self
                .ops
                .iter()
                .map(|op| {
                    8 + match op {
                        Op::CreateAccounts(events) => events.len() * NEW_ACCOUNT_BYTES,
                        Op::CreateTransfers(events) => events.len() * NEW_TRANSFER_BYTES,
                    }
                })
                .sum::<usize>();
        let mut out = Vec::with_capacity(RECORD_HEADER_BYTES + body_bytes);
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
            }
        }
        assert_eq!(out.len(), RECORD_HEADER_BYTES + body_bytes);
        let body_len = (out.len() - RECORD_HEADER_BYTES) as u32;
        let crc = crc32fast::hash(&out[RECORD_HEADER_BYTES..]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        out[8..12].copy_from_slice(&body_len.to_le_bytes());
        out
    }

    /// Decodes and checks a record produced by [`Record::encode`].
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
            ],
        }
    }

    #[test]
    fn records_round_trip() {
        let record = sample();
        let bytes = record.encode();
        assert_eq!(bytes.len(), 16 + 16 + 8 + 64 + 8 + 128);
        assert_eq!(Record::decode(&bytes), Ok(record));
    }

    #[test]
    fn a_torn_record_is_detected() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(Record::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_bit_is_detected() {
        let bytes = sample().encode();
        for index in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[index] ^= 0x10;
            assert!(Record::decode(&corrupt).is_err(), "flip at {index}");
        }
    }
}

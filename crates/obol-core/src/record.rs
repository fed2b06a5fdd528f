//! What the log holds: a [`Record`] is the wall-clock time the shell read and the requests
//! ([`Op`]s) it coalesced, one record per group commit.
//!
//! A record is the *input* of [`Ledger::apply`](crate::ledger::Ledger::apply). The ledger is a
//! deterministic function of its records, so replaying them rebuilds it exactly. Their bytes on
//! disk are [`codec`](crate::codec)'s: [`Record::encode`], [`Record::decode`] and
//! [`Op::check_encodable`] live there, beside the format they write and read.

use crate::identity::IdentityCommand;
use crate::ledger::{NewAccount, NewTransfer};

/// One client request inside a record.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Op {
    /// Create accounts, in order.
    CreateAccounts(Vec<NewAccount>),
    /// Create transfers, in order.
    CreateTransfers(Vec<NewTransfer>),
    /// One change to the identity registry.
    Identity(IdentityCommand),
    /// One tab command.
    Tab(crate::channel::TabCommand),
    /// One write to the state table.
    Put(crate::table::Put),
    /// A payer's transfers, under its device's limits and counted for it.
    Pay(crate::ledger::Payment),
    /// A dispute's own transfers (hold, credit, release, reversal), all with the dispute code.
    Dispute(Vec<crate::ledger::NewTransfer>),
    /// An audit note: who asked for the ops beside it, or a decision that moved nothing (a
    /// payment refused by the risk policy, a review decided). Changes no state.
    Note(crate::audit::Note),
}

impl Op {
    /// Number of events.
    pub fn len(&self) -> usize {
        match self {
            Op::CreateAccounts(events) => events.len(),
            Op::CreateTransfers(events) | Op::Dispute(events) => events.len(),
            Op::Pay(payment) => payment.transfers.len(),
            Op::Identity(_) | Op::Put(_) | Op::Note(_) => 1,
            Op::Tab(command) => command.events_count(),
        }
    }

    /// Bytes a put adds to a record (0 for other ops): the writer stops adding ops to a record
    /// at [`RECORD_PUT_BYTES_MAX`](crate::codec::RECORD_PUT_BYTES_MAX), so a record's body
    /// always fits its u32 length.
    pub fn put_bytes(&self) -> usize {
        match self {
            Op::Put(put) => put.key.len() + put.value.len(),
            Op::CreateAccounts(_)
            | Op::CreateTransfers(_)
            | Op::Dispute(_)
            | Op::Identity(_)
            | Op::Tab(_)
            | Op::Pay(_)
            | Op::Note(_) => 0,
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

impl Record {
    /// Total events across ops.
    pub fn events_count(&self) -> usize {
        self.ops.iter().map(Op::len).sum()
    }
}

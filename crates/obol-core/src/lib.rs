//! obol's pure core: money, the double-entry ledger state machine, and the durable record codec.
//!
//! **Architecture Invariant:** this crate does no I/O, reads no clock and draws no randomness:
//! time (`Record::now_ns`) and hash seeds are arguments. The tidy test in `xtask` checks that
//! its manifest names no runtime, database or RNG crate.
//!
//! **API Boundary:** [`ledger::Ledger::apply`] over [`record::Record`]s; everything the shells
//! persist is a `Record`.
#![deny(missing_docs)]
#![deny(clippy::float_arithmetic)]

pub mod audit;
pub mod channel;
pub mod codec;
pub mod identity;
pub mod ledger;
pub mod merkle;
pub mod money;
pub mod record;
pub mod table;
pub mod time;

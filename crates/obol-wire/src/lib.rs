//! obol's wire formats, shared by the server and its clients without the server's weight (no
//! web framework, database, policy engine or model): the x402 v2 envelope ([`x402`]), RFC 9421
//! message signatures for device requests ([`httpsig`]), and, re-exported from obol-core, the
//! voucher, PayWord commitment and `exact` authorization formats of `docs/vouchers.md`.
//!
//! **Architecture Invariant:** a client that pays obol needs only this crate and obol-core; the
//! tidy test checks that `obol-client` pulls in none of the server's dependencies.
#![deny(missing_docs)]

pub mod httpsig;
pub mod x402;

pub use obol_core::channel::{Commitment, ExactAuthorization, Network, Voucher, payword_chain};

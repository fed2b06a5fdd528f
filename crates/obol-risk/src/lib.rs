//! obol's risk engine: every money-moving event gets a decision with reasons, in microseconds.
//!
//! This crate is pure, like `obol-core`: time arrives in each event, nothing is read from a clock,
//! nothing is random, nothing does I/O. It lives beside the core rather than in it because its
//! scores are real numbers (features, model outputs) and the core keeps floating point away from
//! money; amounts enter here as the ledger's integers and are only ever read, never produced.
//!
//! **API Boundary:** [`features::FeatureStore::observe`] takes an [`features::Event`] and answers
//! its [`features::Features`], updating per-entity state in O(1); the state is bounded
//! ([`features::FeatureStore::with_capacity`]) and round-trips through
//! [`features::FeatureStore::snapshot`] so it survives a restart.
#![deny(missing_docs)]

pub mod detect;
pub mod engine;
pub mod features;
pub mod model;
pub mod policy;
pub mod sim;

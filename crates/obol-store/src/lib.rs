//! Durable storage for obol and the group-commit engine that feeds the ledger.
//!
//! The durable record of the ledger is its log of [`Record`](obol_core::record::Record)s: one row
//! per group commit, appended and synced before any result of it is returned. The in-memory
//! [`Ledger`](obol_core::ledger::Ledger) is rebuilt at start by replaying that log.
//!
//! **Architecture Invariant:** a record is persisted before it is applied, and applied before
//! any of its results leave [`Node::commit`]; readers only ever see applied (hence durable)
//! state. A store error stops the engine (fail-stop): after a failed sync nothing is known.
//!
//! **API Boundary:** the [`Store`] trait (two implementations: [`SqliteStore`], the embedded
//! default, and [`PgStore`]); [`Node`] for single-threaded use (tests, the simulator) and
//! [`Engine`] for the server's coalescing writer thread.
#![deny(missing_docs)]

mod engine;
mod node;
mod postgres;
pub mod postgres_tls;
mod sqlite;

pub use engine::{Engine, EngineError, EngineStats, QUEUE_DEPTH_MAX};
pub use node::Node;
pub use postgres::{PgStore, connect_client as connect_postgres};
pub use sqlite::SqliteStore;

/// Why the store failed. Every variant stops the engine.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL reported an error.
    #[error("postgres: {}", with_causes(.0))]
    Postgres(tokio_postgres::Error),
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// Another obol process holds this store.
    #[error("{0} is in use by another obol process")]
    Locked(String),
    /// The log is damaged somewhere other than its last record.
    #[error("log record {seq} is corrupt: {reason}")]
    Corrupt {
        /// Position of the bad record.
        seq: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// An append was not at the next position (a bug or a second writer).
    #[error("append at {got} but the log ends at {last}")]
    OutOfOrder {
        /// Last position in the log.
        last: u64,
        /// Position asked for.
        got: u64,
    },
    /// The store was configured wrongly (e.g. an invalid schema name).
    #[error("{0}")]
    Config(String),
    /// A record could not be encoded exactly (a bug: ops are checked when submitted).
    #[error("a record could not be encoded: {0}")]
    Unencodable(String),
    /// A fault injected by the simulator.
    #[error("injected fault: {0}")]
    Injected(&'static str),
}

/// The callback [`Store::replay`] calls with each record's position and bytes.
pub type Visit<'a> = &'a mut dyn FnMut(u64, &[u8]) -> Result<(), StoreError>;

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> StoreError {
        StoreError::Postgres(error)
    }
}

/// An error and its causes, `a: b: c` (the driver's own text hides why a TLS handshake failed).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.ends_with(&inner_text) {
            text = format!("{text}: {inner_text}");
        }
        cause = inner.source();
    }
    text
}

/// Metadata keys under this prefix (the vault's wrapped keys) are kept apart from the rest: in
/// `vault.sqlite3` beside the embedded store, in the `vault_keys` table on PostgreSQL. That area
/// is small, so an erasure can rewrite it whole and leave no freed page or dead row holding a
/// destroyed key.
pub const VAULT_META_PREFIX: &str = "vault/";

/// Whether a metadata scan for `prefix` reaches the vault's area, the main one, or both.
pub fn meta_areas(prefix: &str) -> (bool, bool) {
    let vault = prefix.starts_with(VAULT_META_PREFIX) || VAULT_META_PREFIX.starts_with(prefix);
    let main = !prefix.starts_with(VAULT_META_PREFIX);
    (vault, main)
}

/// A log of encoded records plus a small key-value area for server metadata (API key hashes).
pub trait Store: Send {
    /// Appends `bytes` at position `seq` (1-based, consecutive). Durable when it returns `Ok`.
    fn append(&mut self, seq: u64, bytes: &[u8]) -> Result<(), StoreError>;
    /// Calls `visit` for every record in position order.
    fn replay(&mut self, visit: Visit<'_>) -> Result<(), StoreError>;
    /// Removes every record at position `from_seq` or later (used to drop a torn tail).
    fn truncate(&mut self, from_seq: u64) -> Result<(), StoreError>;
    /// Reads a metadata value.
    fn meta_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Writes a metadata value durably.
    fn meta_put(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Every metadata entry whose key starts with `prefix`, in key order.
    fn meta_scan(&mut self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Deletes metadata values durably and scrubs them: when this returns, no copy of the old
    /// value is left in the store's files (the vault's erasure destroys a person's data key
    /// here, so a copy left in a page, a write-ahead log or a dead row would undo the erasure).
    /// Keys under [`VAULT_META_PREFIX`] live in an area of their own that this rewrites whole,
    /// once for all of `keys`.
    fn meta_erase(&mut self, keys: &[String]) -> Result<(), StoreError>;
    /// Rewrites the vault's key area so that no value deleted or overwritten before is left in
    /// the store's files (after a master-key rotation re-wrapped every key).
    fn meta_scrub(&mut self) -> Result<(), StoreError>;
    /// A short name for logs and metrics: `sqlite` or `postgres`.
    fn kind(&self) -> &'static str;
}

impl<S: Store + ?Sized> Store for Box<S> {
    fn append(&mut self, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
        (**self).append(seq, bytes)
    }
    fn replay(&mut self, visit: Visit<'_>) -> Result<(), StoreError> {
        (**self).replay(visit)
    }
    fn truncate(&mut self, from_seq: u64) -> Result<(), StoreError> {
        (**self).truncate(from_seq)
    }
    fn meta_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        (**self).meta_get(key)
    }
    fn meta_put(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        (**self).meta_put(key, value)
    }
    fn meta_scan(&mut self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        (**self).meta_scan(prefix)
    }
    fn meta_erase(&mut self, keys: &[String]) -> Result<(), StoreError> {
        (**self).meta_erase(keys)
    }
    fn meta_scrub(&mut self) -> Result<(), StoreError> {
        (**self).meta_scrub()
    }
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
}

//! A ledger bound to a store: replay at open, persist-then-apply on commit. Single-threaded;
//! the [`Engine`](crate::Engine) runs one on its writer thread and the simulator drives one
//! directly with a fake clock and a faulty store.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use obol_core::ledger::{Ledger, OpResults};
use obol_core::record::Record;

use crate::{Store, StoreError};

/// A ledger and the store that makes it durable.
pub struct Node<S: Store> {
    store: S,
    ledger: Arc<RwLock<Ledger>>,
    seq_last: u64,
}

impl<S: Store> Node<S> {
    /// Rebuilds the ledger by replaying every record in `store`. A torn *last* record (a crash
    /// mid-write, never acknowledged) is dropped; damage anywhere else is an error.
    pub fn open(mut store: S, hash_seed: u64) -> Result<Node<S>, StoreError> {
        let mut ledger = Ledger::new(hash_seed);
        let mut seq_last = 0u64;
        let mut torn: Option<(u64, String)> = None;
        store.replay(&mut |seq, bytes| {
            if let Some((torn_seq, reason)) = &torn {
                return Err(StoreError::Corrupt { seq: *torn_seq, reason: reason.clone() });
            }
            if seq != seq_last + 1 {
                return Err(StoreError::Corrupt { seq, reason: format!("expected record {}", seq_last + 1) });
            }
            match Record::decode(bytes) {
                Ok(record) => {
                    ledger.apply(&record);
                    seq_last = seq;
                }
                Err(error) => torn = Some((seq, error.to_string())),
            }
            Ok(())
        })?;
        if let Some((seq, reason)) = torn {
            tracing::warn!(seq, %reason, "dropping a torn last log record (it was never acknowledged)");
            store.truncate(seq)?;
        }
        ledger.check_invariants().map_err(|reason| StoreError::Corrupt { seq: seq_last, reason })?;
        Ok(Node { store, ledger: Arc::new(RwLock::new(ledger)), seq_last })
    }

    /// Persists `record`, then applies it. Results are returned only for durable records.
    pub fn commit(&mut self, record: &Record) -> Result<Vec<OpResults>, StoreError> {
        // Every op was checked encodable when it was submitted, so this fails only on a bug;
        // nothing is written then, and the engine stops rather than guess.
        let bytes = record.encode().map_err(|error| StoreError::Unencodable(error.to_string()))?;
        let seq = self.seq_last + 1;
        let started = Instant::now();
        self.store.append(seq, &bytes)?;
        metrics::histogram!("obol_store_append_seconds", "store" => self.store.kind())
            .record(started.elapsed().as_secs_f64());
        self.seq_last = seq;
        let mut ledger = self.ledger.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(ledger.apply(record))
    }

    /// The shared ledger (readers take the read lock).
    pub fn ledger(&self) -> Arc<RwLock<Ledger>> {
        Arc::clone(&self.ledger)
    }

    /// Position of the last durable record.
    pub fn seq_last(&self) -> u64 {
        self.seq_last
    }

    /// The store, for metadata.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Gives the store back (the simulator "crashes" a node this way).
    pub fn into_store(self) -> S {
        self.store
    }
}

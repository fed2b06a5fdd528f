//! A ledger bound to a store: replay at open, persist-then-apply on commit. Single-threaded;
//! the [`Engine`](crate::Engine) runs one on its writer thread and the simulator drives one
//! directly with a fake clock and a faulty store.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use obol_core::audit;
use obol_core::ledger::{Ledger, OpResults};
use obol_core::record::Record;

use crate::{Store, StoreError};

/// Where the store keeps the key of its audit entries' record digests.
const RECORD_KEY_META: &str = "audit_record_key";

/// The store's audit record key, drawn (and kept in its metadata) on first use. It never
/// changes: the audit log's entries, hence its roots, depend on it.
fn record_key<S: Store>(store: &mut S) -> Result<[u8; 32], StoreError> {
    if let Some(bytes) = store.meta_get(RECORD_KEY_META)? {
        return <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| StoreError::Corrupt { seq: 0, reason: format!("{RECORD_KEY_META} is not 32 bytes") });
    }
    let key: [u8; 32] = rand::random();
    store.meta_put(RECORD_KEY_META, &key)?;
    Ok(key)
}

/// Records at least this large have their audit digest computed beside the store's write.
const AUDIT_DIGEST_PARALLEL_BYTES_MIN: usize = 256 * 1024;

/// A ledger and the store that makes it durable.
pub struct Node<S: Store> {
    store: S,
    ledger: Arc<RwLock<Ledger>>,
    /// One entry per record, derived from it (rebuilt on replay); `None` only where a benchmark
    /// measures the log without it.
    audit: Option<Arc<RwLock<audit::Log>>>,
    /// Keys the audit entries' record digests (`audit_record_key` in the store's metadata).
    record_key: [u8; 32],
    seq_last: u64,
}

impl<S: Store> Node<S> {
    /// Rebuilds the ledger by replaying every record in `store`. A torn *last* record (a crash
    /// mid-write, never acknowledged) is dropped; damage anywhere else is an error.
    pub fn open(mut store: S, hash_seed: u64) -> Result<Node<S>, StoreError> {
        let record_key = record_key(&mut store)?;
        let mut ledger = Ledger::new(hash_seed);
        let mut audit_log = audit::Log::new();
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
                    audit_log.append(audit::entry(seq, &record, &record_key, bytes));
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
        assert_eq!(audit_log.size(), seq_last, "one audit entry per record");
        Ok(Node {
            store,
            ledger: Arc::new(RwLock::new(ledger)),
            audit: Some(Arc::new(RwLock::new(audit_log))),
            record_key,
            seq_last,
        })
    }

    /// Persists `record`, then applies it. Results are returned only for durable records.
    pub fn commit(&mut self, record: &Record) -> Result<Vec<OpResults>, StoreError> {
        // Every op was checked encodable when it was submitted, so this fails only on a bug;
        // nothing is written then, and the engine stops rather than guess.
        let bytes = record.encode().map_err(|error| StoreError::Unencodable(error.to_string()))?;
        let seq = self.seq_last + 1;
        let started = Instant::now();
        // A large record's audit digest is computed on a second thread while the store writes
        // and syncs it (the sync leaves this one waiting); a small one's inline.
        let digest = if self.audit.is_some() && bytes.len() >= AUDIT_DIGEST_PARALLEL_BYTES_MIN {
            let store = &mut self.store;
            let record_key = &self.record_key;
            let (appended, digest) = std::thread::scope(|scope| {
                let hashing = scope.spawn(|| audit::record_digest(record_key, &bytes));
                let appended = store.append(seq, &bytes);
                (appended, hashing.join())
            });
            appended?;
            Some(digest.unwrap_or_else(|_| audit::record_digest(&self.record_key, &bytes)))
        } else {
            self.store.append(seq, &bytes)?;
            None
        };
        metrics::histogram!("obol_store_append_seconds", "store" => self.store.kind())
            .record(started.elapsed().as_secs_f64());
        self.seq_last = seq;
        if let Some(audit_log) = &self.audit {
            let digest = digest.unwrap_or_else(|| audit::record_digest(&self.record_key, &bytes));
            let entry = audit::entry_of(seq, record, &digest);
            let mut audit_log = audit_log.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            audit_log.append(entry);
            assert_eq!(audit_log.size(), seq, "one audit entry per record");
        }
        let mut ledger = self.ledger.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(ledger.apply(record))
    }

    /// The audit log, one entry per record (readers take the read lock).
    pub fn audit(&self) -> Option<Arc<RwLock<audit::Log>>> {
        self.audit.clone()
    }

    /// Stops keeping the audit log: for `obol bench ledger`, which measures the log with it and
    /// without it in one run. A server always keeps it.
    pub fn without_audit(mut self) -> Node<S> {
        self.audit = None;
        self
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

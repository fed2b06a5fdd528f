//! Goal: both stores keep the log exactly, refuse misuse, and rebuild the ledger on reopen.
//! Method: the same checks run against SQLite in a scratch directory and PostgreSQL in a fresh
//! schema (skipped with a notice when no PostgreSQL is reachable, failed when CI=true).

mod common;

use common::Backend;
use obol_core::ledger::{AccountFlags, NewAccount, NewTransfer, OpResults, TransferFlags};
use obol_core::money::Asset;
use obol_core::record::{Op, Record};
use obol_store::{Node, StoreError};

fn backends() -> Vec<Backend> {
    let mut backends = vec![Backend::sqlite()];
    if common::postgres_available() {
        backends.push(Backend::postgres());
    }
    backends
}

fn usd() -> Asset {
    Asset::new("USD", 2).unwrap()
}

fn accounts(ids: &[u128]) -> Op {
    Op::CreateAccounts(
        ids.iter()
            .map(|&id| NewAccount {
                owner_id: 0,
                id,
                user_data_128: 0,
                user_data_64: 0,
                user_data_32: 0,
                asset: usd(),
                code: 1,
                flags: AccountFlags(0),
            })
            .collect(),
    )
}

fn transfer(id: u128, debit: u128, credit: u128, amount: u128) -> NewTransfer {
    NewTransfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        pending_id: 0,
        user_data_128: 0,
        user_data_64: 0,
        user_data_32: 0,
        timeout_s: 0,
        asset: Some(usd()),
        code: 1,
        flags: TransferFlags(0),
    }
}

#[test]
fn the_log_keeps_records_in_order_and_refuses_gaps() {
    for backend in backends() {
        let mut store = backend.open();
        store.append(1, b"one").unwrap();
        store.append(2, b"two").unwrap();
        assert!(matches!(store.append(2, b"again"), Err(StoreError::OutOfOrder { last: 2, got: 2 })));
        assert!(matches!(store.append(4, b"gap"), Err(StoreError::OutOfOrder { last: 2, got: 4 })));
        let mut seen = Vec::new();
        store
            .replay(&mut |seq, bytes| {
                seen.push((seq, bytes.to_vec()));
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, vec![(1, b"one".to_vec()), (2, b"two".to_vec())], "{}", store.kind());
        store.truncate(2).unwrap();
        store.append(2, b"two again").unwrap();
        store.meta_put("k", b"v1").unwrap();
        store.meta_put("k", b"v2").unwrap();
        assert_eq!(store.meta_get("k").unwrap(), Some(b"v2".to_vec()));
        assert_eq!(store.meta_get("missing").unwrap(), None);
    }
}

#[test]
fn a_second_process_cannot_open_the_same_store() {
    for backend in backends() {
        let _first = backend.open();
        let second = match &backend {
            Backend::Sqlite(dir) => obol_store::SqliteStore::open(dir.path()).map(|_| ()),
            Backend::Postgres(schema) => obol_store::PgStore::open_in_schema(&common::pg_url(), schema).map(|_| ()),
        };
        assert!(matches!(second, Err(StoreError::Locked(_))));
    }
}

#[test]
fn reopening_rebuilds_the_ledger_exactly() {
    for backend in backends() {
        let (accounts_before, transfers_before) = {
            let mut node = Node::open(backend.open(), 1).unwrap();
            node.commit(&Record { now_ns: 10, ops: vec![accounts(&[1, 2, 3])] }).unwrap();
            let mut pending = transfer(11, 2, 3, 40);
            pending.flags = TransferFlags(TransferFlags::PENDING);
            pending.timeout_s = 60;
            let results = node
                .commit(&Record { now_ns: 20, ops: vec![Op::CreateTransfers(vec![transfer(10, 1, 2, 100), pending])] })
                .unwrap();
            assert!(matches!(&results[..], [OpResults::Transfers(r)] if r.iter().all(|r| r.as_str() == "ok")));
            let ledger = node.ledger();
            let ledger = ledger.read().unwrap();
            (ledger.accounts().to_vec(), ledger.transfers().to_vec())
        };
        let node = Node::open(backend.open(), 99).unwrap();
        let ledger = node.ledger();
        let ledger = ledger.read().unwrap();
        assert_eq!(ledger.accounts(), &accounts_before[..]);
        assert_eq!(ledger.transfers(), &transfers_before[..]);
        assert_eq!(node.seq_last(), 2);
    }
}

#[test]
fn a_torn_last_record_is_dropped_but_a_torn_middle_record_is_refused() {
    for backend in backends() {
        let good = Record { now_ns: 10, ops: vec![accounts(&[1, 2])] }.encode().unwrap();
        {
            let mut store = backend.open();
            store.append(1, &good).unwrap();
            store.append(2, &good[..good.len() - 3]).unwrap();
        }
        let node = Node::open(backend.open(), 1).unwrap();
        assert_eq!(node.seq_last(), 1);
        drop(node);
        {
            let mut store = backend.open();
            store.append(2, &good[..good.len() - 3]).unwrap();
            store.append(3, &good).unwrap();
        }
        assert!(matches!(Node::open(backend.open(), 1), Err(StoreError::Corrupt { seq: 2, .. })));
    }
}

#[test]
fn a_schema_name_that_is_not_a_plain_identifier_is_refused() {
    for bad in ["", "Obol", "1obol", "obol; DROP TABLE x", "o\"b", &"x".repeat(64)] {
        assert!(
            matches!(obol_store::PgStore::open_in_schema(&common::pg_url(), bad), Err(StoreError::Config(_))),
            "{bad:?}"
        );
        assert!(
            matches!(obol_store::PgStore::drop_schema(&common::pg_url(), bad), Err(StoreError::Config(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn metadata_written_through_the_writer_is_listed_by_prefix_and_survives_reopening() {
    for backend in backends() {
        let kind = match backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        };
        {
            let engine = obol_store::Engine::start(Node::open(backend.open(), 1).unwrap());
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
                for (key, value) in [("risk/review/02", "b"), ("risk/review/01", "a"), ("risk/other", "c")] {
                    engine.meta_put(key, value.as_bytes().to_vec()).await.unwrap();
                }
                engine.meta_put("risk/review/01", b"a2".to_vec()).await.unwrap();
                let listed = engine.meta_scan("risk/review/").await.unwrap();
                let keys: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
                assert_eq!(keys, ["risk/review/01", "risk/review/02"], "{kind}: in key order, only the prefix");
                assert_eq!(listed[0].1, b"a2", "a second write replaces the first");
                assert_eq!(engine.meta_scan("risk/review/0%").await.unwrap(), vec![], "the prefix is not a pattern");
            });
            engine.shutdown();
        }
        let mut node = Node::open(backend.open(), 1).unwrap();
        assert_eq!(node.store_mut().meta_get("risk/other").unwrap().as_deref(), Some(&b"c"[..]));
        assert_eq!(node.store_mut().meta_scan("risk/").unwrap().len(), 3);
    }
}

#[test]
fn ops_executed_together_share_one_record_and_puts_replay_from_the_log() {
    for backend in backends() {
        {
            let engine = obol_store::Engine::start(Node::open(backend.open(), 1).unwrap());
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
                let records = engine.stats().records.load(std::sync::atomic::Ordering::Relaxed);
                let put = Op::Put(obol_core::table::Put { key: "risk/review/1".into(), value: b"approved".to_vec() });
                let results = engine.execute_together(vec![put, accounts(&[7, 8])]).await.unwrap();
                assert!(matches!(results[..], [OpResults::Put, OpResults::Accounts(_)]), "{results:?}");
                assert_eq!(engine.stats().records.load(std::sync::atomic::Ordering::Relaxed), records + 1);
                engine.put("risk/review/2", b"pending".to_vec()).await.unwrap();
                engine.put("risk/review/2", Vec::new()).await.unwrap();
                assert_eq!(
                    engine.table_scan("risk/review/"),
                    vec![("risk/review/1".to_string(), b"approved".to_vec())]
                );
                let too_many = vec![accounts(&[9]); obol_core::codec::RECORD_EVENTS_MAX + 1];
                assert!(engine.execute_together(too_many).await.is_err(), "more than one record holds is refused");
            });
            engine.shutdown();
        }
        let node = Node::open(backend.open(), 1).unwrap();
        let ledger = node.ledger();
        let ledger = ledger.read().unwrap();
        assert_eq!(ledger.table().get("risk/review/1"), Some(&b"approved"[..]));
        assert_eq!(ledger.table().len(), 1, "the removed key stays removed");
        assert!(ledger.account(7).is_some());
    }
}

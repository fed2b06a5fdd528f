//! Goal: the ledger's promises hold for any sequence of requests, on both stores, across restart.
//! Method: proptest draws request sequences over a small id space (so ids collide, chains break,
//! pending transfers get posted, voided and expire); each record is committed through a `Node`;
//! after every record the invariants are checked (per asset debits == credits, flagged balances
//! never cross, pending balances equal live pending transfers); linked chains are checked to be
//! all-or-nothing; every `ok` event re-sent alone answers `exists`; after the clock passes every
//! timeout nothing with a timeout is still pending; and a reopened node equals the live one.

mod common;

use common::Backend;
use obol_core::ledger::{
    AMOUNT_MAX, AccountFlags, Ledger, NewAccount, NewTransfer, OpResults, PendingStatus, TransferFlags,
};
use obol_core::money::Asset;
use obol_core::record::{Op, Record};
use obol_store::Node;
use proptest::prelude::*;

const ACCOUNT_IDS: u128 = 6;
const TRANSFER_IDS: u128 = 40;

fn asset(index: u8) -> Asset {
    if index == 0 { Asset::new("USD", 2).unwrap() } else { Asset::new("KRW", 0).unwrap() }
}

fn any_account() -> impl Strategy<Value = NewAccount> {
    (1..=ACCOUNT_IDS, 0u16..8, prop::bool::weighted(0.2)).prop_map(|(id, flag_bits, linked)| {
        // Bits 1 and 2 exclude each other; keep one so most accounts are valid.
        let mut flags = flag_bits << 1;
        if flags & 0b110 == 0b110 {
            flags &= !0b100;
        }
        if linked {
            flags |= AccountFlags::LINKED;
        }
        NewAccount {
            owner_id: 0,
            id,
            user_data_128: 0,
            user_data_64: 0,
            user_data_32: 0,
            asset: asset(if id > 4 { 1 } else { 0 }),
            code: 1,
            flags: AccountFlags(flags),
        }
    })
}

fn any_transfer() -> impl Strategy<Value = NewTransfer> {
    (
        1..=TRANSFER_IDS,
        0..=ACCOUNT_IDS,
        0..=ACCOUNT_IDS,
        prop_oneof![0u128..200, Just(AMOUNT_MAX)],
        0u8..8,
        1..=TRANSFER_IDS,
        prop_oneof![Just(0u32), 1u32..5],
        prop::bool::weighted(0.2),
    )
        .prop_map(|(id, debit, credit, amount, kind, pending_id, timeout_s, linked)| {
            let mut event = NewTransfer {
                id,
                debit_account_id: debit,
                credit_account_id: credit,
                amount: amount.min(if kind >= 6 { AMOUNT_MAX } else { 200 }),
                pending_id: 0,
                user_data_128: 0,
                user_data_64: 0,
                user_data_32: 0,
                timeout_s: 0,
                asset: Some(asset(if debit > 4 { 1 } else { 0 })),
                code: 1,
                flags: TransferFlags(0),
            };
            let flags = match kind {
                0 | 1 => 0,
                2 | 3 => {
                    event.timeout_s = timeout_s;
                    TransferFlags::PENDING
                }
                4 => TransferFlags::BALANCING_DEBIT,
                5 => TransferFlags::BALANCING_CREDIT,
                6 => {
                    event.pending_id = pending_id;
                    event.debit_account_id = 0;
                    event.credit_account_id = 0;
                    event.asset = None;
                    event.code = 0;
                    TransferFlags::POST_PENDING
                }
                _ => {
                    event.pending_id = pending_id;
                    event.debit_account_id = 0;
                    event.credit_account_id = 0;
                    event.asset = None;
                    event.code = 0;
                    event.amount = 0;
                    TransferFlags::VOID_PENDING
                }
            };
            event.flags = TransferFlags(flags | if linked { TransferFlags::LINKED } else { 0 });
            event
        })
}

#[derive(Clone, Debug)]
enum Step {
    Accounts(Vec<NewAccount>),
    Transfers(Vec<NewTransfer>),
    AdvanceS(u64),
}

fn any_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => prop::collection::vec(any_account(), 1..5).prop_map(Step::Accounts),
        4 => prop::collection::vec(any_transfer(), 1..8).prop_map(Step::Transfers),
        1 => (1u64..4).prop_map(Step::AdvanceS),
    ]
}

fn check_chains(linked: &[bool], ok: &[bool]) -> Result<(), TestCaseError> {
    let mut start = 0;
    for index in 0..linked.len() {
        if !linked[index] || index + 1 == linked.len() {
            let chain = &ok[start..=index];
            prop_assert!(chain.iter().all(|&b| b) || chain.iter().all(|&b| !b), "chain not atomic: {chain:?}");
            start = index + 1;
        }
    }
    Ok(())
}

fn same_state(a: &Ledger, b: &Ledger) -> Result<(), TestCaseError> {
    prop_assert_eq!(a.accounts(), b.accounts());
    prop_assert_eq!(a.transfers(), b.transfers());
    for transfer in a.transfers() {
        prop_assert_eq!(a.pending_status(transfer.id), b.pending_status(transfer.id));
    }
    Ok(())
}

fn run(backend: &Backend, steps: &[Step]) -> Result<(), TestCaseError> {
    let mut node = Node::open(backend.open(), 3).unwrap();
    let mut now_ns = 1_000_000_000u64;
    let setup: Vec<NewAccount> = [
        0,
        0,
        AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
        AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
        0,
        AccountFlags::HISTORY,
    ]
    .iter()
    .zip(1..=ACCOUNT_IDS)
    .map(|(&flags, id)| NewAccount {
        owner_id: 0,
        id,
        user_data_128: 0,
        user_data_64: 0,
        user_data_32: 0,
        asset: asset(if id > 4 { 1 } else { 0 }),
        code: 1,
        flags: AccountFlags(flags),
    })
    .collect();
    node.commit(&Record { now_ns, ops: vec![Op::CreateAccounts(setup)] }).unwrap();
    let mut ok_transfers: Vec<NewTransfer> = Vec::new();
    for step in steps {
        let op = match step {
            Step::Accounts(events) => Op::CreateAccounts(events.clone()),
            Step::Transfers(events) => Op::CreateTransfers(events.clone()),
            Step::AdvanceS(seconds) => {
                now_ns += seconds * 1_000_000_000;
                node.commit(&Record { now_ns, ops: vec![] }).unwrap();
                continue;
            }
        };
        let results = node.commit(&Record { now_ns, ops: vec![op] }).unwrap();
        node.ledger().read().unwrap().check_invariants().map_err(TestCaseError::fail)?;
        match (&results[..], step) {
            ([OpResults::Transfers(results)], Step::Transfers(events)) => {
                let linked: Vec<bool> = events.iter().map(|e| e.flags.has(TransferFlags::LINKED)).collect();
                let ok: Vec<bool> = results.iter().map(|r| r.is_success()).collect();
                check_chains(&linked, &ok)?;
                for (event, result) in events.iter().zip(results) {
                    if result.as_str() == "ok" {
                        ok_transfers.push(*event);
                    }
                }
            }
            ([OpResults::Accounts(results)], Step::Accounts(events)) => {
                let linked: Vec<bool> = events.iter().map(|e| e.flags.has(AccountFlags::LINKED)).collect();
                let ok: Vec<bool> = results.iter().map(|r| r.is_success()).collect();
                check_chains(&linked, &ok)?;
            }
            other => return Err(TestCaseError::fail(format!("reply shape {other:?}"))),
        }
    }
    if std::env::var("OBOL_PROP_STATS").is_ok() {
        eprintln!("ok transfers {}", ok_transfers.len());
    }
    // Idempotency: each accepted event, sent again alone, already took effect.
    for event in &ok_transfers {
        let mut again = *event;
        again.flags = TransferFlags(again.flags.0 & !TransferFlags::LINKED);
        let results = node.commit(&Record { now_ns, ops: vec![Op::CreateTransfers(vec![again])] }).unwrap();
        prop_assert!(
            matches!(&results[..], [OpResults::Transfers(r)] if r[0].as_str() == "exists"),
            "resending {again:?} gave {results:?}"
        );
    }
    // Expiry: once the clock passes every timeout, nothing with a timeout is still pending.
    now_ns += 10 * 1_000_000_000;
    node.commit(&Record { now_ns, ops: vec![] }).unwrap();
    {
        let ledger = node.ledger();
        let ledger = ledger.read().unwrap();
        for transfer in ledger.transfers() {
            if transfer.timeout_s > 0 {
                prop_assert_ne!(ledger.pending_status(transfer.id), Some(PendingStatus::Pending));
            }
        }
        ledger.check_invariants().map_err(TestCaseError::fail)?;
    }
    // Restart: replaying the store rebuilds the same ledger.
    let live = node.ledger();
    drop(node);
    let reopened = Node::open(backend.open(), 11).unwrap();
    same_state(&live.read().unwrap(), &reopened.ledger().read().unwrap())?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn sqlite_keeps_every_ledger_promise(steps in prop::collection::vec(any_step(), 1..24)) {
        run(&Backend::sqlite(), &steps)?;
        if std::env::var("OBOL_PROP_STATS").is_ok() { eprintln!("steps {}", steps.len()); }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn postgres_keeps_every_ledger_promise(steps in prop::collection::vec(any_step(), 1..24)) {
        if common::postgres_available() {
            run(&Backend::postgres(), &steps)?;
        }
    }
}

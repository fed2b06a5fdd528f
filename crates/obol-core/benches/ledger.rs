//! Criterion benchmark of `Ledger::apply` on full 8,190-transfer records.
//! Method: 100k accounts; uniform random pairs vs a hot merchant credited by every transfer.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use obol_core::ledger::{AccountFlags, BATCH_EVENTS_MAX, Ledger, NewAccount, NewTransfer, TransferFlags};
use obol_core::money::Asset;
use obol_core::record::{Op, Record};

const ACCOUNTS_COUNT: u128 = 100_000;

fn setup() -> Ledger {
    let asset = Asset::new("USD", 2).expect("USD/2 is valid");
    let mut ledger = Ledger::new(1);
    let mut id = 1u128;
    while id <= ACCOUNTS_COUNT {
        let events: Vec<NewAccount> = (id..(id + BATCH_EVENTS_MAX as u128).min(ACCOUNTS_COUNT + 1))
            .map(|id| NewAccount {
                owner_id: 0,
                id,
                user_data_128: 0,
                user_data_64: 0,
                user_data_32: 0,
                asset,
                code: 1,
                flags: AccountFlags(0),
            })
            .collect();
        id += events.len() as u128;
        ledger.apply(&Record { now_ns: 1, ops: vec![Op::CreateAccounts(events)] });
    }
    ledger
}

fn records(hot: bool, count: usize) -> Vec<Record> {
    let asset = Asset::new("USD", 2).expect("USD/2 is valid");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut transfer_id = 1_000_000u128;
    (0..count)
        .map(|_| {
            let events = (0..BATCH_EVENTS_MAX)
                .map(|_| {
                    transfer_id += 1;
                    let debit = u128::from(next() % 99_999) + 2;
                    let credit = if hot {
                        1
                    } else {
                        let c = u128::from(next() % 100_000) + 1;
                        if c == debit { 1 } else { c }
                    };
                    NewTransfer {
                        id: transfer_id,
                        debit_account_id: debit,
                        credit_account_id: credit,
                        amount: 1,
                        pending_id: 0,
                        user_data_128: 0,
                        user_data_64: 0,
                        user_data_32: 0,
                        timeout_s: 0,
                        asset: Some(asset),
                        code: 1,
                        flags: TransferFlags(0),
                    }
                })
                .collect();
            Record { now_ns: 2, ops: vec![Op::CreateTransfers(events)] }
        })
        .collect()
}

fn apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("ledger_apply");
    group.throughput(Throughput::Elements(BATCH_EVENTS_MAX as u64));
    group.sample_size(20);
    for (name, hot) in [("uniform", false), ("hot_merchant", true)] {
        let batches = records(hot, 64);
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || (setup(), 0usize),
                |(ledger, index)| {
                    ledger.apply(&batches[*index % batches.len()]);
                    *index += 1;
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let batches = records(false, 1);
    let mut group = c.benchmark_group("record_codec");
    group.throughput(Throughput::Elements(BATCH_EVENTS_MAX as u64));
    group.bench_function("encode", |b| b.iter(|| batches[0].encode().expect("encodable")));
    let bytes = batches[0].encode().expect("encodable");
    group.bench_function("decode", |b| b.iter(|| Record::decode(&bytes)));
    group.finish();
}

criterion_group!(benches, apply, encode);
criterion_main!(benches);

//! Criterion benchmark of what one micropayment costs the payee: a voucher check (one Ed25519
//! verification plus the tab checks) and a PayWord tick (one SHA-256), against a tab in memory.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signer, SigningKey};
use obol_core::channel::{Commitment, Tab, Voucher, payword_chain};

fn tab(key: &SigningKey) -> Tab {
    Tab {
        id: 1,
        payee_id: 2,
        payer_key: key.verifying_key().to_bytes(),
        escrow: u128::MAX,
        expires_ns: u64::MAX,
        closed: false,
        cumulative: 0,
        seq: 0,
        payword: None,
    }
}

fn vouchers(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[5u8; 32]);
    let stream: Vec<Voucher> = (1..=10_000u64)
        .map(|seq| {
            let cumulative = u128::from(seq) * 25;
            let signature = key.sign(&Voucher::signed_message(1, 2, cumulative, seq)).to_bytes();
            Voucher { tab_id: 1, payee_id: 2, cumulative, seq, signature }
        })
        .collect();
    let mut group = c.benchmark_group("channel");
    group.throughput(Throughput::Elements(1));
    group.bench_function("voucher_accept", |b| {
        let mut state = (tab(&key), 0usize);
        b.iter(|| {
            let (tab, index) = &mut state;
            if *index == stream.len() {
                *tab = self::tab(&key);
                *index = 0;
            }
            tab.accept_voucher(&stream[*index], 0).expect("valid voucher");
            *index += 1;
        })
    });
    let chain = payword_chain([9u8; 32], 1_000_000);
    let signature = key.sign(&Commitment::signed_message(1, 2, &chain[0], 1_000_000, 1)).to_bytes();
    let commitment =
        Commitment { tab_id: 1, payee_id: 2, root: chain[0], length: 1_000_000, value_per_tick: 1, signature };
    group.bench_function("payword_tick", |b| {
        let fresh = || {
            let mut tab = tab(&key);
            tab.accept_commitment(&commitment, 0).expect("valid commitment");
            tab
        };
        let mut state = (fresh(), 1u32);
        b.iter(|| {
            let (tab, index) = &mut state;
            if *index as usize == chain.len() {
                *tab = fresh();
                *index = 1;
            }
            tab.accept_tick(*index, &chain[*index as usize], 0).expect("valid tick");
            *index += 1;
        })
    });
    group.finish();
}

criterion_group!(benches, vouchers);
criterion_main!(benches);

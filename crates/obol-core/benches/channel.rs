//! Criterion benchmark of what one micropayment costs the payee: a voucher check (one Ed25519
//! verification plus the tab checks, alone or in a batch of 64) and a PayWord tick (one SHA-256),
//! against tabs in memory, beside bare ed25519-dalek verification in the same run.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use obol_core::channel::{Commitment, Network, Tab, VOUCHER_MESSAGE_BYTES, Voucher, payword_chain, verify_vouchers};

const BATCH: usize = 64;

/// Every voucher and commitment is signed for one server's network.
fn network() -> Network {
    Network::named("obol:bench")
}

fn tab(id: u128) -> Tab {
    Tab {
        id,
        payee_id: 2,
        escrow: u128::MAX,
        cumulative: 0,
        escrow_transfer_id: id,
        device_id: 3,
        expires_ns: u64::MAX,
        seq: 0,
        payword: None,
        closed: false,
    }
}

fn signed(key: &SigningKey, tab_id: u128, seq: u64) -> Voucher {
    let cumulative = u128::from(seq) * 25;
    let signature = key.sign(&Voucher::signed_message(&network(), tab_id, 2, cumulative, seq)).to_bytes();
    Voucher { tab_id, payee_id: 2, cumulative, seq, signature }
}

fn vouchers(c: &mut Criterion) {
    let key = SigningKey::from_bytes(&[5u8; 32]);
    let verifying_key = key.verifying_key();
    let stream: Vec<Voucher> = (1..=10_000u64).map(|seq| signed(&key, 1, seq)).collect();
    let mut group = c.benchmark_group("channel");
    group.throughput(Throughput::Elements(1));
    group.bench_function("dalek_verify_strict", |b| {
        let message = Voucher::signed_message(&network(), 1, 2, 25, 1);
        let signature = Signature::from_bytes(&stream[0].signature);
        b.iter(|| verifying_key.verify_strict(&message, &signature).expect("valid"))
    });
    group.bench_function("voucher_accept", |b| {
        let mut state = (tab(1), 0usize);
        b.iter(|| {
            let (tab, index) = &mut state;
            if *index == stream.len() {
                *tab = self::tab(1);
                *index = 0;
            }
            tab.accept_voucher(&stream[*index], &verifying_key, &network(), 0).expect("valid voucher");
            *index += 1;
        })
    });
    // Batches of 64 vouchers, one per tab (as when many payers' vouchers arrive together).
    let keys: Vec<SigningKey> = (0..BATCH).map(|i| SigningKey::from_bytes(&[i as u8 + 10; 32])).collect();
    let verifying_keys: Vec<VerifyingKey> = keys.iter().map(SigningKey::verifying_key).collect();
    let batch: Vec<Voucher> = keys.iter().enumerate().map(|(i, key)| signed(key, i as u128 + 1, 1)).collect();
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("dalek_verify_batch_64", |b| {
        let messages: Vec<[u8; VOUCHER_MESSAGE_BYTES]> = batch
            .iter()
            .map(|v| Voucher::signed_message(&network(), v.tab_id, v.payee_id, v.cumulative, v.seq))
            .collect();
        let message_refs: Vec<&[u8]> = messages.iter().map(|m| &m[..]).collect();
        let signatures: Vec<Signature> = batch.iter().map(|v| Signature::from_bytes(&v.signature)).collect();
        b.iter(|| ed25519_dalek::verify_batch(&message_refs, &signatures, &verifying_keys).expect("valid"))
    });
    group.bench_function("voucher_accept_batch_64", |b| {
        b.iter(|| {
            let mut tabs: Vec<Tab> = (1..=BATCH as u128).map(tab).collect();
            let pairs: Vec<(&Voucher, &VerifyingKey)> = batch.iter().zip(&verifying_keys).collect();
            let verified = verify_vouchers(&network(), &pairs);
            for ((tab, voucher), ok) in tabs.iter_mut().zip(&batch).zip(verified) {
                assert!(ok);
                tab.accept_verified_voucher(voucher, 0).expect("valid voucher");
            }
            tabs
        })
    });
    group.throughput(Throughput::Elements(1));
    let chain = payword_chain([9u8; 32], 1_000_000);
    let signature = key.sign(&Commitment::signed_message(&network(), 1, 2, &chain[0], 1_000_000, 1)).to_bytes();
    let commitment = Commitment {
        tab_id: 1,
        payee_id: 2,
        network: network(),
        root: chain[0],
        length: 1_000_000,
        value_per_tick: 1,
        signature,
    };
    group.bench_function("payword_tick", |b| {
        let fresh = || {
            let mut tab = tab(1);
            tab.accept_commitment(&commitment, &verifying_key, 0).expect("valid commitment");
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

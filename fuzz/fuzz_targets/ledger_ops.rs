//! Stateful: fuzz bytes become a sequence of records on one ledger (tab opens, vouchers, PayWord
//! commitments and ticks, top-ups, settlements, transfers with pending/post/void/closing/balancing
//! flags, some linked, clock jumps) with restarts in between. Every record must apply without a
//! panic, the ledger's invariants (conservation, flag limits, pending balances) must hold after
//! each, every record must encode, and replaying the decoded log into a fresh ledger must give
//! the same state as the live one.
#![no_main]

use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use obol_core::channel::{Commitment, Network, TabCommand, Voucher, payword_chain};
use obol_core::identity::{IdentityCommand, Role};
use obol_core::ledger::{AMOUNT_MAX, AccountFlags, Ledger, NewAccount, NewTransfer, TransferFlags};
use obol_core::money::Asset;
use obol_core::record::{Op, Record};

const HOLDER: u128 = 10;
const DEVICE: u128 = 20;
const PAYER: u128 = 2;
const PAYEE: u128 = 3;
const CHAIN_LENGTH: u32 = 64;

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
}

fn usd() -> Asset {
    Asset::new("USD", 2).expect("USD/2")
}

fn account(id: u128, owner_id: u128, flags: u16) -> NewAccount {
    NewAccount {
        id,
        owner_id,
        user_data_128: 0,
        user_data_64: 0,
        user_data_32: 0,
        asset: usd(),
        code: 1,
        flags: AccountFlags(flags),
    }
}

fn transfer(id: u128, debit: u128, credit: u128, amount: u128, flags: u16) -> NewTransfer {
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
        flags: TransferFlags(flags),
    }
}

/// Everything a restart must reproduce, in a comparable form.
fn state(ledger: &Ledger) -> String {
    let tabs: Vec<String> = (1..=4u128).map(|id| format!("{:?}", ledger.tab(id))).collect();
    let devices = format!("{:?}", ledger.identity().device(DEVICE));
    format!("{:?}\n{:?}\n{tabs:?}\n{devices}", ledger.accounts(), ledger.transfers())
}

fn setup(key: &SigningKey) -> Vec<Record> {
    let identity = [
        IdentityCommand::CreatePrincipal { id: HOLDER, role: Role::Holder, name: "payer".into() },
        IdentityCommand::RegisterDevice {
            id: DEVICE,
            holder_id: HOLDER,
            kid: "meter".into(),
            public_key: key.verifying_key().to_bytes(),
            limits: None,
        },
    ];
    let mut ops: Vec<Op> = identity.into_iter().map(Op::Identity).collect();
    ops.push(Op::CreateAccounts(vec![
        account(1, 0, 0),
        account(PAYER, HOLDER, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        account(PAYEE, 0, 0),
    ]));
    ops.push(Op::CreateTransfers(vec![transfer(1, 1, PAYER, 1_000_000, 0)]));
    vec![Record { now_ns: 1_000_000_000, ops }]
}

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_bytes(&[9; 32]);
    let chain = payword_chain([5; 32], CHAIN_LENGTH);
    let mut bytes = Bytes(data);
    let mut ledger = Ledger::new(7);
    let mut log: Vec<Vec<u8>> = Vec::new();
    let mut now_ns: u64 = 1_000_000_000;
    let mut next_id: u128 = 100;
    let mut seen_ids: Vec<u128> = vec![1];
    let mut records = setup(&key);
    while let Some(kind) = bytes.u8() {
        let tab_id = u128::from(bytes.u8().unwrap_or(0) % 4) + 1;
        next_id += 1;
        let op = match kind % 10 {
            0 => {
                let budget = u128::from(bytes.u16().unwrap_or(0));
                Some(Op::Tab(TabCommand::Open {
                    tab_id,
                    escrow_transfer_id: next_id,
                    payer_account_id: PAYER,
                    payee_account_id: PAYEE,
                    device_id: DEVICE,
                    budget,
                    asset: usd(),
                    timeout_s: u32::from(bytes.u8().unwrap_or(1)),
                }))
            }
            1 => {
                let cumulative = u128::from(bytes.u16().unwrap_or(0));
                let seq = u64::from(bytes.u8().unwrap_or(0));
                let payee_id = if bytes.u8().unwrap_or(0) == 0 { 1 } else { PAYEE };
                let network = Network::named("obol:fuzz");
                let signature =
                    key.sign(&Voucher::signed_message(&network, tab_id, payee_id, cumulative, seq)).to_bytes();
                Some(Op::Tab(TabCommand::Voucher(Voucher { tab_id, payee_id, cumulative, seq, signature })))
            }
            2 => {
                let length = u32::from(bytes.u8().unwrap_or(0)) % CHAIN_LENGTH + 1;
                let value_per_tick = u128::from(bytes.u8().unwrap_or(0));
                let root = chain[(CHAIN_LENGTH - length) as usize];
                // Version 1 (unbound) commitments too: logs written before version 2 hold them, and
                // their records must replay.
                let network = if bytes.u8().unwrap_or(0) % 4 == 0 { Network::UNBOUND } else { Network::named("obol:fuzz") };
                let message = Commitment::signed_message(&network, tab_id, PAYEE, &root, length, value_per_tick);
                let signature = key.sign(&message).to_bytes();
                let commitment =
                    Commitment { tab_id, payee_id: PAYEE, network, root, length, value_per_tick, signature };
                Some(Op::Tab(TabCommand::Commit(commitment)))
            }
            3 => {
                // The words of a chain committed at any length: index i of a chain of length L
                // is chain[64 - L + i]; the fuzzer finds the pairs that fit.
                let index = u32::from(bytes.u8().unwrap_or(0)) % (CHAIN_LENGTH + 4);
                let at = bytes.u8().unwrap_or(0) as usize % chain.len();
                Some(Op::Tab(TabCommand::Tick { tab_id, index, word: chain[at] }))
            }
            4 => {
                let amount = u128::from(bytes.u16().unwrap_or(0));
                next_id += 1;
                Some(Op::Tab(TabCommand::TopUp {
                    tab_id,
                    amount,
                    void_transfer_id: next_id - 1,
                    escrow_transfer_id: next_id,
                }))
            }
            5 => Some(Op::Tab(TabCommand::Settle { tab_id, settle_transfer_id: next_id })),
            6 | 7 => {
                // One or two transfers, the first maybe linked to the second.
                let mut events = Vec::new();
                for _ in 0..=(kind % 2) {
                    next_id += 1;
                    let flags = bytes.u16().unwrap_or(0) & TransferFlags::KNOWN;
                    let accounts = bytes.u8().unwrap_or(0);
                    let debit = u128::from(accounts % 3) + 1;
                    let credit = u128::from((accounts / 3) % 3) + 1;
                    let amount = match bytes.u8().unwrap_or(0) {
                        255 => AMOUNT_MAX,
                        other => u128::from(other) * 100,
                    };
                    let mut event = transfer(next_id, debit, credit, amount, flags);
                    if event.flags.resolves_pending() {
                        let pick = bytes.u8().unwrap_or(0) as usize;
                        event.pending_id = seen_ids.get(pick % seen_ids.len().max(1)).copied().unwrap_or(1);
                        event.debit_account_id = 0;
                        event.credit_account_id = 0;
                        event.asset = None;
                        event.code = 0;
                    }
                    if flags & TransferFlags::PENDING != 0 {
                        event.timeout_s = u32::from(bytes.u8().unwrap_or(0) % 4);
                    }
                    if bytes.u8().unwrap_or(0) % 7 == 0 {
                        event.code = obol_core::channel::TAB_TRANSFER_CODE;
                    }
                    seen_ids.push(next_id);
                    events.push(event);
                }
                Some(Op::CreateTransfers(events))
            }
            8 => {
                now_ns += u64::from(bytes.u16().unwrap_or(0)) * 1_000_000_000;
                None
            }
            _ => {
                // A restart: the log, decoded, rebuilds the same ledger.
                let mut replayed = Ledger::new(7);
                for bytes in &log {
                    let record = Record::decode(bytes).expect("what the log holds decodes");
                    replayed.apply(&record);
                }
                assert_eq!(replayed.check_invariants(), Ok(()));
                assert_eq!(state(&replayed), state(&ledger), "replay differs from the live ledger");
                ledger = replayed;
                None
            }
        };
        if let Some(op) = op {
            // Escrow ids become pending ids transfers may name.
            if let Op::Tab(TabCommand::Open { escrow_transfer_id, .. } | TabCommand::TopUp { escrow_transfer_id, .. }) =
                &op
            {
                seen_ids.push(*escrow_transfer_id);
            }
            records.push(Record { now_ns, ops: vec![op] });
        }
        for record in records.drain(..) {
            let encoded = record.encode().expect("every fuzzed op fits the codec");
            ledger.apply(&record);
            assert_eq!(ledger.check_invariants(), Ok(()));
            log.push(encoded);
        }
    }
    let mut replayed = Ledger::new(7);
    for bytes in &log {
        replayed.apply(&Record::decode(bytes).expect("what the log holds decodes"));
    }
    assert_eq!(state(&replayed), state(&ledger), "replay differs from the live ledger");
});

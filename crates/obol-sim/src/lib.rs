//! Deterministic simulation of an obol node on a faulty disk.
//!
//! One `u64` seed drives everything: the workload (accounts, plain, pending, post, void,
//! balancing and linked transfers with colliding ids), the clock, and a [`FaultyStore`] that
//! crashes between write and acknowledgement, tears the last write, or crashes before writing.
//! After every reply and every restart an auditor checks what the node says against what it was
//! told and what it acknowledged:
//! - every acknowledged `ok` transfer and account survives every restart unchanged;
//! - nothing appears that was never sent, and an unacknowledged record is all-or-nothing;
//! - balances recomputed from the transfers themselves equal the ledger's balances;
//! - `exists` is answered exactly for ids that already existed; linked chains are atomic;
//! - the ledger's own invariants hold (debits == credits per asset, limits, pending sums).
//!
//! A failure names its seed; `OBOL_SEED=<seed> cargo test -p obol-sim` replays it exactly.
#![deny(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use obol_core::ledger::{
    AMOUNT_MAX, Account, AccountFlags, Ledger, NewAccount, NewTransfer, OpResults, PendingStatus, Transfer,
    TransferFlags,
};
use obol_core::money::Asset;
use obol_core::record::{Op, Record};
use obol_store::{Node, Store, StoreError, Visit};

pub mod pipeline;

/// SplitMix64: small, fast, and the same on every machine.
#[derive(Clone, Debug)]
pub struct Prng(u64);

impl Prng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Prng {
        Prng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `per_mille`/1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// The application layer's time and randomness in a simulation: the wall clock (the engine
/// stamps records with it too), and random bytes drawn from the run's seed, so the ids, keys and
/// challenges the application makes are the same on every replay of a seed.
#[derive(Debug)]
pub struct SimEnv(std::sync::Mutex<Prng>);

impl SimEnv {
    /// Time from the wall clock, randomness from `seed`.
    pub fn new(seed: u64) -> SimEnv {
        SimEnv(std::sync::Mutex::new(Prng::new(seed)))
    }
}

impl obol_app::Env for SimEnv {
    fn now_ns(&self) -> u64 {
        obol_app::SystemEnv.now_ns()
    }

    fn fill(&self, bytes: &mut [u8]) {
        let mut prng = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for chunk in bytes.chunks_mut(8) {
            let word = prng.next_u64().to_le_bytes();
            for (byte, random) in chunk.iter_mut().zip(word) {
                *byte = random;
            }
        }
    }
}

/// What the simulated disk holds: only records whose write completed (possibly torn).
#[derive(Default, Debug)]
pub struct Disk {
    log: Vec<(u64, Vec<u8>)>,
    meta: BTreeMap<String, Vec<u8>>,
}

/// Fault rates, per mille of appends.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Crash before anything is written.
    pub crash_before_write: u64,
    /// Write a prefix of the record, then crash.
    pub torn_write: u64,
    /// Write the whole record, then crash before the caller hears back.
    pub crash_after_write: u64,
}

impl Faults {
    /// A disk that never fails.
    pub const NONE: Faults = Faults { crash_before_write: 0, torn_write: 0, crash_after_write: 0 };
}

/// A store over a shared [`Disk`] that injects faults from the seed.
pub struct FaultyStore {
    disk: Arc<Mutex<Disk>>,
    prng: Prng,
    faults: Faults,
}

impl FaultyStore {
    /// A store over `disk` whose faults are drawn from `seed`.
    pub fn new(disk: Arc<Mutex<Disk>>, seed: u64, faults: Faults) -> FaultyStore {
        FaultyStore { disk, prng: Prng::new(seed), faults }
    }

    fn disk(&self) -> std::sync::MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for FaultyStore {
    fn append(&mut self, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let last = self.disk().log.last().map_or(0, |(s, _)| *s);
        if seq != last + 1 {
            return Err(StoreError::OutOfOrder { last, got: seq });
        }
        let roll = self.prng.below(1000);
        let Faults { crash_before_write, torn_write, crash_after_write } = self.faults;
        if roll < crash_before_write {
            return Err(StoreError::Injected("crash before write"));
        }
        if roll < crash_before_write + torn_write {
            let keep = self.prng.below(bytes.len() as u64) as usize;
            self.disk().log.push((seq, bytes.iter().take(keep).copied().collect()));
            return Err(StoreError::Injected("torn write"));
        }
        self.disk().log.push((seq, bytes.to_vec()));
        if roll < crash_before_write + torn_write + crash_after_write {
            return Err(StoreError::Injected("crash after write, before ack"));
        }
        Ok(())
    }

    fn replay(&mut self, visit: Visit<'_>) -> Result<(), StoreError> {
        let log = self.disk().log.clone();
        for (seq, bytes) in &log {
            visit(*seq, bytes)?;
        }
        Ok(())
    }

    fn truncate(&mut self, from_seq: u64) -> Result<(), StoreError> {
        self.disk().log.retain(|(seq, _)| *seq < from_seq);
        Ok(())
    }

    fn meta_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.disk().meta.get(key).cloned())
    }

    fn meta_put(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.disk().meta.insert(key.into(), value.to_vec());
        Ok(())
    }

    fn meta_erase(&mut self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            self.disk().meta.remove(key);
        }
        Ok(())
    }

    fn meta_scrub(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn meta_scan(&mut self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let disk = self.disk();
        Ok(disk.meta.iter().filter(|(key, _)| key.starts_with(prefix)).map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn kind(&self) -> &'static str {
        "simulated"
    }
}

/// What one simulation did.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Records acknowledged.
    pub records_acked: u64,
    /// Transfers acknowledged `ok`.
    pub transfers_ok: u64,
    /// Restarts after injected crashes.
    pub restarts: u64,
    /// Restarts that found the unacknowledged record on disk.
    pub unacked_records_kept: u64,
    /// Torn tails dropped on restart.
    pub torn_tails: u64,
}

const ACCOUNT_IDS: u64 = 12;
const TRANSFER_IDS: u64 = 400;

#[expect(clippy::expect_used, reason = "USD at scale 2 and KRW at scale 0 are valid ISO 4217 assets, constants")]
fn asset(id: u128) -> Asset {
    // Accounts 1..=8 hold USD/2, the rest KRW/0, so some pairs mismatch.
    if id <= 8 { Asset::new("USD", 2).expect("valid") } else { Asset::new("KRW", 0).expect("valid") }
}

fn account_event(prng: &mut Prng) -> NewAccount {
    let id = u128::from(1 + prng.below(ACCOUNT_IDS));
    let flags = match id % 4 {
        0 => AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
        1 => AccountFlags::HISTORY,
        2 => AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
        _ => 0,
    };
    NewAccount {
        owner_id: 0,
        id,
        user_data_128: 0,
        user_data_64: 0,
        user_data_32: 0,
        asset: asset(id),
        code: 1,
        flags: AccountFlags(flags),
    }
}

fn transfer_event(prng: &mut Prng) -> NewTransfer {
    let id = u128::from(1 + prng.below(TRANSFER_IDS));
    let debit = u128::from(1 + prng.below(ACCOUNT_IDS));
    let credit = u128::from(1 + prng.below(ACCOUNT_IDS));
    let mut event = NewTransfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount: u128::from(prng.below(500)),
        pending_id: 0,
        user_data_128: 0,
        user_data_64: 0,
        user_data_32: 0,
        timeout_s: 0,
        asset: Some(asset(debit)),
        code: 1,
        flags: TransferFlags(0),
    };
    let flags = match prng.below(10) {
        0..=3 => 0,
        4 | 5 => {
            event.timeout_s = if prng.chance(500) { 0 } else { 1 + prng.below(20) as u32 };
            TransferFlags::PENDING
        }
        6 => {
            event.amount = AMOUNT_MAX;
            TransferFlags::BALANCING_DEBIT
        }
        7 => TransferFlags::BALANCING_CREDIT,
        8 => {
            event.pending_id = u128::from(1 + prng.below(TRANSFER_IDS));
            event.debit_account_id = 0;
            event.credit_account_id = 0;
            event.asset = None;
            event.code = 0;
            if prng.chance(500) {
                event.amount = AMOUNT_MAX;
            }
            TransferFlags::POST_PENDING
        }
        _ => {
            event.pending_id = u128::from(1 + prng.below(TRANSFER_IDS));
            event.debit_account_id = 0;
            event.credit_account_id = 0;
            event.asset = None;
            event.code = 0;
            event.amount = 0;
            TransferFlags::VOID_PENDING
        }
    };
    let linked = if prng.chance(150) { TransferFlags::LINKED } else { 0 };
    event.flags = TransferFlags(flags | linked);
    event
}

/// What the auditor was told was durable.
#[derive(Default)]
struct Auditor {
    accounts: BTreeMap<u128, Account>,
    transfers: BTreeMap<u128, Transfer>,
    sent_transfer_ids: BTreeSet<u128>,
    sent_account_ids: BTreeSet<u128>,
    /// The state table as the acknowledged (or kept) puts left it.
    table: BTreeMap<String, Vec<u8>>,
}

impl Auditor {
    /// Checks a reply against what existed before the record was applied.
    fn check_reply(
        &self,
        record: &Record,
        replies: &[OpResults],
        existed_before: &BTreeSet<u128>,
    ) -> Result<(), String> {
        for (op, reply) in record.ops.iter().zip(replies) {
            match (op, reply) {
                (Op::CreateTransfers(events), OpResults::Transfers(results)) => {
                    let mut seen = existed_before.clone();
                    let mut chain_start = 0;
                    for (index, (event, result)) in events.iter().zip(results).enumerate() {
                        let is_exists = result.as_str() == "exists";
                        let is_ok = result.as_str() == "ok";
                        if is_ok && seen.contains(&event.id) {
                            return Err(format!("transfer {} answered ok but already existed", event.id));
                        }
                        if is_exists && !seen.contains(&event.id) {
                            return Err(format!("transfer {} answered exists but never existed", event.id));
                        }
                        if is_ok {
                            seen.insert(event.id);
                        }
                        let linked = event.flags.has(TransferFlags::LINKED);
                        if !linked || index + 1 == events.len() {
                            let chain = results
                                .get(chain_start..=index)
                                .ok_or_else(|| format!("linked chain {chain_start}..={index} has no replies"))?;
                            let successes = chain.iter().filter(|r| r.is_success()).count();
                            if successes != 0 && successes != chain.len() {
                                return Err(format!("linked chain {chain_start}..={index} partly applied: {chain:?}"));
                            }
                            chain_start = index + 1;
                        }
                    }
                }
                (Op::CreateAccounts(events), OpResults::Accounts(results)) => {
                    if events.len() != results.len() {
                        return Err("account results do not match events".into());
                    }
                }
                (Op::Put(_) | Op::Note(_), OpResults::Put) => {}
                _ => return Err("reply kinds do not match the record's ops".into()),
            }
        }
        Ok(())
    }

    /// Records what an acknowledged record created, as the node now shows it.
    fn acknowledge(&mut self, ledger: &Ledger, record: &Record, replies: &[OpResults]) -> Result<(), String> {
        for (op, reply) in record.ops.iter().zip(replies) {
            match (op, reply) {
                (Op::CreateTransfers(events), OpResults::Transfers(results)) => {
                    for (event, result) in events.iter().zip(results) {
                        if result.as_str() == "ok" {
                            let stored = *ledger.transfer(event.id).ok_or("acknowledged transfer missing")?;
                            if !event.flags.resolves_pending()
                                && (stored.debit_account_id != event.debit_account_id
                                    || stored.credit_account_id != event.credit_account_id
                                    || stored.amount > event.amount)
                            {
                                return Err(format!("transfer {} stored differently from the request", event.id));
                            }
                            self.transfers.insert(event.id, stored);
                        }
                    }
                }
                (Op::CreateAccounts(events), OpResults::Accounts(results)) => {
                    for (event, result) in events.iter().zip(results) {
                        if result.as_str() == "ok" {
                            let stored = *ledger.account(event.id).ok_or("acknowledged account missing")?;
                            self.accounts.insert(event.id, stored);
                        }
                    }
                }
                (Op::Put(put), OpResults::Put) => self.put(put),
                (Op::Note(_), OpResults::Put) => {}
                _ => return Err("reply kinds do not match the record's ops".into()),
            }
        }
        Ok(())
    }

    fn put(&mut self, put: &obol_core::table::Put) {
        if put.value.is_empty() {
            self.table.remove(&put.key);
        } else {
            self.table.insert(put.key.clone(), put.value.clone());
        }
    }

    /// Checks a freshly restarted ledger against everything acknowledged.
    fn check_restart(&self, ledger: &Ledger) -> Result<(), String> {
        ledger.check_invariants()?;
        let table: BTreeMap<String, Vec<u8>> =
            ledger.table().scan("").map(|(k, v)| (k.to_string(), v.to_vec())).collect();
        if table != self.table {
            return Err(format!("the state table differs from what was acknowledged: {table:?} vs {:?}", self.table));
        }
        for (id, acked) in &self.transfers {
            let stored = ledger.transfer(*id).ok_or(format!("acknowledged transfer {id} lost"))?;
            if stored != acked {
                return Err(format!("acknowledged transfer {id} changed: {acked:?} -> {stored:?}"));
            }
        }
        for (id, acked) in &self.accounts {
            let stored = ledger.account(*id).ok_or(format!("acknowledged account {id} lost"))?;
            if (stored.id, stored.asset, stored.code) != (acked.id, acked.asset, acked.code) {
                return Err(format!("acknowledged account {id} changed"));
            }
        }
        for transfer in ledger.transfers() {
            if !self.sent_transfer_ids.contains(&transfer.id) {
                return Err(format!("transfer {} exists but was never sent", transfer.id));
            }
        }
        for account in ledger.accounts() {
            if !self.sent_account_ids.contains(&account.id) {
                return Err(format!("account {} exists but was never sent", account.id));
            }
        }
        check_balances_from_transfers(ledger)
    }
}

/// Recomputes every account's balances from the transfers and pending statuses alone.
fn check_balances_from_transfers(ledger: &Ledger) -> Result<(), String> {
    let mut expected: BTreeMap<u128, [u128; 4]> = BTreeMap::new();
    for transfer in ledger.transfers() {
        let flags = transfer.flags;
        let pending = if flags.has(TransferFlags::PENDING) {
            if ledger.pending_status(transfer.id) != Some(PendingStatus::Pending) {
                continue;
            }
            true
        } else if flags.has(TransferFlags::VOID_PENDING) {
            continue;
        } else {
            false
        };
        let [debits_pending, debits_posted, _, _] = expected.entry(transfer.debit_account_id).or_insert([0; 4]);
        *if pending { debits_pending } else { debits_posted } += transfer.amount;
        let [_, _, credits_pending, credits_posted] = expected.entry(transfer.credit_account_id).or_insert([0; 4]);
        *if pending { credits_pending } else { credits_posted } += transfer.amount;
    }
    for account in ledger.accounts() {
        let b = account.balances;
        let got = [b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted];
        let want = expected.get(&account.id).copied().unwrap_or([0; 4]);
        if got != want {
            return Err(format!("account {} balances {got:?} but its transfers say {want:?}", account.id));
        }
    }
    Ok(())
}

fn ids_in(record: &Record) -> BTreeSet<u128> {
    record
        .ops
        .iter()
        .flat_map(|op| match op {
            Op::CreateTransfers(events) | Op::Dispute(events) => events.iter().map(|e| e.id).collect::<Vec<_>>(),
            Op::Pay(payment) => payment.transfers.iter().map(|e| e.id).collect::<Vec<_>>(),
            Op::CreateAccounts(_) | Op::Identity(_) | Op::Tab(_) | Op::Put(_) | Op::Note(_) => Vec::new(),
        })
        .collect()
}

/// Runs one simulation of `steps` records. `Err` carries what the auditor saw.
pub fn run(seed: u64, steps: usize) -> Result<Summary, String> {
    let mut prng = Prng::new(seed);
    let faults = Faults { crash_before_write: 15, torn_write: 15, crash_after_write: 15 };
    let disk = Arc::new(Mutex::new(Disk::default()));
    let open = |disk: &Arc<Mutex<Disk>>, prng: &mut Prng| {
        Node::open(FaultyStore::new(Arc::clone(disk), prng.next_u64(), faults), prng.next_u64())
            .map_err(|e| format!("open: {e}"))
    };
    let mut node = open(&disk, &mut prng)?;
    let mut auditor = Auditor::default();
    let mut summary = Summary::default();
    let mut now_ns: u64 = 1_700_000_000_000_000_000;
    for _ in 0..steps {
        now_ns += prng.below(3_000_000_000);
        let mut ops = Vec::new();
        for _ in 0..(1 + prng.below(3)) {
            if prng.chance(100) {
                let key = format!("sim/{}", prng.below(8));
                let value = if prng.chance(250) { Vec::new() } else { prng.next_u64().to_le_bytes().to_vec() };
                ops.push(Op::Put(obol_core::table::Put { key, value }));
            } else if prng.chance(200) {
                let events: Vec<NewAccount> = (0..1 + prng.below(4)).map(|_| account_event(&mut prng)).collect();
                auditor.sent_account_ids.extend(events.iter().map(|e| e.id));
                ops.push(Op::CreateAccounts(events));
            } else {
                let events: Vec<NewTransfer> = (0..1 + prng.below(12)).map(|_| transfer_event(&mut prng)).collect();
                auditor.sent_transfer_ids.extend(events.iter().map(|e| e.id));
                ops.push(Op::CreateTransfers(events));
            }
        }
        let record = Record { now_ns, ops };
        let existed_before: BTreeSet<u128> = {
            let ledger = node.ledger();
            let ledger = ledger.read().map_err(|_| "poisoned")?;
            ids_in(&record).into_iter().filter(|id| ledger.transfer(*id).is_some()).collect()
        };
        let seq_before = node.seq_last();
        match node.commit(&record) {
            Ok(replies) => {
                let ledger = node.ledger();
                let ledger = ledger.read().map_err(|_| "poisoned")?;
                auditor.check_reply(&record, &replies, &existed_before)?;
                auditor.acknowledge(&ledger, &record, &replies)?;
                summary.records_acked += 1;
                summary.transfers_ok += replies
                    .iter()
                    .map(|r| match r {
                        OpResults::Transfers(results) => results.iter().filter(|r| r.as_str() == "ok").count() as u64,
                        OpResults::Accounts(_) | OpResults::Identity(_) | OpResults::Tab(_) | OpResults::Put => 0,
                    })
                    .sum::<u64>();
            }
            Err(StoreError::Injected(_)) => {
                drop(node);
                summary.restarts += 1;
                let torn = disk
                    .lock()
                    .map_err(|_| "poisoned")?
                    .log
                    .last()
                    .is_some_and(|(seq, bytes)| *seq == seq_before + 1 && Record::decode(bytes).is_err());
                node = open(&disk, &mut prng)?;
                if torn {
                    summary.torn_tails += 1;
                }
                let ledger = node.ledger();
                let ledger = ledger.read().map_err(|_| "poisoned")?;
                if node.seq_last() == seq_before + 1 {
                    // The record reached the disk whole: it is now a fact, all of it.
                    summary.unacked_records_kept += 1;
                    for id in ids_in(&record) {
                        if let Some(stored) = ledger.transfer(id) {
                            auditor.transfers.entry(id).or_insert(*stored);
                        }
                    }
                    for op in &record.ops {
                        if let Op::CreateAccounts(events) = op {
                            for event in events {
                                if let Some(stored) = ledger.account(event.id) {
                                    auditor.accounts.entry(event.id).or_insert(*stored);
                                }
                            }
                        }
                        if let Op::Put(put) = op {
                            auditor.put(put);
                        }
                    }
                } else if node.seq_last() == seq_before {
                    for id in ids_in(&record) {
                        if !existed_before.contains(&id) && ledger.transfer(id).is_some() {
                            return Err(format!("transfer {id} of a record that never reached the disk exists"));
                        }
                    }
                } else {
                    return Err(format!("log ends at {} after a crash at {}", node.seq_last(), seq_before + 1));
                }
                auditor.check_restart(&ledger)?;
            }
            Err(other) => return Err(format!("store error: {other}")),
        }
    }
    // A clean restart at the end must also restore everything.
    drop(node);
    let node = open(&disk, &mut prng)?;
    let ledger = node.ledger();
    let ledger = ledger.read().map_err(|_| "poisoned")?;
    auditor.check_restart(&ledger)?;
    Ok(summary)
}

//! The double-entry ledger state machine (which also applies identity changes, so that both
//! share one durable log).
//!
//! [`Ledger::apply`] takes one durable [`Record`] (one or more requests, each a batch of
//! create-account or create-transfer events, plus the wall-clock time the shell read) and returns
//! a result code per event. The same record applied to the same state always yields the same
//! results and the same state: that is what lets the shell persist records and rebuild the ledger
//! by replaying them.
//!
//! Semantics follow TigerBeetle (pending/post/void with timeouts, linked chains, balancing and
//! closing transfers, balance-limit flags, idempotent ids) with two deliberate differences:
//! accounts and transfers carry an [`Asset`](crate::money::Asset) instead of a `ledger` number,
//! and `exists` counts as success inside a linked chain, so retrying a committed chain answers
//! `exists` for every event instead of failing the chain.

mod payment;
mod tabs;
mod types;

pub use payment::{PayerCounters, Payment, utc_month};
pub use types::*;

use std::collections::{BTreeSet, HashMap};

use foldhash::fast::FixedState;

use crate::identity::{Identity, IdentityResult};
use crate::record::{Op, Record};
use tabs::Tabs;

/// The most events one request may carry (TigerBeetle's batch size for 128-byte events).
pub const BATCH_EVENTS_MAX: usize = 8190;

/// Nanoseconds in a second, for timeouts.
const NS_PER_S: u64 = 1_000_000_000;

/// The results of one request inside a record.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum OpResults {
    /// One result per account event, in order.
    Accounts(Vec<CreateAccountResult>),
    /// One result per transfer event, in order.
    Transfers(Vec<CreateTransferResult>),
    /// The result of an identity command.
    Identity(IdentityResult),
    /// The result of a tab command.
    Tab(crate::channel::TabResult),
    /// A put (or an audit note, which changes nothing) is always applied.
    Put,
}

/// One transfer in an account's history, with the account's balances after it when the account
/// has the `history` flag.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HistoryEntry {
    /// The transfer.
    pub transfer: Transfer,
    /// Balances right after the transfer (history-flagged accounts only).
    pub balances: Option<Balances>,
}

/// Per-account index of the transfers that touched it.
#[derive(Clone, Default, Debug)]
struct AccountLog {
    /// Indexes into `Ledger::transfers`, in timestamp order.
    transfer_indexes: Vec<u64>,
    /// Balances after each of those transfers; empty unless the account has `history`.
    balances: Vec<Balances>,
}

/// What to undo when a linked chain fails.
#[derive(Clone, Debug)]
enum Undo {
    AccountCreated,
    AccountChanged { index: u32, before: Account },
    TransferCreated,
    PendingInserted { id: u128 },
    PendingChanged { id: u128, before: PendingStatus },
    ExpiryInserted { key: (u64, u64, u128) },
    ExpiryRemoved { key: (u64, u64, u128) },
}

type Map<K, V> = HashMap<K, V, FixedState>;

/// The ledger: all accounts and transfers, in memory.
#[derive(Clone, Debug)]
pub struct Ledger {
    accounts: Vec<Account>,
    account_index: Map<u128, u32>,
    account_logs: Vec<AccountLog>,
    transfers: Vec<Transfer>,
    transfer_index: Map<u128, u64>,
    pending: Map<u128, PendingStatus>,
    /// (expires_at_ns, timestamp, id) of pending transfers with a timeout that are still pending.
    expiries: BTreeSet<(u64, u64, u128)>,
    timestamp_last: u64,
    undo: Vec<Undo>,
    journaling: bool,
    /// Per asset, (debits - credits) for pending and for posted balances, summed over every
    /// balance change (wrapping). Both are zero after every record, or money was made or lost.
    imbalances: Vec<(crate::money::Asset, [u128; 2])>,
    /// Principals, keys and devices: changed by `Op::Identity` in the same records as money.
    identity: Identity,
    /// Tabs: escrowed budgets paid into by vouchers and ticks.
    tabs: Tabs,
    /// Application state the shells keep through the log (`Op::Put`).
    table: crate::table::Table,
    /// Per paying account, what regulation counts (since the last strong authentication, per
    /// calendar month), counted as payments apply.
    payers: Map<u128, PayerCounters>,
    /// Per transfer a payment (`Op::Pay`) made: the device that signed it and whether a second
    /// factor approved it, the authentication evidence a dispute weighs.
    payment_evidence: Map<u128, PaymentEvidence>,
}

/// The transfer code of a dispute's own transfers (its hold on the payee's funds, the hold's
/// post as the payer's provisional credit or its void, a reversal): only `Op::Dispute` uses it.
pub const DISPUTE_TRANSFER_CODE: u16 = 0xD15;

/// How a payment was authenticated, as its record said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaymentEvidence {
    /// The device whose signature asked for it (0: an API key).
    pub device_id: u128,
    /// A second factor approved it (strong customer authentication).
    pub authenticated: bool,
}

impl Ledger {
    /// An empty ledger. `hash_seed` keys the id hash tables; the shell passes a random value so
    /// that clients cannot choose ids that collide, and a fixed one in deterministic tests.
    pub fn new(hash_seed: u64) -> Ledger {
        let state = FixedState::with_seed(hash_seed);
        let state_payers = state.clone();
        Ledger {
            accounts: Vec::new(),
            account_index: HashMap::with_hasher(state.clone()),
            account_logs: Vec::new(),
            transfers: Vec::new(),
            transfer_index: HashMap::with_hasher(state.clone()),
            pending: HashMap::with_hasher(state.clone()),
            expiries: BTreeSet::new(),
            timestamp_last: 0,
            undo: Vec::new(),
            journaling: false,
            imbalances: Vec::new(),
            identity: Identity::default(),
            tabs: Tabs::new(state.clone()),
            table: crate::table::Table::default(),
            payers: HashMap::with_hasher(state_payers),
            payment_evidence: HashMap::with_hasher(state.clone()),
        }
    }

    /// Applies one record. Events get strictly increasing timestamps that are never below
    /// `record.now_ns`; pending transfers whose timeout has passed by then are released first.
    pub fn apply(&mut self, record: &Record) -> Vec<OpResults> {
        let events_count: u64 = record.ops.iter().map(|op| op.len() as u64).sum();
        let record_ts = record.now_ns.max(self.timestamp_last.saturating_add(1));
        assert!(record_ts.checked_add(events_count).is_some(), "ledger time overflow");
        self.expire_pending(record_ts);
        let mut next_ts = record_ts;
        let mut replies = Vec::with_capacity(record.ops.len());
        for op in &record.ops {
            match op {
                Op::CreateAccounts(events) => {
                    replies.push(OpResults::Accounts(self.create_accounts(events, &mut next_ts)));
                }
                Op::CreateTransfers(events) => {
                    let now_ns = next_ts;
                    let results = self.create_events(events, &mut next_ts, Ledger::create_request_transfer);
                    self.count_owned_payments(events, &results, now_ns);
                    replies.push(OpResults::Transfers(results));
                }
                Op::Identity(command) => {
                    replies.push(OpResults::Identity(self.identity.apply(command, next_ts)));
                    next_ts += 1;
                }
                Op::Tab(command) => {
                    replies.push(OpResults::Tab(self.apply_tab(command, next_ts)));
                    next_ts += command.events_count() as u64;
                }
                Op::Pay(payment) => {
                    replies.push(OpResults::Transfers(self.apply_payment(payment, &mut next_ts)));
                }
                Op::Dispute(events) => {
                    let results = self.create_events(events, &mut next_ts, Ledger::create_dispute_transfer);
                    replies.push(OpResults::Transfers(results));
                }
                Op::Put(put) => {
                    self.table.apply(put);
                    replies.push(OpResults::Put);
                    next_ts += 1;
                }
                Op::Note(_) => {
                    replies.push(OpResults::Put);
                    next_ts += 1;
                }
            }
        }
        self.timestamp_last = next_ts.saturating_sub(1).max(self.timestamp_last);
        assert!(self.undo.is_empty());
        for (asset, [pending, posted]) in &self.imbalances {
            assert_eq!(*pending, 0, "{asset}: pending debits and credits differ: money made or lost");
            assert_eq!(*posted, 0, "{asset}: posted debits and credits differ: money made or lost");
        }
        debug_assert_eq!(self.check_invariants(), Ok(()));
        replies
    }

    /// The earliest time a pending transfer expires, if any does: the shell applies an empty
    /// record at that time so reservations are released without traffic.
    pub fn next_expiry_ns(&self) -> Option<u64> {
        self.expiries.first().map(|key| key.0)
    }

    /// The state table the shells write through the log.
    pub fn table(&self) -> &crate::table::Table {
        &self.table
    }

    /// The identity registry.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The last timestamp the ledger assigned.
    pub fn timestamp_last(&self) -> u64 {
        self.timestamp_last
    }

    /// Looks up an account.
    pub fn account(&self, id: u128) -> Option<&Account> {
        let index = *self.account_index.get(&id)?;
        self.accounts.get(index as usize)
    }

    /// Looks up a transfer.
    pub fn transfer(&self, id: u128) -> Option<&Transfer> {
        let index = *self.transfer_index.get(&id)?;
        self.transfers.get(usize::try_from(index).ok()?)
    }

    /// Where a pending transfer stands (`None` if `id` is not a pending transfer).
    pub fn pending_status(&self, id: u128) -> Option<PendingStatus> {
        self.pending.get(&id).copied()
    }

    /// Number of accounts.
    pub fn accounts_count(&self) -> usize {
        self.accounts.len()
    }

    /// Number of transfers.
    pub fn transfers_count(&self) -> usize {
        self.transfers.len()
    }

    /// All accounts in creation order.
    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    /// All transfers in creation order.
    pub fn transfers(&self) -> &[Transfer] {
        &self.transfers
    }

    /// Up to `limit` transfers that touched account `id` with timestamps after `after_ts`, oldest
    /// first. `None` if there is no such account.
    pub fn account_history(&self, id: u128, after_ts: u64, limit: usize) -> Option<Vec<HistoryEntry>> {
        Some(self.account_history_from(id, after_ts)?.take(limit).collect())
    }

    /// The transfers that touched account `id` with timestamps after `after_ts`, oldest first,
    /// as an iterator (for lists that filter as they page). `None` if there is no such account.
    pub fn account_history_from(&self, id: u128, after_ts: u64) -> Option<impl Iterator<Item = HistoryEntry> + '_> {
        let index = *self.account_index.get(&id)? as usize;
        let log = self.account_logs.get(index)?;
        let start = log.transfer_indexes.partition_point(|&transfer_index| {
            self.transfers.get(transfer_index as usize).is_some_and(|transfer| transfer.timestamp <= after_ts)
        });
        Some(log.transfer_indexes.iter().enumerate().skip(start).filter_map(move |(position, &transfer_index)| {
            Some(HistoryEntry {
                transfer: *self.transfers.get(transfer_index as usize)?,
                balances: log.balances.get(position).copied(),
            })
        }))
    }

    /// The account's history before `before_ts`, newest first (`None` for an unknown account).
    pub fn account_history_before(&self, id: u128, before_ts: u64) -> Option<impl Iterator<Item = HistoryEntry> + '_> {
        let index = *self.account_index.get(&id)? as usize;
        let log = self.account_logs.get(index)?;
        let end = log.transfer_indexes.partition_point(|&transfer_index| {
            self.transfers.get(transfer_index as usize).is_some_and(|transfer| transfer.timestamp < before_ts)
        });
        let newest_first = log.transfer_indexes.iter().enumerate().take(end).rev();
        Some(newest_first.filter_map(move |(position, &transfer_index)| {
            Some(HistoryEntry {
                transfer: *self.transfers.get(transfer_index as usize)?,
                balances: log.balances.get(position).copied(),
            })
        }))
    }

    fn create_accounts(&mut self, events: &[NewAccount], next_ts: &mut u64) -> Vec<CreateAccountResult> {
        self.create_events(events, next_ts, Ledger::create_account)
    }

    fn create_transfers(&mut self, events: &[NewTransfer], next_ts: &mut u64) -> Vec<CreateTransferResult> {
        self.create_events(events, next_ts, Ledger::create_transfer)
    }

    /// Applies events one by one, event `i` at timestamp `next_ts + i`; events joined by
    /// `linked` succeed or fail together.
    #[expect(clippy::indexing_slicing, reason = "`results` has one slot per event and `index` enumerates the events")]
    fn create_events<E: Event, R: ResultCode>(
        &mut self,
        events: &[E],
        next_ts: &mut u64,
        apply_one: fn(&mut Ledger, &E, u64) -> R,
    ) -> Vec<R> {
        assert!(events.len() <= BATCH_EVENTS_MAX);
        let events_count = events.len();
        let mut results = vec![R::OK; events_count];
        let mut chain_start: Option<usize> = None;
        let mut chain_broken = false;
        for (index, event) in events.iter().enumerate() {
            let linked = event.linked();
            if chain_start.is_none() && linked {
                chain_start = Some(index);
                assert!(self.undo.is_empty());
                self.journaling = true;
            }
            if linked && index + 1 == events_count {
                results[index] = R::LINKED_EVENT_CHAIN_OPEN;
                chain_broken = true;
            } else if chain_broken {
                results[index] = R::LINKED_EVENT_FAILED;
            } else {
                let result = apply_one(self, event, *next_ts + index as u64);
                results[index] = result;
                if !result.succeeded() {
                    chain_broken = chain_start.is_some();
                }
            }
            let chain_ends = !linked || index + 1 == events_count;
            if let (Some(start), true) = (chain_start, chain_ends) {
                if chain_broken {
                    self.roll_back();
                    for result in &mut results[start..=index] {
                        if result.succeeded() {
                            *result = R::LINKED_EVENT_FAILED;
                        }
                    }
                }
                self.undo.clear();
                self.journaling = false;
                chain_start = None;
                chain_broken = false;
            }
        }
        *next_ts += events_count as u64;
        results
    }

    fn journal(&mut self, undo: Undo) {
        if self.journaling {
            self.undo.push(undo);
        }
    }

    #[expect(
        clippy::expect_used,
        clippy::indexing_slicing,
        reason = "the undo journal names only what this chain added, so what it removes exists"
    )]
    fn roll_back(&mut self) {
        while let Some(undo) = self.undo.pop() {
            match undo {
                Undo::AccountCreated => {
                    let account = self.accounts.pop().expect("undo: account to remove");
                    self.account_index.remove(&account.id);
                    self.account_logs.pop();
                }
                Undo::AccountChanged { index, before } => {
                    self.write_account(index as usize, before);
                }
                Undo::TransferCreated => {
                    let transfer = self.transfers.pop().expect("undo: transfer to remove");
                    self.transfer_index.remove(&transfer.id);
                    for account_id in [transfer.debit_account_id, transfer.credit_account_id] {
                        let account_index = self.account_index[&account_id] as usize;
                        let log = &mut self.account_logs[account_index];
                        log.transfer_indexes.pop();
                        if self.accounts[account_index].flags.has(AccountFlags::HISTORY) {
                            log.balances.pop();
                        }
                    }
                }
                Undo::PendingInserted { id } => {
                    self.pending.remove(&id);
                }
                Undo::PendingChanged { id, before } => {
                    self.pending.insert(id, before);
                }
                Undo::ExpiryInserted { key } => {
                    self.expiries.remove(&key);
                }
                Undo::ExpiryRemoved { key } => {
                    self.expiries.insert(key);
                }
            }
        }
    }

    #[expect(
        clippy::expect_used,
        reason = "accounts are bounded by records (8190 events each), far below 2^32 in any memory"
    )]
    fn create_account(&mut self, event: &NewAccount, timestamp: u64) -> CreateAccountResult {
        use CreateAccountResult as R;
        if event.flags.0 & !AccountFlags::KNOWN != 0 {
            return R::ReservedFlag;
        }
        if event.id == 0 {
            return R::IdMustNotBeZero;
        }
        if event.id == ID_RESERVED_MAX {
            return R::IdMustNotBeIntMax;
        }
        if event.flags.has(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && event.flags.has(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
        {
            return R::FlagsAreMutuallyExclusive;
        }
        if event.code == 0 {
            return R::CodeMustNotBeZero;
        }
        if let Some(existing) = self.account(event.id) {
            // `linked` is about the request, not the account, so it is not compared.
            let stored_flags = existing.flags.0 & !AccountFlags::CLOSED;
            let asked_flags = event.flags.0 & !(AccountFlags::LINKED | AccountFlags::CLOSED);
            return if stored_flags & !AccountFlags::LINKED != asked_flags {
                R::ExistsWithDifferentFlags
            } else if existing.user_data_128 != event.user_data_128 {
                R::ExistsWithDifferentUserData128
            } else if existing.user_data_64 != event.user_data_64 {
                R::ExistsWithDifferentUserData64
            } else if existing.user_data_32 != event.user_data_32 {
                R::ExistsWithDifferentUserData32
            } else if existing.asset != event.asset {
                R::ExistsWithDifferentAsset
            } else if existing.code != event.code {
                R::ExistsWithDifferentCode
            } else if existing.owner_id != event.owner_id {
                R::ExistsWithDifferentOwner
            } else {
                R::Exists
            };
        }
        let index = u32::try_from(self.accounts.len()).expect("accounts fit in u32");
        self.accounts.push(Account {
            id: event.id,
            owner_id: event.owner_id,
            user_data_128: event.user_data_128,
            user_data_64: event.user_data_64,
            user_data_32: event.user_data_32,
            asset: event.asset,
            code: event.code,
            flags: AccountFlags(event.flags.0 & !AccountFlags::LINKED),
            balances: Balances::default(),
            timestamp,
        });
        self.account_index.insert(event.id, index);
        self.account_logs.push(AccountLog::default());
        self.journal(Undo::AccountCreated);
        R::Ok
    }

    /// A transfer a request asked for (`Op::CreateTransfers`): anything but a tab's escrow.
    /// Escrows are moved only by tab commands, whoever asks and whatever route they take: a
    /// payer voiding one would keep being told "paid" for vouchers it never has to pay, a payee
    /// posting one would take the whole budget.
    fn create_request_transfer(&mut self, event: &NewTransfer, timestamp: u64) -> CreateTransferResult {
        use crate::channel::TAB_TRANSFER_CODE;
        if event.code == TAB_TRANSFER_CODE {
            return CreateTransferResult::CodeReservedForTabs;
        }
        if event.flags.resolves_pending()
            && self.transfer(event.pending_id).is_some_and(|pending| pending.code == TAB_TRANSFER_CODE)
        {
            return CreateTransferResult::PendingTransferBelongsToTab;
        }
        if event.code == DISPUTE_TRANSFER_CODE {
            return CreateTransferResult::CodeReservedForDisputes;
        }
        if event.flags.resolves_pending()
            && self.transfer(event.pending_id).is_some_and(|pending| pending.code == DISPUTE_TRANSFER_CODE)
        {
            return CreateTransferResult::PendingTransferBelongsToDispute;
        }
        self.create_transfer(event, timestamp)
    }

    /// A dispute's own step (`Op::Dispute`): a hold, its post or void, or a reversal, all with
    /// [`DISPUTE_TRANSFER_CODE`] and nothing else.
    /// The hold's post or void resolves even when an account was closed since the dispute
    /// opened (as a tab's settlement does): the held money was set aside for exactly this, and
    /// a payee closing its account must not strand the payer's win.
    fn create_dispute_transfer(&mut self, event: &NewTransfer, timestamp: u64) -> CreateTransferResult {
        if event.code != DISPUTE_TRANSFER_CODE {
            return CreateTransferResult::CodeReservedForDisputes;
        }
        if event.flags.resolves_pending() {
            let is_hold = self.transfer(event.pending_id).is_some_and(|pending| pending.code == DISPUTE_TRANSFER_CODE);
            if !is_hold {
                return CreateTransferResult::CodeReservedForDisputes;
            }
            return self.create_settlement_transfer(event, timestamp);
        }
        self.create_transfer(event, timestamp)
    }

    /// A tab command's own transfer (escrow, top-up, settlement).
    fn create_transfer(&mut self, event: &NewTransfer, timestamp: u64) -> CreateTransferResult {
        self.create_transfer_as(event, timestamp, false)
    }

    /// A tab's settlement: it posts the escrow even when an account was closed since the tab
    /// opened, because the escrowed money was set aside for exactly this and a tab that could
    /// not settle would hold it forever.
    fn create_settlement_transfer(&mut self, event: &NewTransfer, timestamp: u64) -> CreateTransferResult {
        self.create_transfer_as(event, timestamp, true)
    }

    fn create_transfer_as(&mut self, event: &NewTransfer, timestamp: u64, settlement: bool) -> CreateTransferResult {
        use CreateTransferResult as R;
        use TransferFlags as F;
        let flags = event.flags;
        if flags.0 & !F::KNOWN != 0 {
            return R::ReservedFlag;
        }
        if event.id == 0 {
            return R::IdMustNotBeZero;
        }
        if event.id == ID_RESERVED_MAX {
            return R::IdMustNotBeIntMax;
        }
        let kinds = [F::PENDING, F::POST_PENDING, F::VOID_PENDING].iter().filter(|&&bit| flags.has(bit)).count();
        let balancing = flags.has(F::BALANCING_DEBIT) || flags.has(F::BALANCING_CREDIT);
        let closing = flags.has(F::CLOSING_DEBIT) || flags.has(F::CLOSING_CREDIT);
        if kinds > 1 || (flags.resolves_pending() && (balancing || closing)) {
            return R::FlagsAreMutuallyExclusive;
        }
        if flags.resolves_pending() {
            self.post_or_void_pending(event, timestamp, settlement)
        } else {
            self.create_plain_or_pending(event, timestamp)
        }
    }

    #[expect(
        clippy::indexing_slicing,
        reason = "indexes come from account_index, which holds only positions of stored accounts"
    )]
    fn create_plain_or_pending(&mut self, event: &NewTransfer, timestamp: u64) -> CreateTransferResult {
        use CreateTransferResult as R;
        use TransferFlags as F;
        let flags = event.flags;
        if event.debit_account_id == 0 {
            return R::DebitAccountIdMustNotBeZero;
        }
        if event.debit_account_id == ID_RESERVED_MAX {
            return R::DebitAccountIdMustNotBeIntMax;
        }
        if event.credit_account_id == 0 {
            return R::CreditAccountIdMustNotBeZero;
        }
        if event.credit_account_id == ID_RESERVED_MAX {
            return R::CreditAccountIdMustNotBeIntMax;
        }
        if event.debit_account_id == event.credit_account_id {
            return R::AccountsMustBeDifferent;
        }
        if event.pending_id != 0 {
            return R::PendingIdMustBeZero;
        }
        if !flags.has(F::PENDING) && event.timeout_s != 0 {
            return R::TimeoutReservedForPendingTransfer;
        }
        if !flags.has(F::PENDING) && (flags.has(F::CLOSING_DEBIT) || flags.has(F::CLOSING_CREDIT)) {
            return R::ClosingTransferMustBePending;
        }
        let Some(asset) = event.asset else {
            return R::AssetMustBeSet;
        };
        if event.code == 0 {
            return R::CodeMustNotBeZero;
        }
        if let Some(existing) = self.transfer(event.id) {
            return exists_plain(event, asset, existing);
        }
        let Some(&debit_index) = self.account_index.get(&event.debit_account_id) else {
            return R::DebitAccountNotFound;
        };
        let Some(&credit_index) = self.account_index.get(&event.credit_account_id) else {
            return R::CreditAccountNotFound;
        };
        let debit = self.accounts[debit_index as usize];
        let credit = self.accounts[credit_index as usize];
        if debit.asset != credit.asset {
            return R::AccountsMustHaveTheSameAsset;
        }
        if asset != debit.asset {
            return R::TransferMustHaveTheSameAssetAsAccounts;
        }
        if debit.flags.has(AccountFlags::CLOSED) {
            return R::DebitAccountAlreadyClosed;
        }
        if credit.flags.has(AccountFlags::CLOSED) {
            return R::CreditAccountAlreadyClosed;
        }
        let mut amount = event.amount;
        if flags.has(F::BALANCING_DEBIT) {
            let room = debit
                .balances
                .credits_posted
                .saturating_sub(debit.balances.debits_posted)
                .saturating_sub(debit.balances.debits_pending);
            amount = amount.min(room);
        }
        if flags.has(F::BALANCING_CREDIT) {
            let room = credit
                .balances
                .debits_posted
                .saturating_sub(credit.balances.credits_posted)
                .saturating_sub(credit.balances.credits_pending);
            amount = amount.min(room);
        }
        let pending = flags.has(F::PENDING);
        let (debit_balances, credit_balances) = match apply_amounts(&debit.balances, &credit.balances, amount, pending)
        {
            Ok(pair) => pair,
            Err(result) => return result,
        };
        let expires_at = if pending && event.timeout_s != 0 {
            match timestamp.checked_add(u64::from(event.timeout_s) * NS_PER_S) {
                Some(at) => Some(at),
                None => return R::OverflowsTimeout,
            }
        } else {
            None
        };
        if debit.flags.has(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && debit_balances.debits_pending + debit_balances.debits_posted > debit_balances.credits_posted
        {
            return R::ExceedsCredits;
        }
        if credit.flags.has(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
            && credit_balances.credits_pending + credit_balances.credits_posted > credit_balances.debits_posted
        {
            return R::ExceedsDebits;
        }
        let transfer = Transfer {
            id: event.id,
            debit_account_id: event.debit_account_id,
            credit_account_id: event.credit_account_id,
            amount,
            pending_id: 0,
            user_data_128: event.user_data_128,
            user_data_64: event.user_data_64,
            user_data_32: event.user_data_32,
            timeout_s: event.timeout_s,
            asset,
            code: event.code,
            flags: TransferFlags(flags.0),
            timestamp,
        };
        let mut debit_after = debit;
        debit_after.balances = debit_balances;
        let mut credit_after = credit;
        credit_after.balances = credit_balances;
        if flags.has(F::CLOSING_DEBIT) {
            debit_after.flags.0 |= AccountFlags::CLOSED;
        }
        if flags.has(F::CLOSING_CREDIT) {
            credit_after.flags.0 |= AccountFlags::CLOSED;
        }
        self.set_account(debit_index, debit_after);
        self.set_account(credit_index, credit_after);
        if pending {
            self.pending.insert(event.id, PendingStatus::Pending);
            self.journal(Undo::PendingInserted { id: event.id });
            if let Some(expires_at) = expires_at {
                let key = (expires_at, timestamp, event.id);
                self.expiries.insert(key);
                self.journal(Undo::ExpiryInserted { key });
            }
        }
        self.push_transfer(transfer, debit_index, credit_index);
        R::Ok
    }

    #[expect(
        clippy::expect_used,
        clippy::indexing_slicing,
        reason = "a stored pending transfer has a status and its accounts exist (accounts are never removed)"
    )]
    fn post_or_void_pending(&mut self, event: &NewTransfer, timestamp: u64, settlement: bool) -> CreateTransferResult {
        use CreateTransferResult as R;
        use TransferFlags as F;
        let post = event.flags.has(F::POST_PENDING);
        if event.debit_account_id == ID_RESERVED_MAX {
            return R::DebitAccountIdMustNotBeIntMax;
        }
        if event.credit_account_id == ID_RESERVED_MAX {
            return R::CreditAccountIdMustNotBeIntMax;
        }
        if event.debit_account_id != 0 && event.debit_account_id == event.credit_account_id {
            return R::AccountsMustBeDifferent;
        }
        if event.pending_id == 0 {
            return R::PendingIdMustNotBeZero;
        }
        if event.pending_id == ID_RESERVED_MAX {
            return R::PendingIdMustNotBeIntMax;
        }
        if event.pending_id == event.id {
            return R::PendingIdMustBeDifferent;
        }
        if event.timeout_s != 0 {
            return R::TimeoutReservedForPendingTransfer;
        }
        if let Some(existing) = self.transfer(event.id) {
            return exists_resolving(event, existing);
        }
        let Some(pending) = self.transfer(event.pending_id).copied() else {
            return R::PendingTransferNotFound;
        };
        if !pending.flags.has(F::PENDING) {
            return R::PendingTransferNotPending;
        }
        if event.debit_account_id != 0 && event.debit_account_id != pending.debit_account_id {
            return R::PendingTransferHasDifferentDebitAccountId;
        }
        if event.credit_account_id != 0 && event.credit_account_id != pending.credit_account_id {
            return R::PendingTransferHasDifferentCreditAccountId;
        }
        if event.asset.is_some_and(|asset| asset != pending.asset) {
            return R::PendingTransferHasDifferentAsset;
        }
        if event.code != 0 && event.code != pending.code {
            return R::PendingTransferHasDifferentCode;
        }
        let amount = if post {
            if event.amount == AMOUNT_MAX {
                pending.amount
            } else if event.amount > pending.amount {
                return R::ExceedsPendingTransferAmount;
            } else {
                event.amount
            }
        } else if event.amount == 0 || event.amount == pending.amount {
            pending.amount
        } else {
            return R::PendingTransferHasDifferentAmount;
        };
        let status = self.pending.get(&pending.id).copied().expect("pending transfers have a status");
        match status {
            PendingStatus::Pending => {}
            PendingStatus::Posted => return R::PendingTransferAlreadyPosted,
            PendingStatus::Voided => return R::PendingTransferAlreadyVoided,
            PendingStatus::Expired => return R::PendingTransferExpired,
        }
        let expires_at = expiry_of(&pending);
        if expires_at.is_some_and(|at| at <= timestamp) {
            return R::PendingTransferExpired;
        }
        let debit_index = self.account_index[&pending.debit_account_id];
        let credit_index = self.account_index[&pending.credit_account_id];
        let debit = self.accounts[debit_index as usize];
        let credit = self.accounts[credit_index as usize];
        if post && !settlement && debit.flags.has(AccountFlags::CLOSED) && !pending.flags.has(F::CLOSING_DEBIT) {
            return R::DebitAccountAlreadyClosed;
        }
        if post && !settlement && credit.flags.has(AccountFlags::CLOSED) && !pending.flags.has(F::CLOSING_CREDIT) {
            return R::CreditAccountAlreadyClosed;
        }
        let mut debit_balances = debit.balances;
        let mut credit_balances = credit.balances;
        debit_balances.debits_pending -= pending.amount;
        credit_balances.credits_pending -= pending.amount;
        if post {
            debit_balances.debits_posted = match debit_balances.debits_posted.checked_add(amount) {
                Some(value) => value,
                None => return R::OverflowsDebitsPosted,
            };
            credit_balances.credits_posted = match credit_balances.credits_posted.checked_add(amount) {
                Some(value) => value,
                None => return R::OverflowsCreditsPosted,
            };
        }
        let mut debit_after = debit;
        debit_after.balances = debit_balances;
        let mut credit_after = credit;
        credit_after.balances = credit_balances;
        if !post && pending.flags.has(F::CLOSING_DEBIT) {
            debit_after.flags.0 &= !AccountFlags::CLOSED;
        }
        if !post && pending.flags.has(F::CLOSING_CREDIT) {
            credit_after.flags.0 &= !AccountFlags::CLOSED;
        }
        self.set_account(debit_index, debit_after);
        self.set_account(credit_index, credit_after);
        let new_status = if post { PendingStatus::Posted } else { PendingStatus::Voided };
        self.pending.insert(pending.id, new_status);
        self.journal(Undo::PendingChanged { id: pending.id, before: status });
        if let Some(expires_at) = expires_at {
            let key = (expires_at, pending.timestamp, pending.id);
            let removed = self.expiries.remove(&key);
            assert!(removed, "a pending transfer with a timeout is in the expiry index");
            self.journal(Undo::ExpiryRemoved { key });
        }
        let transfer = Transfer {
            id: event.id,
            debit_account_id: pending.debit_account_id,
            credit_account_id: pending.credit_account_id,
            amount,
            pending_id: pending.id,
            user_data_128: if event.user_data_128 == 0 { pending.user_data_128 } else { event.user_data_128 },
            user_data_64: if event.user_data_64 == 0 { pending.user_data_64 } else { event.user_data_64 },
            user_data_32: if event.user_data_32 == 0 { pending.user_data_32 } else { event.user_data_32 },
            timeout_s: 0,
            asset: pending.asset,
            code: pending.code,
            flags: event.flags,
            timestamp,
        };
        self.push_transfer(transfer, debit_index, credit_index);
        R::Ok
    }

    /// Stores `after` at `index`, counting the balance change toward the per-asset imbalance.
    #[expect(
        clippy::indexing_slicing,
        reason = "callers pass positions from account_index; `slot` was found or pushed just before"
    )]
    fn write_account(&mut self, index: usize, after: Account) -> Account {
        let before = std::mem::replace(&mut self.accounts[index], after);
        assert_eq!(before.asset, after.asset, "an account's asset never changes");
        let delta = |a: u128, b: u128| a.wrapping_sub(b);
        let pending = delta(after.balances.debits_pending, before.balances.debits_pending)
            .wrapping_sub(delta(after.balances.credits_pending, before.balances.credits_pending));
        let posted = delta(after.balances.debits_posted, before.balances.debits_posted)
            .wrapping_sub(delta(after.balances.credits_posted, before.balances.credits_posted));
        if pending != 0 || posted != 0 {
            let slot = match self.imbalances.iter().position(|(asset, _)| *asset == after.asset) {
                Some(position) => position,
                None => {
                    self.imbalances.push((after.asset, [0, 0]));
                    self.imbalances.len() - 1
                }
            };
            let sums = &mut self.imbalances[slot].1;
            sums[0] = sums[0].wrapping_add(pending);
            sums[1] = sums[1].wrapping_add(posted);
        }
        before
    }

    fn set_account(&mut self, index: u32, after: Account) {
        let before = self.write_account(index as usize, after);
        assert_balance_limits(&after);
        if self.journaling {
            self.undo.push(Undo::AccountChanged { index, before });
        }
    }

    #[expect(
        clippy::indexing_slicing,
        reason = "the account positions come from account_index, and every account has a log"
    )]
    fn push_transfer(&mut self, transfer: Transfer, debit_index: u32, credit_index: u32) {
        let transfer_index = self.transfers.len() as u64;
        self.transfers.push(transfer);
        let previous = self.transfer_index.insert(transfer.id, transfer_index);
        assert!(previous.is_none(), "transfer ids are unique");
        for account_index in [debit_index, credit_index] {
            let account = &self.accounts[account_index as usize];
            let log = &mut self.account_logs[account_index as usize];
            log.transfer_indexes.push(transfer_index);
            if account.flags.has(AccountFlags::HISTORY) {
                log.balances.push(account.balances);
            }
        }
        self.journal(Undo::TransferCreated);
    }

    /// Releases every pending transfer whose expiry is at or before `now_ts`, oldest expiry
    /// first.
    #[expect(
        clippy::expect_used,
        clippy::indexing_slicing,
        reason = "the expiry queue names stored pending transfers, whose accounts exist"
    )]
    fn expire_pending(&mut self, now_ts: u64) {
        assert!(!self.journaling);
        while let Some(&key) = self.expiries.first() {
            let (expires_at, _, id) = key;
            if expires_at > now_ts {
                break;
            }
            self.expiries.pop_first();
            let transfer = *self.transfer(id).expect("expiring transfer exists");
            let status = self.pending.insert(id, PendingStatus::Expired);
            assert_eq!(status, Some(PendingStatus::Pending));
            let debit_index = self.account_index[&transfer.debit_account_id] as usize;
            let credit_index = self.account_index[&transfer.credit_account_id] as usize;
            let mut debit = self.accounts[debit_index];
            debit.balances.debits_pending -= transfer.amount;
            if transfer.flags.has(TransferFlags::CLOSING_DEBIT) {
                debit.flags.0 &= !AccountFlags::CLOSED;
            }
            self.write_account(debit_index, debit);
            let mut credit = self.accounts[credit_index];
            credit.balances.credits_pending -= transfer.amount;
            if transfer.flags.has(TransferFlags::CLOSING_CREDIT) {
                credit.flags.0 &= !AccountFlags::CLOSED;
            }
            self.write_account(credit_index, credit);
        }
    }

    /// Checks every invariant over the whole ledger (O(accounts + transfers)): per asset, debits
    /// equal credits (pending and posted); flagged balances never cross; each account's pending
    /// balances equal the sum of its live pending transfers; expiry index matches.
    pub fn check_invariants(&self) -> Result<(), String> {
        // Each account's balances fit u128 but their sum over accounts need not (two accounts
        // may each have paid u128::MAX), so totals are exact (carries, low part) pairs.
        let mut totals: HashMap<crate::money::Asset, [(u64, u128); 4]> = HashMap::new();
        for account in &self.accounts {
            let b = &account.balances;
            let total = totals.entry(account.asset).or_insert([(0, 0); 4]);
            let add = |sum: &mut (u64, u128), value: u128| {
                let (low, carried) = sum.1.overflowing_add(value);
                *sum = (sum.0 + u64::from(carried), low);
            };
            add(&mut total[0], b.debits_pending);
            add(&mut total[1], b.debits_posted);
            add(&mut total[2], b.credits_pending);
            add(&mut total[3], b.credits_posted);
            if account.flags.has(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
                && b.debits_pending + b.debits_posted > b.credits_posted
            {
                return Err(format!("account {} debits exceed credits", account.id));
            }
            if account.flags.has(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
                && b.credits_pending + b.credits_posted > b.debits_posted
            {
                return Err(format!("account {} credits exceed debits", account.id));
            }
        }
        for (asset, [debits_pending, debits_posted, credits_pending, credits_posted]) in &totals {
            if debits_pending != credits_pending {
                return Err(format!(
                    "{asset}: pending debits {debits_pending:?} != pending credits {credits_pending:?}"
                ));
            }
            if debits_posted != credits_posted {
                return Err(format!("{asset}: posted debits {debits_posted:?} != posted credits {credits_posted:?}"));
            }
        }
        let mut live_pending: HashMap<u128, [u128; 2]> = HashMap::new();
        let mut expiring = 0usize;
        for transfer in &self.transfers {
            if !transfer.flags.has(TransferFlags::PENDING) {
                continue;
            }
            if self.pending.get(&transfer.id) == Some(&PendingStatus::Pending) {
                live_pending.entry(transfer.debit_account_id).or_insert([0; 2])[0] += transfer.amount;
                live_pending.entry(transfer.credit_account_id).or_insert([0; 2])[1] += transfer.amount;
                if let Some(at) = expiry_of(transfer) {
                    expiring += 1;
                    if !self.expiries.contains(&(at, transfer.timestamp, transfer.id)) {
                        return Err(format!("pending transfer {} missing from expiry index", transfer.id));
                    }
                }
            }
        }
        if expiring != self.expiries.len() {
            return Err("expiry index holds transfers that are not pending".into());
        }
        for account in &self.accounts {
            let [debits, credits] = live_pending.get(&account.id).copied().unwrap_or([0; 2]);
            if account.balances.debits_pending != debits || account.balances.credits_pending != credits {
                return Err(format!("account {} pending balances differ from its live pending transfers", account.id));
            }
        }
        Ok(())
    }
}

/// The result codes of one kind of event, as the chain logic needs them.
trait ResultCode: Copy {
    const OK: Self;
    const LINKED_EVENT_FAILED: Self;
    const LINKED_EVENT_CHAIN_OPEN: Self;
    /// `ok` or `exists`.
    fn succeeded(&self) -> bool;
}

impl ResultCode for CreateAccountResult {
    const OK: Self = CreateAccountResult::Ok;
    const LINKED_EVENT_FAILED: Self = CreateAccountResult::LinkedEventFailed;
    const LINKED_EVENT_CHAIN_OPEN: Self = CreateAccountResult::LinkedEventChainOpen;
    fn succeeded(&self) -> bool {
        self.is_success()
    }
}

impl ResultCode for CreateTransferResult {
    const OK: Self = CreateTransferResult::Ok;
    const LINKED_EVENT_FAILED: Self = CreateTransferResult::LinkedEventFailed;
    const LINKED_EVENT_CHAIN_OPEN: Self = CreateTransferResult::LinkedEventChainOpen;
    fn succeeded(&self) -> bool {
        self.is_success()
    }
}

/// An event that may be linked to the next one.
trait Event {
    fn linked(&self) -> bool;
}

impl Event for NewAccount {
    fn linked(&self) -> bool {
        self.flags.has(AccountFlags::LINKED)
    }
}

impl Event for NewTransfer {
    fn linked(&self) -> bool {
        self.flags.has(TransferFlags::LINKED)
    }
}

fn expiry_of(transfer: &Transfer) -> Option<u64> {
    if transfer.timeout_s == 0 {
        return None;
    }
    transfer.timestamp.checked_add(u64::from(transfer.timeout_s) * NS_PER_S)
}

/// Balances after moving `amount` from debit to credit, or the overflow that prevents it.
fn apply_amounts(
    debit: &Balances,
    credit: &Balances,
    amount: u128,
    pending: bool,
) -> Result<(Balances, Balances), CreateTransferResult> {
    use CreateTransferResult as R;
    let mut debit = *debit;
    let mut credit = *credit;
    if pending {
        debit.debits_pending = debit.debits_pending.checked_add(amount).ok_or(R::OverflowsDebitsPending)?;
        credit.credits_pending = credit.credits_pending.checked_add(amount).ok_or(R::OverflowsCreditsPending)?;
    } else {
        debit.debits_posted = debit.debits_posted.checked_add(amount).ok_or(R::OverflowsDebitsPosted)?;
        credit.credits_posted = credit.credits_posted.checked_add(amount).ok_or(R::OverflowsCreditsPosted)?;
    }
    debit.debits_pending.checked_add(debit.debits_posted).ok_or(R::OverflowsDebits)?;
    credit.credits_pending.checked_add(credit.credits_posted).ok_or(R::OverflowsCredits)?;
    Ok((debit, credit))
}

fn assert_balance_limits(account: &Account) {
    let b = &account.balances;
    if account.flags.has(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS) {
        assert!(b.debits_pending + b.debits_posted <= b.credits_posted, "debits crossed credits");
    }
    if account.flags.has(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS) {
        assert!(b.credits_pending + b.credits_posted <= b.debits_posted, "credits crossed debits");
    }
}

fn exists_plain(event: &NewTransfer, asset: crate::money::Asset, existing: &Transfer) -> CreateTransferResult {
    use CreateTransferResult as R;
    let balancing = event.flags.has(TransferFlags::BALANCING_DEBIT) || event.flags.has(TransferFlags::BALANCING_CREDIT);
    let amount_matches = if balancing { existing.amount <= event.amount } else { existing.amount == event.amount };
    if existing.flags.0 & !TransferFlags::LINKED != event.flags.0 & !TransferFlags::LINKED {
        R::ExistsWithDifferentFlags
    } else if existing.debit_account_id != event.debit_account_id {
        R::ExistsWithDifferentDebitAccountId
    } else if existing.credit_account_id != event.credit_account_id {
        R::ExistsWithDifferentCreditAccountId
    } else if !amount_matches {
        R::ExistsWithDifferentAmount
    } else if existing.pending_id != event.pending_id {
        R::ExistsWithDifferentPendingId
    } else if existing.user_data_128 != event.user_data_128 {
        R::ExistsWithDifferentUserData128
    } else if existing.user_data_64 != event.user_data_64 {
        R::ExistsWithDifferentUserData64
    } else if existing.user_data_32 != event.user_data_32 {
        R::ExistsWithDifferentUserData32
    } else if existing.timeout_s != event.timeout_s {
        R::ExistsWithDifferentTimeout
    } else if existing.asset != asset {
        R::ExistsWithDifferentAsset
    } else if existing.code != event.code {
        R::ExistsWithDifferentCode
    } else {
        R::Exists
    }
}

fn exists_resolving(event: &NewTransfer, existing: &Transfer) -> CreateTransferResult {
    use CreateTransferResult as R;
    let post = event.flags.has(TransferFlags::POST_PENDING);
    let amount_matches = if post {
        event.amount == AMOUNT_MAX || event.amount == existing.amount
    } else {
        event.amount == 0 || event.amount == existing.amount
    };
    let same_or_inherited_128 = |asked: u128, stored: u128| asked == 0 || asked == stored;
    if existing.flags.0 & !TransferFlags::LINKED != event.flags.0 & !TransferFlags::LINKED {
        R::ExistsWithDifferentFlags
    } else if !same_or_inherited_128(event.debit_account_id, existing.debit_account_id) {
        R::ExistsWithDifferentDebitAccountId
    } else if !same_or_inherited_128(event.credit_account_id, existing.credit_account_id) {
        R::ExistsWithDifferentCreditAccountId
    } else if !amount_matches {
        R::ExistsWithDifferentAmount
    } else if existing.pending_id != event.pending_id {
        R::ExistsWithDifferentPendingId
    } else if !same_or_inherited_128(event.user_data_128, existing.user_data_128) {
        R::ExistsWithDifferentUserData128
    } else if event.user_data_64 != 0 && event.user_data_64 != existing.user_data_64 {
        R::ExistsWithDifferentUserData64
    } else if event.user_data_32 != 0 && event.user_data_32 != existing.user_data_32 {
        R::ExistsWithDifferentUserData32
    } else if existing.timeout_s != event.timeout_s {
        R::ExistsWithDifferentTimeout
    } else if event.asset.is_some_and(|asset| asset != existing.asset) {
        R::ExistsWithDifferentAsset
    } else if event.code != 0 && event.code != existing.code {
        R::ExistsWithDifferentCode
    } else {
        R::Exists
    }
}

#[cfg(test)]
mod tests;

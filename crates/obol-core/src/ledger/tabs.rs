//! Tabs in the ledger: [`Tabs`], the table of every tab opened, and the tab commands
//! (`Op::Tab`) the ledger applies.
//!
//! The table and what a command changes in a tab alone (a voucher, a commitment or a tick
//! accepted, a top-up's larger escrow noted, the tab closed) belong to [`Tabs`]. What moves
//! money for a tab (holding its escrow, voiding it for a larger one, posting the settlement) and
//! what checks the device that signs for it are the ledger's, because they touch balances,
//! pending transfers, the identity registry and the payer's counters in the same `apply`.

use foldhash::fast::FixedState;

use super::{CreateTransferResult, Ledger, Map, NS_PER_S, NewTransfer, PendingStatus, TransferFlags};
use crate::channel::{Commitment, PayReject, TAB_TRANSFER_CODE, Tab, TabCommand, TabEntry, TabResult, Voucher};

/// Every tab the ledger holds, open or settled: a vector in the order they opened, with a
/// 20-byte index entry per tab (about 200 bytes per tab in all; PayWord state is boxed in the
/// tab because few tabs use it).
#[derive(Clone, Debug)]
pub(super) struct Tabs {
    /// The tabs, in the order they opened.
    entries: Vec<TabEntry>,
    /// Tab id (as bytes: 4-byte alignment keeps an entry at 20 bytes) to its index in `entries`.
    index: Map<[u8; 16], u32>,
}

impl Tabs {
    /// No tabs; `hasher` keys the id index.
    pub(super) fn new(hasher: FixedState) -> Tabs {
        Tabs { entries: Vec::new(), index: Map::with_hasher(hasher) }
    }

    fn entries(&self) -> &[TabEntry] {
        &self.entries
    }

    fn get(&self, id: u128) -> Option<&TabEntry> {
        let index = *self.index.get(&id.to_le_bytes())?;
        self.entries.get(index as usize)
    }

    fn get_mut(&mut self, id: u128) -> Option<&mut TabEntry> {
        let index = *self.index.get(&id.to_le_bytes())?;
        self.entries.get_mut(index as usize)
    }

    fn contains(&self, id: u128) -> bool {
        self.index.contains_key(&id.to_le_bytes())
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds a tab that just opened.
    #[expect(
        clippy::expect_used,
        reason = "tabs are bounded by records (8190 events each), far below 2^32 in any memory"
    )]
    fn insert(&mut self, tab: Tab) {
        let id = tab.id;
        let index = u32::try_from(self.entries.len()).expect("fewer than 2^32 tabs");
        if self.entries.len() == self.entries.capacity() {
            // Grow by an eighth, not double: a million tabs then waste at most 12.5%,
            // and the allocator moves large blocks by remapping pages, not copying.
            self.entries.reserve_exact((self.entries.len() / 8).max(1024));
        }
        self.entries.push(TabEntry { tab, last_signature: [0; 64] });
        self.index.insert(id.to_le_bytes(), index);
    }

    /// Accepts a voucher whose signature the shell verified, and keeps its signature.
    fn accept_voucher(&mut self, voucher: &Voucher, now_ns: u64) -> TabResult {
        let Some(entry) = self.get_mut(voucher.tab_id) else { return TabResult::NotFound };
        match entry.tab.accept_verified_voucher(voucher, now_ns) {
            Ok(added) => {
                entry.last_signature = voucher.signature;
                TabResult::Ok { added }
            }
            Err(reject) => TabResult::Rejected(reject),
        }
    }

    /// Accepts a PayWord commitment signed by `key`.
    fn accept_commitment(
        &mut self,
        commitment: &Commitment,
        key: &ed25519_dalek::VerifyingKey,
        now_ns: u64,
    ) -> TabResult {
        let Some(entry) = self.get_mut(commitment.tab_id) else { return TabResult::NotFound };
        match entry.tab.accept_commitment(commitment, key, now_ns) {
            Ok(()) => TabResult::Ok { added: 0 },
            Err(reject) => TabResult::Rejected(reject),
        }
    }

    /// Accepts a PayWord tick.
    fn accept_tick(&mut self, tab_id: u128, index: u32, word: &[u8; 32], now_ns: u64) -> TabResult {
        let Some(entry) = self.get_mut(tab_id) else { return TabResult::NotFound };
        match entry.tab.accept_tick(index, word, now_ns) {
            Ok(added) => TabResult::Ok { added },
            Err(reject) => TabResult::Rejected(reject),
        }
    }

    /// Notes a top-up: the tab's escrow is now `escrow`, held by `escrow_transfer_id`.
    fn renew_escrow(&mut self, tab_id: u128, escrow: u128, escrow_transfer_id: u128) {
        if let Some(entry) = self.get_mut(tab_id) {
            entry.tab.escrow = escrow;
            entry.tab.escrow_transfer_id = escrow_transfer_id;
        }
    }

    /// Notes a settlement: the tab takes no more payments.
    fn close(&mut self, tab_id: u128) {
        if let Some(entry) = self.get_mut(tab_id) {
            entry.tab.closed = true;
        }
    }

    /// `NotFound` if there is no such tab, else `reject`.
    fn missing_or(&self, tab_id: u128, reject: PayReject) -> TabResult {
        if self.get(tab_id).is_none() { TabResult::NotFound } else { TabResult::Rejected(reject) }
    }

    /// Up to `limit` ids of tabs that expired by `now_ns`, are not closed and that
    /// `settleable` keeps, oldest first.
    fn due(&self, now_ns: u64, limit: usize, settleable: impl Fn(&Tab) -> bool) -> Vec<u128> {
        self.entries
            .iter()
            .filter(|entry| !entry.tab.closed && entry.tab.expires_ns <= now_ns)
            .filter(|entry| settleable(&entry.tab))
            .take(limit)
            .map(|entry| entry.tab.id)
            .collect()
    }
}

impl Ledger {
    /// A tab.
    pub fn tab(&self, id: u128) -> Option<&TabEntry> {
        self.tabs.get(id)
    }

    /// The account a tab's escrow debits.
    pub fn tab_payer(&self, tab: &Tab) -> Option<u128> {
        self.transfer(tab.escrow_transfer_id).map(|escrow| escrow.debit_account_id)
    }

    /// Every tab, open or settled, in the order they opened (a tab's position never changes).
    pub fn tabs(&self) -> &[TabEntry] {
        self.tabs.entries()
    }

    /// How many tabs the ledger holds, open or settled.
    pub fn tabs_count(&self) -> usize {
        self.tabs.len()
    }

    /// Up to `limit` tabs that expired by `now_ns` and are not settled yet, oldest first: the
    /// shell settles them in one record. An expired tab's escrow stays held until then, so
    /// nothing it was paid is ever released back to the payer.
    pub fn tabs_due(&self, now_ns: u64, limit: usize) -> Vec<u128> {
        // A tab whose escrow is no longer pending cannot settle (only an older log can hold
        // one): leaving it out keeps it from holding up every tab behind it.
        self.tabs.due(now_ns, limit, |tab| self.pending_status(tab.escrow_transfer_id) == Some(PendingStatus::Pending))
    }

    /// Applies one tab command at `timestamp` (the escrow and settlement transfers get it).
    pub(super) fn apply_tab(&mut self, command: &TabCommand, timestamp: u64) -> TabResult {
        match *command {
            TabCommand::Open {
                tab_id,
                escrow_transfer_id,
                payer_account_id,
                payee_account_id,
                device_id,
                budget,
                asset,
                timeout_s,
            } => {
                if self.tabs.contains(tab_id) {
                    return TabResult::Exists;
                }
                if timeout_s == 0 {
                    return TabResult::Rejected(PayReject::TabExpired);
                }
                let owner = self.account(payer_account_id).map(|account| account.owner_id);
                if owner.is_some_and(|owner| self.identity.payment_frozen(owner, device_id, tab_id)) {
                    return TabResult::Rejected(PayReject::PayerFrozen);
                }
                let device_acts_for_owner = self.identity.device(device_id).is_some_and(|device| {
                    device.status == crate::identity::Status::Active && Some(device.holder_id) == owner
                });
                if owner.is_some() && !device_acts_for_owner {
                    return TabResult::Rejected(PayReject::DeviceInactive);
                }
                // The device will spend the escrow, so the escrow is one payment under its limits,
                // charged with the transfer in this one record, whatever route opened the tab.
                let day = crate::identity::utc_day(timestamp);
                if owner.is_some() && !self.identity.device_limits_allow(device_id, asset, day, budget) {
                    return TabResult::Rejected(PayReject::DeviceLimit);
                }
                // The escrow never times out: the tab settles it (on close, or once expired), so
                // what the payer paid is never released back by a timer.
                let escrow = NewTransfer {
                    id: escrow_transfer_id,
                    debit_account_id: payer_account_id,
                    credit_account_id: payee_account_id,
                    amount: budget,
                    pending_id: 0,
                    user_data_128: tab_id,
                    user_data_64: 0,
                    user_data_32: 0,
                    timeout_s: 0,
                    asset: Some(asset),
                    code: TAB_TRANSFER_CODE,
                    flags: TransferFlags(TransferFlags::PENDING),
                };
                match self.create_transfer(&escrow, timestamp) {
                    CreateTransferResult::Ok => {}
                    other => return TabResult::Escrow(other),
                }
                let charged = self.identity.charge_device(device_id, day, budget);
                assert_eq!(charged, crate::identity::IdentityResult::Ok, "the device's limits were checked");
                // The escrow is the payer's payment (a second factor that approved it is not
                // known here: the count errs toward asking again).
                self.count_payment(payer_account_id, budget, timestamp, false);
                self.tabs.insert(Tab {
                    id: tab_id,
                    payee_id: payee_account_id,
                    escrow: budget,
                    cumulative: 0,
                    escrow_transfer_id,
                    device_id,
                    expires_ns: timestamp.saturating_add(u64::from(timeout_s) * NS_PER_S),
                    seq: 0,
                    payword: None,
                    closed: false,
                });
                TabResult::Ok { added: 0 }
            }
            TabCommand::Voucher(voucher) => {
                if self.tab_frozen(voucher.tab_id) {
                    return TabResult::Rejected(PayReject::PayerFrozen);
                }
                if !self.tab_device_active(voucher.tab_id) {
                    return self.tabs.missing_or(voucher.tab_id, PayReject::DeviceInactive);
                }
                self.tabs.accept_voucher(&voucher, timestamp)
            }
            TabCommand::Commit(commitment) => {
                if self.tab_frozen(commitment.tab_id) {
                    return TabResult::Rejected(PayReject::PayerFrozen);
                }
                let Some(key) = self.tab_key(commitment.tab_id) else {
                    return self.tabs.missing_or(commitment.tab_id, PayReject::DeviceInactive);
                };
                self.tabs.accept_commitment(&commitment, &key, timestamp)
            }
            TabCommand::Tick { tab_id, index, word } => {
                if self.tab_frozen(tab_id) {
                    return TabResult::Rejected(PayReject::PayerFrozen);
                }
                if !self.tab_device_active(tab_id) {
                    return self.tabs.missing_or(tab_id, PayReject::DeviceInactive);
                }
                self.tabs.accept_tick(tab_id, index, &word, timestamp)
            }
            TabCommand::TopUp { tab_id, amount, void_transfer_id, escrow_transfer_id } => {
                let Some(tab) = self.tab(tab_id).map(|entry| entry.tab.clone()) else { return TabResult::NotFound };
                if tab.escrow_transfer_id == escrow_transfer_id {
                    // This top-up was applied already (a retry after a lost answer).
                    return TabResult::Exists;
                }
                if tab.closed {
                    return TabResult::Rejected(PayReject::TabClosed);
                }
                if timestamp >= tab.expires_ns {
                    return TabResult::Rejected(PayReject::TabExpired);
                }
                let Some(old) = self.transfer(tab.escrow_transfer_id).copied() else {
                    return TabResult::NotFound;
                };
                let Some(escrow) = tab.escrow.checked_add(amount) else {
                    return TabResult::Escrow(CreateTransferResult::OverflowsDebitsPending);
                };
                let day = crate::identity::utc_day(timestamp);
                if self.tab_frozen(tab_id) {
                    return TabResult::Rejected(PayReject::PayerFrozen);
                }
                if !self.tab_device_active(tab_id) {
                    return TabResult::Rejected(PayReject::DeviceInactive);
                }
                if !self.identity.device_limits_allow(tab.device_id, old.asset, day, amount) {
                    return TabResult::Rejected(PayReject::DeviceLimit);
                }
                let void = resolve_escrow(
                    void_transfer_id,
                    old.id,
                    tab_id,
                    0,
                    TransferFlags::VOID_PENDING | TransferFlags::LINKED,
                );
                let renewed = NewTransfer {
                    id: escrow_transfer_id,
                    amount: escrow,
                    flags: TransferFlags(TransferFlags::PENDING),
                    pending_id: 0,
                    debit_account_id: old.debit_account_id,
                    credit_account_id: old.credit_account_id,
                    asset: Some(old.asset),
                    code: TAB_TRANSFER_CODE,
                    ..void
                };
                let mut next_ts = timestamp;
                let results = self.create_transfers(&[void, renewed], &mut next_ts);
                if let Some(failed) = results.iter().copied().find(|result| *result != CreateTransferResult::Ok) {
                    let cause = results
                        .iter()
                        .copied()
                        .find(|r| *r != CreateTransferResult::Ok && *r != CreateTransferResult::LinkedEventFailed)
                        .unwrap_or(failed);
                    return TabResult::Escrow(cause);
                }
                self.tabs.renew_escrow(tab_id, escrow, escrow_transfer_id);
                let charged = self.identity.charge_device(tab.device_id, day, amount);
                assert_eq!(charged, crate::identity::IdentityResult::Ok, "the device's limits were checked");
                self.count_payment(old.debit_account_id, amount, timestamp, false);
                TabResult::Ok { added: 0 }
            }
            TabCommand::Settle { tab_id, settle_transfer_id } => {
                let Some(tab) = self.tab(tab_id).map(|entry| entry.tab.clone()) else { return TabResult::NotFound };
                if tab.closed {
                    return TabResult::Exists;
                }
                let post = resolve_escrow(
                    settle_transfer_id,
                    tab.escrow_transfer_id,
                    tab_id,
                    tab.cumulative,
                    TransferFlags::POST_PENDING,
                );
                match self.create_settlement_transfer(&post, timestamp) {
                    CreateTransferResult::Ok | CreateTransferResult::Exists => {
                        self.tabs.close(tab_id);
                        TabResult::Ok { added: 0 }
                    }
                    other => TabResult::Settlement(other),
                }
            }
        }
    }

    /// The verifying key of a tab's device, if the device may pay.
    fn tab_key(&self, tab_id: u128) -> Option<ed25519_dalek::VerifyingKey> {
        ed25519_dalek::VerifyingKey::from_bytes(&self.tab_device(tab_id)?.public_key).ok()
    }

    /// A tab's device, if it may pay (it exists and is active).
    fn tab_device(&self, tab_id: u128) -> Option<&crate::identity::Device> {
        let device = self.identity.device(self.tab(tab_id)?.tab.device_id)?;
        (device.status == crate::identity::Status::Active).then_some(device)
    }

    /// Whether the tab's payer froze payments into it (all of them, its device's, or its own).
    /// Free when nobody has frozen anything.
    pub fn tab_frozen(&self, tab_id: u128) -> bool {
        if !self.identity.any_frozen() {
            return false;
        }
        let Some(entry) = self.tab(tab_id) else { return false };
        let Some(device) = self.identity.device(entry.tab.device_id) else { return false };
        self.identity.payment_frozen(device.holder_id, device.id, tab_id)
    }

    /// Whether a tab's device may pay.
    fn tab_device_active(&self, tab_id: u128) -> bool {
        self.tab_device(tab_id).is_some()
    }
}

/// A transfer that posts (`amount` of) or voids a tab's escrow `pending_id`.
fn resolve_escrow(id: u128, pending_id: u128, tab_id: u128, amount: u128, flags: u16) -> NewTransfer {
    NewTransfer {
        id,
        debit_account_id: 0,
        credit_account_id: 0,
        amount,
        pending_id,
        user_data_128: tab_id,
        user_data_64: 0,
        user_data_32: 0,
        timeout_s: 0,
        asset: None,
        code: 0,
        flags: TransferFlags(flags),
    }
}

//! A payer's payment: transfers under the signing device's limits, counted for the paying
//! account in the same `apply` that makes them, with the record's time. One payment is one op
//! in one record; a refused payment counts nothing.

use super::{CreateTransferResult, Ledger, NewTransfer, PaymentEvidence};
use crate::money::Asset;

/// Transfers a holder or merchant asks for, with what the core checks and counts with them.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Payment {
    /// The device that signed the request (0: an API key asked). Its limits bound every payment
    /// among the transfers (asset, per payment, what is left of the UTC day) and its day is
    /// charged with those that go through.
    pub device_id: u128,
    /// Whether a second factor approved these payments (strong customer authentication): the
    /// paying account's counters since the last one start again.
    pub authenticated: bool,
    /// The transfers, applied as `Op::CreateTransfers` applies them.
    pub transfers: Vec<NewTransfer>,
}

/// What one paying account has paid that regulation counts, in the account's own units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PayerCounters {
    /// Payments since the last strongly authenticated one.
    pub sca_payments_since: u32,
    /// Paid since the last strongly authenticated payment.
    pub sca_amount_since: u128,
    /// The calendar month `month_total` counts (months since January 1970, UTC).
    pub month: u32,
    /// Paid in `month`.
    pub month_total: u128,
}

impl PayerCounters {
    /// The counters as of `month` (a new month's total starts from zero).
    pub fn as_of(mut self, month: u32) -> PayerCounters {
        if self.month != month {
            self.month = month;
            self.month_total = 0;
        }
        self
    }

    /// Counts one payment of `amount` in `month`.
    fn count(&mut self, amount: u128, month: u32, authenticated: bool) {
        *self = self.as_of(month);
        self.month_total = self.month_total.saturating_add(amount);
        if authenticated {
            self.sca_payments_since = 0;
            self.sca_amount_since = 0;
        } else {
            self.sca_payments_since = self.sca_payments_since.saturating_add(1);
            self.sca_amount_since = self.sca_amount_since.saturating_add(amount);
        }
    }
}

/// Months since January 1970 of a time in ns since the epoch (UTC calendar months).
pub fn utc_month(now_ns: u64) -> u32 {
    // Howard Hinnant's civil-from-days, on days since 1970-01-01.
    let days = (now_ns / 86_400_000_000_000) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    ((year - 1970) * 12 + (month - 1)).max(0) as u32
}

impl Ledger {
    /// The paying account's counters as of `now_ns` (a new month's total starts from zero).
    pub fn payer_counters(&self, account_id: u128, now_ns: u64) -> PayerCounters {
        self.payers.get(&account_id).copied().unwrap_or_default().as_of(utc_month(now_ns))
    }

    /// Whether the holder of an account these transfers would newly debit froze its payments
    /// (all of them, or `device_id`'s). Posts and voids of what was reserved before, and retries
    /// of transfers made (answered `exists`), are not new payments. Free while nothing is frozen.
    pub fn payment_frozen(&self, device_id: u128, transfers: &[NewTransfer]) -> bool {
        self.identity.any_frozen()
            && transfers
                .iter()
                .filter(|event| !event.flags.resolves_pending() && self.transfer(event.id).is_none())
                .any(|event| {
                    self.account(event.debit_account_id)
                        .is_some_and(|account| self.identity.payment_frozen(account.owner_id, device_id, 0))
                })
    }

    /// How the payment that made transfer `id` was authenticated (payments by `Op::Pay` only).
    pub fn payment_evidence(&self, id: u128) -> Option<PaymentEvidence> {
        self.payment_evidence.get(&id).copied()
    }

    /// Counts a payment of `amount` from `account_id` at `now_ns` (tab escrows count here too).
    pub(super) fn count_payment(&mut self, account_id: u128, amount: u128, now_ns: u64, authenticated: bool) {
        self.payers.entry(account_id).or_default().count(amount, utc_month(now_ns), authenticated);
    }

    /// Counts the plain transfers (`Op::CreateTransfers`) that went through from accounts a
    /// holder or merchant owns, as not strongly authenticated: payments in logs written before
    /// `Op::Pay`, and an operator's moves out of an owned account (the count errs toward asking
    /// again).
    pub(super) fn count_owned_payments(
        &mut self,
        events: &[NewTransfer],
        results: &[CreateTransferResult],
        now_ns: u64,
    ) {
        for (event, result) in events.iter().zip(results) {
            if *result != CreateTransferResult::Ok || event.flags.resolves_pending() {
                continue;
            }
            let owned = self.account(event.debit_account_id).is_some_and(|account| account.owner_id != 0);
            if owned {
                self.count_payment(event.debit_account_id, event.amount, now_ns, false);
            }
        }
    }

    /// The asset a transfer request moves: its own, or its debit account's.
    fn asset_of(&self, event: &NewTransfer) -> Option<Asset> {
        event.asset.or_else(|| self.account(event.debit_account_id).map(|a| a.asset))
    }

    /// Applies a payment at `now_ns`: refuses every transfer (`device_limit_exceeded`) if its
    /// new payments do not fit the device's limits together; otherwise applies them, then charges
    /// the device's day and counts for each paying account only those that went through.
    pub(super) fn apply_payment(&mut self, payment: &Payment, next_ts: &mut u64) -> Vec<CreateTransferResult> {
        let now_ns = *next_ts;
        let day = crate::identity::utc_day(now_ns);
        // A holder that froze its payments (all, or this device's) pays nothing new; posts and
        // voids of what was reserved before still resolve.
        let frozen = self.payment_frozen(payment.device_id, &payment.transfers);
        if frozen {
            return vec![CreateTransferResult::PayerFrozen; payment.transfers.len()];
        }
        if payment.device_id != 0 {
            // A transfer whose id exists moves nothing (the ledger answers that it exists): a
            // retry of a payment made is not charged again.
            let payments: Option<Vec<(Asset, u128)>> = payment
                .transfers
                .iter()
                .filter(|event| !event.flags.resolves_pending() && self.transfer(event.id).is_none())
                .map(|event| Some((self.asset_of(event)?, event.amount)))
                .collect();
            let fits = payments.is_some_and(|payments| self.identity.device_allows(payment.device_id, &payments, day));
            if !fits {
                return vec![CreateTransferResult::DeviceLimitExceeded; payment.transfers.len()];
            }
        }
        let results = self.create_events(&payment.transfers, next_ts, Ledger::create_request_transfer);
        let mut charged: u128 = 0;
        for (event, result) in payment.transfers.iter().zip(&results) {
            if *result == CreateTransferResult::Ok && !event.flags.resolves_pending() {
                charged = charged.saturating_add(event.amount);
                self.count_payment(event.debit_account_id, event.amount, now_ns, payment.authenticated);
                let evidence = PaymentEvidence { device_id: payment.device_id, authenticated: payment.authenticated };
                self.payment_evidence.insert(event.id, evidence);
            }
        }
        if payment.device_id != 0 && charged > 0 {
            self.identity.device_paid(payment.device_id, day, charged);
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_utc_calendar_months() {
        assert_eq!(utc_month(0), 0);
        // 2025-01-31T23:59:59Z and 2025-02-01T00:00:00Z.
        assert_eq!(utc_month(1_738_367_999 * 1_000_000_000), 55 * 12);
        assert_eq!(utc_month(1_738_368_000 * 1_000_000_000), 55 * 12 + 1);
        // 2024-02-29 is in February of a leap year; 2024-03-01 in March.
        assert_eq!(utc_month(1_709_164_800 * 1_000_000_000), 54 * 12 + 1);
        assert_eq!(utc_month(1_709_251_200 * 1_000_000_000), 54 * 12 + 2);
    }

    #[test]
    fn counters_restart_at_strong_authentication_and_at_a_new_month() {
        let mut counters = PayerCounters::default();
        counters.count(100, 5, false);
        counters.count(250, 5, false);
        assert_eq!(
            counters,
            PayerCounters { sca_payments_since: 2, sca_amount_since: 350, month: 5, month_total: 350 }
        );
        counters.count(40, 5, true);
        assert_eq!(counters, PayerCounters { sca_payments_since: 0, sca_amount_since: 0, month: 5, month_total: 390 });
        counters.count(10, 6, false);
        assert_eq!(counters, PayerCounters { sca_payments_since: 1, sca_amount_since: 10, month: 6, month_total: 10 });
        assert_eq!(counters.as_of(7).month_total, 0);
    }
}

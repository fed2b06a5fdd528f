//! Refunds: a payee gives back all or part of a payment, as many times as it likes up to what
//! was paid. Each refund is an ordinary transfer from the account the payment credited to the
//! account it debited, with the code [`REFUND_CODE`] and the payment's id in `user_data_128`, so
//! the ledger itself says what was refunded; a refund id is idempotent like any transfer id.
//! Many small refunds (to one payer or many) go in one request, one record: one ledger batch.
//!
//! Refunds take the payment pipeline (authorization, device limits, the holder's own step-up
//! policy) after one check of their own, made under a lock with the record it leads to: what a
//! payment has been refunded, refunds of the same request included, never passes what it paid.
//! The risk policy sees them as `refund`s and may block one; it never holds or challenges one
//! (giving a payer back what it paid protects nobody by waiting, and a held refund could not be
//! checked again against what is left), and refunds count in no streaming feature.

use std::collections::HashMap;

use obol_core::identity::Scopes;
use obol_core::ledger::{CreateTransferResult, NewTransfer, Transfer, TransferFlags};

use crate::auth::Caller;
use crate::authz::{can_debit, can_see_transfer, need_scope};
use crate::error::Error;
use crate::{App, read_ledger};

/// The transfer code of refunds.
pub const REFUND_CODE: u16 = 0xF0D;

/// One refund asked: of payment `payment`, with the refund's own transfer id, for `amount`
/// (default: all that is left).
#[derive(Clone, Copy, Debug)]
pub struct RefundAsk<'a> {
    /// The payment's transfer id.
    pub payment: &'a str,
    /// The refund's transfer id (the client's: a retry with it answers the refund made).
    pub id: &'a str,
    /// Minor units; all that is left of the payment if absent.
    pub amount: Option<&'a str>,
}

/// What each payment was refunded, per payee account: a cache of the ledger, filled by one scan
/// of an account's history the first time one of its payments is refunded, then kept by the
/// refund route itself (the refund code is that route's alone). Held under `App::refunds`.
#[derive(Default, Debug)]
pub struct RefundBook {
    accounts: HashMap<u128, HashMap<u128, u128>>,
}

/// Payee accounts the book keeps at most before it starts again from the ledger.
const BOOK_ACCOUNTS_MAX: usize = 100_000;

impl RefundBook {
    /// What `payment` was refunded so far.
    pub(crate) fn refunded(&mut self, ledger: &obol_core::ledger::Ledger, payment: &Transfer) -> u128 {
        self.totals(ledger, payment.credit_account_id).get(&payment.id).copied().unwrap_or(0)
    }

    fn totals(&mut self, ledger: &obol_core::ledger::Ledger, account: u128) -> &mut HashMap<u128, u128> {
        if self.accounts.len() >= BOOK_ACCOUNTS_MAX && !self.accounts.contains_key(&account) {
            self.accounts.clear();
        }
        self.accounts.entry(account).or_insert_with(|| {
            let mut totals: HashMap<u128, u128> = HashMap::new();
            for entry in ledger.account_history_from(account, 0).into_iter().flatten() {
                let t = entry.transfer;
                if t.code == REFUND_CODE && t.debit_account_id == account && !t.flags.has(TransferFlags::PENDING) {
                    let total = totals.entry(t.user_data_128).or_insert(0);
                    *total = total.saturating_add(t.amount);
                }
            }
            totals
        })
    }
}

fn is_refund_of(transfer: &Transfer, payment: &Transfer) -> bool {
    transfer.code == REFUND_CODE
        && transfer.user_data_128 == payment.id
        && transfer.debit_account_id == payment.credit_account_id
        && transfer.credit_account_id == payment.debit_account_id
        && !transfer.flags.has(TransferFlags::PENDING)
}

/// Refunds, all in one record: the payee of each payment (or the operator) asks. Answers one
/// result per refund, in order (`ok`, `exists` for a retry, or the ledger's refusal).
pub async fn refund(
    state: &App,
    caller: &Caller,
    asks: &[RefundAsk<'_>],
    approval: Option<&str>,
) -> Result<Vec<CreateTransferResult>, Error> {
    need_scope(caller, Scopes::PAY)?;
    crate::transfers::batch_size(asks.len())?;
    // One check-and-record at a time: two refunds of one payment cannot both see its remainder.
    let mut book = state.refunds.lock().await;
    let mut events = Vec::with_capacity(asks.len());
    {
        let ledger = read_ledger(state);
        let mut asked: HashMap<u128, u128> = HashMap::new();
        for ask in asks {
            let payment_id = crate::parse_id("payment", ask.payment)?;
            let id = crate::parse_id("id", ask.id)?;
            let payment = ledger
                .transfer(payment_id)
                .filter(|t| can_see_transfer(caller, &ledger, t))
                .ok_or(Error::TransferNotFound(payment_id))?;
            let payee = ledger.account(payment.credit_account_id).ok_or(Error::TransferNotFound(payment_id))?;
            if !can_debit(caller, payee) {
                return Err(Error::Forbidden(format!("only the payee of transfer {payment_id} refunds it")));
            }
            let booked = !payment.flags.has(TransferFlags::PENDING)
                && !payment.flags.has(TransferFlags::VOID_PENDING)
                && payment.code != REFUND_CODE;
            if !booked {
                return Err(Error::InvalidField(format!(
                    "transfer {payment_id} is not a payment that can be refunded (a pending, voided or refund transfer)"
                )));
            }
            let amount = match ask.amount {
                Some(text) => Some(crate::parse_amount("amount", text)?),
                None => None,
            };
            // A retry of a refund made: the ledger answers it (exists), nothing is counted twice.
            if let Some(existing) = ledger.transfer(id) {
                let same = is_refund_of(existing, payment) && amount.is_none_or(|a| a == existing.amount);
                if !same {
                    return Err(Error::IdTaken(id));
                }
                events.push(refund_event(id, payment, existing.amount));
                continue;
            }
            let refunded = book.totals(&ledger, payment.credit_account_id).get(&payment_id).copied().unwrap_or(0);
            let pending = asked.entry(payment_id).or_insert(0);
            // What disputes claim (open ones, and what a payer holds of closed ones) is not
            // refunded again.
            let disputed = crate::disputes::claimed_from_refunds(&ledger, payment_id)?;
            let left = payment.amount.saturating_sub(refunded).saturating_sub(*pending).saturating_sub(disputed);
            let amount = amount.unwrap_or(left);
            if amount == 0 || amount > left {
                return Err(Error::RefundExceedsPayment { payment: payment_id, left: left.to_string() });
            }
            *pending = pending.saturating_add(amount);
            events.push(refund_event(id, payment, amount));
        }
    }
    let results = crate::transfers::pay_refunds(state, caller, events.clone(), approval).await?;
    for (event, result) in events.iter().zip(&results) {
        if *result == CreateTransferResult::Ok {
            let total =
                book.totals(&read_ledger(state), event.debit_account_id).entry(event.user_data_128).or_insert(0);
            *total = total.saturating_add(event.amount);
        }
    }
    Ok(results)
}

/// What a payment was refunded so far (from the book, filled from the ledger on first use).
pub async fn refunded(state: &App, payment: &Transfer) -> u128 {
    let mut book = state.refunds.lock().await;
    let ledger = read_ledger(state);
    book.totals(&ledger, payment.credit_account_id).get(&payment.id).copied().unwrap_or(0)
}

fn refund_event(id: u128, payment: &Transfer, amount: u128) -> NewTransfer {
    NewTransfer {
        id,
        debit_account_id: payment.credit_account_id,
        credit_account_id: payment.debit_account_id,
        amount,
        pending_id: 0,
        user_data_128: payment.id,
        user_data_64: 0,
        user_data_32: 0,
        timeout_s: 0,
        asset: Some(payment.asset),
        code: REFUND_CODE,
        flags: TransferFlags(0),
    }
}

//! ISO 20022 `camt.053.001.08` bank-to-customer statements of one account, for the account's
//! owner and for auditors (GDPR art. 20 portability; reconciliation).
//!
//! Micropayments are many and small, so a statement books them as **daily batch entries**: one
//! `Ntry` per UTC day and direction (credit or debit) with the day's total, the batch's count
//! (`NtryDtls/Btch/NbOfTxs`) and each transfer in `TxDtls` (its id as `EndToEndId`, its amount).
//! Only what moved posted balances is booked: a pending transfer reserves and books nothing, a
//! void books nothing, a post books the amount posted. The opening balance (`OPBD`) plus credits
//! minus debits is the closing balance (`CLBD`), which is the account's posted balance at the end
//! of the period.
//!
//! Amounts are the account's integer units written as a decimal of the asset's code: the schema
//! allows at most 5 fraction digits and 18 digits in all, so an account counting finer units (USD
//! at scale 9) has a statement only where every amount fits exactly; otherwise the request is
//! refused and the JSON export, which is exact, is the way.

use std::fmt::Write as _;

use obol_core::identity::Scopes;
use obol_core::ledger::{Transfer, TransferFlags};

use crate::auth::Caller;
use crate::authz::{can_see_account, need_scope};
use crate::error::Error;
use crate::{App, read_ledger};

/// The schema's namespace.
pub const CAMT053_NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08";
/// Fraction digits the schema's amounts allow.
const FRACTION_DIGITS_MAX: u8 = 5;
/// Digits the schema's amounts allow in all.
const TOTAL_DIGITS_MAX: usize = 18;
/// Transfers one statement books at most (a longer history: ask for a shorter period).
pub const STATEMENT_TRANSFERS_MAX: usize = 100_000;
const NS_PER_DAY: u64 = 86_400_000_000_000;

/// One day's booked transfers in one direction.
struct Batch {
    day: u64,
    credit: bool,
    total: u128,
    transfers: Vec<(u128, u128)>,
}

/// An id as the schema's text of at most `max` characters: decimal if it fits, else `0x` and hex.
fn id_text(id: u128, max: usize) -> String {
    let decimal = id.to_string();
    if decimal.len() <= max { decimal } else { format!("0x{id:x}") }
}

/// `units` at `scale` as the schema's decimal (at most 5 fraction digits and 18 digits), or why not.
fn amount_text(units: u128, scale: u8) -> Result<String, Error> {
    let refuse = |why: &str| {
        Error::InvalidQuery(format!(
            "a camt.053 amount {why}; this account's amounts do not fit: use the JSON export (GET /v1/principals/{{id}}/export)"
        ))
    };
    let (units, scale) = if scale > FRACTION_DIGITS_MAX {
        let divisor = 10u128.pow(u32::from(scale - FRACTION_DIGITS_MAX));
        if !units.is_multiple_of(divisor) {
            return Err(refuse("has at most 5 fraction digits"));
        }
        (units / divisor, FRACTION_DIGITS_MAX)
    } else {
        (units, scale)
    };
    let digits = format!("{units:0>width$}", width = usize::from(scale) + 1);
    if digits.len() > TOTAL_DIGITS_MAX {
        return Err(refuse("has at most 18 digits"));
    }
    let (whole, fraction) = digits.split_at(digits.len() - usize::from(scale));
    Ok(if fraction.is_empty() { whole.to_string() } else { format!("{whole}.{fraction}") })
}

/// What a transfer booked on `account_id`: (credit?, amount), or `None` if it booked nothing.
fn booked(transfer: &Transfer, account_id: u128) -> Option<(bool, u128)> {
    if transfer.flags.has(TransferFlags::PENDING) || transfer.flags.has(TransferFlags::VOID_PENDING) {
        return None;
    }
    if transfer.amount == 0 {
        return None;
    }
    Some((transfer.credit_account_id == account_id, transfer.amount))
}

/// A balance element: `Tp/CdOrPrtry/Cd`, `Amt`, `CdtDbtInd`, `Dt/Dt`.
fn balance(
    xml: &mut String,
    code: &str,
    credits: u128,
    debits: u128,
    asset: (&str, u8),
    day: u64,
) -> Result<(), Error> {
    let (amount, indicator) = if credits >= debits { (credits - debits, "CRDT") } else { (debits - credits, "DBIT") };
    let _ = write!(
        xml,
        "<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy=\"{}\">{}</Amt><CdtDbtInd>{indicator}</CdtDbtInd><Dt><Dt>{}</Dt></Dt></Bal>",
        asset.0,
        amount_text(amount, asset.1)?,
        obol_core::time::iso_date(day)
    );
    Ok(())
}

/// Account `account_id`'s statement for `[from_ns, to_ns)` (default: from its opening to now),
/// as camt.053.001.08 XML. The caller must be allowed to see the account.
pub fn camt053(
    state: &App,
    caller: &Caller,
    account_id: &str,
    from_ns: Option<u64>,
    to_ns: Option<u64>,
) -> Result<String, Error> {
    need_scope(caller, Scopes::READ)?;
    let account_id = crate::parse_id("id", account_id)?;
    let now_ns = state.env.now_ns();
    let ledger = read_ledger(state);
    let account =
        ledger.account(account_id).filter(|a| can_see_account(caller, a)).ok_or(Error::AccountNotFound(account_id))?;
    let from_ns = from_ns.unwrap_or(account.timestamp);
    let to_ns = to_ns.unwrap_or(now_ns.max(ledger.timestamp_last()).saturating_add(1));
    if from_ns >= to_ns {
        return Err(Error::InvalidQuery("from must be before to".into()));
    }
    let (asset_code, asset_scale) = (account.asset.code().to_string(), account.asset.scale());
    let asset = (asset_code.as_str(), asset_scale);
    let (mut opening_credits, mut opening_debits) = (0u128, 0u128);
    let mut batches: Vec<Batch> = Vec::new();
    let mut booked_count = 0usize;
    let overflow = || Error::Internal("a statement total overflowed".into());
    for entry in ledger.account_history_from(account_id, 0).into_iter().flatten() {
        let transfer = &entry.transfer;
        if transfer.timestamp >= to_ns {
            break;
        }
        let Some((credit, amount)) = booked(transfer, account_id) else { continue };
        if transfer.timestamp < from_ns {
            let sum = if credit { &mut opening_credits } else { &mut opening_debits };
            *sum = sum.checked_add(amount).ok_or_else(overflow)?;
            continue;
        }
        booked_count += 1;
        if booked_count > STATEMENT_TRANSFERS_MAX {
            return Err(Error::InvalidQuery(format!(
                "the period books more than {STATEMENT_TRANSFERS_MAX} transfers; ask for a shorter one (from, to)"
            )));
        }
        let day = transfer.timestamp / NS_PER_DAY * NS_PER_DAY;
        match batches.iter_mut().rev().find(|b| b.day == day && b.credit == credit) {
            Some(batch) => {
                batch.total = batch.total.checked_add(amount).ok_or_else(overflow)?;
                batch.transfers.push((transfer.id, amount));
            }
            None => batches.push(Batch { day, credit, total: amount, transfers: vec![(transfer.id, amount)] }),
        }
    }
    drop(ledger);
    let (mut closing_credits, mut closing_debits) = (opening_credits, opening_debits);
    for batch in &batches {
        let sum = if batch.credit { &mut closing_credits } else { &mut closing_debits };
        *sum = sum.checked_add(batch.total).ok_or_else(overflow)?;
    }
    let mut xml = String::with_capacity(1024 + booked_count * 160);
    let _ = write!(
        xml,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Document xmlns=\"{CAMT053_NAMESPACE}\"><BkToCstmrStmt>\
         <GrpHdr><MsgId>OBOL-{now_ns:x}</MsgId><CreDtTm>{}</CreDtTm></GrpHdr>\
         <Stmt><Id>{}</Id><ElctrncSeqNb>1</ElctrncSeqNb><CreDtTm>{}</CreDtTm>\
         <FrToDt><FrDtTm>{}</FrDtTm><ToDtTm>{}</ToDtTm></FrToDt>\
         <Acct><Id><Othr><Id>{}</Id></Othr></Id><Ccy>{}</Ccy></Acct>",
        obol_core::time::rfc3339(u128::from(now_ns)),
        id_text(account_id, 35),
        obol_core::time::rfc3339(u128::from(now_ns)),
        obol_core::time::rfc3339(u128::from(from_ns)),
        obol_core::time::rfc3339(u128::from(to_ns.saturating_sub(1))),
        id_text(account_id, 34),
        asset.0,
    );
    balance(&mut xml, "OPBD", opening_credits, opening_debits, asset, from_ns)?;
    balance(&mut xml, "CLBD", closing_credits, closing_debits, asset, to_ns.saturating_sub(1))?;
    for batch in &batches {
        let indicator = if batch.credit { "CRDT" } else { "DBIT" };
        let day = obol_core::time::iso_date(batch.day);
        let _ = write!(
            xml,
            "<Ntry><Amt Ccy=\"{}\">{}</Amt><CdtDbtInd>{indicator}</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>\
             <BookgDt><Dt>{day}</Dt></BookgDt><ValDt><Dt>{day}</Dt></ValDt>\
             <BkTxCd><Prtry><Cd>OBOL-MICROPAYMENTS</Cd></Prtry></BkTxCd>\
             <NtryDtls><Btch><NbOfTxs>{}</NbOfTxs><TtlAmt Ccy=\"{}\">{}</TtlAmt><CdtDbtInd>{indicator}</CdtDbtInd></Btch>",
            asset.0,
            amount_text(batch.total, asset.1)?,
            batch.transfers.len(),
            asset.0,
            amount_text(batch.total, asset.1)?,
        );
        for (id, amount) in &batch.transfers {
            let _ = write!(
                xml,
                "<TxDtls><Refs><EndToEndId>{}</EndToEndId></Refs><Amt Ccy=\"{}\">{}</Amt><CdtDbtInd>{indicator}</CdtDbtInd></TxDtls>",
                id_text(*id, 35),
                asset.0,
                amount_text(*amount, asset.1)?
            );
        }
        xml.push_str("</NtryDtls></Ntry>");
    }
    xml.push_str("</Stmt></BkToCstmrStmt></Document>\n");
    Ok(xml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_decimals_within_the_schemas_digits() {
        assert_eq!(amount_text(125, 2).unwrap(), "1.25");
        assert_eq!(amount_text(5, 2).unwrap(), "0.05");
        assert_eq!(amount_text(0, 2).unwrap(), "0.00");
        assert_eq!(amount_text(7, 0).unwrap(), "7");
        assert_eq!(amount_text(1_250_000_000, 9).unwrap(), "1.25000");
        assert!(amount_text(1_250_000_001, 9).is_err(), "a nano-dollar does not fit in 5 fraction digits");
        assert!(amount_text(10u128.pow(18), 0).is_err(), "19 digits");
        assert_eq!(amount_text(10u128.pow(17), 0).unwrap().len(), 18);
    }

    #[test]
    fn long_ids_become_hex_within_the_schemas_length() {
        assert_eq!(id_text(42, 35), "42");
        let long = id_text(u128::MAX - 1, 35);
        assert!(long.starts_with("0x") && long.len() <= 35, "{long}");
        assert!(id_text(u128::MAX - 1, 34).len() <= 34);
    }
}

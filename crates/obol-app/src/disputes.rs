//! Disputes: a payer (or the operator for it) contests a payment within its legal window; the
//! payee answers; the law's timers and an operator's decision resolve it; every step that moves
//! money is a ledger transfer and every step an audit note.
//!
//! **Money.** Opening a dispute holds the disputed amount on the payee's account: a pending
//! transfer from the payee to the payer (as much of it as the payee's balance covers then). The
//! payer's provisional credit posts that hold; a payer who wins keeps it (or the hold is posted
//! then); a payee who wins, or a withdrawn dispute, voids the hold or, once credited, takes the
//! credit back by a balancing transfer (at most what the payer has left). These transfers carry
//! [`DISPUTE_TRANSFER_CODE`] and go through `Op::Dispute`, the only op the ledger lets use that
//! code or touch such a hold: neither side can post or void a hold by a request. Their ids are
//! drawn at random when the dispute opens and kept in it, so a retried step is answered
//! `exists` and never moves money twice; what a dispute has held, credited and taken back is
//! read from the ledger, never from the dispute's own record.
//!
//! **Timers.** The law follows the payment's currency (`USD`: US Regulation E on the Federal
//! Reserve calendar; `EUR` and every other currency: EU PSD2 on the TARGET2 calendar; `KRW`:
//! Korea), on the business-day calendar in force on the day the dispute opened
//! ([`obol_rules::timers`]). Regulation E's periodic statement is taken as the last day of the
//! payment's month. The server's sweep ([`sweep`]) credits the payer when it is due and resolves
//! in the payer's favour a dispute whose payee missed its answer, or whose investigation ran out
//! of time.
//!
//! **Liability.** An unauthorised-payment dispute resolved for the payer returns what the law
//! leaves the provider to bear ([`obol_rules::liability`]: PSD2 art. 74, Reg E 1005.6(b),
//! Korea's EFTA art. 9), computed from the evidence obol recorded (strong authentication or
//! not); the decision and its reasons stay with the dispute.
//!
//! **Evidence.** obol gathers the payment's own evidence (the device that signed it, a second
//! factor or not, the tab's latest voucher signature, and the payer's earlier undisputed payments
//! to the same payee from the same device 120 to 365 days before, as Visa's Compelling Evidence
//! 3.0 weighs them); each side adds a statement.

use std::sync::OnceLock;

use obol_core::identity::{Role, Scopes};
use obol_core::ledger::{
    CreateTransferResult, DISPUTE_TRANSFER_CODE, Ledger, NewTransfer, OpResults, Transfer, TransferFlags,
};
use obol_core::record::Op;
use obol_rules::calendar::{Calendar, Calendars, Day};
use obol_rules::liability::{self, Liability, Psd2Evidence, RegEFacts, Taken};
use obol_rules::timers::{self, Action, Claim, Deadlines, Facts, Progress, Regime};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::authz::{need_role, need_scope, owns, sees_everything};
use crate::error::Error;
use crate::{App, read_ledger};

/// The state table's prefix of disputes: `dispute/<id, 32 hex digits>`.
const DISPUTE_PREFIX: &str = "dispute/";
/// The index of a payment's disputes: `dispute-of/<payment>/<dispute>`.
const BY_PAYMENT_PREFIX: &str = "dispute-of/";
/// Characters a statement may hold.
pub const STATEMENT_CHARS_MAX: usize = 2_000;
/// Disputes one listing returns at most.
pub const LIST_LIMIT_MAX: usize = 1_000;
/// History entries of the payer's account read for earlier payments (Compelling Evidence 3.0).
const HISTORY_SCAN_MAX: usize = 100_000;

/// What the payer claims.
pub const REASONS: &[&str] = &["unauthorised", "not_received", "not_as_described", "duplicate", "amount_wrong"];

/// Why a dispute ended (each has a plain-language explanation, `dispute.<reason>`).
pub const OUTCOME_REASONS: &[&str] =
    &["payee_accepted", "decided", "payee_missed_answer", "investigation_deadline", "withdrawn"];

/// Liability reasons of a dispute the timers resolved (a provider's missed deadline: the payer
/// bears nothing), beside [`obol_rules::liability::REASON_CODES`].
pub const DEADLINE_REASONS: &[&str] = &["payee_missed_answer", "investigation_deadline"];

/// A dispute's status.
pub const STATUSES: &[&str] = &["open", "under_review", "resolved_payer", "resolved_payee", "withdrawn"];

/// Days before a disputed payment that earlier undisputed payments count for Compelling Evidence
/// 3.0 (120 to 365).
const CE3_DAYS: (u64, u64) = (120, 365);
const NS_PER_DAY: u64 = 86_400_000_000_000;

/// The deadlines of a dispute, as ISO dates.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct DeadlinesDto {
    /// The last day a notice was timely.
    pub notice_by: String,
    /// The payee answers by the end of this day; a payee that does not loses.
    pub payee_answer_by: String,
    /// The payer is provisionally credited from this day ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisional_credit_from: Option<String>,
    /// ... and at the latest on this day, unless resolved before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisional_credit_by: Option<String>,
    /// Resolved by this day without provisional credit.
    pub resolve_by: String,
    /// Resolved by this day at the latest, with provisional credit given.
    pub resolve_by_extended: String,
}

/// The authentication evidence obol recorded for the disputed payment.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct EvidenceDto {
    /// The device whose signature asked for the payment (none: an API key, or not recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// How the payment was asked for: `device_signature`, `voucher_signature`, `api_key` or
    /// `not_recorded` (payments from logs before evidence was kept).
    pub signed_by: String,
    /// A second factor approved it (strong customer authentication).
    pub strong_authentication: bool,
    /// A tab's latest voucher signature (hex), signed by the payer's device over the cumulative
    /// amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voucher_signature: Option<String>,
    /// The payer's earlier payments to the same payee, from the same device, 120 to 365 days
    /// before this one, never disputed.
    pub prior_undisputed_count: u32,
    /// Visa Compelling Evidence 3.0 holds: at least two such payments, matching in device id
    /// and user id.
    pub compelling_evidence_3: bool,
}

/// Who bears the loss of an unauthorised payment, and why.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct LiabilityDto {
    /// What the payer bears (minor units of the payment's asset).
    pub payer_bears: String,
    /// What the providers bear.
    pub provider_bears: String,
    /// A payee that refused strong customer authentication reimburses the payer's provider.
    pub payee_reimburses: bool,
    /// Reason codes, in order (each has a plain-language explanation).
    pub reasons: Vec<String>,
}

/// The money a dispute moved, read from the ledger.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
pub struct MoneyDto {
    /// Held on the payee's account when the dispute opened.
    pub held: String,
    /// Credited to the payer (the hold posted).
    pub credited: String,
    /// Taken back from the payer after a credit (the payee won, or the payer withdrew).
    pub taken_back: String,
    /// The hold was released to the payee without a credit.
    pub released: bool,
}

/// One dispute.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct DisputeDto {
    /// Dispute id (decimal; the client's, idempotent).
    pub id: String,
    /// The disputed payment's transfer id (a tab's settlement for a tab).
    pub payment: String,
    /// The tab, when a tab's payments are disputed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tab: Option<String>,
    /// The paying account.
    pub payer_account: String,
    /// The paid account.
    pub payee_account: String,
    /// The asset's code.
    pub asset: String,
    /// The asset's scale.
    pub scale: u8,
    /// Minor units disputed.
    pub amount: String,
    /// `unauthorised`, `not_received`, `not_as_described`, `duplicate` or `amount_wrong`.
    pub reason: String,
    /// `open`, `under_review`, `resolved_payer`, `resolved_payee` or `withdrawn`.
    pub status: String,
    /// The law whose timers apply: `reg_e`, `psd2` or `korea`.
    pub regime: String,
    /// The business-day calendar and its version in force when the dispute opened.
    pub calendar: String,
    /// Every deadline.
    pub deadlines: DeadlinesDto,
    /// The payer's statement.
    pub payer_statement: String,
    /// The payee's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payee_statement: Option<String>,
    /// The payment's evidence, gathered by obol.
    pub evidence: EvidenceDto,
    /// Who bears the loss (unauthorised payments resolved for the payer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liability: Option<LiabilityDto>,
    /// Why it ended: `payee_accepted`, `decided`, `payee_missed_answer`,
    /// `investigation_deadline`, `withdrawn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_reason: Option<String>,
    /// The outcome, explained in every language obol ships.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_explanation: Option<crate::explain::Explanation>,
    /// Each liability reason, explained (same order as `liability.reasons`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub liability_explanations: Vec<crate::explain::Explanation>,
    /// What the payer gets back on a win (minor units), after its share of the loss.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned: Option<String>,
    /// When it opened (RFC 3339).
    pub opened_at: String,
    /// When the payee answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<String>,
    /// When the payer was provisionally credited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credited_at: Option<String>,
    /// When it was resolved or withdrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
    /// The money it moved, from the ledger.
    pub money: MoneyDto,
    /// What happens next, in English.
    pub next_en: String,
    /// What happens next, in Korean.
    pub next_ko: String,
}

/// A dispute as stored (a put `dispute/<id>` in the log).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stored {
    id: u128,
    payment: u128,
    tab: Option<u128>,
    payer_account: u128,
    payee_account: u128,
    payer_owner: u128,
    payee_owner: u128,
    amount: u128,
    reason: String,
    status: String,
    regime: String,
    calendar: String,
    deadlines: DeadlinesDto,
    payer_statement: String,
    payee_statement: Option<String>,
    evidence: EvidenceDto,
    liability: Option<LiabilityDto>,
    outcome_reason: Option<String>,
    returned: Option<u128>,
    opened_ns: u64,
    answered_ns: Option<u64>,
    credited_ns: Option<u64>,
    closed_ns: Option<u64>,
    /// The dispute's own transfers: the hold, its post (the credit), its void, the take-back.
    hold_id: u128,
    credit_id: u128,
    release_id: u128,
    take_back_id: u128,
}

impl Stored {
    fn closed(&self) -> bool {
        matches!(self.status.as_str(), "resolved_payer" | "resolved_payee" | "withdrawn")
    }
}

/// Opening a dispute.
#[derive(Clone, Copy, Debug)]
pub struct OpenAsk<'a> {
    /// The dispute's id (the client's: a retry answers the dispute opened).
    pub id: &'a str,
    /// The payment's transfer id (or `tab`).
    pub payment: Option<&'a str>,
    /// A tab whose settlement is disputed.
    pub tab: Option<&'a str>,
    /// Minor units; all that is left of the payment by default.
    pub amount: Option<&'a str>,
    /// One of [`REASONS`].
    pub reason: &'a str,
    /// The payer's statement.
    pub statement: &'a str,
}

/// An operator's decision.
#[derive(Clone, Copy, Debug)]
pub struct Decision<'a> {
    /// `payer` or `payee`.
    pub winner: &'a str,
    /// The payer acted fraudulently (its share of an unauthorised payment is all of it).
    pub payer_fraud: bool,
    /// The payer kept its credentials with gross negligence.
    pub gross_negligence: bool,
    /// Reg E: the day the payer learned of a lost or stolen access device (ISO date).
    pub learned_on: Option<&'a str>,
}

fn calendars() -> Result<&'static Calendars, Error> {
    static SHIPPED: OnceLock<Result<Calendars, String>> = OnceLock::new();
    SHIPPED
        .get_or_init(|| Calendars::shipped().map_err(|error| error.to_string()))
        .as_ref()
        .map_err(|error| Error::Internal(format!("the shipped calendars do not load: {error}")))
}

/// The law and calendar for a payment in `asset`.
fn regime_of(asset: obol_core::money::Asset) -> (Regime, &'static str, &'static str) {
    match crate::risk::jurisdiction_of(asset) {
        "US" => (Regime::RegE, "reg_e", "us-fed"),
        "KR" => (Regime::Korea, "korea", "kr"),
        _ => (Regime::Psd2, "psd2", "eu-target2"),
    }
}

fn dispute_key(id: u128) -> String {
    format!("{DISPUTE_PREFIX}{id:032x}")
}

fn by_payment_key(payment: u128, id: u128) -> String {
    format!("{BY_PAYMENT_PREFIX}{payment:032x}/{id:032x}")
}

fn put(key: String, value: Vec<u8>) -> Op {
    Op::Put(obol_core::table::Put { key, value })
}

fn encode(stored: &Stored) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(stored).map_err(|error| Error::Internal(format!("encoding a dispute: {error}")))
}

/// Who is a party to which dispute: `dispute-by/<principal>/<id>` (listing for a party).
const BY_PARTY_PREFIX: &str = "dispute-by/";
/// Disputes still open (the timer sweep's work list): `dispute-open/<id>`.
const OPEN_PREFIX: &str = "dispute-open/";
/// Disputes one payment may have, ever (a bound on what one payment costs to check).
pub const DISPUTES_PER_PAYMENT_MAX: usize = 8;

fn by_party_key(principal: u128, id: u128) -> String {
    format!("{BY_PARTY_PREFIX}{principal:032x}/{id:032x}")
}

fn open_key(id: u128) -> String {
    format!("{OPEN_PREFIX}{id:032x}")
}

fn id_of_key(key: &str) -> Option<u128> {
    key.rsplit('/').next().and_then(|hex| u128::from_str_radix(hex, 16).ok())
}

/// Dispute `id`, read from the state table of `ledger` (a guard the caller holds: the engine's
/// own table reads take the same lock, so they are never called under it).
fn load_in(ledger: &Ledger, id: u128) -> Result<Option<Stored>, Error> {
    match ledger.table().get(&dispute_key(id)) {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(bytes)
            .map(Some)
            .map_err(|error| Error::Internal(format!("dispute {id} does not decode: {error}"))),
    }
}

fn load(state: &App, id: u128) -> Result<Option<Stored>, Error> {
    load_in(&read_ledger(state), id)
}

fn disputes_of_payment(ledger: &Ledger, payment: u128) -> Result<Vec<Stored>, Error> {
    let prefix = format!("{BY_PAYMENT_PREFIX}{payment:032x}/");
    let ids: Vec<u128> = ledger.table().scan(&prefix).filter_map(|(key, _)| id_of_key(key)).collect();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(stored) = load_in(ledger, id)? {
            out.push(stored);
        }
    }
    Ok(out)
}

/// What the payer holds of a closed dispute's money: credited, less what was taken back.
fn kept_by_payer(ledger: &Ledger, stored: &Stored) -> u128 {
    let amount_of = |id: u128| ledger.transfer(id).map_or(0, |t| t.amount);
    amount_of(stored.credit_id).saturating_sub(amount_of(stored.take_back_id))
}

/// What a payment's disputes keep a refund from giving back: all an open dispute claims, and
/// what the payer holds of a closed one (whatever it ended as, and whether or not a take-back
/// recovered the credit).
pub(crate) fn claimed_from_refunds(ledger: &Ledger, payment: u128) -> Result<u128, Error> {
    Ok(refund_claims(ledger, &disputes_of_payment(ledger, payment)?))
}

fn refund_claims(ledger: &Ledger, disputes: &[Stored]) -> u128 {
    disputes.iter().map(|d| if d.closed() { kept_by_payer(ledger, d) } else { d.amount }).fold(0, u128::saturating_add)
}

/// What may not be disputed again: what an open or decided dispute disputed, and what the payer
/// holds of a withdrawn one.
fn claimed_from_disputes(ledger: &Ledger, disputes: &[Stored]) -> u128 {
    disputes
        .iter()
        .map(|d| if d.status == "withdrawn" { kept_by_payer(ledger, d) } else { d.amount })
        .fold(0, u128::saturating_add)
}

fn has_dispute(ledger: &Ledger, payment: u128) -> bool {
    ledger.table().scan(&format!("{BY_PAYMENT_PREFIX}{payment:032x}/")).next().is_some()
}

fn day_iso(day: Day) -> String {
    day.iso()
}

fn deadlines_dto(d: &Deadlines) -> DeadlinesDto {
    DeadlinesDto {
        notice_by: day_iso(d.notice_by),
        payee_answer_by: day_iso(d.payee_answer_by),
        provisional_credit_from: d.provisional_credit_from.map(day_iso),
        provisional_credit_by: d.provisional_credit_by.map(day_iso),
        resolve_by: day_iso(d.resolve_by),
        resolve_by_extended: day_iso(d.resolve_by_extended),
    }
}

fn parse_day(field: &str, text: &str) -> Result<Day, Error> {
    Day::parse(text).ok_or_else(|| Error::InvalidField(format!("{field} must be a date YYYY-MM-DD, not {text:?}")))
}

fn deadlines_of(stored: &Stored) -> Result<Deadlines, Error> {
    let d = &stored.deadlines;
    let optional = |text: &Option<String>, field: &str| text.as_deref().map(|t| parse_day(field, t)).transpose();
    Ok(Deadlines {
        notice_by: parse_day("notice_by", &d.notice_by)?,
        timely: true,
        payee_answer_by: parse_day("payee_answer_by", &d.payee_answer_by)?,
        provisional_credit_from: optional(&d.provisional_credit_from, "provisional_credit_from")?,
        provisional_credit_by: optional(&d.provisional_credit_by, "provisional_credit_by")?,
        resolve_by: parse_day("resolve_by", &d.resolve_by)?,
        resolve_by_extended: parse_day("resolve_by_extended", &d.resolve_by_extended)?,
        report_within_business_days: 0,
    })
}

/// The last day of the month of `day`: the periodic statement that first shows a payment.
fn statement_day(day: Day) -> Day {
    let (year, month, _) = obol_core::time::civil_from_days(day.0);
    let month = i64::from(month);
    Day(obol_core::time::days_from_civil(year, month, obol_core::time::days_in_month(year, month)))
}

/// The payment a tab's settlement made: the post of its escrow.
fn tab_settlement(ledger: &Ledger, tab_id: u128) -> Result<Transfer, Error> {
    let entry = ledger.tab(tab_id).ok_or(Error::TabNotFound(tab_id))?;
    let payer = ledger.tab_payer(&entry.tab).ok_or(Error::TabNotFound(tab_id))?;
    let escrow = entry.tab.escrow_transfer_id;
    let settlement = ledger
        .account_history_from(payer, 0)
        .into_iter()
        .flatten()
        .map(|entry| entry.transfer)
        .find(|t| t.pending_id == escrow && t.flags.has(TransferFlags::POST_PENDING));
    settlement.ok_or_else(|| {
        Error::InvalidField(format!(
            "tab {tab_id} has not settled: its escrow is still held, and closing the tab (POST /v1/tabs/{tab_id}/settle) pays only what its vouchers and ticks say"
        ))
    })
}

/// Whether `transfer` is a payment a dispute can contest: booked, not a refund or a dispute's
/// own transfer, not a void.
pub(crate) fn disputable(transfer: &Transfer) -> bool {
    !transfer.flags.has(TransferFlags::PENDING)
        && !transfer.flags.has(TransferFlags::VOID_PENDING)
        && transfer.code != crate::refunds::REFUND_CODE
        && transfer.code != DISPUTE_TRANSFER_CODE
        && transfer.amount > 0
}

/// The evidence of `payment` (of `tab`, for a tab's settlement).
fn gather_evidence(ledger: &Ledger, payment: &Transfer, tab: Option<u128>) -> EvidenceDto {
    let (device, signed_by, strong, voucher_signature) = match tab.and_then(|id| ledger.tab(id)) {
        Some(entry) => {
            let signature = entry.last_signature;
            let signed = signature != [0u8; 64];
            (
                Some(entry.tab.device_id),
                if signed { "voucher_signature" } else { "device_signature" },
                false,
                signed.then(|| obol_core::audit::hex(&signature)),
            )
        }
        None => match ledger.payment_evidence(payment.id) {
            Some(e) if e.device_id != 0 => (Some(e.device_id), "device_signature", e.authenticated, None),
            Some(e) => (None, "api_key", e.authenticated, None),
            None => (None, "not_recorded", false, None),
        },
    };
    // Compelling Evidence 3.0: earlier undisputed payments, same payer and payee, same device.
    let (from_ns, to_ns) = (
        payment.timestamp.saturating_sub(CE3_DAYS.1 * NS_PER_DAY),
        payment.timestamp.saturating_sub(CE3_DAYS.0 * NS_PER_DAY),
    );
    let mut prior: u32 = 0;
    if let Some(device) = device {
        let window = ledger.account_history_from(payment.debit_account_id, from_ns.saturating_sub(1));
        for entry in window.into_iter().flatten().take(HISTORY_SCAN_MAX) {
            let t = entry.transfer;
            if t.timestamp > to_ns {
                break;
            }
            let same_parties = t.credit_account_id == payment.credit_account_id
                && t.debit_account_id == payment.debit_account_id
                && t.id != payment.id;
            if !same_parties || !disputable(&t) || has_dispute(ledger, t.id) {
                continue;
            }
            let same_device = ledger.payment_evidence(t.id).is_some_and(|e| e.device_id == device);
            if same_device {
                prior = prior.saturating_add(1);
            }
        }
    }
    EvidenceDto {
        device: device.map(|d| d.to_string()),
        signed_by: signed_by.to_string(),
        strong_authentication: strong,
        voucher_signature,
        prior_undisputed_count: prior,
        compelling_evidence_3: prior >= 2,
    }
}

fn plain_statement(field: &str, text: &str) -> Result<String, Error> {
    crate::plain_text(field, text)?;
    if text.chars().count() > STATEMENT_CHARS_MAX {
        return Err(Error::InvalidField(format!("{field} is longer than {STATEMENT_CHARS_MAX} characters")));
    }
    Ok(text.to_string())
}

fn dispute_transfer(
    id: u128,
    dispute: u128,
    debit: u128,
    credit: u128,
    amount: u128,
    asset: obol_core::money::Asset,
) -> NewTransfer {
    NewTransfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        pending_id: 0,
        user_data_128: dispute,
        user_data_64: 0,
        user_data_32: 0,
        timeout_s: 0,
        asset: Some(asset),
        code: DISPUTE_TRANSFER_CODE,
        flags: TransferFlags(0),
    }
}

/// The post (the payer's credit, `amount` of the hold) or void (the release) of a dispute's hold.
fn resolve_hold(stored: &Stored, flag: u16, amount: u128, asset: obol_core::money::Asset) -> NewTransfer {
    let id = if flag == TransferFlags::POST_PENDING { stored.credit_id } else { stored.release_id };
    let mut event = dispute_transfer(id, stored.id, 0, 0, amount, asset);
    event.pending_id = stored.hold_id;
    event.flags = TransferFlags(flag);
    event
}

/// The money `stored` moved, from the ledger.
fn money(ledger: &Ledger, stored: &Stored) -> MoneyDto {
    let amount_of = |id: u128| ledger.transfer(id).map_or(0, |t| t.amount);
    MoneyDto {
        held: amount_of(stored.hold_id).to_string(),
        credited: amount_of(stored.credit_id).to_string(),
        taken_back: amount_of(stored.take_back_id).to_string(),
        released: ledger.transfer(stored.release_id).is_some(),
    }
}

fn next_step(stored: &Stored) -> (String, String) {
    let d = &stored.deadlines;
    match stored.status.as_str() {
        "open" => (
            format!(
                "The payee answers by {}; if it does not, the payer wins. The amount is held on the payee's account until then.",
                d.payee_answer_by
            ),
            format!(
                "판매자는 {}까지 답변해야 하며, 답변이 없으면 구매자 승소로 처리됩니다. 그때까지 금액은 판매자 계좌에 보류됩니다.",
                d.payee_answer_by
            ),
        ),
        "under_review" => (
            format!(
                "Both sides have spoken; the operator decides by {} (by {} once the payer is provisionally credited).",
                d.resolve_by, d.resolve_by_extended
            ),
            format!(
                "양측 진술이 접수되었습니다. 운영자가 {}까지(임시 환급 후에는 {}까지) 결정합니다.",
                d.resolve_by, d.resolve_by_extended
            ),
        ),
        "resolved_payer" => (
            "Resolved in the payer's favour: the payer keeps the amount returned.".into(),
            "구매자에게 유리하게 해결되었습니다. 환급된 금액은 구매자의 것입니다.".into(),
        ),
        "resolved_payee" => (
            "Resolved in the payee's favour: any provisional credit was taken back from the payer.".into(),
            "판매자에게 유리하게 해결되었습니다. 임시 환급액은 구매자에게서 회수되었습니다.".into(),
        ),
        _ => (
            "Withdrawn by the payer: the hold was released to the payee.".into(),
            "구매자가 이의를 철회했습니다. 보류된 금액은 판매자에게 돌아갔습니다.".into(),
        ),
    }
}

fn view(ledger: &Ledger, stored: &Stored) -> DisputeDto {
    let asset = ledger.transfer(stored.payment).map(|t| t.asset);
    let (next_en, next_ko) = next_step(stored);
    let time = |ns: Option<u64>| ns.map(|ns| obol_core::time::rfc3339(u128::from(ns)));
    DisputeDto {
        id: stored.id.to_string(),
        payment: stored.payment.to_string(),
        tab: stored.tab.map(|t| t.to_string()),
        payer_account: stored.payer_account.to_string(),
        payee_account: stored.payee_account.to_string(),
        asset: asset.map(|a| a.code().to_string()).unwrap_or_default(),
        scale: asset.map_or(0, |a| a.scale()),
        amount: stored.amount.to_string(),
        reason: stored.reason.clone(),
        status: stored.status.clone(),
        regime: stored.regime.clone(),
        calendar: stored.calendar.clone(),
        deadlines: stored.deadlines.clone(),
        payer_statement: stored.payer_statement.clone(),
        payee_statement: stored.payee_statement.clone(),
        evidence: stored.evidence.clone(),
        liability: stored.liability.clone(),
        outcome_reason: stored.outcome_reason.clone(),
        outcome_explanation: stored.outcome_reason.as_ref().map(|r| crate::explain::explain(&format!("dispute.{r}"))),
        liability_explanations: stored
            .liability
            .iter()
            .flat_map(|l| l.reasons.iter())
            .map(|r| crate::explain::explain(&format!("liability.{r}")))
            .collect(),
        returned: stored.returned.map(|r| r.to_string()),
        opened_at: obol_core::time::rfc3339(u128::from(stored.opened_ns)),
        answered_at: time(stored.answered_ns),
        credited_at: time(stored.credited_ns),
        closed_at: time(stored.closed_ns),
        money: money(ledger, stored),
        next_en,
        next_ko,
    }
}

/// Whether `caller` may read `stored`: its payer, its payee, or staff who see everything.
fn may_see(caller: &Caller, stored: &Stored) -> bool {
    sees_everything(caller)
        || (caller.role.owns_accounts()
            && (caller.principal_id == stored.payer_owner || caller.principal_id == stored.payee_owner))
}

fn visible(state: &App, caller: &Caller, id: u128) -> Result<Stored, Error> {
    need_scope(caller, Scopes::READ)?;
    load(state, id)?.filter(|stored| may_see(caller, stored)).ok_or(Error::DisputeNotFound(id))
}

/// One dispute, for its payer, its payee, or staff.
pub fn get(state: &App, caller: &Caller, id: &str) -> Result<DisputeDto, Error> {
    let id = crate::parse_id("id", id)?;
    let stored = visible(state, caller, id)?;
    Ok(view(&read_ledger(state), &stored))
}

/// The disputes the caller may see (as payer or payee, or all for staff), in id order after
/// `after`, at most `limit` (1 to [`LIST_LIMIT_MAX`]), optionally only those with `status`.
/// Answers the page and the cursor of the next one.
pub fn list(
    state: &App,
    caller: &Caller,
    status: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<DisputeDto>, Option<String>), Error> {
    need_scope(caller, Scopes::READ)?;
    if let Some(status) = status
        && !STATUSES.contains(&status)
    {
        return Err(Error::InvalidQuery(format!("status must be one of {}", STATUSES.join(", "))));
    }
    if !(1..=LIST_LIMIT_MAX).contains(&limit) {
        return Err(Error::InvalidQuery(format!("limit must be 1 to {LIST_LIMIT_MAX}")));
    }
    let after = after.map(|text| crate::parse_id("after", text)).transpose()?;
    let ledger = read_ledger(state);
    // A party reads its own index; staff read every dispute.
    let prefix = if sees_everything(caller) {
        DISPUTE_PREFIX.to_string()
    } else {
        format!("{BY_PARTY_PREFIX}{:032x}/", caller.principal_id)
    };
    let mut out = Vec::new();
    let mut next = None;
    for (key, _) in ledger.table().scan(&prefix) {
        let Some(id) = id_of_key(key) else { continue };
        if after.is_some_and(|after| id <= after) {
            continue;
        }
        let Some(stored) = load_in(&ledger, id)? else { continue };
        if !may_see(caller, &stored) || status.is_some_and(|s| s != stored.status) {
            continue;
        }
        if out.len() == limit {
            next = out.last().map(|d: &DisputeDto| d.id.clone());
            break;
        }
        out.push(view(&ledger, &stored));
    }
    Ok((out, next))
}

/// Runs the dispute's new state, `more` ops (index puts), its note and its transfers as one
/// record, and answers the transfers' results.
async fn commit(
    state: &App,
    stored: &Stored,
    more: Vec<Op>,
    transfers: Vec<NewTransfer>,
    note: Op,
) -> Result<Vec<CreateTransferResult>, Error> {
    let mut ops = vec![put(dispute_key(stored.id), encode(stored)?), note];
    ops.extend(more);
    let moves = !transfers.is_empty();
    if moves {
        ops.push(Op::Dispute(transfers));
    }
    let results = state.engine.execute_together(ops).await?;
    match results.last() {
        Some(OpResults::Transfers(results)) if moves => Ok(results.clone()),
        _ if !moves => Ok(Vec::new()),
        _ => Err(crate::transfers::internal("dispute transfers")),
    }
}

fn system_note(what: &str, subject: &str, outcome: &str) -> Op {
    Op::Note(obol_core::audit::Note {
        actor_id: 0,
        role: "system".into(),
        via: obol_core::audit::Note::field("dispute-timers"),
        origin: String::new(),
        what: obol_core::audit::Note::field(what),
        subject: obol_core::audit::Note::field(subject),
        outcome: obol_core::audit::Note::field(outcome),
    })
}

/// The alert of a dispute's step, to both parties, with its status and deadlines.
fn dispute_event(state: &App, kind: &str, stored: &Stored) -> Op {
    let data = serde_json::json!({
        "dispute": stored.id.to_string(), "payment": stored.payment.to_string(), "status": stored.status,
        "amount": stored.amount.to_string(), "reason": stored.reason,
        "payee_answer_by": stored.deadlines.payee_answer_by, "resolve_by": stored.deadlines.resolve_by,
        "outcome_reason": stored.outcome_reason,
    });
    crate::webhooks::event(state, kind, &[stored.payer_owner, stored.payee_owner], data)
}

/// The payment a dispute asks about, and the tab whose settlement it is.
fn disputed_payment(ledger: &Ledger, caller: &Caller, ask: &OpenAsk<'_>) -> Result<(Transfer, Option<u128>), Error> {
    match (ask.payment, ask.tab) {
        (Some(payment), None) => {
            let payment_id = crate::parse_id("payment", payment)?;
            Ok((ledger.transfer(payment_id).copied().ok_or(Error::TransferNotFound(payment_id))?, None))
        }
        (None, Some(tab)) => {
            let tab_id = crate::parse_id("tab", tab)?;
            let tab_visible = ledger.tab(tab_id).is_some_and(|entry| crate::tabs::may_see(caller, ledger, entry));
            if !tab_visible {
                return Err(Error::TabNotFound(tab_id));
            }
            Ok((tab_settlement(ledger, tab_id)?, Some(tab_id)))
        }
        _ => Err(Error::InvalidField("name exactly one of payment and tab".into())),
    }
}

/// Opens a dispute: the payer of the payment (or the operator) asks, within the law's window.
/// Answers the dispute and whether it was opened now (`false`: a retry of one opened before).
pub async fn open(state: &App, caller: &Caller, ask: OpenAsk<'_>) -> Result<(DisputeDto, bool), Error> {
    need_scope(caller, Scopes::PAY)?;
    need_role(caller, &[Role::Operator, Role::Holder, Role::Merchant])?;
    let id = crate::parse_id("id", ask.id)?;
    if id == 0 || id == u128::MAX {
        return Err(Error::InvalidId { field: "id".into(), reason: "0 and 2^128-1 are reserved".into() });
    }
    if !REASONS.contains(&ask.reason) {
        return Err(Error::InvalidField(format!("reason must be one of {}", REASONS.join(", "))));
    }
    let statement = plain_statement("statement", ask.statement)?;
    let amount_asked = ask.amount.map(|text| crate::parse_amount("amount", text)).transpose()?;
    if amount_asked == Some(0) {
        return Err(Error::InvalidAmount { field: "amount".into(), reason: "a dispute is for at least 1 unit".into() });
    }
    // Refunds and disputes of one payment are decided one at a time: what is left is read and
    // claimed under the same lock (which holds the refund book).
    let mut book = state.refunds.lock().await;
    let (stored, transfers) = {
        let ledger = read_ledger(state);
        let (payment, tab) = disputed_payment(&ledger, caller, &ask)?;
        let payer = ledger.account(payment.debit_account_id).ok_or(Error::TransferNotFound(payment.id))?;
        let payee = ledger.account(payment.credit_account_id).ok_or(Error::TransferNotFound(payment.id))?;
        let payer_may = caller.role == Role::Operator || owns(caller, payer);
        if !payer_may {
            // The payee, or anyone else, learns nothing more than that it is not theirs.
            return if owns(caller, payee) {
                Err(Error::Forbidden(format!("only the payer of transfer {} disputes it; a payee refunds", payment.id)))
            } else {
                Err(Error::TransferNotFound(payment.id))
            };
        }
        if !disputable(&payment) {
            return Err(Error::InvalidField(format!(
                "transfer {} is not a payment that can be disputed (a pending, voided, refund or dispute transfer)",
                payment.id
            )));
        }
        if payer.owner_id == payee.owner_id {
            return Err(Error::InvalidField(format!(
                "transfer {} moved money between two accounts of one owner: there is nobody to dispute it with",
                payment.id
            )));
        }
        if let Some(existing) = load_in(&ledger, id)? {
            let same = existing.payment == payment.id
                && existing.reason == ask.reason
                && amount_asked.is_none_or(|a| a == existing.amount);
            if !same || !may_see(caller, &existing) {
                return Err(Error::IdTaken(id));
            }
            return Ok((view(&ledger, &existing), false));
        }
        let earlier = disputes_of_payment(&ledger, payment.id)?;
        // The operator is not bound by the cap: a thief burning a payment's disputes must not
        // lock its real payer (or the operator acting for it) out.
        if earlier.len() >= DISPUTES_PER_PAYMENT_MAX && caller.role != Role::Operator {
            return Err(Error::InvalidField(format!(
                "transfer {} has had {DISPUTES_PER_PAYMENT_MAX} disputes: ask the operator",
                payment.id
            )));
        }
        let refunded = book.refunded(&ledger, &payment);
        // Neither what earlier disputes decided nor what the payer holds of them is disputed again.
        let claimed = claimed_from_disputes(&ledger, &earlier).max(refund_claims(&ledger, &earlier));
        let left = payment.amount.saturating_sub(refunded).saturating_sub(claimed);
        let amount = amount_asked.unwrap_or(left);
        if amount == 0 || amount > left {
            return Err(Error::DisputeExceedsPayment { payment: payment.id, left: left.to_string() });
        }
        let now_ns = state.env.now_ns();
        let (regime, regime_name, calendar_id) = regime_of(payment.asset);
        let notice_day = Day::of_ns(now_ns);
        let calendar: &Calendar = calendars()?
            .for_day(calendar_id, notice_day)
            .ok_or_else(|| Error::Internal(format!("no {calendar_id} calendar ships")))?;
        let payment_day = Day::of_ns(payment.timestamp);
        let opened_days = now_ns.saturating_sub(payer.timestamp) / NS_PER_DAY;
        let facts = Facts {
            regime,
            claim: if ask.reason == "unauthorised" { Claim::Unauthorised } else { Claim::Error },
            payment_day,
            statement_day: statement_day(payment_day),
            notice_day,
            new_account: opened_days < 30,
            pos_or_foreign: false,
            amount_iso_minor: payment.amount.div_ceil(crate::risk::units_per_iso_minor(payment.asset)),
        };
        let deadlines = timers::deadlines(&facts, calendar);
        if !deadlines.timely {
            return Err(Error::DisputeWindowClosed {
                payment: payment.id,
                regime: regime_name.into(),
                notice_by: deadlines.notice_by.iso(),
            });
        }
        let evidence = gather_evidence(&ledger, &payment, tab);
        // The hold takes what the payee's balance covers now (a merchant may have paid out).
        let payee_available = payee
            .balances
            .credits_posted
            .saturating_sub(payee.balances.debits_posted.saturating_add(payee.balances.debits_pending));
        let held = amount.min(payee_available);
        let stored = Stored {
            id,
            payment: payment.id,
            tab,
            payer_account: payer.id,
            payee_account: payee.id,
            payer_owner: payer.owner_id,
            payee_owner: payee.owner_id,
            amount,
            reason: ask.reason.to_string(),
            status: "open".into(),
            regime: regime_name.into(),
            calendar: format!("{}@{}", calendar.id, calendar.version),
            deadlines: deadlines_dto(&deadlines),
            payer_statement: statement,
            payee_statement: None,
            evidence,
            liability: None,
            outcome_reason: None,
            returned: None,
            opened_ns: now_ns,
            answered_ns: None,
            credited_ns: None,
            closed_ns: None,
            hold_id: state.env.random_id(),
            credit_id: state.env.random_id(),
            release_id: state.env.random_id(),
            take_back_id: state.env.random_id(),
        };
        let mut hold = dispute_transfer(stored.hold_id, id, payee.id, payer.id, held, payment.asset);
        hold.flags = TransferFlags(TransferFlags::PENDING);
        (stored, if held > 0 { vec![hold] } else { Vec::new() })
    };
    let subject = format!("dispute:{id}");
    let outcome =
        format!("open {} payment:{} answer_by:{}", stored.regime, stored.payment, stored.deadlines.payee_answer_by);
    let note = crate::audit::note(state, caller, "dispute.open", &subject, &outcome);
    let mut indexes = vec![
        put(by_payment_key(stored.payment, id), b"1".to_vec()),
        put(open_key(id), b"1".to_vec()),
        put(by_party_key(stored.payer_owner, id), b"1".to_vec()),
    ];
    if stored.payee_owner != 0 {
        indexes.push(put(by_party_key(stored.payee_owner, id), b"1".to_vec()));
    }
    indexes.push(dispute_event(state, "dispute.opened", &stored));
    commit(state, &stored, indexes, transfers, note).await?;
    drop(book);
    // PSD2: an unauthorised payment is refunded at once; the timers say what is due today.
    advance(state, id).await?;
    let stored = load(state, id)?.ok_or(Error::DisputeNotFound(id))?;
    Ok((view(&read_ledger(state), &stored), true))
}

/// How a dispute ends.
#[derive(Clone, Copy, Debug)]
enum Ending<'a> {
    /// The payer wins: the payee accepted, an operator decided (with what the liability rules
    /// weigh), or a deadline passed (the payer bears nothing).
    Payer { reason: &'static str, decision: Option<Decision<'a>> },
    /// The payee wins.
    Payee,
    /// The payer withdrew.
    Withdrawn,
}

/// What a step of a dispute does besides its edit.
#[derive(Clone, Copy, Debug)]
enum Move<'a> {
    /// Nothing moves (an answer that contests).
    Keep,
    /// The provisional credit: the hold is posted to the payer.
    Credit,
    /// The dispute ends.
    End(Ending<'a>),
}

/// One step of a dispute, under the lock refunds and disputes share: reads the dispute afresh,
/// lets `edit` check and change it (it sees the ledger), then does what `what` says, moving what
/// that takes, in one record with `note`.
async fn step(
    state: &App,
    id: u128,
    what: Move<'_>,
    note: Op,
    edit: impl FnOnce(&mut Stored, &Ledger) -> Result<(), Error>,
) -> Result<(), Error> {
    let _money_back = state.refunds.lock().await;
    let (stored, transfers, more, label) = {
        let ledger = read_ledger(state);
        let mut stored = load_in(&ledger, id)?.ok_or(Error::DisputeNotFound(id))?;
        if stored.closed() {
            return Err(Error::DisputeClosed { id, status: stored.status.clone() });
        }
        edit(&mut stored, &ledger)?;
        match what {
            Move::Keep => (stored, Vec::new(), Vec::new(), None),
            Move::Credit => {
                let asset =
                    ledger.transfer(stored.payment).map(|t| t.asset).ok_or(Error::TransferNotFound(stored.payment))?;
                let held = ledger.transfer(stored.hold_id).map_or(0, |t| t.amount);
                let pending = ledger.pending_status(stored.hold_id) == Some(obol_core::ledger::PendingStatus::Pending);
                stored.credited_ns = Some(state.env.now_ns());
                let transfers = if held > 0 && pending {
                    vec![resolve_hold(&stored, TransferFlags::POST_PENDING, held, asset)]
                } else {
                    Vec::new()
                };
                (stored, transfers, Vec::new(), None)
            }
            Move::End(ending) => {
                let transfers = ending_transfers(&ledger, &mut stored, ending)?;
                stored.closed_ns = Some(state.env.now_ns());
                let mut more = vec![put(open_key(id), Vec::new())];
                // An unauthorised payment an analyst found for its payer (not the payer's own
                // fraud, not a missed deadline) is confirmed fraud: a label, in the same record,
                // counted in the risk features once it is durable; one per payment.
                let payer_fraud =
                    stored.liability.as_ref().is_some_and(|l| l.reasons.iter().any(|r| r == "payer_fraud"));
                let confirmed = stored.status == "resolved_payer"
                    && stored.reason == "unauthorised"
                    && stored.outcome_reason.as_deref() == Some("decided")
                    && !payer_fraud
                    && !crate::labels::is_labelled(&ledger, stored.payment);
                let label = confirmed.then(|| {
                    let device = ledger.payment_evidence(stored.payment).map(|e| e.device_id).filter(|d| *d != 0);
                    let parties = crate::labels::Parties {
                        payment: Some(stored.payment),
                        payer: stored.payer_account,
                        payee: stored.payee_account,
                        device,
                        network: state.risk.network_of_payment(stored.payer_account, stored.payment),
                    };
                    let source = crate::labels::LabelSource::DisputeUnauthorised;
                    crate::labels::LabelDto::new(state, source, parties, state.env.now_ns(), None)
                });
                if let Some(label) = &label {
                    more.extend(label.puts()?);
                }
                (stored, transfers, more, label)
            }
        }
    };
    let mut more = more;
    more.push(dispute_event(state, "dispute.updated", &stored));
    let results = commit(state, &stored, more, transfers, note).await?;
    if let Some(label) = label {
        crate::labels::count(state, &[label]);
    }
    for result in results {
        if !matches!(result, CreateTransferResult::Ok | CreateTransferResult::Exists) {
            // What moved is read from the ledger: a take-back that found the payer's account
            // emptied shows as what it could take, and what the payer kept still counts against
            // refunds and further disputes.
            tracing::warn!(dispute = %stored.id, result = result.as_str(), "a dispute's closing transfer was refused");
        }
    }
    Ok(())
}

/// Sets the outcome of `stored` and answers the transfers that carry it out.
fn ending_transfers(ledger: &Ledger, stored: &mut Stored, ending: Ending<'_>) -> Result<Vec<NewTransfer>, Error> {
    let asset = ledger.transfer(stored.payment).map(|t| t.asset).ok_or(Error::TransferNotFound(stored.payment))?;
    let held = ledger.transfer(stored.hold_id).map_or(0, |t| t.amount);
    let hold_pending = ledger.pending_status(stored.hold_id) == Some(obol_core::ledger::PendingStatus::Pending);
    let credited = ledger.transfer(stored.credit_id).map_or(0, |t| t.amount);
    let (status, reason, liability) = match ending {
        Ending::Payer { reason, decision: Some(decision) } => {
            ("resolved_payer", reason, liability_of(ledger, stored, decision)?)
        }
        Ending::Payer { reason, decision: None } => {
            // A deadline the provider side missed, or the payee's own acceptance: the payer
            // bears nothing.
            let liability =
                (stored.reason == "unauthorised" && DEADLINE_REASONS.contains(&reason)).then(|| LiabilityDto {
                    payer_bears: "0".into(),
                    provider_bears: stored.amount.to_string(),
                    payee_reimburses: false,
                    reasons: vec![reason.to_string()],
                });
            ("resolved_payer", reason, liability)
        }
        Ending::Payee => ("resolved_payee", "decided", None),
        Ending::Withdrawn => ("withdrawn", "withdrawn", None),
    };
    let payer_share: u128 = liability.as_ref().and_then(|l| l.payer_bears.parse().ok()).unwrap_or(0);
    // What the payer is owed back, as far as the hold (or the credit it became) covers it.
    let owed = if status == "resolved_payer" { stored.amount.saturating_sub(payer_share) } else { 0 };
    let covered = owed.min(held);
    let mut transfers = Vec::new();
    if credited > 0 {
        if credited > covered {
            // Take back what the payer was credited beyond what it keeps, at most what its
            // account still holds (a balancing transfer).
            let mut back = dispute_transfer(
                stored.take_back_id,
                stored.id,
                stored.payer_account,
                stored.payee_account,
                credited.saturating_sub(covered),
                asset,
            );
            back.flags = TransferFlags(TransferFlags::BALANCING_DEBIT);
            transfers.push(back);
        }
    } else if held > 0 && hold_pending {
        transfers.push(if covered > 0 {
            resolve_hold(stored, TransferFlags::POST_PENDING, covered, asset)
        } else {
            resolve_hold(stored, TransferFlags::VOID_PENDING, 0, asset)
        });
    }
    stored.status = status.into();
    stored.outcome_reason = Some(reason.into());
    stored.liability = liability;
    stored.returned = (status == "resolved_payer").then_some(covered);
    Ok(transfers)
}

/// The payee (or the operator for it) answers: with its statement, contesting, or accepting
/// (the payer wins at once).
pub async fn answer(
    state: &App,
    caller: &Caller,
    id: &str,
    statement: &str,
    accept: bool,
) -> Result<DisputeDto, Error> {
    need_scope(caller, Scopes::PAY)?;
    let id = crate::parse_id("id", id)?;
    let statement = plain_statement("statement", statement)?;
    let seen = visible(state, caller, id)?;
    let payee_may = caller.role == Role::Operator
        || (caller.role.owns_accounts()
            && caller.principal_id == seen.payee_owner
            && caller.principal_id != seen.payer_owner);
    if !payee_may {
        return Err(Error::Forbidden("only the payee answers a dispute".into()));
    }
    let now_ns = state.env.now_ns();
    let subject = format!("dispute:{id}");
    let (what, outcome) = if accept {
        (Move::End(Ending::Payer { reason: "payee_accepted", decision: None }), "accepted")
    } else {
        (Move::Keep, "contested")
    };
    let note = crate::audit::note(state, caller, "dispute.answer", &subject, outcome);
    step(state, id, what, note, |stored, _| {
        if stored.status != "open" {
            return Err(Error::DisputeClosed { id, status: stored.status.clone() });
        }
        if Day::of_ns(now_ns) > deadlines_of(stored)?.payee_answer_by {
            // The sweep resolves it for the payer; an answer now changes nothing.
            return Err(Error::DisputeClosed { id, status: "payee_answer_deadline_passed".into() });
        }
        stored.payee_statement = Some(statement);
        stored.answered_ns = Some(now_ns);
        if !accept {
            stored.status = "under_review".into();
        }
        Ok(())
    })
    .await?;
    get(state, caller, &id.to_string())
}

/// The operator (or an analyst) decides: `payer` or `payee` wins. Neither side of the dispute
/// can decide it.
pub async fn resolve(state: &App, caller: &Caller, id: &str, decision: Decision<'_>) -> Result<DisputeDto, Error> {
    need_scope(caller, Scopes::MANAGE)?;
    need_role(caller, &[Role::Operator, Role::Analyst])?;
    let id = crate::parse_id("id", id)?;
    let seen = visible(state, caller, id)?;
    if caller.principal_id == seen.payer_owner || caller.principal_id == seen.payee_owner {
        return Err(Error::Forbidden("a party to a dispute cannot decide it".into()));
    }
    let ending = match decision.winner {
        "payer" => Ending::Payer { reason: "decided", decision: Some(decision) },
        "payee" => Ending::Payee,
        other => return Err(Error::InvalidField(format!("winner must be payer or payee, not {other:?}"))),
    };
    if let Some(text) = decision.learned_on {
        parse_day("learned_on", text)?;
    }
    let note = crate::audit::note(state, caller, "dispute.resolve", &format!("dispute:{id}"), decision.winner);
    step(state, id, Move::End(ending), note, |_, _| Ok(())).await?;
    get(state, caller, &id.to_string())
}

/// The payer withdraws its dispute: the hold goes back to the payee, and a provisional credit
/// is returned in full (refused while the payer's account cannot return it).
pub async fn withdraw(state: &App, caller: &Caller, id: &str) -> Result<DisputeDto, Error> {
    need_scope(caller, Scopes::PAY)?;
    let id = crate::parse_id("id", id)?;
    let seen = visible(state, caller, id)?;
    let payer_may =
        caller.role == Role::Operator || (caller.role.owns_accounts() && caller.principal_id == seen.payer_owner);
    if !payer_may {
        return Err(Error::Forbidden("only the payer withdraws a dispute".into()));
    }
    let note = crate::audit::note(state, caller, "dispute.withdraw", &format!("dispute:{id}"), "withdrawn");
    step(state, id, Move::End(Ending::Withdrawn), note, |stored, ledger| {
        let credited = ledger.transfer(stored.credit_id).map_or(0, |t| t.amount);
        if credited == 0 {
            return Ok(());
        }
        let payer = ledger.account(stored.payer_account);
        let closed = payer.is_none_or(|a| a.flags.has(obol_core::ledger::AccountFlags::CLOSED));
        let available = payer.map_or(0, |a| {
            a.balances.credits_posted.saturating_sub(a.balances.debits_posted.saturating_add(a.balances.debits_pending))
        });
        if closed || available < credited {
            return Err(Error::DisputeCreditSpent {
                id,
                credited: credited.to_string(),
                available: if closed { "0".into() } else { available.to_string() },
            });
        }
        Ok(())
    })
    .await?;
    get(state, caller, &id.to_string())
}

/// Who bears an unauthorised payment's loss, from the recorded evidence (`None` for other
/// claims: the payer gets back everything it wins).
fn liability_of(ledger: &Ledger, stored: &Stored, decision: Decision<'_>) -> Result<Option<LiabilityDto>, Error> {
    if stored.reason != "unauthorised" {
        return Ok(None);
    }
    let payment = ledger.transfer(stored.payment).ok_or(Error::TransferNotFound(stored.payment))?;
    let per_minor = crate::risk::units_per_iso_minor(payment.asset);
    let loss_iso = stored.amount.div_ceil(per_minor);
    let notice = Day::of_ns(stored.opened_ns);
    let learned = decision.learned_on.map(|text| parse_day("learned_on", text)).transpose()?;
    let decided: Liability = match stored.regime.as_str() {
        "reg_e" if decision.payer_fraud => Liability {
            payer_minor: loss_iso,
            provider_minor: 0,
            payee_reimburses: false,
            reasons: vec!["payer_fraud"],
        },
        "reg_e" => {
            let calendar =
                calendars()?.for_day("us-fed", notice).ok_or_else(|| Error::Internal("no us-fed calendar".into()))?;
            let facts = RegEFacts {
                taken: vec![Taken { day: Day::of_ns(payment.timestamp), minor: loss_iso }],
                learned,
                notice,
                statement: statement_day(Day::of_ns(payment.timestamp)),
            };
            liability::reg_e(&facts, calendar)
        }
        "korea" => liability::korea(loss_iso, decision.payer_fraud || decision.gross_negligence),
        _ => liability::psd2(&Psd2Evidence {
            loss_minor: loss_iso,
            after_notice_minor: 0,
            sca_applied: stored.evidence.strong_authentication,
            payee_refused_sca: false,
            payer_fraud: decision.payer_fraud,
            gross_negligence: decision.gross_negligence,
        }),
    };
    let payer_bears = decided.payer_minor.saturating_mul(per_minor).min(stored.amount);
    Ok(Some(LiabilityDto {
        payer_bears: payer_bears.to_string(),
        provider_bears: stored.amount.saturating_sub(payer_bears).to_string(),
        payee_reimburses: decided.payee_reimburses,
        reasons: decided.reasons.iter().map(|r| (*r).to_string()).collect(),
    }))
}

/// Acts on what the timers say is due for dispute `id` today (at most a credit, then a
/// resolution), as the system. Answers whether it acted.
async fn advance(state: &App, id: u128) -> Result<bool, Error> {
    let mut acted = false;
    for _ in 0..2 {
        let Some(stored) = load(state, id)? else { return Ok(acted) };
        if stored.closed() {
            return Ok(acted);
        }
        let today = Day::of_ns(state.env.now_ns());
        let deadlines = deadlines_of(&stored)?;
        let progress = Progress {
            provisionally_credited: stored.credited_ns.is_some(),
            payee_answered: stored.answered_ns.is_some(),
            closed: false,
        };
        let subject = format!("dispute:{id}");
        let result = match timers::due(&deadlines, progress, today) {
            None => return Ok(acted),
            Some(Action::ProvisionalCredit) => {
                let note = system_note("dispute.credit", &subject, "provisional_credit");
                step(state, id, Move::Credit, note, |stored, _| {
                    if stored.credited_ns.is_some() {
                        return Err(Error::DisputeClosed { id, status: "credited".into() });
                    }
                    Ok(())
                })
                .await
            }
            Some(Action::ResolveForPayer) => {
                let reason =
                    if stored.answered_ns.is_none() { "payee_missed_answer" } else { "investigation_deadline" };
                let note = system_note("dispute.resolve", &subject, &format!("payer {reason}"));
                step(state, id, Move::End(Ending::Payer { reason, decision: None }), note, |_, _| Ok(())).await
            }
        };
        match result {
            // Another step got there first: look again.
            Ok(()) | Err(Error::DisputeClosed { .. }) => acted = true,
            Err(error) => return Err(error),
        }
    }
    Ok(acted)
}

/// The timer sweep: for every dispute still open, does what its deadlines say is due today.
/// Answers how many disputes it acted on; one that fails is logged and the rest still run.
pub async fn sweep(state: &App) -> Result<usize, Error> {
    let ids: Vec<u128> = {
        let ledger = read_ledger(state);
        ledger.table().scan(OPEN_PREFIX).filter_map(|(key, _)| id_of_key(key)).collect()
    };
    let mut acted = 0;
    for id in ids {
        match advance(state, id).await {
            Ok(true) => acted += 1,
            Ok(false) => {}
            Err(error) => {
                tracing::error!(dispute = %id, %error, "a dispute's timers could not act; retrying next sweep")
            }
        }
    }
    Ok(acted)
}

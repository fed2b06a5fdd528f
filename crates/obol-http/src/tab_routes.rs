//! Tab routes: a payer opens a tab (escrowing a budget to one payee), tops it up, and pays into it
//! with signed vouchers or PayWord ticks that the payee submits as they arrive; either side
//! settles (which closes the tab). Signatures are checked here, in batches when several vouchers
//! arrive together; the ledger journals each accepted payment before the answer says "paid".

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::VerifyingKey;
use obol_core::channel::{Commitment, PayReject, TabCommand, TabEntry, TabResult, Voucher, verify_vouchers};
use obol_core::codec::Op;
use obol_core::identity::{Role, Scopes, Status};
use obol_core::ledger::{Ledger, NewTransfer, OpResults, TransferFlags};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Caller, Via};
use crate::authz::{need_role, need_scope, owns, sees_everything};
use crate::error::{ApiError, Problem};
use crate::ledger_routes::{Gate, approval_header, can_step_up};
use crate::{ApiJson, AppState, now_ns, read_ledger};

/// Most vouchers one batch request may carry.
pub const VOUCHER_BATCH_MAX: usize = 1024;

/// A request to open a tab.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct TabNew {
    /// Tab id, decimal string; a random one if omitted.
    #[serde(default)]
    pub id: Option<String>,
    /// The payer's account (yours).
    pub payer_account_id: String,
    /// The payee's account.
    pub payee_account_id: String,
    /// Budget to escrow, minor units.
    pub budget: String,
    /// ISO 4217 code of both accounts.
    pub asset_code: String,
    /// Scale of both accounts.
    pub asset_scale: u8,
    /// Seconds the tab accepts payments; then it is settled on the next sweep.
    pub timeout_s: u32,
    /// The device whose key signs the vouchers (omit when a device opens its own tab).
    #[serde(default)]
    pub device_id: Option<String>,
}

/// A tab.
#[derive(Serialize, ToSchema, Debug)]
pub struct TabDto {
    /// Tab id.
    pub id: String,
    /// The payer's account.
    pub payer_account_id: String,
    /// The payee's account.
    pub payee_account_id: String,
    /// The device whose key signs for the tab.
    pub device_id: String,
    /// The pending transfer holding the escrow.
    pub escrow_transfer_id: String,
    /// Escrowed budget.
    pub escrow: String,
    /// What the tab owes the payee so far.
    pub cumulative: String,
    /// The latest accepted voucher's seq.
    pub seq: String,
    /// The last accepted PayWord tick index, once a chain is committed.
    pub payword_index: Option<u32>,
    /// PayWord ticks the committed chain holds.
    pub payword_length: Option<u32>,
    /// When the tab stops accepting payments, ns since the Unix epoch.
    pub expires_ns: String,
    /// `open`, `expired` (settled on the next sweep) or `settled`.
    pub status: String,
    /// The network id vouchers and commitments for this tab are signed for (docs/vouchers.md).
    pub network: String,
}

pub(crate) fn tab_dto(state: &AppState, ledger: &Ledger, entry: &TabEntry) -> TabDto {
    let tab = &entry.tab;
    let status = if tab.closed {
        "settled"
    } else if now_ns() >= tab.expires_ns {
        "expired"
    } else {
        "open"
    };
    TabDto {
        id: tab.id.to_string(),
        payer_account_id: ledger.tab_payer(tab).unwrap_or(0).to_string(),
        payee_account_id: tab.payee_id.to_string(),
        device_id: tab.device_id.to_string(),
        escrow_transfer_id: tab.escrow_transfer_id.to_string(),
        escrow: tab.escrow.to_string(),
        cumulative: tab.cumulative.to_string(),
        seq: tab.seq.to_string(),
        payword_index: tab.payword.as_ref().map(|p| p.last_index),
        payword_length: tab.payword.as_ref().map(|p| p.length),
        expires_ns: tab.expires_ns.to_string(),
        status: status.into(),
        network: state.x402_network.to_string(),
    }
}

/// A voucher, as the payee received it.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct VoucherSubmit {
    /// The 124-byte binary voucher (docs/vouchers.md), base64url without padding.
    pub voucher: String,
}

/// What a payment paid.
#[derive(Serialize, ToSchema, Debug)]
pub struct VoucherAccepted {
    /// What this payment added, minor units ("0" for an older voucher or tick presented again).
    pub paid: String,
    /// Whether the payment was older than the latest (harmless; nothing changed).
    pub stale: bool,
    /// The tab after the payment.
    pub tab: TabDto,
}

/// Several vouchers, for any tabs the caller is paid through.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct VoucherBatch {
    /// Binary vouchers, base64url without padding; at most 1,024.
    pub vouchers: Vec<String>,
}

/// One voucher's outcome in a batch.
#[derive(Serialize, ToSchema, Debug)]
pub struct VoucherOutcome {
    /// The voucher's tab ("0" when the voucher could not be read).
    pub tab_id: String,
    /// What it added, minor units.
    pub paid: String,
    /// Whether it was older than the latest (harmless).
    pub stale: bool,
    /// Why it was refused (a problem `code`), if it was.
    pub error: Option<String>,
}

/// The outcomes of a voucher batch, in the order sent.
#[derive(Serialize, ToSchema, Debug)]
pub struct VoucherBatchResult {
    /// One per voucher.
    pub results: Vec<VoucherOutcome>,
}

/// A PayWord commitment, as the payer signed it.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct CommitmentSubmit {
    /// The 184-byte binary commitment, signed for this server's network (docs/vouchers.md),
    /// base64url without padding.
    pub commitment: String,
}

/// A PayWord tick: the next word of the payer's hash chain.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct TickSubmit {
    /// The word's index in the chain (1 for the first tick); skipping ahead k pays k ticks.
    pub index: u32,
    /// The 32-byte word, 64 hex digits.
    pub word: String,
}

/// Money to add to a tab's escrow.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct TopUp {
    /// Minor units to add.
    pub amount: String,
}

/// A tab result as a short code (for review outcomes).
pub(crate) fn tab_result_code(result: &TabResult) -> String {
    match result {
        TabResult::Ok { .. } => "ok".into(),
        TabResult::Exists => "exists".into(),
        TabResult::NotFound => "tab_not_found".into(),
        TabResult::Escrow(result) => format!("escrow_{}", result.as_str()),
        TabResult::Settlement(result) => format!("settlement_{}", result.as_str()),
        TabResult::Rejected(reject) => format!("rejected: {reject:?}"),
    }
}

pub(crate) fn random_id() -> u128 {
    (rand::random::<u128>() >> 2).max(2)
}

pub(crate) async fn run_tab(state: &AppState, command: TabCommand) -> Result<TabResult, ApiError> {
    match state.engine.execute(Op::Tab(command)).await? {
        OpResults::Tab(result) => Ok(result),
        OpResults::Accounts(_) | OpResults::Transfers(_) | OpResults::Identity(_) | OpResults::Put => {
            Err(ApiError::Internal("engine answered a tab command with the wrong shape".into()))
        }
    }
}

/// Whether the caller may see the tab: the operator, analysts and auditors; the owners of its
/// payer and payee accounts.
fn may_see(caller: &Caller, ledger: &Ledger, entry: &TabEntry) -> bool {
    sees_everything(caller)
        || [ledger.tab_payer(&entry.tab).unwrap_or(0), entry.tab.payee_id]
            .iter()
            .any(|id| ledger.account(*id).is_some_and(|account| owns(caller, account)))
}

fn is_payee(caller: &Caller, ledger: &Ledger, entry: &TabEntry) -> bool {
    caller.role == Role::Operator || ledger.account(entry.tab.payee_id).is_some_and(|a| owns(caller, a))
}

fn visible_tab(state: &AppState, caller: &Caller, id: u128) -> Result<TabEntry, ApiError> {
    let ledger = read_ledger(state);
    ledger.tab(id).filter(|entry| may_see(caller, &ledger, entry)).cloned().ok_or(ApiError::TabNotFound(id))
}

/// The key that signs for a tab, if its device may still pay.
pub(crate) fn tab_signer(ledger: &Ledger, entry: &TabEntry) -> Result<VerifyingKey, ApiError> {
    VerifyingKey::from_bytes(&tab_device_key(ledger, entry)?)
        .map_err(|_| ApiError::TabRejected(PayReject::DeviceInactive))
}

/// Refuses all but the tab's payee (or the operator): only the payee submits its payments.
fn payee_tab(state: &AppState, caller: &Caller, tab_id: u128) -> Result<(), ApiError> {
    let entry = visible_tab(state, caller, tab_id)?;
    if !is_payee(caller, &read_ledger(state), &entry) {
        return Err(ApiError::Forbidden("only the tab's payee submits its payments".into()));
    }
    Ok(())
}

/// Refuses callers who may look at money but not move it.
fn moves_money(caller: &Caller) -> Result<(), ApiError> {
    if matches!(caller.role, Role::Analyst | Role::Auditor) {
        return Err(ApiError::Forbidden("analysts and auditors do not move money".into()));
    }
    Ok(())
}

fn tab_json(state: &AppState, tab_id: u128) -> Result<Json<TabDto>, ApiError> {
    let ledger = read_ledger(state);
    let entry = ledger.tab(tab_id).ok_or(ApiError::TabNotFound(tab_id))?;
    Ok(Json(tab_dto(state, &ledger, entry)))
}

fn tab_answer(state: &AppState, tab_id: u128, paid: u128, stale: bool) -> Result<VoucherAccepted, ApiError> {
    let ledger = read_ledger(state);
    let entry = ledger.tab(tab_id).ok_or(ApiError::TabNotFound(tab_id))?;
    Ok(VoucherAccepted { paid: paid.to_string(), stale, tab: tab_dto(state, &ledger, entry) })
}

/// Refuses an escrow beyond the signing device's limits before the risk policy is asked, as a
/// transfer is; the ledger checks and charges the limits again, atomically, when it escrows.
fn within_device_limits(
    ledger: &Ledger,
    device_id: u128,
    asset: obol_core::money::Asset,
    amount: u128,
) -> Result<(), ApiError> {
    let day = obol_core::identity::utc_day(now_ns());
    if ledger.identity().device_limits_allow(device_id, asset, day, amount) {
        Ok(())
    } else {
        Err(ApiError::TabRejected(PayReject::DeviceLimit))
    }
}

/// The risk policy, then step-up, for escrowing money into a tab (an open or a top-up), as one
/// payment of the escrowed amount to the payee.
fn tab_gate(
    state: &AppState,
    caller: &Caller,
    kind: &str,
    payment: &crate::risk::Payment,
    approval: Option<&str>,
) -> Result<Gate, ApiError> {
    let ledger = read_ledger(state);
    let assessments = state.risk.assess(&ledger, caller, kind, std::slice::from_ref(payment));
    match crate::risk::Risk::verdict(assessments, can_step_up(&ledger, caller)) {
        crate::risk::Verdict::Block(risk) => Err(ApiError::RiskBlocked(Box::new(risk.for_caller(caller)))),
        crate::risk::Verdict::Hold(assessment, _) => Ok(Gate::Hold(assessment, *payment)),
        crate::risk::Verdict::Go { step_up, risk } => {
            // The holder's own step-up policy (amount, new payee, new device) applies to an
            // escrow exactly as to a transfer of the same amount to the same payee, and the
            // challenge binds both, as for a transfer.
            let escrow = NewTransfer {
                id: 0,
                debit_account_id: payment.payer_account_id,
                credit_account_id: payment.payee_account_id,
                amount: payment.amount,
                pending_id: 0,
                user_data_128: 0,
                user_data_64: 0,
                user_data_32: 0,
                timeout_s: 0,
                asset: Some(payment.asset),
                code: 0,
                flags: TransferFlags(0),
            };
            let risk_marked: &[usize] = if step_up.is_empty() { &[] } else { &[0] };
            let risk = risk.map(|risk| risk.for_caller(caller));
            let authenticated = state.step_up.check(&ledger, caller, &[escrow], approval, risk_marked, risk)?;
            if !step_up.is_empty() {
                state.risk.observe(&ledger, caller, std::slice::from_ref(payment));
            }
            Ok(Gate::Go { authenticated })
        }
    }
}

/// [`tab_gate`], holding the command for review when the policy says so; answers whether a
/// second factor approved it.
async fn escrow_gate(
    state: &AppState,
    caller: &Caller,
    kind: &str,
    payment: &crate::risk::Payment,
    tab_id: u128,
    command: TabCommand,
    approval: Option<&str>,
) -> Result<bool, ApiError> {
    // A held opening has one fate: its retry meets the hold, never a second decision.
    if kind == "tab_open" {
        match state.risk.hold_of_tab(caller, &command) {
            crate::risk::HoldOf::Free => {}
            crate::risk::HoldOf::Pending(review) => {
                return Err(ApiError::HeldForReview(Box::new(review.for_caller(caller))));
            }
            crate::risk::HoldOf::Declined(review_id) => return Err(ApiError::ReviewDeclined(review_id)),
            crate::risk::HoldOf::Approved => return Ok(false),
            crate::risk::HoldOf::Taken(id) => return Err(ApiError::TabExists(id)),
        }
    }
    let (assessment, payment) = match tab_gate(state, caller, kind, payment, approval)? {
        Gate::Go { authenticated } => return Ok(authenticated),
        Gate::Hold(assessment, payment) => (assessment, payment),
    };
    let payments = [(payment.payer_account_id, payment.amount)];
    let held = crate::risk::Held {
        kind,
        payment: &payment,
        tab_id: Some(tab_id),
        assessment: &assessment,
        op: Op::Tab(command),
        payments: &payments,
        runs: true,
    };
    Err(ApiError::HeldForReview(Box::new(state.risk.hold(state, caller, held).await?.for_caller(caller))))
}

/// Refuses payments into a tab a checkpoint review paused.
pub(crate) fn not_paused(state: &AppState, tab_id: u128) -> Result<(), ApiError> {
    match state.risk.paused_by(tab_id) {
        Some(review) => Err(ApiError::TabPaused(tab_id, review)),
        None => Ok(()),
    }
}

/// After a payment into a tab: at a checkpoint, asks the risk policy about what was paid since
/// the last one, as a payment by the tab's device. Anything but `allow` pauses the tab for
/// review (a voucher stream cannot stop for a second factor); what was paid stays owed.
pub(crate) async fn tab_checkpoint(state: &AppState, tab_id: u128) {
    if !state.risk.enabled() {
        return;
    }
    let held = {
        let ledger = read_ledger(state);
        let Some(entry) = ledger.tab(tab_id) else { return };
        let tab = &entry.tab;
        let Some(since) = state.risk.checkpoint_due(tab_id, tab.escrow, tab.cumulative) else { return };
        checkpoint_assessment(state, &ledger, tab, since)
    };
    let mut reviewed = true;
    if let Some((caller, payment, assessment)) = held {
        let op = Op::Tab(TabCommand::Settle { tab_id, settle_transfer_id: 0 });
        let held = crate::risk::Held {
            kind: "tab_checkpoint",
            payment: &payment,
            tab_id: Some(tab_id),
            assessment: &assessment,
            op,
            payments: &[],
            runs: true,
        };
        if let Err(error) = state.risk.hold(state, &caller, held).await {
            tracing::error!(tab_id, code = error.code(), "a tab checkpoint could not be held for review");
            reviewed = false;
        }
    }
    // The checkpoint is journaled after its review: a crash between the two, or a review that
    // could not be stored, assesses it again at the tab's next payment (never skips it).
    if !reviewed {
        state.risk.forget_checkpoint(state, tab_id);
        return;
    }
    if let Err(error) = state.risk.journal_checkpoint(state, tab_id).await {
        tracing::error!(tab_id, code = error.code(), "a tab checkpoint could not be journaled");
    }
}

/// The risk policy's verdict on what a tab was paid since its last checkpoint, as a payment by
/// the tab's device; `None` when it allows it.
fn checkpoint_assessment(
    state: &AppState,
    ledger: &obol_core::ledger::Ledger,
    tab: &obol_core::channel::Tab,
    since: u128,
) -> Option<(Caller, crate::risk::Payment, obol_risk::engine::Assessment)> {
    let payer_account_id = ledger.tab_payer(tab)?;
    let device = ledger.identity().device(tab.device_id)?;
    let asset = ledger.account(payer_account_id)?.asset;
    let caller = Caller {
        principal_id: device.holder_id,
        role: Role::Holder,
        scopes: obol_core::identity::Scopes(Scopes::PAY),
        via: Via::Device(device.id),
        peer: None,
    };
    let payment = crate::risk::Payment { payer_account_id, payee_account_id: tab.payee_id, amount: since, asset };
    let assessments = state.risk.assess(ledger, &caller, "tab_checkpoint", &[payment]);
    let assessment = assessments.into_iter().find(|a| a.decision.action != obol_risk::policy::Action::Allow)?;
    Some((caller, payment, assessment))
}

/// Journals a payment the shell checked; answers (added, stale).
pub(crate) async fn journal_payment(state: &AppState, command: TabCommand) -> Result<(u128, bool), ApiError> {
    let tab_id = match &command {
        TabCommand::Voucher(voucher) => voucher.tab_id,
        TabCommand::Commit(commitment) => commitment.tab_id,
        TabCommand::Open { tab_id, .. }
        | TabCommand::Tick { tab_id, .. }
        | TabCommand::TopUp { tab_id, .. }
        | TabCommand::Settle { tab_id, .. } => *tab_id,
    };
    not_paused(state, tab_id)?;
    match run_tab(state, command).await? {
        TabResult::Ok { added } => {
            tab_checkpoint(state, tab_id).await;
            Ok((added, false))
        }
        TabResult::Rejected(PayReject::Stale) => Ok((0, true)),
        TabResult::Rejected(reject) => Err(ApiError::TabRejected(reject)),
        TabResult::NotFound => Err(ApiError::TabNotFound(0)),
        TabResult::Exists | TabResult::Escrow(_) | TabResult::Settlement(_) => {
            Err(ApiError::Internal("a payment answered with a settlement result".into()))
        }
    }
}

/// Checks a voucher against its tab (fields, then signature, batched with concurrent ones)
/// without changing anything. `Ok(None)`: stale, nothing to journal.
pub(crate) async fn check_voucher(state: &AppState, voucher: &Voucher) -> Result<Option<u128>, ApiError> {
    let (added, public_key) = {
        let ledger = read_ledger(state);
        let entry = ledger.tab(voucher.tab_id).ok_or(ApiError::TabNotFound(voucher.tab_id))?;
        match entry.tab.check_voucher_fields(voucher, now_ns()) {
            Ok(added) => (added, tab_device_key(&ledger, entry)?),
            Err(PayReject::Stale) => return Ok(None),
            Err(reject) => return Err(ApiError::TabRejected(reject)),
        }
    };
    if !state.verifier.verify(*voucher, public_key).await {
        return Err(ApiError::TabRejected(PayReject::BadSignature));
    }
    Ok(Some(added))
}

/// The public key of a tab's device, if the device may still pay.
fn tab_device_key(ledger: &Ledger, entry: &TabEntry) -> Result<[u8; 32], ApiError> {
    match ledger.identity().device(entry.tab.device_id) {
        Some(device) if device.status == Status::Active => Ok(device.public_key),
        // A revoked or suspended device pays no more (what it paid before stays owed).
        _ => Err(ApiError::TabRejected(PayReject::DeviceInactive)),
    }
}

/// Checks a PayWord tick (one hash per tick) without changing anything. `Ok(None)`: stale.
pub(crate) fn check_tick(
    state: &AppState,
    tab_id: u128,
    index: u32,
    word: &[u8; 32],
) -> Result<Option<u128>, ApiError> {
    let ledger = read_ledger(state);
    let entry = ledger.tab(tab_id).ok_or(ApiError::TabNotFound(tab_id))?;
    // A tick needs no key, only a device that may still pay.
    tab_device_key(&ledger, entry)?;
    match entry.tab.check_tick(index, word, now_ns()) {
        Ok(added) => Ok(Some(added)),
        Err(PayReject::Stale) => Ok(None),
        Err(reject) => Err(ApiError::TabRejected(reject)),
    }
}

pub(crate) fn decode_voucher(text: &str) -> Result<Voucher, ApiError> {
    let bytes = Base64UrlUnpadded::decode_vec(text.trim())
        .map_err(|_| ApiError::InvalidField("voucher must be base64url without padding".into()))?;
    Voucher::decode(&bytes).map_err(|e| match e {
        obol_core::channel::CodecError::Unbound => ApiError::WrongNetwork(format!("voucher: {e}")),
        _ => ApiError::InvalidField(format!("voucher: {e}")),
    })
}

pub(crate) fn decode_word(text: &str) -> Result<[u8; 32], ApiError> {
    let bad = || ApiError::InvalidField("word must be 64 hex digits".into());
    let text = text.trim().as_bytes();
    if text.len() != 64 {
        return Err(bad());
    }
    let mut word = [0u8; 32];
    for (byte, pair) in word.iter_mut().zip(text.chunks_exact(2)) {
        let digits = std::str::from_utf8(pair).map_err(|_| bad())?;
        *byte = u8::from_str_radix(digits, 16).map_err(|_| bad())?;
    }
    Ok(word)
}

/// Open a tab: escrow a budget from your account to a payee, payable by one device's vouchers
/// or PayWord ticks. The escrow is held until the tab settles; it is never released by a timer.
#[utoipa::path(post, path = "/v1/tabs", tag = "tabs", request_body = TabNew,
    responses((status = 201, body = TabDto), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 202, description = "Held for review by the risk policy", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn open_tab(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<TabNew>,
) -> Result<Response, ApiError> {
    need_scope(&caller, Scopes::PAY)?;
    need_role(&caller, &[Role::Operator, Role::Holder])?;
    let tab_id = match &body.id {
        Some(text) => crate::dto::path_id(text)?,
        None => random_id(),
    };
    let payer_account_id = crate::dto::path_id(&body.payer_account_id)?;
    let payee_account_id = crate::dto::path_id(&body.payee_account_id)?;
    let budget = obol_core::money::Amount::parse(&body.budget)
        .map_err(|e| ApiError::InvalidAmount { field: "budget".into(), reason: e.to_string() })?
        .0;
    let asset = obol_core::money::Asset::new(&body.asset_code, body.asset_scale)
        .map_err(|e| ApiError::InvalidAsset(e.to_string()))?;
    let device_id = {
        let ledger = read_ledger(&state);
        let payer = ledger.account(payer_account_id).ok_or(ApiError::AccountNotFound(payer_account_id))?;
        if caller.role != Role::Operator && !owns(&caller, payer) {
            return Err(ApiError::AccountNotFound(payer_account_id));
        }
        let device_id = match (&caller.via, &body.device_id) {
            (Via::Device(id), None) => *id,
            // A device signs only its own tabs: naming another would escrow under that one's
            // limits, not the signer's.
            (Via::Device(id), Some(text)) => {
                let named = crate::dto::path_id(text)?;
                if named != *id {
                    return Err(ApiError::Forbidden("a device opens tabs only for itself".into()));
                }
                named
            }
            (Via::ApiKey(_), Some(text)) => crate::dto::path_id(text)?,
            (Via::ApiKey(_), None) => {
                return Err(ApiError::InvalidField("device_id: which device signs this tab's vouchers".into()));
            }
        };
        let device = ledger.identity().device(device_id).ok_or(ApiError::DeviceNotFound(device_id))?;
        if device.holder_id != payer.owner_id || device.status != Status::Active {
            return Err(ApiError::Forbidden(format!("device {device_id} cannot sign for account {payer_account_id}")));
        }
        within_device_limits(&ledger, device_id, asset, budget)?;
        device_id
    };
    let command = TabCommand::Open {
        tab_id,
        escrow_transfer_id: random_id(),
        payer_account_id,
        payee_account_id,
        device_id,
        budget,
        asset,
        timeout_s: body.timeout_s,
    };
    let payment = crate::risk::Payment { payer_account_id, payee_account_id, amount: budget, asset };
    // The core counts the escrow as the payer's payment when the tab opens (as not strongly
    // authenticated even when a second factor approved it: the count errs toward asking again).
    escrow_gate(&state, &caller, "tab_open", &payment, tab_id, command, approval_header(&headers)).await?;
    match run_tab(&state, command).await? {
        TabResult::Ok { .. } => {
            if caller.role != Role::Operator {
                state.step_up.paid(caller.principal_id, vec![payee_account_id]);
            }
        }
        TabResult::Exists => return Err(ApiError::TabExists(tab_id)),
        TabResult::Escrow(result) => return Err(ApiError::TransferRejected(result)),
        TabResult::Rejected(reject) => return Err(ApiError::TabRejected(reject)),
        TabResult::NotFound | TabResult::Settlement(_) => return Err(ApiError::Internal("tab open".into())),
    }
    let ledger = read_ledger(&state);
    let entry = ledger.tab(tab_id).ok_or(ApiError::TabNotFound(tab_id))?;
    Ok((StatusCode::CREATED, Json(tab_dto(&state, &ledger, entry))).into_response())
}

/// Look up a tab (its payer, its payee, operators, analysts, auditors).
#[utoipa::path(get, path = "/v1/tabs/{id}", tag = "tabs",
    params(("id" = String, Path, description = "Tab id")),
    responses((status = 200, body = TabDto), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_tab(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<TabDto>, ApiError> {
    need_scope(&caller, Scopes::READ)?;
    let id = crate::dto::path_id(&id)?;
    visible_tab(&state, &caller, id)?;
    tab_json(&state, id)
}

/// Submit a voucher the payer gave you (the payee, or the operator). Answers once the voucher is
/// durable: what it paid, and the tab.
#[utoipa::path(post, path = "/v1/tabs/{id}/vouchers", tag = "tabs", request_body = VoucherSubmit,
    params(("id" = String, Path, description = "Tab id")),
    responses((status = 200, body = VoucherAccepted), (status = 403, description = "The tab is paused for review (`tab_paused_for_review`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn submit_voucher(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<VoucherSubmit>,
) -> Result<Json<VoucherAccepted>, ApiError> {
    need_scope(&caller, Scopes::PAY)?;
    let tab_id = crate::dto::path_id(&id)?;
    payee_tab(&state, &caller, tab_id)?;
    let voucher = decode_voucher(&body.voucher)?;
    if voucher.tab_id != tab_id {
        return Err(ApiError::TabRejected(PayReject::WrongTab));
    }
    let (paid, stale) = match check_voucher(&state, &voucher).await? {
        None => (0, true),
        Some(_) => journal_payment(&state, TabCommand::Voucher(voucher)).await?,
    };
    Ok(Json(tab_answer(&state, tab_id, paid, stale)?))
}

/// Submit many vouchers at once, for any tabs you are paid through: their signatures are checked
/// in one Ed25519 batch and the accepted ones journaled together. Each voucher gets its outcome.
#[utoipa::path(post, path = "/v1/vouchers", tag = "tabs", request_body = VoucherBatch,
    responses((status = 200, body = VoucherBatchResult), (status = 400, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn submit_vouchers(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<VoucherBatch>,
) -> Result<Json<VoucherBatchResult>, ApiError> {
    need_scope(&caller, Scopes::PAY)?;
    moves_money(&caller)?;
    if body.vouchers.len() > VOUCHER_BATCH_MAX {
        return Err(ApiError::InvalidField(format!("vouchers: at most {VOUCHER_BATCH_MAX} per batch")));
    }
    let outcome = |tab_id: u128, error: Option<&ApiError>| VoucherOutcome {
        tab_id: tab_id.to_string(),
        paid: "0".into(),
        stale: false,
        error: error.map(|e| e.code().to_string()),
    };
    let mut results: Vec<VoucherOutcome> = Vec::with_capacity(body.vouchers.len());
    // (result index, voucher, key) of the vouchers whose fields pass, for one batch verification.
    let mut to_verify: Vec<(usize, Voucher, VerifyingKey)> = Vec::new();
    {
        let ledger = read_ledger(&state);
        let now = now_ns();
        for text in &body.vouchers {
            let voucher = match decode_voucher(text) {
                Ok(voucher) => voucher,
                Err(error) => {
                    results.push(outcome(0, Some(&error)));
                    continue;
                }
            };
            let tab_id = voucher.tab_id;
            let checked = ledger
                .tab(tab_id)
                .filter(|entry| may_see(&caller, &ledger, entry) && is_payee(&caller, &ledger, entry))
                .ok_or(ApiError::TabNotFound(tab_id))
                .and_then(|entry| not_paused(&state, tab_id).map(|()| entry))
                .and_then(|entry| {
                    let fields = entry.tab.check_voucher_fields(&voucher, now);
                    tab_signer(&ledger, entry).map(|key| (fields, key))
                });
            match checked {
                Ok((Ok(_), key)) => {
                    to_verify.push((results.len(), voucher, key));
                    results.push(outcome(tab_id, None));
                }
                Ok((Err(PayReject::Stale), _)) => {
                    results.push(VoucherOutcome { stale: true, ..outcome(tab_id, None) });
                }
                Ok((Err(reject), _)) => results.push(outcome(tab_id, Some(&ApiError::TabRejected(reject)))),
                Err(error) => results.push(outcome(tab_id, Some(&error))),
            }
        }
    }
    let pairs: Vec<(&Voucher, &VerifyingKey)> = to_verify.iter().map(|(_, v, k)| (v, k)).collect();
    let verified = verify_vouchers(&state.network, &pairs);
    let mut pending = Vec::with_capacity(to_verify.len());
    for ((index, voucher, _), ok) in to_verify.iter().zip(verified) {
        if !ok {
            results[*index].error = Some(ApiError::TabRejected(PayReject::BadSignature).code().to_string());
            continue;
        }
        // Submitted together, the group commit journals them in one record.
        match state.engine.submit(Op::Tab(TabCommand::Voucher(*voucher))) {
            Ok(receiver) => pending.push((*index, receiver)),
            Err(error) => results[*index].error = Some(ApiError::from(error).code().to_string()),
        }
    }
    let mut paid_tabs: Vec<u128> = Vec::new();
    for (index, receiver) in pending {
        let answer = receiver.await.unwrap_or(Err(obol_store::EngineError::Stopped));
        match answer {
            Ok(OpResults::Tab(TabResult::Ok { added })) => {
                results[index].paid = added.to_string();
                paid_tabs.push(results[index].tab_id.parse().unwrap_or(0));
            }
            Ok(OpResults::Tab(TabResult::Rejected(PayReject::Stale))) => results[index].stale = true,
            Ok(OpResults::Tab(TabResult::Rejected(reject))) => {
                results[index].error = Some(ApiError::TabRejected(reject).code().to_string());
            }
            Ok(_) => results[index].error = Some("internal".into()),
            Err(error) => results[index].error = Some(ApiError::from(error).code().to_string()),
        }
    }
    paid_tabs.sort_unstable();
    paid_tabs.dedup();
    for tab_id in paid_tabs {
        tab_checkpoint(&state, tab_id).await;
    }
    Ok(Json(VoucherBatchResult { results }))
}

/// Submit the payer's PayWord commitment (payer, payee or operator): from then on each tick is
/// the next word of its hash chain, checked with one hash.
#[utoipa::path(post, path = "/v1/tabs/{id}/commitment", tag = "tabs", request_body = CommitmentSubmit,
    params(("id" = String, Path, description = "Tab id")),
    responses((status = 200, body = TabDto), (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn submit_commitment(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CommitmentSubmit>,
) -> Result<Json<TabDto>, ApiError> {
    need_scope(&caller, Scopes::PAY)?;
    let tab_id = crate::dto::path_id(&id)?;
    visible_tab(&state, &caller, tab_id)?;
    moves_money(&caller)?;
    let bytes = Base64UrlUnpadded::decode_vec(body.commitment.trim())
        .map_err(|_| ApiError::InvalidField("commitment must be base64url without padding".into()))?;
    let commitment = Commitment::decode(&bytes).map_err(|e| match e {
        obol_core::channel::CodecError::Unbound => ApiError::WrongNetwork(format!("commitment: {e}")),
        _ => ApiError::InvalidField(format!("commitment: {e}")),
    })?;
    if commitment.network != state.network {
        return Err(ApiError::WrongNetwork(format!(
            "the commitment is signed for another network than this server's {} (docs/vouchers.md)",
            state.x402_network
        )));
    }
    if commitment.tab_id != tab_id {
        return Err(ApiError::TabRejected(PayReject::WrongTab));
    }
    match run_tab(&state, TabCommand::Commit(commitment)).await? {
        TabResult::Ok { .. } => {}
        TabResult::Rejected(reject) => return Err(ApiError::TabRejected(reject)),
        TabResult::NotFound => return Err(ApiError::TabNotFound(tab_id)),
        TabResult::Exists | TabResult::Escrow(_) | TabResult::Settlement(_) => {
            return Err(ApiError::Internal("commitment".into()));
        }
    }
    tab_json(&state, tab_id)
}

/// Submit a PayWord tick the payer revealed (the payee, or the operator). Answers once the tick is
/// durable.
#[utoipa::path(post, path = "/v1/tabs/{id}/ticks", tag = "tabs", request_body = TickSubmit,
    params(("id" = String, Path, description = "Tab id")),
    responses((status = 200, body = VoucherAccepted), (status = 403, description = "The tab is paused for review (`tab_paused_for_review`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn submit_tick(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TickSubmit>,
) -> Result<Json<VoucherAccepted>, ApiError> {
    need_scope(&caller, Scopes::PAY)?;
    let tab_id = crate::dto::path_id(&id)?;
    payee_tab(&state, &caller, tab_id)?;
    let word = decode_word(&body.word)?;
    let (paid, stale) = match check_tick(&state, tab_id, body.index, &word)? {
        None => (0, true),
        Some(_) => journal_payment(&state, TabCommand::Tick { tab_id, index: body.index, word }).await?,
    };
    Ok(Json(tab_answer(&state, tab_id, paid, stale)?))
}

/// Add to a tab's escrow (its payer, or the operator): the old escrow is voided and a larger one
/// held in the same record, so the payer never has both held at once.
#[utoipa::path(post, path = "/v1/tabs/{id}/topup", tag = "tabs", request_body = TopUp,
    params(("id" = String, Path, description = "Tab id")),
    responses((status = 200, body = TabDto), (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 202, description = "Held for review by the risk policy", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Refused by the risk policy, or step-up needed", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn top_up(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<TopUp>,
) -> Result<Json<TabDto>, ApiError> {
    need_scope(&caller, Scopes::PAY)?;
    need_role(&caller, &[Role::Operator, Role::Holder])?;
    let tab_id = crate::dto::path_id(&id)?;
    let entry = visible_tab(&state, &caller, tab_id)?;
    if let Via::Device(device_id) = caller.via
        && device_id != entry.tab.device_id
    {
        return Err(ApiError::Forbidden("a device tops up only the tabs it signs for".into()));
    }
    let payer = {
        let ledger = read_ledger(&state);
        let payer = ledger.tab_payer(&entry.tab).and_then(|id| ledger.account(id));
        if caller.role != Role::Operator && !payer.is_some_and(|account| owns(&caller, account)) {
            return Err(ApiError::Forbidden("only the tab's payer tops it up".into()));
        }
        payer.map(|account| (account.id, account.asset)).ok_or(ApiError::TabNotFound(tab_id))?
    };
    let amount = obol_core::money::Amount::parse(&body.amount)
        .map_err(|e| ApiError::InvalidAmount { field: "amount".into(), reason: e.to_string() })?
        .0;
    if amount == 0 {
        return Err(ApiError::InvalidAmount { field: "amount".into(), reason: "must be more than 0".into() });
    }
    within_device_limits(&read_ledger(&state), entry.tab.device_id, payer.1, amount)?;
    let command = TabCommand::TopUp { tab_id, amount, void_transfer_id: random_id(), escrow_transfer_id: random_id() };
    let payment = crate::risk::Payment {
        payer_account_id: payer.0,
        payee_account_id: entry.tab.payee_id,
        amount,
        asset: payer.1,
    };
    escrow_gate(&state, &caller, "tab_topup", &payment, tab_id, command, approval_header(&headers)).await?;
    match run_tab(&state, command).await? {
        TabResult::Ok { .. } | TabResult::Exists => {}
        TabResult::Escrow(result) => return Err(ApiError::TransferRejected(result)),
        TabResult::Rejected(reject) => return Err(ApiError::TabRejected(reject)),
        TabResult::NotFound => return Err(ApiError::TabNotFound(tab_id)),
        TabResult::Settlement(_) => return Err(ApiError::Internal("top-up".into())),
    }
    tab_json(&state, tab_id)
}

/// Settle a tab, which closes it: post what it owes, release the rest of the escrow (payer, payee
/// or operator; repeating it is harmless). Expired tabs are settled by a periodic sweep too.
#[utoipa::path(post, path = "/v1/tabs/{id}/settle", tag = "tabs",
    params(("id" = String, Path, description = "Tab id")),
    responses((status = 200, body = TabDto), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn settle_tab(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<TabDto>, ApiError> {
    need_scope(&caller, Scopes::PAY)?;
    let tab_id = crate::dto::path_id(&id)?;
    visible_tab(&state, &caller, tab_id)?;
    moves_money(&caller)?;
    match run_tab(&state, TabCommand::Settle { tab_id, settle_transfer_id: random_id() }).await? {
        TabResult::Ok { .. } | TabResult::Exists => {}
        TabResult::Settlement(result) => return Err(ApiError::TransferRejected(result)),
        TabResult::NotFound => return Err(ApiError::TabNotFound(tab_id)),
        TabResult::Rejected(reject) => return Err(ApiError::TabRejected(reject)),
        TabResult::Escrow(_) => return Err(ApiError::Internal("settle".into())),
    }
    tab_json(&state, tab_id)
}

/// Settles every tab that expired by now, 512 at a time (the group commit puts each round in
/// one record). Returns how many it settled. The server runs it on an interval and at start.
pub async fn settle_due_tabs(state: &AppState) -> Result<usize, ApiError> {
    let mut settled = 0;
    loop {
        let due = read_ledger(state).tabs_due(now_ns(), 512);
        if due.is_empty() {
            return Ok(settled);
        }
        let mut receivers = Vec::with_capacity(due.len());
        for tab_id in &due {
            let command = TabCommand::Settle { tab_id: *tab_id, settle_transfer_id: random_id() };
            receivers.push(state.engine.submit(Op::Tab(command))?);
        }
        for receiver in receivers {
            match receiver.await.unwrap_or(Err(obol_store::EngineError::Stopped))? {
                OpResults::Tab(TabResult::Ok { .. }) => settled += 1,
                OpResults::Tab(TabResult::Exists) => {}
                other => {
                    tracing::error!(?other, "an expired tab did not settle");
                    return Err(ApiError::Internal("an expired tab did not settle".into()));
                }
            }
        }
    }
}

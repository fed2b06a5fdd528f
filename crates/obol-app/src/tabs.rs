//! Tabs: a payer opens a tab (escrowing a budget to one payee, as one payment under its
//! device's limits, the risk policy and step-up), tops it up, and pays into it with signed
//! vouchers or PayWord ticks that the payee submits as they arrive; either side settles (which
//! closes the tab). Signatures are checked here, in batches when several vouchers arrive
//! together; the ledger journals each accepted payment before the answer says "paid", and the
//! risk policy looks at a voucher stream at checkpoints.

use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::VerifyingKey;
use obol_core::channel::{Commitment, PayReject, TabCommand, TabEntry, TabResult, Voucher, verify_vouchers};
use obol_core::identity::{Role, Scopes, Status};
use obol_core::ledger::{Ledger, NewTransfer, OpResults, TransferFlags};
use obol_core::record::Op;

use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Caller, Via};
use crate::authz::{need_role, need_scope, owns, sees_everything};
use crate::error::Error;
use crate::risk::{HeldKind, PaymentKind};
use crate::transfers::{Gate, can_step_up};
use crate::{App, parse_amount, parse_asset, parse_id, read_ledger};

/// A tab result as a short code (for review outcomes).
pub(crate) fn tab_result_code(result: &TabResult) -> String {
    match result {
        TabResult::Ok { .. } => "ok".into(),
        TabResult::Exists => "exists".into(),
        TabResult::NotFound => "tab_not_found".into(),
        TabResult::Escrow(result) => format!("escrow_{}", result.as_str()),
        TabResult::Settlement(result) => format!("settlement_{}", result.as_str()),
        TabResult::Rejected(reject) => crate::error::pay_reject_code(*reject).into(),
    }
}

/// Runs a tab command in one record with the spending of approval `spends`.
async fn run_tab_spending(state: &App, command: TabCommand, spends: Option<&str>) -> Result<TabResult, Error> {
    match crate::approvals::execute_spending(state, spends, Op::Tab(command)).await? {
        OpResults::Tab(result) => Ok(result),
        OpResults::Accounts(_) | OpResults::Transfers(_) | OpResults::Identity(_) | OpResults::Put => {
            Err(Error::Internal("engine answered a tab command with the wrong shape".into()))
        }
    }
}

pub(crate) async fn run_tab(state: &App, command: TabCommand) -> Result<TabResult, Error> {
    match state.engine.execute(Op::Tab(command)).await? {
        OpResults::Tab(result) => Ok(result),
        OpResults::Accounts(_) | OpResults::Transfers(_) | OpResults::Identity(_) | OpResults::Put => {
            Err(Error::Internal("engine answered a tab command with the wrong shape".into()))
        }
    }
}

/// Whether the caller may see the tab: the operator, analysts and auditors; the owners of its
/// payer and payee accounts.
pub(crate) fn may_see(caller: &Caller, ledger: &Ledger, entry: &TabEntry) -> bool {
    sees_everything(caller)
        || [ledger.tab_payer(&entry.tab).unwrap_or(0), entry.tab.payee_id]
            .iter()
            .any(|id| ledger.account(*id).is_some_and(|account| owns(caller, account)))
}

pub(crate) fn is_payee(caller: &Caller, ledger: &Ledger, entry: &TabEntry) -> bool {
    caller.role == Role::Operator || ledger.account(entry.tab.payee_id).is_some_and(|a| owns(caller, a))
}

pub(crate) fn visible_tab(state: &App, caller: &Caller, id: u128) -> Result<TabEntry, Error> {
    let ledger = read_ledger(state);
    ledger.tab(id).filter(|entry| may_see(caller, &ledger, entry)).cloned().ok_or(Error::TabNotFound(id))
}

/// The key that signs for a tab, if its device may still pay.
pub(crate) fn tab_signer(ledger: &Ledger, entry: &TabEntry) -> Result<VerifyingKey, Error> {
    VerifyingKey::from_bytes(&tab_device_key(ledger, entry)?).map_err(|_| Error::TabRejected(PayReject::DeviceInactive))
}

/// Refuses all but the tab's payee (or the operator): only the payee submits its payments.
pub(crate) fn payee_tab(state: &App, caller: &Caller, tab_id: u128) -> Result<(), Error> {
    let entry = visible_tab(state, caller, tab_id)?;
    if !is_payee(caller, &read_ledger(state), &entry) {
        return Err(Error::Forbidden("only the tab's payee submits its payments".into()));
    }
    Ok(())
}

/// Refuses callers who may look at money but not move it.
pub(crate) fn moves_money(caller: &Caller) -> Result<(), Error> {
    if matches!(caller.role, Role::Analyst | Role::Auditor) {
        return Err(Error::Forbidden("analysts and auditors do not move money".into()));
    }
    Ok(())
}

/// Refuses an escrow beyond the signing device's limits before the risk policy is asked, as a
/// transfer is; the ledger checks and charges the limits again, atomically, when it escrows.
pub(crate) fn within_device_limits(
    ledger: &Ledger,
    device_id: u128,
    (asset, amount): (obol_core::money::Asset, u128),
    now_ns: u64,
) -> Result<(), Error> {
    let day = obol_core::identity::utc_day(now_ns);
    if ledger.identity().device_limits_allow(device_id, asset, day, amount) {
        Ok(())
    } else {
        Err(Error::TabRejected(PayReject::DeviceLimit))
    }
}

/// The risk policy, then step-up, for escrowing money into a tab (an open or a top-up), as one
/// payment of the escrowed amount to the payee.
pub(crate) fn tab_gate(
    state: &App,
    caller: &Caller,
    kind: PaymentKind,
    payment: &crate::risk::Payment,
    tab_id: u128,
    approval: Option<&str>,
) -> Result<Gate, Error> {
    let ledger = read_ledger(state);
    let assessments = state.risk.assess(&ledger, caller, (kind, std::slice::from_ref(payment)), state.env.now_ns());
    match crate::risk::Risk::verdict(assessments, can_step_up(&ledger, caller)) {
        // Whole here (the audit note names the rule); the caller gets its share below.
        crate::risk::Verdict::Block(risk) => Err(Error::RiskBlocked(Box::new(risk))),
        // As for a transfer, a hold does not skip the holder's own step-up policy: its approval
        // comes first and is spent in the hold's record.
        crate::risk::Verdict::Hold(assessment, _) => {
            let spends = state.step_up.check(
                (&*state.env, &ledger),
                caller,
                (kind, &[escrow_as_transfer(payment, tab_id)]),
                approval,
                &[],
                None,
            )?;
            Ok(Gate::Hold(assessment, *payment, spends))
        }
        crate::risk::Verdict::Go { step_up, risk } => {
            // The holder's own step-up policy (amount, new payee, new device) applies to an
            // escrow exactly as to a transfer of the same amount to the same payee, and the
            // challenge binds both, as for a transfer, and the tab and kind (an opening's
            // approval tops nothing up, and pays no transfer).
            let escrow = escrow_as_transfer(payment, tab_id);
            let risk_marked: &[usize] = if step_up.is_empty() { &[] } else { &[0] };
            let risk = risk.map(|risk| risk.for_caller(caller));
            let spends =
                state.step_up.check((&*state.env, &ledger), caller, (kind, &[escrow]), approval, risk_marked, risk)?;
            if !step_up.is_empty() {
                state.risk.observe(&ledger, caller, std::slice::from_ref(payment), state.env.now_ns());
            }
            Ok(Gate::Go { authenticated: spends.is_some(), spends })
        }
    }
}

/// A tab's escrow (an open or a top-up) as the transfer of the same amount to the same payee
/// that the holder's step-up policy judges; the tab's id binds the approval to that tab.
fn escrow_as_transfer(payment: &crate::risk::Payment, tab_id: u128) -> NewTransfer {
    NewTransfer {
        id: tab_id,
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
    }
}

/// [`tab_gate`], holding the command for review when the policy says so; answers the approval
/// it spends, if a second factor approved it (journaled as spent with the escrow).
pub(crate) async fn escrow_gate(
    state: &App,
    caller: &Caller,
    kind: PaymentKind,
    payment: &crate::risk::Payment,
    tab_id: u128,
    command: TabCommand,
    approval: Option<&str>,
) -> Result<Option<String>, Error> {
    // A frozen payer's escrow is refused before the risk policy: never held, never challenged.
    {
        // The core's own checks: an opening by its payer and device, a top-up by its tab.
        let ledger = read_ledger(state);
        let frozen = match command {
            TabCommand::Open { device_id, .. } => ledger
                .account(payment.payer_account_id)
                .is_some_and(|payer| ledger.identity().payment_frozen(payer.owner_id, device_id, tab_id)),
            _ => ledger.tab_frozen(tab_id),
        };
        if frozen {
            return Err(Error::TabRejected(obol_core::channel::PayReject::PayerFrozen));
        }
    }
    // A held opening has one fate: its retry meets the hold, never a second decision.
    if kind == PaymentKind::TabOpen {
        match state.risk.hold_of_tab(caller, &command) {
            crate::risk::HoldOf::Free => {}
            crate::risk::HoldOf::Pending(review) => {
                return Err(Error::HeldForReview(Box::new(review.for_caller(caller))));
            }
            crate::risk::HoldOf::Declined(review_id) => return Err(Error::ReviewDeclined(review_id)),
            crate::risk::HoldOf::Refused(review_id, code) => return Err(Error::ReviewRefused(review_id, code)),
            crate::risk::HoldOf::Approved => return Ok(None),
            crate::risk::HoldOf::Taken(id) => return Err(Error::TabExists(id)),
        }
    }
    let gate = match tab_gate(state, caller, kind, payment, tab_id, approval) {
        Err(Error::RiskBlocked(risk)) => {
            let outcome = format!("risk_blocked {}", risk.rule.as_deref().unwrap_or(""));
            let details = crate::audit::block_reason(&risk);
            let subject = format!("tab:{tab_id}");
            crate::audit::journal_refusal(state, caller, "risk.block", &subject, outcome.trim(), details).await;
            Err(Error::RiskBlocked(Box::new(risk.for_caller(caller))))
        }
        other => other,
    };
    let gate = crate::approvals::journaled(state, gate).await?;
    let (assessment, payment, spends) = match gate {
        Gate::Go { spends, .. } => return Ok(spends),
        Gate::Hold(assessment, payment, spends) => (assessment, payment, spends),
    };
    let payments = [(payment.payer_account_id, payment.amount)];
    let held = crate::risk::Held {
        kind: kind.held(),
        payment: &payment,
        tab_id: Some(tab_id),
        assessment: &assessment,
        op: Op::Tab(command),
        payments: &payments,
        runs: true,
        spends: spends.as_deref(),
    };
    Err(Error::HeldForReview(Box::new(state.risk.hold(state, caller, held).await?.for_caller(caller))))
}

/// Refuses payments into a tab a checkpoint review paused.
pub(crate) fn not_paused(state: &App, tab_id: u128) -> Result<(), Error> {
    match state.risk.paused_by(tab_id) {
        Some(review) => Err(Error::TabPaused(tab_id, review)),
        None => Ok(()),
    }
}

/// After a payment into a tab: at a checkpoint, asks the risk policy about what was paid since
/// the last one, as a payment by the tab's device. Anything but `allow` pauses the tab for
/// review (a voucher stream cannot stop for a second factor); what was paid stays owed.
pub async fn tab_checkpoint(state: &App, tab_id: u128) {
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
            kind: HeldKind::TabCheckpoint,
            payment: &payment,
            tab_id: Some(tab_id),
            assessment: &assessment,
            op,
            payments: &[],
            runs: true,
            spends: None,
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
pub(crate) fn checkpoint_assessment(
    state: &App,
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
    let payment =
        crate::risk::Payment { transfer_id: 0, payer_account_id, payee_account_id: tab.payee_id, amount: since, asset };
    let assessments = state.risk.assess(ledger, &caller, (PaymentKind::TabCheckpoint, &[payment]), state.env.now_ns());
    let assessment = assessments.into_iter().find(|a| a.decision.action != obol_risk::policy::Action::Allow)?;
    Some((caller, payment, assessment))
}

/// Journals a payment the shell checked; answers (added, stale).
pub(crate) async fn journal_payment(state: &App, command: TabCommand) -> Result<(u128, bool), Error> {
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
        TabResult::Rejected(reject) => Err(Error::TabRejected(reject)),
        TabResult::NotFound => Err(Error::TabNotFound(0)),
        TabResult::Exists | TabResult::Escrow(_) | TabResult::Settlement(_) => {
            Err(Error::Internal("a payment answered with a settlement result".into()))
        }
    }
}

/// Checks a voucher against its tab (fields, then signature, batched with concurrent ones)
/// without changing anything. `Ok(None)`: stale, nothing to journal.
pub(crate) async fn check_voucher(state: &App, voucher: &Voucher) -> Result<Option<u128>, Error> {
    let (added, public_key) = {
        let ledger = read_ledger(state);
        let entry = ledger.tab(voucher.tab_id).ok_or(Error::TabNotFound(voucher.tab_id))?;
        match entry.tab.check_voucher_fields(voucher, state.env.now_ns()) {
            Ok(added) => (added, tab_device_key(&ledger, entry)?),
            Err(PayReject::Stale) => return Ok(None),
            Err(reject) => return Err(Error::TabRejected(reject)),
        }
    };
    if !state.verifier.verify(*voucher, public_key).await {
        return Err(Error::TabRejected(PayReject::BadSignature));
    }
    Ok(Some(added))
}

/// The public key of a tab's device, if the device may still pay.
pub(crate) fn tab_device_key(ledger: &Ledger, entry: &TabEntry) -> Result<[u8; 32], Error> {
    match ledger.identity().device(entry.tab.device_id) {
        Some(device) if device.status == Status::Active => Ok(device.public_key),
        // A revoked or suspended device pays no more (what it paid before stays owed).
        _ => Err(Error::TabRejected(PayReject::DeviceInactive)),
    }
}

/// Checks a PayWord tick (one hash per tick) without changing anything. `Ok(None)`: stale.
pub(crate) fn check_tick(state: &App, tab_id: u128, index: u32, word: &[u8; 32]) -> Result<Option<u128>, Error> {
    let ledger = read_ledger(state);
    let entry = ledger.tab(tab_id).ok_or(Error::TabNotFound(tab_id))?;
    // A tick needs no key, only a device that may still pay.
    tab_device_key(&ledger, entry)?;
    match entry.tab.check_tick(index, word, state.env.now_ns()) {
        Ok(added) => Ok(Some(added)),
        Err(PayReject::Stale) => Ok(None),
        Err(reject) => Err(Error::TabRejected(reject)),
    }
}

/// Reads a voucher sent as base64url.
pub(crate) fn decode_voucher(text: &str) -> Result<Voucher, Error> {
    let bytes = Base64UrlUnpadded::decode_vec(text.trim())
        .map_err(|_| Error::InvalidField("voucher must be base64url without padding".into()))?;
    Voucher::decode(&bytes).map_err(|e| match e {
        obol_core::channel::CodecError::Unbound => Error::WrongNetwork(format!("voucher: {e}")),
        _ => Error::InvalidField(format!("voucher: {e}")),
    })
}

/// Reads a PayWord word sent as 64 hex digits.
pub(crate) fn decode_word(text: &str) -> Result<[u8; 32], Error> {
    let bad = || Error::InvalidField("word must be 64 hex digits".into());
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

/// Settles every tab that expired by now, 512 at a time (the group commit puts each round in
/// one record). Returns how many it settled. The server runs it on an interval and at start.
pub async fn settle_due_tabs(state: &App) -> Result<usize, Error> {
    let mut settled = 0;
    loop {
        let due = read_ledger(state).tabs_due(state.env.now_ns(), 512);
        if due.is_empty() {
            return Ok(settled);
        }
        let mut receivers = Vec::with_capacity(due.len());
        for tab_id in &due {
            let command = TabCommand::Settle { tab_id: *tab_id, settle_transfer_id: state.env.random_id() };
            receivers.push(state.engine.submit(Op::Tab(command))?);
        }
        for receiver in receivers {
            match receiver.await.unwrap_or(Err(obol_store::EngineError::Stopped))? {
                OpResults::Tab(TabResult::Ok { .. }) => settled += 1,
                OpResults::Tab(TabResult::Exists) => {}
                other => {
                    tracing::error!(?other, "an expired tab did not settle");
                    return Err(Error::Internal("an expired tab did not settle".into()));
                }
            }
        }
    }
}

/// Most vouchers one batch request may carry.
pub(crate) const VOUCHER_BATCH_MAX: usize = 1024;

/// What a payer asks for when it opens a tab, as sent: the fields are read only after the
/// caller is known to be allowed to ask.
#[derive(Clone, Copy, Debug)]
pub struct OpenTab<'a> {
    /// The tab's id (`None`: the server draws one).
    pub tab_id: Option<&'a str>,
    /// The payer's account, debited by the escrow.
    pub payer_account_id: &'a str,
    /// The payee's account, credited at settlement.
    pub payee_account_id: &'a str,
    /// The escrow, in the accounts' units.
    pub budget: &'a str,
    /// The accounts' asset code.
    pub asset_code: &'a str,
    /// The accounts' asset scale.
    pub asset_scale: u8,
    /// The device that signs the tab's payments (`None`: the signing device itself).
    pub device_id: Option<&'a str>,
    /// Seconds until the tab expires and is settled.
    pub timeout_s: u32,
}

/// Opens a tab: checks who may escrow from the payer's account and which device signs, the
/// device's limits, a held opening's fate, the risk policy and step-up; then escrows the budget
/// in one record. Answers the tab's id.
pub async fn open(state: &App, caller: &Caller, ask: OpenTab<'_>, approval: Option<&str>) -> Result<u128, Error> {
    need_scope(caller, Scopes::PAY)?;
    need_role(caller, &[Role::Operator, Role::Holder])?;
    let tab_id = ask.tab_id.map(|text| parse_id("id", text)).transpose()?.unwrap_or_else(|| state.env.random_id());
    let payer_account_id = parse_id("id", ask.payer_account_id)?;
    let payee_account_id = parse_id("id", ask.payee_account_id)?;
    let budget = parse_amount("budget", ask.budget)?;
    let asset = parse_asset(ask.asset_code, ask.asset_scale)?;
    let device_id = {
        let ledger = read_ledger(state);
        let payer = ledger.account(payer_account_id).ok_or(Error::AccountNotFound(payer_account_id))?;
        if caller.role != Role::Operator && !owns(caller, payer) {
            return Err(Error::AccountNotFound(payer_account_id));
        }
        let device_id = match (&caller.via, ask.device_id) {
            (Via::Device(id), None) => *id,
            // A device signs only its own tabs: naming another would escrow under that one's
            // limits, not the signer's.
            (Via::Device(id), Some(text)) => {
                let named = parse_id("id", text)?;
                if named != *id {
                    return Err(Error::Forbidden("a device opens tabs only for itself".into()));
                }
                named
            }
            (Via::ApiKey(_) | Via::Passkey(_), Some(text)) => parse_id("id", text)?,
            (Via::ApiKey(_) | Via::Passkey(_), None) => {
                return Err(Error::InvalidField("device_id: which device signs this tab's vouchers".into()));
            }
        };
        let device = ledger.identity().device(device_id).ok_or(Error::DeviceNotFound(device_id))?;
        if device.holder_id != payer.owner_id || device.status != Status::Active {
            return Err(Error::Forbidden(format!("device {device_id} cannot sign for account {payer_account_id}")));
        }
        within_device_limits(&ledger, device_id, (asset, budget), state.env.now_ns())?;
        // A retry of an opening that went through (its answer lost) is answered as the ledger
        // would answer it, before any decision: no hold, no second factor for a tab that is open.
        if ledger.tab(tab_id).is_some() {
            return Err(Error::TabExists(tab_id));
        }
        device_id
    };
    let command = TabCommand::Open {
        tab_id,
        escrow_transfer_id: state.env.random_id(),
        payer_account_id,
        payee_account_id,
        device_id,
        budget,
        asset,
        timeout_s: ask.timeout_s,
    };
    let payment = crate::risk::Payment { transfer_id: 0, payer_account_id, payee_account_id, amount: budget, asset };
    // The core counts the escrow as the payer's payment when the tab opens (as not strongly
    // authenticated even when a second factor approved it: the count errs toward asking again).
    let spends = escrow_gate(state, caller, PaymentKind::TabOpen, &payment, tab_id, command, approval).await?;
    match run_tab_spending(state, command, spends.as_deref()).await? {
        TabResult::Ok { .. } => {
            if caller.role != Role::Operator {
                state.step_up.paid(caller.principal_id, vec![payee_account_id]);
            }
            Ok(tab_id)
        }
        TabResult::Exists => Err(Error::TabExists(tab_id)),
        TabResult::Escrow(result) => Err(Error::TransferRejected(result)),
        TabResult::Rejected(reject) => Err(Error::TabRejected(reject)),
        TabResult::NotFound | TabResult::Settlement(_) => Err(Error::Internal("tab open".into())),
    }
}

/// A tab the caller may see (its payer, its payee, operators, analysts, auditors).
pub fn tab(state: &App, caller: &Caller, tab_id: &str) -> Result<TabEntry, Error> {
    need_scope(caller, Scopes::READ)?;
    let tab_id = parse_id("id", tab_id)?;
    visible_tab(state, caller, tab_id)
}

/// Pays into tab `tab_id` with a voucher (base64url) its payee submits: answers (the tab,
/// what it added, whether it was stale), once it is durable. Who may submit is checked before the voucher is
/// read, so a caller who may not learns nothing about the tab from the answer.
pub async fn pay_voucher(
    state: &App,
    caller: &Caller,
    tab_id: &str,
    voucher: &str,
) -> Result<(u128, u128, bool), Error> {
    need_scope(caller, Scopes::PAY)?;
    let tab_id = parse_id("id", tab_id)?;
    payee_tab(state, caller, tab_id)?;
    let voucher = decode_voucher(voucher)?;
    if voucher.tab_id != tab_id {
        return Err(Error::TabRejected(PayReject::WrongTab));
    }
    let (paid, stale) = match check_voucher(state, &voucher).await? {
        None => (0, true),
        Some(_) => journal_payment(state, TabCommand::Voucher(voucher)).await?,
    };
    Ok((tab_id, paid, stale))
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

/// Pays many vouchers at once, for any tabs the caller is paid through: their signatures are
/// checked in one Ed25519 batch and the accepted ones journaled together. Each voucher gets its
/// outcome.
pub async fn pay_vouchers(state: &App, caller: &Caller, texts: &[String]) -> Result<Vec<VoucherOutcome>, Error> {
    need_scope(caller, Scopes::PAY)?;
    moves_money(caller)?;
    if texts.len() > VOUCHER_BATCH_MAX {
        return Err(Error::InvalidField(format!("vouchers: at most {VOUCHER_BATCH_MAX} per batch")));
    }
    let outcome = |tab_id: u128, error: Option<&Error>| VoucherOutcome {
        tab_id: tab_id.to_string(),
        paid: "0".into(),
        stale: false,
        error: error.map(|e| e.code().to_string()),
    };
    let mut results: Vec<VoucherOutcome> = Vec::with_capacity(texts.len());
    // (result index, voucher, key) of the vouchers whose fields pass, for one batch verification.
    let mut to_verify: Vec<(usize, Voucher, VerifyingKey)> = Vec::new();
    {
        let ledger = read_ledger(state);
        let now = state.env.now_ns();
        for text in texts {
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
                .filter(|entry| may_see(caller, &ledger, entry) && is_payee(caller, &ledger, entry))
                .ok_or(Error::TabNotFound(tab_id))
                .and_then(|entry| not_paused(state, tab_id).map(|()| entry))
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
                Ok((Err(reject), _)) => results.push(outcome(tab_id, Some(&Error::TabRejected(reject)))),
                Err(error) => results.push(outcome(tab_id, Some(&error))),
            }
        }
    }
    let pairs: Vec<(&Voucher, &VerifyingKey)> = to_verify.iter().map(|(_, v, k)| (v, k)).collect();
    let verified = verify_vouchers(&state.network, &pairs);
    let mut pending = Vec::with_capacity(to_verify.len());
    for ((index, voucher, _), ok) in to_verify.iter().zip(verified) {
        let Some(result) = results.get_mut(*index) else { continue };
        if !ok {
            result.error = Some(Error::TabRejected(PayReject::BadSignature).code().to_string());
            continue;
        }
        // Submitted together, the group commit journals them in one record.
        match state.engine.submit(Op::Tab(TabCommand::Voucher(*voucher))) {
            Ok(receiver) => pending.push((*index, voucher.tab_id, receiver)),
            Err(error) => result.error = Some(Error::from(error).code().to_string()),
        }
    }
    let mut paid_tabs: Vec<u128> = Vec::new();
    for (index, tab_id, receiver) in pending {
        let answer = receiver.await.unwrap_or(Err(obol_store::EngineError::Stopped));
        let Some(result) = results.get_mut(index) else { continue };
        match answer {
            Ok(OpResults::Tab(TabResult::Ok { added })) => {
                result.paid = added.to_string();
                paid_tabs.push(tab_id);
            }
            Ok(OpResults::Tab(TabResult::Rejected(PayReject::Stale))) => result.stale = true,
            Ok(OpResults::Tab(TabResult::Rejected(reject))) => {
                result.error = Some(Error::TabRejected(reject).code().to_string());
            }
            Ok(_) => result.error = Some("internal".into()),
            Err(error) => result.error = Some(Error::from(error).code().to_string()),
        }
    }
    paid_tabs.sort_unstable();
    paid_tabs.dedup();
    for tab_id in paid_tabs {
        tab_checkpoint(state, tab_id).await;
    }
    Ok(results)
}

/// Commits the payer's PayWord chain (a commitment, base64url) to a tab (payer, payee or
/// operator), checked after who may ask: from then on each
/// tick is the next word of its hash chain, checked with one hash.
pub async fn commit(state: &App, caller: &Caller, tab_id: &str, commitment: &str) -> Result<u128, Error> {
    need_scope(caller, Scopes::PAY)?;
    let tab_id = parse_id("id", tab_id)?;
    visible_tab(state, caller, tab_id)?;
    moves_money(caller)?;
    let commitment = decode_commitment(commitment)?;
    if commitment.network != state.network {
        return Err(Error::WrongNetwork(format!(
            "the commitment is signed for another network than this server's {} (docs/vouchers.md)",
            state.x402_network
        )));
    }
    if commitment.tab_id != tab_id {
        return Err(Error::TabRejected(PayReject::WrongTab));
    }
    // A chain pays one tab: the words revealed on one are public, and committed to a second tab
    // they would pay it again for whoever replays them. Commitments are made one at a time so
    // that two racing with one root cannot both pass the check.
    static COMMITTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = COMMITTING.lock().await;
    let reused = read_ledger(state).tabs().iter().any(|entry| {
        entry.tab.id != tab_id && entry.tab.payword.as_ref().is_some_and(|chain| chain.root == commitment.root)
    });
    if reused {
        return Err(Error::PaywordChainReused);
    }
    match run_tab(state, TabCommand::Commit(commitment)).await? {
        // The same commitment sent again (its answer was lost): the chain stands as committed.
        TabResult::Ok { .. } | TabResult::Rejected(PayReject::Stale) => Ok(tab_id),
        TabResult::Rejected(reject) => Err(Error::TabRejected(reject)),
        TabResult::NotFound => Err(Error::TabNotFound(tab_id)),
        TabResult::Exists | TabResult::Escrow(_) | TabResult::Settlement(_) => {
            Err(Error::Internal("commitment".into()))
        }
    }
}

/// Pays into a tab with a PayWord tick (the word as 64 hex digits) its payee submits: answers (what it added, whether it
/// was stale), once it is durable.
pub async fn pay_tick(
    state: &App,
    caller: &Caller,
    tab_id: &str,
    index: u32,
    word: &str,
) -> Result<(u128, u128, bool), Error> {
    need_scope(caller, Scopes::PAY)?;
    let tab_id = parse_id("id", tab_id)?;
    payee_tab(state, caller, tab_id)?;
    let word = decode_word(word)?;
    let (paid, stale) = match check_tick(state, tab_id, index, &word)? {
        None => (0, true),
        Some(_) => journal_payment(state, TabCommand::Tick { tab_id, index, word }).await?,
    };
    Ok((tab_id, paid, stale))
}

/// Adds `amount` to a tab's escrow (its payer, or the operator), as one payment to the payee
/// under the device's limits, the risk policy and step-up: the old escrow is voided and a
/// larger one held in the same record.
pub async fn top_up(
    state: &App,
    caller: &Caller,
    tab_id: &str,
    amount: &str,
    approval: Option<&str>,
) -> Result<u128, Error> {
    need_scope(caller, Scopes::PAY)?;
    need_role(caller, &[Role::Operator, Role::Holder])?;
    let tab_id = parse_id("id", tab_id)?;
    let entry = visible_tab(state, caller, tab_id)?;
    if let Via::Device(device_id) = caller.via
        && device_id != entry.tab.device_id
    {
        return Err(Error::Forbidden("a device tops up only the tabs it signs for".into()));
    }
    let payer = {
        let ledger = read_ledger(state);
        let payer = ledger.tab_payer(&entry.tab).and_then(|id| ledger.account(id));
        if caller.role != Role::Operator && !payer.is_some_and(|account| owns(caller, account)) {
            return Err(Error::Forbidden("only the tab's payer tops it up".into()));
        }
        payer.map(|account| (account.id, account.asset)).ok_or(Error::TabNotFound(tab_id))?
    };
    let amount = parse_amount("amount", amount)?;
    if amount == 0 {
        return Err(Error::InvalidAmount { field: "amount".into(), reason: "must be more than 0".into() });
    }
    within_device_limits(&read_ledger(state), entry.tab.device_id, (payer.1, amount), state.env.now_ns())?;
    let command = TabCommand::TopUp {
        tab_id,
        amount,
        void_transfer_id: state.env.random_id(),
        escrow_transfer_id: state.env.random_id(),
    };
    let payment = crate::risk::Payment {
        transfer_id: 0,
        payer_account_id: payer.0,
        payee_account_id: entry.tab.payee_id,
        amount,
        asset: payer.1,
    };
    let spends = escrow_gate(state, caller, PaymentKind::TabTopup, &payment, tab_id, command, approval).await?;
    match run_tab_spending(state, command, spends.as_deref()).await? {
        TabResult::Ok { .. } | TabResult::Exists => Ok(tab_id),
        TabResult::Escrow(result) => Err(Error::TransferRejected(result)),
        TabResult::Rejected(reject) => Err(Error::TabRejected(reject)),
        TabResult::NotFound => Err(Error::TabNotFound(tab_id)),
        TabResult::Settlement(_) => Err(Error::Internal("top-up".into())),
    }
}

/// Settles a tab, which closes it: posts what it owes and releases the rest of the escrow
/// (payer, payee or operator; repeating it is harmless).
pub async fn settle(state: &App, caller: &Caller, tab_id: &str) -> Result<u128, Error> {
    need_scope(caller, Scopes::PAY)?;
    let tab_id = parse_id("id", tab_id)?;
    visible_tab(state, caller, tab_id)?;
    moves_money(caller)?;
    match run_tab(state, TabCommand::Settle { tab_id, settle_transfer_id: state.env.random_id() }).await? {
        TabResult::Ok { .. } | TabResult::Exists => Ok(tab_id),
        TabResult::Settlement(result) => Err(Error::TransferRejected(result)),
        TabResult::NotFound => Err(Error::TabNotFound(tab_id)),
        TabResult::Rejected(reject) => Err(Error::TabRejected(reject)),
        TabResult::Escrow(_) => Err(Error::Internal("settle".into())),
    }
}

/// Reads a PayWord commitment sent as base64url.
pub(crate) fn decode_commitment(text: &str) -> Result<Commitment, Error> {
    let bytes = Base64UrlUnpadded::decode_vec(text.trim())
        .map_err(|_| Error::InvalidField("commitment must be base64url without padding".into()))?;
    Commitment::decode(&bytes).map_err(|e| match e {
        obol_core::channel::CodecError::Unbound => Error::WrongNetwork(format!("commitment: {e}")),
        _ => Error::InvalidField(format!("commitment: {e}")),
    })
}

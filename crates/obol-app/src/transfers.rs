//! Accounts and transfers: who may create accounts and move money (ownership, a device's asset
//! and per-payment limit, posts and voids by the credit side, flags on the other party's
//! account), a held request's fate, the risk policy and step-up, then one `Op::Pay` record.

use obol_core::identity::{Role, Scopes};
use obol_core::ledger::{
    Account, AccountFlags, BATCH_EVENTS_MAX, CreateTransferResult, Ledger, NewAccount, NewTransfer, OpResults,
    TransferFlags,
};
use obol_core::record::Op;

use crate::auth::{self, Caller};
use crate::authz::{can_debit, can_see_account, can_see_transfer, need_role, need_scope, owns};
use crate::error::Error;
use crate::risk::{HoldOf, Payment, PaymentKind, Risk, Verdict};
use crate::{App, read_ledger};

/// Refuses an empty batch or one larger than a record holds.
pub fn batch_size(got: usize) -> Result<(), Error> {
    if got == 0 || got > BATCH_EVENTS_MAX {
        return Err(Error::BatchSize { got, max: BATCH_EVENTS_MAX });
    }
    Ok(())
}

/// The error for an engine answer of the wrong shape (a bug).
pub fn internal(what: &str) -> Error {
    Error::Internal(format!("engine answered {what} with the wrong shape"))
}

/// Whether the caller may see account `id`.
pub fn account_visible(state: &App, caller: &Caller, id: u128) -> bool {
    read_ledger(state).account(id).is_some_and(|account| can_see_account(caller, account))
}

/// Whether the caller may see transfer `id`.
pub fn transfer_visible(state: &App, caller: &Caller, id: u128) -> bool {
    let ledger = read_ledger(state);
    ledger.transfer(id).is_some_and(|transfer| can_see_transfer(caller, &ledger, transfer))
}

/// Result codes as the caller may see them: an `exists*` about something the caller cannot
/// see becomes `id_taken`, which says nothing of what differs.
pub fn conceal<'a>(ids: &[u128], codes: impl Iterator<Item = &'a str>, visible: impl Fn(u128) -> bool) -> Vec<&'a str> {
    ids.iter()
        .zip(codes)
        .map(|(id, code)| if code.starts_with("exists") && !visible(*id) { "id_taken" } else { code })
        .collect()
}

/// The account `id`, if the caller may see it (else not found, as if it did not exist).
pub fn visible_account<'l>(caller: &Caller, ledger: &'l Ledger, id: u128) -> Result<&'l Account, Error> {
    ledger.account(id).filter(|account| can_see_account(caller, account)).ok_or(Error::AccountNotFound(id))
}

/// Checks who may create these accounts and fills in owners: holders and merchants own what they
/// create; the operator names any holder or merchant as owner, or none (a platform account).
pub(crate) fn authorize_new_accounts(state: &App, caller: &Caller, events: &mut [NewAccount]) -> Result<(), Error> {
    need_scope(caller, Scopes::PAY)?;
    need_role(caller, &[Role::Operator, Role::Holder, Role::Merchant])?;
    let ledger = read_ledger(state);
    for event in events.iter_mut() {
        if caller.role == Role::Operator {
            if event.owner_id != 0 {
                let owner =
                    ledger.identity().principal(event.owner_id).ok_or(Error::PrincipalNotFound(event.owner_id))?;
                if !owner.role.owns_accounts() {
                    return Err(Error::InvalidField(format!(
                        "owner {} is a {}; only holders and merchants own accounts",
                        owner.id,
                        owner.role.as_str()
                    )));
                }
            }
        } else if event.owner_id == 0 || event.owner_id == caller.principal_id {
            event.owner_id = caller.principal_id;
            // A holder's or merchant's account never goes below zero: it pays only from what
            // it was paid. Overdraft (and credit-limited) accounts are the operator's to make.
            if event.flags.has(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS) {
                return Err(Error::Forbidden(
                    "credits_must_not_exceed_debits accounts are the operator's to create".into(),
                ));
            }
            event.flags.0 |= AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
        } else {
            return Err(Error::Forbidden("accounts can only be created for yourself".into()));
        }
    }
    Ok(())
}

/// A device pays only with plain or pending transfers, in its limits' asset, each at most
/// `per_payment` (the core checks them again, with the day, when the payment applies).
pub(crate) fn check_device_limits(device: &obol_core::identity::Device, events: &[NewTransfer]) -> Result<(), Error> {
    if events.iter().any(|e| e.flags.resolves_pending()) {
        return Err(Error::Forbidden("devices make payments; posting or voiding needs the holder's key".into()));
    }
    let Some(limits) = device.limits else { return Ok(()) };
    for event in events {
        if event.asset != Some(limits.asset) {
            return Err(Error::DeviceLimit(format!("this device may only pay in {}", limits.asset)));
        }
        if limits.per_payment != 0 && event.amount > limits.per_payment {
            return Err(Error::DeviceLimit(format!(
                "{} is above this device's limit of {} per payment",
                event.amount, limits.per_payment
            )));
        }
    }
    Ok(())
}

/// What the checks before a request's transfers allow.
pub(crate) enum Gate {
    /// Go on; `authenticated` when a second factor approved these payments, `spends` the
    /// approval used (journaled as spent in the payment's record).
    Go { authenticated: bool, spends: Option<String> },
    /// The risk policy holds the request: the assessment, the payment it is about, and the
    /// approval the holder's own step-up policy asked for first (spent in the hold's record).
    Hold(Box<obol_risk::engine::Assessment>, Payment, Option<String>),
}

/// The payments among `events` (posts and voids of pending transfers are not payments), with
/// their index.
pub(crate) fn payments_of(ledger: &obol_core::ledger::Ledger, events: &[NewTransfer]) -> Vec<(usize, Payment)> {
    events
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.flags.resolves_pending())
        // A transfer whose id exists moves nothing (the ledger answers that it exists, or that it
        // exists with other fields): a retry of a payment made is not decided, charged or
        // counted again.
        .filter(|(_, e)| ledger.transfer(e.id).is_none())
        .filter_map(|(index, e)| {
            let asset = e.asset.or_else(|| ledger.account(e.debit_account_id).map(|a| a.asset))?;
            let payment = Payment {
                transfer_id: e.id,
                payer_account_id: e.debit_account_id,
                payee_account_id: e.credit_account_id,
                amount: e.amount,
                asset,
            };
            Some((index, payment))
        })
        .collect()
}

/// Checks that the caller may move money as these transfers ask: out of its own accounts, or, for
/// a post or void, on a pending transfer that touches its accounts; then asks the risk policy,
/// then step-up.
pub(crate) fn authorize_transfers(
    state: &App,
    caller: &Caller,
    events: &[NewTransfer],
    approval: Option<&str>,
    kind: PaymentKind,
) -> Result<Gate, Error> {
    if caller.role == Role::Operator {
        need_scope(caller, Scopes::PAY)?;
        return Ok(Gate::Go { authenticated: false, spends: None });
    }
    let ledger = read_ledger(state);
    authorize_moves(&ledger, caller, events)?;
    if met_hold(state, caller, events)? {
        return Ok(Gate::Go { authenticated: false, spends: None });
    }
    let payments = payments_of(&ledger, events);
    let only: Vec<Payment> = payments.iter().map(|(_, p)| *p).collect();
    // A refund gives a payer back, at most, what it paid: the policy may forbid it (a block),
    // but holding or challenging it protects nobody, and a held refund could not be re-checked
    // against what is left when it ran. Refunds are counted in no feature either: giving back
    // is not paying.
    let refund = kind == PaymentKind::Refund;
    let assessments = if refund {
        state.risk.assess_dry(&ledger, caller, (kind, &only), state.env.now_ns())
    } else {
        state.risk.assess(&ledger, caller, (kind, &only), state.env.now_ns())
    };
    let verdict = match Risk::verdict(assessments, can_step_up(&ledger, caller)) {
        Verdict::Block(risk) => Verdict::Block(risk),
        Verdict::Hold(..) | Verdict::Go { .. } if refund => Verdict::Go { step_up: Vec::new(), risk: None },
        other => other,
    };
    match verdict {
        // Whole here (the audit note names the rule); [`pay_as`] hands the caller its share.
        Verdict::Block(risk) => Err(Error::RiskBlocked(Box::new(risk))),
        Verdict::Hold(assessment, index) => {
            let payment = only.get(index).copied().ok_or_else(|| internal("risk hold"))?;
            // A hold is no way around the holder's own step-up policy: what it asks a second
            // factor for is approved first, and the approval is spent when the hold is stored,
            // so an analyst's approval never runs a payment its holder's factor did not.
            let spends = state.step_up.check((&*state.env, &ledger), caller, (kind, events), approval, &[], None)?;
            Ok(Gate::Hold(assessment, payment, spends))
        }
        Verdict::Go { step_up, risk } => {
            let marked: Vec<usize> = step_up.iter().filter_map(|k| payments.get(*k).map(|(i, _)| *i)).collect();
            let risk = risk.map(|risk| risk.for_caller(caller));
            let spends =
                state.step_up.check((&*state.env, &ledger), caller, (kind, events), approval, &marked, risk)?;
            let authenticated = spends.is_some();
            // The challenged payments the payer approved now count in the streaming features.
            let approved: Vec<Payment> = step_up.iter().filter_map(|k| only.get(*k).copied()).collect();
            if !refund {
                state.risk.observe(&ledger, caller, &approved, state.env.now_ns());
            }
            // A second factor restarts the counters since strong authentication only when it
            // approved every payment of the request (one approved payment among others does
            // not make the rest strongly authenticated).
            let all_approved = authenticated && payments.iter().all(|(index, _)| marked.contains(index));
            Ok(Gate::Go { authenticated: all_approved, spends })
        }
    }
}

/// A held request has one fate: a retry of it (same payer, same transfers) meets its hold,
/// never a second decision. `Ok(true)`: an analyst approved it, go on without deciding again;
/// `Ok(false)`: no review holds these ids; otherwise the answer the hold gives.
pub(crate) fn met_hold(state: &App, caller: &Caller, events: &[NewTransfer]) -> Result<bool, Error> {
    match state.risk.hold_of(caller, events) {
        HoldOf::Free => Ok(false),
        HoldOf::Pending(review) => Err(Error::HeldForReview(Box::new(review.for_caller(caller)))),
        HoldOf::Declined(review_id) => Err(Error::ReviewDeclined(review_id)),
        HoldOf::Refused(review_id, code) => Err(Error::ReviewRefused(review_id, code)),
        HoldOf::Approved => Ok(true),
        HoldOf::Taken(id) => Err(Error::IdTaken(id)),
    }
}

/// What making these transfers would meet now, decided as [`authorize_transfers`] does but
/// holding, challenging, charging and counting nothing (the facilitator's `verify`): `Err` with
/// the refusal the real request would get, `Ok(Some(code))` when it would be held for review
/// (`held_for_review`) or need a second factor (`requires_action`), `Ok(None)` when it would go.
pub(crate) fn dry_gate(state: &App, caller: &Caller, events: &[NewTransfer]) -> Result<Option<&'static str>, Error> {
    if caller.role == Role::Operator {
        need_scope(caller, Scopes::PAY)?;
        return Ok(None);
    }
    let ledger = read_ledger(state);
    authorize_moves(&ledger, caller, events)?;
    if met_hold(state, caller, events)? {
        return Ok(None);
    }
    let payments: Vec<Payment> = payments_of(&ledger, events).into_iter().map(|(_, payment)| payment).collect();
    let assessments = state.risk.assess_dry(&ledger, caller, (PaymentKind::Transfer, &payments), state.env.now_ns());
    Ok(match Risk::verdict(assessments, can_step_up(&ledger, caller)) {
        Verdict::Block(risk) => return Err(Error::RiskBlocked(Box::new(risk.for_caller(caller)))),
        Verdict::Go { step_up, .. }
            if step_up.is_empty() && !state.step_up.would_challenge(&ledger, caller, events) =>
        {
            None
        }
        // The holder's own step-up policy is asked before a hold too (see `authorize_transfers`).
        Verdict::Hold(..) if !state.step_up.would_challenge(&ledger, caller, events) => Some("held_for_review"),
        Verdict::Hold(..) | Verdict::Go { .. } => Some("requires_action"),
    })
}

/// Whether the caller may move money as these transfers ask (scope, role, a device's asset and
/// per-payment limit, ownership of what is debited, posted or voided, flags on the other party's
/// account); no risk policy, no step-up. Asked when a request arrives, and again when an
/// analyst approves a held one, so a payment never runs on authority its payer has lost since.
pub(crate) fn authorize_moves(ledger: &Ledger, caller: &Caller, events: &[NewTransfer]) -> Result<(), Error> {
    need_scope(caller, Scopes::PAY)?;
    need_role(caller, &[Role::Operator, Role::Holder, Role::Merchant])?;
    if caller.role == Role::Operator {
        return Ok(());
    }
    if let auth::Via::Device(device_id) = caller.via {
        let device = ledger.identity().device(device_id).ok_or(Error::DeviceNotFound(device_id))?;
        check_device_limits(device, events)?;
    }
    for event in events {
        if event.flags.resolves_pending() {
            authorize_resolution(ledger, caller, event)?;
        } else {
            // Fails closed: an account the caller cannot see is refused here, not left for the
            // ledger to judge.
            let debit = visible_account(caller, ledger, event.debit_account_id)?;
            if !can_debit(caller, debit) {
                return Err(Error::Forbidden(format!("account {} is not yours to debit", event.debit_account_id)));
            }
            authorize_counterparty_flags(ledger, caller, event)?;
        }
    }
    Ok(())
}

/// A pending transfer's money is promised to its credit side: the owner of the credit account
/// posts it (takes it) or voids it (gives it back); its debit side may not take it back, and its
/// timeout or the operator releases it otherwise. A pending transfer the caller cannot see, or
/// one that does not exist, is refused as not found (fails closed). A tab's escrow is refused by
/// the ledger whoever asks: only the tab's own commands move it.
pub(crate) fn authorize_resolution(ledger: &Ledger, caller: &Caller, event: &NewTransfer) -> Result<(), Error> {
    let pending = ledger
        .transfer(event.pending_id)
        .filter(|pending| can_see_transfer(caller, ledger, pending))
        .ok_or(Error::TransferNotFound(event.pending_id))?;
    let credit_owner = ledger.account(pending.credit_account_id).is_some_and(|account| owns(caller, account));
    if !credit_owner {
        let what = if event.flags.has(TransferFlags::POST_PENDING) { "post" } else { "void" };
        return Err(Error::Forbidden(format!(
            "only the owner of the credit account may {what} pending transfer {} (its timeout releases it otherwise)",
            event.pending_id
        )));
    }
    Ok(())
}

/// Flags that act on the credit account (closing it, or sizing the transfer by its balance)
/// are for the operator or the owner of both sides: a payer may not close its payee's account,
/// or learn its balance through the amount a balancing transfer takes.
pub(crate) fn authorize_counterparty_flags(ledger: &Ledger, caller: &Caller, event: &NewTransfer) -> Result<(), Error> {
    let acts_on_credit =
        event.flags.has(TransferFlags::CLOSING_CREDIT) || event.flags.has(TransferFlags::BALANCING_CREDIT);
    if !acts_on_credit {
        return Ok(());
    }
    let owns_credit = ledger.account(event.credit_account_id).is_some_and(|account| owns(caller, account));
    if !owns_credit {
        return Err(Error::Forbidden(
            "closing_credit and balancing_credit act on the other party's account: only the operator may set them"
                .into(),
        ));
    }
    Ok(())
}

/// Whether the caller can approve a step-up challenge: a holder with a second factor.
pub(crate) fn can_step_up(ledger: &obol_core::ledger::Ledger, caller: &Caller) -> bool {
    caller.role == Role::Holder && ledger.identity().principal(caller.principal_id).is_some_and(|p| p.has_factor())
}

/// Holds a request for review and answers the 202 that says so. `runs`: whether approval runs
/// it (see [`OnApproval`]).
pub(crate) async fn hold_transfers(
    state: &App,
    caller: &Caller,
    assessment: &obol_risk::engine::Assessment,
    payment: &Payment,
    events: &[NewTransfer],
    (on_approval, spends): (OnApproval, Option<&str>),
) -> Error {
    let payments: Vec<(u128, u128)> =
        events.iter().filter(|e| !e.flags.resolves_pending()).map(|e| (e.debit_account_id, e.amount)).collect();
    let op = Op::CreateTransfers(events.to_vec());
    let runs = on_approval == OnApproval::Run;
    let held = crate::risk::Held {
        kind: PaymentKind::Transfer.held(),
        payment,
        tab_id: None,
        assessment,
        op,
        payments: &payments,
        runs,
        spends,
    };
    match state.risk.hold(state, caller, held).await {
        Ok(review) => Error::HeldForReview(Box::new(review.for_caller(caller))),
        Err(error) => error,
    }
}

/// The op that makes `events` for `caller`: a holder's or merchant's is a payment (checked
/// against its device's limits, charged to its day and counted for each paying account in the
/// same `apply`, only if it goes through); an operator's moves are plain transfers.
pub(crate) fn payment_op(caller: &Caller, events: Vec<NewTransfer>, authenticated: bool) -> Op {
    if caller.role == Role::Operator {
        return Op::CreateTransfers(events);
    }
    let device_id = match caller.via {
        auth::Via::Device(device_id) => device_id,
        auth::Via::ApiKey(_) | auth::Via::Passkey(_) => 0,
    };
    Op::Pay(obol_core::ledger::Payment { device_id, authenticated, transfers: events })
}

/// The refusal when a device's payments do not fit its limits (the core refuses all of them).
pub(crate) fn device_limit(state: &App, caller: &Caller) -> Error {
    let limits = match caller.via {
        auth::Via::Device(id) => read_ledger(state).identity().device(id).and_then(|d| d.limits),
        auth::Via::ApiKey(_) | auth::Via::Passkey(_) => None,
    };
    Error::DeviceLimit(match limits {
        Some(limits) => format!(
            "this would take the device past its limits ({} per payment, {} a day, in {})",
            limits.per_payment, limits.per_day, limits.asset
        ),
        None => "the device may not pay".into(),
    })
}

/// The payee of each payment among `events` (`None` for posts and voids), for [`after_payment`].
pub fn payees(events: &[NewTransfer]) -> Vec<Option<u128>> {
    events.iter().map(|e| (!e.flags.resolves_pending()).then_some(e.credit_account_id)).collect()
}

/// After a commit: remember the payees paid (a device's first payment is marked by the core).
pub(crate) fn after_payment(state: &App, caller: &Caller, payees: &[Option<u128>], ok: &[bool]) {
    let paid: Vec<u128> = payees.iter().zip(ok).filter_map(|(payee, ok)| payee.filter(|_| *ok)).collect();
    if !paid.is_empty() {
        state.step_up.paid(caller.principal_id, paid);
    }
}

/// What an analyst's approval of a held request does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum OnApproval {
    /// Runs it: the client was told it is held (202) and waits for the outcome.
    Run,
    /// Runs nothing: the client was refused (x402 answers 402 and delivers nothing), so the
    /// payment may run only when the payer sends it again, and then without a second decision.
    /// Such a payment cannot carry a step-up approval either: a challenge it meets is refused
    /// without being kept open.
    AllowRetry,
}

/// Makes one transfer as `caller` would through the API: authorization, step-up, device limits,
/// then the ledger; answers the ledger's result.
pub(crate) async fn transfer_as(
    state: &App,
    caller: &Caller,
    event: &NewTransfer,
    approval: Option<&str>,
    on_approval: OnApproval,
) -> Result<CreateTransferResult, Error> {
    let results = pay_as(state, caller, vec![*event], approval, on_approval, PaymentKind::Transfer).await?;
    results.first().copied().ok_or_else(|| internal("create_transfer"))
}

/// Creates accounts for `caller` (holders and merchants own what they create; see
/// [`authorize_new_accounts`]) in one durable record; answers the ledger's result per account.
pub async fn create_accounts(
    state: &App,
    caller: &Caller,
    mut events: Vec<NewAccount>,
) -> Result<Vec<obol_core::ledger::CreateAccountResult>, Error> {
    batch_size(events.len())?;
    authorize_new_accounts(state, caller, &mut events)?;
    for event in &events {
        crate::assets::check_registered(state, event.asset)?;
    }
    match state.engine.execute(Op::CreateAccounts(events)).await? {
        OpResults::Accounts(results) => Ok(results),
        OpResults::Transfers(_) | OpResults::Identity(_) | OpResults::Tab(_) | OpResults::Put => {
            Err(internal("create_accounts"))
        }
    }
}

/// Makes `events` as `caller` pays: authorization, a held request's fate, the risk policy and
/// step-up, then one record (a holder's or merchant's transfers are one `Op::Pay`, checked and
/// charged against its device's limits in the same apply); answers the ledger's result per
/// transfer. A request the policy holds answers `HeldForReview` and runs only on approval.
pub async fn pay(
    state: &App,
    caller: &Caller,
    events: Vec<NewTransfer>,
    approval: Option<&str>,
) -> Result<Vec<CreateTransferResult>, Error> {
    pay_as(state, caller, events, approval, OnApproval::Run, PaymentKind::Transfer).await
}

/// [`pay`] for refunds: the same pipeline, decided and approved as `refund`s.
pub(crate) async fn pay_refunds(
    state: &App,
    caller: &Caller,
    events: Vec<NewTransfer>,
    approval: Option<&str>,
) -> Result<Vec<CreateTransferResult>, Error> {
    pay_as(state, caller, events, approval, OnApproval::Run, PaymentKind::Refund).await
}

/// [`pay`], with what an analyst's approval of a hold does (`AllowRetry`: the client was refused
/// and nothing runs until it sends the payment again).
async fn pay_as(
    state: &App,
    caller: &Caller,
    events: Vec<NewTransfer>,
    approval: Option<&str>,
    on_approval: OnApproval,
    kind: PaymentKind,
) -> Result<Vec<CreateTransferResult>, Error> {
    batch_size(events.len())?;
    // The refund code is the refund route's alone: the ledger's record of what a payment was
    // refunded is then exactly what that route checked and wrote.
    if kind != PaymentKind::Refund && events.iter().any(|e| e.code == crate::refunds::REFUND_CODE) {
        return Err(Error::InvalidField(format!(
            "code {} is reserved for refunds: POST /v1/transfers/{{id}}/refunds",
            crate::refunds::REFUND_CODE
        )));
    }
    {
        let device_id = match caller.via {
            auth::Via::Device(device_id) => device_id,
            auth::Via::ApiKey(_) | auth::Via::Passkey(_) => 0,
        };
        if caller.role != Role::Operator {
            crate::freeze::refuse_frozen(&read_ledger(state), device_id, &events)?;
        }
    }
    let gate = match authorize_transfers(state, caller, &events, approval, kind) {
        Err(Error::RiskBlocked(risk)) => {
            let subject = format!("transfer:{}", events.first().map_or(0, |event| event.id));
            let outcome = format!("risk_blocked {}", risk.rule.as_deref().unwrap_or(""));
            let mut details = crate::audit::block_reason(&risk);
            if let Some(first) = events.first() {
                let total = events.iter().fold(0u128, |sum, event| sum.saturating_add(event.amount));
                details.insert("amount".into(), total.to_string().into());
                if let Some(asset) = first.asset {
                    details.insert("asset_code".into(), asset.code().into());
                    details.insert("asset_scale".into(), asset.scale().into());
                }
                details.insert("payee".into(), first.credit_account_id.to_string().into());
            }
            crate::audit::journal_refusal(state, caller, "risk.block", &subject, outcome.trim(), details).await;
            Err(Error::RiskBlocked(Box::new(risk.for_caller(caller))))
        }
        other => other,
    };
    let gate = match on_approval {
        OnApproval::Run => crate::approvals::journaled(state, gate).await?,
        // An x402 payment cannot carry an approval back: a challenge it asked for could never be
        // approved, and would only take one of the holder's few open challenges. None is kept.
        OnApproval::AllowRetry => state.step_up.withdrawn(gate)?,
    };
    let (authenticated, spends) = match gate {
        Gate::Go { authenticated, spends } => (authenticated, spends),
        Gate::Hold(assessment, payment, spends) => {
            let how = (on_approval, spends.as_deref());
            return Err(hold_transfers(state, caller, &assessment, &payment, &events, how).await);
        }
    };
    let paid_to = payees(&events);
    // Alerts of payments over their payer's threshold go in the payment's own record.
    let alerts = crate::webhooks::payment_events(state, &events);
    // The approval is spent in the payment's own record: a crash leaves both or neither.
    let op = payment_op(caller, events, authenticated);
    match crate::approvals::execute_spending_with(state, spends.as_deref(), op, alerts).await? {
        OpResults::Transfers(results) => {
            if results.iter().all(|r| *r == CreateTransferResult::DeviceLimitExceeded) {
                return Err(device_limit(state, caller));
            }
            let ok: Vec<bool> = results.iter().map(|r| *r == CreateTransferResult::Ok).collect();
            after_payment(state, caller, &paid_to, &ok);
            Ok(results)
        }
        OpResults::Accounts(_) | OpResults::Identity(_) | OpResults::Tab(_) | OpResults::Put => {
            Err(internal("create_transfers"))
        }
    }
}

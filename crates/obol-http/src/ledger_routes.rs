//! Ledger routes: accounts, transfers, balances and history, with the authorization, device
//! limits and step-up checks that guard them.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use obol_core::codec::Op;
use obol_core::identity::{Role, Scopes};
use obol_core::ledger::{
    Account, AccountFlags, BATCH_EVENTS_MAX, CreateAccountResult, CreateTransferResult, Ledger, NewAccount,
    NewTransfer, OpResults, TransferFlags,
};

use crate::auth::{self, Caller};
use crate::authz::{can_debit, can_see_account, can_see_transfer, need_role, need_scope, owns};
use crate::dto::*;
use crate::error::{ApiError, Problem};
use crate::risk::{HoldOf, Payment, Risk, Verdict};
use crate::{ApiJson, AppState, HISTORY_LIMIT_MAX, read_ledger};

fn batch_size(got: usize) -> Result<(), ApiError> {
    if got == 0 || got > BATCH_EVENTS_MAX {
        return Err(ApiError::BatchSize { got, max: BATCH_EVENTS_MAX });
    }
    Ok(())
}

fn internal(what: &str) -> ApiError {
    ApiError::Internal(format!("engine answered {what} with the wrong shape"))
}

fn with_location(status: StatusCode, location: String, body: impl IntoResponse) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, value);
    }
    (status, headers, body).into_response()
}

/// Create one account.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", request_body = AccountNew,
    responses(
        (status = 201, description = "Created", body = AccountDto),
        (status = 200, description = "An identical account already existed", body = AccountDto),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The id exists with different fields", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The ledger refused the account", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn create_account(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<AccountNew>,
) -> Result<Response, ApiError> {
    let mut event = body.to_core()?;
    authorize_new_accounts(&state, &caller, std::slice::from_mut(&mut event))?;
    let result = match state.engine.execute(Op::CreateAccounts(vec![event])).await? {
        OpResults::Accounts(results) => results.first().copied().ok_or_else(|| internal("create_account"))?,
        OpResults::Transfers(_) | OpResults::Identity(_) | OpResults::Tab(_) | OpResults::Put => {
            return Err(internal("create_account"));
        }
    };
    let status = match result {
        CreateAccountResult::Ok => StatusCode::CREATED,
        CreateAccountResult::Exists => StatusCode::OK,
        rejected if rejected.as_str().starts_with("exists") && !account_visible(&state, &caller, event.id) => {
            return Err(ApiError::IdTaken(event.id));
        }
        rejected => return Err(ApiError::AccountRejected(rejected)),
    };
    let account = read_ledger(&state).account(event.id).map(AccountDto::from).ok_or_else(|| internal("account"))?;
    Ok(with_location(status, format!("/v1/accounts/{}", event.id), Json(account)))
}

/// Create up to 8,190 accounts in one durable batch.
#[utoipa::path(post, path = "/v1/accounts/batch", tag = "accounts", request_body = AccountBatch,
    responses(
        (status = 200, description = "One result per account, in order", body = BatchResults),
        (status = 400, description = "Malformed request; nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 202, description = "Held for review by the risk policy: nothing ran yet", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Refused by the risk policy, or step-up needed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn create_accounts(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<AccountBatch>,
) -> Result<Json<BatchResults>, ApiError> {
    batch_size(body.accounts.len())?;
    let mut events = body
        .accounts
        .iter()
        .enumerate()
        .map(|(index, account)| account.to_core().map_err(|error| at_index(index, error)))
        .collect::<Result<Vec<_>, _>>()?;
    authorize_new_accounts(&state, &caller, &mut events)?;
    let ids: Vec<u128> = events.iter().map(|e| e.id).collect();
    match state.engine.execute(Op::CreateAccounts(events)).await? {
        OpResults::Accounts(results) => {
            let codes = conceal(&ids, results.iter().map(|r| r.as_str()), |id| account_visible(&state, &caller, id));
            Ok(Json(batch_results(&ids, codes.into_iter())))
        }
        OpResults::Transfers(_) | OpResults::Identity(_) | OpResults::Tab(_) | OpResults::Put => {
            Err(internal("create_accounts"))
        }
    }
}

/// Whether the caller may see account `id`.
fn account_visible(state: &AppState, caller: &Caller, id: u128) -> bool {
    read_ledger(state).account(id).is_some_and(|account| can_see_account(caller, account))
}

/// Whether the caller may see transfer `id`.
fn transfer_visible(state: &AppState, caller: &Caller, id: u128) -> bool {
    let ledger = read_ledger(state);
    ledger.transfer(id).is_some_and(|transfer| can_see_transfer(caller, &ledger, transfer))
}

/// Result codes as the caller may see them: an `exists*` about something the caller cannot
/// see becomes `id_taken`, which says nothing of what differs.
fn conceal<'a>(ids: &[u128], codes: impl Iterator<Item = &'a str>, visible: impl Fn(u128) -> bool) -> Vec<&'a str> {
    ids.iter()
        .zip(codes)
        .map(|(id, code)| if code.starts_with("exists") && !visible(*id) { "id_taken" } else { code })
        .collect()
}

fn at_index(index: usize, error: ApiError) -> ApiError {
    match error {
        ApiError::InvalidId { field, reason } => ApiError::InvalidId { field: format!("[{index}].{field}"), reason },
        ApiError::InvalidAmount { field, reason } => {
            ApiError::InvalidAmount { field: format!("[{index}].{field}"), reason }
        }
        ApiError::InvalidAsset(detail) => ApiError::InvalidAsset(format!("[{index}]: {detail}")),
        ApiError::InvalidFlag(flag) => ApiError::InvalidFlag(format!("[{index}]: {flag}")),
        other => other,
    }
}

/// Look up an account.
#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "accounts",
    params(("id" = String, Path, description = "Account id, decimal")),
    responses(
        (status = 200, description = "The account", body = AccountDto),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn get_account(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<AccountDto>, ApiError> {
    need_scope(&caller, Scopes::READ)?;
    let id = path_id(&id)?;
    let ledger = read_ledger(&state);
    visible_account(&caller, &ledger, id).map(|a| Json(AccountDto::from(a)))
}

pub(crate) fn visible_account<'l>(caller: &Caller, ledger: &'l Ledger, id: u128) -> Result<&'l Account, ApiError> {
    ledger.account(id).filter(|account| can_see_account(caller, account)).ok_or(ApiError::AccountNotFound(id))
}

/// Checks who may create these accounts and fills in owners: holders and merchants own what they
/// create; the operator names any holder or merchant as owner, or none (a platform account).
fn authorize_new_accounts(state: &AppState, caller: &Caller, events: &mut [NewAccount]) -> Result<(), ApiError> {
    need_scope(caller, Scopes::PAY)?;
    need_role(caller, &[Role::Operator, Role::Holder, Role::Merchant])?;
    let ledger = read_ledger(state);
    for event in events.iter_mut() {
        if caller.role == Role::Operator {
            if event.owner_id != 0 {
                let owner =
                    ledger.identity().principal(event.owner_id).ok_or(ApiError::PrincipalNotFound(event.owner_id))?;
                if !owner.role.owns_accounts() {
                    return Err(ApiError::InvalidField(format!(
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
                return Err(ApiError::Forbidden(
                    "credits_must_not_exceed_debits accounts are the operator's to create".into(),
                ));
            }
            event.flags.0 |= AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS;
        } else {
            return Err(ApiError::Forbidden("accounts can only be created for yourself".into()));
        }
    }
    Ok(())
}

/// A device pays only with plain or pending transfers, in its limits' asset, each at most
/// `per_payment` (the core checks them again, with the day, when the payment applies).
fn check_device_limits(device: &obol_core::identity::Device, events: &[NewTransfer]) -> Result<(), ApiError> {
    if events.iter().any(|e| e.flags.resolves_pending()) {
        return Err(ApiError::Forbidden("devices make payments; posting or voiding needs the holder's key".into()));
    }
    let Some(limits) = device.limits else { return Ok(()) };
    for event in events {
        if event.asset != Some(limits.asset) {
            return Err(ApiError::DeviceLimit(format!("this device may only pay in {}", limits.asset)));
        }
        if limits.per_payment != 0 && event.amount > limits.per_payment {
            return Err(ApiError::DeviceLimit(format!(
                "{} is above this device's limit of {} per payment",
                event.amount, limits.per_payment
            )));
        }
    }
    Ok(())
}

/// What the checks before a request's transfers allow.
pub(crate) enum Gate {
    /// Go on; `authenticated` when a second factor approved these payments.
    Go { authenticated: bool },
    /// The risk policy holds the request: the assessment and the payment it is about.
    Hold(Box<obol_risk::engine::Assessment>, Payment),
}

/// The payments among `events` (posts and voids of pending transfers are not payments), with
/// their index.
fn payments_of(ledger: &obol_core::ledger::Ledger, events: &[NewTransfer]) -> Vec<(usize, Payment)> {
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
fn authorize_transfers(
    state: &AppState,
    caller: &Caller,
    events: &[NewTransfer],
    approval: Option<&str>,
) -> Result<Gate, ApiError> {
    if caller.role == Role::Operator {
        need_scope(caller, Scopes::PAY)?;
        return Ok(Gate::Go { authenticated: false });
    }
    let ledger = read_ledger(state);
    authorize_moves(&ledger, caller, events)?;
    if met_hold(state, caller, events)? {
        return Ok(Gate::Go { authenticated: false });
    }
    let payments = payments_of(&ledger, events);
    let only: Vec<Payment> = payments.iter().map(|(_, p)| *p).collect();
    let assessments = state.risk.assess(&ledger, caller, "transfer", &only);
    match Risk::verdict(assessments, can_step_up(&ledger, caller)) {
        Verdict::Block(risk) => Err(ApiError::RiskBlocked(Box::new(risk.for_caller(caller)))),
        Verdict::Hold(assessment, index) => {
            let payment = only.get(index).copied().ok_or_else(|| internal("risk hold"))?;
            Ok(Gate::Hold(assessment, payment))
        }
        Verdict::Go { step_up, risk } => {
            let marked: Vec<usize> = step_up.iter().filter_map(|k| payments.get(*k).map(|(i, _)| *i)).collect();
            let risk = risk.map(|risk| risk.for_caller(caller));
            let authenticated = state.step_up.check(&ledger, caller, events, approval, &marked, risk)?;
            // The challenged payments the payer approved now count in the streaming features.
            let approved: Vec<Payment> = step_up.iter().filter_map(|k| only.get(*k).copied()).collect();
            state.risk.observe(&ledger, caller, &approved);
            // A second factor restarts the counters since strong authentication only when it
            // approved every payment of the request (one approved payment among others does
            // not make the rest strongly authenticated).
            let all_approved = authenticated && payments.iter().all(|(index, _)| marked.contains(index));
            Ok(Gate::Go { authenticated: all_approved })
        }
    }
}

/// A held request has one fate: a retry of it (same payer, same transfers) meets its hold,
/// never a second decision. `Ok(true)`: an analyst approved it, go on without deciding again;
/// `Ok(false)`: no review holds these ids; otherwise the answer the hold gives.
fn met_hold(state: &AppState, caller: &Caller, events: &[NewTransfer]) -> Result<bool, ApiError> {
    match state.risk.hold_of(caller, events) {
        HoldOf::Free => Ok(false),
        HoldOf::Pending(review) => Err(ApiError::HeldForReview(Box::new(review.for_caller(caller)))),
        HoldOf::Declined(review_id) => Err(ApiError::ReviewDeclined(review_id)),
        HoldOf::Approved => Ok(true),
        HoldOf::Taken(id) => Err(ApiError::IdTaken(id)),
    }
}

/// What making these transfers would meet now, decided as [`authorize_transfers`] does but
/// holding, challenging, charging and counting nothing (the facilitator's `verify`): `Err` with
/// the refusal the real request would get, `Ok(Some(code))` when it would be held for review
/// (`held_for_review`) or need a second factor (`requires_action`), `Ok(None)` when it would go.
pub(crate) fn dry_gate(
    state: &AppState,
    caller: &Caller,
    events: &[NewTransfer],
) -> Result<Option<&'static str>, ApiError> {
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
    let assessments = state.risk.assess_dry(&ledger, caller, "transfer", &payments);
    Ok(match Risk::verdict(assessments, can_step_up(&ledger, caller)) {
        Verdict::Block(risk) => return Err(ApiError::RiskBlocked(Box::new(risk.for_caller(caller)))),
        Verdict::Hold(..) => Some("held_for_review"),
        Verdict::Go { step_up, .. } if !step_up.is_empty() => Some("requires_action"),
        Verdict::Go { .. } => None,
    })
}

/// Whether the caller may move money as these transfers ask (scope, role, a device's asset and
/// per-payment limit, ownership of what is debited, posted or voided, flags on the other party's
/// account); no risk policy, no step-up. Asked when a request arrives, and again when an
/// analyst approves a held one, so a payment never runs on authority its payer has lost since.
pub(crate) fn authorize_moves(ledger: &Ledger, caller: &Caller, events: &[NewTransfer]) -> Result<(), ApiError> {
    need_scope(caller, Scopes::PAY)?;
    need_role(caller, &[Role::Operator, Role::Holder, Role::Merchant])?;
    if caller.role == Role::Operator {
        return Ok(());
    }
    if let auth::Via::Device(device_id) = caller.via {
        let device = ledger.identity().device(device_id).ok_or(ApiError::DeviceNotFound(device_id))?;
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
                return Err(ApiError::Forbidden(format!("account {} is not yours to debit", event.debit_account_id)));
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
fn authorize_resolution(ledger: &Ledger, caller: &Caller, event: &NewTransfer) -> Result<(), ApiError> {
    let pending = ledger
        .transfer(event.pending_id)
        .filter(|pending| can_see_transfer(caller, ledger, pending))
        .ok_or(ApiError::TransferNotFound(event.pending_id))?;
    let credit_owner = ledger.account(pending.credit_account_id).is_some_and(|account| owns(caller, account));
    if !credit_owner {
        let what = if event.flags.has(TransferFlags::POST_PENDING) { "post" } else { "void" };
        return Err(ApiError::Forbidden(format!(
            "only the owner of the credit account may {what} pending transfer {} (its timeout releases it otherwise)",
            event.pending_id
        )));
    }
    Ok(())
}

/// Flags that act on the credit account (closing it, or sizing the transfer by its balance)
/// are for the operator or the owner of both sides: a payer may not close its payee's account,
/// or learn its balance through the amount a balancing transfer takes.
fn authorize_counterparty_flags(ledger: &Ledger, caller: &Caller, event: &NewTransfer) -> Result<(), ApiError> {
    let acts_on_credit =
        event.flags.has(TransferFlags::CLOSING_CREDIT) || event.flags.has(TransferFlags::BALANCING_CREDIT);
    if !acts_on_credit {
        return Ok(());
    }
    let owns_credit = ledger.account(event.credit_account_id).is_some_and(|account| owns(caller, account));
    if !owns_credit {
        return Err(ApiError::Forbidden(
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
    state: &AppState,
    caller: &Caller,
    assessment: &obol_risk::engine::Assessment,
    payment: &Payment,
    events: &[NewTransfer],
    on_approval: OnApproval,
) -> ApiError {
    let payments: Vec<(u128, u128)> =
        events.iter().filter(|e| !e.flags.resolves_pending()).map(|e| (e.debit_account_id, e.amount)).collect();
    let op = Op::CreateTransfers(events.to_vec());
    let runs = on_approval == OnApproval::Run;
    let held =
        crate::risk::Held { kind: "transfers", payment, tab_id: None, assessment, op, payments: &payments, runs };
    match state.risk.hold(state, caller, held).await {
        Ok(review) => ApiError::HeldForReview(Box::new(review.for_caller(caller))),
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
        auth::Via::ApiKey(_) => 0,
    };
    Op::Pay(obol_core::ledger::Payment { device_id, authenticated, transfers: events })
}

/// The refusal when a device's payments do not fit its limits (the core refuses all of them).
fn device_limit(state: &AppState, caller: &Caller) -> ApiError {
    let limits = match caller.via {
        auth::Via::Device(id) => read_ledger(state).identity().device(id).and_then(|d| d.limits),
        auth::Via::ApiKey(_) => None,
    };
    ApiError::DeviceLimit(match limits {
        Some(limits) => format!(
            "this would take the device past its limits ({} per payment, {} a day, in {})",
            limits.per_payment, limits.per_day, limits.asset
        ),
        None => "the device may not pay".into(),
    })
}

/// The `Obol-Approval` header: an approved step-up challenge.
pub(crate) fn approval_header(headers: &HeaderMap) -> Option<&str> {
    headers.get("obol-approval").and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The payee of each payment among `events` (`None` for posts and voids), for [`after_payment`].
fn payees(events: &[NewTransfer]) -> Vec<Option<u128>> {
    events.iter().map(|e| (!e.flags.resolves_pending()).then_some(e.credit_account_id)).collect()
}

/// After a commit: remember the payees paid (a device's first payment is marked by the core).
fn after_payment(state: &AppState, caller: &Caller, payees: &[Option<u128>], ok: &[bool]) {
    let paid: Vec<u128> = payees.iter().zip(ok).filter_map(|(payee, ok)| payee.filter(|_| *ok)).collect();
    if !paid.is_empty() {
        state.step_up.paid(caller.principal_id, paid);
    }
}

/// An account's balances and net position.
#[utoipa::path(get, path = "/v1/accounts/{id}/balance", tag = "accounts",
    params(("id" = String, Path, description = "Account id, decimal")),
    responses(
        (status = 200, description = "Balances", body = BalanceDto),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn get_balance(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<BalanceDto>, ApiError> {
    need_scope(&caller, Scopes::READ)?;
    let id = path_id(&id)?;
    let ledger = read_ledger(&state);
    visible_account(&caller, &ledger, id).map(|a| Json(BalanceDto::from(a)))
}

/// The transfers that touched an account, oldest first, a page at a time.
#[utoipa::path(get, path = "/v1/accounts/{id}/history", tag = "accounts",
    params(("id" = String, Path, description = "Account id, decimal"), HistoryQuery),
    responses(
        (status = 200, description = "A page of history", body = HistoryPage),
        (status = 400, description = "Bad cursor or limit", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn get_history(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<HistoryPage>, ApiError> {
    need_scope(&caller, Scopes::READ)?;
    let id = path_id(&id)?;
    let Query(query) = query.map_err(|rejection| ApiError::InvalidQuery(rejection.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > HISTORY_LIMIT_MAX {
        return Err(ApiError::InvalidQuery(format!("limit must be 1 to {HISTORY_LIMIT_MAX}")));
    }
    let after = match query.after.as_deref() {
        None => 0,
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| ApiError::InvalidQuery("after must be a cursor from a previous page".into()))?,
    };
    let ledger = read_ledger(&state);
    visible_account(&caller, &ledger, id)?;
    let entries = ledger.account_history(id, after, limit).ok_or(ApiError::AccountNotFound(id))?;
    let next = (entries.len() == limit).then(|| entries.last().map(|e| e.transfer.timestamp.to_string())).flatten();
    let items = entries.iter().map(|e| history_item(e, ledger.pending_status(e.transfer.id))).collect();
    Ok(Json(HistoryPage { items, next }))
}

/// Create one transfer.
#[utoipa::path(post, path = "/v1/transfers", tag = "transfers", request_body = TransferNew,
    responses(
        (status = 201, description = "Created", body = TransferDto),
        (status = 200, description = "An identical transfer already existed", body = TransferDto),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 202, description = "Held for review by the risk policy: nothing ran yet; the problem's `review` says which review", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Refused by the risk policy (`risk_blocked`), or step-up needed (`requires_action`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The id exists with different fields, or the pending transfer is already resolved", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The ledger refused the transfer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn create_transfer(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TransferNew>,
) -> Result<Response, ApiError> {
    let event = body.to_core()?;
    let result = transfer_as(&state, &caller, &event, approval_header(&headers), OnApproval::Run).await?;
    let status = match result {
        CreateTransferResult::Ok => StatusCode::CREATED,
        CreateTransferResult::Exists => StatusCode::OK,
        rejected if rejected.as_str().starts_with("exists") && !transfer_visible(&state, &caller, event.id) => {
            return Err(ApiError::IdTaken(event.id));
        }
        rejected => return Err(ApiError::TransferRejected(rejected)),
    };
    let ledger = read_ledger(&state);
    let transfer = ledger.transfer(event.id).ok_or_else(|| internal("transfer"))?;
    let dto = transfer_dto(transfer, ledger.pending_status(event.id));
    Ok(with_location(status, format!("/v1/transfers/{}", event.id), Json(dto)))
}

/// What an analyst's approval of a held request does.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum OnApproval {
    /// Runs it: the client was told it is held (202) and waits for the outcome.
    Run,
    /// Runs nothing: the client was refused (x402 answers 402 and delivers nothing), so the
    /// payment may run only when the payer sends it again, and then without a second decision.
    AllowRetry,
}

/// Makes one transfer as `caller` would through the API: authorization, step-up, device limits,
/// then the ledger; answers the ledger's result.
pub(crate) async fn transfer_as(
    state: &AppState,
    caller: &Caller,
    event: &NewTransfer,
    approval: Option<&str>,
    on_approval: OnApproval,
) -> Result<CreateTransferResult, ApiError> {
    let events = std::slice::from_ref(event);
    let authenticated = match authorize_transfers(state, caller, events, approval)? {
        Gate::Go { authenticated } => authenticated,
        Gate::Hold(assessment, payment) => {
            return Err(hold_transfers(state, caller, &assessment, &payment, events, on_approval).await);
        }
    };
    let result = match state.engine.execute(payment_op(caller, vec![*event], authenticated)).await? {
        OpResults::Transfers(results) => results.first().copied().ok_or_else(|| internal("create_transfer"))?,
        OpResults::Accounts(_) | OpResults::Identity(_) | OpResults::Tab(_) | OpResults::Put => {
            return Err(internal("create_transfer"));
        }
    };
    if result == CreateTransferResult::DeviceLimitExceeded {
        return Err(device_limit(state, caller));
    }
    let ok = [result == CreateTransferResult::Ok];
    after_payment(state, caller, &payees(events), &ok);
    Ok(result)
}

/// Create up to 8,190 transfers in one durable batch.
#[utoipa::path(post, path = "/v1/transfers/batch", tag = "transfers", request_body = TransferBatch,
    responses(
        (status = 200, description = "One result per transfer, in order", body = BatchResults),
        (status = 400, description = "Malformed request; nothing was written", body = Problem, content_type = "application/problem+json"),
        (status = 202, description = "Held for review by the risk policy: nothing ran yet", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Refused by the risk policy, or step-up needed", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn create_transfers(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TransferBatch>,
) -> Result<Json<BatchResults>, ApiError> {
    batch_size(body.transfers.len())?;
    let events = body
        .transfers
        .iter()
        .enumerate()
        .map(|(index, transfer)| transfer.to_core().map_err(|error| at_index(index, error)))
        .collect::<Result<Vec<_>, _>>()?;
    let authenticated = match authorize_transfers(&state, &caller, &events, approval_header(&headers))? {
        Gate::Go { authenticated } => authenticated,
        Gate::Hold(assessment, payment) => {
            return Err(hold_transfers(&state, &caller, &assessment, &payment, &events, OnApproval::Run).await);
        }
    };
    let paid_to = payees(&events);
    let ids: Vec<u128> = events.iter().map(|e| e.id).collect();
    match state.engine.execute(payment_op(&caller, events, authenticated)).await? {
        OpResults::Transfers(results) => {
            if results.iter().all(|r| *r == CreateTransferResult::DeviceLimitExceeded) {
                return Err(device_limit(&state, &caller));
            }
            let ok: Vec<bool> = results.iter().map(|r| *r == CreateTransferResult::Ok).collect();
            after_payment(&state, &caller, &paid_to, &ok);
            let codes = conceal(&ids, results.iter().map(|r| r.as_str()), |id| transfer_visible(&state, &caller, id));
            Ok(Json(batch_results(&ids, codes.into_iter())))
        }
        OpResults::Accounts(_) | OpResults::Identity(_) | OpResults::Tab(_) | OpResults::Put => {
            Err(internal("create_transfers"))
        }
    }
}

/// Look up a transfer.
#[utoipa::path(get, path = "/v1/transfers/{id}", tag = "transfers",
    params(("id" = String, Path, description = "Transfer id, decimal")),
    responses(
        (status = 200, description = "The transfer", body = TransferDto),
        (status = 404, description = "No such transfer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn get_transfer(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<TransferDto>, ApiError> {
    need_scope(&caller, Scopes::READ)?;
    let id = path_id(&id)?;
    let ledger = read_ledger(&state);
    let transfer = ledger
        .transfer(id)
        .filter(|transfer| can_see_transfer(&caller, &ledger, transfer))
        .ok_or(ApiError::TransferNotFound(id))?;
    Ok(Json(transfer_dto(transfer, ledger.pending_status(id))))
}

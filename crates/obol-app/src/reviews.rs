//! The analyst's and the account owner's use cases of the risk engine: the review queue and its
//! decisions (an approval runs the held request as first asked, in the same record as the
//! decision), training labels, the policy in force, submissions and the shadow run, and monthly
//! limits.

use base64ct::{Base64UrlUnpadded, Encoding};
use obol_core::identity::{Role, Scopes};
use obol_core::ledger::{CreateTransferResult, OpResults};
use obol_core::record::{Op, Record};
use obol_risk::features::FEATURE_NAMES;

use crate::auth::{Caller, Via};
use crate::authz::{need_role, need_scope};
use crate::error::Error;
use crate::risk::*;
use crate::views::ModelDto;
use crate::{App, read_ledger};

/// An account's monthly spending limit in force (minor units), or none: for whoever may see
/// the account.
pub fn monthly_limit(state: &App, caller: &Caller, account_id: &str) -> Result<Option<u128>, Error> {
    need_scope(caller, Scopes::READ)?;
    let account_id = crate::parse_id("id", account_id)?;
    crate::transfers::visible_account(caller, &read_ledger(state), account_id)?;
    Ok(lock(&state.risk.limits).get(&account_id).copied())
}

/// Sets (`Some`, minor units) or removes (`None`) an account's monthly spending limit, as its
/// owner or the operator; answers the limit now in force. A lower limit (or one where there was
/// none) needs nothing more; a higher one, or removing it, asked by the owner, needs the owner's
/// second factor's approval of exactly that change once it has one (`requires_action` until
/// then).
pub async fn set_monthly_limit(
    state: &App,
    caller: &Caller,
    account_id: &str,
    limit: Option<&str>,
    approval: Option<&str>,
) -> Result<Option<u128>, Error> {
    need_scope(caller, Scopes::MANAGE)?;
    let account_id = crate::parse_id("id", account_id)?;
    let owner_id = {
        let ledger = read_ledger(state);
        let account = crate::transfers::visible_account(caller, &ledger, account_id)?;
        if caller.role != Role::Operator && !crate::authz::owns(caller, account) {
            return Err(Error::Forbidden("only the account's owner sets its monthly limit".into()));
        }
        account.owner_id
    };
    let limit = limit.map(|text| crate::parse_amount("limit", text)).transpose()?;
    let key = format!("{LIMIT_PREFIX}{account_id}");
    // Held until the copy the risk engine reads is updated: the check, the write and the copy
    // happen in one order for every change.
    let _serialized = state.limit_writes.lock().await;
    let checked = {
        let in_force = lock(&state.risk.limits).get(&account_id).copied();
        let tightens = match (in_force, limit) {
            (_, None) => in_force.is_none(),
            (None, Some(_)) => true,
            (Some(old), Some(new)) => new <= old,
        };
        let ledger = read_ledger(state);
        if caller.role == Role::Operator || tightens {
            Ok(None)
        } else {
            let details =
                format!("account={account_id};limit={}", limit.map_or_else(|| "none".into(), |l| l.to_string()));
            state.step_up.check_change(&*state.env, &ledger, owner_id, "monthly_limit", details.as_bytes(), approval)
        }
    };
    let spends = crate::approvals::journaled(state, checked).await?;
    let stored = limit.map_or_else(Vec::new, |l| l.to_string().into_bytes());
    let data = serde_json::json!({"what": "monthly_limit", "account": account_id.to_string(),
        "limit": limit.map(|l| l.to_string())});
    let alert = crate::webhooks::event(state, "limit.changed", &[owner_id], data);
    let mut ops = vec![Op::Put(obol_core::table::Put { key, value: stored }), alert];
    // The approval is spent in the record of the change it approved.
    ops.extend(spends.as_deref().map(crate::approvals::spent));
    state.engine.execute_together(ops).await?;
    let mut limits = lock(&state.risk.limits);
    match limit {
        Some(limit) => limits.insert(account_id, limit),
        None => limits.remove(&account_id),
    };
    Ok(limit)
}

/// The review queue, oldest first (a review's id starts with its creation time): reviews in
/// `status` (`pending`, `approved`, `declined` or `all`) after the review `after` (the previous
/// page's `next`), at most `limit` (1 to [`REVIEWS_PAGE_MAX`]); answers the page and the cursor
/// of the next one, if the page is full.
pub fn reviews_page(
    state: &App,
    caller: &Caller,
    status: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<ReviewDto>, Option<String>), Error> {
    let items = reviews_after(state, caller, status, after, limit)?;
    let next = if items.len() == limit { items.last().map(|review| review.id.clone()) } else { None };
    Ok((items, next))
}

/// The first page of [`reviews_page`].
pub fn reviews(state: &App, caller: &Caller, status: &str, limit: usize) -> Result<Vec<ReviewDto>, Error> {
    reviews_after(state, caller, status, None, limit)
}

/// Whose reviews `caller` may read: every one (`None`: the operator and analysts, with all the
/// risk details), or only the caller's own held payments (a holder or merchant, who sees why
/// each is held, in words, and what became of it, as the 202 answer showed it).
pub fn readable_by(caller: &Caller) -> Result<Option<String>, Error> {
    match caller.role {
        Role::Holder | Role::Merchant => {
            need_scope(caller, Scopes::READ)?;
            Ok(Some(caller.principal_id.to_string()))
        }
        _ => analyst(caller).map(|()| None),
    }
}

fn reviews_after(
    state: &App,
    caller: &Caller,
    status: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<ReviewDto>, Error> {
    let owner = readable_by(caller)?;
    let wanted = match status {
        "all" => None,
        _ => Some(
            [ReviewStatus::Pending, ReviewStatus::Approved, ReviewStatus::Declined]
                .into_iter()
                .find(|listed| listed.as_str() == status)
                .ok_or_else(|| Error::InvalidQuery("status must be pending, approved, declined or all".into()))?,
        ),
    };
    if limit == 0 || limit > REVIEWS_PAGE_MAX {
        return Err(Error::InvalidQuery(format!("limit must be 1 to {REVIEWS_PAGE_MAX}")));
    }
    let reviews = lock(&state.risk.reviews);
    let start = match after {
        Some(cursor) => std::ops::Bound::Excluded(cursor.to_string()),
        None => std::ops::Bound::Unbounded,
    };
    Ok(reviews
        .range((start, std::ops::Bound::Unbounded))
        .map(|(_, stored)| stored)
        .filter(|r| wanted.is_none_or(|wanted| r.review.status == wanted))
        .filter(|r| owner.as_ref().is_none_or(|owner| &r.review.principal_id == owner))
        .take(limit)
        .map(|r| r.review.clone().for_caller(caller))
        .collect())
}

/// Every review of a principal's own requests, oldest first (for the principal's data export:
/// each as its payer may see it, whoever asked for the export).
pub(crate) fn reviews_of_owner(state: &App, principal_id: u128) -> Vec<ReviewDto> {
    let principal_id = principal_id.to_string();
    let reviews = lock(&state.risk.reviews);
    reviews.values().filter(|r| r.review.principal_id == principal_id).map(|r| r.review.clone().for_payer()).collect()
}

/// One review.
pub fn review(state: &App, caller: &Caller, id: &str) -> Result<ReviewDto, Error> {
    let owner = readable_by(caller)?;
    let reviews = lock(&state.risk.reviews);
    reviews
        .get(id)
        .filter(|r| owner.as_ref().is_none_or(|owner| &r.review.principal_id == owner))
        .map(|r| r.review.clone().for_caller(caller))
        .ok_or_else(|| Error::ReviewNotFound(id.to_string()))
}

/// Decides a held request, once: `approve` or `decline`. Approval runs it as first asked,
/// journaled in the same record as the decision; a decline never runs it (a paused tab is
/// settled).
pub async fn decide_review(
    state: &App,
    caller: &Caller,
    id: String,
    decision: &str,
    note: Option<String>,
) -> Result<ReviewDto, Error> {
    // Deciding runs (or kills) a payment: a change, so it needs `manage`, as a policy change does;
    // a read-only analyst key looks at the queue and decides nothing.
    need_scope(caller, Scopes::MANAGE)?;
    analyst(caller)?;
    let approve = match decision {
        "approve" => true,
        "decline" => false,
        other => return Err(Error::InvalidField(format!("decision: {other:?} is not approve or decline"))),
    };
    if note.as_ref().is_some_and(|n| n.len() > 2_000) {
        return Err(Error::InvalidField("note: at most 2,000 bytes".into()));
    }
    // Claim the review first, so two analysts cannot both run it.
    let mut stored = {
        let mut reviews = lock(&state.risk.reviews);
        let stored = reviews.get_mut(&id).ok_or_else(|| Error::ReviewNotFound(id.clone()))?;
        if stored.review.status != ReviewStatus::Pending {
            return Err(Error::ReviewDecided(id.clone(), stored.review.status.to_string()));
        }
        // Until the decision is durable the review is `deciding`: a retry meets it as still
        // held, and no second analyst can claim it.
        stored.review.status = ReviewStatus::Deciding;
        let mut claimed = stored.clone();
        claimed.review.status = if approve { ReviewStatus::Approved } else { ReviewStatus::Declined };
        claimed
    };
    let tab_id = stored.review.tab_id.as_deref().and_then(|t| t.parse::<u128>().ok());
    // The approval is journaled in the same record as the held operation: a crash leaves either
    // a pending review and nothing run, or an approved one and the operation run, never a
    // pending review whose money moved.
    let approval = if approve && stored.runs {
        let mut deciding = stored.clone();
        deciding.review.outcome = Some(vec![Outcome::Running]);
        let bytes = serde_json::to_vec(&deciding).map_err(|e| Error::Internal(e.to_string()))?;
        Some(obol_core::table::Put { key: format!("{REVIEW_PREFIX}{id}"), value: bytes })
    } else {
        None
    };
    let outcome = match (approve, stored.review.kind) {
        (true, HeldKind::TabCheckpoint) => vec![Outcome::Resumed],
        (false, HeldKind::TabCheckpoint) => {
            let tab_id = tab_id.ok_or_else(|| Error::Internal("a checkpoint review without its tab".into()))?;
            let command = obol_core::channel::TabCommand::Settle { tab_id, settle_transfer_id: state.env.random_id() };
            match crate::tabs::run_tab(state, command).await {
                Ok(obol_core::channel::TabResult::Ok { .. }) => {
                    vec![Outcome::Other(
                        "settled: the tab is closed; the payee got what it owed, the payer the rest".into(),
                    )]
                }
                Ok(result) => {
                    vec![Outcome::Other(format!("settle failed: {}", crate::tabs::tab_result_code(&result)))]
                }
                Err(error) => vec![Outcome::Other(format!("settle failed: {}", error.code()))],
            }
        }
        // The client was told 402 and got nothing: approval runs nothing now, it lets the
        // payer's retry of the same payment through.
        (true, _) if !stored.runs => vec![Outcome::AllowedOnRetry],
        (true, _) => match run_held(state, &stored, approval).await {
            Ok(outcome) => outcome,
            Err(error) => {
                // Nothing ran: the review stays open for another try.
                if let Some(open) = lock(&state.risk.reviews).get_mut(&id) {
                    open.review.status = ReviewStatus::Pending;
                }
                let reopened = lock(&state.risk.reviews).get(&id).and_then(|open| serde_json::to_vec(open).ok());
                if let Some(bytes) = reopened {
                    let _ = state.engine.put(&format!("{REVIEW_PREFIX}{id}"), bytes).await;
                }
                return Err(error);
            }
        },
        (false, _) => Vec::new(),
    };
    stored.review.decided_by = Some(caller.principal_id.to_string());
    stored.review.decided_ns = Some(state.env.now_ns().to_string());
    stored.review.note = note;
    stored.review.outcome = Some(outcome);
    let bytes = serde_json::to_vec(&stored).map_err(|e| Error::Internal(e.to_string()))?;
    // The decision and who made it, in one record.
    let what = if approve { "review.approve" } else { "review.decline" };
    let outcome: Vec<String> = stored.review.outcome.iter().flatten().map(|o| format!("{o:?}")).collect();
    let decided = crate::audit::note(state, caller, what, &format!("review:{id}"), &outcome.join(" "));
    let put = Op::Put(obol_core::table::Put { key: format!("{REVIEW_PREFIX}{id}"), value: bytes });
    // A decline confirms fraud: a label, in the same record, counted in the features after it.
    let label = if approve { None } else { declined_label(state, caller, &stored) };
    let mut ops = vec![decided, put];
    if let Some(label) = &label {
        ops.extend(label.puts()?);
    }
    state.engine.execute_together(ops).await?;
    if let Some(label) = label {
        crate::labels::count(state, &[label]);
    }
    if let Some(tab) = tab_id {
        lock(&state.risk.paused).remove(&tab);
    }
    lock(&state.risk.reviews).insert(id, stored.clone());
    metrics::counter!("obol_risk_reviews_decided_total", "decision" => if approve { "approve" } else { "decline" })
        .increment(1);
    Ok(stored.review)
}

/// The label a declined review makes: its payer and payee, the device that asked (if one did)
/// and the network it came from.
fn declined_label(state: &App, caller: &Caller, stored: &StoredReview) -> Option<crate::labels::LabelDto> {
    let review = &stored.review;
    let parties = crate::labels::Parties {
        payment: None,
        payer: review.payer_account_id.parse().ok()?,
        payee: review.payee_account_id.parse().ok()?,
        device: stored.via.as_deref().and_then(|via| via.strip_prefix("device:")).and_then(|d| d.parse().ok()),
        network: stored.network.clone(),
    };
    let source = crate::labels::LabelSource::ReviewDeclined;
    Some(crate::labels::LabelDto::new(state, source, parties, state.env.now_ns(), Some(caller.principal_id)))
}

/// The caller a held request came from, as it stands now: the principal must still be active,
/// and the credential it used (API key or device) still usable and its own. An approval never
/// runs a payment on authority its payer has lost while it waited (a revoked device, a
/// suspended holder, a revoked key).
pub(crate) fn caller_now(state: &App, stored: &StoredReview) -> Result<Caller, Error> {
    let ledger = read_ledger(state);
    let principal_id =
        stored.review.principal_id.parse::<u128>().map_err(|_| Error::Internal("a review's principal".into()))?;
    let principal = ledger.identity().principal(principal_id).ok_or(Error::PrincipalNotFound(principal_id))?;
    if principal.status != obol_core::identity::Status::Active {
        return Err(Error::PrincipalSuspended);
    }
    let via = stored.via.as_deref().unwrap_or("");
    let (via, scopes) = if let Some(device_id) = via.strip_prefix("device:") {
        let device_id = device_id.parse::<u128>().map_err(|_| Error::Internal("a review's device".into()))?;
        let device = ledger.identity().device(device_id).ok_or(Error::DeviceNotFound(device_id))?;
        if device.status != obol_core::identity::Status::Active || device.holder_id != principal_id {
            return Err(Error::TabRejected(obol_core::channel::PayReject::DeviceInactive));
        }
        (Via::Device(device_id), Scopes(Scopes::READ | Scopes::PAY))
    } else if let Some(key_id) = via.strip_prefix("key:") {
        let key = ledger.identity().key(key_id).ok_or_else(|| Error::KeyNotFound(key_id.to_string()))?;
        if !key.usable_at(state.env.now_ns()) || key.principal_id != principal_id {
            return Err(Error::Forbidden("the key that asked for this payment was revoked or expired".into()));
        }
        (Via::ApiKey(key_id.to_string()), key.scopes)
    } else if let Some(credential_id) = via.strip_prefix("passkey:") {
        // The passkey's caller as a session would have it now: the same via and scopes.
        let now = crate::auth::caller_for_passkey(&ledger, principal_id, credential_id)
            .map_err(|_| Error::Forbidden("the passkey that asked for this payment was disabled or removed".into()))?;
        (now.via, now.scopes)
    } else {
        (Via::ApiKey(String::new()), Scopes(Scopes::READ | Scopes::PAY))
    };
    Ok(Caller { principal_id, role: principal.role, scopes, via, peer: None })
}

/// Runs a held operation as it was first asked, after checking again that its payer may still
/// make it (authorization, a device's limits, charged for the day as any payment is); answers
/// the ledger's result per operation, or [`Outcome::Refused`] when the payer no longer may.
pub(crate) async fn run_held(
    state: &App,
    stored: &StoredReview,
    mut approval: Option<obol_core::table::Put>,
) -> Result<Vec<Outcome>, Error> {
    let bytes =
        Base64UrlUnpadded::decode_vec(&stored.op).map_err(|e| Error::Internal(format!("a held operation: {e}")))?;
    let record = Record::decode(&bytes).map_err(|e| Error::Internal(format!("a held operation: {e}")))?;
    let caller = match caller_now(state, stored) {
        Ok(caller) => caller,
        Err(error) => return Ok(vec![Outcome::Refused(error.code().into())]),
    };
    let mut outcome = Vec::new();
    for op in record.ops {
        let mut paid_to = Vec::new();
        let op = match op {
            Op::CreateTransfers(events) => {
                let allowed = crate::transfers::authorize_moves(&read_ledger(state), &caller, &events);
                if let Err(error) = allowed {
                    outcome.push(Outcome::Refused(error.code().into()));
                    continue;
                }
                // Run as the payment it was: under the device's limits, counted for the payer.
                paid_to = crate::transfers::payees(&events);
                crate::transfers::payment_op(&caller, events, false)
            }
            other => other,
        };
        // The first operation that runs carries the approval in its record; a batch that fills a
        // record by itself is preceded by the approval's own record instead (a crash between
        // the two moved nothing, and the restart finds the review final as a refusal:
        // `settle_interrupted`).
        let result = match approval.take() {
            Some(put) if op.len() < obol_core::codec::RECORD_EVENTS_MAX => {
                state.engine.execute_together(vec![Op::Put(put), op]).await?.pop()
            }
            Some(put) => {
                state.engine.execute(Op::Put(put)).await?;
                Some(state.engine.execute(op).await?)
            }
            None => Some(state.engine.execute(op).await?),
        };
        let Some(result) = result else { return Err(Error::Internal("a held operation had no result".into())) };
        match result {
            OpResults::Transfers(results)
                if !results.is_empty() && results.iter().all(|r| *r == CreateTransferResult::DeviceLimitExceeded) =>
            {
                outcome.push(Outcome::Refused(CreateTransferResult::DeviceLimitExceeded.as_str().into()));
            }
            OpResults::Transfers(results) => {
                // The payees paid are known payees from now on, as after any payment.
                let ok: Vec<bool> = results.iter().map(|r| *r == CreateTransferResult::Ok).collect();
                crate::transfers::after_payment(state, &caller, &paid_to, &ok);
                outcome.extend(results.iter().map(|r| Outcome::from(r.as_str().to_string())))
            }
            OpResults::Tab(result) => outcome.push(Outcome::from(crate::tabs::tab_result_code(&result))),
            OpResults::Accounts(_) | OpResults::Identity(_) | OpResults::Put => {
                outcome.push(Outcome::Other("unexpected".into()));
            }
        }
    }
    Ok(outcome)
}

/// Decided reviews as CSV training data: one row per review with its time, `label` 1 when
/// declined (fraud) or 0 when approved, and obol's streaming features in their order.
pub fn labels(state: &App, caller: &Caller) -> Result<String, Error> {
    analyst(caller)?;
    let mut csv = String::from("time_s,label");
    for name in FEATURE_NAMES {
        csv.push(',');
        csv.push_str(name);
    }
    csv.push('\n');
    let reviews = lock(&state.risk.reviews);
    for stored in reviews.values().filter(|r| r.review.status != ReviewStatus::Pending) {
        let review = &stored.review;
        let time_s = review.created_ns.parse::<u64>().unwrap_or(0) / 1_000_000_000;
        let label = u8::from(review.status == ReviewStatus::Declined);
        csv.push_str(&format!("{time_s},{label}"));
        for name in FEATURE_NAMES {
            csv.push_str(&format!(",{}", review.features.get(name).copied().unwrap_or(0.0)));
        }
        csv.push('\n');
    }
    Ok(csv)
}

/// The policy in force.
pub fn policy(state: &App, caller: &Caller) -> Result<PolicyDto, Error> {
    analyst(caller)?;
    let engine = lock(&state.risk.engine);
    let now_s = state.env.now_s();
    Ok(PolicyDto {
        generation: engine.policy_generation(),
        in_force: engine
            .policy()
            .in_force(now_s)
            .iter()
            .map(|b| BundleDto {
                name: b.name.clone(),
                version: b.version,
                effective_from_s: b.effective_from_s,
                description: b.description.clone(),
                rules: b.rules.iter().map(|r| r.id.clone()).collect(),
            })
            .collect(),
        shadow: engine.shadow_report(now_s).is_some(),
        directory: state.risk.directory().map(|d| d.display().to_string()),
        decided: DecidedDto::from_counts(engine.decided()),
    })
}

/// Submits a policy bundle (TOML): live at once from its effective time, or with `shadow` run
/// beside the live policy. A bundle that does not compile is refused with the reason, and the
/// live policy stays. Every submission is recorded.
pub async fn submit_policy(
    state: &App,
    caller: &Caller,
    bundle: &[u8],
    shadow: bool,
) -> Result<PolicyChangeDto, Error> {
    need_scope(caller, Scopes::MANAGE)?;
    need_role(caller, &[Role::Operator, Role::Analyst])?;
    if bundle.len() > BUNDLE_BYTES_MAX {
        return Err(Error::InvalidField(format!("a bundle is at most {BUNDLE_BYTES_MAX} bytes")));
    }
    let text = std::str::from_utf8(bundle).map_err(|_| Error::InvalidField("the bundle is not UTF-8".into()))?;
    let who = format!("principal:{}", caller.principal_id);
    state.risk.submit_bundle(state, Some(caller), &who, text, shadow).await.map_err(|(error, _)| error)
}

/// Every policy change after sequence number `after` (who, what, when, diff), oldest first.
pub fn policy_changes(state: &App, caller: &Caller, after: u64) -> Result<Vec<PolicyChangeDto>, Error> {
    may_read_changes(caller)?;
    Ok(lock(&state.risk.changes).iter().filter(|c| c.seq > after).cloned().collect())
}

/// The shadow run's report: where the candidate would have decided otherwise.
pub fn shadow(state: &App, caller: &Caller) -> Result<ShadowDto, Error> {
    analyst(caller)?;
    let report = lock(&state.risk.engine).shadow_report(state.env.now_s());
    report.map(ShadowDto::from).ok_or(Error::NoShadow)
}

/// The model the risk engine scores with: its version, held-out metrics (with the
/// precision-recall curve and the confusion matrix) and feature importance.
pub fn model(state: &App, caller: &Caller) -> Result<ModelDto, Error> {
    analyst(caller)?;
    let engine = lock(&state.risk.engine);
    engine.model().map(|model| ModelDto::from(model.as_ref())).ok_or(Error::NoModel)
}

/// Stops the shadow run; answers its final report.
pub async fn stop_shadow(state: &App, caller: &Caller) -> Result<ShadowDto, Error> {
    may_change_policy(caller)?;
    let who = format!("principal:{}", caller.principal_id);
    state.risk.stop_shadow(state, &who).await?.ok_or(Error::NoShadow)
}

/// Who may change the policy (submit a bundle, stop the shadow run): operators and analysts
/// with `manage`.
pub fn may_change_policy(caller: &Caller) -> Result<(), Error> {
    need_scope(caller, Scopes::MANAGE)?;
    need_role(caller, &[Role::Operator, Role::Analyst])
}

/// Who may read the record of policy changes: operators, analysts and auditors with `read`.
pub fn may_read_changes(caller: &Caller) -> Result<(), Error> {
    need_scope(caller, Scopes::READ)?;
    need_role(caller, &[Role::Operator, Role::Analyst, Role::Auditor])
}

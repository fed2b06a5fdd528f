//! Tab routes: a payer opens a tab (escrowing a budget to one payee), the payee submits the
//! payer's signed vouchers as they arrive, and either side settles. Voucher signatures are
//! checked here; the ledger journals each accepted voucher before the answer says "paid".

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64ct::{Base64UrlUnpadded, Encoding};
use obol_core::channel::{PayReject, TabCommand, TabEntry, TabResult, Voucher};
use obol_core::codec::Op;
use obol_core::identity::{Role, Scopes, Status};
use obol_core::ledger::{Ledger, OpResults};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Caller, Via};
use crate::authz::{need_role, need_scope, owns, sees_everything};
use crate::error::{ApiError, Problem};
use crate::{ApiJson, AppState, now_ns, read_ledger};

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
    /// Seconds the tab accepts payments (the escrow lives an hour longer for settlement).
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
    /// The pending transfer holding the escrow.
    pub escrow_transfer_id: String,
    /// Escrowed budget.
    pub escrow: String,
    /// What the tab owes the payee so far.
    pub cumulative: String,
    /// The latest accepted voucher's seq.
    pub seq: String,
    /// When the tab stops accepting payments, ns since the Unix epoch.
    pub expires_ns: String,
    /// `open`, `expired` or `settled`.
    pub status: String,
}

fn tab_dto(entry: &TabEntry) -> TabDto {
    let status = if entry.settled {
        "settled"
    } else if now_ns() >= entry.tab.expires_ns {
        "expired"
    } else {
        "open"
    };
    TabDto {
        id: entry.tab.id.to_string(),
        payer_account_id: entry.payer_account_id.to_string(),
        payee_account_id: entry.tab.payee_id.to_string(),
        escrow_transfer_id: entry.escrow_transfer_id.to_string(),
        escrow: entry.tab.escrow.to_string(),
        cumulative: entry.tab.cumulative.to_string(),
        seq: entry.tab.seq.to_string(),
        expires_ns: entry.tab.expires_ns.to_string(),
        status: status.into(),
    }
}

/// A voucher, as the payee received it.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct VoucherSubmit {
    /// The 108-byte binary voucher (docs/vouchers.md), base64url without padding.
    pub voucher: String,
}

/// What a voucher paid.
#[derive(Serialize, ToSchema, Debug)]
pub struct VoucherAccepted {
    /// What this voucher added, minor units ("0" for an older voucher presented again).
    pub paid: String,
    /// Whether the voucher was older than the latest (harmless; nothing changed).
    pub stale: bool,
    /// The tab after the voucher.
    pub tab: TabDto,
}

fn random_id() -> u128 {
    (rand::random::<u128>() >> 2).max(2)
}

async fn run_tab(state: &AppState, command: TabCommand) -> Result<TabResult, ApiError> {
    match state.engine.execute(Op::Tab(command)).await? {
        OpResults::Tab(result) => Ok(result),
        OpResults::Accounts(_) | OpResults::Transfers(_) | OpResults::Identity(_) => {
            Err(ApiError::Internal("engine answered a tab command with the wrong shape".into()))
        }
    }
}

/// Whether the caller may see the tab: the operator, analysts and auditors; the owners of its
/// payer and payee accounts.
fn may_see(caller: &Caller, ledger: &Ledger, entry: &TabEntry) -> bool {
    sees_everything(caller)
        || [entry.payer_account_id, entry.tab.payee_id]
            .iter()
            .any(|id| ledger.account(*id).is_some_and(|account| owns(caller, account)))
}

fn visible_tab(state: &AppState, caller: &Caller, id: u128) -> Result<TabEntry, ApiError> {
    let ledger = read_ledger(state);
    ledger.tab(id).filter(|entry| may_see(caller, &ledger, entry)).copied().ok_or(ApiError::TabNotFound(id))
}

/// Open a tab: escrow a budget from your account to a payee, payable by one device's vouchers.
#[utoipa::path(post, path = "/v1/tabs", tag = "tabs", request_body = TabNew,
    responses((status = 201, body = TabDto), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn open_tab(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
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
    let (device_id, payer_key) = {
        let ledger = read_ledger(&state);
        let payer = ledger.account(payer_account_id).ok_or(ApiError::AccountNotFound(payer_account_id))?;
        if caller.role != Role::Operator && !owns(&caller, payer) {
            return Err(ApiError::AccountNotFound(payer_account_id));
        }
        let device_id = match (&caller.via, &body.device_id) {
            (Via::Device(id), None) => *id,
            (_, Some(text)) => crate::dto::path_id(text)?,
            (Via::ApiKey(_), None) => {
                return Err(ApiError::InvalidField("device_id: which device signs this tab's vouchers".into()));
            }
        };
        let device = ledger.identity().device(device_id).ok_or(ApiError::DeviceNotFound(device_id))?;
        if device.holder_id != payer.owner_id || device.status != Status::Active {
            return Err(ApiError::Forbidden(format!("device {device_id} cannot sign for account {payer_account_id}")));
        }
        (device_id, device.public_key)
    };
    let command = TabCommand::Open {
        tab_id,
        escrow_transfer_id: random_id(),
        payer_account_id,
        payee_account_id,
        device_id,
        payer_key,
        budget,
        asset,
        timeout_s: body.timeout_s,
    };
    match run_tab(&state, command).await? {
        TabResult::Ok { .. } => {}
        TabResult::Exists => return Err(ApiError::TabExists(tab_id)),
        TabResult::Escrow(result) => return Err(ApiError::TransferRejected(result)),
        TabResult::Rejected(reject) => return Err(ApiError::TabRejected(reject)),
        TabResult::NotFound | TabResult::Settlement(_) => return Err(ApiError::Internal("tab open".into())),
    }
    let entry = read_ledger(&state).tab(tab_id).copied().ok_or(ApiError::TabNotFound(tab_id))?;
    Ok((StatusCode::CREATED, Json(tab_dto(&entry))).into_response())
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
    Ok(Json(tab_dto(&visible_tab(&state, &caller, id)?)))
}

/// Submit a voucher the payer gave you (the payee, or the operator). Answers once the voucher is
/// durable: what it paid, and the tab.
#[utoipa::path(post, path = "/v1/tabs/{id}/vouchers", tag = "tabs", request_body = VoucherSubmit,
    params(("id" = String, Path, description = "Tab id")),
    responses((status = 200, body = VoucherAccepted), (status = 409, body = Problem, content_type = "application/problem+json"),
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
    let entry = visible_tab(&state, &caller, tab_id)?;
    let payee_owned = read_ledger(&state).account(entry.tab.payee_id).is_some_and(|a| owns(&caller, a));
    if caller.role != Role::Operator && !payee_owned {
        return Err(ApiError::Forbidden("only the tab's payee submits its vouchers".into()));
    }
    let bytes = Base64UrlUnpadded::decode_vec(body.voucher.trim())
        .map_err(|_| ApiError::InvalidField("voucher must be base64url without padding".into()))?;
    let voucher = Voucher::decode(&bytes).map_err(|e| ApiError::InvalidField(format!("voucher: {e}")))?;
    if voucher.tab_id != tab_id {
        return Err(ApiError::TabRejected(PayReject::WrongTab));
    }
    // Refuse what the tab would refuse before paying for a signature check.
    match entry.tab.check_voucher_fields(&voucher, now_ns()) {
        Ok(_) => {}
        Err(PayReject::Stale) => {
            return Ok(Json(VoucherAccepted { paid: "0".into(), stale: true, tab: tab_dto(&entry) }));
        }
        Err(reject) => return Err(ApiError::TabRejected(reject)),
    }
    let device_active = read_ledger(&state)
        .identity()
        .device(entry.device_id)
        .is_some_and(|d| d.status == Status::Active && d.public_key == entry.tab.payer_key);
    if !device_active {
        // A revoked, suspended or rotated device key pays no more (what it paid before stays owed).
        return Err(ApiError::TabRejected(PayReject::BadSignature));
    }
    let key = ed25519_dalek::VerifyingKey::from_bytes(&entry.tab.payer_key)
        .map_err(|_| ApiError::TabRejected(PayReject::BadSignature))?;
    if !voucher.verify(&key) {
        return Err(ApiError::TabRejected(PayReject::BadSignature));
    }
    let (paid, stale) = match run_tab(&state, TabCommand::Voucher(voucher)).await? {
        TabResult::Ok { added } => (added, false),
        TabResult::Rejected(PayReject::Stale) => (0, true),
        TabResult::Rejected(reject) => return Err(ApiError::TabRejected(reject)),
        TabResult::NotFound => return Err(ApiError::TabNotFound(tab_id)),
        TabResult::Exists | TabResult::Escrow(_) | TabResult::Settlement(_) => {
            return Err(ApiError::Internal("voucher".into()));
        }
    };
    let entry = read_ledger(&state).tab(tab_id).copied().ok_or(ApiError::TabNotFound(tab_id))?;
    Ok(Json(VoucherAccepted { paid: paid.to_string(), stale, tab: tab_dto(&entry) }))
}

/// Settle a tab: post what it owes, release the rest of the escrow, close it (payer, payee or
/// operator; repeating it is harmless).
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
    if matches!(caller.role, Role::Analyst | Role::Auditor) {
        return Err(ApiError::Forbidden("analysts and auditors do not move money".into()));
    }
    match run_tab(&state, TabCommand::Settle { tab_id, settle_transfer_id: random_id() }).await? {
        TabResult::Ok { .. } | TabResult::Exists => {}
        TabResult::Settlement(result) => return Err(ApiError::TransferRejected(result)),
        TabResult::NotFound => return Err(ApiError::TabNotFound(tab_id)),
        TabResult::Rejected(reject) => return Err(ApiError::TabRejected(reject)),
        TabResult::Escrow(_) => return Err(ApiError::Internal("settle".into())),
    }
    let entry = read_ledger(&state).tab(tab_id).copied().ok_or(ApiError::TabNotFound(tab_id))?;
    Ok(Json(tab_dto(&entry)))
}

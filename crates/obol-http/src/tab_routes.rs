//! Tab routes: open, look up, pay by voucher or tick, commit a PayWord chain, top up, settle.
//! Each parses its body, calls one use case of `obol_app::tabs`, and maps the answer.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use obol_core::channel::TabEntry;
use obol_core::ledger::Ledger;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, Error, Problem};
use crate::{ApiJson, AppState, approval_header, read_ledger};
use obol_app::auth::Caller;
use obol_app::tabs::{self, VoucherOutcome};

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
    let status = obol_app::lists::TabState::of(tab, state.env.now_ns()).as_str();
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

fn tab_json(state: &AppState, tab_id: u128) -> Result<Json<TabDto>, ApiError> {
    let ledger = read_ledger(state);
    let entry = ledger.tab(tab_id).ok_or(Error::TabNotFound(tab_id))?;
    Ok(Json(tab_dto(state, &ledger, entry)))
}

fn tab_answer(state: &AppState, tab_id: u128, paid: u128, stale: bool) -> Result<VoucherAccepted, ApiError> {
    let Json(tab) = tab_json(state, tab_id)?;
    Ok(VoucherAccepted { paid: paid.to_string(), stale, tab })
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
    let ask = tabs::OpenTab {
        tab_id: body.id.as_deref(),
        payer_account_id: &body.payer_account_id,
        payee_account_id: &body.payee_account_id,
        budget: &body.budget,
        asset_code: &body.asset_code,
        asset_scale: body.asset_scale,
        device_id: body.device_id.as_deref(),
        timeout_s: body.timeout_s,
    };
    let tab_id = tabs::open(&state, &caller, ask, approval_header(&headers)).await?;
    Ok((StatusCode::CREATED, tab_json(&state, tab_id)?).into_response())
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
    let entry = tabs::tab(&state, &caller, &id)?;
    Ok(Json(tab_dto(&state, &read_ledger(&state), &entry)))
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
    let (tab_id, paid, stale) = tabs::pay_voucher(&state, &caller, &id, &body.voucher).await?;
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
    Ok(Json(VoucherBatchResult { results: tabs::pay_vouchers(&state, &caller, &body.vouchers).await? }))
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
    let tab_id = tabs::commit(&state, &caller, &id, &body.commitment).await?;
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
    let (tab_id, paid, stale) = tabs::pay_tick(&state, &caller, &id, body.index, &body.word).await?;
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
    let tab_id = tabs::top_up(&state, &caller, &id, &body.amount, approval_header(&headers)).await?;
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
    let tab_id = tabs::settle(&state, &caller, &id).await?;
    tab_json(&state, tab_id)
}

/// Filters and paging of `GET /v1/tabs`.
#[derive(Deserialize, utoipa::IntoParams, Debug)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TabListQuery {
    /// Only tabs paid from this account.
    pub payer: Option<String>,
    /// Only tabs paying this account.
    pub payee: Option<String>,
    /// Only tabs that are `open`, `expired` (settled on the next sweep) or `settled`.
    pub status: Option<String>,
    /// Cursor from a previous page's `next`.
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

/// A page of tabs, in the order they opened.
#[derive(Serialize, ToSchema, Debug)]
pub struct TabPage {
    /// Up to `limit` tabs.
    pub items: Vec<TabDto>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// List the tabs the caller may see (as payer, as payee, or all of them for the operator,
/// analysts and auditors), in the order they opened.
#[utoipa::path(get, path = "/v1/tabs", tag = "tabs",
    params(TabListQuery),
    responses(
        (status = 200, description = "A page of tabs", body = TabPage),
        (status = 400, description = "A bad filter, cursor or limit", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_tabs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<axum::extract::Query<TabListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TabPage>, ApiError> {
    let query = crate::list_query(query)?;
    let status = match query.status.as_deref() {
        None => None,
        Some(name) => Some(
            obol_app::lists::TabState::parse(name)
                .ok_or_else(|| Error::InvalidQuery("status must be open, expired or settled".into()))?,
        ),
    };
    let filter = obol_app::lists::TabFilter {
        payer: crate::dto::query_id("payer", query.payer.as_deref())?,
        payee: crate::dto::query_id("payee", query.payee.as_deref())?,
        state: status,
    };
    let limit = obol_app::lists::limit(query.limit)?;
    let page = obol_app::lists::tabs(&state, &caller, filter, query.after.as_deref(), limit)?;
    let ledger = read_ledger(&state);
    let items = page.items.iter().map(|entry| tab_dto(&state, &ledger, entry)).collect();
    Ok(Json(TabPage { items, next: page.next }))
}

//! Ledger routes: accounts, transfers, balances and history. Each parses its body, calls one use
//! case of `obol_app::transfers` (or reads what the caller may see), and maps the answer.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use obol_core::identity::Scopes;
use obol_core::ledger::{CreateAccountResult, CreateTransferResult};

use crate::dto::*;
use crate::error::{ApiError, Error, Problem};
use crate::{ApiJson, AppState, HISTORY_LIMIT_MAX, approval_header, read_ledger, with_location};
use obol_app::auth::Caller;
use obol_app::authz::{can_see_transfer, need_scope};
use obol_app::transfers::*;

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
    let event = body.to_core()?;
    let result = obol_app::transfers::create_accounts(&state, &caller, vec![event])
        .await?
        .first()
        .copied()
        .ok_or_else(|| internal("account"))?;
    let status = match result {
        CreateAccountResult::Ok => StatusCode::CREATED,
        CreateAccountResult::Exists => StatusCode::OK,
        rejected if rejected.as_str().starts_with("exists") && !account_visible(&state, &caller, event.id) => {
            return Err(Error::IdTaken(event.id).into());
        }
        rejected => return Err(Error::AccountRejected(rejected).into()),
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
    let events = body
        .accounts
        .iter()
        .enumerate()
        .map(|(index, account)| account.to_core().map_err(|error| at_index(index, error)))
        .collect::<Result<Vec<_>, _>>()?;
    let ids: Vec<u128> = events.iter().map(|e| e.id).collect();
    let results = obol_app::transfers::create_accounts(&state, &caller, events).await?;
    let codes = conceal(&ids, results.iter().map(|r| r.as_str()), |id| account_visible(&state, &caller, id));
    Ok(Json(batch_results(&ids, codes.into_iter())))
}

fn at_index(index: usize, error: Error) -> Error {
    match error {
        Error::InvalidId { field, reason } => Error::InvalidId { field: format!("[{index}].{field}"), reason },
        Error::InvalidAmount { field, reason } => Error::InvalidAmount { field: format!("[{index}].{field}"), reason },
        Error::InvalidAsset(detail) => Error::InvalidAsset(format!("[{index}]: {detail}")),
        Error::InvalidFlag(flag) => Error::InvalidFlag(format!("[{index}]: {flag}")),
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
    Ok(visible_account(&caller, &ledger, id).map(|a| Json(AccountDto::from(a)))?)
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
    Ok(visible_account(&caller, &ledger, id).map(|a| Json(BalanceDto::from(a)))?)
}

/// The period of a statement.
#[derive(serde::Deserialize, utoipa::IntoParams, Debug)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StatementQuery {
    /// From this time (RFC 3339 or ns since the Unix epoch); default the account's opening.
    pub from: Option<String>,
    /// Until this time, excluded; default now.
    pub to: Option<String>,
}

/// An account's statement as ISO 20022 `camt.053.001.08` XML: the opening and closing booked
/// balances and the payments between, as daily batch entries with each transfer in `TxDtls`
/// (who may see the account).
#[utoipa::path(get, path = "/v1/accounts/{id}/statement", tag = "accounts",
    params(("id" = String, Path, description = "Account id, decimal"), StatementQuery),
    responses(
        (status = 200, description = "camt.053.001.08 document", content_type = "application/xml"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn get_statement(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    query: Result<Query<StatementQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    use axum::response::IntoResponse;
    let query = crate::list_query(query)?;
    let time = |name: &str, text: Option<&str>| -> Result<Option<u64>, Error> {
        text.map(|text| {
            obol_core::time::parse_time(text)
                .ok_or_else(|| Error::InvalidQuery(format!("{name} {text:?}: an RFC 3339 time or ns since the epoch")))
        })
        .transpose()
    };
    let from = time("from", query.from.as_deref())?;
    let to = time("to", query.to.as_deref())?;
    let xml = obol_app::statement::camt053(&state, &caller, &id, from, to)?;
    let mut response = xml.into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    Ok(response)
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
    let Query(query) = query.map_err(|rejection| Error::InvalidQuery(rejection.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > HISTORY_LIMIT_MAX {
        return Err(Error::InvalidQuery(format!("limit must be 1 to {HISTORY_LIMIT_MAX}")).into());
    }
    let after = match query.after.as_deref() {
        None => 0,
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| Error::InvalidQuery("after must be a cursor from a previous page".into()))?,
    };
    let ledger = read_ledger(&state);
    visible_account(&caller, &ledger, id)?;
    let entries = ledger.account_history(id, after, limit).ok_or(Error::AccountNotFound(id))?;
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
    let results = pay(&state, &caller, vec![event], approval_header(&headers)).await?;
    let status = match results.first().copied().ok_or_else(|| internal("create_transfer"))? {
        CreateTransferResult::Ok => StatusCode::CREATED,
        CreateTransferResult::Exists => StatusCode::OK,
        rejected if rejected.as_str().starts_with("exists") && !transfer_visible(&state, &caller, event.id) => {
            return Err(Error::IdTaken(event.id).into());
        }
        rejected => return Err(Error::TransferRejected(rejected).into()),
    };
    let ledger = read_ledger(&state);
    let transfer = ledger.transfer(event.id).ok_or_else(|| internal("transfer"))?;
    let dto = transfer_dto(transfer, ledger.pending_status(event.id));
    Ok(with_location(status, format!("/v1/transfers/{}", event.id), Json(dto)))
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
    let ids: Vec<u128> = events.iter().map(|e| e.id).collect();
    let results = pay(&state, &caller, events, approval_header(&headers)).await?;
    let codes = conceal(&ids, results.iter().map(|r| r.as_str()), |id| transfer_visible(&state, &caller, id));
    Ok(Json(batch_results(&ids, codes.into_iter())))
}

/// A refund of one payment.
#[derive(serde::Deserialize, utoipa::ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct RefundNew {
    /// The refund's own transfer id (decimal): a retry with it answers the refund made.
    pub id: String,
    /// Minor units to give back; all that is left of the payment if omitted.
    #[serde(default)]
    pub amount: Option<String>,
}

/// One refund of a batch.
#[derive(serde::Deserialize, utoipa::ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct RefundItem {
    /// The payment's transfer id.
    pub payment: String,
    /// The refund's own transfer id.
    pub id: String,
    /// Minor units; all that is left if omitted.
    #[serde(default)]
    pub amount: Option<String>,
}

/// Up to 8,190 refunds in one durable batch.
#[derive(serde::Deserialize, utoipa::ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct RefundBatch {
    /// The refunds.
    pub refunds: Vec<RefundItem>,
}

/// Refund (part of) a payment: the payee (or the operator) gives back up to what is left of it,
/// as a transfer from the account the payment credited to the account it debited.
#[utoipa::path(post, path = "/v1/transfers/{id}/refunds", tag = "transfers", request_body = RefundNew,
    params(("id" = String, Path, description = "The payment's transfer id, decimal")),
    responses(
        (status = 201, description = "Refunded", body = TransferDto),
        (status = 200, description = "This refund was made already", body = TransferDto),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such payment", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "More than is left to refund, or the ledger refused", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn create_refund(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    Path(payment): Path<String>,
    ApiJson(body): ApiJson<RefundNew>,
) -> Result<Response, ApiError> {
    let ask = obol_app::refunds::RefundAsk { payment: &payment, id: &body.id, amount: body.amount.as_deref() };
    let results = obol_app::refunds::refund(&state, &caller, &[ask], approval_header(&headers)).await?;
    let id = path_id(&body.id)?;
    let status = match results.first().copied().ok_or_else(|| internal("create_refund"))? {
        CreateTransferResult::Ok => StatusCode::CREATED,
        CreateTransferResult::Exists => StatusCode::OK,
        rejected => return Err(Error::TransferRejected(rejected).into()),
    };
    let ledger = read_ledger(&state);
    let transfer = ledger.transfer(id).ok_or_else(|| internal("refund"))?;
    let dto = transfer_dto(transfer, ledger.pending_status(id));
    Ok(with_location(status, format!("/v1/transfers/{id}"), Json(dto)))
}

/// Many refunds in one durable batch (one record): micro-refunds to one payer or many.
#[utoipa::path(post, path = "/v1/refunds", tag = "transfers", request_body = RefundBatch,
    responses(
        (status = 200, description = "One result per refund, in order", body = BatchResults),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A refund asks more than is left; nothing was written", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn create_refunds(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RefundBatch>,
) -> Result<Json<BatchResults>, ApiError> {
    let asks: Vec<obol_app::refunds::RefundAsk<'_>> = body
        .refunds
        .iter()
        .map(|r| obol_app::refunds::RefundAsk { payment: &r.payment, id: &r.id, amount: r.amount.as_deref() })
        .collect();
    let results = obol_app::refunds::refund(&state, &caller, &asks, approval_header(&headers)).await?;
    let ids = body.refunds.iter().map(|r| path_id(&r.id)).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(batch_results(&ids, results.iter().map(|r| r.as_str()))))
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
        .ok_or(Error::TransferNotFound(id))?;
    Ok(Json(transfer_dto(transfer, ledger.pending_status(id))))
}

/// List the accounts the caller may see, oldest first: all of them for the operator, analysts
/// and auditors; their own for holders and merchants.
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts",
    params(AccountListQuery),
    responses(
        (status = 200, description = "A page of accounts", body = AccountPage),
        (status = 400, description = "A bad filter, cursor or limit", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another owner's accounts, asked by a holder or merchant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn list_accounts(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<AccountListQuery>, QueryRejection>,
) -> Result<Json<AccountPage>, ApiError> {
    let query = crate::list_query(query)?;
    let filter = obol_app::lists::AccountFilter {
        owner: query_id("owner", query.owner.as_deref())?,
        asset: query_asset(query.asset.as_deref())?,
    };
    let limit = obol_app::lists::limit(query.limit)?;
    let page = obol_app::lists::accounts(&state, &caller, filter, query.after.as_deref(), limit)?;
    Ok(Json(AccountPage { items: page.items.iter().map(AccountDto::from).collect(), next: page.next }))
}

/// List transfers, oldest first, filtered by account, time, state and amount: all of them for
/// the operator, analysts and auditors; those touching their own accounts for holders and
/// merchants.
#[utoipa::path(get, path = "/v1/transfers", tag = "transfers",
    params(TransferListQuery),
    responses(
        (status = 200, description = "A page of transfers (with the account's balances after each, for an account's list)", body = HistoryPage),
        (status = 400, description = "A bad filter, cursor or limit", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account (or not the caller's)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn list_transfers(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<TransferListQuery>, QueryRejection>,
) -> Result<Json<HistoryPage>, ApiError> {
    let query = crate::list_query(query)?;
    let status = match query.status.as_deref() {
        None => None,
        Some(name) => Some(obol_app::lists::TransferState::parse(name).ok_or_else(|| {
            Error::InvalidQuery("status must be posted, pending, pending_posted, voided or expired".into())
        })?),
    };
    let filter = obol_app::lists::TransferFilter {
        account: query_id("account", query.account.as_deref())?,
        from_ns: query_number("from_ns", query.from_ns.as_deref())?,
        to_ns: query_number("to_ns", query.to_ns.as_deref())?,
        state: status,
        amount_min: query_number("amount_min", query.amount_min.as_deref())?,
        amount_max: query_number("amount_max", query.amount_max.as_deref())?,
        newest_first: match query.order.as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(Error::InvalidQuery("order must be asc or desc".into()).into()),
        },
    };
    let limit = obol_app::lists::limit(query.limit)?;
    let page = obol_app::lists::transfers(&state, &caller, filter, query.after.as_deref(), limit)?;
    let ledger = read_ledger(&state);
    let items = page
        .items
        .iter()
        .map(|listed| history_item(&listed.entry, ledger.pending_status(listed.entry.transfer.id)))
        .collect();
    Ok(Json(HistoryPage { items, next: page.next }))
}

/// A custom asset to register.
#[derive(serde::Deserialize, utoipa::ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct AssetNew {
    /// Three letters A to Z that ISO 4217 does not list, e.g. `GEM`.
    pub code: String,
    /// The coarsest scale accounts may count it in (0: whole units); finer ones are allowed.
    pub scale: u8,
    /// What it is, for people (1 to 200 bytes).
    pub description: String,
}

/// Register a custom asset (in-game currency, credits, points): operator only. It never changes;
/// registering it again with the same fields answers 200.
#[utoipa::path(post, path = "/v1/assets", tag = "accounts", request_body = AssetNew,
    responses(
        (status = 201, description = "Registered", body = obol_app::assets::AssetDto),
        (status = 200, description = "Registered already, with the same fields", body = obol_app::assets::AssetDto),
        (status = 400, description = "An ISO 4217 code, a malformed code, or a bad description", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Registered already, differently", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn register_asset(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<AssetNew>,
) -> Result<Response, ApiError> {
    use axum::response::IntoResponse;
    let (asset, created) =
        obol_app::assets::register(&state, &caller, &body.code, body.scale, &body.description).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(asset)).into_response())
}

/// The registered custom assets, by code (ISO 4217 currencies need no registration).
#[utoipa::path(get, path = "/v1/assets", tag = "accounts",
    responses((status = 200, description = "Every registered custom asset", body = Vec<obol_app::assets::AssetDto>)),
    security(("bearer" = [])))]
pub(crate) async fn list_assets(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<obol_app::assets::AssetDto>>, ApiError> {
    Ok(Json(obol_app::assets::list(&state, &caller)?))
}

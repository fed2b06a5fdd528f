//! Dispute routes: open, read, answer, resolve and withdraw. Each parses, calls one use case of
//! `obol_app::disputes`, and maps its answer.

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use obol_app::auth::Caller;
use obol_app::disputes::{self, DisputeDto};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::ApiJson;
use crate::AppState;
use crate::error::{ApiError, Problem};

/// Opening a dispute.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct DisputeNew {
    /// The dispute's id (decimal, yours): a retry with it answers the dispute opened.
    pub id: String,
    /// The disputed payment's transfer id (or give `tab`).
    #[serde(default)]
    pub payment: Option<String>,
    /// A settled tab whose payments are disputed (its settlement is the payment).
    #[serde(default)]
    pub tab: Option<String>,
    /// Minor units disputed; all that is left of the payment if omitted (a tab's vouchers or
    /// ticks can be disputed in part).
    #[serde(default)]
    pub amount: Option<String>,
    /// `unauthorised`, `not_received`, `not_as_described`, `duplicate` or `amount_wrong`.
    pub reason: String,
    /// What happened, in the payer's words (at most 2,000 characters).
    #[serde(default)]
    pub statement: String,
}

/// The payee's answer.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct DisputeAnswer {
    /// The payee's side (at most 2,000 characters).
    pub statement: String,
    /// `true`: the payee accepts the dispute, and the payer wins at once.
    #[serde(default)]
    pub accept: bool,
}

/// An operator's decision.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct DisputeDecision {
    /// `payer` or `payee`.
    pub winner: String,
    /// The payer acted fraudulently (it bears an unauthorised payment's whole loss).
    #[serde(default)]
    pub payer_fraud: bool,
    /// The payer kept its credentials with gross negligence (PSD2, Korea).
    #[serde(default)]
    pub gross_negligence: bool,
    /// Reg E: the day the payer learned its access device was lost or stolen (YYYY-MM-DD).
    #[serde(default)]
    pub learned_on: Option<String>,
}

/// A listing's filter.
#[derive(Deserialize, IntoParams, Debug)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DisputeQuery {
    /// Only disputes with this status.
    pub status: Option<String>,
    /// The previous page's `next`.
    pub after: Option<String>,
    /// At most this many (1 to 1,000; default 100).
    pub limit: Option<usize>,
}

/// A page of disputes.
#[derive(serde::Serialize, ToSchema)]
pub struct DisputeList {
    /// The disputes, in id order.
    pub items: Vec<DisputeDto>,
    /// The cursor of the next page (pass it as `after`), if there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Dispute a payment (its payer, or the operator): the amount is held on the payee's account,
/// the law's timers start, and obol gathers the payment's authentication evidence.
#[utoipa::path(post, path = "/v1/disputes", tag = "disputes", request_body = DisputeNew,
    responses(
        (status = 201, description = "Opened", body = DisputeDto),
        (status = 200, description = "This dispute was opened already", body = DisputeDto),
        (status = 403, description = "Not the payer", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such payment or tab", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Outside the law's window, or more than is left", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn open_dispute(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<DisputeNew>,
) -> Result<Response, ApiError> {
    let ask = disputes::OpenAsk {
        id: &body.id,
        payment: body.payment.as_deref(),
        tab: body.tab.as_deref(),
        amount: body.amount.as_deref(),
        reason: &body.reason,
        statement: &body.statement,
    };
    let (dto, opened) = disputes::open(&state, &caller, ask).await?;
    let status = if opened { StatusCode::CREATED } else { StatusCode::OK };
    let location = format!("/v1/disputes/{}", dto.id);
    Ok(crate::with_location(status, location, Json(dto)))
}

/// The disputes the caller is a party to (all, for staff).
#[utoipa::path(get, path = "/v1/disputes", tag = "disputes", params(DisputeQuery),
    responses((status = 200, body = DisputeList), (status = 400, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn list_disputes(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<DisputeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DisputeList>, ApiError> {
    let query = crate::list_query(query)?;
    let (items, next) =
        disputes::list(&state, &caller, query.status.as_deref(), query.after.as_deref(), query.limit.unwrap_or(100))?;
    Ok(Json(DisputeList { items, next }))
}

/// One dispute: its deadlines, evidence, statements, outcome and the money it moved.
#[utoipa::path(get, path = "/v1/disputes/{id}", tag = "disputes",
    params(("id" = String, Path, description = "Dispute id")),
    responses((status = 200, body = DisputeDto), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn get_dispute(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<DisputeDto>, ApiError> {
    Ok(Json(disputes::get(&state, &caller, &id)?))
}

/// The payee answers (by its deadline): contesting with its side, or accepting.
#[utoipa::path(post, path = "/v1/disputes/{id}/answer", tag = "disputes", request_body = DisputeAnswer,
    params(("id" = String, Path, description = "Dispute id")),
    responses(
        (status = 200, body = DisputeDto),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Closed, or past the answer deadline", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn answer_dispute(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
    ApiJson(body): ApiJson<DisputeAnswer>,
) -> Result<Json<DisputeDto>, ApiError> {
    Ok(Json(disputes::answer(&state, &caller, &id, &body.statement, body.accept).await?))
}

/// The operator decides (never a party to the dispute).
#[utoipa::path(post, path = "/v1/disputes/{id}/resolve", tag = "disputes", request_body = DisputeDecision,
    params(("id" = String, Path, description = "Dispute id")),
    responses(
        (status = 200, body = DisputeDto),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn resolve_dispute(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
    ApiJson(body): ApiJson<DisputeDecision>,
) -> Result<Json<DisputeDto>, ApiError> {
    let decision = disputes::Decision {
        winner: &body.winner,
        payer_fraud: body.payer_fraud,
        gross_negligence: body.gross_negligence,
        learned_on: body.learned_on.as_deref(),
    };
    Ok(Json(disputes::resolve(&state, &caller, &id, decision).await?))
}

/// The payer withdraws its dispute.
#[utoipa::path(post, path = "/v1/disputes/{id}/withdraw", tag = "disputes",
    params(("id" = String, Path, description = "Dispute id")),
    responses(
        (status = 200, body = DisputeDto),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn withdraw_dispute(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<DisputeDto>, ApiError> {
    Ok(Json(disputes::withdraw(&state, &caller, &id).await?))
}

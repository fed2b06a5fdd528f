//! Risk routes: the review queue and its decisions, training labels, the policy in force,
//! submissions and the shadow run, and monthly limits. Each parses, calls one use case of
//! `obol_app::reviews`, and maps its answer.

use axum::Json;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, body::Bytes};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, Error, Problem};
use obol_app::auth::Caller;

/// An account's monthly spending limit.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MonthlyLimit {
    /// Most the account may pay in a calendar month (UTC), minor units; `"0"` blocks every
    /// payment; `null` removes the limit.
    pub limit: Option<String>,
}

/// An account's monthly spending limit in force (`null`: none), for whoever may see the account.
#[utoipa::path(get, path = "/v1/accounts/{id}/monthly-limit", tag = "risk",
    params(("id" = String, Path, description = "Account id")),
    responses((status = 200, body = MonthlyLimit), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_monthly_limit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<MonthlyLimit>, ApiError> {
    let limit = reviews::monthly_limit(&state, &caller, &id)?;
    Ok(Json(MonthlyLimit { limit: limit.map(|l| l.to_string()) }))
}

/// Set or remove an account's monthly spending limit (its owner, or the operator). The shipped
/// holder-caps bundle blocks a payment that would take the month over it (and the Korean
/// carrier bundle applies it as the subscriber's own limit).
#[utoipa::path(post, path = "/v1/accounts/{id}/monthly-limit", tag = "risk", request_body = MonthlyLimit,
    params(("id" = String, Path, description = "Account id")),
    responses((status = 200, body = MonthlyLimit), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn set_monthly_limit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<MonthlyLimit>,
) -> Result<Json<MonthlyLimit>, ApiError> {
    let approval = crate::approval_header(&headers);
    let limit = reviews::set_monthly_limit(&state, &caller, &id, body.limit.as_deref(), approval).await?;
    Ok(Json(MonthlyLimit { limit: limit.map(|l| l.to_string()) }))
}

/// Query of the review list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReviewQuery {
    /// `pending` (default), `approved`, `declined` or `all`.
    pub status: Option<String>,
    /// At most this many (default 100, at most 500).
    pub limit: Option<usize>,
    /// Start after this review (the previous page's `next`).
    pub after: Option<String>,
}

/// A page of reviews.
#[derive(Serialize, ToSchema)]
pub struct ReviewPage {
    /// Reviews, oldest first.
    pub items: Vec<ReviewDto>,
    /// The `after` of the next page, when this one is full.
    pub next: Option<String>,
}

/// The review queue (analysts and operators).
#[utoipa::path(get, path = "/v1/risk/reviews", tag = "risk", params(ReviewQuery),
    responses((status = 200, body = ReviewPage), (status = 400, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_reviews(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ReviewQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ReviewPage>, ApiError> {
    // Who may ask comes before what was asked: a refused caller learns nothing from its query.
    reviews::readable_by(&caller)?;
    let Query(query) = query.map_err(|rejection| Error::InvalidQuery(rejection.body_text()))?;
    let status = query.status.unwrap_or_else(|| ReviewStatus::Pending.as_str().into());
    let (items, next) =
        reviews::reviews_page(&state, &caller, &status, query.after.as_deref(), query.limit.unwrap_or(100))?;
    Ok(Json(ReviewPage { items, next }))
}

/// One review, with exact Shapley values of its score.
#[utoipa::path(get, path = "/v1/risk/reviews/{id}", tag = "risk",
    params(("id" = String, Path, description = "Review id")),
    responses((status = 200, body = ReviewDto), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_review(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<ReviewDto>, ApiError> {
    Ok(Json(reviews::review(&state, &caller, &id)?))
}

/// An analyst's decision on a review.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewDecision {
    /// `approve` (the held request runs as first asked) or `decline` (it never runs; a paused
    /// tab is settled).
    pub decision: String,
    /// Why, for the record.
    #[serde(default)]
    pub note: Option<String>,
}

/// Approve or decline a held request. Deciding twice is refused.
#[utoipa::path(post, path = "/v1/risk/reviews/{id}/decision", tag = "risk", request_body = ReviewDecision,
    params(("id" = String, Path, description = "Review id")),
    responses((status = 200, body = ReviewDto), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn decide_review(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
    ApiJson(body): ApiJson<ReviewDecision>,
) -> Result<Json<ReviewDto>, ApiError> {
    Ok(Json(reviews::decide_review(&state, &caller, id, &body.decision, body.note).await?))
}

use obol_app::reviews;

use crate::ApiJson;
use obol_app::labels::{LabelDto, LabelRequest};
use obol_app::risk::{DecisionsDto, PolicyChangeDto, PolicyDto, ReviewDto, ReviewStatus, ShadowDto};

/// Decided reviews as CSV training data: one row per review with its time, `label` 1 when
/// declined (fraud) or 0 when approved, and obol's streaming features in their order, so that
/// `obol risk train --data FILE --map time=time_s,label=label --features rest` trains a model
/// the server can load (`--risk-model`).
#[utoipa::path(get, path = "/v1/risk/labels", tag = "risk",
    responses((status = 200, description = "CSV", content_type = "text/csv")),
    security(("bearer" = [])))]
pub async fn labels(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Result<Response, ApiError> {
    let csv = reviews::labels(&state, &caller)?;
    let mut response = csv.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    Ok(response)
}

/// The policy in force.
#[utoipa::path(get, path = "/v1/risk/policy", tag = "risk",
    responses((status = 200, body = PolicyDto)), security(("bearer" = [])))]
pub async fn get_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<PolicyDto>, ApiError> {
    Ok(Json(reviews::policy(&state, &caller)?))
}

/// Where to put a submitted bundle.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubmitQuery {
    /// `true`: run it in shadow beside the live policy instead of making it live.
    pub shadow: Option<bool>,
}

/// Submit a policy bundle (TOML, as the body): it goes live at once (from its effective time),
/// or with `?shadow=true` runs in shadow. A bundle that does not compile is refused with the
/// reason, and the live policy stays. Every submission is recorded.
#[utoipa::path(post, path = "/v1/risk/policy", tag = "risk", request_body(content = String, content_type = "text/plain", description = "The bundle, TOML"),
    params(SubmitQuery),
    responses((status = 201, body = PolicyChangeDto), (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn submit_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<SubmitQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    reviews::may_change_policy(&caller)?;
    let Query(query) = query.map_err(|rejection| Error::InvalidQuery(rejection.body_text()))?;
    let change = reviews::submit_policy(&state, &caller, &body, query.shadow.unwrap_or(false)).await?;
    Ok((StatusCode::CREATED, Json(change)).into_response())
}

/// Query of the change list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// Only changes after this sequence number.
    pub after: Option<u64>,
}

/// Every policy change (who, what, when, diff), oldest first.
#[utoipa::path(get, path = "/v1/risk/policy/changes", tag = "risk", params(ChangesQuery),
    responses((status = 200, body = [PolicyChangeDto])), security(("bearer" = [])))]
pub async fn policy_changes(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<ChangesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<PolicyChangeDto>>, ApiError> {
    reviews::may_read_changes(&caller)?;
    let Query(query) = query.map_err(|rejection| Error::InvalidQuery(rejection.body_text()))?;
    Ok(Json(reviews::policy_changes(&state, &caller, query.after.unwrap_or(0))?))
}

/// The fraud model the risk engine scores with: version, held-out metrics with the
/// precision-recall curve and the confusion matrix, and feature importance. 404 `no_model` when
/// the engine decides by rules alone.
#[utoipa::path(get, path = "/v1/risk/model", tag = "risk",
    responses((status = 200, body = obol_app::views::ModelDto), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_model(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<obol_app::views::ModelDto>, ApiError> {
    Ok(Json(reviews::model(&state, &caller)?))
}

/// The shadow run's report: where the candidate would have decided otherwise.
#[utoipa::path(get, path = "/v1/risk/shadow", tag = "risk",
    responses((status = 200, body = ShadowDto), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_shadow(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<ShadowDto>, ApiError> {
    Ok(Json(reviews::shadow(&state, &caller)?))
}

/// Stop the shadow run; answers its final report.
#[utoipa::path(delete, path = "/v1/risk/shadow", tag = "risk",
    responses((status = 200, body = ShadowDto), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn stop_shadow(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<ShadowDto>, ApiError> {
    Ok(Json(reviews::stop_shadow(&state, &caller).await?))
}

/// Payments confirmed as fraud, by id or by their parties (operators and analysts with
/// `manage`): journaled, then counted in the live risk features from now on.
#[utoipa::path(post, path = "/v1/risk/labels", tag = "risk", request_body = LabelRequest,
    responses((status = 201, body = [LabelDto]), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn record_labels(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<LabelRequest>,
) -> Result<(StatusCode, Json<Vec<LabelDto>>), ApiError> {
    Ok((StatusCode::CREATED, Json(obol_app::labels::record(&state, &caller, body).await?)))
}

/// Query of the recorded labels.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LabelsQuery {
    /// At most this many (default 100, at most 1,000).
    pub limit: Option<usize>,
    /// Start after this label (the previous page's `next`).
    pub after: Option<String>,
}

/// A page of recorded labels.
#[derive(Serialize, ToSchema)]
pub struct LabelPage {
    /// Labels, in the order obol learned them.
    pub items: Vec<LabelDto>,
    /// The `after` of the next page, when this one is full.
    pub next: Option<String>,
}

/// Every confirmed fraud recorded (declined reviews, disputes resolved as unauthorised,
/// operators' marks, imports), in the order obol learned them.
#[utoipa::path(get, path = "/v1/risk/labels/recorded", tag = "risk", params(LabelsQuery),
    responses((status = 200, body = LabelPage), (status = 400, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn recorded_labels(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<LabelsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LabelPage>, ApiError> {
    obol_app::risk::analyst(&caller)?;
    let Query(query) = query.map_err(|rejection| Error::InvalidQuery(rejection.body_text()))?;
    let limit = query.limit.unwrap_or(100).clamp(1, obol_app::labels::LABELS_PAGE_MAX);
    let items = obol_app::labels::list(&state, &caller, query.after.as_deref(), limit)?;
    let next = (items.len() == limit).then(|| items.last().map(LabelDto::cursor)).flatten();
    Ok(Json(LabelPage { items, next }))
}

/// The latest risk decisions (at most 10,000, kept in memory), with the inputs and features the
/// engine used: what a model trained offline must reproduce.
#[utoipa::path(get, path = "/v1/risk/decisions", tag = "risk",
    responses((status = 200, body = DecisionsDto)), security(("bearer" = [])))]
pub async fn decisions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<DecisionsDto>, ApiError> {
    Ok(Json(state.risk.decisions_of(&caller)?))
}

//! Alert and webhook routes: alert settings, webhook endpoints (register, list, delete,
//! replay) and the activity feed of events. Each parses, calls one use case of
//! `obol_app::webhooks`, and maps its answer.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use obol_app::auth::Caller;
use obol_app::webhooks::{self, Alerts, EndpointDto, EventDto};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, Error, Problem};
use crate::{ApiJson, AppState};

/// A webhook endpoint to register.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct WebhookNew {
    /// Where events are POSTed (https://; http:// too).
    pub url: String,
    /// Event types to get (default: all).
    #[serde(default)]
    pub types: Vec<String>,
    /// Whose events (default: the caller's; the operator may name a holder or merchant).
    #[serde(default)]
    pub principal: Option<String>,
}

/// A registered endpoint and its signing secret, shown once.
#[derive(Serialize, ToSchema)]
pub struct WebhookCreated {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: EndpointDto,
    /// `whsec_` and the base64 key: verify `webhook-signature` with it (Standard Webhooks).
    pub secret: String,
}

/// What to send again.
#[derive(Deserialize, ToSchema, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct ReplayAsk {
    /// Events since this time (RFC 3339, or ns since the epoch); default: all the outbox keeps.
    #[serde(default)]
    pub since: Option<String>,
}

/// How many events will be sent again.
#[derive(Serialize, ToSchema)]
pub struct Replayed {
    /// Events the endpoint will get again, in order.
    pub events: usize,
}

/// A page of the activity feed.
#[derive(Serialize, ToSchema)]
pub struct EventPage {
    /// Events, oldest first.
    pub items: Vec<EventDto>,
    /// The cursor of the next page (pass it as `after`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A feed query.
#[derive(Deserialize, IntoParams, Debug)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// The last event id seen (the previous page's `next`).
    pub after: Option<String>,
    /// At most this many (1 to 1,000; default 100).
    pub limit: Option<usize>,
}

/// The caller's alert settings.
#[utoipa::path(get, path = "/v1/principals/{id}/alerts", tag = "alerts",
    params(("id" = String, Path, description = "Principal id")),
    responses((status = 200, body = Alerts), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn get_alerts(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Alerts>, ApiError> {
    Ok(Json(webhooks::alerts(&state, &caller, &id)?))
}

/// Set the alert settings: an alert for every payment over a threshold.
#[utoipa::path(put, path = "/v1/principals/{id}/alerts", tag = "alerts", request_body = Alerts,
    params(("id" = String, Path, description = "Principal id")),
    responses((status = 200, body = Alerts), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn set_alerts(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Alerts>,
) -> Result<Json<Alerts>, ApiError> {
    Ok(Json(webhooks::set_alerts(&state, &caller, &id, body).await?))
}

/// Register a webhook endpoint: events are POSTed to it signed as Standard Webhooks says, at
/// least once, in order, retried with backoff while it is down.
#[utoipa::path(post, path = "/v1/webhooks", tag = "alerts", request_body = WebhookNew,
    responses((status = 201, body = WebhookCreated), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn create_webhook(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<WebhookNew>,
) -> Result<Response, ApiError> {
    let (endpoint, secret) =
        webhooks::register(&state, &caller, body.principal.as_deref(), &body.url, body.types).await?;
    Ok((StatusCode::CREATED, Json(WebhookCreated { endpoint, secret })).into_response())
}

/// The caller's webhook endpoints (all, for staff).
#[utoipa::path(get, path = "/v1/webhooks", tag = "alerts",
    responses((status = 200, body = Vec<EndpointDto>)), security(("bearer" = [])))]
pub(crate) async fn list_webhooks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<EndpointDto>>, ApiError> {
    Ok(Json(webhooks::list(&state, &caller)?))
}

/// Remove a webhook endpoint.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "alerts",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn delete_webhook(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    webhooks::delete(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An endpoint's deliveries: the last event it acknowledged, how many wait, and the latest
/// attempts (what it answered, when the next try is due).
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "alerts",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = webhooks::DeliveriesDto), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn webhook_deliveries(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<webhooks::DeliveriesDto>, ApiError> {
    Ok(Json(webhooks::deliveries(&state, &caller, &id)?))
}

/// Send an endpoint every event since a time again (the outbox keeps 7 days).
#[utoipa::path(post, path = "/v1/webhooks/{id}/replay", tag = "alerts", request_body = ReplayAsk,
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = Replayed), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn replay_webhook(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReplayAsk>,
) -> Result<Json<Replayed>, ApiError> {
    let since_ns = match body.since.as_deref() {
        None => 0,
        Some(text) => obol_core::time::parse_time(text)
            .ok_or_else(|| Error::InvalidField("since must be an RFC 3339 time or ns since the epoch".into()))?,
    };
    Ok(Json(Replayed { events: webhooks::replay(&state, &caller, &id, since_ns).await? }))
}

/// The activity feed: events about the caller (all, for staff), oldest first.
#[utoipa::path(get, path = "/v1/events", tag = "alerts", params(EventQuery),
    responses((status = 200, body = EventPage), (status = 400, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub(crate) async fn list_events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventPage>, ApiError> {
    let query = crate::list_query(query)?;
    let (items, next) = webhooks::feed(&state, &caller, query.after.as_deref(), query.limit.unwrap_or(100))?;
    Ok(Json(EventPage { items, next }))
}

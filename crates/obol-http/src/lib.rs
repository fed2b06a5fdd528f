//! obol's HTTP API: an axum [`Router`] over the ledger engine.
//!
//! **Architecture Invariant:** handlers translate between DTOs and core types and nothing else;
//! every money decision is the core's. Every failure leaves as RFC 9457 problem+json with a
//! stable `code` ([`error::ApiError`]); bad input never produces a 5xx.
//!
//! **API Boundary:** [`app`] builds the router from an [`AppState`]; routes live under `/v1`
//! and all of them require `Authorization: Bearer <operator key>`. `/healthz`, `/readyz` and
//! `/metrics` are open for probes and scrapers.
#![deny(missing_docs)]

pub mod auth;
pub mod authz;
pub mod dto;
pub mod error;
pub mod httpsig;
pub mod identity_routes;
pub mod mfa;
pub mod passkeys;
pub mod ratelimit;
pub mod vault;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use obol_core::codec::Op;
use obol_core::ledger::{
    Account, BATCH_EVENTS_MAX, CreateAccountResult, CreateTransferResult, Ledger, NewAccount, NewTransfer, OpResults,
};
use obol_store::Engine;
use utoipa::OpenApi;

use crate::auth::{AuthFailure, Authenticator, Caller};
use crate::authz::{can_debit, can_see_account, can_see_transfer, need_role, need_scope, owns};
use crate::dto::*;
use crate::error::{ApiError, Problem};
use axum::Extension;
use obol_core::identity::{Role, Scopes};

/// Largest request body accepted: a full batch of 8,190 transfers with every field set fits.
pub const BODY_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Longest a request may take before it is answered with a timeout problem.
pub const REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Requests per second one credential may make by default.
pub const DEFAULT_RATE_PER_CREDENTIAL: u32 = 5_000;
/// Failed authentications an address may make before it is throttled, by default.
pub const DEFAULT_FAILED_AUTH_BURST: u32 = 20;
/// Largest history page.
pub const HISTORY_LIMIT_MAX: usize = 1000;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The ledger engine.
    pub engine: Engine,
    /// Checks API keys.
    pub auth: Arc<Authenticator>,
    /// Rejects replayed device signatures.
    pub replay: Arc<httpsig::ReplayGuard>,
    /// `http` or `https`: how clients reach this server (for `@target-uri`).
    pub scheme: &'static str,
    /// Seals TOTP seeds.
    pub vault: Arc<vault::Vault>,
    /// Step-up challenges and known payees.
    pub step_up: Arc<mfa::StepUp>,
    /// Per-credential and per-address throttles.
    pub limits: Arc<ratelimit::Limits>,
    /// The WebAuthn relying party and ceremonies in flight.
    pub passkeys: Arc<passkeys::Passkeys>,
}

impl AppState {
    /// State for a server over `engine`, reached over `scheme` (`http` or `https`), with a
    /// throwaway master key (tests; nothing sealed survives a restart).
    pub fn new(engine: Engine, scheme: &'static str) -> AppState {
        AppState::with_vault(engine, scheme, vault::Vault::ephemeral())
    }

    /// State whose secrets are sealed by `vault`.
    pub fn with_vault(engine: Engine, scheme: &'static str, vault: vault::Vault) -> AppState {
        AppState {
            engine,
            auth: Arc::new(Authenticator::new()),
            replay: Arc::new(httpsig::ReplayGuard::new(now_ns() / 1_000_000_000)),
            scheme,
            vault: Arc::new(vault),
            step_up: Arc::default(),
            limits: Arc::new(ratelimit::Limits::new(DEFAULT_RATE_PER_CREDENTIAL, DEFAULT_FAILED_AUTH_BURST)),
            passkeys: Arc::new(
                passkeys::Passkeys::new("localhost", &format!("{scheme}://localhost"))
                    .expect("localhost is a valid WebAuthn relying party"),
            ),
        }
    }

    /// Sets how long step-up challenges and approvals live (default five minutes).
    pub fn with_challenge_ttl_ns(mut self, ttl_ns: u64) -> AppState {
        self.step_up = Arc::new(mfa::StepUp::with_ttl_ns(ttl_ns));
        self
    }

    /// Sets the WebAuthn relying party: `rp_id` (a domain) and the `origin` pages run at.
    pub fn with_passkeys(mut self, rp_id: &str, origin: &str) -> Result<AppState, String> {
        self.passkeys = Arc::new(passkeys::Passkeys::new(rp_id, origin)?);
        Ok(self)
    }

    /// Sets the per-credential request rate (requests per second) and how many failed
    /// authentications an address may make before it is slowed to one every 3 s (0 turns either
    /// off).
    pub fn with_rate_limit(mut self, per_credential_per_s: u32, failed_auth_burst: u32) -> AppState {
        self.limits = Arc::new(ratelimit::Limits::new(per_credential_per_s, failed_auth_burst));
        self
    }
}

/// Every route, as (method, path): the router, the OpenAPI document and the authorization
/// matrix test are all checked against this list.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/accounts"),
    ("POST", "/v1/accounts/batch"),
    ("GET", "/v1/accounts/{id}"),
    ("GET", "/v1/accounts/{id}/balance"),
    ("GET", "/v1/accounts/{id}/history"),
    ("POST", "/v1/transfers"),
    ("POST", "/v1/transfers/batch"),
    ("GET", "/v1/transfers/{id}"),
    ("GET", "/v1/me"),
    ("POST", "/v1/principals"),
    ("GET", "/v1/principals/{id}"),
    ("POST", "/v1/principals/{id}/status"),
    ("GET", "/v1/principals/{id}/keys"),
    ("POST", "/v1/principals/{id}/keys"),
    ("GET", "/v1/principals/{id}/activity"),
    ("POST", "/v1/principals/{id}/devices"),
    ("GET", "/v1/principals/{id}/devices"),
    ("POST", "/v1/devices/{id}/status"),
    ("POST", "/v1/devices/{id}/rotate"),
    ("POST", "/v1/devices/{id}/limits"),
    ("POST", "/v1/principals/{id}/totp"),
    ("POST", "/v1/principals/{id}/totp/confirm"),
    ("POST", "/v1/principals/{id}/unlock"),
    ("POST", "/v1/principals/{id}/step-up"),
    ("POST", "/v1/challenges/{id}/approve"),
    ("POST", "/v1/challenges/{id}/passkey"),
    ("POST", "/v1/principals/{id}/passkeys"),
    ("POST", "/v1/principals/{id}/passkeys/finish"),
    ("DELETE", "/v1/keys/{key_id}"),
    ("POST", "/v1/keys/{key_id}/rotate"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

/// Wall-clock time, ns since the Unix epoch (key expiry is wall-clock time).
pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let buckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
        let builder = PrometheusBuilder::new()
            .set_buckets(&buckets)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("obol_batch_events".into()),
                    &[1.0, 8.0, 64.0, 256.0, 1024.0, 4096.0, 8190.0],
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("obol_batch_requests".into()),
                    &[1.0, 2.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0],
                )
            })
            .expect("static bucket lists are valid");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // A second recorder in one process (tests) keeps the first; both render the same way.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Builds the router.
pub fn app(state: AppState) -> Router {
    metrics_handle();
    let v1 = Router::new()
        .route("/v1/accounts", post(create_account))
        .route("/v1/accounts/batch", post(create_accounts))
        .route("/v1/accounts/{id}", get(get_account))
        .route("/v1/accounts/{id}/balance", get(get_balance))
        .route("/v1/accounts/{id}/history", get(get_history))
        .route("/v1/transfers", post(create_transfer))
        .route("/v1/transfers/batch", post(create_transfers))
        .route("/v1/transfers/{id}", get(get_transfer))
        .route("/v1/me", get(identity_routes::me))
        .route("/v1/principals", post(identity_routes::create_principal))
        .route("/v1/principals/{id}", get(identity_routes::get_principal))
        .route("/v1/principals/{id}/status", post(identity_routes::set_principal_status))
        .route("/v1/principals/{id}/keys", get(identity_routes::list_keys).post(identity_routes::create_key))
        .route("/v1/principals/{id}/activity", get(identity_routes::activity))
        .route("/v1/principals/{id}/devices", get(identity_routes::list_devices).post(identity_routes::register_device))
        .route("/v1/devices/{id}/status", post(identity_routes::set_device_status))
        .route("/v1/devices/{id}/rotate", post(identity_routes::rotate_device))
        .route("/v1/devices/{id}/limits", post(identity_routes::set_device_limits))
        .route("/v1/principals/{id}/totp", post(mfa::enroll_totp))
        .route("/v1/principals/{id}/totp/confirm", post(mfa::confirm_totp))
        .route("/v1/principals/{id}/unlock", post(mfa::unlock))
        .route("/v1/principals/{id}/step-up", post(mfa::set_step_up))
        .route("/v1/challenges/{id}/approve", post(mfa::approve_challenge))
        .route("/v1/challenges/{id}/passkey", post(passkeys::start_assertion))
        .route("/v1/principals/{id}/passkeys", post(passkeys::start_registration))
        .route("/v1/principals/{id}/passkeys/finish", post(passkeys::finish_registration))
        .route("/v1/keys/{key_id}", axum::routing::delete(identity_routes::revoke_key))
        .route("/v1/keys/{key_id}/rotate", post(identity_routes::rotate_key))
        .route("/v1/openapi.json", get(openapi_json))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .merge(v1)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .route_layer(middleware::from_fn(track))
        .layer(middleware::from_fn(time_limit))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(state)
}

/// JSON body extractor whose failures are problem documents.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(ApiJson(value))
    }
}

async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|info| info.0.ip());
    if let Some(ip) = peer
        && !state.limits.failed_auth_per_ip.has_token(&ip)
    {
        return ApiError::RateLimited(60).into_response();
    }
    let outcome = authenticate(&state, request).await;
    match outcome {
        Ok((caller, mut request)) => {
            let credential = match &caller.via {
                auth::Via::ApiKey(key_id) => format!("key:{key_id}"),
                auth::Via::Device(device_id) => format!("device:{device_id}"),
            };
            if let Err(wait_s) = state.limits.per_credential.take(&credential) {
                return ApiError::RateLimited(wait_s).into_response();
            }
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(error) => {
            if let Some(ip) = peer {
                let _ = state.limits.failed_auth_per_ip.take(&ip);
            }
            error.into_response()
        }
    }
}

/// Resolves the caller of a request: a device signature when `Signature-Input` is present, an
/// API key otherwise.
async fn authenticate(state: &AppState, request: Request) -> Result<(Caller, Request), ApiError> {
    if request.headers().contains_key("signature-input") {
        return device_caller(state, request).await.inspect_err(|error| {
            tracing::info!(code = error.code(), "signed request refused");
        });
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| token.trim().to_string());
    let Some(token) = token else {
        return Err(ApiError::Unauthorized);
    };
    let auth = Arc::clone(&state.auth);
    let ledger = Arc::clone(state.engine.ledger());
    let outcome = if auth.is_cached(&token) {
        auth.authenticate(&token, &ledger, now_ns())
    } else {
        // argon2id is slow on purpose; keep it off the async workers.
        tokio::task::spawn_blocking(move || auth.authenticate(&token, &ledger, now_ns()))
            .await
            .unwrap_or(Err(AuthFailure::BadKey))
    };
    match outcome {
        Ok(caller) => Ok((caller, request)),
        Err(AuthFailure::BadKey) => {
            tracing::info!(path = %request.uri().path(), "API key refused");
            Err(ApiError::Unauthorized)
        }
        Err(AuthFailure::Suspended) => {
            tracing::info!(path = %request.uri().path(), "API key of a suspended principal refused");
            Err(ApiError::PrincipalSuspended)
        }
    }
}

/// Authenticates a device-signed request (RFC 9421). Buffers the body to check its digest and
/// gives the request back whole.
async fn device_caller(state: &AppState, request: Request) -> Result<(Caller, Request), ApiError> {
    use httpsig::SigError;
    let (parts, body) = request.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let inputs =
        httpsig::parse_signature_input(header("signature-input").unwrap_or("")).map_err(ApiError::Signature)?;
    let input = inputs.iter().find(|i| i.label == "sig1").unwrap_or(&inputs[0]).clone();
    let signature = httpsig::parse_signature(
        header("signature").ok_or(ApiError::Signature(SigError::Malformed("Signature header missing".into())))?,
        &input.label,
    )
    .map_err(ApiError::Signature)?;
    if input.alg.as_deref().is_some_and(|alg| alg != "ed25519") {
        return Err(ApiError::Signature(SigError::AlgorithmUnsupported));
    }
    let bytes = axum::body::to_bytes(body, BODY_BYTES_MAX).await.map_err(|_| ApiError::BodyTooLarge(BODY_BYTES_MAX))?;
    let mut required = vec!["@method", "@target-uri"];
    if parts.headers.contains_key(header::AUTHORIZATION) {
        required.push("authorization");
    }
    if parts.headers.contains_key("obol-approval") {
        required.push("obol-approval");
    }
    if !bytes.is_empty() {
        required.push("content-digest");
        httpsig::check_content_digest(header("content-digest"), &bytes).map_err(ApiError::Signature)?;
    }
    for component in required {
        if !input.components.iter().any(|c| c == component) {
            return Err(ApiError::Signature(SigError::ComponentMissing(format!("\"{component}\""))));
        }
    }
    let now_s = now_ns() / 1_000_000_000;
    state.replay.check_time(&input, now_s).map_err(ApiError::Signature)?;
    let authority = header("host").or_else(|| parts.uri.authority().map(|a| a.as_str())).unwrap_or("");
    let message = httpsig::Message {
        method: parts.method.as_str(),
        scheme: state.scheme,
        authority,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
    };
    let base = httpsig::signature_base(&input, &message).map_err(ApiError::Signature)?;
    let (device, holder) = {
        let ledger = read_ledger(state);
        let device =
            ledger.identity().device_by_kid(&input.keyid).cloned().ok_or(ApiError::Signature(SigError::UnknownKey))?;
        let holder =
            ledger.identity().principal(device.holder_id).cloned().ok_or(ApiError::Signature(SigError::UnknownKey))?;
        (device, holder)
    };
    httpsig::verify_ed25519(&device.public_key, &base, &signature).map_err(ApiError::Signature)?;
    match device.status {
        obol_core::identity::Status::Active => {}
        obol_core::identity::Status::Suspended => {
            return Err(ApiError::Signature(SigError::DeviceInactive("suspended")));
        }
        obol_core::identity::Status::Revoked => return Err(ApiError::Signature(SigError::DeviceInactive("revoked"))),
    }
    if holder.status != obol_core::identity::Status::Active {
        return Err(ApiError::PrincipalSuspended);
    }
    // Only a signature that verified may occupy the replay memory.
    state.replay.check_and_remember(&input, &signature, now_s).map_err(ApiError::Signature)?;
    let caller = Caller {
        principal_id: holder.id,
        role: holder.role,
        scopes: Scopes(Scopes::READ | Scopes::PAY),
        via: auth::Via::Device(device.id),
    };
    Ok((caller, Request::from_parts(parts, axum::body::Body::from(bytes))))
}

async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let response = next.run(request).await;
    tracing::debug!(
        %method,
        route = %route,
        status = response.status().as_u16(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "request"
    );
    let status = response.status().as_u16().to_string();
    metrics::counter!("obol_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("obol_http_request_duration_seconds", "route" => route).record(started.elapsed().as_secs_f64());
    response
}

async fn time_limit(request: Request, next: Next) -> Response {
    match tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(REQUEST_TIMEOUT_MS).into_response(),
    }
}

fn batch_size(got: usize) -> Result<(), ApiError> {
    if got == 0 || got > BATCH_EVENTS_MAX {
        return Err(ApiError::BatchSize { got, max: BATCH_EVENTS_MAX });
    }
    Ok(())
}

fn internal(what: &str) -> ApiError {
    ApiError::Internal(format!("engine answered {what} with the wrong shape"))
}

pub(crate) fn read_ledger(state: &AppState) -> std::sync::RwLockReadGuard<'_, obol_core::ledger::Ledger> {
    state.engine.ledger().read().unwrap_or_else(|poisoned| poisoned.into_inner())
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
async fn create_account(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<AccountNew>,
) -> Result<Response, ApiError> {
    let mut event = body.to_core()?;
    authorize_new_accounts(&state, &caller, std::slice::from_mut(&mut event))?;
    let result = match state.engine.execute(Op::CreateAccounts(vec![event])).await? {
        OpResults::Accounts(results) => results.first().copied().ok_or_else(|| internal("create_account"))?,
        OpResults::Transfers(_) | OpResults::Identity(_) => return Err(internal("create_account")),
    };
    let status = match result {
        CreateAccountResult::Ok => StatusCode::CREATED,
        CreateAccountResult::Exists => StatusCode::OK,
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
    ),
    security(("bearer" = [])))]
async fn create_accounts(
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
        OpResults::Accounts(results) => Ok(Json(account_results(&ids, &results))),
        OpResults::Transfers(_) | OpResults::Identity(_) => Err(internal("create_accounts")),
    }
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
async fn get_account(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<AccountDto>, ApiError> {
    need_scope(&caller, Scopes::READ)?;
    let id = path_id(&id)?;
    let ledger = read_ledger(&state);
    visible_account(&caller, &ledger, id).map(|a| Json(AccountDto::from(a)))
}

fn visible_account<'l>(caller: &Caller, ledger: &'l Ledger, id: u128) -> Result<&'l Account, ApiError> {
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
        } else {
            return Err(ApiError::Forbidden("accounts can only be created for yourself".into()));
        }
    }
    Ok(())
}

/// A device pays only with plain or pending transfers, in its limits' asset, each at most
/// `per_payment` (the daily limit is charged durably by [`charge_device_day`]).
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

/// Checks that the caller may move money as these transfers ask: out of its own accounts, or, for
/// a post or void, on a pending transfer that touches its accounts.
fn authorize_transfers(
    state: &AppState,
    caller: &Caller,
    events: &[NewTransfer],
    approval: Option<&str>,
) -> Result<(), ApiError> {
    need_scope(caller, Scopes::PAY)?;
    need_role(caller, &[Role::Operator, Role::Holder, Role::Merchant])?;
    if caller.role == Role::Operator {
        return Ok(());
    }
    let ledger = read_ledger(state);
    if let auth::Via::Device(device_id) = caller.via {
        let device = ledger.identity().device(device_id).ok_or(ApiError::DeviceNotFound(device_id))?;
        check_device_limits(device, events)?;
    }
    for event in events {
        if event.flags.resolves_pending() {
            if let Some(pending) = ledger.transfer(event.pending_id) {
                let touches = [pending.debit_account_id, pending.credit_account_id]
                    .iter()
                    .any(|id| ledger.account(*id).is_some_and(|a| owns(caller, a)));
                if !touches {
                    return Err(ApiError::Forbidden(format!(
                        "transfer {} is not yours to post or void",
                        event.pending_id
                    )));
                }
            }
        } else if let Some(debit) = ledger.account(event.debit_account_id)
            && !can_debit(caller, debit)
        {
            return Err(ApiError::Forbidden(format!("account {} is not yours to debit", event.debit_account_id)));
        }
    }
    state.step_up.check(&ledger, caller, events, approval)
}

/// Charges a device's payments against its daily limit through the log, before they are
/// submitted: the core adds them atomically or refuses. A payment that then fails still counts
/// for the day, so the limit errs on the safe side; a restart forgets nothing.
async fn charge_device_day(state: &AppState, caller: &Caller, events: &[NewTransfer]) -> Result<(), ApiError> {
    let auth::Via::Device(device_id) = caller.via else { return Ok(()) };
    let per_day = read_ledger(state).identity().device(device_id).and_then(|d| d.limits).map_or(0, |l| l.per_day);
    if per_day == 0 {
        return Ok(());
    }
    let amount = events.iter().map(|e| e.amount).fold(0u128, u128::saturating_add);
    let day = now_ns() / 86_400_000_000_000;
    let command = obol_core::identity::IdentityCommand::ChargeDevice { id: device_id, day, amount };
    match identity_routes::run_identity(state, command).await? {
        obol_core::identity::IdentityResult::Ok => Ok(()),
        obol_core::identity::IdentityResult::DeviceDayLimitExceeded => Err(ApiError::DeviceLimit(format!(
            "this would take today's payments above this device's daily limit of {per_day}"
        ))),
        other => Err(ApiError::IdentityRejected(other)),
    }
}

/// The `Obol-Approval` header: an approved step-up challenge.
fn approval_header(headers: &HeaderMap) -> Option<&str> {
    headers.get("obol-approval").and_then(|v| v.to_str().ok()).map(str::trim)
}

/// After a commit: remember new payees and mark a device's first payment.
async fn after_payment(state: &AppState, caller: &Caller, events: &[NewTransfer], ok: &[bool]) {
    let paid: Vec<u128> = events
        .iter()
        .zip(ok)
        .filter(|(e, ok)| **ok && mfa::is_plain_payment(e))
        .map(|(e, _)| e.credit_account_id)
        .collect();
    if paid.is_empty() {
        return;
    }
    state.step_up.paid(caller.principal_id, paid);
    if let auth::Via::Device(device_id) = caller.via {
        let first = read_ledger(state).identity().device(device_id).is_some_and(|d| !d.has_paid);
        if first {
            let command = obol_core::identity::IdentityCommand::MarkDevicePaid { id: device_id };
            if let Err(error) = identity_routes::run_identity(state, command).await {
                tracing::warn!(%error, device_id, "could not record a device's first payment");
            }
        }
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
async fn get_balance(
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
async fn get_history(
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
        (status = 409, description = "The id exists with different fields, or the pending transfer is already resolved", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The ledger refused the transfer", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
async fn create_transfer(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TransferNew>,
) -> Result<Response, ApiError> {
    let event = body.to_core()?;
    authorize_transfers(&state, &caller, std::slice::from_ref(&event), approval_header(&headers))?;
    charge_device_day(&state, &caller, std::slice::from_ref(&event)).await?;
    let result = match state.engine.execute(Op::CreateTransfers(vec![event])).await? {
        OpResults::Transfers(results) => results.first().copied().ok_or_else(|| internal("create_transfer"))?,
        OpResults::Accounts(_) | OpResults::Identity(_) => return Err(internal("create_transfer")),
    };
    after_payment(&state, &caller, std::slice::from_ref(&event), &[result == CreateTransferResult::Ok]).await;
    let status = match result {
        CreateTransferResult::Ok => StatusCode::CREATED,
        CreateTransferResult::Exists => StatusCode::OK,
        rejected => return Err(ApiError::TransferRejected(rejected)),
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
    ),
    security(("bearer" = [])))]
async fn create_transfers(
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
    authorize_transfers(&state, &caller, &events, approval_header(&headers))?;
    charge_device_day(&state, &caller, &events).await?;
    let events_copy = events.clone();
    let ids: Vec<u128> = events.iter().map(|e| e.id).collect();
    match state.engine.execute(Op::CreateTransfers(events)).await? {
        OpResults::Transfers(results) => {
            let ok: Vec<bool> = results.iter().map(|r| *r == CreateTransferResult::Ok).collect();
            after_payment(&state, &caller, &events_copy, &ok).await;
            Ok(Json(transfer_results(&ids, &results)))
        }
        OpResults::Accounts(_) | OpResults::Identity(_) => Err(internal("create_transfers")),
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
async fn get_transfer(
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

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document")),
    security(("bearer" = [])))]
async fn openapi_json() -> Response {
    let mut response = Json(ApiDoc::openapi()).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// Readiness: the ledger accepts writes.
#[utoipa::path(get, path = "/readyz", tag = "meta",
    responses((status = 200, body = Health), (status = 503, body = Problem, content_type = "application/problem+json")))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    if state.engine.is_stopped() {
        return Err(ApiError::Unavailable);
    }
    Ok(Json(Health { status: "ok".into() }))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "meta", responses((status = 200, description = "Prometheus text format")))]
async fn metrics_text() -> Response {
    let body = metrics_handle().render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("obol_live_…").build(),
            ),
        );
    }
}

/// The OpenAPI document, generated from the handlers and DTOs above.
#[derive(OpenApi)]
#[openapi(
    info(title = "obol", description = "A secure micropayment server: double-entry ledger API. Amounts and ids are decimal strings; errors are RFC 9457 problem+json with a stable `code`."),
    paths(create_account, create_accounts, get_account, get_balance, get_history, create_transfer, create_transfers, get_transfer,
        identity_routes::me, identity_routes::create_principal, identity_routes::get_principal, identity_routes::set_principal_status,
        identity_routes::list_keys, identity_routes::create_key, identity_routes::activity, identity_routes::revoke_key, identity_routes::rotate_key,
        identity_routes::register_device, identity_routes::list_devices, identity_routes::set_device_status, identity_routes::rotate_device,
        identity_routes::set_device_limits, mfa::enroll_totp, mfa::confirm_totp, mfa::unlock, mfa::set_step_up, mfa::approve_challenge,
        passkeys::start_registration, passkeys::finish_registration, passkeys::start_assertion,
        openapi_json, healthz, readyz, metrics_text),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

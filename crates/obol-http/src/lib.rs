//! obol's HTTP API: an axum [`Router`] over the ledger engine.
//!
//! **Architecture Invariant:** a handler parses its request, calls one use case of the
//! application layer (`obol_app`: authorization, risk, holds, step-up and limits are decided
//! there, and money rules in the core), and maps the answer; no route module imports another.
//! Every failure leaves as RFC 9457 problem+json with a stable `code` ([`error::ApiError`]);
//! bad input never produces a 5xx.
//!
//! **API Boundary:** [`app`] builds the router from an [`AppState`]; routes live under `/v1`
//! and all of them require `Authorization: Bearer <operator key>`. `/healthz`, `/readyz` and
//! `/metrics` are open for probes and scrapers.
#![deny(missing_docs)]

pub mod audit_routes;
pub mod dashboard;
pub mod dispute_routes;
pub mod dto;
pub mod error;
pub use obol_wire::httpsig;
pub mod identity_routes;
pub mod ledger_routes;
pub mod mfa_routes;
mod middleware;
pub mod passkey_routes;
pub mod ratelimit;
pub mod risk_routes;
pub mod session_routes;
pub mod tab_routes;
pub mod webhook_routes;
pub mod x402;

pub use obol_app::{App, Env, SystemEnv, check_instance_id};

use std::sync::{Arc, OnceLock};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use obol_store::Engine;
use utoipa::OpenApi;

use crate::dto::*;
use crate::error::{ApiError, Error, Problem};

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

/// What every handler shares: the application layer, and what only HTTP needs.
#[derive(Clone)]
pub struct AppState {
    /// The use cases and the state they share.
    pub app: App,
    /// Rejects replayed device signatures.
    pub replay: Arc<httpsig::ReplayGuard>,
    /// `http` or `https`: how clients reach this server (for `@target-uri`).
    pub scheme: &'static str,
    /// Per-credential and per-address throttles.
    pub limits: Arc<ratelimit::Limits>,
    /// Proxies whose `X-Forwarded-For` names the client (none by default).
    pub trusted_proxies: Arc<[ratelimit::IpRange]>,
}

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}

/// The network id of a server given the instance id `local` (tests and benchmarks).
pub const LOCAL_NETWORK: &str = "obol:local";

impl AppState {
    /// State for a server over `engine`, reached over `scheme` (`http` or `https`), with a
    /// throwaway master key (tests; nothing sealed survives a restart).
    pub fn new(engine: Engine, scheme: &'static str) -> AppState {
        AppState::with_vault(engine, scheme, obol_app::vault::Vault::ephemeral(&SystemEnv))
    }

    /// State whose secrets are sealed by `vault`.
    #[expect(clippy::expect_used, reason = "localhost is a valid WebAuthn relying party, a constant")]
    pub fn with_vault(engine: Engine, scheme: &'static str, vault: obol_app::vault::Vault) -> AppState {
        let passkeys = obol_app::passkeys::Passkeys::new("localhost", &format!("{scheme}://localhost"))
            .expect("localhost is a valid WebAuthn relying party");
        let app = App::new(engine, vault, passkeys);
        AppState {
            replay: Arc::new(httpsig::ReplayGuard::new(app.env.now_s())),
            app,
            scheme,
            limits: Arc::new(ratelimit::Limits::new(DEFAULT_RATE_PER_CREDENTIAL, DEFAULT_FAILED_AUTH_BURST)),
            trusted_proxies: Arc::from(Vec::new()),
        }
    }

    /// Keeps records the law requires for `days` after a person's last payment before a
    /// requested erasure runs (0: at once).
    pub fn with_retention_days(mut self, days: u64) -> AppState {
        self.app.retention_days = days;
        self
    }

    /// Lets webhooks name loopback and private addresses.
    pub fn with_webhooks_allow_private(mut self, allow: bool) -> AppState {
        self.app.webhooks_allow_private = allow;
        self
    }

    /// Decides payments with `risk` (the default decides nothing and allows everything).
    pub fn with_risk(mut self, risk: obol_app::risk::Risk) -> AppState {
        self.app.risk = Arc::new(risk);
        self
    }

    /// Sets the network id to `obol:<instance_id>` (1 to 32 letters, digits, `-` or `_`). A
    /// server that keeps its ledger gives the same id at every start (`obol serve` keeps one in
    /// the store); without one, each `AppState` is a network of its own, drawn at random.
    pub fn with_instance_id(mut self, instance_id: &str) -> Result<AppState, String> {
        self.app = self.app.with_instance_id(instance_id)?;
        Ok(self)
    }

    /// Signs audit checkpoints with the Ed25519 key of `seed` (kept like the master key).
    pub fn with_audit_key(mut self, seed: &obol_app::vault::Secret<[u8; 32]>) -> AppState {
        self.app = self.app.with_audit_key(seed);
        self
    }

    /// Sets how long step-up challenges and approvals live (default five minutes).
    pub fn with_challenge_ttl_ns(mut self, ttl_ns: u64) -> AppState {
        self.app.step_up = Arc::new(obol_app::stepup::StepUp::with_ttl_ns(ttl_ns));
        self
    }

    /// Sets the WebAuthn relying party: `rp_id` (a domain) and the `origin` pages run at.
    pub fn with_passkeys(mut self, rp_id: &str, origin: &str) -> Result<AppState, String> {
        self.app.passkeys = Arc::new(obol_app::passkeys::Passkeys::new(rp_id, origin)?);
        Ok(self)
    }

    /// Sets the per-credential request rate (requests per second) and how many failed
    /// authentications an address may make before it is slowed to one every 3 s (0 turns either
    /// off).
    pub fn with_rate_limit(mut self, per_credential_per_s: u32, failed_auth_burst: u32) -> AppState {
        self.limits = Arc::new(ratelimit::Limits::new(per_credential_per_s, failed_auth_burst));
        self
    }

    /// Trusts `X-Forwarded-For` from these proxies (the TLS-terminating proxy in front), so
    /// throttles and the risk engine see the client's address, not the proxy's.
    pub fn with_trusted_proxies(mut self, proxies: Vec<ratelimit::IpRange>) -> AppState {
        self.trusted_proxies = Arc::from(proxies);
        self
    }

    /// For a server restarted on a store that served before: device signatures the previous
    /// run could have seen are refused ([`httpsig::ReplayGuard::after_restart`]).
    pub fn restarted(mut self) -> AppState {
        self.replay = Arc::new(httpsig::ReplayGuard::after_restart(self.app.env.now_s()));
        self
    }
}

/// Every route, as (method, path): the router, the OpenAPI document and the authorization
/// matrix test are all checked against this list.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/accounts"),
    ("POST", "/v1/accounts"),
    ("POST", "/v1/accounts/batch"),
    ("GET", "/v1/assets"),
    ("POST", "/v1/assets"),
    ("GET", "/v1/accounts/{id}"),
    ("GET", "/v1/accounts/{id}/balance"),
    ("GET", "/v1/accounts/{id}/history"),
    ("GET", "/v1/accounts/{id}/statement"),
    ("GET", "/v1/transfers"),
    ("POST", "/v1/transfers"),
    ("POST", "/v1/transfers/batch"),
    ("GET", "/v1/transfers/{id}"),
    ("POST", "/v1/transfers/{id}/refunds"),
    ("POST", "/v1/refunds"),
    ("GET", "/v1/disputes"),
    ("POST", "/v1/disputes"),
    ("GET", "/v1/disputes/{id}"),
    ("POST", "/v1/disputes/{id}/answer"),
    ("POST", "/v1/disputes/{id}/resolve"),
    ("POST", "/v1/disputes/{id}/withdraw"),
    ("GET", "/v1/me"),
    ("GET", "/v1/principals"),
    ("POST", "/v1/principals"),
    ("GET", "/v1/principals/{id}"),
    ("POST", "/v1/principals/{id}/status"),
    ("GET", "/v1/principals/{id}/keys"),
    ("POST", "/v1/principals/{id}/keys"),
    ("GET", "/v1/principals/{id}/activity"),
    ("GET", "/v1/principals/{id}/security-checklist"),
    ("GET", "/v1/principals/{id}/freeze"),
    ("POST", "/v1/principals/{id}/freeze"),
    ("POST", "/v1/principals/{id}/unfreeze"),
    ("GET", "/v1/principals/{id}/alerts"),
    ("PUT", "/v1/principals/{id}/alerts"),
    ("GET", "/v1/webhooks"),
    ("POST", "/v1/webhooks"),
    ("DELETE", "/v1/webhooks/{id}"),
    ("POST", "/v1/webhooks/{id}/replay"),
    ("GET", "/v1/webhooks/{id}/deliveries"),
    ("GET", "/v1/events"),
    ("POST", "/v1/principals/{id}/devices"),
    ("GET", "/v1/principals/{id}/devices"),
    ("GET", "/v1/devices"),
    ("POST", "/v1/devices/{id}/status"),
    ("POST", "/v1/devices/{id}/rotate"),
    ("POST", "/v1/devices/{id}/limits"),
    ("POST", "/v1/principals/{id}/totp"),
    ("POST", "/v1/principals/{id}/totp/confirm"),
    ("POST", "/v1/principals/{id}/unlock"),
    ("POST", "/v1/principals/{id}/step-up"),
    ("POST", "/v1/challenges/{id}/approve"),
    ("POST", "/v1/challenges/{id}/passkey"),
    ("GET", "/v1/principals/{id}/passkeys"),
    ("POST", "/v1/principals/{id}/passkeys"),
    ("DELETE", "/v1/principals/{id}/passkeys/{credential_id}"),
    ("POST", "/v1/principals/{id}/passkeys/finish"),
    ("GET", "/v1/tabs"),
    ("POST", "/v1/tabs"),
    ("GET", "/v1/tabs/{id}"),
    ("POST", "/v1/tabs/{id}/vouchers"),
    ("POST", "/v1/tabs/{id}/commitment"),
    ("POST", "/v1/tabs/{id}/ticks"),
    ("POST", "/v1/tabs/{id}/topup"),
    ("POST", "/v1/tabs/{id}/settle"),
    ("POST", "/v1/vouchers"),
    ("POST", "/v1/x402/verify"),
    ("POST", "/v1/x402/settle"),
    ("GET", "/v1/x402/supported"),
    ("GET", "/v1/x402/routes"),
    ("GET", "/v1/accounts/{id}/monthly-limit"),
    ("POST", "/v1/accounts/{id}/monthly-limit"),
    ("GET", "/v1/risk/reviews"),
    ("GET", "/v1/risk/reviews/{id}"),
    ("POST", "/v1/risk/reviews/{id}/decision"),
    ("GET", "/v1/risk/labels"),
    ("POST", "/v1/risk/labels"),
    ("GET", "/v1/risk/labels/recorded"),
    ("GET", "/v1/risk/decisions"),
    ("GET", "/v1/risk/policy"),
    ("POST", "/v1/risk/policy"),
    ("GET", "/v1/risk/policy/changes"),
    ("GET", "/v1/risk/model"),
    ("GET", "/v1/risk/shadow"),
    ("DELETE", "/v1/risk/shadow"),
    ("GET", "/v1/audit/checkpoint"),
    ("GET", "/v1/audit/key"),
    ("GET", "/v1/audit/entries/{index}"),
    ("GET", "/v1/audit/entries/{index}/proof"),
    ("GET", "/v1/audit/consistency"),
    ("GET", "/v1/audit/export"),
    ("GET", "/v1/principals/{id}/profile"),
    ("PATCH", "/v1/principals/{id}/profile"),
    ("GET", "/v1/principals/{id}/access-log"),
    ("GET", "/v1/principals/{id}/consents"),
    ("PUT", "/v1/principals/{id}/consents/{purpose}"),
    ("POST", "/v1/principals/{id}/erasure"),
    ("GET", "/v1/principals/{id}/export"),
    ("GET", "/v1/privacy/retention"),
    ("DELETE", "/v1/keys/{key_id}"),
    ("POST", "/v1/keys/{key_id}/rotate"),
    ("GET", "/v1/openapi.json"),
    ("POST", "/v1/sessions"),
    ("POST", "/v1/sessions/passkey"),
    ("GET", "/v1/session"),
    ("DELETE", "/v1/session"),
    ("DELETE", "/v1/principals/{id}/sessions"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

/// Routes under `/v1` that answer without a key: the facilitator's list of what it accepts.
pub const PUBLIC_V1_ROUTES: &[&str] =
    &["/v1/x402/supported", "/v1/openapi.json", "/v1/sessions", "/v1/sessions/passkey"];

/// The process-wide Prometheus recorder (installed on first use).
#[expect(clippy::expect_used, reason = "the bucket lists are constants, and valid")]
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
        .route("/v1/accounts", get(ledger_routes::list_accounts).post(ledger_routes::create_account))
        .route("/v1/accounts/batch", post(ledger_routes::create_accounts))
        .route("/v1/assets", get(ledger_routes::list_assets).post(ledger_routes::register_asset))
        .route("/v1/accounts/{id}", get(ledger_routes::get_account))
        .route("/v1/accounts/{id}/balance", get(ledger_routes::get_balance))
        .route("/v1/accounts/{id}/history", get(ledger_routes::get_history))
        .route("/v1/accounts/{id}/statement", get(ledger_routes::get_statement))
        .route("/v1/transfers", get(ledger_routes::list_transfers).post(ledger_routes::create_transfer))
        .route("/v1/transfers/batch", post(ledger_routes::create_transfers))
        .route("/v1/transfers/{id}", get(ledger_routes::get_transfer))
        .route("/v1/transfers/{id}/refunds", post(ledger_routes::create_refund))
        .route("/v1/refunds", post(ledger_routes::create_refunds))
        .route("/v1/disputes", get(dispute_routes::list_disputes).post(dispute_routes::open_dispute))
        .route("/v1/disputes/{id}", get(dispute_routes::get_dispute))
        .route("/v1/disputes/{id}/answer", post(dispute_routes::answer_dispute))
        .route("/v1/disputes/{id}/resolve", post(dispute_routes::resolve_dispute))
        .route("/v1/disputes/{id}/withdraw", post(dispute_routes::withdraw_dispute))
        .route("/v1/me", get(identity_routes::me))
        .route("/v1/principals", get(identity_routes::list_principals).post(identity_routes::create_principal))
        .route("/v1/principals/{id}", get(identity_routes::get_principal))
        .route("/v1/principals/{id}/status", post(identity_routes::set_principal_status))
        .route("/v1/principals/{id}/keys", get(identity_routes::list_keys).post(identity_routes::create_key))
        .route("/v1/principals/{id}/activity", get(identity_routes::activity))
        .route("/v1/principals/{id}/security-checklist", get(identity_routes::security_checklist))
        .route("/v1/principals/{id}/freeze", get(identity_routes::get_frozen).post(identity_routes::freeze))
        .route("/v1/principals/{id}/unfreeze", post(identity_routes::unfreeze))
        .route("/v1/principals/{id}/alerts", get(webhook_routes::get_alerts).put(webhook_routes::set_alerts))
        .route("/v1/webhooks", get(webhook_routes::list_webhooks).post(webhook_routes::create_webhook))
        .route("/v1/webhooks/{id}", axum::routing::delete(webhook_routes::delete_webhook))
        .route("/v1/webhooks/{id}/deliveries", get(webhook_routes::webhook_deliveries))
        .route("/v1/webhooks/{id}/replay", post(webhook_routes::replay_webhook))
        .route("/v1/events", get(webhook_routes::list_events))
        .route("/v1/principals/{id}/devices", get(identity_routes::list_devices).post(identity_routes::register_device))
        .route("/v1/devices", get(identity_routes::list_all_devices))
        .route("/v1/devices/{id}/status", post(identity_routes::set_device_status))
        .route("/v1/devices/{id}/rotate", post(identity_routes::rotate_device))
        .route("/v1/devices/{id}/limits", post(identity_routes::set_device_limits))
        .route("/v1/principals/{id}/totp", post(mfa_routes::enroll_totp))
        .route("/v1/principals/{id}/totp/confirm", post(mfa_routes::confirm_totp))
        .route("/v1/principals/{id}/unlock", post(mfa_routes::unlock))
        .route("/v1/principals/{id}/step-up", post(mfa_routes::set_step_up))
        .route("/v1/challenges/{id}/approve", post(mfa_routes::approve_challenge))
        .route("/v1/challenges/{id}/passkey", post(passkey_routes::start_assertion))
        .route(
            "/v1/principals/{id}/passkeys",
            get(passkey_routes::list_passkeys).post(passkey_routes::start_registration),
        )
        .route("/v1/principals/{id}/passkeys/{credential_id}", axum::routing::delete(passkey_routes::remove_passkey))
        .route("/v1/principals/{id}/passkeys/finish", post(passkey_routes::finish_registration))
        .route("/v1/tabs", get(tab_routes::list_tabs).post(tab_routes::open_tab))
        .route("/v1/tabs/{id}", get(tab_routes::get_tab))
        .route("/v1/tabs/{id}/vouchers", post(tab_routes::submit_voucher))
        .route("/v1/tabs/{id}/commitment", post(tab_routes::submit_commitment))
        .route("/v1/tabs/{id}/ticks", post(tab_routes::submit_tick))
        .route("/v1/tabs/{id}/topup", post(tab_routes::top_up))
        .route("/v1/tabs/{id}/settle", post(tab_routes::settle_tab))
        .route("/v1/vouchers", post(tab_routes::submit_vouchers))
        .route("/v1/x402/verify", post(x402::facilitator_verify))
        .route("/v1/x402/settle", post(x402::facilitator_settle))
        .route("/v1/x402/routes", get(x402::priced_routes))
        .route(
            "/v1/accounts/{id}/monthly-limit",
            get(risk_routes::get_monthly_limit).post(risk_routes::set_monthly_limit),
        )
        .route("/v1/risk/reviews", get(risk_routes::list_reviews))
        .route("/v1/risk/reviews/{id}", get(risk_routes::get_review))
        .route("/v1/risk/reviews/{id}/decision", post(risk_routes::decide_review))
        .route("/v1/risk/labels", get(risk_routes::labels).post(risk_routes::record_labels))
        .route("/v1/risk/labels/recorded", get(risk_routes::recorded_labels))
        .route("/v1/risk/decisions", get(risk_routes::decisions))
        .route("/v1/risk/policy", get(risk_routes::get_policy).post(risk_routes::submit_policy))
        .route("/v1/risk/policy/changes", get(risk_routes::policy_changes))
        .route("/v1/risk/model", get(risk_routes::get_model))
        .route("/v1/risk/shadow", get(risk_routes::get_shadow).delete(risk_routes::stop_shadow))
        .route("/v1/audit/checkpoint", get(audit_routes::checkpoint))
        .route("/v1/audit/key", get(audit_routes::key))
        .route("/v1/audit/entries/{index}", get(audit_routes::entry))
        .route("/v1/audit/entries/{index}/proof", get(audit_routes::inclusion))
        .route("/v1/audit/consistency", get(audit_routes::consistency))
        .route("/v1/audit/export", get(audit_routes::export))
        .route("/v1/principals/{id}/profile", get(identity_routes::get_profile).patch(identity_routes::update_profile))
        .route("/v1/principals/{id}/access-log", get(identity_routes::access_log))
        .route("/v1/principals/{id}/consents", get(identity_routes::list_consents))
        .route("/v1/principals/{id}/consents/{purpose}", axum::routing::put(identity_routes::set_consent))
        .route("/v1/principals/{id}/erasure", post(identity_routes::erase_principal))
        .route("/v1/principals/{id}/export", get(identity_routes::export_personal_data))
        .route("/v1/privacy/retention", get(identity_routes::retention_plan))
        .route("/v1/keys/{key_id}", axum::routing::delete(identity_routes::revoke_key))
        .route("/v1/keys/{key_id}/rotate", post(identity_routes::rotate_key))
        .route("/v1/session", get(session_routes::current).delete(session_routes::sign_out))
        .route("/v1/principals/{id}/sessions", axum::routing::delete(session_routes::sign_out_everywhere))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), middleware::require_key));
    Router::new()
        .merge(v1)
        .route("/v1/sessions", post(session_routes::sign_in))
        .route("/v1/sessions/passkey", post(session_routes::passkey_challenge))
        .route("/v1/x402/supported", get(x402::facilitator_supported))
        .route("/v1/openapi.json", get(openapi_json))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .merge(api_reference())
        .merge(dashboard::routes())
        .fallback(|| async { ApiError(Error::RouteNotFound) })
        .method_not_allowed_fallback(|| async { ApiError(Error::MethodNotAllowed) })
        .route_layer(axum::middleware::from_fn(middleware::track))
        .layer(axum::middleware::from_fn(middleware::time_limit))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn(middleware::access))
        .layer(axum::middleware::from_fn(dashboard::security_headers))
        .with_state(state)
}

/// Gives the routes of `router` (routes added beside [`app`], such as priced ones) request ids
/// and access log lines, as `app`'s own have.
pub fn with_request_ids<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(axum::middleware::from_fn(middleware::access))
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

pub(crate) fn read_ledger(state: &AppState) -> std::sync::RwLockReadGuard<'_, obol_core::ledger::Ledger> {
    obol_app::read_ledger(state)
}

/// The `Obol-Approval` header: an approved step-up challenge.
pub(crate) fn approval_header(headers: &HeaderMap) -> Option<&str> {
    headers.get("obol-approval").and_then(|v| v.to_str().ok()).map(str::trim)
}

/// A response with a `Location` header.
pub(crate) fn with_location(status: StatusCode, location: String, body: impl IntoResponse) -> Response {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, value);
    }
    (status, headers, body).into_response()
}

/// This document (no key needed: it describes the API, not anyone's data).
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document")))]
async fn openapi_json() -> Response {
    let mut response = Json(ApiDoc::openapi()).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The API reference at `/docs`: Swagger UI (its assets embedded in the binary, no CDN)
/// rendering `/v1/openapi.json`. No key needed, as for the document itself.
fn api_reference() -> Router<AppState> {
    let config = utoipa_swagger_ui::Config::new(["/v1/openapi.json"]).try_it_out_enabled(true);
    Router::from(utoipa_swagger_ui::SwaggerUi::new("/docs").config(config))
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
        return Err(Error::Unavailable.into());
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

/// Documents the answers every route can give besides its own: 401, 403 and 429 on the routes
/// that need a key (and 429 on the others, which are rate limited by address), 500 everywhere;
/// and gives every answer a description (a handler's own, or what its status means here).
struct ProblemAnswers;

impl ProblemAnswers {
    fn problem(description: &str, retry_after: bool) -> utoipa::openapi::Response {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, ResponseBuilder};
        let mut response = ResponseBuilder::new().description(description).content(
            "application/problem+json",
            ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
        );
        if retry_after {
            response = response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).build()))
                    .description(Some("Seconds until a request may succeed"))
                    .build(),
            );
        }
        response.build()
    }

    /// What a status means on obol's routes, for answers documented without a description.
    fn meaning(status: &str) -> &'static str {
        match status {
            "200" => "Done",
            "201" => "Created",
            "202" => "Accepted, not done yet: held for review",
            "400" => "The request is malformed: the problem names the field",
            "401" => "No valid API key or device signature",
            "402" => "Payment required: the offer is in PAYMENT-REQUIRED",
            "403" => "Not allowed for this caller, or a second factor must approve it (`requires_action`)",
            "404" => "No such resource, or not one the caller may see",
            "409" => "Conflicts with what exists: the problem says with what",
            "413" => "The body is too large",
            "415" => "The body must be application/json",
            "422" => "Refused by the ledger or a limit: the problem's `code` says why",
            "429" => "Too many requests: wait Retry-After seconds",
            "500" => "An internal error: the body carries only a request id",
            "503" => "Not ready: the ledger is not accepting writes",
            _ => "See the problem document's `code`",
        }
    }
}

impl utoipa::Modify for ProblemAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let keyed = operation.security.as_ref().is_some_and(|requirements| !requirements.is_empty());
                let answers = &mut operation.responses.responses;
                let mut added = vec![("429", true), ("500", false)];
                if keyed {
                    added.extend([("401", false), ("403", false)]);
                }
                for (status, retry_after) in added {
                    answers.entry(status.to_string()).or_insert_with(|| {
                        RefOr::T(ProblemAnswers::problem(ProblemAnswers::meaning(status), retry_after))
                    });
                }
                for (status, answer) in answers.iter_mut() {
                    if let RefOr::T(response) = answer
                        && response.description.trim().is_empty()
                    {
                        response.description = ProblemAnswers::meaning(status).to_string();
                    }
                }
            }
        }
    }
}

/// The OpenAPI document, generated from the handlers and DTOs above.
#[derive(OpenApi)]
#[openapi(
    info(title = "obol", description = "A secure micropayment server: double-entry ledger API. Amounts and ids are decimal strings; errors are RFC 9457 problem+json with a stable `code`."),
    paths(ledger_routes::list_accounts, ledger_routes::list_transfers, identity_routes::list_principals, tab_routes::list_tabs,
        ledger_routes::create_account, ledger_routes::create_accounts, ledger_routes::register_asset, ledger_routes::list_assets, ledger_routes::get_account, ledger_routes::get_balance,
        ledger_routes::get_history, ledger_routes::get_statement, ledger_routes::create_transfer, ledger_routes::create_refund, ledger_routes::create_refunds, ledger_routes::create_transfers, ledger_routes::get_transfer,
        identity_routes::me, session_routes::sign_in, session_routes::passkey_challenge, session_routes::current, session_routes::sign_out, session_routes::sign_out_everywhere, identity_routes::create_principal, identity_routes::get_principal, identity_routes::set_principal_status,
        identity_routes::list_keys, identity_routes::create_key, identity_routes::activity, identity_routes::security_checklist, identity_routes::get_frozen, identity_routes::freeze, identity_routes::unfreeze, identity_routes::revoke_key, identity_routes::rotate_key,
        identity_routes::register_device, identity_routes::list_devices, identity_routes::list_all_devices, identity_routes::set_device_status, identity_routes::rotate_device,
        identity_routes::set_device_limits, mfa_routes::enroll_totp, mfa_routes::confirm_totp, mfa_routes::unlock, mfa_routes::set_step_up, mfa_routes::approve_challenge,
        passkey_routes::list_passkeys, passkey_routes::remove_passkey, passkey_routes::start_registration, passkey_routes::finish_registration, passkey_routes::start_assertion,
        tab_routes::open_tab, tab_routes::get_tab, tab_routes::submit_voucher, tab_routes::settle_tab,
        tab_routes::submit_vouchers, tab_routes::submit_commitment, tab_routes::submit_tick, tab_routes::top_up,
        x402::facilitator_verify, x402::facilitator_settle, x402::facilitator_supported, x402::priced_routes,
        risk_routes::get_monthly_limit, risk_routes::set_monthly_limit, risk_routes::list_reviews, risk_routes::get_review, risk_routes::decide_review, risk_routes::labels, risk_routes::record_labels, risk_routes::recorded_labels, risk_routes::decisions, risk_routes::get_policy, risk_routes::submit_policy,
        risk_routes::policy_changes, risk_routes::get_model, risk_routes::get_shadow, risk_routes::stop_shadow,
        audit_routes::checkpoint, audit_routes::key, audit_routes::entry, audit_routes::inclusion, audit_routes::consistency, audit_routes::export,
        identity_routes::get_profile, identity_routes::update_profile, identity_routes::access_log, identity_routes::list_consents,
        identity_routes::set_consent, identity_routes::erase_principal, identity_routes::export_personal_data, identity_routes::retention_plan,
        dispute_routes::open_dispute, dispute_routes::list_disputes, dispute_routes::get_dispute, dispute_routes::answer_dispute,
        dispute_routes::resolve_dispute, dispute_routes::withdraw_dispute,
        webhook_routes::get_alerts, webhook_routes::set_alerts, webhook_routes::create_webhook, webhook_routes::list_webhooks,
        webhook_routes::delete_webhook, webhook_routes::replay_webhook, webhook_routes::webhook_deliveries, webhook_routes::list_events,
        openapi_json, healthz, readyz, metrics_text),
    modifiers(&BearerAuth, &ProblemAnswers),
)]
pub struct ApiDoc;

/// A list route's query, or the problem that names what is wrong with it.
pub(crate) fn list_query<Q>(
    query: Result<axum::extract::Query<Q>, axum::extract::rejection::QueryRejection>,
) -> Result<Q, Error> {
    query.map(|axum::extract::Query(query)| query).map_err(|rejection| Error::InvalidQuery(rejection.body_text()))
}

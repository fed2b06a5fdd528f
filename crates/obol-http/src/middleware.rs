//! Request middleware: authentication (API keys and device signatures) with throttling, request
//! ids and the access log, metrics, and the time limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use obol_core::identity::Scopes;

use crate::error::{ApiError, Error};
use crate::{AppState, BODY_BYTES_MAX, REQUEST_TIMEOUT_MS, httpsig, read_ledger};
use obol_app::auth::{self, AuthFailure, Caller};

/// The client address of a request: its peer, or the client a trusted proxy names.
fn peer_of(
    state: &AppState,
    connect: Option<std::net::SocketAddr>,
    headers: &axum::http::HeaderMap,
) -> Option<std::net::IpAddr> {
    connect.map(|address| {
        let forwarded_for = headers.get("x-forwarded-for").and_then(|value| value.to_str().ok());
        crate::ratelimit::client_address(address.ip(), forwarded_for, &state.trusted_proxies)
    })
}

pub(crate) async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let connect = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|info| info.0);
    let peer = peer_of(&state, connect, request.headers());
    // Retry-After says when this address may try again, not a fixed guess.
    if let Some(wait_s) = peer.and_then(|ip| state.limits.failed_auth_per_ip.wait_s(&ip)) {
        return ApiError(Error::RateLimited(wait_s)).into_response();
    }
    match authenticate(&state, request, peer).await {
        Ok((caller, mut request)) => match admitted(&state, caller, peer) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                next.run(request).await
            }
            Err(error) => error.into_response(),
        },
        Err(refused) => charge(&state, peer, refused).into_response(),
    }
}

/// The caller with its address, if its credential's rate allows another request.
fn admitted(state: &AppState, mut caller: Caller, peer: Option<std::net::IpAddr>) -> Result<Caller, ApiError> {
    caller.peer = peer;
    if let Err(wait_s) = state.limits.per_credential.take(&caller.via.label()) {
        return Err(ApiError(Error::RateLimited(wait_s)));
    }
    Ok(caller)
}

/// A failed authentication's answer, the client address charged for it (a failed argon2 check
/// was charged before it ran).
fn charge(state: &AppState, peer: Option<std::net::IpAddr>, refused: Refused) -> ApiError {
    if let Some(ip) = peer
        && !refused.charged
    {
        let _ = state.limits.failed_auth_per_ip.take(&ip);
    }
    refused.error
}

/// The caller an API key in a request body resolves to (signing in), throttled as a key in a
/// header is.
/// The address a public sign-in route is answering, if it may try now (a client that failed
/// too often waits, as at every other door).
pub(crate) fn sign_in_client(
    state: &AppState,
    connect: Option<std::net::SocketAddr>,
    headers: &axum::http::HeaderMap,
) -> Result<Option<std::net::IpAddr>, ApiError> {
    let peer = peer_of(state, connect, headers);
    if let Some(wait_s) = peer.and_then(|ip| state.limits.failed_auth_per_ip.wait_s(&ip)) {
        return Err(ApiError(Error::RateLimited(wait_s)));
    }
    Ok(peer)
}

/// Charges `peer` for a failed sign-in (a wrong passkey), as for a wrong key.
pub(crate) fn charge_failed_sign_in(state: &AppState, peer: Option<std::net::IpAddr>, error: Error) -> ApiError {
    charge(state, peer, Refused { error: ApiError(error), charged: false })
}

pub(crate) async fn key_caller(
    state: &AppState,
    connect: Option<std::net::SocketAddr>,
    headers: &axum::http::HeaderMap,
    token: &str,
) -> Result<Caller, ApiError> {
    let peer = peer_of(state, connect, headers);
    if let Some(wait_s) = peer.and_then(|ip| state.limits.failed_auth_per_ip.wait_s(&ip)) {
        return Err(ApiError(Error::RateLimited(wait_s)));
    }
    match checked_key(state, token.to_string(), peer, "/v1/sessions").await {
        Ok(caller) => admitted(state, caller, peer),
        Err(refused) => Err(charge(state, peer, refused)),
    }
}

/// Why authentication failed, and whether the client address was already charged for it.
struct Refused {
    error: ApiError,
    charged: bool,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Refused {
        Refused { error, charged: false }
    }
}

/// Resolves the caller of a request: a device signature when `Signature-Input` is present, an
/// API key when `Authorization` is, and otherwise a session cookie.
async fn authenticate(
    state: &AppState,
    request: Request,
    peer: Option<std::net::IpAddr>,
) -> Result<(Caller, Request), Refused> {
    if request.headers().contains_key("signature-input") {
        return device_caller(state, request)
            .await
            .inspect_err(|error| {
                tracing::info!(code = error.code(), "signed request refused");
            })
            .map_err(Refused::from);
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| token.trim().to_string());
    let Some(token) = token else {
        return match crate::session_routes::token_in(request.headers()) {
            Some(session_token) => session_caller(state, request, session_token),
            None => Err(ApiError(Error::Unauthorized).into()),
        };
    };
    let path = loggable_path(request.uri().path());
    let caller = checked_key(state, token, peer, &path).await?;
    Ok((caller, request))
}

/// The session a request came through, with its cookie's token (set here, read by the routes
/// that act on the session itself).
#[derive(Clone, Debug)]
pub struct SessionToken(pub String, pub obol_app::sessions::Session);

/// The caller of a request through a session: the session must be live and the key it came
/// from still good; a request that changes something must carry the session's CSRF token and
/// come from the same site.
fn session_caller(state: &AppState, mut request: Request, token: String) -> Result<(Caller, Request), Refused> {
    let now_ns = state.env.now_ns();
    let session = state.sessions.touch(&token, now_ns).ok_or(ApiError(Error::Unauthorized))?;
    let checked = match &session.credential {
        auth::Via::ApiKey(key_id) => state.auth.caller_for_key(key_id, state.engine.ledger(), now_ns),
        auth::Via::Passkey(credential_id) => {
            let ledger = read_ledger(state);
            auth::caller_for_passkey(&ledger, session.principal_id, credential_id)
        }
        auth::Via::Device(_) => Err(AuthFailure::BadKey),
    };
    let needs_code_now = || obol_app::sessions::needs_code_now(&read_ledger(state), &session);
    let caller = match checked {
        Ok(caller) if caller.principal_id == session.principal_id && !needs_code_now() => caller,
        outcome => {
            // The key was revoked or expired, its principal suspended, or the person set up TOTP
            // since this key-only sign-in: the session ends.
            state.sessions.close(&token);
            let error =
                if outcome == Err(AuthFailure::Suspended) { Error::PrincipalSuspended } else { Error::Unauthorized };
            return Err(ApiError(error).into());
        }
    };
    let method = request.method();
    if !(method == axum::http::Method::GET || method == axum::http::Method::HEAD) {
        let sent = request.headers().get("x-csrf-token").and_then(|value| value.to_str().ok()).unwrap_or("");
        let site = request.headers().get("sec-fetch-site").and_then(|value| value.to_str().ok());
        let same_site = site.is_none_or(|site| site == "same-origin" || site == "none");
        if !same_site || !obol_app::sessions::same_secret(sent, &session.csrf_token) {
            tracing::info!(path = %loggable_path(request.uri().path()), "session request without its CSRF token refused");
            // Not a credential guess: the address is not charged.
            return Err(Refused { error: ApiError(Error::CsrfRefused), charged: true });
        }
    }
    request.extensions_mut().insert(SessionToken(token, session));
    Ok((caller, request))
}

/// The caller an API key resolves to, with the argon2 check throttled per address.
async fn checked_key(
    state: &AppState,
    token: String,
    peer: Option<std::net::IpAddr>,
    path: &str,
) -> Result<Caller, Refused> {
    let auth = Arc::clone(&state.auth);
    let ledger = Arc::clone(state.engine.ledger());
    let mut charged = false;
    let now_ns = state.env.now_ns();
    let outcome = if auth.is_cached(&token) {
        auth.authenticate(&token, &ledger, now_ns)
    } else {
        // A key not seen before costs an argon2id check (19 MiB, tens of ms). The address pays
        // for the attempt up front, in the same step as its check, so a burst cannot all pass
        // the check before the first failure counts (it gets the token back if the key is
        // good); and at most ARGON2_CONCURRENT_MAX checks run at once.
        if let Some(ip) = peer
            && let Err(wait_s) = state.limits.failed_auth_per_ip.take(&ip)
        {
            return Err(Refused { error: ApiError(Error::RateLimited(wait_s)), charged: true });
        }
        charged = peer.is_some();
        let wait = Duration::from_millis(crate::ratelimit::ARGON2_WAIT_MS);
        let permit = match tokio::time::timeout(wait, state.limits.argon2.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) | Err(_) => return Err(Refused { error: ApiError(Error::Overloaded), charged }),
        };
        // argon2id is slow on purpose; keep it off the async workers.
        let outcome = tokio::task::spawn_blocking(move || auth.authenticate(&token, &ledger, now_ns))
            .await
            .unwrap_or(Err(AuthFailure::BadKey));
        drop(permit);
        if let Some(ip) = peer
            && outcome.is_ok()
        {
            state.limits.failed_auth_per_ip.give_back(&ip);
        }
        outcome
    };
    match outcome {
        Ok(caller) => Ok(caller),
        Err(AuthFailure::BadKey) => {
            tracing::info!(path = %path, "API key refused");
            Err(Refused { error: ApiError(Error::Unauthorized), charged })
        }
        Err(AuthFailure::Suspended) => {
            tracing::info!(path = %path, "API key of a suspended principal refused");
            Err(Refused { error: ApiError(Error::PrincipalSuspended), charged })
        }
    }
}

/// Authenticates a device-signed request (RFC 9421). Buffers the body to check its digest and
/// gives the request back whole.
async fn device_caller(state: &AppState, request: Request) -> Result<(Caller, Request), ApiError> {
    use httpsig::SigError;
    let (parts, body) = request.into_parts();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let inputs = httpsig::parse_signature_input(header("signature-input").unwrap_or("")).map_err(Error::Signature)?;
    let input = inputs
        .iter()
        .find(|i| i.label == "sig1")
        .or_else(|| inputs.first())
        .ok_or(Error::Signature(SigError::Malformed("Signature-Input names no signature".into())))?
        .clone();
    let signature = httpsig::parse_signature(
        header("signature").ok_or(Error::Signature(SigError::Malformed("Signature header missing".into())))?,
        &input.label,
    )
    .map_err(Error::Signature)?;
    if input.alg.as_deref().is_some_and(|alg| alg != "ed25519") {
        return Err(Error::Signature(SigError::AlgorithmUnsupported).into());
    }
    // The signature is checked before the body is read: it covers the `Content-Digest` header,
    // so nobody makes obol buffer and hash megabytes for a request no device signed.
    let body_announced = parts.headers.contains_key(header::TRANSFER_ENCODING)
        || header("content-length").is_some_and(|length| length.trim() != "0");
    let mut required = vec!["@method", "@target-uri"];
    if parts.headers.contains_key(header::AUTHORIZATION) {
        required.push("authorization");
    }
    if parts.headers.contains_key("obol-approval") {
        required.push("obol-approval");
    }
    if body_announced {
        required.push("content-digest");
    }
    for component in required {
        if !input.components.iter().any(|c| c == component) {
            return Err(Error::Signature(SigError::ComponentMissing(format!("\"{component}\""))).into());
        }
    }
    let now_s = state.env.now_s();
    state.replay.check_time(&input, now_s).map_err(Error::Signature)?;
    let authority = header("host").or_else(|| parts.uri.authority().map(|a| a.as_str())).unwrap_or("");
    let message = httpsig::Message {
        method: parts.method.as_str(),
        scheme: state.scheme,
        authority,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
    };
    let base = httpsig::signature_base(&input, &message).map_err(Error::Signature)?;
    let (device, holder) = {
        let ledger = read_ledger(state);
        let device =
            ledger.identity().device_by_kid(&input.keyid).cloned().ok_or(Error::Signature(SigError::UnknownKey))?;
        let holder =
            ledger.identity().principal(device.holder_id).cloned().ok_or(Error::Signature(SigError::UnknownKey))?;
        (device, holder)
    };
    httpsig::verify_ed25519(&device.public_key, &base, &signature).map_err(Error::Signature)?;
    match device.status {
        obol_core::identity::Status::Active => {}
        obol_core::identity::Status::Suspended => {
            return Err(Error::Signature(SigError::DeviceInactive("suspended")).into());
        }
        obol_core::identity::Status::Revoked => {
            return Err(Error::Signature(SigError::DeviceInactive("revoked")).into());
        }
    }
    if holder.status != obol_core::identity::Status::Active {
        return Err(Error::PrincipalSuspended.into());
    }
    let bytes = axum::body::to_bytes(body, BODY_BYTES_MAX).await.map_err(|_| Error::BodyTooLarge(BODY_BYTES_MAX))?;
    if !bytes.is_empty() {
        if !input.components.iter().any(|c| c == "content-digest") {
            return Err(Error::Signature(SigError::ComponentMissing("\"content-digest\"".into())).into());
        }
        httpsig::check_content_digest(header("content-digest"), &bytes).map_err(Error::Signature)?;
    }
    // Only a signature that verified may occupy the replay memory.
    state.replay.check_and_remember(&input, &signature, now_s).map_err(Error::Signature)?;
    let caller = Caller {
        principal_id: holder.id,
        role: holder.role,
        scopes: Scopes(Scopes::READ | Scopes::PAY),
        via: auth::Via::Device(device.id),
        peer: None,
    };
    Ok((caller, Request::from_parts(parts, axum::body::Body::from(bytes))))
}

tokio::task_local! {
    /// The id of the request being served (its `x-request-id`), for the problem documents and
    /// log lines it causes.
    pub(crate) static REQUEST_ID: Arc<str>;
}

/// Longest `x-request-id` taken from a client; a longer or odd one is replaced.
const REQUEST_ID_BYTES_MAX: usize = 64;

/// Whether a client's `x-request-id` may be echoed and logged as it is.
fn acceptable_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= REQUEST_ID_BYTES_MAX
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A request path for a log line: printable ASCII as it is, any other byte percent-encoded, so
/// that a client's path never breaks or forges a line.
fn loggable_path(path: &str) -> String {
    path.bytes().map(|b| if b.is_ascii_graphic() { char::from(b).to_string() } else { format!("%{b:02X}") }).collect()
}

/// Gives every request an id (the client's `x-request-id` if it sent a sensible one, else a
/// new one), echoes it in the answer's `x-request-id`, and writes the access log line
/// (target `obol::access`: method, path without the query, status, time, id).
pub async fn access(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id: Arc<str> = match request.headers().get("x-request-id").and_then(|v| v.to_str().ok()) {
        Some(id) if acceptable_request_id(id) => Arc::from(id),
        _ => Arc::from(crate::error::new_request_id()),
    };
    let method = request.method().clone();
    let path = loggable_path(request.uri().path());
    let mut response = REQUEST_ID.scope(Arc::clone(&id), next.run(request)).await;
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    tracing::info!(
        target: "obol::access",
        request_id = %id,
        %method,
        %path,
        status = response.status().as_u16(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

pub(crate) async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("obol_http_requests_total", "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("obol_http_request_duration_seconds", "route" => route).record(started.elapsed().as_secs_f64());
    response
}

pub(crate) async fn time_limit(request: Request, next: Next) -> Response {
    match tokio::time::timeout(Duration::from_millis(REQUEST_TIMEOUT_MS), next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError(Error::Timeout(REQUEST_TIMEOUT_MS)).into_response(),
    }
}

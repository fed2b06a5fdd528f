//! Dashboard sessions over HTTP: sign in (`POST /v1/sessions`) with a passkey (its challenge from
//! `POST /v1/sessions/passkey`), or with an API key (and the principal's TOTP code when it has
//! one), to get a `__Host-` cookie, see the session, sign out, sign out everywhere. The rules
//! (limits, CSRF tokens, checking the key again on every request) live in `obol_app::sessions`;
//! the cookie is read in `middleware::authenticate`.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, Problem};
use crate::{ApiJson, AppState};
use obol_app::auth::Caller;
use obol_app::error::Error;
use obol_app::sessions::{COOKIE_NAME, Session};

pub use crate::middleware::SessionToken;

/// Body of a sign-in: an API key, or a passkey's assertion (not both).
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// An API key of the principal signing in (`obol_live_...`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// A passkey's answer to the challenge of `POST /v1/sessions/passkey`.
    #[serde(default)]
    pub passkey: Option<PasskeySignIn>,
    /// The principal's current TOTP code: required when it has confirmed TOTP (or a recovery
    /// code instead).
    #[serde(default)]
    pub code: Option<String>,
    /// One of the principal's recovery codes, instead of a TOTP code (each works once).
    #[serde(default)]
    pub recovery_code: Option<String>,
}

/// A passkey's answer to a sign-in challenge.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct PasskeySignIn {
    /// The ceremony `POST /v1/sessions/passkey` answered.
    pub ceremony_id: String,
    /// The assertion (`PublicKeyCredential` as JSON, e.g. `credential.toJSON()`).
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

/// Whom a passkey sign-in is for.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct PasskeyChallengeAsk {
    /// The principal signing in (its id, as the person types it).
    pub principal_id: String,
}

/// A passkey sign-in challenge.
#[derive(Serialize, ToSchema, Debug)]
pub struct PasskeyChallenge {
    /// Send it back with the assertion.
    pub ceremony_id: String,
    /// The options for `navigator.credentials.get` (`{"publicKey": {...}}`, byte fields in
    /// base64url, as `PublicKeyCredential.parseRequestOptionsFromJSON` reads them).
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

/// A signed-in session. The token itself is only in the cookie.
#[derive(Serialize, ToSchema, Debug)]
pub struct SessionDto {
    /// Who signed in.
    pub principal_id: String,
    /// Their role.
    pub role: String,
    /// Whether a second factor (TOTP, or a passkey's user verification) was checked at sign-in.
    pub second_factor: bool,
    /// How the session was opened: `api_key` or `passkey`.
    pub credential: String,
    /// Send this back in the `X-CSRF-Token` header with every request that changes something.
    pub csrf_token: String,
    /// When the session began (RFC 3339).
    pub signed_in_at: String,
    /// When it ends unless another request comes first (RFC 3339): the earlier of its idle
    /// and absolute limits.
    pub ends_at: String,
    /// When it ends however busy it is (RFC 3339).
    pub expires_at: String,
}

/// How many sessions ended.
#[derive(Serialize, ToSchema, Debug)]
pub struct SessionsEnded {
    /// Sessions ended.
    pub sessions_ended: u64,
}

fn dto(state: &AppState, session: &Session) -> Result<SessionDto, ApiError> {
    let role = {
        let ledger = crate::read_ledger(state);
        ledger.identity().principal(session.principal_id).map(|p| p.role.as_str()).ok_or(Error::Unauthorized)?
    };
    let at = |ns: u64| obol_core::time::rfc3339(u128::from(ns));
    Ok(SessionDto {
        principal_id: session.principal_id.to_string(),
        role: role.to_string(),
        second_factor: session.second_factor,
        credential: match session.credential {
            obol_app::auth::Via::Passkey(_) => "passkey",
            _ => "api_key",
        }
        .to_string(),
        csrf_token: session.csrf_token.clone(),
        signed_in_at: at(session.created_ns),
        ends_at: at(state.sessions.ends_ns(session)),
        expires_at: at(session.created_ns.saturating_add(state.sessions.absolute_ns())),
    })
}

/// The `Set-Cookie` value that carries `token` for `max_age_s`, or clears the cookie.
fn cookie(token: Option<&str>, max_age_s: u64) -> HeaderValue {
    let text = format!(
        "{COOKIE_NAME}={}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        token.unwrap_or(""),
        if token.is_some() { max_age_s } else { 0 }
    );
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("__Host-obol_session=; Max-Age=0"))
}

/// The session token a request's `Cookie` headers carry, if any.
pub(crate) fn token_in(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('=').map(str::to_string))
        .filter(|token| !token.is_empty())
}

/// Start a passkey sign-in: the challenge for the passkeys of the principal named. A principal
/// that does not exist or has no passkey gets a challenge of the same shape that no passkey can
/// answer, so this does not tell who exists.
#[utoipa::path(post, path = "/v1/sessions/passkey", tag = "sessions", request_body = PasskeyChallengeAsk,
    responses(
        (status = 200, body = PasskeyChallenge),
        (status = 400, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn passkey_challenge(
    State(state): State<AppState>,
    connect: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PasskeyChallengeAsk>,
) -> Result<Response, ApiError> {
    let peer = crate::middleware::sign_in_client(&state, connect.map(|Extension(info)| info.0), &headers)?;
    let (ceremony_id, options) = obol_app::passkeys::start_sign_in(&state, &body.principal_id, peer)?;
    let mut response = Json(PasskeyChallenge { ceremony_id, options }).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Sign in: exchange a passkey's assertion, or an API key (and the principal's TOTP code, when
/// it has one), for a session cookie (`__Host-obol_session`: HttpOnly, Secure, SameSite=Strict).
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = SignIn,
    responses(
        (status = 201, body = SessionDto, headers(("set-cookie" = String, description = "The session cookie"))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn sign_in(
    State(state): State<AppState>,
    connect: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    let connect = connect.map(|Extension(info)| info.0);
    let (token, session) = match (body.api_key.as_deref(), body.passkey) {
        (Some(api_key), None) => {
            let caller = crate::middleware::key_caller(&state, connect, &headers, api_key.trim()).await?;
            obol_app::sessions::sign_in(&state, &caller, body.code.as_deref(), body.recovery_code.as_deref()).await?
        }
        (None, Some(passkey)) => {
            if body.code.is_some() || body.recovery_code.is_some() {
                return Err(Error::InvalidField("a passkey sign-in takes no code".into()).into());
            }
            let peer = crate::middleware::sign_in_client(&state, connect, &headers)?;
            match obol_app::sessions::sign_in_with_passkey(&state, &passkey.ceremony_id, passkey.credential).await {
                Ok(opened) => opened,
                Err(Error::Unauthorized) => {
                    return Err(crate::middleware::charge_failed_sign_in(&state, peer, Error::Unauthorized));
                }
                Err(other) => return Err(other.into()),
            }
        }
        _ => return Err(Error::InvalidField("sign in with either `api_key` or `passkey`".into()).into()),
    };
    let dto = dto(&state, &session)?;
    let mut response = (StatusCode::CREATED, Json(dto)).into_response();
    let max_age_s = state.sessions.absolute_ns() / 1_000_000_000;
    response.headers_mut().insert(header::SET_COOKIE, cookie(Some(&token), max_age_s));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The session this request came through.
#[utoipa::path(get, path = "/v1/session", tag = "sessions",
    responses(
        (status = 200, body = SessionDto),
        (status = 404, description = "The request did not come through a session", body = Problem, content_type = "application/problem+json"),
    ), security(("bearer" = [])))]
pub async fn current(
    State(state): State<AppState>,
    token: Option<Extension<SessionToken>>,
) -> Result<Response, ApiError> {
    // The middleware looked the session up (and restarted its idle timer) already.
    let Some(Extension(SessionToken(_, session))) = token else { return Err(Error::SessionNotFound.into()) };
    let mut response = Json(dto(&state, &session)?).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Sign out: end the session this request came through and clear its cookie.
#[utoipa::path(delete, path = "/v1/session", tag = "sessions",
    responses(
        (status = 204, description = "Signed out"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ), security(("bearer" = [])))]
pub async fn sign_out(
    State(state): State<AppState>,
    token: Option<Extension<SessionToken>>,
) -> Result<Response, ApiError> {
    let Some(Extension(SessionToken(token, _))) = token else { return Err(Error::SessionNotFound.into()) };
    if !state.sessions.close(&token) {
        return Err(Error::SessionNotFound.into());
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie(None, 0));
    Ok(response)
}

/// Sign out everywhere: end every session of a principal (the principal itself, or the
/// operator).
#[utoipa::path(delete, path = "/v1/principals/{id}/sessions", tag = "sessions",
    params(("id" = String, Path, description = "Principal id")),
    responses(
        (status = 200, body = SessionsEnded),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ), security(("bearer" = [])))]
pub async fn sign_out_everywhere(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    token: Option<Extension<SessionToken>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ended = obol_app::sessions::sign_out_everywhere(&state, &caller, &id)?;
    let mut response = Json(SessionsEnded { sessions_ended: ended as u64 }).into_response();
    if token.is_some() && id.trim() == caller.principal_id.to_string() {
        response.headers_mut().insert(header::SET_COOKIE, cookie(None, 0));
    }
    Ok(response)
}

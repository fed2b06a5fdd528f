//! Passkey routes: registration and assertion ceremonies (WebAuthn, through `obol_app::passkeys`).

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64ct::{Base64UrlUnpadded, Encoding};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, Problem};
use crate::{ApiJson, AppState};
use obol_app::auth::Caller;
use obol_app::passkeys;

/// A ceremony's options, to hand to `navigator.credentials.create/get`.
#[derive(Serialize, ToSchema, Debug)]
pub struct CeremonyStart {
    /// Send it back with the authenticator's answer.
    pub ceremony_id: String,
    /// `PublicKeyCredentialCreationOptions` or `...RequestOptions`, as WebAuthn JSON.
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

/// The authenticator's answer to a registration.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct RegistrationFinish {
    /// From the start answer.
    pub ceremony_id: String,
    /// The `PublicKeyCredential` from `navigator.credentials.create`, as WebAuthn JSON.
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

/// A registered passkey.
#[derive(Serialize, ToSchema, Debug)]
pub struct PasskeyDto {
    /// The credential id, base64url.
    pub credential_id: String,
}

/// Start registering a passkey for yourself.
#[utoipa::path(post, path = "/v1/principals/{id}/passkeys", tag = "mfa",
    params(("id" = String, Path, description = "Your principal id")),
    responses((status = 200, body = CeremonyStart), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn start_registration(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Json<CeremonyStart>, ApiError> {
    let principal_id = crate::dto::path_id(&id)?;
    let (ceremony_id, options) =
        passkeys::start_registration(&state, &caller, principal_id, crate::approval_header(&headers)).await?;
    Ok(Json(CeremonyStart { ceremony_id, options }))
}

/// Finish registering a passkey with the authenticator's answer.
#[utoipa::path(post, path = "/v1/principals/{id}/passkeys/finish", tag = "mfa", request_body = RegistrationFinish,
    params(("id" = String, Path, description = "Your principal id")),
    responses((status = 201, body = PasskeyDto), (status = 400, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn finish_registration(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RegistrationFinish>,
) -> Result<Response, ApiError> {
    let principal_id = crate::dto::path_id(&id)?;
    let credential_id =
        passkeys::finish_registration(&state, &caller, principal_id, &body.ceremony_id, body.credential).await?;
    let dto = PasskeyDto { credential_id: Base64UrlUnpadded::encode_string(&credential_id) };
    Ok((StatusCode::CREATED, Json(dto)).into_response())
}

/// Your passkeys (or, for the operator, anyone's): credential ids and whether each still works.
#[utoipa::path(get, path = "/v1/principals/{id}/passkeys", tag = "mfa",
    params(("id" = String, Path, description = "Principal id")),
    responses((status = 200, body = Vec<passkeys::PasskeyView>), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_passkeys(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Vec<passkeys::PasskeyView>>, ApiError> {
    let principal_id = crate::dto::path_id(&id)?;
    Ok(Json(passkeys::list(&state, &caller, principal_id)?))
}

/// Remove a passkey (lost, stolen, or no longer trusted): it signs nothing from now on, and the
/// sessions it opened end. The person or the operator, with `manage`.
#[utoipa::path(delete, path = "/v1/principals/{id}/passkeys/{credential_id}", tag = "mfa",
    params(("id" = String, Path, description = "Principal id"), ("credential_id" = String, Path, description = "Credential id, base64url")),
    responses((status = 204, description = "Removed"), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn remove_passkey(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, credential_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let principal_id = crate::dto::path_id(&id)?;
    passkeys::remove(&state, &caller, principal_id, &credential_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Start a passkey assertion that approves step-up challenge `id`.
#[utoipa::path(post, path = "/v1/challenges/{id}/passkey", tag = "mfa",
    params(("id" = String, Path, description = "Challenge id")),
    responses((status = 200, body = CeremonyStart), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn start_assertion(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<CeremonyStart>, ApiError> {
    let (ceremony_id, options) = passkeys::start_assertion(&state, &caller, &id)?;
    Ok(Json(CeremonyStart { ceremony_id, options }))
}

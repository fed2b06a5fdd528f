//! Second-factor routes: TOTP enrolment and confirmation, approving a step-up challenge,
//! unlocking factor checks, and the holder's step-up policy. The rules (RFC 6238 codes, lockout
//! after PSD2 RTS art. 4, challenges bound to the exact operation after RTS art. 5) live in
//! `obol_app::stepup`.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, Problem};
use crate::{ApiJson, AppState, approval_header};
use obol_app::auth::Caller;
use obol_app::stepup::{self, ChallengeDto};

/// A TOTP enrolment in progress: shown once.
#[derive(Serialize, ToSchema, Debug)]
pub struct TotpEnrollment {
    /// The secret in base32 (for manual entry). Shown only here.
    pub secret_base32: String,
    /// `otpauth://totp/...` URI for authenticator apps.
    pub otpauth_uri: String,
    /// The URI as a QR code (SVG).
    pub qr_svg: String,
}

/// Body of an enrolment: when a factor already exists, a current code proves the change.
#[derive(Deserialize, ToSchema, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct TotpEnrollRequest {
    /// A current TOTP code (required to replace an existing authenticator).
    #[serde(default)]
    pub code: Option<String>,
}

/// A code.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// A 6-digit TOTP code.
    #[serde(default)]
    pub code: Option<String>,
    /// Or a recovery code.
    #[serde(default)]
    pub recovery_code: Option<String>,
    /// Or a passkey assertion (challenges only; start it at `/v1/challenges/{id}/passkey`).
    #[serde(default)]
    pub passkey: Option<crate::dto::PasskeyAssertion>,
}

/// Recovery codes: shown once.
#[derive(Serialize, ToSchema, Debug)]
pub struct RecoveryCodes {
    /// Ten single-use codes; store them offline.
    pub recovery_codes: Vec<String>,
}

/// An approved challenge.
#[derive(Serialize, ToSchema, Debug)]
pub struct Approval {
    /// Resend the request with `Obol-Approval: <challenge_id>`.
    pub challenge_id: String,
    /// The operation approved.
    pub challenge: ChallengeDto,
}

/// The step-up policy on the wire.
#[derive(Serialize, Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct StepUpPolicyDto {
    /// Payments above this amount in this asset need approval.
    #[serde(default)]
    pub above: Option<StepUpThreshold>,
    /// The first payment to a new payee needs approval (default true).
    #[serde(default = "yes")]
    pub new_payee: bool,
    /// A device's first payment needs approval (default true).
    #[serde(default = "yes")]
    pub new_device: bool,
}

fn yes() -> bool {
    true
}

/// A threshold.
#[derive(Serialize, Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct StepUpThreshold {
    /// ISO 4217 code.
    pub asset_code: String,
    /// Scale.
    pub asset_scale: u8,
    /// Amount in minor units; payments above it need approval.
    pub amount: String,
}

/// Start TOTP enrolment for yourself.
#[utoipa::path(post, path = "/v1/principals/{id}/totp", tag = "mfa", request_body = TotpEnrollRequest,
    params(("id" = String, Path, description = "Your principal id")),
    responses((status = 201, body = TotpEnrollment), (status = 403, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn enroll_totp(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TotpEnrollRequest>,
) -> Result<Response, ApiError> {
    let enrollment = stepup::enroll_totp(&state, &caller, &id, body.code.as_deref()).await?;
    let enrollment = TotpEnrollment {
        secret_base32: enrollment.secret_base32,
        otpauth_uri: enrollment.otpauth_uri,
        qr_svg: enrollment.qr_svg,
    };
    Ok((StatusCode::CREATED, Json(enrollment)).into_response())
}

/// Confirm TOTP enrolment with a first code; returns recovery codes once.
#[utoipa::path(post, path = "/v1/principals/{id}/totp/confirm", tag = "mfa", request_body = CodeRequest,
    params(("id" = String, Path, description = "Your principal id")),
    responses((status = 200, body = RecoveryCodes), (status = 403, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn confirm_totp(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    session: Option<Extension<crate::middleware::SessionToken>>,
    ApiJson(body): ApiJson<CodeRequest>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let recovery_codes = stepup::confirm_totp(&state, &caller, &id, body.code.as_deref()).await?;
    // The session this came through checked the code just now: it goes on; others opened
    // without a code end at their next request.
    if let Some(Extension(crate::middleware::SessionToken(token, _))) = session {
        state.sessions.mark_second_factor(&token);
    }
    Ok(Json(RecoveryCodes { recovery_codes }))
}

/// Approve a step-up challenge with a second factor.
#[utoipa::path(post, path = "/v1/challenges/{id}/approve", tag = "mfa", request_body = CodeRequest,
    params(("id" = String, Path, description = "Challenge id")),
    responses((status = 200, body = Approval), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn approve_challenge(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CodeRequest>,
) -> Result<Json<Approval>, ApiError> {
    let passkey = body.passkey.map(|assertion| (assertion.ceremony_id, assertion.credential));
    let dto =
        stepup::approve(&state, &caller, &id, body.code.as_deref(), body.recovery_code.as_deref(), passkey).await?;
    Ok(Json(Approval { challenge_id: id, challenge: dto }))
}

/// Unlock a principal's factor checks after a lockout (operator).
#[utoipa::path(post, path = "/v1/principals/{id}/unlock", tag = "mfa",
    params(("id" = String, Path, description = "Principal id")),
    responses((status = 200, description = "Unlocked"), (status = 403, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn unlock(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    stepup::unlock(&state, &caller, &id).await?;
    Ok(StatusCode::OK)
}

/// Set your step-up policy (or, as operator, anyone's).
#[utoipa::path(post, path = "/v1/principals/{id}/step-up", tag = "mfa", request_body = StepUpPolicyDto,
    params(("id" = String, Path, description = "Principal id")),
    responses((status = 200, body = StepUpPolicyDto), (status = 403, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn set_step_up(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<StepUpPolicyDto>,
) -> Result<Json<StepUpPolicyDto>, ApiError> {
    let ask = stepup::PolicyAsk {
        above: body.above.as_ref().map(|t| (t.asset_code.as_str(), t.asset_scale, t.amount.as_str())),
        new_payee: body.new_payee,
        new_device: body.new_device,
    };
    stepup::set_step_up(&state, &caller, &id, ask, approval_header(&headers)).await?;
    Ok(Json(body))
}

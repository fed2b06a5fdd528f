//! Second-factor routes: TOTP enrolment and confirmation, approving a step-up challenge,
//! unlocking factor checks, and the holder's step-up policy. The rules (RFC 6238 codes, lockout
//! after PSD2 RTS art. 4, challenges bound to the exact operation after RTS art. 5) live in
//! `obol_app::stepup`.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use obol_core::identity::{IdentityCommand, IdentityResult, Role, Scopes, StepUpPolicy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, Error, Problem};
use crate::{ApiJson, AppState, approval_header, now_ns, read_ledger};
use obol_app::auth::Caller;
use obol_app::authz::need_scope;
use obol_app::identity::run_identity;
use obol_app::stepup::*;
use obol_app::vault::Secret;

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
    let principal_id = crate::dto::path_id(&id)?;
    self_with_key(&caller, principal_id)?;
    let (name, has_factor) = {
        let ledger = read_ledger(&state);
        let principal = ledger.identity().principal(principal_id).ok_or(Error::PrincipalNotFound(principal_id))?;
        (principal.name.clone(), principal.has_factor())
    };
    if has_factor {
        let code = body.code.as_deref().ok_or_else(|| {
            Error::Forbidden("replacing an authenticator needs a current code from the existing one".into())
        })?;
        check_factor(&state, principal_id, Some(code), None).await?;
    }
    let mut secret = [0u8; 20];
    rand::fill(&mut secret);
    let secret = Secret::new(secret);
    let totp = totp_for(secret.expose_secret(), &name)?;
    let uri = totp.to_url().map_err(|e| Error::Internal(format!("otpauth URI: {e}")))?;
    let sealed = state.vault.seal(&totp_purpose(principal_id), secret.expose_secret());
    let result = run_identity(&state, IdentityCommand::EnrollTotp { principal_id, sealed_secret: sealed }).await?;
    if result != IdentityResult::Ok {
        return Err(Error::IdentityRejected(result).into());
    }
    let enrollment =
        TotpEnrollment { secret_base32: totp.secret().to_base32(), qr_svg: qr_svg(&uri)?, otpauth_uri: uri };
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
    ApiJson(body): ApiJson<CodeRequest>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let principal_id = crate::dto::path_id(&id)?;
    self_with_key(&caller, principal_id)?;
    let code = body.code.as_deref().ok_or_else(|| Error::InvalidField("send the code your app shows".into()))?;
    let sealed = {
        let ledger = read_ledger(&state);
        let principal = ledger.identity().principal(principal_id).ok_or(Error::PrincipalNotFound(principal_id))?;
        principal
            .totp
            .as_ref()
            .filter(|t| !t.confirmed)
            .map(|t| t.sealed_secret.clone())
            .ok_or(Error::IdentityRejected(IdentityResult::FactorNotEnrolled))?
    };
    let secret = state
        .vault
        .open(&totp_purpose(principal_id), &sealed)
        .ok_or_else(|| Error::Internal("TOTP seed unreadable".into()))?;
    let step = totp_for(secret.expose_secret(), "confirm")?.check(code.trim(), now_ns() / 1_000_000_000);
    let Some(step) = step else {
        return Err(record_failure(&state, principal_id).await.into());
    };
    let codes: Vec<String> = (0..RECOVERY_CODES_COUNT).map(|_| recovery_code()).collect();
    let recovery_hashes = codes.iter().map(|c| recovery_hash(principal_id, c)).collect();
    let result = run_identity(&state, IdentityCommand::ConfirmTotp { principal_id, step, recovery_hashes }).await?;
    if result != IdentityResult::Ok {
        return Err(Error::IdentityRejected(result).into());
    }
    Ok(Json(RecoveryCodes { recovery_codes: codes }))
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
    let dto = approve(&state, &caller, &id, body.code.as_deref(), body.recovery_code.as_deref(), passkey).await?;
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
    need_scope(&caller, Scopes::MANAGE)?;
    obol_app::authz::need_role(&caller, &[Role::Operator])?;
    let principal_id = crate::dto::path_id(&id)?;
    match run_identity(&state, IdentityCommand::UnlockFactors { principal_id }).await? {
        IdentityResult::Ok => Ok(StatusCode::OK),
        other => Err(Error::IdentityRejected(other).into()),
    }
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
    let principal_id = crate::dto::path_id(&id)?;
    if caller.role != Role::Operator {
        self_with_key(&caller, principal_id)?;
    } else {
        need_scope(&caller, Scopes::MANAGE)?;
    }
    let above = match &body.above {
        None => None,
        Some(threshold) => {
            let asset = obol_core::money::Asset::new(&threshold.asset_code, threshold.asset_scale)
                .map_err(|e| Error::InvalidAsset(e.to_string()))?;
            let amount = obol_core::money::Amount::parse(&threshold.amount)
                .map_err(|e| Error::InvalidAmount { field: "above.amount".into(), reason: e.to_string() })?;
            Some((asset, amount.0))
        }
    };
    let policy = StepUpPolicy { above, new_payee: body.new_payee, new_device: body.new_device };
    if caller.role != Role::Operator {
        let details = serde_json::to_vec(&body).map_err(|e| Error::Internal(e.to_string()))?;
        let ledger = read_ledger(&state);
        state.step_up.check_change(&ledger, principal_id, "step_up_policy", &details, approval_header(&headers))?;
    }
    match run_identity(&state, IdentityCommand::SetStepUpPolicy { principal_id, policy }).await? {
        IdentityResult::Ok => Ok(Json(body)),
        other => Err(Error::IdentityRejected(other).into()),
    }
}

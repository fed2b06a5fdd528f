//! Identity routes: principals, API keys, the caller itself and its activity.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use obol_core::identity::{ApiKey, IdentityCommand, IdentityResult, Principal, Role, Scopes, Status};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, Error, Problem};
use crate::{ApiJson, AppState, now_ns, read_ledger};
use obol_app::auth::{Caller, Via};
use obol_app::authz::{can_see_principal, need_role, need_scope};
use obol_app::identity::*;

/// A principal.
#[derive(Serialize, ToSchema, Debug)]
pub struct PrincipalDto {
    /// Id, decimal string.
    pub id: String,
    /// `operator`, `holder`, `merchant`, `analyst` or `auditor`.
    pub role: String,
    /// Display name.
    pub name: String,
    /// `active` or `suspended`.
    pub status: String,
    /// Creation time, ns since the Unix epoch, decimal string.
    pub created_ns: String,
}

impl From<&Principal> for PrincipalDto {
    fn from(p: &Principal) -> PrincipalDto {
        PrincipalDto {
            id: p.id.to_string(),
            role: p.role.as_str().into(),
            name: p.name.clone(),
            status: p.status.as_str().into(),
            created_ns: p.created_ns.to_string(),
        }
    }
}

/// The caller: its principal and the credential it used.
#[derive(Serialize, ToSchema, Debug)]
pub struct MeDto {
    /// The principal acting.
    pub principal: PrincipalDto,
    /// `api_key` or `device`.
    pub credential: String,
    /// The key id or device id.
    pub credential_id: String,
    /// The credential's scopes.
    pub scopes: Vec<String>,
}

/// A request to create a principal.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct PrincipalNew {
    /// Id, decimal string; a random one if omitted.
    #[serde(default)]
    pub id: Option<String>,
    /// `holder`, `merchant`, `analyst`, `auditor` or `operator`.
    pub role: String,
    /// Display name, 1 to 64 bytes.
    pub name: String,
}

/// A status change.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// `active` or `suspended`.
    pub status: String,
}

/// An API key, without its secret.
#[derive(Serialize, ToSchema, Debug)]
pub struct KeyDto {
    /// Public id (the part after `obol_live_`).
    pub key_id: String,
    /// Whose key.
    pub principal_id: String,
    /// `read`, `pay`, `manage`.
    pub scopes: Vec<String>,
    /// When it stops working, ns since the Unix epoch ("0": never).
    pub expires_ns: String,
    /// `active` or `revoked` (an expired key stays `active` but no longer works).
    pub status: String,
    /// Creation time, ns.
    pub created_ns: String,
}

impl From<&ApiKey> for KeyDto {
    fn from(k: &ApiKey) -> KeyDto {
        KeyDto {
            key_id: k.key_id.clone(),
            principal_id: k.principal_id.to_string(),
            scopes: scope_names(k.scopes),
            expires_ns: k.expires_ns.to_string(),
            status: k.status.as_str().into(),
            created_ns: k.created_ns.to_string(),
        }
    }
}

/// A new key, shown once.
#[derive(Serialize, ToSchema, Debug)]
pub struct NewKeyDto {
    /// The full key. It is shown only in this answer; obol keeps only its hash.
    pub key: String,
    /// The key's stored form.
    #[serde(flatten)]
    pub stored: KeyDto,
}

/// A request for a new key.
#[derive(Deserialize, ToSchema, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct KeyNew {
    /// Scopes, a subset of the caller's own (default: the caller's).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Seconds until the key stops working (default: never).
    #[serde(default)]
    pub expires_in_s: Option<u64>,
}

/// A request to rotate a key.
#[derive(Deserialize, ToSchema, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct KeyRotation {
    /// Seconds the old key keeps working beside the new one (default 3600; 0 revokes it now).
    #[serde(default)]
    pub overlap_s: Option<u64>,
}

/// One security event.
#[derive(Serialize, ToSchema, Debug)]
pub struct ActivityItem {
    /// When, ns since the Unix epoch.
    pub at_ns: String,
    /// Stable event name.
    pub event: String,
    /// What happened, in words.
    pub description: String,
    /// The key or device concerned, if any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subject: String,
}

fn scope_names(scopes: Scopes) -> Vec<String> {
    Scopes::NAMES.iter().filter(|(_, bit)| scopes.0 & bit != 0).map(|(name, _)| (*name).to_string()).collect()
}

fn parse_scopes(names: &[String]) -> Result<Scopes, ApiError> {
    let mut bits = 0;
    for name in names {
        let (_, bit) = Scopes::NAMES
            .iter()
            .find(|(known, _)| known == name)
            .ok_or_else(|| Error::InvalidField(format!("unknown scope {name:?}; use read, pay or manage")))?;
        bits |= bit;
    }
    Ok(Scopes(bits))
}

fn principal_id(text: &str) -> Result<u128, ApiError> {
    Ok(crate::dto::path_id(text)?)
}

/// The caller itself.
#[utoipa::path(get, path = "/v1/me", tag = "identity",
    responses((status = 200, body = MeDto)), security(("bearer" = [])))]
pub async fn me(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Result<Json<MeDto>, ApiError> {
    let ledger = read_ledger(&state);
    let principal = ledger.identity().principal(caller.principal_id).ok_or(Error::Unauthorized)?;
    let (credential, credential_id) = match &caller.via {
        Via::ApiKey(key_id) => ("api_key", key_id.clone()),
        Via::Device(device_id) => ("device", device_id.to_string()),
    };
    Ok(Json(MeDto {
        principal: principal.into(),
        credential: credential.into(),
        credential_id,
        scopes: scope_names(caller.scopes),
    }))
}

/// Create a principal (operator).
#[utoipa::path(post, path = "/v1/principals", tag = "identity", request_body = PrincipalNew,
    responses(
        (status = 201, body = PrincipalDto),
        (status = 200, description = "An identical principal already existed", body = PrincipalDto),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
    ), security(("bearer" = [])))]
pub async fn create_principal(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<PrincipalNew>,
) -> Result<Response, ApiError> {
    need_scope(&caller, Scopes::MANAGE)?;
    need_role(&caller, &[Role::Operator])?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        Error::InvalidField(format!("unknown role {:?}; use holder, merchant, analyst, auditor or operator", body.role))
    })?;
    let id = match &body.id {
        Some(text) => crate::dto::path_id(text)?,
        None => (rand::random::<u128>() >> 2).max(2),
    };
    let name_max = obol_core::identity::NAME_BYTES_MAX;
    if body.name.is_empty() || body.name.len() > name_max {
        return Err(Error::InvalidField(format!("name must be 1 to {name_max} bytes")).into());
    }
    let result = run_identity(&state, IdentityCommand::CreatePrincipal { id, role, name: body.name.clone() }).await?;
    accepted(result)?;
    let status = if result == IdentityResult::Ok { StatusCode::CREATED } else { StatusCode::OK };
    let dto = PrincipalDto::from(read_ledger(&state).identity().principal(id).ok_or(Error::PrincipalNotFound(id))?);
    Ok((status, Json(dto)).into_response())
}

/// Look up a principal (operator, analyst, auditor, or the principal itself).
#[utoipa::path(get, path = "/v1/principals/{id}", tag = "identity",
    params(("id" = String, Path, description = "Principal id")),
    responses((status = 200, body = PrincipalDto), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_principal(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<PrincipalDto>, ApiError> {
    need_scope(&caller, Scopes::READ)?;
    let id = principal_id(&id)?;
    if !can_see_principal(&caller, id) {
        return Err(Error::PrincipalNotFound(id).into());
    }
    let ledger = read_ledger(&state);
    ledger.identity().principal(id).map(|p| Json(p.into())).ok_or(Error::PrincipalNotFound(id).into())
}

/// Suspend or reactivate a principal (operator).
#[utoipa::path(post, path = "/v1/principals/{id}/status", tag = "identity", request_body = StatusChange,
    params(("id" = String, Path, description = "Principal id")),
    responses((status = 200, body = PrincipalDto), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn set_principal_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StatusChange>,
) -> Result<Json<PrincipalDto>, ApiError> {
    need_scope(&caller, Scopes::MANAGE)?;
    need_role(&caller, &[Role::Operator])?;
    let id = principal_id(&id)?;
    let status = match body.status.as_str() {
        "active" => Status::Active,
        "suspended" => Status::Suspended,
        other => return Err(Error::InvalidField(format!("status must be active or suspended, not {other:?}")).into()),
    };
    if id == caller.principal_id && status == Status::Suspended {
        return Err(Error::Forbidden("an operator cannot suspend itself".into()).into());
    }
    accepted(run_identity(&state, IdentityCommand::SetPrincipalStatus { id, status }).await?)?;
    let ledger = read_ledger(&state);
    ledger.identity().principal(id).map(|p| Json(p.into())).ok_or(Error::PrincipalNotFound(id).into())
}

/// A principal's API keys, without secrets.
#[utoipa::path(get, path = "/v1/principals/{id}/keys", tag = "identity",
    params(("id" = String, Path, description = "Principal id")),
    responses((status = 200, body = Vec<KeyDto>), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_keys(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Vec<KeyDto>>, ApiError> {
    need_scope(&caller, Scopes::READ)?;
    let id = principal_id(&id)?;
    if !can_see_principal(&caller, id) || caller.role == Role::Analyst && caller.principal_id != id {
        return Err(Error::PrincipalNotFound(id).into());
    }
    let ledger = read_ledger(&state);
    ledger.identity().principal(id).ok_or(Error::PrincipalNotFound(id))?;
    Ok(Json(ledger.identity().keys_of(id).into_iter().map(KeyDto::from).collect()))
}

/// Create an API key (operator for anyone; a principal for itself, with `manage`). The key is
/// shown once.
#[utoipa::path(post, path = "/v1/principals/{id}/keys", tag = "identity", request_body = KeyNew,
    params(("id" = String, Path, description = "Principal id")),
    responses((status = 201, body = NewKeyDto), (status = 403, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create_key(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<KeyNew>,
) -> Result<Response, ApiError> {
    need_scope(&caller, Scopes::MANAGE)?;
    let id = principal_id(&id)?;
    if caller.role != Role::Operator && caller.principal_id != id {
        return Err(Error::PrincipalNotFound(id).into());
    }
    if read_ledger(&state).identity().principal(id).is_none() {
        return Err(Error::PrincipalNotFound(id).into());
    }
    let scopes = match &body.scopes {
        Some(names) => parse_scopes(names)?,
        None => caller.scopes,
    };
    if !caller.scopes.allows(scopes.0) {
        return Err(Error::Forbidden("a key cannot grant scopes its creator lacks".into()).into());
    }
    let expires_ns = match body.expires_in_s {
        None | Some(0) => 0,
        Some(seconds) => now_ns().saturating_add(seconds.saturating_mul(1_000_000_000)),
    };
    let (key, stored) = issue_key(&state, id, scopes, expires_ns).await?;
    Ok((StatusCode::CREATED, Json(NewKeyDto { key, stored: (&stored).into() })).into_response())
}

/// Revoke an API key at once.
#[utoipa::path(delete, path = "/v1/keys/{key_id}", tag = "identity",
    params(("key_id" = String, Path, description = "Public key id")),
    responses((status = 200, body = KeyDto), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn revoke_key(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key_id): Path<String>,
) -> Result<Json<KeyDto>, ApiError> {
    key_for_manage(&state, &caller, &key_id)?;
    accepted(run_identity(&state, IdentityCommand::RevokeApiKey { key_id: key_id.clone() }).await?)?;
    let ledger = read_ledger(&state);
    ledger.identity().key(&key_id).map(|k| Json(k.into())).ok_or(Error::KeyNotFound(key_id).into())
}

/// Replace a key: a new key with the same scopes now, the old one expiring after an overlap.
#[utoipa::path(post, path = "/v1/keys/{key_id}/rotate", tag = "identity", request_body = KeyRotation,
    params(("key_id" = String, Path, description = "Public key id")),
    responses((status = 201, body = NewKeyDto), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn rotate_key(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key_id): Path<String>,
    ApiJson(body): ApiJson<KeyRotation>,
) -> Result<Response, ApiError> {
    let old = key_for_manage(&state, &caller, &key_id)?;
    if old.status == Status::Revoked {
        return Err(Error::IdentityRejected(IdentityResult::AlreadyRevoked).into());
    }
    if !caller.scopes.allows(old.scopes.0) {
        return Err(Error::Forbidden(
            "a key cannot grant scopes its creator lacks: rotate it with a key that holds them".into(),
        )
        .into());
    }
    let (key, stored) = issue_key(&state, old.principal_id, old.scopes, old.expires_ns).await?;
    let new_key = NewKeyDto { key, stored: (&stored).into() };
    let overlap_s = body.overlap_s.unwrap_or(3600);
    let command = if overlap_s == 0 {
        IdentityCommand::RevokeApiKey { key_id }
    } else {
        let until = now_ns().saturating_add(overlap_s.saturating_mul(1_000_000_000));
        let expires_ns = if old.expires_ns == 0 { until } else { old.expires_ns.min(until) };
        IdentityCommand::SetApiKeyExpiry { key_id, expires_ns }
    };
    accepted(run_identity(&state, command).await?)?;
    Ok((StatusCode::CREATED, Json(new_key)).into_response())
}

/// A principal's security events, oldest first (the principal itself, the operator, auditors).
#[utoipa::path(get, path = "/v1/principals/{id}/activity", tag = "identity",
    params(("id" = String, Path, description = "Principal id")),
    responses((status = 200, body = Vec<ActivityItem>), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn activity(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Vec<ActivityItem>>, ApiError> {
    need_scope(&caller, Scopes::READ)?;
    let id = principal_id(&id)?;
    let allowed = caller.principal_id == id || matches!(caller.role, Role::Operator | Role::Auditor);
    let ledger = read_ledger(&state);
    if !allowed || ledger.identity().principal(id).is_none() {
        return Err(Error::PrincipalNotFound(id).into());
    }
    Ok(Json(
        ledger
            .identity()
            .events_of(id)
            .iter()
            .map(|e| ActivityItem {
                at_ns: e.at_ns.to_string(),
                event: e.kind.as_str().into(),
                description: e.kind.describe().into(),
                subject: e.subject.clone(),
            })
            .collect(),
    ))
}

/// Spending limits of a device, on the wire.
#[derive(Serialize, Deserialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct DeviceLimitsDto {
    /// The asset the limits count; the device may pay only in it.
    pub asset_code: String,
    /// Scale of the asset.
    pub asset_scale: u8,
    /// Largest single payment in minor units ("0" or absent: no limit).
    #[serde(default)]
    pub per_payment: Option<String>,
    /// Most per UTC day in minor units ("0" or absent: no limit).
    #[serde(default)]
    pub per_day: Option<String>,
}

/// A device.
#[derive(Serialize, ToSchema, Debug)]
pub struct DeviceDto {
    /// Id.
    pub id: String,
    /// The holder it acts for.
    pub holder_id: String,
    /// The key id it signs with (`keyid`).
    pub kid: String,
    /// Its public key as an RFC 8037 JWK.
    pub jwk: serde_json::Value,
    /// `active`, `suspended` or `revoked`.
    pub status: String,
    /// Spending limits, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<DeviceLimitsDto>,
    /// Registration time, ns.
    pub created_ns: String,
}

impl From<&obol_core::identity::Device> for DeviceDto {
    fn from(d: &obol_core::identity::Device) -> DeviceDto {
        use base64ct::{Base64UrlUnpadded, Encoding};
        DeviceDto {
            id: d.id.to_string(),
            holder_id: d.holder_id.to_string(),
            kid: d.kid.clone(),
            jwk: serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": Base64UrlUnpadded::encode_string(&d.public_key), "kid": d.kid}),
            status: d.status.as_str().into(),
            limits: d.limits.map(|l| DeviceLimitsDto {
                asset_code: l.asset.code().into(),
                asset_scale: l.asset.scale(),
                per_payment: Some(l.per_payment.to_string()),
                per_day: Some(l.per_day.to_string()),
            }),
            created_ns: d.created_ns.to_string(),
        }
    }
}

/// A request to register a device.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct DeviceNew {
    /// Device id, decimal string; a random one if omitted.
    #[serde(default)]
    pub id: Option<String>,
    /// The device's public key: an RFC 8037 JWK `{"kty":"OKP","crv":"Ed25519","x":…,"kid":…}`.
    /// Without `kid`, the RFC 7638 thumbprint is the key id.
    #[schema(value_type = Object)]
    pub jwk: serde_json::Value,
    /// Optional spending limits.
    #[serde(default)]
    pub limits: Option<DeviceLimitsDto>,
}

/// A new key for a device.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct DeviceRotation {
    /// The new public key (RFC 8037 JWK); the old key stops working at once.
    #[schema(value_type = Object)]
    pub jwk: serde_json::Value,
}

/// New limits for a device.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct DeviceLimitsChange {
    /// The limits, or null to remove them.
    pub limits: Option<DeviceLimitsDto>,
}

fn core_limits(dto: &Option<DeviceLimitsDto>) -> Result<Option<obol_core::identity::DeviceLimits>, ApiError> {
    let Some(dto) = dto else { return Ok(None) };
    let asset = obol_core::money::Asset::new(&dto.asset_code, dto.asset_scale)
        .map_err(|e| Error::InvalidAsset(e.to_string()))?;
    let amount = |field: &str, text: &Option<String>| -> Result<u128, Error> {
        match text {
            None => Ok(0),
            Some(text) => obol_core::money::Amount::parse(text)
                .map(|a| a.0)
                .map_err(|e| Error::InvalidAmount { field: field.into(), reason: e.to_string() }),
        }
    };
    Ok(Some(obol_core::identity::DeviceLimits {
        asset,
        per_payment: amount("limits.per_payment", &dto.per_payment)?,
        per_day: amount("limits.per_day", &dto.per_day)?,
    }))
}

/// Register a device for a holder (operator, or the holder itself).
#[utoipa::path(post, path = "/v1/principals/{id}/devices", tag = "devices", request_body = DeviceNew,
    params(("id" = String, Path, description = "Holder id")),
    responses((status = 201, body = DeviceDto), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn register_device(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DeviceNew>,
) -> Result<Response, ApiError> {
    let holder_id = principal_id(&id)?;
    may_manage_devices(&caller, holder_id)?;
    // A device reads and pays: registering one grants those scopes, so the key that registers it
    // must hold them (a key never grants more than it holds).
    if caller.role != Role::Operator && !caller.scopes.allows(Scopes::READ | Scopes::PAY) {
        return Err(Error::Forbidden(
            "a device reads and pays: registering one needs a key with the read and pay scopes too".into(),
        )
        .into());
    }
    let jwk = crate::httpsig::parse_jwk(&body.jwk).map_err(Error::InvalidField)?;
    let device_id = match &body.id {
        Some(text) => crate::dto::path_id(text)?,
        None => (rand::random::<u128>() >> 2).max(2),
    };
    let command = IdentityCommand::RegisterDevice {
        id: device_id,
        holder_id,
        kid: jwk.kid,
        public_key: jwk.public_key,
        limits: core_limits(&body.limits)?,
    };
    let result = run_identity(&state, command).await?;
    accepted(result)?;
    let status = if result == IdentityResult::Ok { StatusCode::CREATED } else { StatusCode::OK };
    let ledger = read_ledger(&state);
    let device = ledger.identity().device(device_id).ok_or_else(|| Error::Internal("device vanished".into()))?;
    Ok((status, Json(DeviceDto::from(device))).into_response())
}

/// A holder's devices.
#[utoipa::path(get, path = "/v1/principals/{id}/devices", tag = "devices",
    params(("id" = String, Path, description = "Holder id")),
    responses((status = 200, body = Vec<DeviceDto>), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_devices(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Vec<DeviceDto>>, ApiError> {
    need_scope(&caller, Scopes::READ)?;
    let holder_id = principal_id(&id)?;
    let ledger = read_ledger(&state);
    if !can_see_principal(&caller, holder_id) || ledger.identity().principal(holder_id).is_none() {
        return Err(Error::PrincipalNotFound(holder_id).into());
    }
    Ok(Json(ledger.identity().devices_of(holder_id).into_iter().map(DeviceDto::from).collect()))
}

/// Suspend, reactivate or revoke a device (revocation is final).
#[utoipa::path(post, path = "/v1/devices/{id}/status", tag = "devices", request_body = StatusChange,
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = DeviceDto), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn set_device_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StatusChange>,
) -> Result<Json<DeviceDto>, ApiError> {
    let device_id = device_for_manage(&state, &caller, &id)?;
    let status = match body.status.as_str() {
        "active" => Status::Active,
        "suspended" => Status::Suspended,
        "revoked" => Status::Revoked,
        other => {
            return Err(
                Error::InvalidField(format!("status must be active, suspended or revoked, not {other:?}")).into()
            );
        }
    };
    let device = device_change(&state, device_id, IdentityCommand::SetDeviceStatus { id: device_id, status }).await?;
    Ok(Json((&device).into()))
}

/// Replace a device's key; the old key stops working at once.
#[utoipa::path(post, path = "/v1/devices/{id}/rotate", tag = "devices", request_body = DeviceRotation,
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = DeviceDto), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn rotate_device(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DeviceRotation>,
) -> Result<Json<DeviceDto>, ApiError> {
    let device_id = device_for_manage(&state, &caller, &id)?;
    let jwk = crate::httpsig::parse_jwk(&body.jwk).map_err(Error::InvalidField)?;
    let device = device_change(
        &state,
        device_id,
        IdentityCommand::RotateDeviceKey { id: device_id, kid: jwk.kid, public_key: jwk.public_key },
    )
    .await?;
    Ok(Json((&device).into()))
}

/// Set or remove a device's spending limits.
#[utoipa::path(post, path = "/v1/devices/{id}/limits", tag = "devices", request_body = DeviceLimitsChange,
    params(("id" = String, Path, description = "Device id")),
    responses((status = 200, body = DeviceDto), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn set_device_limits(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DeviceLimitsChange>,
) -> Result<Json<DeviceDto>, ApiError> {
    let device_id = device_for_manage(&state, &caller, &id)?;
    let limits = core_limits(&body.limits)?;
    let device = device_change(&state, device_id, IdentityCommand::SetDeviceLimits { id: device_id, limits }).await?;
    Ok(Json((&device).into()))
}

//! Identity routes: principals, API keys, the caller itself and its activity.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use obol_core::identity::{ApiKey, Principal, Scopes};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, Error, Problem};
use crate::{ApiJson, AppState, read_ledger};
use obol_app::auth::{Caller, Via};
use obol_app::identity;
use obol_app::privacy::{self, Profile};

/// A principal.
#[derive(Serialize, ToSchema, Debug)]
pub struct PrincipalDto {
    /// Id, decimal string.
    pub id: String,
    /// `operator`, `holder`, `merchant`, `analyst` or `auditor`.
    pub role: String,
    /// The label of a principal made before personal fields moved to the vault (absent for
    /// the others: their name is a personal field, read with `GET /v1/principals/{id}/profile`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
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
            name: (p.name != obol_app::privacy::VAULT_LABEL).then(|| p.name.clone()),
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

/// A request to create a principal. The name and the other personal fields are sealed in the
/// vault under the principal's own data key; the ledger and the audit log see only the id.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrincipalNew {
    /// Id, decimal string; a random one if omitted.
    #[serde(default)]
    pub id: Option<String>,
    /// `holder`, `merchant`, `analyst`, `auditor` or `operator`.
    pub role: String,
    /// Name, 1 to 64 bytes.
    pub name: String,
    /// Email address, at most 254 bytes.
    #[serde(default)]
    pub email: Option<String>,
    /// Phone number: 3 to 20 digits, optional leading `+`, spaces, dashes, dots, parentheses.
    #[serde(default)]
    pub phone: Option<String>,
    /// Postal address, lines separated by `\n`, at most 512 bytes.
    #[serde(default)]
    pub postal_address: Option<String>,
    /// Free-text notes, at most 4,096 bytes.
    #[serde(default)]
    pub notes: Option<String>,
}

impl std::fmt::Debug for PrincipalNew {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrincipalNew {{ id: {:?}, role: {:?}, personal fields: *** }}", self.id, self.role)
    }
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

/// The caller itself.
#[utoipa::path(get, path = "/v1/me", tag = "identity",
    responses((status = 200, body = MeDto)), security(("bearer" = [])))]
pub async fn me(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Result<Json<MeDto>, ApiError> {
    let ledger = read_ledger(&state);
    let principal = ledger.identity().principal(caller.principal_id).ok_or(Error::Unauthorized)?;
    let (credential, credential_id) = match &caller.via {
        Via::ApiKey(key_id) => ("api_key", key_id.clone()),
        Via::Device(device_id) => ("device", device_id.to_string()),
        Via::Passkey(credential_id) => ("passkey", credential_id.clone()),
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
    let profile = Profile {
        name: body.name,
        email: body.email,
        phone: body.phone,
        postal_address: body.postal_address,
        notes: body.notes,
    };
    let (principal, created) =
        identity::create_principal(&state, &caller, body.id.as_deref(), &body.role, profile).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(PrincipalDto::from(&principal))).into_response())
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
    Ok(Json((&identity::principal(&state, &caller, &id)?).into()))
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
    Ok(Json((&identity::set_principal_status(&state, &caller, &id, &body.status).await?).into()))
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
    Ok(Json(identity::keys(&state, &caller, &id)?.iter().map(KeyDto::from).collect()))
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
    let (key, stored) = identity::create_key(&state, &caller, &id, body.scopes.as_deref(), body.expires_in_s).await?;
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
    Ok(Json((&identity::revoke_key(&state, &caller, &key_id).await?).into()))
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
    let (key, stored) = identity::rotate_key(&state, &caller, &key_id, body.overlap_s).await?;
    Ok((StatusCode::CREATED, Json(NewKeyDto { key, stored: (&stored).into() })).into_response())
}

/// What to freeze or unfreeze: one device, one tab, or (neither) every payment.
#[derive(serde::Deserialize, ToSchema, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FreezeAsk {
    /// One device's payments (its tabs' vouchers and ticks included).
    #[serde(default)]
    pub device: Option<String>,
    /// One tab's payments.
    #[serde(default)]
    pub tab: Option<String>,
}

fn freeze_ask(body: &FreezeAsk) -> Result<obol_app::freeze::Ask<'_>, Error> {
    match (body.device.as_deref(), body.tab.as_deref()) {
        (None, None) => Ok(obol_app::freeze::Ask::All),
        (Some(device), None) => Ok(obol_app::freeze::Ask::Device(device)),
        (None, Some(tab)) => Ok(obol_app::freeze::Ask::Tab(tab)),
        (Some(_), Some(_)) => {
            Err(Error::InvalidField("name a device or a tab, not both (neither: every payment)".into()))
        }
    }
}

/// What a holder has frozen.
#[utoipa::path(get, path = "/v1/principals/{id}/freeze", tag = "identity",
    params(("id" = String, Path, description = "Principal id")),
    responses((status = 200, body = obol_app::freeze::FrozenDto), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_frozen(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<obol_app::freeze::FrozenDto>, ApiError> {
    Ok(Json(obol_app::freeze::frozen(&state, &caller, &id)?))
}

/// Freeze payments at once (the holder, or the operator): every payment, one device's, or one
/// tab's. No second factor is asked: stopping money must be easy.
#[utoipa::path(post, path = "/v1/principals/{id}/freeze", tag = "identity", request_body = FreezeAsk,
    params(("id" = String, Path, description = "Principal id")),
    responses((status = 200, body = obol_app::freeze::FrozenDto), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn freeze(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<FreezeAsk>,
) -> Result<Json<obol_app::freeze::FrozenDto>, ApiError> {
    let ask = freeze_ask(&body)?;
    Ok(Json(obol_app::freeze::set_frozen(&state, &caller, &id, ask, true, None).await?))
}

/// Lift a freeze: the holder approves with its second factor (403 `requires_action` with a
/// challenge; send again with `Obol-Approval`), or the operator lifts it.
#[utoipa::path(post, path = "/v1/principals/{id}/unfreeze", tag = "identity", request_body = FreezeAsk,
    params(("id" = String, Path, description = "Principal id")),
    responses((status = 200, body = obol_app::freeze::FrozenDto), (status = 403, description = "requires_action: approve the challenge", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn unfreeze(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<FreezeAsk>,
) -> Result<Json<obol_app::freeze::FrozenDto>, ApiError> {
    let ask = freeze_ask(&body)?;
    let approval = crate::approval_header(&headers);
    Ok(Json(obol_app::freeze::set_frozen(&state, &caller, &id, ask, false, approval).await?))
}

/// A holder's security checklist: a score from 0 to 100, every item with why it matters, and
/// the next step that raises the score most (the holder itself, or staff).
#[utoipa::path(get, path = "/v1/principals/{id}/security-checklist", tag = "identity",
    params(("id" = String, Path, description = "Principal id (a holder or merchant)")),
    responses((status = 200, body = obol_app::checklist::ChecklistDto), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn security_checklist(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<obol_app::checklist::ChecklistDto>, ApiError> {
    Ok(Json(obol_app::checklist::checklist(&state, &caller, &id)?))
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
    let events = identity::activity(&state, &caller, &id)?;
    Ok(Json(
        events
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

fn limits_ask(dto: &Option<DeviceLimitsDto>) -> Option<identity::LimitsAsk<'_>> {
    dto.as_ref().map(|dto| identity::LimitsAsk {
        asset_code: &dto.asset_code,
        asset_scale: dto.asset_scale,
        per_payment: dto.per_payment.as_deref(),
        per_day: dto.per_day.as_deref(),
    })
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
    let (device, created) =
        identity::register_device(&state, &caller, &id, body.id.as_deref(), &body.jwk, limits_ask(&body.limits))
            .await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(DeviceDto::from(&device))).into_response())
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
    Ok(Json(identity::devices(&state, &caller, &id)?.iter().map(DeviceDto::from).collect()))
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
    Ok(Json((&identity::set_device_status(&state, &caller, &id, &body.status).await?).into()))
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
    Ok(Json((&identity::rotate_device(&state, &caller, &id, &body.jwk).await?).into()))
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
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<DeviceLimitsChange>,
) -> Result<Json<DeviceDto>, ApiError> {
    let approval = crate::approval_header(&headers);
    Ok(Json((&identity::set_device_limits(&state, &caller, &id, limits_ask(&body.limits), approval).await?).into()))
}

/// Filters and paging of `GET /v1/principals`.
#[derive(Deserialize, utoipa::IntoParams, Debug)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PrincipalListQuery {
    /// Only this role: operator, holder, merchant, analyst or auditor.
    pub role: Option<String>,
    /// Only `active` or only `suspended` principals.
    pub status: Option<String>,
    /// Cursor from a previous page's `next`.
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

/// A page of principals, by id.
#[derive(Serialize, ToSchema, Debug)]
pub struct PrincipalPage {
    /// Up to `limit` principals.
    pub items: Vec<PrincipalDto>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// List principals by id (operator, analysts, auditors).
#[utoipa::path(get, path = "/v1/principals", tag = "identity",
    params(PrincipalListQuery),
    responses(
        (status = 200, description = "A page of principals", body = PrincipalPage),
        (status = 400, description = "A bad filter, cursor or limit", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Holders and merchants list no principals", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_principals(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<axum::extract::Query<PrincipalListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PrincipalPage>, ApiError> {
    let query = crate::list_query(query)?;
    let role = match query.role.as_deref() {
        None => None,
        Some(name) => Some(obol_core::identity::Role::parse(name).ok_or_else(|| {
            Error::InvalidQuery("role must be operator, holder, merchant, analyst or auditor".into())
        })?),
    };
    let status = match query.status.as_deref().map(obol_core::identity::Status::parse) {
        None => None,
        // Principals are never revoked, only suspended.
        Some(Some(status)) if status != obol_core::identity::Status::Revoked => Some(status),
        Some(_) => return Err(Error::InvalidQuery("status must be active or suspended".into()).into()),
    };
    let filter = obol_app::lists::PrincipalFilter { role, status };
    let limit = obol_app::lists::limit(query.limit)?;
    let page = obol_app::lists::principals(&state, &caller, filter, query.after.as_deref(), limit)?;
    Ok(Json(PrincipalPage { items: page.items.iter().map(PrincipalDto::from).collect(), next: page.next }))
}

/// Filters and cursor of the device list.
#[derive(Deserialize, utoipa::IntoParams, Debug)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeviceListQuery {
    /// Only this holder's devices (a holder sees only its own anyway).
    pub holder: Option<String>,
    /// Only `active`, `suspended` or `revoked` devices.
    pub status: Option<String>,
    /// Cursor from a previous page's `next`.
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

/// A page of devices, in the order they were registered.
#[derive(Serialize, ToSchema, Debug)]
pub struct DevicePage {
    /// Up to `limit` devices.
    pub items: Vec<DeviceDto>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// List devices: all of them for the operator, analysts and auditors; a holder's own for a holder.
#[utoipa::path(get, path = "/v1/devices", tag = "devices",
    params(DeviceListQuery),
    responses(
        (status = 200, description = "A page of devices", body = DevicePage),
        (status = 400, description = "A bad filter, cursor or limit", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another holder's devices, or a merchant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn list_all_devices(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<axum::extract::Query<DeviceListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DevicePage>, ApiError> {
    let query = crate::list_query(query)?;
    let status = match query.status.as_deref().map(obol_core::identity::Status::parse) {
        None => None,
        Some(Some(status)) => Some(status),
        Some(None) => return Err(Error::InvalidQuery("status must be active, suspended or revoked".into()).into()),
    };
    let filter =
        obol_app::lists::DeviceFilter { holder: crate::dto::query_id("holder", query.holder.as_deref())?, status };
    let limit = obol_app::lists::limit(query.limit)?;
    let page = obol_app::lists::devices(&state, &caller, filter, query.after.as_deref(), limit)?;
    Ok(Json(DevicePage { items: page.items.iter().map(DeviceDto::from).collect(), next: page.next }))
}

/// A person's personal fields, from the vault.
#[derive(Serialize, ToSchema)]
pub struct ProfileDto {
    /// Name.
    pub name: String,
    /// Email address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Postal address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_address: Option<String>,
    /// Free-text notes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

impl std::fmt::Debug for ProfileDto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProfileDto(***)")
    }
}

impl From<Profile> for ProfileDto {
    fn from(p: Profile) -> ProfileDto {
        ProfileDto { name: p.name, email: p.email, phone: p.phone, postal_address: p.postal_address, notes: p.notes }
    }
}

/// Changes to personal fields: a field given replaces it; `""` clears an optional one.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileChangeDto {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New email.
    #[serde(default)]
    pub email: Option<String>,
    /// New phone.
    #[serde(default)]
    pub phone: Option<String>,
    /// New postal address.
    #[serde(default)]
    pub postal_address: Option<String>,
    /// New notes.
    #[serde(default)]
    pub notes: Option<String>,
}

impl std::fmt::Debug for ProfileChangeDto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProfileChangeDto(***)")
    }
}

/// Why personal fields are read.
#[derive(Deserialize, utoipa::IntoParams, Debug)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PurposeQuery {
    /// Needed unless the caller is the person: `support`, `dispute`, `fraud_investigation`,
    /// `legal_obligation`, `data_subject_request`, or (with the person's consent) `marketing`,
    /// `analytics`, `threat_intel`. Logged where the person can read it.
    pub purpose: Option<String>,
}

/// One read of a person's personal fields by someone else.
#[derive(Serialize, ToSchema, Debug)]
pub struct AccessDto {
    /// When, ns since the Unix epoch, decimal string.
    pub time_ns: String,
    /// Who read (principal id).
    pub reader_id: String,
    /// The reader's role.
    pub reader_role: String,
    /// The credential used (`key:<id>` or `device:<id>`).
    pub via: String,
    /// The purpose stated.
    pub purpose: String,
    /// What was read: `profile` or `export`.
    pub what: String,
}

impl From<privacy::Access> for AccessDto {
    fn from(a: privacy::Access) -> AccessDto {
        AccessDto {
            time_ns: a.time_ns.to_string(),
            reader_id: a.reader_id.to_string(),
            reader_role: a.reader_role,
            via: a.via,
            purpose: a.purpose,
            what: a.what,
        }
    }
}

/// A consent.
#[derive(Serialize, ToSchema, Debug)]
pub struct ConsentDto {
    /// `marketing`, `analytics` or `threat_intel`.
    pub purpose: String,
    /// Whether it is given now.
    pub granted: bool,
    /// When it last changed, ns since the Unix epoch (`0`: never asked).
    pub changed_ns: String,
}

impl From<privacy::Consent> for ConsentDto {
    fn from(c: privacy::Consent) -> ConsentDto {
        ConsentDto { purpose: c.purpose, granted: c.granted, changed_ns: c.changed_ns.to_string() }
    }
}

/// Give or withdraw a consent.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct ConsentChange {
    /// `true` gives it, `false` withdraws it (at once).
    pub granted: bool,
}

/// An erasure and its state.
#[derive(Serialize, ToSchema, Debug)]
pub struct ErasureDto {
    /// The person.
    pub principal_id: String,
    /// `erased` (the data key is destroyed) or `retained` (kept, restricted, until
    /// `erase_after_ns`, as the law requires).
    pub state: String,
    /// When it was asked, ns.
    pub requested_ns: String,
    /// Who asked.
    pub requested_by: String,
    /// The last payment, from which retention runs, ns.
    pub last_activity_ns: String,
    /// When the data key is destroyed, ns.
    pub erase_after_ns: String,
    /// When it was destroyed, ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erased_ns: Option<String>,
}

impl From<&privacy::Erasure> for ErasureDto {
    fn from(e: &privacy::Erasure) -> ErasureDto {
        ErasureDto {
            principal_id: e.principal_id.to_string(),
            state: e.state().into(),
            requested_ns: e.requested_ns.to_string(),
            requested_by: e.requested_by.to_string(),
            last_activity_ns: e.last_activity_ns.to_string(),
            erase_after_ns: e.erase_after_ns.to_string(),
            erased_ns: e.erased_ns.map(|ns| ns.to_string()),
        }
    }
}

/// A person's personal fields (the person; or an operator with `?purpose=`, logged in the
/// person's access log and the audit log before anything is read).
#[utoipa::path(get, path = "/v1/principals/{id}/profile", tag = "privacy",
    params(("id" = String, Path, description = "Principal id"), PurposeQuery),
    responses((status = 200, body = ProfileDto),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 410, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get_profile(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    query: Result<axum::extract::Query<PurposeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ProfileDto>, ApiError> {
    let query = crate::list_query(query)?;
    Ok(Json(privacy::profile(&state, &caller, &id, query.purpose.as_deref()).await?.into()))
}

/// Change personal fields (the person, or an operator; a `manage` key). Answers nothing of the
/// profile: changing is no way to read it.
#[utoipa::path(patch, path = "/v1/principals/{id}/profile", tag = "privacy", request_body = ProfileChangeDto,
    params(("id" = String, Path, description = "Principal id")),
    responses((status = 204, description = "Changed"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 410, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn update_profile(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ProfileChangeDto>,
) -> Result<StatusCode, ApiError> {
    let change = privacy::ProfileChange {
        name: body.name,
        email: body.email,
        phone: body.phone,
        postal_address: body.postal_address,
        notes: body.notes,
    };
    privacy::update_profile(&state, &caller, &id, change).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A page of the access log.
#[derive(Deserialize, utoipa::IntoParams, Debug)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccessLogQuery {
    /// Entries per page, 1 to 1,000 (default 100).
    pub limit: Option<usize>,
    /// The previous page's `next`: entries older than it.
    pub before: Option<String>,
}

/// A page of the access log, newest first.
#[derive(Serialize, ToSchema, Debug)]
pub struct AccessLogPage {
    /// The entries.
    pub items: Vec<AccessDto>,
    /// Pass as `before` for the next (older) page; absent at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Who read the person's personal fields (the person's own reads included), when and why, newest
/// first, a page at a time (the person, operators and auditors).
#[utoipa::path(get, path = "/v1/principals/{id}/access-log", tag = "privacy",
    params(("id" = String, Path, description = "Principal id"), AccessLogQuery),
    responses((status = 200, body = AccessLogPage), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn access_log(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    query: Result<axum::extract::Query<AccessLogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AccessLogPage>, ApiError> {
    let query = crate::list_query(query)?;
    let (items, next) = privacy::access_log(&state, &caller, &id, query.before.as_deref(), query.limit.unwrap_or(100))?;
    Ok(Json(AccessLogPage { items: items.into_iter().map(AccessDto::from).collect(), next }))
}

/// The person's consents (the person, operators and auditors).
#[utoipa::path(get, path = "/v1/principals/{id}/consents", tag = "privacy",
    params(("id" = String, Path, description = "Principal id")),
    responses((status = 200, body = Vec<ConsentDto>), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list_consents(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Vec<ConsentDto>>, ApiError> {
    Ok(Json(privacy::consents(&state, &caller, &id)?.into_iter().map(ConsentDto::from).collect()))
}

/// Give or withdraw a consent (only the person, a `manage` key); it takes effect at once.
#[utoipa::path(put, path = "/v1/principals/{id}/consents/{purpose}", tag = "privacy", request_body = ConsentChange,
    params(("id" = String, Path, description = "Principal id"),
        ("purpose" = String, Path, description = "`marketing`, `analytics` or `threat_intel`")),
    responses((status = 200, body = ConsentDto),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn set_consent(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, purpose)): Path<(String, String)>,
    ApiJson(body): ApiJson<ConsentChange>,
) -> Result<Json<ConsentDto>, ApiError> {
    Ok(Json(privacy::set_consent(&state, &caller, &id, &purpose, body.granted).await?.into()))
}

/// Erase a person (the person, or an operator; a `manage` key): suspends the principal and
/// destroys its data key now (200, `erased`), or, while the law's retention runs from the last
/// payment, keeps the data restricted and erases it when the retention ends (202, `retained`).
#[utoipa::path(post, path = "/v1/principals/{id}/erasure", tag = "privacy",
    params(("id" = String, Path, description = "Principal id")),
    responses((status = 200, description = "Erased", body = ErasureDto),
        (status = 202, description = "Kept under retention, restricted, erased when it ends", body = ErasureDto),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn erase_principal(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let erasure = privacy::erase(&state, &caller, &id).await?;
    let status = if erasure.erased_ns.is_some() { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(ErasureDto::from(&erasure))).into_response())
}

/// When to plan the retention scheduler for.
#[derive(Deserialize, utoipa::IntoParams, Debug)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RetentionQuery {
    /// A time (RFC 3339 or ns since the Unix epoch); default now.
    pub at: Option<String>,
}

/// One erasure the retention scheduler will run.
#[derive(Serialize, ToSchema, Debug)]
pub struct RetentionItemDto {
    /// The erasure.
    pub erasure: ErasureDto,
    /// Whether it is due at the time asked.
    pub due: bool,
}

/// The retention scheduler's plan, a dry run: every erasure kept under retention and whether it
/// is due at `at` (operators and auditors). Nothing is erased by asking.
#[utoipa::path(get, path = "/v1/privacy/retention", tag = "privacy", params(RetentionQuery),
    responses((status = 200, body = Vec<RetentionItemDto>), (status = 403, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn retention_plan(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<axum::extract::Query<RetentionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<RetentionItemDto>>, ApiError> {
    let query = crate::list_query(query)?;
    let at_ns = match query.at.as_deref() {
        None => state.env.now_ns(),
        Some(text) => obol_core::time::parse_time(text)
            .ok_or_else(|| Error::InvalidQuery(format!("at {text:?}: an RFC 3339 time or ns since the epoch")))?,
    };
    let plan = privacy::retention_plan(&state, &caller, at_ns)?;
    Ok(Json(plan.iter().map(|(erasure, due)| RetentionItemDto { erasure: erasure.into(), due: *due }).collect()))
}

/// A tab in a data export.
#[derive(Serialize, ToSchema, Debug)]
pub struct ExportTabDto {
    /// Tab id.
    pub id: String,
    /// The account it pays.
    pub payee_account_id: String,
    /// The escrow, minor units.
    pub escrow: String,
    /// What it paid so far, minor units.
    pub paid: String,
    /// When it expires, ns.
    pub expires_ns: String,
    /// Whether it is settled.
    pub closed: bool,
}

/// The person's second factors, without secrets.
#[derive(Serialize, ToSchema, Debug)]
pub struct FactorsDto {
    /// Whether a TOTP authenticator is enrolled (its seed is never exported).
    pub totp: bool,
    /// Unused recovery codes (their hashes are never exported).
    pub recovery_codes_left: usize,
    /// Registered passkeys.
    pub passkeys: usize,
}

/// Everything obol holds about a person (GDPR art. 15 and 20), as JSON.
#[derive(Serialize, ToSchema, Debug)]
pub struct PersonalExportDto {
    /// `obol-personal-export/1`.
    pub format: String,
    /// When it was made, ns.
    pub generated_ns: String,
    /// The principal.
    pub principal: PrincipalDto,
    /// Personal fields; absent once erased.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileDto>,
    /// The erasure asked, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erasure: Option<ErasureDto>,
    /// Accounts owned.
    pub accounts: Vec<crate::dto::AccountDto>,
    /// Every transfer touching them, in ledger order.
    pub transfers: Vec<crate::dto::TransferDto>,
    /// Tabs paid from or to them.
    pub tabs: Vec<ExportTabDto>,
    /// Devices acting for the person.
    pub devices: Vec<DeviceDto>,
    /// API keys (no secrets).
    pub keys: Vec<KeyDto>,
    /// Second factors (no secrets).
    pub factors: FactorsDto,
    /// Risk reviews of the person's payments, with their reasons.
    pub risk_reviews: Vec<obol_app::views::ReviewDto>,
    /// Consents.
    pub consents: Vec<ConsentDto>,
    /// Reads of the personal fields by others.
    pub access_log: Vec<AccessDto>,
}

/// Everything obol holds about a person, as JSON (the person; or an operator, whose read is
/// logged with the purpose `data_subject_request`).
#[utoipa::path(get, path = "/v1/principals/{id}/export", tag = "privacy",
    params(("id" = String, Path, description = "Principal id")),
    responses((status = 200, body = PersonalExportDto),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn export_personal_data(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<PersonalExportDto>, ApiError> {
    let export = privacy::export(&state, &caller, &id).await?;
    let ledger = read_ledger(&state);
    let transfers = export.transfers.iter().map(|t| crate::dto::transfer_dto(t, ledger.pending_status(t.id))).collect();
    let tabs = export
        .tabs
        .iter()
        .map(|t| ExportTabDto {
            id: t.id.to_string(),
            payee_account_id: t.payee_id.to_string(),
            escrow: t.escrow.to_string(),
            paid: t.cumulative.to_string(),
            expires_ns: t.expires_ns.to_string(),
            closed: t.closed,
        })
        .collect();
    drop(ledger);
    let p = &export.principal;
    Ok(Json(PersonalExportDto {
        format: "obol-personal-export/1".into(),
        generated_ns: export.generated_ns.to_string(),
        principal: p.into(),
        profile: export.profile.map(ProfileDto::from),
        erasure: export.erasure.as_ref().map(ErasureDto::from),
        accounts: export.accounts.iter().map(crate::dto::AccountDto::from).collect(),
        transfers,
        tabs,
        devices: export.devices.iter().map(DeviceDto::from).collect(),
        keys: export.keys.iter().map(KeyDto::from).collect(),
        factors: FactorsDto {
            totp: p.totp.is_some(),
            recovery_codes_left: p.recovery_hashes.len(),
            passkeys: p.passkeys.len(),
        },
        risk_reviews: export.reviews,
        consents: export.consents.into_iter().map(ConsentDto::from).collect(),
        access_log: export.access_log.into_iter().map(AccessDto::from).collect(),
    }))
}

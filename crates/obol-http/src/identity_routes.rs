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
    let (principal, created) =
        identity::create_principal(&state, &caller, body.id.as_deref(), &body.role, &body.name).await?;
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
    ApiJson(body): ApiJson<DeviceLimitsChange>,
) -> Result<Json<DeviceDto>, ApiError> {
    Ok(Json((&identity::set_device_limits(&state, &caller, &id, limits_ask(&body.limits)).await?).into()))
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

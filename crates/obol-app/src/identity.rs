//! Identity changes: principals, API keys and devices, each one identity command in the record
//! log, and who may make them.

use obol_core::identity::{ApiKey, IdentityCommand, IdentityResult, Principal, Role, Scopes, Status};
use obol_core::ledger::OpResults;
use obol_core::record::Op;

use crate::auth::{Caller, Via, generate_key};
use crate::authz::{can_see_principal, need_role, need_scope};
use crate::error::Error;
use crate::{App, read_ledger};

/// Runs one identity command through the engine.
pub(crate) async fn run_identity(state: &App, command: IdentityCommand) -> Result<IdentityResult, Error> {
    run_identity_by(state, None, command).await
}

/// Runs one identity command asked for by `by`: an audit note naming who asked, with what
/// credential and from where, goes in the same record.
pub(crate) async fn run_identity_by(
    state: &App,
    by: Option<&Caller>,
    command: IdentityCommand,
) -> Result<IdentityResult, Error> {
    run_identity_with(state, by, command, Vec::new()).await
}

/// [`run_identity_by`], with `also` journaled in the same record after the command.
pub(crate) async fn run_identity_with(
    state: &App,
    by: Option<&Caller>,
    command: IdentityCommand,
    also: Vec<Op>,
) -> Result<IdentityResult, Error> {
    let kind = command_name(&command);
    let alert = crate::webhooks::identity_event(state, &command);
    let answer = match by {
        Some(caller) => {
            let (what, subject) = obol_core::audit::identity_event(&command);
            let note = crate::audit::note(state, caller, what, &subject, "asked");
            let ops = [vec![note, Op::Identity(command)], also].concat();
            state.engine.execute_together(ops).await?.into_iter().nth(1)
        }
        None if also.is_empty() => Some(state.engine.execute(Op::Identity(command)).await?),
        None => state.engine.execute_together([vec![Op::Identity(command)], also].concat()).await?.into_iter().next(),
    };
    let answer = answer.ok_or_else(|| Error::Internal("an identity command had no result".into()))?;
    match answer {
        OpResults::Identity(result) => {
            tracing::info!(command = kind, result = result.as_str(), "identity change");
            // The alert follows the change it reports, once the registry took it.
            if result == IdentityResult::Ok
                && let Some(alert) = alert
                && let Err(error) = state.engine.execute(alert).await
            {
                tracing::error!(%error, command = kind, "an alert could not be journaled");
            }
            Ok(result)
        }
        OpResults::Accounts(_) | OpResults::Transfers(_) | OpResults::Tab(_) | OpResults::Put => {
            Err(Error::Internal("engine answered an identity command with the wrong shape".into()))
        }
    }
}

/// The command's name for logs: never its fields, which may hold hashes or sealed secrets.
pub(crate) fn command_name(command: &IdentityCommand) -> &'static str {
    match command {
        IdentityCommand::CreatePrincipal { .. } => "create_principal",
        IdentityCommand::SetPrincipalStatus { .. } => "set_principal_status",
        IdentityCommand::CreateApiKey { .. } => "create_api_key",
        IdentityCommand::RevokeApiKey { .. } => "revoke_api_key",
        IdentityCommand::SetApiKeyExpiry { .. } => "set_api_key_expiry",
        IdentityCommand::RegisterDevice { .. } => "register_device",
        IdentityCommand::SetDeviceStatus { .. } => "set_device_status",
        IdentityCommand::RotateDeviceKey { .. } => "rotate_device_key",
        IdentityCommand::SetDeviceLimits { .. } => "set_device_limits",
        IdentityCommand::EnrollTotp { .. } => "enroll_totp",
        IdentityCommand::ConfirmTotp { .. } => "confirm_totp",
        IdentityCommand::UseFactor { .. } => "use_factor",
        IdentityCommand::FailFactor { .. } => "fail_factor",
        IdentityCommand::UnlockFactors { .. } => "unlock_factors",
        IdentityCommand::SetStepUpPolicy { .. } => "set_step_up_policy",
        IdentityCommand::MarkDevicePaid { .. } => "mark_device_paid",
        IdentityCommand::PutPasskey { .. } => "put_passkey",
        IdentityCommand::DisablePasskey { .. } => "disable_passkey",
        IdentityCommand::RemovePasskey { .. } => "remove_passkey",
        IdentityCommand::ChargeDevice { .. } => "charge_device",
        IdentityCommand::SetFrozen { .. } => "set_frozen",
    }
}

/// `Ok` when the registry took the change (or had it already).
pub(crate) fn accepted(result: IdentityResult) -> Result<(), Error> {
    match result {
        IdentityResult::Ok | IdentityResult::Exists => Ok(()),
        rejected => Err(Error::IdentityRejected(rejected)),
    }
}

/// Issues a new API key for `principal_id`: answers the key's text (shown once) and what is
/// stored of it.
pub(crate) async fn issue_key(
    state: &App,
    by: Option<&Caller>,
    principal_id: u128,
    scopes: Scopes,
    expires_ns: u64,
) -> Result<(String, ApiKey), Error> {
    let env = std::sync::Arc::clone(&state.env);
    let material = tokio::task::spawn_blocking(move || generate_key(&*env))
        .await
        .map_err(|error| Error::Internal(format!("key generation failed: {error}")))?;
    let command = IdentityCommand::CreateApiKey {
        key_id: material.key_id.clone(),
        principal_id,
        phc: material.phc.clone(),
        scopes,
        expires_ns,
    };
    accepted(run_identity_by(state, by, command).await?)?;
    let ledger = read_ledger(state);
    let stored = ledger.identity().key(&material.key_id).ok_or(Error::KeyNotFound(material.key_id.clone()))?;
    Ok((material.text, stored.clone()))
}

/// The key `key_id`, if the caller may manage it (its own, or any for the operator).
pub(crate) fn key_for_manage(state: &App, caller: &Caller, key_id: &str) -> Result<ApiKey, Error> {
    need_scope(caller, Scopes::MANAGE)?;
    let ledger = read_ledger(state);
    let key = ledger.identity().key(key_id).cloned().ok_or_else(|| Error::KeyNotFound(key_id.into()))?;
    if caller.role != Role::Operator && key.principal_id != caller.principal_id {
        return Err(Error::KeyNotFound(key_id.into()));
    }
    Ok(key)
}

/// Who may manage a holder's devices: the operator, or the holder itself with `manage`
/// (a device never manages devices).
pub(crate) fn may_manage_devices(caller: &Caller, holder_id: u128) -> Result<(), Error> {
    need_scope(caller, Scopes::MANAGE)?;
    if caller.role == Role::Operator || (caller.principal_id == holder_id && caller.via.is_person()) {
        return Ok(());
    }
    Err(Error::PrincipalNotFound(holder_id))
}

/// The device `id` (a path id), if the caller may manage it.
pub(crate) fn device_for_manage(state: &App, caller: &Caller, id: &str) -> Result<u128, Error> {
    let device_id = crate::parse_id("id", id)?;
    let holder_id =
        read_ledger(state).identity().device(device_id).map(|d| d.holder_id).ok_or(Error::DeviceNotFound(device_id))?;
    may_manage_devices(caller, holder_id).map_err(|_| Error::DeviceNotFound(device_id))?;
    Ok(device_id)
}

/// Runs a change to device `device_id` and answers the device as it is now.
pub(crate) async fn device_change(
    state: &App,
    by: &Caller,
    device_id: u128,
    command: IdentityCommand,
) -> Result<obol_core::identity::Device, Error> {
    accepted(run_identity_by(state, Some(by), command).await?)?;
    let ledger = read_ledger(state);
    ledger.identity().device(device_id).cloned().ok_or(Error::DeviceNotFound(device_id))
}

/// Who the caller is: its principal, how it authenticated (`api_key` or `device`, with the
/// credential's id) and its scopes.
pub fn me(state: &App, caller: &Caller) -> Result<(Principal, &'static str, String), Error> {
    let ledger = read_ledger(state);
    let principal = ledger.identity().principal(caller.principal_id).cloned().ok_or(Error::Unauthorized)?;
    let (credential, credential_id) = match &caller.via {
        Via::ApiKey(key_id) => ("api_key", key_id.clone()),
        Via::Device(device_id) => ("device", device_id.to_string()),
        Via::Passkey(credential_id) => ("passkey", credential_id.clone()),
    };
    Ok((principal, credential, credential_id))
}

/// Creates a principal (the operator): answers it and whether it is new (the same id and
/// fields again answer the one that exists).
pub async fn create_principal(
    state: &App,
    caller: &Caller,
    id: Option<&str>,
    role: &str,
    profile: crate::privacy::Profile,
) -> Result<(Principal, bool), Error> {
    need_scope(caller, Scopes::MANAGE)?;
    need_role(caller, &[Role::Operator])?;
    let role = Role::parse(role).ok_or_else(|| {
        Error::InvalidField(format!("unknown role {role:?}; use holder, merchant, analyst, auditor or operator"))
    })?;
    let id = match id {
        Some(text) => crate::parse_id("id", text)?,
        None => state.env.random_id(),
    };
    if id == 0 || id == u128::MAX {
        return Err(Error::IdentityRejected(IdentityResult::IdReserved));
    }
    profile.check()?;
    // One creation at a time: the check for an existing principal, its data key and the record
    // that creates it and stores its sealed profile cannot interleave with another's.
    let _vault_writes = state.vault_writes.lock().await;
    let existing = read_ledger(state).identity().principal(id).map(|p| p.role);
    if let Some(existing_role) = existing {
        // A retry with the same fields answers the principal that exists; other fields are a
        // different principal under a taken id.
        let same = existing_role == role && crate::privacy::same_profile(state, caller, id, &profile).await?;
        accepted(if same { IdentityResult::Exists } else { IdentityResult::ExistsWithDifferentFields })?;
        let principal = read_ledger(state).identity().principal(id).cloned().ok_or(Error::PrincipalNotFound(id))?;
        return Ok((principal, false));
    }
    // The registry holds a label, never the name: the name and every other personal field are
    // sealed in the vault under the principal's own data key, in the same record.
    let command = IdentityCommand::CreatePrincipal { id, role, name: crate::privacy::VAULT_LABEL.to_string() };
    let sealed = crate::privacy::seal_profile(state, id, &profile).await?;
    let result = run_identity_with(state, Some(caller), command, vec![sealed]).await?;
    accepted(result)?;
    let principal = read_ledger(state).identity().principal(id).cloned().ok_or(Error::PrincipalNotFound(id))?;
    Ok((principal, result == IdentityResult::Ok))
}

/// A principal the caller may see.
pub fn principal(state: &App, caller: &Caller, id: &str) -> Result<Principal, Error> {
    need_scope(caller, Scopes::READ)?;
    let id = crate::parse_id("id", id)?;
    if !can_see_principal(caller, id) {
        return Err(Error::PrincipalNotFound(id));
    }
    read_ledger(state).identity().principal(id).cloned().ok_or(Error::PrincipalNotFound(id))
}

/// Suspends or reactivates a principal (`active` or `suspended`; the operator, never itself).
pub async fn set_principal_status(state: &App, caller: &Caller, id: &str, status: &str) -> Result<Principal, Error> {
    need_scope(caller, Scopes::MANAGE)?;
    need_role(caller, &[Role::Operator])?;
    let id = crate::parse_id("id", id)?;
    let status = match status {
        "active" => Status::Active,
        "suspended" => Status::Suspended,
        other => return Err(Error::InvalidField(format!("status must be active or suspended, not {other:?}"))),
    };
    if id == caller.principal_id && status == Status::Suspended {
        return Err(Error::Forbidden("an operator cannot suspend itself".into()));
    }
    if status == Status::Active && crate::privacy::erasure(state, id).is_some() {
        return Err(Error::Forbidden(format!(
            "principal {id} asked for erasure: it stays suspended (its data is kept only as the law requires)"
        )));
    }
    accepted(run_identity_by(state, Some(caller), IdentityCommand::SetPrincipalStatus { id, status }).await?)?;
    if status == Status::Suspended {
        // Its sessions end now, not at their next request: reactivating it later must not revive
        // a stolen cookie.
        state.sessions.close_all(id);
    }
    read_ledger(state).identity().principal(id).cloned().ok_or(Error::PrincipalNotFound(id))
}

/// A principal's API keys (itself, or the operator and auditors; an analyst sees only its own).
pub fn keys(state: &App, caller: &Caller, id: &str) -> Result<Vec<ApiKey>, Error> {
    need_scope(caller, Scopes::READ)?;
    let id = crate::parse_id("id", id)?;
    if !can_see_principal(caller, id) || caller.role == Role::Analyst && caller.principal_id != id {
        return Err(Error::PrincipalNotFound(id));
    }
    let ledger = read_ledger(state);
    ledger.identity().principal(id).ok_or(Error::PrincipalNotFound(id))?;
    Ok(ledger.identity().keys_of(id).into_iter().cloned().collect())
}

/// Scope names (`read`, `pay`, `manage`) as scopes.
pub(crate) fn parse_scopes(names: &[String]) -> Result<Scopes, Error> {
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

/// Issues a new API key for principal `id` (itself, or the operator for anyone), with at most
/// the caller's own scopes: answers the key's text (shown once) and what is stored of it.
pub async fn create_key(
    state: &App,
    caller: &Caller,
    id: &str,
    scopes: Option<&[String]>,
    expires_in_s: Option<u64>,
) -> Result<(String, ApiKey), Error> {
    need_scope(caller, Scopes::MANAGE)?;
    let id = crate::parse_id("id", id)?;
    if caller.role != Role::Operator && caller.principal_id != id {
        return Err(Error::PrincipalNotFound(id));
    }
    if read_ledger(state).identity().principal(id).is_none() {
        return Err(Error::PrincipalNotFound(id));
    }
    let scopes = match scopes {
        Some(names) => parse_scopes(names)?,
        None => caller.scopes,
    };
    if !caller.scopes.allows(scopes.0) {
        return Err(Error::Forbidden("a key cannot grant scopes its creator lacks".into()));
    }
    let expires_ns = match expires_in_s {
        None | Some(0) => 0,
        Some(seconds) => state.env.now_ns().saturating_add(seconds.saturating_mul(1_000_000_000)),
    };
    issue_key(state, Some(caller), id, scopes, expires_ns).await
}

/// Revokes an API key the caller may manage; answers it as it is now.
pub async fn revoke_key(state: &App, caller: &Caller, key_id: &str) -> Result<ApiKey, Error> {
    key_for_manage(state, caller, key_id)?;
    let command = IdentityCommand::RevokeApiKey { key_id: key_id.to_string() };
    accepted(run_identity_by(state, Some(caller), command).await?)?;
    state.sessions.close_key(key_id);
    read_ledger(state).identity().key(key_id).cloned().ok_or_else(|| Error::KeyNotFound(key_id.to_string()))
}

/// Replaces an API key with a new one of the same scopes and expiry; the old one stays usable
/// for `overlap_s` (default an hour; 0 revokes it now). Answers the new key's text and record.
pub async fn rotate_key(
    state: &App,
    caller: &Caller,
    key_id: &str,
    overlap_s: Option<u64>,
) -> Result<(String, ApiKey), Error> {
    let old = key_for_manage(state, caller, key_id)?;
    if old.status == Status::Revoked {
        return Err(Error::IdentityRejected(IdentityResult::AlreadyRevoked));
    }
    if !caller.scopes.allows(old.scopes.0) {
        return Err(Error::Forbidden(
            "a key cannot grant scopes its creator lacks: rotate it with a key that holds them".into(),
        ));
    }
    let new_key = issue_key(state, Some(caller), old.principal_id, old.scopes, old.expires_ns).await?;
    let overlap_s = overlap_s.unwrap_or(3600);
    let key_id = key_id.to_string();
    let command = if overlap_s == 0 {
        IdentityCommand::RevokeApiKey { key_id }
    } else {
        let until = state.env.now_ns().saturating_add(overlap_s.saturating_mul(1_000_000_000));
        let expires_ns = if old.expires_ns == 0 { until } else { old.expires_ns.min(until) };
        IdentityCommand::SetApiKeyExpiry { key_id, expires_ns }
    };
    accepted(run_identity_by(state, Some(caller), command).await?)?;
    Ok(new_key)
}

/// A principal's security events, oldest first (itself, the operator, auditors).
pub fn activity(state: &App, caller: &Caller, id: &str) -> Result<Vec<obol_core::identity::SecurityEvent>, Error> {
    need_scope(caller, Scopes::READ)?;
    let id = crate::parse_id("id", id)?;
    let allowed = caller.principal_id == id || matches!(caller.role, Role::Operator | Role::Auditor);
    let ledger = read_ledger(state);
    if !allowed || ledger.identity().principal(id).is_none() {
        return Err(Error::PrincipalNotFound(id));
    }
    Ok(ledger.identity().events_of(id).to_vec())
}

/// Device limits as sent: the asset they count, and the amounts (absent or `"0"`: no limit).
#[derive(Clone, Copy, Debug)]
pub struct LimitsAsk<'a> {
    /// The asset code; the device may pay only in it.
    pub asset_code: &'a str,
    /// Its scale.
    pub asset_scale: u8,
    /// Largest single payment, minor units.
    pub per_payment: Option<&'a str>,
    /// Most per UTC day, minor units.
    pub per_day: Option<&'a str>,
}

fn device_limits(state: &App, ask: Option<LimitsAsk<'_>>) -> Result<Option<obol_core::identity::DeviceLimits>, Error> {
    let Some(ask) = ask else { return Ok(None) };
    let asset = crate::parse_asset(ask.asset_code, ask.asset_scale)?;
    // Limits in an asset no account can hold would let the device pay nothing, silently.
    crate::assets::check_registered(state, asset)?;
    let amount = |field: &str, text: Option<&str>| text.map_or(Ok(0), |text| crate::parse_amount(field, text));
    Ok(Some(obol_core::identity::DeviceLimits {
        asset,
        per_payment: amount("limits.per_payment", ask.per_payment)?,
        per_day: amount("limits.per_day", ask.per_day)?,
    }))
}

/// Registers a device (an Ed25519 public key as an RFC 8037 JWK) for holder `holder_id`, by
/// the holder's own `manage` key (which must also hold `read` and `pay`, the scopes a device
/// gets) or the operator: answers the device and whether it is new.
pub async fn register_device(
    state: &App,
    caller: &Caller,
    holder_id: &str,
    device_id: Option<&str>,
    jwk: &serde_json::Value,
    limits: Option<LimitsAsk<'_>>,
) -> Result<(obol_core::identity::Device, bool), Error> {
    let holder_id = crate::parse_id("id", holder_id)?;
    may_manage_devices(caller, holder_id)?;
    // A device reads and pays: registering one grants those scopes, so the key that registers it
    // must hold them (a key never grants more than it holds).
    if caller.role != Role::Operator && !caller.scopes.allows(Scopes::READ | Scopes::PAY) {
        return Err(Error::Forbidden(
            "a device reads and pays: registering one needs a key with the read and pay scopes too".into(),
        ));
    }
    let jwk = obol_wire::httpsig::parse_jwk(jwk).map_err(Error::InvalidField)?;
    let device_id = match device_id {
        Some(text) => crate::parse_id("id", text)?,
        None => state.env.random_id(),
    };
    let command = IdentityCommand::RegisterDevice {
        id: device_id,
        holder_id,
        kid: jwk.kid,
        public_key: jwk.public_key,
        limits: device_limits(state, limits)?,
    };
    let result = run_identity_by(state, Some(caller), command).await?;
    accepted(result)?;
    let device = read_ledger(state)
        .identity()
        .device(device_id)
        .cloned()
        .ok_or_else(|| Error::Internal("device vanished".into()))?;
    Ok((device, result == IdentityResult::Ok))
}

/// A holder's devices (those who may see the holder).
pub fn devices(state: &App, caller: &Caller, holder_id: &str) -> Result<Vec<obol_core::identity::Device>, Error> {
    need_scope(caller, Scopes::READ)?;
    let holder_id = crate::parse_id("id", holder_id)?;
    let ledger = read_ledger(state);
    if !can_see_principal(caller, holder_id) || ledger.identity().principal(holder_id).is_none() {
        return Err(Error::PrincipalNotFound(holder_id));
    }
    Ok(ledger.identity().devices_of(holder_id).into_iter().cloned().collect())
}

/// Activates, suspends or revokes a device (`active`, `suspended`, `revoked`).
pub async fn set_device_status(
    state: &App,
    caller: &Caller,
    id: &str,
    status: &str,
) -> Result<obol_core::identity::Device, Error> {
    let device_id = device_for_manage(state, caller, id)?;
    let status = match status {
        "active" => Status::Active,
        "suspended" => Status::Suspended,
        "revoked" => Status::Revoked,
        other => {
            return Err(Error::InvalidField(format!("status must be active, suspended or revoked, not {other:?}")));
        }
    };
    device_change(state, caller, device_id, IdentityCommand::SetDeviceStatus { id: device_id, status }).await
}

/// Gives a device a new key (an RFC 8037 JWK); what it paid under the old key stays owed.
pub async fn rotate_device(
    state: &App,
    caller: &Caller,
    id: &str,
    jwk: &serde_json::Value,
) -> Result<obol_core::identity::Device, Error> {
    let device_id = device_for_manage(state, caller, id)?;
    let jwk = obol_wire::httpsig::parse_jwk(jwk).map_err(Error::InvalidField)?;
    let command = IdentityCommand::RotateDeviceKey { id: device_id, kid: jwk.kid, public_key: jwk.public_key };
    device_change(state, caller, device_id, command).await
}

/// Sets or removes (`None`) a device's spending limits. Tightening them (a limit where there was
/// none, a lower one, the same) needs nothing more; anything else (a higher limit, another
/// asset, removing them), asked by the holder, needs its second factor's approval of exactly
/// that change once it has one (`requires_action` until then), so a stolen key alone cannot
/// raise what a device may spend.
pub async fn set_device_limits(
    state: &App,
    caller: &Caller,
    id: &str,
    limits: Option<LimitsAsk<'_>>,
    approval: Option<&str>,
) -> Result<obol_core::identity::Device, Error> {
    let device_id = device_for_manage(state, caller, id)?;
    let limits = device_limits(state, limits)?;
    let _serialized = state.limit_writes.lock().await;
    let checked = {
        let ledger = read_ledger(state);
        let device = ledger.identity().device(device_id).ok_or(Error::DeviceNotFound(device_id))?;
        if caller.role == Role::Operator || device_limits_tighten(device.limits.as_ref(), limits.as_ref()) {
            Ok(None)
        } else {
            let details = format!(
                "device={device_id};{}",
                limits.map_or_else(
                    || "none".to_string(),
                    |l| format!("{} per_payment={} per_day={}", l.asset, l.per_payment, l.per_day)
                )
            );
            state.step_up.check_change(
                &*state.env,
                &ledger,
                device.holder_id,
                "device_limits",
                details.as_bytes(),
                approval,
            )
        }
    };
    let spends = crate::approvals::journaled(state, checked).await?;
    let command = IdentityCommand::SetDeviceLimits { id: device_id, limits };
    // The approval is spent in the record of the change it approved.
    let also = spends.as_deref().map(crate::approvals::spent).into_iter().collect();
    accepted(run_identity_with(state, Some(caller), command, also).await?)?;
    let ledger = read_ledger(state);
    ledger.identity().device(device_id).cloned().ok_or(Error::DeviceNotFound(device_id))
}

/// Whether limits `new` spend no more than `old` allow (a limit of 0 is none).
pub(crate) fn device_limits_tighten(
    old: Option<&obol_core::identity::DeviceLimits>,
    new: Option<&obol_core::identity::DeviceLimits>,
) -> bool {
    match (old, new) {
        (_, None) => old.is_none(),
        (None, Some(_)) => true,
        (Some(old), Some(new)) => {
            new.asset == old.asset
                && limit_within(new.per_payment, old.per_payment)
                && limit_within(new.per_day, old.per_day)
        }
    }
}

/// Whether limit `new` is at most `old`, where 0 is no limit.
pub(crate) fn limit_within(new: u128, old: u128) -> bool {
    old == 0 || (new != 0 && new <= old)
}

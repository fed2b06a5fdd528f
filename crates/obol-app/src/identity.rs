//! Identity changes: principals, API keys and devices, each one identity command in the record
//! log, and who may make them.

use obol_core::codec::Op;
use obol_core::identity::{ApiKey, IdentityCommand, IdentityResult, Role, Scopes};
use obol_core::ledger::OpResults;

use crate::auth::{Caller, Via, generate_key};
use crate::authz::need_scope;
use crate::error::Error;
use crate::{App, read_ledger};

/// Runs one identity command through the engine.
pub async fn run_identity(state: &App, command: IdentityCommand) -> Result<IdentityResult, Error> {
    let kind = command_name(&command);
    match state.engine.execute(Op::Identity(command)).await? {
        OpResults::Identity(result) => {
            tracing::info!(command = kind, result = result.as_str(), "identity change");
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
        IdentityCommand::ChargeDevice { .. } => "charge_device",
    }
}

/// `Ok` when the registry took the change (or had it already).
pub fn accepted(result: IdentityResult) -> Result<(), Error> {
    match result {
        IdentityResult::Ok | IdentityResult::Exists => Ok(()),
        rejected => Err(Error::IdentityRejected(rejected)),
    }
}

/// Issues a new API key for `principal_id`: answers the key's text (shown once) and what is
/// stored of it.
pub async fn issue_key(
    state: &App,
    principal_id: u128,
    scopes: Scopes,
    expires_ns: u64,
) -> Result<(String, ApiKey), Error> {
    let material = tokio::task::spawn_blocking(generate_key)
        .await
        .map_err(|error| Error::Internal(format!("key generation failed: {error}")))?;
    let command = IdentityCommand::CreateApiKey {
        key_id: material.key_id.clone(),
        principal_id,
        phc: material.phc.clone(),
        scopes,
        expires_ns,
    };
    accepted(run_identity(state, command).await?)?;
    let ledger = read_ledger(state);
    let stored = ledger.identity().key(&material.key_id).ok_or(Error::KeyNotFound(material.key_id.clone()))?;
    Ok((material.text, stored.clone()))
}

/// The key `key_id`, if the caller may manage it (its own, or any for the operator).
pub fn key_for_manage(state: &App, caller: &Caller, key_id: &str) -> Result<ApiKey, Error> {
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
pub fn may_manage_devices(caller: &Caller, holder_id: u128) -> Result<(), Error> {
    need_scope(caller, Scopes::MANAGE)?;
    if caller.role == Role::Operator || (caller.principal_id == holder_id && matches!(caller.via, Via::ApiKey(_))) {
        return Ok(());
    }
    Err(Error::PrincipalNotFound(holder_id))
}

/// The device `id` (a path id), if the caller may manage it.
pub fn device_for_manage(state: &App, caller: &Caller, id: &str) -> Result<u128, Error> {
    let device_id = crate::parse_id("id", id)?;
    let holder_id =
        read_ledger(state).identity().device(device_id).map(|d| d.holder_id).ok_or(Error::DeviceNotFound(device_id))?;
    may_manage_devices(caller, holder_id).map_err(|_| Error::DeviceNotFound(device_id))?;
    Ok(device_id)
}

/// Runs a change to device `device_id` and answers the device as it is now.
pub async fn device_change(
    state: &App,
    device_id: u128,
    command: IdentityCommand,
) -> Result<obol_core::identity::Device, Error> {
    accepted(run_identity(state, command).await?)?;
    let ledger = read_ledger(state);
    ledger.identity().device(device_id).cloned().ok_or(Error::DeviceNotFound(device_id))
}

//! Freeze: a holder stops its payments at once, all of them, one device's or one tab's, in one
//! call; lifting a freeze needs the holder's second factor (a step-up bound to exactly what is
//! unfrozen), or the operator.
//!
//! The freeze is the core's (`IdentityCommand::SetFrozen`): the ledger refuses a frozen
//! holder's new payments whatever route they take (transfers, x402, tab escrows and top-ups,
//! vouchers, PayWord commitments and ticks), while what was already owed still settles. Freezing
//! asks for no second factor: stopping money must be easy for a holder whose phone was stolen;
//! unfreezing must not be easy for the thief.

use obol_core::identity::{FreezeTarget, IdentityCommand, IdentityResult, Role, Scopes};
use obol_core::ledger::OpResults;
use obol_core::record::Op;
use serde::Serialize;
use utoipa::ToSchema;

use crate::approvals::{journaled, spent};
use crate::auth::Caller;
use crate::error::Error;
use crate::{App, read_ledger};

/// What a holder has frozen.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct FrozenDto {
    /// The holder.
    pub principal_id: String,
    /// Every payment is frozen.
    pub all: bool,
    /// Devices whose payments are frozen.
    pub devices: Vec<String>,
    /// Tabs whose payments are frozen.
    pub tabs: Vec<String>,
}

/// What to freeze or unfreeze, as asked.
#[derive(Clone, Copy, Debug)]
pub enum Ask<'a> {
    /// Every payment.
    All,
    /// One device's payments.
    Device(&'a str),
    /// One tab's payments.
    Tab(&'a str),
}

fn may_act(caller: &Caller, principal_id: u128) -> Result<(), Error> {
    let scoped = caller.scopes.0 & (Scopes::PAY | Scopes::MANAGE) != 0;
    if !scoped {
        return Err(Error::Forbidden("freezing needs a key with the pay or manage scope".into()));
    }
    let own = matches!(caller.role, Role::Holder | Role::Merchant) && caller.principal_id == principal_id;
    if caller.role == Role::Operator || own {
        Ok(())
    } else if crate::authz::sees_everything(caller) {
        Err(Error::Forbidden("only the holder or the operator freezes payments".into()))
    } else {
        Err(Error::PrincipalNotFound(principal_id))
    }
}

/// Refuses a new second factor while any of the principal's payments are frozen: a thief
/// holding the key it froze against must not enrol a factor of its own and then unfreeze.
pub(crate) fn no_factor_while_frozen(state: &App, principal_id: u128) -> Result<(), Error> {
    if read_ledger(state).identity().frozen(principal_id).is_some() {
        return Err(Error::Forbidden(
            "payments are frozen: a new second factor cannot be added until the operator unfreezes them".into(),
        ));
    }
    Ok(())
}

/// The freeze refusal of a payment signed by `device_id`, decided before the risk policy or
/// step-up (a frozen payment is neither held nor challenged), by the core's own check.
pub(crate) fn refuse_frozen(
    ledger: &obol_core::ledger::Ledger,
    device_id: u128,
    events: &[obol_core::ledger::NewTransfer],
) -> Result<(), Error> {
    if ledger.payment_frozen(device_id, events) {
        return Err(Error::TransferRejected(obol_core::ledger::CreateTransferResult::PayerFrozen));
    }
    Ok(())
}

/// What `principal_id` has frozen (the holder itself, or staff).
pub fn frozen(state: &App, caller: &Caller, principal: &str) -> Result<FrozenDto, Error> {
    crate::authz::need_scope(caller, Scopes::READ)?;
    let principal_id = crate::parse_id("id", principal)?;
    if !crate::authz::can_see_principal(caller, principal_id) {
        return Err(Error::PrincipalNotFound(principal_id));
    }
    let ledger = read_ledger(state);
    ledger.identity().principal(principal_id).ok_or(Error::PrincipalNotFound(principal_id))?;
    Ok(view(&ledger, principal_id))
}

fn view(ledger: &obol_core::ledger::Ledger, principal_id: u128) -> FrozenDto {
    let frozen = ledger.identity().frozen(principal_id);
    FrozenDto {
        principal_id: principal_id.to_string(),
        all: frozen.is_some_and(|f| f.all),
        devices: frozen.map(|f| f.devices.iter().map(u128::to_string).collect()).unwrap_or_default(),
        tabs: frozen.map(|f| f.tabs.iter().map(u128::to_string).collect()).unwrap_or_default(),
    }
}

/// The target, checked to be the holder's: its own device, or a tab it pays.
fn target(ledger: &obol_core::ledger::Ledger, principal_id: u128, ask: Ask<'_>) -> Result<FreezeTarget, Error> {
    match ask {
        Ask::All => Ok(FreezeTarget::All),
        Ask::Device(id) => {
            let id = crate::parse_id("device", id)?;
            let own = ledger.identity().device(id).is_some_and(|device| device.holder_id == principal_id);
            if own { Ok(FreezeTarget::Device(id)) } else { Err(Error::DeviceNotFound(id)) }
        }
        Ask::Tab(id) => {
            let id = crate::parse_id("tab", id)?;
            let payer_owner = ledger
                .tab(id)
                .and_then(|entry| ledger.tab_payer(&entry.tab))
                .and_then(|account| ledger.account(account))
                .map(|account| account.owner_id);
            if payer_owner == Some(principal_id) { Ok(FreezeTarget::Tab(id)) } else { Err(Error::TabNotFound(id)) }
        }
    }
}

fn target_text(target: FreezeTarget) -> String {
    match target {
        FreezeTarget::All => "all".into(),
        FreezeTarget::Device(id) => format!("device:{id}"),
        FreezeTarget::Tab(id) => format!("tab:{id}"),
    }
}

/// Freezes (`frozen`) or unfreezes what `ask` names for holder `principal`. Unfreezing by the
/// holder needs its second factor's approval of exactly this (`requires_action` until then);
/// a holder without a second factor asks the operator.
pub async fn set_frozen(
    state: &App,
    caller: &Caller,
    principal: &str,
    ask: Ask<'_>,
    frozen: bool,
    approval: Option<&str>,
) -> Result<FrozenDto, Error> {
    let principal_id = crate::parse_id("id", principal)?;
    may_act(caller, principal_id)?;
    let (target, checked) = {
        let ledger = read_ledger(state);
        let principal = ledger.identity().principal(principal_id).ok_or(Error::PrincipalNotFound(principal_id))?;
        if !matches!(principal.role, Role::Holder | Role::Merchant) {
            return Err(Error::InvalidField("only a holder's or merchant's payments can be frozen".into()));
        }
        let has_factor = principal.has_factor();
        let target = target(&ledger, principal_id, ask)?;
        let checked = if frozen || caller.role == Role::Operator {
            Ok(None)
        } else if !has_factor {
            Err(Error::Forbidden(
                "unfreezing needs your second factor, and none is set up: ask the operator to unfreeze".into(),
            ))
        } else {
            state.step_up.check_change(
                &*state.env,
                &ledger,
                principal_id,
                "unfreeze",
                target_text(target).as_bytes(),
                approval,
            )
        };
        (target, checked)
    };
    let spends = journaled(state, checked).await?;
    let what = if frozen { "payments.freeze" } else { "payments.unfreeze" };
    let subject = format!("principal:{principal_id}");
    let mut ops = vec![
        crate::audit::note(state, caller, what, &subject, &target_text(target)),
        Op::Identity(IdentityCommand::SetFrozen { principal_id, target, frozen }),
    ];
    if let Some(id) = spends.as_deref() {
        ops.push(spent(id));
    }
    let kind = if frozen { "payments.frozen" } else { "payments.unfrozen" };
    ops.push(crate::webhooks::event(state, kind, &[principal_id], serde_json::json!({"target": target_text(target)})));
    let results = state.engine.execute_together(ops).await?;
    match results.get(1) {
        Some(OpResults::Identity(IdentityResult::Ok | IdentityResult::Exists)) => {}
        Some(OpResults::Identity(other)) => return Err(Error::IdentityRejected(*other)),
        _ => return Err(Error::Internal("engine answered a freeze with the wrong shape".into())),
    }
    Ok(view(&read_ledger(state), principal_id))
}

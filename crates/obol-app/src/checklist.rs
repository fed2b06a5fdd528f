//! A holder's security checklist: what protects its money now, a score from 0 to 100, and the
//! one next step that would raise it most, each item explained in every language obol ships.
//!
//! Items (weights add up to 100): a second factor (25), a passkey, which phishing cannot take
//! (20), spending limits on every active device (15), a monthly limit on every account (15),
//! alerts on (an alert threshold or a webhook, 10), few active devices (at most 3: fewer keys to
//! lose, 8), and no active device older than a year (7; a device key is replaced at least
//! yearly).

use obol_core::identity::{Role, Scopes, Status};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::authz::{can_see_principal, need_scope};
use crate::error::Error;
use crate::explain::{Explanation, explain};
use crate::{App, read_ledger};

/// Every item, in the order the next step is chosen (the heaviest first).
pub const ITEMS: &[&str] =
    &["second_factor", "passkey", "device_limits", "monthly_limit", "alerts", "few_devices", "fresh_devices"];

/// Active devices a holder may have before the checklist asks it to revoke some.
pub const DEVICES_MAX: usize = 3;
/// Days a device key may be in use before the checklist asks for a new one.
pub const DEVICE_AGE_DAYS_MAX: u64 = 365;
const NS_PER_DAY: u64 = 86_400_000_000_000;

fn weight(item: &str) -> u8 {
    match item {
        "second_factor" => 25,
        "passkey" => 20,
        "device_limits" | "monthly_limit" => 15,
        "alerts" => 10,
        "few_devices" => 8,
        _ => 7,
    }
}

/// One item.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct ItemDto {
    /// The item's key.
    pub id: String,
    /// Whether it is done.
    pub done: bool,
    /// Points it adds to the score when done.
    pub weight: u8,
    /// What it is about this holder (counts, ids).
    pub detail: String,
    /// Why it matters and how to do it.
    pub explanation: Explanation,
}

/// The checklist.
#[derive(Clone, Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct ChecklistDto {
    /// The holder.
    pub principal_id: String,
    /// 0 to 100: the weights of the items done.
    pub score: u8,
    /// The item to do next (the heaviest not done), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Every item.
    pub items: Vec<ItemDto>,
}

/// The security checklist of holder `id` (the holder itself, or staff who see everything).
pub fn checklist(state: &App, caller: &Caller, id: &str) -> Result<ChecklistDto, Error> {
    need_scope(caller, Scopes::READ)?;
    let principal_id = crate::parse_id("id", id)?;
    if !can_see_principal(caller, principal_id) {
        return Err(Error::PrincipalNotFound(principal_id));
    }
    let now_ns = state.env.now_ns();
    let ledger = read_ledger(state);
    let principal = ledger.identity().principal(principal_id).ok_or(Error::PrincipalNotFound(principal_id))?;
    if !matches!(principal.role, Role::Holder | Role::Merchant) {
        return Err(Error::InvalidField("a security checklist is kept for holders and merchants".into()));
    }
    let devices: Vec<_> =
        ledger.identity().devices_of(principal_id).into_iter().filter(|d| d.status == Status::Active).collect();
    // The state table through the guard held (the engine's own reads take the same lock).
    let limits: Vec<u128> = ledger
        .table()
        .scan(crate::risk::LIMIT_PREFIX)
        .filter_map(|(key, _)| key.trim_start_matches(crate::risk::LIMIT_PREFIX).parse().ok())
        .collect();
    let accounts: Vec<u128> = ledger.accounts().iter().filter(|a| a.owner_id == principal_id).map(|a| a.id).collect();
    let without_limit: Vec<u128> = accounts.iter().copied().filter(|a| !limits.contains(a)).collect();
    let unlimited_devices: Vec<u128> = devices.iter().filter(|d| d.limits.is_none()).map(|d| d.id).collect();
    let old_devices: Vec<u128> = devices
        .iter()
        .filter(|d| now_ns.saturating_sub(d.created_ns) / NS_PER_DAY > DEVICE_AGE_DAYS_MAX)
        .map(|d| d.id)
        .collect();
    let totp = principal.has_totp();
    let passkeys = principal.passkeys.iter().filter(|p| !p.disabled).count();
    let ids = |ids: &[u128]| ids.iter().map(u128::to_string).collect::<Vec<_>>().join(", ");
    let items: Vec<ItemDto> = ITEMS
        .iter()
        .map(|item| {
            let (done, detail) = match *item {
                "second_factor" => {
                    (principal.has_factor(), format!("TOTP {}, passkeys {passkeys}", if totp { "on" } else { "off" }))
                }
                "passkey" => (passkeys > 0, format!("{passkeys} passkey(s)")),
                "device_limits" => (
                    unlimited_devices.is_empty(),
                    if unlimited_devices.is_empty() {
                        format!("{} active device(s), all limited", devices.len())
                    } else {
                        format!("devices without limits: {}", ids(&unlimited_devices))
                    },
                ),
                "monthly_limit" => (
                    without_limit.is_empty(),
                    if without_limit.is_empty() {
                        format!("{} account(s), all with a monthly limit", accounts.len())
                    } else {
                        format!("accounts without a monthly limit: {}", ids(&without_limit))
                    },
                ),
                "alerts" => {
                    let on = crate::webhooks::alerts_on(&ledger, principal_id);
                    (on, if on { "alerts on".to_string() } else { "no alert threshold and no webhook".to_string() })
                }
                "few_devices" => {
                    (devices.len() <= DEVICES_MAX, format!("{} active device(s), at most {DEVICES_MAX}", devices.len()))
                }
                _ => (
                    old_devices.is_empty(),
                    if old_devices.is_empty() {
                        format!("no active device older than {DEVICE_AGE_DAYS_MAX} days")
                    } else {
                        format!("devices older than {DEVICE_AGE_DAYS_MAX} days: {}", ids(&old_devices))
                    },
                ),
            };
            ItemDto {
                id: (*item).to_string(),
                done,
                weight: weight(item),
                detail,
                explanation: explain(&format!("checklist.{item}")),
            }
        })
        .collect();
    let score = items.iter().filter(|i| i.done).map(|i| i.weight).fold(0u8, u8::saturating_add);
    let next = items.iter().find(|i| !i.done).map(|i| i.id.clone());
    Ok(ChecklistDto { principal_id: principal_id.to_string(), score, next, items })
}

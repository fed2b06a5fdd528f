//! Who may do what: one place that every handler asks.
//!
//! Roles: the operator may do everything; holders and merchants own accounts and act only on
//! their own; analysts and auditors read everything and change nothing. On top of the role, an
//! API key's scopes (`read`, `pay`, `manage`) narrow what that one credential may do. A resource
//! the caller may not see answers 404, exactly as one that does not exist, so holders cannot
//! probe for each other's accounts.

use obol_core::identity::{Role, Scopes};
use obol_core::ledger::{Account, Ledger, Transfer};

use crate::auth::Caller;
use crate::error::Error;

/// Fails unless the caller's credential carries every scope in `needed`.
pub fn need_scope(caller: &Caller, needed: u32) -> Result<(), Error> {
    if caller.scopes.allows(needed) {
        return Ok(());
    }
    let names: Vec<&str> = Scopes::NAMES.iter().filter(|(_, bit)| needed & bit != 0).map(|(n, _)| *n).collect();
    Err(Error::Forbidden(format!("this key lacks the {} scope", names.join(" and "))))
}

/// Fails unless the caller has one of `roles`.
pub fn need_role(caller: &Caller, roles: &[Role]) -> Result<(), Error> {
    if roles.contains(&caller.role) {
        return Ok(());
    }
    Err(Error::Forbidden(format!("the {} role may not do this", caller.role.as_str())))
}

/// Operators, analysts and auditors see every account and transfer.
pub fn sees_everything(caller: &Caller) -> bool {
    matches!(caller.role, Role::Operator | Role::Analyst | Role::Auditor)
}

/// Whether the caller owns `account`.
pub fn owns(caller: &Caller, account: &Account) -> bool {
    caller.role.owns_accounts() && account.owner_id == caller.principal_id
}

/// Whether the caller may read `account`.
pub fn can_see_account(caller: &Caller, account: &Account) -> bool {
    sees_everything(caller) || owns(caller, account)
}

/// Whether the caller may read `transfer` (it touches one of the caller's accounts).
pub fn can_see_transfer(caller: &Caller, ledger: &Ledger, transfer: &Transfer) -> bool {
    sees_everything(caller)
        || [transfer.debit_account_id, transfer.credit_account_id]
            .iter()
            .any(|id| ledger.account(*id).is_some_and(|account| owns(caller, account)))
}

/// Whether the caller may move money out of `account`.
pub fn can_debit(caller: &Caller, account: &Account) -> bool {
    caller.role == Role::Operator || owns(caller, account)
}

/// Whether the caller may read or manage principal `principal_id`'s identity data.
pub fn can_see_principal(caller: &Caller, principal_id: u128) -> bool {
    sees_everything(caller) || caller.principal_id == principal_id
}

//! The identity registry: principals (who), their API keys and devices (how they prove it),
//! and the security events a holder can read back.
//!
//! Identity changes travel through the same durable records as money, so they share the
//! ledger's guarantees: persisted before they take effect, replayed exactly on restart, atomic
//! per record. Secrets never enter the core in the clear: API keys arrive as argon2id PHC strings
//! computed by the shell, device keys are public keys. Principals are never deleted (only
//! suspended), so the shell may check that a principal exists before it submits a request that
//! names it.

use std::collections::HashMap;

use crate::money::Asset;

/// Most characters in a principal's display name.
pub const NAME_BYTES_MAX: usize = 64;
/// Most characters in a device key id (`kid`).
pub const KID_BYTES_MAX: usize = 64;
/// Most bytes in a stored PHC hash string.
pub const PHC_BYTES_MAX: usize = 256;
/// Security events kept per principal (oldest dropped first).
pub const EVENTS_PER_PRINCIPAL_MAX: usize = 256;

/// What a principal is allowed to be.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
#[repr(u8)]
pub enum Role {
    /// Runs the platform: every route.
    Operator = 1,
    /// Holds accounts and pays from them; owns devices.
    Holder = 2,
    /// Receives payments into its accounts; may refund from them.
    Merchant = 3,
    /// Reads everything for fraud work; moves no money.
    Analyst = 4,
    /// Reads everything for compliance; moves no money.
    Auditor = 5,
}

impl Role {
    /// Every role, in code order.
    pub const ALL: [Role; 5] = [Role::Operator, Role::Holder, Role::Merchant, Role::Analyst, Role::Auditor];

    /// Stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Holder => "holder",
            Role::Merchant => "merchant",
            Role::Analyst => "analyst",
            Role::Auditor => "auditor",
        }
    }

    /// The role with this wire name.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }

    /// The role with this numeric code.
    pub fn from_code(code: u8) -> Option<Role> {
        Role::ALL.into_iter().find(|role| *role as u8 == code)
    }

    /// Whether principals of this role own ledger accounts.
    pub fn owns_accounts(self) -> bool {
        matches!(self, Role::Holder | Role::Merchant)
    }
}

/// Whether a principal, key or device may act.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum Status {
    /// May act.
    Active = 1,
    /// Temporarily may not act (reversible).
    Suspended = 2,
    /// Never again (keys and devices only).
    Revoked = 3,
}

impl Status {
    /// Stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Suspended => "suspended",
            Status::Revoked => "revoked",
        }
    }

    /// The status with this numeric code.
    pub fn from_code(code: u8) -> Option<Status> {
        Status::ALL.into_iter().find(|s| *s as u8 == code)
    }

    /// The status with this wire name.
    pub fn parse(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// Every status.
    pub const ALL: [Status; 3] = [Status::Active, Status::Suspended, Status::Revoked];
}

/// API key scopes, as bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct Scopes(pub u32);

impl Scopes {
    /// Read accounts, transfers, balances and history the principal may see.
    pub const READ: u32 = 1 << 0;
    /// Create accounts and transfers.
    pub const PAY: u32 = 1 << 1;
    /// Manage principals, keys and devices (own ones, or all for the operator).
    pub const MANAGE: u32 = 1 << 2;
    /// Every scope.
    pub const ALL: u32 = Self::READ | Self::PAY | Self::MANAGE;
    /// Wire names.
    pub const NAMES: [(&'static str, u32); 3] = [("read", Self::READ), ("pay", Self::PAY), ("manage", Self::MANAGE)];

    /// Whether every bit of `needed` is granted.
    pub fn allows(self, needed: u32) -> bool {
        self.0 & needed == needed
    }
}

/// Someone (or something) that acts on obol.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Principal {
    /// Unique id, client- or server-chosen, not 0.
    pub id: u128,
    /// What it may do.
    pub role: Role,
    /// Display name.
    pub name: String,
    /// Active or suspended.
    pub status: Status,
    /// Ledger time of creation, ns.
    pub created_ns: u64,
    /// The TOTP factor, if enrolled.
    pub totp: Option<TotpFactor>,
    /// SHA-256 hashes of unused recovery codes.
    pub recovery_hashes: Vec<[u8; 32]>,
    /// Failed factor checks since the last success.
    pub failed_factor_count: u8,
    /// Whether factor checks are locked after too many failures (the operator unlocks).
    pub locked: bool,
    /// When payments need step-up authentication.
    pub step_up: StepUpPolicy,
    /// Registered passkeys (WebAuthn credentials), in registration order.
    pub passkeys: Vec<PasskeyRecord>,
}

/// A WebAuthn credential, stored as the shell's serialized form (public key, counter, flags).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PasskeyRecord {
    /// The credential id the authenticator chose.
    pub credential_id: Vec<u8>,
    /// The shell's serialized credential (public data only).
    pub data: Vec<u8>,
    /// Disabled after a signature counter went backwards (a cloned authenticator).
    pub disabled: bool,
}

/// Consecutive failed factor checks that lock a principal's factors (PSD2 RTS art. 4).
pub const FACTOR_FAILURES_MAX: u8 = 5;

/// A TOTP factor: the secret sealed by the shell (never in the clear here).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TotpFactor {
    /// The secret, encrypted by the shell's vault.
    pub sealed_secret: Vec<u8>,
    /// Whether a first code confirmed the enrolment.
    pub confirmed: bool,
    /// The last accepted time step; a step is never accepted twice.
    pub last_step: u64,
}

/// Which payments need step-up authentication (when the principal has a confirmed factor).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StepUpPolicy {
    /// Payments above this amount in this asset.
    pub above: Option<(Asset, u128)>,
    /// The first payment to an account the principal never paid before.
    pub new_payee: bool,
    /// The first payment made by a device.
    pub new_device: bool,
}

impl Default for StepUpPolicy {
    fn default() -> StepUpPolicy {
        StepUpPolicy { above: None, new_payee: true, new_device: true }
    }
}

impl Principal {
    /// Whether the principal has a factor that can approve a step-up.
    pub fn has_factor(&self) -> bool {
        self.has_totp() || self.passkeys.iter().any(|p| !p.disabled)
    }

    /// Whether the principal has confirmed TOTP (signing in with a key then needs a code).
    pub fn has_totp(&self) -> bool {
        self.totp.as_ref().is_some_and(|t| t.confirmed)
    }

    /// The passkeys that may still approve.
    pub fn usable_passkeys(&self) -> impl Iterator<Item = &PasskeyRecord> {
        self.passkeys.iter().filter(|p| !p.disabled)
    }
}

/// An API key: the public id is in the key text, only the hash of the secret is kept.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ApiKey {
    /// Public key id (16 hex characters), unique.
    pub key_id: String,
    /// Whose key it is.
    pub principal_id: u128,
    /// argon2id PHC string of the secret.
    pub phc: String,
    /// What it may do, within its principal's role.
    pub scopes: Scopes,
    /// After this ledger time (ns) the key no longer works; 0: never expires.
    pub expires_ns: u64,
    /// Active or revoked.
    pub status: Status,
    /// Ledger time of creation, ns.
    pub created_ns: u64,
}

impl ApiKey {
    /// Whether the key may be used at `now_ns`.
    pub fn usable_at(&self, now_ns: u64) -> bool {
        self.status == Status::Active && (self.expires_ns == 0 || now_ns < self.expires_ns)
    }
}

/// Nanoseconds in a UTC day.
pub const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// The UTC day (days since the Unix epoch) of a time in ns: the day a device's daily limit counts.
pub fn utc_day(now_ns: u64) -> u64 {
    now_ns / NS_PER_DAY
}

/// Spending limits a holder sets for one of its devices, in one asset.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DeviceLimits {
    /// The asset the limits are counted in; payments in other assets are refused.
    pub asset: Asset,
    /// Largest single payment; 0: no limit.
    pub per_payment: u128,
    /// Most per UTC day; 0: no limit.
    pub per_day: u128,
}

/// A device: an Ed25519 public key acting for a holder.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Device {
    /// Unique id.
    pub id: u128,
    /// The holder it acts for.
    pub holder_id: u128,
    /// The key id clients put in `keyid=`; unique.
    pub kid: String,
    /// Ed25519 public key.
    pub public_key: [u8; 32],
    /// Active, suspended or revoked.
    pub status: Status,
    /// Optional spending limits.
    pub limits: Option<DeviceLimits>,
    /// Ledger time of creation, ns.
    pub created_ns: u64,
    /// Whether the device has made a payment (its first one may need step-up).
    pub has_paid: bool,
    /// The UTC day (days since the Unix epoch) `spent_today` counts.
    pub spent_day: u64,
    /// What the device's payments reserved against its daily limit on `spent_day`.
    pub spent_today: u128,
}

/// What happened, for the holder's activity list and the audit log.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum EventKind {
    /// The principal was created.
    PrincipalCreated = 1,
    /// The principal was suspended or reactivated.
    PrincipalStatusChanged = 2,
    /// An API key was created.
    KeyCreated = 3,
    /// An API key was revoked.
    KeyRevoked = 4,
    /// An API key's expiry was set (rotation with overlap).
    KeyExpirySet = 5,
    /// A device was registered.
    DeviceRegistered = 6,
    /// A device was suspended, reactivated or revoked.
    DeviceStatusChanged = 7,
    /// A device's key was replaced.
    DeviceRotated = 8,
    /// A device's limits changed.
    DeviceLimitsChanged = 9,
    /// A TOTP authenticator was set up (not yet confirmed).
    TotpEnrolled = 10,
    /// A TOTP authenticator was confirmed and recovery codes issued.
    TotpConfirmed = 11,
    /// A second-factor check succeeded.
    FactorSucceeded = 12,
    /// A second-factor check failed.
    FactorFailed = 13,
    /// Second-factor checks were locked after too many failures.
    FactorLocked = 14,
    /// The operator unlocked second-factor checks.
    FactorUnlocked = 15,
    /// The step-up policy changed.
    StepUpPolicyChanged = 16,
    /// A recovery code was used.
    RecoveryCodeUsed = 17,
    /// A passkey was registered.
    PasskeyRegistered = 18,
    /// A passkey was disabled because its signature counter went backwards.
    PasskeyCloneSuspected = 19,
    /// Payments were frozen (all, one device's or one tab's).
    Frozen = 20,
    /// A freeze was lifted.
    Unfrozen = 21,
    /// A passkey was removed by its holder or the operator.
    PasskeyRemoved = 22,
}

impl EventKind {
    /// Stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PrincipalCreated => "principal_created",
            EventKind::PrincipalStatusChanged => "principal_status_changed",
            EventKind::KeyCreated => "api_key_created",
            EventKind::KeyRevoked => "api_key_revoked",
            EventKind::KeyExpirySet => "api_key_expiry_set",
            EventKind::DeviceRegistered => "device_registered",
            EventKind::DeviceStatusChanged => "device_status_changed",
            EventKind::DeviceRotated => "device_key_rotated",
            EventKind::DeviceLimitsChanged => "device_limits_changed",
            EventKind::TotpEnrolled => "totp_enrolled",
            EventKind::TotpConfirmed => "totp_confirmed",
            EventKind::FactorSucceeded => "factor_succeeded",
            EventKind::FactorFailed => "factor_failed",
            EventKind::FactorLocked => "factor_locked",
            EventKind::FactorUnlocked => "factor_unlocked",
            EventKind::StepUpPolicyChanged => "step_up_policy_changed",
            EventKind::RecoveryCodeUsed => "recovery_code_used",
            EventKind::PasskeyRegistered => "passkey_registered",
            EventKind::PasskeyCloneSuspected => "passkey_clone_suspected",
            EventKind::Frozen => "payments_frozen",
            EventKind::Unfrozen => "payments_unfrozen",
            EventKind::PasskeyRemoved => "passkey_removed",
        }
    }

    /// A sentence a person can read.
    pub fn describe(self) -> &'static str {
        match self {
            EventKind::PrincipalCreated => "Your profile was created.",
            EventKind::PrincipalStatusChanged => "Your profile was suspended or reactivated.",
            EventKind::KeyCreated => "A new API key was created.",
            EventKind::KeyRevoked => "An API key was revoked and no longer works.",
            EventKind::KeyExpirySet => "An API key was set to expire (key rotation).",
            EventKind::DeviceRegistered => "A new device was registered.",
            EventKind::DeviceStatusChanged => "A device was suspended, reactivated or revoked.",
            EventKind::DeviceRotated => "A device's signing key was replaced.",
            EventKind::DeviceLimitsChanged => "A device's spending limits changed.",
            EventKind::TotpEnrolled => "An authenticator app was being set up.",
            EventKind::TotpConfirmed => "An authenticator app was set up and recovery codes were issued.",
            EventKind::FactorSucceeded => "A payment was approved with your second factor.",
            EventKind::FactorFailed => "A second-factor check failed. If this was not you, contact support.",
            EventKind::FactorLocked => "Second-factor checks are locked after 5 failures; contact support to unlock.",
            EventKind::FactorUnlocked => "Second-factor checks were unlocked.",
            EventKind::StepUpPolicyChanged => "The rules for when payments need your approval changed.",
            EventKind::RecoveryCodeUsed => "A recovery code was used; it cannot be used again.",
            EventKind::PasskeyRegistered => "A passkey was registered.",
            EventKind::PasskeyCloneSuspected => {
                "A passkey looked copied (its counter went backwards) and was disabled; register it again."
            }
            EventKind::Frozen => "Payments were frozen (all of them, one device's or one tab's).",
            EventKind::Unfrozen => "A freeze on payments was lifted.",
            EventKind::PasskeyRemoved => "A passkey was removed; it no longer signs in or approves anything.",
        }
    }
}

/// One security event.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SecurityEvent {
    /// Ledger time, ns.
    pub at_ns: u64,
    /// What happened.
    pub kind: EventKind,
    /// Which key or device it concerns (key id or device id), if any.
    pub subject: String,
}

/// A change to the registry, as it is persisted.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum IdentityCommand {
    /// Create a principal.
    CreatePrincipal {
        /// Id, not 0 or 2^128-1.
        id: u128,
        /// Role.
        role: Role,
        /// Display name.
        name: String,
    },
    /// Suspend or reactivate a principal.
    SetPrincipalStatus {
        /// Which.
        id: u128,
        /// Active or Suspended.
        status: Status,
    },
    /// Add an API key.
    CreateApiKey {
        /// Public id.
        key_id: String,
        /// Owner.
        principal_id: u128,
        /// argon2id PHC of the secret.
        phc: String,
        /// Scopes.
        scopes: Scopes,
        /// Expiry (ns), 0: never.
        expires_ns: u64,
    },
    /// Revoke an API key now.
    RevokeApiKey {
        /// Which.
        key_id: String,
    },
    /// Set when an API key stops working (rotation with overlap).
    SetApiKeyExpiry {
        /// Which.
        key_id: String,
        /// Expiry (ns).
        expires_ns: u64,
    },
    /// Register a device for a holder.
    RegisterDevice {
        /// Device id.
        id: u128,
        /// The holder.
        holder_id: u128,
        /// Key id, unique.
        kid: String,
        /// Ed25519 public key.
        public_key: [u8; 32],
        /// Spending limits.
        limits: Option<DeviceLimits>,
    },
    /// Suspend, reactivate or revoke a device.
    SetDeviceStatus {
        /// Which.
        id: u128,
        /// New status (revoked is final).
        status: Status,
    },
    /// Replace a device's key (the old one stops working at once).
    RotateDeviceKey {
        /// Which.
        id: u128,
        /// New key id, unique.
        kid: String,
        /// New public key.
        public_key: [u8; 32],
    },
    /// Set or clear a device's limits.
    SetDeviceLimits {
        /// Which.
        id: u128,
        /// New limits.
        limits: Option<DeviceLimits>,
    },
    /// Start a TOTP enrolment (replaces any earlier TOTP factor once confirmed).
    EnrollTotp {
        /// Whose.
        principal_id: u128,
        /// The secret, sealed by the shell.
        sealed_secret: Vec<u8>,
    },
    /// Confirm the pending TOTP enrolment with the step of a correct code, and set the recovery
    /// codes.
    ConfirmTotp {
        /// Whose.
        principal_id: u128,
        /// The accepted step.
        step: u64,
        /// SHA-256 hashes of the new recovery codes.
        recovery_hashes: Vec<[u8; 32]>,
    },
    /// A factor check succeeded: a TOTP step (never twice) or a recovery code (once).
    UseFactor {
        /// Whose.
        principal_id: u128,
        /// What was presented.
        proof: FactorProof,
    },
    /// A factor check failed.
    FailFactor {
        /// Whose.
        principal_id: u128,
    },
    /// Unlock factor checks (operator).
    UnlockFactors {
        /// Whose.
        principal_id: u128,
    },
    /// Set the step-up policy.
    SetStepUpPolicy {
        /// Whose.
        principal_id: u128,
        /// The policy.
        policy: StepUpPolicy,
    },
    /// Record a device's first payment.
    MarkDevicePaid {
        /// Which.
        id: u128,
    },
    /// Register a passkey, or replace the stored form of one (after a use updates its counter).
    PutPasskey {
        /// Whose.
        principal_id: u128,
        /// The credential id.
        credential_id: Vec<u8>,
        /// The serialized credential.
        data: Vec<u8>,
    },
    /// Count `amount` against a device's daily limit for UTC day `day`; refused (and nothing
    /// counted) if it would go over.
    ChargeDevice {
        /// Which.
        id: u128,
        /// Days since the Unix epoch.
        day: u64,
        /// Minor units of the limits' asset.
        amount: u128,
    },
    /// Disable a passkey whose signature counter went backwards.
    DisablePasskey {
        /// Whose.
        principal_id: u128,
        /// The credential id.
        credential_id: Vec<u8>,
    },
    /// Remove a passkey (its holder or the operator no longer trusts it): it signs nothing from
    /// now on, and the same authenticator may be registered again.
    RemovePasskey {
        /// Whose.
        principal_id: u128,
        /// The credential id.
        credential_id: Vec<u8>,
    },
    /// Freeze or unfreeze a holder's payments: all of them, one device's, or one tab's.
    SetFrozen {
        /// Whose payments.
        principal_id: u128,
        /// What is frozen.
        target: FreezeTarget,
        /// Frozen (`true`) or not.
        frozen: bool,
    },
}

/// What a freeze stops.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FreezeTarget {
    /// Every payment from the holder's accounts (transfers, tab escrows, vouchers, ticks).
    All,
    /// Every payment the device signs (its tabs' vouchers and ticks included).
    Device(u128),
    /// Payments into one tab.
    Tab(u128),
}

/// Devices and tabs one principal may have frozen at once (beyond it, freeze all).
pub const FROZEN_ITEMS_MAX: usize = 1_024;

/// What a principal has frozen.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct Frozen {
    /// Every payment.
    pub all: bool,
    /// These devices' payments.
    pub devices: std::collections::BTreeSet<u128>,
    /// Payments into these tabs.
    pub tabs: std::collections::BTreeSet<u128>,
}

impl Frozen {
    fn is_empty(&self) -> bool {
        !self.all && self.devices.is_empty() && self.tabs.is_empty()
    }
}

/// A successful second-factor check.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FactorProof {
    /// A TOTP code for this time step.
    TotpStep(u64),
    /// The hash of a recovery code.
    RecoveryCode([u8; 32]),
    /// A passkey assertion the shell verified (user verification included).
    Passkey,
}

/// The outcome of one identity command.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u16)]
pub enum IdentityResult {
    /// Done.
    Ok = 0,
    /// The same thing already exists; nothing changed.
    Exists = 1,
    /// The id exists with other fields.
    ExistsWithDifferentFields = 2,
    /// 0 and 2^128-1 are reserved ids.
    IdReserved = 3,
    /// Name, kid or PHC too long or empty.
    FieldLength = 4,
    /// No such principal.
    PrincipalNotFound = 5,
    /// No such API key.
    KeyNotFound = 6,
    /// No such device.
    DeviceNotFound = 7,
    /// Devices belong to holders only.
    NotAHolder = 8,
    /// The kid is taken by another device.
    KidInUse = 9,
    /// Revoked keys and devices stay revoked.
    AlreadyRevoked = 10,
    /// The status is not allowed here (principals cannot be revoked).
    StatusNotAllowed = 11,
    /// No (confirmed) factor of that kind is enrolled.
    FactorNotEnrolled = 12,
    /// The TOTP step or recovery code was already used.
    CodeReused = 13,
    /// Factor checks are locked after too many failures.
    FactorLocked = 14,
    /// The device's daily limit would be exceeded.
    DeviceDayLimitExceeded = 15,
}

impl IdentityResult {
    /// Stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityResult::Ok => "ok",
            IdentityResult::Exists => "exists",
            IdentityResult::ExistsWithDifferentFields => "exists_with_different_fields",
            IdentityResult::IdReserved => "id_reserved",
            IdentityResult::FieldLength => "field_length",
            IdentityResult::PrincipalNotFound => "principal_not_found",
            IdentityResult::KeyNotFound => "key_not_found",
            IdentityResult::DeviceNotFound => "device_not_found",
            IdentityResult::NotAHolder => "not_a_holder",
            IdentityResult::KidInUse => "kid_in_use",
            IdentityResult::AlreadyRevoked => "already_revoked",
            IdentityResult::StatusNotAllowed => "status_not_allowed",
            IdentityResult::FactorNotEnrolled => "factor_not_enrolled",
            IdentityResult::CodeReused => "code_reused",
            IdentityResult::FactorLocked => "factor_locked",
            IdentityResult::DeviceDayLimitExceeded => "device_limit_exceeded",
        }
    }
}

/// The registry.
#[derive(Clone, Default, Debug)]
pub struct Identity {
    principals: HashMap<u128, Principal>,
    keys: HashMap<String, ApiKey>,
    devices: HashMap<u128, Device>,
    device_by_kid: HashMap<String, u128>,
    events: HashMap<u128, Vec<SecurityEvent>>,
    /// Per principal, what it has frozen (absent: nothing).
    frozen: HashMap<u128, Frozen>,
}

fn length_ok(text: &str, max: usize) -> bool {
    !text.is_empty() && text.len() <= max
}

impl Identity {
    /// Looks up a principal.
    pub fn principal(&self, id: u128) -> Option<&Principal> {
        self.principals.get(&id)
    }

    /// What `principal_id` has frozen, if anything.
    pub fn frozen(&self, principal_id: u128) -> Option<&Frozen> {
        self.frozen.get(&principal_id)
    }

    /// Whether anyone has frozen anything (when not, no payment needs a freeze check).
    pub fn any_frozen(&self) -> bool {
        !self.frozen.is_empty()
    }

    /// Whether a payment by `owner_id`'s account, signed by `device_id` (0: none), into tab
    /// `tab_id` (0: none) is frozen. Free when nobody has frozen anything.
    pub fn payment_frozen(&self, owner_id: u128, device_id: u128, tab_id: u128) -> bool {
        if self.frozen.is_empty() {
            return false;
        }
        self.frozen.get(&owner_id).is_some_and(|frozen| {
            frozen.all
                || (device_id != 0 && frozen.devices.contains(&device_id))
                || (tab_id != 0 && frozen.tabs.contains(&tab_id))
        })
    }

    /// Looks up an API key by its public id.
    pub fn key(&self, key_id: &str) -> Option<&ApiKey> {
        self.keys.get(key_id)
    }

    /// A principal's keys, oldest first.
    pub fn keys_of(&self, principal_id: u128) -> Vec<&ApiKey> {
        let mut keys: Vec<&ApiKey> = self.keys.values().filter(|k| k.principal_id == principal_id).collect();
        keys.sort_by_key(|k| (k.created_ns, k.key_id.clone()));
        keys
    }

    /// Looks up a device.
    pub fn device(&self, id: u128) -> Option<&Device> {
        self.devices.get(&id)
    }

    /// Looks up a device by its key id.
    pub fn device_by_kid(&self, kid: &str) -> Option<&Device> {
        self.device_by_kid.get(kid).and_then(|id| self.devices.get(id))
    }

    /// A holder's devices, oldest first.
    pub fn devices_of(&self, holder_id: u128) -> Vec<&Device> {
        let mut devices: Vec<&Device> = self.devices.values().filter(|d| d.holder_id == holder_id).collect();
        devices.sort_by_key(|d| (d.created_ns, d.id));
        devices
    }

    /// A principal's security events, newest last.
    pub fn events_of(&self, principal_id: u128) -> &[SecurityEvent] {
        self.events.get(&principal_id).map_or(&[], Vec::as_slice)
    }

    /// Every principal, in no particular order.
    pub fn principals(&self) -> impl Iterator<Item = &Principal> {
        self.principals.values()
    }

    /// Every device, in no particular order.
    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.values()
    }

    /// Number of principals.
    pub fn principals_count(&self) -> usize {
        self.principals.len()
    }

    /// What the device's day total would be after `amount` more on `day`, if its daily limit
    /// allows it. Changes nothing.
    fn day_total_after(device: &Device, day: u64, amount: u128) -> Option<u128> {
        let spent = if device.spent_day == day { device.spent_today } else { 0 };
        let after = spent.checked_add(amount)?;
        let per_day = device.limits.map_or(0, |l| l.per_day);
        (per_day == 0 || after <= per_day).then_some(after)
    }

    /// Whether `device_id` may escrow or pay `amount` of `asset` on `day` under its limits
    /// (asset, per payment, what is left of the day). Changes nothing; [`Identity::charge_device`]
    /// then counts it.
    pub fn device_limits_allow(&self, device_id: u128, asset: Asset, day: u64, amount: u128) -> bool {
        let Some(device) = self.devices.get(&device_id) else { return false };
        let Some(limits) = device.limits else { return true };
        limits.asset == asset
            && (limits.per_payment == 0 || amount <= limits.per_payment)
            && Identity::day_total_after(device, day, amount).is_some()
    }

    /// Whether `device_id` may make `payments` (asset and amount of each) together on `day`:
    /// each in the limits' asset and within the per-payment limit, their sum within what is left
    /// of the day. A device that does not exist or is not active may not.
    pub fn device_allows(&self, device_id: u128, payments: &[(Asset, u128)], day: u64) -> bool {
        let Some(device) = self.devices.get(&device_id) else { return false };
        if device.status != Status::Active {
            return false;
        }
        let Some(limits) = device.limits else { return true };
        let each = payments.iter().all(|(asset, amount)| {
            *asset == limits.asset && (limits.per_payment == 0 || *amount <= limits.per_payment)
        });
        let total = payments.iter().try_fold(0u128, |sum, (_, amount)| sum.checked_add(*amount));
        each && total.is_some_and(|total| Identity::day_total_after(device, day, total).is_some())
    }

    /// Charges the device's `day` with `amount` it paid (checked before with
    /// [`Identity::device_allows`]) and marks that it has paid.
    pub(crate) fn device_paid(&mut self, id: u128, day: u64, amount: u128) {
        if let Some(device) = self.devices.get_mut(&id) {
            let spent = if device.spent_day == day { device.spent_today } else { 0 };
            device.spent_day = day;
            device.spent_today = spent.saturating_add(amount);
            device.has_paid = true;
        }
    }

    /// Counts `amount` toward the device's limit for `day`, or refuses it past the limit.
    pub(crate) fn charge_device(&mut self, id: u128, day: u64, amount: u128) -> IdentityResult {
        let Some(device) = self.devices.get_mut(&id) else {
            return IdentityResult::DeviceNotFound;
        };
        let Some(after) = Identity::day_total_after(device, day, amount) else {
            return IdentityResult::DeviceDayLimitExceeded;
        };
        device.spent_day = day;
        device.spent_today = after;
        IdentityResult::Ok
    }

    fn record(&mut self, principal_id: u128, at_ns: u64, kind: EventKind, subject: String) {
        let events = self.events.entry(principal_id).or_default();
        if events.len() >= EVENTS_PER_PRINCIPAL_MAX {
            events.remove(0);
        }
        events.push(SecurityEvent { at_ns, kind, subject });
    }

    /// Applies one command at ledger time `now_ns`.
    pub fn apply(&mut self, command: &IdentityCommand, now_ns: u64) -> IdentityResult {
        use IdentityResult as R;
        match command {
            IdentityCommand::CreatePrincipal { id, role, name } => {
                if *id == 0 || *id == u128::MAX {
                    return R::IdReserved;
                }
                if !length_ok(name, NAME_BYTES_MAX) {
                    return R::FieldLength;
                }
                if let Some(existing) = self.principals.get(id) {
                    return if existing.role == *role && existing.name == *name {
                        R::Exists
                    } else {
                        R::ExistsWithDifferentFields
                    };
                }
                self.principals.insert(
                    *id,
                    Principal {
                        id: *id,
                        role: *role,
                        name: name.clone(),
                        status: Status::Active,
                        created_ns: now_ns,
                        totp: None,
                        recovery_hashes: Vec::new(),
                        failed_factor_count: 0,
                        locked: false,
                        step_up: StepUpPolicy::default(),
                        passkeys: Vec::new(),
                    },
                );
                self.record(*id, now_ns, EventKind::PrincipalCreated, String::new());
                R::Ok
            }
            IdentityCommand::SetPrincipalStatus { id, status } => {
                if *status == Status::Revoked {
                    return R::StatusNotAllowed;
                }
                let Some(principal) = self.principals.get_mut(id) else {
                    return R::PrincipalNotFound;
                };
                principal.status = *status;
                self.record(*id, now_ns, EventKind::PrincipalStatusChanged, status.as_str().into());
                R::Ok
            }
            IdentityCommand::CreateApiKey { key_id, principal_id, phc, scopes, expires_ns } => {
                if !length_ok(key_id, 32) || !length_ok(phc, PHC_BYTES_MAX) {
                    return R::FieldLength;
                }
                if !self.principals.contains_key(principal_id) {
                    return R::PrincipalNotFound;
                }
                if let Some(existing) = self.keys.get(key_id) {
                    return if existing.principal_id == *principal_id && existing.phc == *phc {
                        R::Exists
                    } else {
                        R::ExistsWithDifferentFields
                    };
                }
                self.keys.insert(
                    key_id.clone(),
                    ApiKey {
                        key_id: key_id.clone(),
                        principal_id: *principal_id,
                        phc: phc.clone(),
                        scopes: *scopes,
                        expires_ns: *expires_ns,
                        status: Status::Active,
                        created_ns: now_ns,
                    },
                );
                self.record(*principal_id, now_ns, EventKind::KeyCreated, key_id.clone());
                R::Ok
            }
            IdentityCommand::RevokeApiKey { key_id } => {
                let Some(key) = self.keys.get_mut(key_id) else {
                    return R::KeyNotFound;
                };
                if key.status == Status::Revoked {
                    return R::AlreadyRevoked;
                }
                key.status = Status::Revoked;
                let principal_id = key.principal_id;
                self.record(principal_id, now_ns, EventKind::KeyRevoked, key_id.clone());
                R::Ok
            }
            IdentityCommand::SetApiKeyExpiry { key_id, expires_ns } => {
                let Some(key) = self.keys.get_mut(key_id) else {
                    return R::KeyNotFound;
                };
                if key.status == Status::Revoked {
                    return R::AlreadyRevoked;
                }
                key.expires_ns = *expires_ns;
                let principal_id = key.principal_id;
                self.record(principal_id, now_ns, EventKind::KeyExpirySet, key_id.clone());
                R::Ok
            }
            IdentityCommand::RegisterDevice { id, holder_id, kid, public_key, limits } => {
                if *id == 0 || *id == u128::MAX {
                    return R::IdReserved;
                }
                if !length_ok(kid, KID_BYTES_MAX) {
                    return R::FieldLength;
                }
                match self.principals.get(holder_id) {
                    None => return R::PrincipalNotFound,
                    Some(principal) if principal.role != Role::Holder => return R::NotAHolder,
                    Some(_) => {}
                }
                if let Some(existing) = self.devices.get(id) {
                    return if existing.holder_id == *holder_id
                        && existing.kid == *kid
                        && existing.public_key == *public_key
                    {
                        R::Exists
                    } else {
                        R::ExistsWithDifferentFields
                    };
                }
                if self.device_by_kid.contains_key(kid) {
                    return R::KidInUse;
                }
                self.devices.insert(
                    *id,
                    Device {
                        id: *id,
                        holder_id: *holder_id,
                        kid: kid.clone(),
                        public_key: *public_key,
                        status: Status::Active,
                        limits: *limits,
                        created_ns: now_ns,
                        has_paid: false,
                        spent_day: 0,
                        spent_today: 0,
                    },
                );
                self.device_by_kid.insert(kid.clone(), *id);
                self.record(*holder_id, now_ns, EventKind::DeviceRegistered, id.to_string());
                R::Ok
            }
            IdentityCommand::SetDeviceStatus { id, status } => {
                let Some(device) = self.devices.get_mut(id) else {
                    return R::DeviceNotFound;
                };
                if device.status == Status::Revoked {
                    return R::AlreadyRevoked;
                }
                device.status = *status;
                let holder_id = device.holder_id;
                self.record(holder_id, now_ns, EventKind::DeviceStatusChanged, format!("{id} {}", status.as_str()));
                R::Ok
            }
            IdentityCommand::RotateDeviceKey { id, kid, public_key } => {
                if !length_ok(kid, KID_BYTES_MAX) {
                    return R::FieldLength;
                }
                let Some(device) = self.devices.get(id) else {
                    return R::DeviceNotFound;
                };
                if device.status == Status::Revoked {
                    return R::AlreadyRevoked;
                }
                if self.device_by_kid.get(kid).is_some_and(|owner| owner != id) {
                    return R::KidInUse;
                }
                let old_kid = device.kid.clone();
                let holder_id = device.holder_id;
                self.device_by_kid.remove(&old_kid);
                self.device_by_kid.insert(kid.clone(), *id);
                if let Some(device) = self.devices.get_mut(id) {
                    device.kid = kid.clone();
                    device.public_key = *public_key;
                }
                self.record(holder_id, now_ns, EventKind::DeviceRotated, id.to_string());
                R::Ok
            }
            IdentityCommand::SetDeviceLimits { id, limits } => {
                let Some(device) = self.devices.get_mut(id) else {
                    return R::DeviceNotFound;
                };
                device.limits = *limits;
                let holder_id = device.holder_id;
                self.record(holder_id, now_ns, EventKind::DeviceLimitsChanged, id.to_string());
                R::Ok
            }
            IdentityCommand::PutPasskey { principal_id, credential_id, data } => {
                if credential_id.is_empty() || credential_id.len() > 1023 || data.is_empty() || data.len() > 16 * 1024 {
                    return R::FieldLength;
                }
                let Some(principal) = self.principals.get_mut(principal_id) else {
                    return R::PrincipalNotFound;
                };
                match principal.passkeys.iter_mut().find(|p| p.credential_id == *credential_id) {
                    Some(existing) if existing.disabled => return R::AlreadyRevoked,
                    Some(existing) => existing.data = data.clone(),
                    None => {
                        principal.passkeys.push(PasskeyRecord {
                            credential_id: credential_id.clone(),
                            data: data.clone(),
                            disabled: false,
                        });
                        self.record(*principal_id, now_ns, EventKind::PasskeyRegistered, String::new());
                    }
                }
                R::Ok
            }
            IdentityCommand::DisablePasskey { principal_id, credential_id } => {
                let Some(principal) = self.principals.get_mut(principal_id) else {
                    return R::PrincipalNotFound;
                };
                let Some(passkey) = principal.passkeys.iter_mut().find(|p| p.credential_id == *credential_id) else {
                    return R::FactorNotEnrolled;
                };
                passkey.disabled = true;
                self.record(*principal_id, now_ns, EventKind::PasskeyCloneSuspected, String::new());
                R::Ok
            }
            IdentityCommand::RemovePasskey { principal_id, credential_id } => {
                let Some(principal) = self.principals.get_mut(principal_id) else {
                    return R::PrincipalNotFound;
                };
                let before = principal.passkeys.len();
                principal.passkeys.retain(|p| p.credential_id != *credential_id);
                if principal.passkeys.len() == before {
                    return R::FactorNotEnrolled;
                }
                self.record(*principal_id, now_ns, EventKind::PasskeyRemoved, String::new());
                R::Ok
            }
            IdentityCommand::SetFrozen { principal_id, target, frozen } => {
                if !self.principals.contains_key(principal_id) {
                    return R::PrincipalNotFound;
                }
                if let FreezeTarget::Device(device_id) = target
                    && self.devices.get(device_id).is_none_or(|device| device.holder_id != *principal_id)
                {
                    return R::DeviceNotFound;
                }
                let entry = self.frozen.entry(*principal_id).or_default();
                let changed = match (target, frozen) {
                    (FreezeTarget::All, _) => std::mem::replace(&mut entry.all, *frozen) != *frozen,
                    (FreezeTarget::Device(id), true) | (FreezeTarget::Tab(id), true)
                        if entry.devices.len() + entry.tabs.len() >= FROZEN_ITEMS_MAX
                            && !entry.devices.contains(id)
                            && !entry.tabs.contains(id) =>
                    {
                        return R::FieldLength;
                    }
                    (FreezeTarget::Device(id), true) => entry.devices.insert(*id),
                    (FreezeTarget::Device(id), false) => entry.devices.remove(id),
                    (FreezeTarget::Tab(id), true) => entry.tabs.insert(*id),
                    (FreezeTarget::Tab(id), false) => entry.tabs.remove(id),
                };
                if entry.is_empty() {
                    self.frozen.remove(principal_id);
                }
                if !changed {
                    return R::Exists;
                }
                let subject = match target {
                    FreezeTarget::All => "all".to_string(),
                    FreezeTarget::Device(id) => format!("device:{id}"),
                    FreezeTarget::Tab(id) => format!("tab:{id}"),
                };
                let kind = if *frozen { EventKind::Frozen } else { EventKind::Unfrozen };
                self.record(*principal_id, now_ns, kind, subject);
                R::Ok
            }
            IdentityCommand::ChargeDevice { id, day, amount } => self.charge_device(*id, *day, *amount),
            IdentityCommand::MarkDevicePaid { id } => {
                let Some(device) = self.devices.get_mut(id) else {
                    return R::DeviceNotFound;
                };
                device.has_paid = true;
                R::Ok
            }
            IdentityCommand::EnrollTotp { principal_id, sealed_secret } => {
                if sealed_secret.is_empty() || sealed_secret.len() > 256 {
                    return R::FieldLength;
                }
                let Some(principal) = self.principals.get_mut(principal_id) else {
                    return R::PrincipalNotFound;
                };
                // A new secret has its own codes, so its step counter starts afresh. Until it is
                // confirmed, the old factor no longer approves anything: the holder re-proved
                // possession of it to start this enrolment.
                principal.totp =
                    Some(TotpFactor { sealed_secret: sealed_secret.clone(), confirmed: false, last_step: 0 });
                self.record(*principal_id, now_ns, EventKind::TotpEnrolled, String::new());
                R::Ok
            }
            IdentityCommand::ConfirmTotp { principal_id, step, recovery_hashes } => {
                let Some(principal) = self.principals.get_mut(principal_id) else {
                    return R::PrincipalNotFound;
                };
                let Some(totp) = principal.totp.as_mut().filter(|t| !t.confirmed) else {
                    return R::FactorNotEnrolled;
                };
                if *step <= totp.last_step {
                    return R::CodeReused;
                }
                totp.confirmed = true;
                totp.last_step = *step;
                principal.recovery_hashes = recovery_hashes.clone();
                principal.failed_factor_count = 0;
                self.record(*principal_id, now_ns, EventKind::TotpConfirmed, String::new());
                R::Ok
            }
            IdentityCommand::UseFactor { principal_id, proof } => {
                let Some(principal) = self.principals.get_mut(principal_id) else {
                    return R::PrincipalNotFound;
                };
                if principal.locked {
                    return R::FactorLocked;
                }
                let kind = match proof {
                    FactorProof::TotpStep(step) => {
                        let Some(totp) = principal.totp.as_mut().filter(|t| t.confirmed) else {
                            return R::FactorNotEnrolled;
                        };
                        if *step <= totp.last_step {
                            return R::CodeReused;
                        }
                        totp.last_step = *step;
                        EventKind::FactorSucceeded
                    }
                    FactorProof::RecoveryCode(hash) => {
                        let Some(position) = principal.recovery_hashes.iter().position(|h| h == hash) else {
                            return R::CodeReused;
                        };
                        principal.recovery_hashes.remove(position);
                        EventKind::RecoveryCodeUsed
                    }
                    FactorProof::Passkey => {
                        if principal.usable_passkeys().next().is_none() {
                            return R::FactorNotEnrolled;
                        }
                        EventKind::FactorSucceeded
                    }
                };
                principal.failed_factor_count = 0;
                self.record(*principal_id, now_ns, kind, String::new());
                R::Ok
            }
            IdentityCommand::FailFactor { principal_id } => {
                let Some(principal) = self.principals.get_mut(principal_id) else {
                    return R::PrincipalNotFound;
                };
                principal.failed_factor_count = principal.failed_factor_count.saturating_add(1);
                let now_locked = !principal.locked && principal.failed_factor_count >= FACTOR_FAILURES_MAX;
                if now_locked {
                    principal.locked = true;
                }
                self.record(*principal_id, now_ns, EventKind::FactorFailed, String::new());
                if now_locked {
                    self.record(*principal_id, now_ns, EventKind::FactorLocked, String::new());
                }
                R::Ok
            }
            IdentityCommand::UnlockFactors { principal_id } => {
                let Some(principal) = self.principals.get_mut(principal_id) else {
                    return R::PrincipalNotFound;
                };
                principal.locked = false;
                principal.failed_factor_count = 0;
                self.record(*principal_id, now_ns, EventKind::FactorUnlocked, String::new());
                R::Ok
            }
            IdentityCommand::SetStepUpPolicy { principal_id, policy } => {
                let Some(principal) = self.principals.get_mut(principal_id) else {
                    return R::PrincipalNotFound;
                };
                principal.step_up = *policy;
                self.record(*principal_id, now_ns, EventKind::StepUpPolicyChanged, String::new());
                R::Ok
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(id: u128) -> IdentityCommand {
        IdentityCommand::CreatePrincipal { id, role: Role::Holder, name: format!("holder {id}") }
    }

    #[test]
    fn principals_are_idempotent_and_never_revoked() {
        let mut identity = Identity::default();
        assert_eq!(identity.apply(&holder(1), 5), IdentityResult::Ok);
        assert_eq!(identity.apply(&holder(1), 6), IdentityResult::Exists);
        let other = IdentityCommand::CreatePrincipal { id: 1, role: Role::Merchant, name: "holder 1".into() };
        assert_eq!(identity.apply(&other, 7), IdentityResult::ExistsWithDifferentFields);
        assert_eq!(identity.apply(&holder(0), 7), IdentityResult::IdReserved);
        let revoke = IdentityCommand::SetPrincipalStatus { id: 1, status: Status::Revoked };
        assert_eq!(identity.apply(&revoke, 8), IdentityResult::StatusNotAllowed);
        assert_eq!(identity.principal(1).unwrap().created_ns, 5);
    }

    #[test]
    fn keys_expire_and_revocation_is_final() {
        let mut identity = Identity::default();
        identity.apply(&holder(1), 1);
        let create = IdentityCommand::CreateApiKey {
            key_id: "k1".into(),
            principal_id: 1,
            phc: "$argon2id$x".into(),
            scopes: Scopes(Scopes::READ),
            expires_ns: 0,
        };
        assert_eq!(identity.apply(&create, 2), IdentityResult::Ok);
        assert!(identity.key("k1").unwrap().usable_at(u64::MAX));
        identity.apply(&IdentityCommand::SetApiKeyExpiry { key_id: "k1".into(), expires_ns: 100 }, 3);
        assert!(identity.key("k1").unwrap().usable_at(99));
        assert!(!identity.key("k1").unwrap().usable_at(100));
        assert_eq!(identity.apply(&IdentityCommand::RevokeApiKey { key_id: "k1".into() }, 4), IdentityResult::Ok);
        assert!(!identity.key("k1").unwrap().usable_at(50));
        assert_eq!(
            identity.apply(&IdentityCommand::RevokeApiKey { key_id: "k1".into() }, 5),
            IdentityResult::AlreadyRevoked
        );
        let kinds: Vec<&str> = identity.events_of(1).iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["principal_created", "api_key_created", "api_key_expiry_set", "api_key_revoked"]);
    }

    #[test]
    fn a_totp_step_is_accepted_once_and_five_failures_lock() {
        let mut identity = Identity::default();
        identity.apply(&holder(1), 1);
        let use_step = |step| IdentityCommand::UseFactor { principal_id: 1, proof: FactorProof::TotpStep(step) };
        assert_eq!(identity.apply(&use_step(5), 2), IdentityResult::FactorNotEnrolled);
        identity.apply(&IdentityCommand::EnrollTotp { principal_id: 1, sealed_secret: vec![1; 40] }, 2);
        let confirm = IdentityCommand::ConfirmTotp { principal_id: 1, step: 10, recovery_hashes: vec![[7; 32]] };
        assert_eq!(identity.apply(&confirm, 3), IdentityResult::Ok);
        assert!(identity.principal(1).unwrap().has_factor());
        assert_eq!(identity.apply(&use_step(10), 4), IdentityResult::CodeReused, "the confirming step is spent");
        assert_eq!(identity.apply(&use_step(11), 4), IdentityResult::Ok);
        assert_eq!(identity.apply(&use_step(11), 5), IdentityResult::CodeReused);
        assert_eq!(identity.apply(&use_step(9), 5), IdentityResult::CodeReused, "steps only move forward");
        let recovery = IdentityCommand::UseFactor { principal_id: 1, proof: FactorProof::RecoveryCode([7; 32]) };
        assert_eq!(identity.apply(&recovery, 6), IdentityResult::Ok);
        assert_eq!(identity.apply(&recovery, 7), IdentityResult::CodeReused);
        for attempt in 1..=FACTOR_FAILURES_MAX {
            identity.apply(&IdentityCommand::FailFactor { principal_id: 1 }, 8);
            assert_eq!(identity.principal(1).unwrap().locked, attempt == FACTOR_FAILURES_MAX);
        }
        assert_eq!(identity.apply(&use_step(12), 9), IdentityResult::FactorLocked);
        identity.apply(&IdentityCommand::UnlockFactors { principal_id: 1 }, 10);
        assert_eq!(identity.apply(&use_step(12), 11), IdentityResult::Ok);
    }

    #[test]
    fn a_device_day_limit_counts_durably_and_resets_each_day() {
        let mut identity = Identity::default();
        identity.apply(&holder(1), 1);
        let limits = Some(DeviceLimits { asset: Asset::new("USD", 2).unwrap(), per_payment: 0, per_day: 100 });
        identity.apply(
            &IdentityCommand::RegisterDevice { id: 5, holder_id: 1, kid: "k".into(), public_key: [1; 32], limits },
            2,
        );
        let charge = |day, amount| IdentityCommand::ChargeDevice { id: 5, day, amount };
        assert_eq!(identity.apply(&charge(10, 60), 3), IdentityResult::Ok);
        assert_eq!(identity.apply(&charge(10, 41), 3), IdentityResult::DeviceDayLimitExceeded);
        assert_eq!(identity.apply(&charge(10, 40), 3), IdentityResult::Ok);
        assert_eq!(identity.apply(&charge(10, 1), 3), IdentityResult::DeviceDayLimitExceeded);
        assert_eq!(identity.apply(&charge(11, 100), 4), IdentityResult::Ok, "a new day starts from zero");
    }

    #[test]
    fn devices_belong_to_holders_and_kids_are_unique() {
        let mut identity = Identity::default();
        identity.apply(&holder(1), 1);
        identity.apply(&IdentityCommand::CreatePrincipal { id: 2, role: Role::Merchant, name: "shop".into() }, 1);
        let register = |id: u128, holder_id: u128, kid: &str| IdentityCommand::RegisterDevice {
            id,
            holder_id,
            kid: kid.into(),
            public_key: [id as u8; 32],
            limits: None,
        };
        assert_eq!(identity.apply(&register(10, 1, "phone"), 2), IdentityResult::Ok);
        assert_eq!(identity.apply(&register(10, 1, "phone"), 3), IdentityResult::Exists);
        assert_eq!(identity.apply(&register(11, 1, "phone"), 3), IdentityResult::KidInUse);
        assert_eq!(identity.apply(&register(12, 2, "till"), 3), IdentityResult::NotAHolder);
        assert_eq!(identity.apply(&register(13, 9, "x"), 3), IdentityResult::PrincipalNotFound);
        let rotate = IdentityCommand::RotateDeviceKey { id: 10, kid: "phone-2".into(), public_key: [7; 32] };
        assert_eq!(identity.apply(&rotate, 4), IdentityResult::Ok);
        assert!(identity.device_by_kid("phone").is_none());
        assert_eq!(identity.device_by_kid("phone-2").unwrap().public_key, [7; 32]);
        let revoke = IdentityCommand::SetDeviceStatus { id: 10, status: Status::Revoked };
        assert_eq!(identity.apply(&revoke, 5), IdentityResult::Ok);
        let reactivate = IdentityCommand::SetDeviceStatus { id: 10, status: Status::Active };
        assert_eq!(identity.apply(&reactivate, 6), IdentityResult::AlreadyRevoked);
    }
}

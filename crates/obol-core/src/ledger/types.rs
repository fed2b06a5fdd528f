//! Ledger entities (accounts, transfers), their flags, and the result codes of creating them.
//!
//! The semantics follow TigerBeetle's `Account` and `Transfer`, with one change: the `ledger`
//! number is an [`Asset`] (ISO 4217 code and scale), so two accounts can transact exactly when
//! they hold the same asset at the same scale.

use crate::money::Asset;

/// Ids 0 and 2^128-1 are reserved in every id field.
pub const ID_RESERVED_MAX: u128 = u128::MAX;

/// Posting a pending transfer with this amount posts the full pending amount; a balancing
/// transfer with this amount moves as much as the account limits allow.
pub const AMOUNT_MAX: u128 = u128::MAX;

/// Account flag bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct AccountFlags(pub u16);

impl AccountFlags {
    /// The outcome of this event is linked to the next one in the request.
    pub const LINKED: u16 = 1 << 0;
    /// Debits (pending plus posted) may never exceed posted credits.
    pub const DEBITS_MUST_NOT_EXCEED_CREDITS: u16 = 1 << 1;
    /// Credits (pending plus posted) may never exceed posted debits.
    pub const CREDITS_MUST_NOT_EXCEED_DEBITS: u16 = 1 << 2;
    /// Keep the balance after every transfer for the account's history.
    pub const HISTORY: u16 = 1 << 3;
    /// The account refuses new transfers (set by a closing transfer or at creation).
    pub const CLOSED: u16 = 1 << 5;
    /// Every bit obol knows; any other bit is `reserved_flag`.
    pub const KNOWN: u16 = Self::LINKED
        | Self::DEBITS_MUST_NOT_EXCEED_CREDITS
        | Self::CREDITS_MUST_NOT_EXCEED_DEBITS
        | Self::HISTORY
        | Self::CLOSED;
    /// The names used on the wire, in bit order.
    pub const NAMES: [(&'static str, u16); 5] = [
        ("linked", Self::LINKED),
        ("debits_must_not_exceed_credits", Self::DEBITS_MUST_NOT_EXCEED_CREDITS),
        ("credits_must_not_exceed_debits", Self::CREDITS_MUST_NOT_EXCEED_DEBITS),
        ("history", Self::HISTORY),
        ("closed", Self::CLOSED),
    ];

    /// Whether `bit` is set.
    pub fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
}

/// Transfer flag bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug)]
pub struct TransferFlags(pub u16);

impl TransferFlags {
    /// The outcome of this event is linked to the next one in the request.
    pub const LINKED: u16 = 1 << 0;
    /// Reserve the amount (two-phase); post or void it later.
    pub const PENDING: u16 = 1 << 1;
    /// Post (all or part of) the pending transfer named by `pending_id`.
    pub const POST_PENDING: u16 = 1 << 2;
    /// Void the pending transfer named by `pending_id`.
    pub const VOID_PENDING: u16 = 1 << 3;
    /// Move at most `amount`, less if the debit account's limit requires.
    pub const BALANCING_DEBIT: u16 = 1 << 4;
    /// Move at most `amount`, less if the credit account's limit requires.
    pub const BALANCING_CREDIT: u16 = 1 << 5;
    /// Close the debit account (pending transfers only; voiding reopens it).
    pub const CLOSING_DEBIT: u16 = 1 << 6;
    /// Close the credit account (pending transfers only; voiding reopens it).
    pub const CLOSING_CREDIT: u16 = 1 << 7;
    /// Every bit obol knows; any other bit is `reserved_flag`.
    pub const KNOWN: u16 = Self::LINKED
        | Self::PENDING
        | Self::POST_PENDING
        | Self::VOID_PENDING
        | Self::BALANCING_DEBIT
        | Self::BALANCING_CREDIT
        | Self::CLOSING_DEBIT
        | Self::CLOSING_CREDIT;
    /// The names used on the wire, in bit order.
    pub const NAMES: [(&'static str, u16); 8] = [
        ("linked", Self::LINKED),
        ("pending", Self::PENDING),
        ("post_pending", Self::POST_PENDING),
        ("void_pending", Self::VOID_PENDING),
        ("balancing_debit", Self::BALANCING_DEBIT),
        ("balancing_credit", Self::BALANCING_CREDIT),
        ("closing_debit", Self::CLOSING_DEBIT),
        ("closing_credit", Self::CLOSING_CREDIT),
    ];

    /// Whether `bit` is set.
    pub fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }

    /// Whether this transfer posts or voids an earlier pending transfer.
    pub fn resolves_pending(self) -> bool {
        self.has(Self::POST_PENDING) || self.has(Self::VOID_PENDING)
    }
}

/// An account as a client asks for it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NewAccount {
    /// Client-chosen id, unique, not 0 or 2^128-1.
    pub id: u128,
    /// The principal who owns the account (0: the platform itself).
    pub owner_id: u128,
    /// Opaque client data (e.g. an external id).
    pub user_data_128: u128,
    /// Opaque client data.
    pub user_data_64: u64,
    /// Opaque client data.
    pub user_data_32: u32,
    /// What the account holds.
    pub asset: Asset,
    /// Client-defined account kind, not zero.
    pub code: u16,
    /// [`AccountFlags`] bits.
    pub flags: AccountFlags,
}

/// The balances of an account at some moment.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct Balances {
    /// Reserved by pending transfers that debit this account.
    pub debits_pending: u128,
    /// Posted debits.
    pub debits_posted: u128,
    /// Reserved by pending transfers that credit this account.
    pub credits_pending: u128,
    /// Posted credits.
    pub credits_posted: u128,
}

/// A stored account.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Account {
    /// Unique id.
    pub id: u128,
    /// The principal who owns the account (0: the platform itself).
    pub owner_id: u128,
    /// Opaque client data.
    pub user_data_128: u128,
    /// Opaque client data.
    pub user_data_64: u64,
    /// Opaque client data.
    pub user_data_32: u32,
    /// What the account holds.
    pub asset: Asset,
    /// Client-defined account kind.
    pub code: u16,
    /// [`AccountFlags`] bits; `CLOSED` changes over the account's life.
    pub flags: AccountFlags,
    /// Current balances.
    pub balances: Balances,
    /// Ledger time of creation, ns, unique across accounts and transfers.
    pub timestamp: u64,
}

/// A transfer as a client asks for it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct NewTransfer {
    /// Client-chosen id, unique, not 0 or 2^128-1.
    pub id: u128,
    /// Account to debit (0 on post/void: take the pending transfer's).
    pub debit_account_id: u128,
    /// Account to credit (0 on post/void: take the pending transfer's).
    pub credit_account_id: u128,
    /// Units of the asset to move (see [`AMOUNT_MAX`] for post and balancing).
    pub amount: u128,
    /// The pending transfer a post or void resolves, else 0.
    pub pending_id: u128,
    /// Opaque client data.
    pub user_data_128: u128,
    /// Opaque client data.
    pub user_data_64: u64,
    /// Opaque client data.
    pub user_data_32: u32,
    /// Seconds after creation when a pending transfer expires; 0 means never.
    pub timeout_s: u32,
    /// What moves; `None` only on post/void (take the pending transfer's).
    pub asset: Option<Asset>,
    /// Client-defined reason, not zero (0 on post/void: take the pending transfer's).
    pub code: u16,
    /// [`TransferFlags`] bits.
    pub flags: TransferFlags,
}

/// A stored transfer: immutable once created.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Transfer {
    /// Unique id.
    pub id: u128,
    /// Debited account.
    pub debit_account_id: u128,
    /// Credited account.
    pub credit_account_id: u128,
    /// Units moved (for post: units posted; for balancing: units actually moved).
    pub amount: u128,
    /// The pending transfer this resolves, else 0.
    pub pending_id: u128,
    /// Opaque client data.
    pub user_data_128: u128,
    /// Opaque client data.
    pub user_data_64: u64,
    /// Opaque client data.
    pub user_data_32: u32,
    /// Seconds after creation when a pending transfer expires; 0 means never.
    pub timeout_s: u32,
    /// What moved.
    pub asset: Asset,
    /// Client-defined reason.
    pub code: u16,
    /// [`TransferFlags`] bits.
    pub flags: TransferFlags,
    /// Ledger time of creation, ns, unique across accounts and transfers.
    pub timestamp: u64,
}

/// Where a pending transfer stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PendingStatus {
    /// Still reserved.
    Pending,
    /// Posted by a later transfer.
    Posted,
    /// Voided by a later transfer.
    Voided,
    /// Released because its timeout passed.
    Expired,
}

impl PendingStatus {
    /// Stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            PendingStatus::Pending => "pending",
            PendingStatus::Posted => "posted",
            PendingStatus::Voided => "voided",
            PendingStatus::Expired => "expired",
        }
    }
}

macro_rules! result_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        #[repr(u16)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $code,)*
        }

        impl $name {
            /// Every variant, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The stable machine code, as on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            /// The numeric code, as in the binary log.
            pub fn code(self) -> u16 {
                self as u16
            }

            /// The variant with numeric code `code`.
            pub fn from_code(code: u16) -> Option<$name> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }

            /// Whether the event took effect now (`Ok`) or already had (`Exists`).
            pub fn is_success(self) -> bool {
                matches!(self, $name::Ok | $name::Exists)
            }
        }
    };
}

result_enum! {
    /// The result of one create-account event, in TigerBeetle's order of precedence.
    CreateAccountResult {
        /// Created.
        Ok = 0 => "ok",
        /// Another event in the linked chain failed, so this one was not applied.
        LinkedEventFailed = 1 => "linked_event_failed",
        /// The last event of the request has the `linked` flag.
        LinkedEventChainOpen = 2 => "linked_event_chain_open",
        /// A flag bit obol does not know is set.
        ReservedFlag = 3 => "reserved_flag",
        /// Id 0 is reserved.
        IdMustNotBeZero = 4 => "id_must_not_be_zero",
        /// Id 2^128-1 is reserved.
        IdMustNotBeIntMax = 5 => "id_must_not_be_int_max",
        /// `debits_must_not_exceed_credits` and `credits_must_not_exceed_debits` together.
        FlagsAreMutuallyExclusive = 6 => "flags_are_mutually_exclusive",
        /// Code 0 is reserved.
        CodeMustNotBeZero = 7 => "code_must_not_be_zero",
        /// An account with this id exists with other flags.
        ExistsWithDifferentFlags = 8 => "exists_with_different_flags",
        /// An account with this id exists with other user_data_128.
        ExistsWithDifferentUserData128 = 9 => "exists_with_different_user_data_128",
        /// An account with this id exists with other user_data_64.
        ExistsWithDifferentUserData64 = 10 => "exists_with_different_user_data_64",
        /// An account with this id exists with other user_data_32.
        ExistsWithDifferentUserData32 = 11 => "exists_with_different_user_data_32",
        /// An account with this id exists with another asset.
        ExistsWithDifferentAsset = 12 => "exists_with_different_asset",
        /// An account with this id exists with another code.
        ExistsWithDifferentCode = 13 => "exists_with_different_code",
        /// An identical account exists: the request already took effect.
        Exists = 14 => "exists",
        /// An account with this id exists with another owner.
        ExistsWithDifferentOwner = 15 => "exists_with_different_owner",
    }
}

result_enum! {
    /// The result of one create-transfer event, in TigerBeetle's order of precedence.
    CreateTransferResult {
        /// Created.
        Ok = 0 => "ok",
        /// Another event in the linked chain failed, so this one was not applied.
        LinkedEventFailed = 1 => "linked_event_failed",
        /// The last event of the request has the `linked` flag.
        LinkedEventChainOpen = 2 => "linked_event_chain_open",
        /// A flag bit obol does not know is set.
        ReservedFlag = 3 => "reserved_flag",
        /// Id 0 is reserved.
        IdMustNotBeZero = 4 => "id_must_not_be_zero",
        /// Id 2^128-1 is reserved.
        IdMustNotBeIntMax = 5 => "id_must_not_be_int_max",
        /// The flags combine things that exclude each other (e.g. pending and post_pending).
        FlagsAreMutuallyExclusive = 6 => "flags_are_mutually_exclusive",
        /// Debit account id 0 is reserved.
        DebitAccountIdMustNotBeZero = 7 => "debit_account_id_must_not_be_zero",
        /// Debit account id 2^128-1 is reserved.
        DebitAccountIdMustNotBeIntMax = 8 => "debit_account_id_must_not_be_int_max",
        /// Credit account id 0 is reserved.
        CreditAccountIdMustNotBeZero = 9 => "credit_account_id_must_not_be_zero",
        /// Credit account id 2^128-1 is reserved.
        CreditAccountIdMustNotBeIntMax = 10 => "credit_account_id_must_not_be_int_max",
        /// An account cannot pay itself.
        AccountsMustBeDifferent = 11 => "accounts_must_be_different",
        /// Only post/void transfers name a pending transfer.
        PendingIdMustBeZero = 12 => "pending_id_must_be_zero",
        /// Post/void transfers must name a pending transfer.
        PendingIdMustNotBeZero = 13 => "pending_id_must_not_be_zero",
        /// Pending id 2^128-1 is reserved.
        PendingIdMustNotBeIntMax = 14 => "pending_id_must_not_be_int_max",
        /// A transfer cannot resolve itself.
        PendingIdMustBeDifferent = 15 => "pending_id_must_be_different",
        /// Only pending transfers have a timeout.
        TimeoutReservedForPendingTransfer = 16 => "timeout_reserved_for_pending_transfer",
        /// Closing flags need the pending flag.
        ClosingTransferMustBePending = 17 => "closing_transfer_must_be_pending",
        /// The asset must be given (except on post/void).
        AssetMustBeSet = 18 => "asset_must_be_set",
        /// Code 0 is reserved (except on post/void).
        CodeMustNotBeZero = 19 => "code_must_not_be_zero",
        /// A transfer with this id exists with other flags.
        ExistsWithDifferentFlags = 20 => "exists_with_different_flags",
        /// A transfer with this id exists with another debit account.
        ExistsWithDifferentDebitAccountId = 21 => "exists_with_different_debit_account_id",
        /// A transfer with this id exists with another credit account.
        ExistsWithDifferentCreditAccountId = 22 => "exists_with_different_credit_account_id",
        /// A transfer with this id exists with another amount.
        ExistsWithDifferentAmount = 23 => "exists_with_different_amount",
        /// A transfer with this id exists with another pending id.
        ExistsWithDifferentPendingId = 24 => "exists_with_different_pending_id",
        /// A transfer with this id exists with other user_data_128.
        ExistsWithDifferentUserData128 = 25 => "exists_with_different_user_data_128",
        /// A transfer with this id exists with other user_data_64.
        ExistsWithDifferentUserData64 = 26 => "exists_with_different_user_data_64",
        /// A transfer with this id exists with other user_data_32.
        ExistsWithDifferentUserData32 = 27 => "exists_with_different_user_data_32",
        /// A transfer with this id exists with another timeout.
        ExistsWithDifferentTimeout = 28 => "exists_with_different_timeout",
        /// A transfer with this id exists with another asset.
        ExistsWithDifferentAsset = 29 => "exists_with_different_asset",
        /// A transfer with this id exists with another code.
        ExistsWithDifferentCode = 30 => "exists_with_different_code",
        /// An identical transfer exists: the request already took effect.
        Exists = 31 => "exists",
        /// The debit account does not exist.
        DebitAccountNotFound = 32 => "debit_account_not_found",
        /// The credit account does not exist.
        CreditAccountNotFound = 33 => "credit_account_not_found",
        /// The two accounts hold different assets.
        AccountsMustHaveTheSameAsset = 34 => "accounts_must_have_the_same_asset",
        /// The transfer's asset is not the accounts' asset.
        TransferMustHaveTheSameAssetAsAccounts = 35 => "transfer_must_have_the_same_asset_as_accounts",
        /// No transfer has the pending id.
        PendingTransferNotFound = 36 => "pending_transfer_not_found",
        /// The transfer named by pending_id is not a pending transfer.
        PendingTransferNotPending = 37 => "pending_transfer_not_pending",
        /// The pending transfer debits another account.
        PendingTransferHasDifferentDebitAccountId = 38 => "pending_transfer_has_different_debit_account_id",
        /// The pending transfer credits another account.
        PendingTransferHasDifferentCreditAccountId = 39 => "pending_transfer_has_different_credit_account_id",
        /// The pending transfer moves another asset.
        PendingTransferHasDifferentAsset = 40 => "pending_transfer_has_different_asset",
        /// The pending transfer has another code.
        PendingTransferHasDifferentCode = 41 => "pending_transfer_has_different_code",
        /// A post may not exceed the pending amount.
        ExceedsPendingTransferAmount = 42 => "exceeds_pending_transfer_amount",
        /// A void must name the pending amount exactly (or 0).
        PendingTransferHasDifferentAmount = 43 => "pending_transfer_has_different_amount",
        /// The pending transfer was already posted.
        PendingTransferAlreadyPosted = 44 => "pending_transfer_already_posted",
        /// The pending transfer was already voided.
        PendingTransferAlreadyVoided = 45 => "pending_transfer_already_voided",
        /// The pending transfer's timeout has passed.
        PendingTransferExpired = 46 => "pending_transfer_expired",
        /// The debit account is closed.
        DebitAccountAlreadyClosed = 47 => "debit_account_already_closed",
        /// The credit account is closed.
        CreditAccountAlreadyClosed = 48 => "credit_account_already_closed",
        /// debits_pending would overflow 128 bits.
        OverflowsDebitsPending = 49 => "overflows_debits_pending",
        /// credits_pending would overflow 128 bits.
        OverflowsCreditsPending = 50 => "overflows_credits_pending",
        /// debits_posted would overflow 128 bits.
        OverflowsDebitsPosted = 51 => "overflows_debits_posted",
        /// credits_posted would overflow 128 bits.
        OverflowsCreditsPosted = 52 => "overflows_credits_posted",
        /// debits_pending + debits_posted would overflow 128 bits.
        OverflowsDebits = 53 => "overflows_debits",
        /// credits_pending + credits_posted would overflow 128 bits.
        OverflowsCredits = 54 => "overflows_credits",
        /// The expiry time would overflow 64-bit nanoseconds.
        OverflowsTimeout = 55 => "overflows_timeout",
        /// The debit account's debits would exceed its credits.
        ExceedsCredits = 56 => "exceeds_credits",
        /// The credit account's credits would exceed its debits.
        ExceedsDebits = 57 => "exceeds_debits",
        /// The code is the one tab escrows and settlements carry; only tab commands use it.
        CodeReservedForTabs = 58 => "code_reserved_for_tabs",
        /// The pending transfer is a tab's escrow: only the tab's own commands (top-up, settle)
        /// post or void it.
        PendingTransferBelongsToTab = 59 => "pending_transfer_belongs_to_tab",
        /// The payments do not fit the signing device's limits (asset, per payment, what is
        /// left of the UTC day), or the device is not active: nothing was applied.
        DeviceLimitExceeded = 60 => "device_limit_exceeded",
        /// The code is the one dispute holds, credits and reversals carry: only a dispute's own
        /// steps (`Op::Dispute`) use it, and they use no other.
        CodeReservedForDisputes = 61 => "code_reserved_for_disputes",
        /// The pending transfer is a dispute's hold: only the dispute's own steps post or void it.
        PendingTransferBelongsToDispute = 62 => "pending_transfer_belongs_to_dispute",
        /// The paying account's holder froze its payments (all of them, or the signing
        /// device's): nothing was applied.
        PayerFrozen = 63 => "payer_frozen",
    }
}

//! Wire shapes (DTOs) and their conversion to and from core types.
//!
//! Ids, amounts and 64-bit integers travel as decimal strings (JSON numbers lose precision above
//! 2^53); assets as `asset_code` + `asset_scale` (Open Payments' assetCode/assetScale); flags as
//! arrays of names. Unknown fields are refused.

use obol_core::ledger::{
    AMOUNT_MAX, Account, AccountFlags, Balances, HistoryEntry, NewAccount, NewTransfer, PendingStatus, Transfer,
    TransferFlags,
};
use obol_core::money::{Amount, Asset, MoneyError, parse_digits};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use obol_app::Error;

/// A request to create an account.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct AccountNew {
    /// Client-chosen id: decimal string, 1 to 2^128-2. Re-sending the same account is harmless.
    #[schema(example = "1001")]
    pub id: String,
    /// ISO 4217 currency code.
    #[schema(example = "EUR")]
    pub asset_code: String,
    /// Decimal places below one currency unit; at least the currency's minor unit, at most 18.
    #[schema(example = 2)]
    pub asset_scale: u8,
    /// Client-defined account kind (default 1).
    #[serde(default)]
    pub code: Option<u16>,
    /// The owning holder or merchant (operators only; others always own what they create).
    #[serde(default)]
    pub owner_id: Option<String>,
    /// Any of `linked`, `debits_must_not_exceed_credits`, `credits_must_not_exceed_debits`,
    /// `history`, `closed`.
    #[serde(default)]
    pub flags: Vec<String>,
    /// Opaque client data, decimal u128 string.
    #[serde(default)]
    pub user_data_128: Option<String>,
    /// Opaque client data, decimal u64 string.
    #[serde(default)]
    pub user_data_64: Option<String>,
    /// Opaque client data.
    #[serde(default)]
    pub user_data_32: Option<u32>,
}

/// A request to create a transfer.
#[derive(Deserialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct TransferNew {
    /// Client-chosen id: decimal string, 1 to 2^128-2. Re-sending the same transfer is harmless.
    #[schema(example = "5001")]
    pub id: String,
    /// Account to debit (omit on post/void).
    #[serde(default)]
    pub debit_account_id: Option<String>,
    /// Account to credit (omit on post/void).
    #[serde(default)]
    pub credit_account_id: Option<String>,
    /// Units of 10^-asset_scale to move, decimal string. Optional on post (all of the pending
    /// amount), void, and balancing transfers (as much as allowed).
    #[serde(default)]
    #[schema(example = "250")]
    pub amount: Option<String>,
    /// The pending transfer a post or void resolves.
    #[serde(default)]
    pub pending_id: Option<String>,
    /// ISO 4217 code; must match both accounts (omit on post/void).
    #[serde(default)]
    pub asset_code: Option<String>,
    /// Scale; must match both accounts (omit on post/void).
    #[serde(default)]
    pub asset_scale: Option<u8>,
    /// Client-defined reason (default 1; omit on post/void).
    #[serde(default)]
    pub code: Option<u16>,
    /// Seconds until a pending transfer expires (0 or absent: never).
    #[serde(default)]
    pub timeout_s: Option<u32>,
    /// Any of `linked`, `pending`, `post_pending`, `void_pending`, `balancing_debit`,
    /// `balancing_credit`, `closing_debit`, `closing_credit`.
    #[serde(default)]
    pub flags: Vec<String>,
    /// Opaque client data, decimal u128 string.
    #[serde(default)]
    pub user_data_128: Option<String>,
    /// Opaque client data, decimal u64 string.
    #[serde(default)]
    pub user_data_64: Option<String>,
    /// Opaque client data.
    #[serde(default)]
    pub user_data_32: Option<u32>,
}

/// A batch of accounts.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct AccountBatch {
    /// 1 to 8,190 accounts, applied in order.
    pub accounts: Vec<AccountNew>,
}

/// A batch of transfers.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(deny_unknown_fields)]
pub struct TransferBatch {
    /// 1 to 8,190 transfers, applied in order; `linked` joins an event to the next.
    pub transfers: Vec<TransferNew>,
}

/// The result of one event in a batch.
#[derive(Serialize, ToSchema, Debug)]
pub struct EventResult {
    /// Position in the request.
    pub index: usize,
    /// The event's id.
    pub id: String,
    /// `ok`, `exists`, or the reason the event was refused.
    pub result: String,
}

/// The results of a batch, one per event, in order.
#[derive(Serialize, ToSchema, Debug)]
pub struct BatchResults {
    /// One result per event.
    pub results: Vec<EventResult>,
}

/// The balances of an account.
#[derive(Serialize, ToSchema, Debug, Clone)]
pub struct BalancesDto {
    /// Reserved by pending debits.
    pub debits_pending: String,
    /// Posted debits.
    pub debits_posted: String,
    /// Reserved by pending credits.
    pub credits_pending: String,
    /// Posted credits.
    pub credits_posted: String,
}

/// A stored account.
#[derive(Serialize, ToSchema, Debug)]
pub struct AccountDto {
    /// Id.
    pub id: String,
    /// ISO 4217 code.
    pub asset_code: String,
    /// Scale.
    pub asset_scale: u8,
    /// Client-defined kind.
    pub code: u16,
    /// The owning principal ("0": the platform).
    pub owner_id: String,
    /// Flag names.
    pub flags: Vec<String>,
    /// Opaque client data.
    pub user_data_128: String,
    /// Opaque client data.
    pub user_data_64: String,
    /// Opaque client data.
    pub user_data_32: u32,
    /// Current balances.
    #[serde(flatten)]
    pub balances: BalancesDto,
    /// Ledger time of creation, ns since the Unix epoch, decimal string.
    pub timestamp: String,
}

/// Net position of an account.
#[derive(Serialize, ToSchema, Debug)]
pub struct BalanceDto {
    /// The account.
    pub account_id: String,
    /// ISO 4217 code.
    pub asset_code: String,
    /// Scale.
    pub asset_scale: u8,
    /// Raw balances.
    #[serde(flatten)]
    pub balances: BalancesDto,
    /// `credit` when posted credits are at least posted debits, else `debit`.
    pub net_side: String,
    /// |credits_posted - debits_posted|.
    pub net_posted: String,
    /// credits_posted - debits_posted - debits_pending when that is not negative, else "0": what
    /// the holder of a liability account can still spend.
    pub available: String,
}

/// A stored transfer.
#[derive(Serialize, ToSchema, Debug)]
pub struct TransferDto {
    /// Id.
    pub id: String,
    /// Debited account.
    pub debit_account_id: String,
    /// Credited account.
    pub credit_account_id: String,
    /// Units moved.
    pub amount: String,
    /// The pending transfer this resolves ("0" if none).
    pub pending_id: String,
    /// ISO 4217 code.
    pub asset_code: String,
    /// Scale.
    pub asset_scale: u8,
    /// Client-defined reason.
    pub code: u16,
    /// Seconds until expiry for a pending transfer (0: never).
    pub timeout_s: u32,
    /// Flag names.
    pub flags: Vec<String>,
    /// Opaque client data.
    pub user_data_128: String,
    /// Opaque client data.
    pub user_data_64: String,
    /// Opaque client data.
    pub user_data_32: u32,
    /// Ledger time of creation, ns since the Unix epoch, decimal string.
    pub timestamp: String,
    /// For pending transfers: `pending`, `posted`, `voided` or `expired`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_status: Option<String>,
}

/// One entry of an account's history.
#[derive(Serialize, ToSchema, Debug)]
pub struct HistoryItem {
    /// The transfer.
    pub transfer: TransferDto,
    /// The account's balances right after it (accounts with the `history` flag only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balances_after: Option<BalancesDto>,
}

/// A page of an account's history, oldest first.
#[derive(Serialize, ToSchema, Debug)]
pub struct HistoryPage {
    /// Up to `limit` entries.
    pub items: Vec<HistoryItem>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Paging parameters for history.
#[derive(Deserialize, IntoParams, Debug)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Cursor from a previous page's `next`.
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

/// Health answer.
#[derive(Serialize, ToSchema, Debug)]
pub struct Health {
    /// `ok`, or why not.
    pub status: String,
}

pub(crate) fn id_field(field: &str, text: &str) -> Result<u128, Error> {
    parse_digits(text).map_err(|error| Error::InvalidId {
        field: field.into(),
        reason: match error {
            MoneyError::AmountOverflow { bits } => format!("{text:?} does not fit in {bits} bits"),
            _ => format!("{text:?} is not digits only (no sign, point, spaces or leading zeros)"),
        },
    })
}

fn optional_id(field: &str, text: &Option<String>) -> Result<u128, Error> {
    text.as_deref().map_or(Ok(0), |text| id_field(field, text))
}

fn user_data_64(text: &Option<String>) -> Result<u64, Error> {
    let value = optional_id("user_data_64", text)?;
    u64::try_from(value).map_err(|_| Error::InvalidId {
        field: "user_data_64".into(),
        reason: MoneyError::AmountOverflow { bits: 64 }.to_string(),
    })
}

/// Parses a path id.
pub fn path_id(text: &str) -> Result<u128, Error> {
    id_field("id", text)
}

fn asset(code: &str, scale: u8) -> Result<Asset, Error> {
    Asset::parse(code, scale).map_err(|error| Error::InvalidAsset(error.to_string()))
}

fn flag_bits(names: &[String], table: &[(&str, u16)]) -> Result<u16, Error> {
    let mut bits = 0;
    for name in names {
        let (_, bit) = table.iter().find(|(known, _)| known == name).ok_or_else(|| Error::InvalidFlag(name.clone()))?;
        bits |= bit;
    }
    Ok(bits)
}

fn flag_names(bits: u16, table: &[(&str, u16)]) -> Vec<String> {
    table.iter().filter(|(_, bit)| bits & bit != 0).map(|(name, _)| (*name).to_string()).collect()
}

impl AccountNew {
    /// Checks the syntax and builds the core event; the ledger checks the rest.
    pub fn to_core(&self) -> Result<NewAccount, Error> {
        Ok(NewAccount {
            owner_id: optional_id("owner_id", &self.owner_id)?,
            id: id_field("id", &self.id)?,
            user_data_128: optional_id("user_data_128", &self.user_data_128)?,
            user_data_64: user_data_64(&self.user_data_64)?,
            user_data_32: self.user_data_32.unwrap_or(0),
            asset: asset(&self.asset_code, self.asset_scale)?,
            code: self.code.unwrap_or(1),
            flags: AccountFlags(flag_bits(&self.flags, &AccountFlags::NAMES)?),
        })
    }
}

impl TransferNew {
    /// Checks the syntax and builds the core event; the ledger checks the rest.
    pub fn to_core(&self) -> Result<NewTransfer, Error> {
        let flags = TransferFlags(flag_bits(&self.flags, &TransferFlags::NAMES)?);
        let resolves = flags.resolves_pending();
        let amount = match &self.amount {
            Some(text) => {
                Amount::parse(text)
                    .map_err(|error| Error::InvalidAmount { field: "amount".into(), reason: error.to_string() })?
                    .0
            }
            None if flags.has(TransferFlags::POST_PENDING) => AMOUNT_MAX,
            None if flags.has(TransferFlags::VOID_PENDING) => 0,
            None if flags.has(TransferFlags::BALANCING_DEBIT) || flags.has(TransferFlags::BALANCING_CREDIT) => {
                AMOUNT_MAX
            }
            None => {
                return Err(Error::InvalidAmount {
                    field: "amount".into(),
                    reason: "amount is required (a decimal string of minor units)".into(),
                });
            }
        };
        let asset = match (&self.asset_code, self.asset_scale) {
            (Some(code), Some(scale)) => Some(asset(code, scale)?),
            (None, None) => None,
            _ => return Err(Error::InvalidAsset("asset_code and asset_scale go together".into())),
        };
        Ok(NewTransfer {
            id: id_field("id", &self.id)?,
            debit_account_id: optional_id("debit_account_id", &self.debit_account_id)?,
            credit_account_id: optional_id("credit_account_id", &self.credit_account_id)?,
            amount,
            pending_id: optional_id("pending_id", &self.pending_id)?,
            user_data_128: optional_id("user_data_128", &self.user_data_128)?,
            user_data_64: user_data_64(&self.user_data_64)?,
            user_data_32: self.user_data_32.unwrap_or(0),
            timeout_s: self.timeout_s.unwrap_or(0),
            asset,
            code: self.code.unwrap_or(if resolves { 0 } else { 1 }),
            flags,
        })
    }
}

impl From<&Balances> for BalancesDto {
    fn from(b: &Balances) -> BalancesDto {
        BalancesDto {
            debits_pending: b.debits_pending.to_string(),
            debits_posted: b.debits_posted.to_string(),
            credits_pending: b.credits_pending.to_string(),
            credits_posted: b.credits_posted.to_string(),
        }
    }
}

impl From<&Account> for AccountDto {
    fn from(a: &Account) -> AccountDto {
        AccountDto {
            id: a.id.to_string(),
            asset_code: a.asset.code().to_string(),
            asset_scale: a.asset.scale(),
            code: a.code,
            owner_id: a.owner_id.to_string(),
            flags: flag_names(a.flags.0, &AccountFlags::NAMES),
            user_data_128: a.user_data_128.to_string(),
            user_data_64: a.user_data_64.to_string(),
            user_data_32: a.user_data_32,
            balances: (&a.balances).into(),
            timestamp: a.timestamp.to_string(),
        }
    }
}

impl From<&Account> for BalanceDto {
    fn from(a: &Account) -> BalanceDto {
        let b = &a.balances;
        let (net_side, net_posted) = if b.credits_posted >= b.debits_posted {
            ("credit", b.credits_posted - b.debits_posted)
        } else {
            ("debit", b.debits_posted - b.credits_posted)
        };
        let available = b.credits_posted.saturating_sub(b.debits_posted).saturating_sub(b.debits_pending);
        BalanceDto {
            account_id: a.id.to_string(),
            asset_code: a.asset.code().to_string(),
            asset_scale: a.asset.scale(),
            balances: b.into(),
            net_side: net_side.into(),
            net_posted: net_posted.to_string(),
            available: available.to_string(),
        }
    }
}

/// Renders a transfer with the status of the pending transfer it is, if it is one.
pub fn transfer_dto(t: &Transfer, pending_status: Option<PendingStatus>) -> TransferDto {
    TransferDto {
        id: t.id.to_string(),
        debit_account_id: t.debit_account_id.to_string(),
        credit_account_id: t.credit_account_id.to_string(),
        amount: t.amount.to_string(),
        pending_id: t.pending_id.to_string(),
        asset_code: t.asset.code().to_string(),
        asset_scale: t.asset.scale(),
        code: t.code,
        timeout_s: t.timeout_s,
        flags: flag_names(t.flags.0, &TransferFlags::NAMES),
        user_data_128: t.user_data_128.to_string(),
        user_data_64: t.user_data_64.to_string(),
        user_data_32: t.user_data_32,
        timestamp: t.timestamp.to_string(),
        pending_status: pending_status.map(|s| s.as_str().to_string()),
    }
}

/// Renders a history entry.
pub fn history_item(entry: &HistoryEntry, pending_status: Option<PendingStatus>) -> HistoryItem {
    HistoryItem {
        transfer: transfer_dto(&entry.transfer, pending_status),
        balances_after: entry.balances.as_ref().map(BalancesDto::from),
    }
}

/// Renders batch results: one stable result code per event id, in order.
pub fn batch_results<'a>(ids: &[u128], codes: impl Iterator<Item = &'a str>) -> BatchResults {
    BatchResults {
        results: ids
            .iter()
            .zip(codes)
            .enumerate()
            .map(|(index, (id, result))| EventResult { index, id: id.to_string(), result: result.into() })
            .collect(),
    }
}

/// An assertion for a step-up challenge.
#[derive(Deserialize, ToSchema, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PasskeyAssertion {
    /// From `POST /v1/challenges/{id}/passkey`.
    pub ceremony_id: String,
    /// The `PublicKeyCredential` from `navigator.credentials.get`, as WebAuthn JSON.
    #[schema(value_type = Object)]
    pub credential: serde_json::Value,
}

/// A decimal id in a query parameter, if given.
pub fn query_id(name: &str, text: Option<&str>) -> Result<Option<u128>, Error> {
    text.map(|text| id_field(name, text).map_err(|_| Error::InvalidQuery(format!("{name} must be a decimal id"))))
        .transpose()
}

/// A decimal number in a query parameter (a time in ns, an amount in minor units), if given.
pub fn query_number<T: std::str::FromStr>(name: &str, text: Option<&str>) -> Result<Option<T>, Error> {
    text.map(|text| {
        Some(text)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| Error::InvalidQuery(format!("{name} must be a non-negative decimal integer")))
    })
    .transpose()
}

/// An asset in a query parameter, as `CODE/SCALE` (`USD/2`), if given.
pub fn query_asset(text: Option<&str>) -> Result<Option<Asset>, Error> {
    text.map(|text| {
        let (code, scale) =
            text.split_once('/').ok_or_else(|| Error::InvalidQuery("asset must be CODE/SCALE, e.g. USD/2".into()))?;
        let scale = scale.parse::<u8>().map_err(|_| Error::InvalidQuery("asset scale must be 0 to 255".into()))?;
        Asset::parse(code, scale).map_err(|error| Error::InvalidQuery(format!("asset: {error}")))
    })
    .transpose()
}

/// Filters and paging of `GET /v1/accounts`.
#[derive(Deserialize, IntoParams, Debug)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccountListQuery {
    /// Only this owner's accounts (holders and merchants see only their own anyway).
    pub owner: Option<String>,
    /// Only accounts in this asset, as CODE/SCALE (e.g. USD/2).
    pub asset: Option<String>,
    /// Cursor from a previous page's `next`.
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

/// A page of accounts, oldest first.
#[derive(Serialize, ToSchema, Debug)]
pub struct AccountPage {
    /// Up to `limit` accounts.
    pub items: Vec<AccountDto>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Filters and paging of `GET /v1/transfers`.
#[derive(Deserialize, IntoParams, Debug)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TransferListQuery {
    /// Only transfers touching this account (then each item has the account's balances after it).
    /// Holders and merchants see only transfers touching their own accounts.
    pub account: Option<String>,
    /// Only transfers made at or after this time, ns since the Unix epoch.
    pub from_ns: Option<String>,
    /// Only transfers made before this time, ns since the Unix epoch.
    pub to_ns: Option<String>,
    /// Only transfers in this state: `posted`, `pending`, `pending_posted`, `voided` or `expired`.
    pub status: Option<String>,
    /// Only transfers of at least this amount, minor units.
    pub amount_min: Option<String>,
    /// Only transfers of at most this amount, minor units.
    pub amount_max: Option<String>,
    /// `asc` (oldest first, the default) or `desc` (newest first: `after` is then the previous,
    /// newer page's `next`, and the page holds what came before it).
    pub order: Option<String>,
    /// Cursor from a previous page's `next`.
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

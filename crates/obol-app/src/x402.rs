//! Paying with x402 v2: a payment payload checked against the offer it accepts (`verify`: a
//! voucher or PayWord tick into a tab, or a device-signed `exact` authorization of one transfer)
//! and then journaled (`settle`) before the priced resource is served. The same two functions
//! serve a priced route and the facilitator, and `would_settle` decides as `settle` would, dry.
//!
//! Schemes: `obol-voucher` (payload `{voucher}`, whose cumulative amount grows by at least the
//! price), `obol-payword` (payload `{tab, index, word}`: the next words of a committed hash
//! chain, worth at least the price), and `exact` (payload `{from, device, transfer,
//! validBefore, signature}`: a device-signed authorization of one ledger transfer of exactly the
//! price, usable once).

use base64ct::{Base64UrlUnpadded, Encoding};
use obol_core::channel::{ExactAuthorization, TabCommand};
use obol_core::identity::{Role, Scopes, Status};
use obol_core::ledger::{AccountFlags, CreateTransferResult, NewTransfer, TransferFlags};
use obol_core::money::Asset;
use serde::Deserialize;

use crate::auth::{Caller, Via};
use crate::authz::{need_scope, owns};
use crate::error::Error;
use crate::tabs::{check_tick, check_voucher, decode_voucher, decode_word, journal_payment};
use crate::{App, read_ledger};

pub use obol_wire::x402::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VoucherPayload {
    voucher: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PaywordPayload {
    tab: String,
    index: u32,
    word: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ExactPayload {
    from: String,
    device: String,
    transfer: String,
    valid_before: u64,
    signature: String,
}

/// A payment checked against its requirements and ready to journal.
#[derive(Debug)]
pub struct Prepared {
    /// The paying account.
    pub payer: u128,
    /// What to journal.
    kind: PreparedKind,
    /// The price it must cover.
    price: u128,
}

#[derive(Debug)]
pub(crate) enum PreparedKind {
    /// A voucher or tick into a tab (nothing to journal when `stale`).
    Tab { tab_id: u128, command: TabCommand },
    /// A one-off transfer made as the signing device.
    Transfer { caller: Box<Caller>, event: NewTransfer },
}

/// Why a payment was not taken: an obol problem code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Stable code (the problem `code` of the same failure on the API).
    pub code: String,
    /// For people.
    pub detail: String,
}

impl Refusal {
    fn new(code: &str, detail: impl Into<String>) -> Refusal {
        Refusal { code: code.into(), detail: detail.into() }
    }
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Refusal {
        Refusal { code: error.code().into(), detail: error.to_string() }
    }
}

pub(crate) fn parse_u128(field: &str, text: &str) -> Result<u128, Refusal> {
    crate::parse_id("id", text).map_err(|_| Refusal::new("invalid_payload", format!("{field} must be a decimal id")))
}

pub(crate) fn requirement_asset(requirements: &PaymentRequirements) -> Result<Asset, Refusal> {
    let scale = requirements
        .extra
        .get("assetScale")
        .and_then(serde_json::Value::as_u64)
        .and_then(|scale| u8::try_from(scale).ok())
        .ok_or_else(|| Refusal::new("invalid_payment_requirements", "extra.assetScale is missing"))?;
    Asset::parse(&requirements.asset, scale).map_err(|e| Refusal::new("invalid_payment_requirements", e.to_string()))
}

/// Whether the client's `accepted` is this offer: every field equal, and the offer's `extra` a
/// subset of the client's.
pub fn matches_offer(accepted: &PaymentRequirements, offer: &PaymentRequirements) -> bool {
    accepted.scheme == offer.scheme
        && accepted.network == offer.network
        && accepted.amount == offer.amount
        && accepted.asset == offer.asset
        && accepted.pay_to == offer.pay_to
        && accepted.max_timeout_seconds == offer.max_timeout_seconds
        && offer.extra.iter().all(|(key, value)| accepted.extra.get(key) == Some(value))
}

/// The x402 version a payment or request names must be the one obol speaks.
pub fn check_version(x402_version: u32) -> Result<(), Refusal> {
    if x402_version != X402_VERSION {
        return Err(Refusal::new("invalid_x402_version", "obol speaks x402 version 2"));
    }
    Ok(())
}

/// Where a scheme's payload is read from: a parsed JSON value (a facilitator request's body) or
/// the JSON text of a `PAYMENT-SIGNATURE` header.
#[derive(Clone, Copy, Debug)]
pub enum SchemePayload<'a> {
    /// Parsed already.
    Value(&'a serde_json::Value),
    /// JSON text, read once into the scheme's type.
    Text(&'a serde_json::value::RawValue),
}

impl SchemePayload<'_> {
    fn read<T: serde::de::DeserializeOwned>(self) -> Result<T, Refusal> {
        match self {
            SchemePayload::Value(value) => T::deserialize(value),
            SchemePayload::Text(text) => serde_json::from_str(text.get()),
        }
        .map_err(|e| Refusal::new("invalid_payload", e.to_string()))
    }
}

/// Checks a payment against requirements without changing anything: the facilitator's
/// `verify`, and the first half of what a priced route does.
pub async fn verify(
    state: &App,
    payment: &PaymentPayload,
    requirements: &PaymentRequirements,
) -> Result<Prepared, Refusal> {
    check_version(payment.x402_version)?;
    if !matches_offer(&payment.accepted, requirements) {
        return Err(Refusal::new("invalid_payment_requirements", "the payment accepted other terms than these"));
    }
    verify_payload(state, SchemePayload::Value(&payment.payload), requirements).await
}

/// [`verify`] for a payment whose version the caller has checked and whose accepted offer it has
/// matched to `requirements` (a priced route matches the offer itself, by its bytes).
pub async fn verify_payload(
    state: &App,
    payload: SchemePayload<'_>,
    requirements: &PaymentRequirements,
) -> Result<Prepared, Refusal> {
    if requirements.network != state.x402_network.as_ref() {
        return Err(Refusal::new("invalid_network", format!("this server is {}", state.x402_network)));
    }
    let price = obol_core::money::Amount::parse(&requirements.amount)
        .map_err(|e| Refusal::new("invalid_payment_requirements", format!("amount: {e}")))?
        .0;
    let asset = requirement_asset(requirements)?;
    let pay_to = parse_u128("payTo", &requirements.pay_to)?;
    match requirements.scheme.as_str() {
        SCHEME_VOUCHER => {
            let body: VoucherPayload = payload.read()?;
            let voucher = decode_voucher(&body.voucher)?;
            let payer = check_tab_terms(state, voucher.tab_id, pay_to, asset)?;
            let added = check_voucher(state, &voucher)
                .await?
                .ok_or_else(|| Refusal::new("voucher_stale", "an older voucher pays for nothing"))?;
            covers(added, price)?;
            Ok(Prepared {
                payer,
                kind: PreparedKind::Tab { tab_id: voucher.tab_id, command: TabCommand::Voucher(voucher) },
                price,
            })
        }
        SCHEME_PAYWORD => {
            let body: PaywordPayload = payload.read()?;
            let tab_id = parse_u128("tab", &body.tab)?;
            let word = decode_word(&body.word)?;
            let payer = check_tab_terms(state, tab_id, pay_to, asset)?;
            let added = check_tick(state, tab_id, body.index, &word)?
                .ok_or_else(|| Refusal::new("payword_stale", "an older tick pays for nothing"))?;
            covers(added, price)?;
            let command = TabCommand::Tick { tab_id, index: body.index, word };
            Ok(Prepared { payer, kind: PreparedKind::Tab { tab_id, command }, price })
        }
        SCHEME_EXACT => verify_exact(state, payload, price, asset, pay_to),
        other => Err(Refusal::new("unsupported_scheme", format!("obol does not accept scheme {other:?}"))),
    }
}

pub(crate) fn covers(added: u128, price: u128) -> Result<(), Refusal> {
    if added < price {
        return Err(Refusal::new("underpaid", format!("the payment adds {added}; the price is {price}")));
    }
    Ok(())
}

/// The tab pays `pay_to` in `asset`; answers its payer account.
pub(crate) fn check_tab_terms(state: &App, tab_id: u128, pay_to: u128, asset: Asset) -> Result<u128, Refusal> {
    let ledger = read_ledger(state);
    let entry = ledger.tab(tab_id).ok_or(Error::TabNotFound(tab_id))?;
    if entry.tab.payee_id != pay_to {
        return Err(Error::TabRejected(obol_core::channel::PayReject::WrongPayee).into());
    }
    let escrow = ledger.transfer(entry.tab.escrow_transfer_id).ok_or(Error::TabNotFound(tab_id))?;
    if escrow.asset != asset {
        return Err(Refusal::new("asset_mismatch", format!("the tab is in {}, the price in {asset}", escrow.asset)));
    }
    Ok(escrow.debit_account_id)
}

pub(crate) fn verify_exact(
    state: &App,
    payload: SchemePayload<'_>,
    price: u128,
    asset: Asset,
    pay_to: u128,
) -> Result<Prepared, Refusal> {
    let body: ExactPayload = payload.read()?;
    let from = parse_u128("from", &body.from)?;
    let device_id = parse_u128("device", &body.device)?;
    let transfer_id = parse_u128("transfer", &body.transfer)?;
    let signature: [u8; 64] = Base64UrlUnpadded::decode_vec(body.signature.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| Refusal::new("invalid_payload", "signature must be 64 bytes, base64url"))?;
    let now_s = state.env.now_s();
    if body.valid_before <= now_s {
        return Err(Refusal::new("authorization_expired", "validBefore has passed"));
    }
    let authorization = ExactAuthorization {
        network: state.network,
        transfer_id,
        from,
        to: pay_to,
        amount: price,
        asset,
        device_id,
        valid_before_s: body.valid_before,
    };
    let ledger = read_ledger(state);
    // Until the signature verifies, every refusal is the same one: an unsigned client must not
    // learn which devices exist or which accounts they act for.
    let unverified = || Refusal::new("signature_invalid", "the authorization's signature does not verify");
    let device = ledger.identity().device(device_id).ok_or_else(unverified)?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&device.public_key).map_err(|_| unverified())?;
    if !authorization.verify(&key, &signature) {
        return Err(unverified());
    }
    // Signed by the device's key: its holder may learn why it cannot pay.
    if device.status != Status::Active {
        return Err(Refusal::new("tab_device_inactive", "the device may not pay"));
    }
    let holder_active = ledger.identity().principal(device.holder_id).is_some_and(|p| p.status == Status::Active);
    let account = ledger.account(from).filter(|a| a.owner_id == device.holder_id && holder_active);
    let account = account.ok_or_else(|| Refusal::new("forbidden", "the device does not act for that account"))?;
    if ledger.transfer(transfer_id).is_some() {
        return Err(Refusal::new("authorization_used", "this authorization has paid already"));
    }
    let balances = &account.balances;
    if account.flags.has(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
        && balances.credits_posted
            < balances.debits_posted.saturating_add(balances.debits_pending).saturating_add(price)
    {
        return Err(Refusal::new("insufficient_funds", "the account cannot pay that much"));
    }
    let caller = Caller {
        principal_id: device.holder_id,
        role: Role::Holder,
        scopes: Scopes(Scopes::PAY),
        via: Via::Device(device_id),
        peer: None,
    };
    let event = NewTransfer {
        id: transfer_id,
        debit_account_id: from,
        credit_account_id: pay_to,
        amount: price,
        pending_id: 0,
        user_data_128: 0,
        user_data_64: 0,
        user_data_32: 0,
        timeout_s: 0,
        asset: Some(asset),
        code: X402_TRANSFER_CODE,
        flags: TransferFlags(0),
    };
    Ok(Prepared { payer: from, kind: PreparedKind::Transfer { caller: Box::new(caller), event }, price })
}

/// Transfer code of `exact` payments.
pub(crate) const X402_TRANSFER_CODE: u16 = 402;

/// Journals a verified payment: the facilitator's `settle`, and the second half of what a priced
/// route does. Answers once the payment is durable.
pub async fn settle(state: &App, prepared: Prepared) -> Result<SettlementResponse, Refusal> {
    let network = state.x402_network.to_string();
    let payer = Some(prepared.payer.to_string());
    match prepared.kind {
        PreparedKind::Tab { tab_id, command } => {
            let stale_code = match command {
                TabCommand::Tick { .. } => "payword_stale",
                _ => "voucher_stale",
            };
            let (added, stale) = journal_payment(state, command).await?;
            if stale {
                return Err(Refusal::new(stale_code, "a newer payment arrived first; this one pays for nothing"));
            }
            // Only a racing payment of the payer's own can make this short; what it added stays owed.
            covers(added, prepared.price)?;
            let cumulative = read_ledger(state).tab(tab_id).map_or(0, |entry| entry.tab.cumulative);
            Ok(SettlementResponse {
                success: true,
                error_reason: None,
                payer,
                transaction: format!("tab:{tab_id}:{cumulative}"),
                network,
                amount: Some(added.to_string()),
            })
        }
        PreparedKind::Transfer { caller, event } => {
            // A held exact payment was answered 402 (or success: false): approval never takes
            // the money by itself; the payer's retry of the same authorization runs it.
            let on_approval = crate::transfers::OnApproval::AllowRetry;
            let made = crate::transfers::transfer_as(state, &caller, &event, None, on_approval).await;
            let made = made.map_err(|error| match error {
                Error::RequiresAction(_) => Refusal::new(
                    "requires_action",
                    "this payment needs the payer's second factor, which an x402 payment cannot carry: \
                     pay from a tab opened with the approval, or an amount the payer's step-up policy lets through",
                ),
                other => Refusal::from(other),
            })?;
            match made {
                CreateTransferResult::Ok => Ok(SettlementResponse {
                    success: true,
                    error_reason: None,
                    payer,
                    transaction: format!("transfer:{}", event.id),
                    network,
                    amount: Some(event.amount.to_string()),
                }),
                CreateTransferResult::Exists | CreateTransferResult::ExistsWithDifferentAmount => {
                    Err(Refusal::new("authorization_used", "this authorization has paid already"))
                }
                other => Err(Error::TransferRejected(other).into()),
            }
        }
    }
}

/// The settlement answer of a payment that was not taken.
pub fn failed(state: &App, refusal: &Refusal) -> SettlementResponse {
    SettlementResponse {
        success: false,
        error_reason: Some(refusal.code.clone()),
        payer: None,
        transaction: String::new(),
        network: state.x402_network.to_string(),
        amount: None,
    }
}

/// The caller may take payments to `pay_to`: the operator, or the owner of that account.
pub(crate) fn may_collect(state: &App, caller: &Caller, requirements: &PaymentRequirements) -> Result<(), Error> {
    need_scope(caller, Scopes::PAY)?;
    if caller.role == Role::Operator {
        return Ok(());
    }
    let pay_to = crate::parse_id("payTo", &requirements.pay_to)?;
    let ledger = read_ledger(state);
    match ledger.account(pay_to) {
        Some(account) if owns(caller, account) => Ok(()),
        _ => Err(Error::Forbidden(format!("account {pay_to} is not yours to be paid into"))),
    }
}

/// The decision `settle` would make about a verified payment, made dry (nothing held, charged
/// or counted): so `verify` never says valid for a payment `settle` would hold, refuse or pause.
pub(crate) fn would_settle(state: &App, prepared: Prepared) -> Result<Prepared, Refusal> {
    match &prepared.kind {
        PreparedKind::Tab { tab_id, .. } => crate::tabs::not_paused(state, *tab_id)?,
        PreparedKind::Transfer { caller, event } => {
            if let Some(code) = crate::transfers::dry_gate(state, caller, std::slice::from_ref(event))? {
                return Err(Refusal::new(code, "settling would not take this payment now"));
            }
        }
    }
    Ok(prepared)
}

/// A facilitator request's payment, verified against its requirements.
pub(crate) async fn checked(state: &App, body: &FacilitatorRequest) -> Result<Prepared, Refusal> {
    check_version(body.x402_version)?;
    verify(state, &body.payment_payload, &body.payment_requirements).await
}

/// The facilitator's `verify` for a resource server that collects into its own account: would
/// this payment be taken? Changes nothing (it decides as `settle` would, dry).
pub async fn facilitator_verify(
    state: &App,
    caller: &Caller,
    body: &FacilitatorRequest,
) -> Result<VerifyResponse, Error> {
    may_collect(state, caller, &body.payment_requirements)?;
    Ok(match checked(state, body).await.and_then(|prepared| would_settle(state, prepared)) {
        Ok(prepared) => {
            VerifyResponse { is_valid: true, invalid_reason: None, payer: Some(prepared.payer.to_string()) }
        }
        Err(refusal) => VerifyResponse { is_valid: false, invalid_reason: Some(refusal.code), payer: None },
    })
}

/// The facilitator's `settle`: takes the payment, journaled before the answer.
pub async fn facilitator_settle(
    state: &App,
    caller: &Caller,
    body: &FacilitatorRequest,
) -> Result<SettlementResponse, Error> {
    may_collect(state, caller, &body.payment_requirements)?;
    let outcome = match checked(state, body).await {
        Ok(prepared) => settle(state, prepared).await,
        Err(refusal) => Err(refusal),
    };
    Ok(outcome.unwrap_or_else(|refusal| failed(state, &refusal)))
}

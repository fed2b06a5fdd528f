//! HTTP 402 pay-per-request, in the x402 v2 envelope: a priced route answers 402 with a
//! `PAYMENT-REQUIRED` header (base64 JSON offering obol's schemes), the client retries with
//! `PAYMENT-SIGNATURE` (base64 JSON carrying a voucher, a PayWord tick or a signed one-off
//! transfer), and the paid answer carries `PAYMENT-RESPONSE`. [`PaymentLayer`] prices any axum
//! route; the facilitator routes (`/v1/x402/verify`, `/settle`, `/supported`) let a resource
//! server elsewhere accept obol payments.
//!
//! Schemes: `obol-voucher` (payload `{voucher}`: a v1 voucher, base64url, whose cumulative
//! amount grows by at least the price), `obol-payword` (payload `{tab, index, word}`: the next
//! words of a committed hash chain, worth at least the price), and `exact` (payload `{from,
//! device, transfer, validBefore, signature}`: a device-signed authorization of one ledger
//! transfer of exactly the price, usable once). Each payment is journaled before the route runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64ct::{Base64UrlUnpadded, Encoding};
use obol_core::channel::{ExactAuthorization, TabCommand};
use obol_core::identity::{Role, Scopes, Status};
use obol_core::ledger::{AccountFlags, CreateTransferResult, NewTransfer, TransferFlags};
use obol_core::money::Asset;
use serde::Deserialize;

use crate::auth::{Caller, Via};
use crate::authz::{need_scope, owns};
use crate::error::{ApiError, Problem};
use crate::tab_routes::{check_tick, check_voucher, decode_voucher, decode_word, journal_payment};
use crate::{ApiJson, AppState, now_ns, read_ledger};

pub use obol_wire::x402::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VoucherPayload {
    voucher: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PaywordPayload {
    tab: String,
    index: u32,
    word: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExactPayload {
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
enum PreparedKind {
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

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Refusal {
        Refusal { code: error.code().into(), detail: error.to_string() }
    }
}

fn parse_u128(field: &str, text: &str) -> Result<u128, Refusal> {
    crate::dto::path_id(text).map_err(|_| Refusal::new("invalid_payload", format!("{field} must be a decimal id")))
}

fn requirement_asset(requirements: &PaymentRequirements) -> Result<Asset, Refusal> {
    let scale = requirements
        .extra
        .get("assetScale")
        .and_then(serde_json::Value::as_u64)
        .and_then(|scale| u8::try_from(scale).ok())
        .ok_or_else(|| Refusal::new("invalid_payment_requirements", "extra.assetScale is missing"))?;
    Asset::new(&requirements.asset, scale).map_err(|e| Refusal::new("invalid_payment_requirements", e.to_string()))
}

/// Whether the client's `accepted` is this offer: every field equal, and the offer's `extra` a
/// subset of the client's.
fn matches_offer(accepted: &PaymentRequirements, offer: &PaymentRequirements) -> bool {
    accepted.scheme == offer.scheme
        && accepted.network == offer.network
        && accepted.amount == offer.amount
        && accepted.asset == offer.asset
        && accepted.pay_to == offer.pay_to
        && accepted.max_timeout_seconds == offer.max_timeout_seconds
        && offer.extra.iter().all(|(key, value)| accepted.extra.get(key) == Some(value))
}

/// Checks a payment against requirements without changing anything: the facilitator's
/// `verify`, and the first half of what a priced route does.
pub async fn verify(
    state: &AppState,
    payment: &PaymentPayload,
    requirements: &PaymentRequirements,
) -> Result<Prepared, Refusal> {
    if payment.x402_version != X402_VERSION {
        return Err(Refusal::new("invalid_x402_version", "obol speaks x402 version 2"));
    }
    if !matches_offer(&payment.accepted, requirements) {
        return Err(Refusal::new("invalid_payment_requirements", "the payment accepted other terms than these"));
    }
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
            let body = VoucherPayload::deserialize(&payment.payload)
                .map_err(|e| Refusal::new("invalid_payload", e.to_string()))?;
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
            let body = PaywordPayload::deserialize(&payment.payload)
                .map_err(|e| Refusal::new("invalid_payload", e.to_string()))?;
            let tab_id = parse_u128("tab", &body.tab)?;
            let word = decode_word(&body.word)?;
            let payer = check_tab_terms(state, tab_id, pay_to, asset)?;
            let added = check_tick(state, tab_id, body.index, &word)?
                .ok_or_else(|| Refusal::new("payword_stale", "an older tick pays for nothing"))?;
            covers(added, price)?;
            let command = TabCommand::Tick { tab_id, index: body.index, word };
            Ok(Prepared { payer, kind: PreparedKind::Tab { tab_id, command }, price })
        }
        SCHEME_EXACT => verify_exact(state, payment, price, asset, pay_to),
        other => Err(Refusal::new("unsupported_scheme", format!("obol does not accept scheme {other:?}"))),
    }
}

fn covers(added: u128, price: u128) -> Result<(), Refusal> {
    if added < price {
        return Err(Refusal::new("underpaid", format!("the payment adds {added}; the price is {price}")));
    }
    Ok(())
}

/// The tab pays `pay_to` in `asset`; answers its payer account.
fn check_tab_terms(state: &AppState, tab_id: u128, pay_to: u128, asset: Asset) -> Result<u128, Refusal> {
    let ledger = read_ledger(state);
    let entry = ledger.tab(tab_id).ok_or(ApiError::TabNotFound(tab_id))?;
    if entry.tab.payee_id != pay_to {
        return Err(ApiError::TabRejected(obol_core::channel::PayReject::WrongPayee).into());
    }
    let escrow = ledger.transfer(entry.tab.escrow_transfer_id).ok_or(ApiError::TabNotFound(tab_id))?;
    if escrow.asset != asset {
        return Err(Refusal::new("asset_mismatch", format!("the tab is in {}, the price in {asset}", escrow.asset)));
    }
    Ok(escrow.debit_account_id)
}

fn verify_exact(
    state: &AppState,
    payment: &PaymentPayload,
    price: u128,
    asset: Asset,
    pay_to: u128,
) -> Result<Prepared, Refusal> {
    let body =
        ExactPayload::deserialize(&payment.payload).map_err(|e| Refusal::new("invalid_payload", e.to_string()))?;
    let from = parse_u128("from", &body.from)?;
    let device_id = parse_u128("device", &body.device)?;
    let transfer_id = parse_u128("transfer", &body.transfer)?;
    let signature: [u8; 64] = Base64UrlUnpadded::decode_vec(body.signature.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| Refusal::new("invalid_payload", "signature must be 64 bytes, base64url"))?;
    let now_s = now_ns() / 1_000_000_000;
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
    let device = ledger.identity().device(device_id).filter(|d| d.status == Status::Active);
    let device = device.ok_or_else(|| Refusal::new("tab_device_inactive", "the device may not pay"))?;
    let holder_active = ledger.identity().principal(device.holder_id).is_some_and(|p| p.status == Status::Active);
    let account = ledger.account(from).filter(|a| a.owner_id == device.holder_id && holder_active);
    let account = account.ok_or_else(|| Refusal::new("forbidden", "the device does not act for that account"))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&device.public_key)
        .map_err(|_| Refusal::new("tab_device_inactive", "the device key is unusable"))?;
    if !authorization.verify(&key, &signature) {
        return Err(Refusal::new("signature_invalid", "the authorization's signature does not verify"));
    }
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
pub const X402_TRANSFER_CODE: u16 = 402;

/// Journals a verified payment: the facilitator's `settle`, and the second half of what a priced
/// route does. Answers once the payment is durable.
pub async fn settle(state: &AppState, prepared: Prepared) -> Result<SettlementResponse, Refusal> {
    let network = state.x402_network.to_string();
    let payer = Some(prepared.payer.to_string());
    match prepared.kind {
        PreparedKind::Tab { tab_id, command } => {
            let (added, stale) = journal_payment(state, command).await?;
            if stale {
                return Err(Refusal::new("voucher_stale", "a newer payment arrived first; this one pays for nothing"));
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
            let on_approval = crate::ledger_routes::OnApproval::AllowRetry;
            match crate::ledger_routes::transfer_as(state, &caller, &event, None, on_approval).await? {
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
                other => Err(ApiError::TransferRejected(other).into()),
            }
        }
    }
}

fn failed(state: &AppState, refusal: &Refusal) -> SettlementResponse {
    SettlementResponse {
        success: false,
        error_reason: Some(refusal.code.clone()),
        payer: None,
        transaction: String::new(),
        network: state.x402_network.to_string(),
        amount: None,
    }
}

/// A price for a route: what [`PaymentLayer`] asks.
#[derive(Clone, Debug)]
pub struct Price {
    /// Minor units per request.
    pub amount: u128,
    /// The asset.
    pub asset: Asset,
    /// The payee account.
    pub pay_to: u128,
    /// What the resource is.
    pub description: String,
    /// Its media type.
    pub mime_type: String,
    /// Schemes offered, in order of preference.
    pub schemes: Vec<&'static str>,
    /// How long a payment may take, seconds.
    pub max_timeout_seconds: u64,
}

impl Price {
    /// A price offering every obol scheme (vouchers first).
    pub fn new(amount: u128, asset: Asset, pay_to: u128, description: &str) -> Price {
        Price {
            amount,
            asset,
            pay_to,
            description: description.into(),
            mime_type: "application/json".into(),
            schemes: SCHEMES.to_vec(),
            max_timeout_seconds: 60,
        }
    }

    /// Offers only these schemes.
    pub fn with_schemes(mut self, schemes: &[&'static str]) -> Price {
        self.schemes = schemes.to_vec();
        self
    }

    /// The `accepts` list on `network`.
    pub fn requirements(&self, network: &str) -> Vec<PaymentRequirements> {
        let mut extra = serde_json::Map::new();
        extra.insert("assetScale".into(), self.asset.scale().into());
        self.schemes
            .iter()
            .map(|scheme| PaymentRequirements {
                scheme: (*scheme).into(),
                network: network.into(),
                amount: self.amount.to_string(),
                asset: self.asset.code().into(),
                pay_to: self.pay_to.to_string(),
                max_timeout_seconds: self.max_timeout_seconds,
                extra: extra.clone(),
            })
            .collect()
    }
}

/// A tower layer that prices the routes it wraps: unpaid requests get 402 and the offer; paid
/// ones are journaled, then served, with `PAYMENT-RESPONSE` on the answer.
#[derive(Clone)]
pub struct PaymentLayer {
    state: AppState,
    price: Arc<Price>,
    accepts: Arc<Vec<PaymentRequirements>>,
}

impl PaymentLayer {
    /// Prices routes at `price`, paid into the ledger behind `state`.
    pub fn new(state: AppState, price: Price) -> PaymentLayer {
        let accepts = Arc::new(price.requirements(&state.x402_network));
        PaymentLayer { state, price: Arc::new(price), accepts }
    }
}

impl<S> tower::Layer<S> for PaymentLayer {
    type Service = PaymentService<S>;

    fn layer(&self, inner: S) -> PaymentService<S> {
        PaymentService { layer: self.clone(), inner }
    }
}

/// The service [`PaymentLayer`] wraps around a route.
#[derive(Clone)]
pub struct PaymentService<S> {
    layer: PaymentLayer,
    inner: S,
}

impl<S> tower::Service<Request<Body>> for PaymentService<S>
where
    S: tower::Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // Take the service that was polled ready; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            // Only a 402 names the resource: a paid request does not spend time describing it.
            let Some(header_value) = request.headers().get("payment-signature") else {
                let resource = resource_info(&layer, request.headers(), request.uri());
                return Ok(payment_required(
                    &layer,
                    resource,
                    Some("PAYMENT-SIGNATURE header is required".into()),
                    None,
                ));
            };
            let payment: PaymentPayload = match header_value.to_str().map_err(|e| e.to_string()).and_then(decode_header)
            {
                Ok(payment) => payment,
                Err(detail) => {
                    return Ok(ApiError::InvalidField(format!("PAYMENT-SIGNATURE: {detail}")).into_response());
                }
            };
            let Some(offer) = layer.accepts.iter().find(|offer| matches_offer(&payment.accepted, offer)) else {
                let reason = Some("No matching payment requirements".to_string());
                let resource = resource_info(&layer, request.headers(), request.uri());
                return Ok(payment_required(&layer, resource, reason, None));
            };
            let outcome = match verify(&layer.state, &payment, offer).await {
                Ok(prepared) => settle(&layer.state, prepared).await,
                Err(refusal) => Err(refusal),
            };
            match outcome {
                Ok(receipt) => {
                    let mut response = inner.call(request).await?;
                    let headers = response.headers_mut();
                    if let Ok(value) = HeaderValue::from_str(&encode_header(&receipt)) {
                        headers.insert("payment-response", value);
                    }
                    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
                    Ok(response)
                }
                Err(refusal) => {
                    let receipt = failed(&layer.state, &refusal);
                    let reason = format!("{}: {}", refusal.code, refusal.detail);
                    let resource = resource_info(&layer, request.headers(), request.uri());
                    Ok(payment_required(&layer, resource, Some(reason), Some(receipt)))
                }
            }
        })
    }
}

fn resource_info(layer: &PaymentLayer, headers: &HeaderMap, uri: &axum::http::Uri) -> ResourceInfo {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    ResourceInfo {
        url: format!("{}://{host}{path}", layer.state.scheme),
        description: Some(layer.price.description.clone()),
        mime_type: Some(layer.price.mime_type.clone()),
    }
}

fn payment_required(
    layer: &PaymentLayer,
    resource: ResourceInfo,
    error: Option<String>,
    receipt: Option<SettlementResponse>,
) -> Response {
    let offer = PaymentRequired { x402_version: X402_VERSION, error, resource, accepts: layer.accepts.to_vec() };
    let mut response = (StatusCode::PAYMENT_REQUIRED, Json(serde_json::json!({}))).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&encode_header(&offer)) {
        headers.insert("payment-required", value);
    }
    if let Some(receipt) = receipt
        && let Ok(value) = HeaderValue::from_str(&encode_header(&receipt))
    {
        headers.insert("payment-response", value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The caller may take payments to `pay_to`: the operator, or the owner of that account.
fn may_collect(state: &AppState, caller: &Caller, requirements: &PaymentRequirements) -> Result<(), ApiError> {
    need_scope(caller, Scopes::PAY)?;
    if caller.role == Role::Operator {
        return Ok(());
    }
    let pay_to = crate::dto::id_field("payTo", &requirements.pay_to)?;
    let ledger = read_ledger(state);
    match ledger.account(pay_to) {
        Some(account) if owns(caller, account) => Ok(()),
        _ => Err(ApiError::Forbidden(format!("account {pay_to} is not yours to be paid into"))),
    }
}

/// Facilitator: would this payment be taken? Changes nothing.
#[utoipa::path(post, path = "/v1/x402/verify", tag = "x402", request_body = FacilitatorRequest,
    responses((status = 200, body = VerifyResponse), (status = 403, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn facilitator_verify(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<FacilitatorRequest>,
) -> Result<Json<VerifyResponse>, ApiError> {
    may_collect(&state, &caller, &body.payment_requirements)?;
    let answer = match checked(&state, &body).await.and_then(|prepared| would_settle(&state, prepared)) {
        Ok(prepared) => {
            VerifyResponse { is_valid: true, invalid_reason: None, payer: Some(prepared.payer.to_string()) }
        }
        Err(refusal) => VerifyResponse { is_valid: false, invalid_reason: Some(refusal.code), payer: None },
    };
    Ok(Json(answer))
}

/// Facilitator: take this payment (journaled before the answer).
#[utoipa::path(post, path = "/v1/x402/settle", tag = "x402", request_body = FacilitatorRequest,
    responses((status = 200, body = SettlementResponse), (status = 403, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn facilitator_settle(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<FacilitatorRequest>,
) -> Result<Json<SettlementResponse>, ApiError> {
    may_collect(&state, &caller, &body.payment_requirements)?;
    let outcome = match checked(&state, &body).await {
        Ok(prepared) => settle(&state, prepared).await,
        Err(refusal) => Err(refusal),
    };
    Ok(Json(outcome.unwrap_or_else(|refusal| failed(&state, &refusal))))
}

/// The decision `settle` would make about a verified payment, made dry (nothing held, charged
/// or counted): so `verify` never says valid for a payment `settle` would hold, refuse or pause.
fn would_settle(state: &AppState, prepared: Prepared) -> Result<Prepared, Refusal> {
    match &prepared.kind {
        PreparedKind::Tab { tab_id, .. } => crate::tab_routes::not_paused(state, *tab_id)?,
        PreparedKind::Transfer { caller, event } => {
            if let Some(code) = crate::ledger_routes::dry_gate(state, caller, std::slice::from_ref(event))? {
                return Err(Refusal::new(code, "settling would not take this payment now"));
            }
        }
    }
    Ok(prepared)
}

/// A facilitator request's payment, verified against its requirements.
async fn checked(state: &AppState, body: &FacilitatorRequest) -> Result<Prepared, Refusal> {
    if body.x402_version != X402_VERSION {
        return Err(Refusal::new("invalid_x402_version", "obol speaks x402 version 2"));
    }
    verify(state, &body.payment_payload, &body.payment_requirements).await
}

/// Facilitator: the schemes and network this obol accepts (open, no key needed).
#[utoipa::path(get, path = "/v1/x402/supported", tag = "x402", responses((status = 200, body = Supported)))]
pub async fn facilitator_supported(State(state): State<AppState>) -> Json<Supported> {
    let kinds = SCHEMES
        .iter()
        .map(|scheme| SupportedKind {
            x402_version: X402_VERSION,
            scheme: (*scheme).into(),
            network: state.x402_network.to_string(),
        })
        .collect();
    Json(Supported { kinds, extensions: Vec::new(), signers: serde_json::Map::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_tolerate_every_base64_alphabet() {
        let receipt = SettlementResponse {
            success: true,
            error_reason: None,
            payer: Some("7".into()),
            transaction: "tab:1:20".into(),
            network: "obol:test".into(),
            amount: Some("10".into()),
        };
        let encoded = encode_header(&receipt);
        assert!(encoded.len().is_multiple_of(4), "standard padded base64");
        assert_eq!(decode_header::<SettlementResponse>(&encoded), Ok(receipt.clone()));
        let json = serde_json::to_vec(&receipt).unwrap();
        assert_eq!(decode_header::<SettlementResponse>(&Base64UrlUnpadded::encode_string(&json)), Ok(receipt));
        assert!(decode_header::<SettlementResponse>("%%%").is_err());
        assert!(decode_header::<SettlementResponse>(&base64ct::Base64::encode_string(b"{}")).is_err());
        assert!(decode_header::<SettlementResponse>(&"A".repeat(PAYMENT_HEADER_BYTES_MAX + 4)).is_err());
    }

    #[test]
    fn an_offer_matches_only_its_own_terms() {
        let asset = Asset::new("USD", 9).unwrap();
        let offer = &Price::new(1000, asset, 2, "x").requirements("obol:test")[0];
        let mut accepted = offer.clone();
        accepted.extra.insert("more".into(), 1.into());
        assert!(matches_offer(&accepted, offer), "the client may add to extra");
        accepted.amount = "999".into();
        assert!(!matches_offer(&accepted, offer));
        let mut stripped = offer.clone();
        stripped.extra.clear();
        assert!(!matches_offer(&stripped, offer), "the client may not drop the offer's extra");
    }
}

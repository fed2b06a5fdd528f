//! HTTP 402 pay-per-request, in the x402 v2 envelope: [`PaymentLayer`] prices any axum route
//! (a priced route answers 402 with a `PAYMENT-REQUIRED` header offering obol's schemes, the
//! client retries with `PAYMENT-SIGNATURE`, and the paid answer carries `PAYMENT-RESPONSE`),
//! and the facilitator routes (`/v1/x402/verify`, `/settle`, `/supported`) let a resource server
//! elsewhere accept obol payments. Verifying and journaling a payment is `obol_app::x402`'s.

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
use obol_core::money::Asset;

use crate::error::{ApiError, Error, Problem};
use crate::{ApiJson, AppState};
use obol_app::auth::Caller;
use obol_app::x402::*;

pub use obol_wire::x402::*;

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
    // One allocation shared by every request the layer serves: a request clones one `Arc`, not
    // the server's state.
    shared: Arc<Priced>,
}

struct Priced {
    state: AppState,
    price: Price,
    /// Where the route's paid requests are counted (`GET /v1/x402/routes`).
    route: Arc<obol_app::priced::PricedRoute>,
    accepts: Vec<PaymentRequirements>,
    /// Each offer's JSON text as clients echo it back: in the order it was sent (what a client
    /// that keeps the parsed object's order sends) and with its keys sorted (what a client that
    /// rebuilds it as a map sends). A payment whose `accepted` is one of these byte for byte is
    /// that offer, without parsing it.
    accepts_text: Vec<[String; 2]>,
}

/// Each offer's two JSON texts (see `Priced::accepts_text`).
fn offer_texts(accepts: &[PaymentRequirements]) -> Vec<[String; 2]> {
    accepts
        .iter()
        .map(|offer| {
            let sent = serde_json::to_string(offer).unwrap_or_default();
            let sorted = serde_json::to_value(offer).map(|value| value.to_string()).unwrap_or_default();
            [sent, sorted]
        })
        .collect()
}

/// The offer a payment's `accepted` names: by its bytes, else field by field ([`matches_offer`]).
fn offer_for<'a>(
    accepts: &'a [PaymentRequirements],
    texts: &[[String; 2]],
    accepted: &serde_json::value::RawValue,
) -> Option<&'a PaymentRequirements> {
    let text = accepted.get();
    if let Some(index) = texts.iter().position(|forms| forms.iter().any(|form| form == text)) {
        return accepts.get(index);
    }
    let accepted: PaymentRequirements = serde_json::from_str(text).ok()?;
    accepts.iter().find(|offer| matches_offer(&accepted, offer))
}

impl PaymentLayer {
    /// Prices routes at `price`, paid into the ledger behind `state`. The routes are listed,
    /// with what they earn, by `GET /v1/x402/routes` to the owner of the account they pay.
    pub fn new(state: AppState, price: Price) -> PaymentLayer {
        let accepts = price.requirements(&state.x402_network);
        let accepts_text = offer_texts(&accepts);
        let terms = obol_app::priced::Terms {
            description: price.description.clone(),
            amount: price.amount,
            asset: price.asset,
            pay_to: price.pay_to,
            schemes: price.schemes.iter().map(|scheme| (*scheme).to_string()).collect(),
        };
        let route = state.priced_routes.register(terms, state.env.now_ns());
        PaymentLayer { shared: Arc::new(Priced { state, price, route, accepts, accepts_text }) }
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
        let layer = Arc::clone(&self.layer.shared);
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
            // The header is read once into borrowed JSON text: the offer is matched by its bytes
            // and the payload read straight into its scheme's type (the facilitator reads the
            // same payment through `PaymentPayload`; both end in `verify_payload`).
            let bytes = match header_value.to_str().map_err(|e| e.to_string()).and_then(decode_header_bytes) {
                Ok(bytes) => bytes,
                Err(detail) => {
                    return Ok(ApiError(Error::InvalidField(format!("PAYMENT-SIGNATURE: {detail}"))).into_response());
                }
            };
            let payment: PaymentPayloadText<'_> = match serde_json::from_slice(&bytes) {
                Ok(payment) => payment,
                Err(e) => {
                    let detail = format!("PAYMENT-SIGNATURE: the header is not the expected JSON: {e}");
                    return Ok(ApiError(Error::InvalidField(detail)).into_response());
                }
            };
            let Some(offer) = offer_for(&layer.accepts, &layer.accepts_text, payment.accepted) else {
                let reason = Some("No matching payment requirements".to_string());
                let resource = resource_info(&layer, request.headers(), request.uri());
                return Ok(payment_required(&layer, resource, reason, None));
            };
            let outcome = match check_version(payment.x402_version) {
                Ok(()) => match verify_payload(&layer.state, SchemePayload::Text(payment.payload), offer).await {
                    Ok(prepared) => settle(&layer.state, prepared).await,
                    Err(refusal) => Err(refusal),
                },
                Err(refusal) => Err(refusal),
            };
            match outcome {
                Ok(receipt) => {
                    let paid = receipt.amount.as_deref().and_then(|amount| amount.parse().ok()).unwrap_or(0);
                    layer.route.record(counted_path(&request), paid);
                    let mut response = inner.call(request).await?;
                    mark_paid(&mut response, &receipt);
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

/// What a paid request is counted under: the route's pattern as the router matched it
/// (`/articles/{slug}`), so a payer cannot fill the counts with paths of its own making; the
/// request's path, cut to [`COUNTED_PATH_BYTES_MAX`], where no router matched one.
fn counted_path(request: &Request<Body>) -> &str {
    if let Some(matched) = request.extensions().get::<axum::extract::MatchedPath>() {
        return matched.as_str();
    }
    let path = request.uri().path();
    let mut end = path.len().min(COUNTED_PATH_BYTES_MAX);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    path.get(..end).unwrap_or("")
}

/// Bytes of a request path counted as it is (only where no route pattern matched).
const COUNTED_PATH_BYTES_MAX: usize = 200;

fn resource_info(layer: &Priced, headers: &HeaderMap, uri: &axum::http::Uri) -> ResourceInfo {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    ResourceInfo {
        url: format!("{}://{host}{path}", layer.state.scheme),
        description: Some(layer.price.description.clone()),
        mime_type: Some(layer.price.mime_type.clone()),
    }
}

fn payment_required(
    layer: &Priced,
    resource: ResourceInfo,
    error: Option<String>,
    receipt: Option<SettlementResponse>,
) -> Response {
    let offer = PaymentRequired { x402_version: X402_VERSION, error, resource, accepts: layer.accepts.to_vec() };
    payment_required_response(&offer, receipt.as_ref())
}

/// The 402 answer of a priced route: `offer` in `PAYMENT-REQUIRED`, and the receipt of a payment
/// that was not taken in `PAYMENT-RESPONSE`, if there is one; never cached.
pub fn payment_required_response(offer: &PaymentRequired, receipt: Option<&SettlementResponse>) -> Response {
    let mut response = (StatusCode::PAYMENT_REQUIRED, Json(serde_json::json!({}))).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&encode_header(offer)) {
        headers.insert("payment-required", value);
    }
    if let Some(receipt) = receipt
        && let Ok(value) = HeaderValue::from_str(&encode_header(receipt))
    {
        headers.insert("payment-response", value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Marks a paid route's answer: the receipt in `PAYMENT-RESPONSE`, cacheable only by its payer.
pub fn mark_paid(response: &mut Response, receipt: &SettlementResponse) {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&encode_header(receipt)) {
        headers.insert("payment-response", value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
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
    Ok(Json(obol_app::x402::facilitator_verify(&state, &caller, &body).await?))
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
    Ok(Json(obol_app::x402::facilitator_settle(&state, &caller, &body).await?))
}

/// The routes this server prices with HTTP 402 that pay the caller's accounts (staff see every
/// one), with what each earned, per path, since the server started.
#[utoipa::path(get, path = "/v1/x402/routes", tag = "x402",
    responses((status = 200, body = obol_app::priced::PricedRoutesDto)),
    security(("bearer" = [])))]
pub async fn priced_routes(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<obol_app::priced::PricedRoutesDto>, ApiError> {
    Ok(Json(obol_app::priced::list(&state, &caller)?))
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
    use base64ct::{Base64UrlUnpadded, Encoding};

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

    #[test]
    fn a_paid_header_names_its_offer_by_bytes_or_field_by_field() {
        let asset = Asset::new("USD", 9).unwrap();
        let accepts = Price::new(1000, asset, 2, "x").requirements("obol:test");
        let texts = offer_texts(&accepts);
        let find = |accepted: &str| {
            let header = format!(r#"{{"x402Version":2,"accepted":{accepted},"payload":{{}}}}"#);
            let payment: PaymentPayloadText<'_> = serde_json::from_str(&header).unwrap();
            offer_for(&accepts, &texts, payment.accepted).map(|offer| offer.scheme.clone())
        };
        // As sent, and as a client that rebuilt it as a map sends it: matched by bytes.
        let voucher = &accepts[0];
        assert_eq!(find(&serde_json::to_string(voucher).unwrap()).as_deref(), Some(SCHEME_VOUCHER));
        assert_eq!(find(&serde_json::to_value(&accepts[1]).unwrap().to_string()).as_deref(), Some(SCHEME_PAYWORD));
        // Spaces, another key order, and more in `extra`: matched field by field.
        let spaced = format!(
            r#"{{ "payTo": "2", "extra": {{"more": 1, "assetScale": 9}}, "scheme": "exact", "network": "obol:test",
                "amount": "1000", "asset": "USD", "maxTimeoutSeconds": {} }}"#,
            accepts[2].max_timeout_seconds
        );
        assert_eq!(find(&spaced).as_deref(), Some(SCHEME_EXACT));
        // Other terms name no offer.
        assert_eq!(find(&spaced.replace("\"1000\"", "\"999\"")), None);
        assert_eq!(find(&spaced.replace("\"assetScale\": 9", "\"assetScale\": 8")), None);
        assert_eq!(find("[]"), None);
        // A term given twice is no term of the offer's, whichever copy comes first.
        let twice = spaced.replace("\"amount\": \"1000\"", "\"amount\": \"1\", \"amount\": \"1000\"");
        assert_eq!(find(&twice), None);
    }
}

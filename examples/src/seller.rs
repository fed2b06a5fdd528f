//! How a scenario's merchant prices its routes, wherever obol runs.
//!
//! In one process the merchant's routes sit on the obol server itself and `PaymentLayer` journals
//! each payment in the server's own ledger. Against a running obol server the merchant is a web
//! server of its own: it answers 402 with the server's offer, and settles each payment through
//! the server's facilitator (`POST /v1/x402/settle`) with the merchant's own API key, which may
//! collect only into the merchant's own accounts. Either way a payment is durable before the
//! resource is served, and a refused payment is answered 402 with the reason.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use obol_app::x402::matches_offer;
use obol_http::AppState;
use obol_http::x402::{
    PaymentLayer, PaymentPayload, PaymentRequired, PaymentRequirements, PaymentService, Price, ResourceInfo,
    SettlementResponse, X402_VERSION, decode_header, mark_paid, payment_required_response,
};
use serde_json::json;

use crate::usd;

/// What a scenario's merchant prices its routes with.
#[derive(Clone)]
pub struct Seller {
    pub(crate) ids: u128,
    pub(crate) place: Place,
}

#[derive(Clone)]
pub(crate) enum Place {
    /// Routes on the obol server itself.
    Local(Box<AppState>),
    /// Routes on the merchant's own server, settled through the facilitator of `server`.
    Remote(Arc<Facilitator>),
}

/// A running obol server's facilitator, as merchants reach it.
pub(crate) struct Facilitator {
    pub(crate) server: String,
    pub(crate) network: String,
    pub(crate) http: reqwest::Client,
    /// Each merchant account's API key (the key of the principal that owns it).
    pub(crate) keys: RwLock<HashMap<u128, String>>,
}

impl Seller {
    /// A layer that prices a route at `amount` (USD at scale 9) paid to the scenario's account
    /// `pay_to`, offering `schemes`.
    pub fn price(&self, amount: u128, pay_to: u128, description: &str, schemes: &[&'static str]) -> Pay {
        self.layer(Price::new(amount, usd(), pay_to, description).with_schemes(schemes))
    }

    /// A layer that asks `price`, whose `pay_to` is the scenario's account id.
    pub fn layer(&self, mut price: Price) -> Pay {
        price.pay_to += self.ids;
        match &self.place {
            Place::Local(state) => Pay::Local(PaymentLayer::new((**state).clone(), price)),
            Place::Remote(facilitator) => {
                let accepts = price.requirements(&facilitator.network);
                Pay::Remote(Arc::new(RemotePrice { facilitator: Arc::clone(facilitator), price, accepts }))
            }
        }
    }
}

/// The facilitator-backed price of one route.
pub struct RemotePrice {
    facilitator: Arc<Facilitator>,
    price: Price,
    accepts: Vec<PaymentRequirements>,
}

/// A tower layer pricing a route (see [`Seller::price`]).
#[derive(Clone)]
pub enum Pay {
    /// Journaled by the obol server the route is on.
    Local(PaymentLayer),
    /// Settled through a running obol server's facilitator.
    Remote(Arc<RemotePrice>),
}

impl<S> tower::Layer<S> for Pay {
    type Service = PayService<S>;

    fn layer(&self, inner: S) -> PayService<S> {
        match self {
            Pay::Local(layer) => PayService::Local(tower::Layer::layer(layer, inner)),
            Pay::Remote(price) => PayService::Remote { price: Arc::clone(price), inner },
        }
    }
}

/// The service [`Pay`] wraps around a route.
#[derive(Clone)]
pub enum PayService<S> {
    /// See [`Pay::Local`].
    Local(PaymentService<S>),
    /// See [`Pay::Remote`].
    Remote {
        /// The route's price.
        price: Arc<RemotePrice>,
        /// The route.
        inner: S,
    },
}

type Answer<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;

impl<S> tower::Service<Request<Body>> for PayService<S>
where
    S: tower::Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Answer<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        match self {
            PayService::Local(service) => service.poll_ready(cx),
            PayService::Remote { inner, .. } => inner.poll_ready(cx),
        }
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        match self {
            PayService::Local(service) => service.call(request),
            PayService::Remote { price, inner } => {
                let clone = inner.clone();
                let inner = std::mem::replace(inner, clone);
                Box::pin(paid_remotely(Arc::clone(price), inner, request))
            }
        }
    }
}

/// Serves `request` once the facilitator has settled its payment; 402 otherwise.
async fn paid_remotely<S>(price: Arc<RemotePrice>, mut inner: S, request: Request<Body>) -> Result<Response, S::Error>
where
    S: tower::Service<Request<Body>, Response = Response>,
{
    let Some(header_value) = request.headers().get("payment-signature") else {
        return Ok(payment_required(&price, &request, Some("PAYMENT-SIGNATURE header is required".into()), None));
    };
    let payment: PaymentPayload = match header_value.to_str().map_err(|e| e.to_string()).and_then(decode_header) {
        Ok(payment) => payment,
        Err(detail) => {
            let reason = format!("PAYMENT-SIGNATURE: {detail}");
            return Ok(payment_required(&price, &request, Some(reason), None));
        }
    };
    let Some(offer) = price.accepts.iter().find(|offer| matches_offer(&payment.accepted, offer)) else {
        return Ok(payment_required(&price, &request, Some("No matching payment requirements".into()), None));
    };
    let receipt = match settle(&price.facilitator, price.price.pay_to, &payment, offer).await {
        Ok(receipt) => receipt,
        Err(detail) => {
            // The facilitator could not be asked: nothing was taken, and the client may retry.
            let problem = json!({"type": "about:blank", "title": "Payment facilitator unavailable",
                "status": 503, "detail": detail});
            let mut response = (StatusCode::SERVICE_UNAVAILABLE, axum::Json(problem)).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(obol_http::error::PROBLEM_JSON));
            return Ok(response);
        }
    };
    if !receipt.success {
        let reason = receipt.error_reason.clone().unwrap_or_else(|| "refused".into());
        return Ok(payment_required(&price, &request, Some(reason), Some(receipt)));
    }
    let mut response = inner.call(request).await?;
    mark_paid(&mut response, &receipt);
    Ok(response)
}

/// `POST /v1/x402/settle` as the merchant that owns `pay_to`.
async fn settle(
    facilitator: &Facilitator,
    pay_to: u128,
    payment: &PaymentPayload,
    offer: &PaymentRequirements,
) -> Result<SettlementResponse, String> {
    let key = facilitator
        .keys
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(&pay_to)
        .cloned()
        .ok_or_else(|| format!("no merchant key for account {pay_to}"))?;
    let body = json!({"x402Version": X402_VERSION, "paymentPayload": payment, "paymentRequirements": offer});
    let url = format!("{}/v1/x402/settle", facilitator.server);
    let response =
        facilitator.http.post(url).bearer_auth(key).json(&body).send().await.map_err(|e| format!("settle: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("settle: {e}"))?;
    if !status.is_success() {
        return Err(format!("settle answered {status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("settle answered an unreadable receipt: {e}"))
}

/// The 402 answer: the offer in `PAYMENT-REQUIRED`, and the failed receipt if there is one.
fn payment_required(
    price: &RemotePrice,
    request: &Request<Body>,
    error: Option<String>,
    receipt: Option<SettlementResponse>,
) -> Response {
    let offer = PaymentRequired {
        x402_version: X402_VERSION,
        error,
        resource: resource(price, request.headers(), request.uri()),
        accepts: price.accepts.clone(),
    };
    payment_required_response(&offer, receipt.as_ref())
}

fn resource(price: &RemotePrice, headers: &HeaderMap, uri: &axum::http::Uri) -> ResourceInfo {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    ResourceInfo {
        url: format!("http://{host}{path}"),
        description: Some(price.price.description.clone()),
        mime_type: Some(price.price.mime_type.clone()),
    }
}

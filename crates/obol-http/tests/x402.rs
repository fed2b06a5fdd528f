//! Goal: a route priced with `PaymentLayer` speaks x402 v2: unpaid requests get 402 and a
//! decodable offer; vouchers, PayWord ticks and one-off `exact` authorizations pay for exactly one
//! answer each; forged, replayed, underpaid, stale, misdirected and expired payments get 402 with
//! the reason and change nothing; the facilitator routes verify without taking and settle once;
//! and the ledger after settlement holds exactly what was acknowledged.
//! Method: the real router plus a priced route over a real engine; a holder's device key signs
//! (docs/vouchers.md formats); requests carry the headers a real x402 client sends.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64ct::{Base64, Base64UrlUnpadded, Encoding};
use ed25519_dalek::{Signer, SigningKey};
use obol_core::channel::{Commitment, ExactAuthorization, Network, Voucher, payword_chain};
use obol_core::money::Asset;
use obol_http::x402::{PaymentLayer, PaymentRequired, Price, SettlementResponse, decode_header};
use serde_json::{Value, json};
use tower::ServiceExt;

mod support;
use support::post;

const PRICE: u128 = 1_000;

struct World {
    started: support::Started,
    router: Router,
    holder: String,
    merchant: String,
    device: SigningKey,
}

struct Answer {
    status: StatusCode,
    required: Option<PaymentRequired>,
    receipt: Option<SettlementResponse>,
    cache: Option<String>,
    body: Value,
}

impl World {
    async fn new() -> World {
        let support::Parties { started, holder, merchant, device } = support::parties("x402", "50000", 21).await;
        let price = Price::new(PRICE, Asset::new("USD", 9).unwrap(), 2, "One article");
        let paid = Router::new()
            .route("/article", axum::routing::get(|| async { "the article" }))
            .route("/files/{name}", axum::routing::get(|| async { "a file" }))
            .layer(PaymentLayer::new(started.state.clone(), price));
        let router = started.router.clone().merge(paid);
        World { started, router, holder, merchant, device }
    }

    async fn open(&self, id: &str, budget: &str) {
        let body = json!({"id": id, "payer_account_id": "1", "payee_account_id": "2", "budget": budget,
            "asset_code": "USD", "asset_scale": 9, "timeout_s": 600, "device_id": "55"});
        let (status, answer) = post(&self.started.router, &self.holder, "/v1/tabs", body, None).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }

    async fn get(&self, payment: Option<String>) -> Answer {
        self.get_at("/article", payment).await
    }

    async fn get_at(&self, path: &str, payment: Option<String>) -> Answer {
        let mut request = Request::get(path).header("host", "news.example");
        if let Some(payment) = payment {
            request = request.header("PAYMENT-SIGNATURE", payment);
        }
        let response = self.router.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string());
        let required = header("payment-required").map(|h| decode_header(&h).unwrap());
        let receipt = header("payment-response").map(|h| decode_header(&h).unwrap());
        let cache = header("cache-control");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let body =
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Answer { status, required, receipt, cache, body }
    }

    /// The PAYMENT-SIGNATURE a client sends for `scheme` with `payload`, accepting the offer as made.
    async fn payment(&self, scheme: &str, payload: Value) -> String {
        let offer = self.get(None).await.required.expect("an offer");
        let accepted = offer.accepts.iter().find(|a| a.scheme == scheme).expect("scheme offered").clone();
        let body = json!({"x402Version": 2, "resource": offer.resource, "accepted": accepted, "payload": payload});
        Base64::encode_string(body.to_string().as_bytes())
    }

    fn voucher(&self, tab: u128, cumulative: u128, seq: u64) -> Value {
        let signature = self
            .device
            .sign(&Voucher::signed_message(&Network::named(obol_http::LOCAL_NETWORK), tab, 2, cumulative, seq))
            .to_bytes();
        let voucher = Voucher { tab_id: tab, payee_id: 2, cumulative, seq, signature };
        json!({"voucher": Base64UrlUnpadded::encode_string(&voucher.encode())})
    }

    fn exact(&self, transfer: u128, amount: u128, valid_before: u64) -> Value {
        let authorization = ExactAuthorization {
            network: Network::named(obol_http::LOCAL_NETWORK),
            transfer_id: transfer,
            from: 1,
            to: 2,
            amount,
            asset: Asset::new("USD", 9).unwrap(),
            device_id: 55,
            valid_before_s: valid_before,
        };
        let signature = self.device.sign(&authorization.signed_message()).to_bytes();
        json!({"from": "1", "device": "55", "transfer": transfer.to_string(), "validBefore": valid_before,
            "signature": Base64UrlUnpadded::encode_string(&signature)})
    }

    async fn balance(&self, account: &str) -> Value {
        let request = Request::get(format!("/v1/accounts/{account}/balance"))
            .header("authorization", format!("Bearer {}", self.started.operator))
            .body(Body::empty())
            .unwrap();
        support::send(&self.started.router, request).await.1
    }
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn refused(answer: &Answer, code: &str) {
    assert_eq!(answer.status, StatusCode::PAYMENT_REQUIRED, "{code}: {:?}", answer.body);
    let receipt = answer.receipt.as_ref().expect("a failed PAYMENT-RESPONSE");
    assert!(!receipt.success);
    assert_eq!(receipt.error_reason.as_deref(), Some(code));
    let error = answer.required.as_ref().and_then(|r| r.error.clone()).unwrap_or_default();
    assert!(error.starts_with(code), "the offer says why: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_request_gets_402_and_an_offer_of_every_scheme() {
    let world = World::new().await;
    let answer = world.get(None).await;
    assert_eq!(answer.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(answer.cache.as_deref(), Some("no-store"));
    let offer = answer.required.expect("PAYMENT-REQUIRED");
    assert_eq!(offer.x402_version, 2);
    assert_eq!(offer.resource.url, "http://news.example/article");
    let schemes: Vec<&str> = offer.accepts.iter().map(|a| a.scheme.as_str()).collect();
    assert_eq!(schemes, ["obol-voucher", "obol-payword", "exact"]);
    for accept in &offer.accepts {
        assert_eq!((accept.network.as_str(), accept.amount.as_str()), ("obol:local", "1000"));
        assert_eq!((accept.asset.as_str(), accept.pay_to.as_str()), ("USD", "2"));
        assert_eq!(accept.extra.get("assetScale"), Some(&json!(9)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vouchers_pay_for_one_answer_each_and_bad_ones_get_402_with_the_reason() {
    let world = World::new().await;
    world.open("7", "10000").await;
    let first = world.payment("obol-voucher", world.voucher(7, 1_000, 1)).await;
    let answer = world.get(Some(first.clone())).await;
    assert_eq!((answer.status, answer.body.as_str()), (StatusCode::OK, Some("the article")));
    assert_eq!(answer.cache.as_deref(), Some("private"));
    let receipt = answer.receipt.expect("PAYMENT-RESPONSE");
    assert_eq!((receipt.success, receipt.transaction.as_str()), (true, "tab:7:1000"));
    assert_eq!((receipt.payer.as_deref(), receipt.amount.as_deref()), (Some("1"), Some("1000")));
    refused(&world.get(Some(first)).await, "voucher_stale");
    refused(&world.get(Some(world.payment("obol-voucher", world.voucher(7, 1_999, 2)).await)).await, "underpaid");
    let mut forged = world.voucher(7, 2_000, 2);
    let mut bytes = Base64UrlUnpadded::decode_vec(forged["voucher"].as_str().unwrap()).unwrap();
    bytes[36] ^= 1;
    forged["voucher"] = json!(Base64UrlUnpadded::encode_string(&bytes));
    refused(&world.get(Some(world.payment("obol-voucher", forged).await)).await, "voucher_signature_invalid");
    refused(&world.get(Some(world.payment("obol-voucher", world.voucher(7, 20_000, 2)).await)).await, "beyond_escrow");
    refused(&world.get(Some(world.payment("obol-voucher", world.voucher(8, 1_000, 1)).await)).await, "tab_not_found");
    let second = world.get(Some(world.payment("obol-voucher", world.voucher(7, 2_500, 2)).await)).await;
    assert_eq!(second.status, StatusCode::OK, "overpaying is the payer's choice");
    let (_, settled) = post(&world.started.router, &world.merchant, "/v1/tabs/7/settle", json!({}), None).await;
    assert_eq!(settled["cumulative"], "2500");
    assert_eq!(world.balance("2").await["credits_posted"], "2500", "exactly the acknowledged payments");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payword_ticks_pay_per_request_and_a_wrong_word_gets_402() {
    let world = World::new().await;
    world.open("9", "10000").await;
    let chain = payword_chain([3u8; 32], 10);
    let signature = world
        .device
        .sign(&Commitment::signed_message(&Network::named(obol_http::LOCAL_NETWORK), 9, 2, &chain[0], 10, PRICE))
        .to_bytes();
    let commitment = Commitment {
        tab_id: 9,
        payee_id: 2,
        network: Network::named(obol_http::LOCAL_NETWORK),
        root: chain[0],
        length: 10,
        value_per_tick: PRICE,
        signature,
    };
    let body = json!({"commitment": Base64UrlUnpadded::encode_string(&commitment.encode())});
    let (status, answer) = post(&world.started.router, &world.holder, "/v1/tabs/9/commitment", body, None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let tick = |index: usize, word: [u8; 32]| json!({"tab": "9", "index": index, "word": word.iter().map(|b| format!("{b:02x}")).collect::<String>()});
    for (index, word) in chain.iter().enumerate().take(4).skip(1) {
        let answer = world.get(Some(world.payment("obol-payword", tick(index, *word)).await)).await;
        assert_eq!(answer.status, StatusCode::OK, "tick {index}");
        assert_eq!(answer.receipt.unwrap().transaction, format!("tab:9:{}", index as u128 * PRICE));
    }
    refused(&world.get(Some(world.payment("obol-payword", tick(3, chain[3])).await)).await, "payword_stale");
    refused(&world.get(Some(world.payment("obol-payword", tick(4, chain[5])).await)).await, "payword_bad_preimage");
    refused(&world.get(Some(world.payment("obol-payword", tick(11, chain[10])).await)).await, "payword_beyond_chain");
    assert_eq!(world.get(Some(world.payment("obol-payword", tick(4, chain[4])).await)).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_authorization_pays_once_and_only_as_signed() {
    let world = World::new().await;
    let valid_before = now_s() + 60;
    let payment = world.payment("exact", world.exact(5_001, PRICE, valid_before)).await;
    let answer = world.get(Some(payment.clone())).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.receipt);
    assert_eq!(answer.receipt.unwrap().transaction, "transfer:5001");
    refused(&world.get(Some(payment)).await, "authorization_used");
    refused(
        &world.get(Some(world.payment("exact", world.exact(5_002, PRICE - 1, valid_before)).await)).await,
        "signature_invalid",
    );
    refused(
        &world.get(Some(world.payment("exact", world.exact(5_003, PRICE, now_s() - 1)).await)).await,
        "authorization_expired",
    );
    assert_eq!(world.balance("2").await["credits_posted"], "1000");
    assert_eq!(world.balance("1").await["debits_posted"], "1000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_renegotiated_payments_are_refused_cleanly() {
    let world = World::new().await;
    world.open("7", "10000").await;
    let answer = world.get(Some("not base64 at all!".into())).await;
    assert_eq!((answer.status, answer.body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_field")));
    let answer = world.get(Some(Base64::encode_string(b"{\"x402Version\":2}"))).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let offer = world.get(None).await.required.unwrap();
    let mut cheaper = offer.accepts[0].clone();
    cheaper.amount = "1".into();
    let body = json!({"x402Version": 2, "accepted": cheaper, "payload": world.voucher(7, 1, 1)});
    let answer = world.get(Some(Base64::encode_string(body.to_string().as_bytes()))).await;
    assert_eq!(answer.status, StatusCode::PAYMENT_REQUIRED);
    assert_eq!(answer.required.unwrap().error.as_deref(), Some("No matching payment requirements"));
    let body = json!({"x402Version": 2, "accepted": offer.accepts[0], "payload": {"voucher": "AAAA", "extra": 1}});
    refused(&world.get(Some(Base64::encode_string(body.to_string().as_bytes()))).await, "invalid_payload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_facilitator_verifies_without_taking_and_settles_once() {
    let world = World::new().await;
    world.open("7", "10000").await;
    let supported = Request::get("/v1/x402/supported").body(Body::empty()).unwrap();
    let (status, kinds) = support::send(&world.router, supported).await;
    assert_eq!(status, StatusCode::OK, "open to anyone");
    assert_eq!(kinds["kinds"].as_array().unwrap().len(), 3);
    assert_eq!(kinds["kinds"][0], json!({"x402Version": 2, "scheme": "obol-voucher", "network": "obol:local"}));
    let offer = world.get(None).await.required.unwrap();
    let requirements = offer.accepts[0].clone();
    let payload = json!({"x402Version": 2, "accepted": requirements, "payload": world.voucher(7, 1_500, 1)});
    let request = json!({"x402Version": 2, "paymentPayload": payload, "paymentRequirements": requirements});
    for _ in 0..2 {
        let (status, verdict) = post(&world.router, &world.merchant, "/v1/x402/verify", request.clone(), None).await;
        assert_eq!(status, StatusCode::OK, "{verdict}");
        assert_eq!(verdict, json!({"isValid": true, "payer": "1"}), "verify changes nothing, so twice is the same");
    }
    let (status, _) = post(&world.router, &world.holder, "/v1/x402/settle", request.clone(), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only the payee (or operator) collects");
    let (_, receipt) = post(&world.router, &world.merchant, "/v1/x402/settle", request.clone(), None).await;
    assert_eq!(
        receipt,
        json!({"success": true, "payer": "1", "transaction": "tab:7:1500", "network": "obol:local", "amount": "1500"})
    );
    let (_, again) = post(&world.router, &world.merchant, "/v1/x402/settle", request.clone(), None).await;
    assert_eq!(
        again,
        json!({"success": false, "errorReason": "voucher_stale", "transaction": "", "network": "obol:local"})
    );
    let (_, verdict) = post(&world.router, &world.merchant, "/v1/x402/verify", request, None).await;
    assert_eq!(verdict["invalidReason"], "voucher_stale");
}

/// `GET /v1/x402/routes` as `key` sees it.
async fn priced_routes(world: &World, key: &str) -> Value {
    let request =
        Request::get("/v1/x402/routes").header("authorization", format!("Bearer {key}")).body(Body::empty()).unwrap();
    let (status, body) = support::send(&world.started.router, request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payee_sees_its_priced_route_and_what_each_scheme_paid_into_it() {
    let world = World::new().await;
    world.open("7", "10000").await;
    let paid = world.get(Some(world.payment("obol-voucher", world.voucher(7, 1_000, 1)).await)).await;
    assert_eq!(paid.status, StatusCode::OK);
    // A voucher may add more than the price: what it added is what the route earned.
    let paid = world.get(Some(world.payment("obol-voucher", world.voucher(7, 3_500, 2)).await)).await;
    assert_eq!(paid.status, StatusCode::OK);
    let exact = world.get(Some(world.payment("exact", world.exact(5_001, PRICE, now_s() + 60)).await)).await;
    assert_eq!(exact.status, StatusCode::OK);
    // A route with a pattern counts under its pattern, whatever paths the payer makes up.
    for (n, path) in ["/files/a", "/files/%61", "/files/b"].iter().enumerate() {
        let payment = world.payment("exact", world.exact(6_000 + n as u128, PRICE, now_s() + 60)).await;
        assert_eq!(world.get_at(path, Some(payment)).await.status, StatusCode::OK, "{path}");
    }
    // Refused and unpaid requests earn nothing.
    refused(&world.get(Some(world.payment("obol-voucher", world.voucher(7, 1_000, 1)).await)).await, "voucher_stale");
    refused(&world.get(Some(world.payment("obol-voucher", world.voucher(7, 3_600, 3)).await)).await, "underpaid");
    assert_eq!(world.get(None).await.status, StatusCode::PAYMENT_REQUIRED);

    let listed = priced_routes(&world, &world.merchant).await;
    let routes = listed["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 1, "{listed}");
    let route = &routes[0];
    assert_eq!(route["description"], "One article");
    assert_eq!((route["price"].as_str(), route["asset_code"].as_str()), (Some("1000"), Some("USD")));
    assert_eq!(route["asset_scale"], 9);
    assert_eq!(route["pay_to"], "2");
    assert_eq!(route["schemes"], json!(["obol-voucher", "obol-payword", "exact"]));
    assert_eq!((route["requests_paid"].as_u64(), route["earned"].as_str()), (Some(6), Some("7500")));
    assert_eq!(
        route["paths"],
        json!([{"path": "/article", "requests_paid": 3, "earned": "4500"},
            {"path": "/files/{name}", "requests_paid": 3, "earned": "3000"}])
    );
    assert!(route["counted_since"].as_str().is_some_and(|since| since.ends_with('Z')), "{route}");

    // The payer, whose account the route does not pay, sees none of it; the operator sees all.
    assert_eq!(priced_routes(&world, &world.holder).await["routes"], json!([]));
    assert_eq!(priced_routes(&world, &world.started.operator).await["routes"][0]["earned"], "7500");
}

//! Goal: what the wallet does with a paid answer that says nothing was taken, when the merchant
//! lies (regressions from an attack review of the wallet's take-back): a forged refusal never
//! lets `exact` authorizations escape the daily limit, and a forged "paused" refusal of a tick
//! that was in fact journaled costs the payer at most that tick, never the tab.
//! Method: a real server and priced route (`Sandbox`), and in front of it a lying merchant on
//! loopback that forwards to the real route and forges the `PAYMENT-RESPONSE` it hands back.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use obol_client::{ClientError, Preference, SpendLimits};
use obol_examples::Sandbox;
use obol_http::x402::{SCHEME_EXACT, SCHEME_PAYWORD, SettlementResponse, encode_header};

const PRICE: u128 = 1_000_000;
const MERCHANT: u128 = 2_000;
const PAYER: u128 = 1_000;

/// How the liar answers a paid request.
#[derive(Clone, Copy)]
enum Lie {
    /// Keeps the payment header (never forwards it) and says `insufficient_funds`.
    Withhold,
    /// Forwards the first paid request (it is journaled), says `tab_paused_for_review`; then honest.
    SettleThenPause,
}

#[derive(Clone)]
struct Liar {
    real: String,
    lie: Lie,
    kept: Arc<Mutex<Vec<String>>>,
    paid_seen: Arc<Mutex<u32>>,
    network: String,
}

fn forged(network: &str, code: &str) -> Response {
    let receipt = SettlementResponse {
        success: false,
        error_reason: Some(code.into()),
        payer: None,
        transaction: String::new(),
        network: network.into(),
        amount: None,
    };
    let mut headers = HeaderMap::new();
    headers.insert("payment-response", encode_header(&receipt).parse().unwrap());
    (StatusCode::PAYMENT_REQUIRED, headers, "").into_response()
}

async fn forward(real: &str, header: Option<&str>) -> Response {
    let mut request = obol_client::http_client(None).unwrap().post(real);
    if let Some(header) = header {
        request = request.header("payment-signature", header);
    }
    let answer = request.send().await.unwrap();
    let mut headers = HeaderMap::new();
    for name in ["payment-required", "payment-response"] {
        if let Some(value) = answer.headers().get(name) {
            headers.insert(name, value.to_str().unwrap().parse().unwrap());
        }
    }
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    (status, headers, answer.text().await.unwrap()).into_response()
}

async fn lying(State(liar): State<Liar>, request: Request<Body>) -> Response {
    let header = request.headers().get("payment-signature").map(|v| v.to_str().unwrap().to_string());
    let Some(header) = header else { return forward(&liar.real, None).await };
    let first = {
        let mut seen = liar.paid_seen.lock().unwrap();
        *seen += 1;
        *seen == 1
    };
    match liar.lie {
        Lie::Withhold => {
            liar.kept.lock().unwrap().push(header);
            forged(&liar.network, "insufficient_funds")
        }
        Lie::SettleThenPause if first => {
            let real = forward(&liar.real, Some(&header)).await;
            assert_eq!(real.status(), StatusCode::OK, "the first tick is really journaled");
            forged(&liar.network, "tab_paused_for_review")
        }
        Lie::SettleThenPause => forward(&liar.real, Some(&header)).await,
    }
}

async fn start(scheme: &'static str, lie: Lie) -> (Sandbox, Liar, String) {
    let sandbox = Sandbox::start("liar", |seller| {
        Router::new()
            .route("/item", any(|| async { "the item" }).layer(seller.price(PRICE, MERCHANT, "An item", &[scheme])))
    })
    .await
    .unwrap();
    sandbox.merchant(200, "Shop", MERCHANT).await.unwrap();
    let liar = Liar {
        real: format!("{}/item", sandbox.base),
        lie,
        kept: Arc::default(),
        paid_seen: Arc::default(),
        network: sandbox.network.clone(),
    };
    let router = Router::new().route("/item", any(lying)).with_state(liar.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/item", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (sandbox, liar, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_a_forged_refusal_never_frees_an_exact_authorization_from_the_daily_limit() {
    let (sandbox, liar, url) = start(SCHEME_EXACT, Lie::Withhold).await;
    let mut config = sandbox.payer(100, "Buyer", PAYER, 10 * PRICE).await.unwrap();
    config.preference = Preference::Exact;
    config.limits = SpendLimits { per_day_max: 2 * PRICE, ..SpendLimits::default() };
    let wallet = sandbox.wallet(config);
    let http = obol_client::http_client(None).unwrap();
    for _ in 0..2 {
        let answer = wallet.fetch(http.post(&url).build().unwrap()).await.unwrap();
        assert_eq!(answer.status(), 402, "the liar says the payment was refused");
    }
    assert_eq!(wallet.spent_today(), 2 * PRICE, "refused or not, each signed authorization counts");
    let third = wallet.fetch(http.post(&url).build().unwrap()).await;
    assert!(matches!(third, Err(ClientError::SpendLimit(_))), "the daily limit holds: {third:?}");
    // What the liar kept can still be collected: exactly what the wallet counted, no more.
    for header in liar.kept.lock().unwrap().clone() {
        let answer = http.post(&liar.real).header("payment-signature", header).send().await.unwrap();
        assert_eq!(answer.status(), 200);
    }
    assert_eq!(sandbox.balances(PAYER).await.unwrap().0, wallet.spent_today());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_a_forged_pause_after_a_journaled_tick_costs_that_tick_and_never_jams_the_tab() {
    let (sandbox, _liar, url) = start(SCHEME_PAYWORD, Lie::SettleThenPause).await;
    let config = sandbox.payer(100, "Meter", PAYER, 10 * PRICE).await.unwrap();
    let wallet = sandbox.wallet(config);
    wallet.open_tab(MERCHANT, 5 * PRICE, 3_600).await.unwrap();
    wallet.commit_payword(MERCHANT, 5, PRICE).await.unwrap();
    let http = obol_client::http_client(None).unwrap();
    let first = wallet.fetch(http.post(&url).build().unwrap()).await.unwrap();
    assert_eq!(first.status(), 402, "the liar forged a pause");
    // The wallet took the tick back and sends the same word: the server already has it.
    let second = wallet.fetch(http.post(&url).build().unwrap()).await.unwrap();
    let reason = obol_client::receipt(&second).and_then(|r| r.error_reason);
    assert_eq!((second.status().as_u16(), reason.as_deref()), (402, Some("payword_stale")));
    // A stale refusal is not taken back: the next tick moves on and pays.
    let third = wallet.fetch(http.post(&url).build().unwrap()).await.unwrap();
    assert_eq!(third.status(), 200, "the tab is not jammed");
    let tab = wallet.tab(MERCHANT).unwrap();
    assert_eq!(sandbox.tab_cumulative(tab.id), Some(2 * PRICE), "two ticks journaled");
    assert_eq!(wallet.spent_today(), 2 * PRICE, "the wallet counts exactly what the tab owes");
}

//! `obol serve --demo`: a first payment over the HTTP API, printed as the `curl` commands that do
//! the same, and a playground that keeps running: priced routes (an article, a meter reading, an
//! API call) paid to a demo merchant, and a demo payer whose device key is written to the data
//! directory so that `obol pay` works at once.
//!
//! Everything is set up through the public API with a short-lived operator key, exactly as an
//! operator's own tooling would; the ids are fixed, so starting with `--demo` again reuses what
//! the first start made (every create is idempotent) and never funds the payer twice.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use obol_core::money::Asset;
use obol_http::AppState;
use obol_http::x402::{PaymentLayer, Price};
use serde_json::{Value, json};

use crate::client::Api;

/// The demo merchant (a principal) and the account its routes pay.
pub const MERCHANT_PRINCIPAL: u128 = 402_001;
/// The account the priced demo routes pay.
pub const MERCHANT_ACCOUNT: u128 = 402_010;
/// The demo payer (a holder).
pub const PAYER_PRINCIPAL: u128 = 402_002;
/// The demo payer's wallet account, funded with $5.00 once.
pub const PAYER_ACCOUNT: u128 = 402_020;
/// The demo payer's device.
pub const PAYER_DEVICE: u128 = 402_021;
/// The demo device's key id.
pub const PAYER_KID: &str = "demo-reader";
/// The account that funds the demo payer (an issuer: it may go negative).
const ISSUER_ACCOUNT: u128 = 402_000;
/// What the demo payer starts with: $5.00 in nano-dollars.
const PAYER_FUNDS: u128 = 5_000_000_000;

/// One priced route of the playground.
struct Priced {
    path: &'static str,
    amount: u128,
    what: &'static str,
    body: &'static str,
}

/// The playground's priced routes, USD at scale 9 (nano-dollars).
const ROUTES: [Priced; 3] = [
    Priced {
        path: "/demo/article",
        amount: 400_000,
        what: "one article ($0.0004)",
        body: "The full text of today's article: micropayments that cost microseconds.",
    },
    Priced {
        path: "/demo/meter",
        amount: 1_000,
        what: "one meter reading ($0.000001)",
        body: "{\"reading_wh\": 1234}",
    },
    Priced { path: "/demo/api", amount: 50_000, what: "one API call ($0.00005)", body: "{\"answer\": 42}" },
];

fn usd() -> anyhow::Result<Asset> {
    Asset::new("USD", 9).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The playground's routes: each priced with [`PaymentLayer`], paying [`MERCHANT_ACCOUNT`]
/// by voucher, PayWord tick or `exact` transfer; `GET /demo` lists them, free. They answer 503
/// until `ready` is set: only once the set-up made (or found) the demo merchant's account may a
/// payment go to it.
pub fn routes(state: AppState, ready: Arc<AtomicBool>) -> anyhow::Result<Router> {
    let mut router = Router::new();
    let mut listing = Vec::new();
    for route in &ROUTES {
        let price = Price::new(route.amount, usd()?, MERCHANT_ACCOUNT, route.what);
        let body = route.body;
        router =
            router.route(route.path, get(move || async move { body }).layer(PaymentLayer::new(state.clone(), price)));
        listing.push(json!({"path": route.path, "price": route.amount.to_string(), "asset_code": "USD",
            "asset_scale": 9, "what": route.what, "pay_to": MERCHANT_ACCOUNT.to_string()}));
    }
    let listing = Value::Array(listing);
    let router = router.route("/demo", get(move || async move { axum::Json(listing) }));
    Ok(router.layer(axum::middleware::from_fn(move |request: axum::extract::Request, next: axum::middleware::Next| {
        let ready = ready.load(Ordering::Acquire);
        async move {
            if ready {
                return next.run(request).await;
            }
            let problem = json!({"type": "urn:obol:problem:demo_not_ready", "title": "Service Unavailable",
                "status": 503, "code": "demo_not_ready",
                "detail": "the demo playground is not set up (yet, or its set-up failed: see the server's log)"});
            let mut response = axum::response::IntoResponse::into_response((
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(problem),
            ));
            response.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static(obol_http::error::PROBLEM_JSON),
            );
            response
        }
    })))
}

/// How long the demo's dashboard keys last (they are printed, so they do not last).
const DASHBOARD_KEY_TTL_S: u64 = 12 * 3_600;

/// The demo payer's device key file in the data directory.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("demo").join("device.key")
}

/// Runs the walk-through, then sets up the playground's merchant and payer and prints how to
/// pay its routes with `obol pay`.
pub async fn run(base: &str, key: &str, data_dir: &Path, ready: Arc<AtomicBool>) -> anyhow::Result<()> {
    let api = Api::with_key(base, key)?;
    walk_through(&api, base).await?;
    playground(&api, base, data_dir, &ready).await
}

/// A first payment over the HTTP API, each step printed as its `curl` command and the answer.
async fn walk_through(api: &Api, base: &str) -> anyhow::Result<()> {
    let suffix: u32 = rand::random::<u32>() % 1_000_000;
    let payer = format!("{}", 1_000_000_000u64 + u64::from(suffix) * 2);
    let payee = format!("{}", 1_000_000_000u64 + u64::from(suffix) * 2 + 1);
    let funding = format!("{}", 1_000_000_000u64 + u64::from(suffix) * 2 + 2_000_000);
    let steps: Vec<(&str, &str, Value)> = vec![
        (
            "a funding source (an issuer account that may go negative)",
            "/v1/accounts",
            json!({"id": funding, "asset_code": "USD", "asset_scale": 9}),
        ),
        (
            "the payer's wallet: USD at scale 9 (nano-dollars), never overdrawn",
            "/v1/accounts",
            json!({"id": payer, "asset_code": "USD", "asset_scale": 9, "flags": ["debits_must_not_exceed_credits", "history"]}),
        ),
        (
            "the payee's account",
            "/v1/accounts",
            json!({"id": payee, "asset_code": "USD", "asset_scale": 9, "flags": ["history"]}),
        ),
        (
            "fund the wallet with $1.00",
            "/v1/transfers",
            json!({"id": format!("{payer}1"), "debit_account_id": funding, "credit_account_id": payer, "amount": "1000000000", "asset_code": "USD", "asset_scale": 9}),
        ),
        (
            "the first micropayment: $0.0004 for one article view",
            "/v1/transfers",
            json!({"id": format!("{payer}2"), "debit_account_id": payer, "credit_account_id": payee, "amount": "400000", "asset_code": "USD", "asset_scale": 9}),
        ),
    ];
    crate::outln!("\n--- demo: a first payment over the HTTP API (key shown as $OBOL_API_KEY) ---");
    for (what, path, body) in &steps {
        crate::outln!("\n# {what}");
        crate::outln!(
            "curl -s -X POST {base}{path} -H \"Authorization: Bearer $OBOL_API_KEY\" -H 'Content-Type: application/json' -d '{body}'"
        );
        let answer = api.expect(reqwest::Method::POST, path, Some(body)).await?;
        crate::outln!("{}", serde_json::to_string(&answer)?);
    }
    let path = format!("/v1/accounts/{payer}/balance");
    crate::outln!("\n# the payer's balance after paying");
    crate::outln!("curl -s {base}{path} -H \"Authorization: Bearer $OBOL_API_KEY\"");
    crate::outln!("{}", serde_json::to_string(&api.expect(reqwest::Method::GET, &path, None).await?)?);
    Ok(())
}

/// The device key of the demo payer: read from the data directory, or made and written there
/// (mode 0600) on the first `--demo` start.
fn device_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    if path.exists() {
        return crate::pay_cli::read_key(path);
    }
    let key = obol_client::Wallet::generate_device_key();
    let parent = path.parent().context("the demo key has a directory")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    crate::profile::write_private(path, &crate::pay_cli::hex(&key))?;
    Ok(key)
}

/// The playground's principals, accounts and device, made through the API (idempotently).
async fn playground(api: &Api, base: &str, data_dir: &Path, ready: &AtomicBool) -> anyhow::Result<()> {
    let key_path = key_path(data_dir);
    let device_key = device_key(&key_path)?;
    let jwk = obol_client::Wallet::device_jwk(&device_key, PAYER_KID);
    let creates: Vec<(String, Value)> = vec![
        ("/v1/accounts".into(), json!({"id": ISSUER_ACCOUNT.to_string(), "asset_code": "USD", "asset_scale": 9})),
        (
            "/v1/principals".into(),
            json!({"id": MERCHANT_PRINCIPAL.to_string(), "role": "merchant", "name": "Demo News"}),
        ),
        (
            "/v1/accounts".into(),
            json!({"id": MERCHANT_ACCOUNT.to_string(), "asset_code": "USD", "asset_scale": 9,
                "owner_id": MERCHANT_PRINCIPAL.to_string(), "flags": ["history"]}),
        ),
        ("/v1/principals".into(), json!({"id": PAYER_PRINCIPAL.to_string(), "role": "holder", "name": "Demo Reader"})),
        (
            "/v1/accounts".into(),
            json!({"id": PAYER_ACCOUNT.to_string(), "asset_code": "USD", "asset_scale": 9,
                "owner_id": PAYER_PRINCIPAL.to_string(), "flags": ["debits_must_not_exceed_credits", "history"]}),
        ),
        (
            "/v1/transfers".into(),
            json!({"id": (PAYER_ACCOUNT * 1000 + 1).to_string(), "debit_account_id": ISSUER_ACCOUNT.to_string(),
                "credit_account_id": PAYER_ACCOUNT.to_string(), "amount": PAYER_FUNDS.to_string(),
                "asset_code": "USD", "asset_scale": 9}),
        ),
        (format!("/v1/principals/{PAYER_PRINCIPAL}/devices"), json!({"id": PAYER_DEVICE.to_string(), "jwk": jwk})),
    ];
    for (path, body) in &creates {
        api.expect(reqwest::Method::POST, path, Some(body))
            .await
            .with_context(|| format!("setting up the playground ({path})"))?;
    }
    // The routes pay the merchant's account: it must be the demo merchant's, not an account
    // someone made earlier under the same id.
    let merchant = api.expect(reqwest::Method::GET, &format!("/v1/accounts/{MERCHANT_ACCOUNT}"), None).await?;
    if merchant.get("owner_id").and_then(Value::as_str) != Some(&MERCHANT_PRINCIPAL.to_string()) {
        anyhow::bail!("account {MERCHANT_ACCOUNT} belongs to someone else: the demo routes stay closed");
    }
    ready.store(true, Ordering::Release);
    let server = if base == "http://127.0.0.1:8402" { String::new() } else { format!(" --server {base}") };
    crate::outln!("\n--- playground: priced routes keep running ---");
    for route in &ROUTES {
        crate::outln!("  {base}{}  {}", route.path, route.what);
    }
    crate::outln!(
        "\nPay them as the demo reader (account {PAYER_ACCOUNT}, $5.00; device {PAYER_DEVICE}, key in {}):",
        key_path.display()
    );
    crate::outln!(
        "  obol pay {base}/demo/article --key-file {} --kid {PAYER_KID} --device {PAYER_DEVICE} --account {PAYER_ACCOUNT} \
         --asset USD/9 --tab-budget 4000000 --max-per-request 1000000 --count 3 --settle{server}",
        key_path.display()
    );
    // Keys for the dashboard, valid for 12 hours (a new pair at each start).
    let mut dashboard_keys = Vec::new();
    for (principal, who) in [(PAYER_PRINCIPAL, "the demo reader"), (MERCHANT_PRINCIPAL, "Demo News (merchant)")] {
        let body = json!({"expires_in_s": DASHBOARD_KEY_TTL_S});
        let key = api.expect(reqwest::Method::POST, &format!("/v1/principals/{principal}/keys"), Some(&body)).await?;
        let text = key.get("key").and_then(Value::as_str).context("a key in the answer")?.to_string();
        dashboard_keys.push((who, text));
    }
    let dashboard = base.replacen("://127.0.0.1:", "://localhost:", 1);
    crate::outln!("\nSee it in the dashboard at {dashboard}/app/ (keys valid 12 hours):");
    for (who, text) in &dashboard_keys {
        crate::outln!("  sign in as {who} with {text}");
    }
    crate::outln!("\n--- demo ready; obol keeps serving (Ctrl-C to stop) ---\n");
    Ok(())
}

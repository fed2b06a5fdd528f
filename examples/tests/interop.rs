//! Goal: obol's HTTP 402 speaks x402 v2 as independent implementations do: the PyPI checker
//! `x402-conformance` 1.6.0 passes obol's 402 answer and its facilitator's `/supported`, and the
//! real `@x402/fetch` 2.27.0 client (npm), with the scheme plug-in in `clients/x402-obol`, pays an
//! obol-priced route end to end with PayWord ticks, vouchers and `exact`, the ledger owing exactly
//! what it acknowledged.
//! Method: a server with a priced route on loopback (the examples' sandbox); the Python checker
//! from the virtual environment `scripts/test` prepares (OBOL_PYTHON) and Node with the plug-in's
//! `npm ci` dependencies (OBOL_NODE). Without them the test says it skipped, except under CI=true,
//! where it fails.

use std::path::PathBuf;
use std::process::Command;

use axum::Router;
use axum::routing::get;
use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::{Signer, SigningKey};
use obol_core::channel::{Commitment, payword_chain};
use obol_examples::{Sandbox, usd};
use obol_http::x402::Price;
use serde_json::{Value, json};

const PRICE: u128 = 1_000;
const MERCHANT: u128 = 2_000;
const PAYER: u128 = 1_000;
const DEVICE_SEED: [u8; 32] = [0x42; 32];

fn tool(variable: &str, what: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(path) => Some(path),
        Err(_) => {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true needs {variable} (scripts/test sets it)");
            eprintln!("SKIPPED: {what} (run it through ./scripts/test)");
            None
        }
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

async fn priced() -> Sandbox {
    Sandbox::start("interop", |seller| {
        let price = Price::new(PRICE, usd(), MERCHANT, "An interoperable resource");
        Router::new().route("/priced", get(|| async { "paid content" }).layer(seller.layer(price)))
    })
    .await
    .unwrap()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x402_conformance_passes_the_402_answer_and_the_facilitator() {
    let Some(python) = tool("OBOL_PYTHON", "x402-conformance checks") else { return };
    let checker = PathBuf::from(&python).with_file_name("x402conf");
    let sandbox = priced().await;
    sandbox.merchant(200, "Merchant", MERCHANT).await.unwrap();
    let runs = [
        vec!["resource".to_string(), format!("{}/priced", sandbox.base), "--fail-on-error".into()],
        vec!["live".to_string(), format!("{}/v1/x402", sandbox.base), "--fail-on-error".into()],
    ];
    for args in runs {
        let output = tokio::task::spawn_blocking({
            let checker = checker.clone();
            let args = args.clone();
            move || Command::new(checker).args(args).output().expect("run x402conf")
        })
        .await
        .unwrap();
        let report: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        assert!(output.status.success(), "x402conf {args:?}: {report}\n{}", String::from_utf8_lossy(&output.stderr));
        let checks: Vec<&Value> =
            report["results"].as_array().unwrap().iter().flat_map(|r| r["checks"].as_array().unwrap()).collect();
        assert!(checks.len() >= 4, "the checker ran its checks: {report}");
        for check in checks {
            assert_eq!(check["pass"], true, "x402conf {args:?}: {check}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_x402_fetch_client_pays_an_obol_route_with_every_scheme() {
    let Some(node) = tool("OBOL_NODE", "@x402/fetch interoperability") else { return };
    let plugin = repo().join("clients/x402-obol");
    let sandbox = priced().await;
    sandbox.merchant(200, "Merchant", MERCHANT).await.unwrap();
    let payer = sandbox.payer_with_key(100, "Agent", PAYER, 1_000_000, DEVICE_SEED).await.unwrap();
    let device = payer.device_id.to_string();
    let open = |id: &str, budget: u128| {
        json!({"id": id, "payer_account_id": PAYER.to_string(), "payee_account_id": MERCHANT.to_string(),
            "budget": budget.to_string(), "asset_code": "USD", "asset_scale": 9, "timeout_s": 600, "device_id": device})
    };
    sandbox.op("/v1/tabs", open("71", 10 * PRICE)).await.unwrap();
    let tab = sandbox.op("/v1/tabs", open("72", 10 * PRICE)).await.unwrap();
    let network = obol_core::channel::Network::named(tab["network"].as_str().expect("the tab names its network"));
    let chain_seed = [0x17u8; 32];
    let chain = payword_chain(chain_seed, 10);
    let key = SigningKey::from_bytes(&DEVICE_SEED);
    let signature = key.sign(&Commitment::signed_message(&network, 72, MERCHANT, &chain[0], 10, PRICE)).to_bytes();
    let commitment = Commitment {
        tab_id: 72,
        payee_id: MERCHANT,
        network,
        root: chain[0],
        length: 10,
        value_per_tick: PRICE,
        signature,
    };
    let body = json!({"commitment": Base64UrlUnpadded::encode_string(&commitment.encode())});
    sandbox.op("/v1/tabs/72/commitment", body).await.unwrap();
    let url = format!("{}/priced", sandbox.base);
    let configs = [
        json!({"url": url, "network": sandbox.network, "count": 3, "scheme": "obol-voucher", "payTo": MERCHANT.to_string(), "seed": hex(&DEVICE_SEED), "tabId": "71"}),
        json!({"url": url, "network": sandbox.network, "count": 4, "scheme": "obol-payword", "payTo": MERCHANT.to_string(), "tabId": "72",
            "valuePerTick": PRICE.to_string(), "chainSeed": hex(&chain_seed), "chainLength": 10}),
        json!({"url": url, "network": sandbox.network, "count": 2, "scheme": "exact", "payTo": MERCHANT.to_string(), "seed": hex(&DEVICE_SEED),
            "from": PAYER.to_string(), "device": device}),
    ];
    let dir = std::env::temp_dir().join(format!("obol-x402-fetch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let self_test = Command::new(&node).arg("selftest.mjs").current_dir(&plugin).output().expect("run node");
    assert!(self_test.status.success(), "the plug-in's self-test: {}", String::from_utf8_lossy(&self_test.stdout));
    for (n, config) in configs.iter().enumerate() {
        let path = dir.join(format!("config-{n}.json"));
        std::fs::write(&path, config.to_string()).unwrap();
        let output = tokio::task::spawn_blocking({
            let (node, plugin) = (node.clone(), plugin.clone());
            move || Command::new(node).arg("pay.mjs").arg(path).current_dir(plugin).output().expect("run node")
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{}: {stdout}\n{}", config["scheme"], String::from_utf8_lossy(&output.stderr));
        let lines: Vec<Value> = stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(lines.len() as u64, config["count"].as_u64().unwrap());
        for line in &lines {
            assert_eq!((line["status"].as_u64(), line["body"].as_str()), (Some(200), Some("paid content")), "{line}");
            assert_eq!(line["receipt"]["success"], true, "{line}");
            assert!(line["receipt"]["network"].as_str().unwrap().starts_with("obol:"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(sandbox.tab_cumulative(71), Some(3 * PRICE), "three vouchers acknowledged, three owed");
    assert_eq!(sandbox.tab_cumulative(72), Some(4 * PRICE), "four ticks acknowledged, four owed");
    assert_eq!(sandbox.balances(MERCHANT).await.unwrap().1, 2 * PRICE, "two exact transfers posted");
}

//! Goal: `obol tab ...` manages tabs and `obol pay URL` pays a priced route as a device, as
//! README.md shows: paid answers with receipts, the tab settled at the end, and a request above the
//! holder's per-request limit refused before anything is paid, with the reason.
//! Method: a server with a priced route on loopback (the examples' sandbox); the real `obol`
//! binary runs against it as a user would.

use std::process::{Command, Output};

use axum::Router;
use axum::routing::get;
use obol_examples::{Sandbox, usd};
use obol_http::x402::Price;
use serde_json::Value;

const PRICE: u128 = 4_000;
const MERCHANT: u128 = 2_000;
const PAYER: u128 = 1_000;
const DEVICE_SEED: [u8; 32] = [0x24; 32];

async fn sandbox() -> Sandbox {
    let sandbox = Sandbox::start("cli-pay", |seller| {
        let price = Price::new(PRICE, usd(), MERCHANT, "A priced page");
        Router::new().route("/page", get(|| async { "a priced page" }).layer(seller.layer(price)))
    })
    .await
    .unwrap();
    sandbox.merchant(200, "Merchant", MERCHANT).await.unwrap();
    sandbox.payer_with_key(100, "Payer", PAYER, 1_000_000, DEVICE_SEED).await.unwrap();
    sandbox
}

async fn obol(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || Command::new(env!("CARGO_BIN_EXE_obol")).args(args).output().expect("run obol"))
        .await
        .unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obol_pay_pays_a_priced_url_from_a_tab_and_settles_it() {
    let sandbox = sandbox().await;
    let dir = std::env::temp_dir().join(format!("obol-pay-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("device.key");
    std::fs::write(&key_file, DEVICE_SEED.iter().map(|b| format!("{b:02x}")).collect::<String>()).unwrap();
    let url = format!("{}/page", sandbox.base);
    let mut args = strings(&["pay", &url, "--kid", "payer-device", "--device", "1000", "--account", "1000"]);
    args.extend(strings(&[
        "--asset",
        "USD/9",
        "--server",
        &sandbox.base,
        "--tab-budget",
        "20000",
        "--count",
        "3",
        "--settle",
    ]));
    args.extend(["--key-file".to_string(), key_file.display().to_string()]);
    let output = obol(args.clone()).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> =
        stdout.lines().filter(|l| l.starts_with("{\"")).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for line in &lines {
        assert_eq!((line["status"].as_u64(), line["body"].as_str()), (Some(200), Some("a priced page")), "{line}");
        assert_eq!(line["receipt"]["success"], true);
    }
    assert!(stdout.contains("\"status\": \"settled\""), "the tab was settled: {stdout}");
    assert_eq!(sandbox.balances(MERCHANT).await.unwrap().1, 3 * PRICE);
    assert_eq!(sandbox.balances(PAYER).await.unwrap().0, 3 * PRICE);

    let mut limited = args;
    limited.extend(strings(&["--max-per-request", "3999"]));
    let output = obol(limited).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("refused by your own limits"), "the refusal says why: {stderr}");
    assert_eq!(sandbox.balances(MERCHANT).await.unwrap().1, 3 * PRICE, "nothing more was paid");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obol_tab_opens_shows_tops_up_and_settles_a_tab() {
    let sandbox = sandbox().await;
    let connection = strings(&["--url", &sandbox.base, "--api-key", sandbox.operator_key()]);
    let run = |mut args: Vec<String>| {
        args.extend(connection.clone());
        async move {
            let output = obol(args).await;
            assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
            serde_json::from_slice::<Value>(&output.stdout).unwrap()
        }
    };
    let opened = run(strings(&[
        "tab",
        "open",
        "--id",
        "77",
        "--payer",
        "1000",
        "--payee",
        "2000",
        "--budget",
        "5000",
        "--asset",
        "USD/9",
        "--device",
        "1000",
        "--timeout-s",
        "600",
    ]))
    .await;
    assert_eq!((opened["id"].as_str(), opened["escrow"].as_str()), (Some("77"), Some("5000")));
    let topped = run(strings(&["tab", "topup", "77", "--amount", "2500"])).await;
    assert_eq!(topped["escrow"], "7500");
    assert_eq!(run(strings(&["tab", "show", "77"])).await["status"], "open");
    let settled = run(strings(&["tab", "settle", "77"])).await;
    assert_eq!((settled["status"].as_str(), settled["cumulative"].as_str()), (Some("settled"), Some("0")));
    assert_eq!(sandbox.balances(PAYER).await.unwrap().2, 0, "the whole escrow came back");
}

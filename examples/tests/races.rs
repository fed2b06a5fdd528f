//! Goal: vouchers for one tab racing on two connections are never accepted beyond the escrow and
//! each unit is owed once; a voucher whose seq goes back is refused with a clear code; an expired
//! tab refuses payments.
//! Method: a server on loopback (the examples' sandbox); two HTTP clients, each with its own
//! connection, submit interleaved vouchers for the same tab as the payee would, concurrently.

use axum::Router;
use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::{Signer, SigningKey};
use obol_core::channel::{Network, Voucher};
use obol_examples::Sandbox;
use serde_json::{Value, json};

const MERCHANT: u128 = 2_000;
const PAYER: u128 = 1_000;
const DEVICE_SEED: [u8; 32] = [0x61; 32];
const ESCROW: u128 = 1_000;

fn voucher(network: &str, tab: u128, cumulative: u128, seq: u64) -> String {
    let key = SigningKey::from_bytes(&DEVICE_SEED);
    let signature =
        key.sign(&Voucher::signed_message(&Network::named(network), tab, MERCHANT, cumulative, seq)).to_bytes();
    Base64UrlUnpadded::encode_string(&Voucher { tab_id: tab, payee_id: MERCHANT, cumulative, seq, signature }.encode())
}

async fn setup() -> (Sandbox, String) {
    let sandbox = Sandbox::start("races", |_| Router::new()).await.unwrap();
    sandbox.merchant(200, "Merchant", MERCHANT).await.unwrap();
    let payer = sandbox.payer_with_key(100, "Payer", PAYER, 1_000_000, DEVICE_SEED).await.unwrap();
    let merchant_key =
        sandbox.op("/v1/principals/200/keys", json!({})).await.unwrap()["key"].as_str().unwrap().to_string();
    for (id, timeout_s) in [("5", 600), ("6", 1)] {
        sandbox
            .op(
                "/v1/tabs",
                json!({"id": id, "payer_account_id": PAYER.to_string(), "payee_account_id": MERCHANT.to_string(),
                "budget": ESCROW.to_string(), "asset_code": "USD", "asset_scale": 9, "timeout_s": timeout_s,
                "device_id": payer.device_id.to_string()}),
            )
            .await
            .unwrap();
    }
    (sandbox, merchant_key)
}

async fn submit(client: &reqwest::Client, sandbox: &Sandbox, key: &str, tab: u128, voucher: String) -> (u16, Value) {
    let response = client
        .post(format!("{}/v1/tabs/{tab}/vouchers", sandbox.base))
        .bearer_auth(key)
        .json(&json!({"voucher": voucher}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vouchers_racing_on_two_connections_never_pay_beyond_escrow_or_twice() {
    let (sandbox, merchant_key) = setup().await;
    // Two clients, one connection each: their requests interleave on the server.
    let clients: Vec<reqwest::Client> = (0..2)
        .map(|_| obol_client::http_client_builder(None).unwrap().pool_max_idle_per_host(1).build().unwrap())
        .collect();
    let mut tasks = Vec::new();
    for (lane, client) in clients.iter().enumerate() {
        let (client, base, key) = (client.clone(), sandbox.base.clone(), merchant_key.clone());
        let network = sandbox.network.clone();
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            // Lane 0 sends the odd seqs, lane 1 the even ones; each voucher adds 30 (40 x 30 > 1,000).
            for seq in (1 + lane as u64..=80).step_by(2) {
                let response = client
                    .post(format!("{base}/v1/tabs/5/vouchers"))
                    .bearer_auth(&key)
                    .json(&json!({"voucher": voucher(&network, 5, u128::from(seq) * 30, seq)}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                answers.push((status, response.json::<Value>().await.unwrap()));
            }
            answers
        }));
    }
    let mut paid = 0u128;
    let mut accepted = 0;
    for task in tasks {
        for (status, answer) in task.await.unwrap() {
            match status {
                200 => {
                    paid += answer["paid"].as_str().unwrap().parse::<u128>().unwrap();
                    accepted += u32::from(answer["stale"] == false);
                }
                409 => assert!(
                    matches!(answer["code"].as_str(), Some("beyond_escrow" | "voucher_not_increasing")),
                    "{answer}"
                ),
                other => panic!("answered {other}: {answer}"),
            }
        }
    }
    let owed = sandbox.tab_cumulative(5).unwrap();
    assert!(owed <= ESCROW, "never beyond escrow: {owed}");
    assert_eq!(paid, owed, "every acknowledged unit is owed exactly once");
    assert!(accepted > 0);
    let settled = sandbox.op("/v1/tabs/5/settle", json!({})).await.unwrap();
    assert_eq!(settled["cumulative"].as_str().unwrap().parse::<u128>().unwrap(), paid);
    assert_eq!(sandbox.balances(MERCHANT).await.unwrap().1, paid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seq_regression_and_an_expired_tab_are_refused_with_clear_codes() {
    let (sandbox, merchant_key) = setup().await;
    let client = obol_client::http_client(None).unwrap();
    assert_eq!(submit(&client, &sandbox, &merchant_key, 5, voucher(&sandbox.network, 5, 100, 5)).await.0, 200);
    let (status, problem) = submit(&client, &sandbox, &merchant_key, 5, voucher(&sandbox.network, 5, 200, 4)).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("voucher_not_increasing")), "{problem}");
    let (status, problem) = submit(&client, &sandbox, &merchant_key, 5, voucher(&sandbox.network, 5, 100, 6)).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("voucher_not_increasing")), "the amount must grow too");
    assert_eq!(sandbox.tab_cumulative(5), Some(100));
    // Tab 6 took payments for one second.
    loop {
        let (status, answer) = submit(&client, &sandbox, &merchant_key, 6, voucher(&sandbox.network, 6, 10, 1)).await;
        if status == 409 {
            assert_eq!(answer["code"], "tab_expired");
            break;
        }
        assert_eq!(status, 200, "{answer}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

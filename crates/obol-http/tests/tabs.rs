//! Goal: a tab escrows once, is paid by the payer's signed vouchers as the payee submits them,
//! refuses every forged, replayed, misdirected or over-escrow voucher with a clear code, keeps
//! acknowledged payments across a restart, and settles exactly what it owes.
//! Method: the real router over a real engine; a holder's device key signs vouchers in the v1
//! binary form (docs/vouchers.md); a merchant submits them; the store is reopened at the end.

use axum::http::StatusCode;
use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::{Signer, SigningKey};
use obol_core::channel::Voucher;
use serde_json::{Value, json};

mod support;
use support::post;

struct World {
    started: support::Started,
    holder: String,
    merchant: String,
    device: SigningKey,
}

impl World {
    async fn new() -> World {
        let started = support::start("tabs");
        let op = |path: &str, body: Value| {
            let router = started.router.clone();
            let operator = started.operator.clone();
            let path = path.to_string();
            async move {
                let (status, value) = post(&router, &operator, &path, body, None).await;
                assert!(status.is_success(), "{path}: {status} {value}");
                value
            }
        };
        op("/v1/principals", json!({"id": "100", "role": "holder", "name": "Alice"})).await;
        op("/v1/principals", json!({"id": "300", "role": "merchant", "name": "Shop"})).await;
        let holder = op("/v1/principals/100/keys", json!({})).await["key"].as_str().unwrap().to_string();
        let merchant = op("/v1/principals/300/keys", json!({})).await["key"].as_str().unwrap().to_string();
        op("/v1/accounts", json!({"id": "9", "asset_code": "USD", "asset_scale": 9})).await;
        op("/v1/accounts", json!({"id": "1", "asset_code": "USD", "asset_scale": 9, "owner_id": "100", "flags": ["debits_must_not_exceed_credits"]})).await;
        op("/v1/accounts", json!({"id": "2", "asset_code": "USD", "asset_scale": 9, "owner_id": "300"})).await;
        op("/v1/transfers", json!({"id": "1", "debit_account_id": "9", "credit_account_id": "1", "amount": "5000000", "asset_code": "USD", "asset_scale": 9})).await;
        let device = SigningKey::from_bytes(&[12u8; 32]);
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "reader", "x": Base64UrlUnpadded::encode_string(&device.verifying_key().to_bytes())});
        op("/v1/principals/100/devices", json!({"id": "55", "jwk": jwk})).await;
        World { started, holder, merchant, device }
    }

    async fn open(&self, id: &str, budget: &str) -> (StatusCode, Value) {
        let body = json!({"id": id, "payer_account_id": "1", "payee_account_id": "2", "budget": budget,
            "asset_code": "USD", "asset_scale": 9, "timeout_s": 600, "device_id": "55"});
        post(&self.started.router, &self.holder, "/v1/tabs", body, None).await
    }

    fn voucher(&self, tab: u128, payee: u128, cumulative: u128, seq: u64) -> String {
        let signature = self.device.sign(&Voucher::signed_message(tab, payee, cumulative, seq)).to_bytes();
        Base64UrlUnpadded::encode_string(&Voucher { tab_id: tab, payee_id: payee, cumulative, seq, signature }.encode())
    }

    async fn submit(&self, key: &str, tab: u128, voucher: String) -> (StatusCode, Value) {
        post(&self.started.router, key, &format!("/v1/tabs/{tab}/vouchers"), json!({"voucher": voucher}), None).await
    }

    async fn balance(&self, account: &str) -> Value {
        let request = axum::http::Request::get(format!("/v1/accounts/{account}/balance"))
            .header("authorization", format!("Bearer {}", self.started.operator))
            .body(axum::body::Body::empty())
            .unwrap();
        support::send(&self.started.router, request).await.1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_is_paid_by_vouchers_and_settles_what_it_owes() {
    let world = World::new().await;
    let (status, tab) = world.open("7", "1000000").await;
    assert_eq!(status, StatusCode::CREATED, "{tab}");
    assert_eq!(world.balance("1").await["debits_pending"], "1000000");
    let (status, paid) = world.submit(&world.merchant, 7, world.voucher(7, 2, 400_000, 1)).await;
    assert_eq!(status, StatusCode::OK, "{paid}");
    assert_eq!(paid["paid"], "400000");
    let (_, paid) = world.submit(&world.merchant, 7, world.voucher(7, 2, 650_000, 2)).await;
    assert_eq!((paid["paid"].as_str(), paid["tab"]["cumulative"].as_str()), (Some("250000"), Some("650000")));
    let (status, again) = world.submit(&world.merchant, 7, world.voucher(7, 2, 400_000, 1)).await;
    assert_eq!(
        (status, again["stale"].as_bool(), again["paid"].as_str()),
        (StatusCode::OK, Some(true), Some("0")),
        "an older voucher is harmless"
    );
    let (status, settled) = post(&world.started.router, &world.merchant, "/v1/tabs/7/settle", json!({}), None).await;
    assert_eq!((status, settled["status"].as_str()), (StatusCode::OK, Some("settled")), "{settled}");
    let payer = world.balance("1").await;
    assert_eq!((payer["debits_pending"].as_str(), payer["debits_posted"].as_str()), (Some("0"), Some("650000")));
    assert_eq!(world.balance("2").await["credits_posted"], "650000");
    let (status, problem) = world.submit(&world.merchant, 7, world.voucher(7, 2, 700_000, 3)).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("tab_closed")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_misdirected_and_over_escrow_vouchers_are_refused() {
    let world = World::new().await;
    assert_eq!(world.open("8", "1000").await.0, StatusCode::CREATED);
    let mut forged = Base64UrlUnpadded::decode_vec(&world.voucher(8, 2, 500, 1)).unwrap();
    forged[36] ^= 1; // one more minor unit than was signed (500 -> 501)
    let cases = [
        (Base64UrlUnpadded::encode_string(&forged), StatusCode::UNPROCESSABLE_ENTITY, "voucher_signature_invalid"),
        (world.voucher(8, 3, 500, 1), StatusCode::UNPROCESSABLE_ENTITY, "voucher_wrong_payee"),
        (world.voucher(9, 2, 500, 1), StatusCode::UNPROCESSABLE_ENTITY, "voucher_wrong_tab"),
        (world.voucher(8, 2, 1001, 1), StatusCode::CONFLICT, "beyond_escrow"),
        (
            {
                let other = SigningKey::from_bytes(&[99u8; 32]);
                let signature = other.sign(&Voucher::signed_message(8, 2, 500, 1)).to_bytes();
                Base64UrlUnpadded::encode_string(
                    &Voucher { tab_id: 8, payee_id: 2, cumulative: 500, seq: 1, signature }.encode(),
                )
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "voucher_signature_invalid",
        ),
        ("AAAA".to_string(), StatusCode::BAD_REQUEST, "invalid_field"),
    ];
    for (voucher, status, code) in cases {
        let (got, problem) = world.submit(&world.merchant, 8, voucher).await;
        assert_eq!((got, problem["code"].as_str()), (status, Some(code)), "{problem}");
    }
    let (status, _) = world.submit(&world.holder, 8, world.voucher(8, 2, 10, 1)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only the payee submits vouchers");
    let (_, tab) = world.submit(&world.merchant, 8, world.voucher(8, 2, 10, 1)).await;
    assert_eq!(tab["tab"]["cumulative"], "10", "nothing refused above moved the tab");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_vouchers_never_pay_beyond_escrow_or_twice() {
    let world = World::new().await;
    assert_eq!(world.open("9", "100").await.0, StatusCode::CREATED);
    let mut tasks = Vec::new();
    for seq in 1..=40u64 {
        let router = world.started.router.clone();
        let merchant = world.merchant.clone();
        let voucher = world.voucher(9, 2, u128::from(seq) * 5, seq);
        tasks.push(tokio::spawn(async move {
            post(&router, &merchant, "/v1/tabs/9/vouchers", json!({"voucher": voucher}), None).await
        }));
    }
    let mut paid = 0u128;
    for task in tasks {
        let (status, answer) = task.await.unwrap();
        if status == StatusCode::OK {
            paid += answer["paid"].as_str().unwrap().parse::<u128>().unwrap();
        } else {
            assert!(matches!(answer["code"].as_str(), Some("beyond_escrow" | "voucher_not_increasing")), "{answer}");
        }
    }
    let request = axum::http::Request::get("/v1/tabs/9")
        .header("authorization", format!("Bearer {}", world.merchant))
        .body(axum::body::Body::empty())
        .unwrap();
    let (_, tab) = support::send(&world.started.router, request).await;
    let cumulative: u128 = tab["cumulative"].as_str().unwrap().parse().unwrap();
    assert!(cumulative <= 100, "never beyond escrow");
    assert_eq!(paid, cumulative, "every acknowledged unit is owed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_voucher_payments_survive_a_restart() {
    let world = World::new().await;
    assert_eq!(world.open("10", "5000").await.0, StatusCode::CREATED);
    let (status, _) = world.submit(&world.merchant, 10, world.voucher(10, 2, 1234, 1)).await;
    assert_eq!(status, StatusCode::OK);
    world.started.engine.clone().shutdown();
    let node = obol_store::Node::open(obol_store::SqliteStore::open(&world.started.scratch.0).unwrap(), 1).unwrap();
    let ledger = node.ledger();
    let ledger = ledger.read().unwrap();
    let entry = ledger.tab(10).expect("the tab survives");
    assert_eq!((entry.tab.cumulative, entry.tab.seq), (1234, 1), "the acknowledged voucher was journaled");
    let expected = Voucher::decode(&Base64UrlUnpadded::decode_vec(&world.voucher(10, 2, 1234, 1)).unwrap()).unwrap();
    assert_eq!(entry.last_signature, expected.signature, "the signature is kept as evidence");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_pays_no_more_but_what_it_paid_stays_owed() {
    let world = World::new().await;
    assert_eq!(world.open("11", "5000").await.0, StatusCode::CREATED);
    assert_eq!(world.submit(&world.merchant, 11, world.voucher(11, 2, 100, 1)).await.0, StatusCode::OK);
    let (status, _) =
        post(&world.started.router, &world.holder, "/v1/devices/55/status", json!({"status": "revoked"}), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, problem) = world.submit(&world.merchant, 11, world.voucher(11, 2, 200, 2)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("voucher_signature_invalid"))
    );
    let (status, settled) = post(&world.started.router, &world.merchant, "/v1/tabs/11/settle", json!({}), None).await;
    assert_eq!((status, settled["cumulative"].as_str()), (StatusCode::OK, Some("100")));
}

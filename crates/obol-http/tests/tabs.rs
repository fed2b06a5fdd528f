//! Goal: a tab escrows once, is paid by the payer's signed vouchers as the payee submits them,
//! refuses every forged, replayed, misdirected or over-escrow voucher with a clear code, keeps
//! acknowledged payments across a restart, and settles exactly what it owes.
//! Method: the real router over a real engine; a holder's device key signs vouchers in the v1
//! binary form (docs/vouchers.md); a merchant submits them; the store is reopened at the end.

use axum::http::StatusCode;
use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::{Signer, SigningKey};
use obol_core::channel::{Network, Voucher};
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
        let support::Parties { started, holder, merchant, device } = support::parties("tabs", "5000000", 12).await;
        World { started, holder, merchant, device }
    }

    async fn open(&self, id: &str, budget: &str) -> (StatusCode, Value) {
        let body = json!({"id": id, "payer_account_id": "1", "payee_account_id": "2", "budget": budget,
            "asset_code": "USD", "asset_scale": 9, "timeout_s": 600, "device_id": "55"});
        post(&self.started.router, &self.holder, "/v1/tabs", body, None).await
    }

    fn voucher(&self, tab: u128, payee: u128, cumulative: u128, seq: u64) -> String {
        let signature = self
            .device
            .sign(&Voucher::signed_message(&Network::named(obol_http::LOCAL_NETWORK), tab, payee, cumulative, seq))
            .to_bytes();
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
                let signature = other
                    .sign(&Voucher::signed_message(&Network::named(obol_http::LOCAL_NETWORK), 8, 2, 500, 1))
                    .to_bytes();
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
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("tab_device_inactive")));
    let (status, settled) = post(&world.started.router, &world.merchant, "/v1/tabs/11/settle", json!({}), None).await;
    assert_eq!((status, settled["cumulative"].as_str()), (StatusCode::OK, Some("100")));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payword_ticks_pay_one_hash_each_and_bad_words_are_refused() {
    use obol_core::channel::{Commitment, Network, payword_chain};
    let world = World::new().await;
    assert_eq!(world.open("12", "1000").await.0, StatusCode::CREATED);
    let chain = payword_chain([42u8; 32], 100);
    let tick = |index: u32, word: &[u8; 32]| {
        let router = world.started.router.clone();
        let merchant = world.merchant.clone();
        let body = json!({"index": index, "word": hex(word)});
        async move { post(&router, &merchant, "/v1/tabs/12/ticks", body, None).await }
    };
    let (status, problem) = tick(1, &chain[1]).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("payword_not_committed")));
    let commit = |length: u32, value: u128| {
        let signature = world
            .device
            .sign(&Commitment::signed_message(
                &Network::named(obol_http::LOCAL_NETWORK),
                12,
                2,
                &chain[0],
                length,
                value,
            ))
            .to_bytes();
        let commitment = Commitment {
            tab_id: 12,
            payee_id: 2,
            network: Network::named(obol_http::LOCAL_NETWORK),
            root: chain[0],
            length,
            value_per_tick: value,
            signature,
        };
        json!({"commitment": Base64UrlUnpadded::encode_string(&commitment.encode())})
    };
    let (status, problem) =
        post(&world.started.router, &world.holder, "/v1/tabs/12/commitment", commit(100, 11), None).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("beyond_escrow")), "100 x 11 > 1000");
    let (status, tab) =
        post(&world.started.router, &world.holder, "/v1/tabs/12/commitment", commit(100, 10), None).await;
    assert_eq!((status, tab["payword_length"].as_u64()), (StatusCode::OK, Some(100)), "{tab}");
    // The same commitment again (a retry whose answer was lost) stands; another chain is refused
    // for what it is.
    let (status, tab) =
        post(&world.started.router, &world.holder, "/v1/tabs/12/commitment", commit(100, 10), None).await;
    assert_eq!((status, tab["payword_length"].as_u64()), (StatusCode::OK, Some(100)), "{tab}");
    let (status, problem) =
        post(&world.started.router, &world.holder, "/v1/tabs/12/commitment", commit(50, 10), None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("payword_already_committed")),
        "{problem}"
    );
    let (status, paid) = tick(1, &chain[1]).await;
    assert_eq!((status, paid["paid"].as_str()), (StatusCode::OK, Some("10")), "{paid}");
    let (status, paid) = tick(1, &chain[1]).await;
    assert_eq!((status, paid["stale"].as_bool(), paid["paid"].as_str()), (StatusCode::OK, Some(true), Some("0")));
    let (_, paid) = tick(4, &chain[4]).await;
    assert_eq!(paid["paid"], "30", "skipping two ticks pays three");
    let (status, problem) = tick(5, &chain[6]).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("payword_bad_preimage")));
    let (status, problem) = tick(101, &[0u8; 32]).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("payword_beyond_chain")));
    let (status, problem) =
        post(&world.started.router, &world.merchant, "/v1/tabs/12/ticks", json!({"index": 5, "word": "00ff"}), None)
            .await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_field")));
    let (_, tab) = tick(100, &chain[100]).await;
    assert_eq!((tab["tab"]["cumulative"].as_str(), tab["tab"]["payword_index"].as_u64()), (Some("1000"), Some(100)));
    let (_, settled) = post(&world.started.router, &world.merchant, "/v1/tabs/12/settle", json!({}), None).await;
    assert_eq!(settled["status"], "settled");
    assert_eq!(world.balance("2").await["credits_posted"], "1000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_up_raises_the_escrow_and_only_the_payer_may_do_it() {
    let world = World::new().await;
    assert_eq!(world.open("13", "1000").await.0, StatusCode::CREATED);
    assert_eq!(world.submit(&world.merchant, 13, world.voucher(13, 2, 1000, 1)).await.0, StatusCode::OK);
    let (status, problem) = world.submit(&world.merchant, 13, world.voucher(13, 2, 1500, 2)).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::CONFLICT, Some("beyond_escrow")));
    let top_up = |key: &str, amount: &str| {
        let router = world.started.router.clone();
        let key = key.to_string();
        let body = json!({"amount": amount});
        async move { post(&router, &key, "/v1/tabs/13/topup", body, None).await }
    };
    assert_eq!(top_up(&world.merchant, "500").await.0, StatusCode::FORBIDDEN, "the payee cannot top up");
    let (status, problem) = top_up(&world.holder, "99999999999").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("exceeds_credits")),
        "{problem}"
    );
    assert_eq!(top_up(&world.holder, "0").await.0, StatusCode::BAD_REQUEST);
    let (status, tab) = top_up(&world.holder, "500").await;
    assert_eq!((status, tab["escrow"].as_str()), (StatusCode::OK, Some("1500")), "{tab}");
    assert_eq!(world.balance("1").await["debits_pending"], "1500", "one escrow held, not two");
    let (_, paid) = world.submit(&world.merchant, 13, world.voucher(13, 2, 1500, 2)).await;
    assert_eq!(paid["paid"], "500");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_vouchers_is_verified_together_and_each_gets_its_answer() {
    let world = World::new().await;
    for id in ["20", "21", "22"] {
        assert_eq!(world.open(id, "1000").await.0, StatusCode::CREATED);
    }
    let mut forged = Base64UrlUnpadded::decode_vec(&world.voucher(22, 2, 300, 1)).unwrap();
    forged[36] ^= 1;
    let vouchers = vec![
        world.voucher(20, 2, 100, 1),
        world.voucher(21, 2, 200, 1),
        Base64UrlUnpadded::encode_string(&forged),
        world.voucher(20, 2, 100, 1),
        world.voucher(21, 2, 2000, 2),
        "!!".to_string(),
        world.voucher(999, 2, 1, 1),
    ];
    let (status, answer) =
        post(&world.started.router, &world.merchant, "/v1/vouchers", json!({"vouchers": vouchers}), None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let outcomes: Vec<(String, String, bool, Option<String>)> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["tab_id"].as_str().unwrap().into(),
                r["paid"].as_str().unwrap().into(),
                r["stale"].as_bool().unwrap(),
                r["error"].as_str().map(String::from),
            )
        })
        .collect();
    let expected = [
        ("20", "100", false, None),
        ("21", "200", false, None),
        ("22", "0", false, Some("voucher_signature_invalid")),
        ("20", "0", true, None),
        ("21", "0", false, Some("beyond_escrow")),
        ("0", "0", false, Some("invalid_field")),
        ("999", "0", false, Some("tab_not_found")),
    ];
    for (got, want) in outcomes.iter().zip(expected) {
        assert_eq!((got.0.as_str(), got.1.as_str(), got.2, got.3.as_deref()), want);
    }
    assert_eq!(outcomes.len(), expected.len());
    let (status, _) = post(
        &world.started.router,
        &world.holder,
        "/v1/vouchers",
        json!({"vouchers": [world.voucher(20, 2, 150, 2)]}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let request = axum::http::Request::get("/v1/tabs/20")
        .header("authorization", format!("Bearer {}", world.merchant))
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(support::send(&world.started.router, request).await.1["cumulative"], "100", "a payer cannot submit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tabs_are_settled_by_the_sweep_and_keep_every_acknowledged_payment() {
    let world = World::new().await;
    let body = json!({"id": "30", "payer_account_id": "1", "payee_account_id": "2", "budget": "900",
        "asset_code": "USD", "asset_scale": 9, "timeout_s": 1, "device_id": "55"});
    assert_eq!(post(&world.started.router, &world.holder, "/v1/tabs", body, None).await.0, StatusCode::CREATED);
    assert_eq!(world.open("31", "100").await.0, StatusCode::CREATED);
    assert_eq!(world.submit(&world.merchant, 30, world.voucher(30, 2, 250, 1)).await.0, StatusCode::OK);
    let state = world.started.state.clone();
    assert_eq!(obol_app::tabs::settle_due_tabs(&state).await.unwrap(), 0, "nothing is due yet");
    // The tab accepts payments for one second; wait for its expiry, then sweep.
    let expires_ns: u64 = {
        let ledger = state.engine.ledger().read().unwrap();
        ledger.tab(30).unwrap().tab.expires_ns
    };
    while (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64) < expires_ns {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(obol_app::tabs::settle_due_tabs(&state).await.unwrap(), 1);
    let payer = world.balance("1").await;
    assert_eq!((payer["debits_pending"].as_str(), payer["debits_posted"].as_str()), (Some("100"), Some("250")));
    assert_eq!(world.balance("2").await["credits_posted"], "250");
    assert_eq!(obol_app::tabs::settle_due_tabs(&state).await.unwrap(), 0, "settled once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_key_rotation_the_old_key_pays_no_more_and_the_new_one_does() {
    let world = World::new().await;
    assert_eq!(world.open("14", "5000").await.0, StatusCode::CREATED);
    assert_eq!(world.submit(&world.merchant, 14, world.voucher(14, 2, 100, 1)).await.0, StatusCode::OK);
    let fresh = SigningKey::from_bytes(&[77u8; 32]);
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "reader-2", "x": Base64UrlUnpadded::encode_string(&fresh.verifying_key().to_bytes())});
    let (status, answer) =
        post(&world.started.router, &world.holder, "/v1/devices/55/rotate", json!({"jwk": jwk}), None).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, problem) = world.submit(&world.merchant, 14, world.voucher(14, 2, 200, 2)).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("voucher_signature_invalid"))
    );
    let signature =
        fresh.sign(&Voucher::signed_message(&Network::named(obol_http::LOCAL_NETWORK), 14, 2, 200, 2)).to_bytes();
    let renewed = Base64UrlUnpadded::encode_string(
        &Voucher { tab_id: 14, payee_id: 2, cumulative: 200, seq: 2, signature }.encode(),
    );
    let (status, paid) = world.submit(&world.merchant, 14, renewed).await;
    assert_eq!((status, paid["paid"].as_str()), (StatusCode::OK, Some("100")));
}

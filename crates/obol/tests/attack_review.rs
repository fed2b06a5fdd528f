//! Goal: a second, fresh-eyed attack on the money holes commit a73aab3 closed (escrows moved only
//! by tab commands, pending transfers resolved by their credit side, device limits and step-up on
//! tabs): each attack reaches the same money by another route (linked batches, a risk review that
//! re-runs a held request, a device signing for another device's tab, a top-up after a settle, the
//! x402 facilitator) and asserts the safe answer (status and problem code) and an unchanged ledger.
//! A test that fails shows a hole that is still open.
//! Method: the real `obol serve` binary on a scratch data directory, with a policy directory whose
//! one rule holds payments of 1,001 to 2,000 minor units for review; an operator sets up a holder
//! (100, account 1 funded from platform account 9, device 55) and a merchant (300, account 2) in
//! USD at scale 2, then the holder, the merchant, a device (RFC 9421 signatures) or the operator
//! attacks over HTTP.

use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};

mod support;
use support::{Parties as World, code};

const FUNDS: u128 = 100_000;

const POLICY: &str = "name = \"attack\"\nversion = 1\neffective_from_s = 0\n\n[[rules]]\nid = \"hold\"\naction = \"review\"\nowner = \"risk@test\"\nwhen = \"amount_minor > 1000 && amount_minor <= 2000\"\nreason_en = \"Held.\"\nreason_ko = \"보류.\"\n";

/// The parties in USD at scale 2, with the holding policy in force.
async fn world(tag: &str) -> World {
    World::start(&format!("attack-{tag}"), 2, FUNDS, Some(("attack@1", POLICY))).await
}

async fn both(world: &World) -> ([u128; 4], [u128; 4]) {
    (world.balances("1").await, world.balances("2").await)
}

/// A device-signed payment of `amount` from account 1 to account 2.
async fn device_pays(world: &World, id: &str, amount: u128) -> (u16, Value) {
    let pay = json!({"id": id, "debit_account_id": "1", "credit_account_id": "2", "amount": amount.to_string(),
        "asset_code": "USD", "asset_scale": 2});
    world.api.post_signed(&world.device, "reader", "/v1/transfers", &pay).await
}

async fn decide(world: &World, review: &str, decision: &str) -> (u16, Value) {
    let body = json!({"decision": decision, "note": "attack review"});
    world.api.post(&world.operator, &format!("/v1/risk/reviews/{review}/decision"), body, None).await
}

async fn register_second_device(world: &World) -> SigningKey {
    let jwk = obol_client::Wallet::device_jwk(&[43; 32], "second");
    let (status, device) =
        world.api.post(&world.holder, "/v1/principals/100/devices", json!({"id": "56", "jwk": jwk}), None).await;
    assert_eq!(status, 201, "{device}");
    SigningKey::from_bytes(&[43; 32])
}

fn results(value: &Value) -> Vec<String> {
    value["results"]
        .as_array()
        .map(|all| all.iter().map(|r| r["result"].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tabs_escrow_cannot_be_moved_inside_a_linked_batch_by_payee_payer_or_operator() {
    let world = world("linked").await;
    let (status, tab) = world.open_tab("7", 5_000, "55").await;
    assert_eq!(status, 201, "{tab}");
    let escrow = tab["escrow_transfer_id"].as_str().unwrap().to_string();
    assert_eq!(world.pay_voucher(7, 10, 1).await.0, 200);
    let before = both(&world).await;

    // The payee hides the post of the whole escrow in a linked chain.
    let chain = json!({"transfers": [
        {"id": "910", "pending_id": escrow, "flags": ["post_pending", "linked"]},
        {"id": "911", "pending_id": escrow, "amount": "5000", "flags": ["post_pending"]},
    ]});
    let (status, answer) = world.api.post(&world.merchant, "/v1/transfers/batch", chain, None).await;
    if status == 200 {
        let got = results(&answer);
        assert_eq!(got.len(), 2, "{answer}");
        assert_eq!(got[0], "pending_transfer_belongs_to_tab", "{answer}");
        assert!(got.iter().all(|r| r != "ok"), "{answer}");
    } else {
        assert_eq!((status, code(&answer)), (403, "pending_transfer_belongs_to_tab"), "{answer}");
    }
    // The payer hides the void behind a small, valid payment it links to it.
    let chain = json!({"transfers": [
        {"id": "912", "debit_account_id": "1", "credit_account_id": "2", "amount": "5",
            "asset_code": "USD", "asset_scale": 2, "flags": ["linked"]},
        {"id": "913", "pending_id": escrow, "flags": ["void_pending"]},
    ]});
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers/batch", chain, None).await;
    assert_eq!((status, code(&problem)), (403, "forbidden"), "{problem}");
    // Not even the operator, behind a platform transfer.
    let chain = json!({"transfers": [
        {"id": "914", "debit_account_id": "9", "credit_account_id": "2", "amount": "1",
            "asset_code": "USD", "asset_scale": 2, "flags": ["linked"]},
        {"id": "915", "pending_id": escrow, "flags": ["void_pending"]},
    ]});
    let (status, answer) = world.api.post(&world.operator, "/v1/transfers/batch", chain, None).await;
    assert_eq!(status, 200, "{answer}");
    let got = results(&answer);
    assert_eq!(got[1], "pending_transfer_belongs_to_tab", "{answer}");
    assert_ne!(got[0], "ok", "the linked platform transfer fails with the escrow's void: {answer}");
    // Retrying with the same ids changes nothing either.
    let retry = json!({"id": "910", "pending_id": escrow, "flags": ["post_pending"]});
    let (status, problem) = world.api.post(&world.merchant, "/v1/transfers", retry, None).await;
    assert_eq!((status, code(&problem)), (403, "pending_transfer_belongs_to_tab"), "{problem}");
    assert_eq!(both(&world).await, before, "nothing moved");
    assert_eq!(world.balances("9").await[2..], [0, 0], "the platform paid nothing");

    let (status, settled) = world.api.post(&world.merchant, "/v1/tabs/7/settle", json!({}), None).await;
    assert_eq!(status, 200, "{settled}");
    assert_eq!(world.balances("2").await, [0, 0, 0, 10], "the payee gets exactly what the tab was paid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_settled_cannot_be_topped_up_or_its_settlement_replayed() {
    let world = world("topup").await;
    assert_eq!(world.open_tab("7", 500, "55").await.0, 201);
    assert_eq!(world.pay_voucher(7, 40, 1).await.0, 200);
    let (status, settled) = world.api.post(&world.holder, "/v1/tabs/7/settle", json!({}), None).await;
    assert_eq!(status, 200, "{settled}");
    let after_settle = both(&world).await;
    assert_eq!(after_settle, ([0, 40, 0, FUNDS], [0, 0, 0, 40]));

    let (status, problem) = world.api.post(&world.holder, "/v1/tabs/7/topup", json!({"amount": "300"}), None).await;
    assert_eq!((status, code(&problem)), (409, "tab_closed"), "{problem}");
    // A late voucher after the settle pays nothing.
    let (status, problem) = world.pay_voucher(7, 400, 2).await;
    assert_eq!((status, code(&problem)), (409, "tab_closed"), "{problem}");
    // Settling again is harmless.
    let (status, again) = world.api.post(&world.merchant, "/v1/tabs/7/settle", json!({}), None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(both(&world).await, after_settle, "nothing moved after the settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_review_counts_a_device_payment_against_the_devices_daily_limit() {
    let world = world("heldday").await;
    let limits = json!({"limits": {"asset_code": "USD", "asset_scale": 2, "per_payment": "2000", "per_day": "2000"}});
    world.op("/v1/devices/55/limits", limits).await;
    let (status, held) = device_pays(&world, "70", 1_500).await;
    assert_eq!((status, code(&held)), (202, "held_for_review"), "{held}");
    let review = held["review"]["id"].as_str().unwrap().to_string();
    let (status, decided) = decide(&world, &review, "approve").await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["outcome"], json!(["ok"]), "{decided}");
    assert_eq!(world.balances("2").await, [0, 0, 0, 1_500]);

    // 1,500 + 900 is above the day's 2,000: the device must be refused.
    let (status, problem) = device_pays(&world, "71", 900).await;
    assert_eq!(status, 403, "the day's limit forgot the approved payment: {problem}");
    assert!(["device_limit_exceeded", "risk_blocked"].contains(&code(&problem)), "{problem}");
    assert_eq!(world.balances("2").await, [0, 0, 0, 1_500], "only the approved payment moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_review_does_not_pay_from_a_device_revoked_while_it_waited() {
    let world = world("heldrevoked").await;
    let (status, held) = device_pays(&world, "72", 1_500).await;
    assert_eq!((status, code(&held)), (202, "held_for_review"), "{held}");
    let review = held["review"]["id"].as_str().unwrap().to_string();
    let before = both(&world).await;
    // The holder finds the device stolen and revokes it; the analyst then approves the queue.
    let (status, revoked) =
        world.api.post(&world.holder, "/v1/devices/55/status", json!({"status": "revoked"}), None).await;
    assert_eq!(status, 200, "{revoked}");
    let (status, decided) = decide(&world, &review, "approve").await;
    assert!(
        status >= 400 || decided["outcome"] != json!(["ok"]),
        "a revoked device's held payment ran: {status} {decided}"
    );
    let (status, transfer) = world.api.get(&world.operator, "/v1/transfers/72").await;
    assert_eq!(status, 404, "the revoked device's payment exists: {transfer}");
    assert_eq!(both(&world).await, before, "nothing moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_review_does_not_open_a_tab_for_a_device_revoked_while_it_waited() {
    let world = world("heldtab").await;
    let (status, held) = world.open_tab("8", 1_500, "55").await;
    assert_eq!((status, code(&held)), (202, "held_for_review"), "{held}");
    let review = held["review"]["id"].as_str().unwrap().to_string();
    let before = both(&world).await;
    let (status, revoked) =
        world.api.post(&world.holder, "/v1/devices/55/status", json!({"status": "revoked"}), None).await;
    assert_eq!(status, 200, "{revoked}");
    let (status, decided) = decide(&world, &review, "approve").await;
    assert!(status >= 400 || decided["outcome"] != json!(["ok"]), "{status} {decided}");
    let (status, tab) = world.api.get(&world.operator, "/v1/tabs/8").await;
    assert_eq!((status, code(&tab)), (404, "tab_not_found"), "{tab}");
    assert_eq!(both(&world).await, before, "nothing was escrowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_cannot_escape_its_limits_by_opening_tabs_for_another_device() {
    let world = world("otherdevice").await;
    let limits = json!({"limits": {"asset_code": "USD", "asset_scale": 2, "per_payment": "500", "per_day": "1000"}});
    world.op("/v1/devices/55/limits", limits).await;
    register_second_device(&world).await;
    let before = both(&world).await;
    let tab = |id: &str, budget: &str| {
        json!({"id": id, "payer_account_id": "1", "payee_account_id": "2", "budget": budget,
            "asset_code": "USD", "asset_scale": 2, "timeout_s": 600, "device_id": "56"})
    };

    // Device 55 (500 a payment) signs a 4,000 tab naming the holder's unlimited device 56.
    let (status, problem) = world.api.post_signed(&world.device, "reader", "/v1/tabs", &tab("9", "4000")).await;
    assert_eq!(status, 403, "device 55 escrowed 4,000 past its 500 limit: {problem}");
    assert!(["forbidden", "device_limit_exceeded", "risk_blocked"].contains(&code(&problem)), "{problem}");
    assert_eq!(both(&world).await, before, "nothing was escrowed");

    // Within its per-payment limit, device 55 signs tabs of 500 for device 56: its own day's
    // limit of 1,000 must stop the third, whichever device the tab names.
    for id in ["11", "12"] {
        let (status, opened) = world.api.post_signed(&world.device, "reader", "/v1/tabs", &tab(id, "500")).await;
        assert!(
            status == 201 || (status == 403 && code(&opened) == "forbidden"),
            "a tab within the signing device's limits: {status} {opened}"
        );
    }
    let before = both(&world).await;
    let (status, problem) = world.api.post_signed(&world.device, "reader", "/v1/tabs", &tab("13", "500")).await;
    assert_eq!(status, 403, "device 55 escrowed past its day's limit of 1,000: {problem}");
    assert!(["forbidden", "device_limit_exceeded", "risk_blocked"].contains(&code(&problem)), "{problem}");
    assert_eq!(both(&world).await, before, "nothing more was escrowed");
    assert!(world.balances("1").await[0] <= 1_000, "at most the signing device's day is escrowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_x402_facilitator_refuses_an_exact_payment_past_the_devices_limits_or_to_another_payee() {
    use base64ct::{Base64UrlUnpadded, Encoding};
    use obol_core::channel::ExactAuthorization;
    let world = world("x402").await;
    let limits = json!({"limits": {"asset_code": "USD", "asset_scale": 2, "per_payment": "500", "per_day": "600"}});
    world.op("/v1/devices/55/limits", limits).await;
    let (status, supported) = world.api.get(&world.merchant, "/v1/x402/supported").await;
    assert_eq!(status, 200, "{supported}");
    let network = supported["kinds"][0]["network"].as_str().unwrap().to_string();
    let valid_before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    let request = |transfer: u128, amount: u128, pay_to: &str| {
        let authorization = ExactAuthorization {
            network: world.network,
            transfer_id: transfer,
            from: 1,
            to: pay_to.parse().unwrap(),
            amount,
            asset: obol_core::money::Asset::new("USD", 2).unwrap(),
            device_id: 55,
            valid_before_s: valid_before,
        };
        let signature =
            Base64UrlUnpadded::encode_string(&world.device.sign(&authorization.signed_message()).to_bytes());
        let requirements = json!({"scheme": "exact", "network": network, "amount": amount.to_string(), "asset": "USD",
            "payTo": pay_to, "maxTimeoutSeconds": 60, "extra": {"assetScale": 2}});
        json!({"x402Version": 2, "paymentRequirements": requirements.clone(), "paymentPayload": {
            "x402Version": 2, "accepted": requirements, "payload": {"from": "1", "device": "55",
            "transfer": transfer.to_string(), "validBefore": valid_before, "signature": signature}}})
    };
    let before = both(&world).await;
    // Above the device's per-payment limit.
    let (status, answer) = world.api.post(&world.merchant, "/v1/x402/settle", request(80, 900, "2"), None).await;
    assert_eq!((status, answer["success"].as_bool()), (200, Some(false)), "{answer}");
    assert!(
        ["device_limit_exceeded", "risk_blocked"].contains(&answer["errorReason"].as_str().unwrap_or("")),
        "{answer}"
    );
    // Within it, then once more past the day's limit.
    let (status, answer) = world.api.post(&world.merchant, "/v1/x402/settle", request(81, 400, "2"), None).await;
    assert_eq!((status, answer["success"].as_bool()), (200, Some(true)), "{answer}");
    let (status, answer) = world.api.post(&world.merchant, "/v1/x402/settle", request(82, 400, "2"), None).await;
    assert_eq!((status, answer["success"].as_bool()), (200, Some(false)), "{answer}");
    assert!(
        ["device_limit_exceeded", "risk_blocked"].contains(&answer["errorReason"].as_str().unwrap_or("")),
        "{answer}"
    );
    // Replaying the paid authorization pays nothing more.
    let (status, answer) = world.api.post(&world.merchant, "/v1/x402/settle", request(81, 400, "2"), None).await;
    assert_eq!((status, answer["success"].as_bool()), (200, Some(false)), "{answer}");
    assert_eq!(answer["errorReason"], "authorization_used", "{answer}");
    // The merchant cannot collect into an account that is not its own (the platform's).
    let (status, problem) = world.api.post(&world.merchant, "/v1/x402/settle", request(83, 100, "9"), None).await;
    assert_eq!((status, code(&problem)), (403, "forbidden"), "{problem}");
    let (one, two) = both(&world).await;
    assert_eq!((one[1] - before.0[1], two[3] - before.1[3]), (400, 400), "only the one payment within limits moved");
}

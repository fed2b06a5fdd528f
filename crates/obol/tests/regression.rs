//! Goal: every hole an attack review found (issue 10) stays closed. Each test performs the attack
//! over real HTTP against the real `obol serve` binary, with the risk engine on as users run it,
//! and asserts the refusal (status and problem code) and that no money moved; the cases about
//! restarts kill the server with SIGKILL and check that it comes back with the same state.
//! Method: one scratch data directory per test; an operator sets up a holder (100, account 1,
//! funded from platform account 9, device 55) and a merchant (300, account 2), then the holder,
//! the merchant or the device attacks.

use serde_json::json;

mod support;
use support::{Parties as World, code};

const FUNDS: u128 = 5_000_000;

/// The parties in USD at scale 9 (nano-dollars).
async fn world(tag: &str) -> World {
    World::start(&format!("r10-{tag}"), 9, FUNDS, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_01_a_tabs_escrow_is_moved_only_by_the_tab() {
    let world = world("escrow").await;
    let (status, tab) = world.open_tab("7", 1_000_000, "55").await;
    assert_eq!(status, 201, "{tab}");
    let escrow = tab["escrow_transfer_id"].as_str().unwrap().to_string();
    assert_eq!(world.pay_voucher(7, 10, 1).await.0, 200);
    let before = (world.balances("1").await, world.balances("2").await);

    // The payer voids the escrow, to keep being told "paid" for vouchers it never pays.
    let void = json!({"id": "900", "pending_id": escrow, "flags": ["void_pending"]});
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers", void.clone(), None).await;
    assert_eq!((status, code(&problem)), (403, "forbidden"), "{problem}");
    // The payee posts the whole escrow, to take the budget for a tab that paid 10.
    let post = json!({"id": "901", "pending_id": escrow, "flags": ["post_pending"]});
    let (status, problem) = world.api.post(&world.merchant, "/v1/transfers", post, None).await;
    assert_eq!((status, code(&problem)), (403, "pending_transfer_belongs_to_tab"), "{problem}");
    // Not even the operator moves it outside the tab.
    let (status, problem) = world.api.post(&world.operator, "/v1/transfers", void, None).await;
    assert_eq!((status, code(&problem)), (403, "pending_transfer_belongs_to_tab"), "{problem}");
    // Nor can a transfer pass for a tab's.
    let fake = json!({"id": "902", "debit_account_id": "1", "credit_account_id": "2", "amount": "5",
        "asset_code": "USD", "asset_scale": 9, "code": 0x7AB});
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers", fake, None).await;
    assert_eq!((status, code(&problem)), (422, "code_reserved_for_tabs"), "{problem}");
    // A pending transfer that does not exist (or is not the caller's) fails closed.
    let ghost = json!({"id": "903", "pending_id": "123456789", "flags": ["post_pending"]});
    let (status, problem) = world.api.post(&world.merchant, "/v1/transfers", ghost, None).await;
    assert_eq!((status, code(&problem)), (404, "transfer_not_found"), "{problem}");
    assert_eq!((world.balances("1").await, world.balances("2").await), before, "nothing moved");

    let (status, settled) = world.api.post(&world.merchant, "/v1/tabs/7/settle", json!({}), None).await;
    assert_eq!((status, settled["status"].as_str()), (200, Some("settled")), "{settled}");
    assert_eq!(world.balances("2").await, [0, 0, 0, 10], "the payee gets exactly what the tab was paid");
    assert_eq!(world.balances("1").await, [0, 10, 0, FUNDS]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_01_a_pending_transfer_is_posted_by_its_payee_and_never_voided_by_its_payer() {
    let world = world("pending").await;
    let hold = json!({"id": "50", "debit_account_id": "1", "credit_account_id": "2", "amount": "1000",
        "asset_code": "USD", "asset_scale": 9, "flags": ["pending"], "timeout_s": 3600});
    let (status, created) = world.api.post(&world.holder, "/v1/transfers", hold, None).await;
    assert_eq!(status, 201, "{created}");
    let void = json!({"id": "51", "pending_id": "50", "flags": ["void_pending"]});
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers", void, None).await;
    assert_eq!((status, code(&problem)), (403, "forbidden"), "the payer cannot take a promise back: {problem}");
    let post = json!({"id": "52", "pending_id": "50", "amount": "600", "flags": ["post_pending"]});
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers", post.clone(), None).await;
    assert_eq!((status, code(&problem)), (403, "forbidden"), "the payer does not post for the payee: {problem}");
    let (status, posted) = world.api.post(&world.merchant, "/v1/transfers", post, None).await;
    assert_eq!(status, 201, "{posted}");
    assert_eq!(world.balances("2").await, [0, 0, 0, 600]);
    assert_eq!(world.balances("1").await, [0, 600, 0, FUNDS]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_02_a_voucher_then_ticks_on_one_tab_never_pass_the_escrow_and_the_log_replays() {
    use base64ct::{Base64UrlUnpadded, Encoding};
    use obol_core::channel::payword_chain;
    let mut world = world("mixed").await;
    assert_eq!(world.open_tab("7", 1_000, "55").await.0, 201);
    // A chain of 50 ticks of 10: 500 of the 1,000 escrow stays reserved for it.
    let chain = payword_chain([8; 32], 50);
    let commitment = world.commitment(world.network, 7, &chain, 10);
    let body = json!({"commitment": Base64UrlUnpadded::encode_string(&commitment.encode())});
    let (status, answer) = world.api.post(&world.merchant, "/v1/tabs/7/commitment", body, None).await;
    assert_eq!(status, 200, "{answer}");
    let (status, problem) = world.pay_voucher(7, 1_000, 1).await;
    assert_eq!((status, code(&problem)), (409, "beyond_escrow"), "a voucher may not take the chain's share: {problem}");
    assert_eq!(world.pay_voucher(7, 500, 1).await.0, 200);
    let hex = |word: &[u8; 32]| word.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let tick = |index: usize| json!({"index": index, "word": hex(&chain[index])});
    let (status, paid) = world.api.post(&world.merchant, "/v1/tabs/7/ticks", tick(50), None).await;
    assert_eq!((status, paid["paid"].as_str()), (200, Some("500")), "the reserved chain pays in full: {paid}");
    assert_eq!(paid["tab"]["cumulative"], "1000");
    let (status, problem) = world.pay_voucher(7, 1_001, 2).await;
    assert_eq!((status, code(&problem)), (409, "beyond_escrow"), "{problem}");

    // The writer is alive and the log replays after SIGKILL: the same tab, the same total.
    let (status, health) = world.api.get(&world.operator, "/readyz").await;
    assert_eq!(status, 200, "{health}");
    world.kill_and_restart().await;
    let (status, tab) = world.api.get(&world.operator, "/v1/tabs/7").await;
    assert_eq!((status, tab["cumulative"].as_str()), (200, Some("1000")), "{tab}");
    let (status, settled) = world.api.post(&world.merchant, "/v1/tabs/7/settle", json!({}), None).await;
    assert_eq!(status, 200, "{settled}");
    assert_eq!(world.balances("2").await, [0, 0, 0, 1_000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_03_a_device_key_id_too_long_is_refused_and_nothing_bricks_the_restart() {
    let mut world = world("kid").await;
    for length in [65, 70_000] {
        let mut jwk = obol_client::Wallet::device_jwk(&[43; 32], "x");
        jwk["kid"] = json!("k".repeat(length));
        let (status, problem) = world
            .api
            .post(&world.holder, "/v1/principals/100/devices", json!({"id": "56", "jwk": jwk.clone()}), None)
            .await;
        assert_eq!((status, code(&problem)), (400, "invalid_field"), "kid of {length} bytes: {problem}");
        let (status, problem) = world.api.post(&world.holder, "/v1/devices/55/rotate", json!({"jwk": jwk}), None).await;
        assert_eq!((status, code(&problem)), (400, "invalid_field"), "rotation to a kid of {length}: {problem}");
    }
    let long_name = json!({"id": "101", "role": "holder", "name": "é".repeat(40_000)});
    let (status, problem) = world.api.post(&world.operator, "/v1/principals", long_name, None).await;
    assert_eq!((status, code(&problem)), (400, "invalid_field"), "{problem}");
    world.kill_and_restart().await;
    let (status, devices) = world.api.get(&world.holder, "/v1/principals/100/devices").await;
    assert_eq!(status, 200, "{devices}");
    let kids: Vec<&str> = devices.as_array().unwrap().iter().map(|d| d["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, ["reader"], "only the good device, unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_04_holders_and_merchants_cannot_make_overdraft_accounts() {
    let world = world("overdraft").await;
    for (key, id) in [(&world.holder, "20"), (&world.merchant, "30")] {
        let (status, account) =
            world.api.post(key, "/v1/accounts", json!({"id": id, "asset_code": "USD", "asset_scale": 9}), None).await;
        assert_eq!(status, 201, "{account}");
        let flags: Vec<&str> = account["flags"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
        assert!(flags.contains(&"debits_must_not_exceed_credits"), "{account}");
        let pay = json!({"id": format!("7{id}"), "debit_account_id": id, "credit_account_id": "2",
            "amount": "1000", "asset_code": "USD", "asset_scale": 9});
        let (status, problem) = world.api.post(key, "/v1/transfers", pay, None).await;
        assert_eq!((status, code(&problem)), (422, "exceeds_credits"), "{problem}");
        let (status, problem) = world
            .api
            .post(
                key,
                "/v1/accounts",
                json!({"id": format!("4{id}"), "asset_code": "USD", "asset_scale": 9, "flags": ["credits_must_not_exceed_debits"]}),
                None,
            )
            .await;
        assert_eq!((status, code(&problem)), (403, "forbidden"), "{problem}");
    }
    assert_eq!(world.balances("2").await, [0, 0, 0, 0], "nothing was paid");
}

/// Enrols TOTP for the holder; answers a function giving a fresh code for a time step.
async fn enrol_totp(world: &World) -> impl Fn(u64) -> String {
    let (status, enrolment) = world.api.post(&world.holder, "/v1/principals/100/totp", json!({}), None).await;
    assert_eq!(status, 201, "{enrolment}");
    let seed =
        totp_rs::Secret::try_from_base32(enrolment["secret_base32"].as_str().unwrap()).unwrap().as_ref().to_vec();
    let code_at = move |step: u64| {
        totp_rs::Builder::new().with_secret(seed.clone()).build_noncompliant().generate(step * 30).to_string()
    };
    let now_step = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 30;
    let (status, codes) = world
        .api
        .post(&world.holder, "/v1/principals/100/totp/confirm", json!({"code": code_at(now_step())}), None)
        .await;
    assert_eq!(status, 200, "{codes}");
    code_at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_05_step_up_is_not_bypassed_by_tabs_or_by_a_manage_key() {
    let world = world("stepup").await;
    let code_at = enrol_totp(&world).await;
    let now_step = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 30;
    let policy = json!({"above": {"asset_code": "USD", "asset_scale": 9, "amount": "100000"}, "new_payee": true, "new_device": true});
    // The first policy change already needs the factor the holder just enrolled.
    let (status, problem) = world.api.post(&world.holder, "/v1/principals/100/step-up", policy.clone(), None).await;
    assert_eq!((status, code(&problem)), (403, "requires_action"), "{problem}");
    assert_eq!(problem["challenge"]["change"], "step_up_policy", "{problem}");
    let challenge = problem["challenge"]["id"].as_str().unwrap().to_string();
    let approve = json!({"code": code_at(now_step() + 1)});
    let (status, approved) =
        world.api.post(&world.holder, &format!("/v1/challenges/{challenge}/approve"), approve, None).await;
    assert_eq!(status, 200, "{approved}");
    let (status, set) = world.api.post(&world.holder, "/v1/principals/100/step-up", policy, Some(&challenge)).await;
    assert_eq!(status, 200, "{set}");

    // A transfer above the threshold to a new payee is stopped; so is a tab of the same amount.
    let pay = json!({"id": "60", "debit_account_id": "1", "credit_account_id": "2", "amount": "200000",
        "asset_code": "USD", "asset_scale": 9});
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers", pay, None).await;
    assert_eq!((status, code(&problem)), (403, "requires_action"), "{problem}");
    let (status, problem) = world.open_tab("7", 200_000, "55").await;
    assert_eq!((status, code(&problem)), (403, "requires_action"), "a tab is a payment too: {problem}");
    let reasons = problem["challenge"]["reasons"].to_string();
    assert!(reasons.contains("amount_over_threshold") && reasons.contains("new_payee"), "{problem}");

    // A stolen manage key can neither turn step-up off nor add a passkey of its own.
    let off = json!({"new_payee": false, "new_device": false});
    let (status, problem) = world.api.post(&world.holder, "/v1/principals/100/step-up", off, None).await;
    assert_eq!((status, code(&problem)), (403, "requires_action"), "{problem}");
    let (status, problem) = world.api.post(&world.holder, "/v1/principals/100/passkeys", json!({}), None).await;
    assert_eq!((status, code(&problem)), (403, "requires_action"), "{problem}");
    assert_eq!(problem["challenge"]["change"], "add_passkey");
    // An approval for one change does not carry over to another.
    let (status, problem) = world
        .api
        .post(&world.holder, "/v1/principals/100/step-up", json!({"new_payee": false}), Some(&challenge))
        .await;
    assert_eq!((status, code(&problem)), (403, "requires_action"), "{problem}");
    assert_eq!(world.balances("1").await, [0, 0, 0, FUNDS], "nothing moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_06_device_limits_apply_to_tabs_as_to_transfers() {
    let world = world("limits").await;
    let limits = json!({"limits": {"asset_code": "USD", "asset_scale": 9, "per_payment": "500", "per_day": "1000"}});
    world.op("/v1/devices/55/limits", limits).await;
    let pay = json!({"id": "70", "debit_account_id": "1", "credit_account_id": "2", "amount": "4000000",
        "asset_code": "USD", "asset_scale": 9});
    let (status, problem) = world.api.post_signed(&world.device, "reader", "/v1/transfers", &pay).await;
    assert_eq!((status, code(&problem)), (403, "device_limit_exceeded"), "{problem}");
    // The same money as a tab: opened by the device itself, or by the holder naming the device.
    let tab = json!({"id": "8", "payer_account_id": "1", "payee_account_id": "2", "budget": "4000000",
        "asset_code": "USD", "asset_scale": 9, "timeout_s": 600});
    let (status, problem) = world.api.post_signed(&world.device, "reader", "/v1/tabs", &tab).await;
    assert_eq!((status, code(&problem)), (403, "device_limit_exceeded"), "{problem}");
    let (status, problem) = world.open_tab("7", 4_000_000, "55").await;
    assert_eq!((status, code(&problem)), (403, "device_limit_exceeded"), "{problem}");
    // Within the limits a tab opens, and a top-up past the day's limit is refused.
    assert_eq!(world.open_tab("7", 500, "55").await.0, 201);
    let (status, problem) = world.api.post(&world.holder, "/v1/tabs/7/topup", json!({"amount": "501"}), None).await;
    assert_eq!((status, code(&problem)), (403, "device_limit_exceeded"), "{problem}");
    assert_eq!(world.balances("1").await, [500, 0, 0, FUNDS], "only what the limits allow is escrowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_07_a_key_never_grants_more_than_it_holds() {
    let world = world("scopes").await;
    let (status, manage_only) =
        world.api.post(&world.holder, "/v1/principals/100/keys", json!({"scopes": ["manage"]}), None).await;
    assert_eq!(status, 201, "{manage_only}");
    let manage_only = manage_only["key"].as_str().unwrap().to_string();
    let jwk = obol_client::Wallet::device_jwk(&[44; 32], "sneaky");
    let (status, problem) =
        world.api.post(&manage_only, "/v1/principals/100/devices", json!({"id": "57", "jwk": jwk}), None).await;
    assert_eq!((status, code(&problem)), (403, "forbidden"), "a manage-only key made a paying device: {problem}");
    // Rotating the holder's full key with the manage-only key would mint a paying key.
    let (status, keys) = world.api.get(&world.holder, "/v1/principals/100/keys").await;
    assert_eq!(status, 200, "{keys}");
    let full = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["scopes"].as_array().is_some_and(|s| s.len() == 3))
        .expect("the holder's full key")["key_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, problem) = world.api.post(&manage_only, &format!("/v1/keys/{full}/rotate"), json!({}), None).await;
    assert_eq!((status, code(&problem)), (403, "forbidden"), "{problem}");
    let (status, devices) = world.api.get(&world.holder, "/v1/principals/100/devices").await;
    assert_eq!((status, devices.as_array().map(Vec::len)), (200, Some(1)), "no device was added: {devices}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_08_a_payer_neither_closes_the_payees_account_nor_reads_its_balance() {
    let world = world("closing").await;
    let close = json!({"id": "80", "debit_account_id": "1", "credit_account_id": "2", "amount": "0",
        "asset_code": "USD", "asset_scale": 9, "flags": ["pending", "closing_credit"], "timeout_s": 60});
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers", close, None).await;
    assert_eq!((status, code(&problem)), (403, "forbidden"), "{problem}");
    let probe = json!({"id": "81", "debit_account_id": "1", "credit_account_id": "2", "amount": "1000000",
        "asset_code": "USD", "asset_scale": 9, "flags": ["balancing_credit"]});
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers", probe, None).await;
    assert_eq!((status, code(&problem)), (403, "forbidden"), "{problem}");
    let (status, account) = world.api.get(&world.merchant, "/v1/accounts/2").await;
    assert_eq!(status, 200, "{account}");
    let flags = account["flags"].to_string();
    assert!(!flags.contains("closed"), "the payee's account is still open: {account}");
    assert_eq!(world.balances("2").await, [0, 0, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_13_the_data_directory_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let world = world("modes").await;
    let mode = |name: &str| {
        let path = if name.is_empty() { world.data_dir() } else { world.data_dir().join(name) };
        std::fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
    };
    assert_eq!(mode(""), 0o700, "the data directory");
    for file in ["obol.sqlite3", "obol.sqlite3-wal", "master.key"] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_12_a_read_only_analyst_key_decides_nothing() {
    let world = world("analyst").await;
    world.op("/v1/principals", json!({"id": "400", "role": "analyst", "name": "Ana"})).await;
    let read_only =
        world.op("/v1/principals/400/keys", json!({"scopes": ["read"]})).await["key"].as_str().unwrap().to_string();
    // A payment the shipped US Reg E bundle holds: over $500 to a payee the holder never paid.
    let pay = json!({"id": "90", "debit_account_id": "1", "credit_account_id": "2", "amount": "600000000000",
        "asset_code": "USD", "asset_scale": 9});
    world
        .op(
            "/v1/transfers",
            json!({"id": "89", "debit_account_id": "9", "credit_account_id": "1",
        "amount": "600000000000", "asset_code": "USD", "asset_scale": 9}),
        )
        .await;
    let (status, held) = world.api.post(&world.holder, "/v1/transfers", pay, None).await;
    assert_eq!((status, code(&held)), (202, "held_for_review"), "{held}");
    let review = held["review"]["id"].as_str().unwrap().to_string();
    let (status, listed) = world.api.get(&read_only, "/v1/risk/reviews").await;
    assert_eq!(status, 200, "a read-only analyst still reads the queue: {listed}");
    let decide = json!({"decision": "approve"});
    let (status, problem) =
        world.api.post(&read_only, &format!("/v1/risk/reviews/{review}/decision"), decide, None).await;
    assert_eq!((status, code(&problem)), (403, "forbidden"), "{problem}");
    let (status, still) = world.api.get(&read_only, &format!("/v1/risk/reviews/{review}")).await;
    assert_eq!((status, still["status"].as_str()), (200, Some("pending")), "{still}");
    assert_eq!(world.balances("2").await, [0, 0, 0, 0], "the held payment did not run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_14_a_payer_is_told_why_in_words_and_only_analysts_see_the_rule_and_features() {
    let world = world("explain").await;
    world.op("/v1/principals", json!({"id": "400", "role": "analyst", "name": "Ana"})).await;
    let analyst = world.op("/v1/principals/400/keys", json!({})).await["key"].as_str().unwrap().to_string();
    world
        .op(
            "/v1/transfers",
            json!({"id": "89", "debit_account_id": "9", "credit_account_id": "1", "amount": "600000000000",
                "asset_code": "USD", "asset_scale": 9}),
        )
        .await;
    let pay = json!({"id": "90", "debit_account_id": "1", "credit_account_id": "2", "amount": "600000000000",
        "asset_code": "USD", "asset_scale": 9});
    let (status, held) = world.api.post(&world.holder, "/v1/transfers", pay, None).await;
    assert_eq!((status, code(&held)), (202, "held_for_review"), "{held}");
    let review = &held["review"];
    assert!(review["risk"]["reason_en"].as_str().is_some_and(|r| r.contains("$500")), "{held}");
    for hidden in ["features", "shapley"] {
        assert!(review.get(hidden).is_none(), "the payer sees no {hidden}: {held}");
    }
    for hidden in ["rule", "model_score", "contributions"] {
        assert!(review["risk"].get(hidden).is_none(), "the payer sees no {hidden}: {held}");
    }
    let id = review["id"].as_str().unwrap();
    let (status, full) = world.api.get(&analyst, &format!("/v1/risk/reviews/{id}")).await;
    assert_eq!(status, 200, "{full}");
    assert!(full["risk"]["rule"].as_str().is_some_and(|r| r.starts_with("us-reg-e")), "{full}");
    assert!(full["features"]["amount"].is_number(), "the analyst sees what the model saw: {full}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_11_a_future_dated_signature_is_not_accepted_again_after_a_restart() {
    let mut world = world("skew").await;
    // A device whose clock runs ahead signs a payment with a fresh id (tab opens without an id
    // make a new tab each time, so a replay would escrow again).
    let ahead = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 10;
    let tab = json!({"payer_account_id": "1", "payee_account_id": "2", "budget": "1000",
        "asset_code": "USD", "asset_scale": 9, "timeout_s": 600});
    let request = world.api.signed(&world.device, "reader", "/v1/tabs", &tab, ahead);
    let replay = request.try_clone().expect("a body in memory");
    let (status, opened) = world.api.send(request).await;
    assert_eq!(status, 201, "{opened}");
    let (status, problem) = world.api.send(replay.try_clone().unwrap()).await;
    assert_eq!((status, code(&problem)), (401, "signature_replayed"), "{problem}");
    world.kill_and_restart().await;
    let (status, problem) = world.api.send(replay).await;
    assert_eq!((status, code(&problem)), (401, "signature_expired"), "{problem}");
    assert_eq!(world.balances("1").await, [1000, 0, 0, FUNDS], "one tab, escrowed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_09_behind_a_trusted_proxy_bad_keys_lock_out_their_client_only() {
    let world = World::start_with("r10-proxy", 9, FUNDS, None, &["--trusted-proxy", "127.0.0.1"]).await;
    let from = |client: &str, key: &str| {
        world
            .api
            .http
            .get(format!("{}/v1/me", world.api.base))
            .bearer_auth(key)
            .header("x-forwarded-for", format!("203.0.113.1, {client}"))
            .send()
    };
    let mut statuses = Vec::new();
    for n in 0..25 {
        let guess = format!("obol_live_{n:08}_wrongwrongwrongwrongwrongwrongwrong");
        statuses.push(from("198.51.100.7", &guess).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 20, "20 guesses, then throttled: {statuses:?}");
    assert_eq!(statuses.last(), Some(&429));
    assert_eq!(from("198.51.100.7", &world.holder).await.unwrap().status(), 429, "the guesser stays throttled");
    // Behind the same proxy, another client is not locked out, and the guesser could not pass
    // itself off as someone else by writing the header itself (the proxy's own hop counts).
    assert_eq!(from("198.51.100.8", &world.holder).await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_10_a_signed_request_is_refused_before_its_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let world = world("early").await;
    let address = world.api.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    // An 8 MB body is announced and never sent: obol must answer from the headers alone (an
    // unknown key), not wait for and hash the body.
    let head = format!(
        "POST /v1/transfers HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 8000000\r\n\
         Content-Digest: sha-512=:AAAA:\r\nSignature-Input: sig1=(\"@method\" \"@target-uri\" \"content-digest\");created={};keyid=\"nobody\"\r\n\
         Signature: sig1=:{}:\r\n\r\n{{",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
        "A".repeat(86) + "==",
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered without the body")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..read]);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(text.contains("signature_key_unknown") || text.contains("urn:obol:problem:signature"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_15_ids_of_others_reveal_nothing_and_weak_device_keys_are_refused() {
    let world = world("leaks").await;
    // Transfer 1 (platform 9 to the holder's account 1) is not the merchant's to see: probing
    // its id with other fields says only that the id is taken, never which field differs.
    for amount in ["1", "9999999"] {
        let probe = json!({"id": "1", "debit_account_id": "2", "credit_account_id": "1", "amount": amount,
            "asset_code": "USD", "asset_scale": 9});
        let (status, problem) = world.api.post(&world.merchant, "/v1/transfers", probe.clone(), None).await;
        assert_eq!((status, code(&problem)), (409, "id_taken"), "{problem}");
        let batch = json!({"transfers": [probe]});
        let (status, answer) = world.api.post(&world.merchant, "/v1/transfers/batch", batch, None).await;
        assert_eq!((status, answer["results"][0]["result"].as_str()), (200, Some("id_taken")), "{answer}");
    }
    let (status, problem) = world
        .api
        .post(&world.merchant, "/v1/accounts", json!({"id": "1", "asset_code": "USD", "asset_scale": 9}), None)
        .await;
    assert_eq!((status, code(&problem)), (409, "id_taken"), "the holder's account 1: {problem}");
    // The holder sees its own: the precise answer stays.
    let mine = json!({"id": "1", "debit_account_id": "1", "credit_account_id": "2", "amount": "7",
        "asset_code": "USD", "asset_scale": 9});
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers", mine, None).await;
    assert_eq!((status, code(&problem)), (409, "exists_with_different_debit_account_id"), "{problem}");
    // A small-order public key (here the identity point) verifies forged signatures.
    let weak =
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "weak", "x": "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"});
    let (status, problem) =
        world.api.post(&world.holder, "/v1/principals/100/devices", json!({"id": "58", "jwk": weak}), None).await;
    assert_eq!((status, code(&problem)), (400, "invalid_field"), "{problem}");
    assert_eq!(world.balances("2").await, [0, 0, 0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_10_a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let world = world("slow").await;
    let address = world.api.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\nX-Slow: ").as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(20), stream.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "the connection is still open after 20 s");
    let waited = started.elapsed().as_secs_f64();
    assert!(waited >= 9.0, "closed after {waited:.1} s, before the 10 s header limit");
    // The server still serves everyone else: a new connection (the client's pooled one idled
    // as long as the slow one and may have been closed for it at the same moment).
    let fresh = support::Api::new(&world.api.base);
    let (status, _) = fresh.get(&world.operator, "/v1/me").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r10_15_a_voucher_commitment_or_authorization_for_one_server_pays_nothing_on_another() {
    use base64ct::{Base64UrlUnpadded, Encoding};
    use ed25519_dalek::Signer;
    use obol_core::channel::{Commitment, ExactAuthorization, Voucher, payword_chain};
    // Two deployments set up alike (staging and production): the same ids, the same device key.
    let staging = world("staging").await;
    let production = world("production").await;
    assert_ne!(staging.network, production.network, "each data directory is its own network");
    for world in [&staging, &production] {
        assert_eq!(world.open_tab("7", 1_000, "55").await.0, 201);
        assert_eq!(world.open_tab("8", 1_000, "55").await.0, 201);
    }
    let (_, tab) = production.api.get(&production.merchant, "/v1/tabs/7").await;
    assert!(tab["network"].as_str().is_some_and(|network| network.starts_with("obol:")), "{tab}");
    let before = (production.balances("1").await, production.balances("2").await);

    // A voucher staging accepts is refused by production.
    assert_eq!(staging.pay_voucher(7, 300, 1).await.0, 200);
    let replayed = json!({"voucher": staging.voucher(7, 300, 1)});
    let (status, problem) = production.api.post(&production.merchant, "/v1/tabs/7/vouchers", replayed, None).await;
    assert_eq!((status, code(&problem)), (422, "voucher_signature_invalid"), "{problem}");
    // Version 1, which names no network, is refused as such.
    let v1 = Voucher {
        tab_id: 7,
        payee_id: 2,
        cumulative: 300,
        seq: 1,
        signature: production.device.sign(b"any").to_bytes(),
    };
    let mut bytes = v1.encode();
    bytes[..4].copy_from_slice(b"OBV1");
    let body = json!({"voucher": Base64UrlUnpadded::encode_string(&bytes)});
    let (status, problem) = production.api.post(&production.merchant, "/v1/tabs/7/vouchers", body, None).await;
    assert_eq!((status, code(&problem)), (400, "invalid_network"), "{problem}");

    // A commitment signed for staging is refused by production, before the ledger sees it.
    let chain = payword_chain([5; 32], 10);
    let commitment = staging.commitment(staging.network, 8, &chain, 10);
    let body = json!({"commitment": Base64UrlUnpadded::encode_string(&commitment.encode())});
    assert_eq!(staging.api.post(&staging.merchant, "/v1/tabs/8/commitment", body.clone(), None).await.0, 200);
    let (status, problem) = production.api.post(&production.merchant, "/v1/tabs/8/commitment", body, None).await;
    assert_eq!((status, code(&problem)), (400, "invalid_network"), "{problem}");
    // Relabelled with production's network, staging's signature does not verify.
    let relabelled = Commitment { network: production.network, ..commitment };
    let body = json!({"commitment": Base64UrlUnpadded::encode_string(&relabelled.encode())});
    let (status, problem) = production.api.post(&production.merchant, "/v1/tabs/8/commitment", body, None).await;
    assert_eq!((status, code(&problem)), (422, "voucher_signature_invalid"), "{problem}");

    // An `exact` authorization made for staging's offer does not settle on production.
    let production_id = production.network_id.clone();
    let valid_before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    let authorization = ExactAuthorization {
        network: staging.network,
        transfer_id: 90,
        from: 1,
        to: 2,
        amount: 100,
        asset: obol_core::money::Asset::new("USD", 9).unwrap(),
        device_id: 55,
        valid_before_s: valid_before,
    };
    let signature = Base64UrlUnpadded::encode_string(&staging.device.sign(&authorization.signed_message()).to_bytes());
    let requirements = json!({"scheme": "exact", "network": production_id, "amount": "100", "asset": "USD",
        "payTo": "2", "maxTimeoutSeconds": 60, "extra": {"assetScale": 9}});
    let settle = json!({"x402Version": 2, "paymentRequirements": requirements.clone(), "paymentPayload": {
        "x402Version": 2, "accepted": requirements, "payload": {"from": "1", "device": "55",
        "transfer": "90", "validBefore": valid_before, "signature": signature}}});
    let (status, answer) = production.api.post(&production.merchant, "/v1/x402/settle", settle, None).await;
    assert_eq!((status, answer["success"].as_bool()), (200, Some(false)), "{answer}");
    assert_eq!(answer["errorReason"], "signature_invalid", "{answer}");

    // Production moved nothing and its tabs owe nothing.
    assert_eq!((production.balances("1").await, production.balances("2").await), before);
    for tab in ["7", "8"] {
        let (_, tab) = production.api.get(&production.merchant, &format!("/v1/tabs/{tab}")).await;
        assert_eq!((tab["cumulative"].as_str(), tab["payword_length"].as_u64()), (Some("0"), None), "{tab}");
    }
}

//! Goal: attack "a held request has one fate" (ARCHITECTURE.md) from outside. An approved hold
//! must never carry a different payment past risk, an approved transfer never runs twice, a
//! declined one never runs, nothing another principal does with held ids moves or blocks money,
//! and no money moves after its client was told the payment was refused.
//! Method: the real `obol serve` (its shipped bundles live) with a policy bundle that holds
//! payments of 10.01 to 20.00 USD, over HTTP; concurrent requests
//! and kill -9 where a race or a crash could split a decision from its effect.

mod support;

use serde_json::{Value, json};
use support::holds::{
    approve_challenge, both, exact, exact_with, guard_above_5, invalid, later, refused, settle, transfer, verify,
};
use support::{Parties as World, code};

const FUNDS: u128 = 1_000_000;
async fn world(tag: &str) -> World {
    World::start(&format!("holdsx-{tag}"), 2, FUNDS, Some(("holds@1", support::HOLDS_POLICY))).await
}

/// Holds device 55's `exact` payment `transfer` of 15.00 and approves it (runs: false); answers
/// the settle body, the review and the balances before.
async fn approved_exact(world: &World, transfer: u128) -> (Value, String, ([u128; 4], [u128; 4])) {
    let before = both(world).await;
    let body = exact(world, transfer, 1500);
    refused(&settle(world, &body).await, "held_for_review");
    let pending = world.reviews("pending").await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    let review = pending[0]["id"].as_str().unwrap().to_string();
    let approved = world.decide(&review, "approve").await;
    assert!(approved["outcome"][0].as_str().unwrap().starts_with("allowed"), "{approved}");
    assert_eq!(both(world).await, before, "approval of a refused x402 payment moved money");
    (body, review, before)
}

/// An approved x402 hold lets exactly its own payment through: not another amount, payee,
/// paying account, a batch around it, or the same id with other fields through the transfers
/// API; and none of those attempts spends the approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_x402_hold_carries_no_other_payment_past_risk() {
    let world = world("other-terms").await;
    world.op("/v1/accounts", json!({"id": "3", "asset_code": "USD", "asset_scale": 2, "owner_id": "300"})).await;
    world.op("/v1/accounts", json!({"id": "4", "asset_code": "USD", "asset_scale": 2, "owner_id": "100"})).await;
    let (body, _review, before) = approved_exact(&world, 77).await;

    // Another amount, signed for the same id: refused, not run.
    for amount in [1400, 1600, 999_000] {
        let other = exact(&world, 77, amount);
        invalid(&verify(&world, &other).await, "id_taken");
        refused(&settle(&world, &other).await, "id_taken");
    }
    // Another payee (the merchant's other account) and another paying account of the holder.
    let other_payee = exact_with(&world, &world.device, 55, 77, 1, 3, 1500, later(600));
    refused(&settle(&world, &other_payee).await, "id_taken");
    let other_payer = exact_with(&world, &world.device, 55, 77, 4, 2, 1500, later(600));
    refused(&settle(&world, &other_payer).await, "id_taken");

    // Through the transfers API: the same id with the API's default code, a batch that adds a
    // second transfer to the approved one, and the approved one twice.
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers", transfer("77", "1500"), None).await;
    assert_eq!((status, code(&problem)), (409, "id_taken"), "{problem}");
    let mut held = transfer("77", "1500");
    held["code"] = json!(402);
    for batch in [
        vec![held.clone(), transfer("78", "1500")],
        vec![transfer("78", "900"), held.clone()],
        vec![held.clone(), held.clone()],
    ] {
        let (status, problem) =
            world.api.post(&world.holder, "/v1/transfers/batch", json!({"transfers": batch}), None).await;
        assert_eq!((status, code(&problem)), (409, "id_taken"), "{problem}");
    }
    assert_eq!(both(&world).await, before, "money moved on other terms under an approved id");

    // The approved payment itself still runs, once.
    let answer = settle(&world, &body).await;
    assert_eq!(answer["success"], true, "{answer}");
    let (one, two) = both(&world).await;
    assert_eq!((one[1] - before.0[1], two[3] - before.1[3]), (1500, 1500));
    refused(&settle(&world, &body).await, "authorization_used");
    let (status, answer) = world.api.post(&world.holder, "/v1/transfers", held, None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(both(&world).await, (one, two));
}

/// Two devices of the payer, and a fresh signature with another validity, race to run one
/// approved x402 payment: it runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_x402_hold_runs_once_whoever_of_the_payer_retries_it() {
    let world = world("devices").await;
    let second = ed25519_dalek::SigningKey::from_bytes(&[43; 32]);
    let jwk = obol_client::Wallet::device_jwk(&[43; 32], "second");
    world.op("/v1/principals/100/devices", json!({"id": "56", "jwk": jwk})).await;
    let (body, _review, before) = approved_exact(&world, 77).await;
    let bodies = vec![
        body.clone(),
        exact_with(&world, &second, 56, 77, 1, 2, 1500, later(600)),
        exact_with(&world, &world.device, 55, 77, 1, 2, 1500, later(300)),
        body,
    ];
    let mut tasks = Vec::new();
    for body in bodies {
        let api = support::Api::new(&world.api.base);
        let merchant = world.merchant.clone();
        tasks.push(tokio::spawn(async move { api.post(&merchant, "/v1/x402/settle", body, None).await }));
    }
    let mut successes = 0;
    for task in tasks {
        let (status, answer) = task.await.unwrap();
        assert_eq!(status, 200, "{answer}");
        if answer["success"] == true {
            successes += 1;
        } else {
            assert_eq!(answer["errorReason"], "authorization_used", "{answer}");
        }
    }
    assert_eq!(successes, 1);
    let (one, two) = both(&world).await;
    assert_eq!((one[1] - before.0[1], two[3] - before.1[3]), (1500, 1500), "one approved payment ran once");
}

/// While an x402 hold is pending, neither verify nor settle retries (the same signature, or a
/// fresh one with another validity) make a second review; declined, every retry is refused,
/// through x402 and the transfers API alike, across kill -9, and a new id is decided afresh
/// (held again), so the decline is not side-stepped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_x402_hold_stays_declined_and_a_pending_one_has_one_review() {
    let mut world = world("declined").await;
    let before = both(&world).await;
    let body = exact(&world, 77, 1500);
    let fresh = exact_with(&world, &world.device, 55, 77, 1, 2, 1500, later(300));
    for attempt in [&body, &fresh, &body] {
        refused(&settle(&world, attempt).await, "held_for_review");
        invalid(&verify(&world, attempt).await, "held_for_review");
    }
    let pending = world.reviews("pending").await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    world.decide(pending[0]["id"].as_str().unwrap(), "decline").await;
    let mut signed = transfer("77", "1500");
    signed["code"] = json!(402);
    let (status, problem) = world.api.post_signed(&world.device, "reader", "/v1/transfers", &signed).await;
    assert_eq!((status, code(&problem)), (403, "review_declined"), "{problem}");
    world.kill_and_restart().await;
    for attempt in [&body, &fresh] {
        refused(&settle(&world, attempt).await, "review_declined");
        invalid(&verify(&world, attempt).await, "review_declined");
    }
    let mut held = transfer("77", "1500");
    held["code"] = json!(402);
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers", held, None).await;
    assert_eq!((status, code(&problem)), (403, "review_declined"), "{problem}");
    // The same payment under a new id is decided again: held, not waved through.
    refused(&settle(&world, &exact(&world, 78, 1500)).await, "held_for_review");
    assert_eq!(both(&world).await, before, "a declined payment moved money");
}

/// Another principal cannot use, learn about or spend a payer's held ids: the merchant's
/// transfer under the payer's held id is refused as any taken id is, and a merchant's own held
/// id squatted before the payer used it runs nothing of the payer's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_ids_are_neither_usable_nor_readable_by_another_principal() {
    let world = world("squat").await;
    let before = both(&world).await;
    let (status, held) = world.api.post(&world.holder, "/v1/transfers", transfer("50", "1500"), None).await;
    assert_eq!((status, code(&held)), (202, "held_for_review"), "{held}");
    let review = held["review"]["id"].as_str().unwrap().to_string();
    // The merchant under the payer's held id, paying from its own account: refused as a taken id.
    let reverse = json!({"id": "50", "debit_account_id": "2", "credit_account_id": "1", "amount": "1500",
        "asset_code": "USD", "asset_scale": 2});
    let (status, problem) = world.api.post(&world.merchant, "/v1/transfers", reverse.clone(), None).await;
    assert_eq!((status, code(&problem)), (409, "id_taken"), "{problem}");
    let (status, problem) = world.api.get(&world.merchant, &format!("/v1/risk/reviews/{review}")).await;
    // A payer reads its own holds; another's is as if it did not exist.
    assert_eq!((status, code(&problem)), (404, "review_not_found"), "a merchant reads another's review: {problem}");
    let (status, problem) = world.api.get(&world.merchant, "/v1/transfers/50").await;
    assert_eq!(status, 404, "{problem}");
    // The merchant's decision cannot be made by the payer, nor the payer's by the merchant.
    let path = format!("/v1/risk/reviews/{review}/decision");
    for key in [&world.holder, &world.merchant] {
        let (status, problem) = world.api.post(key, &path, json!({"decision": "approve"}), None).await;
        assert_eq!(status, 403, "{problem}");
    }
    assert_eq!(both(&world).await, before);

    // Approved: the payer's transfer runs; the merchant's request under the id still is not its.
    let approved = world.decide(&review, "approve").await;
    assert_eq!(approved["outcome"], json!(["ok"]), "{approved}");
    let (status, problem) = world.api.post(&world.merchant, "/v1/transfers", reverse, None).await;
    assert_eq!((status, code(&problem)), (409, "id_taken"), "{problem}");
    let (one, two) = both(&world).await;
    assert_eq!((one[1] - before.0[1], two[3] - before.1[3]), (1500, 1500));
}

/// An approved transfer (runs: true) races with its retries, single and batched: it runs once;
/// after kill -9 the retry still answers that it exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_transfer_racing_its_retries_runs_once() {
    let mut world = world("race").await;
    let before = both(&world).await;
    let (status, held) = world.api.post(&world.holder, "/v1/transfers", transfer("50", "1500"), None).await;
    assert_eq!(status, 202, "{held}");
    let review = held["review"]["id"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for n in 0..9 {
        let api = support::Api::new(&world.api.base);
        let (holder, operator, review) = (world.holder.clone(), world.operator.clone(), review.clone());
        tasks.push(tokio::spawn(async move {
            match n {
                4 => {
                    let path = format!("/v1/risk/reviews/{review}/decision");
                    api.post(&operator, &path, json!({"decision": "approve"}), None).await
                }
                n if n % 2 == 0 => {
                    api.post(&holder, "/v1/transfers/batch", json!({"transfers": [transfer("50", "1500")]}), None).await
                }
                _ => api.post(&holder, "/v1/transfers", transfer("50", "1500"), None).await,
            }
        }));
    }
    for task in tasks {
        let (status, answer) = task.await.unwrap();
        assert!([200, 201, 202].contains(&status), "{status} {answer}");
    }
    let (one, two) = both(&world).await;
    assert_eq!((one[1] - before.0[1], two[3] - before.1[3]), (1500, 1500), "ran once");
    world.kill_and_restart().await;
    let (status, answer) = world.api.post(&world.holder, "/v1/transfers", transfer("50", "1500"), None).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = world.api.post(&world.holder, "/v1/transfers", transfer("50", "1400"), None).await;
    assert_eq!((status, code(&answer)), (409, "id_taken"), "{answer}");
    assert_eq!(both(&world).await, (one, two));
}

/// verify decides dry: many verifies count nothing, so the shipped velocity rule (5 payments a
/// minute) does not hold the payment they were about; and a verify never holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_counts_nothing() {
    let world = world("verify-dry").await;
    let before = both(&world).await;
    for transfer in 200..212 {
        let answer = verify(&world, &exact(&world, transfer, 500)).await;
        assert_eq!(answer["isValid"], true, "{answer}");
    }
    assert!(world.reviews("all").await.is_empty());
    let answer = settle(&world, &exact(&world, 300, 500)).await;
    assert_eq!(answer["success"], true, "verifies were counted as payments: {answer}");
    let (one, two) = both(&world).await;
    assert_eq!((one[1] - before.0[1], two[3] - before.1[3]), (500, 500));
}

async fn set_day_limit(world: &World, per_day: &str) {
    let limits = json!({"limits": {"asset_code": "USD", "asset_scale": 2, "per_day": per_day}});
    let (status, answer) = world.api.post(&world.holder, "/v1/devices/55/limits", limits, None).await;
    assert_eq!(status, 200, "{answer}");
}

/// An approved x402 payment charges its device's day once: held, retried while pending, approved
/// and run by its retry, then retried again, device 55 has spent 15.00 of its 25.00, and a
/// payment of 10.00 still fits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_x402_payment_charges_the_device_day_once() {
    let world = world("x402-day").await;
    set_day_limit(&world, "2500").await;
    let before = both(&world).await;
    let body = exact(&world, 77, 1500);
    refused(&settle(&world, &body).await, "held_for_review");
    refused(&settle(&world, &body).await, "held_for_review");
    let review = world.reviews("pending").await[0]["id"].as_str().unwrap().to_string();
    world.decide(&review, "approve").await;
    assert_eq!(settle(&world, &body).await["success"], true);
    refused(&settle(&world, &body).await, "authorization_used");
    let answer = settle(&world, &exact(&world, 78, 1000)).await;
    assert_eq!(answer["success"], true, "the device's day was charged twice: {answer}");
    let (one, two) = both(&world).await;
    assert_eq!((one[1] - before.0[1], two[3] - before.1[3]), (2500, 2500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_that_ran_nothing_lets_no_other_tab_past_risk() {
    let world = world("tab-terms").await;
    let before = both(&world).await;
    // The policy holds a 5,000.00 tab for review.
    let (status, problem) = world.open_tab("6", 500_000, "55").await;
    assert_eq!((status, code(&problem)), (202, "held_for_review"), "{problem}");

    let (status, key) = world.api.post(&world.holder, "/v1/principals/100/keys", json!({}), None).await;
    assert_eq!(status, 201, "{key}");
    let (secret, key_id) = (key["key"].as_str().unwrap().to_string(), key["key_id"].as_str().unwrap().to_string());
    let open = json!({"id": "7", "payer_account_id": "1", "payee_account_id": "2", "budget": "1500",
        "asset_code": "USD", "asset_scale": 2, "timeout_s": 600, "device_id": "55"});
    let (status, held) = world.api.post(&secret, "/v1/tabs", open, None).await;
    assert_eq!((status, code(&held)), (202, "held_for_review"), "{held}");
    let review = held["review"]["id"].as_str().unwrap().to_string();
    let response = world
        .api
        .http
        .delete(format!("{}/v1/keys/{key_id}", world.api.base))
        .bearer_auth(&world.holder)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let approved = world.decide(&review, "approve").await;
    assert!(approved["outcome"][0].as_str().unwrap().starts_with("refused"), "{approved}");
    assert_eq!(both(&world).await, before, "nothing opened at approval");

    // The holder's other key opens tab 7 with a budget the policy holds.
    let (status, problem) = world.open_tab("7", 500_000, "55").await;
    assert_eq!(
        (status, code(&problem)),
        (409, "tab_exists"),
        "other terms under an approved tab id went past the risk policy: {problem}"
    );
    assert_eq!(both(&world).await, before, "escrowed without a decision");
}

/// HOLE (crash window): `decide_review` runs the held transfer (one durable record) and only then
/// stores the review as approved (another). A kill -9 between the two leaves a review pending
/// whose transfer has run: its retry is told "held", and an analyst can then decline it, after
/// which the payer is told `review_declined` for money that moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_approval_never_leaves_run_money_under_a_pending_review() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut world = world("approve-crash").await;
    let mut next = 1000u32;
    for round in 0..6 {
        let mut held = Vec::new();
        for _ in 0..30 {
            next += 1;
            let (status, answer) =
                world.api.post(&world.holder, "/v1/transfers", transfer(&next.to_string(), "1500"), None).await;
            assert_eq!(status, 202, "{answer}");
            held.push((next, answer["review"]["id"].as_str().unwrap().to_string()));
        }
        let done = Arc::new(AtomicUsize::new(0));
        for (_, review) in &held {
            let http = obol_client::http_client(None).unwrap();
            let url = format!("{}/v1/risk/reviews/{review}/decision", world.api.base);
            let (operator, done) = (world.operator.clone(), done.clone());
            tokio::spawn(async move {
                let _ = http.post(url).bearer_auth(operator).json(&json!({"decision": "approve"})).send().await;
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        while done.load(Ordering::SeqCst) < 3 + round * 3 {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        world.kill_and_restart().await;

        let pending: Vec<String> =
            world.reviews("pending").await.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
        for (id, review) in &held {
            if !pending.contains(review) {
                continue;
            }
            let (ran, _) = world.api.get(&world.operator, &format!("/v1/transfers/{id}")).await;
            if ran != 200 {
                continue;
            }
            // A pending review over money that moved: show what the payer and analyst now see.
            let before = both(&world).await;
            let (status, again) =
                world.api.post(&world.holder, "/v1/transfers", transfer(&id.to_string(), "1500"), None).await;
            assert_eq!((status, code(&again)), (202, "held_for_review"), "{again}");
            world.decide(review, "decline").await;
            let (status, problem) =
                world.api.post(&world.holder, "/v1/transfers", transfer(&id.to_string(), "1500"), None).await;
            assert_eq!((status, code(&problem)), (403, "review_declined"), "{problem}");
            assert_eq!(both(&world).await, before);
            panic!(
                "round {round}: transfer {id} ran at approval, but after kill -9 its review {review} was pending; \
                 it was then declined and its payer told review_declined, while the money had moved"
            );
        }
        // Every approved review's transfer ran, every pending one's did not: the ledger agrees.
        let one = world.balances("1").await;
        let approved_here = world.reviews("approved").await.len();
        assert_eq!(one[1], 1500 * approved_here as u128, "money moved without an approved review");
        let two = world.balances("2").await;
        assert_eq!(two[3], one[1]);
    }
}

/// A hold is no way around the holder's own step-up policy: a payment the risk policy holds and
/// the holder's policy guards asks the holder's second factor first (a transfer and a tab
/// opening alike), the approval is used up by the hold (a kill -9 does not revive it), and only
/// then can an analyst let it run; the facilitator's `verify` says so too, dry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_payment_still_needs_the_holders_own_second_factor() {
    let mut world = world("own-factor").await;
    let recovery = guard_above_5(&world).await;
    let before = both(&world).await;

    // A transfer of 15.00: held by the risk policy, above the holder's 5.00.
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers", transfer("7001", "1500"), None).await;
    assert_eq!((status, code(&problem)), (403, "requires_action"), "{problem}");
    assert!(world.reviews("pending").await.is_empty(), "nothing is held before the holder approves");
    let challenge = problem["challenge"]["id"].as_str().unwrap().to_string();
    approve_challenge(&world, &challenge, &recovery[0]).await;
    let (status, held) =
        world.api.post(&world.holder, "/v1/transfers", transfer("7001", "1500"), Some(&challenge)).await;
    assert_eq!((status, code(&held)), (202, "held_for_review"), "{held}");
    assert_eq!(both(&world).await, before, "a held payment moved money");

    // The approval was spent with the hold, across a kill -9 too: the same approval on another
    // payment of the same terms is no approval.
    world.kill_and_restart().await;
    let (status, problem) =
        world.api.post(&world.holder, "/v1/transfers", transfer("7002", "1500"), Some(&challenge)).await;
    assert_eq!((status, code(&problem)), (403, "requires_action"), "{problem}");

    // The analyst approves the held transfer: it runs once.
    let pending = world.reviews("pending").await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    world.decide(pending[0]["id"].as_str().unwrap(), "approve").await;
    let (payer, payee) = both(&world).await;
    assert_eq!((payer[1] - before.0[1], payee[3] - before.1[3]), (1500, 1500), "the approved hold ran once");

    // A tab opening of 15.00 asks the factor first as well, then is held.
    let tab = json!({"id": "7100", "payer_account_id": "1", "payee_account_id": "2", "budget": "1500",
        "asset_code": "USD", "asset_scale": 2, "timeout_s": 600, "device_id": "55"});
    let (status, problem) = world.api.post(&world.holder, "/v1/tabs", tab.clone(), None).await;
    assert_eq!((status, code(&problem)), (403, "requires_action"), "{problem}");
    let challenge = problem["challenge"]["id"].as_str().unwrap().to_string();
    approve_challenge(&world, &challenge, &recovery[1]).await;
    let (status, held) = world.api.post(&world.holder, "/v1/tabs", tab, Some(&challenge)).await;
    assert_eq!((status, code(&held)), (202, "held_for_review"), "{held}");

    // The facilitator's verify decides as settle would: an `exact` payment of 8.00 (not held by
    // the risk policy, above the holder's 5.00) needs the factor, and one of 15.00 too (the
    // factor comes before the hold); settle agrees and takes nothing.
    let before = both(&world).await;
    for (transfer, amount) in [(7201, 800), (7202, 1500)] {
        let body = exact(&world, transfer, amount);
        invalid(&verify(&world, &body).await, "requires_action");
        refused(&settle(&world, &body).await, "requires_action");
    }
    assert_eq!(both(&world).await, before, "a refused x402 payment moved money");
}

//! Goal: everything the server must remember survives a kill -9, because it is in the record
//! log (or derived from it on replay): a policy bundle submitted over the API is still live, a
//! held review approved after the restart runs exactly once, a device's daily limit still holds,
//! and tab checkpoints pause a stream at the same point as without the crash.
//! Method: the real `obol serve` over HTTP, SIGKILLed and restarted on the same data directory
//! (never SIGTERM: nothing gets a chance to save on the way out).

mod support;

use serde_json::{Value, json};
use support::{Parties as World, code};

const FUNDS: u128 = 1_000_000;

fn transfer(id: &str, amount: &str) -> Value {
    json!({"id": id, "debit_account_id": "1", "credit_account_id": "2", "amount": amount,
        "asset_code": "USD", "asset_scale": 2})
}

/// Submits a policy bundle as the operator; answers (status, change record).
async fn submit(world: &World, text: &str) -> (u16, Value) {
    let response = world
        .api
        .http
        .post(format!("{}/v1/risk/policy", world.api.base))
        .bearer_auth(&world.operator)
        .body(text.to_string())
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The bundles in force, as `name@version`.
async fn in_force(world: &World) -> Vec<String> {
    let (status, policy) = world.api.get(&world.operator, "/v1/risk/policy").await;
    assert_eq!(status, 200, "{policy}");
    policy["in_force"]
        .as_array()
        .expect("bundles")
        .iter()
        .map(|b| format!("{}@{}", b["name"].as_str().unwrap_or(""), b["version"]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_bundle_submitted_over_the_api_is_still_live_after_kill_9() {
    let mut world = World::start("durable-policy", 2, FUNDS, Some(("holds@1", support::HOLDS_POLICY))).await;
    // holds@1 (the watched file) holds 10.01 to 20.00; holds@2, submitted over the API, holds
    // 5.01 to 20.00 instead.
    let v2 = support::HOLDS_POLICY
        .replace("version = 1", "version = 2")
        .replace("amount_minor > 1000", "amount_minor > 500");
    let (status, change) = submit(&world, &v2).await;
    assert_eq!((status, change["what"].as_str()), (201, Some("added")), "{change}");
    let (status, held) = world.api.post(&world.holder, "/v1/transfers", transfer("10", "700"), None).await;
    assert_eq!((status, code(&held)), (202, "held_for_review"), "holds@2 is live: {held}");

    world.kill_and_restart().await;
    assert!(in_force(&world).await.contains(&"holds@2".to_string()), "{:?}", in_force(&world).await);
    let (status, held) = world.api.post(&world.holder, "/v1/transfers", transfer("11", "700"), None).await;
    assert_eq!((status, code(&held)), (202, "held_for_review"), "holds@2 is still live: {held}");
    let (status, paid) = world.api.post(&world.holder, "/v1/transfers", transfer("12", "400"), None).await;
    assert_eq!(status, 201, "{paid}");
    // The change records say the same as the live policy, once each.
    let (_, changes) = world.api.get(&world.operator, "/v1/risk/policy/changes").await;
    let submitted = changes.as_array().unwrap().iter().filter(|c| c["bundle"] == "holds@2").count();
    assert_eq!(submitted, 1, "{changes}");

    // A shadow run survives too, and stopping it is remembered.
    let v3 = support::HOLDS_POLICY.replace("version = 1", "version = 3");
    let response = world
        .api
        .http
        .post(format!("{}/v1/risk/policy?shadow=true", world.api.base))
        .bearer_auth(&world.operator)
        .body(v3)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    world.kill_and_restart().await;
    let (_, policy) = world.api.get(&world.operator, "/v1/risk/policy").await;
    assert_eq!(policy["shadow"], true, "{policy}");
    let response =
        world.api.http.delete(format!("{}/v1/risk/shadow", world.api.base)).bearer_auth(&world.operator).send().await;
    assert_eq!(response.unwrap().status(), 200);
    world.kill_and_restart().await;
    let (_, policy) = world.api.get(&world.operator, "/v1/risk/policy").await;
    assert_eq!(policy["shadow"], false, "{policy}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_held_before_kill_9_and_approved_after_it_runs_exactly_once() {
    let mut world = World::start("durable-review", 2, FUNDS, Some(("holds@1", support::HOLDS_POLICY))).await;
    let (status, held) = world.api.post(&world.holder, "/v1/transfers", transfer("20", "1500"), None).await;
    assert_eq!(status, 202, "{held}");
    let review = held["review"]["id"].as_str().unwrap().to_string();

    world.kill_and_restart().await;
    assert_eq!(world.reviews("pending").await.len(), 1);
    let approved = world.decide(&review, "approve").await;
    assert_eq!(approved["outcome"], json!(["ok"]), "{approved}");
    assert_eq!(world.balances("2").await, [0, 0, 0, 1500]);

    // Again after another crash: the retry answers that it exists, a second approval is refused,
    // and the money moved once.
    world.kill_and_restart().await;
    let (status, again) = world.api.post(&world.holder, "/v1/transfers", transfer("20", "1500"), None).await;
    assert_eq!((status, again["id"].as_str()), (200, Some("20")), "the ledger's answer: it exists: {again}");
    let path = format!("/v1/risk/reviews/{review}/decision");
    let (status, problem) = world.api.post(&world.operator, &path, json!({"decision": "approve"}), None).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(world.balances("2").await, [0, 0, 0, 1500]);
    assert_eq!(world.balances("1").await, [0, 1500, 0, FUNDS]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devices_daily_limit_still_holds_after_kill_9() {
    let mut world = World::start("durable-device", 2, FUNDS, None).await;
    let limits = json!({"limits": {"asset_code": "USD", "asset_scale": 2, "per_payment": "600", "per_day": "1000"}});
    world.op("/v1/devices/55/limits", limits).await;
    let (status, paid) = world.api.post_signed(&world.device, "reader", "/v1/transfers", &transfer("30", "600")).await;
    assert_eq!(status, 201, "{paid}");

    world.kill_and_restart().await;
    // After a restart the server accepts only signatures created after its start plus the
    // allowed clock skew (it cannot know which earlier ones the last run saw): sign for then.
    let created_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        + obol_http::httpsig::CLOCK_SKEW_MAX_S;
    let signed = |body: &Value| world.api.signed(&world.device, "reader", "/v1/transfers", body, created_s);
    // The shipped holder-caps bundle reads the device's day from the ledger and refuses first;
    // the core's own check stands behind it.
    let (status, problem) = world.api.send(signed(&transfer("31", "500"))).await;
    assert_eq!(status, 403, "{problem}");
    assert!(["device_limit_exceeded", "risk_blocked"].contains(&code(&problem)), "{problem}");
    // A retry of the payment already made answers that it exists and charges the day nothing
    // again (the charge is in the payment's own record, only when it goes through).
    let (status, again) = world.api.send(signed(&transfer("30", "600"))).await;
    assert_eq!((status, again["id"].as_str()), (200, Some("30")), "{again}");
    let (status, paid) = world.api.send(signed(&transfer("32", "400"))).await;
    assert_eq!(status, 201, "the day still has 4.00 left: {paid}");
    assert_eq!(world.balances("2").await, [0, 0, 0, 1000]);
}

/// Reviews what a tab was paid since its last checkpoint when that is 1.20 or more.
const CHECKPOINT_POLICY: &str = "name = \"streams\"\nversion = 1\neffective_from_s = 0\n\n[[rules]]\nid = \"big-stretch\"\naction = \"review\"\nowner = \"risk@test\"\nwhen = \"event_kind == 'tab_checkpoint' && amount_minor >= 120\"\nreason_en = \"A large stretch of a stream.\"\nreason_ko = \"큰 스트림 구간.\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tab_checkpoints_pause_a_stream_at_the_same_point_after_kill_9() {
    let mut world = World::start("durable-checkpoints", 2, FUNDS, Some(("streams@1", CHECKPOINT_POLICY))).await;
    let (status, tab) = world.open_tab("700", 1000, "55").await;
    assert_eq!(status, 201, "{tab}");
    // The first payment is a checkpoint (1 paid since: allowed); 100 is inside the first quarter.
    for (cumulative, seq) in [(1, 1), (100, 2)] {
        let (status, paid) = world.pay_voucher(700, cumulative, seq).await;
        assert_eq!(status, 200, "{paid}");
    }

    world.kill_and_restart().await;
    // Still inside the first quarter: no checkpoint, so no pause, though 1.50 was paid since the
    // last one (a server that forgot its checkpoints would assess 150 here and pause).
    let (status, paid) = world.pay_voucher(700, 150, 3).await;
    assert_eq!(status, 200, "{paid}");
    let (status, paid) = world.pay_voucher(700, 200, 4).await;
    assert_eq!(status, 200, "{paid}");
    assert!(world.reviews("pending").await.is_empty());
    // 260 crosses the first quarter: assessed on 259 since the first payment, held, paused.
    let (status, paid) = world.pay_voucher(700, 260, 5).await;
    assert_eq!(status, 200, "what was paid before the checkpoint stays paid: {paid}");
    let pending = world.reviews("pending").await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["amount"], "259", "{pending:?}");
    world.kill_and_restart().await;
    let (status, problem) = world.pay_voucher(700, 270, 6).await;
    assert_eq!((status, code(&problem)), (403, "tab_paused_for_review"), "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sixth_euro_payment_since_strong_authentication_still_needs_it_after_kill_9() {
    // The shipped EU bundle lets five low-value payments through without strong customer
    // authentication (PSD2 RTS art. 16); the sixth needs it, and the holder, who has no second
    // factor, is held for review instead. The count lives in the ledger, counted as each payment
    // applies, so a kill -9 between the fifth and the sixth forgets nothing.
    let mut world = World::start("durable-sca", 2, FUNDS, None).await;
    world.op("/v1/accounts", json!({"id": "19", "asset_code": "EUR", "asset_scale": 2})).await;
    world.op("/v1/accounts", json!({"id": "11", "asset_code": "EUR", "asset_scale": 2, "owner_id": "100"})).await;
    world.op("/v1/accounts", json!({"id": "12", "asset_code": "EUR", "asset_scale": 2, "owner_id": "300"})).await;
    world
        .op(
            "/v1/transfers",
            json!({"id": "900", "debit_account_id": "19", "credit_account_id": "11",
            "amount": "100000", "asset_code": "EUR", "asset_scale": 2}),
        )
        .await;
    let euro = |id: u32| {
        json!({"id": id.to_string(), "debit_account_id": "11", "credit_account_id": "12", "amount": "100",
            "asset_code": "EUR", "asset_scale": 2})
    };
    for id in 901..904 {
        let (status, paid) = world.api.post(&world.holder, "/v1/transfers", euro(id), None).await;
        assert_eq!(status, 201, "payment {id}: {paid}");
    }
    world.kill_and_restart().await;
    for id in 904..906 {
        let (status, paid) = world.api.post(&world.holder, "/v1/transfers", euro(id), None).await;
        assert_eq!(status, 201, "payment {id}: {paid}");
    }
    world.kill_and_restart().await;
    let (status, held) = world.api.post(&world.holder, "/v1/transfers", euro(906), None).await;
    assert_eq!((status, code(&held)), (202, "held_for_review"), "{held}");
    let (_, review) =
        world.api.get(&world.operator, &format!("/v1/risk/reviews/{}", held["review"]["id"].as_str().unwrap())).await;
    assert_eq!(review["risk"]["rule"], "eu-psd2-sca@1/low-value-sixth-payment", "{review}");
    assert_eq!(world.balances("12").await, [0, 0, 0, 500], "five paid, the sixth waits");
}

fn now_s() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_up_challenge_survives_kill_9_and_its_approval_spends_exactly_once() {
    // The holder wants payments above USD 1.00 approved, and has TOTP. A payment of 5.00 is
    // challenged; the server is killed before the holder approves, and again before the payer
    // retries with the approval, and again after the payment: the challenge is still there to
    // approve, the approval still pays that payment, and after the third crash it pays nothing
    // else (it was spent in the payment's own record).
    let mut world = World::start("durable-step-up", 2, FUNDS, None).await;
    let policy = json!({"above": {"asset_code": "USD", "asset_scale": 2, "amount": "100"}});
    let (status, answer) = world.api.post(&world.holder, "/v1/principals/100/step-up", policy, None).await;
    assert_eq!(status, 200, "{answer}");
    let (status, enrolment) = world.api.post(&world.holder, "/v1/principals/100/totp", json!({}), None).await;
    assert_eq!(status, 201, "{enrolment}");
    let seed =
        totp_rs::Secret::try_from_base32(enrolment["secret_base32"].as_str().unwrap()).unwrap().as_ref().to_vec();
    let code_at = |step: u64| {
        totp_rs::Builder::new().with_secret(seed.clone()).build_noncompliant().generate(step * 30).to_string()
    };
    let step = now_s() / 30;
    let (status, codes) =
        world.api.post(&world.holder, "/v1/principals/100/totp/confirm", json!({"code": code_at(step)}), None).await;
    assert_eq!(status, 200, "{codes}");

    let (status, challenged) = world.api.post(&world.holder, "/v1/transfers", transfer("500", "500"), None).await;
    assert_eq!((status, code(&challenged)), (403, "requires_action"), "{challenged}");
    let challenge = challenged["challenge"]["id"].as_str().unwrap().to_string();
    world.kill_and_restart().await;

    // A TOTP step is accepted once: approve with the next step's code.
    let (status, approved) = world
        .api
        .post(&world.holder, &format!("/v1/challenges/{challenge}/approve"), json!({"code": code_at(step + 1)}), None)
        .await;
    assert_eq!(status, 200, "the challenge outlived the crash: {approved}");
    world.kill_and_restart().await;

    let (status, paid) = world.api.post(&world.holder, "/v1/transfers", transfer("500", "500"), Some(&challenge)).await;
    assert_eq!(status, 201, "the approval outlived the crash: {paid}");
    world.kill_and_restart().await;

    let (status, again) =
        world.api.post(&world.holder, "/v1/transfers", transfer("501", "500"), Some(&challenge)).await;
    assert_eq!((status, code(&again)), (403, "requires_action"), "a spent approval pays nothing more: {again}");
    assert_eq!(world.balances("2").await, [0, 0, 0, 500], "exactly one payment of 5.00");
}

//! Goal: a request the risk policy holds has one fate, and it is what its client was told. A
//! transfer answered "held" (202) runs on approval, exactly once, and a retry with its id meets
//! the hold (the same review, never a second decision); a declined one never runs. An x402
//! `exact` payment answered 402 is never charged by an approval: approval lets the payer's retry
//! of the same authorization through, and only that retry moves money. The facilitator's
//! `verify` answers what `settle` would, deciding dry.
//! Method: the real `obol serve` with a policy bundle that holds payments of 10.01 to 20.00 USD,
//! over HTTP; kill -9 and restart between a decision and the retry.

mod support;

use serde_json::{Value, json};
use support::{Parties as World, code};

const FUNDS: u128 = 1_000_000;

async fn world(tag: &str) -> World {
    World::start(&format!("holds-{tag}"), 2, FUNDS, Some(("holds@1", support::HOLDS_POLICY))).await
}

fn transfer(id: &str, amount: &str) -> Value {
    json!({"id": id, "debit_account_id": "1", "credit_account_id": "2", "amount": amount,
        "asset_code": "USD", "asset_scale": 2})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_transfer_has_one_fate_and_every_retry_meets_it() {
    let mut world = world("transfers").await;
    let before = world.balances("1").await;

    // Held: 202, nothing moved. The retry gets the same review back, not a new decision.
    let (status, held) = world.api.post(&world.holder, "/v1/transfers", transfer("50", "1500"), None).await;
    assert_eq!((status, code(&held)), (202, "held_for_review"), "{held}");
    let review = held["review"]["id"].as_str().unwrap().to_string();
    let (status, again) = world.api.post(&world.holder, "/v1/transfers", transfer("50", "1500"), None).await;
    assert_eq!((status, again["review"]["id"].as_str()), (202, Some(review.as_str())), "{again}");
    assert_eq!(world.reviews("pending").await.len(), 1, "one request, one review");
    // The id is the held request's: another amount under it is refused, and another payer
    // cannot even see the account it debits.
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers", transfer("50", "1400"), None).await;
    assert_eq!((status, code(&problem)), (409, "id_taken"), "{problem}");
    let (status, problem) = world.api.post(&world.merchant, "/v1/transfers", transfer("50", "1500"), None).await;
    assert_eq!((status, code(&problem)), (404, "account_not_found"), "{problem}");

    // Declined, then kill -9: the retry after the restart is still refused, and nothing moved.
    world.decide(&review, "decline").await;
    world.kill_and_restart().await;
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers", transfer("50", "1500"), None).await;
    assert_eq!((status, code(&problem)), (403, "review_declined"), "{problem}");
    let batch = json!({"transfers": [transfer("50", "1500")]});
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers/batch", batch, None).await;
    assert_eq!((status, code(&problem)), (403, "review_declined"), "{problem}");
    assert_eq!(world.balances("1").await, before);

    // Held, approved: it runs once, at approval; the retry answers that it exists.
    let (status, held) = world.api.post(&world.holder, "/v1/transfers", transfer("51", "1200"), None).await;
    assert_eq!(status, 202, "{held}");
    let review = held["review"]["id"].as_str().unwrap().to_string();
    let approved = world.decide(&review, "approve").await;
    assert_eq!(approved["outcome"], json!(["ok"]), "{approved}");
    let moved = world.balances("1").await;
    assert_eq!(moved[1] - before[1], 1200, "the approval ran it");
    world.kill_and_restart().await;
    let (status, answer) = world.api.post(&world.holder, "/v1/transfers", transfer("51", "1200"), None).await;
    assert_eq!(status, 200, "the retry meets the approved, run transfer: {answer}");
    assert_eq!(world.balances("1").await, moved, "and runs nothing again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_x402_payment_answered_402_is_never_charged_by_an_approval() {
    use base64ct::{Base64UrlUnpadded, Encoding};
    use ed25519_dalek::Signer;
    use obol_core::channel::ExactAuthorization;
    let mut world = world("x402").await;
    let valid_before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600;
    let authorization = ExactAuthorization {
        network: world.network,
        transfer_id: 77,
        from: 1,
        to: 2,
        amount: 1500,
        asset: obol_core::money::Asset::new("USD", 2).unwrap(),
        device_id: 55,
        valid_before_s: valid_before,
    };
    let signature = Base64UrlUnpadded::encode_string(&world.device.sign(&authorization.signed_message()).to_bytes());
    let requirements = json!({"scheme": "exact", "network": world.network_id, "amount": "1500", "asset": "USD",
        "payTo": "2", "maxTimeoutSeconds": 60, "extra": {"assetScale": 2}});
    let settle = json!({"x402Version": 2, "paymentRequirements": requirements.clone(), "paymentPayload": {
        "x402Version": 2, "accepted": requirements, "payload": {"from": "1", "device": "55",
        "transfer": "77", "validBefore": valid_before, "signature": signature}}});
    let before = (world.balances("1").await, world.balances("2").await);

    // verify decides as settle will, dry: not valid, and nothing held, charged or counted.
    let (status, answer) = world.api.post(&world.merchant, "/v1/x402/verify", settle.clone(), None).await;
    assert_eq!((status, answer["isValid"].as_bool()), (200, Some(false)), "{answer}");
    assert_eq!(answer["invalidReason"], "held_for_review", "{answer}");
    assert!(world.reviews("pending").await.is_empty(), "verify held nothing");

    // Held: the facilitator answers failure (the resource server sends 402 and no content).
    for _ in 0..2 {
        let (status, answer) = world.api.post(&world.merchant, "/v1/x402/settle", settle.clone(), None).await;
        assert_eq!((status, answer["success"].as_bool()), (200, Some(false)), "{answer}");
        assert_eq!(answer["errorReason"], "held_for_review", "{answer}");
    }
    let pending = world.reviews("pending").await;
    assert_eq!(pending.len(), 1, "a retry meets the same hold: {pending:?}");
    let review = pending[0]["id"].as_str().unwrap().to_string();

    // Approved (and kill -9 after): the approval takes nothing from the payer who got a 402.
    let approved = world.decide(&review, "approve").await;
    assert!(approved["outcome"][0].as_str().unwrap().starts_with("allowed"), "{approved}");
    world.kill_and_restart().await;
    assert_eq!((world.balances("1").await, world.balances("2").await), before, "an approval charged a refused payer");

    let (_, answer) = world.api.post(&world.merchant, "/v1/x402/verify", settle.clone(), None).await;
    assert_eq!(answer["isValid"], true, "approved, the same payment is valid now: {answer}");

    // The payer sends the same authorization again: now it runs, once.
    let (status, answer) = world.api.post(&world.merchant, "/v1/x402/settle", settle.clone(), None).await;
    assert_eq!((status, answer["success"].as_bool()), (200, Some(true)), "{answer}");
    let (one, two) = (world.balances("1").await, world.balances("2").await);
    assert_eq!((one[1] - before.0[1], two[3] - before.1[3]), (1500, 1500));
    let (_, answer) = world.api.post(&world.merchant, "/v1/x402/settle", settle, None).await;
    assert_eq!(answer["errorReason"], "authorization_used", "{answer}");
    assert_eq!((world.balances("1").await, world.balances("2").await), (one, two));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_tab_opening_is_met_by_its_retry_and_opens_once() {
    let world = world("tabs").await;
    let before = world.balances("1").await;
    let (status, held) = world.open_tab("7", 1_500, "55").await;
    assert_eq!((status, code(&held)), (202, "held_for_review"), "{held}");
    let review = held["review"]["id"].as_str().unwrap().to_string();
    let (status, again) = world.open_tab("7", 1_500, "55").await;
    assert_eq!((status, again["review"]["id"].as_str()), (202, Some(review.as_str())), "{again}");
    assert_eq!(world.reviews("pending").await.len(), 1);
    let approved = world.decide(&review, "approve").await;
    assert_eq!(approved["outcome"], json!(["ok"]), "{approved}");
    let (status, problem) = world.open_tab("7", 1_500, "55").await;
    assert_eq!((status, code(&problem)), (409, "tab_exists"), "{problem}");
    let after = world.balances("1").await;
    assert_eq!(after[0] - before[0], 1_500, "one escrow, held once: {after:?}");

    // Declined: the retry is refused and nothing is escrowed.
    let (status, held) = world.open_tab("8", 1_600, "55").await;
    assert_eq!(status, 202, "{held}");
    world.decide(held["review"]["id"].as_str().unwrap(), "decline").await;
    let (status, problem) = world.open_tab("8", 1_600, "55").await;
    assert_eq!((status, code(&problem)), (403, "review_declined"), "{problem}");
    assert_eq!(world.balances("1").await, after);
}

/// Regression (attack review): an approved hold that the ledger refused when it ran (the payer
/// could not cover it) could run later, with no decision at all, once the account was funded:
/// the retry met an "approved" review and went straight to the ledger. The approval's run was
/// the request's one run; the retry is refused with what the ledger said, also after a kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_hold_the_ledger_refused_never_runs_later() {
    let mut world = world("refused").await;
    // An account the holder opens itself never goes below zero; it holds 12.00.
    let (status, account) = world
        .api
        .post(&world.holder, "/v1/accounts", json!({"id": "5", "asset_code": "USD", "asset_scale": 2}), None)
        .await;
    assert_eq!(status, 201, "{account}");
    let fund = |id: &str, amount: &str| {
        json!({"id": id, "debit_account_id": "9", "credit_account_id": "5", "amount": amount,
            "asset_code": "USD", "asset_scale": 2})
    };
    world.op("/v1/transfers", fund("59", "1200")).await;
    let spend = json!({"id": "60", "debit_account_id": "5", "credit_account_id": "2", "amount": "1500",
        "asset_code": "USD", "asset_scale": 2});
    let (status, held) = world.api.post(&world.holder, "/v1/transfers", spend.clone(), None).await;
    assert_eq!((status, code(&held)), (202, "held_for_review"), "{held}");
    let review = held["review"]["id"].as_str().unwrap().to_string();
    let approved = world.decide(&review, "approve").await;
    assert_eq!(approved["outcome"], json!(["exceeds_credits"]), "{approved}");
    // Funded since: the retry still does not run it.
    world.op("/v1/transfers", fund("61", "100000")).await;
    let funded = world.balances("5").await;
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers", spend.clone(), None).await;
    assert_eq!((status, code(&problem)), (422, "review_refused"), "{problem}");
    world.kill_and_restart().await;
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers", spend, None).await;
    assert_eq!((status, code(&problem)), (422, "review_refused"), "{problem}");
    assert_eq!(world.balances("5").await, funded, "nothing moved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payer_reads_its_own_hold_where_the_answer_points_and_no_one_elses() {
    let world = world("own").await;
    let (status, held) = world.api.post(&world.holder, "/v1/transfers", transfer("70", "1500"), None).await;
    assert_eq!((status, code(&held)), (202, "held_for_review"), "{held}");
    let review = held["review"]["id"].as_str().unwrap().to_string();
    // The 202 answer's Location is a page the payer can read: the hold, why, in words, and
    // none of the model's internals.
    let (status, own) = world.api.get(&world.holder, &format!("/v1/risk/reviews/{review}")).await;
    assert_eq!((status, own["status"].as_str()), (200, Some("pending")), "{own}");
    assert_eq!(own["risk"]["reason_en"], "Held for a look.", "{own}");
    for internal in ["rule", "model_score", "contributions"] {
        assert!(own["risk"].get(internal).is_none(), "{internal} is for staff: {own}");
    }
    assert!(own.get("shapley").is_none() && own.get("features").is_none(), "{own}");
    let (status, listed) = world.api.get(&world.holder, "/v1/risk/reviews?status=all").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["items"].as_array().map(|items| items.len()), Some(1), "{listed}");
    // The payee and another holder see nothing of it.
    world.op("/v1/principals", json!({"id": "101", "role": "holder", "name": "Bob"})).await;
    let other = world.op("/v1/principals/101/keys", json!({})).await["key"].as_str().unwrap().to_string();
    for key in [&world.merchant, &other] {
        let (status, problem) = world.api.get(key, &format!("/v1/risk/reviews/{review}")).await;
        assert_eq!((status, code(&problem)), (404, "review_not_found"), "{problem}");
        let (status, listed) = world.api.get(key, "/v1/risk/reviews?status=all").await;
        assert_eq!((status, listed["items"].as_array().map(Vec::len)), (200, Some(0)), "{listed}");
    }
    // Deciding stays with staff.
    let decision = json!({"decision": "approve"});
    let (status, problem) =
        world.api.post(&world.holder, &format!("/v1/risk/reviews/{review}/decision"), decision, None).await;
    assert_eq!((status, code(&problem)), (403, "forbidden"), "{problem}");
    // Approved with a note for the record: the payer sees the outcome, not the analyst's note or
    // name, here and in its data export.
    let decision = json!({"decision": "approve", "note": "linked to a known mule ring"});
    world.op(&format!("/v1/risk/reviews/{review}/decision"), decision).await;
    let (_, own) = world.api.get(&world.holder, &format!("/v1/risk/reviews/{review}")).await;
    assert_eq!(own["status"], "approved", "{own}");
    assert!(own["note"].is_null() && own["decided_by"].is_null(), "{own}");
    let (status, exported) = world.api.get(&world.holder, "/v1/principals/100/export").await;
    assert_eq!(status, 200, "{exported}");
    let exported_review = &exported["risk_reviews"][0];
    assert_eq!(exported_review["id"].as_str(), Some(review.as_str()), "{exported}");
    for hidden in ["note", "decided_by", "shapley", "features"] {
        assert!(exported_review.get(hidden).is_none_or(|v| v.is_null()), "{hidden}: {exported_review}");
    }
    assert!(exported_review["risk"].get("rule").is_none(), "{exported_review}");
}

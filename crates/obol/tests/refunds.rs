//! Goal: a payee gives back all or part of a payment any number of times, never more than was
//! paid (whatever the retries, races and restarts), and many micro-refunds settle as one batch,
//! with the shipped risk policy on. Only the payee (or the operator) refunds.
//! Method: the real `obol serve` over HTTP with its shipped risk policy; refunds raced from many
//! tasks; kill -9 between refunds.

mod support;

use serde_json::{Value, json};
use support::{Parties, code};

const FUNDS: u128 = 100_000;

fn payment(id: u64, amount: u128) -> Value {
    json!({"id": id.to_string(), "debit_account_id": "1", "credit_account_id": "2", "amount": amount.to_string(),
        "asset_code": "USD", "asset_scale": 2})
}

async fn refund(world: &Parties, key: &str, payment: u64, id: u64, amount: Option<u128>) -> (u16, Value) {
    let mut body = json!({"id": id.to_string()});
    if let Some(amount) = amount {
        body["amount"] = json!(amount.to_string());
    }
    world.api.post(key, &format!("/v1/transfers/{payment}/refunds"), body, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payee_refunds_in_parts_up_to_what_was_paid_and_retries_answer_the_same() {
    let mut world = Parties::start("refunds-parts", 2, FUNDS, None).await;
    let (status, _) = world.api.post(&world.holder, "/v1/transfers", payment(10, 500), None).await;
    assert_eq!(status, 201);
    let (status, first) = refund(&world, &world.merchant, 10, 11, Some(200)).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!((first["debit_account_id"].as_str(), first["credit_account_id"].as_str()), (Some("2"), Some("1")));
    assert_eq!(first["user_data_128"], "10", "the refund names its payment");
    // The same refund again: the one made; with other terms: the id is taken.
    let (status, again) = refund(&world, &world.merchant, 10, 11, Some(200)).await;
    assert_eq!((status, again["timestamp"].clone()), (200, first["timestamp"].clone()));
    let (status, problem) = refund(&world, &world.merchant, 10, 11, Some(250)).await;
    assert_eq!((status, code(&problem)), (409, "id_taken"), "{problem}");
    // The payer cannot refund itself; nobody refunds a refund.
    let (status, problem) = refund(&world, &world.holder, 10, 12, Some(1)).await;
    assert_eq!((status, code(&problem)), (403, "forbidden"), "{problem}");
    let (status, problem) = refund(&world, &world.holder, 11, 12, Some(1)).await;
    assert_eq!((status, code(&problem)), (400, "invalid_field"), "the refund's own payee: {problem}");
    // The rest, then nothing more, across a kill -9.
    world.kill_and_restart().await;
    let (status, problem) = refund(&world, &world.merchant, 10, 12, Some(301)).await;
    assert_eq!((status, code(&problem)), (422, "refund_exceeds_payment"), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("300 left"), "{problem}");
    let (status, rest) = refund(&world, &world.merchant, 10, 12, None).await;
    assert_eq!((status, rest["amount"].as_str()), (201, Some("300")), "{rest}");
    let (status, problem) = refund(&world, &world.merchant, 10, 13, Some(1)).await;
    assert_eq!((status, code(&problem)), (422, "refund_exceeds_payment"), "{problem}");
    // The holder has every cent back; the ledger balances.
    let holder = world.balances("1").await;
    assert_eq!(holder[3] - holder[1], FUNDS, "funded, paid 5.00, refunded 5.00: {holder:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_refunds_never_give_back_more_than_was_paid() {
    let world = Parties::start("refunds-race", 2, FUNDS, None).await;
    let (status, _) = world.api.post(&world.holder, "/v1/transfers", payment(20, 100), None).await;
    assert_eq!(status, 201);
    let mut tasks = Vec::new();
    for i in 0..25u64 {
        let api = support::Api::new(&world.api.base);
        let key = world.merchant.clone();
        tasks.push(tokio::spawn(async move {
            api.post(&key, "/v1/transfers/20/refunds", json!({"id": (100 + i).to_string(), "amount": "10"}), None).await
        }));
    }
    let mut made = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            201 => made += 1,
            422 => assert_eq!(code(&body), "refund_exceeds_payment", "{body}"),
            other => panic!("{other} {body}"),
        }
    }
    assert_eq!(made, 10, "exactly what was paid goes back");
    let merchant = world.balances("2").await;
    assert_eq!(merchant[3] - merchant[1], 0, "paid 1.00, refunded 1.00: {merchant:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_micro_refunds_to_one_payer_settle_as_one_batch_with_the_risk_policy_on() {
    let world = Parties::start("refunds-batch", 2, FUNDS, None).await;
    let payments: Vec<Value> = (0..40u64).map(|i| payment(1_000 + i, 3)).collect();
    let (status, results) =
        world.api.post(&world.holder, "/v1/transfers/batch", json!({"transfers": payments}), None).await;
    assert_eq!(status, 200, "{results}");
    assert!(results["results"].as_array().unwrap().iter().all(|r| r["result"] == "ok"), "{results}");
    let size = |checkpoint: String| checkpoint.lines().nth(1).unwrap().parse::<u64>().unwrap();
    let checkpoint = || async {
        let response = world
            .api
            .http
            .get(format!("{}/v1/audit/checkpoint", world.api.base))
            .bearer_auth(&world.operator)
            .send()
            .await
            .unwrap();
        response.text().await.unwrap()
    };
    let before = size(checkpoint().await);
    let refunds: Vec<Value> =
        (0..40u64).map(|i| json!({"payment": (1_000 + i).to_string(), "id": (2_000 + i).to_string()})).collect();
    let (status, results) = world.api.post(&world.merchant, "/v1/refunds", json!({"refunds": refunds}), None).await;
    assert_eq!(status, 200, "{results}");
    assert!(results["results"].as_array().unwrap().iter().all(|r| r["result"] == "ok"), "{results}");
    assert_eq!(size(checkpoint().await), before + 1, "40 refunds, one record");
    let holder = world.balances("1").await;
    assert_eq!(holder[3] - holder[1], FUNDS, "every cent back: {holder:?}");
    // The same batch again: every refund exists, nothing moves twice.
    let refunds: Vec<Value> =
        (0..40u64).map(|i| json!({"payment": (1_000 + i).to_string(), "id": (2_000 + i).to_string()})).collect();
    let (status, results) = world.api.post(&world.merchant, "/v1/refunds", json!({"refunds": refunds}), None).await;
    assert_eq!(status, 200, "{results}");
    assert!(results["results"].as_array().unwrap().iter().all(|r| r["result"] == "exists"), "{results}");
    assert_eq!(world.balances("1").await, holder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_a_refund_is_never_held_and_the_refund_code_is_the_refund_routes_alone() {
    // Found by the attack review: a refund the shipped Reg E rule held for review (a new payee
    // over $500) ran at approval without checking what was left, so $1,200 went back on a $600
    // payment; and transfers made by hand with the refund code bent the count.
    let world = Parties::start("refunds-held", 2, FUNDS, None).await;
    let (status, _) = world.api.post(&world.holder, "/v1/transfers", payment(50, 100), None).await;
    assert_eq!(status, 201);
    let (status, _) = world.api.post(&world.holder, "/v1/transfers", payment(51, 60_000), None).await;
    assert_eq!(status, 201);
    let (status, whole) = refund(&world, &world.merchant, 51, 61, None).await;
    assert_eq!((status, whole["amount"].as_str()), (201, Some("60000")), "not held: {whole}");
    let (status, problem) = refund(&world, &world.merchant, 51, 62, Some(1)).await;
    assert_eq!((status, code(&problem)), (422, "refund_exceeds_payment"), "{problem}");
    assert!(world.reviews("pending").await.is_empty(), "nothing waits to run later");
    // The refund code on an ordinary transfer is refused, for everyone.
    let mut crafted = json!({"id": "70", "debit_account_id": "2", "credit_account_id": "1", "amount": "1",
        "asset_code": "USD", "asset_scale": 2, "code": 0xF0D, "user_data_128": "50", "flags": ["pending"], "timeout_s": 60});
    for key in [&world.merchant, &world.operator] {
        let (status, problem) = world.api.post(key, "/v1/transfers", crafted.clone(), None).await;
        assert_eq!((status, code(&problem)), (400, "invalid_field"), "{problem}");
    }
    crafted["flags"] = json!([]);
    let (status, problem) = world.api.post(&world.merchant, "/v1/transfers", crafted, None).await;
    assert_eq!((status, code(&problem)), (400, "invalid_field"), "{problem}");
}

//! Goal: a payer disputes a payment (a transfer or a tab's settlement) and gets its money back
//! when it wins, through every step the law and the lifecycle ask for, with the ledger
//! conserving money at every step and the audit log naming every step; neither side can move a
//! dispute's held money by another route, and nothing is refunded or disputed twice.
//! Method: the real `obol serve` over HTTP with its shipped risk policy; kill -9 in the middle.

mod support;

use serde_json::{Value, json};
use support::{Parties, code};

const FUNDS: u128 = 100_000;

fn payment(id: u64, amount: u128, asset: &str) -> Value {
    json!({"id": id.to_string(), "debit_account_id": "1", "credit_account_id": "2", "amount": amount.to_string(),
        "asset_code": asset, "asset_scale": 2})
}

async fn open(world: &Parties, key: &str, body: Value) -> (u16, Value) {
    world.api.post(key, "/v1/disputes", body, None).await
}

/// Posted net of each account (credits - debits), and that they sum to zero.
async fn conserved(world: &Parties, accounts: &[&str]) -> Vec<i128> {
    let mut nets = Vec::new();
    for account in accounts {
        let [_, debits, _, credits] = world.balances(account).await;
        nets.push(credits as i128 - debits as i128);
    }
    assert_eq!(nets.iter().sum::<i128>(), 0, "money is conserved: {nets:?}");
    nets
}

async fn audit_events(world: &Parties) -> Vec<Value> {
    let get = |path: String| async move {
        let response =
            world.api.http.get(format!("{}{path}", world.api.base)).bearer_auth(&world.operator).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.text().await.unwrap()
    };
    let size: u64 = get("/v1/audit/checkpoint".into()).await.lines().nth(1).unwrap().parse().unwrap();
    let page = get(format!("/v1/audit/export?from=0&to={size}")).await;
    page.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|v| v.get("entry").cloned())
        .flat_map(|e| e["events"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispute_runs_from_payment_to_resolution_conserving_money_and_logging_every_step() {
    let mut world = Parties::start("disputes-e2e", 2, FUNDS, None).await;
    let (status, _) = world.api.post(&world.holder, "/v1/transfers", payment(10, 500, "USD"), None).await;
    assert_eq!(status, 201);
    assert_eq!(conserved(&world, &["1", "2", "9"]).await, vec![99_500, 500, -100_000]);
    // The payer disputes; the payee's 5.00 is held.
    let body = json!({"id": "900", "payment": "10", "reason": "not_received", "statement": "nothing arrived"});
    let (status, opened) = open(&world, &world.holder, body.clone()).await;
    assert_eq!(status, 201, "{opened}");
    assert_eq!((opened["status"].as_str(), opened["regime"].as_str()), (Some("open"), Some("reg_e")));
    assert_eq!(opened["money"]["held"], "500");
    assert!(opened["next_en"].as_str().unwrap().contains(opened["deadlines"]["payee_answer_by"].as_str().unwrap()));
    assert!(!opened["next_ko"].as_str().unwrap().is_empty());
    assert_eq!(opened["evidence"]["signed_by"], "api_key", "{opened}");
    assert_eq!(world.balances("2").await[0], 500, "held on the payee's account");
    // A retry answers the same dispute; other terms are another id's.
    let (status, again) = open(&world, &world.holder, body).await;
    assert_eq!((status, again["opened_at"].clone()), (200, opened["opened_at"].clone()));
    // Nothing more of that payment can be disputed or refunded while it is.
    let (status, problem) =
        open(&world, &world.holder, json!({"id": "901", "payment": "10", "amount": "1", "reason": "duplicate"})).await;
    assert_eq!((status, code(&problem)), (422, "dispute_exceeds_payment"), "{problem}");
    let (status, problem) =
        world.api.post(&world.merchant, "/v1/transfers/10/refunds", json!({"id": "950", "amount": "1"}), None).await;
    assert_eq!((status, code(&problem)), (422, "refund_exceeds_payment"), "{problem}");
    // The payee cannot dispute its own receipt, nor the payer answer.
    let (status, problem) =
        open(&world, &world.merchant, json!({"id": "902", "payment": "10", "reason": "duplicate"})).await;
    assert_eq!((status, code(&problem)), (403, "forbidden"), "{problem}");
    let (status, problem) =
        world.api.post(&world.holder, "/v1/disputes/900/answer", json!({"statement": "me"}), None).await;
    assert_eq!((status, code(&problem)), (403, "forbidden"), "{problem}");
    world.kill_and_restart().await;
    let (status, answered) = world
        .api
        .post(&world.merchant, "/v1/disputes/900/answer", json!({"statement": "delivered, signed for"}), None)
        .await;
    assert_eq!((status, answered["status"].as_str()), (200, Some("under_review")), "{answered}");
    // A party cannot decide; the operator does.
    let (status, problem) =
        world.api.post(&world.holder, "/v1/disputes/900/resolve", json!({"winner": "payer"}), None).await;
    assert_eq!((status, code(&problem)), (403, "forbidden"), "{problem}");
    let (status, resolved) =
        world.api.post(&world.operator, "/v1/disputes/900/resolve", json!({"winner": "payer"}), None).await;
    assert_eq!((status, resolved["status"].as_str()), (200, Some("resolved_payer")), "{resolved}");
    assert_eq!((resolved["money"]["credited"].as_str(), resolved["returned"].as_str()), (Some("500"), Some("500")));
    assert_eq!(conserved(&world, &["1", "2", "9"]).await, vec![100_000, 0, -100_000]);
    // Goods not received is no fraud: the risk features get no label from it.
    let (_, labels) = world.api.get(&world.operator, "/v1/risk/labels/recorded").await;
    assert_eq!(labels["items"].as_array().map(Vec::len), Some(0), "{labels}");
    let (status, problem) =
        world.api.post(&world.operator, "/v1/disputes/900/resolve", json!({"winner": "payee"}), None).await;
    assert_eq!((status, code(&problem)), (409, "dispute_closed"), "{problem}");
    // Every step is in the audit log, after another kill -9.
    world.kill_and_restart().await;
    let events = audit_events(&world).await;
    for what in ["dispute.open", "dispute.answer", "dispute.resolve"] {
        let note = events.iter().find(|e| e["what"] == what && e["id"] == "dispute:900");
        assert!(note.is_some(), "{what} is in the audit log");
    }
    assert!(events.iter().any(|e| e["what"] == "dispute.transfers"), "the hold and its post are ledger records");
    let (status, listed) = world.api.get(&world.holder, "/v1/disputes").await;
    assert_eq!((status, listed["items"].as_array().map(Vec::len)), (200, Some(1)), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthorised_euro_payment_is_credited_at_once_and_no_route_moves_the_hold() {
    let world = Parties::start("disputes-eur", 2, FUNDS, None).await;
    for (id, owner) in [("11", "100"), ("12", "300")] {
        world.op("/v1/accounts", json!({"id": id, "asset_code": "EUR", "asset_scale": 2, "owner_id": owner})).await;
    }
    world.op("/v1/accounts", json!({"id": "19", "asset_code": "EUR", "asset_scale": 2})).await;
    world
        .op(
            "/v1/transfers",
            json!({"id": "40", "debit_account_id": "19", "credit_account_id": "11", "amount": "5000",
            "asset_code": "EUR", "asset_scale": 2}),
        )
        .await;
    let pay = |id: u64, amount: u128| {
        json!({"id": id.to_string(), "debit_account_id": "11", "credit_account_id": "12", "amount": amount.to_string(),
            "asset_code": "EUR", "asset_scale": 2})
    };
    assert_eq!(world.api.post(&world.holder, "/v1/transfers", pay(20, 300), None).await.0, 201);
    assert_eq!(world.api.post(&world.holder, "/v1/transfers", pay(21, 200), None).await.0, 201);
    let (status, opened) =
        open(&world, &world.holder, json!({"id": "910", "payment": "21", "reason": "not_as_described"})).await;
    assert_eq!(status, 201, "{opened}");
    // The payer can see its dispute's hold among its transfers; neither side may post or void
    // it, by any route.
    let (_, listed) = world.api.get(&world.holder, "/v1/transfers?account=11").await;
    let hold = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| &item["transfer"])
        .find(|t| t["code"] == 0xD15 && t["flags"].as_array().is_some_and(|f| f.iter().any(|f| f == "pending")))
        .unwrap_or_else(|| panic!("the hold is listed: {listed}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (key, flag, id) in [(&world.holder, "post_pending", "30"), (&world.merchant, "void_pending", "31")] {
        let body = json!({"id": id, "pending_id": hold, "flags": [flag]});
        let (status, problem) = world.api.post(key, "/v1/transfers", body, None).await;
        assert!(status == 403 || status == 404, "{flag}: {status} {problem}");
    }
    let body = json!({"id": "32", "pending_id": hold, "flags": ["post_pending"]});
    let (status, problem) = world.api.post(&world.operator, "/v1/transfers", body, None).await;
    assert_eq!((status, code(&problem)), (403, "pending_transfer_belongs_to_dispute"), "{problem}");
    let mut fake = pay(33, 1);
    fake["code"] = json!(0xD15);
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers", fake, None).await;
    assert_eq!((status, code(&problem)), (422, "code_reserved_for_disputes"), "{problem}");
    // PSD2: an unauthorised payment is refunded at once, before any answer.
    let (status, credited) =
        open(&world, &world.holder, json!({"id": "911", "payment": "20", "reason": "unauthorised"})).await;
    assert_eq!(status, 201, "{credited}");
    assert_eq!((credited["regime"].as_str(), credited["money"]["credited"].as_str()), (Some("psd2"), Some("300")));
    assert!(credited["credited_at"].is_string(), "{credited}");
    assert_eq!(conserved(&world, &["11", "12", "19"]).await, vec![4_800, 200, -5_000]);
    let events = audit_events(&world).await;
    assert!(events.iter().any(|e| e["what"] == "dispute.credit" && e["id"] == "dispute:911"), "the credit is logged");
    // The payee wins the first: the hold goes back to it; the payer withdraws nothing closed.
    let (status, won) =
        world.api.post(&world.operator, "/v1/disputes/910/resolve", json!({"winner": "payee"}), None).await;
    assert_eq!((status, won["money"]["released"].as_bool()), (200, Some(true)), "{won}");
    let (status, problem) = world.api.post(&world.holder, "/v1/disputes/910/withdraw", json!({}), None).await;
    assert_eq!((status, code(&problem)), (409, "dispute_closed"), "{problem}");
    assert_eq!(conserved(&world, &["11", "12", "19"]).await, vec![4_800, 200, -5_000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tabs_vouchers_are_disputed_in_part_with_the_voucher_signature_as_evidence() {
    let world = Parties::start("disputes-tab", 2, FUNDS, None).await;
    let (status, tab) = world.open_tab("70", 1_000, "55").await;
    assert_eq!(status, 201, "{tab}");
    for (cumulative, seq) in [(100, 1), (250, 2)] {
        assert_eq!(world.pay_voucher(70, cumulative, seq).await.0, 200);
    }
    // Not before it settles: the escrow is still held.
    let (status, problem) =
        open(&world, &world.holder, json!({"id": "920", "tab": "70", "amount": "150", "reason": "not_received"})).await;
    assert_eq!((status, code(&problem)), (400, "invalid_field"), "{problem}");
    let (status, settled) = world.api.post(&world.merchant, "/v1/tabs/70/settle", json!({}), None).await;
    assert_eq!(status, 200, "{settled}");
    // The last voucher's 1.50 did not arrive.
    let (status, opened) =
        open(&world, &world.holder, json!({"id": "920", "tab": "70", "amount": "150", "reason": "not_received"})).await;
    assert_eq!(status, 201, "{opened}");
    assert_eq!((opened["tab"].as_str(), opened["money"]["held"].as_str()), (Some("70"), Some("150")));
    assert_eq!(opened["evidence"]["signed_by"], "voucher_signature");
    assert_eq!(opened["evidence"]["device"], "55");
    assert_eq!(opened["evidence"]["voucher_signature"].as_str().map(str::len), Some(128), "{opened}");
    let (status, problem) =
        open(&world, &world.holder, json!({"id": "921", "tab": "70", "amount": "101", "reason": "duplicate"})).await;
    assert_eq!((status, code(&problem)), (422, "dispute_exceeds_payment"), "100 left: {problem}");
    let (status, accepted) = world
        .api
        .post(&world.merchant, "/v1/disputes/920/answer", json!({"statement": "sorry", "accept": true}), None)
        .await;
    assert_eq!((status, accepted["status"].as_str()), (200, Some("resolved_payer")), "{accepted}");
    assert_eq!(accepted["outcome_reason"], "payee_accepted");
    assert_eq!(conserved(&world, &["1", "2", "9"]).await, vec![FUNDS as i128 - 100, 100, -(FUNDS as i128)]);
}

/// Euro accounts for holder 100 (11, funded with `funds`) and merchant 300 (12, holding
/// `takings` of other payments), with unowned account 19 as the source.
async fn euro(world: &Parties, funds: u128, takings: u128) {
    for (id, owner) in [("11", "100"), ("12", "300"), ("13", "100"), ("14", "300")] {
        let body = json!({"id": id, "asset_code": "EUR", "asset_scale": 2, "owner_id": owner,
            "flags": ["debits_must_not_exceed_credits"]});
        world.op("/v1/accounts", body).await;
    }
    world.op("/v1/accounts", json!({"id": "19", "asset_code": "EUR", "asset_scale": 2})).await;
    for (id, to, amount) in [("40", "11", funds), ("41", "12", takings)] {
        world
            .op(
                "/v1/transfers",
                json!({"id": id, "debit_account_id": "19", "credit_account_id": to,
                "amount": amount.to_string(), "asset_code": "EUR", "asset_scale": 2}),
            )
            .await;
    }
}

fn eur(id: u64, from: &str, to: &str, amount: u128) -> Value {
    json!({"id": id.to_string(), "debit_account_id": from, "credit_account_id": to, "amount": amount.to_string(),
        "asset_code": "EUR", "asset_scale": 2})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_a_payer_cannot_keep_a_credit_and_dispute_the_payment_again() {
    // Found by the attack review: a payer moved its provisional credit away (or closed its
    // account), withdrew (the take-back found nothing), and disputed the same payment again,
    // taking the payee's money once per round; or had it refunded after losing.
    let world = Parties::start("disputes-r14-keep", 2, FUNDS, None).await;
    euro(&world, 300, 5_000).await;
    assert_eq!(world.api.post(&world.holder, "/v1/transfers", eur(10, "11", "12", 100), None).await.0, 201);
    let (status, opened) =
        open(&world, &world.holder, json!({"id": "900", "payment": "10", "reason": "unauthorised"})).await;
    assert_eq!((status, opened["money"]["credited"].as_str()), (201, Some("100")), "{opened}");
    // The credit moves to the holder's other account: 300 - 100 + 100 = 300 leaves account 11.
    assert_eq!(world.api.post(&world.holder, "/v1/transfers", eur(20, "11", "13", 300), None).await.0, 201);
    let (status, problem) = world.api.post(&world.holder, "/v1/disputes/900/withdraw", json!({}), None).await;
    assert_eq!((status, code(&problem)), (409, "dispute_credit_spent"), "{problem}");
    // Nothing more of the payment can be disputed or refunded while the dispute stands.
    let (status, problem) =
        open(&world, &world.holder, json!({"id": "901", "payment": "10", "reason": "duplicate"})).await;
    assert_eq!((status, code(&problem)), (422, "dispute_exceeds_payment"), "{problem}");
    // The payee wins; the take-back finds nothing to take.
    let (status, won) =
        world.api.post(&world.operator, "/v1/disputes/900/resolve", json!({"winner": "payee"}), None).await;
    assert_eq!((status, won["money"]["taken_back"].as_str()), (200, Some("0")), "{won}");
    // What the payer kept is neither disputed again nor refunded on top.
    let (status, problem) =
        open(&world, &world.holder, json!({"id": "902", "payment": "10", "reason": "not_received"})).await;
    assert_eq!((status, code(&problem)), (422, "dispute_exceeds_payment"), "{problem}");
    let (status, problem) =
        world.api.post(&world.merchant, "/v1/transfers/10/refunds", json!({"id": "950"}), None).await;
    assert_eq!((status, code(&problem)), (422, "refund_exceeds_payment"), "{problem}");
    // The payer kept the 1.00 the take-back could not recover, once: no more.
    assert_eq!(conserved(&world, &["11", "12", "13", "14", "19"]).await, vec![0, 5_000, 300, 0, -5_300]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_refused_disputes_and_refunds_racing_payments_never_stall_the_server() {
    // Found by the attack review: opening a dispute read the state table through the engine
    // while holding the ledger's read lock; with the writer waiting between the two reads, the
    // second read blocked forever and the whole server with it.
    let world = Parties::start("disputes-r14-lock", 2, FUNDS, None).await;
    assert_eq!(world.api.post(&world.holder, "/v1/transfers", payment(10, 100, "USD"), None).await.0, 201);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(6);
    let mut tasks = Vec::new();
    for lane in 0..5u64 {
        let api = support::Api::new(&world.api.base);
        let (holder, merchant) = (world.holder.clone(), world.merchant.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while std::time::Instant::now() < deadline {
                i += 1;
                let id = 1_000_000 * (lane + 1) + i;
                let (status, body) = match lane {
                    0 | 1 => {
                        let body =
                            json!({"id": id.to_string(), "payment": "10", "amount": "101", "reason": "duplicate"});
                        api.post(&holder, "/v1/disputes", body, None).await
                    }
                    2 => {
                        let body = json!({"id": id.to_string(), "amount": "101"});
                        api.post(&merchant, "/v1/transfers/10/refunds", body, None).await
                    }
                    _ => api.post(&holder, "/v1/transfers", payment(id, 1, "USD"), None).await,
                };
                assert!(status < 500, "{status} {body}");
            }
            i
        }));
    }
    let mut requests = 0;
    for task in tasks {
        requests +=
            tokio::time::timeout(std::time::Duration::from_secs(30), task).await.expect("no request hangs").unwrap();
    }
    assert!(requests > 100, "the race ran: {requests} requests");
    let (status, _) =
        tokio::time::timeout(std::time::Duration::from_secs(5), world.api.get(&world.holder, "/v1/disputes"))
            .await
            .expect("the server still answers");
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_an_answer_racing_a_decision_never_reopens_it_and_a_closed_payee_account_strands_nothing() {
    // Found by the attack review: an answer wrote back the dispute it had read before a
    // concurrent decision closed it, reopening it; and a payee that closed its account made the
    // post of the hold fail, leaving the payer's win unpaid and the hold stuck.
    let world = Parties::start("disputes-r14-race", 2, FUNDS, None).await;
    for round in 0..8u64 {
        let payment_id = 100 + round;
        assert_eq!(world.api.post(&world.holder, "/v1/transfers", payment(payment_id, 10, "USD"), None).await.0, 201);
        let dispute = (900 + round).to_string();
        let body = json!({"id": dispute, "payment": payment_id.to_string(), "reason": "not_received"});
        assert_eq!(open(&world, &world.holder, body).await.0, 201);
        let (api_a, api_b) = (support::Api::new(&world.api.base), support::Api::new(&world.api.base));
        let (operator, merchant) = (world.operator.clone(), world.merchant.clone());
        let (resolve_path, answer_path) =
            (format!("/v1/disputes/{dispute}/resolve"), format!("/v1/disputes/{dispute}/answer"));
        let resolve =
            tokio::spawn(async move { api_a.post(&operator, &resolve_path, json!({"winner": "payer"}), None).await });
        let answer =
            tokio::spawn(async move { api_b.post(&merchant, &answer_path, json!({"statement": "sent"}), None).await });
        let (resolved, answered) = (resolve.await.unwrap(), answer.await.unwrap());
        assert_eq!(resolved.0, 200, "{resolved:?}");
        assert!(answered.0 == 200 || answered.0 == 409, "{answered:?}");
        let (_, now) = world.api.get(&world.operator, &format!("/v1/disputes/{dispute}")).await;
        assert_eq!(now["status"], "resolved_payer", "round {round}: {now}");
        assert_eq!(now["money"]["credited"], "10", "{now}");
    }
    // The payee closes its account (a closing pending transfer), then loses a dispute.
    world.op("/v1/accounts", json!({"id": "6", "asset_code": "USD", "asset_scale": 2, "owner_id": "300"})).await;
    assert_eq!(world.api.post(&world.holder, "/v1/transfers", payment(200, 600, "USD"), None).await.0, 201);
    assert_eq!(
        open(&world, &world.holder, json!({"id": "950", "payment": "200", "reason": "not_received"})).await.0,
        201
    );
    let close = json!({"id": "8000", "debit_account_id": "2", "credit_account_id": "6", "amount": "0",
        "asset_code": "USD", "asset_scale": 2, "flags": ["pending", "closing_debit"]});
    let (status, closed) = world.api.post(&world.merchant, "/v1/transfers", close, None).await;
    assert_eq!(status, 201, "{closed}");
    let (status, won) =
        world.api.post(&world.operator, "/v1/disputes/950/resolve", json!({"winner": "payer"}), None).await;
    assert_eq!((status, won["money"]["credited"].as_str(), won["returned"].as_str()), (200, Some("600"), Some("600")));
    assert_eq!(world.balances("2").await[0], 0, "no hold is left on the payee's account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_a_decided_payment_is_not_disputed_again_and_odd_requests_are_refused() {
    let world = Parties::start("disputes-r14-odd", 2, FUNDS, None).await;
    assert_eq!(world.api.post(&world.holder, "/v1/transfers", payment(10, 400, "USD"), None).await.0, 201);
    assert_eq!(
        open(&world, &world.holder, json!({"id": "900", "payment": "10", "reason": "not_received"})).await.0,
        201
    );
    let (status, _) =
        world.api.post(&world.operator, "/v1/disputes/900/resolve", json!({"winner": "payee"}), None).await;
    assert_eq!(status, 200);
    let (status, problem) =
        open(&world, &world.holder, json!({"id": "901", "payment": "10", "reason": "not_as_described"})).await;
    assert_eq!((status, code(&problem)), (422, "dispute_exceeds_payment"), "decided once: {problem}");
    // Between two accounts of one owner there is nobody to dispute with.
    world.op("/v1/accounts", json!({"id": "3", "asset_code": "USD", "asset_scale": 2, "owner_id": "100"})).await;
    let own = json!({"id": "11", "debit_account_id": "1", "credit_account_id": "3", "amount": "5",
        "asset_code": "USD", "asset_scale": 2});
    assert_eq!(world.api.post(&world.holder, "/v1/transfers", own, None).await.0, 201);
    let (status, problem) =
        open(&world, &world.holder, json!({"id": "902", "payment": "11", "reason": "duplicate"})).await;
    assert_eq!((status, code(&problem)), (400, "invalid_field"), "{problem}");
    for (body, expect) in [
        (json!({"id": "0", "payment": "10", "reason": "duplicate"}), "invalid_id"),
        (json!({"id": "903", "payment": "10", "amount": "0", "reason": "duplicate"}), "invalid_amount"),
    ] {
        let (status, problem) = open(&world, &world.holder, body).await;
        assert_eq!((status, code(&problem)), (400, expect), "{problem}");
    }
    let (status, problem) = world.api.get(&world.holder, "/v1/disputes?limit=0").await;
    assert_eq!((status, code(&problem)), (400, "invalid_query"), "{problem}");
    // Paging: one at a time, each page names the next.
    let (status, page) = world.api.get(&world.operator, "/v1/disputes?limit=1").await;
    assert_eq!((status, page["items"].as_array().map(Vec::len)), (200, Some(1)), "{page}");
}

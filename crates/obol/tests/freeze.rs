//! Goal: a holder stops its money at once (every payment, one device's, or one tab's) in one
//! call, whatever route a payment would take, across a kill -9; lifting the freeze needs its
//! second factor (or the operator); what was owed before still settles.
//! Method: the real `obol serve` over HTTP with its shipped risk policy; payments by API key,
//! by device-signed tab vouchers and by tab escrow; kill -9 between freeze and unfreeze.

mod support;

use serde_json::{Value, json};
use support::{Parties, code};

const FUNDS: u128 = 100_000;

fn payment(id: u64, amount: u128) -> Value {
    json!({"id": id.to_string(), "debit_account_id": "1", "credit_account_id": "2", "amount": amount.to_string(),
        "asset_code": "USD", "asset_scale": 2})
}

/// Sets up the holder's TOTP (with a step-up policy that asks for it only to unfreeze and for
/// other security changes) and answers its recovery codes.
async fn second_factor(world: &Parties) -> Vec<String> {
    let policy = json!({"above": null, "new_payee": false, "new_device": false});
    let (status, answer) = world.api.post(&world.holder, "/v1/principals/100/step-up", policy, None).await;
    assert_eq!(status, 200, "{answer}");
    let (status, enrolment) = world.api.post(&world.holder, "/v1/principals/100/totp", json!({}), None).await;
    assert_eq!(status, 201, "{enrolment}");
    let seed =
        totp_rs::Secret::try_from_base32(enrolment["secret_base32"].as_str().unwrap()).unwrap().as_ref().to_vec();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let code_now = totp_rs::Builder::new().with_secret(seed).build_noncompliant().generate(now).to_string();
    let (status, codes) =
        world.api.post(&world.holder, "/v1/principals/100/totp/confirm", json!({"code": code_now}), None).await;
    assert_eq!(status, 200, "{codes}");
    codes["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freezing_everything_stops_every_payment_route_until_the_holder_approves_unfreezing() {
    let mut world = Parties::start("freeze-all", 2, FUNDS, None).await;
    let recovery = second_factor(&world).await;
    let (status, tab) = world.open_tab("70", 1_000, "55").await;
    assert_eq!(status, 201, "{tab}");
    assert_eq!(world.pay_voucher(70, 100, 1).await.0, 200);
    // One call stops everything; no second factor is asked to stop money.
    let (status, frozen) = world.api.post(&world.holder, "/v1/principals/100/freeze", json!({}), None).await;
    assert_eq!((status, frozen["all"].as_bool()), (200, Some(true)), "{frozen}");
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers", payment(10, 5), None).await;
    assert_eq!((status, code(&problem)), (403, "payer_frozen"), "{problem}");
    assert!(problem["explanation"]["en"]["what"].is_string(), "explained: {problem}");
    assert!(problem["explanation"]["ko"]["next"].is_string(), "explained in Korean: {problem}");
    let (status, problem) = world.pay_voucher(70, 200, 2).await;
    assert_eq!((status, code(&problem)), (403, "payer_frozen"), "a voucher too: {problem}");
    let (status, problem) = world.open_tab("71", 500, "55").await;
    assert_eq!((status, code(&problem)), (403, "payer_frozen"), "a new escrow too: {problem}");
    let (status, problem) = world.api.post(&world.holder, "/v1/tabs/70/topup", json!({"amount": "100"}), None).await;
    assert_eq!((status, code(&problem)), (403, "payer_frozen"), "a top-up too: {problem}");
    // What was paid before still settles: the payee is owed it.
    world.kill_and_restart().await;
    let (status, settled) = world.api.post(&world.merchant, "/v1/tabs/70/settle", json!({}), None).await;
    assert_eq!(status, 200, "{settled}");
    assert_eq!(world.balances("2").await[3], 100);
    // Still frozen after kill -9; unfreezing asks for the second factor, bound to this unfreeze.
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers", payment(11, 5), None).await;
    assert_eq!((status, code(&problem)), (403, "payer_frozen"), "{problem}");
    let (status, challenge) = world.api.post(&world.holder, "/v1/principals/100/unfreeze", json!({}), None).await;
    assert_eq!((status, code(&challenge)), (403, "requires_action"), "{challenge}");
    let id = challenge["challenge"]["id"].as_str().unwrap().to_string();
    // An approval of this unfreeze does not unfreeze something else.
    let approve = json!({"recovery_code": recovery[0]});
    let (status, approved) =
        world.api.post(&world.holder, &format!("/v1/challenges/{id}/approve"), approve, None).await;
    assert_eq!(status, 200, "{approved}");
    let (status, other) =
        world.api.post(&world.holder, "/v1/principals/100/unfreeze", json!({"device": "55"}), Some(&id)).await;
    assert_eq!((status, code(&other)), (403, "requires_action"), "{other}");
    let (status, unfrozen) = world.api.post(&world.holder, "/v1/principals/100/unfreeze", json!({}), Some(&id)).await;
    assert_eq!((status, unfrozen["all"].as_bool()), (200, Some(false)), "{unfrozen}");
    assert_eq!(world.api.post(&world.holder, "/v1/transfers", payment(12, 5), None).await.0, 201);
    // The activity feed and the audit log both say so.
    let (_, activity) = world.api.get(&world.holder, "/v1/principals/100/activity").await;
    let kinds: Vec<&str> = activity.as_array().unwrap().iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(kinds.contains(&"payments_frozen") && kinds.contains(&"payments_unfrozen"), "{activity}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_device_or_tab_stops_only_its_own_payments_and_only_its_holder_freezes() {
    let world = Parties::start("freeze-one", 2, FUNDS, None).await;
    assert_eq!(world.open_tab("70", 1_000, "55").await.0, 201);
    assert_eq!(world.open_tab("71", 1_000, "55").await.0, 201);
    // One tab: its vouchers stop, the other tab's go on.
    let (status, frozen) = world.api.post(&world.holder, "/v1/principals/100/freeze", json!({"tab": "70"}), None).await;
    assert_eq!((status, frozen["tabs"].clone()), (200, json!(["70"])), "{frozen}");
    assert_eq!(code(&world.pay_voucher(70, 100, 1).await.1), "payer_frozen");
    assert_eq!(world.pay_voucher(71, 100, 1).await.0, 200);
    // The device: every tab it signs stops; the holder's API-key payments go on.
    let (status, _) = world.api.post(&world.holder, "/v1/principals/100/freeze", json!({"device": "55"}), None).await;
    assert_eq!(status, 200);
    assert_eq!(code(&world.pay_voucher(71, 200, 2).await.1), "payer_frozen");
    assert_eq!(world.api.post(&world.holder, "/v1/transfers", payment(10, 5), None).await.0, 201);
    // Nobody else freezes the holder's payments, and nobody else's device or tab is the holder's.
    let (status, problem) = world.api.post(&world.merchant, "/v1/principals/100/freeze", json!({}), None).await;
    assert_eq!((status, code(&problem)), (404, "principal_not_found"), "{problem}");
    let (status, problem) = world.api.post(&world.holder, "/v1/principals/300/freeze", json!({}), None).await;
    assert_eq!((status, code(&problem)), (404, "principal_not_found"), "{problem}");
    let (status, problem) =
        world.api.post(&world.holder, "/v1/principals/100/freeze", json!({"device": "56"}), None).await;
    assert_eq!((status, code(&problem)), (404, "device_not_found"), "{problem}");
    let (status, problem) =
        world.api.post(&world.holder, "/v1/principals/100/freeze", json!({"device": "55", "tab": "70"}), None).await;
    assert_eq!((status, code(&problem)), (400, "invalid_field"), "{problem}");
    // Without a second factor the holder cannot unfreeze by itself; the operator can.
    let (status, problem) =
        world.api.post(&world.holder, "/v1/principals/100/unfreeze", json!({"device": "55"}), None).await;
    assert_eq!((status, code(&problem)), (403, "forbidden"), "{problem}");
    let (status, lifted) =
        world.api.post(&world.operator, "/v1/principals/100/unfreeze", json!({"device": "55"}), None).await;
    assert_eq!((status, lifted["devices"].clone()), (200, json!([])), "{lifted}");
    assert_eq!(world.pay_voucher(71, 200, 2).await.0, 200);
    let (status, state) = world.api.get(&world.holder, "/v1/principals/100/freeze").await;
    assert_eq!((status, state["tabs"].clone(), state["all"].as_bool()), (200, json!(["70"]), Some(false)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cli_command_freezes_and_the_checklist_names_the_next_step() {
    let world = Parties::start("freeze-cli", 2, FUNDS, None).await;
    let obol = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_obol"))
            .args(args)
            .args(["--server", &world.api.base])
            .env("OBOL_API_KEY", &world.holder)
            .env("HOME", world.data_dir())
            .output()
            .unwrap()
    };
    let out = obol(&["freeze", "--device", "55"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, state) = world.api.get(&world.holder, "/v1/principals/100/freeze").await;
    assert_eq!(state["devices"], json!(["55"]));
    // Lifting it by the holder needs a second factor, which it does not have: exit 1 with why.
    let out = obol(&["unfreeze", "--device", "55"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("second factor"), "{}", String::from_utf8_lossy(&out.stderr));
    // The checklist: no second factor yet, so that is the next step (score below 100).
    let out = obol(&["principal", "checklist", "100", "--lang", "ko"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("security score") && text.contains("next:"), "{text}");
    let (status, list) = world.api.get(&world.holder, "/v1/principals/100/security-checklist").await;
    assert_eq!((status, list["next"].as_str()), (200, Some("second_factor")), "{list}");
    assert!(list["score"].as_u64().unwrap() < 100);
    assert!(list["items"][0]["explanation"]["ko"]["what"].is_string(), "{list}");
}

/// Holds payments of 10.01 to 20.00 for review (at scale 2).
const HOLD_POLICY: &str = "name = \"freeze-test\"\nversion = 1\neffective_from_s = 0\n\n\
[[rules]]\nid = \"hold\"\naction = \"review\"\nowner = \"risk@test\"\n\
when = \"amount_minor > 1000 && amount_minor <= 2000\"\nreason_en = \"Held.\"\nreason_ko = \"보류.\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r14_a_frozen_holder_cannot_enrol_a_factor_queue_a_held_payment_or_lose_its_retries() {
    // Found by the attack review: a thief with the holder's key enrolled a TOTP of its own while
    // frozen and then approved its own unfreeze; a frozen payment the policy holds was queued for
    // review (and ran if approved after an unfreeze); and a retry of a payment made before the
    // freeze was answered payer_frozen instead of exists.
    let world = Parties::start("freeze-r14", 2, FUNDS, Some(("freeze-test@1", HOLD_POLICY))).await;
    assert_eq!(world.api.post(&world.holder, "/v1/transfers", payment(10, 5), None).await.0, 201);
    assert_eq!(world.open_tab("70", 500, "55").await.0, 201);
    assert_eq!(world.api.post(&world.holder, "/v1/principals/100/freeze", json!({}), None).await.0, 200);
    let (status, problem) = world.api.post(&world.holder, "/v1/principals/100/totp", json!({}), None).await;
    assert_eq!((status, code(&problem)), (403, "forbidden"), "{problem}");
    let (status, problem) = world.api.post(&world.holder, "/v1/transfers", payment(11, 1_800), None).await;
    assert_eq!((status, code(&problem)), (403, "payer_frozen"), "refused, not held: {problem}");
    let (status, problem) = world.api.post(&world.holder, "/v1/tabs/70/topup", json!({"amount": "1900"}), None).await;
    assert_eq!((status, code(&problem)), (403, "payer_frozen"), "refused, not held: {problem}");
    assert!(world.reviews("pending").await.is_empty(), "nothing waits for an analyst");
    let (status, retry) = world.api.post(&world.holder, "/v1/transfers", payment(10, 5), None).await;
    assert_eq!(status, 200, "a retry of a payment made is answered as made: {retry}");
}

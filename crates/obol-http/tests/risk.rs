//! Goal: the risk engine decides every payment on the server's paths and its decisions hold: a
//! block refuses with the reason and moves nothing; a review holds the request unexecuted until
//! an analyst approves (it runs as first asked) or declines (it never runs), and decided reviews
//! become labels; a voucher stream pauses at a checkpoint and a declined review settles the tab;
//! bundles submitted live take effect at once, a broken one is refused and the old one stays,
//! every change is recorded with a diff; a shadow candidate reports exactly where it would differ;
//! a policy reloaded while payments race loses no decision; a restart keeps the counters.
//! Method: the real router over a real engine and SQLite store, with bundles written for each
//! test in the shipped format; a holder pays by API key or by device-signed vouchers; an analyst
//! works the queue through the API.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::Signer;
use obol_app::risk::Risk;
use obol_core::channel::{Network, Voucher};
use obol_risk::policy::{Bundle, Policy};
use serde_json::{Value, json};

mod support;
use support::{post, send};

fn bundle(name: &str, version: u32, rules: &[(&str, &str, &str)]) -> String {
    let mut text = format!("name = \"{name}\"\nversion = {version}\neffective_from_s = 0\n");
    for (id, action, when) in rules {
        text.push_str(&format!(
            "\n[[rules]]\nid = \"{id}\"\naction = \"{action}\"\nowner = \"risk@test\"\nwhen = \"{when}\"\nreason_en = \"Rule {id} matched.\"\nreason_ko = \"규칙 {id}.\"\n"
        ));
    }
    text
}

fn risk(texts: &[&str]) -> Risk {
    let mut policy = Policy::new();
    for text in texts {
        policy.add(Bundle::compile(text).unwrap()).unwrap();
    }
    Risk::new(policy, None)
}

async fn get(router: &axum::Router, key: &str, path: &str) -> (StatusCode, Value) {
    let request =
        Request::get(path).header(header::AUTHORIZATION, format!("Bearer {key}")).body(Body::empty()).unwrap();
    send(router, request).await
}

async fn get_text(router: &axum::Router, key: &str, path: &str) -> String {
    use tower::ServiceExt;
    let request =
        Request::get(path).header(header::AUTHORIZATION, format!("Bearer {key}")).body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    String::from_utf8(axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap()
}

async fn submit_bundle(router: &axum::Router, key: &str, text: &str, shadow: bool) -> (StatusCode, Value) {
    let request = Request::post(format!("/v1/risk/policy?shadow={shadow}"))
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .header(header::CONTENT_TYPE, "application/toml")
        .body(Body::from(text.to_string()))
        .unwrap();
    send(router, request).await
}

struct World {
    parties: support::Parties,
    analyst: String,
}

impl World {
    async fn new(tag: &str, configure: impl FnOnce() -> Risk) -> World {
        let parties = support::parties(tag, "5000000", 21).await;
        // The app was built with risk off; rebuild it over the same engine with this risk engine.
        let state = parties.started.state.clone().with_risk(configure());
        state.risk.load(&state.engine, &obol_app::SystemEnv).await.unwrap();
        let mut parties = parties;
        parties.started.router = obol_http::app(state.clone());
        parties.started.state = state;
        let router = &parties.started.router;
        let operator = &parties.started.operator;
        let (status, _) =
            post(router, operator, "/v1/principals", json!({"id": "400", "role": "analyst", "name": "Ana"}), None)
                .await;
        assert_eq!(status, StatusCode::CREATED);
        let (_, key) =
            post(router, operator, "/v1/principals/400/keys", json!({"scopes": ["read", "manage"]}), None).await;
        let analyst = key["key"].as_str().unwrap().to_string();
        World { parties, analyst }
    }

    fn router(&self) -> &axum::Router {
        &self.parties.started.router
    }

    async fn pay(&self, id: &str, amount: &str) -> (StatusCode, Value) {
        let body = json!({"id": id, "debit_account_id": "1", "credit_account_id": "2", "amount": amount, "asset_code": "USD", "asset_scale": 9});
        post(self.router(), &self.parties.holder, "/v1/transfers", body, None).await
    }

    async fn transfer_exists(&self, id: &str) -> bool {
        get(self.router(), &self.parties.started.operator, &format!("/v1/transfers/{id}")).await.0 == StatusCode::OK
    }

    async fn balance(&self, account: &str) -> Value {
        get(self.router(), &self.parties.started.operator, &format!("/v1/accounts/{account}/balance")).await.1
    }

    async fn decide(&self, review: &str, decision: &str) -> (StatusCode, Value) {
        let path = format!("/v1/risk/reviews/{review}/decision");
        post(self.router(), &self.analyst, &path, json!({"decision": decision, "note": "checked"}), None).await
    }

    fn voucher(&self, tab: u128, cumulative: u128, seq: u64) -> String {
        let signature = self
            .parties
            .device
            .sign(&Voucher::signed_message(&Network::named(obol_http::LOCAL_NETWORK), tab, 2, cumulative, seq))
            .to_bytes();
        Base64UrlUnpadded::encode_string(&Voucher { tab_id: tab, payee_id: 2, cumulative, seq, signature }.encode())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_refuses_with_the_reason_in_both_languages_and_moves_no_money() {
    let world =
        World::new("risk-block", || risk(&[&bundle("caps", 1, &[("over-500", "block", "amount_minor > 500")])])).await;
    let (status, paid) = world.pay("10", "500").await;
    assert_eq!(status, StatusCode::CREATED, "500 is allowed: {paid}");
    let (status, problem) = world.pay("11", "501").await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("risk_blocked")), "{problem}");
    assert_eq!(problem["risk"]["reason_en"], "Rule over-500 matched.");
    assert!(problem["risk"].get("rule").is_none(), "the payer is not told which rule: {problem}");
    assert_eq!(problem["risk"]["reason_en"], "Rule over-500 matched.");
    assert_eq!(problem["risk"]["reason_ko"], "규칙 over-500.");
    assert!(!world.transfer_exists("11").await);
    assert_eq!(world.balance("1").await["debits_posted"], "500", "only the allowed payment moved money");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_holds_the_request_until_an_analyst_decides_and_decisions_become_labels() {
    let world =
        World::new("risk-review", || risk(&[&bundle("hold", 1, &[("over-1000", "review", "amount_minor > 1000")])]))
            .await;
    let (status, held) = world.pay("20", "1500").await;
    assert_eq!((status, held["code"].as_str()), (StatusCode::ACCEPTED, Some("held_for_review")), "{held}");
    let review = held["review"]["id"].as_str().unwrap().to_string();
    assert!(held["review"]["risk"]["reason_en"].as_str().unwrap().starts_with("Rule over-1000 matched."), "{held}");
    assert_eq!(held["review"]["amount"], "1500");
    assert!(!world.transfer_exists("20").await, "a held transfer has not run");
    assert_eq!(world.balance("1").await["debits_posted"], "0");

    let (status, page) = get(world.router(), &world.analyst, "/v1/risk/reviews").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["status"], "pending");
    // The holder sees its own hold, in words, without the rule or the model's numbers.
    let (status, own) = get(world.router(), &world.parties.holder, "/v1/risk/reviews").await;
    assert_eq!(status, StatusCode::OK, "{own}");
    assert_eq!(own["items"].as_array().map(Vec::len), Some(1), "{own}");
    assert!(own["items"][0]["risk"].get("rule").is_none() && own["items"][0].get("features").is_none(), "{own}");

    let (status, decided) = world.decide(&review, "approve").await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    assert_eq!((decided["status"].as_str(), decided["outcome"][0].as_str()), (Some("approved"), Some("ok")));
    assert_eq!(decided["decided_by"], "400");
    assert!(world.transfer_exists("20").await, "approval runs the transfer as first asked");
    assert_eq!(world.balance("1").await["debits_posted"], "1500");
    let (status, again) = world.decide(&review, "decline").await;
    assert_eq!((status, again["code"].as_str()), (StatusCode::CONFLICT, Some("review_decided")));

    let (_, held) = world.pay("21", "2000").await;
    let second = held["review"]["id"].as_str().unwrap().to_string();
    let (status, declined) = world.decide(&second, "decline").await;
    assert_eq!((status, declined["status"].as_str()), (StatusCode::OK, Some("declined")));
    assert!(!world.transfer_exists("21").await, "a declined request never runs");
    assert_eq!(world.balance("1").await["debits_posted"], "1500");

    // The queue pages in creation order: one review a page, each exactly once, then no cursor.
    let (_, first) = get(world.router(), &world.analyst, "/v1/risk/reviews?status=all&limit=1").await;
    assert_eq!(first["items"][0]["id"].as_str(), Some(review.as_str()), "{first}");
    let cursor = first["next"].as_str().unwrap().to_string();
    let (_, page) =
        get(world.router(), &world.analyst, &format!("/v1/risk/reviews?status=all&limit=1&after={cursor}")).await;
    assert_eq!(page["items"][0]["id"].as_str(), Some(second.as_str()), "{page}");
    let cursor = page["next"].as_str().unwrap().to_string();
    let (_, last) =
        get(world.router(), &world.analyst, &format!("/v1/risk/reviews?status=all&limit=1&after={cursor}")).await;
    assert_eq!((last["items"].as_array().map(Vec::len), last["next"].as_str()), (Some(0), None), "{last}");

    let csv = get_text(world.router(), &world.analyst, "/v1/risk/labels").await;
    let lines: Vec<&str> = csv.lines().collect();
    let header = format!("time_s,label,{}", obol_risk::features::FEATURE_NAMES.join(","));
    assert_eq!(lines[0], header, "the live model's features, in order");
    assert_eq!(lines.len(), 3, "{csv}");
    let amount_at = 2 + obol_risk::features::FEATURE_NAMES.iter().position(|n| *n == "amount").unwrap();
    let cells = |line: &str| line.split(',').map(str::to_string).collect::<Vec<_>>();
    // Features count whole cents: 1,500 and 2,000 nano-dollars are each one cent.
    assert_eq!((cells(lines[1])[1].as_str(), cells(lines[1])[amount_at].as_str()), ("0", "1"), "approved: 0");
    assert_eq!((cells(lines[2])[1].as_str(), cells(lines[2])[amount_at].as_str()), ("1", "1"), "declined: 1");
    let (status, missing) = world.decide("nope", "approve").await;
    assert_eq!((status, missing["code"].as_str()), (StatusCode::NOT_FOUND, Some("review_not_found")));
    let (status, bad) = world.decide(&second, "maybe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_up_without_a_second_factor_is_held_instead() {
    let world =
        World::new("risk-stepup", || risk(&[&bundle("sca", 1, &[("over-100", "step_up", "amount_minor > 100")])]))
            .await;
    let (status, held) = world.pay("30", "101").await;
    assert_eq!((status, held["code"].as_str()), (StatusCode::ACCEPTED, Some("held_for_review")), "{held}");
    assert!(held["review"]["risk"]["reason_en"].as_str().unwrap().contains("No second factor"), "{held}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voucher_stream_pauses_at_a_checkpoint_and_a_declined_review_settles_the_tab() {
    // Checkpoints fall on the first payment and each quarter of the budget; this rule holds a
    // checkpoint that paid more than 100,000 since the last one.
    let rule = ("burst", "review", "event_kind == 'tab_checkpoint' && amount_minor > 100000");
    let world = World::new("risk-tab", || risk(&[&bundle("stream", 1, &[rule])])).await;
    let router = world.router();
    let body = json!({"id": "7", "payer_account_id": "1", "payee_account_id": "2", "budget": "1000000",
        "asset_code": "USD", "asset_scale": 9, "timeout_s": 600, "device_id": "55"});
    let (status, tab) = post(router, &world.parties.holder, "/v1/tabs", body, None).await;
    assert_eq!(status, StatusCode::CREATED, "{tab}");
    let merchant = &world.parties.merchant;
    let submit = |cumulative: u128, seq: u64| {
        let voucher = world.voucher(7, cumulative, seq);
        async move { post(router, merchant, "/v1/tabs/7/vouchers", json!({"voucher": voucher}), None).await }
    };
    let (status, _) = submit(1_000, 1).await;
    assert_eq!(status, StatusCode::OK, "the first checkpoint pays 1,000: allowed");
    let (status, _) = submit(200_000, 2).await;
    assert_eq!(status, StatusCode::OK, "no checkpoint between");
    let (status, paid) = submit(300_000, 3).await;
    assert_eq!(status, StatusCode::OK, "the payment that reaches the checkpoint is accepted: {paid}");
    let (status, paused) = submit(310_000, 4).await;
    assert_eq!((status, paused["code"].as_str()), (StatusCode::FORBIDDEN, Some("tab_paused_for_review")), "{paused}");
    let (_, page) = get(router, &world.analyst, "/v1/risk/reviews").await;
    let review = &page["items"][0];
    assert_eq!((review["kind"].as_str(), review["tab_id"].as_str()), (Some("tab_checkpoint"), Some("7")));
    assert_eq!(review["amount"], "299000", "what was paid since the last checkpoint");
    let (status, decided) = world.decide(review["id"].as_str().unwrap(), "decline").await;
    assert_eq!(status, StatusCode::OK, "{decided}");
    let (_, tab) = get(router, &world.parties.started.operator, "/v1/tabs/7").await;
    assert_eq!(tab["status"], "settled", "{tab}");
    assert_eq!(world.balance("2").await["credits_posted"], "300000", "what was paid stays owed, and is paid");
    assert_eq!(world.balance("1").await["debits_pending"], "0", "the rest of the escrow is released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_go_live_at_once_a_broken_one_is_refused_and_every_change_is_recorded() {
    let v1 = bundle("limits", 1, &[("big", "block", "amount_minor > 5000")]);
    let world = World::new("risk-reload", || risk(&[])).await;
    let router = world.router();
    let (status, change) = submit_bundle(router, &world.analyst, &v1, false).await;
    assert_eq!(status, StatusCode::CREATED, "{change}");
    assert_eq!((change["what"].as_str(), change["who"].as_str()), (Some("added"), Some("principal:400")));
    assert_eq!(world.pay("40", "5001").await.0, StatusCode::FORBIDDEN, "v1 is live at once");

    let broken = bundle("limits", 2, &[("big", "block", "amount_minor >")]);
    let (status, problem) = submit_bundle(router, &world.analyst, &broken, false).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("policy_refused")));
    assert!(problem["detail"].as_str().unwrap().contains("does not compile"), "{problem}");
    assert_eq!(world.pay("41", "5001").await.0, StatusCode::FORBIDDEN, "the old bundle still decides");
    let rewritten = bundle("limits", 1, &[("big", "block", "amount_minor > 1")]);
    let (status, problem) = submit_bundle(router, &world.analyst, &rewritten, false).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a version is never rewritten: {problem}");

    let v2 = bundle("limits", 2, &[("big", "block", "amount_minor > 9000")]);
    let (status, change) = submit_bundle(router, &world.analyst, &v2, false).await;
    assert_eq!(status, StatusCode::CREATED, "{change}");
    assert!(
        change["diff"].as_str().unwrap().contains("-when = \"amount_minor > 5000\"\n+when = \"amount_minor > 9000\""),
        "{change}"
    );
    assert_eq!(world.pay("42", "5001").await.0, StatusCode::CREATED, "v2 decides now");

    let (status, changes) = get(router, &world.parties.started.operator, "/v1/risk/policy/changes").await;
    assert_eq!(status, StatusCode::OK);
    let summary: Vec<(String, String)> = changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["what"].as_str().unwrap().to_string(), c["bundle"].as_str().unwrap().to_string()))
        .collect();
    let expected = [("added", "limits@1"), ("refused", "limits@2"), ("refused", "limits@1"), ("added", "limits@2")];
    assert_eq!(summary, expected.map(|(a, b)| (a.to_string(), b.to_string())));
    let (_, policy) = get(router, &world.analyst, "/v1/risk/policy").await;
    assert_eq!(policy["in_force"][0]["version"], 2);
    assert_eq!(policy["generation"], 3, "two changes went live");
    let (status, _) = submit_bundle(router, &world.parties.holder, &v2, false).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a holder cannot change policy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_candidate_reports_exactly_where_it_would_decide_otherwise() {
    let live = bundle("limits", 1, &[("big", "block", "amount_minor > 5000")]);
    let world = World::new("risk-shadow", || risk(&[&live])).await;
    let router = world.router();
    let candidate = bundle("limits", 2, &[("big", "block", "amount_minor > 3000")]);
    let (status, change) = submit_bundle(router, &world.analyst, &candidate, true).await;
    assert_eq!((status, change["what"].as_str()), (StatusCode::CREATED, Some("shadow_started")), "{change}");
    let mut outcomes = Vec::new();
    for (n, amount) in [1000, 3000, 3001, 4500, 5000, 5001].iter().enumerate() {
        outcomes.push(world.pay(&format!("5{n}"), &amount.to_string()).await.0);
    }
    let created = StatusCode::CREATED;
    assert_eq!(
        outcomes,
        [created, created, created, created, created, StatusCode::FORBIDDEN],
        "only the live policy enforces"
    );
    let (status, report) = get(router, &world.analyst, "/v1/risk/shadow").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((report["evaluated"].as_u64(), report["differed"].as_u64()), (Some(6), Some(3)), "{report}");
    assert_eq!(report["changes"].as_object().unwrap().len(), 1, "a block by another version is no difference");
    assert_eq!(report["changes"]["allow->block"], 3);
    let amounts: Vec<&str> =
        report["differences"].as_array().unwrap().iter().map(|d| d["amount"].as_str().unwrap()).collect();
    assert_eq!(amounts, ["3001", "4500", "5000"]);
    assert_eq!(report["differences"][0]["candidate"], "block (limits@2/big)");
    let request = Request::delete("/v1/risk/shadow")
        .header(header::AUTHORIZATION, format!("Bearer {}", world.analyst))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(router, request).await.0, StatusCode::OK);
    let (status, problem) = get(router, &world.analyst, "/v1/risk/shadow").await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::NOT_FOUND, Some("no_shadow")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_reloaded_while_payments_race_loses_no_decision() {
    // Payments of 1 to 9 units race two policies swapped back and forth: "odd" blocks odd amounts,
    // "even" blocks even ones. Every answer must be one of the two policies' decisions, every
    // request must be decided exactly once, and the ledger must hold exactly what was answered.
    let odd = |version: u32| bundle("parity", version, &[("p", "block", "amount_minor % 2 == 1")]);
    let even = |version: u32| bundle("parity", version, &[("p", "block", "amount_minor % 2 == 0")]);
    let world = World::new("risk-race", || risk(&[&odd(1)])).await;
    let router = world.router().clone();
    let payments = 240u32;
    let mut tasks = Vec::new();
    for n in 0..payments {
        let router = router.clone();
        let holder = world.parties.holder.clone();
        tasks.push(tokio::spawn(async move {
            let amount = n % 9 + 1;
            let body = json!({"id": (1000 + n).to_string(), "debit_account_id": "1", "credit_account_id": "2",
                "amount": amount.to_string(), "asset_code": "USD", "asset_scale": 9});
            let (status, _) = post(&router, &holder, "/v1/transfers", body, None).await;
            (amount, status)
        }));
    }
    let reloader = {
        let router = router.clone();
        let analyst = world.analyst.clone();
        tokio::spawn(async move {
            for version in 2..=21u32 {
                let text = if version % 2 == 0 { even(version) } else { odd(version) };
                let (status, change) = submit_bundle(&router, &analyst, &text, false).await;
                assert_eq!(status, StatusCode::CREATED, "{change}");
                tokio::task::yield_now().await;
            }
        })
    };
    let mut paid_units = 0u64;
    for task in tasks {
        let (amount, status) = task.await.unwrap();
        assert!(status == StatusCode::CREATED || status == StatusCode::FORBIDDEN, "amount {amount}: {status}");
        if status == StatusCode::CREATED {
            paid_units += u64::from(amount);
        }
    }
    reloader.await.unwrap();
    let (_, policy) = get(&router, &world.analyst, "/v1/risk/policy").await;
    let decided: u64 =
        ["allow", "step_up", "review", "block"].iter().map(|a| policy["decided"][a].as_u64().unwrap()).sum();
    assert_eq!(decided, u64::from(payments), "every payment was decided exactly once");
    assert_eq!(policy["generation"], 21, "twenty reloads went live");
    assert_eq!(world.balance("1").await["debits_posted"], paid_units.to_string(), "the ledger holds what was answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_counters_since_strong_authentication() {
    // Six euro payments of EUR 1 under the shipped EU bundle: the sixth since the last strong
    // authentication needs it (held here: the holder has no second factor). A restart between
    // the fifth and the sixth must not reset the count.
    let eu = include_str!("../../../policy/eu-psd2-sca.toml");
    let (started, holder) = euro_holder("risk-restart").await;
    let operator = started.operator.clone();
    let router = obol_http::app(started.state.clone());
    let pay = |router: axum::Router, id: u32| euro_payment(router, holder.clone(), id, "100");
    let first = started.state.clone().with_risk(risk(&[eu]));
    first.risk.load(&first.engine, &obol_app::SystemEnv).await.unwrap();
    let router_one = obol_http::app(first.clone());
    for id in 10..15 {
        assert_eq!(pay(router_one.clone(), id).await.0, StatusCode::CREATED, "payment {id}");
    }
    assert!(first.risk.save(&first.engine).await.unwrap() > 0);
    let scratch = started.scratch;
    started.engine.clone().shutdown();
    drop((first, router_one, router, started.state, started.router));

    let node = obol_store::Node::open(obol_store::SqliteStore::open(&scratch.0).unwrap(), 4).unwrap();
    let engine = obol_store::Engine::start(node);
    let second =
        obol_http::AppState::new(engine.clone(), "http").with_instance_id("local").unwrap().with_risk(risk(&[eu]));
    second.risk.load(&engine, &obol_app::SystemEnv).await.unwrap();
    let (status, held) = pay(obol_http::app(second.clone()), 15).await;
    assert_eq!((status, held["code"].as_str()), (StatusCode::ACCEPTED, Some("held_for_review")), "{held}");
    assert!(held["review"]["risk"]["reason_en"].as_str().unwrap().contains("the sixth needs"), "{held}");
    let review = held["review"]["id"].as_str().unwrap();
    let (status, seen) = get(&obol_http::app(second.clone()), &operator, &format!("/v1/risk/reviews/{review}")).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen["risk"]["rule"], "eu-psd2-sca@1/low-value-sixth-payment");
    assert!(seen["features"]["payer_count_1h"].as_f64().unwrap() >= 6.0, "velocity survived too: {seen}");

    // The counters are the ledger's, counted as each payment applied: a server that never
    // loaded the risk snapshot (a kill -9 loses it) still asks on the sixth.
    let without_snapshot =
        obol_http::AppState::new(engine.clone(), "http").with_instance_id("local").unwrap().with_risk(risk(&[eu]));
    let (status, held) = pay(obol_http::app(without_snapshot), 16).await;
    assert_eq!((status, held["code"].as_str()), (StatusCode::ACCEPTED, Some("held_for_review")), "{held}");
    engine.shutdown();
    drop(scratch);
}

/// A fresh app with a holder (100, key returned) owning euro account 1, funded with EUR 1,000,
/// and a payee account 2.
async fn euro_holder(tag: &str) -> (support::Started, String) {
    let started = support::start(tag);
    let op = |path: &'static str, body: Value| {
        let router = started.router.clone();
        let operator = started.operator.clone();
        async move {
            let (status, value) = post(&router, &operator, path, body, None).await;
            assert!(status.is_success(), "{path}: {status} {value}");
            value
        }
    };
    op("/v1/principals", json!({"id": "100", "role": "holder", "name": "Eva"})).await;
    let holder = op("/v1/principals/100/keys", json!({})).await["key"].as_str().unwrap().to_string();
    op("/v1/accounts", json!({"id": "9", "asset_code": "EUR", "asset_scale": 2})).await;
    op("/v1/accounts", json!({"id": "1", "asset_code": "EUR", "asset_scale": 2, "owner_id": "100"})).await;
    op("/v1/accounts", json!({"id": "2", "asset_code": "EUR", "asset_scale": 2})).await;
    op("/v1/transfers", json!({"id": "1", "debit_account_id": "9", "credit_account_id": "1", "amount": "100000", "asset_code": "EUR", "asset_scale": 2})).await;
    (started, holder)
}

async fn euro_payment(router: axum::Router, holder: String, id: u32, amount: &str) -> (StatusCode, Value) {
    let body = json!({"id": id.to_string(), "debit_account_id": "1", "credit_account_id": "2", "amount": amount, "asset_code": "EUR", "asset_scale": 2});
    post(&router, &holder, "/v1/transfers", body, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_fraud_rate_grants_the_transaction_risk_analysis_exemption_within_its_band() {
    // EUR 80 is over the low-value limit: SCA, unless TRA applies. obol's payments are credit
    // transfers, whose reference rate up to EUR 100 is 0.015% (150 ppm).
    let eu = include_str!("../../../policy/eu-psd2-sca.toml");
    let (started, holder) = euro_holder("risk-tra").await;
    let with_rate = |rate_ppm: i64| {
        let state = started.state.clone().with_risk(risk(&[eu]).with_tra_fraud_rate_ppm(rate_ppm));
        obol_http::app(state)
    };
    let (status, _) = euro_payment(with_rate(150), holder.clone(), 10, "8000").await;
    assert_eq!(status, StatusCode::CREATED, "at the reference rate: exempt");
    let (status, held) = euro_payment(with_rate(151), holder.clone(), 11, "8000").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{held}");
    assert!(held["review"]["risk"]["reason_en"].as_str().unwrap().contains("over EUR 30"), "{held}");
    let (status, _) = euro_payment(with_rate(-1), holder.clone(), 12, "8000").await;
    assert_eq!(status, StatusCode::ACCEPTED, "not monitored: no exemption");
    let (status, _) = euro_payment(with_rate(101), holder.clone(), 13, "10001").await;
    assert_eq!(status, StatusCode::ACCEPTED, "EUR 100.01 is in the next band, whose reference is 0.01%");
    let (status, _) = euro_payment(with_rate(100), holder, 14, "10001").await;
    assert_eq!(status, StatusCode::CREATED, "at 0.01% it is exempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monthly_limit_an_account_holder_sets_holds_to_the_unit_and_zero_blocks_everything() {
    let caps = include_str!("../../../policy/holder-caps.toml");
    let world = World::new("risk-limit", || risk(&[caps])).await;
    let router = world.router();
    let set = |key: String, limit: Value| async move {
        post(router, &key, "/v1/accounts/1/monthly-limit", json!({ "limit": limit }), None).await
    };
    let holder = world.parties.holder.clone();
    assert_eq!(set(holder.clone(), json!("0")).await.0, StatusCode::OK);
    let (status, problem) = world.pay("60", "1").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
    assert!(problem["risk"]["reason_en"].as_str().unwrap().contains("monthly limit you set"), "{problem}");
    assert_eq!(set(holder.clone(), json!("1000")).await.1["limit"], "1000");
    assert_eq!(world.pay("61", "600").await.0, StatusCode::CREATED);
    assert_eq!(world.pay("62", "401").await.0, StatusCode::FORBIDDEN, "1,001 in the month is one unit over");
    assert_eq!(world.pay("63", "400").await.0, StatusCode::CREATED, "1,000 is the limit exactly");
    let (status, _) = set(world.parties.merchant.clone(), json!("5")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another principal cannot see, let alone set, the limit");
    let (status, problem) = set(holder.clone(), json!("-5")).await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_amount")));
    assert_eq!(set(holder, Value::Null).await.1["limit"], Value::Null);
    assert_eq!(world.pay("64", "5000").await.0, StatusCode::CREATED, "no limit any more");
}

fn device_payment(key: &ed25519_dalek::SigningKey, id: &str, amount: &str) -> Request<Body> {
    let body = json!({"id": id, "debit_account_id": "1", "credit_account_id": "2", "amount": amount, "asset_code": "USD", "asset_scale": 9});
    support::signed_transfer(key, "reader", &body, id, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_thresholds_hold_in_cents_at_any_account_scale() {
    // The parties' accounts hold USD at scale 9 (nano-dollars). Reg E's "over $50 from a new
    // device" must mean $50.00, not 5,000 nano-dollars: the bundle multiplies by minor_per_unit.
    let reg_e = include_str!("../../../policy/us-reg-e.toml");
    for (tag, amount, expected) in [
        ("risk-scale-a", "5000001", StatusCode::CREATED),
        ("risk-scale-b", "50000000000", StatusCode::CREATED),
        ("risk-scale-c", "50000000001", StatusCode::ACCEPTED),
    ] {
        let world = World::new(tag, || risk(&[reg_e])).await;
        let fund = json!({"id": "2", "debit_account_id": "9", "credit_account_id": "1", "amount": "100000000000", "asset_code": "USD", "asset_scale": 9});
        assert_eq!(
            post(world.router(), &world.parties.started.operator, "/v1/transfers", fund, None).await.0,
            StatusCode::CREATED
        );
        let (status, answer) = send(world.router(), device_payment(&world.parties.device, "70", amount)).await;
        assert_eq!(status, expected, "{amount} nano-dollars from a new device: {answer}");
        if status == StatusCode::ACCEPTED {
            let reason = answer["review"]["risk"]["reason_en"].as_str().unwrap();
            assert!(reason.contains("$50 from a device not seen before"), "{answer}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_kept_as_store_metadata_by_older_versions_moves_into_the_log_once() {
    // A store written before the state table: a monthly limit and a change record sit in store
    // metadata. Loading journals them into the log, where a restart finds them.
    let started = support::start("risk-legacy-meta");
    started.engine.meta_put("risk/monthly-limit/1", b"2500".to_vec()).await.unwrap();
    let change =
        json!({"seq": 1, "at_ns": "1", "who": "file:old.toml", "what": "added", "bundle": "old@1", "diff": "+x\n"});
    started.engine.meta_put("risk/policy-change/0000000000000001", change.to_string().into_bytes()).await.unwrap();
    let state = started.state.clone().with_risk(risk(&[]));
    state.risk.load(&state.engine, &obol_app::SystemEnv).await.unwrap();
    assert_eq!(state.engine.table_get("risk/monthly-limit/1").as_deref(), Some(&b"2500"[..]));
    let (status, changes) = get(&obol_http::app(state.clone()), &started.operator, "/v1/risk/policy/changes").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(changes.as_array().map(Vec::len), Some(1), "{changes}");
    let scratch = started.scratch;
    started.engine.clone().shutdown();
    drop((state, started.state, started.router));

    let node = obol_store::Node::open(obol_store::SqliteStore::open(&scratch.0).unwrap(), 4).unwrap();
    let engine = obol_store::Engine::start(node);
    assert_eq!(engine.table_get("risk/monthly-limit/1").as_deref(), Some(&b"2500"[..]), "replayed from the log");
    let records = engine.stats().records.load(std::sync::atomic::Ordering::Relaxed);
    let again =
        obol_http::AppState::new(engine.clone(), "http").with_instance_id("local").unwrap().with_risk(risk(&[]));
    again.risk.load(&engine, &obol_app::SystemEnv).await.unwrap();
    assert_eq!(engine.stats().records.load(std::sync::atomic::Ordering::Relaxed), records, "journaled once only");
    engine.shutdown();
    drop(scratch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_that_moved_nothing_before_a_crash_is_final_as_a_refusal() {
    // A review the log holds as approved with no final outcome ("running") and whose transfer
    // is not in the ledger: the approval's record never ran it. After the restart a retry of the
    // held transfer is refused, never run on that approval.
    use base64ct::{Base64UrlUnpadded, Encoding};
    use obol_core::record::{Op, Record};
    let (started, holder) = euro_holder("risk-interrupted").await;
    let held = obol_core::ledger::NewTransfer {
        id: 77,
        debit_account_id: 1,
        credit_account_id: 2,
        amount: 100,
        asset: Some(obol_core::money::Asset::new("EUR", 2).unwrap()),
        code: 1,
        pending_id: 0,
        user_data_128: 0,
        user_data_64: 0,
        user_data_32: 0,
        timeout_s: 0,
        flags: obol_core::ledger::TransferFlags(0),
    };
    let op = Record { now_ns: 0, ops: vec![Op::CreateTransfers(vec![held])] }.encode().unwrap();
    let stored = json!({
        "via": "key:unknown",
        "review": {"id": "r1", "status": "approved", "kind": "transfers", "created_ns": "1", "principal_id": "100",
            "payer_account_id": "1", "payee_account_id": "2", "amount": "100", "asset_code": "EUR", "asset_scale": 2,
            "tab_id": null, "risk": {"action": "review", "reason_en": "Held.", "reason_ko": "보류."},
            "decided_by": "1", "decided_ns": "2", "note": null, "outcome": ["running"]},
        "op": Base64UrlUnpadded::encode_string(&op),
        "runs": true,
        "payments": [["1", "100"]],
    });
    started.engine.put("risk/review/r1", serde_json::to_vec(&stored).unwrap()).await.unwrap();
    let state = started.state.clone().with_risk(risk(&[]));
    state.risk.load(&state.engine, &obol_app::SystemEnv).await.unwrap();
    let (status, problem) = euro_payment(obol_http::app(state.clone()), holder, 77, "100").await;
    assert_eq!((status, problem["code"].as_str()), (StatusCode::FORBIDDEN, Some("review_declined")), "{problem}");
    assert!(state.engine.ledger().read().unwrap().transfer(77).is_none());
}

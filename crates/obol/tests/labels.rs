//! Goal: confirmed fraud becomes a label that the live risk features count from the moment obol
//! learns it, never before: an operator's mark, an analyst's decline, a label file imported from
//! the CLI; labels survive kill -9; only operators and analysts may record them; and the features
//! `obol risk features` (the code `obol risk train` uses) computes offline for the same history
//! are the live engine's, bit for bit.
//! Method: the real binary with the shipped risk policy and a bundle that holds payments of 10.01
//! to 20.00; payments over HTTP with the holder's key; the live decisions and their features are
//! read back from `GET /v1/risk/decisions`; the same payments and the label, written as a CSV with
//! their exact times, go through `obol risk features`, and every feature is compared as f64 bits.

mod support;

use serde_json::{Value, json};
use support::{HOLDS_POLICY, Parties, code};

fn transfer(id: u32, amount: &str) -> Value {
    json!({"id": id.to_string(), "debit_account_id": "1", "credit_account_id": "2", "amount": amount,
        "asset_code": "USD", "asset_scale": 2})
}

/// A feature of a decision, by name.
fn feature(decisions: &Value, decision: &Value, name: &str) -> f64 {
    let names = decisions["feature_names"].as_array().expect("names");
    let at = names.iter().position(|n| n == name).unwrap_or_else(|| panic!("no feature {name}"));
    decision["features"][at].as_f64().expect("a number")
}

/// `secs.nanos` of a decimal ns text, exactly.
fn seconds_text(ns: &str) -> String {
    let ns: u128 = ns.parse().unwrap();
    format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
}

fn obol(base: &str, key: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(args)
        .env("OBOL_SERVER", base)
        .env("OBOL_CONFIG", "/nonexistent/obol-config.toml")
        .env("OBOL_API_KEY", key)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r15_labels_count_from_when_obol_learns_them_and_offline_features_equal_live_ones() {
    let mut p = Parties::start("labels", 2, 1_000_000, Some(("holds@1", HOLDS_POLICY))).await;
    for id in 10..14 {
        let (status, body) = p.api.post(&p.holder, "/v1/transfers", transfer(id, "100"), None).await;
        assert_eq!(status, 201, "{body}");
    }
    // Nobody but an operator or analyst labels; a label names a payment or its parties.
    let mark = json!({"labels": [{"payment_id": "10"}]});
    for key in [&p.holder, &p.merchant] {
        let (status, body) = p.api.post(key, "/v1/risk/labels", mark.clone(), None).await;
        assert_eq!((status, code(&body)), (403, "forbidden"), "{body}");
    }
    let (status, body) =
        p.api.post(&p.operator, "/v1/risk/labels", json!({"labels": [{"payment_id": "777"}]}), None).await;
    assert_eq!((status, code(&body)), (404, "transfer_not_found"), "{body}");
    let both = json!({"labels": [{"payment_id": "10", "payer_account_id": "1", "payee_account_id": "2"}]});
    let (status, body) = p.api.post(&p.operator, "/v1/risk/labels", both, None).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = p.api.post(&p.operator, "/v1/risk/labels", json!({"labels": []}), None).await;
    assert_eq!(status, 400, "{body}");

    let (status, marked) = p.api.post(&p.operator, "/v1/risk/labels", mark, None).await;
    assert_eq!(status, 201, "{marked}");
    let label = &marked[0];
    assert_eq!((label["source"].as_str(), label["payment_id"].as_str()), (Some("operator"), Some("10")));
    assert_eq!((label["payer_account_id"].as_str(), label["payee_account_id"].as_str()), (Some("1"), Some("2")));
    let known_ns = label["known_ns"].as_str().unwrap().to_string();
    for id in 14..16 {
        let (status, body) = p.api.post(&p.holder, "/v1/transfers", transfer(id, "100"), None).await;
        assert_eq!(status, 201, "{body}");
    }

    // Live: the four payments before the label see no fraud; the two after it see it.
    let (status, decisions) = p.api.get(&p.operator, "/v1/risk/decisions").await;
    assert_eq!(status, 200, "{decisions}");
    let items = decisions["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 6, "{decisions}");
    for (n, decision) in items.iter().enumerate() {
        assert_eq!(decision["action"], "allow", "{decision}");
        let expected = if n < 4 { 0.0 } else { 1.0 };
        assert_eq!(feature(&decisions, decision, "payee_fraud_1d"), expected, "payment {n}: {decision}");
        assert_eq!(feature(&decisions, decision, "payer_fraud_30d"), expected, "payment {n}");
        assert_eq!(
            feature(&decisions, decision, "network_fraud_7d"),
            expected,
            "the label names the payment's network"
        );
    }
    let (status, hidden) = p.api.get(&p.holder, "/v1/risk/decisions").await;
    assert_eq!((status, code(&hidden)), (403, "forbidden"), "a holder does not see how decisions are made");

    // Offline: the same payments and the label, with their exact times, through the training code.
    let mut csv = String::from("time,payer,payee,network,amount,label,label_time\n");
    for (n, decision) in items.iter().enumerate() {
        let fraud = n == 0;
        csv.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            seconds_text(decision["at_ns"].as_str().unwrap()),
            decision["payer_account_id"].as_str().unwrap(),
            decision["payee_account_id"].as_str().unwrap(),
            decision["network"].as_str().unwrap(),
            decision["amount_iso_minor"].as_str().unwrap(),
            u8::from(fraud),
            if fraud { seconds_text(&known_ns) } else { String::new() },
        ));
    }
    let data = p.data_dir().with_file_name("history.csv");
    let out = p.data_dir().with_file_name("features.csv");
    std::fs::write(&data, csv).unwrap();
    let map = "time=time,entity=payer,payee=payee,network=network,amount=amount,label=label,label_time=label_time";
    let written = obol(
        &p.api.base,
        &p.operator,
        &["risk", "features", "--data", data.to_str().unwrap(), "--map", map, "--out", out.to_str().unwrap()],
    );
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    let offline = std::fs::read_to_string(&out).unwrap();
    let mut lines = offline.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let names: Vec<&str> = decisions["feature_names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    assert_eq!(&header[2..], names.as_slice(), "the same features, in the same order");
    let rows: Vec<Vec<f64>> = lines.map(|line| line.split(',').skip(2).map(|v| v.parse().unwrap()).collect()).collect();
    assert_eq!(rows.len(), items.len());
    for (n, (row, decision)) in rows.iter().zip(&items).enumerate() {
        let live: Vec<f64> = decision["features"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        for ((name, offline), live) in names.iter().zip(row).zip(&live) {
            assert_eq!(
                offline.to_bits(),
                live.to_bits(),
                "payment {n}, feature {name}: offline {offline}, live {live}"
            );
        }
    }

    // An analyst's decline is a label too, with the device-less payment's parties and network.
    let (status, held) = p.api.post(&p.holder, "/v1/transfers", transfer(20, "1500"), None).await;
    assert_eq!((status, code(&held)), (202, "held_for_review"), "{held}");
    p.decide(held["review"]["id"].as_str().unwrap(), "decline").await;
    // And a label file imported from the CLI.
    let file = p.data_dir().with_file_name("confirmed.csv");
    std::fs::write(&file, "payment_id,label\n11,1\n12,0\n").unwrap();
    let imported = obol(&p.api.base, &p.operator, &["risk", "labels", "import", file.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    assert!(String::from_utf8_lossy(&imported.stdout).contains("recorded 1 labels"));

    // Kill -9: the labels are in the log, and the features count them again after the restart.
    p.kill_and_restart().await;
    let (_, recorded) = p.api.get(&p.operator, "/v1/risk/labels/recorded").await;
    let sources: Vec<&str> =
        recorded["items"].as_array().unwrap().iter().map(|l| l["source"].as_str().unwrap()).collect();
    assert_eq!(sources, ["operator", "review_declined", "import"], "{recorded}");
    let (status, body) = p.api.post(&p.holder, "/v1/transfers", transfer(30, "100"), None).await;
    assert_eq!(status, 201, "{body}");
    let (_, decisions) = p.api.get(&p.operator, "/v1/risk/decisions").await;
    let last = decisions["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(feature(&decisions, &last, "payee_fraud_1d"), 3.0, "three labels on payee 2 survive kill -9: {last}");
}

/// Found by attacking labels: a payment is labelled once whatever route or retry labels it;
/// only a payment can be labelled (not a refund); a label's parties must make sense; an
/// import skips rows not labelled fraud, checks every row before sending any, and a second run
/// records nothing; another payer's flood of decisions does not cost a label its network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r15_a_payment_is_labelled_once_and_only_payments_with_sensible_parties_are_labelled() {
    let p = Parties::start("labels-attack", 2, 1_000_000, None).await;
    for id in 10..13 {
        let (status, body) = p.api.post(&p.holder, "/v1/transfers", transfer(id, "100"), None).await;
        assert_eq!(status, 201, "{body}");
    }
    // Another payer floods the decisions kept in memory with refused payments.
    p.op("/v1/principals", json!({"id": "103", "role": "holder", "name": "Mallory"})).await;
    let mallory = p.op("/v1/principals/103/keys", json!({})).await["key"].as_str().unwrap().to_string();
    p.op(
        "/v1/accounts",
        json!({"id": "8", "asset_code": "USD", "asset_scale": 2, "owner_id": "103",
        "flags": ["debits_must_not_exceed_credits"]}),
    )
    .await;
    for round in 0..2u32 {
        let batch: Vec<Value> = (0..6_000u32)
            .map(|n| {
                json!({"id": (900_000 + round * 10_000 + n).to_string(), "debit_account_id": "8",
                "credit_account_id": "2", "amount": "1", "asset_code": "USD", "asset_scale": 2})
            })
            .collect();
        let (status, _) = p.api.post(&mallory, "/v1/transfers/batch", json!({"transfers": batch}), None).await;
        assert!(status < 500, "{status}");
    }

    let mark = |id: &str| json!({"labels": [{"payment_id": id}]});
    let (status, first) = p.api.post(&p.operator, "/v1/risk/labels", mark("10"), None).await;
    assert_eq!(status, 201, "{first}");
    assert!(first[0]["network"].is_string(), "the network survives another payer's flood: {first}");
    let (status, again) = p.api.post(&p.operator, "/v1/risk/labels", mark("10"), None).await;
    assert_eq!((status, again.as_array().map(Vec::len)), (201, Some(0)), "labelled once: {again}");
    for bad in ["+10", " 10", "1e3", &"9".repeat(100)] {
        let (status, body) = p.api.post(&p.operator, "/v1/risk/labels", mark(bad), None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body.to_string().len() < 2_000, "an id is not echoed in full");
    }
    let (status, refund) =
        p.api.post(&p.merchant, "/v1/transfers/11/refunds", json!({"id": "5011", "amount": "50"}), None).await;
    assert_eq!(status, 201, "{refund}");
    let (status, body) = p.api.post(&p.operator, "/v1/risk/labels", mark("5011"), None).await;
    assert_eq!(status, 400, "a refund is not a payment to label: {body}");
    let parties = |payer: &str, payee: &str, device: Option<&str>| {
        let mut item = json!({"payer_account_id": payer, "payee_account_id": payee});
        if let Some(device) = device {
            item = json!({"payer_account_id": payer, "payee_account_id": payee, "device_id": device});
        }
        json!({"labels": [item]})
    };
    let (status, body) = p.api.post(&p.operator, "/v1/risk/labels", parties("1", "1", None), None).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = p.api.post(&p.operator, "/v1/risk/labels", parties("8", "2", Some("55")), None).await;
    assert_eq!(status, 400, "device 55 is Alice's, not Mallory's: {body}");
    let (status, body) = p.api.post(&p.operator, "/v1/risk/labels", parties("1", "2", Some("55")), None).await;
    assert_eq!(status, 201, "{body}");

    let file = p.data_dir().with_file_name("confirmed.csv");
    std::fs::write(&file, "payment_id,label\n11,1\n12,\n10,1\n\"12\",0.00\n").unwrap();
    let run = || obol(&p.api.base, &p.operator, &["risk", "labels", "import", file.to_str().unwrap()]);
    let imported = run();
    assert!(imported.status.success(), "{}", String::from_utf8_lossy(&imported.stderr));
    let text = String::from_utf8_lossy(&imported.stdout).to_string();
    assert!(text.contains("recorded 1 labels") && text.contains("1 payments labelled already"), "{text}");
    let again = run();
    assert!(String::from_utf8_lossy(&again.stdout).contains("recorded 0 labels"), "a second run records nothing");
    std::fs::write(&file, "payment_id,label\n12,1\nbogus,1\n").unwrap();
    let refused = run();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("nothing was recorded"));
    let (_, recorded) = p.api.get(&p.operator, "/v1/risk/labels/recorded").await;
    let payments: Vec<Option<&str>> =
        recorded["items"].as_array().unwrap().iter().map(|l| l["payment_id"].as_str()).collect();
    assert_eq!(payments, [Some("10"), None, Some("11")], "{recorded}");
}

//! Goal: `obol sim traffic` writes the CSV README.md describes, the same file for the same seed,
//! with every injected fraud kind labelled.
//! Method: run the real binary twice with one seed and once with another, and read the files.

use std::process::Command;

mod support;

fn simulate(seed: &str, out: &std::path::Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(["sim", "traffic", "--customers", "200", "--days", "2", "--seed", seed, "--out"])
        .arg(out)
        .output()
        .expect("run obol");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("fraudulent"));
}

#[test]
fn the_same_seed_writes_the_same_labelled_traffic() {
    let dir = std::env::temp_dir().join(format!("obol-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (first, again, other) = (dir.join("a.csv"), dir.join("b.csv"), dir.join("c.csv"));
    simulate("7", &first);
    simulate("7", &again);
    simulate("8", &other);
    let text = std::fs::read_to_string(&first).unwrap();
    assert_eq!(text, std::fs::read_to_string(&again).unwrap(), "one seed, one file");
    assert_ne!(text, std::fs::read_to_string(&other).unwrap());
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "time_s,payer,device,payee,network,amount_minor,failed_auth_count,payee_cash_like,label,fraud_kind,\
             label_known_s"
        )
    );
    let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
    assert!(rows.iter().all(|row| row.len() == 11));
    for kind in [
        "account_takeover",
        "card_testing",
        "cloned_device",
        "velocity_abuse",
        "cell_cluster",
        "compromised_payee",
        "compromised_payer",
    ] {
        assert!(rows.iter().any(|row| row[9] == kind && row[8] == "1"), "{kind} is labelled");
    }
    assert!(rows.iter().filter(|row| row[8] == "0").all(|row| row[9].is_empty() && row[10].is_empty()));
    // Every fraud's label becomes known one to eight days after it (1-7 whole days, plus part of one).
    for row in rows.iter().filter(|row| row[8] == "1") {
        let (at, known): (u64, u64) = (row[0].parse().unwrap(), row[10].parse().unwrap());
        assert!((at + 86_400..at + 8 * 86_400).contains(&known), "{row:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_model_trained_through_a_column_mapping_is_judged_on_the_later_data() {
    let dir = std::env::temp_dir().join(format!("obol-risk-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (data, model) = (dir.join("traffic.csv"), dir.join("model.json"));
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_obol")).args(args).output().expect("run obol");
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let (data_arg, model_arg) = (data.display().to_string(), model.display().to_string());
    run(&["sim", "traffic", "--customers", "600", "--days", "6", "--seed", "5", "--out", &data_arg]);
    let map = "time=time_s,amount=amount_minor,label=label,entity=payer,device=device,payee=payee,network=network,\
               label_time=label_known_s,kind=fraud_kind";
    let trained =
        run(&["risk", "train", "--data", &data_arg, "--map", map, "--trees", "60", "--out", &model_arg, "--json"]);
    let trained: serde_json::Value = serde_json::from_str(trained.trim()).unwrap();
    let evaluated = run(&[
        "risk",
        "eval",
        "--data",
        &data_arg,
        "--map",
        map,
        "--model",
        &model_arg,
        "--json",
        "--bootstrap",
        "200",
    ]);
    let evaluated: serde_json::Value = serde_json::from_str(evaluated.trim()).unwrap();
    for key in ["auprc", "auprc_ci_low", "auprc_ci_high", "roc_auc", "precision_at_80_recall"] {
        assert!(evaluated[key].is_number(), "eval --json has {key}: {evaluated}");
    }
    assert_eq!(evaluated["auprc"], trained["auprc"], "eval measures the same held-out rows as train did");
    assert_eq!(evaluated["held_out_from_s"], trained["held_out_from_s"], "the model records where training ended");
    let by_kind = evaluated["by_kind"].as_object().unwrap();
    assert!(by_kind.contains_key("compromised_payee") && by_kind.contains_key("card_testing"), "{evaluated}");
    let precision = evaluated["precision_top_k_per_day"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&precision) && evaluated["days"].as_u64().unwrap() >= 1, "{evaluated}");
    // Measuring from earlier than the model's own split would score rows it trained on.
    let output = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(["risk", "eval", "--data", &data_arg, "--map", map, "--model", &model_arg, "--split", "0.5"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("would score rows it learned from"));
    assert!(evaluated["auprc"].as_f64().unwrap() > 0.8, "{evaluated}");
    let low = evaluated["auprc_ci_low"].as_f64().unwrap();
    assert!(low <= evaluated["auprc"].as_f64().unwrap());
    // A mapping that names a missing column is refused with the columns that exist.
    let output = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(["risk", "train", "--data", &data_arg, "--map", "time=when,label=label", "--out", &model_arg])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no column \"when\""));

    // Served: the analyst reads the model's held-out metrics, its precision-recall curve and
    // confusion matrix, as training measured them.
    let data_dir = dir.join("data");
    let mut launched = support::launch([
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--risk-model",
        &model_arg,
    ]);
    let operator = launched.key.clone().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (status, served) = runtime.block_on(support::Api::new(&launched.base).get(&operator, "/v1/risk/model"));
    let _ = launched.child.kill();
    let _ = launched.child.wait();
    assert_eq!(status, 200, "{served}");
    let metrics = &served["metrics"];
    assert_eq!(metrics["auprc"], trained["auprc"], "{served}");
    let curve = metrics["pr_curve"].as_array().unwrap();
    assert!(curve.len() > 10 && curve.len() <= 101, "{served}");
    let last = curve.last().unwrap();
    assert_eq!(last["recall"].as_f64(), Some(1.0), "the curve ends at full recall: {last}");
    let confusion = &metrics["confusion"];
    let cells: u64 = ["true_positives", "false_positives", "true_negatives", "false_negatives"]
        .iter()
        .map(|cell| confusion[cell].as_u64().unwrap())
        .sum();
    assert_eq!(Some(cells), metrics["rows"].as_u64(), "{confusion}");
    assert!(served["importance"].as_array().is_some_and(|i| !i.is_empty()), "{served}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Average precision as `obol risk eval` computes it: rows ranked by score, highest first, ties
/// in their given order.
fn average_precision(scored: &[(f64, bool)]) -> f64 {
    let mut ranked = scored.to_vec();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let positives = ranked.iter().filter(|(_, fraud)| *fraud).count();
    let (mut hits, mut area) = (0usize, 0.0);
    for (rank, (_, fraud)) in ranked.iter().enumerate() {
        if *fraud {
            hits += 1;
            area += hits as f64 / (rank + 1) as f64;
        }
    }
    area / positives as f64
}

#[test]
fn training_options_importance_and_a_score_file_that_reproduces_the_measured_auprc() {
    let dir = std::env::temp_dir().join(format!("obol-risk-score-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    let (data, model, scores) = (path("traffic.csv"), path("model.json"), path("scores.csv"));
    let obol = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_obol")).args(args).output().expect("run obol");
    let run = |args: &[&str]| {
        let output = obol(args);
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    run(&["sim", "traffic", "--customers", "600", "--days", "8", "--seed", "9", "--out", &data]);
    let map = "time=time_s,amount=amount_minor,label=label,entity=payer,device=device,payee=payee,network=network,\
               label_time=label_known_s";
    let trained = run(&[
        "risk",
        "train",
        "--data",
        &data,
        "--map",
        map,
        "--out",
        &model,
        "--json",
        "--trees",
        "300",
        "--learning-rate",
        "0.5",
        "--early-stopping",
        "5",
        "--fraud-weight",
        "balanced",
        "--bins",
        "1024",
        "--subsample",
        "0.8",
        "--importance",
        "5",
        "--bootstrap",
        "0",
    ]);
    let trained: serde_json::Value = serde_json::from_str(trained.trim()).unwrap();
    let trees = trained["trees"].as_u64().unwrap();
    assert!((1..300).contains(&trees), "early stopping kept {trees} of 300 trees: {trained}");
    assert!(trained["validation_rows"].as_u64().unwrap() > 0, "{trained}");
    let kept = trained["features_kept"].as_u64().unwrap();
    assert!((1..60).contains(&kept), "features that never vary are left out of training: {trained}");
    let importance = trained["importance"].as_object().unwrap();
    assert!((1..=5).contains(&importance.len()), "{trained}");
    let artifact: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&model).unwrap()).unwrap();
    assert_eq!(artifact["params"]["bins"], 1024);
    assert_eq!(artifact["params"]["early_stopping_rounds"], 5);
    assert!(artifact["params"]["fraud_weight"].as_f64().unwrap() > 1.0, "balanced weighs the rare fraud up");
    let shares = artifact["importance"].as_array().unwrap();
    let total: f64 = shares.iter().map(|pair| pair[1].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-6, "the shares of the split gain add up to 1: {total}");
    for (name, _) in importance {
        assert!(shares.iter().any(|pair| pair[0] == name.as_str()), "{name}");
    }

    // The held-out scores, written row by row, give back the AUPRC train measured.
    run(&["risk", "score", "--data", &data, "--map", map, "--model", &model, "--out", &scores]);
    let text = std::fs::read_to_string(&scores).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("line,time_s,label,score"));
    let held_out_from = trained["held_out_from_s"].as_u64().unwrap();
    let scored: Vec<(f64, bool)> = lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert!(fields[0].parse::<u64>().unwrap() >= 2, "a CSV line number: {line}");
            assert!(fields[1].parse::<u64>().unwrap() >= held_out_from, "only held-out rows: {line}");
            let score: f64 = fields[3].parse().unwrap();
            assert!((0.0..=1.0).contains(&score), "{line}");
            (score, fields[2] == "1")
        })
        .collect();
    assert_eq!(scored.len() as u64, trained["rows"].as_u64().unwrap());
    let auprc = average_precision(&scored);
    assert!((auprc - trained["auprc"].as_f64().unwrap()).abs() < 1e-12, "{auprc} against {trained}");

    // Unlabelled data scores too, every row with --all.
    let unlabelled = "time=time_s,amount=amount_minor,entity=payer,device=device,payee=payee,network=network";
    run(&["risk", "score", "--data", &data, "--map", unlabelled, "--model", &model, "--out", &scores, "--all"]);
    let rows = std::fs::read_to_string(&data).unwrap().lines().count() - 1;
    let text = std::fs::read_to_string(&scores).unwrap();
    assert_eq!(text.lines().count() - 1, rows, "--all scores every row");
    assert!(text.lines().skip(1).all(|line| line.split(',').nth(2) == Some("0")), "no label column: 0");

    // Settings that cannot train say why, before any work.
    for (option, value, says) in [
        ("--bins", "1", "bins must be 2 to 4096"),
        ("--fraud-weight", "heavy", "a number above 0, or `balanced`"),
        ("--subsample", "1.5", "subsample share must be above 0 and at most 1"),
    ] {
        let output = obol(&["risk", "train", "--data", &data, "--map", map, "--out", &model, option, value]);
        assert!(!output.status.success(), "{option} {value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{option} {value}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dates_amounts_and_errors_of_a_data_scientists_csv() {
    let dir = std::env::temp_dir().join(format!("obol-risk-dates-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (data, model) = (dir.join("tx.csv"), dir.join("model.json"));
    // Columns as the fraud-detection handbook's simulator names them, ISO date-times without a zone.
    let mut csv = String::from("TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD\n");
    for n in 0..4_000u64 {
        let (day, second) = (1 + n / 400, n % 400 * 200);
        let fraud = u8::from(n % 97 == 0 || (n % 400 > 380 && n / 400 >= 6));
        let amount = if fraud == 1 { 250.0 + (n % 13) as f64 } else { 20.0 + (n % 37) as f64 + 0.25 };
        csv.push_str(&format!(
            "{n},2018-04-{day:02} {:02}:{:02}:{:02},{},{},{amount:.2},{fraud}\n",
            second / 3600,
            second / 60 % 60,
            second % 60,
            n % 50,
            if n % 400 > 380 { 7 } else { n % 20 },
        ));
    }
    std::fs::write(&data, &csv).unwrap();
    let map = "time=TX_DATETIME,amount=TX_AMOUNT,label=TX_FRAUD,payer=CUSTOMER_ID,terminal=TERMINAL_ID";
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_obol")).args(args).output().expect("run obol");
    let (data_arg, model_arg) = (data.display().to_string(), model.display().to_string());
    let common = ["risk", "train", "--data", &data_arg, "--map", map, "--out", &model_arg, "--trees", "30"];
    let output = run(&[&common[..], &["--amount-scale", "2", "--train-until", "2018-04-08", "--json"]].concat());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let trained: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    // 2018-04-08T00:00:00Z: seven days of 400 rows train.
    assert_eq!(trained["held_out_from_s"], 1_523_145_600);
    assert_eq!(trained["trained_rows"], 2_800);
    // Cents need --amount-scale 2: without it the error names the row, the column and the way out.
    let output = run(&common);
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(error.contains("row 3, column TX_AMOUNT") && error.contains("--amount-scale"), "{error}");
    // A time that is no time names its row and column too.
    std::fs::write(&data, csv.replacen("2018-04-01 00:00:00", "yesterday", 1)).unwrap();
    let output = run(&[&common[..], &["--amount-scale", "2"]].concat());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("row 2, column TX_DATETIME") && error.contains("not a time"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

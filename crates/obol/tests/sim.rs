//! Goal: `obol sim traffic` writes the CSV README.md describes, the same file for the same seed,
//! with every injected fraud kind labelled.
//! Method: run the real binary twice with one seed and once with another, and read the files.

use std::process::Command;

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
        Some("time_s,payer,device,payee,network,amount_minor,failed_auth_count,payee_cash_like,label,fraud_kind")
    );
    let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
    assert!(rows.iter().all(|row| row.len() == 10));
    for kind in ["account_takeover", "card_testing", "cloned_device", "velocity_abuse", "cell_cluster"] {
        assert!(rows.iter().any(|row| row[9] == kind && row[8] == "1"), "{kind} is labelled");
    }
    assert!(rows.iter().filter(|row| row[8] == "0").all(|row| row[9].is_empty()));
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
    let map = "time=time_s,amount=amount_minor,label=label,entity=payer,device=device,payee=payee,network=network";
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
    let _ = std::fs::remove_dir_all(&dir);
}

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

//! Goal: the audit log holds the server to its history. An export verifies offline with the
//! server's key, and `obol audit verify` names the entry of every kind of tampering: an edited
//! entry (with or without its leaf hash rewritten), a deleted, reordered or inserted line, a
//! truncated file, a checkpoint of another history (a fork), a file checked with another key.
//! Proofs and checkpoints stay valid across kill -9: the same size signs to the same note, and the
//! history after the restart is consistent with the one before it.
//! A payment the risk policy refused, a review decision, a policy change and an identity change
//! name who asked,
//! with which credential, from where and how it ended. Regressions from the attack review (`r13_*`): a failed export keeps
//! the file it would replace; saved checkpoints survive editors; damaged lines are named.
//! Method: the real `obol serve` over HTTP and the real `obol audit` commands on its exports.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64ct::{Base64, Encoding};
use serde_json::{Value, json};
use support::Parties;

const FUNDS: u128 = 10_000_000;

fn transfer(id: u64) -> Value {
    json!({"id": id.to_string(), "debit_account_id": "1", "credit_account_id": "2", "amount": "1",
        "asset_code": "USD", "asset_scale": 2})
}

/// Runs `obol ARGS` against the parties' server as the operator; answers (success, stdout, stderr).
fn obol(world: &Parties, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(args)
        .env("OBOL_SERVER", &world.api.base)
        .env("OBOL_API_KEY", &world.operator)
        .env("OBOL_CONFIG", world.data_dir().join("no-profiles.toml"))
        .output()
        .expect("run obol");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Verifies `file` with `key` (and saved checkpoints); answers (success, stdout + stderr).
fn verify(world: &Parties, file: &Path, key: &str, saved: &[&Path]) -> (bool, String) {
    let mut args = vec!["audit", "verify", file.to_str().unwrap(), "--key", key];
    for path in saved {
        args.extend(["--checkpoint", path.to_str().unwrap()]);
    }
    let (ok, stdout, stderr) = obol(world, &args);
    (ok, format!("{stdout}{stderr}"))
}

/// Writes `lines` as a tampered copy of an export.
fn tampered(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// The line of entry `index` in an export's lines.
fn line_of(lines: &[String], index: u64) -> usize {
    lines.iter().position(|l| l.starts_with(&format!("{{\"index\":{index},"))).expect("entry line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_verifies_offline_and_every_kind_of_tampering_is_named() {
    let world = Parties::start("audit-tamper", 2, FUNDS, None).await;
    // Past 256 entries, so the export carries a checkpoint inside it as well as at its end.
    for id in 0..280u64 {
        let (status, body) = world.api.post(&world.holder, "/v1/transfers", transfer(1_000 + id), None).await;
        assert_eq!(status, 201, "{body}");
    }
    let (ok, key, stderr) = obol(&world, &["audit", "key"]);
    assert!(ok, "{stderr}");
    let key = key.trim().to_string();
    let scratch = world.data_dir().join("exports");
    std::fs::create_dir_all(&scratch).unwrap();
    let (ok, _, stderr) = obol(&world, &["audit", "checkpoint", "--size", "100"]);
    assert!(ok, "{stderr}");
    let export = scratch.join("audit.jsonl");
    let (ok, stdout, stderr) = obol(&world, &["audit", "export", "--out", export.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("audit entries"), "{stdout}");
    let (ok, out) = verify(&world, &export, &key, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("ok: "), "{out}");
    let lines: Vec<String> = std::fs::read_to_string(&export).unwrap().lines().map(str::to_string).collect();
    let checkpoints = lines.iter().filter(|l| l.starts_with("{\"checkpoint\"")).count();
    assert_eq!(checkpoints, 2, "one after entry 255, one at the end");

    // Edited: one digit of entry 10's time.
    let mut edited = lines.clone();
    let at = line_of(&lines, 10);
    edited[at] = edited[at].replacen("\"time_ns\":1", "\"time_ns\":2", 1);
    assert_ne!(edited[at], lines[at]);
    let (ok, out) = verify(&world, &tampered(&scratch, "edited", &edited), &key, &[]);
    assert!(!ok && out.contains("entry 10 was altered"), "{out}");

    // Edited with its leaf hash rewritten to match: the signed checkpoint names the span.
    let mut rehashed = edited.clone();
    let parsed: Value = serde_json::from_str(&rehashed[at]).unwrap();
    let entry_text = {
        let start = rehashed[at].find("\"entry\":").unwrap() + "\"entry\":".len();
        rehashed[at][start..rehashed[at].len() - 1].to_string()
    };
    let leaf = obol_core::audit::hex(&obol_core::merkle::leaf_hash(entry_text.as_bytes()));
    rehashed[at] = rehashed[at].replacen(parsed["leaf"].as_str().unwrap(), &leaf, 1);
    let (ok, out) = verify(&world, &tampered(&scratch, "rehashed", &rehashed), &key, &[]);
    assert!(!ok && out.contains("entries 0 to 255 were altered"), "{out}");
    assert!(!out.contains("entry 10 was altered"), "the leaf matches its bytes now: {out}");

    // Deleted: entry 20's line.
    let mut deleted = lines.clone();
    deleted.remove(line_of(&lines, 20));
    let (ok, out) = verify(&world, &tampered(&scratch, "deleted", &deleted), &key, &[]);
    assert!(!ok && out.contains("entries 20 to 20 are missing"), "{out}");

    // Reordered: entries 30 and 31 swapped.
    let mut reordered = lines.clone();
    reordered.swap(line_of(&lines, 30), line_of(&lines, 31));
    let (ok, out) = verify(&world, &tampered(&scratch, "reordered", &reordered), &key, &[]);
    assert!(!ok && out.contains("entry 30 repeats or is out of order"), "{out}");

    // Reordered and renumbered, leaf hashes carried along: the entries name their records.
    let mut renumbered = lines.clone();
    let (a, b) = (line_of(&lines, 30), line_of(&lines, 31));
    renumbered[a] = lines[b].replacen("{\"index\":31,", "{\"index\":30,", 1);
    renumbered[b] = lines[a].replacen("{\"index\":30,", "{\"index\":31,", 1);
    let (ok, out) = verify(&world, &tampered(&scratch, "renumbered", &renumbered), &key, &[]);
    assert!(!ok && out.contains("entry 30 holds record 32's entry"), "{out}");

    // Truncated: the last entries and the final checkpoint cut off.
    let truncated = lines[..lines.len() - 6].to_vec();
    let (ok, out) = verify(&world, &tampered(&scratch, "truncated", &truncated), &key, &[]);
    assert!(!ok && out.contains("truncated"), "{out}");

    // Inserted: entry 40 twice, and a line of someone's own.
    let mut inserted = lines.clone();
    let at = line_of(&lines, 40);
    inserted.insert(at + 1, lines[at].clone());
    inserted.insert(at + 2, "{\"note\":\"nothing to see\"}".to_string());
    let (ok, out) = verify(&world, &tampered(&scratch, "inserted", &inserted), &key, &[]);
    assert!(!ok && out.contains("entry 40 repeats or is out of order"), "{out}");
    assert!(out.contains("neither an entry nor a checkpoint"), "{out}");

    // Another key: nothing in the file is signed by it.
    let other = obol_core::audit::verifier_key(
        &key.split('+').next().unwrap().to_string(),
        &ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key(),
    );
    let (ok, out) = verify(&world, &export, &other, &[]);
    assert!(!ok && out.contains("checkpoint refused"), "{out}");

    // A checkpoint saved earlier from the same history agrees.
    let (ok, saved, stderr) = obol(&world, &["audit", "checkpoint", "--size", "100"]);
    assert!(ok, "{stderr}");
    let saved_path = scratch.join("saved-100.txt");
    std::fs::write(&saved_path, &saved).unwrap();
    let (ok, out) = verify(&world, &export, &key, &[&saved_path]);
    assert!(ok, "{out}");

    // A fork: the same key signing another history of the same log (a second store under the
    // same instance id and audit key).
    let instance = world.network_id.strip_prefix("obol:").unwrap().to_string();
    let fork_dir = scratch.join("fork");
    let audit_key_file = world.data_dir().join("audit.key");
    let fork = support::launch([
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        fork_dir.to_str().unwrap(),
        "--instance-id",
        &instance,
        "--audit-key-file",
        audit_key_file.to_str().unwrap(),
    ]);
    let fork_api = support::Api::new(&fork.base);
    fork_api.ready().await;
    let fork_key = fork.key.clone().unwrap();
    let mut child = fork.child;
    for id in 0..3u64 {
        let body = json!({"id": (9_000 + id).to_string(), "asset_code": "EUR", "asset_scale": 2});
        let (status, answer) = fork_api.post(&fork_key, "/v1/accounts", body, None).await;
        assert_eq!(status, 201, "{answer}");
    }
    let response = fork_api
        .http
        .get(format!("{}/v1/audit/checkpoint?size=4", fork_api.base))
        .bearer_auth(&fork_key)
        .send()
        .await
        .unwrap();
    let forked_note = response.text().await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(forked_note.starts_with(&format!("obol/{instance}/audit\n4\n")), "{forked_note}");
    let forked = scratch.join("forked.txt");
    std::fs::write(&forked, &forked_note).unwrap();
    let (ok, out) = verify(&world, &export, &key, &[&forked]);
    assert!(!ok && out.contains("another history of size 4 (a fork)"), "{out}");
}

/// A checkpoint note's size and root.
fn head(note: &str) -> (u64, [u8; 32]) {
    let mut lines = note.lines();
    let _origin = lines.next();
    let size = lines.next().unwrap().parse().unwrap();
    let root = Base64::decode_vec(lines.next().unwrap()).unwrap().try_into().unwrap();
    (size, root)
}

fn hashes(value: &Value) -> Vec<[u8; 32]> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|h| Base64::decode_vec(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect()
}

async fn text(world: &Parties, path: &str) -> String {
    let response =
        world.api.http.get(format!("{}{path}", world.api.base)).bearer_auth(&world.operator).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_and_checkpoints_stay_valid_across_kill_9() {
    let mut world = Parties::start("audit-kill", 2, FUNDS, None).await;
    for id in 0..20u64 {
        let (status, body) = world.api.post(&world.holder, "/v1/transfers", transfer(1_000 + id), None).await;
        assert_eq!(status, 201, "{body}");
    }
    let before = text(&world, "/v1/audit/checkpoint").await;
    let (size_before, root_before) = head(&before);
    let (status, proof) =
        world.api.get(&world.operator, &format!("/v1/audit/entries/5/proof?size={size_before}")).await;
    assert_eq!(status, 200, "{proof}");
    let leaf: [u8; 32] = {
        let hex = proof["leaf_hash"].as_str().unwrap();
        (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect::<Vec<_>>().try_into().unwrap()
    };
    assert!(obol_core::merkle::verify_inclusion(&leaf, 5, size_before, &hashes(&proof["path"]), &root_before));

    // A burst in flight when the server is SIGKILLed: some transfers are acknowledged, the rest
    // never were.
    let mut burst = Vec::new();
    for id in 0..40u64 {
        let api = support::Api::new(&world.api.base);
        let key = world.holder.clone();
        burst.push(tokio::spawn(async move { api.post(&key, "/v1/transfers", transfer(5_000 + id), None).await }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    world.kill_and_restart().await;
    let mut acknowledged = Vec::new();
    for (id, task) in burst.into_iter().enumerate() {
        if let Ok((201, _)) = task.await {
            acknowledged.push(5_000 + id as u64);
        }
    }
    for id in 0..5u64 {
        let (status, body) = world.api.post(&world.holder, "/v1/transfers", transfer(9_000 + id), None).await;
        assert_eq!(status, 201, "{body}");
    }

    // The same size signs to the very same note: same tree, same key.
    assert_eq!(text(&world, &format!("/v1/audit/checkpoint?size={size_before}")).await, before);
    let after = text(&world, "/v1/audit/checkpoint").await;
    let (size_after, root_after) = head(&after);
    assert!(size_after > size_before);
    let (status, consistency) =
        world.api.get(&world.operator, &format!("/v1/audit/consistency?from={size_before}&to={size_after}")).await;
    assert_eq!(status, 200, "{consistency}");
    assert!(obol_core::merkle::verify_consistency(
        size_before,
        size_after,
        &root_before,
        &root_after,
        &hashes(&consistency["proof"])
    ));
    // The old proof still proves entry 5 under the old checkpoint; a new one under the new.
    let (_, again) = world.api.get(&world.operator, &format!("/v1/audit/entries/5/proof?size={size_before}")).await;
    assert_eq!(again["path"], proof["path"]);
    let (_, fresh) = world.api.get(&world.operator, "/v1/audit/entries/5/proof").await;
    assert!(obol_core::merkle::verify_inclusion(&leaf, 5, size_after, &hashes(&fresh["path"]), &root_after));
    // Every acknowledged transfer is in the ledger after the restart.
    for id in acknowledged {
        let (status, _) = world.api.get(&world.operator, &format!("/v1/transfers/{id}")).await;
        assert_eq!(status, 200, "acknowledged transfer {id} lost");
    }
    // Bad sizes are clear errors, not 5xx.
    let (status, problem) =
        world.api.get(&world.operator, &format!("/v1/audit/checkpoint?size={}", size_after + 1_000)).await;
    assert_eq!((status, support::code(&problem)), (404, "audit_not_found"), "{problem}");
    let (status, problem) = world.api.get(&world.operator, "/v1/audit/consistency?from=9&to=3").await;
    assert_eq!((status, support::code(&problem)), (400, "invalid_query"), "{problem}");
    let (status, problem) = world.api.get(&world.operator, "/v1/audit/entries/-1").await;
    assert_eq!(status, 400, "{problem}");
    let (status, problem) = world.api.get(&world.operator, "/v1/audit/export?from=0&to=5000").await;
    assert_eq!(status, 400, "{problem}");
}

/// Blocks payments over 50.00 and holds 10.01 to 20.00 for review (at scale 2).
const BLOCK_AND_HOLD_POLICY: &str = "name = \"audit-test\"\nversion = 1\neffective_from_s = 0\n\n\
[[rules]]\nid = \"too-much\"\naction = \"block\"\nowner = \"risk@test\"\nwhen = \"amount_minor > 5000\"\n\
reason_en = \"Too much.\"\nreason_ko = \"너무 많음.\"\n\n\
[[rules]]\nid = \"hold\"\naction = \"review\"\nowner = \"risk@test\"\n\
when = \"amount_minor > 1000 && amount_minor <= 2000\"\nreason_en = \"Held for a look.\"\nreason_ko = \"검토 보류.\"\n";

fn entries_of(page: &str) -> Vec<Value> {
    page.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|v| v.get("entry").cloned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_payment_and_a_review_decision_name_who_from_where_and_how_it_ended() {
    let world = Parties::start("audit-notes", 2, FUNDS, Some(("audit-test@1", BLOCK_AND_HOLD_POLICY))).await;
    let (status, blocked) = world.api.post(&world.holder, "/v1/transfers", transfer_of(70, "6000"), None).await;
    assert_eq!((status, support::code(&blocked)), (403, "risk_blocked"), "{blocked}");
    let (status, held) = world.api.post(&world.holder, "/v1/transfers", transfer_of(71, "1500"), None).await;
    assert_eq!((status, support::code(&held)), (202, "held_for_review"), "{held}");
    let review = held["review"]["id"].as_str().expect("a review id").to_string();
    world.decide(&review, "approve").await;
    let v2 = BLOCK_AND_HOLD_POLICY.replace("version = 1", "version = 2");
    let response = world
        .api
        .http
        .post(format!("{}/v1/risk/policy", world.api.base))
        .bearer_auth(&world.operator)
        .body(v2)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    let size = head(&text(&world, "/v1/audit/checkpoint").await).0;
    let entries = entries_of(&text(&world, &format!("/v1/audit/export?from=0&to={size}")).await);
    let events: Vec<&Value> = entries.iter().flat_map(|e| e["events"].as_array().unwrap().iter()).collect();
    let block = events.iter().find(|e| e["what"] == "risk.block").expect("the refusal is in the audit log");
    assert_eq!(block["id"], "transfer:70");
    assert_eq!(block["by"], "100");
    assert_eq!(block["role"], "holder");
    assert!(block["via"].as_str().unwrap().starts_with("key:"), "{block}");
    // The address is personal data: notes hold a keyed pseudonym of it, the same for every
    // request from it.
    let from = block["from"].as_str().unwrap();
    assert!(from.starts_with("ip:") && from.len() == 19 && !from.contains("127.0.0.1"), "{block}");
    let decided_from = events.iter().find(|e| e["what"] == "review.approve").unwrap()["from"].clone();
    assert_eq!(decided_from, block["from"], "one address, one pseudonym");
    assert_eq!(
        block["outcome"], "risk_blocked audit-test@1/too-much",
        "the note names the rule the payer is not shown: {block}"
    );
    assert!(blocked["risk"].get("rule").is_none_or(serde_json::Value::is_null), "{blocked}");
    let hold = events.iter().find(|e| e["what"] == "risk.review").expect("the hold is in the audit log");
    assert_eq!(
        (hold["id"].clone(), hold["outcome"].clone(), hold["by"].clone()),
        (json!(format!("review:{review}")), json!("held audit-test@1/hold"), json!("100")),
        "{hold}"
    );
    let decided = events.iter().find(|e| e["what"] == "review.approve").expect("the decision is in the audit log");
    assert_eq!(decided["id"], format!("review:{review}"));
    assert_eq!(decided["role"], "operator");
    let changed = events.iter().find(|e| e["what"] == "policy.change").expect("the policy change is in the audit log");
    assert_eq!((changed["id"].as_str(), changed["outcome"].as_str()), (Some("policy:audit-test@2"), Some("added")));
    assert_eq!(changed["role"], "operator");
    // Identity changes name who asked for them, in the same record as the change.
    let asked = entries
        .iter()
        .find(|entry| {
            let events = entry["events"].as_array().unwrap();
            events.iter().any(|e| e["what"] == "principal.create" && e["id"] == "100" && e["role"] == "operator")
                && events.iter().any(|e| e["what"] == "principal.create" && e["id"] == "100" && e.get("by").is_none())
        })
        .expect("the holder's creation names the operator who asked for it");
    assert!(asked["events"].as_array().unwrap().iter().any(|e| e["outcome"] == "asked"), "{asked}");
    // Nothing of the holder's name or the policy's wording is in any entry.
    let all = serde_json::to_string(&entries).unwrap();
    assert!(!all.contains("Alice") && !all.contains("Too much"), "{all}");
}

fn transfer_of(id: u64, amount: &str) -> Value {
    json!({"id": id.to_string(), "debit_account_id": "1", "credit_account_id": "2", "amount": amount,
        "asset_code": "USD", "asset_scale": 2})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r13_a_failed_export_keeps_the_file_it_would_have_replaced_and_saved_notes_survive_editors() {
    let world = Parties::start("audit-r13", 2, FUNDS, None).await;
    let scratch = world.data_dir().join("exports");
    std::fs::create_dir_all(&scratch).unwrap();
    let export = scratch.join("audit.jsonl");
    let (ok, _, stderr) = obol(&world, &["audit", "export", "--out", export.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let good = std::fs::read(&export).unwrap();
    // A holder may not export: the command fails and the good file is untouched.
    let output = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(["audit", "export", "--out", export.to_str().unwrap()])
        .env("OBOL_SERVER", &world.api.base)
        .env("OBOL_API_KEY", &world.holder)
        .env("OBOL_CONFIG", world.data_dir().join("no-profiles.toml"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert_eq!(std::fs::read(&export).unwrap(), good, "a failed export replaced the file");
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 1, "no partial file is left behind");

    // A checkpoint saved through an editor (CRLF, a trailing blank line) still verifies.
    let (_, key, _) = obol(&world, &["audit", "key"]);
    let (_, note, _) = obol(&world, &["audit", "checkpoint"]);
    let saved = scratch.join("saved.txt");
    std::fs::write(&saved, note.replace('\n', "\r\n") + "\r\n").unwrap();
    let (ok, out) = verify(&world, &export, key.trim(), &[&saved]);
    assert!(ok, "{out}");

    // An entry index at the end of u64 is named, not a crash; a line that is not UTF-8 too.
    let mut lines: Vec<Vec<u8>> = good.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    lines.insert(2, br#"{"index":18446744073709551615,"leaf":"00","entry":{"seq":0}}"#.to_vec());
    lines.insert(3, vec![0xff, 0xfe, b'{']);
    let damaged = scratch.join("damaged.jsonl");
    std::fs::write(&damaged, lines.join(&b'\n')).unwrap();
    let (ok, out) = verify(&world, &damaged, key.trim(), &[]);
    assert!(!ok && out.contains("is past any log") && out.contains("not UTF-8"), "{out}");

    // A consistency proof from beyond the log is "not found", as a checkpoint of that size is.
    let (status, problem) = world.api.get(&world.operator, "/v1/audit/consistency?from=100000").await;
    assert_eq!((status, support::code(&problem)), (404, "audit_not_found"), "{problem}");
}

/// Runs `obol serve` on `data` until it listens or exits; answers whether it listened and what
/// it printed, and leaves no server running.
fn serve_once(data: &Path, more: &[&str]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_obol"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()])
        .args(more)
        .env("OBOL_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    let mut listened = false;
    for line in std::io::BufRead::lines(stdout) {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if line.contains("listening on ") {
            listened = true;
            break;
        }
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    printed.push_str(&String::from_utf8_lossy(&output.stderr));
    (listened, printed)
}

#[test]
fn r13_a_lost_or_foreign_audit_key_refuses_to_start_until_told_to_sign_with_a_new_one() {
    let dir = std::env::temp_dir().join(format!("obol-audit-key-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    let (listened, printed) = serve_once(&data, &[]);
    assert!(listened, "{printed}");
    let key_file = data.join("audit.key");
    let original = std::fs::read(&key_file).unwrap();
    // Lost: refused, naming the way out; nothing is created in its place.
    std::fs::remove_file(&key_file).unwrap();
    let (listened, printed) = serve_once(&data, &[]);
    assert!(!listened && printed.contains("audit key") && printed.contains("--new-audit-key"), "{printed}");
    assert!(!key_file.exists());
    // Another key: refused as well.
    std::fs::write(&key_file, [9u8; 32]).unwrap();
    let (listened, printed) = serve_once(&data, &[]);
    assert!(!listened && printed.contains("is not the key this store's checkpoints were signed with"), "{printed}");
    // Restored: starts.
    std::fs::write(&key_file, &original).unwrap();
    let (listened, printed) = serve_once(&data, &[]);
    assert!(listened, "{printed}");
    // Told to: starts with the new key, which is the remembered one from then on.
    std::fs::write(&key_file, [9u8; 32]).unwrap();
    let (listened, printed) = serve_once(&data, &["--new-audit-key"]);
    assert!(listened, "{printed}");
    let (listened, printed) = serve_once(&data, &[]);
    assert!(listened, "{printed}");
    let _ = std::fs::remove_dir_all(&dir);
}

//! Goal: the risk policy of a running `obol serve` changes without a restart when a file in its
//! policy directory changes; a broken file is refused, recorded and changes nothing; held requests
//! and the engine's state survive a restart, and an analyst works the queue from the CLI.
//! Method: the real binary on a scratch data directory with `--policy-dir`; bundles are written
//! into the directory while payments arrive over HTTP; readiness is polled through the API (no
//! fixed sleeps); the server is stopped with SIGTERM and started again on the same directory. The
//! holder makes at most four payments a minute, below the shipped velocity rule.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(&self, key: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn op(&self, key: &str, path: &str, body: Value) -> Value {
        let (status, value) = self.call(key, reqwest::Method::POST, path, Some(body)).await;
        assert!((200..300).contains(&status), "{path}: {status} {value}");
        value
    }

    async fn pay(&self, holder: &str, id: u32, amount: &str) -> (u16, Value) {
        let body = json!({"id": id.to_string(), "debit_account_id": "1", "credit_account_id": "2", "amount": amount, "asset_code": "USD", "asset_scale": 2});
        self.call(holder, reqwest::Method::POST, "/v1/transfers", Some(body)).await
    }

    /// Polls `GET path` until `ready` holds (at most 10 s).
    async fn until(&self, key: &str, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let (_, value) = self.call(key, reqwest::Method::GET, path, None).await;
            if ready(&value) {
                return value;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{path} never became ready: {value}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn bundle(version: u32, when: &str) -> String {
    format!(
        "name = \"limits\"\nversion = {version}\neffective_from_s = 0\n\n[[rules]]\nid = \"big\"\naction = \"block\"\nowner = \"risk@test\"\nwhen = \"{when}\"\nreason_en = \"Too big.\"\nreason_ko = \"너무 큽니다.\"\n\n[[rules]]\nid = \"hold\"\naction = \"review\"\nowner = \"risk@test\"\nwhen = \"amount_minor > 1000 && amount_minor <= 2000\"\nreason_en = \"Held.\"\nreason_ko = \"보류.\"\n"
    )
}

fn launch(data: &Path, policy: &Path) -> support::Launched {
    support::launch([
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--policy-dir".as_ref(),
        policy.as_os_str(),
    ])
}

fn stop(mut launched: support::Launched) {
    Command::new("kill").args(["-TERM", &launched.child.id().to_string()]).status().unwrap();
    launched.child.wait().unwrap();
}

fn obol(base: &str, key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(args)
        .env("OBOL_SERVER", base)
        .env("OBOL_CONFIG", "/nonexistent/obol-config.toml")
        .env("OBOL_API_KEY", key)
        .output()
        .unwrap()
}

fn has_change(changes: &Value, what: &str, bundle: &str) -> bool {
    changes.as_array().is_some_and(|all| all.iter().any(|c| c["what"] == what && c["bundle"] == bundle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_policy_directory_reloads_live_and_held_requests_survive_a_restart() {
    let dir: PathBuf = std::env::temp_dir().join(format!("obol-risk-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (data, policy) = (dir.join("data"), dir.join("policy"));
    std::fs::create_dir_all(&policy).unwrap();
    let launched = launch(&data, &policy);
    let operator = launched.key.clone().expect("a first start prints the operator key");
    let client = Client { http: obol_client::http_client(None).unwrap(), base: launched.base.clone() };
    client.op(&operator, "/v1/principals", json!({"id": "100", "role": "holder", "name": "Alice"})).await;
    let holder = client.op(&operator, "/v1/principals/100/keys", json!({})).await["key"].as_str().unwrap().to_string();
    client.op(&operator, "/v1/accounts", json!({"id": "9", "asset_code": "USD", "asset_scale": 2})).await;
    client
        .op(&operator, "/v1/accounts", json!({"id": "1", "asset_code": "USD", "asset_scale": 2, "owner_id": "100"}))
        .await;
    client.op(&operator, "/v1/accounts", json!({"id": "2", "asset_code": "USD", "asset_scale": 2})).await;
    let fund = json!({"id": "1", "debit_account_id": "9", "credit_account_id": "1", "amount": "100000", "asset_code": "USD", "asset_scale": 2});
    client.op(&operator, "/v1/transfers", fund).await;
    assert_eq!(client.pay(&holder, 10, "4000").await.0, 201, "no bundle of ours yet");

    let file = policy.join("limits.toml");
    std::fs::write(&file, bundle(1, "amount_minor > 3000")).unwrap();
    client.until(&operator, "/v1/risk/policy/changes", |c| has_change(c, "added", "limits@1")).await;
    let (status, problem) = client.pay(&holder, 11, "4000").await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("risk_blocked")), "the file is live without a restart");

    std::fs::write(&file, bundle(2, "amount_minor >")).unwrap();
    let changes = client.until(&operator, "/v1/risk/policy/changes", |c| has_change(c, "refused", "limits@2")).await;
    let refused = changes.as_array().unwrap().iter().find(|c| c["what"] == "refused").unwrap();
    assert_eq!(refused["who"], format!("file:{}", file.display()));
    assert!(refused["error"].as_str().unwrap().contains("does not compile"), "{refused}");
    let (_, live) = client.call(&operator, reqwest::Method::GET, "/v1/risk/policy", None).await;
    let limits = live["in_force"].as_array().unwrap().iter().find(|b| b["name"] == "limits").unwrap().clone();
    assert_eq!(limits["version"], 1, "the broken file changed nothing: {live}");

    std::fs::write(&file, bundle(2, "amount_minor > 5000")).unwrap();
    client.until(&operator, "/v1/risk/policy/changes", |c| has_change(c, "added", "limits@2")).await;
    assert_eq!(client.pay(&holder, 13, "4000").await.0, 201, "version 2 decides now");
    let (status, held) = client.pay(&holder, 14, "1500").await;
    assert_eq!((status, held["code"].as_str()), (202, Some("held_for_review")), "{held}");
    let review = held["review"]["id"].as_str().unwrap().to_string();

    let listed = obol(&launched.base, &operator, &["risk", "policy", "changes"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    assert!(text.contains("refused limits@2") && text.contains("added limits@2"), "{text}");
    assert!(
        text.contains("-when = \"amount_minor > 3000\"") && text.contains("+when = \"amount_minor > 5000\""),
        "{text}"
    );

    stop(launched);
    let launched = launch(&data, &policy);
    let client = Client { http: obol_client::http_client(None).unwrap(), base: launched.base.clone() };
    let queue = obol(&launched.base, &operator, &["risk", "reviews"]);
    let text = String::from_utf8_lossy(&queue.stdout);
    assert!(queue.status.success() && text.contains(&review) && text.contains("limits@2/hold"), "{text}");
    let decided = obol(&launched.base, &operator, &["risk", "decide", &review, "approve", "--note", "known customer"]);
    let text = String::from_utf8_lossy(&decided.stdout);
    assert!(
        decided.status.success() && text.contains("approved: ok"),
        "{text} {}",
        String::from_utf8_lossy(&decided.stderr)
    );
    let (status, transfer) = client.call(&operator, reqwest::Method::GET, "/v1/transfers/14", None).await;
    assert_eq!((status, transfer["amount"].as_str()), (200, Some("1500")), "approval ran the held transfer");
    let (_, live) = client.call(&operator, reqwest::Method::GET, "/v1/risk/policy", None).await;
    let limits = live["in_force"].as_array().unwrap().iter().find(|b| b["name"] == "limits").unwrap().clone();
    assert_eq!(limits["version"], 2, "version 2 is live after the restart: {live}");
    let (status, problem) = client.pay(&holder, 15, "6000").await;
    assert_eq!(
        (status, problem["risk"]["reason_en"].as_str()),
        (403, Some("Too big.")),
        "the payer is told why in words: {problem}"
    );
    assert!(problem["risk"].get("rule").is_none(), "and not which rule: {problem}");
    let labels = dir.join("labels.csv");
    let written = obol(&launched.base, &operator, &["risk", "labels", "--out", labels.to_str().unwrap()]);
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    assert_eq!(std::fs::read_to_string(&labels).unwrap().lines().count(), 2, "a header and the approved review");
    stop(launched);
    let _ = std::fs::remove_dir_all(&dir);
}

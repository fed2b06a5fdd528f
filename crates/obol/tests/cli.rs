//! Goal: the command-line client does what README.md shows, and explains its failures.
//! Method: start the real `obol serve` on a scratch directory and a free port, then run the
//! `obol` client commands against it as a user would, reading their stdout, stderr and status.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

struct Server {
    child: Child,
    url: String,
    key: String,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn serve() -> Server {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("obol-cli-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("OBOL_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn obol serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut key = String::new();
    let url = loop {
        let line = lines.next().expect("server exited").expect("read");
        if line.trim().starts_with("obol_live_") {
            key = line.trim().to_string();
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().expect("url").to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    assert!(key.starts_with("obol_live_"));
    Server { child, url, key, dir }
}

fn obol(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(args)
        .env("OBOL_URL", &server.url)
        .env("OBOL_API_KEY", &server.key)
        .output()
        .expect("run obol")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("the client prints JSON")
}

#[test]
fn the_readme_walkthrough_works_from_the_command_line() {
    let server = serve();
    let wallet = json(&obol(
        &server,
        &["account", "create", "--id", "1", "--asset", "EUR/2", "--flags", "debits_must_not_exceed_credits,history"],
    ));
    assert_eq!(wallet["flags"], serde_json::json!(["debits_must_not_exceed_credits", "history"]));
    json(&obol(&server, &["account", "create", "--id", "2", "--asset", "EUR"]));
    let funded =
        json(&obol(&server, &["transfer", "--from", "2", "--to", "1", "--amount", "1000", "--asset", "EUR/2"]));
    assert_eq!(funded["amount"], "1000");
    let pending = json(&obol(
        &server,
        &[
            "transfer",
            "--id",
            "77",
            "--from",
            "1",
            "--to",
            "2",
            "--amount",
            "300",
            "--asset",
            "EUR/2",
            "--pending",
            "--timeout-s",
            "60",
        ],
    ));
    assert_eq!(pending["pending_status"], "pending");
    let posted = json(&obol(&server, &["transfer", "--post", "77", "--amount", "120"]));
    assert_eq!(posted["amount"], "120");
    let balance = json(&obol(&server, &["balance", "1"]));
    assert_eq!(balance["available"], "880");
    let shown = json(&obol(&server, &["account", "show", "1"]));
    assert_eq!(shown["debits_posted"], "120");
}

#[test]
fn client_failures_name_the_problem_and_exit_nonzero() {
    let server = serve();
    json(&obol(
        &server,
        &["account", "create", "--id", "1", "--asset", "USD/2", "--flags", "debits_must_not_exceed_credits"],
    ));
    json(&obol(&server, &["account", "create", "--id", "2", "--asset", "USD/2"]));
    let cases: &[(&[&str], &str)] = &[
        (&["transfer", "--from", "1", "--to", "2", "--amount", "5", "--asset", "USD/2"], "exceeds_credits (HTTP 422)"),
        (&["transfer", "--from", "1", "--to", "9", "--amount", "5", "--asset", "USD/2"], "credit_account_not_found"),
        (&["transfer", "--from", "1", "--to", "2", "--amount", "1e3", "--asset", "USD/2"], "invalid_amount (HTTP 400)"),
        (&["transfer", "--from", "1", "--to", "2", "--amount", "5"], "needs --asset"),
        (&["account", "create", "--id", "3", "--asset", "XXX"], "not an ISO 4217 currency code"),
        (&["account", "show", "42"], "account_not_found (HTTP 404)"),
    ];
    for (args, expected) in cases {
        let output = obol(&server, args);
        assert!(!output.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let no_key = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(["balance", "1"])
        .env("OBOL_URL", &server.url)
        .env_remove("OBOL_API_KEY")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("no API key"));
    let wrong_key = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(["balance", "1"])
        .env("OBOL_URL", &server.url)
        .env("OBOL_API_KEY", "obol_live_nope_nope")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&wrong_key.stderr).contains("unauthorized (HTTP 401)"));
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let server = serve();
    let output = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&server.dir)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("in use by another obol process"));
}

#[test]
fn help_teaches_each_command() {
    for (args, expected) in [
        (&["--help"][..], "obol serve"),
        (&["serve", "--help"][..], "--database-url"),
        (&["transfer", "--help"][..], "--pending"),
        (&["bench", "ledger", "--help"][..], "naive"),
        (&["account", "create", "--help"][..], "Example: obol account create"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_obol")).args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains(expected), "{args:?} help lacks {expected:?}:\n{text}");
    }
}

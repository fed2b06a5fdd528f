//! Goal: the command-line client does what README.md shows, and explains its failures.
//! Method: start the real `obol serve` on a scratch directory and a free port, then run the
//! `obol` client commands against it as a user would, reading their stdout, stderr and status.

use std::process::{Child, Command, Output};

mod support;

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
    let launched = support::launch([
        std::ffi::OsStr::new("--listen"),
        "127.0.0.1:0".as_ref(),
        "--data-dir".as_ref(),
        dir.as_os_str(),
    ]);
    let (child, url, key) = (launched.child, launched.base, launched.key.unwrap_or_default());
    assert!(key.starts_with("obol_live_"));
    Server { child, url, key, dir }
}

fn obol(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(args)
        .env("OBOL_SERVER", &server.url)
        .env("OBOL_CONFIG", server.dir.join("no-config.toml"))
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
        (&["account", "create", "--id", "3", "--asset", "XYZ"], "not an ISO 4217 code"),
        (&["account", "create", "--id", "3", "--asset", "XAU"], "XAU has no minor unit in ISO 4217"),
        (&["account", "show", "42"], "account_not_found (HTTP 404)"),
        (&["account", "show", "4x2"], "\"4x2\" is not digits only"),
    ];
    for (args, expected) in cases {
        let output = obol(&server, args);
        assert!(!output.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    // ISO 4217's codes without a minor unit (gold here) count in the scale the operator names.
    let gold = json(&obol(&server, &["account", "create", "--id", "4", "--asset", "XAU/6"]));
    assert_eq!((gold["asset_code"].as_str(), gold["asset_scale"].as_u64()), (Some("XAU"), Some(6)), "{gold}");
    let no_key = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(["balance", "1"])
        .env("OBOL_SERVER", &server.url)
        .env("OBOL_CONFIG", server.dir.join("no-config.toml"))
        .env_remove("OBOL_API_KEY")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("no API key"));
    let wrong_key = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(["balance", "1"])
        .env("OBOL_SERVER", &server.url)
        .env("OBOL_CONFIG", server.dir.join("no-config.toml"))
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

/// Goal: `obol key reset-operator` replaces the operator's key of the store it is pointed at, and
/// in a directory without a store it changes nothing (no empty store is created there).
#[test]
fn reset_operator_replaces_the_key_and_refuses_a_directory_without_a_store() {
    let nowhere = std::env::temp_dir().join(format!("obol-no-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&nowhere);
    let refused = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(["key", "reset-operator", "--data-dir"])
        .arg(&nowhere)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no obol store in"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!nowhere.exists(), "nothing is created in the wrong directory");

    let mut server = serve();
    let _ = server.child.kill();
    let _ = server.child.wait();
    let reset = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(["key", "reset-operator", "--data-dir"])
        .arg(&server.dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&reset.stdout);
    assert!(reset.status.success(), "{}", String::from_utf8_lossy(&reset.stderr));
    let new_key = stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("obol_live_"))
        .expect("the new key is printed")
        .to_string();
    assert_ne!(new_key, server.key);
    let relaunched = support::launch([
        std::ffi::OsStr::new("--listen"),
        "127.0.0.1:0".as_ref(),
        "--data-dir".as_ref(),
        server.dir.as_os_str(),
    ]);
    server.child = relaunched.child;
    let me = |key: &str| {
        Command::new(env!("CARGO_BIN_EXE_obol"))
            .args(["balance", "1"])
            .env("OBOL_SERVER", &relaunched.base)
            .env("OBOL_CONFIG", server.dir.join("no-config.toml"))
            .env("OBOL_API_KEY", key)
            .output()
            .unwrap()
    };
    assert!(String::from_utf8_lossy(&me(&server.key).stderr).contains("unauthorized (HTTP 401)"), "the old key stops");
    assert!(String::from_utf8_lossy(&me(&new_key).stderr).contains("account_not_found"), "the new key works");
}

#[test]
fn help_teaches_each_command() {
    for (args, expected) in [
        (&["--help"][..], "obol serve"),
        (&["serve", "--help"][..], "--database-url"),
        (&["transfer", "--help"][..], "--pending"),
        (&["bench", "ledger", "--help"][..], "naive"),
        (&["account", "create", "--help"][..], "Example: obol account create"),
        (&["risk", "--help"][..], "reviews"),
        (&["risk", "policy", "submit", "--help"][..], "Example: obol risk policy submit"),
        (&["serve", "--help"][..], "--policy-dir"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_obol")).args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains(expected), "{args:?} help lacks {expected:?}:\n{text}");
    }
}

fn obol_as(server: &Server, key: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(args)
        .env("OBOL_SERVER", &server.url)
        .env("OBOL_CONFIG", server.dir.join("no-config.toml"))
        .env("OBOL_API_KEY", key)
        .output()
        .expect("run obol")
}

#[test]
fn identity_commands_manage_principals_keys_devices_and_mfa() {
    let server = serve();
    let holder = json(&obol(&server, &["principal", "create", "--id", "100", "--role", "holder", "--name", "Alice"]));
    assert_eq!(holder["role"], "holder");
    let key = json(&obol(&server, &["key", "create", "--principal", "100", "--scopes", "read,pay,manage"]));
    let holder_key = key["key"].as_str().unwrap().to_string();
    let listed = json(&obol(&server, &["key", "list", "--principal", "100"]));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(holder_key.rsplit('_').next().unwrap()), "listings never show secrets");

    let dir = std::env::temp_dir().join(format!("obol-cli-device-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let private = dir.join("device.key");
    let jwk = json(&obol(&server, &["device", "keygen", "--out", private.to_str().unwrap(), "--kid", "meter-7"]));
    assert_eq!(std::fs::read_to_string(&private).unwrap().len(), 64);
    let device = json(&obol_as(
        &server,
        &holder_key,
        &[
            "device",
            "register",
            "--principal",
            "100",
            "--id",
            "7",
            "--jwk",
            &jwk.to_string(),
            "--asset",
            "USD/2",
            "--per-payment",
            "500",
        ],
    ));
    assert_eq!(device["kid"], "meter-7");
    assert_eq!(device["limits"]["per_payment"], "500");
    assert_eq!(json(&obol_as(&server, &holder_key, &["device", "suspend", "7"]))["status"], "suspended");
    assert_eq!(
        json(&obol_as(&server, &holder_key, &["device", "list", "--principal", "100"]))["items"][0]["status"],
        "suspended"
    );

    let qr = dir.join("qr.svg");
    let enrolled =
        obol_as(&server, &holder_key, &["mfa", "enroll", "--principal", "100", "--qr-out", qr.to_str().unwrap()]);
    assert!(enrolled.status.success(), "{}", String::from_utf8_lossy(&enrolled.stderr));
    assert!(std::fs::read_to_string(&qr).unwrap().starts_with("<svg"));
    let text = String::from_utf8_lossy(&enrolled.stdout).to_string();
    let secret = text.lines().find_map(|l| l.trim().strip_prefix("secret: ")).unwrap().to_string();
    let seed = totp_rs::Secret::try_from_base32(&secret).unwrap().as_ref().to_vec();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let code = totp_rs::Builder::new().with_secret(seed).build_noncompliant().generate(now).to_string();
    let confirmed = obol_as(&server, &holder_key, &["mfa", "confirm", "--principal", "100", "--code", &code]);
    assert!(confirmed.status.success(), "{}", String::from_utf8_lossy(&confirmed.stderr));
    assert_eq!(
        String::from_utf8_lossy(&confirmed.stdout).lines().filter(|l| l.trim().len() == 23).count(),
        10,
        "ten recovery codes"
    );
    // Changing step-up once a factor exists needs that factor: a fresh code (the next step, as
    // the confirmation used this one) approves the change.
    let without = obol_as(&server, &holder_key, &["mfa", "step-up", "--principal", "100", "--no-new-payee"]);
    assert!(
        String::from_utf8_lossy(&without.stderr).contains("--approval"),
        "{}",
        String::from_utf8_lossy(&without.stderr)
    );
    let next_code = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(&secret).unwrap().as_ref().to_vec())
        .build_noncompliant()
        .generate(now + 30)
        .to_string();
    let policy = json(&obol_as(
        &server,
        &holder_key,
        &[
            "mfa",
            "step-up",
            "--principal",
            "100",
            "--above",
            "3000",
            "--asset",
            "EUR/2",
            "--no-new-payee",
            "--code",
            &next_code,
        ],
    ));
    assert_eq!(policy["new_payee"], false);

    // A payment above the threshold waits for a second factor: the CLI shows the challenge
    // (why, what, which factors, until when) and exits 4; `obol approve` and `--approval`
    // finish it, and `--totp` does both in one go.
    let recovery: Vec<String> = String::from_utf8_lossy(&confirmed.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| l.len() == 23)
        .map(str::to_string)
        .collect();
    for (id, owner) in [("501", Some("100")), ("502", None), ("509", None)] {
        let mut args = vec!["account", "create", "--id", id, "--asset", "EUR/2"];
        if let Some(owner) = owner {
            args.extend(["--owner", owner, "--flags", "debits_must_not_exceed_credits"]);
        }
        json(&obol(&server, &args));
    }
    json(&obol(&server, &["transfer", "--from", "509", "--to", "501", "--amount", "100000", "--asset", "EUR/2"]));
    let pay = ["transfer", "--from", "501", "--to", "502", "--amount", "5000", "--asset", "EUR/2", "--id", "7001"];
    let held = obol_as(&server, &holder_key, &pay);
    let said = String::from_utf8_lossy(&held.stderr).to_string();
    assert_eq!(held.status.code(), Some(4), "{said}");
    for expected in ["challenge: ", "amount_over_threshold", "50.00 EUR", "502", "totp, recovery_code", "obol approve"]
    {
        assert!(said.contains(expected), "the challenge lacks {expected:?}:\n{said}");
    }
    let challenge = said.lines().find_map(|l| l.trim().strip_prefix("challenge: ")).unwrap().trim().to_string();
    let approved = obol_as(&server, &holder_key, &["approve", &challenge, "--recovery-code", &recovery[0]]);
    assert!(approved.status.success(), "{}", String::from_utf8_lossy(&approved.stderr));
    let mut resent = pay.to_vec();
    resent.extend(["--approval", &challenge]);
    let paid = json(&obol_as(&server, &holder_key, &resent));
    assert_eq!(paid["id"], "7001");
    let pay_again =
        ["transfer", "--from", "501", "--to", "502", "--amount", "6000", "--asset", "EUR/2", "--id", "7002"];
    let mut with_totp = pay_again.to_vec();
    with_totp.extend(["--totp", &recovery[1]]);
    assert_eq!(json(&obol_as(&server, &holder_key, &with_totp))["id"], "7002");
    // Without --id the command draws one; the hint names it, and sending the command again with
    // it and the approval runs it (a new id would need a new approval).
    let no_id = ["transfer", "--from", "501", "--to", "502", "--amount", "7000", "--asset", "EUR/2"];
    let held = obol_as(&server, &holder_key, &no_id);
    let said = String::from_utf8_lossy(&held.stderr).to_string();
    assert_eq!(held.status.code(), Some(4), "{said}");
    let drawn = said.split("send it again with --id ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap();
    let challenge = said.lines().find_map(|l| l.trim().strip_prefix("challenge: ")).unwrap().trim().to_string();
    let approved = obol_as(&server, &holder_key, &["approve", &challenge, "--recovery-code", &recovery[2]]);
    assert!(approved.status.success(), "{}", String::from_utf8_lossy(&approved.stderr));
    let mut resent = no_id.to_vec();
    resent.extend(["--id", drawn, "--approval", &challenge]);
    assert_eq!(json(&obol_as(&server, &holder_key, &resent))["id"], drawn);
    let balance = json(&obol(&server, &["balance", "502"]));
    assert_eq!(balance["credits_posted"], "18000", "each payment ran once: {balance}");
    let rotated =
        json(&obol_as(&server, &holder_key, &["key", "rotate", key["key_id"].as_str().unwrap(), "--overlap-s", "0"]));
    assert!(rotated["key"].as_str().unwrap().starts_with("obol_live_"));
    let refused = obol_as(&server, &holder_key, &["key", "list", "--principal", "100"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unauthorized"), "the rotated-out key stopped");
    let activity = obol(&server, &["principal", "activity", "100"]);
    let activity = String::from_utf8_lossy(&activity.stdout).to_string();
    assert!(
        activity.contains("authenticator app was set up") && activity.contains("new device was registered"),
        "{activity}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The benchmarks BENCHMARKS.md reproduces still run (on small workloads here; their numbers are
/// measured by hand): a ledger rule that refuses what a benchmark sets up shows here, not on the
/// day someone measures.
#[test]
fn every_benchmark_runs_on_a_small_workload() {
    for args in [
        &["bench", "vouchers", "--vouchers", "64", "--ticks", "100", "--tabs", "1000", "--json"][..],
        &["bench", "auth", "--requests", "200", "--json"][..],
        &["bench", "risk", "--events", "2000", "--payers", "100", "--json"][..],
        &["bench", "ledger", "--skip-postgres", "--transfers", "8190", "--accounts", "100", "--json"][..],
        &["bench", "lists", "--transfers", "2000", "--requests", "5", "--json"][..],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_obol")).args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{args:?}: {}{stdout}", String::from_utf8_lossy(&output.stderr));
        let last = stdout.lines().last().unwrap_or_default();
        let result: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{args:?}: {e}: {last}"));
        assert!(result.as_object().is_some_and(|fields| !fields.is_empty()), "{args:?}: {result}");
    }
}

/// Goal: `obol bench http` runs with the load generator `scripts/test` provides (wrk, from
/// Debian), and reports paid and unpaid throughput of the same run.
#[test]
fn bench_http_runs_under_wrk() {
    if Command::new("wrk").arg("--version").output().is_err() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true needs wrk (scripts/test installs it)");
        eprintln!("SKIPPED: obol bench http (apt-get install wrk)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("obol-bench-http-test-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(["bench", "http", "--duration-s", "1", "--rounds", "1", "--connections", "8", "--rate-max", "60000"])
        .args(["--voucher-rate-max", "30000", "--json", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}{stdout}", String::from_utf8_lossy(&output.stderr));
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    for rate in ["unpaid_rps", "paid_rps", "paid_voucher_rps"] {
        assert!(result[rate].as_f64().is_some_and(|r| r > 0.0), "{rate}: {result}");
    }
    assert_eq!(
        (result["paid_refused"].as_u64(), result["paid_voucher_refused"].as_u64()),
        (Some(0), Some(0)),
        "{result}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Goal: `obol bench ledger` touches only schemas it created in the database it was pointed at.
/// Method: a schema of someone else's named as the bench's old fixed names were, a small bench
/// run against the test database, then the catalogue.
#[test]
fn bench_ledger_drops_only_the_schemas_it_created() {
    let url =
        std::env::var("OBOL_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sql = |statement: String| {
        let url = url.clone();
        runtime.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            client.simple_query(&statement).await
        })
    };
    let theirs = format!("obol_naive_theirs_{}", std::process::id());
    if let Err(error) = sql(format!(
        "DROP SCHEMA IF EXISTS {theirs} CASCADE; CREATE SCHEMA {theirs}; CREATE TABLE {theirs}.kept (n INT)"
    )) {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true but PostgreSQL is unreachable: {error}");
        eprintln!("SKIPPED: bench ledger schema test ({error})");
        return;
    }
    let count_bench_schemas = || -> usize {
        let rows = sql(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'obol\\_bench\\_%' OR nspname LIKE 'obol\\_naive\\_%'"
                .into(),
        )
        .unwrap();
        rows.iter().filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))).count()
    };
    let before = count_bench_schemas();
    let output = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args([
            "bench",
            "ledger",
            "--transfers",
            "8190",
            "--accounts",
            "100",
            "--naive-seconds",
            "1",
            "--json",
            "--database-url",
            &url,
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let result: serde_json::Value =
        serde_json::from_slice(output.stdout.rsplit(|b| *b == b'\n').find(|l| !l.is_empty()).unwrap()).unwrap();
    assert!(result["naive_pg_uniform_tps"].as_f64().is_some_and(|tps| tps > 0.0), "{result}");
    assert_eq!(count_bench_schemas(), before, "the run dropped exactly what it created");
    let kept = sql(format!("SELECT count(*) FROM {theirs}.kept"));
    assert!(kept.is_ok(), "someone else's schema survives: {kept:?}");
    sql(format!("DROP SCHEMA {theirs} CASCADE")).unwrap();
}

//! Goal: `obol serve --demo` on a fresh data directory is a playground a newcomer can pay at
//! once: the `obol pay` command it prints works as printed, a payer's own limits refuse before
//! anything is escrowed, `--settle` closes the tab even when a request failed, and vouchers and
//! PayWord ticks made by hand (`obol voucher sign`, `obol payword ...`) pay a tab.
//! Method: run the real binary (server and client) over loopback with the risk engine on, as
//! the README shows it, and read balances and tabs back through the API.

use std::process::{Child, Command, Output};

mod support;

use serde_json::Value;

struct Demo {
    child: Child,
    base: String,
    key: String,
    dir: std::path::PathBuf,
    /// The `obol pay ...` line the demo printed, split into arguments (without `obol`).
    pay: Vec<String>,
    /// The dashboard keys it printed (the reader's, the merchant's).
    dashboard_keys: Vec<String>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `obol serve --demo` in a fresh directory (its cwd, so the data directory is the
/// default `./obol-data`) and reads its output until the playground is ready.
fn demo(name: &str) -> Demo {
    let dir = std::env::temp_dir().join(format!("obol-playground-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let support::Demo { child, base, key, pay, dashboard_keys } = support::launch_demo(&dir);
    Demo { child, base, key, dir, pay, dashboard_keys }
}

impl Demo {
    fn obol(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_obol"))
            .args(args)
            .current_dir(&self.dir)
            .env("OBOL_SERVER", &self.base)
            .env("OBOL_CONFIG", self.dir.join("no-config.toml"))
            .env("OBOL_API_KEY", &self.key)
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let output = self.obol(args);
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// The printed `obol pay` command with some flags replaced (or added).
    fn pay_with(&self, url_path: &str, changes: &[(&str, Option<&str>)]) -> Output {
        let mut args: Vec<String> = self.pay.clone();
        args[0] = format!("{}{url_path}", self.base);
        for (flag, value) in changes {
            if let Some(at) = args.iter().position(|a| a == flag) {
                let is_switch = args.get(at + 1).is_none_or(|next| next.starts_with("--"));
                args.drain(at..if is_switch { at + 1 } else { at + 2 });
            }
            args.push(flag.to_string());
            if let Some(value) = value {
                args.push(value.to_string());
            }
        }
        let mut full = vec!["pay".to_string()];
        full.extend(args);
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        self.obol(&full)
    }

    fn tabs_of_demo_payer(&self) -> Vec<Value> {
        self.json(&["tab", "list", "--payer", "402020", "--all", "--json"])["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

#[test]
fn the_printed_obol_pay_command_pays_the_demo_article_three_times_and_settles() {
    let demo = demo("printed");
    let mut args = vec!["pay"];
    args.extend(demo.pay.iter().map(String::as_str));
    let output = demo.obol(&args);
    let said = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{said}\n{}", String::from_utf8_lossy(&output.stderr));
    let receipts: Vec<Value> =
        said.lines().filter(|l| l.starts_with("{\"body\"")).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(receipts.len(), 3, "{said}");
    for (n, receipt) in receipts.iter().enumerate() {
        assert_eq!(receipt["status"], 200);
        assert_eq!(receipt["receipt"]["amount"], "400000");
        assert!(receipt["tab"].as_str().is_some(), "the tab is named: {receipt}");
        assert!(receipt["receipt"]["transaction"].as_str().unwrap().ends_with(&format!(":{}", 400_000 * (n + 1))));
    }
    let tabs = demo.tabs_of_demo_payer();
    assert_eq!(tabs.len(), 1);
    assert_eq!((tabs[0]["status"].as_str(), tabs[0]["cumulative"].as_str()), (Some("settled"), Some("1200000")));
    let merchant = demo.json(&["balance", "402010", "--json"]);
    let payer = demo.json(&["balance", "402020", "--json"]);
    assert_eq!(merchant["credits_posted"], "1200000");
    assert_eq!((payer["debits_posted"].as_str(), payer["debits_pending"].as_str()), (Some("1200000"), Some("0")));

    // The keys printed for the dashboard are the reader's and the merchant's: each reads its
    // own account and not the other's.
    assert_eq!(demo.dashboard_keys.len(), 2, "{:?}", demo.dashboard_keys);
    let balance_with = |key: &str, account: &str| {
        Command::new(env!("CARGO_BIN_EXE_obol"))
            .args(["balance", account, "--json"])
            .current_dir(&demo.dir)
            .env("OBOL_SERVER", &demo.base)
            .env("OBOL_CONFIG", demo.dir.join("no-config.toml"))
            .env("OBOL_API_KEY", key)
            .output()
            .unwrap()
            .status
            .success()
    };
    let (reader_key, merchant_key) = (&demo.dashboard_keys[0], &demo.dashboard_keys[1]);
    assert!(balance_with(reader_key, "402020") && !balance_with(reader_key, "402010"));
    assert!(balance_with(merchant_key, "402010") && !balance_with(merchant_key, "402020"));

    // The merchant sees its three priced routes and what the article earned; the reader, whose
    // account they do not pay, sees none.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let routes_for = |key: &str| runtime.block_on(support::Api::new(&demo.base).get(key, "/v1/x402/routes"));
    let (status, listed) = routes_for(merchant_key);
    assert_eq!(status, 200, "{listed}");
    let routes = listed["routes"].as_array().unwrap();
    let described: Vec<&str> = routes.iter().map(|r| r["description"].as_str().unwrap()).collect();
    assert_eq!(described, ["one article ($0.0004)", "one meter reading ($0.000001)", "one API call ($0.00005)"]);
    assert_eq!((routes[0]["requests_paid"].as_u64(), routes[0]["earned"].as_str()), (Some(3), Some("1200000")));
    assert_eq!(routes[0]["paths"][0]["path"], "/demo/article");
    assert_eq!((routes[1]["requests_paid"].as_u64(), routes[1]["earned"].as_str()), (Some(0), Some("0")));
    assert_eq!(routes_for(reader_key), (200, serde_json::json!({"routes": []})));
}

#[test]
fn a_payers_own_limit_refuses_before_anything_is_escrowed() {
    let demo = demo("limits");
    let refused = demo.pay_with("/demo/article", &[("--max-per-request", Some("100"))]);
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(said.contains("nothing was paid or escrowed") && said.contains("--max-per-request"), "{said}");
    assert!(demo.tabs_of_demo_payer().is_empty(), "no tab was opened for a refused payment");
    let payer = demo.json(&["balance", "402020", "--json"]);
    assert_eq!((payer["debits_posted"].as_str(), payer["debits_pending"].as_str()), (Some("0"), Some("0")));

    let too_big = demo.pay_with("/demo/article", &[("--max-per-tab", Some("1000"))]);
    assert_eq!(too_big.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&too_big.stderr).contains("nothing was escrowed"));
    assert!(demo.tabs_of_demo_payer().is_empty());
}

#[test]
fn settle_closes_the_tab_when_a_later_request_is_refused() {
    let demo = demo("settle");
    // Two articles fit today's limit, the third does not: the command fails, and the tab that
    // paid the two is settled anyway.
    let output = demo
        .pay_with("/demo/article", &[("--max-per-day", Some("800000")), ("--count", Some("3")), ("--settle", None)]);
    let said = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("request 3") && said.contains("daily"), "{said}");
    let tabs = demo.tabs_of_demo_payer();
    assert_eq!(tabs.len(), 1);
    assert_eq!((tabs[0]["status"].as_str(), tabs[0]["cumulative"].as_str()), (Some("settled"), Some("800000")));
    assert_eq!(demo.json(&["balance", "402010", "--json"])["credits_posted"], "800000");
    assert_eq!(demo.json(&["balance", "402020", "--json"])["debits_pending"], "0", "no escrow is left behind");
}

#[test]
fn vouchers_and_payword_ticks_made_by_hand_pay_a_tab() {
    let demo = demo("by-hand");
    let key_file = demo.dir.join("obol-data/demo/device.key");
    let key_file = key_file.to_str().unwrap();
    let open = |id: &str| {
        demo.json(&[
            "tab", "open", "--payer", "402020", "--payee", "402010", "--budget", "1000000", "--asset", "USD/9",
            "--device", "402021", "--id", id, "--json",
        ])
    };
    open("77");
    let sign = |cumulative: &str, seq: &str, submit: bool| {
        let mut args =
            vec!["voucher", "sign", "--key-file", key_file, "--tab", "77", "--payee", "402010", "--cumulative"];
        args.extend([cumulative, "--seq", seq, "--json"]);
        if submit {
            args.push("--submit");
        }
        demo.obol(&args)
    };
    let paid = sign("1500", "1", true);
    assert!(paid.status.success(), "{}", String::from_utf8_lossy(&paid.stderr));
    let paid: Value = serde_json::from_slice(&paid.stdout).unwrap();
    assert_eq!(paid["tab"]["cumulative"], "1500", "{paid}");
    let backwards = sign("1000", "2", true);
    assert_eq!(backwards.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&backwards.stderr).contains("voucher_not_increasing"));
    // Without --submit the body is printed, for any HTTP client to send.
    let printed = sign("2000", "2", false);
    let printed: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert!(printed["voucher"].as_str().is_some_and(|v| v.len() > 100), "{printed}");

    open("78");
    let chain = demo.dir.join("chain.secret");
    let chain = chain.to_str().unwrap();
    let made = demo.json(&["payword", "new", "--length", "50", "--out", chain]);
    assert_eq!(made["root"].as_str().map(str::len), Some(64));
    let again = demo.obol(&["payword", "new", "--length", "50", "--out", chain]);
    assert!(!again.status.success(), "a chain's secret is never overwritten");
    let committed = demo.json(&[
        "payword",
        "commit",
        "--chain",
        chain,
        "--key-file",
        key_file,
        "--tab",
        "78",
        "--payee",
        "402010",
        "--value-per-tick",
        "1000",
        "--submit",
        "--json",
    ]);
    assert_eq!(committed["payword_length"], 50);
    let ticked = demo.json(&["payword", "tick", "--chain", chain, "--index", "3", "--tab", "78", "--submit", "--json"]);
    assert_eq!(ticked["tab"]["cumulative"], "3000", "{ticked}");
    let past = demo.obol(&["payword", "tick", "--chain", chain, "--index", "51"]);
    assert!(String::from_utf8_lossy(&past.stderr).contains("past its end"));
}

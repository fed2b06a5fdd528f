//! Goal: the web dashboard works end to end in a real browser for every role, over the same API
//! and authorization: a holder sees a payment made over the API, why another is held and why a
//! third was blocked, adds a passkey, signs in with it, freezes a device, edits its limits and
//! lifts the freeze with the passkey's approval, sets a monthly limit and an alert, and opens a
//! dispute; an analyst approves the held payment and the
//! payer's view changes; a merchant sees income; an auditor verifies an inclusion proof. Every
//! page passes axe-core (no serious or critical violation), sign-in and the review queue work
//! with the keyboard alone, a script in a dispute statement stays text, a request without the
//! CSRF token is refused, and a holder with 10,000 payments gets a first screen of one page.
//! Method: the real `obol serve` with a policy that holds payments of 10.01 to 20.00 USD and
//! blocks 50.01 to 60.00 USD, a second one started with --demo for priced routes, parties
//! set up over HTTP, then `dashboard/tests/e2e.mjs` (Playwright driving Debian's headless
//! Chromium). Screenshots go to `target/dashboard-screenshots/`. Without node, its packages
//! (`npm ci` in dashboard/, which `scripts/test` runs) or Chromium the test says it skipped,
//! except under CI=true, where it fails.

mod support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use support::{Parties, code};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The programs the browser test needs, or `None` (skipped) outside CI.
fn tools() -> Option<(String, String)> {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let node = std::env::var("OBOL_NODE").unwrap_or_else(|_| "node".into());
    let has = |program: &str| Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success());
    let chromium = ["chromium", "chromium-browser"].into_iter().find(|name| has(name)).and_then(|name| {
        let output = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().ok()?;
        Some(String::from_utf8_lossy(&output.stdout).trim().to_string())
    });
    let packages = workspace().join("dashboard/node_modules/playwright-core").exists();
    match (has(&node), chromium, packages) {
        (true, Some(chromium), true) => Some((node, chromium)),
        missing => {
            assert!(
                !ci,
                "CI=true needs node, chromium and dashboard/node_modules (scripts/test installs them): {missing:?}"
            );
            eprintln!("SKIPPED: the dashboard in Chromium needs node, chromium and `npm ci` in dashboard/");
            None
        }
    }
}

fn transfer(id: &str, from: &str, to: &str, amount: &str) -> Value {
    json!({"id": id, "debit_account_id": from, "credit_account_id": to, "amount": amount,
        "asset_code": "USD", "asset_scale": 2})
}

async fn key_of(world: &Parties, id: &str, role: &str) -> String {
    world.op("/v1/principals", json!({"id": id, "role": role, "name": format!("{role} {id}")})).await;
    world.op(&format!("/v1/principals/{id}/keys"), json!({})).await["key"].as_str().expect("a key").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_works_its_page_in_chromium_accessibly_and_safely() {
    let Some((node, chromium)) = tools() else { return };
    // The hold rule the tests share, and a block the holder's page must explain.
    let policy = format!(
        "{}\n[[rules]]\nid = \"block\"\naction = \"block\"\nowner = \"risk@test\"\n\
         when = \"amount_minor > 5000 && amount_minor <= 6000\"\n\
         reason_en = \"Blocked: larger than this account usually pays.\"\nreason_ko = \"차단: 평소보다 큰 결제.\"\n",
        support::HOLDS_POLICY
    );
    let world =
        Parties::start_with("dashboard", 2, 1_000_000, Some(("holds@1", &policy)), &["--webhooks-allow-private"]).await;
    let analyst = key_of(&world, "400", "analyst").await;
    let auditor = key_of(&world, "500", "auditor").await;

    // The merchant's webhook, at an address where nothing listens: its events wait.
    let hook = json!({"url": "http://127.0.0.1:9/obol-events"});
    let (status, created) = world.api.post(&world.merchant, "/v1/webhooks", hook, None).await;
    assert_eq!(status, 201, "{created}");

    // A payment over the API, and one the policy holds.
    let (status, paid) = world.api.post(&world.holder, "/v1/transfers", transfer("7001", "1", "2", "500"), None).await;
    assert_eq!(status, 201, "{paid}");
    let (status, held) = world.api.post(&world.holder, "/v1/transfers", transfer("7002", "1", "2", "1500"), None).await;
    assert_eq!((status, code(&held)), (202, "held_for_review"), "{held}");
    let review = held["review"]["id"].as_str().expect("a review").to_string();
    let (status, blocked) =
        world.api.post(&world.holder, "/v1/transfers", transfer("7003", "1", "2", "5500"), None).await;
    assert_eq!((status, code(&blocked)), (403, "risk_blocked"), "{blocked}");
    // The payer's alert says what was blocked and why, in words, and nothing of the rule.
    let (_, feed) = world.api.get(&world.holder, "/v1/events?limit=1000").await;
    let alert = feed["items"].as_array().and_then(|items| items.iter().find(|e| e["type"] == "payment.blocked"));
    let data = &alert.expect("a payment.blocked alert")["data"];
    assert_eq!(
        (data["subject"].as_str(), data["amount"].as_str(), data["payee"].as_str()),
        (Some("transfer:7003"), Some("5500"), Some("2")),
        "{data}"
    );
    assert_eq!(data["reason_en"], "Blocked: larger than this account usually pays.");
    assert!(data.get("rule").is_none(), "{data}");

    // A busy holder: 10,000 payments in.
    let busy = key_of(&world, "600", "holder").await;
    world.op("/v1/accounts", json!({"id": "6", "asset_code": "USD", "asset_scale": 2, "owner_id": "600"})).await;
    let mut newest = String::new();
    for chunk in 0..2u32 {
        let transfers: Vec<Value> = (0..5_000u32)
            .map(|n| {
                newest = (100_000 + chunk * 5_000 + n).to_string();
                transfer(&newest, "9", "6", "1")
            })
            .collect();
        let (status, body) =
            world.api.post(&world.operator, "/v1/transfers/batch", json!({"transfers": transfers}), None).await;
        assert_eq!(status, 200, "{body}");
    }

    // A second server, started with --demo: its priced routes, paid three times with the
    // `obol pay` command it prints, for the demo merchant's page.
    let demo_dir = world.data_dir().with_file_name("demo");
    std::fs::create_dir_all(&demo_dir).expect("the demo's directory");
    let mut demo = support::launch_demo(&demo_dir);
    let paid = Command::new(env!("CARGO_BIN_EXE_obol"))
        .arg("pay")
        .args(&demo.pay)
        .current_dir(&demo_dir)
        .env("OBOL_SERVER", &demo.base)
        .env("OBOL_CONFIG", demo_dir.join("no-config.toml"))
        .output()
        .expect("run obol pay");
    assert!(paid.status.success(), "obol pay: {}", String::from_utf8_lossy(&paid.stderr));
    let demo_port = demo.base.rsplit(':').next().expect("a port").to_string();

    let base = world.api.base.clone();
    let port = base.rsplit(':').next().expect("a port");
    let screenshots = workspace().join("target/dashboard-screenshots");
    let config = json!({
        "base": format!("http://localhost:{port}"),
        "api": base,
        "chromium": chromium,
        "screenshots": screenshots,
        "holder": {"id": "100", "key": world.holder},
        "merchant": {"key": world.merchant, "income": "USD 20.00"},
        "demo": {"base": format!("http://localhost:{demo_port}"), "key": demo.dashboard_keys.get(1),
            "route": "one article", "requests": 3, "earned": "USD 0.0012"},
        "analyst": {"key": analyst},
        "auditor": {"key": auditor},
        "busy": {"key": busy, "newest": newest},
        "device": {"id": "55", "kid": "reader"},
        "payment": {"id": "7001", "shown": "USD 5.00"},
        "held": {"id": "7002", "review": review, "reason": "Held for a look."},
        "blocked": {"shown": "USD 55.00: Blocked: larger than this account usually pays."},
        "xss": "<img src=x onerror=\"window.__xss=1\"><script>window.__xss=1</script>",
    });
    let config_path = world.data_dir().with_file_name("e2e.json");
    std::fs::write(&config_path, config.to_string()).expect("the configuration");
    let output = Command::new(node)
        .arg(workspace().join("dashboard/tests/e2e.mjs"))
        .arg(&config_path)
        .current_dir(workspace().join("dashboard"))
        .output()
        .expect("run node");
    let _ = demo.child.kill();
    let _ = demo.child.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the browser test failed:\n{stderr}\n{stdout}");
    let measured: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("the measurements");
    eprintln!("dashboard in Chromium: {measured}");
    assert!(measured["axe_pages"].as_u64() >= Some(7), "{measured}");
    assert!(measured["screenshots"].as_array().is_some_and(|s| s.len() >= 9), "{measured}");
    assert_eq!(measured["first_screen_ms"].as_array().map(Vec::len), Some(3), "{measured}");

    // What the pages did, seen through the API: the held payment ran once, on approval.
    let (status, moved) = world.api.get(&world.holder, "/v1/transfers/7002").await;
    assert_eq!((status, moved["amount"].as_str()), (200, Some("1500")), "{moved}");
}

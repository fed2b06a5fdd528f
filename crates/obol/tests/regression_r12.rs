//! Goal: the holes an attack review of the playground, custom assets, request ids and step-up in
//! the CLI found (issue 12) stay closed.
//! Method: the real `obol serve --demo` (risk engine on) on a scratch directory, attacked over
//! real HTTP (and a raw socket where a client would not encode its path), with the demo reader's
//! device key and the operator's key; each test asserts the refusal and that nothing moved.

use std::io::{Read, Write};
use std::process::{Command, Output};

use serde_json::{Value, json};

mod support;

struct Demo {
    launched: support::Demo,
    dir: std::path::PathBuf,
    api: support::Api,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.launched.child.kill();
        let _ = self.launched.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn demo(tag: &str) -> Demo {
    let dir = std::env::temp_dir().join(format!("obol-r12-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let launched = support::launch_demo(&dir);
    let api = support::Api::new(&launched.base);
    Demo { launched, dir, api }
}

impl Demo {
    fn obol(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_obol"))
            .args(args)
            .current_dir(&self.dir)
            .env("OBOL_SERVER", &self.launched.base)
            .env("OBOL_CONFIG", self.dir.join("no-config.toml"))
            .env("OBOL_API_KEY", &self.launched.key)
            .output()
            .unwrap()
    }

    fn key_file(&self) -> String {
        self.dir.join("obol-data/demo/device.key").display().to_string()
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.api.post(&self.launched.key, path, body, None).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_01_a_payword_chain_pays_one_tab_only() {
    let world = demo("chain");
    for id in ["81", "82"] {
        let tab = json!({"id": id, "payer_account_id": "402020", "payee_account_id": "402010", "budget": "100000",
            "asset_code": "USD", "asset_scale": 9, "timeout_s": 600, "device_id": "402021"});
        assert_eq!(world.post("/v1/tabs", tab).await.0, 201);
    }
    let chain = world.dir.join("chain.secret").display().to_string();
    let pristine = world.dir.join("chain.copy").display().to_string();
    assert!(world.obol(&["payword", "new", "--length", "20", "--out", &chain]).status.success());
    std::fs::copy(&chain, &pristine).unwrap();
    let key_file = world.key_file();
    let commit = |file: &str, tab: &str, submit: bool| {
        let mut args = vec!["payword", "commit", "--chain", file, "--key-file", &key_file, "--tab", tab];
        args.extend(["--payee", "402010", "--value-per-tick", "1000", "--json"]);
        if submit {
            args.push("--submit");
        }
        world.obol(&args)
    };
    assert!(commit(&chain, "81", true).status.success());
    // The CLI marked the chain as tab 81's and refuses to commit it elsewhere.
    let again = commit(&chain, "82", false);
    assert!(String::from_utf8_lossy(&again.stderr).contains("committed to tab 81"), "{again:?}");
    // A copy made before the mark still has the old secret: the server refuses it on tab 82.
    let body: Value = serde_json::from_slice(&commit(&pristine, "82", false).stdout).unwrap();
    let (status, problem) = world.post("/v1/tabs/82/commitment", body).await;
    assert_eq!((status, support::code(&problem)), (409, "payword_chain_reused"), "{problem}");
    let (_, tab) = world.api.get(&world.launched.key, "/v1/tabs/82").await;
    assert!(tab["payword_length"].is_null(), "tab 82 has no chain: {tab}");
}

/// The `exact` payload the demo article's offer asks for, signed by nobody.
fn unsigned_exact(offer: &Value, from: &str, device: &str) -> String {
    let accepted = offer["accepts"].as_array().unwrap().iter().find(|a| a["scheme"] == "exact").unwrap().clone();
    let valid_before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 60;
    let payment = json!({"x402Version": 2, "resource": offer["resource"], "accepted": accepted,
        "payload": {"from": from, "device": device, "transfer": "123456789", "validBefore": valid_before,
            "signature": "A".repeat(86)}});
    obol_http::x402::encode_header(&payment)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_02_an_unsigned_payment_learns_nothing_about_devices_or_accounts() {
    let world = demo("enumerate");
    let url = format!("{}/demo/article", world.launched.base);
    let offered = world.api.http.get(&url).send().await.unwrap();
    assert_eq!(offered.status().as_u16(), 402);
    let header = offered.headers()["payment-required"].to_str().unwrap().to_string();
    let offer: Value = obol_http::x402::decode_header(&header).unwrap();
    let mut answers = Vec::new();
    // The demo reader's device for its own account, for someone else's, and a device that
    // does not exist: one and the same refusal.
    for (from, device) in [("402020", "402021"), ("402010", "402021"), ("402020", "999999")] {
        let response =
            world.api.http.get(&url).header("payment-signature", unsigned_exact(&offer, from, device)).send().await;
        let response = response.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        answers.push((status, body["code"].as_str().unwrap_or("?").to_string()));
    }
    assert!(answers.iter().all(|answer| *answer == answers[0]), "{answers:?}");
    assert_ne!(answers[0].0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_03_the_demo_routes_stay_closed_when_the_merchant_account_is_someone_elses() {
    let dir = std::env::temp_dir().join(format!("obol-r12-closed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("obol-data");
    // A first start without the demo: account 402010 is made by someone else (no owner).
    let mut plain = support::launch([
        std::ffi::OsStr::new("--listen"),
        "127.0.0.1:0".as_ref(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ]);
    let key = plain.key.clone().unwrap();
    let api = support::Api::new(&plain.base);
    let squatted = json!({"id": "402010", "asset_code": "USD", "asset_scale": 9});
    assert_eq!(api.post(&key, "/v1/accounts", squatted, None).await.0, 201);
    let _ = plain.child.kill();
    let _ = plain.child.wait();
    // The demo start fails its set-up; its priced routes never take a payment to that account.
    let mut child = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("OBOL_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let base = loop {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0, "the server stopped");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0, "no demo failure was reported");
        if line.contains("demo failed") {
            break;
        }
    }
    let response = obol_client::http_client(None).unwrap().get(format!("{base}/demo/article")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "demo_not_ready");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_04_limits_thresholds_names_and_descriptions_refuse_what_would_mislead() {
    let world = demo("assets");
    // Device limits and a step-up threshold in an asset no account can hold would silently
    // disable a limit or a protection: refused.
    let limits = json!({"limits": {"asset_code": "QQQ", "asset_scale": 2, "per_payment": "5"}});
    let (status, problem) = world.post("/v1/devices/402021/limits", limits).await;
    assert_eq!((status, support::code(&problem)), (422, "asset_not_registered"), "{problem}");
    let step_up = json!({"above": {"asset_code": "ZZZ", "asset_scale": 2, "amount": "10"}});
    let (status, problem) = world.post("/v1/principals/402002/step-up", step_up).await;
    assert_eq!((status, support::code(&problem)), (422, "asset_not_registered"), "{problem}");
    // ISO 4217 fund codes are ISO's, not free for custom assets.
    for fund in ["BOV", "CHE", "USN"] {
        let (status, _) = world.post("/v1/assets", json!({"code": fund, "scale": 2, "description": "x"})).await;
        assert_eq!(status, 400, "{fund}");
    }
    // Text that would move a terminal's cursor or forge a log line is refused.
    let (status, _) =
        world.post("/v1/assets", json!({"code": "GEM", "scale": 0, "description": "gems\n\u{1b}[31mred"})).await;
    assert_eq!(status, 400);
    let (status, _) =
        world.post("/v1/principals", json!({"id": "77", "role": "holder", "name": "Eve\u{202e}gnp.exe"})).await;
    assert_eq!(status, 400);
}

#[test]
fn r12_05_a_path_cannot_forge_an_access_log_line() {
    let dir = std::env::temp_dir().join(format!("obol-r12-log-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let data = dir.join("data");
    let mut launched = support::launch_with(
        [std::ffi::OsStr::new("--listen"), "127.0.0.1:0".as_ref(), "--data-dir".as_ref(), data.as_os_str()],
        &[("OBOL_LOG", "warn"), ("OBOL_ACCESS_LOG", "true")],
        std::process::Stdio::from(log),
    );
    let address = launched.base.strip_prefix("http://").unwrap().to_string();
    let mut socket = std::net::TcpStream::connect(&address).unwrap();
    // A raw UTF-8 path with a line separator and a no-break space, as a hostile client sends it.
    let request = "GET /v1/me\u{2028}2026-12-06T00:00:00Z\u{a0}INFO HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    socket.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = socket.read_to_string(&mut answer);
    let _ = launched.child.kill();
    let _ = launched.child.wait();
    let text = std::fs::read_to_string(dir.join("stderr.log")).unwrap();
    assert!(!text.contains('\u{2028}') && !text.contains('\u{a0}'), "{text}");
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(text.contains("path=/v1/me%E2%80%A82026-12-06T00:00:00Z%C2%A0INFO"), "the path is logged, encoded: {text}");
    let _ = std::fs::remove_dir_all(&dir);
}

//! Shared by the tests that run the real `obol` binary: start `obol serve` and read where it
//! listens and the operator key it prints on first start.
#![allow(dead_code)]

pub mod holds;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running `obol serve`.
pub struct Launched {
    /// The process (its stdout is drained in the background).
    pub child: Child,
    /// `http://127.0.0.1:PORT` or `https://...`.
    pub base: String,
    /// The operator key, if this start created one.
    pub key: Option<String>,
}

/// Starts `obol serve ARGS` with warnings-only logging and waits until it listens.
pub fn launch<I, S>(args: I) -> Launched
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    launch_with(args, &[("OBOL_LOG", "warn")], Stdio::inherit())
}

/// Like [`launch`], with extra environment and a chosen stderr.
pub fn launch_with<I, S>(args: I, env: &[(&str, &str)], stderr: Stdio) -> Launched
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_obol"));
    command.arg("serve").args(args).stdout(Stdio::piped()).stderr(stderr);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn obol serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut key = None;
    let base = loop {
        let line = lines.next().expect("obol serve exited before listening").expect("read stdout");
        if line.trim().starts_with("obol_live_") {
            key = Some(line.trim().to_string());
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().expect("address").to_string();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Launched { child, base, key }
}

/// A running `obol serve --demo` whose playground is ready.
pub struct Demo {
    /// The process (its stdout is drained in the background).
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The operator key the first start printed.
    pub key: String,
    /// The arguments of the `obol pay ...` line the demo printed (without `obol pay`).
    pub pay: Vec<String>,
    /// The dashboard sign-in keys it printed: the demo reader's, then the merchant's.
    pub dashboard_keys: Vec<String>,
}

/// Starts `obol serve --demo` on a free port with `dir` as its working directory (so its data
/// directory is the default `./obol-data` there) and reads its output until the demo is ready.
pub fn launch_demo(dir: &std::path::Path) -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_obol"))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env("OBOL_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn obol serve --demo");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut key, mut base, mut pay, mut dashboard_keys) = (String::new(), String::new(), Vec::new(), Vec::new());
    loop {
        let line = lines.next().expect("obol serve --demo exited before the demo was ready").expect("read stdout");
        let trimmed = line.trim();
        if trimmed.starts_with("obol_live_") && key.is_empty() {
            key = trimmed.to_string();
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            base = rest.split_whitespace().next().expect("address").to_string();
        }
        if trimmed.starts_with("sign in as ")
            && let Some(dashboard_key) = trimmed.rsplit(' ').next()
        {
            dashboard_keys.push(dashboard_key.to_string());
        }
        if let Some(rest) = trimmed.strip_prefix("obol pay ") {
            pay = rest.split_whitespace().map(str::to_string).collect();
        }
        assert!(!trimmed.starts_with("demo failed"), "{line}");
        if trimmed.contains("demo ready") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    assert!(
        key.starts_with("obol_live_") && !base.is_empty() && !pay.is_empty(),
        "the demo printed its key and pay line"
    );
    Demo { child, base, key, pay, dashboard_keys }
}

/// A client of a running server over real HTTP: JSON in, (status, JSON) out, with a bearer key
/// or an RFC 9421 device signature.
pub struct Api {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The HTTP client.
    pub http: reqwest::Client,
}

impl Api {
    /// A client of `base`.
    pub fn new(base: &str) -> Api {
        Api { base: base.to_string(), http: obol_client::http_client(None).unwrap() }
    }

    async fn answer(response: reqwest::Response) -> (u16, serde_json::Value) {
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("a body");
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    /// POSTs `body` with `key`, and `Obol-Approval` when given.
    pub async fn post(
        &self,
        key: &str,
        path: &str,
        body: serde_json::Value,
        approval: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.http.post(format!("{}{path}", self.base)).bearer_auth(key).json(&body);
        if let Some(approval) = approval {
            request = request.header("obol-approval", approval);
        }
        Api::answer(request.send().await.expect("the server answers")).await
    }

    /// PUTs `body` to `path` with `key`.
    pub async fn put(&self, key: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        Api::answer(
            self.http
                .put(format!("{}{path}", self.base))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .expect("the server answers"),
        )
        .await
    }

    /// DELETEs `path` with `key`.
    pub async fn delete(&self, key: &str, path: &str) -> (u16, serde_json::Value) {
        Api::answer(
            self.http.delete(format!("{}{path}", self.base)).bearer_auth(key).send().await.expect("the server answers"),
        )
        .await
    }

    /// GETs `path` with `key`.
    pub async fn get(&self, key: &str, path: &str) -> (u16, serde_json::Value) {
        let request = self.http.get(format!("{}{path}", self.base)).bearer_auth(key);
        Api::answer(request.send().await.expect("the server answers")).await
    }

    /// POSTs `body` signed by a device key (`kid`), as a device without an API key sends it.
    pub async fn post_signed(
        &self,
        device: &ed25519_dalek::SigningKey,
        kid: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
        self.send(self.signed(device, kid, path, body, now_s)).await
    }

    /// A POST of `body` signed by a device key (`kid`) with `created` = `created_s`.
    pub fn signed(
        &self,
        device: &ed25519_dalek::SigningKey,
        kid: &str,
        path: &str,
        body: &serde_json::Value,
        created_s: u64,
    ) -> reqwest::Request {
        let url: reqwest::Url = format!("{}{path}", self.base).parse().expect("a URL");
        let bytes = body.to_string().into_bytes();
        let headers =
            obol_client::signed_headers(device, kid, &reqwest::Method::POST, &url, &bytes, created_s).expect("signing");
        self.http.post(url).headers(headers).body(bytes).build().expect("a request")
    }

    /// Sends a request built by [`Api::signed`] (to this server, whatever server it was built
    /// for: the target URI it signs is kept, as a replaying attacker would keep it).
    pub async fn send(&self, mut request: reqwest::Request) -> (u16, serde_json::Value) {
        let base: reqwest::Url = self.base.parse().expect("a URL");
        let _ = request.url_mut().set_port(base.port());
        Api::answer(self.http.execute(request).await.expect("the server answers")).await
    }

    /// Waits until `/readyz` answers 200 (or fails after 30 s).
    pub async fn ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(response) = self.http.get(format!("{}/readyz", self.base)).send().await
                && response.status() == 200
            {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "obol never became ready");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// The problem `code` of an answer ("" when there is none).
pub fn code(value: &serde_json::Value) -> &str {
    value["code"].as_str().unwrap_or("")
}

/// A real `obol serve` on a scratch directory with the usual parties: holder 100 (key `holder`,
/// account 1 funded with `funds` from platform account 9, device 55 signing with `device`, kid
/// `reader`) and merchant 300 (key `merchant`, account 2), all in USD at `scale`. Killed and its
/// directory removed when dropped.
pub struct Parties {
    server: Option<Child>,
    dir: std::path::PathBuf,
    serve_args: Vec<std::ffi::OsString>,
    /// The server's client.
    pub api: Api,
    /// The operator's key.
    pub operator: String,
    /// The holder's key (read, pay, manage).
    pub holder: String,
    /// The merchant's key.
    pub merchant: String,
    /// Device 55's key.
    pub device: ed25519_dalek::SigningKey,
    /// The accounts' scale (USD).
    pub scale: u8,
    /// The server's network, which the device's signatures are for.
    pub network: obol_core::channel::Network,
    /// Its id, `obol:<instance-id>`.
    pub network_id: String,
}

impl Parties {
    /// Starts the server and sets the parties up. With `policy` (a bundle id such as `name@1` and
    /// its TOML), the server watches a policy directory holding it and this waits until it is
    /// in force.
    pub async fn start(tag: &str, scale: u8, funds: u128, policy: Option<(&str, &str)>) -> Parties {
        Parties::start_with(tag, scale, funds, policy, &[]).await
    }

    /// [`Parties::start`] with more `obol serve` arguments.
    pub async fn start_with(
        tag: &str,
        scale: u8,
        funds: u128,
        policy: Option<(&str, &str)>,
        more_args: &[&str],
    ) -> Parties {
        use serde_json::json;
        let dir = std::env::temp_dir().join(format!("obol-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut serve_args: Vec<std::ffi::OsString> =
            vec!["--listen".into(), "127.0.0.1:0".into(), "--data-dir".into(), dir.join("data").into()];
        if let Some((_, toml)) = policy {
            let policy_dir = dir.join("policy");
            std::fs::create_dir_all(&policy_dir).expect("policy directory");
            std::fs::write(policy_dir.join("bundle.toml"), toml).expect("policy bundle");
            serve_args.extend(["--policy-dir".into(), policy_dir.into()]);
        }
        serve_args.extend(more_args.iter().map(std::ffi::OsString::from));
        let launched = launch(&serve_args);
        let operator = launched.key.clone().expect("a fresh store prints the operator key");
        let api = Api::new(&launched.base);
        api.ready().await;
        let (_, supported) = api.get(&operator, "/v1/x402/supported").await;
        let network_id = supported["kinds"][0]["network"].as_str().expect("the server names its network").to_string();
        let network = obol_core::channel::Network::named(&network_id);
        let mut parties = Parties {
            server: Some(launched.child),
            dir,
            serve_args,
            api,
            operator,
            holder: String::new(),
            merchant: String::new(),
            device: ed25519_dalek::SigningKey::from_bytes(&[42; 32]),
            scale,
            network,
            network_id,
        };
        if let Some((bundle, _)) = policy {
            parties.until_policy(bundle).await;
        }
        parties.op("/v1/principals", json!({"id": "100", "role": "holder", "name": "Alice"})).await;
        parties.op("/v1/principals", json!({"id": "300", "role": "merchant", "name": "Shop"})).await;
        parties.holder = parties.op("/v1/principals/100/keys", json!({})).await["key"].as_str().expect("key").into();
        parties.merchant = parties.op("/v1/principals/300/keys", json!({})).await["key"].as_str().expect("key").into();
        parties.op("/v1/accounts", json!({"id": "9", "asset_code": "USD", "asset_scale": scale})).await;
        parties
            .op("/v1/accounts", json!({"id": "1", "asset_code": "USD", "asset_scale": scale, "owner_id": "100"}))
            .await;
        parties
            .op("/v1/accounts", json!({"id": "2", "asset_code": "USD", "asset_scale": scale, "owner_id": "300"}))
            .await;
        let fund = json!({"id": "1", "debit_account_id": "9", "credit_account_id": "1", "amount": funds.to_string(),
            "asset_code": "USD", "asset_scale": scale});
        parties.op("/v1/transfers", fund).await;
        let jwk = obol_client::Wallet::device_jwk(&[42; 32], "reader");
        parties.op("/v1/principals/100/devices", json!({"id": "55", "jwk": jwk})).await;
        parties
    }

    /// Waits until policy bundle `bundle` (`name@version`) was added.
    async fn until_policy(&self, bundle: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (_, changes) = self.api.get(&self.operator, "/v1/risk/policy/changes").await;
            let added =
                changes.as_array().is_some_and(|all| all.iter().any(|c| c["what"] == "added" && c["bundle"] == bundle));
            if added {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "the policy never loaded: {changes}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.join("data")
    }

    /// An operator request that must succeed.
    pub async fn op(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let (status, value) = self.api.post(&self.operator, path, body, None).await;
        assert!((200..300).contains(&status), "{path}: {status} {value}");
        value
    }

    /// (debits_pending, debits_posted, credits_pending, credits_posted) of an account.
    pub async fn balances(&self, account: &str) -> [u128; 4] {
        let (status, value) = self.api.get(&self.operator, &format!("/v1/accounts/{account}/balance")).await;
        assert_eq!(status, 200, "{value}");
        let field = |name: &str| value[name].as_str().expect("a balance").parse::<u128>().expect("digits");
        [field("debits_pending"), field("debits_posted"), field("credits_pending"), field("credits_posted")]
    }

    /// The risk reviews with `status` (`pending`, `approved`, `declined`, `all`), as the operator
    /// lists them.
    pub async fn reviews(&self, status: &str) -> Vec<serde_json::Value> {
        let path = format!("/v1/risk/reviews?status={status}&limit=500");
        let (code, page) = self.api.get(&self.operator, &path).await;
        assert_eq!(code, 200, "{page}");
        page["items"].as_array().cloned().unwrap_or_default()
    }

    /// The operator decides review `review` (`approve` or `decline`); answers the review.
    pub async fn decide(&self, review: &str, decision: &str) -> serde_json::Value {
        let path = format!("/v1/risk/reviews/{review}/decision");
        let (status, answer) =
            self.api.post(&self.operator, &path, serde_json::json!({"decision": decision}), None).await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// The holder opens tab `id` from account 1 to account 2, signed by `device`.
    pub async fn open_tab(&self, id: &str, budget: u128, device: &str) -> (u16, serde_json::Value) {
        let body = serde_json::json!({"id": id, "payer_account_id": "1", "payee_account_id": "2",
            "budget": budget.to_string(), "asset_code": "USD", "asset_scale": self.scale, "timeout_s": 600,
            "device_id": device});
        self.api.post(&self.holder, "/v1/tabs", body, None).await
    }

    /// A voucher device 55 signs for tab `tab` paying account 2, base64url.
    pub fn voucher(&self, tab: u128, cumulative: u128, seq: u64) -> String {
        use base64ct::{Base64UrlUnpadded, Encoding};
        use ed25519_dalek::Signer;
        use obol_core::channel::Voucher;
        let signature = self.device.sign(&Voucher::signed_message(&self.network, tab, 2, cumulative, seq)).to_bytes();
        Base64UrlUnpadded::encode_string(&Voucher { tab_id: tab, payee_id: 2, cumulative, seq, signature }.encode())
    }

    /// The PayWord commitment device 55 signs for tab `tab` paying account 2, to `chain` (root
    /// first, each tick worth `value_per_tick`), for `network`.
    pub fn commitment(
        &self,
        network: obol_core::channel::Network,
        tab: u128,
        chain: &[[u8; 32]],
        value_per_tick: u128,
    ) -> obol_core::channel::Commitment {
        use ed25519_dalek::Signer;
        use obol_core::channel::Commitment;
        let length = (chain.len() - 1) as u32;
        let message = Commitment::signed_message(&network, tab, 2, &chain[0], length, value_per_tick);
        let signature = self.device.sign(&message).to_bytes();
        Commitment { tab_id: tab, payee_id: 2, network, root: chain[0], length, value_per_tick, signature }
    }

    /// The merchant submits a voucher of device 55 for tab `tab`.
    pub async fn pay_voucher(&self, tab: u128, cumulative: u128, seq: u64) -> (u16, serde_json::Value) {
        let body = serde_json::json!({"voucher": self.voucher(tab, cumulative, seq)});
        self.api.post(&self.merchant, &format!("/v1/tabs/{tab}/vouchers"), body, None).await
    }

    /// SIGKILLs the server and starts it again on the same store with `more_args` added.
    pub async fn kill_and_restart_with(&mut self, more_args: &[&str]) {
        self.serve_args.extend(more_args.iter().map(std::ffi::OsString::from));
        self.kill_and_restart().await;
    }

    /// SIGKILLs the server and starts it again on the same store.
    pub async fn kill_and_restart(&mut self) {
        if let Some(mut child) = self.server.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reaped");
        }
        let launched = launch(&self.serve_args);
        self.api = Api::new(&launched.base);
        self.server = Some(launched.child);
        self.api.ready().await;
    }
}

impl Drop for Parties {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A policy bundle that holds payments of 10.01 to 20.00 (at scale 2) for review.
pub const HOLDS_POLICY: &str = "name = \"holds\"\nversion = 1\neffective_from_s = 0\n\n[[rules]]\nid = \"hold\"\naction = \"review\"\nowner = \"risk@test\"\nwhen = \"amount_minor > 1000 && amount_minor <= 2000\"\nreason_en = \"Held for a look.\"\nreason_ko = \"검토 보류.\"\n";

/// The PostgreSQL the tests use (`OBOL_TEST_DATABASE_URL`, default the local `test` database).
pub fn pg_url() -> String {
    std::env::var("OBOL_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Runs `sql` on [`pg_url`] (an error when PostgreSQL is not reachable).
pub async fn pg_execute(sql: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute(sql).await
}

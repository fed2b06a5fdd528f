//! Runnable micropayment scenarios on obol, each started by one command
//! (`cargo run --release -p obol-examples --bin <name>`) and each exercised by a test.
//!
//! By default a scenario runs the whole system in one process, over real HTTP on loopback: an
//! obol server on a fresh embedded store (the payer's bank, so to speak), a merchant's routes
//! priced with `PaymentLayer`, and a payer device using the `obol-client` wallet. With
//! `--server URL` (or `OBOL_SERVER`) and the operator's key (`OBOL_API_KEY` or `--api-key-file`)
//! it runs against that running server instead, as its risk engine decides: the merchant is then
//! a web server of its own that settles through the server's facilitator with its own key, every
//! id the scenario makes is drawn fresh so that runs never collide, and balances are read over
//! the API. Setup always goes through the public API with the operator key, as an operator's own
//! tooling would.

pub mod donations;
pub mod game_item;
pub mod iot_meter;
pub mod pay_per_view;
pub mod seller;
pub mod subscription;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::{Context, bail};
use axum::Router;
use clap::Parser;
use obol_client::{Preference, SpendLimits, Wallet, WalletConfig};
use obol_core::money::Asset;
use obol_http::AppState;
use obol_store::{Engine, Node, SqliteStore};
use serde_json::{Value, json};

use crate::seller::{Facilitator, Place, Seller};

/// The account that funds payers in the scenarios (an issuer: it may go negative).
pub const ISSUER_ACCOUNT: u128 = 9;

/// USD at scale 9: amounts count nano-dollars, so $0.0004 is 400,000.
pub fn usd() -> Asset {
    Asset::new("USD", 9).expect("USD is ISO 4217")
}

/// Formats nano-dollars as dollars, exactly (no floats).
pub fn dollars(nano: u128) -> String {
    format!("${}.{:09}", nano / 1_000_000_000, nano % 1_000_000_000)
}

/// Prints one step of a scenario.
pub fn step(text: &str) {
    println!("  - {text}");
}

/// Where a scenario runs.
#[derive(Clone, Debug, Default)]
pub enum Target {
    /// A fresh obol server in this process, on a store in a temporary directory.
    #[default]
    Embedded,
    /// A running obol server.
    Remote {
        /// Its base URL (`http://` or `https://`).
        server: String,
        /// The operator's API key there.
        operator_key: String,
        /// PEM of a CA to trust beyond the system's (a self-signed deployment).
        ca_cert_pem: Option<Vec<u8>>,
    },
}

/// The command line every example binary takes.
#[derive(Parser, Debug)]
#[command(about = "Runs one obol micropayment scenario: in this process by default, or against a running obol server")]
struct ExampleArgs {
    /// A running obol server to run against (e.g. http://127.0.0.1:8080) instead of one in this
    /// process; needs the operator's key.
    #[arg(long, env = "OBOL_SERVER")]
    server: Option<String>,
    /// File holding the operator's API key (or set OBOL_API_KEY).
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// PEM file of a CA to trust for an https:// server with a private certificate.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
}

impl Target {
    /// The target the command line names.
    pub fn from_args() -> anyhow::Result<Target> {
        let args = ExampleArgs::parse();
        let Some(server) = args.server else {
            return Ok(Target::Embedded);
        };
        let operator_key = match (&args.api_key_file, std::env::var("OBOL_API_KEY")) {
            (Some(path), _) => {
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?.trim().to_string()
            }
            (None, Ok(key)) => key.trim().to_string(),
            (None, Err(_)) => bail!("--server needs the operator's API key: set OBOL_API_KEY or pass --api-key-file"),
        };
        let ca_cert_pem = match &args.ca_cert {
            Some(path) => Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?),
            None => None,
        };
        Ok(Target::Remote { server: server.trim_end_matches('/').to_string(), operator_key, ca_cert_pem })
    }
}

/// An obol server and a merchant's priced routes, for one scenario.
pub struct Sandbox {
    /// Base URL of the merchant's routes, e.g. `http://127.0.0.1:40123`.
    pub base: String,
    /// Base URL of the obol server (the same as `base` when embedded).
    pub server: String,
    /// The server's network id (`obol:<instance-id>`), which payments are signed for.
    pub network: String,
    /// Added to every id the scenario names: 0 when embedded, drawn per run against a server.
    ids: u128,
    operator: String,
    http: reqwest::Client,
    /// The embedded server's writer and store directory (none against a running server).
    local: Option<(Engine, PathBuf)>,
    /// Against a running server: the facilitator the merchant settles through.
    facilitator: Option<Arc<Facilitator>>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some((_, dir)) = &self.local {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Sandbox {
    /// Starts obol on a fresh store in a temporary directory, with the routes `merchant` adds
    /// (priced through the [`Seller`] it is given), and the risk engine deciding with the
    /// shipped policy as `obol serve` does.
    pub async fn start(name: &str, merchant: impl FnOnce(&Seller) -> Router) -> anyhow::Result<Sandbox> {
        Sandbox::start_on(name, &Target::Embedded, merchant).await
    }

    /// [`Sandbox::start`] on `target`: against a running server, the merchant's routes are
    /// served from this process and settled through that server's facilitator.
    pub async fn start_on(
        name: &str,
        target: &Target,
        merchant: impl FnOnce(&Seller) -> Router,
    ) -> anyhow::Result<Sandbox> {
        let sandbox = match target {
            Target::Embedded => Sandbox::embedded(name, true, merchant).await?,
            Target::Remote { server, operator_key, ca_cert_pem } => {
                Sandbox::remote(server, operator_key, ca_cert_pem.as_deref(), merchant).await?
            }
        };
        sandbox
            .op(
                "/v1/accounts",
                json!({"id": sandbox.id(ISSUER_ACCOUNT).to_string(), "asset_code": "USD", "asset_scale": 9}),
            )
            .await?;
        Ok(sandbox)
    }

    /// [`Sandbox::start`] with the risk engine off (for tests of the ledger alone).
    pub async fn start_without_risk(name: &str, merchant: impl FnOnce(&Seller) -> Router) -> anyhow::Result<Sandbox> {
        let sandbox = Sandbox::embedded(name, false, merchant).await?;
        sandbox
            .op("/v1/accounts", json!({"id": ISSUER_ACCOUNT.to_string(), "asset_code": "USD", "asset_scale": 9}))
            .await?;
        Ok(sandbox)
    }

    async fn embedded(name: &str, risk: bool, merchant: impl FnOnce(&Seller) -> Router) -> anyhow::Result<Sandbox> {
        let dir =
            std::env::temp_dir().join(format!("obol-example-{name}-{}-{}", std::process::id(), rand::random::<u32>()));
        let mut node = Node::open(SqliteStore::open(&dir).context("opening the store")?, rand::random())?;
        let operator = obol_app::auth::bootstrap_operator(&mut node, &obol_app::SystemEnv)?
            .context("a fresh store gets an operator key")?;
        let engine = Engine::start(node);
        // The risk engine decides as `obol serve` does, with the shipped policy: the scenarios
        // show micropayments going through it, not around it.
        let risk = if risk {
            obol_app::risk::Risk::new(obol_app::risk::shipped_policy().map_err(|e| anyhow::anyhow!(e))?, None)
        } else {
            obol_app::risk::Risk::off()
        };
        let state = AppState::new(engine.clone(), "http").with_risk(risk);
        let network = state.x402_network.to_string();
        let seller = Seller { ids: 0, place: Place::Local(Box::new(state.clone())) };
        let router = obol_http::app(state).merge(merchant(&seller));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await;
        });
        Ok(Sandbox {
            server: base.clone(),
            base,
            network,
            ids: 0,
            operator,
            http: obol_client::http_client(None)?,
            local: Some((engine, dir)),
            facilitator: None,
        })
    }

    async fn remote(
        server: &str,
        operator: &str,
        ca_cert_pem: Option<&[u8]>,
        merchant: impl FnOnce(&Seller) -> Router,
    ) -> anyhow::Result<Sandbox> {
        // Every call gives up after 30 s: a stalled server fails the run instead of hanging it.
        let http =
            obol_client::http_client_builder(ca_cert_pem)?.timeout(std::time::Duration::from_secs(30)).build()?;
        let supported: Value = http
            .get(format!("{server}/v1/x402/supported"))
            .send()
            .await
            .with_context(|| format!("reaching the obol server at {server}"))?
            .json()
            .await?;
        let network = supported["kinds"][0]["network"]
            .as_str()
            .context("the server's /v1/x402/supported names no network")?
            .to_string();
        // Every id this run makes is offset by a fresh multiple of 2^40, so runs on one server
        // never meet (a scenario's own ids stay far below 2^40).
        let ids = (u128::from(rand::random::<u32>()) + 1) << 40;
        let facilitator = Arc::new(Facilitator {
            server: server.to_string(),
            network: network.clone(),
            http: http.clone(),
            keys: RwLock::new(HashMap::new()),
        });
        let seller = Seller { ids, place: Place::Remote(Arc::clone(&facilitator)) };
        let router = merchant(&seller);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(Sandbox {
            base,
            server: server.to_string(),
            network,
            ids,
            operator: operator.to_string(),
            http,
            local: None,
            facilitator: Some(facilitator),
        })
    }

    /// The id this run uses for the scenario's id `scenario_id`.
    pub fn id(&self, scenario_id: u128) -> u128 {
        scenario_id + self.ids
    }

    /// The operator's API key (for tools that call the API themselves).
    pub fn operator_key(&self) -> &str {
        &self.operator
    }

    /// Calls the API as the operator; fails on a problem answer.
    pub async fn op(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response =
            self.http.post(format!("{}{path}", self.server)).bearer_auth(&self.operator).json(&body).send().await?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {value}");
        }
        Ok(value)
    }

    /// A merchant principal owning account `account_id` (scenario ids). Against a running
    /// server the merchant also gets an API key of its own, which its routes settle with.
    pub async fn merchant(&self, principal_id: u128, name: &str, account_id: u128) -> anyhow::Result<()> {
        let (principal_id, account_id) = (self.id(principal_id), self.id(account_id));
        self.op("/v1/principals", json!({"id": principal_id.to_string(), "role": "merchant", "name": name})).await?;
        self.op(
            "/v1/accounts",
            json!({"id": account_id.to_string(), "asset_code": "USD", "asset_scale": 9,
            "owner_id": principal_id.to_string(), "flags": ["history"]}),
        )
        .await?;
        if let Some(facilitator) = &self.facilitator {
            // A key that can only take payments into the merchant's own accounts, for this run.
            let created = self
                .op(&format!("/v1/principals/{principal_id}/keys"), json!({"scopes": ["pay"], "expires_in_s": 3_600}))
                .await?;
            let key = created["key"].as_str().context("a new key answers the key")?.to_string();
            facilitator.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(account_id, key);
        }
        Ok(())
    }

    /// A holder with account `account_id` funded with `funds`, and one device (a fresh key) that
    /// pays from it; answers the wallet configuration for that device (scenario ids).
    pub async fn payer(
        &self,
        principal_id: u128,
        name: &str,
        account_id: u128,
        funds: u128,
    ) -> anyhow::Result<WalletConfig> {
        self.payer_with_key(principal_id, name, account_id, funds, Wallet::generate_device_key()).await
    }

    /// [`Sandbox::payer`] with a given device key (device id `principal_id * 10`).
    pub async fn payer_with_key(
        &self,
        principal_id: u128,
        name: &str,
        account_id: u128,
        funds: u128,
        device_key: [u8; 32],
    ) -> anyhow::Result<WalletConfig> {
        let device_id = self.id(principal_id * 10);
        let (principal_id, account_id) = (self.id(principal_id), self.id(account_id));
        self.op("/v1/principals", json!({"id": principal_id.to_string(), "role": "holder", "name": name})).await?;
        self.op(
            "/v1/accounts",
            json!({"id": account_id.to_string(), "asset_code": "USD", "asset_scale": 9,
            "owner_id": principal_id.to_string(), "flags": ["debits_must_not_exceed_credits", "history"]}),
        )
        .await?;
        self.op("/v1/transfers", json!({"id": (account_id + 1_000_000).to_string(), "debit_account_id": self.id(ISSUER_ACCOUNT).to_string(),
            "credit_account_id": account_id.to_string(), "amount": funds.to_string(), "asset_code": "USD", "asset_scale": 9}))
            .await?;
        // A key id names one device on a server: a run against a running server adds its own tag.
        let kid = match self.ids {
            0 => format!("{name}-device"),
            ids => format!("{name}-device-{}", ids >> 40),
        }
        .to_lowercase()
        .replace(' ', "-");
        let jwk = Wallet::device_jwk(&device_key, &kid);
        self.op(&format!("/v1/principals/{principal_id}/devices"), json!({"id": device_id.to_string(), "jwk": jwk}))
            .await?;
        Ok(WalletConfig {
            server: self.server.clone(),
            device_key,
            kid,
            device_id,
            account_id,
            asset: usd(),
            auto_tab_budget: 0,
            auto_tab_timeout_s: 3600,
            limits: SpendLimits::default(),
            preference: Preference::Tabs,
        })
    }

    /// The operator approves every pending review of tab `tab_id` (a paused stream resumes);
    /// answers the rule that held each one.
    pub async fn approve_tab_reviews(&self, tab_id: u128) -> anyhow::Result<Vec<String>> {
        let mut rules = Vec::new();
        let mut after = String::new();
        loop {
            let path = format!("{}/v1/risk/reviews?status=pending&limit=500&after={after}", self.server);
            let response = self.http.get(path).bearer_auth(&self.operator).send().await?;
            let status = response.status();
            let page: Value = response.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                bail!("listing reviews: {status} {page}");
            }
            for review in page["items"].as_array().into_iter().flatten() {
                if review["tab_id"].as_str() != Some(tab_id.to_string().as_str()) {
                    continue;
                }
                let id = review["id"].as_str().context("a review has an id")?;
                self.op(&format!("/v1/risk/reviews/{id}/decision"), json!({"decision": "approve"})).await?;
                rules.push(review["risk"]["rule"].as_str().unwrap_or("the model").to_string());
            }
            match page["next"].as_str() {
                Some(next) if !next.is_empty() => after = next.to_string(),
                _ => return Ok(rules),
            }
        }
    }

    /// The payer's wallet for `config`, trusting what the sandbox trusts.
    pub fn wallet(&self, config: WalletConfig) -> Wallet {
        Wallet::with_http_client(config, self.http.clone())
    }

    /// What tab `id` owes its payee so far, straight from the embedded ledger (None against a
    /// running server, or for an unknown tab).
    pub fn tab_cumulative(&self, id: u128) -> Option<u128> {
        let (engine, _) = self.local.as_ref()?;
        let ledger = engine.ledger().read().unwrap_or_else(|poisoned| poisoned.into_inner());
        ledger.tab(id).map(|entry| entry.tab.cumulative)
    }

    /// (debits posted, credits posted, debits pending) of the scenario's account `account_id`,
    /// as the operator reads them over the API.
    pub async fn balances(&self, account_id: u128) -> anyhow::Result<(u128, u128, u128)> {
        let path = format!("{}/v1/accounts/{}/balance", self.server, self.id(account_id));
        let response = self.http.get(path).bearer_auth(&self.operator).send().await?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("balance of account {account_id}: {status} {value}");
        }
        let field = |name: &str| -> anyhow::Result<u128> {
            Ok(value[name].as_str().with_context(|| format!("the balance has no {name}"))?.parse()?)
        };
        Ok((field("debits_posted")?, field("credits_posted")?, field("debits_pending")?))
    }
}

/// What a scenario did, for its test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Paid answers the payer got.
    pub paid_requests: u32,
    /// What the payer's wallet paid in all, minor units.
    pub paid_total: u128,
    /// What the merchant's account received (posted credits), minor units.
    pub merchant_received: u128,
    /// What the payer's account was debited (posted), minor units.
    pub payer_debited: u128,
    /// Payments the wallet refused to make (spend limits).
    pub refused: u32,
}

/// Runs a scenario on a two-thread runtime, where the command line says (what each example's
/// `main` does).
pub fn run_main<F, Fut>(title: &str, scenario: F) -> anyhow::Result<()>
where
    F: FnOnce(Target) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Outcome>>,
{
    let target = Target::from_args()?;
    match &target {
        Target::Embedded => println!("{title}"),
        Target::Remote { server, .. } => println!("{title} (against {server})"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let outcome = runtime.block_on(scenario(target))?;
    println!(
        "done: {} paid requests, {} paid, the merchant received {}, the payer was debited {}",
        outcome.paid_requests,
        dollars(outcome.paid_total),
        dollars(outcome.merchant_received),
        dollars(outcome.payer_debited)
    );
    Ok(())
}

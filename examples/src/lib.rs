//! Runnable micropayment scenarios on obol, each started by one command
//! (`cargo run --release -p obol-examples --bin <name>`) and each exercised by a test.
//!
//! Every scenario runs the whole system in one process, over real HTTP on loopback: an obol
//! server on a fresh embedded store (the payer's bank, so to speak), a merchant's routes priced
//! with `PaymentLayer`, and a payer device using the `obol-client` wallet. Setup goes through the
//! public API with the operator key, as an operator's own tooling would.

pub mod donations;
pub mod game_item;
pub mod iot_meter;
pub mod pay_per_view;
pub mod subscription;

use anyhow::{Context, bail};
use axum::Router;
use obol_client::{Preference, SpendLimits, WalletConfig};
use obol_core::money::Asset;
use obol_http::AppState;
use obol_store::{Engine, Node, SqliteStore};
use serde_json::{Value, json};

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

/// An obol server with a merchant's priced routes, on loopback, for one scenario.
pub struct Sandbox {
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub base: String,
    /// The server's network id (`obol:<instance-id>`), which payments are signed for.
    pub network: String,
    operator: String,
    http: reqwest::Client,
    engine: Engine,
    dir: std::path::PathBuf,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Sandbox {
    /// Starts obol on a fresh store in a temporary directory, with the routes `merchant` adds
    /// (priced with `PaymentLayer` over the state it is given), and the risk engine deciding
    /// with the shipped policy as `obol serve` does.
    pub async fn start(name: &str, merchant: impl FnOnce(AppState) -> Router) -> anyhow::Result<Sandbox> {
        Sandbox::start_with(name, true, merchant).await
    }

    /// [`Sandbox::start`] with the risk engine off: only for a scenario that runs hours of
    /// payments in milliseconds, which the shipped velocity rules rightly read as an attack.
    pub async fn start_without_risk(name: &str, merchant: impl FnOnce(AppState) -> Router) -> anyhow::Result<Sandbox> {
        Sandbox::start_with(name, false, merchant).await
    }

    async fn start_with(name: &str, risk: bool, merchant: impl FnOnce(AppState) -> Router) -> anyhow::Result<Sandbox> {
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
        let router = obol_http::app(state.clone()).merge(merchant(state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await;
        });
        let sandbox = Sandbox { base, network, operator, http: obol_client::http_client(None)?, engine, dir };
        sandbox
            .op("/v1/accounts", json!({"id": ISSUER_ACCOUNT.to_string(), "asset_code": "USD", "asset_scale": 9}))
            .await?;
        Ok(sandbox)
    }

    /// The operator's API key (for tools that call the API themselves).
    pub fn operator_key(&self) -> &str {
        &self.operator
    }

    /// Calls the API as the operator; fails on a problem answer.
    pub async fn op(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response =
            self.http.post(format!("{}{path}", self.base)).bearer_auth(&self.operator).json(&body).send().await?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {value}");
        }
        Ok(value)
    }

    /// A merchant principal owning account `account_id`.
    pub async fn merchant(&self, principal_id: u128, name: &str, account_id: u128) -> anyhow::Result<()> {
        self.op("/v1/principals", json!({"id": principal_id.to_string(), "role": "merchant", "name": name})).await?;
        self.op(
            "/v1/accounts",
            json!({"id": account_id.to_string(), "asset_code": "USD", "asset_scale": 9,
            "owner_id": principal_id.to_string(), "flags": ["history"]}),
        )
        .await?;
        Ok(())
    }

    /// A holder with account `account_id` funded with `funds`, and one device (a fresh key) that
    /// pays from it; answers the wallet configuration for that device.
    pub async fn payer(
        &self,
        principal_id: u128,
        name: &str,
        account_id: u128,
        funds: u128,
    ) -> anyhow::Result<WalletConfig> {
        self.payer_with_key(principal_id, name, account_id, funds, obol_client::Wallet::generate_device_key()).await
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
        self.op("/v1/principals", json!({"id": principal_id.to_string(), "role": "holder", "name": name})).await?;
        self.op(
            "/v1/accounts",
            json!({"id": account_id.to_string(), "asset_code": "USD", "asset_scale": 9,
            "owner_id": principal_id.to_string(), "flags": ["debits_must_not_exceed_credits", "history"]}),
        )
        .await?;
        self.op("/v1/transfers", json!({"id": (account_id + 1_000_000).to_string(), "debit_account_id": ISSUER_ACCOUNT.to_string(),
            "credit_account_id": account_id.to_string(), "amount": funds.to_string(), "asset_code": "USD", "asset_scale": 9}))
            .await?;
        let kid = format!("{name}-device").to_lowercase().replace(' ', "-");
        let device_id = principal_id * 10;
        let jwk = obol_client::Wallet::device_jwk(&device_key, &kid);
        self.op(&format!("/v1/principals/{principal_id}/devices"), json!({"id": device_id.to_string(), "jwk": jwk}))
            .await?;
        Ok(WalletConfig {
            server: self.base.clone(),
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

    /// What tab `id` owes its payee so far, straight from the ledger.
    pub fn tab_cumulative(&self, id: u128) -> Option<u128> {
        let ledger = self.engine.ledger().read().unwrap_or_else(|poisoned| poisoned.into_inner());
        ledger.tab(id).map(|entry| entry.tab.cumulative)
    }

    /// (debits posted, credits posted, debits pending) of an account, straight from the ledger.
    pub fn balances(&self, account_id: u128) -> (u128, u128, u128) {
        let ledger = self.engine.ledger().read().unwrap_or_else(|poisoned| poisoned.into_inner());
        ledger.account(account_id).map_or((0, 0, 0), |account| {
            let b = &account.balances;
            (b.debits_posted, b.credits_posted, b.debits_pending)
        })
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

/// Runs a scenario on a two-thread runtime (what each example's `main` does).
pub fn run_main(
    title: &str,
    scenario: impl std::future::Future<Output = anyhow::Result<Outcome>>,
) -> anyhow::Result<()> {
    println!("{title}");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let outcome = runtime.block_on(scenario)?;
    println!(
        "done: {} paid requests, {} paid, the merchant received {}, the payer was debited {}",
        outcome.paid_requests,
        dollars(outcome.paid_total),
        dollars(outcome.merchant_received),
        dollars(outcome.payer_debited)
    );
    Ok(())
}

//! `obol tab ...` (manage tabs with an API key) and `obol pay ...` (fetch a priced URL as a
//! device, paying HTTP 402 with the client SDK).

use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use crate::client::{Api, Connection, parse_asset, print, runtime};

/// `obol tab ...`
#[derive(Subcommand, Debug)]
pub enum TabCommand {
    /// Open a tab: escrow a budget from the payer's account to a payee, payable by one device.
    ///
    /// Example: obol tab open --payer 1 --payee 2 --budget 1000000 --asset USD/9 --device 55 --timeout-s 3600
    Open {
        /// The payer's account.
        #[arg(long)]
        payer: String,
        /// The payee's account.
        #[arg(long)]
        payee: String,
        /// Budget to escrow, minor units.
        #[arg(long)]
        budget: String,
        /// Asset of both accounts, e.g. USD/9.
        #[arg(long)]
        asset: String,
        /// The device whose key signs the tab's payments.
        #[arg(long)]
        device: String,
        /// Seconds the tab accepts payments.
        #[arg(long, default_value_t = 3600)]
        timeout_s: u32,
        /// Tab id; a random one if omitted.
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        approval: crate::client::Approval,
        #[command(flatten)]
        connection: Connection,
    },
    /// List the tabs you may see (as payer or payee; all of them for the operator), in the
    /// order they opened.
    ///
    /// Example: obol tab list --payee 2 --status open
    List {
        /// Only tabs paid from this account.
        #[arg(long)]
        payer: Option<String>,
        /// Only tabs paying this account.
        #[arg(long)]
        payee: Option<String>,
        /// open, expired or settled.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        paging: crate::client::Paging,
        #[command(flatten)]
        connection: Connection,
    },
    /// Show a tab: escrow, what it owes, status.
    Show {
        /// Tab id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Add to a tab's escrow.
    Topup {
        /// Tab id.
        id: String,
        /// Minor units to add.
        #[arg(long)]
        amount: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Settle and close a tab: the payee gets what it owes, the rest goes back to the payer.
    Settle {
        /// Tab id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
}

/// `obol pay URL`: fetch a priced URL as a device, paying if the server answers 402.
///
/// Example: obol pay http://127.0.0.1:3000/article --key-file meter.key --kid meter-1 --device 55
///          --account 1 --asset USD/9 --tab-budget 100000 --max-per-request 5000 --count 3
#[derive(Args, Debug)]
pub struct PayArgs {
    /// The priced URL.
    url: String,
    /// File with the device's private key (hex, as `obol device keygen` writes it).
    #[arg(long)]
    key_file: PathBuf,
    /// The device's key id.
    #[arg(long)]
    kid: String,
    /// The device's id.
    #[arg(long)]
    device: String,
    /// The account payments come from.
    #[arg(long)]
    account: String,
    /// The account's asset, e.g. USD/9.
    #[arg(long)]
    asset: String,
    /// The obol server that keeps the account (where tabs are opened), and how to print.
    #[command(flatten)]
    endpoint: crate::profile::Endpoint,
    /// Budget of a tab opened when a payee asks and none is open (0: never open one).
    #[arg(long, default_value_t = 0)]
    tab_budget: u128,
    /// Most one request may cost, minor units.
    #[arg(long)]
    max_per_request: Option<u128>,
    /// Most one tab may hold, minor units.
    #[arg(long)]
    max_per_tab: Option<u128>,
    /// Most the payments of this run may add up to, minor units (the command keeps nothing
    /// between runs: for a limit across runs, set the device's own limits on the server with
    /// `obol device register --per-day`).
    #[arg(long)]
    max_per_day: Option<u128>,
    /// Pay each request with its own ledger transfer (scheme `exact`) instead of a tab.
    #[arg(long)]
    exact: bool,
    /// How many times to fetch the URL.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Settle the tab when done.
    #[arg(long)]
    settle: bool,
}

/// `obol tab ...`
pub fn tab(command: TabCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let value = match command {
            TabCommand::List { payer, payee, status, paging, connection } => {
                let filters = [("payer", payer), ("payee", payee), ("status", status)];
                return crate::client::list_async(&connection, "/v1/tabs", &filters, &paging).await;
            }
            TabCommand::Open { payer, payee, budget, asset, device, timeout_s, id, approval, connection } => {
                let (asset_code, asset_scale) = parse_asset(&asset)?;
                let mut body = Map::new();
                body.insert("payer_account_id".into(), json!(payer));
                body.insert("payee_account_id".into(), json!(payee));
                body.insert("budget".into(), json!(budget));
                body.insert("asset_code".into(), json!(asset_code));
                body.insert("asset_scale".into(), json!(asset_scale));
                body.insert("timeout_s".into(), json!(timeout_s));
                body.insert("device_id".into(), json!(device));
                // The id is drawn here when not given, so that a step-up hint can name it.
                let drawn = id.is_none();
                let id = id.unwrap_or_else(|| (rand::random::<u128>() >> 1).max(1).to_string());
                body.insert("id".into(), json!(id));
                let body = Value::Object(body);
                Api::new(&connection)?
                    .expect_approved(
                        reqwest::Method::POST,
                        "/v1/tabs",
                        Some(&body),
                        approval.approval.as_deref(),
                        approval.totp.as_deref(),
                    )
                    .await
                    .map_err(|error| crate::client::same_id_hint(error, "--id", &id, drawn))?
            }
            TabCommand::Show { id, connection } => {
                Api::new(&connection)?.expect(reqwest::Method::GET, &format!("/v1/tabs/{id}"), None).await?
            }
            TabCommand::Topup { id, amount, connection } => {
                let body = json!({"amount": amount});
                Api::new(&connection)?
                    .expect(reqwest::Method::POST, &format!("/v1/tabs/{id}/topup"), Some(&body))
                    .await?
            }
            TabCommand::Settle { id, connection } => {
                Api::new(&connection)?.expect(reqwest::Method::POST, &format!("/v1/tabs/{id}/settle"), None).await?
            }
        };
        print(&value);
        Ok(())
    })
}

pub(crate) fn read_key(path: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the device key {}", path.display()))?;
    hex32(text.trim()).with_context(|| format!("{}: a 32-byte Ed25519 private key", path.display()))
}

/// Bytes as lower-case hex, as key and chain files hold them.
pub(crate) use obol_core::audit::hex;

/// 64 hex digits as 32 bytes.
pub(crate) fn hex32(text: &str) -> anyhow::Result<[u8; 32]> {
    if text.len() != 64 {
        bail!("must be 64 hex digits, not {} characters", text.len());
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair)?, 16).context("not hex")?;
    }
    Ok(bytes)
}

/// `obol pay ...`
pub fn pay(args: PayArgs) -> anyhow::Result<()> {
    use obol_client::{Preference, SpendLimits, Wallet, WalletConfig};
    let (code, scale) = parse_asset(&args.asset)?;
    let asset = obol_core::money::Asset::new(&code, scale).map_err(|e| anyhow!("{e}"))?;
    let parse_id =
        |what: &str, text: &str| text.parse::<u128>().with_context(|| format!("--{what} must be a decimal id"));
    let limits = SpendLimits {
        per_request_max: args.max_per_request.unwrap_or(u128::MAX),
        per_tab_max: args.max_per_tab.unwrap_or(u128::MAX),
        per_day_max: args.max_per_day.unwrap_or(u128::MAX),
    };
    if args.tab_budget > limits.per_tab_max {
        bail!("--tab-budget {} is above --max-per-tab {}: nothing was escrowed", args.tab_budget, limits.per_tab_max);
    }
    let home = args.endpoint.resolve()?;
    crate::out::set_mode(home.output);
    let http = home.http()?;
    let wallet = Wallet::with_http_client(
        WalletConfig {
            server: home.server.clone(),
            device_key: read_key(&args.key_file)?,
            kid: args.kid.clone(),
            device_id: parse_id("device", &args.device)?,
            account_id: parse_id("account", &args.account)?,
            asset,
            auto_tab_budget: args.tab_budget,
            auto_tab_timeout_s: 3600,
            limits,
            preference: if args.exact { Preference::Exact } else { Preference::Tabs },
        },
        http,
    );
    runtime()?.block_on(async {
        let paid = pay_each(&wallet, &args, scale, &code).await;
        if !crate::out::is_json() {
            crate::outln!("paid today: {}", crate::out::decimal(wallet.spent_today(), scale) + " " + &code);
        }
        // --settle settles what the wallet opened even when a request failed: a tab left open
        // holds the payer's escrow until it expires.
        if args.settle {
            for tab in wallet.tabs() {
                match wallet.settle(tab.payee).await {
                    Ok(settled) => {
                        if crate::out::is_json() {
                            print(&json!({"settled": settled}));
                        } else {
                            crate::outln!(
                                "settled tab {}: {} {code} to account {}, the rest of the {} {code} escrow back",
                                tab.id,
                                crate::out::decimal(tab.cumulative, scale),
                                tab.payee,
                                crate::out::decimal(tab.escrow, scale)
                            );
                        }
                    }
                    Err(error) => eprintln!("error: settling tab {}: {error}", tab.id),
                }
            }
        } else {
            for tab in wallet.tabs() {
                if !crate::out::is_json() {
                    crate::outln!(
                        "tab {} to account {} stays open: {} of {} {code} paid (obol tab settle {} to close it)",
                        tab.id,
                        tab.payee,
                        crate::out::decimal(tab.cumulative, scale),
                        crate::out::decimal(tab.escrow, scale),
                        tab.id
                    );
                }
            }
        }
        paid
    })
}

/// Fetches the URL `--count` times; stops at the first refusal, saying why.
async fn pay_each(wallet: &obol_client::Wallet, args: &PayArgs, scale: u8, code: &str) -> anyhow::Result<()> {
    for n in 1..=args.count {
        let response = wallet.get(&args.url).await.map_err(|e| anyhow!("request {n}: {}", explain_client_error(&e)))?;
        let status = response.status().as_u16();
        let paid = obol_client::receipt(&response);
        let offer_error = response
            .headers()
            .get("payment-required")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| obol_http::x402::decode_header::<obol_http::x402::PaymentRequired>(v).ok())
            .and_then(|offer| offer.error);
        let body = response.text().await.unwrap_or_default();
        let tab = paid.as_ref().and_then(|r| r.transaction.strip_prefix("tab:")).and_then(|t| t.split(':').next());
        if crate::out::is_json() {
            let shown: String = body.chars().take(200).collect();
            crate::outln!("{}", json!({"request": n, "status": status, "receipt": paid, "tab": tab, "body": shown}));
        } else if status < 400 {
            let how = match (&paid, tab) {
                (Some(receipt), Some(tab)) => format!(
                    "paid {} {code} on tab {tab}",
                    crate::out::decimal(receipt.amount.as_deref().and_then(|a| a.parse().ok()).unwrap_or(0), scale)
                ),
                (Some(receipt), None) => format!(
                    "paid {} {code} ({})",
                    crate::out::decimal(receipt.amount.as_deref().and_then(|a| a.parse().ok()).unwrap_or(0), scale),
                    receipt.transaction
                ),
                (None, _) => "free (no payment asked)".to_string(),
            };
            let shown: String = body.chars().take(120).collect::<String>().replace('\n', " ");
            crate::outln!("request {n}: {status}, {how}: {shown}");
        }
        if status >= 400 {
            bail!("request {n} was refused: {}", explain_refusal(status, &body, offer_error.as_deref()));
        }
    }
    Ok(())
}

/// A refused answer in words: the problem's code and detail, or the x402 error.
fn explain_refusal(status: u16, body: &str, offer_error: Option<&str>) -> String {
    let problem: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let code = problem.get("code").and_then(Value::as_str).or(offer_error);
    let detail = problem.get("detail").and_then(Value::as_str);
    match (code, detail) {
        (Some(code), Some(detail)) => format!("HTTP {status} {code}: {detail}"),
        (Some(code), None) => format!("HTTP {status} {code}"),
        (None, _) if status == 402 => {
            "HTTP 402: the server still asks for payment (it took none of the offers this wallet made)".to_string()
        }
        (None, _) => format!("HTTP {status}: {}", body.chars().take(200).collect::<String>()),
    }
}

/// A wallet error in words, with what to change.
fn explain_client_error(error: &obol_client::ClientError) -> String {
    use obol_client::ClientError;
    match error {
        ClientError::SpendLimit(why) => {
            format!(
                "refused by your own limits, nothing was paid or escrowed: {why} (raise --max-per-request, --max-per-tab or --max-per-day)"
            )
        }
        ClientError::NoUsableOffer(why) => format!(
            "this wallet cannot pay any of the offers: {why} (a tab needs --tab-budget; another asset or network needs another account)"
        ),
        ClientError::Api { status, code, detail } => format!("the server answered {status} {code}: {detail}"),
        other => other.to_string(),
    }
}

//! obol's client SDK: what a payer's device runs.
//!
//! A [`Wallet`] holds one device key and pays from one account. It opens tabs to payees (the
//! escrow is the most a payee can ever collect), pays into them with signed cumulative vouchers or
//! PayWord ticks, makes one-off `exact` payments, and answers HTTP 402 transparently: give
//! [`Wallet::fetch`] a request, and if the server asks for payment in the x402 v2 envelope the
//! wallet picks an offer it can honour, pays, and retries once. Every payment first passes the
//! [`SpendLimits`] the holder set (per request, per tab, per UTC day); nothing is paid past them.
//!
//! **API Boundary:** formats are those of `docs/vouchers.md`; management calls (open, commit,
//! top up, settle) are RFC 9421 requests signed by the device key, so the device needs no API key.
//! Tab state lives in the wallet's memory: a payer that restarts opens new tabs, and the old ones
//! settle when they expire.
#![deny(missing_docs)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::{Signer, SigningKey};
use obol_core::channel::{Commitment, ExactAuthorization, Network, Voucher, payword_chain};
use obol_core::money::Asset;
use obol_wire::x402::{PaymentRequired, PaymentRequirements, SettlementResponse, decode_header, encode_header};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

mod tls;

pub use tls::{http_client, http_client_builder};

/// Why the wallet did not pay or the server refused.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The network or HTTP layer failed.
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with a problem document.
    #[error("{status} {code}: {detail}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The problem's stable code.
        code: String,
        /// What the server said.
        detail: String,
    },
    /// Paying would break a limit the holder set.
    #[error("spend limit: {0}")]
    SpendLimit(String),
    /// The 402 answer offered nothing this wallet can pay with.
    #[error("no offer this wallet can pay: {0}")]
    NoUsableOffer(String),
    /// The server's answer did not follow the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// HTTPS cannot be set up as asked (a CA file that holds no certificate, say).
    #[error("TLS: {0}")]
    Tls(String),
}

/// Limits the holder sets; each is in minor units of the wallet's asset, `u128::MAX` for none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpendLimits {
    /// Most one request may cost.
    pub per_request_max: u128,
    /// Most one tab may escrow (including top-ups).
    pub per_tab_max: u128,
    /// Most all payments may add up to in one UTC day.
    pub per_day_max: u128,
}

impl Default for SpendLimits {
    fn default() -> SpendLimits {
        SpendLimits { per_request_max: u128::MAX, per_tab_max: u128::MAX, per_day_max: u128::MAX }
    }
}

/// How payments are made when a server asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preference {
    /// Ticks where a chain is committed, else vouchers (opening a tab when needed), else `exact`.
    Tabs,
    /// One ledger transfer per paid request (`exact`).
    Exact,
}

/// What a wallet needs.
#[derive(Clone, Debug)]
pub struct WalletConfig {
    /// The obol server that keeps the payer's account, e.g. `http://127.0.0.1:8402`.
    pub server: String,
    /// The device's key and its registered key id and device id.
    pub device_key: [u8; 32],
    /// Key id the device was registered with (`kid` of its JWK).
    pub kid: String,
    /// Device id.
    pub device_id: u128,
    /// The account payments come from.
    pub account_id: u128,
    /// The account's asset.
    pub asset: Asset,
    /// Budget of a tab the wallet opens by itself when a payee asks and no tab is open (0: never).
    pub auto_tab_budget: u128,
    /// Seconds such a tab accepts payments.
    pub auto_tab_timeout_s: u32,
    /// Limits.
    pub limits: SpendLimits,
    /// How to pay when asked.
    pub preference: Preference,
}

#[derive(Clone, Debug)]
struct Chain {
    words: Vec<[u8; 32]>,
    next: u32,
    value_per_tick: u128,
}

/// A tab as the wallet sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TabView {
    /// Tab id.
    pub id: u128,
    /// Payee account.
    pub payee: u128,
    /// Escrowed budget.
    pub escrow: u128,
    /// Paid so far.
    pub cumulative: u128,
    /// Latest voucher seq.
    pub seq: u64,
    /// PayWord ticks left, if a chain is committed.
    pub ticks_left: Option<u32>,
}

#[derive(Clone, Debug)]
struct TabState {
    id: u128,
    /// The server's network, which every voucher and commitment for the tab is signed for.
    network: Network,
    escrow: u128,
    cumulative: u128,
    seq: u64,
    chain: Option<Chain>,
}

#[derive(Debug, Default)]
struct Ledgerish {
    tabs: HashMap<u128, TabState>,
    day: u64,
    spent_today: u128,
}

fn reserve_in(state: &mut Ledgerish, limits: SpendLimits, amount: u128) -> Result<(), ClientError> {
    let today = now_s() / 86_400;
    if state.day != today {
        state.day = today;
        state.spent_today = 0;
    }
    state.spent_today = check_in(state, limits, amount)?;
    Ok(())
}

/// Whether `amount` fits the per-request limit and today's: answers today's total with it.
fn check_in(state: &Ledgerish, limits: SpendLimits, amount: u128) -> Result<u128, ClientError> {
    if amount > limits.per_request_max {
        return Err(ClientError::SpendLimit(format!(
            "{amount} is more than the {} one request may cost",
            limits.per_request_max
        )));
    }
    let spent_today = if state.day == now_s() / 86_400 { state.spent_today } else { 0 };
    let total = spent_today.saturating_add(amount);
    if total > limits.per_day_max {
        return Err(ClientError::SpendLimit(format!(
            "paying {amount} would make today's total {total}, above the daily {}",
            limits.per_day_max
        )));
    }
    Ok(total)
}

/// The headers that make a request a device's (RFC 9421, as obol checks it): `Content-Digest`
/// and `Content-Type` for a body, and `Signature-Input`/`Signature` over the method, the target
/// URI and the digest, made by `key` (key id `kid`) at `created_s` with a fresh nonce.
pub fn signed_headers(
    key: &SigningKey,
    kid: &str,
    method: &reqwest::Method,
    url: &reqwest::Url,
    body: &[u8],
    created_s: u64,
) -> Result<HeaderMap, ClientError> {
    let authority = match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        (None, _) => return Err(ClientError::Protocol("the server URL has no host".into())),
    };
    let protocol = |e: &dyn std::fmt::Display| ClientError::Protocol(e.to_string());
    let mut headers = HeaderMap::new();
    let mut components = vec!["@method", "@target-uri"];
    if !body.is_empty() {
        let digest = obol_wire::httpsig::content_digest(body);
        headers.insert("content-digest", HeaderValue::from_str(&digest).map_err(|e| protocol(&e))?);
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        components.push("content-digest");
    }
    let message = obol_wire::httpsig::Message {
        method: method.as_str(),
        scheme: url.scheme(),
        authority: &authority,
        path: url.path(),
        query: url.query(),
        headers: &headers,
    };
    let nonce = format!("{:032x}", rand::random::<u128>());
    let created_s = i64::try_from(created_s).map_err(|e| protocol(&e))?;
    let (input, signature) = obol_wire::httpsig::sign_request(key, kid, &components, created_s, Some(&nonce), &message)
        .map_err(|e| ClientError::Protocol(format!("signing: {e}")))?;
    headers.insert("signature-input", HeaderValue::from_str(&input).map_err(|e| protocol(&e))?);
    headers.insert("signature", HeaderValue::from_str(&signature).map_err(|e| protocol(&e))?);
    Ok(headers)
}

/// A payer device: opens tabs, pays, and handles 402.
pub struct Wallet {
    config: WalletConfig,
    key: SigningKey,
    http: reqwest::Client,
    state: Mutex<Ledgerish>,
    /// The network id of `config.server`, learned once: the only network this wallet signs for.
    network: std::sync::OnceLock<String>,
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Wallet {
    /// A wallet for `config`, reaching its server (and the payees) over HTTP or HTTPS with the
    /// system's root certificates.
    pub fn new(config: WalletConfig) -> Result<Wallet, ClientError> {
        Ok(Wallet::with_http_client(config, http_client(None)?))
    }

    /// A wallet that sends its requests through `http` (from [`http_client`] with a CA of your
    /// own, say).
    pub fn with_http_client(config: WalletConfig, http: reqwest::Client) -> Wallet {
        let key = SigningKey::from_bytes(&config.device_key);
        Wallet { config, key, http, state: Mutex::new(Ledgerish::default()), network: std::sync::OnceLock::new() }
    }

    /// The network id of the wallet's server (`obol:<instance-id>`, from its public
    /// `GET /v1/x402/supported`), asked once. The wallet's account and device live there, so it
    /// signs for no other network: an offer naming another is not this wallet's to pay.
    pub async fn server_network(&self) -> Result<String, ClientError> {
        if let Some(network) = self.network.get() {
            return Ok(network.clone());
        }
        let url = format!("{}/v1/x402/supported", self.config.server.trim_end_matches('/'));
        let supported: Value = self.http.get(url).send().await?.error_for_status()?.json().await?;
        let network = supported
            .get("kinds")
            .and_then(Value::as_array)
            .and_then(|kinds| kinds.iter().find_map(|kind| kind.get("network").and_then(Value::as_str)))
            .filter(|network| network.starts_with("obol:"))
            .ok_or_else(|| ClientError::Protocol("the server names no obol network".into()))?
            .to_string();
        Ok(self.network.get_or_init(|| network).clone())
    }

    /// A fresh random device key (register its public half with the holder's key first).
    pub fn generate_device_key() -> [u8; 32] {
        rand::random()
    }

    /// The device's public key as an RFC 8037 JWK, for registration.
    pub fn device_jwk(device_key: &[u8; 32], kid: &str) -> Value {
        let public = SigningKey::from_bytes(device_key).verifying_key().to_bytes();
        json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": Base64UrlUnpadded::encode_string(&public)})
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Ledgerish> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What payments added up to today (UTC).
    pub fn spent_today(&self) -> u128 {
        let state = self.state();
        if state.day == now_s() / 86_400 { state.spent_today } else { 0 }
    }

    /// Every tab this wallet opened and has not settled, by payee.
    pub fn tabs(&self) -> Vec<TabView> {
        let payees: Vec<u128> = self.state().tabs.keys().copied().collect();
        payees.into_iter().filter_map(|payee| self.tab(payee)).collect()
    }

    /// The wallet's open tab to `payee`, if any.
    pub fn tab(&self, payee: u128) -> Option<TabView> {
        self.state().tabs.get(&payee).map(|tab| TabView {
            id: tab.id,
            payee,
            escrow: tab.escrow,
            cumulative: tab.cumulative,
            seq: tab.seq,
            ticks_left: tab.chain.as_ref().map(|c| (c.words.len() as u32 - 1).saturating_sub(c.next - 1)),
        })
    }

    /// Reserves `amount` against the day's limit (and the per-request one); on success the
    /// payment counts for the day whether or not it is later used.
    fn reserve(&self, amount: u128) -> Result<(), ClientError> {
        reserve_in(&mut self.state(), self.config.limits, amount)
    }

    /// Sends a management request to the wallet's server, signed with the device key.
    async fn signed(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        let url: reqwest::Url = format!("{}{path}", self.config.server.trim_end_matches('/'))
            .parse()
            .map_err(|e| ClientError::Protocol(format!("server URL: {e}")))?;
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let headers = signed_headers(&self.key, &self.config.kid, &method, &url, &bytes, now_s())?;
        let response = self.http.request(method, url).headers(headers).body(bytes).send().await?;
        let status = response.status().as_u16();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        // A problem document is a refusal even with a 2xx status (202: held for review, not done).
        let problem = value.get("type").and_then(Value::as_str).is_some_and(|t| t.starts_with("urn:obol:problem:"));
        if status >= 400 || problem {
            return Err(ClientError::Api {
                status,
                code: value.get("code").and_then(Value::as_str).unwrap_or("unknown").to_string(),
                detail: value.get("detail").and_then(Value::as_str).unwrap_or("").to_string(),
            });
        }
        Ok(value)
    }

    /// Opens a tab to `payee` escrowing `budget` for `timeout_s` seconds; answers its id.
    pub async fn open_tab(&self, payee: u128, budget: u128, timeout_s: u32) -> Result<u128, ClientError> {
        if budget > self.config.limits.per_tab_max {
            return Err(ClientError::SpendLimit(format!(
                "a tab of {budget} is above the {} one tab may hold",
                self.config.limits.per_tab_max
            )));
        }
        let body = json!({"payer_account_id": self.config.account_id.to_string(), "payee_account_id": payee.to_string(),
            "budget": budget.to_string(), "asset_code": self.config.asset.code(), "asset_scale": self.config.asset.scale(),
            "timeout_s": timeout_s});
        let tab = self.signed(reqwest::Method::POST, "/v1/tabs", Some(&body)).await?;
        let id: u128 = tab
            .get("id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ClientError::Protocol("tab id".into()))?;
        let network = tab
            .get("network")
            .and_then(Value::as_str)
            .filter(|network| network.starts_with("obol:"))
            .map(Network::named)
            .ok_or_else(|| ClientError::Protocol("the tab names no obol network".into()))?;
        self.state().tabs.insert(payee, TabState { id, network, escrow: budget, cumulative: 0, seq: 0, chain: None });
        Ok(id)
    }

    /// Adds `amount` to the tab to `payee`.
    pub async fn top_up(&self, payee: u128, amount: u128) -> Result<(), ClientError> {
        let tab = self.tab(payee).ok_or_else(|| ClientError::Protocol(format!("no tab to {payee}")))?;
        let escrow = tab.escrow.saturating_add(amount);
        if escrow > self.config.limits.per_tab_max {
            return Err(ClientError::SpendLimit(format!(
                "the tab would hold {escrow}, above {}",
                self.config.limits.per_tab_max
            )));
        }
        let body = json!({"amount": amount.to_string()});
        self.signed(reqwest::Method::POST, &format!("/v1/tabs/{}/topup", tab.id), Some(&body)).await?;
        if let Some(state) = self.state().tabs.get_mut(&payee) {
            state.escrow = escrow;
        }
        Ok(())
    }

    /// Commits a fresh PayWord chain of `length` ticks worth `value_per_tick` each on the tab to
    /// `payee`; from then on payments to `payee` are ticks, checked with one hash each.
    pub async fn commit_payword(&self, payee: u128, length: u32, value_per_tick: u128) -> Result<(), ClientError> {
        let tab = self.tab(payee).ok_or_else(|| ClientError::Protocol(format!("no tab to {payee}")))?;
        let words = payword_chain(rand::random(), length);
        let root = *words.first().ok_or_else(|| ClientError::Protocol("an empty PayWord chain".into()))?;
        let network = self
            .state()
            .tabs
            .get(&payee)
            .map(|tab| tab.network)
            .ok_or_else(|| ClientError::Protocol(format!("no tab to {payee}")))?;
        let message = Commitment::signed_message(&network, tab.id, payee, &root, length, value_per_tick);
        let signature = self.key.sign(&message).to_bytes();
        let commitment =
            Commitment { tab_id: tab.id, payee_id: payee, network, root, length, value_per_tick, signature };
        let body = json!({"commitment": Base64UrlUnpadded::encode_string(&commitment.encode())});
        self.signed(reqwest::Method::POST, &format!("/v1/tabs/{}/commitment", tab.id), Some(&body)).await?;
        if let Some(state) = self.state().tabs.get_mut(&payee) {
            state.chain = Some(Chain { words, next: 1, value_per_tick });
        }
        Ok(())
    }

    /// Settles (closes) the tab to `payee`: the payee gets what was paid, the rest comes back.
    pub async fn settle(&self, payee: u128) -> Result<Value, ClientError> {
        let tab = self.tab(payee).ok_or_else(|| ClientError::Protocol(format!("no tab to {payee}")))?;
        let answer = self.signed(reqwest::Method::POST, &format!("/v1/tabs/{}/settle", tab.id), None).await?;
        self.state().tabs.remove(&payee);
        Ok(answer)
    }

    /// Signs the next voucher to `payee`, paying `amount` more; within the limits and escrow.
    pub fn voucher(&self, payee: u128, amount: u128) -> Result<Voucher, ClientError> {
        self.voucher_undoable(payee, amount).map(|(voucher, _)| voucher)
    }

    fn voucher_undoable(&self, payee: u128, amount: u128) -> Result<(Voucher, Undo), ClientError> {
        let mut state = self.state();
        let tab = state.tabs.get(&payee).ok_or_else(|| ClientError::NoUsableOffer(format!("no tab to {payee}")))?;
        let cumulative = tab.cumulative.saturating_add(amount);
        if cumulative > tab.escrow {
            return Err(ClientError::SpendLimit(format!("the tab to {payee} holds {}, not {cumulative}", tab.escrow)));
        }
        let (id, seq, network) = (tab.id, tab.seq + 1, tab.network);
        reserve_in(&mut state, self.config.limits, amount)?;
        let signature = self.key.sign(&Voucher::signed_message(&network, id, payee, cumulative, seq)).to_bytes();
        if let Some(tab) = state.tabs.get_mut(&payee) {
            tab.cumulative = cumulative;
            tab.seq = seq;
        }
        Ok((Voucher { tab_id: id, payee_id: payee, cumulative, seq, signature }, Undo::Voucher { payee, seq, amount }))
    }

    /// Reveals enough PayWord ticks to `payee` to cover `amount`: answers (tab, index, word).
    pub fn tick(&self, payee: u128, amount: u128) -> Result<Tick, ClientError> {
        self.tick_undoable(payee, amount).map(|(tick, _)| tick)
    }

    fn tick_undoable(&self, payee: u128, amount: u128) -> Result<(Tick, Undo), ClientError> {
        let mut state = self.state();
        let tab = state.tabs.get(&payee).ok_or_else(|| ClientError::NoUsableOffer(format!("no tab to {payee}")))?;
        let chain = tab.chain.as_ref().ok_or_else(|| ClientError::NoUsableOffer("no PayWord chain".into()))?;
        let ticks = amount.div_ceil(chain.value_per_tick.max(1)).max(1);
        let index = u128::from(chain.next) + ticks - 1;
        if index >= chain.words.len() as u128 {
            return Err(ClientError::SpendLimit(format!("the chain to {payee} has too few ticks left")));
        }
        let (id, index, paid) = (tab.id, index as u32, ticks * chain.value_per_tick);
        reserve_in(&mut state, self.config.limits, paid)?;
        let tab = state.tabs.get_mut(&payee).ok_or_else(|| ClientError::NoUsableOffer(format!("no tab to {payee}")))?;
        let chain = tab.chain.as_mut().ok_or_else(|| ClientError::NoUsableOffer("no PayWord chain".into()))?;
        let word = *chain
            .words
            .get(index as usize)
            .ok_or_else(|| ClientError::SpendLimit(format!("the chain to {payee} has too few ticks left")))?;
        let next_before = chain.next;
        chain.next = index + 1;
        tab.cumulative = tab.cumulative.saturating_add(paid);
        Ok(((id, index, word), Undo::Tick { payee, index, next_before, paid }))
    }

    /// Takes back what a tab payment the server refused before journaling anything used of the
    /// wallet: the tab's ticks or cumulative amount, unless a later payment on the same tab has
    /// already built on them, and today's spending. An `exact` authorization is never taken
    /// back: it stays collectible until it expires, whatever a receipt says.
    fn undo(&self, undo: Undo) {
        let mut state = self.state();
        let released = match undo {
            Undo::Tick { payee, index, next_before, paid } => {
                let tab = state.tabs.get_mut(&payee);
                match tab.and_then(|tab| Some((tab.chain.as_mut()?, &mut tab.cumulative))) {
                    Some((chain, cumulative)) if chain.next == index.saturating_add(1) => {
                        chain.next = next_before;
                        *cumulative = cumulative.saturating_sub(paid);
                        paid
                    }
                    _ => 0,
                }
            }
            Undo::Voucher { payee, seq, amount } => match state.tabs.get_mut(&payee) {
                Some(tab) if tab.seq == seq => {
                    tab.seq = seq.saturating_sub(1);
                    tab.cumulative = tab.cumulative.saturating_sub(amount);
                    amount
                }
                _ => 0,
            },
            Undo::Exact => 0,
        };
        state.spent_today = state.spent_today.saturating_sub(released);
    }

    /// Signs a one-off authorization of `amount` to `payee` (scheme `exact`) on the server
    /// whose network id is `network` (`obol:<instance-id>`, as its offers say).
    pub fn exact(&self, network: &str, payee: u128, amount: u128, valid_s: u64) -> Result<Value, ClientError> {
        self.reserve(amount)?;
        let authorization = ExactAuthorization {
            network: Network::named(network),
            transfer_id: (rand::random::<u128>() >> 8).max(1),
            from: self.config.account_id,
            to: payee,
            amount,
            asset: self.config.asset,
            device_id: self.config.device_id,
            valid_before_s: now_s() + valid_s,
        };
        let signature = self.key.sign(&authorization.signed_message()).to_bytes();
        Ok(json!({"from": self.config.account_id.to_string(), "device": self.config.device_id.to_string(),
            "transfer": authorization.transfer_id.to_string(), "validBefore": authorization.valid_before_s,
            "signature": Base64UrlUnpadded::encode_string(&signature)}))
    }

    /// The payload for one offer, or why this wallet cannot pay it.
    async fn pay_offer(&self, offer: &PaymentRequirements) -> Result<(Value, Undo), ClientError> {
        let home = self.server_network().await?;
        if offer.network != home {
            return Err(ClientError::NoUsableOffer(format!(
                "network {} is not this wallet's server's ({home})",
                offer.network
            )));
        }
        let scale = offer.extra.get("assetScale").and_then(Value::as_u64);
        if offer.asset != self.config.asset.code() || scale != Some(u64::from(self.config.asset.scale())) {
            return Err(ClientError::NoUsableOffer(format!("asset {} at scale {scale:?}", offer.asset)));
        }
        let amount: u128 = offer.amount.parse().map_err(|_| ClientError::Protocol("amount".into()))?;
        let payee: u128 = offer.pay_to.parse().map_err(|_| ClientError::Protocol("payTo".into()))?;
        match offer.scheme.as_str() {
            "obol-payword" => {
                let ((tab, index, word), undo) = self.tick_undoable(payee, amount)?;
                Ok((json!({"tab": tab.to_string(), "index": index, "word": hex(&word)}), undo))
            }
            "obol-voucher" => {
                if self.tab(payee).is_none() {
                    if self.config.auto_tab_budget == 0 {
                        return Err(ClientError::NoUsableOffer(format!("no tab to {payee}")));
                    }
                    // The limits are checked before anything is escrowed: a payment they refuse
                    // must not leave a tab holding the payer's money behind it.
                    check_in(&self.state(), self.config.limits, amount)?;
                    let budget = self.config.auto_tab_budget.min(self.config.limits.per_tab_max).max(amount);
                    self.open_tab(payee, budget, self.config.auto_tab_timeout_s).await?;
                }
                let (voucher, undo) = self.voucher_undoable(payee, amount)?;
                Ok((json!({"voucher": Base64UrlUnpadded::encode_string(&voucher.encode())}), undo))
            }
            "exact" => Ok((
                self.exact(&offer.network, payee, amount, offer.max_timeout_seconds.clamp(1, EXACT_VALID_S_MAX))?,
                Undo::Exact,
            )),
            other => Err(ClientError::NoUsableOffer(format!("scheme {other}"))),
        }
    }

    /// Which offers to try, best first.
    fn ranked<'a>(&self, offers: &'a [PaymentRequirements]) -> Vec<&'a PaymentRequirements> {
        let rank = |offer: &PaymentRequirements| -> u8 {
            let payee: Option<u128> = offer.pay_to.parse().ok();
            let tab = payee.and_then(|p| self.tab(p));
            match (self.config.preference, offer.scheme.as_str()) {
                (Preference::Exact, "exact") => 0,
                (Preference::Tabs, "obol-payword") if tab.as_ref().is_some_and(|t| t.ticks_left.is_some()) => 0,
                (Preference::Tabs, "obol-voucher") if tab.is_some() => 1,
                (Preference::Tabs, "obol-voucher") if self.config.auto_tab_budget > 0 => 2,
                (Preference::Tabs, "exact") => 3,
                _ => 9,
            }
        };
        let mut ranked: Vec<&PaymentRequirements> = offers.iter().filter(|offer| rank(offer) < 9).collect();
        ranked.sort_by_key(|offer| rank(offer));
        ranked
    }

    /// Sends `request`; if the server answers 402 with an x402 v2 offer, pays with the best offer
    /// this wallet can honour and sends it again, once. The paid answer carries the receipt
    /// ([`receipt`]). Requests with bodies must be clonable.
    pub async fn fetch(&self, request: reqwest::Request) -> Result<reqwest::Response, ClientError> {
        let retry =
            request.try_clone().ok_or_else(|| ClientError::Protocol("the request body cannot be replayed".into()))?;
        let response = self.http.execute(request).await?;
        if response.status() != reqwest::StatusCode::PAYMENT_REQUIRED {
            return Ok(response);
        }
        let header = response
            .headers()
            .get("payment-required")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ClientError::Protocol("402 without PAYMENT-REQUIRED".into()))?;
        let offer: PaymentRequired = decode_header(header).map_err(ClientError::Protocol)?;
        if offer.x402_version != 2 {
            return Err(ClientError::Protocol(format!("x402 version {}", offer.x402_version)));
        }
        let mut reasons = Vec::new();
        for accepted in self.ranked(&offer.accepts) {
            let (payload, undo) = match self.pay_offer(accepted).await {
                Ok(paid) => paid,
                Err(ClientError::NoUsableOffer(reason)) => {
                    reasons.push(reason);
                    continue;
                }
                Err(other) => return Err(other),
            };
            let payment =
                json!({"x402Version": 2, "resource": offer.resource, "accepted": accepted, "payload": payload});
            let mut retry = retry;
            let value =
                HeaderValue::from_str(&encode_header(&payment)).map_err(|e| ClientError::Protocol(e.to_string()))?;
            retry.headers_mut().insert("payment-signature", value);
            let response = self.http.execute(retry).await?;
            // A tab paused for review refuses a payment before journaling it: the wallet takes
            // it back, so the retry after the review neither skips a tick nor pays twice for one
            // answer. No other refusal is taken back: after a stale or racing payment the server
            // may already hold it, and re-sending it would jam the tab.
            let refused_before_journal = receipt(&response).is_some_and(|receipt| {
                !receipt.success && receipt.error_reason.as_deref().is_some_and(|code| UNDONE_REFUSALS.contains(&code))
            });
            if refused_before_journal {
                self.undo(undo);
            }
            return Ok(response);
        }
        Err(ClientError::NoUsableOffer(if reasons.is_empty() { "nothing offered".into() } else { reasons.join("; ") }))
    }

    /// `GET url`, paying if asked.
    pub async fn get(&self, url: &str) -> Result<reqwest::Response, ClientError> {
        let request = self.http.get(url).build()?;
        self.fetch(request).await
    }
}

/// One PayWord payment: (tab, index of the last word revealed, that word).
pub type Tick = (u128, u32, [u8; 32]);

/// Refusals a server answers before it journals a tab payment, which the wallet takes back.
const UNDONE_REFUSALS: [&str; 1] = ["tab_paused_for_review"];

/// Longest an `exact` authorization the wallet signs stays valid, whatever the offer allows: it
/// can be collected until then.
pub const EXACT_VALID_S_MAX: u64 = 300;

/// What one payment took from the wallet's own state, to give back if the server refuses it.
#[derive(Clone, Copy, Debug)]
enum Undo {
    /// Ticks `next_before..=index` of the chain to `payee`, worth `paid`.
    Tick { payee: u128, index: u32, next_before: u32, paid: u128 },
    /// The voucher `seq` to `payee`, adding `amount`.
    Voucher { payee: u128, seq: u64, amount: u128 },
    /// A one-off authorization (never taken back).
    Exact,
}

/// The decoded `PAYMENT-RESPONSE` of an answer, if it has one.
pub fn receipt(response: &reqwest::Response) -> Option<SettlementResponse> {
    response.headers().get("payment-response").and_then(|v| v.to_str().ok()).and_then(|v| decode_header(v).ok())
}

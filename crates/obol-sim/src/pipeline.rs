//! The whole payment pipeline under one seed: a holder pays a merchant by every kind obol takes
//! (transfers, x402 `exact` authorizations, tabs paid by vouchers and by PayWord ticks, top-ups),
//! through the application layer exactly as the HTTP shell calls it (API keys authenticated,
//! then authorized, then decided by the live risk policy with holds and reviews), while an
//! analyst approves and declines held requests, submits new policy bundles (and broken ones),
//! and the store crashes before writes, tears writes and loses acknowledgements.
//!
//! Clients behave as real ones do: a request whose answer was lost in a crash is retried with
//! the same id after the restart, and so are some held and refused ones. The auditor then holds
//! the pipeline to what each client was told:
//! - every ledger transfer a client asked for belongs to a request whose final answer was
//!   success, or "held" and then approved (never one answered with a refusal), and every success
//!   is in the ledger;
//! - an x402 payment answered 402 is never charged by an approval alone;
//! - a tab owes at least every payment acknowledged into it and no payment refused;
//! - the payer's regulatory counters equal a recount from the ledger's own transfers and
//!   escrows, and equal what replaying the log from the disk gives;
//! - the policy that is live after every restart is the last one the API accepted;
//! - every transfer above the holder's step-up threshold (9.00) that moved was approved with the
//!   holder's second factor first, held or not (the sim approves some challenges with recovery
//!   codes and resends with the approval, and refuses the rest);
//! - the signing device's day never passes its limit, and holds at least every device payment
//!   (`exact`, tab escrows) its client was told went through.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64ct::{Base64UrlUnpadded, Encoding};
use ed25519_dalek::{Signer, SigningKey};
use obol_app::App;
use obol_app::Env as _;
use obol_app::auth::Caller;
use obol_app::error::Error;
use obol_app::risk::{HeldKind, ReviewStatus};
use obol_app::tabs::OpenTab;
use obol_app::x402::{PaymentPayload, PaymentRequirements, SCHEME_EXACT, X402_VERSION};
use obol_core::channel::{Commitment, ExactAuthorization, Voucher, payword_chain};
use obol_core::identity::{IdentityCommand, Role, Scopes};
use obol_core::ledger::{AccountFlags, CreateTransferResult, NewAccount, NewTransfer, TransferFlags};
use obol_core::money::Asset;
use obol_core::record::{Op, Record};
use obol_store::{Engine, Node};

use crate::{Disk, Faults, FaultyStore, Prng};

const HOLDER: u128 = 10;
const MERCHANT: u128 = 20;
const ANALYST: u128 = 30;
const DEVICE: u128 = 9;
const PAYER_ACCOUNT: u128 = 1;
const PAYEE_ACCOUNT: u128 = 2;
const FUNDING_ACCOUNT: u128 = 3;
const FUNDS: u128 = 100_000_000;
/// Client-chosen transfer ids are drawn from `TRANSFER_BASE..TRANSFER_BASE + TRANSFER_IDS`.
const TRANSFER_BASE: u128 = 1_000;
const TRANSFER_IDS: u64 = 120;
const TAB_BASE: u128 = 500_000;
const CHAIN: u32 = 64;
const TICK_VALUE: u128 = 7;
/// The holder's step-up policy: payments above 9.00 need its second factor.
const STEP_UP_ABOVE: u128 = 900;
/// The signing device's limits: 25.00 a payment, 300.00 a day.
const DEVICE_PER_PAYMENT: u128 = 2_500;
const DEVICE_PER_DAY: u128 = 30_000;

/// A bundle that holds payments of 10.01 to `limit` USD for review and blocks those above 400.
fn holds_bundle(version: u32, limit_minor: u64) -> String {
    format!(
        "name = \"sim-holds\"\nversion = {version}\neffective_from_s = 0\n\n\
         [[rules]]\nid = \"hold\"\naction = \"review\"\nowner = \"sim@obol\"\n\
         when = \"amount_minor > 1000 && amount_minor <= {limit_minor}\"\n\
         reason_en = \"Held for a look.\"\nreason_ko = \"검토 보류.\"\n\n\
         [[rules]]\nid = \"too-much\"\naction = \"block\"\nowner = \"sim@obol\"\n\
         when = \"amount_minor > 40000\"\nreason_en = \"Too much.\"\nreason_ko = \"너무 많습니다.\"\n"
    )
}

#[expect(clippy::expect_used, reason = "USD at scale 2 is a valid ISO 4217 asset, a constant")]
fn usd() -> Asset {
    Asset::new("USD", 2).expect("USD is ISO 4217")
}

/// What one run did, for the report.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct PipelineSummary {
    /// Requests sent (retries included).
    pub requests: u64,
    /// Answered success.
    pub succeeded: u64,
    /// Answered "held for review".
    pub held: u64,
    /// Answered with a refusal.
    pub refused: u64,
    /// Answers lost in a crash (the client retries).
    pub lost: u64,
    /// Reviews approved.
    pub approved: u64,
    /// Reviews declined.
    pub declined: u64,
    /// Policy bundles the API accepted.
    pub policies_accepted: u64,
    /// Restarts (after injected crashes and on purpose).
    pub restarts: u64,
    /// Payments acknowledged into tabs (vouchers and ticks).
    pub tab_payments: u64,
    /// Step-up challenges the holder approved (then resent with the approval).
    pub stepped_up: u64,
}

/// What the client was last told about a request.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Told {
    Success,
    Held(String),
    Refused(String),
    /// The answer was lost (the engine stopped under it).
    Lost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Transfer,
    Exact,
}

#[derive(Clone, Debug)]
struct Asked {
    kind: Kind,
    amount: u128,
    told: Told,
}

#[derive(Clone, Debug, Default)]
struct TabModel {
    /// The opening's last answer.
    opened: Option<Told>,
    budget: u128,
    /// Top-ups answered success.
    topped: u128,
    /// Top-ups whose answer was lost.
    topped_lost: u128,
    /// Highest cumulative amount acknowledged.
    acked: u128,
    /// Highest cumulative amount sent (acknowledged or lost, never refused).
    sent_max: u128,
    seq: u64,
    committed: bool,
    next_tick: u32,
    settled: bool,
}

struct Booted {
    app: App,
    engine: Engine,
    holder: Caller,
    merchant: Caller,
    analyst: Caller,
}

/// A run's world: the disk, the keys, and what every client was told.
struct World {
    seed: u64,
    prng: Prng,
    disk: Arc<Mutex<Disk>>,
    faults: Faults,
    boots: u64,
    tokens: [String; 3],
    auth: Arc<obol_app::auth::Authenticator>,
    device: SigningKey,
    chain: Vec<[u8; 32]>,
    asked: BTreeMap<u128, Asked>,
    tabs: BTreeMap<u128, TabModel>,
    policy_version: u32,
    summary: PipelineSummary,
    /// The holder's unused recovery codes (its second factor in the simulation).
    recovery: Vec<String>,
    /// Transfers the holder approved with its second factor.
    approved_by_holder: std::collections::BTreeSet<u128>,
    /// The UTC day the run started.
    day: u64,
}

/// What a client is told by an answer: `None` is success, else the error it got.
fn told_of(error: Option<&Error>) -> Told {
    match error {
        None => Told::Success,
        Some(Error::HeldForReview(review)) => Told::Held(review.id.clone()),
        Some(Error::Unavailable | Error::Overloaded) => Told::Lost,
        Some(error) => Told::Refused(error.code().to_string()),
    }
}

impl World {
    /// The tab chain's word at `index`: 0 is the committed root, `CHAIN` the last word.
    #[expect(
        clippy::indexing_slicing,
        reason = "payword_chain(_, CHAIN) has CHAIN + 1 words; every index is at most CHAIN"
    )]
    fn chain_word(&self, index: u32) -> [u8; 32] {
        self.chain[index as usize]
    }

    fn fail(&self, what: String) -> String {
        format!("seed {}: {what} (replay: OBOL_SEED={} cargo test -p obol-sim --test pipeline)", self.seed, self.seed)
    }

    fn count(&mut self, told: &Told) {
        self.summary.requests += 1;
        match told {
            Told::Success => self.summary.succeeded += 1,
            Told::Held(_) => self.summary.held += 1,
            Told::Refused(_) => self.summary.refused += 1,
            Told::Lost => self.summary.lost += 1,
        }
    }

    /// Opens the node on what the disk holds, with faults drawn for this boot.
    fn node(&mut self, faults: Faults) -> Result<Node<FaultyStore>, String> {
        self.boots += 1;
        let store = FaultyStore::new(Arc::clone(&self.disk), self.seed ^ self.boots.wrapping_mul(0x9E37), faults);
        Node::open(store, self.seed).map_err(|e| self.fail(format!("reopening the disk: {e}")))
    }

    /// Starts the server on the disk as `obol serve` does; a start whose own writes crash (the
    /// risk engine's state, say) is started again, as an operator would.
    async fn boot(&mut self) -> Result<Booted, String> {
        for _ in 0..20 {
            match self.boot_once().await? {
                Some(booted) => return Ok(booted),
                None => self.summary.restarts += 1,
            }
        }
        Err(self.fail("twenty starts in a row crashed".into()))
    }

    async fn boot_once(&mut self) -> Result<Option<Booted>, String> {
        let node = self.node(self.faults)?;
        let engine = Engine::start(node);
        let vault = obol_app::vault::Vault::new(&obol_app::vault::Secret::new([5u8; 32]));
        let passkeys = obol_app::passkeys::Passkeys::new("localhost", "http://localhost").map_err(|e| self.fail(e))?;
        let env: Arc<dyn obol_app::Env> = Arc::new(crate::SimEnv::new(self.seed ^ self.boots.wrapping_mul(0x5851)));
        let mut app = App::new(engine.clone(), vault, passkeys)
            .with_instance_id("sim")
            .map_err(|e| self.fail(e))?
            .with_env(Arc::clone(&env));
        let mut policy = obol_risk::policy::Policy::new();
        for text in SHIPPED_POLICY {
            let bundle = obol_risk::policy::Bundle::compile(text).map_err(|e| self.fail(format!("shipped: {e}")))?;
            policy.add(bundle).map_err(|e| self.fail(format!("shipped: {e}")))?;
        }
        app.risk = Arc::new(obol_app::risk::Risk::new(policy, None));
        // Keys checked before are not checked with argon2 again (a speed-up of the simulation
        // only: whether a key is usable, and its principal active, is still asked every time).
        app.auth = Arc::clone(&self.auth);
        // As `obol serve` starts: the risk engine's journaled state, then open challenges.
        let loaded = match app.risk.load(&engine, &*env).await {
            Ok(()) => app.step_up.restore(&engine, env.now_ns()).await.map(|_| ()),
            Err(error) => Err(error),
        };
        match loaded {
            Ok(()) => {}
            Err(Error::Unavailable) => {
                drop(app);
                engine.shutdown();
                return Ok(None);
            }
            Err(error) => return Err(self.fail(format!("starting again after a restart: {error}"))),
        }
        let now = env.now_ns();
        let mut callers = Vec::new();
        for token in &self.tokens {
            let caller = app.auth.authenticate(token, engine.ledger(), now);
            callers.push(caller.map_err(|e| self.fail(format!("a key no longer authenticates: {e:?}")))?);
        }
        let [holder, merchant, analyst]: [Caller; 3] =
            callers.try_into().map_err(|_| self.fail("three callers".into()))?;
        Ok(Some(Booted { app, engine, holder, merchant, analyst }))
    }

    fn restart(&mut self, booted: Booted) {
        let Booted { app, engine, .. } = booted;
        drop(app);
        engine.shutdown();
        self.summary.restarts += 1;
    }

    fn exact_payload(&self, network: obol_core::channel::Network, id: u128, amount: u128) -> PaymentPayload {
        let valid_before = obol_app::SystemEnv.now_s() + 3_600;
        let authorization = ExactAuthorization {
            network,
            transfer_id: id,
            from: PAYER_ACCOUNT,
            to: PAYEE_ACCOUNT,
            amount,
            asset: usd(),
            device_id: DEVICE,
            valid_before_s: valid_before,
        };
        let signature = self.device.sign(&authorization.signed_message()).to_bytes();
        PaymentPayload {
            x402_version: X402_VERSION,
            resource: None,
            accepted: requirements("obol:sim", amount),
            payload: serde_json::json!({
                "from": PAYER_ACCOUNT.to_string(), "device": DEVICE.to_string(), "transfer": id.to_string(),
                "validBefore": valid_before, "signature": Base64UrlUnpadded::encode_string(&signature),
            }),
            extensions: None,
        }
    }

    /// A transfer or an `exact` payment: a fresh id, or a retry of an earlier one with its terms.
    async fn pay(&mut self, booted: &Booted) {
        let id = TRANSFER_BASE + u128::from(self.prng.below(TRANSFER_IDS));
        let (kind, amount) = match self.asked.get(&id) {
            Some(asked) => (asked.kind, asked.amount),
            None => {
                let kind = if self.prng.chance(300) { Kind::Exact } else { Kind::Transfer };
                // Mostly small, some in the held band (10.01 to 20.00), a few blocked.
                let amount = match self.prng.below(10) {
                    0..=5 => u128::from(1 + self.prng.below(900)),
                    6..=8 => u128::from(1_001 + self.prng.below(1_500)),
                    _ => u128::from(40_001 + self.prng.below(5_000)),
                };
                (kind, amount)
            }
        };
        let told = self.send(booted, id, kind, amount).await;
        self.count(&told);
        self.asked.insert(id, Asked { kind, amount, told });
    }

    async fn open_tab(&mut self, booted: &Booted) {
        let tab_id = TAB_BASE + u128::from(self.prng.below(12));
        let budget = match self.tabs.get(&tab_id) {
            Some(tab) => tab.budget,
            None => u128::from(200 + self.prng.below(2_400)),
        };
        let id = tab_id.to_string();
        let budget_text = budget.to_string();
        let ask = OpenTab {
            tab_id: Some(&id),
            payer_account_id: "1",
            payee_account_id: "2",
            budget: &budget_text,
            asset_code: "USD",
            asset_scale: 2,
            device_id: Some("9"),
            timeout_s: 3_600,
        };
        let mut result = obol_app::tabs::open(&booted.app, &booted.holder, ask, None).await.map(|_| ());
        if let Err(Error::RequiresAction(challenge)) = &result
            && self.approve_challenge(booted, &challenge.id).await
        {
            result = obol_app::tabs::open(&booted.app, &booted.holder, ask, Some(&challenge.id)).await.map(|_| ());
        }
        let told = match result {
            Err(Error::TabExists(_)) => Told::Success,
            other => told_of(other.as_ref().err()),
        };
        self.count(&told);
        let tab = self.tabs.entry(tab_id).or_default();
        tab.budget = budget;
        // A retry that is refused does not undo an opening that succeeded before.
        if tab.opened != Some(Told::Success) {
            tab.opened = Some(told);
        }
    }

    /// A voucher, a tick or a top-up into an open tab.
    async fn pay_tab(&mut self, booted: &Booted) {
        let open: Vec<u128> = {
            let ledger = obol_app::read_ledger(&booted.app);
            self.tabs.keys().copied().filter(|id| ledger.tab(*id).is_some_and(|e| !e.tab.closed)).collect()
        };
        let Some(&tab_id) = open.get(self.prng.below(open.len().max(1) as u64) as usize) else { return };
        let network = booted.app.network;
        let roll = self.prng.below(10);
        // What the ledger knows of the tab's chain (an answer lost in a crash may have kept it).
        let chain_at = obol_app::read_ledger(&booted.app)
            .tab(tab_id)
            .and_then(|entry| entry.tab.payword.as_ref().map(|payword| payword.last_index));
        if let (Some(last_index), Some(model)) = (chain_at, self.tabs.get_mut(&tab_id)) {
            model.committed = true;
            model.next_tick = model.next_tick.max(last_index + 1);
        }
        let Some(tab) = self.tabs.get(&tab_id).cloned() else { return };
        if roll == 0 {
            let amount = u128::from(1 + self.prng.below(600));
            let (tab_text, amount_text) = (tab_id.to_string(), amount.to_string());
            let mut result =
                obol_app::tabs::top_up(&booted.app, &booted.holder, &tab_text, &amount_text, None).await.map(|_| ());
            if let Err(Error::RequiresAction(challenge)) = &result
                && self.approve_challenge(booted, &challenge.id).await
            {
                result =
                    obol_app::tabs::top_up(&booted.app, &booted.holder, &tab_text, &amount_text, Some(&challenge.id))
                        .await
                        .map(|_| ());
            }
            let told = told_of(result.as_ref().err());
            self.count(&told);
            if let Some(model) = self.tabs.get_mut(&tab_id) {
                match told {
                    Told::Success => model.topped += amount,
                    Told::Lost => model.topped_lost += amount,
                    Told::Held(_) | Told::Refused(_) => {}
                }
            }
            return;
        }
        if tab_id % 2 == 0 && !tab.committed {
            let message =
                Commitment::signed_message(&network, tab_id, PAYEE_ACCOUNT, &self.chain_word(0), CHAIN, TICK_VALUE);
            let commitment = Commitment {
                tab_id,
                payee_id: PAYEE_ACCOUNT,
                network,
                root: self.chain_word(0),
                length: CHAIN,
                value_per_tick: TICK_VALUE,
                signature: self.device.sign(&message).to_bytes(),
            };
            let text = Base64UrlUnpadded::encode_string(&commitment.encode());
            let result = obol_app::tabs::commit(&booted.app, &booted.holder, &tab_id.to_string(), &text).await;
            if result.is_ok()
                && let Some(model) = self.tabs.get_mut(&tab_id)
            {
                model.committed = true;
                model.next_tick = model.next_tick.max(1);
            }
            return;
        }
        // Tick tabs are paid by ticks, the others by vouchers; a payee sometimes re-presents.
        let (result, cumulative) = if tab.committed {
            let index = (tab.next_tick + u32::from(self.prng.chance(200))).min(CHAIN - 1);
            let word: String = self.chain_word(index).iter().map(|b| format!("{b:02x}")).collect();
            let result =
                obol_app::tabs::pay_tick(&booted.app, &booted.merchant, &tab_id.to_string(), index, &word).await;
            if let Some(model) = self.tabs.get_mut(&tab_id) {
                model.next_tick = model.next_tick.max(index + 1);
            }
            (result, u128::from(index) * TICK_VALUE)
        } else {
            let seq = tab.seq + 1;
            let cumulative = tab.acked.max(tab.sent_max) + u128::from(1 + self.prng.below(90));
            let message = Voucher::signed_message(&network, tab_id, PAYEE_ACCOUNT, cumulative, seq);
            let signature = self.device.sign(&message).to_bytes();
            let voucher = Voucher { tab_id, payee_id: PAYEE_ACCOUNT, cumulative, seq, signature };
            let text = Base64UrlUnpadded::encode_string(&voucher.encode());
            let result = obol_app::tabs::pay_voucher(&booted.app, &booted.merchant, &tab_id.to_string(), &text).await;
            if let Some(model) = self.tabs.get_mut(&tab_id) {
                model.seq = seq;
            }
            (result, cumulative)
        };
        let told = match &result {
            Ok((_, _, true)) => Told::Refused("stale".into()),
            Ok(_) => Told::Success,
            Err(error) => told_of(Some(error)),
        };
        self.count(&told);
        if let Some(model) = self.tabs.get_mut(&tab_id) {
            match told {
                Told::Success => {
                    model.acked = model.acked.max(cumulative);
                    model.sent_max = model.sent_max.max(cumulative);
                    self.summary.tab_payments += 1;
                }
                Told::Lost => model.sent_max = model.sent_max.max(cumulative),
                Told::Held(_) | Told::Refused(_) => {}
            }
        }
    }

    async fn settle_tab(&mut self, booted: &Booted) {
        let Some(&tab_id) = self.tabs.keys().nth(self.prng.below(self.tabs.len().max(1) as u64) as usize) else {
            return;
        };
        let result = obol_app::tabs::settle(&booted.app, &booted.merchant, &tab_id.to_string()).await.map(|_| ());
        if result.is_ok()
            && let Some(model) = self.tabs.get_mut(&tab_id)
        {
            model.settled = true;
        }
    }

    async fn decide(&mut self, booted: &Booted) {
        let pending = obol_app::reviews::reviews(&booted.app, &booted.analyst, ReviewStatus::Pending.as_str(), 100)
            .unwrap_or_default();
        let Some(review) = pending.get(self.prng.below(pending.len().max(1) as u64) as usize) else { return };
        let decision = if self.prng.chance(600) { "approve" } else { "decline" };
        let result =
            obol_app::reviews::decide_review(&booted.app, &booted.analyst, review.id.clone(), decision, None).await;
        if result.is_ok() {
            if decision == "approve" {
                self.summary.approved += 1;
            } else {
                self.summary.declined += 1;
            }
        }
    }

    async fn change_policy(&mut self, booted: &Booted) -> Result<(), String> {
        if self.prng.chance(200) {
            // A broken bundle is refused and changes nothing.
            let broken = "name = \"sim-holds\"\nversion = 999\n[[rules]]\nwhen = \"amount_minor >\"\n";
            let result = obol_app::reviews::submit_policy(&booted.app, &booted.analyst, broken.as_bytes(), false).await;
            if result.is_ok() {
                return Err(self.fail("a bundle that does not compile was accepted".into()));
            }
            return Ok(());
        }
        let version = self.policy_version + 1;
        let text = holds_bundle(version, 1_500 + self.prng.below(1_500));
        match obol_app::reviews::submit_policy(&booted.app, &booted.analyst, text.as_bytes(), false).await {
            Ok(_) => {
                self.policy_version = version;
                self.summary.policies_accepted += 1;
            }
            // Lost in a crash: whether it is live is what the log says; read it back at the check.
            Err(Error::Unavailable | Error::Overloaded) => {}
            Err(error) => return Err(self.fail(format!("a valid bundle was refused: {error}"))),
        }
        Ok(())
    }

    /// After a restart: the live policy is the last accepted one (or a later one whose answer
    /// was lost, which the log kept).
    fn check_policy(&mut self, booted: &Booted) -> Result<(), String> {
        let policy = obol_app::reviews::policy(&booted.app, &booted.analyst).map_err(|e| self.fail(e.to_string()))?;
        let live = policy.in_force.iter().find(|b| b.name == "sim-holds").map_or(0, |b| b.version);
        if live < self.policy_version {
            return Err(self
                .fail(format!("after a restart sim-holds@{live} is live, but @{} was accepted", self.policy_version)));
        }
        self.policy_version = live;
        Ok(())
    }

    /// The signing device's day: never past its limit, and holding at least every device payment
    /// (`exact`, a tab's opening or top-up) its client was told went through today.
    fn audit_device_day(&self, ledger: &obol_core::ledger::Ledger) -> Result<(), String> {
        let Some(device) = ledger.identity().device(DEVICE) else {
            return Err(self.fail("the signing device is gone".into()));
        };
        if device.spent_today > DEVICE_PER_DAY {
            return Err(self.fail(format!("the device spent {} of a {DEVICE_PER_DAY} day", device.spent_today)));
        }
        let today = obol_core::identity::utc_day(obol_app::SystemEnv.now_ns());
        if device.spent_day != today || self.day != today {
            // The run crossed midnight: the day's count restarted, and told amounts span two days.
            return Ok(());
        }
        let exact: u128 = self
            .asked
            .values()
            .filter(|asked| asked.kind == Kind::Exact && asked.told == Told::Success)
            .map(|asked| asked.amount)
            .sum();
        let escrowed: u128 = self
            .tabs
            .values()
            .map(|tab| if tab.opened == Some(Told::Success) { tab.budget + tab.topped } else { 0 })
            .sum();
        if device.spent_today < exact + escrowed {
            return Err(self.fail(format!(
                "the device's day holds {}, but its clients were told {exact} in exact payments and {escrowed} in escrows went through",
                device.spent_today
            )));
        }
        Ok(())
    }

    /// The auditor: what the ledger holds against what every client was told.
    fn audit(&self, booted: &Booted) -> Result<(), String> {
        let ledger = obol_app::read_ledger(&booted.app);
        let reviews = obol_app::reviews::reviews(&booted.app, &booted.analyst, "all", 500).unwrap_or_default();
        let review_of = |id: &str| reviews.iter().find(|r| r.id == id);
        let mut recount = 0u128;
        for (id, asked) in &self.asked {
            let moved = ledger.transfer(*id);
            if let Some(transfer) = moved {
                recount += transfer.amount;
                if transfer.amount != asked.amount {
                    return Err(self.fail(format!("transfer {id} moved {} for {}", transfer.amount, asked.amount)));
                }
            }
            let allowed = match &asked.told {
                Told::Success => {
                    if moved.is_none() {
                        return Err(
                            self.fail(format!("{:?} {id} was answered success and is not in the ledger", asked.kind))
                        );
                    }
                    true
                }
                Told::Lost => true,
                // A held transfer runs on approval; an `exact` payment answered 402 never does.
                Told::Held(review) => {
                    asked.kind == Kind::Transfer
                        && review_of(review).is_some_and(|r| r.status == ReviewStatus::Approved)
                }
                Told::Refused(_) => false,
            };
            if moved.is_some() && !allowed {
                return Err(self.fail(format!(
                    "{:?} {id} of {} moved money, but its client was told {:?}",
                    asked.kind, asked.amount, asked.told
                )));
            }
            // Above the holder's threshold only the holder's second factor lets money move, held
            // or not; an x402 payment cannot carry its approval, so it never moves.
            let guarded_ok = asked.kind == Kind::Transfer && self.approved_by_holder.contains(id);
            if moved.is_some() && asked.amount > STEP_UP_ABOVE && !guarded_ok {
                return Err(self.fail(format!(
                    "{:?} {id} of {} moved without the holder's second factor (told {:?})",
                    asked.kind, asked.amount, asked.told
                )));
            }
        }
        self.audit_device_day(&ledger)?;
        for (tab_id, model) in &self.tabs {
            let Some(entry) = ledger.tab(*tab_id) else {
                if model.opened == Some(Told::Success) {
                    return Err(self.fail(format!("tab {tab_id} was opened and is gone")));
                }
                continue;
            };
            let opened_ok = match &model.opened {
                Some(Told::Success | Told::Lost) => true,
                Some(Told::Held(review)) => review_of(review).is_some_and(|r| r.status == ReviewStatus::Approved),
                Some(Told::Refused(_)) | None => false,
            };
            if !opened_ok {
                return Err(self.fail(format!("tab {tab_id} opened, but its client was told {:?}", model.opened)));
            }
            let tab = &entry.tab;
            if tab.cumulative < model.acked || tab.cumulative > model.sent_max {
                return Err(self.fail(format!(
                    "tab {tab_id} owes {}, but {} was acknowledged and at most {} sent",
                    tab.cumulative, model.acked, model.sent_max
                )));
            }
            let escrow_min = model.budget + model.topped;
            let escrow_max = escrow_min + model.topped_lost + held_topups_bound(&reviews, *tab_id);
            if tab.escrow < escrow_min || tab.escrow > escrow_max {
                return Err(
                    self.fail(format!("tab {tab_id} escrows {} (expected {escrow_min}..={escrow_max})", tab.escrow))
                );
            }
            recount += tab.escrow;
        }
        // Counters: the core's count of the payer's month, against a recount from the ledger.
        let counters = ledger.payer_counters(PAYER_ACCOUNT, obol_app::SystemEnv.now_ns());
        if counters.month_total != recount {
            return Err(self.fail(format!(
                "the payer's month counts {}, the ledger's own transfers and escrows {recount}",
                counters.month_total
            )));
        }
        ledger.check_invariants().map_err(|e| self.fail(format!("ledger invariant: {e}")))?;
        Ok(())
    }

    /// Replaying the disk gives the counters the live node had.
    fn check_replay(&mut self, booted: &Booted) -> Result<(), String> {
        let live = obol_app::read_ledger(&booted.app).payer_counters(PAYER_ACCOUNT, booted.app.env.now_ns());
        let replayed = self.node(Faults::NONE)?;
        let counters = replayed
            .ledger()
            .read()
            .map_err(|_| self.fail("poisoned".into()))?
            .payer_counters(PAYER_ACCOUNT, obol_app::SystemEnv.now_ns());
        if counters != live {
            return Err(self.fail(format!("replaying the log counts {counters:?}, the live node {live:?}")));
        }
        Ok(())
    }
}

/// Top-ups held for review on `tab_id` that an approval may have run (their amounts).
fn held_topups_bound(reviews: &[obol_app::views::ReviewDto], tab_id: u128) -> u128 {
    let tab = tab_id.to_string();
    reviews
        .iter()
        .filter(|r| {
            r.kind == HeldKind::TabTopup
                && r.tab_id.as_deref() == Some(tab.as_str())
                && r.status == ReviewStatus::Approved
        })
        .filter_map(|r| r.amount.parse::<u128>().ok())
        .sum()
}

fn requirements(network: &str, amount: u128) -> PaymentRequirements {
    let mut extra = serde_json::Map::new();
    extra.insert("assetScale".into(), 2.into());
    PaymentRequirements {
        scheme: SCHEME_EXACT.into(),
        network: network.into(),
        amount: amount.to_string(),
        asset: "USD".into(),
        pay_to: PAYEE_ACCOUNT.to_string(),
        max_timeout_seconds: 60,
        extra,
    }
}

fn transfer(id: u128, amount: u128) -> NewTransfer {
    NewTransfer {
        id,
        debit_account_id: PAYER_ACCOUNT,
        credit_account_id: PAYEE_ACCOUNT,
        amount,
        pending_id: 0,
        user_data_128: 0,
        user_data_64: 0,
        user_data_32: 0,
        timeout_s: 0,
        asset: Some(usd()),
        code: 1,
        flags: TransferFlags(0),
    }
}

/// The bundles `obol serve` ships, live in every run.
const SHIPPED_POLICY: [&str; 5] = [
    include_str!("../../../policy/eu-psd2-sca.toml"),
    include_str!("../../../policy/fraud-signals.toml"),
    include_str!("../../../policy/holder-caps.toml"),
    include_str!("../../../policy/kr-carrier-micropayments.toml"),
    include_str!("../../../policy/us-reg-e.toml"),
];

/// The parties, accounts, funds and keys, written before the first boot.
fn setup(world: &mut World) -> Result<(), String> {
    let mut node = world.node(Faults::NONE)?;
    let env = crate::SimEnv::new(world.seed);
    let now = env.now_ns();
    let fail = |e: obol_store::StoreError| format!("setup: {e}");
    let account = |id: u128, owner_id: u128, flags: u16| NewAccount {
        id,
        owner_id,
        user_data_128: 0,
        user_data_64: 0,
        user_data_32: 0,
        asset: usd(),
        code: 1,
        flags: AccountFlags(flags),
    };
    let principal = |id: u128, role: Role, name: &str| {
        Op::Identity(IdentityCommand::CreatePrincipal { id, role, name: name.into() })
    };
    let ops = vec![
        principal(HOLDER, Role::Holder, "holder"),
        principal(MERCHANT, Role::Merchant, "merchant"),
        principal(ANALYST, Role::Analyst, "analyst"),
        Op::Identity(IdentityCommand::RegisterDevice {
            id: DEVICE,
            holder_id: HOLDER,
            kid: "sim-device".into(),
            public_key: world.device.verifying_key().to_bytes(),
            limits: Some(obol_core::identity::DeviceLimits {
                asset: usd(),
                per_payment: DEVICE_PER_PAYMENT,
                per_day: DEVICE_PER_DAY,
            }),
        }),
        Op::CreateAccounts(vec![
            account(PAYER_ACCOUNT, HOLDER, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            account(PAYEE_ACCOUNT, MERCHANT, 0),
            account(FUNDING_ACCOUNT, 0, 0),
        ]),
        Op::CreateTransfers(vec![NewTransfer {
            id: 1,
            debit_account_id: FUNDING_ACCOUNT,
            credit_account_id: PAYER_ACCOUNT,
            ..transfer(1, FUNDS)
        }]),
    ];
    node.commit(&Record { now_ns: now, ops }).map_err(fail)?;
    for (token, id) in world.tokens.iter_mut().zip([HOLDER, MERCHANT, ANALYST]) {
        *token = obol_app::auth::issue_key_offline(&mut node, id, Scopes(Scopes::ALL), 0, &env).map_err(fail)?;
    }
    Ok(())
}

/// Runs `steps` requests under `seed` with `faults`, auditing after every restart and at the end.
pub async fn run(seed: u64, steps: u32, faults: Faults) -> Result<PipelineSummary, String> {
    let mut prng = Prng::new(seed);
    let device = SigningKey::from_bytes(&{
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&prng.next_u64().to_le_bytes());
        bytes
    });
    let chain = payword_chain([seed as u8; 32], CHAIN);
    let mut world = World {
        seed,
        prng,
        disk: Arc::default(),
        faults,
        boots: 0,
        tokens: Default::default(),
        auth: Arc::default(),
        device,
        chain,
        asked: BTreeMap::new(),
        tabs: BTreeMap::new(),
        policy_version: 0,
        summary: PipelineSummary::default(),
        recovery: Vec::new(),
        approved_by_holder: std::collections::BTreeSet::new(),
        day: obol_core::identity::utc_day(obol_app::SystemEnv.now_ns()),
    };
    setup(&mut world)?;
    // The holder guards its payments with a step-up policy and a second factor (without faults:
    // this is the setup, not what is under test).
    let faults = std::mem::replace(&mut world.faults, Faults::NONE);
    let booted = world.boot().await?;
    world.guard_holder(&booted).await?;
    world.restart(booted);
    world.faults = faults;
    let mut booted = world.boot().await?;
    for _ in 0..steps {
        if booted.engine.is_stopped() || world.prng.chance(15) {
            world.restart(booted);
            booted = world.boot().await?;
            world.audit(&booted)?;
            world.check_policy(&booted)?;
            world.check_replay(&booted)?;
            world.retry_lost(&booted).await;
            continue;
        }
        match world.prng.below(100) {
            0..=39 => world.pay(&booted).await,
            40..=49 => world.open_tab(&booted).await,
            50..=79 => world.pay_tab(&booted).await,
            80..=83 => world.settle_tab(&booted).await,
            84..=95 => world.decide(&booted).await,
            _ => world.change_policy(&booted).await?,
        }
    }
    // The end: a clean restart, every lost answer retried, and the last audit.
    world.restart(booted);
    world.faults = Faults::NONE;
    booted = world.boot().await?;
    world.retry_lost(&booted).await;
    world.audit(&booted)?;
    world.check_policy(&booted)?;
    world.check_replay(&booted)?;
    world.restart(booted);
    Ok(world.summary)
}

impl World {
    /// Sends a transfer or an `exact` payment (a first try or a retry with the same id and terms)
    /// and answers what its client is told.
    /// Asked for the holder's second factor: most of the time the holder approves the challenge
    /// with a recovery code (while it has one) and the client resends with the approval; else
    /// the client gives up. Answers whether it was approved.
    async fn approve_challenge(&mut self, booted: &Booted, challenge_id: &str) -> bool {
        if !self.prng.chance(800) {
            return false;
        }
        let Some(code) = self.recovery.pop() else { return false };
        let approved =
            obol_app::stepup::approve(&booted.app, &booted.holder, challenge_id, None, Some(&code), None).await;
        if approved.is_ok() {
            self.summary.stepped_up += 1;
        }
        approved.is_ok()
    }

    /// The holder sets its step-up policy (payments above 9.00) and enrols TOTP, keeping the
    /// recovery codes as the factor the simulation approves challenges with.
    async fn guard_holder(&mut self, booted: &Booted) -> Result<(), String> {
        let holder = HOLDER.to_string();
        let above = STEP_UP_ABOVE.to_string();
        let ask = obol_app::stepup::PolicyAsk { above: Some(("USD", 2, &above)), new_payee: false, new_device: false };
        obol_app::stepup::set_step_up(&booted.app, &booted.holder, &holder, ask, None)
            .await
            .map_err(|e| self.fail(format!("setting the step-up policy: {e}")))?;
        let enrollment = obol_app::stepup::enroll_totp(&booted.app, &booted.holder, &holder, None)
            .await
            .map_err(|e| self.fail(format!("enrolling TOTP: {e}")))?;
        let seed = totp_rs::Secret::try_from_base32(&enrollment.secret_base32)
            .map_err(|e| self.fail(format!("the TOTP seed: {e:?}")))?
            .as_ref()
            .to_vec();
        let code =
            totp_rs::Builder::new().with_secret(seed).build_noncompliant().generate(booted.app.env.now_s()).to_string();
        self.recovery = obol_app::stepup::confirm_totp(&booted.app, &booted.holder, &holder, Some(&code))
            .await
            .map_err(|e| self.fail(format!("confirming TOTP: {e}")))?;
        Ok(())
    }

    async fn send(&mut self, booted: &Booted, id: u128, kind: Kind, amount: u128) -> Told {
        match kind {
            Kind::Transfer => {
                let event = transfer(id, amount);
                let mut answer = obol_app::transfers::pay(&booted.app, &booted.holder, vec![event], None).await;
                if let Err(Error::RequiresAction(challenge)) = &answer
                    && self.approve_challenge(booted, &challenge.id).await
                {
                    self.approved_by_holder.insert(id);
                    answer =
                        obol_app::transfers::pay(&booted.app, &booted.holder, vec![event], Some(&challenge.id)).await;
                }
                match answer {
                    Ok(results) => match results.first() {
                        Some(CreateTransferResult::Ok | CreateTransferResult::Exists) => Told::Success,
                        Some(other) => Told::Refused(format!("{other:?}")),
                        None => Told::Refused("empty".into()),
                    },
                    Err(error) => told_of(Some(&error)),
                }
            }
            Kind::Exact => {
                let payment = self.exact_payload(booted.app.network, id, amount);
                let requirements = payment.accepted.clone();
                let outcome = match obol_app::x402::verify(&booted.app, &payment, &requirements).await {
                    Ok(prepared) => obol_app::x402::settle(&booted.app, prepared).await,
                    Err(refusal) => Err(refusal),
                };
                match outcome {
                    Ok(_) => Told::Success,
                    // The shell answers 402 to all of these; the code says why.
                    Err(refusal) if refusal.code == "unavailable" || refusal.code == "overloaded" => Told::Lost,
                    // A retry of a payment that went through (its answer perhaps lost): the
                    // authorization was spent by it. After any other answer it is a refusal.
                    Err(refusal) if refusal.code == "authorization_used" => match self.asked.get(&id) {
                        Some(asked) if matches!(asked.told, Told::Success | Told::Lost) => Told::Success,
                        _ => Told::Refused(refusal.code),
                    },
                    Err(refusal) => Told::Refused(refusal.code),
                }
            }
        }
    }

    /// Clients whose answer was lost send the same request again (same id, same terms).
    async fn retry_lost(&mut self, booted: &Booted) {
        let lost: Vec<u128> =
            self.asked.iter().filter(|(_, asked)| asked.told == Told::Lost).map(|(id, _)| *id).collect();
        for id in lost {
            if booted.engine.is_stopped() {
                return;
            }
            let Some(asked) = self.asked.get(&id).cloned() else { continue };
            let told = self.send(booted, id, asked.kind, asked.amount).await;
            self.count(&told);
            if let Some(entry) = self.asked.get_mut(&id) {
                entry.told = told;
            }
        }
    }
}

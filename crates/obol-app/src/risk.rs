//! Risk on the payment paths: every payment a holder or merchant makes (transfers, tab opens and
//! top-ups, and voucher streams at checkpoints) is decided by the risk engine before the ledger
//! sees it. `allow` goes on; `step_up` asks the holder to approve with a second factor through
//! the step-up challenge flow (bound to the amount and payee); `block` refuses with the reason;
//! `review` holds the request, unexecuted, in the review queue, where an analyst approves it (it
//! runs then, as first asked) or declines it. Decided reviews become labels for training.
//!
//! A voucher stream cannot stop for a second factor, so at a checkpoint (the tab's first payment
//! and each further quarter of its budget) `step_up` and `review` both pause the tab for an
//! analyst: what was paid stays owed, no more is accepted until the review is approved, and a
//! declined review settles the tab.
//!
//! The live policy can be replaced without a restart, from the API or a watched directory; every
//! change, and every refused bundle, is recorded with who, what, when and a diff. A candidate
//! policy can run in shadow beside it.
//!
//! Review items, change records and the engine's snapshot are kept as store metadata
//! (`risk/review/<id>`, `risk/policy-change/<seq>`, `risk/snapshot`).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use base64ct::{Base64UrlUnpadded, Encoding};
use obol_core::identity::{Role, Scopes};
use obol_core::ledger::Ledger;
use obol_core::money::Asset;
use obol_core::record::{Op, Record};
use obol_risk::engine::{Assessment, RiskEngine, ShadowReport};
use obol_risk::features::{DEFAULT_CAPACITY, Event, FEATURE_NAMES};
use obol_risk::model::Model;
use obol_risk::policy::{Action, Bundle, Facts, Policy};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::App;
use crate::auth::{Caller, Via};
use crate::authz::{need_role, need_scope};
use crate::error::Error;
use crate::views::contributions;
pub use crate::views::{Contribution, HeldKind, Outcome, ReviewDto, ReviewStatus, RiskDto};

/// Reviews listed per page at most.
pub(crate) const REVIEWS_PAGE_MAX: usize = 500;
/// Open reviews at most; past it new holds are refused as overloaded rather than dropped.
pub(crate) const REVIEWS_OPEN_MAX: usize = 100_000;
/// Policy change records kept in memory for the API (all are in the store).
pub(crate) const CHANGES_MAX: usize = 10_000;
/// Largest policy bundle accepted.
pub(crate) const BUNDLE_BYTES_MAX: usize = 256 * 1024;

pub(crate) const REVIEW_PREFIX: &str = "risk/review/";
pub(crate) const CHANGE_PREFIX: &str = "risk/policy-change/";
pub(crate) const SNAPSHOT_KEY: &str = "risk/snapshot";
/// Opens a snapshot that names the greatest label key it counted (then its length, u32 LE, and
/// the key), before the engine's own bytes.
const SNAPSHOT_HEADER: &[u8; 8] = b"OBRLBL01";

/// A stored snapshot's engine bytes and the greatest label key it counted.
fn split_snapshot(bytes: &[u8]) -> (&[u8], Option<String>) {
    let Some(rest) = bytes.strip_prefix(SNAPSHOT_HEADER.as_slice()) else { return (bytes, None) };
    let length = rest.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_le_bytes).unwrap_or(0) as usize;
    let key = rest.get(4..4 + length).and_then(|k| std::str::from_utf8(k).ok()).map(str::to_string);
    let features = rest.get(4 + length..).unwrap_or_default();
    (features, key.filter(|k| !k.is_empty()))
}
pub(crate) const NETWORK_KEY: &str = "risk/network-key";
pub(crate) const LIMIT_PREFIX: &str = "risk/monthly-limit/";
/// Bundles added while serving, by `name@version`: live again after a restart.
pub(crate) const BUNDLE_PREFIX: &str = "risk/policy-bundle/";
/// Per open tab, its last checkpoint: `<quarter>:<paid then>`.
pub(crate) const CHECKPOINT_PREFIX: &str = "risk/checkpoint/";
/// The candidate bundle of the shadow run, while one runs.
pub(crate) const SHADOW_KEY: &str = "risk/policy-shadow";

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredReview {
    /// The credential that asked: `key:<key id>` or `device:<device id>` (absent in reviews held
    /// before it was recorded: those re-check the principal only).
    #[serde(default)]
    pub(crate) via: Option<String>,
    /// The network the request came from (the server's keyed hash, decimal), for the label a
    /// decline makes (absent in reviews held before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) network: Option<String>,
    pub(crate) review: ReviewDto,
    /// The held operation, as a record (base64url).
    pub(crate) op: String,
    /// Whether approval runs `op` (the client was told "held": 202). When false (x402, whose
    /// client was told 402 and got nothing), approval runs nothing: it lets the payer's retry of
    /// the very same payment through without a second decision.
    #[serde(default = "runs_by_default")]
    pub(crate) runs: bool,
    /// Payments the op makes, (paying account, amount) as decimal text, for the counters.
    pub(crate) payments: Vec<[String; 2]>,
}

pub(crate) fn runs_by_default() -> bool {
    true
}

/// The held transfers of a stored review, if its operation is a transfer batch.
pub(crate) fn held_events(stored: &StoredReview) -> Option<Vec<obol_core::ledger::NewTransfer>> {
    match held_op(stored)? {
        Op::CreateTransfers(events) => Some(events),
        _ => None,
    }
}

/// The operation a stored review holds.
pub(crate) fn held_op(stored: &StoredReview) -> Option<Op> {
    let bytes = Base64UrlUnpadded::decode_vec(&stored.op).ok()?;
    Record::decode(&bytes).ok()?.ops.into_iter().next()
}

/// Whether a stored review holds the opening `command` asks for: the same terms, whatever escrow
/// transfer id each request drew.
pub(crate) fn same_opening(stored: &StoredReview, command: &obol_core::channel::TabCommand) -> bool {
    use obol_core::channel::TabCommand;
    let held = held_op(stored);
    let terms = |command: &TabCommand| match *command {
        TabCommand::Open {
            tab_id, payer_account_id, payee_account_id, device_id, budget, asset, timeout_s, ..
        } => Some((tab_id, payer_account_id, payee_account_id, device_id, budget, asset, timeout_s)),
        _ => None,
    };
    match held {
        Some(Op::Tab(held)) => terms(&held).is_some() && terms(&held) == terms(command),
        _ => false,
    }
}

/// A held request's fate from its review: waiting, declined, or approved; an approval that found
/// the payer no longer allowed (`refused: ...`) is as final as a decline.
pub(crate) fn fate(stored: &StoredReview, review_id: String) -> HoldOf {
    let outcome = stored.review.outcome.as_deref().unwrap_or_default();
    let refused = outcome.iter().any(|o| matches!(o, Outcome::Refused(_)));
    // What the ledger answered when the approval ran it, if it did not take it: that run was
    // the request's one run, so a retry never runs what it refused (the account funded since,
    // say).
    let failed = outcome.iter().find(|o| !o.ran()).filter(|_| stored.runs);
    match stored.review.status {
        ReviewStatus::Pending | ReviewStatus::Deciding => HoldOf::Pending(Box::new(stored.review.clone())),
        ReviewStatus::Declined => HoldOf::Declined(review_id),
        ReviewStatus::Approved if refused => HoldOf::Declined(review_id),
        ReviewStatus::Approved => match failed {
            Some(code) => HoldOf::Refused(review_id, String::from(code.clone())),
            None => HoldOf::Approved,
        },
    }
}

/// What a request meets when a review holds one of its transfer ids: a held request has one
/// fate, and every retry is answered with it.
pub enum HoldOf {
    /// No review holds these ids.
    Free,
    /// The review waits: the retry gets the same hold back.
    Pending(Box<ReviewDto>),
    /// An analyst declined it: it never runs.
    Declined(String),
    /// An analyst approved it and the ledger refused it when it ran (the code): it never runs.
    Refused(String, String),
    /// An analyst approved it: the same payment goes on without a second decision (it ran at
    /// approval, and the ledger answers that it exists; or it waited for this retry).
    Approved,
    /// A review holds one of these ids for another payment or another payer.
    Taken(u128),
}

/// A policy change, as recorded.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct PolicyChangeDto {
    /// Sequence number, from 1.
    pub seq: u64,
    /// When, ns since the Unix epoch.
    pub at_ns: String,
    /// Who: `principal:<id>` for the API, `file:<path>` for the policy directory.
    pub who: String,
    /// `added`, `refused`, `shadow_started`, `shadow_stopped`.
    pub what: String,
    /// `name@version` of the bundle.
    pub bundle: String,
    /// Line diff against the bundle's previous version (`+`/`-`/` ` prefixes), or its whole text
    /// when it is new.
    pub diff: String,
    /// Why it was refused.
    pub error: Option<String>,
}

/// Bundles in force, as the API lists them.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PolicyDto {
    /// Counts up each time the live policy changes.
    pub generation: u64,
    /// In force now, `name@version` each.
    pub in_force: Vec<BundleDto>,
    /// Whether a candidate runs in shadow.
    pub shadow: bool,
    /// The directory watched for bundles, if any.
    pub directory: Option<String>,
    /// Decisions so far, by action.
    pub decided: DecidedDto,
}

/// How many decisions the live policy made, by action.
#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct DecidedDto {
    /// Allowed.
    pub allow: u64,
    /// Asked for a second factor.
    pub step_up: u64,
    /// Held for review.
    pub review: u64,
    /// Blocked.
    pub block: u64,
}

impl DecidedDto {
    /// Labels the engine's counts, which follow [`obol_risk::policy::Action::ORDER`].
    pub fn from_counts(counts: [u64; 4]) -> DecidedDto {
        use obol_risk::policy::Action;
        let mut decided = DecidedDto::default();
        for (action, count) in Action::ORDER.iter().zip(counts) {
            match action {
                Action::Allow => decided.allow = count,
                Action::StepUp => decided.step_up = count,
                Action::Review => decided.review = count,
                Action::Block => decided.block = count,
            }
        }
        decided
    }
}

/// One bundle in force.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BundleDto {
    /// Name.
    pub name: String,
    /// Version.
    pub version: u32,
    /// In force from, seconds since the Unix epoch.
    pub effective_from_s: u64,
    /// What it is for.
    pub description: String,
    /// Rule ids, in file order.
    pub rules: Vec<String>,
}

/// A shadow run's report.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ShadowDto {
    /// The candidate's bundles in force.
    pub candidate: Vec<String>,
    /// Events both policies decided.
    pub evaluated: u64,
    /// Events the candidate would have decided otherwise.
    pub differed: u64,
    /// Per change of action, how many: `allow->step_up` and so on.
    pub changes: BTreeMap<String, u64>,
    /// The latest differences, oldest first.
    pub differences: Vec<DifferenceDto>,
}

/// One event decided differently.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DifferenceDto {
    /// Seconds since the Unix epoch.
    pub at_s: u64,
    /// Paying account.
    pub payer_account_id: String,
    /// Account paid.
    pub payee_account_id: String,
    /// Minor units.
    pub amount: String,
    /// The live decision: action and rule.
    pub live: String,
    /// The candidate's decision: action and rule.
    pub candidate: String,
}

pub(crate) fn decision_text(decision: &obol_risk::policy::Decision) -> String {
    match &decision.rule {
        Some(rule) => format!("{} ({rule})", decision.action.as_str()),
        None => decision.action.as_str().into(),
    }
}

impl From<ShadowReport> for ShadowDto {
    fn from(report: ShadowReport) -> ShadowDto {
        ShadowDto {
            candidate: report.candidate,
            evaluated: report.evaluated,
            differed: report.differed,
            changes: report
                .changes
                .iter()
                .map(|(live, candidate, n)| (format!("{}->{}", live.as_str(), candidate.as_str()), *n))
                .collect(),
            differences: report
                .differences
                .iter()
                .map(|d| DifferenceDto {
                    at_s: d.at_s,
                    payer_account_id: d.payer.to_string(),
                    payee_account_id: d.payee.to_string(),
                    amount: d.amount_minor.to_string(),
                    live: decision_text(&d.live),
                    candidate: decision_text(&d.candidate),
                })
                .collect(),
        }
    }
}

/// One payment a request would make, as the risk engine is asked about it.
#[derive(Clone, Copy, Debug)]
pub struct Payment {
    /// The transfer it makes, when it is one (0: a tab's open, top-up or checkpoint).
    pub transfer_id: u128,
    /// The account debited.
    pub payer_account_id: u128,
    /// The account credited.
    pub payee_account_id: u128,
    /// How much, in the accounts' units.
    pub amount: u128,
    /// The accounts' asset.
    pub asset: Asset,
}

/// What kind of payment the risk engine decides and a step-up approval binds: rules see it as
/// `event_kind`, and an approval's digest covers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentKind {
    /// Transfers (`POST /v1/transfers`, an x402 `exact` payment).
    Transfer,
    /// A tab's opening: its escrow.
    TabOpen,
    /// A tab's top-up.
    TabTopup,
    /// What a voucher stream paid since its last checkpoint.
    TabCheckpoint,
    /// A payee giving back (part of) a payment (`POST /v1/transfers/{id}/refunds`).
    Refund,
}

impl PaymentKind {
    /// The name rules see (`event_kind`) and approvals bind.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentKind::Transfer => "transfer",
            PaymentKind::TabOpen => "tab_open",
            PaymentKind::TabTopup => "tab_topup",
            PaymentKind::TabCheckpoint => "tab_checkpoint",
            PaymentKind::Refund => "refund",
        }
    }

    /// What a review holding a request of this kind holds.
    pub fn held(self) -> HeldKind {
        match self {
            PaymentKind::Transfer | PaymentKind::Refund => HeldKind::Transfers,
            PaymentKind::TabOpen => HeldKind::TabOpen,
            PaymentKind::TabTopup => HeldKind::TabTopup,
            PaymentKind::TabCheckpoint => HeldKind::TabCheckpoint,
        }
    }
}

/// A request to hold for review.
pub(crate) struct Held<'a> {
    /// What it holds.
    pub kind: HeldKind,
    /// The payment the decision was about.
    pub payment: &'a Payment,
    /// The tab, for tab requests.
    pub tab_id: Option<u128>,
    /// The decision that held it.
    pub assessment: &'a Assessment,
    /// What runs on approval (a checkpoint's op never runs: approval resumes the tab).
    pub op: Op,
    /// The payments it makes, (paying account, amount), for the counters on approval.
    pub payments: &'a [(u128, u128)],
    /// Whether approval runs `op` (see `StoredReview::runs`).
    pub runs: bool,
    /// The step-up approval the holder gave for it, spent in the same record as the hold.
    pub spends: Option<&'a str>,
}

/// What the gate says about a request's payments.
pub enum Verdict {
    /// Go on. `step_up` lists the payments the policy wants strongly authenticated.
    Go {
        /// The payments (by index) the policy wants strongly authenticated.
        step_up: Vec<usize>,
        /// Why, when it wants any.
        risk: Option<RiskDto>,
    },
    /// Refuse.
    Block(RiskDto),
    /// Hold for review, with the assessment that held it and its index among the payments.
    Hold(Box<Assessment>, usize),
}

#[derive(Default)]
pub(crate) struct Watched {
    directory: Option<PathBuf>,
    /// Per file, the text last seen (loaded or refused).
    seen: BTreeMap<PathBuf, String>,
}

/// The risk engine and what surrounds it on the server.
pub struct Risk {
    pub(crate) engine: Mutex<RiskEngine>,
    /// Every bundle text loaded, by `name@version` (for diffs and for rebuilding the policy).
    pub(crate) sources: Mutex<BTreeMap<(String, u32), String>>,
    pub(crate) reviews: Mutex<BTreeMap<String, StoredReview>>,
    /// Tabs paused by a checkpoint review: tab id to review id.
    pub(crate) paused: Mutex<HashMap<u128, String>>,
    /// Transfer ids held by a review, to the review's id: a retry meets its hold.
    pub(crate) held_ids: Mutex<HashMap<u128, String>>,
    /// Tab ids whose opening a review holds, to the review's id.
    pub(crate) held_tabs: Mutex<HashMap<u128, String>>,
    /// Per tab, the last checkpoint assessed (quarters of the budget paid, 0 before the first)
    /// and what the tab owed then.
    pub(crate) checkpoints: Mutex<HashMap<u128, (u8, u128)>>,
    pub(crate) changes: Mutex<Vec<PolicyChangeDto>>,
    /// Held while a bundle is submitted or a shadow run stopped: policy changes apply one at a
    /// time, each journaled before it goes live.
    pub(crate) submitting: tokio::sync::Mutex<()>,
    pub(crate) watched: Mutex<Watched>,
    pub(crate) network_key: Mutex<[u8; 32]>,
    /// Monthly limits account holders set, by account (0 blocks every payment).
    pub(crate) limits: Mutex<HashMap<u128, u128>>,
    /// Whether payments are decided at all (`false`: everything is allowed and nothing counted).
    pub(crate) enabled: bool,
    /// The fraud rate this PSP reports for transaction risk analysis (PSD2 RTS art. 18), parts
    /// per million by value over 90 days; -1: not monitored, no TRA exemption.
    pub(crate) tra_fraud_rate_ppm: i64,
    /// The greatest label key counted in the features (saved with their snapshot).
    pub(crate) labels_counted: Mutex<Option<String>>,
    /// The latest decisions with their inputs and features, newest last: a cache in memory for
    /// analysts (at most [`DECISIONS_KEPT_MAX`]), never restored.
    pub(crate) decisions: Mutex<std::collections::VecDeque<Decided>>,
    /// Per paying account, the networks of its latest decided payments (transfer id, network),
    /// so a label marked later names the network: bounded per payer, so one payer's flood
    /// evicts only its own. A cache in memory, never restored.
    pub(crate) networks: Mutex<HashMap<u128, std::collections::VecDeque<(u128, u64)>>>,
}

/// Payments per payer whose network a later label can still name.
pub const NETWORKS_PER_PAYER_MAX: usize = 256;

/// A decision as kept in memory: numbers only, made into a [`DecisionDto`] when read, so the
/// payment path allocates nothing for it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decided {
    transfer_id: u128,
    at_ns: u64,
    event: Event,
    action: Action,
    features: obol_risk::features::Features,
}

impl Decided {
    fn dto(&self) -> DecisionDto {
        let event = &self.event;
        DecisionDto {
            payment_id: (self.transfer_id != 0).then(|| self.transfer_id.to_string()),
            at_ns: self.at_ns.to_string(),
            payer_account_id: event.payer.to_string(),
            payee_account_id: event.payee.to_string(),
            device_id: event.device.map(|d| d.to_string()),
            network: event.network.map(|n| n.to_string()),
            amount_iso_minor: event.amount_iso_minor.to_string(),
            action: self.action.as_str().to_string(),
            features: self.features.0.to_vec(),
        }
    }
}

/// Decisions kept in memory for `GET /v1/risk/decisions`.
pub const DECISIONS_KEPT_MAX: usize = 10_000;

/// One risk decision as the engine made it: its inputs, features and action (operators and
/// analysts only).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct DecisionDto {
    /// The transfer decided, when the payment is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    /// When it was decided, ns since the Unix epoch.
    pub at_ns: String,
    /// The paying account.
    pub payer_account_id: String,
    /// The account paid.
    pub payee_account_id: String,
    /// The device that signed, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The network it came from (the server's keyed hash, decimal), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The amount the features counted, in whole ISO 4217 minor units.
    pub amount_iso_minor: String,
    /// `allow`, `step_up`, `block` or `review`.
    pub action: String,
    /// The event's features, in the order of `feature_names` of `GET /v1/risk/decisions`.
    pub features: Vec<f64>,
}

/// `GET /v1/risk/decisions`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct DecisionsDto {
    /// The features' names, in order.
    pub feature_names: Vec<String>,
    /// The latest decisions, oldest first.
    pub items: Vec<DecisionDto>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Default for Risk {
    fn default() -> Risk {
        Risk::off()
    }
}

/// A review approved with its held transfers, whose final outcome a crash kept from being
/// journaled (`running`): if none of its transfers is in the ledger, the approval's record
/// refused them (or never ran them), and the review is final as a refusal, so a retry is never
/// run on an approval that moved nothing.
pub(crate) fn settle_interrupted(engine: &obol_store::Engine, stored: &mut StoredReview) {
    let running = stored.review.status == ReviewStatus::Approved
        && stored.review.outcome.as_deref().is_some_and(|outcome| outcome == [Outcome::Running]);
    let Some(events) = held_events(stored).filter(|_| running) else { return };
    let ledger = engine.ledger().read().unwrap_or_else(|p| p.into_inner());
    if !events.is_empty() && events.iter().all(|event| ledger.transfer(event.id).is_none()) {
        stored.review.outcome = Some(vec![Outcome::Refused("not_run_before_a_restart".into())]);
    }
}

/// A journaled checkpoint, `<quarter>:<paid then>`.
pub(crate) fn checkpoint_mark(value: &[u8]) -> Option<(u8, u128)> {
    let (quarter, paid) = std::str::from_utf8(value).ok()?.split_once(':')?;
    Some((quarter.parse().ok()?, paid.parse().ok()?))
}

/// Puts per record while migrating.
pub(crate) const MIGRATION_CHUNK: usize = 256;

/// Moves the state an older store kept as metadata into the log: every entry the table does
/// not hold yet, in records of [`MIGRATION_CHUNK`] puts, and only then empties the metadata rows
/// it moved. A crash part way imports what is still missing at the next start; once emptied, a
/// row is never imported again (a limit its owner removed since stays removed).
pub(crate) async fn migrate_metadata(engine: &obol_store::Engine) -> Result<(), Error> {
    let mut moved = Vec::new();
    let mut puts = Vec::new();
    for prefix in [NETWORK_KEY, REVIEW_PREFIX, LIMIT_PREFIX, CHANGE_PREFIX] {
        for (key, value) in engine.meta_scan(prefix).await? {
            if value.is_empty() {
                continue;
            }
            if engine.table_get(&key).is_none() {
                puts.push(Op::Put(obol_core::table::Put { key: key.clone(), value }));
            }
            moved.push(key);
        }
    }
    let mut ops = puts.into_iter().peekable();
    while ops.peek().is_some() {
        let chunk: Vec<Op> = ops.by_ref().take(MIGRATION_CHUNK).collect();
        engine.execute_together(chunk).await?;
    }
    for key in moved {
        engine.meta_put(&key, Vec::new()).await?;
    }
    Ok(())
}

/// What the streaming features see of one payment.
pub(crate) fn event_of(
    payment: &Payment,
    category: &str,
    now_s: u64,
    device: Option<u128>,
    network: Option<u64>,
    failed_auth_count: u32,
) -> Event {
    Event {
        at_s: now_s,
        payer: payment.payer_account_id,
        device,
        payee: payment.payee_account_id,
        network,
        // Features count whole ISO 4217 minor units (a sub-cent payment counts as one cent), so
        // one model serves every scale.
        amount_iso_minor: payment.amount.div_ceil(units_per_iso_minor(payment.asset)),
        failed_auth_count,
        payee_cash_like: is_cash_like(category),
    }
}

/// The jurisdiction whose rules apply, from the asset's currency.
pub(crate) fn jurisdiction_of(asset: Asset) -> &'static str {
    match asset.code() {
        "EUR" => "EU",
        "KRW" => "KR",
        "USD" => "US",
        "GBP" => "GB",
        _ => "XX",
    }
}

/// Units of `asset`'s scale in one ISO 4217 minor unit of its currency (10,000,000 for USD at
/// scale 9; 1 at the currency's own scale). Rules know it as `minor_per_unit`.
pub fn units_per_iso_minor(asset: Asset) -> u128 {
    let iso = obol_core::money::minor_unit(asset.code()).unwrap_or(asset.scale());
    10u128.pow(u32::from(asset.scale().saturating_sub(iso)))
}

/// The payee's category from its account `code`, read as an ISO 18245 merchant category code.
pub(crate) fn payee_category(code: u16) -> &'static str {
    match code {
        4111 | 4112 | 4131 => "transit",
        4829 => "money_transfer",
        6051 => "quasi_cash",
        6540 => "gift_cards",
        5815..=5818 => "digital_goods",
        _ => "general",
    }
}

/// Whether a category sells cash-like goods (what the 2025 Korean femtocell fraud bought).
pub(crate) fn is_cash_like(category: &str) -> bool {
    matches!(category, "transit" | "money_transfer" | "quasi_cash" | "gift_cards")
}

/// The policy bundles obol ships (`policy/*.toml`): what `obol serve` decides with unless told
/// `--no-risk`, and what the examples run with.
pub const SHIPPED_POLICY: [&str; 5] = [
    include_str!("../../../policy/eu-psd2-sca.toml"),
    include_str!("../../../policy/us-reg-e.toml"),
    include_str!("../../../policy/kr-carrier-micropayments.toml"),
    include_str!("../../../policy/fraud-signals.toml"),
    include_str!("../../../policy/holder-caps.toml"),
];

/// The shipped bundles, compiled.
pub fn shipped_policy() -> Result<Policy, String> {
    let mut policy = Policy::new();
    for text in SHIPPED_POLICY {
        let bundle = obol_risk::policy::Bundle::compile(text).map_err(|e| format!("a shipped bundle: {e}"))?;
        policy.add(bundle).map_err(|e| format!("a shipped bundle: {e}"))?;
    }
    Ok(policy)
}

impl Risk {
    /// Risk turned off: everything is allowed (tests of other parts, benchmarks of the ledger).
    pub fn off() -> Risk {
        Risk::build(Policy::new(), None, false, 16)
    }

    /// Risk deciding with `policy` and, if given, `model`.
    pub fn new(policy: Policy, model: Option<Model>) -> Risk {
        Risk::build(policy, model, true, DEFAULT_CAPACITY)
    }

    fn build(policy: Policy, model: Option<Model>, enabled: bool, capacity: usize) -> Risk {
        let sources = policy
            .in_force(u64::MAX)
            .iter()
            .map(|b| ((b.name.clone(), b.version), b.source.clone()))
            .collect::<BTreeMap<_, _>>();
        Risk {
            engine: Mutex::new(RiskEngine::new(policy, model, capacity)),
            sources: Mutex::new(sources),
            reviews: Mutex::default(),
            paused: Mutex::default(),
            held_ids: Mutex::default(),
            held_tabs: Mutex::default(),
            checkpoints: Mutex::default(),
            changes: Mutex::default(),
            submitting: tokio::sync::Mutex::new(()),
            watched: Mutex::default(),
            network_key: Mutex::new([0; 32]),
            limits: Mutex::default(),
            enabled,
            tra_fraud_rate_ppm: -1,
            labels_counted: Mutex::default(),
            decisions: Mutex::default(),
            networks: Mutex::default(),
        }
    }

    /// Sets the fraud rate the EU bundle's transaction risk analysis exemption compares with the
    /// reference rates (parts per million by value over the last 90 days; -1 turns TRA off).
    pub fn with_tra_fraud_rate_ppm(mut self, rate_ppm: i64) -> Risk {
        self.tra_fraud_rate_ppm = rate_ppm.max(-1);
        self
    }

    /// Whether payments are decided.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Loads what the log keeps in its state table: the network key (made on first start), the
    /// review queue, monthly limits, the change records and the bundles added through the API
    /// (live again, over the ones the server started with); and the engine's snapshot, a
    /// speed-up kept beside the log. Stores written before the state table moved into the log
    /// have these in store metadata: they are journaled into the log once, here. Call once,
    /// before serving.
    pub async fn load(&self, engine: &obol_store::Engine, env: &dyn crate::Env) -> Result<(), Error> {
        migrate_metadata(engine).await?;
        let key = match engine.table_get(NETWORK_KEY) {
            Some(bytes) if bytes.len() == 32 => bytes,
            _ => {
                let mut fresh = [0u8; 32];
                env.fill(&mut fresh);
                engine.put(NETWORK_KEY, fresh.to_vec()).await?;
                fresh.to_vec()
            }
        };
        lock(&self.network_key).copy_from_slice(&key);
        let mut counted: Option<String> = None;
        if let Some(bytes) = engine.meta_get(SNAPSHOT_KEY).await? {
            // A snapshot names the greatest label key it counted; one from before labels has
            // no header and counted none.
            let (features, last) = split_snapshot(&bytes);
            match lock(&self.engine).restore(features) {
                Ok(()) => counted = last,
                Err(error) => tracing::warn!(%error, "the risk snapshot was not restored; features start empty"),
            }
        }
        // Labels journaled after the snapshot count again (the snapshot predates them).
        let mut missed = Vec::new();
        for (key, value) in engine.table_scan(crate::labels::LABEL_PREFIX) {
            if counted.as_ref().is_none_or(|last| key > *last)
                && let Ok(label) = serde_json::from_slice::<crate::labels::LabelDto>(&value)
            {
                missed.push(label);
            }
        }
        if self.enabled {
            let mut risk_engine = lock(&self.engine);
            for label in &missed {
                if let Some(features_label) = label.features_label() {
                    risk_engine.label(&features_label);
                }
            }
        }
        *lock(&self.labels_counted) = missed.last().map(crate::labels::LabelDto::key).or(counted);
        let mut reviews = BTreeMap::new();
        let mut paused = HashMap::new();
        let mut held_ids = HashMap::new();
        let mut held_tabs = HashMap::new();
        for (key, value) in engine.table_scan(REVIEW_PREFIX) {
            match serde_json::from_slice::<StoredReview>(&value) {
                Ok(mut stored) => {
                    settle_interrupted(engine, &mut stored);
                    for event in held_events(&stored).unwrap_or_default() {
                        held_ids.insert(event.id, stored.review.id.clone());
                    }
                    if stored.review.kind == HeldKind::TabOpen
                        && let Some(tab) = stored.review.tab_id.as_deref().and_then(|t| t.parse::<u128>().ok())
                    {
                        held_tabs.insert(tab, stored.review.id.clone());
                    }
                    if stored.review.status == ReviewStatus::Pending
                        && stored.review.kind == HeldKind::TabCheckpoint
                        && let Some(tab) = stored.review.tab_id.as_deref().and_then(|t| t.parse::<u128>().ok())
                    {
                        paused.insert(tab, stored.review.id.clone());
                    }
                    reviews.insert(stored.review.id.clone(), stored);
                }
                Err(error) => tracing::warn!(%key, %error, "a stored review does not parse; skipped"),
            }
        }
        *lock(&self.reviews) = reviews;
        *lock(&self.held_ids) = held_ids;
        *lock(&self.held_tabs) = held_tabs;
        *lock(&self.paused) = paused;
        let mut limits = HashMap::new();
        for (key, value) in engine.table_scan(LIMIT_PREFIX) {
            let account = key.trim_start_matches(LIMIT_PREFIX).parse::<u128>();
            let limit = std::str::from_utf8(&value).ok().and_then(|v| v.parse::<u128>().ok());
            if let (Ok(account), Some(limit)) = (account, limit) {
                limits.insert(account, limit);
            }
        }
        *lock(&self.limits) = limits;
        let mut changes = Vec::new();
        for (_, value) in engine.table_scan(CHANGE_PREFIX) {
            if let Ok(change) = serde_json::from_slice::<PolicyChangeDto>(&value) {
                changes.push(change);
            }
        }
        let skip = changes.len().saturating_sub(CHANGES_MAX);
        *lock(&self.changes) = changes.into_iter().skip(skip).collect();
        self.restore_bundles(engine);
        self.restore_checkpoints(engine).await?;
        Ok(())
    }

    /// The last checkpoint of each open tab; the marks of settled tabs are removed from the log.
    async fn restore_checkpoints(&self, engine: &obol_store::Engine) -> Result<(), Error> {
        let mut checkpoints = HashMap::new();
        let mut settled = Vec::new();
        {
            let ledger = engine.ledger().read().unwrap_or_else(|p| p.into_inner());
            for (key, value) in engine.table_scan(CHECKPOINT_PREFIX) {
                let tab_id = key.trim_start_matches(CHECKPOINT_PREFIX).parse::<u128>().ok();
                let mark = checkpoint_mark(&value);
                match (tab_id, mark) {
                    (Some(tab_id), Some(mark)) if ledger.tab(tab_id).is_some_and(|e| !e.tab.closed) => {
                        checkpoints.insert(tab_id, mark);
                    }
                    _ => settled.push(key),
                }
            }
        }
        for key in settled {
            engine.put(&key, Vec::new()).await?;
        }
        *lock(&self.checkpoints) = checkpoints;
        Ok(())
    }

    /// Puts a tab's checkpoint back to the last one journaled (its review could not be stored:
    /// the next payment assesses this stretch again).
    pub(crate) fn forget_checkpoint(&self, state: &App, tab_id: u128) {
        let journaled =
            state.engine.table_get(&format!("{CHECKPOINT_PREFIX}{tab_id}")).and_then(|v| checkpoint_mark(&v));
        let mut checkpoints = lock(&self.checkpoints);
        match journaled {
            Some(mark) => checkpoints.insert(tab_id, mark),
            None => checkpoints.remove(&tab_id),
        };
    }

    /// Journals a tab's last checkpoint (as [`Risk::checkpoint_due`] left it).
    pub(crate) async fn journal_checkpoint(&self, state: &App, tab_id: u128) -> Result<(), Error> {
        let Some((quarter, paid)) = lock(&self.checkpoints).get(&tab_id).copied() else { return Ok(()) };
        state.engine.put(&format!("{CHECKPOINT_PREFIX}{tab_id}"), format!("{quarter}:{paid}").into_bytes()).await?;
        Ok(())
    }

    /// Makes the bundles added through the API (or the watched directory) live again, and the
    /// shadow run that was on. A stored bundle whose name and version the server now starts
    /// with under other text (a new binary that changed a shipped bundle without a new version)
    /// is left out, with a warning: the server's own text wins.
    fn restore_bundles(&self, engine: &obol_store::Engine) {
        for (key, value) in engine.table_scan(BUNDLE_PREFIX) {
            let Ok(text) = String::from_utf8(value) else { continue };
            let bundle = match Bundle::compile(&text) {
                Ok(bundle) => bundle,
                Err(error) => {
                    tracing::warn!(%key, %error, "a stored policy bundle no longer compiles; left out");
                    continue;
                }
            };
            let rebuilt = {
                let sources = lock(&self.sources);
                rebuild(&sources, bundle)
            };
            match rebuilt {
                Ok((policy, source_key)) => {
                    lock(&self.engine).set_policy(Arc::new(policy));
                    lock(&self.sources).insert(source_key, text);
                }
                Err(error) => tracing::warn!(%key, %error, "a stored policy bundle was left out"),
            }
        }
        if let Some(text) = engine.table_get(SHADOW_KEY).and_then(|v| String::from_utf8(v).ok())
            && let Ok(bundle) = Bundle::compile(&text)
        {
            let candidate = lock(&self.engine).policy().with_replaced(bundle);
            if let Ok(policy) = candidate {
                lock(&self.engine).set_shadow(Some(policy));
            }
        }
    }

    /// The network payment `transfer_id` of `payer` came from, while it is among the payer's
    /// latest [`NETWORKS_PER_PAYER_MAX`] decided payments.
    pub(crate) fn network_of_payment(&self, payer: u128, transfer_id: u128) -> Option<String> {
        let networks = lock(&self.networks);
        let (_, network) = networks.get(&payer)?.iter().rev().find(|(id, _)| *id == transfer_id)?;
        Some(network.to_string())
    }

    /// The latest decisions with their inputs and features (operators and analysts).
    pub fn decisions_of(&self, caller: &Caller) -> Result<DecisionsDto, Error> {
        analyst(caller)?;
        Ok(DecisionsDto {
            feature_names: FEATURE_NAMES.iter().map(|n| n.to_string()).collect(),
            items: lock(&self.decisions).iter().map(Decided::dto).collect(),
        })
    }

    /// Writes the engine's snapshot (features and counters) to the store, with the greatest
    /// label key counted in it.
    pub async fn save(&self, engine: &obol_store::Engine) -> Result<usize, Error> {
        if !self.enabled {
            return Ok(0);
        }
        let bytes = {
            let engine = lock(&self.engine);
            let counted = lock(&self.labels_counted).clone().unwrap_or_default();
            let features = engine.snapshot();
            let mut bytes = Vec::with_capacity(SNAPSHOT_HEADER.len() + 4 + counted.len() + features.len());
            bytes.extend_from_slice(SNAPSHOT_HEADER);
            bytes.extend_from_slice(&(counted.len() as u32).to_le_bytes());
            bytes.extend_from_slice(counted.as_bytes());
            bytes.extend_from_slice(&features);
            bytes
        };
        let len = bytes.len();
        engine.meta_put(SNAPSHOT_KEY, bytes).await?;
        Ok(len)
    }

    /// A keyed hash of the caller's network: the IPv4 /24 or IPv6 /48 it comes from. The key is
    /// the server's own, so the hash says nothing outside it, and no address is kept.
    #[expect(clippy::indexing_slicing, reason = "a SHA-256 digest has 32 bytes")]
    fn network_of(&self, peer: Option<IpAddr>) -> Option<u64> {
        let prefix: Vec<u8> = match peer? {
            IpAddr::V4(v4) => v4.octets()[..3].to_vec(),
            IpAddr::V6(v6) => v6.octets()[..6].to_vec(),
        };
        let mut hasher = Sha256::new();
        hasher.update(*lock(&self.network_key));
        hasher.update(&prefix);
        let digest = hasher.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Some(u64::from_le_bytes(first))
    }

    /// Decides each payment of a request of `kind`. Operators are not decided (they run the
    /// platform).
    pub fn assess(
        &self,
        ledger: &Ledger,
        caller: &Caller,
        (kind, payments): (PaymentKind, &[Payment]),
        now_ns: u64,
    ) -> Vec<Assessment> {
        self.assess_as(ledger, caller, (kind, payments), now_ns, false)
    }

    /// What [`Risk::assess`] would answer now, counting nothing (the facilitator's `verify`).
    pub fn assess_dry(
        &self,
        ledger: &Ledger,
        caller: &Caller,
        (kind, payments): (PaymentKind, &[Payment]),
        now_ns: u64,
    ) -> Vec<Assessment> {
        self.assess_as(ledger, caller, (kind, payments), now_ns, true)
    }

    fn assess_as(
        &self,
        ledger: &Ledger,
        caller: &Caller,
        (kind, payments): (PaymentKind, &[Payment]),
        now_ns: u64,
        dry: bool,
    ) -> Vec<Assessment> {
        if !self.enabled || caller.role == Role::Operator || payments.is_empty() {
            return Vec::new();
        }
        let now = now_ns;
        let now_s = now / 1_000_000_000;
        let principal = ledger.identity().principal(caller.principal_id);
        let failed_auth_count = principal.map_or(0, |p| u32::from(p.failed_factor_count));
        let device = match caller.via {
            Via::Device(id) => ledger.identity().device(id),
            Via::ApiKey(_) | Via::Passkey(_) => None,
        };
        let network = self.network_of(caller.peer);
        let today = obol_core::identity::utc_day(now);
        // Lock order: limits, then the engine (nothing takes them the other way round).
        let limits = lock(&self.limits);
        let mut engine = lock(&self.engine);
        let mut day_spent = device.filter(|d| d.spent_day == today).map_or(0, |d| d.spent_today);
        // The ledger's counters, with the payments before this one in the same request added
        // as they will be if they go through.
        let mut counted: HashMap<u128, obol_core::ledger::PayerCounters> = HashMap::new();
        payments
            .iter()
            .map(|payment| {
                let counters = *counted
                    .entry(payment.payer_account_id)
                    .or_insert_with(|| ledger.payer_counters(payment.payer_account_id, now));
                if let Some(next) = counted.get_mut(&payment.payer_account_id) {
                    next.sca_payments_since = next.sca_payments_since.saturating_add(1);
                    next.sca_amount_since = next.sca_amount_since.saturating_add(payment.amount);
                    next.month_total = next.month_total.saturating_add(payment.amount);
                }
                let exact = |value: u128| i64::try_from(value).unwrap_or(i64::MAX);
                let category = ledger.account(payment.payee_account_id).map_or("general", |a| payee_category(a.code));
                let event = event_of(payment, category, now_s, device.map(|d| d.id), network, failed_auth_count);
                day_spent = day_spent.saturating_add(payment.amount);
                let caps = device.and_then(|d| d.limits).filter(|l| l.asset == payment.asset);
                let cap = |value: u128| if value == 0 { -1 } else { i64::try_from(value).unwrap_or(i64::MAX) };
                let facts = Facts {
                    amount_minor: i64::try_from(payment.amount).unwrap_or(i64::MAX),
                    units_per_iso_minor: i64::try_from(units_per_iso_minor(payment.asset)).unwrap_or(i64::MAX),
                    currency: payment.asset.code().to_string(),
                    jurisdiction: jurisdiction_of(payment.asset).into(),
                    payee_category: category.into(),
                    holder_payment_cap_minor: caps.map_or(-1, |l| cap(l.per_payment)),
                    holder_day_cap_minor: caps.map_or(-1, |l| cap(l.per_day)),
                    holder_day_spent_minor: i64::try_from(day_spent).unwrap_or(i64::MAX),
                    sca_payments_since: i64::from(counters.sca_payments_since),
                    sca_amount_since_minor: exact(counters.sca_amount_since),
                    month_total_minor: exact(counters.month_total),
                    user_limit_minor: limits
                        .get(&payment.payer_account_id)
                        .map_or(-1, |limit| i64::try_from(*limit).unwrap_or(i64::MAX)),
                    event_kind: kind.as_str().into(),
                    // obol's API is a remote channel, and its payments move money account to
                    // account, as credit transfers do.
                    channel: "remote".into(),
                    payment_instrument: "credit_transfer".into(),
                    tra_fraud_rate_ppm: self.tra_fraud_rate_ppm,
                    ..Facts::default()
                };
                if dry {
                    return engine.assess_dry(&event, facts);
                }
                let assessment = engine.assess(&event, facts);
                let mut decisions = lock(&self.decisions);
                if decisions.len() >= DECISIONS_KEPT_MAX {
                    decisions.pop_front();
                }
                decisions.push_back(Decided {
                    transfer_id: payment.transfer_id,
                    at_ns: now,
                    event,
                    action: assessment.decision.action,
                    features: assessment.features,
                });
                drop(decisions);
                if let (Some(network), true) = (event.network, payment.transfer_id != 0) {
                    let mut networks = lock(&self.networks);
                    let recent = networks.entry(payment.payer_account_id).or_default();
                    if recent.len() >= NETWORKS_PER_PAYER_MAX {
                        recent.pop_front();
                    }
                    recent.push_back((payment.transfer_id, network));
                }
                metrics::counter!("obol_risk_decisions_total", "action" => assessment.decision.action.as_str())
                    .increment(1);
                assessment
            })
            .collect()
    }

    /// The request's verdict: any block refuses it, else any review holds it, else the payments
    /// the policy wants strongly authenticated are marked. `can_step_up`: whether the caller can
    /// approve a challenge (a holder with a second factor); if not, step-up becomes review.
    #[expect(clippy::indexing_slicing, reason = "the indexes come from enumerating `assessments` itself")]
    pub fn verdict(assessments: Vec<Assessment>, can_step_up: bool) -> Verdict {
        let of = |action: Action| assessments.iter().position(|a| a.decision.action == action);
        if let Some(index) = of(Action::Block) {
            return Verdict::Block(RiskDto::from_assessment(&assessments[index]));
        }
        if let Some(index) = of(Action::Review) {
            return Verdict::Hold(Box::new(assessments[index].clone()), index);
        }
        let step_up: Vec<usize> = assessments
            .iter()
            .enumerate()
            .filter(|(_, a)| a.decision.action == Action::StepUp)
            .map(|(index, _)| index)
            .collect();
        match step_up.first() {
            None => Verdict::Go { step_up, risk: None },
            Some(first) if !can_step_up => {
                let mut held = assessments[*first].clone();
                held.decision.action = Action::Review;
                held.decision.reason_en =
                    format!("{} No second factor can confirm it, so it is held for review.", held.decision.reason_en);
                held.decision.reason_ko =
                    format!("{} 2차 인증 수단이 없어 검토를 위해 보류되었습니다.", held.decision.reason_ko);
                Verdict::Hold(Box::new(held), *first)
            }
            Some(first) => {
                let risk = Some(RiskDto::from_assessment(&assessments[*first]));
                Verdict::Go { step_up, risk }
            }
        }
    }

    /// Counts in the streaming features payments that go through although their assessment was
    /// not `allow` (a challenge the payer approved): [`Risk::assess`] counts only allowed ones.
    pub fn observe(&self, ledger: &Ledger, caller: &Caller, payments: &[Payment], now_ns: u64) {
        if !self.enabled || caller.role == Role::Operator || payments.is_empty() {
            return;
        }
        let now_s = now_ns / 1_000_000_000;
        let failed_auth_count =
            ledger.identity().principal(caller.principal_id).map_or(0, |p| u32::from(p.failed_factor_count));
        let device = match caller.via {
            Via::Device(id) => Some(id),
            Via::ApiKey(_) | Via::Passkey(_) => None,
        };
        let network = self.network_of(caller.peer);
        let mut engine = lock(&self.engine);
        for payment in payments {
            let category = ledger.account(payment.payee_account_id).map_or("general", |a| payee_category(a.code));
            engine.observe(&event_of(payment, category, now_s, device, network, failed_auth_count));
        }
    }

    /// Holds a request for review: stores it with the decision, exact Shapley values and
    /// features.
    pub(crate) async fn hold(&self, state: &App, caller: &Caller, held: Held<'_>) -> Result<ReviewDto, Error> {
        let Held { kind, payment, tab_id, assessment, op, payments, runs, spends } = held;
        if lock(&self.reviews).values().filter(|r| r.review.status == ReviewStatus::Pending).count() >= REVIEWS_OPEN_MAX
        {
            return Err(Error::Overloaded);
        }
        let created_ns = state.env.now_ns();
        let mut random = [0u8; 8];
        state.env.fill(&mut random);
        let id = format!("{created_ns:016x}{}", u64::from_le_bytes(random) >> 1);
        let shapley = {
            let engine = lock(&self.engine);
            engine.model().map_or_else(Vec::new, |model| {
                contributions(&model.explain(&assessment.features.0, true, FEATURE_NAMES.len()))
            })
        };
        let review = ReviewDto {
            id: id.clone(),
            status: ReviewStatus::Pending,
            kind,
            created_ns: created_ns.to_string(),
            principal_id: caller.principal_id.to_string(),
            payer_account_id: payment.payer_account_id.to_string(),
            payee_account_id: payment.payee_account_id.to_string(),
            amount: payment.amount.to_string(),
            asset_code: payment.asset.code().to_string(),
            asset_scale: payment.asset.scale(),
            tab_id: tab_id.map(|t| t.to_string()),
            risk: RiskDto::from_assessment(assessment),
            shapley,
            features: FEATURE_NAMES
                .iter()
                .zip(assessment.features.0.iter())
                .map(|(name, value)| ((*name).to_string(), *value))
                .collect(),
            decided_by: None,
            decided_ns: None,
            note: None,
            outcome: None,
        };
        let held_ids: Vec<u128> = match &op {
            Op::CreateTransfers(events) => events.iter().map(|event| event.id).collect(),
            _ => Vec::new(),
        };
        let record = Record { now_ns: 0, ops: vec![op] };
        let encoded = record.encode().map_err(|error| Error::InvalidField(error.to_string()))?;
        let via = caller.via.label();
        let stored = StoredReview {
            via: Some(via),
            network: self.network_of(caller.peer).map(|n| n.to_string()),
            review: review.clone(),
            op: Base64UrlUnpadded::encode_string(&encoded),
            runs,
            payments: payments.iter().map(|(payer, amount)| [payer.to_string(), amount.to_string()]).collect(),
        };
        let bytes = serde_json::to_vec(&stored).map_err(|e| Error::Internal(e.to_string()))?;
        let put = Op::Put(obol_core::table::Put { key: format!("{REVIEW_PREFIX}{id}"), value: bytes });
        // The holder's approval of what is held is used up with the hold: both durable, or
        // neither; the audit note names who asked and which review holds it, in the same record.
        let outcome = format!("held {}", review.risk.rule.as_deref().unwrap_or(""));
        let note = crate::audit::note(state, caller, "risk.review", &format!("review:{id}"), outcome.trim());
        let mut ops = vec![note];
        ops.extend(spends.map(crate::approvals::spent));
        ops.push(put);
        ops.push(crate::webhooks::event(
            state,
            "payment.held",
            &[caller.principal_id],
            serde_json::json!({"review": id, "reason_en": review.risk.reason_en, "reason_ko": review.risk.reason_ko}),
        ));
        state.engine.execute_together(ops).await?;
        if kind == HeldKind::TabCheckpoint
            && let Some(tab) = tab_id
        {
            lock(&self.paused).insert(tab, id.clone());
        }
        {
            let mut ids = lock(&self.held_ids);
            for held in held_ids {
                ids.insert(held, id.clone());
            }
        }
        if kind == HeldKind::TabOpen
            && let Some(tab) = tab_id
        {
            lock(&self.held_tabs).insert(tab, id.clone());
        }
        lock(&self.reviews).insert(id, stored);
        metrics::counter!("obol_risk_reviews_held_total", "kind" => kind.as_str()).increment(1);
        Ok(review)
    }

    /// The fate of a request some of whose transfer ids a review holds. Only the same payer
    /// asking for the very same transfers meets it; anything else with those ids is refused.
    pub fn hold_of(&self, caller: &Caller, events: &[obol_core::ledger::NewTransfer]) -> HoldOf {
        let held = {
            let ids = lock(&self.held_ids);
            events.iter().find_map(|event| ids.get(&event.id).map(|review| (event.id, review.clone())))
        };
        let Some((transfer_id, review_id)) = held else { return HoldOf::Free };
        let reviews = lock(&self.reviews);
        let Some(stored) = reviews.get(&review_id) else { return HoldOf::Free };
        let same_payer = stored.review.principal_id == caller.principal_id.to_string();
        if !same_payer || held_events(stored).as_deref() != Some(events) {
            return HoldOf::Taken(transfer_id);
        }
        fate(stored, review_id)
    }

    /// The fate of a request to open tab `tab_id` when a review holds its opening: as
    /// [`Risk::hold_of`], by tab id (the client's id for a tab).
    pub fn hold_of_tab(&self, caller: &Caller, command: &obol_core::channel::TabCommand) -> HoldOf {
        let obol_core::channel::TabCommand::Open { tab_id, .. } = *command else { return HoldOf::Free };
        let Some(review_id) = lock(&self.held_tabs).get(&tab_id).cloned() else { return HoldOf::Free };
        let reviews = lock(&self.reviews);
        let Some(stored) = reviews.get(&review_id) else { return HoldOf::Free };
        if stored.review.principal_id != caller.principal_id.to_string() || !same_opening(stored, command) {
            return HoldOf::Taken(tab_id);
        }
        fate(stored, review_id)
    }

    /// The review that paused `tab_id`, if one did and is still open.
    pub fn paused_by(&self, tab_id: u128) -> Option<String> {
        if !self.enabled {
            return None;
        }
        lock(&self.paused).get(&tab_id).cloned()
    }

    /// Whether a tab that owes `paid_after` of `budget` has crossed a checkpoint not yet assessed
    /// (its first payment and each further quarter of the budget); if so, marks it and answers
    /// what was paid since the last checkpoint.
    pub(crate) fn checkpoint_due(&self, tab_id: u128, budget: u128, paid_after: u128) -> Option<u128> {
        if !self.enabled || budget == 0 || paid_after == 0 {
            return None;
        }
        let quarter = if paid_after >= budget { 4 } else { (paid_after.saturating_mul(4) / budget) as u8 };
        let reached = quarter.saturating_add(1).min(5);
        let mut checkpoints = lock(&self.checkpoints);
        let last = checkpoints.entry(tab_id).or_insert((0, 0));
        if reached > last.0 {
            let since = paid_after.saturating_sub(last.1);
            *last = (reached, paid_after);
            return Some(since);
        }
        None
    }

    /// Live bundles' texts, by name and version.
    fn source_of(&self, name: &str, below_version: u32) -> Option<String> {
        lock(&self.sources)
            .iter()
            .filter(|((n, v), _)| n == name && *v < below_version)
            .max_by_key(|((_, v), _)| *v)
            .map(|(_, text)| text.clone())
    }

    async fn record_change(
        &self,
        state: &App,
        by: Option<&Caller>,
        mut change: PolicyChangeDto,
    ) -> Result<PolicyChangeDto, Error> {
        let seq = {
            let changes = lock(&self.changes);
            changes.last().map_or(1, |c| c.seq + 1)
        };
        change.seq = seq;
        let bytes = serde_json::to_vec(&change).map_err(|e| Error::Internal(e.to_string()))?;
        let key = format!("{CHANGE_PREFIX}{seq:016}");
        match by {
            // Who asked for it, in the change's own record.
            Some(caller) => {
                let subject = format!("policy:{}", change.bundle);
                let note = crate::audit::note(state, caller, "policy.change", &subject, &change.what);
                let put = Op::Put(obol_core::table::Put { key, value: bytes });
                state.engine.execute_together(vec![note, put]).await?;
            }
            None => state.engine.put(&key, bytes).await?,
        }
        let mut changes = lock(&self.changes);
        changes.push(change.clone());
        if changes.len() > CHANGES_MAX {
            changes.remove(0);
        }
        Ok(change)
    }

    /// Adds a bundle to the live policy (or, with `shadow`, starts a shadow run of the live
    /// policy with this bundle replacing its name). A bundle that does not compile, or reuses a
    /// version with other text, is refused and the live policy stays as it was; the refusal is
    /// recorded too.
    pub async fn submit_bundle(
        &self,
        state: &App,
        by: Option<&Caller>,
        who: &str,
        text: &str,
        shadow: bool,
    ) -> Result<PolicyChangeDto, (Error, Option<PolicyChangeDto>)> {
        let compiled = Bundle::compile(text);
        let (name, version) = match &compiled {
            Ok(bundle) => (bundle.name.clone(), bundle.version),
            Err(_) => bundle_label(text),
        };
        let label = format!("{name}@{version}");
        let previous = self.source_of(&name, version);
        let diff = match &previous {
            Some(before) => line_diff(before, text),
            None => text.lines().map(|l| format!("+{l}\n")).collect(),
        };
        // One submission at a time: each rebuilds the policy from every loaded bundle, and its
        // bundle is in the log before it goes live.
        let _submitting = self.submitting.lock().await;
        let outcome: Result<&str, String> = match compiled {
            Err(error) => Err(error.to_string()),
            Ok(bundle) if shadow => {
                let candidate = lock(&self.engine).policy().with_replaced(bundle);
                match candidate {
                    Ok(policy) => {
                        state.engine.put(SHADOW_KEY, text.as_bytes().to_vec()).await.map_err(|e| (e.into(), None))?;
                        lock(&self.engine).set_shadow(Some(policy));
                        Ok("shadow_started")
                    }
                    Err(error) => Err(error.to_string()),
                }
            }
            Ok(bundle) => {
                let rebuilt = {
                    let sources = lock(&self.sources);
                    rebuild(&sources, bundle)
                };
                match rebuilt {
                    Ok((policy, key)) => {
                        let unchanged = lock(&self.sources).get(&key).is_some_and(|t| t == text);
                        if !unchanged {
                            let stored = format!("{BUNDLE_PREFIX}{}@{}", key.0, key.1);
                            state.engine.put(&stored, text.as_bytes().to_vec()).await.map_err(|e| (e.into(), None))?;
                            lock(&self.engine).set_policy(Arc::new(policy));
                            lock(&self.sources).insert(key, text.to_string());
                        }
                        Ok("added")
                    }
                    Err(error) => Err(error.to_string()),
                }
            }
        };
        let change = PolicyChangeDto {
            seq: 0,
            at_ns: state.env.now_ns().to_string(),
            who: who.to_string(),
            what: match &outcome {
                Ok(what) => (*what).to_string(),
                Err(_) => "refused".into(),
            },
            bundle: label,
            diff,
            error: outcome.as_ref().err().cloned(),
        };
        let recorded = self.record_change(state, by, change).await.map_err(|e| (e, None))?;
        match outcome {
            Ok(_) => {
                tracing::info!(who, bundle = %recorded.bundle, what = %recorded.what, "policy changed");
                Ok(recorded)
            }
            Err(error) => {
                tracing::warn!(who, bundle = %recorded.bundle, %error, "policy bundle refused");
                Err((Error::PolicyRefused(error), Some(recorded)))
            }
        }
    }

    /// Stops the shadow run, recording who stopped it.
    pub async fn stop_shadow(&self, state: &App, who: &str) -> Result<Option<ShadowDto>, Error> {
        let _submitting = self.submitting.lock().await;
        let running = lock(&self.engine).shadow_report(state.env.now_s()).is_some();
        if running {
            state.engine.put(SHADOW_KEY, Vec::new()).await?;
        }
        let report = {
            let mut engine = lock(&self.engine);
            let report = engine.shadow_report(state.env.now_s());
            engine.set_shadow(None);
            report
        };
        if let Some(report) = &report {
            let change = PolicyChangeDto {
                seq: 0,
                at_ns: state.env.now_ns().to_string(),
                who: who.to_string(),
                what: "shadow_stopped".into(),
                bundle: report.candidate.join(","),
                diff: String::new(),
                error: None,
            };
            self.record_change(state, None, change).await?;
        }
        Ok(report.map(ShadowDto::from))
    }

    /// Watches `directory`: every `*.toml` in it is a bundle, loaded now and whenever its text
    /// changes ([`Risk::reload`]).
    pub fn watch(&self, directory: PathBuf) {
        lock(&self.watched).directory = Some(directory);
    }

    /// Loads bundles whose files are new or changed since the last look; answers how many
    /// changed (loaded or refused). A file that fails to read or compile is refused and logged;
    /// what was live stays.
    pub async fn reload(&self, state: &App) -> Result<usize, Error> {
        let Some(directory) = lock(&self.watched).directory.clone() else { return Ok(0) };
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&directory) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect(),
            Err(error) => {
                tracing::warn!(directory = %directory.display(), %error, "the policy directory cannot be read");
                return Ok(0);
            }
        };
        files.sort();
        let mut changed = 0;
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else { continue };
            if lock(&self.watched).seen.get(&file) == Some(&text) {
                continue;
            }
            lock(&self.watched).seen.insert(file.clone(), text.clone());
            changed += 1;
            let who = format!("file:{}", file.display());
            match self.submit_bundle(state, None, &who, &text, false).await {
                Ok(_) => {}
                Err((Error::PolicyRefused(_), _)) => {}
                Err((error, _)) => return Err(error),
            }
        }
        Ok(changed)
    }

    /// The directory watched, if any.
    pub fn directory(&self) -> Option<PathBuf> {
        lock(&self.watched).directory.clone()
    }
}

/// The name and version a bundle's text claims, read leniently (for recording refusals).
pub(crate) fn bundle_label(text: &str) -> (String, u32) {
    let value = |key: &str| {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k.trim() == key).then(|| v.split('#').next().unwrap_or("").trim().trim_matches('"').to_string())
        })
    };
    (value("name").unwrap_or_else(|| "?".into()), value("version").and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// The policy of every loaded bundle plus `bundle`.
pub fn rebuild(sources: &BTreeMap<(String, u32), String>, bundle: Bundle) -> Result<(Policy, (String, u32)), String> {
    let key = (bundle.name.clone(), bundle.version);
    if let Some(existing) = sources.get(&key)
        && *existing != bundle.source
    {
        return Err(format!(
            "bundle {} version {} is loaded already with other rules; give the change a new version",
            key.0, key.1
        ));
    }
    let mut policy = Policy::new();
    for text in sources.values() {
        policy.add(Bundle::compile(text).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    policy.add(bundle).map_err(|e| e.to_string())?;
    Ok((policy, key))
}

/// A line diff: ` ` kept, `-` removed, `+` added, by longest common subsequence (bundles are
/// small; the table is bounded by [`BUNDLE_BYTES_MAX`] lines squared in the worst case).
#[expect(
    clippy::indexing_slicing,
    reason = "the table is (a.len()+1) x (b.len()+1) and every index is checked against the lengths"
)]
pub(crate) fn line_diff(before: &str, after: &str) -> String {
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    let mut table = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            table[i][j] = if a[i] == b[j] { table[i + 1][j + 1] + 1 } else { table[i + 1][j].max(table[i][j + 1]) };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = String::new();
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!(" {}\n", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || table[i + 1][j] >= table[i][j + 1]) {
            out.push_str(&format!("-{}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+{}\n", b[j]));
            j += 1;
        }
    }
    out
}

/// Who may read the review queue, labels, the policy and the shadow run: operators and analysts
/// with `read`. Routes ask it before reading their query, so a refused caller learns nothing.
pub fn analyst(caller: &Caller) -> Result<(), Error> {
    need_scope(caller, Scopes::READ)?;
    need_role(caller, &[Role::Operator, Role::Analyst])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_marks_removed_and_added_lines_and_keeps_the_rest() {
        let before = "a\nb\nc\n";
        let after = "a\nB\nc\nd\n";
        assert_eq!(line_diff(before, after), " a\n-b\n+B\n c\n+d\n");
        assert_eq!(line_diff("x\n", "x\n"), " x\n");
    }

    #[test]
    fn a_refused_bundle_is_still_named_in_the_record() {
        assert_eq!(bundle_label("name = \"eu\"\nversion = 3 # next\n[[rules]]"), ("eu".into(), 3));
        assert_eq!(bundle_label("garbage"), ("?".into(), 0));
    }

    #[test]
    fn checkpoints_fall_on_the_first_payment_and_each_quarter() {
        let risk = Risk::new(Policy::new(), None);
        let due: Vec<(u128, u128)> =
            (1..=100).filter_map(|paid| risk.checkpoint_due(1, 100, paid).map(|since| (paid, since))).collect();
        assert_eq!(due, [(1, 1), (25, 24), (50, 25), (75, 25), (100, 25)]);
        assert_eq!(Risk::off().checkpoint_due(1, 100, 1), None, "off: no checkpoints");
    }

    #[test]
    fn thresholds_scale_with_the_account_while_features_count_currency_units() {
        let nano = Asset::new("USD", 9).unwrap();
        assert_eq!(units_per_iso_minor(nano), 10_000_000);
        assert_eq!(units_per_iso_minor(Asset::new("EUR", 2).unwrap()), 1);
        assert_eq!(units_per_iso_minor(Asset::new("KRW", 0).unwrap()), 1);
        assert_eq!(units_per_iso_minor(Asset::new("KRW", 3).unwrap()), 1_000);
        assert_eq!(400_000u128.div_ceil(units_per_iso_minor(nano)), 1, "a 0.04-cent payment counts as a cent");
    }

    /// Outcome texts builds have written, each with whether it says the operation went through.
    const OUTCOMES: [(&str, bool); 12] = [
        ("ok", true),
        ("exists", true),
        ("running", true),
        ("resumed", true),
        ("allowed: runs when the payer retries it", true),
        ("refused: device_limit_exceeded", false),
        ("refused: not_run_before_a_restart", false),
        ("exceeds_credits", false),
        ("escrow_exceeds_credits", false),
        ("settled: Ok { transfer_id: 9 }", false),
        ("settle failed: tab_not_found", false),
        ("unexpected", false),
    ];

    #[test]
    fn a_review_stored_by_an_older_build_reads_and_writes_back_byte_for_byte() {
        let statuses = ["pending", "deciding", "approved", "declined"];
        let kinds = ["transfers", "tab_open", "tab_topup", "tab_checkpoint"];
        let mut outcomes: Vec<String> = OUTCOMES.iter().map(|(text, _)| format!("[\"{text}\"]")).collect();
        outcomes.extend(["null".to_string(), "[]".to_string(), "[\"ok\",\"exists\",\"exceeds_credits\"]".to_string()]);
        for (status, kind) in statuses.iter().flat_map(|status| kinds.iter().map(move |kind| (status, kind))) {
            for outcome in &outcomes {
                let text = format!(
                    "{{\"via\":\"key:abc\",\"review\":{{\"id\":\"r1\",\"status\":\"{status}\",\"kind\":\"{kind}\",\
                     \"created_ns\":\"1\",\"principal_id\":\"100\",\"payer_account_id\":\"1\",\"payee_account_id\":\"2\",\
                     \"amount\":\"1500\",\"asset_code\":\"USD\",\"asset_scale\":2,\"tab_id\":null,\"risk\":{{\"action\":\
                     \"review\",\"reason_en\":\"Held.\",\"reason_ko\":\"보류.\"}},\"decided_by\":\"1\",\"decided_ns\":\"2\",\
                     \"note\":null,\"outcome\":{outcome}}},\"op\":\"AA\",\"runs\":true,\"payments\":[[\"1\",\"1500\"]]}}"
                );
                let stored: StoredReview = serde_json::from_str(&text).unwrap();
                assert_eq!(stored.review.status.as_str(), *status);
                assert_eq!(stored.review.kind.as_str(), *kind);
                assert_eq!(serde_json::to_string(&stored).unwrap(), text);
            }
        }
    }

    #[test]
    fn an_outcome_reads_as_its_text_said() {
        for (text, ran) in OUTCOMES {
            let outcome = Outcome::from(text.to_string());
            assert_eq!(outcome.ran(), ran, "{text}");
            assert_eq!(String::from(outcome), text);
        }
        assert_eq!(
            Outcome::from("refused: device_limit_exceeded".to_string()),
            Outcome::Refused("device_limit_exceeded".into())
        );
        assert_eq!(Outcome::from("exceeds_credits".to_string()), Outcome::Other("exceeds_credits".into()));
    }

    #[test]
    fn a_payment_kind_keeps_the_names_rules_and_approvals_use() {
        let kinds = [PaymentKind::Transfer, PaymentKind::TabOpen, PaymentKind::TabTopup, PaymentKind::TabCheckpoint];
        let names: Vec<(&str, &str)> = kinds.iter().map(|kind| (kind.as_str(), kind.held().as_str())).collect();
        assert_eq!(
            names,
            [
                ("transfer", "transfers"),
                ("tab_open", "tab_open"),
                ("tab_topup", "tab_topup"),
                ("tab_checkpoint", "tab_checkpoint")
            ]
        );
    }

    #[test]
    fn payee_codes_read_as_merchant_categories() {
        assert_eq!(payee_category(6540), "gift_cards");
        assert!(is_cash_like(payee_category(4111)));
        assert!(!is_cash_like(payee_category(5816)));
        assert_eq!(payee_category(1), "general");
    }
}

//! What a use case tells its caller about a decision it did not let through: the risk
//! decision and why, a held request's review, a step-up challenge. They travel inside
//! [`crate::Error`] (`RiskBlocked`, `HeldForReview`, `RequiresAction`), so they sit below
//! everything else in this crate.

use std::collections::BTreeMap;

use obol_core::identity::Role;
use obol_risk::engine::Assessment;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;

/// One feature's push on the score (log-odds).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Contribution {
    /// Feature name.
    pub feature: String,
    /// Contribution to the log-odds of fraud.
    pub value: f64,
}

/// A risk decision, as clients and analysts see it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct RiskDto {
    /// `allow`, `step_up`, `block` or `review`.
    pub action: String,
    /// `bundle@version/rule` that decided, when a rule did (operators and analysts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Why, in English.
    pub reason_en: String,
    /// Why, in Korean.
    pub reason_ko: String,
    /// The model's fraud score, 0 to 1 (operators and analysts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_score: Option<f64>,
    /// The features that raised the score most (operators and analysts only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contributions: Vec<Contribution>,
}

/// Whether the caller may see how a risk decision was made (rule, score, features): operators
/// and analysts. A payer gets the plain explanation only, since thresholds and feature values
/// would teach a fraudster where the lines are.
pub(crate) fn sees_risk_details(caller: &Caller) -> bool {
    matches!(caller.role, Role::Operator | Role::Analyst)
}

impl RiskDto {
    pub(crate) fn from_assessment(assessment: &Assessment) -> RiskDto {
        RiskDto {
            action: assessment.decision.action.as_str().into(),
            rule: assessment.decision.rule.clone(),
            reason_en: assessment.decision.reason_en.clone(),
            reason_ko: assessment.decision.reason_ko.clone(),
            model_score: Some(assessment.model_score),
            contributions: contributions(&assessment.contributions),
        }
    }

    /// What `caller` may see of this decision ([`sees_risk_details`]).
    pub fn for_caller(mut self, caller: &Caller) -> RiskDto {
        if !sees_risk_details(caller) {
            self.rule = None;
            self.model_score = None;
            self.contributions.clear();
        }
        self
    }
}

pub(crate) fn contributions(pairs: &[(String, f64)]) -> Vec<Contribution> {
    pairs.iter().map(|(feature, value)| Contribution { feature: feature.clone(), value: *value }).collect()
}

/// A held request in the review queue.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ReviewDto {
    /// Review id (sorts by creation time).
    pub id: String,
    /// `pending`, `approved` or `declined`.
    #[schema(value_type = String)]
    pub status: ReviewStatus,
    /// What is held: `transfers`, `tab_open`, `tab_topup` or `tab_checkpoint`.
    #[schema(value_type = String)]
    pub kind: HeldKind,
    /// When it was held, ns since the Unix epoch.
    pub created_ns: String,
    /// The principal whose request it is.
    pub principal_id: String,
    /// The paying account.
    pub payer_account_id: String,
    /// The account paid.
    pub payee_account_id: String,
    /// Minor units the decision was about.
    pub amount: String,
    /// ISO 4217 code.
    pub asset_code: String,
    /// Scale.
    pub asset_scale: u8,
    /// The tab, for tab reviews.
    pub tab_id: Option<String>,
    /// Why it was held.
    pub risk: RiskDto,
    /// Exact Shapley values of the model's score, largest first (all features; operators and
    /// analysts only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shapley: Vec<Contribution>,
    /// The event's features, by name (what the model saw; exported as training data; operators
    /// and analysts only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, f64>,
    /// Who decided it (principal id).
    pub decided_by: Option<String>,
    /// When it was decided, ns.
    pub decided_ns: Option<String>,
    /// The analyst's note.
    pub note: Option<String>,
    /// What approval did: the ledger's result per operation.
    #[schema(value_type = Option<Vec<String>>)]
    pub outcome: Option<Vec<Outcome>>,
}

/// Where a review stands. Stored and sent as its snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewStatus {
    /// Waiting for an analyst.
    Pending,
    /// An analyst is deciding it and the decision is not durable yet (memory only): a retry
    /// meets it as still held, and no second analyst can claim it.
    Deciding,
    /// Approved: the held request ran (or runs when its payer retries it).
    Approved,
    /// Declined: the held request never runs (a paused tab is settled).
    Declined,
}

impl ReviewStatus {
    /// The name stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Pending => "pending",
            ReviewStatus::Deciding => "deciding",
            ReviewStatus::Approved => "approved",
            ReviewStatus::Declined => "declined",
        }
    }
}

impl std::fmt::Display for ReviewStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a review holds. Stored and sent as its snake_case name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldKind {
    /// A batch of transfers (a payment, or an x402 `exact` payment that runs on the payer's
    /// retry).
    Transfers,
    /// A tab's opening (its escrow).
    TabOpen,
    /// A tab's top-up.
    TabTopup,
    /// A voucher stream at a checkpoint: the tab is paused until the review is decided.
    TabCheckpoint,
}

impl HeldKind {
    /// The name stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            HeldKind::Transfers => "transfers",
            HeldKind::TabOpen => "tab_open",
            HeldKind::TabTopup => "tab_topup",
            HeldKind::TabCheckpoint => "tab_checkpoint",
        }
    }
}

/// What approving a review did to one held operation. Stored and sent as text, so reviews
/// decided by any build read back the same: `ok`, `exists`, `running`, `resumed`,
/// `allowed: runs when the payer retries it`, `refused: <code>`, or any other result text
/// kept as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum Outcome {
    /// `ok`: the ledger took it.
    Ok,
    /// `exists`: the ledger had it already.
    Exists,
    /// `running`: the approval is journaled with its operation, whose result is not yet (a
    /// crash here leaves it; the ledger knows whether it ran).
    Running,
    /// `resumed`: a checkpoint's paused tab takes payments again.
    Resumed,
    /// `allowed: runs when the payer retries it`: nothing ran at approval (an x402 client was
    /// told 402); the payer's retry of the same payment goes through.
    AllowedOnRetry,
    /// `refused: <code>`: the payer no longer may make it; nothing ran.
    Refused(String),
    /// Any other text, kept as it is: what the ledger or tab answered (`exceeds_credits`,
    /// `escrow_...`), `settled: ...` (a declined checkpoint closed its tab), `settle failed: <code>`, `unexpected`.
    Other(String),
}

const OUTCOME_ALLOWED_ON_RETRY: &str = "allowed: runs when the payer retries it";
const OUTCOME_REFUSED: &str = "refused: ";

impl Outcome {
    /// Whether the operation went through (or, `running`, whether it may have: the ledger
    /// knows). Anything else is what the ledger or a re-check refused.
    pub fn ran(&self) -> bool {
        matches!(self, Outcome::Ok | Outcome::Exists | Outcome::Running | Outcome::Resumed | Outcome::AllowedOnRetry)
    }
}

impl From<String> for Outcome {
    fn from(text: String) -> Outcome {
        match text.as_str() {
            "ok" => Outcome::Ok,
            "exists" => Outcome::Exists,
            "running" => Outcome::Running,
            "resumed" => Outcome::Resumed,
            OUTCOME_ALLOWED_ON_RETRY => Outcome::AllowedOnRetry,
            _ => match text.strip_prefix(OUTCOME_REFUSED) {
                Some(code) => Outcome::Refused(code.to_string()),
                None => Outcome::Other(text),
            },
        }
    }
}

impl From<Outcome> for String {
    fn from(outcome: Outcome) -> String {
        match outcome {
            Outcome::Ok => "ok".into(),
            Outcome::Exists => "exists".into(),
            Outcome::Running => "running".into(),
            Outcome::Resumed => "resumed".into(),
            Outcome::AllowedOnRetry => OUTCOME_ALLOWED_ON_RETRY.into(),
            Outcome::Refused(code) => format!("{OUTCOME_REFUSED}{code}"),
            Outcome::Other(text) => text,
        }
    }
}

impl ReviewDto {
    /// What `caller` may see of this review: staff see all of it, anyone else what its payer may
    /// ([`ReviewDto::for_payer`]).
    pub fn for_caller(self, caller: &Caller) -> ReviewDto {
        if sees_risk_details(caller) { self } else { self.for_payer() }
    }

    /// What the payer may see of its own held payment: that it is held and why, in words, and
    /// what became of it; not the rule, the model's score and features, nor the analyst's note
    /// or name.
    pub fn for_payer(mut self) -> ReviewDto {
        self.risk.rule = None;
        self.risk.model_score = None;
        self.risk.contributions.clear();
        self.shapley.clear();
        self.features.clear();
        self.note = None;
        self.decided_by = None;
        self
    }
}

/// What a holder must approve.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ChallengeDto {
    /// Challenge id; approve it, then resend the request with `Obol-Approval: <id>`.
    pub id: String,
    /// Why approval is needed: `amount_over_threshold`, `new_payee`, `new_device`, `risk_policy`.
    pub reasons: Vec<String>,
    /// Total amount of the operations that need approval, minor units.
    pub amount: String,
    /// ISO 4217 code.
    pub asset_code: String,
    /// Scale.
    pub asset_scale: u8,
    /// The accounts paid.
    pub payees: Vec<String>,
    /// With reason `security_change`: the change to approve (`step_up_policy`, `add_passkey`,
    /// `unfreeze`, `device_limits`, `monthly_limit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// With reason `security_change`: exactly what the change sets, as the approval binds it
    /// (`account=1;limit=9000`, `device=55;USD/2 per_payment=800 per_day=2000`), when it is text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// Factors that can approve: `totp`, `recovery_code`.
    pub methods: Vec<String>,
    /// When the challenge (and an approval of it) lapses, ns since the Unix epoch.
    pub expires_ns: String,
    /// With reason `risk_policy`: the rule that asked for it and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<RiskDto>,
}

/// The fraud model the risk engine scores with, and how it did on data it did not train on.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ModelDto {
    /// Its version label (the training time).
    pub version: String,
    /// The version of the streaming features it was trained on.
    pub features_version: u32,
    /// Its features, in order.
    pub features: Vec<String>,
    /// Where its held-out data began (seconds since the Unix epoch), when recorded.
    pub held_out_from_s: Option<u64>,
    /// How it did on the held-out rows.
    pub metrics: ModelMetricsDto,
    /// Each feature's share of the split gain, largest first.
    pub importance: Vec<ImportanceDto>,
}

/// Held-out metrics of a model.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ModelMetricsDto {
    /// Rows evaluated.
    pub rows: u64,
    /// Of which fraud.
    pub positives: u64,
    /// Area under the precision-recall curve.
    pub auprc: f64,
    /// Its 95% bootstrap interval, low end.
    pub auprc_ci_low: f64,
    /// High end.
    pub auprc_ci_high: f64,
    /// Area under the ROC curve.
    pub roc_auc: f64,
    /// Best precision among thresholds that catch at least 80% of fraud.
    pub precision_at_80_recall: f64,
    /// The score threshold of the confusion matrix (scores at or above it are flagged).
    pub threshold: f64,
    /// The confusion matrix at that threshold.
    pub confusion: ConfusionDto,
    /// The precision-recall curve (empty for a model trained before it was recorded).
    pub pr_curve: Vec<PrPointDto>,
}

/// A confusion matrix.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ConfusionDto {
    /// Fraud flagged.
    pub true_positives: u64,
    /// Good payments flagged.
    pub false_positives: u64,
    /// Good payments passed.
    pub true_negatives: u64,
    /// Fraud passed.
    pub false_negatives: u64,
}

/// One point of a precision-recall curve.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PrPointDto {
    /// Share of fraud caught.
    pub recall: f64,
    /// Share of flagged payments that were fraud.
    pub precision: f64,
}

/// One feature's share of the split gain.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ImportanceDto {
    /// The feature.
    pub feature: String,
    /// Its share, 0 to 1.
    pub share: f64,
}

impl From<&obol_risk::model::Model> for ModelDto {
    fn from(model: &obol_risk::model::Model) -> ModelDto {
        let m = &model.metrics;
        let [true_positives, false_positives, true_negatives, false_negatives] = m.confusion.map(|n| n as u64);
        ModelDto {
            version: model.version.clone(),
            features_version: model.features_version,
            features: model.features.clone(),
            held_out_from_s: model.held_out_from_s,
            metrics: ModelMetricsDto {
                rows: m.rows as u64,
                positives: m.positives as u64,
                auprc: m.auprc,
                auprc_ci_low: m.auprc_ci_low,
                auprc_ci_high: m.auprc_ci_high,
                roc_auc: m.roc_auc,
                precision_at_80_recall: m.precision_at_80_recall,
                threshold: m.threshold,
                confusion: ConfusionDto { true_positives, false_positives, true_negatives, false_negatives },
                pr_curve: m
                    .pr_curve
                    .iter()
                    .map(|[recall, precision]| PrPointDto { recall: *recall, precision: *precision })
                    .collect(),
            },
            importance: model
                .importance
                .iter()
                .map(|(feature, share)| ImportanceDto { feature: feature.clone(), share: *share })
                .collect(),
        }
    }
}

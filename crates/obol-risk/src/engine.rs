//! The live engine: one call per money-moving event observes its features, scores it with the
//! model, asks the policy in force and, unless it is allowed, explains the score with the
//! features that pushed it most. A candidate policy may run beside the live one (shadow mode):
//! it decides every event too, never enforces, and the engine keeps where the two differ.
//!
//! Per paying account the engine also keeps what regulation counts: payments and amount since the last
//! strong authentication (PSD2 RTS art. 16) and the calendar month's total (Korean carrier
//! billing). The caller says when a payment went through and whether it was strongly
//! authenticated; the counters restart after one that was.
//!
//! Everything here is state in memory, pure: the server persists [`RiskEngine::snapshot`] and
//! restores it at start, so a restart forgets neither velocity nor counters.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::features::{Event, FeatureStore, Features, Label, Reader, SnapshotError};
use crate::model::Model;
use crate::policy::{Action, Decision, Facts, Policy};

/// Contributions kept for a decision that is not `allow`.
pub const CONTRIBUTIONS_TOP: usize = 3;
/// Differences a shadow run keeps (the oldest go first); counts cover every event.
pub const SHADOW_DIFFERENCES_MAX: usize = 1_000;

/// What the engine answers for one event.
#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    /// The decision and its reason.
    pub decision: Decision,
    /// The model's fraud score, 0 to 1 (0 without a model).
    pub model_score: f64,
    /// The event's features.
    pub features: Features,
    /// For decisions other than `allow`: the features that raised the score most, by name, in
    /// the model's log-odds (fast, path-based contributions).
    pub contributions: Vec<(String, f64)>,
    /// Which policy decided: it counts up by one each time the live policy is replaced.
    pub policy_generation: u64,
}

/// One event the candidate would have decided differently (another action).
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    /// When, seconds since the Unix epoch.
    pub at_s: u64,
    /// The paying account.
    pub payer: u128,
    /// The payee account.
    pub payee: u128,
    /// The payment, in the paying account's units.
    pub amount_minor: u128,
    /// What the live policy decided.
    pub live: Decision,
    /// What the candidate would have decided.
    pub candidate: Decision,
}

/// Where a shadow run stands.
#[derive(Clone, Debug, PartialEq)]
pub struct ShadowReport {
    /// The candidate's bundles, `name@version` each.
    pub candidate: Vec<String>,
    /// Events both policies decided.
    pub evaluated: u64,
    /// Of those, events given another action.
    pub differed: u64,
    /// Counts per (live action, candidate action) pair that differed.
    pub changes: Vec<(Action, Action, u64)>,
    /// The latest differences, oldest first (at most [`SHADOW_DIFFERENCES_MAX`]).
    pub differences: Vec<Difference>,
}

struct Shadow {
    policy: Arc<Policy>,
    evaluated: u64,
    differed: u64,
    changes: HashMap<(Action, Action), u64>,
    differences: VecDeque<Difference>,
}

/// Features, model and policy. The counters regulation asks for (since the last strong
/// authentication, per calendar month) are the ledger's, counted as payments apply; the caller
/// passes them in [`Facts`].
pub struct RiskEngine {
    features: FeatureStore,
    model: Option<Arc<Model>>,
    policy: Arc<Policy>,
    generation: u64,
    shadow: Option<Shadow>,
    /// Decisions by action, each at its discriminant (the order of [`Action::ORDER`]).
    decided: [u64; Action::ORDER.len()],
}

impl std::fmt::Debug for RiskEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RiskEngine")
            .field("entities", &self.features.len())
            .field("generation", &self.generation)
            .field("shadow", &self.shadow.is_some())
            .finish()
    }
}

/// Months since January 1970 of a time in seconds (UTC calendar months).
pub fn month_of(at_s: u64) -> u32 {
    obol_core::ledger::utc_month(at_s.saturating_mul(1_000_000_000))
}

const SNAPSHOT_MAGIC: &[u8; 8] = b"OBRISK02";
/// The snapshot before the counters moved into the ledger: its counters are skipped.
const SNAPSHOT_MAGIC_V1: &[u8; 8] = b"OBRISK01";
const PAYER_RECORD_BYTES_V1: usize = 16 + 4 + 8 + 4 + 8 + 8;

// `decided` counts each action at its discriminant, which is its place in `Action::ORDER`.
const _: () = {
    let [step_up, allow, block, review] = Action::ORDER;
    assert!(step_up as usize == 0 && allow as usize == 1 && block as usize == 2 && review as usize == 3);
};

impl RiskEngine {
    /// An engine with `policy`, an optional model, and room for `capacity` tracked entities.
    pub fn new(policy: Policy, model: Option<Model>, capacity: usize) -> RiskEngine {
        RiskEngine {
            features: FeatureStore::with_capacity(capacity),
            model: model.map(Arc::new),
            policy: Arc::new(policy),
            generation: 1,
            shadow: None,
            decided: [0; Action::ORDER.len()],
        }
    }

    /// Decides one event. `facts` carries what the caller knows (the amount in the account's
    /// units, currency, jurisdiction, category, the holder's caps, the ledger's counters since
    /// the last strong authentication and of the month before this payment); the engine fills
    /// in the model's score and adds this payment to the month's total.
    ///
    /// Only an allowed payment is counted in the streaming features: a refused, held or
    /// challenged attempt is decided on the features it would have and leaves them as they were,
    /// so a payer who retries is not locked out by its own attempts. A challenged payment that
    /// its payer then approves is counted with [`RiskEngine::observe`].
    pub fn assess(&mut self, event: &Event, facts: Facts) -> Assessment {
        let (features, update) = self.features.prepare(event);
        let amount_minor = facts.amount_minor;
        let (facts, model_score) = self.complete(event, &features, facts);
        let decision = self.policy.decide(event.at_s, &features, &facts);
        if decision.action == Action::Allow {
            self.features.commit(update);
        }
        if let Some(shadow) = &mut self.shadow {
            let candidate = shadow.policy.decide(event.at_s, &features, &facts);
            shadow.evaluated += 1;
            if candidate.action != decision.action {
                shadow.differed += 1;
                *shadow.changes.entry((decision.action, candidate.action)).or_default() += 1;
                if shadow.differences.len() == SHADOW_DIFFERENCES_MAX {
                    shadow.differences.pop_front();
                }
                shadow.differences.push_back(Difference {
                    at_s: event.at_s,
                    payer: event.payer,
                    payee: event.payee,
                    amount_minor: u128::try_from(amount_minor).unwrap_or(0),
                    live: decision.clone(),
                    candidate,
                });
            }
        }
        let contributions = self.contributions(&features, decision.action);
        if let Some(count) = self.decided.get_mut(decision.action as usize) {
            *count += 1;
        }
        Assessment { decision, model_score, features, contributions, policy_generation: self.generation }
    }

    /// Counts a payment that goes through in the streaming features (one whose assessment was
    /// not `allow`, approved since: a step-up its payer answered, a review an analyst approved).
    pub fn observe(&mut self, event: &Event) {
        self.features.observe(event);
    }

    /// Counts a confirmed fraud in the streaming features from the time it became known: later
    /// decisions see it in the fraud counts and rates of its payer, device, payee and network.
    pub fn label(&mut self, label: &Label) {
        self.features.label(label);
    }

    /// What [`RiskEngine::assess`] would answer for `event` now, changing nothing: no feature
    /// observed, no decision counted, no shadow run. The facilitator's `verify` decides with it
    /// as `settle` will.
    pub fn assess_dry(&self, event: &Event, facts: Facts) -> Assessment {
        let features = self.features.peek(event);
        let (facts, model_score) = self.complete(event, &features, facts);
        let decision = self.policy.decide(event.at_s, &features, &facts);
        let contributions = self.contributions(&features, decision.action);
        Assessment { decision, model_score, features, contributions, policy_generation: self.generation }
    }

    /// `facts` with what the engine knows added: the model's score, and this payment in the
    /// month's total.
    fn complete(&self, _event: &Event, features: &Features, facts: Facts) -> (Facts, f64) {
        let model_score = self.model.as_ref().map_or(0.0, |model| model.score(&features.0));
        let facts = Facts {
            model_score,
            month_total_minor: facts.month_total_minor.saturating_add(facts.amount_minor),
            ..facts
        };
        (facts, model_score)
    }

    /// The model's top contributions to a decision other than allow.
    fn contributions(&self, features: &Features, action: Action) -> Vec<(String, f64)> {
        match (&self.model, action) {
            (Some(model), action) if action != Action::Allow => model.explain(&features.0, false, CONTRIBUTIONS_TOP),
            _ => Vec::new(),
        }
    }

    /// Replaces the live policy (hot reload); later events are decided by it.
    pub fn set_policy(&mut self, policy: Arc<Policy>) {
        self.policy = policy;
        self.generation += 1;
    }

    /// The live policy.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Which live policy this is (counts up with each replacement).
    pub fn policy_generation(&self) -> u64 {
        self.generation
    }

    /// Replaces the model; `None` scores every event 0.
    pub fn set_model(&mut self, model: Option<Arc<Model>>) {
        self.model = model;
    }

    /// The model, if one is loaded.
    pub fn model(&self) -> Option<&Arc<Model>> {
        self.model.as_ref()
    }

    /// Starts a shadow run of `candidate` (replacing any running one), or stops it with `None`.
    pub fn set_shadow(&mut self, candidate: Option<Policy>) {
        self.shadow = candidate.map(|policy| Shadow {
            policy: Arc::new(policy),
            evaluated: 0,
            differed: 0,
            changes: HashMap::new(),
            differences: VecDeque::new(),
        });
    }

    /// Where the shadow run stands, if one runs; `at_s` picks the candidate bundles to name.
    pub fn shadow_report(&self, at_s: u64) -> Option<ShadowReport> {
        let shadow = self.shadow.as_ref()?;
        let mut changes: Vec<(Action, Action, u64)> = shadow.changes.iter().map(|((l, c), n)| (*l, *c, *n)).collect();
        changes.sort();
        Some(ShadowReport {
            candidate: shadow.policy.in_force(at_s).iter().map(|b| format!("{}@{}", b.name, b.version)).collect(),
            evaluated: shadow.evaluated,
            differed: shadow.differed,
            changes,
            differences: shadow.differences.iter().cloned().collect(),
        })
    }

    /// Decisions so far, by action, in [`Action::ORDER`].
    pub fn decided(&self) -> [u64; Action::ORDER.len()] {
        self.decided
    }

    /// Entities tracked by the feature store.
    pub fn entities(&self) -> usize {
        self.features.len()
    }

    /// The features, as bytes for [`RiskEngine::restore`].
    pub fn snapshot(&self) -> Vec<u8> {
        let features = self.features.snapshot();
        let mut bytes = Vec::with_capacity(8 + 8 + features.len());
        bytes.extend_from_slice(SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&(features.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&features);
        bytes
    }

    /// Restores features from [`RiskEngine::snapshot`] bytes into this engine, keeping its
    /// policy and model. Nothing changes when the bytes are refused. A snapshot from before the
    /// counters moved into the ledger restores its features; its counters are skipped (the
    /// ledger recounts them from the log).
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let mut reader = Reader { bytes, at: 0 };
        let magic = reader.take(8)?;
        if magic != SNAPSHOT_MAGIC && magic != SNAPSHOT_MAGIC_V1 {
            return Err(SnapshotError::Magic);
        }
        let features_len = usize::try_from(reader.u64()?).map_err(|_| SnapshotError::Length)?;
        let features = FeatureStore::restore(reader.take(features_len)?)?;
        if magic == SNAPSHOT_MAGIC_V1 {
            let payers = usize::try_from(reader.u64()?).map_err(|_| SnapshotError::Length)?;
            reader.take(payers.checked_mul(PAYER_RECORD_BYTES_V1).ok_or(SnapshotError::Length)?)?;
        }
        if reader.at != bytes.len() {
            return Err(SnapshotError::Length);
        }
        self.features = features;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Bundle;

    const EU: &str = include_str!("../../../policy/eu-psd2-sca.toml");
    const SIGNALS: &str = include_str!("../../../policy/fraud-signals.toml");
    const NOW: u64 = 1_800_000_000;

    fn policy(texts: &[&str]) -> Policy {
        let mut policy = Policy::new();
        for text in texts {
            policy.add(Bundle::compile(text).unwrap()).unwrap();
        }
        policy
    }

    fn eur_facts() -> Facts {
        Facts { currency: "EUR".into(), jurisdiction: "EU".into(), ..Facts::default() }
    }

    /// At EUR's own scale (one account unit per ISO 4217 minor unit), both amounts are cents.
    fn facts_for(event: &Event) -> Facts {
        Facts { amount_minor: event.amount_iso_minor as i64, ..eur_facts() }
    }

    fn event(at_s: u64, amount_iso_minor: u128) -> Event {
        Event { at_s, payer: 7, device: Some(8), payee: 9, network: Some(1), amount_iso_minor, ..Event::default() }
    }

    #[test]
    fn months_follow_the_calendar() {
        assert_eq!(month_of(0), 0);
        assert_eq!(month_of(1_735_689_599), 659, "2024-12-31T23:59:59Z");
        assert_eq!(month_of(1_735_689_600), 660, "2025-01-01T00:00:00Z");
        assert_eq!(month_of(1_709_164_800), 649, "2024-02-29 (a leap day) is in February 2024");
        assert_eq!(month_of(1_709_251_200), 650, "2024-03-01");
    }

    #[test]
    fn the_sixth_payment_since_authentication_steps_up_and_the_ledgers_counters_decide_it() {
        let mut engine = RiskEngine::new(policy(&[EU]), None, 1_000);
        for n in 0..5 {
            let facts = Facts {
                sca_payments_since: n as i64,
                sca_amount_since_minor: 100 * n as i64,
                ..facts_for(&event(NOW + n, 100))
            };
            let assessment = engine.assess(&event(NOW + n, 100), facts);
            assert_eq!(assessment.decision.action, Action::Allow, "payment {}", n + 1);
        }
        let facts = Facts { sca_payments_since: 5, sca_amount_since_minor: 500, ..facts_for(&event(NOW + 5, 100)) };
        let sixth = engine.assess(&event(NOW + 5, 100), facts);
        assert_eq!(sixth.decision.rule.as_deref(), Some("eu-psd2-sca@1/low-value-sixth-payment"));
        assert_eq!(engine.assess(&event(NOW + 6, 100), facts_for(&event(NOW + 6, 100))).decision.action, Action::Allow);
        assert_eq!(engine.decided(), [1, 6, 0, 0]);
    }

    #[test]
    fn the_month_total_a_rule_sees_includes_the_payment_decided() {
        let mut engine = RiskEngine::new(Policy::new(), None, 100);
        let facts = Facts { month_total_minor: 900, ..facts_for(&event(NOW, 100)) };
        let assessment = engine.assess(&event(NOW, 100), facts);
        assert_eq!(assessment.decision.action, Action::Allow);
        let (completed, _) = engine.complete(&event(NOW, 100), &assessment.features, facts_for_month(900));
        assert_eq!(completed.month_total_minor, 1_000);
    }

    fn facts_for_month(month_total_minor: i64) -> Facts {
        Facts { month_total_minor, ..facts_for(&event(NOW, 100)) }
    }

    #[test]
    fn a_shadow_candidate_reports_exactly_the_events_it_would_decide_otherwise() {
        let live = policy(&[EU]);
        let candidate =
            live.with_replaced(Bundle::compile(&EU.replace("amount_minor > 3000", "amount_minor > 2000")).unwrap());
        let mut engine = RiskEngine::new(live, None, 1_000);
        engine.set_shadow(Some(candidate.unwrap()));
        for (n, amount) in [1_000u128, 2_000, 2_001, 2_500, 3_000, 3_001].iter().enumerate() {
            let mut payment = event(NOW + n as u64, *amount);
            payment.payer = n as u128 + 100;
            let assessment = engine.assess(&payment, facts_for(&payment));
            let expected = if *amount > 3_000 { Action::StepUp } else { Action::Allow };
            assert_eq!(assessment.decision.action, expected, "the live policy still decides EUR {amount}");
        }
        let report = engine.shadow_report(NOW).unwrap();
        assert_eq!((report.evaluated, report.differed), (6, 3));
        assert_eq!(report.changes, vec![(Action::Allow, Action::StepUp, 3)]);
        let amounts: Vec<u128> = report.differences.iter().map(|d| d.amount_minor).collect();
        assert_eq!(amounts, [2_001, 2_500, 3_000]);
        assert_eq!(report.candidate, ["eu-psd2-sca@1"]);
        engine.set_shadow(None);
        assert!(engine.shadow_report(NOW).is_none());
    }

    #[test]
    fn a_snapshot_restores_features_exactly_and_an_older_snapshot_keeps_its_features() {
        let mut engine = RiskEngine::new(policy(&[SIGNALS]), None, 1_000);
        for n in 0..20 {
            engine.assess(
                &event(NOW + n, 50 + u128::from(n as u8)),
                facts_for(&event(NOW + n, 50 + u128::from(n as u8))),
            );
        }
        let bytes = engine.snapshot();
        let mut restored = RiskEngine::new(policy(&[SIGNALS]), None, 1_000);
        restored.restore(&bytes).unwrap();
        assert_eq!(restored.snapshot(), bytes);
        let next = event(NOW + 21, 60);
        assert_eq!(restored.assess(&next, facts_for(&next)), engine.assess(&next, facts_for(&next)));
        for cut in [0, 7, 8, 20, bytes.len() - 1] {
            assert!(restored.restore(&bytes[..cut]).is_err(), "a snapshot cut at {cut} is refused");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(restored.restore(&extra).is_err());
        // A version 1 snapshot: the same features, then two payers' counters, which are skipped.
        let mut v1 = SNAPSHOT_MAGIC_V1.to_vec();
        v1.extend_from_slice(&bytes[8..]);
        v1.extend_from_slice(&2u64.to_le_bytes());
        v1.extend_from_slice(&[7; 2 * PAYER_RECORD_BYTES_V1]);
        let mut older = RiskEngine::new(policy(&[SIGNALS]), None, 1_000);
        older.restore(&v1).unwrap();
        assert_eq!(older.snapshot(), bytes);
        assert!(older.restore(&v1[..v1.len() - 1]).is_err());
    }

    #[test]
    fn a_replaced_policy_decides_the_next_event_and_the_generation_says_which() {
        let mut engine = RiskEngine::new(policy(&[EU]), None, 100);
        let before = engine.assess(&event(NOW, 2_500), facts_for(&event(NOW, 2_500)));
        assert_eq!((before.decision.action, before.policy_generation), (Action::Allow, 1));
        let stricter = policy(&[&EU.replace("amount_minor > 3000", "amount_minor > 2000")]);
        engine.set_policy(Arc::new(stricter));
        let mut other = event(NOW + 1, 2_500);
        other.payer = 8;
        let after = engine.assess(&other, facts_for(&other));
        assert_eq!((after.decision.action, after.policy_generation), (Action::StepUp, 2));
    }
}

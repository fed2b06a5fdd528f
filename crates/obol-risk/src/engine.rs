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

use crate::features::{Event, FeatureStore, Features, SnapshotError};
use crate::model::Model;
use crate::policy::{Action, Decision, Facts, Policy};

/// Contributions kept for a decision that is not `allow`.
pub const CONTRIBUTIONS_TOP: usize = 3;
/// Differences a shadow run keeps (the oldest go first); counts cover every event.
pub const SHADOW_DIFFERENCES_MAX: usize = 1_000;
/// Payers whose regulatory counters are kept; past this the least recently paying are dropped
/// (their counters restart, which asks for authentication sooner, never later).
pub const PAYERS_MAX: usize = 1_000_000;

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

/// What one payer has done that regulation counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PayerCounters {
    /// Payments since the last strong authentication.
    pub sca_payments_since: u32,
    /// Minor units paid since the last strong authentication.
    pub sca_amount_since_minor: u64,
    /// The calendar month `month_total_minor` counts (months since January 1970).
    pub month: u32,
    /// Minor units paid in `month`.
    pub month_total_minor: u64,
    /// When the payer last paid, seconds (for eviction).
    pub last_s: u64,
}

/// Features, model and policy, with per-payer counters.
pub struct RiskEngine {
    features: FeatureStore,
    model: Option<Arc<Model>>,
    policy: Arc<Policy>,
    generation: u64,
    shadow: Option<Shadow>,
    payers: HashMap<u128, PayerCounters>,
    decided: [u64; 4],
}

impl std::fmt::Debug for RiskEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RiskEngine")
            .field("entities", &self.features.len())
            .field("payers", &self.payers.len())
            .field("generation", &self.generation)
            .field("shadow", &self.shadow.is_some())
            .finish()
    }
}

/// Months since January 1970 of a time in seconds (UTC calendar months).
pub fn month_of(at_s: u64) -> u32 {
    // Howard Hinnant's civil-from-days, on days since 1970-01-01.
    let days = (at_s / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    ((year - 1970) * 12 + (month - 1)).max(0) as u32
}

const SNAPSHOT_MAGIC: &[u8; 8] = b"OBRISK01";
const PAYER_RECORD_BYTES: usize = 16 + 4 + 8 + 4 + 8 + 8;

impl RiskEngine {
    /// An engine with `policy`, an optional model, and room for `capacity` tracked entities.
    pub fn new(policy: Policy, model: Option<Model>, capacity: usize) -> RiskEngine {
        RiskEngine {
            features: FeatureStore::with_capacity(capacity),
            model: model.map(Arc::new),
            policy: Arc::new(policy),
            generation: 1,
            shadow: None,
            payers: HashMap::new(),
            decided: [0; 4],
        }
    }

    /// Decides one event. `facts` carries what the caller knows (the amount in the account's
    /// units, currency, jurisdiction, category, the holder's caps); the engine fills in the
    /// model's score, the counters since the last strong authentication and the month's total
    /// (this payment included).
    pub fn assess(&mut self, event: &Event, facts: Facts) -> Assessment {
        let features = self.features.observe(event);
        let amount_minor = facts.amount_minor;
        let (facts, model_score) = self.complete(event, &features, facts);
        let decision = self.policy.decide(event.at_s, &features, &facts);
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
        self.decided[decision.action as usize] += 1;
        Assessment { decision, model_score, features, contributions, policy_generation: self.generation }
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

    /// `facts` with what the engine knows added: the model's score, the counters since the
    /// last strong authentication and the month's total (this payment included).
    fn complete(&self, event: &Event, features: &Features, facts: Facts) -> (Facts, f64) {
        let model_score = self.model.as_ref().map_or(0.0, |model| model.score(&features.0));
        let counters = self.counters(event.payer, event.at_s);
        let facts = Facts {
            model_score,
            sca_payments_since: i64::from(counters.sca_payments_since),
            sca_amount_since_minor: i64::try_from(counters.sca_amount_since_minor).unwrap_or(i64::MAX),
            month_total_minor: i64::try_from(counters.month_total_minor)
                .unwrap_or(i64::MAX)
                .saturating_add(facts.amount_minor),
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

    /// The paying account's counters as of `at_s` (a new month starts from zero). Counters are
    /// kept per account, so one asset's minor units are never added to another's.
    pub fn counters(&self, payer: u128, at_s: u64) -> PayerCounters {
        let month = month_of(at_s);
        let mut counters = self.payers.get(&payer).copied().unwrap_or_default();
        if counters.month != month {
            counters.month = month;
            counters.month_total_minor = 0;
        }
        counters
    }

    /// Records that a payment of `amount_minor` from the account `payer` went through at `at_s`;
    /// `authenticated` when it was strongly authenticated (the counters since SCA restart).
    pub fn paid(&mut self, payer: u128, amount_minor: u128, at_s: u64, authenticated: bool) {
        let amount_minor = u64::try_from(amount_minor).unwrap_or(u64::MAX);
        let mut counters = self.counters(payer, at_s);
        counters.month_total_minor = counters.month_total_minor.saturating_add(amount_minor);
        if authenticated {
            counters.sca_payments_since = 0;
            counters.sca_amount_since_minor = 0;
        } else {
            counters.sca_payments_since = counters.sca_payments_since.saturating_add(1);
            counters.sca_amount_since_minor = counters.sca_amount_since_minor.saturating_add(amount_minor);
        }
        counters.last_s = counters.last_s.max(at_s);
        if self.payers.len() >= PAYERS_MAX && !self.payers.contains_key(&payer) {
            let oldest = self.payers.iter().min_by_key(|(_, c)| c.last_s).map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.payers.remove(&oldest);
            }
        }
        self.payers.insert(payer, counters);
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
    pub fn decided(&self) -> [u64; 4] {
        self.decided
    }

    /// Entities tracked by the feature store.
    pub fn entities(&self) -> usize {
        self.features.len()
    }

    /// The features and counters, as bytes for [`RiskEngine::restore`].
    pub fn snapshot(&self) -> Vec<u8> {
        let features = self.features.snapshot();
        let mut bytes = Vec::with_capacity(8 + 8 + features.len() + 8 + self.payers.len() * PAYER_RECORD_BYTES);
        bytes.extend_from_slice(SNAPSHOT_MAGIC);
        bytes.extend_from_slice(&(features.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&features);
        bytes.extend_from_slice(&(self.payers.len() as u64).to_le_bytes());
        let mut payers: Vec<(&u128, &PayerCounters)> = self.payers.iter().collect();
        payers.sort_by_key(|(id, _)| **id);
        for (id, counters) in payers {
            bytes.extend_from_slice(&id.to_le_bytes());
            bytes.extend_from_slice(&counters.sca_payments_since.to_le_bytes());
            bytes.extend_from_slice(&counters.sca_amount_since_minor.to_le_bytes());
            bytes.extend_from_slice(&counters.month.to_le_bytes());
            bytes.extend_from_slice(&counters.month_total_minor.to_le_bytes());
            bytes.extend_from_slice(&counters.last_s.to_le_bytes());
        }
        bytes
    }

    /// Restores features and counters from [`RiskEngine::snapshot`] bytes into this engine,
    /// keeping its policy and model. Nothing changes when the bytes are refused.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(8)? != SNAPSHOT_MAGIC {
            return Err(SnapshotError::Magic);
        }
        let features_len = usize::try_from(reader.u64()?).map_err(|_| SnapshotError::Length)?;
        let features = FeatureStore::restore(reader.take(features_len)?)?;
        let payers_count = reader.u64()?;
        if payers_count > (PAYERS_MAX as u64) {
            return Err(SnapshotError::Length);
        }
        let mut payers = HashMap::with_capacity(payers_count as usize);
        for _ in 0..payers_count {
            let id = u128::from_le_bytes(reader.array()?);
            let counters = PayerCounters {
                sca_payments_since: u32::from_le_bytes(reader.array()?),
                sca_amount_since_minor: reader.u64()?,
                month: u32::from_le_bytes(reader.array()?),
                month_total_minor: reader.u64()?,
                last_s: reader.u64()?,
            };
            payers.insert(id, counters);
        }
        if reader.at != bytes.len() {
            return Err(SnapshotError::Length);
        }
        self.features = features;
        self.payers = payers;
        Ok(())
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], SnapshotError> {
        let end = self.at.checked_add(len).filter(|end| *end <= self.bytes.len()).ok_or(SnapshotError::Length)?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array()?))
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

    fn facts_for(event: &Event) -> Facts {
        Facts { amount_minor: event.amount_minor as i64, ..eur_facts() }
    }

    fn event(at_s: u64, amount_minor: u128) -> Event {
        Event { at_s, payer: 7, device: Some(8), payee: 9, network: Some(1), amount_minor, ..Event::default() }
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
    fn the_sixth_payment_since_authentication_steps_up_and_authentication_restarts_the_count() {
        let mut engine = RiskEngine::new(policy(&[EU]), None, 1_000);
        for n in 0..5 {
            let assessment = engine.assess(&event(NOW + n, 100), facts_for(&event(NOW + n, 100)));
            assert_eq!(assessment.decision.action, Action::Allow, "payment {}", n + 1);
            engine.paid(7, 100, NOW + n, false);
        }
        let sixth = engine.assess(&event(NOW + 5, 100), facts_for(&event(NOW + 5, 100)));
        assert_eq!(sixth.decision.rule.as_deref(), Some("eu-psd2-sca@1/low-value-sixth-payment"));
        engine.paid(7, 100, NOW + 5, true);
        assert_eq!(engine.assess(&event(NOW + 6, 100), facts_for(&event(NOW + 6, 100))).decision.action, Action::Allow);
        assert_eq!(engine.counters(7, NOW + 6).sca_payments_since, 0);
        assert_eq!(engine.counters(7, NOW + 6).month_total_minor, 600, "the month counts every payment");
        assert_eq!(engine.decided(), [1, 6, 0, 0]);
    }

    #[test]
    fn the_months_total_restarts_with_the_calendar_month() {
        let mut engine = RiskEngine::new(Policy::new(), None, 100);
        engine.paid(7, 900_000, 1_735_689_599, false);
        assert_eq!(engine.counters(7, 1_735_689_599).month_total_minor, 900_000);
        assert_eq!(engine.counters(7, 1_735_689_600).month_total_minor, 0, "a new month");
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
    fn a_snapshot_restores_features_and_counters_exactly() {
        let mut engine = RiskEngine::new(policy(&[SIGNALS]), None, 1_000);
        for n in 0..20 {
            engine.assess(
                &event(NOW + n, 50 + u128::from(n as u8)),
                facts_for(&event(NOW + n, 50 + u128::from(n as u8))),
            );
            engine.paid(7, 50, NOW + n, n == 10);
        }
        let bytes = engine.snapshot();
        let mut restored = RiskEngine::new(policy(&[SIGNALS]), None, 1_000);
        restored.restore(&bytes).unwrap();
        assert_eq!(restored.snapshot(), bytes);
        assert_eq!(restored.counters(7, NOW + 20), engine.counters(7, NOW + 20));
        let next = event(NOW + 21, 60);
        assert_eq!(restored.assess(&next, facts_for(&next)), engine.assess(&next, facts_for(&next)));
        for cut in [0, 7, 8, 20, bytes.len() - 1] {
            assert!(restored.restore(&bytes[..cut]).is_err(), "a snapshot cut at {cut} is refused");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(restored.restore(&extra).is_err());
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

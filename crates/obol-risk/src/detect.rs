//! Detection by fraud kind on simulated traffic: how much of each injected kind the rules alone,
//! the model alone, and both together stop (any decision but `allow`), and how many good payments
//! they stop by mistake. The model trains on the first part of the traffic by time; everything is
//! measured on the rest. Features are computed as the server would have live: each fraud's label
//! counts from the time it became known ([`replay_features`]).

use crate::features::{DEFAULT_CAPACITY, FEATURE_NAMES, Features, Label, Replay};
use crate::model::{Model, ModelError, TrainParams};
use crate::policy::{Action, Facts, Policy};
use crate::sim::{FraudKind, Profile, SimEvent};

/// Stopped events of one kind (or of good traffic, `kind: None`: ordinary purchases with
/// `profile: None`, and each honest micropayment profile apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindReport {
    /// The fraud kind; `None` for good payments.
    pub kind: Option<FraudKind>,
    /// For good payments, the honest micropayment profile (`None`: ordinary purchases).
    pub profile: Option<Profile>,
    /// Held-out events of this kind.
    pub events: usize,
    /// Stopped by the rules alone (the model's score left out).
    pub by_rules: usize,
    /// Stopped by the model alone (score at or above 0.5).
    pub by_model: usize,
    /// Stopped by the rules with the model's score among their inputs.
    pub by_both: usize,
}

/// Trains on the first `split` of `events` (in time order) and reports on the rest.
pub fn report(
    events: &[SimEvent],
    policy: &Policy,
    params: TrainParams,
    split: f64,
) -> Result<Vec<KindReport>, ModelError> {
    let features = replay_features(events);
    let cut = (events.len() as f64 * split) as usize;
    let rows: Vec<Vec<f64>> = features.iter().take(cut).map(|f| f.0.to_vec()).collect();
    let labels: Vec<bool> = events.iter().take(cut).map(|e| e.fraud.is_some()).collect();
    let names: Vec<String> = FEATURE_NAMES.iter().map(|s| s.to_string()).collect();
    let model = Model::train(&rows, &labels, &names, params, "detect")?;
    let rows = std::iter::once((None, None))
        .chain(Profile::ALL.iter().map(|p| (None, Some(*p))))
        .chain(FraudKind::ALL.iter().map(|k| (Some(*k), None)));
    let mut reports: Vec<KindReport> = rows
        .map(|(kind, profile)| KindReport { kind, profile, events: 0, by_rules: 0, by_model: 0, by_both: 0 })
        .collect();
    for (event, features) in events.iter().zip(&features).skip(cut) {
        let score = model.score(&features.0);
        let stopped = |model_score: f64| {
            let facts = Facts { model_score, ..Facts::default() };
            policy.decide(event.event.at_s, features, &facts).action != Action::Allow
        };
        let Some(report) = reports.iter_mut().find(|r| r.kind == event.fraud && r.profile == event.profile) else {
            continue;
        };
        report.events += 1;
        report.by_rules += usize::from(stopped(0.0));
        report.by_model += usize::from(score >= 0.5);
        report.by_both += usize::from(stopped(score));
    }
    Ok(reports)
}

/// The features of every simulated event, in order, computed as the live engine would: each
/// fraud's label counted from the time it became known.
pub fn replay_features(events: &[SimEvent]) -> Vec<Features> {
    let mut replay = Replay::with_capacity(DEFAULT_CAPACITY);
    events
        .iter()
        .map(|e| {
            let features = replay.observe(&e.event);
            if e.fraud.is_some() {
                replay.label(Label::of(&e.event, e.label_known_s));
            }
            features
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Bundle;
    use crate::sim::{SimConfig, simulate};

    #[test]
    fn rules_and_model_together_stop_most_of_every_kind_and_almost_no_honest_micropayments() {
        let mut policy = Policy::new();
        policy.add(Bundle::compile(include_str!("../../../policy/fraud-signals.toml")).unwrap()).unwrap();
        let events = simulate(&SimConfig { customers: 3_000, days: 14, ..SimConfig::default() });
        let params = TrainParams::default();
        let reports = report(&events, &policy, params, 0.7).unwrap();
        let good = reports.iter().find(|r| r.kind.is_none() && r.profile.is_none()).unwrap();
        assert!(good.events > 10_000);
        assert!(good.by_both * 100 < good.events, "under 1% of ordinary good payments stopped: {good:?}");
        for profile in Profile::ALL {
            let honest = reports.iter().find(|r| r.profile == Some(profile)).unwrap();
            assert!(honest.events > 100, "{honest:?}");
            assert!(
                honest.by_both * 1_000 <= honest.events,
                "at most 0.1% of {profile:?} payments stopped: {honest:?}"
            );
        }
        for report in reports.iter().filter(|r| r.kind.is_some()) {
            assert!(report.events > 0, "{report:?}");
            // A compromised payee or payer looks like ordinary traffic: only the fraud confirmed
            // on it before (labels known days later) gives it away, so less of it is stopped.
            let share = match report.kind {
                Some(FraudKind::CompromisedPayee | FraudKind::CompromisedPayer) => 4,
                _ => 7,
            };
            assert!(
                report.by_both * 10 >= report.events * share,
                "at least {share}0% of {:?} stopped: {report:?}",
                report.kind
            );
            assert!(report.by_both >= report.by_rules.max(report.by_model), "both stop at least what either does");
        }
    }
}

//! The fraud model: gradient-boosted trees (forust-ml), trained and served in Rust, with each
//! score explained by per-feature contributions (fast tree-path weights on the hot path, exact
//! Shapley values for the review queue), and the metrics that judge it: AUPRC with a bootstrap
//! confidence interval, ROC AUC, precision at 80% recall and the confusion matrix at the chosen
//! threshold. Training is deterministic for a given seed and data.

use forust_ml::data::Matrix;
use forust_ml::gradientbooster::{ContributionsMethod, GradientBooster};
use serde::{Deserialize, Serialize};

/// Training settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainParams {
    /// Trees.
    pub iterations: usize,
    /// Shrinkage per tree.
    pub learning_rate: f32,
    /// Deepest tree.
    pub max_depth: usize,
    /// Seed for row and column sampling.
    pub seed: u64,
}

impl Default for TrainParams {
    fn default() -> TrainParams {
        TrainParams { iterations: 200, learning_rate: 0.1, max_depth: 5, seed: 7 }
    }
}

/// Why training or loading failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The data cannot train a model.
    #[error("{0}")]
    Data(String),
    /// forust refused.
    #[error("the booster: {0}")]
    Booster(String),
    /// Not a model artifact of this version.
    #[error("not an obol model artifact: {0}")]
    Artifact(String),
}

/// How a model did on data it did not train on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Metrics {
    /// Rows evaluated.
    pub rows: usize,
    /// Of which fraud.
    pub positives: usize,
    /// Area under the precision-recall curve (average precision).
    pub auprc: f64,
    /// 2.5th percentile of AUPRC over bootstrap resamples.
    pub auprc_ci_low: f64,
    /// 97.5th percentile.
    pub auprc_ci_high: f64,
    /// Area under the ROC curve.
    pub roc_auc: f64,
    /// Best precision among thresholds that catch at least 80% of fraud.
    pub precision_at_80_recall: f64,
    /// The threshold that reaches 80% recall (scores at or above it are flagged).
    pub threshold: f64,
    /// At that threshold: true positives, false positives, true negatives, false negatives.
    pub confusion: [usize; 4],
}

/// A trained model with its feature names and metrics. Deserializing checks the format and
/// compiles the trees, as [`Model::from_json`] does, so every model can score.
#[derive(Serialize, Deserialize)]
#[serde(try_from = "Artifact")]
pub struct Model {
    /// Artifact format.
    pub format: String,
    /// Version label (e.g. the training time).
    pub version: String,
    /// Feature names, in the order rows carry them.
    pub features: Vec<String>,
    /// The version of obol's streaming features the rows were computed with
    /// ([`crate::features::FEATURES_VERSION`]); artifacts from before it was recorded read as 1.
    pub features_version: u32,
    /// Settings it was trained with.
    pub params: TrainParams,
    /// Held-out metrics.
    pub metrics: Metrics,
    /// Where its held-out data began (seconds since the Unix epoch): rows before this time
    /// trained it, so an evaluation scores only rows from this time on. `None` in artifacts from
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out_from_s: Option<u64>,
    booster: String,
    #[serde(skip_serializing)]
    compiled: GradientBooster,
}

/// A model artifact as [`Model::to_json`] writes it, before its trees are compiled.
#[derive(Deserialize)]
struct Artifact {
    format: String,
    version: String,
    features: Vec<String>,
    #[serde(default = "first_features_version")]
    features_version: u32,
    params: TrainParams,
    metrics: Metrics,
    #[serde(default)]
    held_out_from_s: Option<u64>,
    booster: String,
}

impl TryFrom<Artifact> for Model {
    type Error = ModelError;

    fn try_from(artifact: Artifact) -> Result<Model, ModelError> {
        let Artifact { format, version, features, features_version, params, metrics, held_out_from_s, booster } =
            artifact;
        if format != FORMAT {
            return Err(ModelError::Artifact(format!("format {format:?}, expected {FORMAT}")));
        }
        let compiled = GradientBooster::from_json(&booster).map_err(|e| ModelError::Artifact(e.to_string()))?;
        Ok(Model { format, version, features, features_version, params, metrics, held_out_from_s, booster, compiled })
    }
}

fn first_features_version() -> u32 {
    1
}

const FORMAT: &str = "obol-model-1";

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Column-major copy of row-major rows (forust's layout); a row shorter than `width` is padded
/// with zeros.
fn columns(rows: &[Vec<f64>], width: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows.len() * width);
    for c in 0..width {
        out.extend(rows.iter().map(|row| row.get(c).copied().unwrap_or(0.0)));
    }
    out
}

impl Model {
    /// Trains on `rows` (one per event, `features.len()` wide) labelled `labels` (true: fraud).
    pub fn train(
        rows: &[Vec<f64>],
        labels: &[bool],
        features: &[String],
        params: TrainParams,
        version: &str,
    ) -> Result<Model, ModelError> {
        if rows.len() != labels.len() || rows.is_empty() {
            return Err(ModelError::Data(format!("{} rows but {} labels", rows.len(), labels.len())));
        }
        if rows.iter().any(|row| row.len() != features.len()) {
            return Err(ModelError::Data(format!("every row needs {} features", features.len())));
        }
        if !labels.iter().any(|l| *l) || labels.iter().all(|l| *l) {
            return Err(ModelError::Data("the training data needs both fraud and non-fraud rows".into()));
        }
        let data = columns(rows, features.len());
        let matrix = Matrix::new(&data, rows.len(), features.len());
        let y: Vec<f64> = labels.iter().map(|l| f64::from(u8::from(*l))).collect();
        let mut booster = GradientBooster::default()
            .set_iterations(params.iterations)
            .set_learning_rate(params.learning_rate)
            .set_max_depth(params.max_depth)
            .set_seed(params.seed)
            .set_parallel(false);
        booster.fit_unweighted(&matrix, &y, None).map_err(|e| ModelError::Booster(e.to_string()))?;
        let dump = booster.json_dump().map_err(|e| ModelError::Booster(e.to_string()))?;
        Ok(Model {
            format: FORMAT.into(),
            version: version.into(),
            features: features.to_vec(),
            features_version: crate::features::FEATURES_VERSION,
            params,
            metrics: Metrics::default(),
            held_out_from_s: None,
            booster: dump,
            compiled: booster,
        })
    }

    /// Fraud probability of one row: walks each tree from the row itself, allocating nothing.
    pub fn score(&self, row: &[f64]) -> f64 {
        let booster = &self.compiled;
        let log_odds = booster
            .trees
            .iter()
            .fold(booster.base_score, |sum, tree| sum + tree.predict_row_from_row_slice(row, &booster.missing));
        sigmoid(log_odds)
    }

    /// Fraud probabilities of many rows.
    pub fn score_all(&self, rows: &[Vec<f64>]) -> Vec<f64> {
        let data = columns(rows, self.features.len());
        let matrix = Matrix::new(&data, rows.len(), self.features.len());
        self.compiled.predict(&matrix, false).into_iter().map(sigmoid).collect()
    }

    /// The features that pushed this row's score up most, largest first (log-odds units):
    /// `exact` uses Shapley values, otherwise the trees' path weights (fast).
    pub fn explain(&self, row: &[f64], exact: bool, top: usize) -> Vec<(String, f64)> {
        let matrix = Matrix::new(row, 1, row.len());
        let method = if exact { ContributionsMethod::Shapley } else { ContributionsMethod::Weight };
        let contributions = self.compiled.predict_contributions(&matrix, method, false);
        // Rank positions first and name only the top ones: a name is an allocation.
        let mut ranked: Vec<(usize, f64)> = contributions.into_iter().take(self.features.len()).enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked.truncate(top);
        ranked.into_iter().filter_map(|(at, value)| Some((self.features.get(at)?.clone(), value))).collect()
    }

    /// The artifact: JSON with the format, version, features, settings, metrics and trees.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether a live engine can score with this model: it was trained on exactly the streaming
    /// features this build computes, in their order and version. `Err` says what differs.
    pub fn check_live(&self) -> Result<(), String> {
        use crate::features::{FEATURE_NAMES, FEATURES_VERSION};
        if self.features_version != FEATURES_VERSION {
            return Err(format!(
                "it was trained on version {} of obol's features; this obol computes version {FEATURES_VERSION}: \
                 train it again with this obol",
                self.features_version
            ));
        }
        if let Some(unknown) = self.features.iter().find(|name| !FEATURE_NAMES.contains(&name.as_str())) {
            return Err(format!("it needs feature {unknown:?}, which obol does not compute from live payments"));
        }
        if self.features.iter().map(String::as_str).ne(FEATURE_NAMES) {
            return Err("it lists obol's features in another order or leaves some out".into());
        }
        Ok(())
    }

    /// Loads an artifact written by [`Model::to_json`].
    pub fn from_json(text: &str) -> Result<Model, ModelError> {
        let artifact: Artifact = serde_json::from_str(text).map_err(|e| ModelError::Artifact(e.to_string()))?;
        Model::try_from(artifact)
    }
}

/// Each score with its label, highest score first (ties in their given order). Scores and labels
/// pair up in order; the longer of the two is cut to the shorter.
fn ranked_down(scores: &[f64], labels: &[bool]) -> Vec<(f64, bool)> {
    let mut ranked: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked
}

/// Average precision: the area under the precision-recall curve, stepwise.
pub fn auprc(scores: &[f64], labels: &[bool]) -> f64 {
    let ranked = ranked_down(scores, labels);
    let positives = ranked.iter().filter(|(_, l)| *l).count();
    if positives == 0 {
        return 0.0;
    }
    let (mut true_positives, mut area) = (0usize, 0.0);
    for (rank, (_, label)) in ranked.iter().enumerate() {
        if *label {
            true_positives += 1;
            area += true_positives as f64 / (rank + 1) as f64;
        }
    }
    area / positives as f64
}

/// Area under the ROC curve (the chance a random fraud scores above a random non-fraud; ties
/// count half).
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut ranked = ranked_down(scores, labels);
    ranked.reverse();
    let positives = ranked.iter().filter(|(_, l)| *l).count() as f64;
    let negatives = ranked.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return 0.0;
    }
    // Sum of positive ranks, with tied scores given their average rank.
    let (mut rank_sum, mut first) = (0.0, 0usize);
    for tied in ranked.chunk_by(|a, b| a.0 == b.0) {
        let last = first + tied.len() - 1;
        let average_rank = (first + last) as f64 / 2.0 + 1.0;
        rank_sum += tied.iter().filter(|(_, l)| *l).count() as f64 * average_rank;
        first = last + 1;
    }
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

/// Precision among the `k` highest-scored payers of each day, averaged over the days: the share
/// of the payers an investigator team checking `k` cases a day would find with fraud that day.
/// `days` and `payers` give each row's day and payer; a payer's score for a day is its highest.
/// Answers the mean and the number of days.
pub fn precision_top_k_per_day(
    scores: &[f64],
    labels: &[bool],
    days: &[u64],
    payers: &[u128],
    k: usize,
) -> (f64, usize) {
    let mut by_day: std::collections::BTreeMap<u64, std::collections::HashMap<u128, (f64, bool)>> = Default::default();
    for (((score, label), day), payer) in scores.iter().zip(labels).zip(days).zip(payers) {
        let entry = by_day.entry(*day).or_default().entry(*payer).or_insert((f64::MIN, false));
        entry.0 = entry.0.max(*score);
        entry.1 |= *label;
    }
    let mut sum = 0.0;
    for payers in by_day.values() {
        let mut ranked: Vec<(f64, bool)> = payers.values().copied().collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        let top = ranked.len().min(k.max(1));
        sum += ranked.iter().take(top).filter(|(_, fraud)| *fraud).count() as f64 / top as f64;
    }
    (if by_day.is_empty() { 0.0 } else { sum / by_day.len() as f64 }, by_day.len())
}

/// Everything [`Metrics`] holds, with `resamples` bootstrap rounds for the AUPRC interval.
pub fn evaluate(scores: &[f64], labels: &[bool], resamples: usize, seed: u64) -> Metrics {
    let positives = labels.iter().filter(|l| **l).count();
    // Walk down the ranking until 80% of fraud is caught.
    let target = (positives as f64 * 0.8).ceil() as usize;
    let (mut caught, mut flagged, mut threshold) = (0usize, 0usize, 1.0);
    for (score, label) in ranked_down(scores, labels) {
        flagged += 1;
        if label {
            caught += 1;
        }
        threshold = score;
        if caught >= target.max(1) {
            break;
        }
    }
    let flagged_at = |t: f64| scores.iter().zip(labels).filter(move |(s, _)| **s >= t);
    let true_positives = flagged_at(threshold).filter(|(_, l)| **l).count();
    let false_positives = flagged_at(threshold).filter(|(_, l)| !**l).count();
    let false_negatives = positives - true_positives;
    let true_negatives = labels.len() - positives - false_positives;
    let mut rng = seed | 1;
    let mut samples: Vec<f64> = (0..resamples)
        .map(|_| {
            let (mut s, mut l) = (Vec::with_capacity(scores.len()), Vec::with_capacity(scores.len()));
            for _ in 0..scores.len() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let index = (rng % scores.len() as u64) as usize;
                if let (Some(score), Some(label)) = (scores.get(index), labels.get(index)) {
                    s.push(*score);
                    l.push(*label);
                }
            }
            auprc(&s, &l)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    let quantile = |q: f64| samples.get(((samples.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0.0);
    Metrics {
        rows: labels.len(),
        positives,
        auprc: auprc(scores, labels),
        auprc_ci_low: quantile(0.025),
        auprc_ci_high: quantile(0.975),
        roc_auc: roc_auc(scores, labels),
        precision_at_80_recall: if flagged == 0 {
            0.0
        } else {
            true_positives as f64 / (true_positives + false_positives) as f64
        },
        threshold,
        confusion: [true_positives, false_positives, true_negatives, false_negatives],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{FEATURE_NAMES, FeatureStore};
    use crate::sim::{SimConfig, simulate};

    #[test]
    fn metrics_match_hand_computed_values() {
        let scores = [0.9, 0.8, 0.7, 0.6, 0.5];
        let labels = [true, false, true, false, false];
        // AP = (1/1 + 2/3) / 2.
        assert!((auprc(&scores, &labels) - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        // 2 positives x 3 negatives = 6 pairs; positives beat 3 + 2 of them.
        assert!((roc_auc(&scores, &labels) - 5.0 / 6.0).abs() < 1e-12);
        let metrics = evaluate(&scores, &labels, 50, 3);
        assert_eq!(metrics.confusion, [2, 1, 2, 0], "80% of 2 frauds needs both: threshold 0.7");
        assert!((metrics.precision_at_80_recall - 2.0 / 3.0).abs() < 1e-12);
        assert!(metrics.auprc_ci_low <= metrics.auprc && metrics.auprc <= metrics.auprc_ci_high);
    }

    #[test]
    fn a_model_trained_on_simulated_traffic_finds_held_out_fraud_and_explains_it() {
        let events = simulate(&SimConfig { customers: 1_500, days: 10, ..SimConfig::default() });
        let mut store = FeatureStore::default();
        let rows: Vec<Vec<f64>> = events.iter().map(|e| store.observe(&e.event).0.to_vec()).collect();
        let labels: Vec<bool> = events.iter().map(|e| e.fraud.is_some()).collect();
        let split = rows.len() * 7 / 10; // by time: events are in time order
        let names: Vec<String> = FEATURE_NAMES.iter().map(|s| s.to_string()).collect();
        let params = TrainParams { iterations: 60, ..TrainParams::default() };
        let model = Model::train(&rows[..split], &labels[..split], &names, params, "test").unwrap();
        let scores = model.score_all(&rows[split..]);
        let metrics = evaluate(&scores, &labels[split..], 100, 1);
        assert!(metrics.positives > 50, "{metrics:?}");
        assert!(metrics.auprc > 0.8, "AUPRC {:.3}", metrics.auprc);
        assert!(metrics.roc_auc > 0.95, "ROC AUC {:.3}", metrics.roc_auc);
        // One row scores the same alone as in a batch, and its top reasons are real features.
        let (row, score) = (&rows[split], scores[0]);
        assert!((model.score(row) - score).abs() < 1e-9);
        let fraud_row = rows[split..].iter().zip(&labels[split..]).find(|(_, l)| **l).unwrap().0;
        let fast = model.explain(fraud_row, false, 3);
        let exact = model.explain(fraud_row, true, 3);
        assert_eq!((fast.len(), exact.len()), (3, 3));
        assert!(fast.iter().chain(&exact).all(|(name, _)| FEATURE_NAMES.contains(&name.as_str())));
        // The artifact loads back into the same model.
        let loaded = Model::from_json(&model.to_json()).unwrap();
        assert!((loaded.score(row) - score).abs() < 1e-12);
        assert!(Model::from_json("{}").is_err());
    }
}

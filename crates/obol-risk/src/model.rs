//! The fraud model: gradient-boosted trees (forust-ml), trained and served in Rust, with each
//! score explained by per-feature contributions (fast tree-path weights on the hot path, exact
//! Shapley values for the review queue), and the metrics that judge it: AUPRC with a bootstrap
//! confidence interval, ROC AUC, precision at 80% recall and the confusion matrix at the chosen
//! threshold. Training is deterministic for a given seed and data.

use forust_ml::binning::{PREDICT_MISSING_BIN, bin_for_prediction, bin_matrix};
use forust_ml::constraints::ConstraintMap;
use forust_ml::data::JaggedMatrix;
use forust_ml::data::Matrix;
use forust_ml::gradientbooster::{ContributionsMethod, GradientBooster};
use forust_ml::objective::{ObjectiveType, calc_init_callables, gradient_hessian_callables};
use forust_ml::sampler::SampleMethod;
use forust_ml::splitter::MissingImputerSplitter;
use forust_ml::tree::{Tree, split_bins};
use serde::{Deserialize, Serialize};

/// Training settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainParams {
    /// Trees (the most; early stopping may keep fewer).
    pub iterations: usize,
    /// Shrinkage per tree.
    pub learning_rate: f32,
    /// Deepest tree.
    pub max_depth: usize,
    /// Seed for row and column sampling.
    pub seed: u64,
    /// Histogram bins per feature: a split can only fall between bins, so few bins hide a
    /// threshold such as "amount > 220" inside one of them.
    #[serde(default = "default_bins")]
    pub bins: u16,
    /// Weight of each fraud row against 1 for a good row (class weighting for rare fraud).
    #[serde(default = "default_weight")]
    pub fraud_weight: f64,
    /// Share of rows each tree is grown on, drawn at random (1: every row).
    #[serde(default = "default_subsample")]
    pub subsample: f32,
    /// Stop adding trees once the validation loss has not improved for this many (0: never);
    /// the validation rows are the last ones by time of the training part.
    #[serde(default)]
    pub early_stopping_rounds: usize,
}

fn default_bins() -> u16 {
    256
}

fn default_weight() -> f64 {
    1.0
}

fn default_subsample() -> f32 {
    1.0
}

/// The most histogram bins per feature ([`TrainParams::bins`]).
pub const BINS_MAX: u16 = 4_096;

impl Default for TrainParams {
    fn default() -> TrainParams {
        TrainParams {
            iterations: 200,
            learning_rate: 0.1,
            max_depth: 5,
            seed: 7,
            bins: default_bins(),
            fraud_weight: 1.0,
            subsample: 1.0,
            early_stopping_rounds: 0,
        }
    }
}

impl TrainParams {
    /// Why these settings cannot train, if they cannot.
    pub fn check(&self) -> Result<(), ModelError> {
        let bad = |what: String| Err(ModelError::Data(what));
        if self.iterations == 0 {
            return bad("at least one tree is needed".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return bad(format!("the learning rate must be above 0 and at most 1 (got {})", self.learning_rate));
        }
        if !(1..=32).contains(&self.max_depth) {
            return bad(format!("the depth must be 1 to 32 (got {})", self.max_depth));
        }
        if !(2..=BINS_MAX).contains(&self.bins) {
            return bad(format!("bins must be 2 to {BINS_MAX} (got {})", self.bins));
        }
        if !(self.fraud_weight.is_finite() && self.fraud_weight > 0.0) {
            return bad(format!("the fraud weight must be above 0 (got {})", self.fraud_weight));
        }
        if !(self.subsample.is_finite() && self.subsample > 0.0 && self.subsample <= 1.0) {
            return bad(format!("the subsample share must be above 0 and at most 1 (got {})", self.subsample));
        }
        Ok(())
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
    /// The precision-recall curve, as (recall, precision) at each percent of recall first
    /// reached, walking down the ranking (at most 101 points); empty in artifacts from before it
    /// was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pr_curve: Vec<[f64; 2]>,
}

/// The points of [`Metrics::pr_curve`] for rows `ranked` by score, highest first.
fn pr_curve(ranked: &[(f64, bool)], positives: usize) -> Vec<[f64; 2]> {
    let mut points = Vec::new();
    if positives == 0 {
        return points;
    }
    let (mut caught, mut seen, mut next_percent) = (0usize, 0usize, 0usize);
    for (_, label) in ranked {
        seen += 1;
        if *label {
            caught += 1;
            let recall = caught as f64 / positives as f64;
            let percent = (recall * 100.0).floor() as usize;
            if percent >= next_percent {
                points.push([recall, caught as f64 / seen as f64]);
                next_percent = percent + 1;
            }
        }
    }
    points
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
    /// Each feature's share of the trees' total split gain, largest first; features never split
    /// on are left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub importance: Vec<(String, f64)>,
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
    #[serde(default)]
    importance: Vec<(String, f64)>,
    booster: String,
}

impl TryFrom<Artifact> for Model {
    type Error = ModelError;

    fn try_from(artifact: Artifact) -> Result<Model, ModelError> {
        if artifact.format != FORMAT {
            return Err(ModelError::Artifact(format!("format {:?}, expected {FORMAT}", artifact.format)));
        }
        let compiled =
            GradientBooster::from_json(&artifact.booster).map_err(|e| ModelError::Artifact(e.to_string()))?;
        artifact.params.check()?;
        let width = artifact.features.len();
        if compiled.trees.iter().flat_map(|tree| &tree.nodes).any(|node| !node.is_leaf && node.split_feature >= width) {
            return Err(ModelError::Artifact(format!("a tree splits on a feature past the {width} it lists")));
        }
        Ok(Model {
            format: artifact.format,
            version: artifact.version,
            features: artifact.features,
            features_version: artifact.features_version,
            params: artifact.params,
            metrics: artifact.metrics,
            held_out_from_s: artifact.held_out_from_s,
            importance: artifact.importance,
            booster: artifact.booster,
            compiled,
        })
    }
}

fn first_features_version() -> u32 {
    1
}

const FORMAT: &str = "obol-model-1";

/// Each feature's share of the total split gain over all trees, largest first.
fn importance(booster: &GradientBooster, features: &[String]) -> Vec<(String, f64)> {
    let mut gain = vec![0.0f64; features.len()];
    for node in booster.trees.iter().flat_map(|tree| &tree.nodes).filter(|node| !node.is_leaf) {
        if let Some(sum) = gain.get_mut(node.split_feature) {
            *sum += f64::from(node.split_gain).max(0.0);
        }
    }
    let total: f64 = gain.iter().sum();
    let mut shares: Vec<(String, f64)> = features
        .iter()
        .zip(gain)
        .filter(|(_, g)| *g > 0.0 && total > 0.0)
        .map(|(name, g)| (name.clone(), g / total))
        .collect();
    shares.sort_by(|a, b| b.1.total_cmp(&a.1));
    shares
}

/// Weighted mean log loss of log-odds `yhat` against targets `y`.
fn log_loss(y: &[f64], yhat: &[f64], weights: &[f64]) -> f64 {
    let (mut loss, mut total) = (0.0, 0.0);
    for ((y, yhat), w) in y.iter().zip(yhat).zip(weights) {
        let p = sigmoid(*yhat).clamp(1e-15, 1.0 - 1e-15);
        loss -= w * (y * p.ln() + (1.0 - y) * (1.0 - p).ln());
        total += w;
    }
    if total > 0.0 { loss / total } else { 0.0 }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Training rows held column by column, as forust reads them: `values[k * rows + r]` is row `r`'s
/// value of the `k`-th kept feature ([`Model::fit`]).
#[derive(Clone, Copy)]
pub struct Columns<'a> {
    /// The kept features' values, one column after another.
    pub values: &'a [f64],
    /// Rows.
    pub rows: usize,
    /// Each row's label (true: fraud).
    pub labels: &'a [bool],
}

/// Training rows binned feature by feature: each value is replaced by its histogram bin, two
/// bytes instead of eight, so a training set never needs all its values as 64-bit floats at
/// once. A caller with more rows than memory computes one feature's values at a time and
/// [`Binned::push`]es it.
pub struct Binned {
    rows: usize,
    /// The rows' labels as targets (1: fraud) and their weights.
    y: Vec<f64>,
    weights: Vec<f64>,
    /// Bins, one kept feature after another (`bins[k * rows + r]`).
    bins: Vec<u16>,
    /// Each kept feature's cut points (forust's layout: the first bin is for missing values).
    cuts: Vec<Vec<f64>>,
    nbins: u16,
}

impl Binned {
    /// An empty set of `labels.len()` rows, weighted as `params` says.
    pub fn new(labels: &[bool], params: &TrainParams) -> Binned {
        Binned {
            rows: labels.len(),
            y: labels.iter().map(|l| f64::from(u8::from(*l))).collect(),
            weights: labels.iter().map(|l| if *l { params.fraud_weight } else { 1.0 }).collect(),
            bins: Vec::new(),
            cuts: Vec::new(),
            nbins: params.bins,
        }
    }

    /// Bins the next kept feature from its value in every row.
    pub fn push(&mut self, values: &[f64]) -> Result<(), ModelError> {
        if values.len() != self.rows {
            return Err(ModelError::Data(format!("a feature has {} values for {} rows", values.len(), self.rows)));
        }
        let column = Matrix::new(values, self.rows, 1);
        let binned = bin_matrix(&column, &self.weights, self.nbins, f64::NAN, false)
            .map_err(|e| ModelError::Booster(e.to_string()))?;
        self.bins.extend_from_slice(&binned.binned_data);
        self.cuts.push(binned.cuts.get_col(0).to_vec());
        Ok(())
    }

    /// Reserves room for `features` binned features.
    pub fn reserve(&mut self, features: usize) {
        self.cuts.reserve_exact(features);
        self.bins.reserve_exact(self.rows.saturating_mul(features));
    }

    /// Features binned so far.
    pub fn features(&self) -> usize {
        self.cuts.len()
    }
}

/// The features of `rows` that take more than one value: a feature with one value everywhere
/// cannot split a tree, so training leaves it out and saves its memory.
pub fn varying_features(rows: &[Vec<f64>], width: usize) -> Vec<usize> {
    (0..width)
        .filter(|c| {
            let first = rows.first().and_then(|row| row.get(*c)).copied().unwrap_or(0.0);
            rows.iter().any(|row| row.get(*c).copied().unwrap_or(0.0).to_bits() != first.to_bits())
        })
        .collect()
}

/// Column-major copy of the `kept` features of row-major rows (a missing value reads as zero).
fn columns(rows: &[Vec<f64>], kept: &[usize]) -> Vec<f64> {
    let mut out = Vec::with_capacity(rows.len() * kept.len());
    for c in kept {
        out.extend(rows.iter().map(|row| row.get(*c).copied().unwrap_or(0.0)));
    }
    out
}

impl Model {
    /// Trains on `rows` (one per event, `features.len()` wide) labelled `labels` (true: fraud);
    /// with early stopping, the last tenth of the rows validates.
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
        let split = if params.early_stopping_rounds > 0 { rows.len() - rows.len() / 10 } else { rows.len() };
        let (train_rows, validation_rows) = rows.split_at(split);
        let (train_labels, validation_labels) = labels.split_at(split);
        let kept = varying_features(train_rows, features.len());
        let train_values = columns(train_rows, &kept);
        let validation_values = columns(validation_rows, &kept);
        let train = Columns { values: &train_values, rows: train_rows.len(), labels: train_labels };
        let validation = Columns { values: &validation_values, rows: validation_rows.len(), labels: validation_labels };
        Model::fit(train, (validation.rows > 0).then_some(validation), &kept, features, params, version)
    }

    /// Trains on the `kept` features of `train` (column-major); every other feature of
    /// `features` is taken to hold one value and is never split on. With
    /// [`TrainParams::early_stopping_rounds`], `validation` (later rows, the same features)
    /// decides when to stop. The trees address features by their place in `features`, so the
    /// model scores full rows.
    pub fn fit(
        train: Columns,
        validation: Option<Columns>,
        kept: &[usize],
        features: &[String],
        params: TrainParams,
        version: &str,
    ) -> Result<Model, ModelError> {
        if train.labels.len() != train.rows || train.values.len() != train.rows.saturating_mul(kept.len()) {
            return Err(ModelError::Data(format!(
                "training: {} rows, {} labels and {} values for {} features",
                train.rows,
                train.labels.len(),
                train.values.len(),
                kept.len()
            )));
        }
        let mut binned = Binned::new(train.labels, &params);
        binned.reserve(kept.len());
        for column in train.values.chunks_exact(train.rows.max(1)) {
            binned.push(column)?;
        }
        Model::fit_binned(&binned, validation, kept, features, params, version)
    }

    /// Trains on binned rows ([`Binned`], the `kept` features of `features`); see [`Model::fit`].
    /// The boosting loop is forust's (the same trees as its `fit` without sampling, which a test
    /// holds), driven here so that training holds bins, not values.
    pub fn fit_binned(
        train: &Binned,
        validation: Option<Columns>,
        kept: &[usize],
        features: &[String],
        params: TrainParams,
        version: &str,
    ) -> Result<Model, ModelError> {
        params.check()?;
        let data_error = |what: String| Err(ModelError::Data(what));
        if kept.is_empty() {
            return data_error("every feature has one value in all training rows: nothing to learn from".into());
        }
        if kept.windows(2).any(|pair| pair.first() >= pair.get(1)) || kept.iter().any(|k| *k >= features.len()) {
            return data_error("the kept features must be distinct places among the features, in order".into());
        }
        if let Some(set) = validation
            .filter(|set| set.labels.len() != set.rows || set.values.len() != set.rows.saturating_mul(kept.len()))
        {
            return data_error(format!(
                "validation: {} rows, {} labels and {} values for {} features",
                set.rows,
                set.labels.len(),
                set.values.len(),
                kept.len()
            ));
        }
        if train.features() != kept.len() || train.bins.len() != train.rows.saturating_mul(kept.len()) {
            return data_error(format!("{} binned features for {} kept", train.features(), kept.len()));
        }
        if train.rows == 0 || !train.y.iter().any(|y| *y > 0.0) || train.y.iter().all(|y| *y > 0.0) {
            return data_error("the training data needs both fraud and non-fraud rows".into());
        }
        let validation = validation.filter(|set| params.early_stopping_rounds > 0 && set.rows > 0);
        if params.early_stopping_rounds > 0 && validation.is_none() {
            return data_error("early stopping needs validation rows".into());
        }
        let mut booster = GradientBooster::default()
            .set_iterations(params.iterations)
            .set_learning_rate(params.learning_rate)
            .set_max_depth(params.max_depth)
            .set_nbins(params.bins)
            .set_seed(params.seed)
            .set_parallel(false);
        let splitter = MissingImputerSplitter {
            l1: booster.l1,
            l2: booster.l2,
            max_delta_step: booster.max_delta_step,
            gamma: booster.gamma,
            min_leaf_weight: booster.min_leaf_weight,
            learning_rate: booster.learning_rate,
            allow_missing_splits: booster.allow_missing_splits,
            constraints_map: ConstraintMap::new(),
        };
        let cuts = JaggedMatrix::from_vecs(&train.cuts);
        let bins = Matrix::new(&train.bins, train.rows, kept.len());
        let rows = train.rows;
        let grad_hess = gradient_hessian_callables(&ObjectiveType::LogLoss);
        booster.base_score = calc_init_callables(&ObjectiveType::LogLoss)(&train.y, &train.weights);
        let mut yhat = vec![booster.base_score; rows];
        let (mut grad, mut hess) = grad_hess(&train.y, &yhat, &train.weights);
        // The validation rows, binned with the training cuts.
        let mut validation = match validation {
            Some(set) => {
                let matrix = Matrix::new(set.values, set.rows, kept.len());
                let y: Vec<f64> = set.labels.iter().map(|l| f64::from(u8::from(*l))).collect();
                let w: Vec<f64> = set.labels.iter().map(|l| if *l { params.fraud_weight } else { 1.0 }).collect();
                let bins = bin_for_prediction(&matrix, &cuts, &f64::NAN, false);
                Some((bins, y, w, vec![booster.base_score; set.rows]))
            }
            None => None,
        };
        let columns: Vec<usize> = (0..kept.len()).collect();
        let mut rng = params.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let (mut best, mut best_trees) = (f64::INFINITY, 0usize);
        let mut trees = Vec::with_capacity(params.iterations);
        for _ in 0..params.iterations {
            let (chosen, excluded): (Vec<usize>, Vec<usize>) = if params.subsample < 1.0 {
                (0..rows).partition(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    ((rng >> 11) as f64 / (1u64 << 53) as f64) < f64::from(params.subsample)
                })
            } else {
                ((0..rows).collect(), Vec::new())
            };
            let sample_method = if excluded.is_empty() { SampleMethod::None } else { SampleMethod::Random };
            let mut tree = Tree::new();
            let tree_rows = tree.fit(
                &bins,
                chosen,
                &columns,
                &cuts,
                &grad,
                &hess,
                &splitter,
                booster.max_leaves,
                booster.max_depth,
                true,
                &sample_method,
                &booster.grow_policy,
            );
            let split_at = split_bins(&tree, &cuts);
            let walk = |row: usize| {
                tree.predict_row_from_bins(
                    |f| train.bins.get(f * rows + row).copied().unwrap_or(0),
                    &split_at,
                    0,
                    &booster.missing,
                )
            };
            match &tree_rows {
                Some(tree_rows) => {
                    for (leaf_rows, weight) in tree_rows.leaves(&tree) {
                        for row in leaf_rows {
                            if let Some(y) = yhat.get_mut(*row) {
                                *y += weight;
                            }
                        }
                    }
                    for row in &excluded {
                        let add = walk(*row);
                        if let Some(y) = yhat.get_mut(*row) {
                            *y += add;
                        }
                    }
                }
                None => {
                    for (row, y) in yhat.iter_mut().enumerate() {
                        *y += walk(row);
                    }
                }
            }
            let mut stop = false;
            if let Some((bins, y, w, yhat)) = &mut validation {
                let n = yhat.len();
                for (row, value) in yhat.iter_mut().enumerate() {
                    *value += tree.predict_row_from_bins(
                        |f| bins.get(f * n + row).copied().unwrap_or(PREDICT_MISSING_BIN),
                        &split_at,
                        PREDICT_MISSING_BIN,
                        &booster.missing,
                    );
                }
                let loss = log_loss(y, yhat, w);
                trees.push(tree);
                if loss < best {
                    (best, best_trees) = (loss, trees.len());
                } else if trees.len() - best_trees >= params.early_stopping_rounds {
                    stop = true;
                }
            } else {
                trees.push(tree);
                best_trees = trees.len();
            }
            if stop {
                break;
            }
            (grad, hess) = grad_hess(&train.y, &yhat, &train.weights);
        }
        // Keep only the trees up to the best validation round, and address full rows.
        trees.truncate(best_trees);
        booster.trees = trees;
        for node in booster.trees.iter_mut().flat_map(|tree| tree.nodes.iter_mut()).filter(|node| !node.is_leaf) {
            node.split_feature = kept.get(node.split_feature).copied().ok_or_else(|| {
                ModelError::Booster(format!("a tree splits on feature {} of {}", node.split_feature, kept.len()))
            })?;
        }
        let importance = importance(&booster, features);
        let dump = booster.json_dump().map_err(|e| ModelError::Booster(e.to_string()))?;
        Ok(Model {
            format: FORMAT.into(),
            version: version.into(),
            features: features.to_vec(),
            features_version: crate::features::FEATURES_VERSION,
            params,
            metrics: Metrics::default(),
            held_out_from_s: None,
            importance,
            booster: dump,
            compiled: booster,
        })
    }

    /// Trees kept (early stopping may keep fewer than asked).
    pub fn trees(&self) -> usize {
        self.compiled.trees.len()
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

    /// Fraud probabilities of `rows` rows held column by column (`values[f * rows + r]`, every
    /// feature of the model), tree by tree: the same values as [`Model::score`] row by row, and
    /// faster, as each tree stays in cache while it walks every row. Extends `out`.
    pub fn score_columns(&self, values: &[f64], rows: usize, out: &mut Vec<f64>) {
        if rows == 0 || values.len() != rows.saturating_mul(self.features.len()) {
            return;
        }
        let matrix = Matrix::new(values, rows, self.features.len());
        out.extend(self.compiled.predict(&matrix, false).into_iter().map(sigmoid));
    }

    /// Fraud probabilities of many rows.
    pub fn score_all(&self, rows: &[Vec<f64>]) -> Vec<f64> {
        let all: Vec<usize> = (0..self.features.len()).collect();
        let data = columns(rows, &all);
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
    // Each resample draws every row's multiplicity and walks the ranking made once, so a
    // resample costs O(n) with no sort and no allocation.
    let ranked = ranked_down(scores, labels);
    let pr_curve = pr_curve(&ranked, positives);
    let mut counts = vec![0u32; ranked.len()];
    let mut rng = seed | 1;
    let mut samples: Vec<f64> = (0..resamples)
        .map(|_| {
            counts.fill(0);
            for _ in 0..ranked.len() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                if let Some(count) = counts.get_mut((rng % ranked.len() as u64) as usize) {
                    *count += 1;
                }
            }
            let (mut true_positives, mut seen, mut area) = (0u64, 0u64, 0.0);
            for ((_, label), count) in ranked.iter().zip(&counts) {
                if *label {
                    for _ in 0..*count {
                        true_positives += 1;
                        seen += 1;
                        area += true_positives as f64 / seen as f64;
                    }
                } else {
                    seen += u64::from(*count);
                }
            }
            if true_positives == 0 { 0.0 } else { area / true_positives as f64 }
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
        pr_curve,
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
        // The curve: the first fraud at rank 1 (recall 1/2, precision 1), the second at rank 3.
        assert_eq!(metrics.pr_curve, vec![[0.5, 1.0], [1.0, 2.0 / 3.0]]);
        // A model's artifact written before the curve was recorded still reads.
        let old = r#"{"rows":1,"positives":0,"auprc":0.0,"auprc_ci_low":0.0,"auprc_ci_high":0.0,"roc_auc":0.5,"precision_at_80_recall":0.0,"threshold":1.0,"confusion":[0,0,1,0]}"#;
        assert!(serde_json::from_str::<Metrics>(old).is_ok_and(|m| m.pr_curve.is_empty()));
    }

    /// Simulated rows with their labels and feature names.
    fn simulated(customers: u32, days: u32) -> (Vec<Vec<f64>>, Vec<bool>, Vec<String>) {
        let events = simulate(&SimConfig { customers, days, ..SimConfig::default() });
        let mut store = FeatureStore::default();
        let rows: Vec<Vec<f64>> = events.iter().map(|e| store.observe(&e.event).0.to_vec()).collect();
        let labels: Vec<bool> = events.iter().map(|e| e.fraud.is_some()).collect();
        (rows, labels, FEATURE_NAMES.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn training_on_bins_grows_the_same_trees_as_forust_on_values() {
        let (rows, labels, names) = simulated(600, 6);
        let params = TrainParams { iterations: 40, ..TrainParams::default() };
        let model = Model::train(&rows, &labels, &names, params, "test").unwrap();
        // forust's own loop on the varying features, as 64-bit values.
        let kept = varying_features(&rows, names.len());
        assert!(kept.len() < names.len(), "the simulator leaves some features constant");
        let values = columns(&rows, &kept);
        let y: Vec<f64> = labels.iter().map(|l| f64::from(u8::from(*l))).collect();
        let mut reference = GradientBooster::default()
            .set_iterations(40)
            .set_learning_rate(0.1)
            .set_max_depth(5)
            .set_seed(7)
            .set_parallel(false);
        reference.fit_unweighted(&Matrix::new(&values, rows.len(), kept.len()), &y, None).unwrap();
        assert_eq!(model.trees(), reference.trees.len());
        for row in &rows {
            let projected: Vec<f64> = kept.iter().map(|c| row[*c]).collect();
            let log_odds = reference.trees.iter().fold(reference.base_score, |sum, tree| {
                sum + tree.predict_row_from_row_slice(&projected, &reference.missing)
            });
            assert_eq!(model.score(row).to_bits(), sigmoid(log_odds).to_bits(), "row {row:?}");
        }
        // Importance names only real features, and the shares add up to one.
        assert!(model.importance.iter().all(|(name, share)| names.contains(name) && *share > 0.0));
        let total: f64 = model.importance.iter().map(|(_, share)| share).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
    }

    #[test]
    fn early_stopping_keeps_the_best_trees_and_sampling_and_weights_still_learn() {
        let (rows, labels, names) = simulated(1_000, 8);
        let split = rows.len() * 8 / 10;
        let eager =
            TrainParams { iterations: 400, learning_rate: 0.5, early_stopping_rounds: 5, ..TrainParams::default() };
        let model = Model::train(&rows[..split], &labels[..split], &names, eager, "test").unwrap();
        assert!(model.trees() < 400, "stopped early with {} trees", model.trees());
        assert!(model.trees() >= 1);
        let loaded = Model::from_json(&model.to_json()).unwrap();
        assert_eq!(loaded.trees(), model.trees(), "the artifact keeps only the kept trees");
        assert_eq!(loaded.params.early_stopping_rounds, 5);
        for params in [
            TrainParams { iterations: 60, subsample: 0.5, ..TrainParams::default() },
            TrainParams { iterations: 60, fraud_weight: 20.0, bins: 64, ..TrainParams::default() },
            eager,
        ] {
            let model = Model::train(&rows[..split], &labels[..split], &names, params, "test").unwrap();
            let metrics = evaluate(&model.score_all(&rows[split..]), &labels[split..], 0, 1);
            assert!(metrics.auprc > 0.7, "{params:?}: AUPRC {:.3}", metrics.auprc);
        }
        // Settings that cannot train are refused before any work.
        for bad in [
            TrainParams { bins: 1, ..TrainParams::default() },
            TrainParams { subsample: 0.0, ..TrainParams::default() },
            TrainParams { fraud_weight: f64::NAN, ..TrainParams::default() },
            TrainParams { iterations: 0, ..TrainParams::default() },
        ] {
            assert!(matches!(Model::train(&rows, &labels, &names, bad, "t"), Err(ModelError::Data(_))), "{bad:?}");
        }
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
        // A row scores the same alone as in a batch, to the bit, and its top reasons are real
        // features.
        for (row, score) in rows[split..].iter().zip(&scores) {
            assert_eq!(model.score(row).to_bits(), score.to_bits());
        }
        let (row, score) = (&rows[split], scores[0]);
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

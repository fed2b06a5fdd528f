//! `obol risk train` and `obol risk eval`: train the fraud model on any labelled CSV through a
//! column mapping, split by time, and judge it on the later part; `obol risk detect` on simulated
//! traffic. The commands that talk to a running server are in `risk_ops_cli.rs`.

use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use obol_risk::model::{Binned, Columns, Metrics, Model, TrainParams, evaluate};
use serde_json::json;

use crate::risk_data::{DataArgs, Replayed, Row, Source, load};

/// `obol risk ...`
#[derive(Subcommand, Debug)]
pub enum RiskCommand {
    /// Train the model on a labelled CSV; the first part by time trains, the rest measures.
    ///
    /// Example (the ULB card data): obol risk train --data creditcard.csv
    ///   --map time=Time,amount=Amount,label=Class --amount-scale 2 --features rest --out model.json
    /// Example (obol sim traffic): obol risk train --data traffic.csv --map
    ///   time=time_s,amount=amount_minor,label=label,entity=payer,device=device,payee=payee,network=network
    ///   --out model.json
    Train(TrainArgs),
    /// Measure a model on the held-out (later) part of a labelled CSV: AUPRC with a bootstrap
    /// interval, ROC AUC, precision at 80% recall and the confusion matrix at that threshold.
    Eval(EvalArgs),
    /// Write each row's fraud score under a model, as CSV (`line,time_s,label,score`, led by
    /// `id` when the map names an id column): the model's held-out rows, or `--all`. A label
    /// column is optional here.
    ///
    /// Example: obol risk score --data traffic.csv --map time=time_s,...,id=payment_id --model model.json --out scores.csv
    Score(ScoreArgs),
    /// Write the features obol computes for each row of a labelled CSV, in time order, as the
    /// server would have live (labels counted from when they became known): for your own
    /// models, or to check a model's inputs.
    ///
    /// Example: obol risk features --data traffic.csv --map time=time_s,...,label=label --out features.csv
    Features(FeaturesArgs),
    /// On simulated traffic, how much of each injected fraud kind the shipped rules alone, the
    /// model alone, and both stop, and how many good payments they stop by mistake.
    Detect(DetectArgs),
    /// The review queue of a running server: requests the policy held for an analyst.
    Reviews(crate::risk_ops_cli::ReviewsArgs),
    /// One review, with its features and the exact Shapley values of its score.
    Review {
        /// The review id.
        id: String,
        #[command(flatten)]
        connection: crate::client::Connection,
    },
    /// Approve or decline a held request.
    ///
    /// Example: obol risk decide 18eb60baf349b927... approve --note "customer confirmed by phone"
    Decide(crate::risk_ops_cli::DecideArgs),
    /// Confirmed fraud: export decided reviews for training (`--out`), or record labels on a
    /// running server (`import`, `mark`) that its risk features count from then on.
    ///
    /// Example: obol risk labels --out labels.csv
    /// Example: obol risk labels import confirmed.csv     (columns payment_id, or
    ///   payer_account_id,payee_account_id[,device_id]; an optional label column, 0 rows skipped)
    /// Example: obol risk labels mark 184467440737095516
    Labels(crate::risk_ops_cli::LabelsArgs),
    /// Show, change and shadow-test the live policy of a running server.
    #[command(subcommand)]
    Policy(crate::risk_ops_cli::PolicyCommand),
}

/// Options of `obol risk detect`.
#[derive(Args, Debug)]
pub struct DetectArgs {
    /// Customers simulated.
    #[arg(long, default_value_t = 3_000)]
    customers: u32,
    /// Days simulated (the first 70% by time train the model).
    #[arg(long, default_value_t = 14)]
    days: u32,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `obol risk train`.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Where to write the model artifact (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Trees.
    #[arg(long, default_value_t = 300)]
    trees: usize,
    /// Deepest tree.
    #[arg(long, default_value_t = 6)]
    depth: usize,
    /// Shrinkage per tree.
    #[arg(long, default_value_t = 0.05)]
    learning_rate: f32,
    /// Seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Histogram bins per feature (2 to 4096): a split falls only between bins, so more bins
    /// find finer thresholds (such as "amount > 220") at some cost in time.
    #[arg(long, default_value_t = 256)]
    bins: u16,
    /// Weight of a fraud row against 1 for a good row: a number, or `balanced` (good rows over
    /// fraud rows in the training part).
    #[arg(long, default_value = "1")]
    fraud_weight: String,
    /// Share of the training rows each tree is grown on, drawn at random (1: all).
    #[arg(long, default_value_t = 1.0)]
    subsample: f32,
    /// Stop once this many trees in a row have not improved the log loss on the last tenth of
    /// the training part by time, which then validates instead of training (0: never stop
    /// early).
    #[arg(long, default_value_t = 0)]
    early_stopping: usize,
    /// Features to list by importance (their share of the trees' split gain; all are kept in the
    /// model artifact).
    #[arg(long, default_value_t = 10)]
    importance: usize,
    /// Bootstrap resamples for the AUPRC interval (0: no interval).
    #[arg(long, default_value_t = 200)]
    bootstrap: usize,
    /// Payers per day an investigator checks: the held-out report gives the precision among
    /// each day's k highest-scored payers.
    #[arg(long, default_value_t = 100)]
    top_k: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `obol risk features`.
#[derive(Args, Debug)]
pub struct FeaturesArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Where to write the CSV: `time_s`, `label`, then one column per feature.
    #[arg(long)]
    out: PathBuf,
}

/// Options of `obol risk score`.
#[derive(Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The model artifact.
    #[arg(long)]
    model: PathBuf,
    /// Where to write the scores (CSV).
    #[arg(long)]
    out: PathBuf,
    /// Score every row, including those the model trained on (default: from where its held-out
    /// part begins, or --train-until / --split).
    #[arg(long)]
    all: bool,
}

/// Options of `obol risk eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The model artifact.
    #[arg(long)]
    model: PathBuf,
    /// Bootstrap resamples for the AUPRC interval (0: no interval).
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Payers per day an investigator checks: the report gives the precision among each day's k
    /// highest-scored payers.
    #[arg(long, default_value_t = 100)]
    top_k: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs a risk command.
pub fn run(command: RiskCommand) -> anyhow::Result<()> {
    match command {
        RiskCommand::Train(args) => train(args),
        RiskCommand::Eval(args) => eval(args),
        RiskCommand::Score(args) => score(args),
        RiskCommand::Features(args) => features(args),
        RiskCommand::Detect(args) => detect(args),
        RiskCommand::Reviews(args) => crate::risk_ops_cli::reviews(args),
        RiskCommand::Review { id, connection } => crate::risk_ops_cli::review(&id, &connection),
        RiskCommand::Decide(args) => crate::risk_ops_cli::decide(args),
        RiskCommand::Labels(args) => crate::risk_ops_cli::labels(args),
        RiskCommand::Policy(command) => crate::risk_ops_cli::policy(command),
    }
}

fn detect(args: DetectArgs) -> anyhow::Result<()> {
    use obol_risk::policy::{Bundle, Policy};
    use obol_risk::sim::{SimConfig, simulate};
    let mut policy = Policy::new();
    for text in crate::serve::SHIPPED_POLICY {
        policy.add(Bundle::compile(text).map_err(|e| anyhow!("a shipped bundle: {e}"))?)?;
    }
    let events =
        simulate(&SimConfig { seed: args.seed, customers: args.customers, days: args.days, ..SimConfig::default() });
    let spinner = crate::out::spinner(format!(
        "training on the first 70% of {} simulated payments, scoring the rest with rules and model",
        events.len()
    ));
    let reports = obol_risk::detect::report(&events, &policy, TrainParams::default(), 0.7)?;
    spinner.finish_and_clear();
    let rate = |n: usize, of: usize| if of == 0 { 0.0 } else { n as f64 / of as f64 };
    let name = |r: &obol_risk::detect::KindReport| match (r.kind, r.profile) {
        (Some(kind), _) => kind.as_str(),
        (None, Some(profile)) => profile.as_str(),
        (None, None) => "ordinary",
    };
    if args.json {
        let rows: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| {
                json!({"kind": r.kind.map_or("good", |k| k.as_str()), "profile": r.profile.map(|p| p.as_str()),
                    "events": r.events, "rules": rate(r.by_rules, r.events), "model": rate(r.by_model, r.events),
                    "both": rate(r.by_both, r.events)})
            })
            .collect();
        crate::outln!("{}", json!({"customers": args.customers, "days": args.days, "seed": args.seed, "kinds": rows}));
        return Ok(());
    }
    crate::outln!(
        "held-out simulated traffic ({} customers, {} days, seed {}): share stopped",
        args.customers,
        args.days,
        args.seed
    );
    for (title, fraud) in [("good payments (false alarms)", false), ("fraud (caught)", true)] {
        crate::outln!("\n{title:<20}   {:>8} {:>10} {:>10} {:>10}", "events", "rules", "model", "both");
        for r in reports.iter().filter(|r| r.kind.is_some() == fraud) {
            crate::outln!(
                "  {:<20} {:>8} {:>9.2}% {:>9.2}% {:>9.2}%",
                name(r),
                r.events,
                100.0 * rate(r.by_rules, r.events),
                100.0 * rate(r.by_model, r.events),
                100.0 * rate(r.by_both, r.events)
            );
        }
    }
    Ok(())
}

fn print_metrics(metrics: &Metrics, json_out: bool, extra: serde_json::Value) {
    if json_out {
        let mut value = json!({"rows": metrics.rows, "positives": metrics.positives, "auprc": metrics.auprc,
            "auprc_ci_low": metrics.auprc_ci_low, "auprc_ci_high": metrics.auprc_ci_high, "roc_auc": metrics.roc_auc,
            "precision_at_80_recall": metrics.precision_at_80_recall, "threshold": metrics.threshold,
            "confusion": {"tp": metrics.confusion[0], "fp": metrics.confusion[1], "tn": metrics.confusion[2], "fn": metrics.confusion[3]}});
        if let (Some(object), Some(more)) = (value.as_object_mut(), extra.as_object()) {
            object.extend(more.clone());
        }
        crate::outln!("{value}");
        return;
    }
    crate::outln!("held-out rows: {} ({} fraud)", metrics.rows, metrics.positives);
    if metrics.auprc_ci_low == 0.0 && metrics.auprc_ci_high == 0.0 {
        crate::outln!("AUPRC: {:.4} (no bootstrap interval)", metrics.auprc);
    } else {
        crate::outln!(
            "AUPRC: {:.4} (95% bootstrap interval {:.4} to {:.4})",
            metrics.auprc,
            metrics.auprc_ci_low,
            metrics.auprc_ci_high
        );
    }
    crate::outln!("ROC AUC: {:.4}", metrics.roc_auc);
    crate::outln!(
        "precision at 80% recall: {:.4} (threshold {:.4})",
        metrics.precision_at_80_recall,
        metrics.threshold
    );
    let [tp, fp, tn, fn_] = metrics.confusion;
    crate::outln!("confusion at that threshold:    predicted fraud   predicted fine");
    crate::outln!("  fraud                         {tp:>15}   {fn_:>14}");
    crate::outln!("  fine                          {fp:>15}   {tn:>14}");
}

/// The held-out rows' labels, days, payers and kinds, for [`breakdown`].
struct HeldOut {
    labels: Vec<bool>,
    days: Vec<u64>,
    payers: Vec<u32>,
    kinds: Vec<u16>,
}

impl HeldOut {
    fn new(rows: &[Row]) -> HeldOut {
        HeldOut {
            labels: rows.iter().map(|r| r.fraud).collect(),
            days: rows.iter().map(|r| r.time_s() / 86_400).collect(),
            payers: rows.iter().map(|r| r.payer).collect(),
            kinds: rows.iter().map(|r| r.kind).collect(),
        }
    }
}

/// What a held-out part shows beyond [`Metrics`]: AUPRC per fraud kind (each kind's fraud
/// against every good row) and precision among the top `k` payers of each day.
fn breakdown(kinds: &[String], held: &HeldOut, scores: &[f64], top_k: usize) -> serde_json::Value {
    let mut by_kind = serde_json::Map::new();
    for (index, name) in kinds.iter().enumerate() {
        let (mut s, mut l) = (Vec::new(), Vec::new());
        let mut frauds = 0usize;
        for ((score, label), kind) in scores.iter().zip(&held.labels).zip(&held.kinds) {
            if !label || usize::from(*kind) == index {
                s.push(*score);
                l.push(*label);
                frauds += usize::from(*label);
            }
        }
        if frauds > 0 {
            by_kind.insert(name.clone(), json!({"frauds": frauds, "auprc": obol_risk::model::auprc(&s, &l)}));
        }
    }
    let payers: Vec<u128> = held.payers.iter().map(|p| u128::from(*p)).collect();
    let (precision, day_count) =
        obol_risk::model::precision_top_k_per_day(scores, &held.labels, &held.days, &payers, top_k);
    json!({"by_kind": by_kind, "top_k": top_k, "precision_top_k_per_day": precision, "days": day_count})
}

fn print_breakdown(extra: &serde_json::Value) {
    if let Some(kinds) = extra.get("by_kind").and_then(|k| k.as_object()).filter(|k| !k.is_empty()) {
        crate::outln!("AUPRC by fraud kind (each kind against every good row):");
        for (name, value) in kinds {
            let auprc = value.get("auprc").and_then(|v| v.as_f64()).unwrap_or(0.0);
            let frauds = value.get("frauds").and_then(|v| v.as_u64()).unwrap_or(0);
            crate::outln!("  {name:<24} {auprc:.4}   ({frauds} fraud rows)");
        }
    }
    if let (Some(k), Some(precision), Some(days)) = (
        extra.get("top_k").and_then(|v| v.as_u64()),
        extra.get("precision_top_k_per_day").and_then(|v| v.as_f64()),
        extra.get("days").and_then(|v| v.as_u64()),
    ) {
        crate::outln!(
            "precision among the {k} highest-scored payers of each day: {precision:.4} (mean over {days} days)"
        );
    }
}

fn features(args: FeaturesArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let source = load(&args.data, true)?;
    let file = std::fs::File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "time_s,label,{}", source.names.join(","))?;
    let mut failed = None;
    source.replay("computing features", |_, row, features| {
        let mut write = || -> std::io::Result<()> {
            write!(out, "{},{}", row.time_s(), u8::from(row.fraud))?;
            for value in features {
                // Rust prints the shortest text that reads back to the same f64.
                write!(out, ",{value}")?;
            }
            writeln!(out)
        };
        failed = write().err();
        failed.is_none()
    });
    if let Some(error) = failed {
        return Err(error).with_context(|| format!("writing {}", args.out.display()));
    }
    out.flush()?;
    crate::outln!("wrote the {} features of {} rows to {}", source.width(), source.rows.len(), args.out.display());
    Ok(())
}

/// The fraud weight `--fraud-weight` asks for: a number, or `balanced` (good rows over fraud
/// rows among `labels`).
fn fraud_weight(text: &str, labels: impl Iterator<Item = bool>) -> anyhow::Result<f64> {
    if text == "balanced" {
        let (mut fraud, mut good) = (0u64, 0u64);
        for label in labels {
            if label {
                fraud += 1;
            } else {
                good += 1;
            }
        }
        return Ok(if fraud == 0 { 1.0 } else { (good as f64 / fraud as f64).max(1.0) });
    }
    let weight: f64 = text.parse().map_err(|_| anyhow!("--fraud-weight {text:?}: a number above 0, or `balanced`"))?;
    Ok(weight)
}

fn print_importance(model: &Model, top: usize) {
    if model.importance.is_empty() || top == 0 {
        return;
    }
    crate::outln!("features by share of the trees' split gain:");
    for (name, share) in model.importance.iter().take(top) {
        crate::outln!("  {name:<28} {:>6.2}%", 100.0 * share);
    }
}

/// The most memory a group of features computed at once for binning may take.
const GROUP_BYTES_MAX: usize = 64 << 20;

fn train(args: TrainArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let source = load(&args.data, true)?;
    let from_s = match source.held_out_from(&args.data)? {
        Some(at) => at,
        None => source
            .held_out_from(&DataArgs { split: Some(0.7), ..args.data.clone() })?
            .ok_or_else(|| anyhow!("{} has no rows", args.data.data.display()))?,
    };
    let split = source.first_at(from_s);
    let at = |s: u64| obol_core::time::rfc3339(u128::from(s) * 1_000_000_000);
    if split == 0 || split >= source.rows.len() {
        bail!(
            "the split at {} leaves {} rows to train on and {} to measure: both need some",
            at(from_s),
            split,
            source.rows.len() - split.min(source.rows.len())
        );
    }
    let validation_rows = if args.early_stopping > 0 { split / 10 } else { 0 };
    let train_end = split - validation_rows;
    let params = TrainParams {
        iterations: args.trees,
        learning_rate: args.learning_rate,
        max_depth: args.depth,
        seed: args.seed,
        bins: args.bins,
        fraud_weight: fraud_weight(&args.fraud_weight, source.rows.iter().take(train_end).map(|r| r.fraud))?,
        subsample: args.subsample,
        early_stopping_rounds: args.early_stopping,
    };
    params.check()?;
    // First replay: which features vary over the training rows. One that never does cannot split
    // a tree, so it takes no memory in training (without device or network columns, a third).
    let width = source.width();
    let mut first: Vec<u64> = Vec::new();
    let mut varying = vec![false; width];
    source.replay("finding the features that vary", |index, _, features| {
        if index >= train_end {
            return false;
        }
        if first.is_empty() {
            first = features.iter().map(|v| v.to_bits()).collect();
        }
        for ((seen, value), varies) in first.iter().zip(features).zip(varying.iter_mut()) {
            *varies |= *seen != value.to_bits();
        }
        true
    });
    let kept: Vec<usize> = (0..width).filter(|c| varying.get(*c) == Some(&true)).collect();
    // Then the kept features of the training rows, a group at a time, each binned as soon as it
    // is computed: training holds two bytes a value, never every value as a 64-bit float.
    let labels: Vec<bool> = source.rows.iter().take(split).map(|r| r.fraud).collect();
    let (train_labels, validation_labels) = labels.split_at(train_end);
    let mut binned = Binned::new(train_labels, &params);
    binned.reserve(kept.len());
    let group = (GROUP_BYTES_MAX / (train_end * 8).max(1)).clamp(1, kept.len().max(1));
    let mut values = vec![0.0; group.min(kept.len()) * train_end];
    let mut validation_values = vec![0.0; kept.len() * validation_rows];
    for (pass, chunk) in kept.chunks(group).enumerate() {
        let message =
            format!("computing features {} to {} of {}", pass * group + 1, pass * group + chunk.len(), kept.len());
        source.replay(&message, |index, _, features| {
            if index < train_end {
                for (k, column) in chunk.iter().enumerate() {
                    if let (Some(slot), Some(value)) = (values.get_mut(k * train_end + index), features.get(*column)) {
                        *slot = *value;
                    }
                }
                return true;
            }
            if pass > 0 || index >= split {
                return false;
            }
            for (k, column) in kept.iter().enumerate() {
                let at = k * validation_rows + index - train_end;
                if let (Some(slot), Some(value)) = (validation_values.get_mut(at), features.get(*column)) {
                    *slot = *value;
                }
            }
            true
        });
        for column in values.chunks_exact(train_end).take(chunk.len()) {
            binned.push(column)?;
        }
    }
    drop(values);
    let spinner = crate::out::spinner(format!(
        "training up to {} trees on {train_end} rows and {} of {width} features{}",
        args.trees,
        kept.len(),
        if validation_rows > 0 { format!(", the last {validation_rows} rows validating") } else { String::new() }
    ));
    let version = format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs());
    let validation = Columns { values: &validation_values, rows: validation_rows, labels: validation_labels };
    let trained_at = std::time::Instant::now();
    let mut model = Model::fit_binned(
        &binned,
        (validation_rows > 0).then_some(validation),
        &kept,
        &source.names,
        params,
        &version,
    )?;
    let training_s = trained_at.elapsed().as_secs_f64();
    spinner.finish_and_clear();
    drop((binned, validation_values));
    model.held_out_from_s = Some(from_s);
    // Third replay: score the held-out rows as they come.
    let mut scores = Vec::with_capacity(source.rows.len() - split);
    let all: Vec<usize> = (0..width).collect();
    let (_, replayed) = score_rows(&source, &model, &all, split, |_, score| {
        scores.push(score);
        true
    });
    let held = HeldOut::new(source.rows.get(split..).unwrap_or_default());
    model.metrics = evaluate(&scores, &held.labels, args.bootstrap, args.seed);
    std::fs::write(&args.out, model.to_json()).with_context(|| format!("writing {}", args.out.display()))?;
    let extra = breakdown(&source.kinds, &held, &scores, args.top_k);
    if !args.json {
        crate::outln!(
            "trained {} trees on {train_end} rows before {} ({} of {width} features vary); model written to {}",
            model.trees(),
            at(if validation_rows > 0 { source.rows.get(train_end).map_or(from_s, Row::time_s) } else { from_s }),
            kept.len(),
            args.out.display()
        );
    }
    let importance: serde_json::Map<String, serde_json::Value> =
        model.importance.iter().take(args.importance).map(|(name, share)| (name.clone(), json!(share))).collect();
    let mut more = json!({"model": args.out.display().to_string(), "trained_rows": train_end,
        "validation_rows": validation_rows, "trees": model.trees(), "held_out_from_s": from_s,
        "features_kept": kept.len(), "labels_pending": replayed.labels_pending, "importance": importance,
        "training_s": (training_s * 10.0).round() / 10.0,
        "total_s": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0});
    if let (Some(object), Some(extra)) = (more.as_object_mut(), extra.as_object()) {
        object.extend(extra.clone());
    }
    print_metrics(&model.metrics, args.json, more);
    if !args.json {
        print_breakdown(&extra);
        print_importance(&model, args.importance);
        crate::outln!("took {:.1} s, {training_s:.1} s of it training", started.elapsed().as_secs_f64());
    }
    Ok(())
}

/// A model read from its artifact, with where each of its features sits in the data's rows.
fn model_for(path: &std::path::Path, source: &Source) -> anyhow::Result<(Model, Vec<usize>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let model = Model::from_json(&text).with_context(|| format!("reading {}", path.display()))?;
    let columns: Vec<usize> = model
        .features
        .iter()
        .map(|name| source.names.iter().position(|n| n == name).ok_or_else(|| anyhow!("the data lacks feature {name}")))
        .collect::<anyhow::Result<_>>()?;
    Ok((model, columns))
}

/// Where to measure from: `asked` by the options, or the model's own held-out part; refuses a
/// start inside the model's training rows.
fn measured_from(source: &Source, args: &DataArgs, model: &Model) -> anyhow::Result<u64> {
    let at = |s: u64| obol_core::time::rfc3339(u128::from(s) * 1_000_000_000);
    Ok(match (source.held_out_from(args)?, model.held_out_from_s) {
        (Some(asked), Some(trained)) if asked < trained => bail!(
            "the model trained on rows before {}: measuring from {} would score rows it learned from \
             (leave out --split and --train-until to measure on its own held-out part)",
            at(trained),
            at(asked)
        ),
        (Some(asked), _) => asked,
        (None, Some(trained)) => trained,
        (None, None) => {
            eprintln!("the model does not say where its training data ended; measuring on the last 30% by time");
            source.held_out_from(&DataArgs { split: Some(0.7), ..args.clone() })?.unwrap_or(0)
        }
    })
}

/// Rows scored together, tree by tree ([`Model::score_columns`]).
const SCORE_BATCH_ROWS: usize = 4_096;

/// Scores rows from `from` on through `model`, calling `each` with each row and its score in
/// time order; stops when `each` answers false. Answers the time spent scoring.
fn score_rows(
    source: &Source,
    model: &Model,
    columns: &[usize],
    from: usize,
    mut each: impl FnMut(&Row, f64) -> bool,
) -> (std::time::Duration, Replayed) {
    let width = columns.len();
    let mut batch = vec![0.0; width * SCORE_BATCH_ROWS];
    let mut batch_rows: Vec<Row> = Vec::with_capacity(SCORE_BATCH_ROWS);
    let mut scores = Vec::with_capacity(SCORE_BATCH_ROWS);
    let mut scoring = std::time::Duration::ZERO;
    let mut stopped = false;
    let mut flush = |batch: &[f64], batch_rows: &mut Vec<Row>, scoring: &mut std::time::Duration| {
        let started = std::time::Instant::now();
        scores.clear();
        if batch_rows.len() == SCORE_BATCH_ROWS {
            model.score_columns(batch, SCORE_BATCH_ROWS, &mut scores);
        } else {
            // The last, shorter batch: its columns are packed first.
            let n = batch_rows.len();
            let packed: Vec<f64> = (0..width)
                .flat_map(|f| batch.get(f * SCORE_BATCH_ROWS..f * SCORE_BATCH_ROWS + n).unwrap_or_default())
                .copied()
                .collect();
            model.score_columns(&packed, n, &mut scores);
        }
        *scoring += started.elapsed();
        for (row, score) in batch_rows.iter().zip(&scores) {
            if !stopped && !each(row, *score) {
                stopped = true;
            }
        }
        batch_rows.clear();
        !stopped
    };
    let replayed = source.replay("scoring", |index, row, features| {
        if index < from {
            return true;
        }
        let at = batch_rows.len();
        for (f, column) in columns.iter().enumerate() {
            if let Some(slot) = batch.get_mut(f * SCORE_BATCH_ROWS + at) {
                *slot = features.get(*column).copied().unwrap_or(0.0);
            }
        }
        batch_rows.push(*row);
        batch_rows.len() < SCORE_BATCH_ROWS || flush(&batch, &mut batch_rows, &mut scoring)
    });
    if !batch_rows.is_empty() {
        flush(&batch, &mut batch_rows, &mut scoring);
    }
    (scoring, replayed)
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let source = load(&args.data, true)?;
    let (model, columns) = model_for(&args.model, &source)?;
    let from_s = measured_from(&source, &args.data, &model)?;
    let split = source.first_at(from_s);
    if split >= source.rows.len() {
        bail!("no rows from {} on to measure", obol_core::time::rfc3339(u128::from(from_s) * 1_000_000_000));
    }
    let mut scores = Vec::with_capacity(source.rows.len() - split);
    let (scoring, _) = score_rows(&source, &model, &columns, split, |_, score| {
        scores.push(score);
        true
    });
    let per_decision_us = scoring.as_secs_f64() * 1e6 / scores.len().max(1) as f64;
    let held = HeldOut::new(source.rows.get(split..).unwrap_or_default());
    let metrics = evaluate(&scores, &held.labels, args.bootstrap, 11);
    let extra = breakdown(&source.kinds, &held, &scores, args.top_k);
    let mut more = json!({"score_us_mean": (per_decision_us * 100.0).round() / 100.0, "held_out_from_s": from_s});
    if let (Some(object), Some(extra)) = (more.as_object_mut(), extra.as_object()) {
        object.extend(extra.clone());
    }
    print_metrics(&metrics, args.json, more);
    if !args.json {
        print_breakdown(&extra);
        crate::outln!("scoring: {per_decision_us:.2} µs a row on average, in batches of {SCORE_BATCH_ROWS} rows");
    }
    Ok(())
}

fn score(args: ScoreArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let source = load(&args.data, false)?;
    let (model, columns) = model_for(&args.model, &source)?;
    let from = if args.all { 0 } else { source.first_at(measured_from(&source, &args.data, &model)?) };
    let file = std::fs::File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let with_ids = !source.row_ids.is_empty();
    writeln!(out, "{}line,time_s,label,score", if with_ids { "id," } else { "" })?;
    let (mut written, mut failed) = (0usize, None);
    score_rows(&source, &model, &columns, from, |row, score| {
        let mut write = || -> std::io::Result<()> {
            if let Some(id) = source.row_ids.get(row.read_at as usize) {
                write!(out, "{id},")?;
            }
            writeln!(out, "{},{},{},{score}", row.line, row.time_s(), u8::from(row.fraud))
        };
        failed = write().err();
        written += 1;
        failed.is_none()
    });
    if let Some(error) = failed {
        return Err(error).with_context(|| format!("writing {}", args.out.display()));
    }
    out.flush().with_context(|| format!("writing {}", args.out.display()))?;
    crate::outln!(
        "wrote the scores of {written} rows{} to {}",
        if args.all { String::new() } else { format!(" from row {} by time on", from + 1) },
        args.out.display()
    );
    Ok(())
}

//! `obol risk train` and `obol risk eval`: train the fraud model on any labelled CSV through a
//! column mapping, split by time, and judge it on the later part; `obol risk detect` on simulated
//! traffic. The commands that talk to a running server are in `risk_ops_cli.rs`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use obol_risk::features::{Event, FEATURE_NAMES, FeatureStore};
use obol_risk::model::{Metrics, Model, TrainParams, evaluate};
use serde_json::json;

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
    /// Decided reviews as labelled CSV for the next `obol risk train`.
    Labels {
        /// Where to write the CSV.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        connection: crate::client::Connection,
    },
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

/// How to read the data.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// The CSV (a header row, then one row per payment).
    #[arg(long)]
    data: PathBuf,
    /// Columns, as role=column pairs: time and label are required; amount, entity (the payer),
    /// device, payee and network feed the streaming features.
    #[arg(long)]
    map: String,
    /// Extra numeric columns used as features as they are: a comma list, or `rest` for every
    /// column not named in --map.
    #[arg(long, default_value = "")]
    features: String,
    /// Digits after the decimal point in the amount column's unit (2 for dollars with cents).
    #[arg(long, default_value_t = 0)]
    amount_scale: u32,
    /// Share of rows, first by time, used for training.
    #[arg(long, default_value_t = 0.7)]
    split: f64,
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
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `obol risk eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The model artifact.
    #[arg(long)]
    model: PathBuf,
    /// Bootstrap resamples for the AUPRC interval.
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs a risk command.
pub fn run(command: RiskCommand) -> anyhow::Result<()> {
    match command {
        RiskCommand::Train(args) => train(args),
        RiskCommand::Eval(args) => eval(args),
        RiskCommand::Detect(args) => detect(args),
        RiskCommand::Reviews(args) => crate::risk_ops_cli::reviews(args),
        RiskCommand::Review { id, connection } => crate::risk_ops_cli::review(&id, &connection),
        RiskCommand::Decide(args) => crate::risk_ops_cli::decide(args),
        RiskCommand::Labels { out, connection } => crate::risk_ops_cli::labels(&out, &connection),
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

/// Splits one CSV line, honouring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// A decimal text as an integer count of 10^-scale units, exactly ("149.62" at scale 2: 14962).
fn minor_units(text: &str, scale: u32) -> Option<u128> {
    let (whole, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    if fraction.len() > scale as usize && fraction[scale as usize..].bytes().any(|b| b != b'0') {
        return None;
    }
    let mut digits = whole.to_string();
    let kept: String = fraction.chars().take(scale as usize).collect();
    digits.push_str(&kept);
    digits.push_str(&"0".repeat(scale as usize - kept.len()));
    digits.parse().ok()
}

/// The rows of a labelled CSV as feature vectors, in time order.
struct Dataset {
    names: Vec<String>,
    rows: Vec<Vec<f64>>,
    labels: Vec<bool>,
}

fn id_of(text: &str, column: &str) -> anyhow::Result<u128> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    text.parse::<u128>()
        .or_else(|_| text.parse::<f64>().map(|v| v as u128))
        .with_context(|| format!("column {column}: {text:?} is not an id"))
}

fn load(args: &DataArgs) -> anyhow::Result<Dataset> {
    let text = std::fs::read_to_string(&args.data).with_context(|| format!("reading {}", args.data.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = split_csv(lines.next().ok_or_else(|| anyhow!("{} is empty", args.data.display()))?);
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| anyhow!("no column {name:?} in {} (it has: {})", args.data.display(), header.join(", ")))
    };
    let mut roles: HashMap<String, usize> = HashMap::new();
    for pair in args.map.split(',').filter(|p| !p.trim().is_empty()) {
        let (role, name) = pair.split_once('=').ok_or_else(|| anyhow!("--map: {pair:?} is not role=column"))?;
        let role = role.trim();
        if !["time", "amount", "label", "entity", "device", "payee", "network"].contains(&role) {
            bail!("--map: unknown role {role:?} (time, amount, label, entity, device, payee, network)");
        }
        roles.insert(role.to_string(), column(name.trim())?);
    }
    let Some(&time_column) = roles.get("time") else { bail!("--map needs time=<column>") };
    if !roles.contains_key("label") {
        bail!("--map needs label=<column>");
    }
    let mapped: Vec<usize> = roles.values().copied().collect();
    let passthrough: Vec<usize> = match args.features.trim() {
        "" => Vec::new(),
        "rest" => (0..header.len()).filter(|i| !mapped.contains(i)).collect(),
        list => list.split(',').map(|name| column(name.trim())).collect::<anyhow::Result<_>>()?,
    };
    let streaming = roles.contains_key("entity");
    let mut names: Vec<String> = Vec::new();
    if streaming {
        names.extend(FEATURE_NAMES.iter().map(|s| s.to_string()));
    } else if roles.contains_key("amount") {
        names.push("amount".into());
    }
    for index in &passthrough {
        let name = header.get(*index).context("a feature column lies past the header")?;
        names.push(name.trim().to_string());
    }
    if names.is_empty() {
        bail!("no features: map entity=<column> for streaming features, or give --features");
    }
    let mut records: Vec<(f64, Vec<String>)> = Vec::new();
    for (number, line) in lines.enumerate() {
        let fields = split_csv(line);
        if fields.len() != header.len() {
            bail!("row {}: {} fields, the header has {}", number + 2, fields.len(), header.len());
        }
        let time = fields.get(time_column).context("the time column lies past the row")?;
        let time: f64 = time.trim().parse().with_context(|| format!("row {}: time", number + 2))?;
        records.push((time, fields));
    }
    // Stable: rows with the same time keep their order.
    records.sort_by(|a, b| a.0.total_cmp(&b.0));
    let bar = ProgressBar::new(records.len() as u64);
    let mut store = FeatureStore::default();
    let (mut rows, mut labels) = (Vec::with_capacity(records.len()), Vec::with_capacity(records.len()));
    for (time, fields) in &records {
        let field = |role: &str| roles.get(role).and_then(|i| fields.get(*i)).map(String::as_str);
        let label = field("label").unwrap_or("0").trim().trim_matches('"');
        labels.push(matches!(label, "1" | "1.0" | "true" | "fraud"));
        let amount_iso_minor = match field("amount") {
            Some(text) => minor_units(text, args.amount_scale)
                .ok_or_else(|| anyhow!("amount {text:?} has more digits than --amount-scale {}", args.amount_scale))?,
            None => 0,
        };
        let mut row = Vec::with_capacity(names.len());
        if streaming {
            let event = Event {
                at_s: *time as u64,
                payer: id_of(field("entity").unwrap_or(""), "entity")?,
                device: field("device").map(|d| id_of(d, "device")).transpose()?.filter(|d| *d != 0),
                payee: id_of(field("payee").unwrap_or(""), "payee")?,
                network: field("network").map(|n| id_of(n, "network")).transpose()?.map(|n| n as u64),
                amount_iso_minor,
                ..Event::default()
            };
            row.extend_from_slice(&store.observe(&event).0);
        } else if roles.contains_key("amount") {
            row.push(amount_iso_minor as f64);
        }
        for index in &passthrough {
            let (Some(name), Some(text)) = (header.get(*index), fields.get(*index)) else {
                bail!("a feature column lies past the row");
            };
            let text = text.trim();
            row.push(text.parse::<f64>().with_context(|| format!("column {name}: {text:?} is not a number"))?);
        }
        rows.push(row);
        bar.inc(1);
    }
    bar.finish_and_clear();
    if !(0.05..=0.95).contains(&args.split) {
        bail!("--split must be between 0.05 and 0.95");
    }
    Ok(Dataset { names, rows, labels })
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
    crate::outln!(
        "AUPRC: {:.4} (95% bootstrap interval {:.4} to {:.4})",
        metrics.auprc,
        metrics.auprc_ci_low,
        metrics.auprc_ci_high
    );
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

fn train(args: TrainArgs) -> anyhow::Result<()> {
    let data = load(&args.data)?;
    let split = (data.rows.len() as f64 * args.data.split) as usize;
    let spinner = ProgressBar::new_spinner();
    spinner.set_message(format!("training {} trees on {} rows", args.trees, split));
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let params = TrainParams {
        iterations: args.trees,
        learning_rate: args.learning_rate,
        max_depth: args.depth,
        seed: args.seed,
    };
    let version = format!("{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs());
    let (Some((train_rows, held_rows)), Some((train_labels, held_labels))) =
        (data.rows.split_at_checked(split), data.labels.split_at_checked(split))
    else {
        bail!("the split point {split} lies past the {} rows", data.rows.len());
    };
    let mut model = Model::train(train_rows, train_labels, &data.names, params, &version)?;
    spinner.finish_and_clear();
    let scores = model.score_all(held_rows);
    model.metrics = evaluate(&scores, held_labels, 1000, args.seed);
    std::fs::write(&args.out, model.to_json()).with_context(|| format!("writing {}", args.out.display()))?;
    if !args.json {
        crate::outln!(
            "trained on {split} rows, {} features; model written to {}",
            data.names.len(),
            args.out.display()
        );
    }
    print_metrics(&model.metrics, args.json, json!({"model": args.out.display().to_string(), "trained_rows": split}));
    Ok(())
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let model = Model::from_json(&text)?;
    let data = load(&args.data)?;
    let columns: Vec<usize> = model
        .features
        .iter()
        .map(|name| data.names.iter().position(|n| n == name).ok_or_else(|| anyhow!("the data lacks feature {name}")))
        .collect::<anyhow::Result<_>>()?;
    let split = (data.rows.len() as f64 * args.data.split) as usize;
    let (Some(held_rows), Some(held_labels)) = (data.rows.get(split..), data.labels.get(split..)) else {
        bail!("the split point {split} lies past the {} rows", data.rows.len());
    };
    let held_out: Vec<Vec<f64>> = held_rows
        .iter()
        .map(|row| columns.iter().map(|c| row.get(*c).copied()).collect::<Option<_>>())
        .collect::<Option<_>>()
        .context("a row has fewer values than the data has feature names")?;
    let started = std::time::Instant::now();
    let scores: Vec<f64> = held_out.iter().map(|row| model.score(row)).collect();
    let per_decision_us = started.elapsed().as_secs_f64() * 1e6 / held_out.len().max(1) as f64;
    let metrics = evaluate(&scores, held_labels, args.bootstrap, 11);
    print_metrics(&metrics, args.json, json!({"score_us_mean": (per_decision_us * 100.0).round() / 100.0}));
    if !args.json {
        crate::outln!("one score: {per_decision_us:.2} µs on average");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_and_exact_decimal_amounts() {
        assert_eq!(split_csv(r#""Time","V1",3,"a,b""c""#), vec!["Time", "V1", "3", "a,b\"c"]);
        assert_eq!(minor_units("149.62", 2), Some(14962));
        assert_eq!(minor_units("0.5", 2), Some(50));
        assert_eq!(minor_units("7", 2), Some(700));
        assert_eq!(minor_units("1.005", 2), None, "more digits than the scale");
        assert_eq!(minor_units("1.500", 2), Some(150));
    }
}

//! `obol risk train` and `obol risk eval`: train the fraud model on any labelled CSV through a
//! column mapping, split by time, and judge it on the later part; `obol risk detect` on simulated
//! traffic. The commands that talk to a running server are in `risk_ops_cli.rs`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use obol_risk::features::{Event, FEATURE_NAMES, Label, Replay};
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

/// How to read the data.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// The CSV (a header row, then one row per payment).
    #[arg(long)]
    data: PathBuf,
    /// Columns, as role=column pairs. Required: time (seconds since the Unix epoch, or an
    /// RFC 3339 / ISO date or date-time, UTC unless it says otherwise) and label (1, true or
    /// fraud). For obol's streaming features: amount, entity (the payer; `payer` works too),
    /// device, payee (`terminal` and `merchant` work too) and network. Optional: label_time (when
    /// each label became known; default: the payment's time plus --label-delay-days) and kind
    /// (the fraud kind, for a breakdown by kind).
    #[arg(long)]
    map: String,
    /// Extra numeric columns used as features as they are: a comma list, or `rest` for every
    /// column not named in --map; `rest,-COL,-COL` leaves columns out of the rest.
    #[arg(long, default_value = "")]
    features: String,
    /// Digits after the decimal point in the amount column's unit (2 for dollars with cents).
    #[arg(long, default_value_t = 0)]
    amount_scale: u32,
    /// Round amounts with more digits than --amount-scale to the nearest unit instead of
    /// refusing them.
    #[arg(long)]
    amount_round: bool,
    /// Share of rows, first by time, used for training (default 0.7; `eval` defaults to the
    /// model's own split).
    #[arg(long, conflicts_with = "train_until")]
    split: Option<f64>,
    /// Train on rows before this date or time (RFC 3339 or YYYY-MM-DD, UTC); later rows measure.
    #[arg(long)]
    train_until: Option<String>,
    /// Days between a fraud and its label becoming known, when no label_time column is mapped:
    /// a label counts in the features only from then on, as it would have live.
    #[arg(long, default_value_t = 7.0)]
    label_delay_days: f64,
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
    /// Each row's time, whole seconds since the Unix epoch.
    times_s: Vec<u64>,
    /// Each row's payer (0 when no entity column is mapped).
    payers: Vec<u128>,
    /// Each row's fraud kind, as an index into `kinds` (`None`: no kind given).
    kind_of: Vec<Option<u16>>,
    kinds: Vec<String>,
    /// Labels still waiting for their known time when the rows ran out.
    labels_pending: usize,
}

fn id_of(text: &str, column: &str, row: usize) -> anyhow::Result<u128> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    text.parse::<u128>()
        .or_else(|_| text.parse::<f64>().map(|v| v as u128))
        .map_err(|_| anyhow!("row {row}, column {column}: {text:?} is not an id (a number)"))
}

/// A time column's value in ns since the Unix epoch, exactly: a decimal number of seconds (up
/// to nine digits after the point), an RFC 3339 date-time, or an ISO date or date-time without a
/// zone (read as UTC). Other numbers (an exponent) are read as floating point.
fn ns_of(text: &str) -> Option<i128> {
    let text = text.trim().trim_matches('"');
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let unsigned = whole.strip_prefix('-').unwrap_or(whole);
    if digits(unsigned) && (fraction.is_empty() || digits(fraction)) && fraction.len() <= 9 {
        let seconds: i128 = unsigned.parse().ok()?;
        let nanos: i128 = if fraction.is_empty() { 0 } else { format!("{fraction:0<9}").parse().ok()? };
        let ns = seconds.checked_mul(1_000_000_000)?.checked_add(nanos)?;
        return Some(if whole.starts_with('-') { -ns } else { ns });
    }
    seconds_of(text).map(|s| (s * 1e9) as i128)
}

/// A time column's value in seconds since the Unix epoch: a number of seconds, an RFC 3339
/// date-time, or an ISO date or date-time without a zone (read as UTC).
fn seconds_of(text: &str) -> Option<f64> {
    let text = text.trim().trim_matches('"');
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds.is_finite().then_some(seconds);
    }
    let zoned = match text.len() {
        10 => format!("{text}T00:00:00Z"),
        16 => format!("{text}:00Z"),
        _ if text.ends_with(['Z', 'z']) || text.get(19..).is_some_and(|zone| zone.contains(['+', '-'])) => {
            text.to_string()
        }
        _ => format!("{text}Z"),
    };
    obol_core::time::parse_time(&zoned).map(|ns| ns as f64 / 1e9)
}

/// An amount as an integer count of 10^-scale units; with `round`, extra digits round half up.
fn amount_of(text: &str, scale: u32, round: bool) -> Option<u128> {
    if let Some(exact) = minor_units(text, scale) {
        return Some(exact);
    }
    if !round {
        return None;
    }
    let value: f64 = text.trim().parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| (value * 10f64.powi(scale as i32)).round() as u128)
}

/// One parsed row, kept compact until the rows are in time order.
struct Parsed {
    time_ns: i128,
    event: Event,
    fraud: bool,
    label_known_ns: Option<i128>,
    kind: Option<u16>,
    extra: Vec<f64>,
}

const ROLES: [&str; 12] = [
    "time",
    "amount",
    "label",
    "entity",
    "payer",
    "device",
    "payee",
    "terminal",
    "merchant",
    "network",
    "label_time",
    "kind",
];

fn load(args: &DataArgs) -> anyhow::Result<Dataset> {
    use std::io::BufRead;
    let file = std::fs::File::open(&args.data).with_context(|| format!("reading {}", args.data.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        bail!("{} is empty", args.data.display());
    }
    let header: Vec<String> =
        split_csv(line.trim_end_matches(['\n', '\r'])).into_iter().map(|h| h.trim().to_string()).collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow!("no column {name:?} in {} (it has: {})", args.data.display(), header.join(", ")))
    };
    let mut roles: HashMap<&'static str, usize> = HashMap::new();
    for pair in args.map.split(',').filter(|p| !p.trim().is_empty()) {
        let (role, name) = pair.split_once('=').ok_or_else(|| anyhow!("--map: {pair:?} is not role=column"))?;
        let Some(role) = ROLES.iter().find(|r| **r == role.trim()) else {
            bail!("--map: unknown role {:?} (the roles: {})", role.trim(), ROLES.join(", "));
        };
        let role: &'static str = match *role {
            "payer" => "entity",
            "terminal" | "merchant" => "payee",
            other => other,
        };
        roles.insert(role, column(name.trim())?);
    }
    let Some(&time_column) = roles.get("time") else { bail!("--map needs time=<column>") };
    let Some(&label_column) = roles.get("label") else { bail!("--map needs label=<column>") };
    let mapped: Vec<usize> = roles.values().copied().collect();
    let passthrough: Vec<usize> = match args.features.trim() {
        "" => Vec::new(),
        list if list.starts_with("rest") => {
            let mut left_out = Vec::new();
            for name in list.split(',').skip(1) {
                let name = name.trim().strip_prefix('-').ok_or_else(|| {
                    anyhow!("--features: after `rest`, list columns to leave out as -COLUMN (got {name:?})")
                })?;
                left_out.push(column(name)?);
            }
            (0..header.len()).filter(|i| !mapped.contains(i) && !left_out.contains(i)).collect()
        }
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
        names.push(header.get(*index).context("a feature column lies past the header")?.clone());
    }
    if names.is_empty() {
        bail!("no features: map entity=<column> for streaming features, or give --features");
    }
    if !(args.label_delay_days.is_finite() && args.label_delay_days >= 0.0) {
        bail!("--label-delay-days must be 0 or more");
    }
    let column_name = |role: &str| roles.get(role).and_then(|i| header.get(*i)).map_or("?", String::as_str);
    let bar = crate::out::bytes_bar(size, "reading");
    let mut kinds: Vec<String> = Vec::new();
    let mut parsed: Vec<Parsed> = Vec::new();
    let mut row_number = 1usize;
    loop {
        line.clear();
        let read = reader.read_line(&mut line)?;
        if read == 0 {
            break;
        }
        bar.inc(read as u64);
        row_number += 1;
        let text = line.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let fields = split_csv(text);
        if fields.len() != header.len() {
            bail!("row {row_number}: {} fields, the header has {}", fields.len(), header.len());
        }
        let field = |role: &str| roles.get(role).and_then(|i| fields.get(*i)).map(String::as_str);
        let time_text = fields.get(time_column).map_or("", String::as_str);
        let time_ns = ns_of(time_text).ok_or_else(|| {
            anyhow!(
                "row {row_number}, column {}: {time_text:?} is not a time (seconds since the Unix epoch, or a date \
                 like 2018-04-01 or 2018-04-01T00:00:31Z)",
                column_name("time")
            )
        })?;
        let label = fields.get(label_column).map_or("", String::as_str).trim().trim_matches('"');
        let fraud = match label.to_ascii_lowercase().as_str() {
            "1" | "1.0" | "true" | "fraud" | "yes" => true,
            "0" | "0.0" | "false" | "" | "no" | "legit" | "genuine" => false,
            other => {
                bail!("row {row_number}, column {}: {other:?} is not a label (1/0, true/false)", column_name("label"))
            }
        };
        let amount_iso_minor = match field("amount") {
            Some(text) => amount_of(text, args.amount_scale, args.amount_round).ok_or_else(|| {
                anyhow!(
                    "row {row_number}, column {}: {text:?} is not an amount with at most {} digits after the point \
                     (--amount-scale; --amount-round rounds)",
                    column_name("amount"),
                    args.amount_scale
                )
            })?,
            None => 0,
        };
        let label_known_ns = match field("label_time").map(str::trim).filter(|t| !t.is_empty()) {
            Some(text) => Some(ns_of(text).ok_or_else(|| {
                anyhow!("row {row_number}, column {}: {text:?} is not a time", column_name("label_time"))
            })?),
            None => None,
        };
        let kind = field("kind").map(|k| k.trim().trim_matches('"')).filter(|k| !k.is_empty()).map(|name| match kinds
            .iter()
            .position(|k| k == name)
        {
            Some(at) => at as u16,
            None => {
                kinds.push(name.to_string());
                (kinds.len() - 1) as u16
            }
        });
        let event = if streaming {
            Event {
                at_s: u64::try_from(time_ns.max(0) / 1_000_000_000).unwrap_or(u64::MAX),
                payer: id_of(field("entity").unwrap_or(""), column_name("entity"), row_number)?,
                device: field("device")
                    .map(|d| id_of(d, column_name("device"), row_number))
                    .transpose()?
                    .filter(|d| *d != 0),
                payee: id_of(field("payee").unwrap_or(""), column_name("payee"), row_number)?,
                network: field("network")
                    .map(|n| id_of(n, column_name("network"), row_number))
                    .transpose()?
                    .filter(|n| *n != 0)
                    .map(|n| n as u64),
                amount_iso_minor,
                ..Event::default()
            }
        } else {
            Event { amount_iso_minor, ..Event::default() }
        };
        let mut extra = Vec::with_capacity(passthrough.len());
        for index in &passthrough {
            let (Some(name), Some(text)) = (header.get(*index), fields.get(*index)) else {
                bail!("a feature column lies past the row");
            };
            let text = text.trim();
            extra.push(
                text.parse::<f64>()
                    .map_err(|_| anyhow!("row {row_number}, column {name}: {text:?} is not a number"))?,
            );
        }
        parsed.push(Parsed { time_ns, event, fraud, label_known_ns, kind, extra });
    }
    bar.finish_and_clear();
    // Stable: rows with the same time keep their order.
    parsed.sort_by_key(|row| row.time_ns);
    let bar = crate::out::bar(parsed.len() as u64, "computing features");
    let mut replay = Replay::with_capacity(obol_risk::features::DEFAULT_CAPACITY);
    let delay_ns = (args.label_delay_days * 86_400e9) as i128;
    let count = parsed.len();
    let mut dataset = Dataset {
        names,
        rows: Vec::with_capacity(count),
        labels: Vec::with_capacity(count),
        times_s: Vec::with_capacity(count),
        payers: Vec::with_capacity(count),
        kind_of: Vec::with_capacity(count),
        kinds,
        labels_pending: 0,
    };
    for row in parsed {
        let mut features = Vec::with_capacity(dataset.names.len());
        if streaming {
            let at_ns = u128::try_from(row.time_ns.max(0)).unwrap_or(0);
            features.extend_from_slice(&replay.observe_at(&row.event, at_ns).0);
            if row.fraud {
                let known_ns = row.label_known_ns.unwrap_or(row.time_ns.saturating_add(delay_ns)).max(row.time_ns);
                let known_ns = u128::try_from(known_ns.max(0)).unwrap_or(0);
                let known_at_s = u64::try_from(known_ns / 1_000_000_000).unwrap_or(u64::MAX);
                replay.label_at(Label::of(&row.event, known_at_s), known_ns);
            }
        } else if roles.contains_key("amount") {
            features.push(row.event.amount_iso_minor as f64);
        }
        features.extend_from_slice(&row.extra);
        dataset.rows.push(features);
        dataset.labels.push(row.fraud);
        dataset.times_s.push(u64::try_from(row.time_ns.max(0) / 1_000_000_000).unwrap_or(u64::MAX));
        dataset.payers.push(row.event.payer);
        dataset.kind_of.push(if row.fraud { row.kind } else { None });
        bar.inc(1);
    }
    bar.finish_and_clear();
    dataset.labels_pending = replay.pending();
    Ok(dataset)
}

/// Where the held-out part starts: rows at or after this time measure, earlier ones train.
fn held_out_from(data: &Dataset, args: &DataArgs) -> anyhow::Result<Option<u64>> {
    if let Some(until) = &args.train_until {
        let at = seconds_of(until)
            .ok_or_else(|| anyhow!("--train-until {until:?}: not a date (YYYY-MM-DD) or an RFC 3339 time"))?;
        return Ok(Some(at.max(0.0).ceil() as u64));
    }
    let Some(fraction) = args.split else { return Ok(None) };
    if !(0.05..=0.95).contains(&fraction) {
        bail!("--split must be between 0.05 and 0.95");
    }
    let index = (data.times_s.len() as f64 * fraction) as usize;
    Ok(data.times_s.get(index).copied())
}

/// The first row at or after `from_s` (rows are in time order).
fn first_at(data: &Dataset, from_s: u64) -> usize {
    data.times_s.partition_point(|t| *t < from_s)
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

/// What a held-out part shows beyond [`Metrics`]: AUPRC per fraud kind (each kind's fraud
/// against every good row) and precision among the top `k` payers of each day.
fn breakdown(data: &Dataset, from: usize, scores: &[f64], top_k: usize) -> serde_json::Value {
    let labels = data.labels.get(from..).unwrap_or_default();
    let kinds = data.kind_of.get(from..).unwrap_or_default();
    let mut by_kind = serde_json::Map::new();
    for (index, name) in data.kinds.iter().enumerate() {
        let (mut s, mut l) = (Vec::new(), Vec::new());
        let mut frauds = 0usize;
        for ((score, label), kind) in scores.iter().zip(labels).zip(kinds) {
            if !label || *kind == Some(index as u16) {
                s.push(*score);
                l.push(*label);
                frauds += usize::from(*label);
            }
        }
        if frauds > 0 {
            by_kind.insert(name.clone(), json!({"frauds": frauds, "auprc": obol_risk::model::auprc(&s, &l)}));
        }
    }
    let days: Vec<u64> = data.times_s.get(from..).unwrap_or_default().iter().map(|t| t / 86_400).collect();
    let payers = data.payers.get(from..).unwrap_or_default();
    let (precision, day_count) = obol_risk::model::precision_top_k_per_day(scores, labels, &days, payers, top_k);
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
    let data = load(&args.data)?;
    let file = std::fs::File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "time_s,label,{}", data.names.join(","))?;
    for ((row, time_s), label) in data.rows.iter().zip(&data.times_s).zip(&data.labels) {
        write!(out, "{time_s},{}", u8::from(*label))?;
        for value in row {
            // Rust prints the shortest text that reads back to the same f64.
            write!(out, ",{value}")?;
        }
        writeln!(out)?;
    }
    out.flush()?;
    crate::outln!("wrote the {} features of {} rows to {}", data.names.len(), data.rows.len(), args.out.display());
    Ok(())
}

fn train(args: TrainArgs) -> anyhow::Result<()> {
    let data = load(&args.data)?;
    let from_s = match held_out_from(&data, &args.data)? {
        Some(at) => at,
        None => held_out_from(&data, &DataArgs { split: Some(0.7), ..args.data.clone() })?
            .ok_or_else(|| anyhow!("{} has no rows", args.data.data.display()))?,
    };
    let split = first_at(&data, from_s);
    if split == 0 || split >= data.rows.len() {
        bail!(
            "the split at {} leaves {} rows to train on and {} to measure: both need some",
            obol_core::time::rfc3339(u128::from(from_s) * 1_000_000_000),
            split,
            data.rows.len() - split.min(data.rows.len())
        );
    }
    let spinner = crate::out::spinner(format!("training {} trees on {} rows", args.trees, split));
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
    model.held_out_from_s = Some(from_s);
    let scores = model.score_all(held_rows);
    model.metrics = evaluate(&scores, held_labels, args.bootstrap, args.seed);
    std::fs::write(&args.out, model.to_json()).with_context(|| format!("writing {}", args.out.display()))?;
    let extra = breakdown(&data, split, &scores, args.top_k);
    if !args.json {
        crate::outln!(
            "trained on {split} rows before {}, {} features; model written to {}",
            obol_core::time::rfc3339(u128::from(from_s) * 1_000_000_000),
            data.names.len(),
            args.out.display()
        );
    }
    let mut more = json!({"model": args.out.display().to_string(), "trained_rows": split, "held_out_from_s": from_s,
        "labels_pending": data.labels_pending});
    if let (Some(object), Some(extra)) = (more.as_object_mut(), extra.as_object()) {
        object.extend(extra.clone());
    }
    print_metrics(&model.metrics, args.json, more);
    if !args.json {
        print_breakdown(&extra);
    }
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
    let asked = held_out_from(&data, &args.data)?;
    let from_s = match (asked, model.held_out_from_s) {
        (Some(asked), Some(trained)) if asked < trained => bail!(
            "the model trained on rows before {}: measuring from {} would score rows it learned from \
             (leave out --split and --train-until to measure on its own held-out part)",
            obol_core::time::rfc3339(u128::from(trained) * 1_000_000_000),
            obol_core::time::rfc3339(u128::from(asked) * 1_000_000_000)
        ),
        (Some(asked), _) => asked,
        (None, Some(trained)) => trained,
        (None, None) => {
            eprintln!("the model does not say where its training data ended; measuring on the last 30% by time");
            held_out_from(&data, &DataArgs { split: Some(0.7), ..args.data.clone() })?.unwrap_or(0)
        }
    };
    let split = first_at(&data, from_s);
    let (Some(held_rows), Some(held_labels)) = (data.rows.get(split..), data.labels.get(split..)) else {
        bail!("the split point {split} lies past the {} rows", data.rows.len());
    };
    if held_rows.is_empty() {
        bail!("no rows from {} on to measure", obol_core::time::rfc3339(u128::from(from_s) * 1_000_000_000));
    }
    let held_out: Vec<Vec<f64>> = held_rows
        .iter()
        .map(|row| columns.iter().map(|c| row.get(*c).copied()).collect::<Option<_>>())
        .collect::<Option<_>>()
        .context("a row has fewer values than the data has feature names")?;
    let started = std::time::Instant::now();
    let scores: Vec<f64> = held_out.iter().map(|row| model.score(row)).collect();
    let per_decision_us = started.elapsed().as_secs_f64() * 1e6 / held_out.len().max(1) as f64;
    let metrics = evaluate(&scores, held_labels, args.bootstrap, 11);
    let extra = breakdown(&data, split, &scores, args.top_k);
    let mut more = json!({"score_us_mean": (per_decision_us * 100.0).round() / 100.0, "held_out_from_s": from_s});
    if let (Some(object), Some(extra)) = (more.as_object_mut(), extra.as_object()) {
        object.extend(extra.clone());
    }
    print_metrics(&metrics, args.json, more);
    if !args.json {
        print_breakdown(&extra);
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

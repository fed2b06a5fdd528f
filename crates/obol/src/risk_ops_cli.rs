//! `obol risk reviews|review|decide|labels|policy ...`: work the review queue and change the live
//! policy of a running server, through its public API.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{Api, Connection, print, runtime};

/// Options of `obol risk reviews`.
#[derive(Args, Debug)]
pub struct ReviewsArgs {
    /// Which: pending, approved, declined or all.
    #[arg(long, default_value = "pending")]
    status: String,
    /// At most this many (1 to 500).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Start after this review (the `next` a previous page printed).
    #[arg(long)]
    after: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

/// Options of `obol risk decide`.
#[derive(Args, Debug)]
pub struct DecideArgs {
    /// The review id.
    id: String,
    /// approve (the held request runs as first asked) or decline (it never runs; a paused tab is
    /// settled).
    #[arg(value_parser = ["approve", "decline"])]
    decision: String,
    /// Why, for the record.
    #[arg(long)]
    note: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

/// `obol risk policy ...`
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// The bundles in force, the decisions so far and whether a shadow run is going on.
    Show {
        #[command(flatten)]
        connection: Connection,
    },
    /// Send a bundle (TOML): it goes live at once (from its effective time), or with --shadow
    /// runs beside the live policy without enforcing. A bundle that does not compile is refused
    /// and the live policy stays.
    ///
    /// Example: obol risk policy submit policy/eu-psd2-sca.toml --shadow
    Submit {
        /// The bundle file.
        file: PathBuf,
        /// Run it in shadow instead of making it live.
        #[arg(long)]
        shadow: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Every policy change: who, what, when, and the diff.
    Changes {
        /// Only changes after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[command(flatten)]
        connection: Connection,
    },
    /// Where the shadow candidate would have decided otherwise; --stop ends the run.
    Shadow {
        /// Stop the shadow run (prints its final report).
        #[arg(long)]
        stop: bool,
        #[command(flatten)]
        connection: Connection,
    },
}

/// The string at `key` in a JSON object, if it is one.
fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// Lists the review queue.
pub fn reviews(args: ReviewsArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.connection)?;
    let mut path = format!("/v1/risk/reviews?status={}&limit={}", args.status, args.limit);
    if let Some(after) = &args.after {
        path.push_str(&format!("&after={after}"));
    }
    let page = runtime()?.block_on(api.expect(reqwest::Method::GET, &path, None))?;
    if crate::out::is_json() {
        print(&page);
        return Ok(());
    }
    let items = page.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    if items.is_empty() {
        crate::outln!("no {} reviews", args.status);
        return Ok(());
    }
    crate::outln!("{:<36} {:<9} {:<15} {:>20} {:<24} rule / reason", "id", "status", "kind", "amount", "created");
    for item in &items {
        let text = |key: &str| str_at(item, key).unwrap_or("").to_string();
        let scale = item.get("asset_scale").and_then(Value::as_u64).and_then(|s| u8::try_from(s).ok()).unwrap_or(0);
        let amount = text("amount").parse::<u128>().map_or_else(
            |_| text("amount"),
            |units| format!("{} {}", crate::out::decimal(units, scale), text("asset_code")),
        );
        let created = text("created_ns").parse::<u128>().map_or_else(|_| "-".to_string(), crate::out::rfc3339);
        crate::outln!(
            "{:<36} {:<9} {:<15} {:>20} {:<24} {} / {}",
            text("id"),
            text("status"),
            text("kind"),
            amount,
            created,
            item.pointer("/risk/rule").and_then(Value::as_str).unwrap_or("-"),
            item.pointer("/risk/reason_en").and_then(Value::as_str).unwrap_or("")
        );
    }
    if let Some(next) = page.get("next").and_then(Value::as_str) {
        crate::outln!("more: obol risk reviews --status {} --after {next}", args.status);
    }
    Ok(())
}

/// Shows one review with its exact Shapley values.
pub fn review(id: &str, connection: &Connection) -> anyhow::Result<()> {
    let api = Api::new(connection)?;
    print(&runtime()?.block_on(api.expect(reqwest::Method::GET, &format!("/v1/risk/reviews/{id}"), None))?);
    Ok(())
}

/// Approves or declines a review.
pub fn decide(args: DecideArgs) -> anyhow::Result<()> {
    let api = Api::new(&args.connection)?;
    let body = json!({"decision": args.decision, "note": args.note});
    let path = format!("/v1/risk/reviews/{}/decision", args.id);
    let decided = runtime()?.block_on(api.expect(reqwest::Method::POST, &path, Some(&body)))?;
    let outcome: Vec<&str> = decided
        .get("outcome")
        .and_then(Value::as_array)
        .map(|o| o.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let status = str_at(&decided, "status").unwrap_or("?");
    crate::outln!("review {} {status}: {}", args.id, outcome.join(", "));
    Ok(())
}

/// Options of `obol risk labels`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LabelsArgs {
    #[command(subcommand)]
    command: Option<LabelsCommand>,
    /// Where to write decided reviews as training CSV.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    connection: Connection,
}

/// `obol risk labels ...`
#[derive(Subcommand, Debug)]
pub enum LabelsCommand {
    /// Record the rows of a label file as confirmed fraud: a `payment_id` column, or
    /// `payer_account_id` and `payee_account_id` (and `device_id`). With a `label` column, only
    /// rows labelled 1, true, yes or fraud are recorded. Every row is checked before anything is
    /// sent; a payment labelled already is skipped, so running an import again records nothing
    /// twice.
    Import {
        /// The CSV.
        file: PathBuf,
        #[command(flatten)]
        connection: Connection,
    },
    /// Mark payments (transfer ids) as confirmed fraud.
    Mark {
        /// Transfer ids.
        #[arg(required = true)]
        payments: Vec<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// The labels recorded, in the order the server learned them.
    List {
        /// At most this many (1 to 1,000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this label (the `next` a previous page printed).
        #[arg(long)]
        after: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
}

/// Runs `obol risk labels`.
pub fn labels(args: LabelsArgs) -> anyhow::Result<()> {
    match args.command {
        Some(LabelsCommand::Import { file, connection }) => import_labels(&file, &connection),
        Some(LabelsCommand::Mark { payments, connection }) => {
            let items: Vec<Value> = payments.iter().map(|id| json!({"payment_id": id})).collect();
            let api = Api::new(&connection)?;
            let body = json!({"labels": items, "source": "operator"});
            let recorded = runtime()?.block_on(api.expect(reqwest::Method::POST, "/v1/risk/labels", Some(&body)))?;
            print(&recorded);
            Ok(())
        }
        Some(LabelsCommand::List { limit, after, connection }) => {
            if !(1..=1_000).contains(&limit) {
                bail!("--limit must be 1 to 1,000");
            }
            let api = Api::new(&connection)?;
            let mut path = format!("/v1/risk/labels/recorded?limit={limit}");
            if let Some(after) = after {
                let encoded: String = after
                    .bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"-_./".contains(&b) {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect();
                path.push_str(&format!("&after={encoded}"));
            }
            print(&runtime()?.block_on(api.expect(reqwest::Method::GET, &path, None))?);
            Ok(())
        }
        None => match args.out {
            Some(out) => export_labels(&out, &args.connection),
            None => bail!("say where: obol risk labels --out FILE, or obol risk labels import|mark|list (see --help)"),
        },
    }
}

/// Sends a label file's rows as confirmed fraud, a request per 1,000 rows.
fn import_labels(file: &PathBuf, connection: &Connection) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .with_context(|| format!("{} is empty", file.display()))?
        .split(',')
        .map(|h| h.trim().to_string())
        .collect();
    let column = |name: &str| header.iter().position(|h| h == name);
    let (payment, payer, payee, device, label) = (
        column("payment_id"),
        column("payer_account_id"),
        column("payee_account_id"),
        column("device_id"),
        column("label"),
    );
    if payment.is_none() && (payer.is_none() || payee.is_none()) {
        bail!(
            "{}: needs a payment_id column, or payer_account_id and payee_account_id (it has: {})",
            file.display(),
            header.join(", ")
        );
    }
    let mut items = Vec::new();
    for (number, line) in lines.enumerate() {
        let row = number + 2;
        let fields: Vec<&str> = line.split(',').map(|f| f.trim().trim_matches('"').trim()).collect();
        let at = |index: Option<usize>| index.and_then(|i| fields.get(i)).copied().filter(|f| !f.is_empty());
        if label.is_some()
            && !at(label)
                .is_some_and(|l| matches!(l.to_ascii_lowercase().as_str(), "1" | "1.0" | "true" | "yes" | "fraud"))
        {
            continue;
        }
        for (name, index) in
            [("payment_id", payment), ("payer_account_id", payer), ("payee_account_id", payee), ("device_id", device)]
        {
            if let Some(text) = at(index)
                && text.parse::<u128>().is_err()
            {
                bail!("{} row {row}, column {name}: {text:?} is not an id; nothing was recorded", file.display());
            }
        }
        let item = match at(payment) {
            Some(id) => json!({"payment_id": id}),
            None => {
                let (Some(payer), Some(payee)) = (at(payer), at(payee)) else {
                    bail!("{} row {row}: neither a payment_id nor both accounts; nothing was recorded", file.display());
                };
                match at(device) {
                    Some(device) => json!({"payer_account_id": payer, "payee_account_id": payee, "device_id": device}),
                    None => json!({"payer_account_id": payer, "payee_account_id": payee}),
                }
            }
        };
        items.push(item);
    }
    let api = Api::new(connection)?;
    let bar = crate::out::bar(items.len() as u64, "recording labels");
    let mut recorded = 0usize;
    for chunk in items.chunks(1_000) {
        let body = json!({"labels": chunk, "source": "import"});
        let answer = runtime()?.block_on(api.expect(reqwest::Method::POST, "/v1/risk/labels", Some(&body)))?;
        recorded += answer.as_array().map_or(0, Vec::len);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let skipped = items.len().saturating_sub(recorded);
    crate::outln!(
        "recorded {recorded} labels from {} ({skipped} payments labelled already); the risk features count them from now on",
        file.display()
    );
    Ok(())
}

/// Writes decided reviews as training labels (CSV).
fn export_labels(out: &PathBuf, connection: &Connection) -> anyhow::Result<()> {
    let api = Api::new(connection)?;
    let csv = runtime()?.block_on(api.expect(reqwest::Method::GET, "/v1/risk/labels", None))?;
    let Value::String(text) = csv else { bail!("the server answered JSON where CSV was expected") };
    std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
    let rows = text.lines().count().saturating_sub(1);
    crate::outln!("wrote {rows} labelled reviews to {}", out.display());
    crate::outln!(
        "train with: obol risk train --data {} --map time=time_s,label=label --features rest --out model.json",
        out.display()
    );
    Ok(())
}

/// Runs a policy command.
pub fn policy(command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Show { connection } => {
            let api = Api::new(&connection)?;
            print(&runtime()?.block_on(api.expect(reqwest::Method::GET, "/v1/risk/policy", None))?);
        }
        PolicyCommand::Submit { file, shadow, connection } => {
            let api = Api::new(&connection)?;
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let path = format!("/v1/risk/policy?shadow={shadow}");
            let change =
                runtime()?.block_on(api.expect_text(reqwest::Method::POST, &path, text, "application/toml"))?;
            crate::outln!(
                "{} {} (change {})",
                str_at(&change, "what").unwrap_or("?"),
                str_at(&change, "bundle").unwrap_or("?"),
                change.get("seq").unwrap_or(&Value::Null)
            );
            print!("{}", str_at(&change, "diff").unwrap_or(""));
        }
        PolicyCommand::Changes { after, connection } => {
            let api = Api::new(&connection)?;
            let path = format!("/v1/risk/policy/changes?after={after}");
            let changes = runtime()?.block_on(api.expect(reqwest::Method::GET, &path, None))?;
            for change in changes.as_array().cloned().unwrap_or_default() {
                let at_s = str_at(&change, "at_ns").and_then(|n| n.parse::<u64>().ok()).unwrap_or(0) / 1_000_000_000;
                crate::outln!(
                    "#{} at {} s by {}: {} {}{}",
                    change.get("seq").unwrap_or(&Value::Null),
                    at_s,
                    str_at(&change, "who").unwrap_or("?"),
                    str_at(&change, "what").unwrap_or("?"),
                    str_at(&change, "bundle").unwrap_or("?"),
                    str_at(&change, "error").map(|e| format!(" ({e})")).unwrap_or_default()
                );
                for line in str_at(&change, "diff").unwrap_or("").lines().filter(|l| !l.starts_with(' ')) {
                    crate::outln!("    {line}");
                }
            }
        }
        PolicyCommand::Shadow { stop, connection } => {
            let api = Api::new(&connection)?;
            let method = if stop { reqwest::Method::DELETE } else { reqwest::Method::GET };
            print(&runtime()?.block_on(api.expect(method, "/v1/risk/shadow", None))?);
        }
    }
    Ok(())
}

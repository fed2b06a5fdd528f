//! What the client commands print: the API's JSON for scripts, or for a person tables and
//! sentences with decimal amounts and their asset, RFC 3339 times and labelled fields. Writing
//! to a closed pipe (`obol ... | head`) ends the command quietly instead of panicking.

use std::io::Write;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::profile::Output;

static MODE: OnceLock<Output> = OnceLock::new();

/// Chooses how results print (the first choice of the process stands).
pub fn set_mode(output: Output) {
    let _ = MODE.set(output);
}

fn mode() -> Output {
    MODE.get().copied().unwrap_or(Output::Json)
}

/// Whether results print as JSON (scripts) rather than for a person.
pub fn is_json() -> bool {
    mode() == Output::Json
}

/// Process exit codes of the client commands (documented in `obol --help`).
pub mod exit {
    /// The command did what it was asked.
    pub const OK: u8 = 0;
    /// The server refused the request, or the command failed locally; the error says why.
    pub const FAILED: u8 = 1;
    // 2: the command line was wrong (clap exits with it before a command runs).
    /// The server could not be reached (network, TLS, no server at that address).
    pub const UNREACHABLE: u8 = 3;
    /// A second factor must approve the request: approve the challenge and send it again.
    pub const NEEDS_APPROVAL: u8 = 4;
}

/// The server could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

/// The request waits for a second factor.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NeedsApproval(pub String);

/// A spinner on standard error for a long step that reports no progress of its own (it shows
/// only on a terminal); `finish_and_clear` it when the step is done.
pub fn spinner(message: String) -> indicatif::ProgressBar {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    spinner.set_message(message);
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    spinner
}

/// A progress bar on standard error for `len` steps (it shows only on a terminal);
/// `finish_and_clear` it when the work is done.
pub fn bar(len: u64, message: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(message.to_string());
    bar
}

/// A progress bar on standard error over `len` bytes of input (it shows only on a terminal).
pub fn bytes_bar(len: u64, message: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} ({elapsed}, {eta} left)")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(message.to_string());
    bar
}

/// Writes one line to standard output; a closed pipe ends the process with success.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush());
    if let Err(error) = written {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(i32::from(exit::OK));
        }
        eprintln!("error: writing to standard output: {error}");
        std::process::exit(i32::from(exit::FAILED));
    }
}

/// `println!` that survives a closed pipe.
#[macro_export]
macro_rules! outln {
    () => { $crate::out::line(format_args!("")) };
    ($($arg:tt)*) => { $crate::out::line(format_args!($($arg)*)) };
}

/// Prints an API answer as chosen: JSON, or for a person.
pub fn show(value: &Value) {
    match mode() {
        Output::Json => {
            line(format_args!("{}", serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())))
        }
        Output::Human => line(format_args!("{}", human(value))),
    }
}

/// Fields that hold an amount in minor units of the object's asset.
const AMOUNT_FIELDS: &[&str] = &[
    "amount",
    "available",
    "balance",
    "budget",
    "credits_pending",
    "credits_posted",
    "cumulative",
    "debits_pending",
    "debits_posted",
    "escrow",
    "net_posted",
    "owed",
    "paid",
    "refund",
    "remaining",
    "limit",
    "per_payment_max",
    "per_day_max",
    "spent_today",
    "monthly_limit",
    "spent_this_month",
];

/// A person's rendering of an API answer.
pub fn human(value: &Value) -> String {
    if let Value::Object(map) = value
        && let Some(Value::Array(items)) = map.get("items")
    {
        // A page of a list: the entries (a transfer list's rows show the transfer), then how to
        // go on.
        let rows: Vec<Value> = items
            .iter()
            .map(|item| match item.get("transfer") {
                Some(Value::Object(transfer)) => Value::Object(transfer.clone()),
                _ => item.clone(),
            })
            .collect();
        let mut text = if rows.is_empty() { "(none)".to_string() } else { table(&rows, None) };
        if let Some(next) = map.get("next").and_then(Value::as_str) {
            text.push_str(&format!("\nmore: rerun with --after {next} (or --all)"));
        }
        return text;
    }
    match value {
        Value::Object(map) => object_lines(map, None, 0),
        Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => table(items, None),
        Value::Array(items) if items.is_empty() => "(none)".to_string(),
        other => scalar(other, "", None),
    }
}

/// The asset an object's amounts are in: `asset_code`/`asset_scale`, or an `asset` object or
/// `CODE/SCALE` text.
pub(crate) fn asset_of(map: &Map<String, Value>) -> Option<(String, u8)> {
    if let (Some(code), Some(scale)) = (map.get("asset_code").and_then(Value::as_str), map.get("asset_scale")) {
        let scale = scale.as_u64().or_else(|| scale.as_str().and_then(|s| s.parse().ok()))?;
        return Some((code.to_string(), u8::try_from(scale).ok()?));
    }
    match map.get("asset") {
        Some(Value::Object(asset)) => asset_object(asset),
        Some(Value::String(text)) => {
            let (code, scale) = text.split_once('/')?;
            Some((code.to_string(), scale.parse().ok()?))
        }
        _ => None,
    }
}

/// An `{code, scale}` object.
fn asset_object(asset: &Map<String, Value>) -> Option<(String, u8)> {
    let code = asset.get("code").and_then(Value::as_str)?;
    let scale = asset.get("scale").and_then(Value::as_u64)?;
    Some((code.to_string(), u8::try_from(scale).ok()?))
}

fn label(key: &str) -> String {
    let key = key.strip_suffix("_ns").unwrap_or(key);
    key.replace('_', " ")
}

fn object_lines(map: &Map<String, Value>, inherited: Option<&(String, u8)>, indent: usize) -> String {
    let own = asset_of(map);
    let asset = own.as_ref().or(inherited);
    let width = map.keys().map(|k| label(k).len()).max().unwrap_or(0);
    let pad = " ".repeat(indent);
    let mut lines = Vec::new();
    for (key, value) in map {
        if own.is_some() && (key == "asset_scale") {
            continue;
        }
        let name = label(key);
        match value {
            Value::Object(inner) if !inner.is_empty() && asset_of(inner).is_none() && key != "asset" => {
                lines.push(format!("{pad}{name}:"));
                lines.push(object_lines(inner, asset, indent + 2));
            }
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
                lines.push(format!("{pad}{name}:"));
                let rendered = table(items, asset);
                lines.extend(rendered.lines().map(|l| format!("{pad}  {l}")));
            }
            other => {
                let text = if key == "asset_code" {
                    match &own {
                        Some((code, scale)) => format!("{code} (scale {scale})"),
                        None => scalar(other, key, asset),
                    }
                } else {
                    scalar(other, key, asset)
                };
                lines.push(format!("{pad}{name:<width$}  {text}"));
            }
        }
    }
    lines.join("\n")
}

fn table(items: &[Value], inherited: Option<&(String, u8)>) -> String {
    let mut columns: Vec<String> = Vec::new();
    for item in items {
        if let Value::Object(map) = item {
            for key in map.keys() {
                if key != "asset_scale" && !columns.contains(key) {
                    columns.push(key.clone());
                }
            }
        }
    }
    if let Some(position) = columns.iter().position(|c| c == "id") {
        let id = columns.remove(position);
        columns.insert(0, id);
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            let empty = Map::new();
            let map = item.as_object().unwrap_or(&empty);
            let own = asset_of(map);
            let asset = own.as_ref().or(inherited);
            columns
                .iter()
                .map(|key| match map.get(key) {
                    None => "-".to_string(),
                    Some(Value::Object(inner)) if key == "asset" => asset_object(inner)
                        .map_or_else(|| Value::Object(inner.clone()).to_string(), |(c, s)| format!("{c}/{s}")),
                    Some(Value::Object(inner)) => Value::Object(inner.clone()).to_string(),
                    Some(value) => scalar(value, key, asset),
                })
                .collect()
        })
        .collect();
    let headers: Vec<String> = columns.iter().map(|c| label(c).to_uppercase()).collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .chain(headers.get(i).map(String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let render = |cells: &[String]| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![render(&headers)];
    out.extend(rows.iter().map(|row| render(row)));
    out.push(format!("({} {})", items.len(), if items.len() == 1 { "row" } else { "rows" }));
    out.join("\n")
}

fn as_u128(value: &Value) -> Option<u128> {
    match value {
        Value::String(text) => text.parse().ok(),
        Value::Number(number) => number.as_u64().map(u128::from),
        _ => None,
    }
}

fn scalar(value: &Value, key: &str, asset: Option<&(String, u8)>) -> String {
    if (key.ends_with("_ns") || key == "timestamp" || key == "created" || key == "expires")
        && let Some(ns) = as_u128(value)
    {
        return if ns == 0 { "-".to_string() } else { rfc3339(ns) };
    }
    if AMOUNT_FIELDS.contains(&key)
        && let (Some(units), Some((code, scale))) = (as_u128(value), asset)
    {
        return format!("{} {code}", decimal(units, *scale));
    }
    match value {
        Value::Null => "-".to_string(),
        Value::String(text) if text.is_empty() => "-".to_string(),
        // Text from the server is shown, never obeyed: control and direction characters print
        // escaped, so a stored name cannot move the cursor or forge lines on a terminal.
        Value::String(text) => text
            .chars()
            .map(|c| if obol_app::unsafe_char(c) { c.escape_unicode().to_string() } else { c.to_string() })
            .collect(),
        Value::Bool(true) => "yes".to_string(),
        Value::Bool(false) => "no".to_string(),
        Value::Number(number) => number.to_string(),
        Value::Array(items) if items.is_empty() => "-".to_string(),
        Value::Array(items) => items.iter().map(|item| scalar(item, "", asset)).collect::<Vec<_>>().join(", "),
        Value::Object(_) => value.to_string(),
    }
}

/// `units` at `scale` as a decimal: 1234 at scale 2 is "12.34"; trailing zeros past the
/// second decimal are dropped (1000 at scale 9 is "0.000001").
pub fn decimal(units: u128, scale: u8) -> String {
    if scale == 0 {
        return units.to_string();
    }
    let digits = format!("{units:0>width$}", width = usize::from(scale) + 1);
    let (whole, fraction) = digits.split_at(digits.len() - usize::from(scale));
    let keep = usize::from(scale.min(2));
    let trimmed = fraction.trim_end_matches('0');
    let fraction = if trimmed.len() < keep { &fraction[..keep] } else { trimmed };
    if fraction.is_empty() { whole.to_string() } else { format!("{whole}.{fraction}") }
}

pub use obol_core::time::{parse_time, rfc3339};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_print_as_decimals_with_their_asset() {
        assert_eq!(decimal(1234, 2), "12.34");
        assert_eq!(decimal(5, 2), "0.05");
        assert_eq!(decimal(1000, 9), "0.000001");
        assert_eq!(decimal(1_000_000_000, 9), "1.00");
        assert_eq!(decimal(7, 0), "7");
        assert_eq!(decimal(u128::MAX, 38), "3.40282366920938463463374607431768211455");
        let text = human(&json!({"id": "1", "asset_code": "USD", "asset_scale": 9, "credits_posted": "1000"}));
        assert!(text.contains("credits posted  0.000001 USD"), "{text}");
        assert!(text.contains("USD (scale 9)"), "{text}");
    }

    #[test]
    fn times_print_in_rfc_3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123_000_000), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_796_534_377_882_022_373), "2026-12-06T05:19:37.882Z");
        let text = human(&json!({"created_ns": "951782400000000000"}));
        assert_eq!(text, "created  2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn times_are_read_as_rfc_3339_or_ns() {
        assert_eq!(parse_time("0"), Some(0));
        assert_eq!(parse_time("2000-02-29T00:00:00.123Z"), Some(951_782_400_123_000_000));
        assert_eq!(parse_time("2000-02-29T02:00:00+02:00"), Some(951_782_400_000_000_000));
        assert_eq!(parse_time("2026-12-06T05:19:37.882022373Z"), Some(1_796_534_377_882_022_373));
        for ns in [0u64, 951_782_400_123_000_000, 1_796_534_377_882_000_000] {
            assert_eq!(parse_time(&rfc3339(u128::from(ns))), Some(ns));
        }
        for bad in
            ["yesterday", "2026-13-01T00:00:00Z", "2026-12-06", "2026-12-06T05:19:37", "1969-12-31T23:59:59Z", "-5"]
        {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn lists_print_as_tables_with_a_count() {
        let text = human(&json!([
            {"id": "1", "asset_code": "EUR", "asset_scale": 2, "amount": "150"},
            {"id": "2", "asset_code": "EUR", "asset_scale": 2, "amount": "5"}
        ]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.first().copied(), Some("ID  AMOUNT    ASSET CODE"));
        assert!(lines.iter().any(|l| l.contains("1.50 EUR")), "{text}");
        assert_eq!(lines.last().copied(), Some("(2 rows)"));
    }
}

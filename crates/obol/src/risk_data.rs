//! Labelled payment data for `obol risk train`, `eval`, `score` and `features`: a CSV read
//! through a column mapping into compact rows in time order, and replayed through the server's
//! own streaming features whenever a command needs them. A row's features are never all held at
//! once: 1.75M rows of 60 features would be 840 MB as 64-bit floats, while a compact row is 56
//! bytes and a replay costs about a microsecond a row.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use obol_risk::features::{Event, FEATURE_NAMES, Label, Replay};

/// How to read the data.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// The CSV (a header row, then one row per payment).
    #[arg(long)]
    pub data: PathBuf,
    /// Columns, as role=column pairs. Required: time (seconds since the Unix epoch, or an
    /// RFC 3339 / ISO date or date-time, UTC unless it says otherwise) and label (1, true or
    /// fraud). For obol's streaming features: amount, entity (the payer; `payer` works too),
    /// device, payee (`terminal` and `merchant` work too) and network. Optional: label_time (when
    /// each label became known; default: the payment's time plus --label-delay-days) and kind
    /// (the fraud kind, for a breakdown by kind).
    #[arg(long)]
    pub map: String,
    /// Extra numeric columns used as features as they are: a comma list, or `rest` for every
    /// column not named in --map; `rest,-COL,-COL` leaves columns out of the rest.
    #[arg(long, default_value = "")]
    pub features: String,
    /// Digits after the decimal point in the amount column's unit (2 for dollars with cents).
    #[arg(long, default_value_t = 0)]
    pub amount_scale: u32,
    /// Round amounts with more digits than --amount-scale to the nearest unit instead of
    /// refusing them.
    #[arg(long)]
    pub amount_round: bool,
    /// Share of rows, first by time, used for training (default 0.7; `eval` defaults to the
    /// model's own split).
    #[arg(long, conflicts_with = "train_until")]
    pub split: Option<f64>,
    /// Train on rows before this date or time (RFC 3339 or YYYY-MM-DD, UTC); later rows measure.
    #[arg(long)]
    pub train_until: Option<String>,
    /// Days between a fraud and its label becoming known, when no label_time column is mapped:
    /// a label counts in the features only from then on, as it would have live.
    #[arg(long, default_value_t = 7.0)]
    pub label_delay_days: f64,
}

/// Splits one CSV line, honouring double quotes.
pub fn split_csv(line: &str) -> Vec<String> {
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
pub fn minor_units(text: &str, scale: u32) -> Option<u128> {
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
pub fn seconds_of(text: &str) -> Option<f64> {
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

const ROLES: [&str; 13] = [
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
    "id",
];

/// One payment, compact until replayed: parties are places in [`Source::ids`] (0: none).
#[derive(Clone, Copy, Debug)]
pub struct Row {
    /// When, ns since the Unix epoch (times before it read as 0).
    pub time_ns: u64,
    /// When its fraud label became known, ns (only for fraud rows).
    pub label_known_ns: u64,
    /// The amount in ISO minor units.
    pub amount_iso_minor: u64,
    /// Its line in the CSV (the header is line 1).
    pub line: u32,
    /// Its place among the rows as read (for the extra feature columns and ids).
    pub read_at: u32,
    pub payer: u32,
    pub payee: u32,
    pub device: u32,
    pub network: u32,
    /// The fraud kind, a place in [`Source::kinds`] (`u16::MAX`: none given).
    pub kind: u16,
    pub fraud: bool,
}

const _: () = assert!(std::mem::size_of::<Row>() <= 56);

impl Row {
    /// Whole seconds since the Unix epoch.
    pub fn time_s(&self) -> u64 {
        self.time_ns / 1_000_000_000
    }
}

/// A labelled CSV read through a column mapping: compact rows in time order.
pub struct Source {
    /// Feature names: obol's streaming features (or the amount alone), then the extra columns.
    pub names: Vec<String>,
    streaming: bool,
    amount_feature: bool,
    /// Rows in time order (rows at the same time keep the file's order).
    pub rows: Vec<Row>,
    /// Every party id met, by place (place 0 is "none").
    ids: Vec<u128>,
    /// The extra feature columns, `extra_count` values per row in reading order.
    extra: Vec<f64>,
    extra_count: usize,
    /// The `id` column's value of each row in reading order, when one is mapped.
    pub row_ids: Vec<u128>,
    /// Fraud kind names.
    pub kinds: Vec<String>,
}

/// What a replay left behind.
pub struct Replayed {
    /// Labels still waiting for their known time when the rows ran out.
    pub labels_pending: usize,
}

impl Source {
    /// Features per row.
    pub fn width(&self) -> usize {
        self.names.len()
    }

    fn id(&self, place: u32) -> u128 {
        self.ids.get(place as usize).copied().unwrap_or(0)
    }

    /// The first row at or after `from_s`.
    pub fn first_at(&self, from_s: u64) -> usize {
        self.rows.partition_point(|row| row.time_s() < from_s)
    }

    /// Replays the rows in time order through obol's streaming features, as the server would have
    /// computed them live (each label counted from when it became known), and hands `visit` each
    /// row's place, the row and its features (then the extra columns). Stops when `visit`
    /// answers false. A progress bar says `message`.
    pub fn replay(&self, message: &str, mut visit: impl FnMut(usize, &Row, &[f64]) -> bool) -> Replayed {
        let bar = crate::out::bar(self.rows.len() as u64, message);
        let mut replay = Replay::with_capacity(obol_risk::features::DEFAULT_CAPACITY);
        let mut features = vec![0.0; self.width()];
        let own = if self.streaming { FEATURE_NAMES.len() } else { usize::from(self.amount_feature) };
        for (index, row) in self.rows.iter().enumerate() {
            let event = Event {
                at_s: row.time_s(),
                payer: self.id(row.payer),
                device: (row.device != 0).then(|| self.id(row.device)),
                payee: self.id(row.payee),
                network: (row.network != 0).then(|| self.id(row.network) as u64),
                amount_iso_minor: u128::from(row.amount_iso_minor),
                ..Event::default()
            };
            if self.streaming {
                let computed = replay.observe_at(&event, u128::from(row.time_ns));
                if let Some(slot) = features.get_mut(..FEATURE_NAMES.len()) {
                    slot.copy_from_slice(&computed.0);
                }
                if row.fraud {
                    let known_ns = row.label_known_ns.max(row.time_ns);
                    replay.label_at(Label::of(&event, known_ns / 1_000_000_000), u128::from(known_ns));
                }
            } else if let (true, Some(slot)) = (self.amount_feature, features.first_mut()) {
                *slot = row.amount_iso_minor as f64;
            }
            let at = row.read_at as usize * self.extra_count;
            if let (Some(slot), Some(values)) = (features.get_mut(own..), self.extra.get(at..at + self.extra_count)) {
                slot.copy_from_slice(values);
            }
            if index % 4096 == 0 {
                bar.set_position(index as u64);
            }
            if !visit(index, row, &features) {
                break;
            }
        }
        bar.finish_and_clear();
        Replayed { labels_pending: replay.pending() }
    }

    /// Where the held-out part starts: rows at or after this time measure, earlier ones train.
    pub fn held_out_from(&self, args: &DataArgs) -> anyhow::Result<Option<u64>> {
        if let Some(until) = &args.train_until {
            let at = seconds_of(until)
                .ok_or_else(|| anyhow!("--train-until {until:?}: not a date (YYYY-MM-DD) or an RFC 3339 time"))?;
            return Ok(Some(at.max(0.0).ceil() as u64));
        }
        let Some(fraction) = args.split else { return Ok(None) };
        if !(0.05..=0.95).contains(&fraction) {
            bail!("--split must be between 0.05 and 0.95");
        }
        let index = (self.rows.len() as f64 * fraction) as usize;
        Ok(self.rows.get(index).map(Row::time_s))
    }
}

/// Interns party ids: the same id always gets the same place.
#[derive(Default)]
struct Ids {
    places: HashMap<u128, u32>,
    ids: Vec<u128>,
}

impl Ids {
    fn place(&mut self, id: u128) -> anyhow::Result<u32> {
        if id == 0 {
            return Ok(0);
        }
        if self.ids.is_empty() {
            self.ids.push(0);
        }
        if let Some(place) = self.places.get(&id) {
            return Ok(*place);
        }
        let place = u32::try_from(self.ids.len()).map_err(|_| anyhow!("more than 4 billion distinct parties"))?;
        self.ids.push(id);
        self.places.insert(id, place);
        Ok(place)
    }
}

/// Reads the CSV through the mapping. `label_required`: whether a label column must be mapped
/// (scoring unlabelled data does without).
pub fn load(args: &DataArgs, label_required: bool) -> anyhow::Result<Source> {
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
    let label_column = roles.get("label").copied();
    if label_required && label_column.is_none() {
        bail!("--map needs label=<column>");
    }
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
    let amount_feature = !streaming && roles.contains_key("amount");
    let mut names: Vec<String> = Vec::new();
    if streaming {
        names.extend(FEATURE_NAMES.iter().map(|s| s.to_string()));
    } else if amount_feature {
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
    let delay_ns = (args.label_delay_days * 86_400e9) as u64;
    let column_name = |role: &str| roles.get(role).and_then(|i| header.get(*i)).map_or("?", String::as_str);
    let bar = crate::out::bytes_bar(size, "reading");
    let mut source = Source {
        names,
        streaming,
        amount_feature,
        rows: Vec::new(),
        ids: Vec::new(),
        extra: Vec::new(),
        extra_count: passthrough.len(),
        row_ids: Vec::new(),
        kinds: Vec::new(),
    };
    let mut ids = Ids::default();
    let mut line_number = 1usize;
    loop {
        line.clear();
        let read = reader.read_line(&mut line)?;
        if read == 0 {
            break;
        }
        bar.inc(read as u64);
        line_number += 1;
        let text = line.trim_end_matches(['\n', '\r']);
        if text.trim().is_empty() {
            continue;
        }
        let fields = split_csv(text);
        if fields.len() != header.len() {
            bail!("row {line_number}: {} fields, the header has {}", fields.len(), header.len());
        }
        let field = |role: &str| roles.get(role).and_then(|i| fields.get(*i)).map(String::as_str);
        let time_text = fields.get(time_column).map_or("", String::as_str);
        let time_ns = ns_of(time_text).ok_or_else(|| {
            anyhow!(
                "row {line_number}, column {}: {time_text:?} is not a time (seconds since the Unix epoch, or a date \
                 like 2018-04-01 or 2018-04-01T00:00:31Z)",
                column_name("time")
            )
        })?;
        let time_ns = u64::try_from(time_ns.max(0))
            .map_err(|_| anyhow!("row {line_number}, column {}: {time_text:?} is after 2262", column_name("time")))?;
        let label = label_column.and_then(|c| fields.get(c)).map_or("", String::as_str).trim().trim_matches('"');
        let fraud = match label.to_ascii_lowercase().as_str() {
            "1" | "1.0" | "true" | "fraud" | "yes" => true,
            "0" | "0.0" | "false" | "" | "no" | "legit" | "genuine" => false,
            other => {
                bail!("row {line_number}, column {}: {other:?} is not a label (1/0, true/false)", column_name("label"))
            }
        };
        let amount_iso_minor = match field("amount") {
            Some(text) => amount_of(text, args.amount_scale, args.amount_round)
                .and_then(|a| u64::try_from(a).ok())
                .ok_or_else(|| {
                    anyhow!(
                        "row {line_number}, column {}: {text:?} is not an amount with at most {} digits after the \
                         point (--amount-scale; --amount-round rounds), below 2^64 units",
                        column_name("amount"),
                        args.amount_scale
                    )
                })?,
            None => 0,
        };
        let label_known_ns = match field("label_time").map(str::trim).filter(|t| !t.is_empty()) {
            Some(text) => Some(ns_of(text).ok_or_else(|| {
                anyhow!("row {line_number}, column {}: {text:?} is not a time", column_name("label_time"))
            })?),
            None => None,
        };
        let label_known_ns = match label_known_ns {
            Some(ns) => u64::try_from(ns.max(0)).unwrap_or(u64::MAX),
            None => time_ns.saturating_add(delay_ns),
        };
        let kind = match field("kind").map(|k| k.trim().trim_matches('"')).filter(|k| !k.is_empty()) {
            None => u16::MAX,
            Some(name) => match source.kinds.iter().position(|k| k == name) {
                Some(at) => at as u16,
                None if source.kinds.len() < 1_000 => {
                    source.kinds.push(name.to_string());
                    (source.kinds.len() - 1) as u16
                }
                None => bail!("row {line_number}, column {}: more than 1,000 fraud kinds", column_name("kind")),
            },
        };
        let mut party = |role: &str| -> anyhow::Result<u32> {
            match field(role) {
                Some(text) => ids.place(id_of(text, column_name(role), line_number)?),
                None => Ok(0),
            }
        };
        let (payer, payee, device, network) = if streaming {
            (party("entity")?, party("payee")?, party("device")?, party("network")?)
        } else {
            (0, 0, 0, 0)
        };
        if let Some(text) = field("id") {
            source.row_ids.push(id_of(text, column_name("id"), line_number)?);
        }
        for index in &passthrough {
            let (Some(name), Some(text)) = (header.get(*index), fields.get(*index)) else {
                bail!("a feature column lies past the row");
            };
            let text = text.trim();
            source.extra.push(
                text.parse::<f64>()
                    .map_err(|_| anyhow!("row {line_number}, column {name}: {text:?} is not a number"))?,
            );
        }
        let too_many = || anyhow!("more than 4 billion rows");
        source.rows.push(Row {
            time_ns,
            label_known_ns,
            amount_iso_minor,
            line: u32::try_from(line_number).map_err(|_| too_many())?,
            read_at: u32::try_from(source.rows.len()).map_err(|_| too_many())?,
            payer,
            payee,
            device,
            network,
            kind: if fraud { kind } else { u16::MAX },
            fraud,
        });
    }
    bar.finish_and_clear();
    // Stable: rows with the same time keep their order.
    source.rows.sort_by_key(|row| row.time_ns);
    source.rows.shrink_to_fit();
    source.extra.shrink_to_fit();
    source.ids = ids.ids;
    Ok(source)
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

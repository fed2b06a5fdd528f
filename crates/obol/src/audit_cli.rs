//! `obol audit checkpoint|key|proof|export|verify`: read a running server's audit log, save it
//! to a file, and check such a file offline, with no access to the server.
//!
//! An export is JSON lines: a header (`{"export","origin","verifier_key","size"}`), then every
//! entry (`{"index","leaf","entry"}`, the entry exactly as its leaf hashes it), with a signed
//! checkpoint line (`{"checkpoint"}`) after every 256th entry and after the last. `verify`
//! rebuilds the RFC 9162 tree from the entries and checks every checkpoint's signature and root,
//! so an edit, a deletion, an insertion, a reordering or a truncation is named, as is a
//! checkpoint of another history (a fork) given with `--checkpoint`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64ct::{Base64, Encoding};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use obol_core::audit::{Checkpoint, hex, parse_verifier_key};
use obol_core::merkle::{Tree, leaf_hash, verify_inclusion};
use serde::Deserialize;
use serde_json::Value;

use crate::client::{Api, Connection, runtime};

use obol_app::audit::{EXPORT_FORMAT, EXPORT_PAGE_ENTRIES_MAX as PAGE_ENTRIES};

/// `obol audit ...`
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Print the log's signed checkpoint (a C2SP signed note: origin, size, root, signature).
    ///
    /// Example: obol audit checkpoint > checkpoint-$(date +%F).txt
    Checkpoint {
        /// Sign the head of this earlier size instead of the whole log.
        #[arg(long)]
        size: Option<u64>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Print the key checkpoints verify under (`origin+hash+key`): pin it once, out of band.
    Key {
        #[command(flatten)]
        connection: Connection,
    },
    /// Fetch entry INDEX with its inclusion proof, and check the proof against a fresh signed
    /// checkpoint here (operator and auditors).
    ///
    /// Example: obol audit proof 41 --key "$(cat audit-key.txt)"
    Proof {
        /// 0-based entry index (entry i is record i+1).
        index: u64,
        /// The verifier key to check the checkpoint with (default: the one the server names).
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Save the whole audit log, with signed checkpoints, to a file `obol audit verify` checks
    /// offline (operator and auditors).
    ///
    /// Example: obol audit export --out audit.jsonl
    Export {
        /// Where to write the export.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        connection: Connection,
    },
    /// Check an export offline: every entry against its leaf, the tree against every signed
    /// checkpoint, and any checkpoints you saved earlier against the same history. Exits 1
    /// naming each entry that was altered, removed, added or moved.
    ///
    /// Example: obol audit verify audit.jsonl --key "$(cat audit-key.txt)" --checkpoint checkpoint-2026-12-01.txt
    Verify {
        /// The export file.
        file: PathBuf,
        /// The verifier key to trust (default: the one the file names, which proves only that
        /// the file is consistent with itself).
        #[arg(long)]
        key: Option<String>,
        /// A signed checkpoint saved earlier (`obol audit checkpoint`); the export must hold the
        /// same history up to its size. Repeat for several.
        #[arg(long = "checkpoint")]
        checkpoints: Vec<PathBuf>,
    },
}

/// Runs an audit command.
pub fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Checkpoint { size, connection } => {
            let api = Api::new(&connection)?;
            let path = match size {
                Some(size) => format!("/v1/audit/checkpoint?size={size}"),
                None => "/v1/audit/checkpoint".to_string(),
            };
            print!("{}", runtime()?.block_on(api.expect_raw(&path))?);
            Ok(())
        }
        AuditCommand::Key { connection } => {
            let api = Api::new(&connection)?;
            print!("{}", runtime()?.block_on(api.expect_raw("/v1/audit/key"))?);
            Ok(())
        }
        AuditCommand::Proof { index, key, connection } => proof(index, key.as_deref(), &connection),
        AuditCommand::Export { out, connection } => export(&out, &connection),
        AuditCommand::Verify { file, key, checkpoints } => {
            let report = verify(&file, key.as_deref(), &checkpoints)?;
            if let Some(warning) = &report.warning {
                eprintln!("warning: {warning}");
            }
            if report.problems.is_empty() {
                crate::outln!(
                    "ok: {} entries, {} signed checkpoints by {}; root at size {}: {}",
                    report.entries,
                    report.checkpoints,
                    report.origin,
                    report.entries,
                    report.root
                );
                return Ok(());
            }
            for problem in &report.problems {
                eprintln!("{problem}");
            }
            bail!("the audit export {} does not verify: {} problems", file.display(), report.problems.len())
        }
    }
}

fn proof(index: u64, key: Option<&str>, connection: &Connection) -> anyhow::Result<()> {
    let api = Api::new(connection)?;
    let runtime = runtime()?;
    let key_text = match key {
        Some(key) => key.to_string(),
        None => runtime.block_on(api.expect_raw("/v1/audit/key"))?,
    };
    let (name, verifying_key) = parse_verifier_key(&key_text)?;
    let note = runtime.block_on(api.expect_raw("/v1/audit/checkpoint"))?;
    let checkpoint = Checkpoint::open(&note, &name, &verifying_key)?;
    let entry_text = runtime.block_on(api.expect_raw(&format!("/v1/audit/entries/{index}")))?;
    #[derive(Deserialize)]
    struct Fetched<'a> {
        #[serde(borrow)]
        entry: &'a serde_json::value::RawValue,
    }
    let fetched: Fetched<'_> = serde_json::from_str(&entry_text).context("the server's entry is not JSON")?;
    let entry: Value = serde_json::from_str(fetched.entry.get())?;
    let path = format!("/v1/audit/entries/{index}/proof?size={}", checkpoint.size);
    let proof = runtime.block_on(api.expect(reqwest::Method::GET, &path, None))?;
    let hashes: Vec<[u8; 32]> = proof
        .get("path")
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(|h| decode_hash(h.as_str()?)).collect())
        .unwrap_or_default();
    let leaf = leaf_hash(fetched.entry.get().as_bytes());
    let verified = verify_inclusion(&leaf, index, checkpoint.size, &hashes, &checkpoint.root);
    crate::out::show(&serde_json::json!({
        "index": index,
        "entry": entry,
        "checkpoint_size": checkpoint.size,
        "path": proof.get("path"),
        "verified": verified,
    }));
    if !verified {
        bail!("entry {index}'s inclusion proof does not lead to the signed checkpoint of size {}", checkpoint.size);
    }
    Ok(())
}

fn decode_hash(text: &str) -> Option<[u8; 32]> {
    Base64::decode_vec(text).ok()?.try_into().ok()
}

fn export(out: &Path, connection: &Connection) -> anyhow::Result<()> {
    let api = Api::new(connection)?;
    let runtime = runtime()?;
    let key_text = runtime.block_on(api.expect_raw("/v1/audit/key"))?;
    let (origin, _) = parse_verifier_key(&key_text)?;
    // The size is fixed at the start: entries committed while exporting wait for the next export.
    let note = runtime.block_on(api.expect_raw("/v1/audit/checkpoint"))?;
    let size: u64 = note
        .lines()
        .nth(1)
        .and_then(|line| line.parse().ok())
        .with_context(|| format!("the server's checkpoint has no size:\n{note}"))?;
    // Written beside `out` and renamed over it only when complete: a failed export never
    // replaces a good one.
    let partial = out.with_file_name(format!(
        ".{}.partial",
        out.file_name().map_or_else(|| "audit-export".into(), |name| name.to_string_lossy().into_owned())
    ));
    let file = std::fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let written = write_export(&api, &runtime, file, &origin, &key_text, size);
    if let Err(error) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    std::fs::rename(&partial, out).with_context(|| format!("renaming {} to {}", partial.display(), out.display()))?;
    crate::outln!("wrote {size} audit entries to {}", out.display());
    crate::outln!("check it offline with: obol audit verify {} --key '{}'", out.display(), key_text.trim());
    Ok(())
}

fn write_export(
    api: &Api,
    runtime: &tokio::runtime::Runtime,
    file: std::fs::File,
    origin: &str,
    key_text: &str,
    size: u64,
) -> anyhow::Result<()> {
    let mut writer = std::io::BufWriter::new(file);
    let header =
        serde_json::json!({ "export": EXPORT_FORMAT, "origin": origin, "verifier_key": key_text.trim(), "size": size });
    writeln!(writer, "{header}")?;
    let progress = ProgressBar::new(size);
    progress.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} entries {eta}")?);
    let mut from = 0u64;
    while from < size {
        let to = (from + PAGE_ENTRIES).min(size);
        let page = runtime.block_on(api.expect_raw(&format!("/v1/audit/export?from={from}&to={to}")))?;
        writer.write_all(page.as_bytes())?;
        progress.set_position(to);
        from = to;
    }
    if size == 0 {
        let page = runtime.block_on(api.expect_raw("/v1/audit/checkpoint?size=0"))?;
        writeln!(writer, "{}", serde_json::json!({ "checkpoint": page }))?;
    }
    writer.flush()?;
    writer.get_ref().sync_all()?;
    progress.finish_and_clear();
    Ok(())
}

/// What `verify` found.
#[derive(Debug)]
pub struct Report {
    /// Entries read.
    pub entries: u64,
    /// Signed checkpoints that verified and matched.
    pub checkpoints: u64,
    /// The log's name.
    pub origin: String,
    /// The tree's root over every entry read, base64.
    pub root: String,
    /// Each problem, naming its entry and line.
    pub problems: Vec<String>,
    /// A caution that does not fail the check.
    pub warning: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    export: String,
    origin: String,
    verifier_key: String,
    size: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryLine<'a> {
    index: u64,
    leaf: String,
    #[serde(borrow)]
    entry: &'a serde_json::value::RawValue,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointLine {
    checkpoint: String,
}

#[derive(Deserialize)]
struct EntrySeq {
    seq: u64,
}

/// Checks export `file` offline (see the module's doc); `key` overrides the key the file names.
pub fn verify(file: &Path, key: Option<&str>, saved: &[PathBuf]) -> anyhow::Result<Report> {
    let reader =
        std::io::BufReader::new(std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?);
    let mut lines = reader.split(b'\n');
    let header_text = String::from_utf8_lossy(&lines.next().transpose()?.unwrap_or_default()).into_owned();
    let header: Header = serde_json::from_str(&header_text)
        .with_context(|| format!("{}: line 1 is not an audit export header", file.display()))?;
    if header.export != EXPORT_FORMAT {
        bail!("{}: format {:?}; this obol reads {EXPORT_FORMAT}", file.display(), header.export);
    }
    let mut problems = Vec::new();
    let mut warning = None;
    let key_text = match key {
        Some(key) => {
            if key.trim() != header.verifier_key.trim() {
                problems.push(format!(
                    "the export names key {}, not the key you trust; its checkpoints are checked with yours",
                    header.verifier_key
                ));
            }
            key.to_string()
        }
        None => {
            warning = Some(format!(
                "no --key: trusting the key the file names ({}); this shows the file agrees with itself, \
                 not that the server signed it",
                header.verifier_key
            ));
            header.verifier_key.clone()
        }
    };
    let (name, verifying_key) = parse_verifier_key(&key_text)?;
    if name != header.origin {
        problems.push(format!("the export is of log {:?}, the key is {name:?}'s", header.origin));
    }
    let mut tree = Tree::new();
    let mut expected = 0u64;
    let mut checkpoints = 0u64;
    let mut covered = 0u64;
    let mut covered_good = 0u64;
    let mut missing_from: Option<u64> = None;
    let mut last_checkpoint: Option<u64> = None;
    for (line_index, line) in lines.enumerate() {
        let line_no = line_index + 2;
        let Ok(line) = String::from_utf8(line?) else {
            problems.push(format!("line {line_no}: not UTF-8 (damaged or inserted)"));
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        if let Ok(entry) = serde_json::from_str::<EntryLine<'_>>(&line) {
            let index = entry.index;
            let Some(next) = index.checked_add(1) else {
                problems.push(format!("line {line_no}: entry index {index} is past any log"));
                continue;
            };
            if index < expected {
                problems.push(format!(
                    "line {line_no}: entry {index} repeats or is out of order (entry {expected} was next)"
                ));
                continue;
            }
            if index > expected {
                problems.push(format!(
                    "line {line_no}: entries {expected} to {} are missing (entry {index} follows)",
                    index - 1
                ));
                // The tree cannot be rebuilt past a gap; the entries' own hashes are still checked.
                missing_from.get_or_insert(expected);
            }
            let bytes = entry.entry.get().as_bytes();
            let leaf = leaf_hash(bytes);
            if hex(&leaf) != entry.leaf {
                problems.push(format!(
                    "line {line_no}: entry {index} was altered: its bytes do not hash to the leaf the log committed to"
                ));
            }
            match serde_json::from_str::<EntrySeq>(entry.entry.get()) {
                Ok(parsed) if parsed.seq == index + 1 => {}
                Ok(parsed) => problems.push(format!(
                    "line {line_no}: entry {index} holds record {}'s entry (moved from position {})",
                    parsed.seq,
                    parsed.seq.saturating_sub(1)
                )),
                Err(_) => problems.push(format!("line {line_no}: entry {index} has no record number")),
            }
            if missing_from.is_none() {
                tree.push(leaf);
            }
            expected = next;
            continue;
        }
        let Ok(line_value) = serde_json::from_str::<CheckpointLine>(&line) else {
            problems.push(format!("line {line_no}: neither an entry nor a checkpoint (inserted or damaged)"));
            continue;
        };
        let checkpoint = match Checkpoint::open(&line_value.checkpoint, &name, &verifying_key) {
            Ok(checkpoint) => checkpoint,
            Err(error) => {
                problems.push(format!("line {line_no}: checkpoint refused: {error}"));
                continue;
            }
        };
        last_checkpoint = Some(checkpoint.size);
        covered = covered.max(checkpoint.size.min(expected));
        if checkpoint.size > expected {
            problems.push(format!(
                "line {line_no}: the checkpoint covers {} entries but only {expected} come before it",
                checkpoint.size
            ));
            continue;
        }
        if missing_from.is_some_and(|from| checkpoint.size > from) {
            continue;
        }
        match tree.root(checkpoint.size) {
            Ok(root) if root == checkpoint.root => {
                checkpoints += 1;
                covered_good = covered_good.max(checkpoint.size);
            }
            _ => problems.push(format!(
                "line {line_no}: the signed checkpoint of size {} does not match the entries: entries {} to {} were altered",
                checkpoint.size,
                covered_good,
                checkpoint.size.saturating_sub(1)
            )),
        }
    }
    if header.size > expected {
        problems.push(format!(
            "the export ends after {expected} entries but its header says {}: entries {expected} to {} are missing (truncated)",
            header.size,
            header.size - 1
        ));
    } else if header.size < expected {
        problems.push(format!("the header says {} entries but {expected} follow", header.size));
    }
    match last_checkpoint {
        None => problems.push("no signed checkpoint: nothing vouches for these entries".to_string()),
        Some(_) if covered < expected => problems.push(format!(
            "entries {covered} to {} follow the last signed checkpoint (added or truncated after it)",
            expected - 1
        )),
        Some(_) => {}
    }
    for path in saved {
        let note = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        // Saved by hand: line endings and trailing blank lines may have changed on the way.
        let note = format!("{}\n", note.replace("\r\n", "\n").trim_end());
        match Checkpoint::open(&note, &name, &verifying_key) {
            Err(error) => problems.push(format!("{}: {error}", path.display())),
            Ok(checkpoint) if checkpoint.size > tree.size() => problems.push(format!(
                "{}: your checkpoint covers {} entries, the export only {}: it is older or truncated",
                path.display(),
                checkpoint.size,
                tree.size()
            )),
            Ok(checkpoint) => match tree.root(checkpoint.size) {
                Ok(root) if root == checkpoint.root => checkpoints += 1,
                _ => problems.push(format!(
                    "{}: the server signed another history of size {} (a fork): this export's first {} entries differ from it",
                    path.display(),
                    checkpoint.size,
                    checkpoint.size
                )),
            },
        }
    }
    let root = tree.root(tree.size()).map(|root| Base64::encode_string(&root)).unwrap_or_default();
    Ok(Report { entries: expected, checkpoints, origin: header.origin, root, problems, warning })
}

//! Repository checks that run inside `cargo test` (`xtask/tests/tidy.rs`) and as
//! `cargo run -p xtask -- tidy`.
//!
//! They keep promises that reviewers would otherwise have to remember: every Rust file says what
//! it is for (`//!`), no debugging leftovers or disabled tests, the pure core depends on nothing
//! that does I/O or draws randomness, and money never touches floating point.

use std::path::{Path, PathBuf};

/// Crates the core must never depend on.
const CORE_FORBIDDEN_DEPENDENCIES: &[&str] =
    &["tokio", "sqlx", "axum", "rand", "rusqlite", "tokio-postgres", "hyper", "reqwest", "getrandom"];

/// Files where money lives on the wire or in the ledger; no floating point allowed in them.
const MONEY_PATHS: &[&str] = &["crates/obol-core/src", "crates/obol-http/src/dto.rs"];

/// The repository root (this crate lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') && name != "node_modules" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// Runs every check; returns one line per violation.
pub fn tidy(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "fuzz"] {
        rust_files(&root.join(dir), &mut files);
    }
    let banned = [
        ("dbg!(", "a dbg! left in"),
        ("#[should_panic", "should_panic: assert the behaviour instead"),
        ("#[ignore", "an ignored test: fix it or assert the current behaviour"),
        ("todo!(", "a todo! left in"),
        ("unimplemented!(", "an unimplemented! left in"),
    ];
    for file in &files {
        let relative = file.strip_prefix(root).unwrap_or(file).display().to_string();
        let Ok(text) = std::fs::read_to_string(file) else {
            problems.push(format!("{relative}: unreadable"));
            continue;
        };
        if !text.trim_start().starts_with("//!") {
            problems.push(format!("{relative}: must open with a //! comment saying what it is for"));
        }
        if relative.starts_with("xtask/") {
            continue;
        }
        for (needle, why) in banned {
            if text.contains(needle) {
                problems.push(format!("{relative}: {why}"));
            }
        }
        let is_money = MONEY_PATHS.iter().any(|p| relative.starts_with(p));
        if is_money {
            for (line_index, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                let has_float = code
                    .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                    .any(|token| token == "f32" || token == "f64");
                if has_float {
                    problems.push(format!("{relative}:{}: floating point where money is handled", line_index + 1));
                }
            }
        }
    }
    match std::fs::read_to_string(root.join("crates/obol-core/Cargo.toml")) {
        Ok(manifest) => {
            for line in manifest.lines() {
                let name = line.split(['=', '.', ' ']).next().unwrap_or("").trim();
                if CORE_FORBIDDEN_DEPENDENCIES.contains(&name) {
                    problems.push(format!("crates/obol-core/Cargo.toml: the pure core must not depend on {name}"));
                }
            }
        }
        Err(error) => problems.push(format!("crates/obol-core/Cargo.toml: {error}")),
    }
    problems
}

/// Crates of the server that the payer SDK must not pull in: a client needs the wire formats,
/// not the web framework, the databases, the policy language, the model or the password hash.
pub const SERVER_ONLY_CRATES: [&str; 8] =
    ["axum", "rusqlite", "tokio-postgres", "cel", "forust-ml", "webauthn-rs", "argon2", "obol-http"];

/// The server-only crates named in `cargo tree --prefix none` output (one crate per line,
/// `name vX.Y.Z ...`).
pub fn server_crates_in(tree: &str) -> Vec<String> {
    let mut found: Vec<String> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| SERVER_ONLY_CRATES.contains(name))
        .map(str::to_string)
        .collect();
    found.sort();
    found.dedup();
    found
}

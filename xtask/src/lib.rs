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
const MONEY_PATHS: &[&str] = &["crates/obol-core/src", "crates/obol-rules/src", "crates/obol-http/src/dto.rs"];

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
    for pure in PURE_CRATES {
        let path = format!("crates/{pure}/Cargo.toml");
        match std::fs::read_to_string(root.join(&path)) {
            Ok(manifest) => {
                for line in manifest.lines() {
                    let name = line.split(['=', '.', ' ']).next().unwrap_or("").trim();
                    if CORE_FORBIDDEN_DEPENDENCIES.contains(&name) {
                        problems.push(format!("{path}: the pure core must not depend on {name}"));
                    }
                }
            }
            Err(error) => problems.push(format!("{path}: {error}")),
        }
    }
    problems.extend(route_imports(root));
    problems.extend(http_in_application_layer(root));
    problems.extend(panic_lints(root));
    problems
}

/// The crates that take the workspace's panic lints (no unwrap, expect, panic or indexing
/// outside tests without a written reason): those a payment passes through, the risk engine, the
/// payer's SDK, the binary (server and CLI) and the simulator.
pub const PANIC_LINT_CRATES: [&str; 10] = [
    "obol-core",
    "obol-rules",
    "obol-store",
    "obol-wire",
    "obol-app",
    "obol-http",
    "obol-risk",
    "obol-client",
    "obol",
    "obol-sim",
];

/// The pure crates: no runtime, database, network or randomness among their dependencies.
pub const PURE_CRATES: [&str; 2] = ["obol-core", "obol-rules"];

/// Crates of [`PANIC_LINT_CRATES`] whose manifest does not opt in to the workspace lints.
pub fn panic_lints(root: &Path) -> Vec<String> {
    PANIC_LINT_CRATES
        .iter()
        .filter_map(|name| {
            let path = format!("crates/{name}/Cargo.toml");
            let manifest = std::fs::read_to_string(root.join(&path)).unwrap_or_default();
            let opted_in = manifest.split("[lints]").nth(1).is_some_and(|rest| {
                rest.lines().map(str::trim).take_while(|l| !l.starts_with('[')).any(|l| l == "workspace = true")
            });
            (!opted_in)
                .then(|| format!("{path}: this crate takes the workspace panic lints: add [lints] workspace = true"))
        })
        .collect()
}

/// The HTTP shell's route modules: each parses, calls the application layer and maps the
/// answer, so a rule lives in one place. `*_routes.rs` and `x402.rs` in `crates/obol-http/src`.
pub fn route_modules(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root.join("crates/obol-http/src")) else { return Vec::new() };
    let mut modules: Vec<String> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|n| n.strip_suffix(".rs")).map(str::to_string))
        .filter(|name| name.ends_with("_routes") || name == "x402")
        .collect();
    modules.sort();
    modules
}

/// One line per route module that names another (`crate::<other>`, `super::<other>`): when one
/// route borrows another's checks, a rule applied on one path is forgotten on the next.
pub fn route_imports(root: &Path) -> Vec<String> {
    let modules = route_modules(root);
    let mut problems = Vec::new();
    for module in &modules {
        let relative = format!("crates/obol-http/src/{module}.rs");
        let Ok(text) = std::fs::read_to_string(root.join(&relative)) else { continue };
        for other in modules.iter().filter(|other| *other != module) {
            let named = [format!("crate::{other}"), format!("super::{other}")].iter().any(|path| {
                text.split(path.as_str())
                    .skip(1)
                    .any(|rest| !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
            });
            if named {
                problems.push(format!("{relative}: a route module imports another route module ({other}); move the shared part into obol-app"));
            }
        }
    }
    problems
}

/// One line per file of the application layer (`crates/obol-app`) that names the web framework:
/// the use cases know nothing of HTTP, so the simulator and other shells run them as they are.
pub fn http_in_application_layer(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&root.join("crates/obol-app/src"), &mut files);
    let mut problems = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        let relative = file.strip_prefix(root).unwrap_or(&file).display().to_string();
        if text.contains("axum") || text.contains("StatusCode") {
            problems.push(format!("{relative}: the application layer names HTTP (axum or StatusCode)"));
        }
        // Time and randomness reach a use case through the `Env` it is given (env.rs holds the
        // system's), so a simulator can hand in its own.
        let reads_the_system = ["SystemTime::now", "Instant::now", "rand::fill", "rand::random", "rand::rng"]
            .iter()
            .any(|call| text.contains(call));
        if reads_the_system && !relative.ends_with("src/env.rs") {
            problems.push(format!("{relative}: the application layer reads the clock or randomness outside Env"));
        }
    }
    if let Ok(manifest) = std::fs::read_to_string(root.join("crates/obol-app/Cargo.toml")) {
        for name in ["axum", "hyper", "tower", "tower-http"] {
            if manifest.lines().any(|line| line.split(['=', '.', ' ']).next().unwrap_or("").trim() == name) {
                problems.push(format!("crates/obol-app/Cargo.toml: the application layer must not depend on {name}"));
            }
        }
    }
    problems
}

/// Crates of the server that the payer SDK must not pull in: a client needs the wire formats,
/// not the web framework, the databases, the policy language, the model or the password hash.
pub const SERVER_ONLY_CRATES: [&str; 9] =
    ["axum", "rusqlite", "tokio-postgres", "cel", "forust-ml", "webauthn-rs", "argon2", "obol-http", "obol-app"];

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

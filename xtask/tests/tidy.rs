//! Goal: the repository keeps its house rules (see `xtask/src/lib.rs`).
//! Method: run every check over the working tree; also prove the checks bite on planted faults.

#[test]
fn the_repository_is_tidy() {
    let problems = xtask::tidy(&xtask::root());
    assert!(problems.is_empty(), "tidy found:\n{}", problems.join("\n"));
}

#[test]
fn tidy_catches_floats_in_money_and_io_in_the_core() {
    let dir = std::env::temp_dir().join(format!("obol-tidy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("crates/obol-core/src")).unwrap();
    std::fs::write(dir.join("crates/obol-core/Cargo.toml"), "[dependencies]\ntokio.workspace = true\n").unwrap();
    std::fs::write(dir.join("crates/obol-core/src/lib.rs"), "//! x\npub fn total() -> f64 { 0.1 }\n").unwrap();
    std::fs::write(dir.join("crates/obol-core/src/other.rs"), "pub fn x() { dbg!(1); }\n").unwrap();
    let problems = xtask::tidy(&dir).join("\n");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(problems.contains("floating point where money is handled"), "{problems}");
    assert!(problems.contains("must not depend on tokio"), "{problems}");
    assert!(problems.contains("must open with a //! comment"), "{problems}");
    assert!(problems.contains("dbg!"), "{problems}");
}

#[test]
fn the_payer_sdk_pulls_in_none_of_the_servers_dependencies() {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["tree", "-p", "obol-client", "-e", "normal", "--prefix", "none", "--offline"])
        .current_dir(xtask::root())
        .output()
        .expect("cargo tree runs");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(tree.contains("obol-wire"), "the SDK builds on the wire formats crate:\n{tree}");
    assert_eq!(xtask::server_crates_in(&tree), Vec::<String>::new(), "obol-client depends on server crates");
    // The check bites: a tree that names them is caught.
    let planted = "obol-client v0.1.0\naxum v0.8.1\ncel v0.11.0 (*)\nrusqlite v0.39.0\nrustls v0.23.0\n";
    assert_eq!(xtask::server_crates_in(planted), ["axum", "cel", "rusqlite"]);
}

#[test]
fn tidy_catches_a_route_module_that_imports_another() {
    let dir = std::env::temp_dir().join(format!("obol-tidy-routes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("crates/obol-http/src")).unwrap();
    std::fs::create_dir_all(dir.join("crates/obol-app/src")).unwrap();
    std::fs::write(dir.join("crates/obol-http/src/tab_routes.rs"), "//! x\nuse crate::ledger_routes::authorize;\n")
        .unwrap();
    std::fs::write(dir.join("crates/obol-http/src/ledger_routes.rs"), "//! x\nuse crate::ledger_routes_extra::y;\n")
        .unwrap();
    std::fs::write(dir.join("crates/obol-http/src/x402.rs"), "//! x\nuse crate::dto::Price;\n").unwrap();
    std::fs::write(dir.join("crates/obol-app/src/pay.rs"), "//! x\nuse axum::http::StatusCode;\n").unwrap();
    let problems = xtask::tidy(&dir).join("\n");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        problems.contains("tab_routes.rs: a route module imports another route module (ledger_routes)"),
        "{problems}"
    );
    assert!(!problems.contains("ledger_routes.rs: a route module"), "a longer name is not the module: {problems}");
    assert!(!problems.contains("x402.rs: a route module"), "{problems}");
    assert!(problems.contains("crates/obol-app/src/pay.rs: the application layer names HTTP"), "{problems}");
}

#[test]
fn the_route_modules_are_the_http_shells_route_files() {
    let modules = xtask::route_modules(&xtask::root());
    for expected in ["identity_routes", "ledger_routes", "risk_routes", "tab_routes", "x402"] {
        assert!(modules.iter().any(|m| m == expected), "{expected} missing from {modules:?}");
    }
}

#[test]
fn tidy_catches_a_crate_without_the_panic_lints() {
    let scratch = std::env::temp_dir().join(format!("obol-tidy-lints-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    for name in xtask::PANIC_LINT_CRATES {
        std::fs::create_dir_all(scratch.join("crates").join(name)).unwrap();
        let lints = if name == "obol-app" { "" } else { "\n[lints]\nworkspace = true\n" };
        std::fs::write(
            scratch.join("crates").join(name).join("Cargo.toml"),
            format!("[package]\nname = \"{name}\"\n{lints}"),
        )
        .unwrap();
    }
    let problems = xtask::panic_lints(&scratch);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("crates/obol-app/Cargo.toml"), "{problems:?}");
    assert!(xtask::panic_lints(&xtask::root()).is_empty(), "the repository's crates opt in");
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn tidy_catches_the_application_layer_reading_the_clock_itself() {
    let dir = std::env::temp_dir().join(format!("obol-tidy-env-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("crates/obol-app/src")).unwrap();
    std::fs::write(dir.join("crates/obol-app/src/env.rs"), "//! x\nfn f() { std::time::SystemTime::now(); }\n")
        .unwrap();
    std::fs::write(
        dir.join("crates/obol-app/src/tabs.rs"),
        "//! x\nfn f() { let mut b = [0u8; 4]; rand::fill(&mut b); }\n",
    )
    .unwrap();
    let problems = xtask::http_in_application_layer(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        problems,
        ["crates/obol-app/src/tabs.rs: the application layer reads the clock or randomness outside Env"]
    );
}

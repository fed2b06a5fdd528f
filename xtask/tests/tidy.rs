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

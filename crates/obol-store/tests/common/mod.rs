//! Test fixtures shared by the store suites: a scratch directory and the two backends.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use obol_store::{PgStore, SqliteStore, Store};

/// The PostgreSQL the suite uses: `OBOL_TEST_DATABASE_URL`, else the local `test` database.
pub fn pg_url() -> String {
    std::env::var("OBOL_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A directory removed when dropped.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(tag: &str) -> ScratchDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "obol-test-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create scratch dir");
        ScratchDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh PostgreSQL schema name for one test case.
pub fn fresh_schema(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("obol_t_{tag}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Whether PostgreSQL tests run. Under CI=true a missing PostgreSQL fails the suite; elsewhere
/// the suite says plainly that it skipped them.
pub fn postgres_available() -> bool {
    let reachable = PgStore::ping(&pg_url()).is_ok();
    if !reachable {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but PostgreSQL at {} is not reachable; the PostgreSQL tests must not be skipped", pg_url());
        }
        eprintln!("SKIPPED: PostgreSQL tests (no server at {}; set OBOL_TEST_DATABASE_URL)", pg_url());
    }
    reachable
}

/// Drops a test schema.
pub fn drop_schema(schema: &str) {
    let _ = PgStore::drop_schema(&pg_url(), schema);
}

/// Where a backend keeps its data, so it can be reopened after a simulated restart.
pub enum Backend {
    Sqlite(ScratchDir),
    Postgres(String),
}

impl Backend {
    pub fn sqlite() -> Backend {
        Backend::Sqlite(ScratchDir::new("sqlite"))
    }

    pub fn postgres() -> Backend {
        Backend::Postgres(fresh_schema("pg"))
    }

    pub fn open(&self) -> Box<dyn Store> {
        match self {
            Backend::Sqlite(dir) => Box::new(SqliteStore::open(dir.path()).expect("open sqlite")),
            Backend::Postgres(schema) => Box::new(PgStore::open_in_schema(&pg_url(), schema).expect("open postgres")),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Backend::Postgres(schema) = self {
            drop_schema(schema);
        }
    }
}

//! The embedded default store: one SQLite database in WAL mode with `synchronous=FULL`, inside a
//! data directory that a lock file reserves for one obol process.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

use crate::{Store, StoreError, Visit};

/// The embedded store.
pub struct SqliteStore {
    connection: Connection,
    /// Held for the store's life: the OS lock on `LOCK` keeps a second process out.
    _lock: File,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let io = |context: String| move |source| StoreError::Io { context, source };
        std::fs::create_dir_all(data_dir).map_err(io(format!("creating {}", data_dir.display())))?;
        // The ledger, identities and sealed secrets are nobody else's business: the directory is
        // the owner's alone (0700) and the database is created 0600 (SQLite gives its -wal and
        // -shm files the database's mode), whatever the umask.
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io(format!("restricting {} to its owner", data_dir.display())))?;
        let lock_path = data_dir.join("LOCK");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(format!("opening {}", lock_path.display())))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked(data_dir.display().to_string()));
        }
        let path = data_dir.join("obol.sqlite3");
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io(format!("creating {}", path.display())))?;
        for suffix in ["", "-wal", "-shm"] {
            let file = data_dir.join(format!("obol.sqlite3{suffix}"));
            if file.exists() {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .map_err(io(format!("restricting {} to its owner", file.display())))?;
            }
        }
        let connection = Connection::open(&path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, body BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);",
        )?;
        Ok(SqliteStore { connection, _lock: lock, path })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn last_seq(&self) -> Result<u64, StoreError> {
        let last: Option<i64> = self.connection.query_row("SELECT max(seq) FROM log", [], |row| row.get(0))?;
        Ok(last.unwrap_or(0) as u64)
    }
}

impl Store for SqliteStore {
    fn append(&mut self, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
        // Parsed and planned once per connection: the writer appends a record per group commit.
        let mut insert = self.connection.prepare_cached(
            "INSERT INTO log (seq, body) SELECT ?1, ?2 WHERE coalesce((SELECT max(seq) FROM log), 0) = ?1 - 1",
        )?;
        let inserted = insert.execute(params![seq as i64, bytes])?;
        drop(insert);
        if inserted != 1 {
            return Err(StoreError::OutOfOrder { last: self.last_seq()?, got: seq });
        }
        Ok(())
    }

    fn replay(&mut self, visit: Visit<'_>) -> Result<(), StoreError> {
        let mut statement = self.connection.prepare("SELECT seq, body FROM log ORDER BY seq")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let body = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            visit(seq as u64, body)?;
        }
        Ok(())
    }

    fn truncate(&mut self, from_seq: u64) -> Result<(), StoreError> {
        self.connection.execute("DELETE FROM log WHERE seq >= ?1", params![from_seq as i64])?;
        Ok(())
    }

    fn meta_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .connection
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |row| row.get(0))
            .optional()?)
    }

    fn meta_put(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.connection.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    fn meta_scan(&mut self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT key, value FROM meta WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key")?;
        let rows = statement.query_map(params![prefix], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }
}

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
        let vault_path = data_dir.join("vault.sqlite3");
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&vault_path)
            .map_err(io(format!("creating {}", vault_path.display())))?;
        let connection = Connection::open(&path)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        // What a VACUUM copies goes through memory, never a temporary file.
        connection.pragma_update(None, "temp_store", "MEMORY")?;
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, body BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);",
        )?;
        // The vault's keys: a small database of their own, so an erasure rewrites it whole.
        connection.execute("ATTACH DATABASE ?1 AS vault", params![vault_path.to_string_lossy()])?;
        connection.execute_batch(
            "PRAGMA vault.journal_mode = WAL;
             PRAGMA vault.synchronous = FULL;
             PRAGMA vault.secure_delete = ON;
             CREATE TABLE IF NOT EXISTS vault.keys (key TEXT PRIMARY KEY, value BLOB NOT NULL);",
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

/// The table a metadata key lives in.
fn meta_table(key: &str) -> &'static str {
    if key.starts_with(crate::VAULT_META_PREFIX) { "vault.keys" } else { "meta" }
}

impl SqliteStore {
    /// Copies the write-ahead log of `schema` into its database file and truncates the log.
    fn checkpoint(&self, schema: &str) -> Result<(), StoreError> {
        let (busy, _, _): (i64, i64, i64) =
            self.connection.query_row(&format!("PRAGMA {schema}.wal_checkpoint(TRUNCATE)"), [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
        if busy != 0 {
            return Err(StoreError::Io {
                context: format!(
                    "scrubbing the {schema} database beside {}: a reader holds its write-ahead log",
                    self.path.display()
                ),
                source: std::io::Error::other("wal_checkpoint(TRUNCATE) could not finish; the next sweep retries"),
            });
        }
        Ok(())
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
        let sql = format!("SELECT value FROM {} WHERE key = ?1", meta_table(key));
        Ok(self.connection.query_row(&sql, params![key], |row| row.get(0)).optional()?)
    }

    fn meta_put(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {} (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            meta_table(key)
        );
        self.connection.execute(&sql, params![key, value])?;
        Ok(())
    }

    fn meta_scan(&mut self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let (vault, main) = crate::meta_areas(prefix);
        let mut found = Vec::new();
        for (wanted, table) in [(vault, "vault.keys"), (main, "meta")] {
            if !wanted {
                continue;
            }
            let sql = format!("SELECT key, value FROM {table} WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key");
            let mut statement = self.connection.prepare_cached(&sql)?;
            let rows = statement.query_map(params![prefix], |row| Ok((row.get(0)?, row.get(1)?)))?;
            found.extend(rows.collect::<Result<Vec<(String, Vec<u8>)>, _>>()?);
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    fn meta_erase(&mut self, keys: &[String]) -> Result<(), StoreError> {
        let mut vault = false;
        for key in keys {
            let table = meta_table(key);
            vault |= table == "vault.keys";
            self.connection.execute(&format!("DELETE FROM {table} WHERE key = ?1"), params![key])?;
        }
        if vault { self.meta_scrub() } else { self.checkpoint("main") }
    }

    fn meta_scrub(&mut self) -> Result<(), StoreError> {
        // `secure_delete` zeroed the deleted cells, but a page that was interior or freed before
        // can still hold an old value: VACUUM rewrites the vault's file from its live rows alone
        // (through memory: `temp_store`), and the checkpoint copies it into the file and
        // truncates the write-ahead log, which held the old pages.
        self.connection.execute_batch("VACUUM vault")?;
        self.checkpoint("vault")
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }
}

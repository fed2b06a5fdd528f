//! The PostgreSQL store: the same log and metadata tables, in their own schema, written by one
//! obol process at a time (a session advisory lock). Commits wait for the WAL flush
//! (`synchronous_commit = on`), so an acknowledged record survives a crash of either process.

use tokio::runtime::Runtime;
use tokio_postgres::{Client, NoTls};

use crate::{Store, StoreError, Visit};

/// The PostgreSQL store.
pub struct PgStore {
    runtime: Runtime,
    client: Client,
    schema: String,
}

impl PgStore {
    /// Connects to `url` and uses schema `obol`.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        PgStore::open_in_schema(url, "obol")
    }

    /// Connects to `url` and uses `schema` (created if missing). Tests give each run its own.
    pub fn open_in_schema(url: &str, schema: &str) -> Result<PgStore, StoreError> {
        assert!(
            !schema.is_empty() && schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "schema names are lower-case identifiers"
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| StoreError::Io { context: "starting the PostgreSQL client runtime".into(), source })?;
        let client = runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::error!(%error, "PostgreSQL connection closed");
                }
            });
            client
                .batch_execute(&format!(
                    "SET synchronous_commit = on;
                     CREATE SCHEMA IF NOT EXISTS {schema};
                     SET search_path = {schema};
                     CREATE TABLE IF NOT EXISTS log (seq BIGINT PRIMARY KEY, body BYTEA NOT NULL);
                     ALTER TABLE log ALTER COLUMN body SET STORAGE EXTERNAL;
                     CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);"
                ))
                .await?;
            Ok::<Client, tokio_postgres::Error>(client)
        })?;
        let locked: bool = runtime
            .block_on(client.query_one("SELECT pg_try_advisory_lock(hashtext('obol:' || $1::text))", &[&schema]))?
            .get(0);
        if !locked {
            return Err(StoreError::Locked(format!("PostgreSQL schema {schema}")));
        }
        Ok(PgStore { runtime, client, schema: schema.to_string() })
    }

    /// The schema this store writes.
    pub fn schema(&self) -> &str {
        &self.schema
    }
}

impl Store for PgStore {
    fn append(&mut self, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let inserted = self.runtime.block_on(self.client.execute(
            "INSERT INTO log (seq, body) SELECT $1::bigint, $2 WHERE coalesce((SELECT max(seq) FROM log), 0) = $1::bigint - 1",
            &[&(seq as i64), &bytes],
        ))?;
        if inserted != 1 {
            let last: Option<i64> =
                self.runtime.block_on(self.client.query_one("SELECT max(seq) FROM log", &[]))?.get(0);
            return Err(StoreError::OutOfOrder { last: last.unwrap_or(0) as u64, got: seq });
        }
        Ok(())
    }

    fn replay(&mut self, visit: Visit<'_>) -> Result<(), StoreError> {
        // Page through the log so memory stays bounded by one page of records.
        let mut after: i64 = 0;
        loop {
            let rows = self.runtime.block_on(
                self.client.query("SELECT seq, body FROM log WHERE seq > $1 ORDER BY seq LIMIT 64", &[&after]),
            )?;
            if rows.is_empty() {
                return Ok(());
            }
            for row in rows {
                let seq: i64 = row.get(0);
                let body: &[u8] = row.get(1);
                visit(seq as u64, body)?;
                after = seq;
            }
        }
    }

    fn truncate(&mut self, from_seq: u64) -> Result<(), StoreError> {
        self.runtime.block_on(self.client.execute("DELETE FROM log WHERE seq >= $1", &[&(from_seq as i64)]))?;
        Ok(())
    }

    fn meta_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self.runtime.block_on(self.client.query_opt("SELECT value FROM meta WHERE key = $1", &[&key]))?;
        Ok(row.map(|row| row.get(0)))
    }

    fn meta_put(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.runtime.block_on(self.client.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&key, &value],
        ))?;
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }
}

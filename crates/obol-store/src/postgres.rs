//! The PostgreSQL store: the same log and metadata tables, in their own schema, written by one
//! obol process at a time (a session advisory lock). Commits wait for the WAL flush
//! (`synchronous_commit = on`), so an acknowledged record survives a crash of either process.
//!
//! The asynchronous client runs on a thread of its own with its own runtime; the store's
//! methods hand it work over a channel and wait for the answer. That keeps `PgStore` a plain
//! blocking store that is safe to call from anywhere, including from inside another runtime.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio_postgres::Client;

use crate::{Store, StoreError, Visit};

type Job = Box<dyn for<'c> FnOnce(&'c Client) -> Pin<Box<dyn Future<Output = ()> + 'c>> + Send>;

/// Rows fetched per round trip while replaying.
const REPLAY_PAGE_ROWS: i64 = 64;

/// The PostgreSQL store.
pub struct PgStore {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    schema: String,
}

fn runtime() -> Result<tokio::runtime::Runtime, StoreError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| StoreError::Io { context: "starting the PostgreSQL client runtime".into(), source })
}

/// Runs `work` against a fresh connection on a short-lived thread (for one-off operations).
fn one_off<T: Send + 'static>(
    url: &str,
    work: impl for<'c> FnOnce(&'c Client) -> Pin<Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + 'c>>
    + Send
    + 'static,
) -> Result<T, StoreError> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let runtime = runtime()?;
        runtime.block_on(async {
            let client = connect_client(&url).await?;
            Ok(work(&client).await?)
        })
    })
    .join()
    .unwrap_or_else(|_| Err(StoreError::Config("PostgreSQL client thread panicked".into())))
}

impl PgStore {
    /// Connects to `url` and uses schema `obol`.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        PgStore::open_in_schema(url, "obol")
    }

    /// Connects to `url` and uses `schema` (created if missing). Tests give each run its own.
    pub fn open_in_schema(url: &str, schema: &str) -> Result<PgStore, StoreError> {
        check_schema_name(schema)?;
        let (jobs, receiver) = mpsc::channel::<Job>();
        let (ready, ready_receiver) = mpsc::channel::<Result<(), StoreError>>();
        let url = url.to_string();
        let schema_owned = schema.to_string();
        let thread = std::thread::Builder::new()
            .name("obol-postgres".into())
            .spawn(move || {
                let runtime = match runtime() {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let client = match connect(&url, &schema_owned).await {
                        Ok(client) => client,
                        Err(error) => {
                            let _ = ready.send(Err(error));
                            return;
                        }
                    };
                    let _ = ready.send(Ok(()));
                    // Each job runs to completion before the next: one connection, in order.
                    while let Ok(job) = receiver.recv() {
                        job(&client).await;
                    }
                });
            })
            .map_err(|source| StoreError::Io { context: "starting the PostgreSQL client thread".into(), source })?;
        let opened =
            ready_receiver.recv().unwrap_or_else(|_| Err(StoreError::Config("PostgreSQL client thread exited".into())));
        let store = PgStore { jobs: Some(jobs), thread: Some(thread), schema: schema.to_string() };
        opened.map(|()| store)
    }

    /// Connects to `url` and runs `SELECT 1`: whether a PostgreSQL answers there.
    pub fn ping(url: &str) -> Result<(), StoreError> {
        one_off(url, |client| Box::pin(client.batch_execute("SELECT 1")))
    }

    /// Drops `schema` and everything in it (tests and benchmarks use throwaway schemas).
    pub fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        check_schema_name(schema)?;
        let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
        one_off(url, move |client| Box::pin(async move { client.batch_execute(&sql).await }))
    }

    /// The schema this store writes.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Runs `work` on the client thread and waits for its result.
    fn call<T: Send + 'static>(
        &self,
        work: impl for<'c> FnOnce(&'c Client) -> Pin<Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + 'c>>
        + Send
        + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = mpsc::channel();
        let job: Job = Box::new(move |client| {
            Box::pin(async move {
                let _ = reply.send(work(client).await);
            })
        });
        let gone = || StoreError::Config("the PostgreSQL client thread stopped".into());
        self.jobs.as_ref().ok_or_else(gone)?.send(job).map_err(|_| gone())?;
        Ok(answer.recv().map_err(|_| gone())??)
    }
}

/// Connects to `url` (libpq syntax; `sslmode` and `sslrootcert` as in [`crate::postgres_tls`])
/// and drives the connection on the current runtime. Call from inside a tokio runtime.
pub async fn connect_client(url: &str) -> Result<Client, StoreError> {
    let target = crate::postgres_tls::parse(url)?;
    let (client, connection) = target.config.connect(target.tls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::error!(%error, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

async fn connect(url: &str, schema: &str) -> Result<Client, StoreError> {
    let client = connect_client(url).await?;
    client
        .batch_execute(&format!(
            "SET synchronous_commit = on;
             CREATE SCHEMA IF NOT EXISTS {schema};
             SET search_path = {schema};
             CREATE TABLE IF NOT EXISTS log (seq BIGINT PRIMARY KEY, body BYTEA NOT NULL);
             ALTER TABLE log ALTER COLUMN body SET STORAGE EXTERNAL;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
             CREATE TABLE IF NOT EXISTS vault_keys (key TEXT PRIMARY KEY, value BYTEA NOT NULL);"
        ))
        .await?;
    let locked: bool =
        client.query_one("SELECT pg_try_advisory_lock(hashtext('obol:' || $1::text))", &[&schema]).await?.get(0);
    if !locked {
        return Err(StoreError::Locked(format!("PostgreSQL schema {schema}")));
    }
    Ok(client)
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Closing the channel ends the client thread, which closes the connection (and with it
        // the advisory lock).
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Schema names are spliced into SQL, so only plain lower-case identifiers are accepted.
fn check_schema_name(schema: &str) -> Result<(), StoreError> {
    let valid = schema.len() <= 63
        && schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && schema.bytes().next().is_some_and(|b| !b.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(StoreError::Config(format!(
            "schema {schema:?} must be 1 to 63 lower-case letters, digits or underscores, not starting with a digit"
        )))
    }
}

/// The table a metadata key lives in.
fn meta_table(key: &str) -> &'static str {
    if key.starts_with(crate::VAULT_META_PREFIX) { "vault_keys" } else { "meta" }
}

impl Store for PgStore {
    fn append(&mut self, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let body = bytes.to_vec();
        let seq = seq as i64;
        let (inserted, last) = self.call(move |client| {
            Box::pin(async move {
                let inserted = client
                    .execute(
                        "INSERT INTO log (seq, body) SELECT $1::bigint, $2
                         WHERE coalesce((SELECT max(seq) FROM log), 0) = $1::bigint - 1",
                        &[&seq, &body],
                    )
                    .await?;
                let last: Option<i64> =
                    if inserted == 1 { None } else { client.query_one("SELECT max(seq) FROM log", &[]).await?.get(0) };
                Ok((inserted, last))
            })
        })?;
        if inserted != 1 {
            return Err(StoreError::OutOfOrder { last: last.unwrap_or(0) as u64, got: seq as u64 });
        }
        Ok(())
    }

    fn replay(&mut self, visit: Visit<'_>) -> Result<(), StoreError> {
        // Page through the log so memory stays bounded by one page of records.
        let mut after: i64 = 0;
        loop {
            let page: Vec<(i64, Vec<u8>)> = self.call(move |client| {
                Box::pin(async move {
                    let rows = client
                        .query(
                            "SELECT seq, body FROM log WHERE seq > $1 ORDER BY seq LIMIT $2",
                            &[&after, &REPLAY_PAGE_ROWS],
                        )
                        .await?;
                    Ok(rows.into_iter().map(|row| (row.get(0), row.get(1))).collect())
                })
            })?;
            if page.is_empty() {
                return Ok(());
            }
            for (seq, body) in page {
                visit(seq as u64, &body)?;
                after = seq;
            }
        }
    }

    fn truncate(&mut self, from_seq: u64) -> Result<(), StoreError> {
        let from_seq = from_seq as i64;
        self.call(move |client| {
            Box::pin(async move { client.execute("DELETE FROM log WHERE seq >= $1", &[&from_seq]).await })
        })?;
        Ok(())
    }

    fn meta_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_string();
        let sql = format!("SELECT value FROM {} WHERE key = $1", meta_table(&key));
        self.call(move |client| {
            Box::pin(async move {
                let row = client.query_opt(&sql, &[&key]).await?;
                Ok(row.map(|row| row.get(0)))
            })
        })
    }

    fn meta_put(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let key = key.to_string();
        let value = value.to_vec();
        let sql = format!(
            "INSERT INTO {} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            meta_table(&key)
        );
        self.call(move |client| Box::pin(async move { client.execute(&sql, &[&key, &value]).await }))?;
        Ok(())
    }

    fn meta_scan(&mut self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let (vault, main) = crate::meta_areas(prefix);
        let mut found = Vec::new();
        for (wanted, table) in [(vault, "vault_keys"), (main, "meta")] {
            if !wanted {
                continue;
            }
            let prefix = prefix.to_string();
            let sql = format!("SELECT key, value FROM {table} WHERE left(key, length($1)) = $1 ORDER BY key");
            let rows: Vec<(String, Vec<u8>)> = self.call(move |client| {
                Box::pin(async move {
                    let rows = client.query(&sql, &[&prefix]).await?;
                    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
                })
            })?;
            found.extend(rows);
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    fn meta_erase(&mut self, keys: &[String]) -> Result<(), StoreError> {
        let mut vault = false;
        for key in keys {
            let key = key.clone();
            let table = meta_table(&key);
            vault |= table == "vault_keys";
            let sql = format!("DELETE FROM {table} WHERE key = $1");
            self.call(move |client| Box::pin(async move { client.execute(&sql, &[&key]).await }))?;
        }
        if vault { self.meta_scrub() } else { Ok(()) }
    }

    fn meta_scrub(&mut self) -> Result<(), StoreError> {
        // A deleted or updated row stays in the table's pages until a vacuum; VACUUM FULL (not
        // in a transaction) writes the small table anew from its live rows and drops the old
        // files, so a dump or a copy of the database made afterwards holds no destroyed key.
        self.call(move |client| Box::pin(async move { client.batch_execute("VACUUM FULL vault_keys").await }))
    }

    fn kind(&self) -> &'static str {
        "postgres"
    }
}

//! `obol bench ...`: measurements that back the numbers in BENCHMARKS.md.
//!
//! `obol bench ledger` pushes full 8,190-transfer batches through the real engine (group commit,
//! fsync per record, apply) on the embedded and PostgreSQL stores, and runs a naive PostgreSQL
//! double-entry baseline (one SQL transaction per transfer, 2 connections) in the same
//! invocation, so the ratios compare runs on the same machine at the same moment.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use obol_core::ledger::{AccountFlags, BATCH_EVENTS_MAX, NewAccount, NewTransfer, OpResults, TransferFlags};
use obol_core::money::Asset;
use obol_core::record::Op;
use obol_risk::sim::Rng;
use obol_store::{Engine, Node, PgStore, SqliteStore, Store};
use serde_json::json;

/// `obol bench ...`
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Durable ledger throughput: embedded vs PostgreSQL vs a naive PostgreSQL baseline.
    ///
    /// Two workloads: uniform (random payer and payee among all accounts) and hot merchant
    /// (every transfer credits one account). Prints transfers per second and the ratios.
    Ledger(LedgerArgs),
    /// Cost of authenticating one device-signed request (RFC 9421: parse, digest, signature
    /// base, replay check, Ed25519 verify) next to a bare ed25519-dalek verify, in one run.
    Auth(AuthArgs),
    /// Voucher checks per second against bare ed25519-dalek (single and batch), PayWord ticks
    /// per second, and memory per open tab (a million of them), on one core.
    Vouchers(crate::bench_pay::VoucherArgs),
    /// Paid HTTP requests per second end to end over loopback (402 terms taken, one PayWord tick
    /// per request, journaled), driven by wrk, beside unpaid requests on the same server.
    Http(crate::bench_pay::HttpArgs),
    /// Risk decision latency per event (streaming features + the shipped policy bundles) and
    /// memory per tracked entity.
    Risk(crate::bench_pay::RiskArgs),
    /// Latency of list pages over loopback (an account's history of 100,000 transfers: first
    /// page, filtered, from the middle by time; the operator's lists).
    Lists(crate::bench_lists::ListsArgs),
}

/// Options of `obol bench auth`.
#[derive(Args, Debug)]
pub struct AuthArgs {
    /// Requests to verify.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `obol bench ledger`.
#[derive(Args, Debug)]
pub struct LedgerArgs {
    /// Transfers per engine run (rounded up to whole batches of 8,190).
    #[arg(long, default_value_t = 1_000_000)]
    transfers: u64,
    /// Accounts created before each run.
    #[arg(long, default_value_t = 100_000)]
    accounts: u64,
    /// Seconds each naive-baseline workload runs.
    #[arg(long, default_value_t = 5)]
    naive_seconds: u64,
    /// PostgreSQL for the PostgreSQL backend and the naive baseline, e.g.
    /// postgres://postgres@127.0.0.1:5432/test. Without it only the embedded store is measured.
    /// The bench creates schemas of its own there (obol_bench_*_<run>, obol_naive_<run>) and drops
    /// only those.
    #[arg(long, env = "OBOL_BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Skip everything that needs PostgreSQL.
    #[arg(long)]
    skip_postgres: bool,
    /// Directory for the embedded store (on the disk you want measured; removed afterwards).
    #[arg(long, default_value = "./obol-bench-data")]
    data_dir: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Runs a bench command.
pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ledger(args) => ledger(args),
        BenchCommand::Auth(args) => auth(args),
        BenchCommand::Vouchers(args) => crate::bench_pay::vouchers(args),
        BenchCommand::Http(args) => crate::bench_pay::http(args),
        BenchCommand::Risk(args) => crate::bench_pay::risk(args),
        BenchCommand::Lists(args) => crate::bench_lists::lists(args),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    Uniform,
    Hot,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Uniform => "uniform",
            Workload::Hot => "hot",
        }
    }
}

#[expect(clippy::expect_used, reason = "USD at scale 2 is a valid ISO 4217 asset, a constant")]
fn asset() -> Asset {
    Asset::new("USD", 2).expect("USD/2 is valid")
}

/// Account 1 is the hot merchant; payers are 2..=accounts.
fn pair(rng: &mut Rng, workload: Workload, accounts: u64) -> (u64, u64) {
    let debit = 2 + rng.below(accounts - 1);
    let credit = match workload {
        Workload::Hot => 1,
        Workload::Uniform => loop {
            let candidate = 1 + rng.below(accounts);
            if candidate != debit {
                break candidate;
            }
        },
    };
    (debit, credit)
}

fn transfer_ops(workload: Workload, accounts: u64, transfers: u64) -> Vec<Op> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ workload as u64);
    let records = transfers.div_ceil(BATCH_EVENTS_MAX as u64);
    let mut id = 1u128 << 64;
    (0..records)
        .map(|_| {
            Op::CreateTransfers(
                (0..BATCH_EVENTS_MAX)
                    .map(|_| {
                        id += 1;
                        let (debit, credit) = pair(&mut rng, workload, accounts);
                        NewTransfer {
                            id,
                            debit_account_id: u128::from(debit),
                            credit_account_id: u128::from(credit),
                            amount: 1 + u128::from(rng.below(1000)),
                            pending_id: 0,
                            user_data_128: 0,
                            user_data_64: 0,
                            user_data_32: 0,
                            timeout_s: 0,
                            asset: Some(asset()),
                            code: 1,
                            flags: TransferFlags(0),
                        }
                    })
                    .collect(),
            )
        })
        .collect()
}

fn account_ops(accounts: u64) -> Vec<Op> {
    let ids: Vec<u64> = (1..=accounts).collect();
    ids.chunks(BATCH_EVENTS_MAX)
        .map(|chunk| {
            Op::CreateAccounts(
                chunk
                    .iter()
                    .map(|&id| NewAccount {
                        owner_id: 0,
                        id: u128::from(id),
                        user_data_128: 0,
                        user_data_64: 0,
                        user_data_32: 0,
                        asset: asset(),
                        code: 1,
                        flags: AccountFlags(0),
                    })
                    .collect(),
            )
        })
        .collect()
}

/// Pushes ops through the engine with a few records in flight; returns how many events were ok.
fn drive(engine: &Engine, ops: Vec<Op>, progress: Option<&ProgressBar>) -> anyhow::Result<u64> {
    const IN_FLIGHT_MAX: usize = 4;
    let mut in_flight = VecDeque::new();
    let mut ok = 0u64;
    let mut settle = |receiver: tokio::sync::oneshot::Receiver<_>| -> anyhow::Result<()> {
        let result: Result<OpResults, _> = receiver.blocking_recv().context("engine dropped a request")?;
        let count = match result? {
            OpResults::Accounts(results) => results.iter().filter(|r| r.is_success()).count(),
            OpResults::Transfers(results) => results.iter().filter(|r| r.is_success()).count(),
            OpResults::Identity(result) => usize::from(result == obol_core::identity::IdentityResult::Ok),
            OpResults::Tab(result) => usize::from(matches!(result, obol_core::channel::TabResult::Ok { .. })),
            OpResults::Put => 1,
        };
        ok += count as u64;
        if let Some(progress) = progress {
            progress.inc(count as u64);
        }
        Ok(())
    };
    for op in ops {
        in_flight.push_back(engine.submit_blocking(op)?);
        if in_flight.len() >= IN_FLIGHT_MAX {
            settle(in_flight.pop_front().context("queue")?)?;
        }
    }
    while let Some(receiver) = in_flight.pop_front() {
        settle(receiver)?;
    }
    Ok(ok)
}

fn engine_run(
    store: Box<dyn Store>,
    workload: Workload,
    args: &LedgerArgs,
    progress: &ProgressBar,
    audit: bool,
) -> anyhow::Result<f64> {
    let node = Node::open(store, rand::random())?;
    let node = if audit { node } else { node.without_audit() };
    let engine = Engine::start(node);
    let created = drive(&engine, account_ops(args.accounts), None)?;
    if created != args.accounts {
        bail!("only {created} of {} accounts were created", args.accounts);
    }
    let ops = transfer_ops(workload, args.accounts, args.transfers);
    let expected: u64 = ops.iter().map(|op| op.len() as u64).sum();
    let started = Instant::now();
    let ok = drive(&engine, ops, Some(progress))?;
    let elapsed = started.elapsed();
    engine.shutdown();
    if ok != expected {
        bail!("{ok} of {expected} transfers succeeded; the benchmark must measure real work");
    }
    Ok(ok as f64 / elapsed.as_secs_f64())
}

/// One embedded run; `audit: false` measures the same log without its audit tree (as a server
/// never runs), for the audit log's cost.
fn embedded_run(workload: Workload, args: &LedgerArgs, progress: &ProgressBar, audit: bool) -> anyhow::Result<f64> {
    let dir = args.data_dir.join(format!("run-{}", workload.name()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = SqliteStore::open(&dir)?;
    let tps = engine_run(Box::new(store), workload, args, progress, audit);
    let _ = std::fs::remove_dir_all(&dir);
    tps
}

/// A suffix that names this run's schemas, so that no schema the bench did not create is touched.
fn run_suffix() -> String {
    format!("{}_{:08x}", std::process::id(), rand::random::<u32>())
}

fn postgres_run(url: &str, workload: Workload, args: &LedgerArgs, progress: &ProgressBar) -> anyhow::Result<f64> {
    let schema = format!("obol_bench_{}_{}", workload.name(), run_suffix());
    let store = PgStore::open_in_schema(url, &schema)?;
    let tps = engine_run(Box::new(store), workload, args, progress, true);
    PgStore::drop_schema(url, &schema)?;
    tps
}

/// The naive baseline: per transfer, one SQL transaction that updates both balances (rows locked
/// in id order, so the two connections never deadlock) and inserts the transfer.
fn naive_run(url: &str, workload: Workload, args: &LedgerArgs, spinner: &ProgressBar) -> anyhow::Result<f64> {
    const CONNECTIONS: usize = 2;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let schema = format!("obol_naive_{}", run_suffix());
    runtime.block_on(async {
        let connect = || async { obol_store::connect_postgres(url).await };
        let setup = connect().await?;
        // CREATE SCHEMA (not IF NOT EXISTS): a name that exists is never taken over.
        setup
            .batch_execute(&format!(
                "CREATE SCHEMA {schema};
                 CREATE TABLE {schema}.accounts (id BIGINT PRIMARY KEY, debits_posted NUMERIC(39) NOT NULL DEFAULT 0, credits_posted NUMERIC(39) NOT NULL DEFAULT 0);
                 CREATE TABLE {schema}.transfers (id BIGINT PRIMARY KEY, debit_account_id BIGINT NOT NULL, credit_account_id BIGINT NOT NULL, amount NUMERIC(39) NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now());
                 INSERT INTO {schema}.accounts (id) SELECT g FROM generate_series(1, {}) g;",
                args.accounts
            ))
            .await?;
        setup.batch_execute(&format!("VACUUM ANALYZE {schema}.accounts")).await?;
        let deadline = Instant::now() + Duration::from_secs(args.naive_seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for connection_index in 0..CONNECTIONS {
            let mut client = connect().await?;
            let accounts = args.accounts;
            let spinner = spinner.clone();
            let schema = schema.clone();
            tasks.push(tokio::spawn(async move {
                let debit_sql = format!("UPDATE {schema}.accounts SET debits_posted = debits_posted + $2::BIGINT WHERE id = $1");
                let credit_sql = format!("UPDATE {schema}.accounts SET credits_posted = credits_posted + $2::BIGINT WHERE id = $1");
                let insert_sql = format!("INSERT INTO {schema}.transfers (id, debit_account_id, credit_account_id, amount) VALUES ($1, $2, $3, $4::BIGINT)");
                let debit_statement = client.prepare(&debit_sql).await?;
                let credit_statement = client.prepare(&credit_sql).await?;
                let insert_statement = client.prepare(&insert_sql).await?;
                let mut rng = Rng(0xD1B5_4A32_D192_ED03 ^ connection_index as u64 ^ workload as u64);
                let mut id = (connection_index as i64) << 40;
                let mut committed = 0u64;
                while Instant::now() < deadline {
                    let (debit, credit) = pair(&mut rng, workload, accounts);
                    let amount = 1 + rng.below(1000) as i64;
                    id += 1;
                    let transaction = client.transaction().await?;
                    let ordered = [(debit, &debit_statement), (credit, &credit_statement)];
                    let ordered = if debit < credit { ordered } else { [ordered[1], ordered[0]] };
                    for (account, statement) in ordered {
                        transaction.execute(statement, &[&(account as i64), &amount]).await?;
                    }
                    transaction.execute(&insert_statement, &[&id, &(debit as i64), &(credit as i64), &amount]).await?;
                    transaction.commit().await?;
                    committed += 1;
                    spinner.inc(1);
                }
                Ok::<u64, tokio_postgres::Error>(committed)
            }));
        }
        let mut committed = 0u64;
        for task in tasks {
            committed += task.await.context("naive baseline task")??;
        }
        let elapsed = started.elapsed();
        let _ = setup.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
        Ok(committed as f64 / elapsed.as_secs_f64())
    })
}

fn ledger(args: LedgerArgs) -> anyhow::Result<()> {
    if args.accounts < 2 {
        bail!("--accounts must be at least 2");
    }
    if args.transfers == 0 {
        bail!("--transfers must be at least 1");
    }
    let per_run = args.transfers.div_ceil(BATCH_EVENTS_MAX as u64) * BATCH_EVENTS_MAX as u64;
    let database_url = args.database_url.clone().filter(|_| !args.skip_postgres);
    let postgres = match &database_url {
        None => {
            if !args.skip_postgres {
                eprintln!(
                    "no --database-url (or OBOL_BENCH_DATABASE_URL): the PostgreSQL backend and the naive baseline \
                     are skipped; only the embedded store is measured"
                );
            }
            None
        }
        Some(url) if PgStore::ping(url).is_ok() => Some(url.as_str()),
        Some(url) => bail!("PostgreSQL at {} is not reachable", crate::serve::redact_url(url)),
    };
    let engine_runs = if postgres.is_some() { 6 } else { 4 };
    let progress = ProgressBar::new(per_run * engine_runs);
    progress.set_style(
        ProgressStyle::with_template("{msg:28} [{bar:30}] {human_pos}/{human_len} transfers {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut results = serde_json::Map::new();
    // Per workload: embedded, embedded without the audit log, PostgreSQL, naive PostgreSQL.
    type Row = (Workload, f64, f64, Option<f64>, Option<f64>);
    let mut table: Vec<Row> = Vec::new();
    for workload in [Workload::Uniform, Workload::Hot] {
        progress.set_message(format!("embedded {}, no audit log", workload.name()));
        let without_audit = embedded_run(workload, &args, &progress, false)?;
        progress.set_message(format!("embedded {}", workload.name()));
        let embedded = embedded_run(workload, &args, &progress, true)?;
        results.insert(format!("embedded_{}_tps", workload.name()), json!(embedded.round()));
        results.insert(format!("embedded_{}_no_audit_tps", workload.name()), json!(without_audit.round()));
        results.insert(
            format!("audit_on_vs_off_{}", workload.name()),
            json!((embedded / without_audit * 1000.0).round() / 1000.0),
        );
        let (pg, naive) = if let Some(url) = postgres {
            progress.set_message(format!("postgres {}", workload.name()));
            let pg = postgres_run(url, workload, &args, &progress)?;
            progress.set_message(format!("naive postgres {} ({} s)", workload.name(), args.naive_seconds));
            let spinner = ProgressBar::hidden();
            let naive = naive_run(url, workload, &args, &spinner)?;
            (Some(pg), Some(naive))
        } else {
            (None, None)
        };
        results.insert(format!("postgres_{}_tps", workload.name()), json!(pg.map(f64::round)));
        results.insert(format!("naive_pg_{}_tps", workload.name()), json!(naive.map(f64::round)));
        let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| (a / b * 10.0).round() / 10.0);
        results.insert(format!("embedded_vs_naive_{}", workload.name()), json!(ratio(Some(embedded), naive)));
        results.insert(format!("postgres_vs_naive_{}", workload.name()), json!(ratio(pg, naive)));
        table.push((workload, embedded, without_audit, pg, naive));
    }
    progress.finish_and_clear();
    let _ = std::fs::remove_dir_all(&args.data_dir);
    results.insert("transfers_per_run".into(), json!(per_run));
    results.insert("accounts".into(), json!(args.accounts));
    results.insert("batch_events".into(), json!(BATCH_EVENTS_MAX));
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    results.insert("cpus".into(), json!(cpus));
    if args.json {
        crate::outln!("{}", serde_json::Value::Object(results));
        return Ok(());
    }
    let fmt = |v: Option<f64>| v.map_or_else(|| "skipped".to_string(), |v| format!("{:.0}/s", v));
    let ratio =
        |a: Option<f64>, b: Option<f64>| a.zip(b).map_or_else(|| "-".to_string(), |(a, b)| format!("{:.1}x", a / b));
    crate::outln!(
        "obol bench ledger: {per_run} transfers per engine run in batches of {BATCH_EVENTS_MAX}, {} accounts, {} cpus",
        args.accounts,
        cpus
    );
    crate::outln!(
        "{:<14} {:>14} {:>18} {:>14} {:>14} {:>16} {:>16}",
        "workload",
        "embedded",
        "no audit (on/off)",
        "postgres",
        "naive pg",
        "embedded/naive",
        "postgres/naive"
    );
    for (workload, embedded, without_audit, pg, naive) in table {
        crate::outln!(
            "{:<14} {:>14} {:>18} {:>14} {:>14} {:>16} {:>16}",
            workload.name(),
            fmt(Some(embedded)),
            format!("{:.0}/s ({:.2})", without_audit, embedded / without_audit),
            fmt(pg),
            fmt(naive),
            ratio(Some(embedded), naive),
            ratio(pg, naive)
        );
    }
    Ok(())
}

pub(crate) fn percentile(sorted_ns: &[u64], fraction: f64) -> f64 {
    let index = ((sorted_ns.len() as f64 - 1.0) * fraction).round() as usize;
    sorted_ns.get(index).copied().unwrap_or(0) as f64 / 1000.0
}

/// `obol bench auth`.
fn auth(args: AuthArgs) -> anyhow::Result<()> {
    use axum::http::{HeaderMap, HeaderValue};
    use ed25519_dalek::{Signer, SigningKey};
    use obol_http::httpsig::{self, Message, ReplayGuard};
    if args.requests == 0 {
        bail!("--requests must be at least 1");
    }
    let signing_key = SigningKey::from_bytes(&[42u8; 32]);
    let public_key = signing_key.verifying_key().to_bytes();
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let progress = ProgressBar::new(args.requests as u64 * 2);
    progress.set_style(
        ProgressStyle::with_template("{msg:24} [{bar:30}] {human_pos}/{human_len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    progress.set_message("signing requests");
    // A realistic payment request: JSON body, content digest, authorization-free device call.
    let requests: Vec<(HeaderMap, String)> = (0..args.requests)
        .map(|index| -> anyhow::Result<(HeaderMap, String)> {
            let body = format!(
                r#"{{"id":"{index}","debit_account_id":"1","credit_account_id":"2","amount":"25","asset_code":"USD","asset_scale":9}}"#
            );
            let mut headers = HeaderMap::new();
            headers.insert("host", HeaderValue::from_static("obol.example"));
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            headers.insert(
                "content-digest",
                HeaderValue::from_str(&httpsig::content_digest(body.as_bytes())).context("content digest header")?,
            );
            let message = Message {
                method: "POST",
                scheme: "https",
                authority: "obol.example",
                path: "/v1/transfers",
                query: None,
                headers: &headers,
            };
            let nonce = format!("n{index}");
            let (input, signature) = httpsig::sign_request(
                &signing_key,
                "bench-device",
                &["@method", "@target-uri", "content-digest", "content-type"],
                now_s as i64,
                Some(&nonce),
                &message,
            )
            .context("signing a bench request")?;
            let mut headers = headers.clone();
            headers.insert("signature-input", HeaderValue::from_str(&input).context("signature-input header")?);
            headers.insert("signature", HeaderValue::from_str(&signature).context("signature header")?);
            progress.inc(1);
            Ok((headers, body))
        })
        .collect::<anyhow::Result<_>>()?;
    progress.set_message("verifying");
    let guard = ReplayGuard::new(now_s);
    let mut signed_ns = Vec::with_capacity(args.requests);
    let mut bases = Vec::with_capacity(args.requests);
    for (headers, body) in &requests {
        let started = Instant::now();
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let inputs = httpsig::parse_signature_input(header("signature-input").unwrap_or(""))?;
        let input = inputs.first().context("the signed request has no signature input")?;
        let signature = httpsig::parse_signature(header("signature").unwrap_or(""), &input.label)?;
        httpsig::check_content_digest(header("content-digest"), body.as_bytes())?;
        guard.check_time(input, now_s)?;
        let message = Message {
            method: "POST",
            scheme: "https",
            authority: "obol.example",
            path: "/v1/transfers",
            query: None,
            headers,
        };
        let base = httpsig::signature_base(input, &message)?;
        httpsig::verify_ed25519(&public_key, &base, &signature)?;
        guard.check_and_remember(input, &signature, now_s)?;
        signed_ns.push(started.elapsed().as_nanos() as u64);
        bases.push((base, signature));
        progress.inc(1);
    }
    progress.finish_and_clear();
    let verifying_key = signing_key.verifying_key();
    let raw: Vec<(Vec<u8>, ed25519_dalek::Signature)> =
        bases.iter().map(|(base, _)| (base.as_bytes().to_vec(), signing_key.sign(base.as_bytes()))).collect();
    let mut raw_ns = Vec::with_capacity(raw.len());
    for (message, signature) in &raw {
        let started = Instant::now();
        verifying_key.verify_strict(message, signature).map_err(|_| anyhow::anyhow!("raw verify failed"))?;
        raw_ns.push(started.elapsed().as_nanos() as u64);
    }
    signed_ns.sort_unstable();
    raw_ns.sort_unstable();
    let (signed_p50, signed_p99) = (percentile(&signed_ns, 0.5), percentile(&signed_ns, 0.99));
    let (raw_p50, raw_p99) = (percentile(&raw_ns, 0.5), percentile(&raw_ns, 0.99));
    let overhead = signed_p50 / raw_p50.max(0.001);
    if args.json {
        crate::outln!(
            "{}",
            json!({"requests": args.requests, "signed_request_p50_us": signed_p50, "signed_request_p99_us": signed_p99,
                   "dalek_verify_p50_us": raw_p50, "dalek_verify_p99_us": raw_p99, "signed_over_dalek_p50": (overhead * 100.0).round() / 100.0})
        );
        return Ok(());
    }
    crate::outln!("obol bench auth: {} device-signed requests (RFC 9421 + RFC 9530), same run", args.requests);
    crate::outln!("{:<34} {:>10} {:>10}", "", "p50 (µs)", "p99 (µs)");
    crate::outln!("{:<34} {:>10.1} {:>10.1}", "signed request, full check", signed_p50, signed_p99);
    crate::outln!("{:<34} {:>10.1} {:>10.1}", "ed25519-dalek verify_strict alone", raw_p50, raw_p99);
    crate::outln!("full check / bare verify at p50: {overhead:.2}x");
    Ok(())
}

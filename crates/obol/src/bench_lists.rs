//! `obol bench lists`: how long a list's page takes over loopback, against an account with a
//! long history: the first page, a filtered page, a page from the middle by time, and the
//! operator's lists of every account and every transfer.

use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

/// Options of `obol bench lists`.
#[derive(Args, Debug)]
pub struct ListsArgs {
    /// Transfers in the account's history (every one touches it).
    #[arg(long, default_value_t = 100_000)]
    transfers: u64,
    /// Requests timed per query.
    #[arg(long, default_value_t = 300)]
    requests: usize,
    /// Directory for the embedded store (removed afterwards).
    #[arg(long, default_value = "./obol-bench-lists")]
    data_dir: std::path::PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

fn amount(n: u64) -> u64 {
    (n * 7919) % 1000 + 1
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or(0.0)
}

/// `obol bench lists`
pub fn lists(args: ListsArgs) -> anyhow::Result<()> {
    if args.transfers < 2 || args.requests == 0 {
        bail!("--transfers must be at least 2 and --requests at least 1");
    }
    let _ = std::fs::remove_dir_all(&args.data_dir);
    let store = obol_store::SqliteStore::open(&args.data_dir).context("opening the bench store")?;
    let mut node = obol_store::Node::open(store, rand::random())?;
    let key = obol_app::auth::bootstrap_operator(&mut node, &obol_app::SystemEnv)?
        .context("a fresh store gets an operator key")?;
    let engine = obol_store::Engine::start(node);
    let state = obol_http::AppState::new(engine.clone(), "http").with_rate_limit(0, 0);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = obol_http::app(state);
    runtime.spawn(async move {
        let _ = axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await;
    });
    let http = obol_client::http_client(None)?;
    let result = runtime.block_on(async {
        let post = |path: &'static str, body: Value| {
            let request = http.post(format!("{base}{path}")).bearer_auth(&key).json(&body);
            async move {
                let response = request.send().await?;
                if !response.status().is_success() {
                    bail!("{path}: {} {}", response.status(), response.text().await.unwrap_or_default());
                }
                Ok(())
            }
        };
        for (id, flags) in [("9", json!([])), ("1", json!(["history"])), ("2", json!([]))] {
            post("/v1/accounts", json!({"id": id, "asset_code": "EUR", "asset_scale": 2, "flags": flags})).await?;
        }
        let bar = ProgressBar::new(args.transfers);
        bar.set_style(ProgressStyle::with_template("loading {bar:40} {pos}/{len} transfers")?);
        let mut n = 1u64;
        while n <= args.transfers {
            let last = (n + 8189).min(args.transfers);
            let transfers: Vec<Value> = (n..=last)
                .map(|i| {
                    let (from, to) = if i % 2 == 0 { ("9", "1") } else { ("1", "2") };
                    json!({"id": i.to_string(), "debit_account_id": from, "credit_account_id": to,
                           "amount": amount(i).to_string(), "asset_code": "EUR", "asset_scale": 2})
                })
                .collect();
            post("/v1/transfers/batch", json!({ "transfers": transfers })).await?;
            bar.set_position(last);
            n = last + 1;
        }
        bar.finish_and_clear();
        // The middle of the history, by time, for the "from" query.
        let middle_path = format!("/v1/transfers/{}", args.transfers / 2);
        let middle: Value = http.get(format!("{base}{middle_path}")).bearer_auth(&key).send().await?.json().await?;
        let middle_ns: u64 = middle.get("timestamp").and_then(Value::as_str).context("the middle transfer")?.parse()?;
        let queries = [
            ("history, first page of 100", "/v1/transfers?account=1&limit=100".to_string()),
            (
                "history, amount 500 to 600",
                "/v1/transfers?account=1&amount_min=500&amount_max=600&limit=100".to_string(),
            ),
            ("history, from the middle by time", format!("/v1/transfers?account=1&from_ns={middle_ns}&limit=100")),
            ("every transfer (operator)", "/v1/transfers?limit=100".to_string()),
            ("every account (operator)", "/v1/accounts?limit=100".to_string()),
        ];
        let mut rows = Vec::new();
        for (name, path) in queries {
            let mut times = Vec::with_capacity(args.requests);
            for _ in 0..args.requests {
                let started = Instant::now();
                let response = http.get(format!("{base}{path}")).bearer_auth(&key).send().await?;
                let status = response.status();
                let body = response.bytes().await?;
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                if !status.is_success() || body.is_empty() {
                    bail!("{path}: {status}");
                }
            }
            times.sort_by(f64::total_cmp);
            rows.push((name, percentile(&times, 0.5), percentile(&times, 0.99)));
        }
        Ok::<_, anyhow::Error>(rows)
    });
    engine.shutdown();
    let _ = std::fs::remove_dir_all(&args.data_dir);
    let rows = result?;
    if args.json {
        let rows: Vec<Value> =
            rows.iter().map(|(name, p50, p99)| json!({"query": name, "p50_ms": p50, "p99_ms": p99})).collect();
        crate::outln!("{}", json!({"transfers": args.transfers, "requests": args.requests, "queries": rows}));
    } else {
        crate::outln!(
            "obol bench lists: {} transfers in one account's history, {} sequential requests per query over loopback",
            args.transfers,
            args.requests
        );
        crate::outln!("{:<36} {:>10} {:>10}", "query", "p50 (ms)", "p99 (ms)");
        for (name, p50, p99) in rows {
            crate::outln!("{name:<36} {p50:>10.3} {p99:>10.3}");
        }
    }
    Ok(())
}

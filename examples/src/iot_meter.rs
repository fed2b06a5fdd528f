//! An IoT meter paying per reading. The meter is too small to sign every payment, so it signs one
//! PayWord commitment and then pays each reading it uploads with the next word of its hash chain:
//! the grid operator checks each payment with one SHA-256.

use axum::Router;
use axum::routing::post;
use obol_client::receipt;
use obol_http::x402::SCHEME_PAYWORD;

use crate::{Outcome, Sandbox, Target, dollars, step};

/// What uploading one reading costs: $0.000050.
pub const PRICE_PER_READING: u128 = 50_000;
/// Readings the meter uploads.
pub const READINGS: u32 = 48;
const GRID: u128 = 2_001;
const METER_ACCOUNT: u128 = 1_001;

/// Runs the scenario in this process.
pub async fn run() -> anyhow::Result<Outcome> {
    run_on(Target::Embedded).await
}

/// Runs the scenario on `target`.
pub async fn run_on(target: Target) -> anyhow::Result<Outcome> {
    let sandbox = Sandbox::start_on("iot-meter", &target, |seller| {
        let price = seller.price(PRICE_PER_READING, GRID, "Upload one meter reading", &[SCHEME_PAYWORD]);
        Router::new().route("/readings", post(|| async { "stored" }).layer(price))
    })
    .await?;
    sandbox.merchant(201, "Grid operator", GRID).await?;
    let config = sandbox.payer(101, "Meter 7", METER_ACCOUNT, 1_000_000_000).await?;
    step(&format!(
        "a meter funded with {}; the grid operator charges {} per reading",
        dollars(1_000_000_000),
        dollars(PRICE_PER_READING)
    ));
    let meter = sandbox.wallet(config);
    let budget = u128::from(READINGS) * PRICE_PER_READING;
    let grid = sandbox.id(GRID);
    meter.open_tab(grid, budget, 3_600).await?;
    meter.commit_payword(grid, READINGS, PRICE_PER_READING).await?;
    step(&format!("the meter escrows {} and signs one commitment to a {READINGS}-word hash chain", dollars(budget)));
    let client = obol_client::http_client(None)?;
    let mut paid_requests = 0;
    for reading in 1..=READINGS {
        let request = client.post(format!("{}/readings", sandbox.base)).body(format!("kWh={reading}.25")).build()?;
        let response = meter.fetch(request).await?;
        anyhow::ensure!(response.status() == 200, "reading {reading}: {}", response.status());
        anyhow::ensure!(receipt(&response).is_some_and(|r| r.success), "reading {reading} has no receipt");
        paid_requests += 1;
    }
    step(&format!("{READINGS} readings uploaded, each paid with one hash-chain word"));
    let settled = meter.settle(grid).await?;
    step(&format!(
        "tab settled: the grid operator collects {}",
        dollars(settled["cumulative"].as_str().unwrap_or("0").parse()?)
    ));
    let (_, merchant_received, _) = sandbox.balances(GRID).await?;
    let (payer_debited, _, _) = sandbox.balances(METER_ACCOUNT).await?;
    Ok(Outcome { paid_requests, paid_total: meter.spent_today(), merchant_received, payer_debited, refused: 0 })
}

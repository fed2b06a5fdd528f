//! A subscription as a recurring allowance: each month the subscriber escrows a $2.00 allowance in
//! a tab to the service; the service charges per use ($0.15 a call) against it; at the month's end
//! the tab settles (what was used goes to the service, the rest back) and a new month begins. A
//! call beyond the allowance is refused by the wallet, so the subscriber never pays more than it.

use axum::Router;
use axum::routing::get;
use obol_client::ClientError;
use obol_http::x402::SCHEME_VOUCHER;

use crate::{Outcome, Sandbox, Target, dollars, step};

/// Monthly allowance: $2.00.
pub const ALLOWANCE: u128 = 2_000_000_000;
/// Price of one call: $0.15.
pub const PRICE_PER_CALL: u128 = 150_000_000;
/// Calls made in each of three months (the third asks for more than the allowance covers).
pub const CALLS: [u32; 3] = [4, 9, 15];
const SERVICE: u128 = 2_004;
const SUBSCRIBER_ACCOUNT: u128 = 1_004;

/// Runs the scenario in this process.
pub async fn run() -> anyhow::Result<Outcome> {
    run_on(Target::Embedded).await
}

/// Runs the scenario on `target`.
pub async fn run_on(target: Target) -> anyhow::Result<Outcome> {
    let sandbox = Sandbox::start_on("subscription", &target, |seller| {
        let price = seller.price(PRICE_PER_CALL, SERVICE, "One translation", &[SCHEME_VOUCHER]);
        Router::new().route("/translate", get(|| async { "bonjour" }).layer(price))
    })
    .await?;
    sandbox.merchant(204, "Translation service", SERVICE).await?;
    let config = sandbox.payer(104, "Subscriber", SUBSCRIBER_ACCOUNT, 10_000_000_000).await?;
    let wallet = sandbox.wallet(config);
    let service = sandbox.id(SERVICE);
    step(&format!(
        "a subscriber with $10.00; allowance {} a month, {} a call",
        dollars(ALLOWANCE),
        dollars(PRICE_PER_CALL)
    ));
    let (mut paid_requests, mut refused) = (0, 0);
    for (month, calls) in CALLS.iter().enumerate() {
        wallet.open_tab(service, ALLOWANCE, 31 * 24 * 3600).await?;
        let mut used = 0;
        for _ in 0..*calls {
            match wallet.get(&format!("{}/translate", sandbox.base)).await {
                Ok(response) if response.status() == 200 => {
                    used += 1;
                    paid_requests += 1;
                }
                Ok(response) => anyhow::bail!("call answered {}", response.status()),
                Err(ClientError::SpendLimit(_)) => refused += 1,
                Err(other) => return Err(other.into()),
            }
        }
        let settled = wallet.settle(service).await?;
        step(&format!(
            "month {}: {used} of {calls} calls within the allowance; settled {}",
            month + 1,
            dollars(settled["cumulative"].as_str().unwrap_or("0").parse()?)
        ));
    }
    let (_, merchant_received, _) = sandbox.balances(SERVICE).await?;
    let (payer_debited, _, payer_pending) = sandbox.balances(SUBSCRIBER_ACCOUNT).await?;
    anyhow::ensure!(payer_pending == 0, "no allowance is left held after the last month");
    Ok(Outcome { paid_requests, paid_total: wallet.spent_today(), merchant_received, payer_debited, refused })
}

//! A micro-donation stream: a viewer tips two streamers $0.001 for every minute watched, one
//! PayWord tick per minute into a tab to each, and settles both when done.

use axum::Router;
use axum::routing::post;
use obol_client::Wallet;
use obol_http::x402::{PaymentLayer, Price, SCHEME_PAYWORD};

use crate::{Outcome, Sandbox, dollars, step, usd};

/// One minute's tip: $0.001.
pub const TIP_PER_MINUTE: u128 = 1_000_000;
/// Minutes watched of each stream.
pub const MINUTES: [u32; 2] = [30, 12];
const STREAMERS: [u128; 2] = [2_005, 2_006];
const VIEWER_ACCOUNT: u128 = 1_005;

/// Runs the scenario.
pub async fn run() -> anyhow::Result<Outcome> {
    // Risk off here alone: the scenario plays 42 minutes of tips in milliseconds, a burst the
    // shipped card-testing rule blocks, rightly, for a real payer (a tip a minute never trips it).
    let sandbox = Sandbox::start_without_risk("donations", |state| {
        let mut router = Router::new();
        for (n, streamer) in STREAMERS.iter().enumerate() {
            let price =
                Price::new(TIP_PER_MINUTE, usd(), *streamer, "One minute of thanks").with_schemes(&[SCHEME_PAYWORD]);
            router = router.route(
                &format!("/streams/{n}/tip"),
                post(|| async { "thank you!" }).layer(PaymentLayer::new(state.clone(), price)),
            );
        }
        router
    })
    .await?;
    for (n, streamer) in STREAMERS.iter().enumerate() {
        sandbox.merchant(205 + n as u128, &format!("Streamer {n}"), *streamer).await?;
    }
    let config = sandbox.payer(105, "Viewer", VIEWER_ACCOUNT, 1_000_000_000).await?;
    let viewer = Wallet::new(config)?;
    step(&format!("a viewer tips {} a minute to two streamers", dollars(TIP_PER_MINUTE)));
    let client = obol_client::http_client(None)?;
    let mut paid_requests = 0;
    // The viewer opens both streams first, then watches both.
    for (streamer, minutes) in STREAMERS.iter().zip(MINUTES) {
        viewer.open_tab(*streamer, u128::from(minutes) * TIP_PER_MINUTE, 4 * 3600).await?;
        viewer.commit_payword(*streamer, minutes, TIP_PER_MINUTE).await?;
    }
    // Both streams play at once: each minute tips every streamer still being watched.
    let longest = MINUTES.iter().copied().max().unwrap_or(0);
    for minute in 0..longest {
        for (n, minutes) in MINUTES.iter().enumerate() {
            if minute >= *minutes {
                continue;
            }
            let request = client.post(format!("{}/streams/{n}/tip", sandbox.base)).build()?;
            let response = viewer.fetch(request).await?;
            anyhow::ensure!(response.status() == 200, "tip {minute} to streamer {n}: {}", response.status());
            paid_requests += 1;
        }
    }
    for (n, (streamer, minutes)) in STREAMERS.iter().zip(MINUTES).enumerate() {
        let settled = viewer.settle(*streamer).await?;
        step(&format!(
            "streamer {n}: {minutes} minutes, {} settled",
            dollars(settled["cumulative"].as_str().unwrap_or("0").parse()?)
        ));
    }
    let merchant_received = STREAMERS.iter().map(|s| sandbox.balances(*s).1).sum();
    let (payer_debited, _, _) = sandbox.balances(VIEWER_ACCOUNT);
    Ok(Outcome { paid_requests, paid_total: viewer.spent_today(), merchant_received, payer_debited, refused: 0 })
}

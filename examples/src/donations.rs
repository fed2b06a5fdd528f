//! A micro-donation stream: a viewer tips two streamers $0.001 for every minute watched, one
//! PayWord tick per minute into a tab to each, and settles both when done.

use axum::Router;
use axum::routing::post;
use obol_client::receipt;
use obol_http::x402::SCHEME_PAYWORD;

use crate::{Outcome, Sandbox, Target, dollars, step};

/// One minute's tip: $0.001.
pub const TIP_PER_MINUTE: u128 = 1_000_000;
/// Minutes watched of each stream.
pub const MINUTES: [u32; 2] = [30, 12];
const STREAMERS: [u128; 2] = [2_005, 2_006];
const VIEWER_ACCOUNT: u128 = 1_005;

/// Runs the scenario in this process.
pub async fn run() -> anyhow::Result<Outcome> {
    run_on(Target::Embedded).await
}

/// Runs the scenario on `target`.
pub async fn run_on(target: Target) -> anyhow::Result<Outcome> {
    let sandbox = Sandbox::start_on("donations", &target, |seller| {
        let mut router = Router::new();
        for (n, streamer) in STREAMERS.iter().enumerate() {
            let price = seller.price(TIP_PER_MINUTE, *streamer, "One minute of thanks", &[SCHEME_PAYWORD]);
            router = router.route(&format!("/streams/{n}/tip"), post(|| async { "thank you!" }).layer(price));
        }
        router
    })
    .await?;
    for (n, streamer) in STREAMERS.iter().enumerate() {
        sandbox.merchant(205 + n as u128, &format!("Streamer {n}"), *streamer).await?;
    }
    let config = sandbox.payer(105, "Viewer", VIEWER_ACCOUNT, 1_000_000_000).await?;
    let viewer = sandbox.wallet(config);
    step(&format!("a viewer tips {} a minute to two streamers", dollars(TIP_PER_MINUTE)));
    let client = obol_client::http_client(None)?;
    let mut paid_requests = 0;
    // The viewer opens both streams first, then watches both.
    for (streamer, minutes) in STREAMERS.iter().zip(MINUTES) {
        viewer.open_tab(sandbox.id(*streamer), u128::from(minutes) * TIP_PER_MINUTE, 4 * 3600).await?;
        viewer.commit_payword(sandbox.id(*streamer), minutes, TIP_PER_MINUTE).await?;
    }
    // Both streams play at once: each minute tips every streamer still being watched.
    let longest = MINUTES.iter().copied().max().unwrap_or(0);
    for minute in 0..longest {
        for (n, minutes) in MINUTES.iter().enumerate() {
            if minute >= *minutes {
                continue;
            }
            let tip = || client.post(format!("{}/streams/{n}/tip", sandbox.base)).build();
            let mut response = viewer.fetch(tip()?).await?;
            let why = |response: &reqwest::Response| receipt(response).and_then(|r| r.error_reason).unwrap_or_default();
            if response.status() == 402 && why(&response) == "tab_paused_for_review" {
                // The whole evening plays in a moment here, and the risk engine on the server
                // reads the burst to two payees as it should: it pauses a tab for review. The
                // paused tip was not taken; the operator looks and approves, and the viewer's
                // next tip goes through.
                let streamer = sandbox.id(STREAMERS.get(n).copied().unwrap_or_default());
                let tab = viewer.tab(streamer).ok_or_else(|| anyhow::anyhow!("no tab to streamer {n}"))?;
                for rule in sandbox.approve_tab_reviews(tab.id).await? {
                    step(&format!(
                        "minute {minute}: streamer {n}'s tab paused for review ({rule}); the operator approves"
                    ));
                }
                response = viewer.fetch(tip()?).await?;
            }
            if response.status() != 200 {
                anyhow::bail!("tip {minute} to streamer {n}: {} {}", response.status(), why(&response));
            }
            paid_requests += 1;
        }
    }
    for (n, (streamer, minutes)) in STREAMERS.iter().zip(MINUTES).enumerate() {
        let settled = viewer.settle(sandbox.id(*streamer)).await?;
        step(&format!(
            "streamer {n}: {minutes} minutes, {} settled",
            dollars(settled["cumulative"].as_str().unwrap_or("0").parse()?)
        ));
    }
    let mut merchant_received = 0;
    for streamer in STREAMERS {
        merchant_received += sandbox.balances(streamer).await?.1;
    }
    let (payer_debited, _, _) = sandbox.balances(VIEWER_ACCOUNT).await?;
    Ok(Outcome { paid_requests, paid_total: viewer.spent_today(), merchant_received, payer_debited, refused: 0 })
}

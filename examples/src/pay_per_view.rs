//! Pay-per-view: a reader's browser wallet reads articles at $0.0004 each. The first article it
//! opens makes the wallet open a small tab to the newspaper by itself; each article is then paid
//! with a signed cumulative voucher, and the newspaper settles once at the end.

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use obol_client::{SpendLimits, receipt};
use obol_http::x402::SCHEME_VOUCHER;

use crate::{Outcome, Sandbox, Target, dollars, step};

/// Price of one article: $0.0004.
pub const PRICE_PER_ARTICLE: u128 = 400_000;
/// Articles the reader opens.
pub const ARTICLES: u32 = 5;
const NEWSPAPER: u128 = 2_002;
const READER_ACCOUNT: u128 = 1_002;

/// Runs the scenario in this process.
pub async fn run() -> anyhow::Result<Outcome> {
    run_on(Target::Embedded).await
}

/// Runs the scenario on `target`.
pub async fn run_on(target: Target) -> anyhow::Result<Outcome> {
    let sandbox = Sandbox::start_on("pay-per-view", &target, |seller| {
        let price = seller.price(PRICE_PER_ARTICLE, NEWSPAPER, "One article", &[SCHEME_VOUCHER]);
        Router::new().route(
            "/articles/{slug}",
            get(|Path(slug): Path<String>| async move { format!("The full text of {slug}.") }).layer(price),
        )
    })
    .await?;
    sandbox.merchant(202, "Daily Obol", NEWSPAPER).await?;
    let mut config = sandbox.payer(102, "Reader", READER_ACCOUNT, 100_000_000).await?;
    config.auto_tab_budget = 10 * PRICE_PER_ARTICLE;
    config.limits = SpendLimits { per_request_max: 1_000_000, per_tab_max: 5_000_000, per_day_max: 20_000_000 };
    step("a reader with $0.10; the wallet may open tabs of up to $0.005 and spend $0.02 a day");
    let wallet = sandbox.wallet(config);
    let mut paid_requests = 0;
    for n in 1..=ARTICLES {
        let response = wallet.get(&format!("{}/articles/story-{n}", sandbox.base)).await?;
        anyhow::ensure!(response.status() == 200, "article {n}: {}", response.status());
        let paid = receipt(&response).ok_or_else(|| anyhow::anyhow!("article {n}: no receipt"))?;
        step(&format!(
            "article {n}: 402, paid {} by voucher, then read ({})",
            dollars(PRICE_PER_ARTICLE),
            paid.transaction
        ));
        paid_requests += 1;
    }
    let settled = wallet.settle(sandbox.id(NEWSPAPER)).await?;
    step(&format!(
        "the tab settles: {} to the newspaper, the rest of the escrow back to the reader",
        dollars(settled["cumulative"].as_str().unwrap_or("0").parse()?)
    ));
    let (_, merchant_received, _) = sandbox.balances(NEWSPAPER).await?;
    let (payer_debited, _, _) = sandbox.balances(READER_ACCOUNT).await?;
    Ok(Outcome { paid_requests, paid_total: wallet.spent_today(), merchant_received, payer_debited, refused: 0 })
}

//! An in-game item purchase: a one-off $0.99 sword, paid with a single ledger transfer (x402
//! scheme `exact`) that the player's device signs. The parent set a daily limit of $1.50 on the
//! wallet, so a second sword the same day is refused by the wallet before anything is signed.

use axum::Router;
use axum::routing::post;
use obol_client::{ClientError, Preference, SpendLimits, receipt};
use obol_http::x402::SCHEME_EXACT;

use crate::{Outcome, Sandbox, Target, dollars, step};

/// Price of the sword: $0.99.
pub const PRICE: u128 = 990_000_000;
const STUDIO: u128 = 2_003;
const PLAYER_ACCOUNT: u128 = 1_003;

/// Runs the scenario in this process.
pub async fn run() -> anyhow::Result<Outcome> {
    run_on(Target::Embedded).await
}

/// Runs the scenario on `target`.
pub async fn run_on(target: Target) -> anyhow::Result<Outcome> {
    let sandbox = Sandbox::start_on("game-item", &target, |seller| {
        let price = seller.price(PRICE, STUDIO, "A sword", &[SCHEME_EXACT]);
        Router::new().route("/items/sword", post(|| async { "sword added to your inventory" }).layer(price))
    })
    .await?;
    sandbox.merchant(203, "Game studio", STUDIO).await?;
    let mut config = sandbox.payer(103, "Player", PLAYER_ACCOUNT, 5_000_000_000).await?;
    config.preference = Preference::Exact;
    config.limits = SpendLimits { per_day_max: 1_500_000_000, ..SpendLimits::default() };
    step("a player with $5.00; the parent set a daily limit of $1.50");
    let wallet = sandbox.wallet(config);
    let client = obol_client::http_client(None)?;
    let buy = || client.post(format!("{}/items/sword", sandbox.base)).build();
    let response = wallet.fetch(buy()?).await?;
    anyhow::ensure!(response.status() == 200, "purchase: {}", response.status());
    let paid = receipt(&response).ok_or_else(|| anyhow::anyhow!("no receipt"))?;
    step(&format!("bought a sword for {} in one ledger transfer ({})", dollars(PRICE), paid.transaction));
    let refused = match wallet.fetch(buy()?).await {
        Err(ClientError::SpendLimit(why)) => {
            step(&format!("a second sword is refused by the wallet: {why}"));
            1
        }
        Ok(response) => anyhow::bail!("the second purchase went through: {}", response.status()),
        Err(other) => return Err(other.into()),
    };
    let (_, merchant_received, _) = sandbox.balances(STUDIO).await?;
    let (payer_debited, _, _) = sandbox.balances(PLAYER_ACCOUNT).await?;
    Ok(Outcome { paid_requests: 1, paid_total: wallet.spent_today(), merchant_received, payer_debited, refused })
}

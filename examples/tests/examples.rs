//! Goal: every example runs end to end and its money adds up: the merchant receives exactly what
//! the payer's wallet paid and the payer's account is debited exactly that, no more.
//! Method: each scenario's `run` (what its binary's `main` runs), on a real server over loopback.

use obol_examples::{Outcome, donations, game_item, iot_meter, pay_per_view, subscription};

fn paid(outcome: &Outcome, requests: u32, total: u128) {
    assert_eq!(outcome.paid_requests, requests, "{outcome:?}");
    assert_eq!(outcome.paid_total, total, "{outcome:?}");
    assert_eq!(outcome.merchant_received, total, "the merchant gets exactly what was paid: {outcome:?}");
    assert_eq!(outcome.payer_debited, total, "the payer loses exactly what it paid: {outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iot_meter_pays_every_reading_with_one_tick() {
    let outcome = iot_meter::run().await.unwrap();
    paid(&outcome, iot_meter::READINGS, u128::from(iot_meter::READINGS) * iot_meter::PRICE_PER_READING);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_pays_per_article_from_a_tab_the_wallet_opened() {
    let outcome = pay_per_view::run().await.unwrap();
    paid(&outcome, pay_per_view::ARTICLES, u128::from(pay_per_view::ARTICLES) * pay_per_view::PRICE_PER_ARTICLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_item_is_bought_and_the_second_is_stopped_by_the_daily_limit() {
    let outcome = game_item::run().await.unwrap();
    paid(&outcome, 1, game_item::PRICE);
    assert_eq!(outcome.refused, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_never_charges_beyond_the_monthly_allowance() {
    let outcome = subscription::run().await.unwrap();
    let per_month_max = (subscription::ALLOWANCE / subscription::PRICE_PER_CALL) as u32;
    let served: u32 = subscription::CALLS.iter().map(|calls| (*calls).min(per_month_max)).sum();
    paid(&outcome, served, u128::from(served) * subscription::PRICE_PER_CALL);
    assert_eq!(outcome.refused, subscription::CALLS.iter().sum::<u32>() - served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_tips_each_streamer_per_minute() {
    let outcome = donations::run().await.unwrap();
    let minutes: u32 = donations::MINUTES.iter().sum();
    paid(&outcome, minutes, u128::from(minutes) * donations::TIP_PER_MINUTE);
}

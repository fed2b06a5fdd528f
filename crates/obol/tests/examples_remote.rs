//! Goal: the five examples run against a separately started `obol serve`, with its risk engine on
//! as shipped, one after another on the same server, and each one's money adds up there: the
//! merchant receives exactly what the payer's wallet paid and the payer is debited exactly that.
//! Method: the real binary on a fresh data directory, then each scenario's `run_on` (what its
//! binary runs with `--server`) with the operator key the server printed. The merchants' routes
//! run in this process and settle through the server's facilitator with their own keys; balances
//! are read over the API.

mod support;

use obol_examples::{Outcome, Target, donations, game_item, iot_meter, pay_per_view, subscription};

fn paid(name: &str, outcome: &Outcome, requests: u32, total: u128) {
    assert_eq!(outcome.paid_requests, requests, "{name}: {outcome:?}");
    assert_eq!(outcome.paid_total, total, "{name}: {outcome:?}");
    assert_eq!(outcome.merchant_received, total, "{name}: the merchant gets exactly what was paid: {outcome:?}");
    assert_eq!(outcome.payer_debited, total, "{name}: the payer loses exactly what it paid: {outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_five_examples_run_against_a_running_server_with_risk_on() {
    let dir = std::env::temp_dir().join(format!("obol-examples-remote-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = Stopped(support::launch(["--listen", "127.0.0.1:0", "--data-dir", dir.to_str().unwrap()]));
    let server = &server.0;
    let target = Target::Remote {
        server: server.base.clone(),
        operator_key: server.key.clone().expect("a fresh server prints its operator key"),
        ca_cert_pem: None,
    };

    let outcome = iot_meter::run_on(target.clone()).await.unwrap();
    paid("iot-meter", &outcome, iot_meter::READINGS, u128::from(iot_meter::READINGS) * iot_meter::PRICE_PER_READING);

    let outcome = pay_per_view::run_on(target.clone()).await.unwrap();
    let total = u128::from(pay_per_view::ARTICLES) * pay_per_view::PRICE_PER_ARTICLE;
    paid("pay-per-view", &outcome, pay_per_view::ARTICLES, total);

    let outcome = game_item::run_on(target.clone()).await.unwrap();
    paid("game-item", &outcome, 1, game_item::PRICE);
    assert_eq!(outcome.refused, 1, "the second sword is over the daily limit");

    let outcome = subscription::run_on(target.clone()).await.unwrap();
    let per_month_max = (subscription::ALLOWANCE / subscription::PRICE_PER_CALL) as u32;
    let served: u32 = subscription::CALLS.iter().map(|calls| (*calls).min(per_month_max)).sum();
    paid("subscription", &outcome, served, u128::from(served) * subscription::PRICE_PER_CALL);

    let outcome = donations::run_on(target.clone()).await.unwrap();
    let minutes: u32 = donations::MINUTES.iter().sum();
    paid("donations", &outcome, minutes, u128::from(minutes) * donations::TIP_PER_MINUTE);

    // The same scenario twice on one server: each run draws its own ids, so the second neither
    // collides with the first nor counts its money.
    let outcome = pay_per_view::run_on(target).await.unwrap();
    paid("pay-per-view, again", &outcome, pay_per_view::ARTICLES, total);

    let _ = std::fs::remove_dir_all(&dir);
}

/// The server, stopped when the test ends, however it ends.
struct Stopped(support::Launched);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }
}

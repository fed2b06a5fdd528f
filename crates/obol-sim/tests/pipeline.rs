//! Goal: whatever payers, payees and analysts do, and whenever the store crashes, every ledger
//! movement belongs to a request whose final answer to its client was success, or "held" and
//! then approved; never to one answered with a refusal. Counters equal a recount from the
//! ledger and a replay of the log; the policy the API accepted is live after every restart.
//! Method: `obol_sim::pipeline::run` over many seeds (or OBOL_SEED, to replay one): payments of
//! every kind (transfers, x402 `exact`, tabs paid by vouchers and ticks, top-ups), retries with
//! the same id, holds, approvals, declines, policy changes and injected crashes, through the
//! application layer with the shipped risk policy on; its auditor checks after every restart.

use obol_sim::Faults;
use obol_sim::pipeline::{PipelineSummary, run};

const FAULTS: Faults = Faults { crash_before_write: 8, torn_write: 6, crash_after_write: 8 };

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_movement_belongs_to_a_request_told_success_or_held_then_approved() {
    let seeds: Vec<u64> = match std::env::var("OBOL_SEED") {
        Ok(seed) => vec![seed.parse().expect("OBOL_SEED is a u64")],
        Err(_) => (0..24).map(|i| 0x5EED_0000 + i).collect(),
    };
    let mut total = PipelineSummary::default();
    for seed in seeds {
        let summary = match run(seed, 300, FAULTS).await {
            Ok(summary) => summary,
            Err(failure) => panic!("{failure}"),
        };
        total.requests += summary.requests;
        total.succeeded += summary.succeeded;
        total.held += summary.held;
        total.refused += summary.refused;
        total.lost += summary.lost;
        total.approved += summary.approved;
        total.declined += summary.declined;
        total.policies_accepted += summary.policies_accepted;
        total.restarts += summary.restarts;
        total.tab_payments += summary.tab_payments;
        total.stepped_up += summary.stepped_up;
    }
    eprintln!("pipeline simulation totals: {total:?}");
    // The workload exercises what it claims to.
    assert!(total.succeeded > 1_000, "{total:?}");
    assert!(total.held > 50 && total.approved > 10 && total.declined > 10, "{total:?}");
    assert!(total.refused > 50 && total.lost > 5, "{total:?}");
    assert!(total.tab_payments > 300 && total.policies_accepted > 20, "{total:?}");
    assert!(total.restarts > 48, "{total:?}");
    assert!(total.stepped_up > 50, "{total:?}");
}

//! Goal: no seed makes the node lose, invent or mis-account money across crashes and torn writes.
//! Method: `obol_sim::run` over many seeds (or the one in OBOL_SEED, to replay a failure); each
//! run's auditor checks every reply and the state after every restart.

#[test]
fn many_seeds_survive_crashes_and_torn_writes() {
    let seeds: Vec<u64> = match std::env::var("OBOL_SEED") {
        Ok(seed) => vec![seed.parse().expect("OBOL_SEED is a u64")],
        Err(_) => {
            let base: u64 = std::env::var("OBOL_SIM_BASE").ok().and_then(|b| b.parse().ok()).unwrap_or(0x0B01);
            (0..96).map(|i| base.wrapping_mul(6364136223846793005).wrapping_add(i)).collect()
        }
    };
    let mut total = obol_sim::Summary::default();
    for seed in seeds {
        match obol_sim::run(seed, 400) {
            Ok(summary) => {
                total.records_acked += summary.records_acked;
                total.transfers_ok += summary.transfers_ok;
                total.restarts += summary.restarts;
                total.unacked_records_kept += summary.unacked_records_kept;
                total.torn_tails += summary.torn_tails;
            }
            Err(failure) => {
                panic!("seed {seed} failed: {failure}\nreplay: OBOL_SEED={seed} cargo test --release -p obol-sim")
            }
        }
    }
    eprintln!("simulation totals: {total:?}");
    // The workload must exercise what it claims to.
    assert!(total.transfers_ok > 1000, "{total:?}");
    assert!(total.restarts > 10, "{total:?}");
    assert!(total.torn_tails > 0, "{total:?}");
    assert!(total.unacked_records_kept > 0, "{total:?}");
}

#[test]
fn a_seed_replays_exactly() {
    assert_eq!(obol_sim::run(42, 200), obol_sim::run(42, 200));
}

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

/// Regression: after a storage failure the writer refused jobs until every engine handle was
/// gone, and `Engine::shutdown` (which holds one) waited for it forever.
#[test]
fn an_engine_whose_store_failed_still_shuts_down() {
    use obol_core::record::Op;
    use obol_core::table::Put;
    let disk = std::sync::Arc::default();
    let faults = obol_sim::Faults { crash_before_write: 1000, torn_write: 0, crash_after_write: 0 };
    let node = obol_store::Node::open(obol_sim::FaultyStore::new(disk, 7, faults), 7).expect("an empty disk opens");
    let engine = obol_store::Engine::start(node);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let put = || Op::Put(Put { key: "k".into(), value: vec![1] });
    assert!(runtime.block_on(engine.execute(put())).is_err(), "the write crashed");
    assert!(engine.is_stopped());
    assert!(runtime.block_on(engine.execute(put())).is_err(), "a stopped engine refuses");
    let clone = engine.clone();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        engine.shutdown();
        let _ = done.send(());
    });
    assert!(finished.recv_timeout(std::time::Duration::from_secs(10)).is_ok(), "shutdown returned");
    drop(clone);
}

//! `cargo run --release -p obol-examples --bin subscription`: A subscription as a recurring monthly allowance.

fn main() -> anyhow::Result<()> {
    obol_examples::run_main("A subscription as a recurring monthly allowance", obol_examples::subscription::run_on)
}

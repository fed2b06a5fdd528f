//! `cargo run --release -p obol-examples --bin pay-per-view`: Pay-per-view: articles at $0.0004, paid by voucher.

fn main() -> anyhow::Result<()> {
    obol_examples::run_main("Pay-per-view: articles at $0.0004, paid by voucher", obol_examples::pay_per_view::run_on)
}

//! `cargo run --release -p obol-examples --bin donations`: A micro-donation stream: a tip per minute watched.

fn main() -> anyhow::Result<()> {
    obol_examples::run_main("A micro-donation stream: a tip per minute watched", obol_examples::donations::run_on)
}

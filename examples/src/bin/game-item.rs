//! `cargo run --release -p obol-examples --bin game-item`: An in-game item: a one-off $0.99 purchase, within a parent's daily limit.

fn main() -> anyhow::Result<()> {
    obol_examples::run_main(
        "An in-game item: a one-off $0.99 purchase, within a parent's daily limit",
        obol_examples::game_item::run_on,
    )
}

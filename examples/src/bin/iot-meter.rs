//! `cargo run --release -p obol-examples --bin iot-meter`: An IoT meter pays per reading with PayWord ticks.

fn main() -> anyhow::Result<()> {
    obol_examples::run_main("An IoT meter pays per reading with PayWord ticks", obol_examples::iot_meter::run_on)
}

//! `cargo run -p xtask -- tidy`: the repository checks, from the command line.

fn main() -> std::process::ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("tidy") => {
            let problems = xtask::tidy(&xtask::root());
            for problem in &problems {
                eprintln!("{problem}");
            }
            if problems.is_empty() {
                println!("tidy: ok");
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        _ => {
            eprintln!("usage: cargo run -p xtask -- tidy");
            std::process::ExitCode::FAILURE
        }
    }
}

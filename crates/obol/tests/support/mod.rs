//! Shared by the tests that run the real `obol` binary: start `obol serve` and read where it
//! listens and the operator key it prints on first start.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running `obol serve`.
pub struct Launched {
    /// The process (its stdout is drained in the background).
    pub child: Child,
    /// `http://127.0.0.1:PORT` or `https://...`.
    pub base: String,
    /// The operator key, if this start created one.
    pub key: Option<String>,
}

/// Starts `obol serve ARGS` with warnings-only logging and waits until it listens.
pub fn launch<I, S>(args: I) -> Launched
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    launch_with(args, &[("OBOL_LOG", "warn")], Stdio::inherit())
}

/// Like [`launch`], with extra environment and a chosen stderr.
pub fn launch_with<I, S>(args: I, env: &[(&str, &str)], stderr: Stdio) -> Launched
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(env!("CARGO_BIN_EXE_obol"));
    command.arg("serve").args(args).stdout(Stdio::piped()).stderr(stderr);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn obol serve");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut key = None;
    let base = loop {
        let line = lines.next().expect("obol serve exited before listening").expect("read stdout");
        if line.trim().starts_with("obol_live_") {
            key = Some(line.trim().to_string());
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().expect("address").to_string();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Launched { child, base, key }
}

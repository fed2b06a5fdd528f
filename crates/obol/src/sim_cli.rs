//! `obol sim traffic`: simulated payments with injected fraud, as CSV, for feature development,
//! training, demos and load tests.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use obol_risk::sim::{SimConfig, simulate};

/// `obol sim ...`
#[derive(Subcommand, Debug)]
pub enum SimCommand {
    /// Simulate customers, devices, merchants and networks paying over some days, with injected
    /// fraud (account takeover, card testing, cloned device, velocity abuse, one-cell cluster,
    /// compromised payee, compromised payer), and write one CSV row per payment. A fraud's
    /// `label_known_s` is when its label became known, days after the payment. The same seed
    /// always gives the same file.
    ///
    /// Example: obol sim traffic --customers 2000 --days 30 --seed 7 --out traffic.csv
    Traffic(TrafficArgs),
}

/// Options of `obol sim traffic`.
#[derive(Args, Debug)]
pub struct TrafficArgs {
    /// Where to write the CSV.
    #[arg(long)]
    out: PathBuf,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Customers.
    #[arg(long, default_value_t = 2_000)]
    customers: u32,
    /// Merchants (a fifth of them sell cash-like goods).
    #[arg(long, default_value_t = 200)]
    merchants: u32,
    /// Days.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Fraud incidents of each kind per day.
    #[arg(long, default_value_t = 2)]
    incidents_per_day: u32,
    /// Fewest and most days before a fraud's label becomes known, as MIN-MAX.
    #[arg(long, default_value = "1-7", value_parser = parse_days)]
    label_delay_days: (u32, u32),
}

fn parse_days(text: &str) -> Result<(u32, u32), String> {
    let (low, high) = text.split_once('-').unwrap_or((text, text));
    let day = |t: &str| t.trim().parse::<u32>().map_err(|_| format!("{text:?}: expected days as MIN-MAX, e.g. 1-7"));
    let (low, high) = (day(low)?, day(high)?);
    if low > high {
        return Err(format!("{text:?}: the fewest days ({low}) are more than the most ({high})"));
    }
    Ok((low, high))
}

/// Runs a sim command.
pub fn run(command: SimCommand) -> anyhow::Result<()> {
    match command {
        SimCommand::Traffic(args) => traffic(args),
    }
}

fn traffic(args: TrafficArgs) -> anyhow::Result<()> {
    let config = SimConfig {
        seed: args.seed,
        customers: args.customers,
        merchants: args.merchants,
        days: args.days,
        incidents_per_day: args.incidents_per_day,
        label_delay_days: args.label_delay_days,
        ..SimConfig::default()
    };
    let spinner = crate::out::spinner(format!(
        "simulating {} customers and {} merchants over {} days",
        args.customers, args.merchants, args.days
    ));
    let events = simulate(&config);
    spinner.finish_and_clear();
    let file = std::fs::File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(
        out,
        "time_s,payer,device,payee,network,amount_minor,failed_auth_count,payee_cash_like,label,fraud_kind,label_known_s"
    )?;
    let mut frauds = 0;
    for sim in &events {
        let e = &sim.event;
        let (label, kind, known) = match sim.fraud {
            Some(kind) => (1, kind.as_str(), sim.label_known_s.to_string()),
            None => (0, "", String::new()),
        };
        frauds += label;
        writeln!(
            out,
            "{},{},{},{},{},{},{},{},{label},{kind},{known}",
            e.at_s,
            e.payer,
            e.device.map_or(String::new(), |d| d.to_string()),
            e.payee,
            e.network.map_or(String::new(), |n| n.to_string()),
            e.amount_iso_minor,
            e.failed_auth_count,
            u8::from(e.payee_cash_like),
        )?;
    }
    out.flush()?;
    eprintln!(
        "wrote {} payments ({frauds} fraudulent) from {} customers over {} days to {} (seed {})",
        events.len(),
        args.customers,
        args.days,
        args.out.display(),
        args.seed
    );
    Ok(())
}

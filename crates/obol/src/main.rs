//! The `obol` binary: the server, a command-line client for it, and benchmarks.
//!
//! This crate is the only place that reads configuration, chooses a store, installs signal
//! handlers and uses `anyhow`; everything below it returns typed errors.

mod alloc;
mod audit_cli;
#[macro_use]
mod out;
mod bench;
mod bench_lists;
mod bench_pay;
mod client;
mod demo;
mod dispute_cli;
mod freeze_cli;
mod identity_cli;
mod pay_cli;
mod privacy_cli;
mod profile;
mod risk_cli;
mod risk_data;
mod risk_ops_cli;
mod serve;
mod sign_cli;
mod sim_cli;
mod webhook_cli;
mod webhooks_out;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// obol: a secure micropayment server.
///
/// Start the server with `obol serve` (embedded storage in ./obol-data, listening on
/// 127.0.0.1:8402). On first start it prints an operator API key once. The client commands
/// reach a server named by --server (or a profile: `obol login`, `obol config`) with the key from
/// OBOL_API_KEY, --api-key-file or the profile.
#[derive(Parser, Debug)]
#[command(
    name = "obol",
    version,
    about,
    long_about,
    propagate_version = true,
    after_long_help = "Exit codes: 0 done; 1 refused by the server or failed (the error says why); 2 bad \
command line; 3 the server could not be reached (network, TLS); 4 a second factor must approve \
the request (approve the challenge, then send it again with --approval)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Create or show accounts.
    #[command(subcommand)]
    Account(client::AccountCommand),
    /// Register and list custom assets (in-game currencies, credits, points).
    #[command(subcommand)]
    Asset(client::AssetCommand),
    /// Move money between two accounts (or post/void a pending transfer).
    Transfer(Box<client::TransferArgs>),
    /// Give back (part of) a payment you received, up to what is left of it.
    ///
    /// Example: obol refund --payment 10 --id 11 --amount 200
    Refund(client::RefundArgs),
    /// Print events as they happen (payments over your threshold, new devices, holds, blocks,
    /// freezes, disputes), like a live activity feed.
    ///
    /// Example: obol listen
    Listen(webhook_cli::ListenArgs),
    /// Webhook endpoints: add (prints the signing secret once), list, delete, replay.
    #[command(subcommand)]
    Webhook(webhook_cli::WebhookCommand),
    /// Alert on every payment over a threshold (shown with no flags).
    ///
    /// Example: obol alerts --payment-over 5000 --asset USD/2
    Alerts(webhook_cli::AlertsArgs),
    /// Stop payments at once: all of them, one device's (--device) or one tab's (--tab).
    ///
    /// Example: obol freeze --device 55
    Freeze(freeze_cli::FreezeArgs),
    /// Lift a freeze; your second factor approves it (--totp CODE, or --approval after obol approve).
    ///
    /// Example: obol unfreeze --device 55 --totp 123456
    Unfreeze(freeze_cli::UnfreezeArgs),
    /// Dispute a payment (payer), answer one (payee), decide one (operator), follow its deadlines.
    #[command(subcommand)]
    Dispute(dispute_cli::DisputeCommand),
    /// Show an account's balances and net position.
    Balance(client::BalanceArgs),
    /// Open, show, top up and settle micropayment tabs.
    #[command(subcommand)]
    Tab(pay_cli::TabCommand),
    /// Fetch a priced URL as a device, paying HTTP 402 (x402) from a tab or with a transfer.
    Pay(pay_cli::PayArgs),
    /// Sign a cumulative voucher for a tab by hand (or from a script).
    #[command(subcommand)]
    Voucher(sign_cli::VoucherCommand),
    /// PayWord hash chains by hand: make one, commit it to a tab, reveal ticks.
    #[command(subcommand)]
    Payword(sign_cli::PaywordCommand),
    /// Simulate payment traffic with injected fraud (CSV for training, demos and load tests).
    #[command(subcommand)]
    Sim(sim_cli::SimCommand),
    /// Fraud: train and evaluate the model, work the review queue, change the live policy.
    #[command(subcommand)]
    Risk(risk_cli::RiskCommand),
    /// The tamper-evident audit log: signed checkpoints, proofs, export and offline verification.
    #[command(subcommand)]
    Audit(audit_cli::AuditCommand),
    /// Create and manage principals (operator); personal data: profile, export, erasure,
    /// access log, consents.
    #[command(subcommand)]
    Principal(identity_cli::PrincipalCommand),
    /// Privacy operations: the retention scheduler's plan (a dry run).
    #[command(subcommand)]
    Privacy(privacy_cli::PrivacyCommand),
    /// The vault's keys: rotate the master key (server stopped).
    #[command(subcommand)]
    Vault(privacy_cli::VaultCommand),
    /// Create, list, revoke and rotate API keys; reset the operator's key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Register and manage device keys.
    #[command(subcommand)]
    Device(identity_cli::DeviceCommand),
    /// Second factor (TOTP), step-up policy and approvals.
    #[command(subcommand)]
    Mfa(identity_cli::MfaCommand),
    /// Approve a step-up challenge with a TOTP or recovery code, then resend with --approval.
    ///
    /// Example: obol approve 8c4f0d2e --code 123456
    Approve(identity_cli::ApproveArgs),
    /// Check an API key against a server and keep both as a named profile.
    ///
    /// Example: obol login --server https://pay.example.com --profile prod
    Login(profile::LoginArgs),
    /// Profiles of the client commands: list, show, use, set, remove.
    #[command(subcommand)]
    Config(profile::ConfigCommand),
    /// Measure obol on this machine.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    #[command(flatten)]
    Api(identity_cli::ApiKeyCommand),
    /// Replace the operator API key (the server must be stopped): revokes its keys, removes its
    /// passkeys and prints the new key once.
    ResetOperator {
        #[command(flatten)]
        store: serve::StoreArgs,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Account(command) => client::account(command),
        Command::Asset(command) => client::asset(command),
        Command::Transfer(args) => client::transfer(*args),
        Command::Refund(args) => client::refund(args),
        Command::Dispute(command) => dispute_cli::run(command),
        Command::Listen(args) => webhook_cli::listen(args),
        Command::Webhook(command) => webhook_cli::webhook(command),
        Command::Alerts(args) => webhook_cli::alerts(args),
        Command::Freeze(args) => freeze_cli::freeze(args),
        Command::Unfreeze(args) => freeze_cli::unfreeze(args),
        Command::Balance(args) => client::balance(args),
        Command::Tab(command) => pay_cli::tab(command),
        Command::Pay(args) => pay_cli::pay(args),
        Command::Voucher(command) => sign_cli::voucher(command),
        Command::Payword(command) => sign_cli::payword(command),
        Command::Sim(command) => sim_cli::run(command),
        Command::Risk(command) => risk_cli::run(command),
        Command::Audit(command) => audit_cli::run(command),
        Command::Privacy(command) => privacy_cli::privacy(command),
        Command::Vault(command) => privacy_cli::vault(command),
        Command::Key(KeyCommand::ResetOperator { store }) => serve::reset_operator_key(&store),
        Command::Key(KeyCommand::Api(command)) => identity_cli::api_key(command),
        Command::Principal(command) => identity_cli::principal(command),
        Command::Device(command) => identity_cli::device(command),
        Command::Mfa(command) => identity_cli::mfa(command),
        Command::Approve(args) => identity_cli::approve(args),
        Command::Bench(command) => bench::run(command),
        Command::Login(args) => profile::login(args),
        Command::Config(command) => profile::config(command),
    };
    match result {
        Ok(()) => std::process::ExitCode::from(out::exit::OK),
        Err(error) => {
            eprintln!("error: {error:#}");
            if error.downcast_ref::<out::Unreachable>().is_some() {
                std::process::ExitCode::from(out::exit::UNREACHABLE)
            } else if error.downcast_ref::<out::NeedsApproval>().is_some() {
                std::process::ExitCode::from(out::exit::NEEDS_APPROVAL)
            } else {
                std::process::ExitCode::from(out::exit::FAILED)
            }
        }
    }
}

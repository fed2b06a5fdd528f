//! `obol voucher sign` and `obol payword new|commit|tick`: make the payer's side of a tab by hand
//! (to pay from a script or another language, to test a payee, to see the formats of
//! docs/vouchers.md), signed with a device key as `obol device keygen` writes it.
//!
//! Each command prints the JSON body its API route takes; with `--submit` it sends it too, with
//! the API key of the connection (the payee's, or the operator's).

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use base64ct::{Base64UrlUnpadded, Encoding};
use clap::{Args, Subcommand};
use ed25519_dalek::{Signer as _, SigningKey};
use obol_core::channel::{Commitment, Network, PAYWORD_LENGTH_MAX, Voucher, payword_hash};
use serde_json::{Value, json};

use crate::client::{Api, Connection, print, runtime};
use crate::pay_cli::{hex, hex32};

/// `obol voucher ...`
#[derive(Subcommand, Debug)]
pub enum VoucherCommand {
    /// Sign a cumulative voucher: "tab T owes payee P a total of C", the S-th of the tab.
    ///
    /// Prints the body of POST /v1/tabs/T/vouchers; --submit sends it.
    ///
    /// Example: obol voucher sign --key-file device.key --tab 77 --payee 2 --cumulative 1200000 --seq 3
    Sign {
        #[command(flatten)]
        signer: Signer,
        /// What the tab owes the payee in all after this voucher, minor units.
        #[arg(long)]
        cumulative: u128,
        /// The voucher's number on the tab: each must be above the last accepted one.
        #[arg(long)]
        seq: u64,
        /// Send the voucher to the server (with the connection's API key).
        #[arg(long)]
        submit: bool,
        #[command(flatten)]
        connection: Connection,
    },
}

/// `obol payword ...`
#[derive(Subcommand, Debug)]
pub enum PaywordCommand {
    /// Make a fresh hash chain of LENGTH words and keep its secret in a file (mode 0600).
    ///
    /// Prints the chain's root, which a commitment signs.
    ///
    /// Example: obol payword new --length 1000 --out chain.secret
    New {
        /// Ticks the chain can pay.
        #[arg(long)]
        length: u32,
        /// Where to keep the chain's secret (its last word) and length.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign the commitment of a chain to a tab: each tick pays VALUE_PER_TICK.
    ///
    /// Prints the body of POST /v1/tabs/T/commitment; --submit sends it.
    ///
    /// Example: obol payword commit --chain chain.secret --key-file device.key --tab 77 --payee 2 --value-per-tick 1000
    Commit {
        /// The chain file from `obol payword new`.
        #[arg(long)]
        chain: PathBuf,
        #[command(flatten)]
        signer: Signer,
        /// What one tick pays, minor units.
        #[arg(long)]
        value_per_tick: u128,
        /// Send the commitment to the server (with the connection's API key).
        #[arg(long)]
        submit: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Reveal the word at INDEX: it pays every tick up to INDEX not paid yet.
    ///
    /// Prints the body of POST /v1/tabs/T/ticks; --submit (with --tab) sends it.
    ///
    /// Example: obol payword tick --chain chain.secret --index 1 --tab 77 --submit
    Tick {
        /// The chain file from `obol payword new`.
        #[arg(long)]
        chain: PathBuf,
        /// The word's index, 1 for the first tick.
        #[arg(long)]
        index: u32,
        /// The tab (needed with --submit).
        #[arg(long, required_if_eq("submit", "true"))]
        tab: Option<u128>,
        /// Send the tick to the server (with the connection's API key).
        #[arg(long)]
        submit: bool,
        #[command(flatten)]
        connection: Connection,
    },
}

/// Who signs, for which tab and payee.
#[derive(Args, Debug)]
pub struct Signer {
    /// The device's private key (64 hex digits, as `obol device keygen` writes it).
    #[arg(long)]
    key_file: PathBuf,
    /// The tab.
    #[arg(long)]
    tab: u128,
    /// The account the tab pays.
    #[arg(long)]
    payee: u128,
    #[command(flatten)]
    network: NetworkArgs,
}

/// The network a signature is made for.
#[derive(Args, Debug)]
pub struct NetworkArgs {
    /// The server's network, `obol:<instance-id>` (as its 402 offers and tabs say); asked of
    /// the server (GET /v1/x402/supported) when omitted.
    #[arg(long)]
    network: Option<String>,
}

/// `obol voucher ...`
pub fn voucher(command: VoucherCommand) -> anyhow::Result<()> {
    let VoucherCommand::Sign { signer: Signer { key_file, tab, payee, network }, cumulative, seq, submit, connection } =
        command;
    let key = SigningKey::from_bytes(&crate::pay_cli::read_key(&key_file)?);
    let network = network_of(&network, &connection)?;
    let message = Voucher::signed_message(&Network::named(&network), tab, payee, cumulative, seq);
    let signature = key.sign(&message).to_bytes();
    let voucher = Voucher { tab_id: tab, payee_id: payee, cumulative, seq, signature };
    let body = json!({"voucher": Base64UrlUnpadded::encode_string(&voucher.encode())});
    send_or_print(submit, &connection, &format!("/v1/tabs/{tab}/vouchers"), body)
}

/// `obol payword ...`
pub fn payword(command: PaywordCommand) -> anyhow::Result<()> {
    match command {
        PaywordCommand::New { length, out } => {
            if length == 0 || length > PAYWORD_LENGTH_MAX {
                bail!("--length must be 1 to {PAYWORD_LENGTH_MAX}");
            }
            if out.exists() {
                bail!("{} exists: a chain's secret is never overwritten (choose another --out)", out.display());
            }
            let last: [u8; 32] = rand::random();
            crate::profile::write_private(&out, &format!("{} {length}", hex(&last)))?;
            let root = word_at(&last, length, 0);
            print(&json!({"root": hex(&root), "length": length, "file": out.display().to_string()}));
            Ok(())
        }
        PaywordCommand::Commit {
            chain,
            signer: Signer { key_file, tab, payee, network },
            value_per_tick,
            submit,
            connection,
        } => {
            let key = SigningKey::from_bytes(&crate::pay_cli::read_key(&key_file)?);
            let (last, length, committed_to) = chain_file(&chain)?;
            if let Some(other) = committed_to.filter(|other| *other != tab) {
                bail!(
                    "{} is committed to tab {other} already: a chain pays one tab only (its revealed words are \
                     public); make a new one with `obol payword new`",
                    chain.display()
                );
            }
            let root = word_at(&last, length, 0);
            let network = Network::named(&network_of(&network, &connection)?);
            let message = Commitment::signed_message(&network, tab, payee, &root, length, value_per_tick);
            let signature = key.sign(&message).to_bytes();
            let commitment =
                Commitment { tab_id: tab, payee_id: payee, network, root, length, value_per_tick, signature };
            let body = json!({"commitment": Base64UrlUnpadded::encode_string(&commitment.encode())});
            // The chain is marked as this tab's before the commitment leaves: even printed, it
            // may reach the server, and a second tab must never get the same chain.
            crate::profile::write_private(&chain, &format!("{} {length} {tab}", hex(&last)))?;
            send_or_print(submit, &connection, &format!("/v1/tabs/{tab}/commitment"), body)
        }
        PaywordCommand::Tick { chain, index, tab, submit, connection } => {
            let (last, length, _) = chain_file(&chain)?;
            if index == 0 {
                bail!("--index starts at 1 (index 0 is the root the commitment signed)");
            }
            if index > length {
                bail!("the chain has {length} ticks; --index {index} is past its end");
            }
            let body = json!({"index": index, "word": hex(&word_at(&last, length, index))});
            let tab = tab.map(|t| t.to_string()).unwrap_or_default();
            send_or_print(submit, &connection, &format!("/v1/tabs/{tab}/ticks"), body)
        }
    }
}

fn send_or_print(submit: bool, connection: &Connection, path: &str, body: Value) -> anyhow::Result<()> {
    if !submit {
        crate::out::set_mode(crate::profile::Output::Json);
        print(&body);
        return Ok(());
    }
    let answer =
        runtime()?.block_on(async { Api::new(connection)?.expect(reqwest::Method::POST, path, Some(&body)).await })?;
    print(&answer);
    Ok(())
}

/// The network to sign for: the flag, or the one the server says it runs.
fn network_of(network: &NetworkArgs, connection: &Connection) -> anyhow::Result<String> {
    if let Some(network) = &network.network {
        if !network.starts_with("obol:") {
            bail!("--network must be obol:<instance-id>, as the server's offers and tabs name it");
        }
        return Ok(network.clone());
    }
    let resolved = connection.resolve()?;
    let http = resolved.http()?;
    let url = format!("{}/v1/x402/supported", resolved.server);
    let supported: Value = runtime()?.block_on(async {
        let response = http.get(&url).send().await.map_err(|e| crate::client::unreachable(&resolved.server, e))?;
        anyhow::Ok(response.json::<Value>().await?)
    })?;
    supported
        .pointer("/kinds/0/network")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{url} names no network; pass --network obol:<instance-id>"))
}

/// A chain file's secret (its last word), length, and the tab it was committed to, if it was.
fn chain_file(path: &Path) -> anyhow::Result<([u8; 32], u32, Option<u128>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the chain {}", path.display()))?;
    let mut parts = text.split_whitespace();
    let (Some(secret), Some(length)) = (parts.next(), parts.next()) else {
        bail!("{} is not a chain file from `obol payword new`", path.display());
    };
    let length: u32 = length.parse().with_context(|| format!("{}: the length", path.display()))?;
    if length == 0 || length > PAYWORD_LENGTH_MAX {
        bail!("{}: the length must be 1 to {PAYWORD_LENGTH_MAX}", path.display());
    }
    let last = hex32(secret).with_context(|| format!("{}: the secret", path.display()))?;
    let committed_to = match parts.next() {
        Some(tab) => Some(tab.parse().with_context(|| format!("{}: the committed tab", path.display()))?),
        None => None,
    };
    Ok((last, length, committed_to))
}

/// Word `index` of the chain ending in `last` (index 0 is the root): `last` hashed
/// `length - index` times, in constant memory.
fn word_at(last: &[u8; 32], length: u32, index: u32) -> [u8; 32] {
    let mut word = *last;
    for _ in index..length {
        word = payword_hash(&word);
    }
    word
}

//! `obol bench vouchers` and `obol bench http`: what a micropayment costs.
//!
//! `vouchers` measures, on one core and in one run: full voucher checks (decode, tab lookup, the
//! tab's checks, Ed25519 batch verification of 64, acceptance) beside bare ed25519-dalek single
//! and batch verification; PayWord ticks; and the memory a million open tabs take, counted by the
//! process allocator (against a million plain pending transfers, the escrows' own cost).
//!
//! `http` starts a real obol server in this process (embedded store, group commit, a route priced
//! with `PaymentLayer`) and drives it from wrk, a separate program, over loopback: paid requests
//! (402 offer taken, then one PayWord tick per request, journaled before the answer) and unpaid
//! ones on the same server, in the same run.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use indicatif::{ProgressBar, ProgressStyle};
use obol_core::channel::{Commitment, Tab, TabCommand, Voucher, payword_chain, verify_vouchers};
use obol_core::identity::{IdentityCommand, Role};
use obol_core::ledger::{AccountFlags, Ledger, NewAccount, NewTransfer, TransferFlags};
use obol_core::money::Asset;
use obol_core::record::{Op, Record};
use serde_json::json;

/// Options of `obol bench vouchers`.
#[derive(Args, Debug)]
pub struct VoucherArgs {
    /// Vouchers to check (signed beforehand, spread over 64 tabs with 64 payer keys).
    #[arg(long, default_value_t = 32_768)]
    vouchers: usize,
    /// PayWord ticks to accept.
    #[arg(long, default_value_t = 2_000_000)]
    ticks: u32,
    /// Tabs to open for the memory measurement.
    #[arg(long, default_value_t = 1_000_000)]
    tabs: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

const BATCH: usize = 64;

#[expect(clippy::expect_used, reason = "USD at scale 9 is a valid ISO 4217 asset, a constant")]
fn asset() -> Asset {
    Asset::new("USD", 9).expect("USD is ISO 4217")
}

fn progress(len: u64, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:28} [{bar:30}] {human_pos}/{human_len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

/// The network the benchmarks sign for: their `AppState`'s, given the instance id `local`.
fn bench_network() -> obol_core::channel::Network {
    obol_core::channel::Network::named(obol_http::LOCAL_NETWORK)
}

/// The committed root of a chain from `payword_chain`, which always starts with it.
fn chain_root(chain: &[[u8; 32]]) -> anyhow::Result<[u8; 32]> {
    chain.first().copied().context("a PayWord chain has no root")
}

fn per_second(count: usize, started: Instant) -> f64 {
    count as f64 / started.elapsed().as_secs_f64().max(1e-9)
}

/// `obol bench vouchers`.
pub fn vouchers(args: VoucherArgs) -> anyhow::Result<()> {
    if args.vouchers < BATCH || args.ticks == 0 || args.tabs == 0 {
        bail!("--vouchers must be at least {BATCH}, --ticks and --tabs at least 1");
    }
    let keys: Vec<SigningKey> = (0..BATCH).map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32])).collect();
    let verifying: Vec<VerifyingKey> = keys.iter().map(SigningKey::verifying_key).collect();
    let signing = progress(args.vouchers as u64, "signing vouchers");
    let vouchers: Vec<[u8; obol_core::channel::VOUCHER_BYTES]> = (0..args.vouchers)
        .zip(keys.iter().cycle())
        .map(|(n, key)| {
            let tab_id = (n % BATCH) as u128 + 1;
            let seq = (n / BATCH) as u64 + 1;
            let cumulative = u128::from(seq) * 10;
            let message = Voucher::signed_message(&bench_network(), tab_id, 2, cumulative, seq);
            let signature = key.sign(&message).to_bytes();
            signing.inc(1);
            Voucher { tab_id, payee_id: 2, cumulative, seq, signature }.encode()
        })
        .collect();
    signing.finish_and_clear();
    let decoded: Vec<Voucher> = vouchers.iter().map(|bytes| Voucher::decode(bytes)).collect::<Result<_, _>>()?;
    let messages: Vec<[u8; obol_core::channel::VOUCHER_MESSAGE_BYTES]> = decoded
        .iter()
        .map(|v| Voucher::signed_message(&bench_network(), v.tab_id, v.payee_id, v.cumulative, v.seq))
        .collect();
    let signatures: Vec<Signature> = decoded.iter().map(|v| Signature::from_bytes(&v.signature)).collect();

    // Bare ed25519-dalek, one by one.
    let started = Instant::now();
    for ((message, signature), key) in messages.iter().zip(&signatures).zip(verifying.iter().cycle()) {
        key.verify_strict(message, signature).map_err(|_| anyhow::anyhow!("verify failed"))?;
    }
    let dalek_verify_per_s = per_second(messages.len(), started);

    // Bare ed25519-dalek, batches of 64.
    let started = Instant::now();
    let mut verified = 0;
    for (chunk_messages, chunk_signatures) in messages.chunks_exact(BATCH).zip(signatures.chunks_exact(BATCH)) {
        let refs: Vec<&[u8]> = chunk_messages.iter().map(|m| &m[..]).collect();
        ed25519_dalek::verify_batch(&refs, chunk_signatures, &verifying)
            .map_err(|_| anyhow::anyhow!("batch verify failed"))?;
        verified += BATCH;
    }
    let dalek_batch_verify_per_s = per_second(verified, started);

    // obol's full check: bytes in, tabs updated, 64 at a time.
    let mut tabs: Vec<Tab> = (1..=BATCH as u128)
        .map(|id| Tab {
            id,
            payee_id: 2,
            escrow: u128::MAX,
            cumulative: 0,
            escrow_transfer_id: id,
            device_id: id,
            expires_ns: u64::MAX,
            seq: 0,
            payword: None,
            closed: false,
        })
        .collect();
    let started = Instant::now();
    let mut checked = 0;
    for chunk in vouchers.chunks_exact(BATCH) {
        let mut batch: Vec<(Voucher, usize, &VerifyingKey)> = Vec::with_capacity(BATCH);
        for bytes in chunk {
            let voucher = Voucher::decode(bytes)?;
            let index = usize::try_from(voucher.tab_id - 1)?;
            let (Some(tab), Some(key)) = (tabs.get(index), verifying.get(index)) else {
                bail!("voucher for tab {}, which the bench did not open", voucher.tab_id);
            };
            tab.check_voucher_fields(&voucher, 0).map_err(|e| anyhow::anyhow!("voucher refused: {e}"))?;
            batch.push((voucher, index, key));
        }
        let pairs: Vec<(&Voucher, &VerifyingKey)> = batch.iter().map(|(v, _, key)| (v, *key)).collect();
        let ok = verify_vouchers(&bench_network(), &pairs);
        for ((voucher, index, _), ok) in batch.iter().zip(ok) {
            if !ok {
                bail!("a valid voucher failed verification");
            }
            let tab = tabs.get_mut(*index).context("the tab was checked before")?;
            tab.accept_verified_voucher(voucher, 0).map_err(|e| anyhow::anyhow!("voucher refused: {e}"))?;
            checked += 1;
        }
    }
    let voucher_checks_per_s = per_second(checked, started);

    // PayWord ticks.
    let chain = payword_chain([9u8; 32], args.ticks);
    let root = chain_root(&chain)?;
    let (Some(first_key), Some(first_verifying), Some(first_tab)) = (keys.first(), verifying.first(), tabs.first())
    else {
        bail!("the bench opens {BATCH} tabs with {BATCH} keys");
    };
    let commitment_message = Commitment::signed_message(&bench_network(), 1, 2, &root, args.ticks, 1);
    let commitment = Commitment {
        tab_id: 1,
        payee_id: 2,
        network: bench_network(),
        root,
        length: args.ticks,
        value_per_tick: 1,
        signature: first_key.sign(&commitment_message).to_bytes(),
    };
    let mut tab = Tab { cumulative: 0, seq: 0, payword: None, ..first_tab.clone() };
    tab.accept_commitment(&commitment, first_verifying, 0).map_err(|e| anyhow::anyhow!("commitment refused: {e}"))?;
    let started = Instant::now();
    for (index, word) in chain.iter().enumerate().skip(1) {
        tab.accept_tick(index as u32, word, 0).map_err(|e| anyhow::anyhow!("tick refused: {e}"))?;
    }
    let payword_ticks_per_s = per_second(args.ticks as usize, started);

    let (bytes_per_open_tab, bytes_per_escrow) = tab_memory(args.tabs, first_verifying)?;
    let ratio = voucher_checks_per_s / dalek_batch_verify_per_s;
    if args.json {
        crate::outln!(
            "{}",
            json!({
                "vouchers": checked, "voucher_checks_per_s": voucher_checks_per_s.round(),
                "dalek_verify_per_s": dalek_verify_per_s.round(), "dalek_batch_verify_per_s": dalek_batch_verify_per_s.round(),
                "voucher_checks_over_dalek_batch": (ratio * 1000.0).round() / 1000.0,
                "payword_ticks_per_s": payword_ticks_per_s.round(),
                "open_tabs": args.tabs, "bytes_per_open_tab": bytes_per_open_tab.round(),
                "bytes_per_escrow_transfer": bytes_per_escrow.round(),
                "bytes_per_open_tab_with_escrow": (bytes_per_open_tab + bytes_per_escrow).round(),
            })
        );
        return Ok(());
    }
    crate::outln!("obol bench vouchers: one core, same run");
    crate::outln!("{:<48} {:>14.0}/s", "voucher checks (decode, tab, batch verify, accept)", voucher_checks_per_s);
    crate::outln!("{:<48} {:>14.0}/s", "ed25519-dalek verify_strict, one by one", dalek_verify_per_s);
    crate::outln!("{:<48} {:>14.0}/s", "ed25519-dalek verify_batch, 64 at a time", dalek_batch_verify_per_s);
    crate::outln!("voucher checks / dalek batch verify: {:.1}%", ratio * 100.0);
    crate::outln!("{:<48} {:>14.0}/s", "PayWord ticks (one SHA-256 each)", payword_ticks_per_s);
    crate::outln!("{:<48} {:>14.0} B", format!("memory per open tab ({} tabs)", args.tabs), bytes_per_open_tab);
    crate::outln!("{:<48} {:>14.0} B", "  plus its escrow (a pending ledger transfer)", bytes_per_escrow);
    Ok(())
}

/// Holder 50 with device 9 (`key`), its account 1, payee account 2 and funding account 3.
fn parties_ops(key: &VerifyingKey) -> Vec<Op> {
    let account = |id: u128, owner_id: u128| NewAccount {
        id,
        owner_id,
        user_data_128: 0,
        user_data_64: 0,
        user_data_32: 0,
        asset: asset(),
        code: 1,
        flags: AccountFlags(0),
    };
    vec![
        Op::Identity(IdentityCommand::CreatePrincipal { id: 50, role: Role::Holder, name: "bench".into() }),
        Op::Identity(IdentityCommand::RegisterDevice {
            id: 9,
            holder_id: 50,
            kid: "bench".into(),
            public_key: key.to_bytes(),
            limits: None,
        }),
        Op::CreateAccounts(vec![account(1, 50), account(2, 0), account(3, 0)]),
    ]
}

/// A transfer of `amount` from account 3 to the payer's account 1.
fn funding(id: u128, amount: u128) -> NewTransfer {
    NewTransfer {
        id,
        debit_account_id: 3,
        credit_account_id: 1,
        amount,
        pending_id: 0,
        user_data_128: 0,
        user_data_64: 0,
        user_data_32: 0,
        timeout_s: 0,
        asset: Some(asset()),
        code: 1,
        flags: TransferFlags(0),
    }
}

/// A ledger with [`parties_ops`] applied and the payer funded with `funds`.
fn tab_ledger(key: &VerifyingKey, funds: u128) -> Ledger {
    let mut ledger = Ledger::new(rand::random());
    let mut ops = parties_ops(key);
    ops.push(Op::CreateTransfers(vec![funding(1, funds)]));
    ledger.apply(&Record { now_ns: 1, ops });
    ledger
}

/// Opens `count` tabs (and, separately, as many plain pending transfers) and answers the bytes
/// each tab adds beyond its escrow, and the bytes of one escrow transfer.
fn tab_memory(count: u64, key: &VerifyingKey) -> anyhow::Result<(f64, f64)> {
    let bar = progress(count * 2, "opening tabs");
    let measure = |tabs: bool| -> anyhow::Result<i64> {
        let mut ledger = tab_ledger(key, u128::from(count) * 10);
        crate::alloc::start();
        let mut id = 10u128;
        let mut remaining = count;
        while remaining > 0 {
            let n = remaining.min(obol_core::ledger::BATCH_EVENTS_MAX as u64);
            let ops: Vec<Op> = if tabs {
                (0..n)
                    .map(|i| {
                        Op::Tab(TabCommand::Open {
                            tab_id: id + u128::from(i),
                            escrow_transfer_id: id + u128::from(i),
                            payer_account_id: 1,
                            payee_account_id: 2,
                            device_id: 9,
                            budget: 10,
                            asset: asset(),
                            timeout_s: 3600,
                        })
                    })
                    .collect()
            } else {
                let events = (0..n)
                    .map(|i| NewTransfer {
                        id: id + u128::from(i),
                        debit_account_id: 1,
                        credit_account_id: 2,
                        amount: 10,
                        pending_id: 0,
                        user_data_128: id + u128::from(i),
                        user_data_64: 0,
                        user_data_32: 0,
                        timeout_s: 0,
                        asset: Some(asset()),
                        // A tab's escrow in all but its code, which only tab commands may use.
                        code: 1,
                        flags: TransferFlags(TransferFlags::PENDING),
                    })
                    .collect();
                vec![Op::CreateTransfers(events)]
            };
            let results = ledger.apply(&Record { now_ns: 2, ops });
            drop(results);
            id += u128::from(n);
            remaining -= n;
            bar.inc(n);
        }
        let live = crate::alloc::stop();
        let opened = if tabs { ledger.tabs_count() as u64 } else { ledger.transfers_count() as u64 - 1 };
        if opened != count {
            bail!("opened {opened} of {count}");
        }
        drop(ledger);
        Ok(live)
    };
    let escrows = measure(false)?;
    let with_tabs = measure(true)?;
    bar.finish_and_clear();
    let per_escrow = escrows as f64 / count as f64;
    Ok(((with_tabs - escrows) as f64 / count as f64, per_escrow))
}

/// Options of `obol bench http`.
#[derive(Args, Debug)]
pub struct HttpArgs {
    /// Seconds each wrk run lasts.
    #[arg(long, default_value_t = 5)]
    duration_s: u64,
    /// Open connections (wrk's -c; the server's group commit takes what is in flight).
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Paid requests prepared per second of the run (more than the server can take).
    #[arg(long, default_value_t = 80_000)]
    rate_max: u64,
    /// Requests paid by voucher prepared per second of the run (each signed beforehand).
    #[arg(long, default_value_t = 40_000)]
    voucher_rate_max: u64,
    /// Rounds of the three runs (unpaid, tick-paid, voucher-paid), interleaved so that each ratio
    /// compares runs seconds apart on a noisy machine; the medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: u64,
    /// Directory for the embedded store (removed afterwards).
    #[arg(long, default_value = "./obol-bench-http")]
    data_dir: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// wrk's numbers for one run.
#[derive(Debug, Default)]
struct WrkRun {
    requests: u64,
    non_2xx: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn parse_duration_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.trim().parse::<f64>().ok().map(|n| n * scale)
}

fn parse_wrk(output: &str) -> anyhow::Result<WrkRun> {
    let mut run = WrkRun::default();
    for line in output.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => run.p50_ms = parse_duration_ms(value).unwrap_or(0.0),
            ["99%", value] => run.p99_ms = parse_duration_ms(value).unwrap_or(0.0),
            [count, "requests", "in", duration, ..] => {
                run.requests = count.parse().unwrap_or(0);
                run.seconds = parse_duration_ms(duration.trim_end_matches(',')).unwrap_or(0.0) / 1000.0;
            }
            ["Non-2xx", "or", "3xx", "responses:", count] => run.non_2xx = count.parse().unwrap_or(0),
            _ => {}
        }
    }
    if run.requests == 0 || run.seconds <= 0.0 {
        bail!("could not read wrk's report:\n{output}");
    }
    Ok(run)
}

const WRK_SCRIPT: &str = r#"-- obol bench http: one prepared PAYMENT-SIGNATURE per request, in order.
local requests = {}
local count = 0
local next = 0
init = function(args)
  local path = args[2]
  for line in io.lines(args[1]) do
    count = count + 1
    if path == "/paid" then
      requests[count] = wrk.format("GET", path, { ["PAYMENT-SIGNATURE"] = line })
    else
      requests[count] = wrk.format("GET", path)
    end
  end
end
request = function()
  next = next + 1
  if next > count then next = 1 end
  return requests[next]
end
"#;

fn run_wrk(
    args: &HttpArgs,
    address: std::net::SocketAddr,
    script: &std::path::Path,
    lines: &std::path::Path,
    path: &str,
) -> anyhow::Result<WrkRun> {
    let output = std::process::Command::new("wrk")
        .args(["-t1", &format!("-c{}", args.connections), &format!("-d{}s", args.duration_s), "--latency", "-s"])
        .arg(script)
        .arg(format!("http://{address}"))
        .arg("--")
        .arg(lines)
        .arg(path)
        .output()
        .context("running wrk (install it: apt-get install wrk)")?;
    if !output.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    parse_wrk(&String::from_utf8_lossy(&output.stdout))
}

/// Funds the payer with `budget` and opens tab `tab_id` escrowing it (device 9, payee 2).
fn funded_tab(tab_id: u128, budget: u128) -> Vec<Op> {
    vec![
        Op::CreateTransfers(vec![funding(tab_id, budget)]),
        Op::Tab(TabCommand::Open {
            tab_id,
            escrow_transfer_id: tab_id + 1_000_000,
            payer_account_id: 1,
            payee_account_id: 2,
            device_id: 9,
            budget,
            asset: asset(),
            timeout_s: 3600,
        }),
    ]
}

/// The tabs and prepared payments of one round of `obol bench http`: each round pays into tabs of
/// its own, so a round never replays or skips the words and vouchers of another.
struct HttpRound {
    chains: Vec<(u128, Vec<[u8; 32]>)>,
    voucher_tabs: Vec<u128>,
    ticks_path: PathBuf,
    vouchers_path: PathBuf,
}

/// One round's numbers: the three wrk runs, back to back, and the records each paid run took.
struct HttpRoundResult {
    free: WrkRun,
    paid: WrkRun,
    voucher: WrkRun,
    paid_records: u64,
    voucher_records: u64,
}

impl HttpRoundResult {
    fn rps(run: &WrkRun) -> f64 {
        (run.requests - run.non_2xx) as f64 / run.seconds
    }
    fn ratios(&self) -> (f64, f64) {
        let unpaid = Self::rps(&self.free).max(1.0);
        (Self::rps(&self.paid) / unpaid, Self::rps(&self.voucher) / unpaid)
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// Opens round `round`'s tabs in `node` and writes its prepared payments under `work_dir`.
fn prepare_http_round(
    node: &mut obol_store::Node<obol_store::SqliteStore>,
    args: &HttpArgs,
    key: &SigningKey,
    requirements: (&serde_json::Value, &serde_json::Value),
    round: u64,
    work_dir: &std::path::Path,
) -> anyhow::Result<HttpRound> {
    let (accepted, accepted_voucher) = requirements;
    let price: u128 = HTTP_PRICE;
    // One tab per 16 requests in flight, so consecutive ticks of a tab are never in flight together.
    let tabs_count = u64::from(args.connections) * 16;
    let base = u128::from(round) * 100_000_000;
    let ticks_total = args.rate_max * args.duration_s;
    let chain_length = u32::try_from(ticks_total.div_ceil(tabs_count) + 1)?;
    let prepare = progress(tabs_count * 2, "opening tabs and chains");
    let mut chains = Vec::with_capacity(tabs_count as usize);
    for tab_index in 0..tabs_count {
        let tab_id = base + u128::from(tab_index) + 100;
        let chain = payword_chain(rand::random(), chain_length);
        let root = chain_root(&chain)?;
        let message = Commitment::signed_message(&bench_network(), tab_id, 2, &root, chain_length, price);
        let commitment = Commitment {
            tab_id,
            payee_id: 2,
            network: bench_network(),
            root,
            length: chain_length,
            value_per_tick: price,
            signature: key.sign(&message).to_bytes(),
        };
        let mut ops = funded_tab(tab_id, u128::from(chain_length) * price);
        ops.push(Op::Tab(TabCommand::Commit(commitment)));
        node.commit(&Record { now_ns: crate::serve::wall_ns(), ops })?;
        chains.push((tab_id, chain));
        prepare.inc(1);
    }
    // Tabs paid by vouchers (no chain), as many again.
    let vouchers_total = args.voucher_rate_max * args.duration_s;
    let vouchers_per_tab = vouchers_total.div_ceil(tabs_count) + 1;
    let voucher_tab = |i: u64| base + u128::from(i) + 50_000_000;
    let voucher_tabs: Vec<u128> = (0..tabs_count).map(voucher_tab).collect();
    for tab_id in &voucher_tabs {
        let ops = funded_tab(*tab_id, u128::from(vouchers_per_tab) * price);
        node.commit(&Record { now_ns: crate::serve::wall_ns(), ops })?;
        prepare.inc(1);
    }
    prepare.finish_and_clear();
    let ticks_path = work_dir.join(format!("payments-{round}.txt"));
    {
        let writing = progress(ticks_total, "preparing payments");
        let mut file = std::io::BufWriter::new(std::fs::File::create(&ticks_path)?);
        for n in 0..ticks_total {
            let index = (n / tabs_count) as usize + 1;
            let Some((tab_id, word)) =
                chains.get((n % tabs_count) as usize).and_then(|(tab_id, chain)| Some((tab_id, chain.get(index)?)))
            else {
                bail!("payment {n} falls outside the prepared tabs and chains");
            };
            let word: String = word.iter().map(|b| format!("{b:02x}")).collect();
            let payment = json!({"x402Version": 2, "accepted": accepted,
                "payload": {"tab": tab_id.to_string(), "index": index, "word": word}});
            writeln!(file, "{}", obol_http::x402::encode_header(&payment))?;
            writing.inc(1);
        }
        file.flush()?;
        writing.finish_and_clear();
    }
    // Vouchers are signed beforehand (on both cores), as payers would have signed them.
    let vouchers_path = work_dir.join(format!("vouchers-{round}.txt"));
    {
        let signing = progress(vouchers_total, "signing vouchers");
        let sign = |range: std::ops::Range<u64>| -> Vec<String> {
            range
                .map(|n| {
                    let tab_id = voucher_tab(n % tabs_count);
                    let seq = n / tabs_count + 1;
                    let cumulative = u128::from(seq) * price;
                    let signature = key.sign(&Voucher::signed_message(&bench_network(), tab_id, 2, cumulative, seq)).to_bytes();
                    let voucher = Voucher { tab_id, payee_id: 2, cumulative, seq, signature };
                    let payment = json!({"x402Version": 2, "accepted": accepted_voucher,
                        "payload": {"voucher": <base64ct::Base64UrlUnpadded as base64ct::Encoding>::encode_string(&voucher.encode())}});
                    signing.inc(1);
                    obol_http::x402::encode_header(&payment)
                })
                .collect()
        };
        let half = vouchers_total / 2;
        let (first, second) = std::thread::scope(|scope| {
            let first = scope.spawn(|| sign(0..half));
            let second = sign(half..vouchers_total);
            (first.join(), second)
        });
        let first = first.map_err(|_| anyhow::anyhow!("a signing thread panicked"))?;
        let mut file = std::io::BufWriter::new(std::fs::File::create(&vouchers_path)?);
        for line in first.iter().chain(&second) {
            writeln!(file, "{line}")?;
        }
        file.flush()?;
        signing.finish_and_clear();
    }
    Ok(HttpRound { chains, voucher_tabs, ticks_path, vouchers_path })
}

/// Fails a run that sent more requests than payments were prepared: wrk then starts the list
/// again, and the replayed payments are refused as stale, which says nothing of the server.
fn outpaced(run: &WrkRun, prepared: u64, flag: &str) -> anyhow::Result<()> {
    if run.requests > prepared {
        bail!(
            "the server took more paid requests ({}) than were prepared ({prepared}): raise {flag} (per second of the run)",
            run.requests
        );
    }
    Ok(())
}

/// What one tick, and one voucher, pays in `obol bench http`.
const HTTP_PRICE: u128 = 1_000;

/// `obol bench http`.
pub fn http(args: HttpArgs) -> anyhow::Result<()> {
    use obol_http::x402::{PaymentLayer, Price, SCHEME_PAYWORD, SCHEME_VOUCHER};
    if std::process::Command::new("wrk").arg("--version").output().is_err() {
        bail!("obol bench http drives the server with wrk; install it (Debian: apt-get install wrk)");
    }
    if args.duration_s == 0 || args.connections == 0 || args.rounds == 0 {
        bail!("--duration-s, --connections and --rounds must be at least 1");
    }
    let _ = std::fs::remove_dir_all(&args.data_dir);
    let store = obol_store::SqliteStore::open(&args.data_dir).context("opening the bench store")?;
    let mut node = obol_store::Node::open(store, rand::random())?;
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let price = HTTP_PRICE;
    let setup = parties_ops(&key.verifying_key());
    node.commit(&Record { now_ns: crate::serve::wall_ns(), ops: setup })?;
    // The server below takes instance id "local", which names its x402 network (checked once it
    // runs); the payments are prepared for that name before the server starts.
    let network = "obol:local".to_string();
    let offer = Price::new(price, asset(), 2, "bench").with_schemes(&[SCHEME_PAYWORD, SCHEME_VOUCHER]);
    let requirements = offer.requirements(&network);
    let (Some(accepted), Some(accepted_voucher)) = (requirements.first(), requirements.get(1)) else {
        bail!("the price offers fewer than two schemes");
    };
    let (accepted, accepted_voucher) = (serde_json::to_value(accepted)?, serde_json::to_value(accepted_voucher)?);
    let work_dir = args.data_dir.join("wrk");
    std::fs::create_dir_all(&work_dir)?;
    let mut rounds = Vec::new();
    for round in 0..args.rounds {
        rounds.push(prepare_http_round(&mut node, &args, &key, (&accepted, &accepted_voucher), round, &work_dir)?);
    }
    let script_path = work_dir.join("paid.lua");
    std::fs::write(&script_path, WRK_SCRIPT)?;
    let free_path = work_dir.join("free.txt");
    std::fs::write(&free_path, "-\n")?;
    let engine = obol_store::Engine::start(node);
    let state = obol_http::AppState::new(engine.clone(), "http")
        .with_instance_id("local")
        .map_err(|e| anyhow::anyhow!(e))?
        .with_rate_limit(0, 0);
    if state.x402_network.to_string() != network {
        bail!("the server names its network {}, the prepared payments {network}", state.x402_network);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let address = listener.local_addr()?;
    let router = obol_http::app(state.clone())
        .route("/paid", axum::routing::get(|| async { "paid content" }).layer(PaymentLayer::new(state.clone(), offer)))
        .route("/free", axum::routing::get(|| async { "free content" }));
    runtime.spawn(async move {
        let _ = axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>()).await;
    });
    let spinner = ProgressBar::new_spinner();
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let records = || engine.stats().records.load(std::sync::atomic::Ordering::Relaxed);
    let mut results = Vec::with_capacity(rounds.len());
    for (index, round) in rounds.iter().enumerate() {
        let of = format!("round {} of {}", index + 1, args.rounds);
        spinner.set_message(format!("wrk, {of}: unpaid requests for {} s", args.duration_s));
        let free = run_wrk(&args, address, &script_path, &free_path, "/free")?;
        spinner.set_message(format!("wrk, {of}: paid requests for {} s", args.duration_s));
        let before = records();
        let paid = run_wrk(&args, address, &script_path, &round.ticks_path, "/paid")?;
        outpaced(&paid, args.rate_max * args.duration_s, "--rate-max")?;
        let paid_records = records() - before;
        spinner.set_message(format!("wrk, {of}: requests paid by voucher for {} s", args.duration_s));
        let before = records();
        let voucher = run_wrk(&args, address, &script_path, &round.vouchers_path, "/paid")?;
        outpaced(&voucher, args.voucher_rate_max * args.duration_s, "--voucher-rate-max")?;
        let voucher_records = records() - before;
        results.push(HttpRoundResult { free, paid, voucher, paid_records, voucher_records });
    }
    spinner.finish_and_clear();
    // wrk stops with requests in flight (one per connection, and one more it may drop while
    // closing): those may be paid and answered after wrk stopped counting.
    let in_flight = 2 * u128::from(args.connections) * price;
    {
        let ledger = engine.ledger().read().map_err(|_| anyhow::anyhow!("ledger lock poisoned"))?;
        let owed = |tabs: &mut dyn Iterator<Item = u128>| -> u128 {
            tabs.filter_map(|tab_id| ledger.tab(tab_id)).map(|entry| entry.tab.cumulative).sum()
        };
        for (index, (round, result)) in rounds.iter().zip(&results).enumerate() {
            let ticks_owed = owed(&mut round.chains.iter().map(|(tab_id, _)| *tab_id));
            let counted = u128::from(result.paid.requests - result.paid.non_2xx) * price;
            if ticks_owed < counted || ticks_owed > counted + in_flight {
                bail!("round {}: the tabs owe {ticks_owed}, but wrk counted {counted} in paid answers", index + 1);
            }
            let vouchers_owed = owed(&mut round.voucher_tabs.iter().copied());
            let counted = u128::from(result.voucher.requests - result.voucher.non_2xx) * price;
            if vouchers_owed < counted || vouchers_owed > counted + in_flight {
                bail!(
                    "round {}: the voucher tabs owe {vouchers_owed}, but wrk counted {counted} in paid answers",
                    index + 1
                );
            }
        }
    }
    drop(runtime);
    engine.shutdown();
    let _ = std::fs::remove_dir_all(&args.data_dir);
    let med = |pick: &dyn Fn(&HttpRoundResult) -> f64| median(results.iter().map(pick).collect());
    let paid_over_unpaid = med(&|r| r.ratios().0);
    let voucher_over_unpaid = med(&|r| r.ratios().1);
    let unpaid_rps = med(&|r| HttpRoundResult::rps(&r.free));
    let paid_rps = med(&|r| HttpRoundResult::rps(&r.paid));
    let paid_voucher_rps = med(&|r| HttpRoundResult::rps(&r.voucher));
    let per_record = |run: &WrkRun, records: u64| run.requests as f64 / records.max(1) as f64;
    if args.json {
        let rounds_json: Vec<serde_json::Value> = results
            .iter()
            .map(|r| {
                let (tick, voucher) = r.ratios();
                json!({"unpaid_rps": HttpRoundResult::rps(&r.free).round(),
                    "paid_rps": HttpRoundResult::rps(&r.paid).round(),
                    "paid_voucher_rps": HttpRoundResult::rps(&r.voucher).round(),
                    "paid_over_unpaid": round3(tick), "paid_voucher_over_unpaid": round3(voucher),
                    "paid_p99_ms": r.paid.p99_ms, "paid_voucher_p99_ms": r.voucher.p99_ms,
                    "paid_records": r.paid_records, "paid_voucher_records": r.voucher_records})
            })
            .collect();
        crate::outln!(
            "{}",
            json!({"connections": args.connections, "duration_s": args.duration_s, "rounds": rounds_json,
                "paid_rps": paid_rps.round(), "paid_p50_ms": med(&|r| r.paid.p50_ms), "paid_p99_ms": med(&|r| r.paid.p99_ms),
                "paid_refused": results.iter().map(|r| r.paid.non_2xx).sum::<u64>(),
                "paid_voucher_rps": paid_voucher_rps.round(), "paid_voucher_p50_ms": med(&|r| r.voucher.p50_ms),
                "paid_voucher_p99_ms": med(&|r| r.voucher.p99_ms),
                "paid_voucher_refused": results.iter().map(|r| r.voucher.non_2xx).sum::<u64>(),
                "unpaid_rps": unpaid_rps.round(), "unpaid_p50_ms": med(&|r| r.free.p50_ms), "unpaid_p99_ms": med(&|r| r.free.p99_ms),
                "paid_over_unpaid": round3(paid_over_unpaid), "paid_voucher_over_unpaid": round3(voucher_over_unpaid),
                "payments_per_record": round3(med(&|r| per_record(&r.paid, r.paid_records))),
                "voucher_payments_per_record": round3(med(&|r| per_record(&r.voucher, r.voucher_records)))})
        );
        return Ok(());
    }
    crate::outln!(
        "obol bench http: wrk -t1 -c{} -d{}s over loopback, same server; {} rounds of unpaid, tick-paid and voucher-paid runs, interleaved",
        args.connections,
        args.duration_s,
        args.rounds
    );
    crate::outln!(
        "{:<7} {:>12} {:>12} {:>10} {:>12} {:>10} {:>14} {:>16}",
        "round",
        "unpaid/s",
        "tick/s",
        "p99 (ms)",
        "voucher/s",
        "p99 (ms)",
        "tick/unpaid",
        "voucher/unpaid"
    );
    for (index, r) in results.iter().enumerate() {
        let (tick, voucher) = r.ratios();
        crate::outln!(
            "{:<7} {:>12.0} {:>12.0} {:>10.2} {:>12.0} {:>10.2} {:>14.3} {:>16.3}",
            index + 1,
            HttpRoundResult::rps(&r.free),
            HttpRoundResult::rps(&r.paid),
            r.paid.p99_ms,
            HttpRoundResult::rps(&r.voucher),
            r.voucher.p99_ms,
            tick,
            voucher
        );
    }
    crate::outln!(
        "median: paid over unpaid {paid_over_unpaid:.3} by PayWord tick, {voucher_over_unpaid:.3} by voucher ({paid_rps:.0}, {paid_voucher_rps:.0} and {unpaid_rps:.0} req/s)"
    );
    crate::outln!(
        "records (one sync each): {:.1} tick payments per record, {:.1} voucher payments per record (medians); refused: {}",
        med(&|r| per_record(&r.paid, r.paid_records)),
        med(&|r| per_record(&r.voucher, r.voucher_records)),
        results.iter().map(|r| r.paid.non_2xx + r.voucher.non_2xx).sum::<u64>()
    );
    Ok(())
}

/// Options of `obol bench risk`.
#[derive(Args, Debug)]
pub struct RiskArgs {
    /// Events to decide.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Distinct payers (each with a device); payees are a tenth as many.
    #[arg(long, default_value_t = 50_000)]
    payers: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// `obol bench risk`: one decision = the event's streaming features (O(1) state updates), the
/// model's score (trained first on simulated traffic), the shipped policy bundles evaluated on
/// both, and fast contributions for every decision that is not `allow`, timed one by one on one
/// core.
pub fn risk(args: RiskArgs) -> anyhow::Result<()> {
    use obol_risk::engine::RiskEngine;
    use obol_risk::features::{Event, FEATURE_NAMES};
    use obol_risk::model::{Model, TrainParams};
    use obol_risk::policy::{Bundle, Facts, Policy};
    use obol_risk::sim::{SimConfig, simulate};
    if args.events == 0 || args.payers == 0 {
        bail!("--events and --payers must be at least 1");
    }
    let mut policy = Policy::new();
    for text in crate::serve::SHIPPED_POLICY {
        policy.add(Bundle::compile(text).map_err(|e| anyhow::anyhow!("a shipped bundle: {e}"))?)?;
    }
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let start_s = 1_800_000_000u64;
    let events: Vec<(Event, Facts)> = (0..args.events)
        .map(|n| {
            let payer = u128::from(next() % args.payers) + 1;
            let eu = payer % 3 == 0;
            let event = Event {
                at_s: start_s + n / 20,
                payer,
                device: Some(payer + 10_000_000),
                payee: u128::from(next() % (args.payers / 10).max(1)) + 20_000_000,
                network: Some(next() % 5_000),
                amount_iso_minor: u128::from(next() % 5_000 + 1),
                failed_auth_count: 0,
                payee_cash_like: next() % 20 == 0,
            };
            let facts = Facts {
                amount_minor: event.amount_iso_minor as i64,
                currency: if eu { "EUR".into() } else { "KRW".into() },
                jurisdiction: if eu { "EU".into() } else { "KR".into() },
                user_limit_minor: -1,
                ..Facts::default()
            };
            (event, facts)
        })
        .collect();
    let spinner = ProgressBar::new_spinner();
    spinner.set_message("training a model on simulated traffic");
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let training = simulate(&SimConfig { customers: 2_000, days: 10, ..SimConfig::default() });
    let rows: Vec<Vec<f64>> =
        obol_risk::detect::replay_features(&training).iter().map(|features| features.0.to_vec()).collect();
    let labels: Vec<bool> = training.iter().map(|e| e.fraud.is_some()).collect();
    let names: Vec<String> = FEATURE_NAMES.iter().map(|s| s.to_string()).collect();
    let model = Model::train(&rows, &labels, &names, TrainParams::default(), "bench")?;
    drop(rows);
    spinner.finish_and_clear();
    let bar = progress(args.events, "deciding events");
    let mut engine = RiskEngine::new(policy, Some(model), obol_risk::features::DEFAULT_CAPACITY);
    let mut explained = 0u64;
    crate::alloc::start();
    let mut latencies_ns = Vec::with_capacity(events.len());
    for (event, facts) in &events {
        let started = Instant::now();
        let assessment = engine.assess(event, facts.clone());
        latencies_ns.push(started.elapsed().as_nanos() as u64);
        explained += u64::from(!assessment.contributions.is_empty());
        bar.inc(1);
    }
    let live_bytes = crate::alloc::stop();
    bar.finish_and_clear();
    latencies_ns.sort_unstable();
    let p = |fraction: f64| crate::bench::percentile(&latencies_ns, fraction);
    let actions = engine.decided();
    let bytes_per_entity = live_bytes as f64 / engine.entities().max(1) as f64;
    if args.json {
        crate::outln!(
            "{}",
            json!({"events": args.events, "entities": engine.entities(), "decision_p50_us": p(0.5), "decision_p99_us": p(0.99),
                "trees": engine.model().map_or(0, |m| m.params.iterations), "explained": explained,
                "bytes_per_entity": bytes_per_entity.round(), "step_up": actions[0], "allow": actions[1],
                "block": actions[2], "review": actions[3]})
        );
        return Ok(());
    }
    crate::outln!("obol bench risk: {} events, {} entities tracked, one core", args.events, engine.entities());
    crate::outln!(
        "decision (features, model of {} trees, {} bundles, contributions unless allowed): p50 {:.1} µs, p99 {:.1} µs",
        engine.model().map_or(0, |m| m.params.iterations),
        engine.policy().in_force(start_s).len(),
        p(0.5),
        p(0.99)
    );
    crate::outln!("memory per tracked entity: {bytes_per_entity:.0} B");
    crate::outln!(
        "decisions: {} step-up, {} allow, {} block, {} review",
        actions[0],
        actions[1],
        actions[2],
        actions[3]
    );
    Ok(())
}

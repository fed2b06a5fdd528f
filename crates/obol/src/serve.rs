//! `obol serve`: open the store, replay the ledger, start the writer and the HTTP server.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;
use obol_app::auth::{BOOTSTRAP_OPERATOR_ID, bootstrap_operator, issue_key_offline};
use obol_core::identity::Scopes;
use obol_http::{AppState, app};
use obol_store::{Engine, Node, PgStore, SqliteStore, Store};

/// Where the ledger is stored.
#[derive(Args, Debug)]
pub struct StoreArgs {
    /// Data directory of the embedded store (created if missing).
    #[arg(long, default_value = "./obol-data", env = "OBOL_DATA_DIR")]
    data_dir: PathBuf,
    /// Use PostgreSQL instead of the embedded store, e.g. postgres://user@host:5432/db.
    /// TLS as libpq: ?sslmode=disable|prefer (default)|require|verify-ca|verify-full, with
    /// &sslrootcert=/path/ca.pem for the verify modes.
    #[arg(long, env = "OBOL_DATABASE_URL")]
    database_url: Option<String>,
    /// PostgreSQL schema for obol's tables (one obol per schema).
    #[arg(long, default_value = "obol", env = "OBOL_DATABASE_SCHEMA")]
    database_schema: String,
}

impl StoreArgs {
    /// The embedded store's data directory (also where key files live by default).
    pub(crate) fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Whether the store was made already (PostgreSQL: assumed; the server's schema check
    /// follows when it is opened).
    pub(crate) fn exists(&self) -> bool {
        self.database_url.is_some() || self.data_dir.join("obol.sqlite3").exists()
    }

    /// The store, in words, without secrets.
    pub(crate) fn describe(&self) -> String {
        describe(self)
    }
}

/// Options of `obol serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8402", env = "OBOL_LISTEN")]
    listen: SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
    /// A playground: after starting, make a first payment over HTTP (printing each request and
    /// answer), then keep priced routes running (/demo/article, /demo/meter, /demo/api) with a
    /// funded demo payer whose device key is written to DATA_DIR/demo/device.key, and print the
    /// `obol pay` command that pays them.
    #[arg(long)]
    demo: bool,
    /// This deployment's instance id: its network is obol:<id>, and every voucher, commitment
    /// and exact authorization is signed for it. Drawn at random on first start and kept in the
    /// store. A copy of a data directory or database keeps the original's: give a staging copy
    /// its own (1 to 32 letters, digits, '-' or '_'), so nothing signed for one pays on the other.
    #[arg(long, env = "OBOL_INSTANCE_ID")]
    instance_id: Option<String>,
    /// PEM certificate chain for HTTPS (TLS 1.3, with --tls-key).
    #[arg(long, env = "OBOL_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS (with --tls-cert).
    #[arg(long, env = "OBOL_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (only behind a TLS-terminating proxy).
    #[arg(long)]
    insecure_http: bool,
    /// WebAuthn relying party id: the domain your pages run on (passkeys are bound to it).
    #[arg(long, default_value = "localhost", env = "OBOL_RP_ID")]
    rp_id: String,
    /// WebAuthn origin your pages run at (default: <scheme>://<rp-id>, any port).
    #[arg(long, env = "OBOL_RP_ORIGIN")]
    rp_origin: Option<String>,
    /// Requests per second each API key or device may make (0: no limit).
    #[arg(long, default_value_t = obol_http::DEFAULT_RATE_PER_CREDENTIAL, env = "OBOL_RATE_LIMIT")]
    rate_limit: u32,
    /// Failed authentications one address may make before it is slowed to one every 3 s
    /// (0: no limit; only for testing).
    #[arg(long, default_value_t = obol_http::DEFAULT_FAILED_AUTH_BURST, env = "OBOL_AUTH_FAILURE_LIMIT")]
    auth_failure_limit: u32,
    /// A proxy in front of obol (an address or ADDRESS/PREFIX range; repeat for several) whose
    /// X-Forwarded-For names the client: throttles and the risk engine then see the client's
    /// address instead of the proxy's. Only list proxies you run: anyone else could name any
    /// address. Example: --trusted-proxy 127.0.0.1 --trusted-proxy 10.0.0.0/8
    #[arg(long = "trusted-proxy", value_name = "ADDRESS[/PREFIX]", value_parser = parse_ip_range, env = "OBOL_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Vec<obol_http::ratelimit::IpRange>,
    /// File with the 32-byte master key that seals second-factor secrets (created if missing;
    /// default: master.key in the data directory). Back it up with the database.
    #[arg(long, env = "OBOL_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// File with the 32-byte seed of the Ed25519 key that signs the audit log's checkpoints
    /// (created if missing; default: audit.key in the data directory). Keep it like the master
    /// key: whoever holds it can sign checkpoints in the server's name.
    #[arg(long, env = "OBOL_AUDIT_KEY_FILE")]
    audit_key_file: Option<PathBuf>,
    /// Start signing the audit log with a new key (when the old audit.key is lost): the log's
    /// history is unchanged, but checkpoints saved before no longer verify against the new key.
    /// Without it, a store whose checkpoints another key signed refuses to start.
    #[arg(long)]
    new_audit_key: bool,
    /// Days records the law requires are kept after a person's last payment before an erasure
    /// they asked for destroys their personal data (default 1826, five years: EU AMLR art. 77,
    /// Korea's Electronic Financial Transactions Act art. 22). Until then the data is kept,
    /// restricted to reads for a legal obligation. 0 erases at once.
    #[arg(long, default_value_t = obol_app::privacy::RETENTION_DAYS_DEFAULT, env = "OBOL_RETENTION_DAYS")]
    retention_days: u64,
    /// Let webhooks name loopback and private addresses (a receiver on this host or network).
    /// Off by default: a holder's webhook must not reach services behind the firewall.
    #[arg(long, env = "OBOL_WEBHOOKS_ALLOW_PRIVATE")]
    webhooks_allow_private: bool,
    /// Seconds between sweeps that settle expired tabs, all due tabs in one record (also at start).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600), env = "OBOL_SETTLE_INTERVAL_S")]
    settle_interval_s: u64,
    /// Directory of risk policy bundles (*.toml), watched: a new or changed file goes live within
    /// a second without a restart; one that does not compile is refused and logged, and what was
    /// live stays. Bundles here add to the shipped ones (the same name with a higher version
    /// replaces one from its effective time).
    #[arg(long, env = "OBOL_POLICY_DIR")]
    policy_dir: Option<PathBuf>,
    /// A fraud model artifact from `obol risk train` on obol's streaming features (e.g. on
    /// `obol sim traffic` data or on labels from the review queue).
    #[arg(long, env = "OBOL_RISK_MODEL")]
    risk_model: Option<PathBuf>,
    /// Turn the risk engine off: every payment is allowed and nothing is decided or counted.
    #[arg(long)]
    no_risk: bool,
    /// Your fraud rate for PSD2 transaction risk analysis (RTS art. 18): fraud by value over the
    /// last 90 days, parts per million (0.01% is 100). Remote EU payments above the low-value
    /// limits are exempt from SCA while it is at or under the reference rate of their amount's
    /// band and the model raises no flag. -1 (the default): not monitored, no TRA exemption.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true, env = "OBOL_TRA_FRAUD_RATE_PPM")]
    tra_fraud_rate_ppm: i64,
    /// What the log (on standard error) says: error, warn, info, debug or trace, or per module
    /// (`info,obol_store=debug`).
    #[arg(long, default_value = "info", env = "OBOL_LOG")]
    log: String,
    /// How log lines look: text for people, json (one object a line) for log collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "OBOL_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log one line per request (method, path, status, time in µs, request id) at info level.
    /// Every answer carries its request id in `x-request-id` (the client's own, if it sent one).
    #[arg(long, env = "OBOL_ACCESS_LOG")]
    access_log: bool,
}

/// How log lines look.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: time, level, message, fields.
    Text,
    /// One JSON object a line.
    Json,
}

/// Installs the log: `args.log` as the filter, the access log only when asked for.
fn init_log(args: &ServeArgs) -> anyhow::Result<()> {
    let access = if args.access_log { "obol::access=info" } else { "obol::access=off" };
    // The WebAuthn library logs what an anonymous client sent, byte by byte, at ERROR: a sign-in
    // attempt could fill the log. obol reports the refusal itself; the library stays quiet
    // unless `--log` names it.
    let quiet = if args.log.contains("webauthn") { "" } else { ",webauthn_rs_core=off,webauthn_rs=off" };
    let filter = tracing_subscriber::EnvFilter::try_new(format!("{}{quiet},{access}", args.log))
        .with_context(|| format!("--log {:?} is not a log filter (try info or warn)", args.log))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
    }
    Ok(())
}

/// How often the policy directory is looked at.
const POLICY_POLL_MS: u64 = 1_000;

/// The risk engine `obol serve` runs: the shipped bundles, and the model if one is given.
fn build_risk(args: &ServeArgs) -> anyhow::Result<obol_app::risk::Risk> {
    if args.no_risk {
        return Ok(obol_app::risk::Risk::off());
    }
    let policy = obol_app::risk::shipped_policy().map_err(|e| anyhow::anyhow!(e))?;
    let model = match &args.risk_model {
        None => None,
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading the model {}", path.display()))?;
            let model = obol_risk::model::Model::from_json(&text)
                .map_err(|e| anyhow::anyhow!("the model {}: {e}", path.display()))?;
            if let Err(why) = model.check_live() {
                bail!(
                    "the model {} cannot score live payments: {why}. A live model is trained on obol's streaming \
                     features: --map time=...,amount=...,entity=...,device=...,payee=...,network=... and no --features",
                    path.display()
                );
            }
            Some(model)
        }
    };
    let risk = obol_app::risk::Risk::new(policy, model).with_tra_fraud_rate_ppm(args.tra_fraud_rate_ppm);
    if let Some(directory) = &args.policy_dir {
        if !directory.is_dir() {
            bail!("--policy-dir {}: not a directory", directory.display());
        }
        risk.watch(directory.clone());
    }
    Ok(risk)
}

pub(crate) fn open_store(args: &StoreArgs) -> anyhow::Result<Box<dyn Store>> {
    Ok(match &args.database_url {
        Some(url) => Box::new(
            PgStore::open_in_schema(url, &args.database_schema)
                .with_context(|| format!("opening the PostgreSQL store {}", redact_url(url)))?,
        ),
        None => Box::new(
            SqliteStore::open(&args.data_dir)
                .with_context(|| format!("opening the embedded store in {}", args.data_dir.display()))?,
        ),
    })
}

fn describe(args: &StoreArgs) -> String {
    match &args.database_url {
        Some(url) => format!("PostgreSQL {} schema {}", redact_url(url), args.database_schema),
        None => format!("embedded SQLite in {}", args.data_dir.display()),
    }
}

/// Hides a password in a database URL before it is printed.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        // key=value form: hide the value of password=...
        _ => url
            .split_whitespace()
            .map(|pair| if pair.starts_with("password=") { "password=***" } else { pair })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn print_new_key(key: &str) {
    println!();
    println!("  New operator API key (shown only this once; keep it somewhere safe):");
    println!();
    println!("      {key}");
    println!();
    println!("  Use it as:  export OBOL_API_KEY={key}");
    println!();
}

pub(crate) fn wall_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// `obol key reset-operator`.
pub fn reset_operator_key(args: &StoreArgs) -> anyhow::Result<()> {
    // Run in the wrong directory, opening would create an empty store and "reset" nothing.
    if args.database_url.is_none() && !args.data_dir.join("obol.sqlite3").exists() {
        anyhow::bail!(
            "no obol store in {} (no obol.sqlite3 there): pass the --data-dir `obol serve` uses; nothing was changed",
            args.data_dir.display()
        );
    }
    let store = open_store(args)?;
    let spinner = crate::out::spinner("replaying the ledger log".into());
    let mut node = Node::open(store, rand::random()).context("replaying the ledger log")?;
    spinner.finish_and_clear();
    if node.seq_last() == 0 {
        anyhow::bail!("{} holds no records, so no operator to reset: is it the server's store?", describe(args));
    }
    let key = obol_app::auth::reset_operator_key(&mut node, &obol_app::SystemEnv)?;
    println!("obol: revoked the operator's keys and issued a new one for {}", describe(args));
    print_new_key(&key);
    Ok(())
}

/// The policy bundles obol ships (`policy/`), compiled into the binary.
pub(crate) use obol_app::risk::SHIPPED_POLICY;

/// This server's instance id (its x402 network is `obol:<id>`): made once, kept in the store;
/// `asked` (from `--instance-id`) replaces it.
fn instance_id(node: &mut Node<Box<dyn Store>>, asked: Option<&str>) -> anyhow::Result<String> {
    const KEY: &str = "instance_id";
    let stored = match node.store_mut().meta_get(KEY)? {
        Some(bytes) => Some(String::from_utf8(bytes).context("the stored instance id is not text")?),
        None => None,
    };
    match (stored, asked) {
        (Some(stored), None) => Ok(stored),
        (Some(stored), Some(asked)) if stored == asked => Ok(stored),
        (stored, asked) => {
            let id = asked.map_or_else(|| format!("{:016x}", rand::random::<u64>()), str::to_string);
            obol_http::check_instance_id(&id).map_err(|e| anyhow::anyhow!(e))?;
            if let Some(stored) = stored {
                tracing::warn!(
                    from = %format!("obol:{stored}"),
                    to = %format!("obol:{id}"),
                    "the network changes: vouchers, commitments and authorizations signed for the old one are refused \
                     from now on (open tabs go on with new ones)"
                );
            }
            node.store_mut().meta_put(KEY, id.as_bytes())?;
            Ok(id)
        }
    }
}

/// The audit key's seed from `path` (created on a store's first start). The store remembers the
/// public key that signs its checkpoints: a missing or different key file (lost, or another
/// server's) refuses to start unless `new_key` says to start signing with a new one, so saved
/// checkpoints never stop verifying unnoticed.
fn audit_key(
    node: &mut Node<Box<dyn Store>>,
    path: &std::path::Path,
    new_key: bool,
) -> anyhow::Result<obol_app::vault::Secret<[u8; 32]>> {
    const KEY: &str = "audit_public_key";
    let stored = node.store_mut().meta_get(KEY)?;
    let restore = "restore the audit.key this store was signing with, or pass --new-audit-key to start signing with a \
                   new key (the log's history stays; checkpoints saved before no longer verify)";
    if stored.is_some() && !path.exists() && !new_key {
        bail!(
            "the audit key {} is missing, but this store's checkpoints were signed with one: {restore}",
            path.display()
        );
    }
    let seed = obol_app::vault::load_or_create_key(path, &obol_app::SystemEnv)
        .with_context(|| format!("reading the audit key {}", path.display()))?;
    let public = ed25519_dalek::SigningKey::from_bytes(seed.expose_secret()).verifying_key().to_bytes();
    match stored {
        Some(bytes) if bytes == public => {}
        Some(_) if !new_key => {
            bail!(
                "the audit key {} is not the key this store's checkpoints were signed with: {restore}",
                path.display()
            )
        }
        Some(_) => {
            tracing::warn!(
                "the audit log is signed with a new key from now on; checkpoints saved before do not verify"
            );
            node.store_mut().meta_put(KEY, &public)?;
        }
        None => node.store_mut().meta_put(KEY, &public)?,
    }
    Ok(seed)
}

/// The vault over the master key at `path`: its system key (wrapped in the store's metadata;
/// a store without one draws a random one, unless TOTP seeds were sealed under the master key
/// itself before the vault had a system key: then it adopts the master key's bytes, which
/// still open them). A missing or different master key refuses to start, since every sealed
/// secret and every person's data key would be unreadable; so does a rotation left half-done.
fn vault(node: &mut Node<Box<dyn Store>>, path: &std::path::Path) -> anyhow::Result<obol_app::vault::Vault> {
    use obol_app::vault::{KeyWrap, SYSTEM_KEY_META, Vault};
    let next = obol_app::vault::next_key_path(path);
    if next.exists() {
        bail!(
            "{} exists: a master-key rotation was interrupted, and some keys are wrapped by the new key. \
             Run `obol vault rotate-master-key` (with the same store options) again to finish it",
            next.display()
        );
    }
    let stored = node.store_mut().meta_get(SYSTEM_KEY_META)?;
    let restore = "restore the master.key this store was written with";
    if stored.is_some() && !path.exists() {
        bail!("the master key {} is missing, but this store's vault was sealed with one: {restore}", path.display());
    }
    let master_key = obol_app::vault::load_or_create_key(path, &obol_app::SystemEnv)
        .with_context(|| format!("reading the master key {}", path.display()))?;
    let wrap = KeyWrap::new(&master_key);
    // Every person's key must open too (a rotation could have lost its new key file).
    let foreign = node
        .store_mut()
        .meta_scan(obol_app::vault::PERSON_KEY_META_PREFIX)?
        .iter()
        .filter(|(_, wrapped)| KeyWrap::wrapped_by(wrapped) != Some(wrap.id()))
        .count();
    if foreign > 0 {
        bail!(
            "{foreign} personal data key(s) in this store are wrapped by another master key than {}: {restore} \
             (after an interrupted rotation, the key in master.key.next)",
            path.display()
        );
    }
    let system_key = match stored {
        Some(wrapped) => wrap.unwrap(SYSTEM_KEY_META, &wrapped).map_err(|error| {
            anyhow::anyhow!("the master key {} does not open this store's vault ({error}): {restore}", path.display())
        })?,
        None => {
            let sealed_before = {
                let ledger = node.ledger();
                let ledger = ledger.read().map_err(|_| anyhow::anyhow!("ledger lock poisoned"))?;
                ledger.identity().principals().any(|p| p.totp.is_some())
            };
            let system_key = if sealed_before {
                obol_app::vault::Secret::new(*master_key.expose_secret())
            } else {
                let mut key = [0u8; 32];
                obol_app::Env::fill(&obol_app::SystemEnv, &mut key);
                obol_app::vault::Secret::new(key)
            };
            node.store_mut()
                .meta_put(SYSTEM_KEY_META, &wrap.wrap(&obol_app::SystemEnv, SYSTEM_KEY_META, &system_key))?;
            system_key
        }
    };
    Ok(Vault::with_system_key(&master_key, &system_key))
}

/// `obol serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_log(&args)?;
    let store = open_store(&args.store)?;
    let started = Instant::now();
    let spinner = crate::out::spinner("replaying the ledger log".into());
    let mut node = Node::open(store, rand::random()).context("replaying the ledger log")?;
    spinner.finish_and_clear();
    let (accounts_count, transfers_count) = {
        let ledger = node.ledger();
        let ledger = ledger.read().map_err(|_| anyhow::anyhow!("ledger lock poisoned"))?;
        (ledger.accounts_count(), ledger.transfers_count())
    };
    tracing::info!(
        records = node.seq_last(),
        accounts = accounts_count,
        transfers = transfers_count,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "ledger replayed"
    );
    let fresh_store = match bootstrap_operator(&mut node, &obol_app::SystemEnv).context("creating the operator")? {
        Some(key) => {
            print_new_key(&key);
            true
        }
        None => false,
    };
    let demo_key = if args.demo {
        // A short-lived operator key for the walk-through; it shows in the operator's activity.
        let expires_ns = wall_ns() + 600 * 1_000_000_000;
        Some(issue_key_offline(
            &mut node,
            BOOTSTRAP_OPERATOR_ID,
            Scopes(Scopes::ALL),
            expires_ns,
            &obol_app::SystemEnv,
        )?)
    } else {
        None
    };
    let master_key_path = args.master_key_file.clone().unwrap_or_else(|| args.store.data_dir.join("master.key"));
    let vault = vault(&mut node, &master_key_path)?;
    let audit_key_path = args.audit_key_file.clone().unwrap_or_else(|| args.store.data_dir.join("audit.key"));
    let audit_key = audit_key(&mut node, &audit_key_path, args.new_audit_key)?;
    let instance_id = instance_id(&mut node, args.instance_id.as_deref())?;
    let engine = Engine::start(node);
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(load_tls(cert, key)?),
        _ => None,
    };
    if tls.is_none() && !args.listen.ip().is_loopback() && !args.insecure_http {
        bail!(
            "refusing to serve plain HTTP on {}: give --tls-cert and --tls-key, listen on a loopback address, \
             or pass --insecure-http if a TLS-terminating proxy stands in front",
            args.listen
        );
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let state = AppState::with_vault(engine.clone(), scheme, vault)
        .with_rate_limit(args.rate_limit, args.auth_failure_limit)
        .with_trusted_proxies(args.trusted_proxies.clone())
        .with_instance_id(&instance_id)
        .map_err(|e| anyhow::anyhow!(e))?
        .with_audit_key(&audit_key)
        .with_retention_days(args.retention_days)
        .with_webhooks_allow_private(args.webhooks_allow_private);
    tracing::info!(network = %state.x402_network, "x402 network id");
    tracing::info!(key = %state.audit_key.verifier_key(), "audit log checkpoints are signed by");
    let rp_origin = args.rp_origin.clone().unwrap_or_else(|| format!("{scheme}://{}", args.rp_id));
    let state = state.with_passkeys(&args.rp_id, &rp_origin).map_err(|e| anyhow::anyhow!(e))?;
    let state = state.with_risk(build_risk(&args)?);
    let state = if fresh_store { state } else { state.restarted() };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(listener) => listener,
            Err(error) => bail!("cannot listen on {}: {error} (is another obol running? try --listen)", args.listen),
        };
        let address = listener.local_addr()?;
        state
            .risk
            .load(&state.engine, &*state.env)
            .await
            .map_err(|e| anyhow::anyhow!("loading the risk engine's state: {e}"))?;
        state
            .step_up
            .restore(&state.engine, state.env.now_ns())
            .await
            .map_err(|e| anyhow::anyhow!("restoring the open step-up challenges: {e}"))?;
        state.risk.reload(&state).await.map_err(|e| anyhow::anyhow!("loading the policy directory: {e}"))?;
        if state.risk.enabled() {
            let watcher = state.clone();
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(std::time::Duration::from_millis(POLICY_POLL_MS));
                loop {
                    ticker.tick().await;
                    if let Err(error) = watcher.risk.reload(&watcher).await {
                        tracing::error!(%error, "reloading the policy directory failed; retrying");
                    }
                }
            });
        }
        println!("obol {} listening on {scheme}://{address} ({})", env!("CARGO_PKG_VERSION"), describe(&args.store));
        let demo_ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
        if demo_key.is_some() && scheme == "https" {
            println!("--demo runs over plain HTTP only; start without --tls-cert to see it");
        } else if let Some(key) = demo_key {
            let base = format!("{scheme}://{address}");
            let data_dir = args.store.data_dir.clone();
            let ready = Arc::clone(&demo_ready);
            tokio::spawn(async move {
                if let Err(error) = crate::demo::run(&base, &key, &data_dir, ready).await {
                    eprintln!("demo failed: {error:#}");
                }
            });
        }
        tokio::spawn(crate::webhooks_out::run(state.app.clone()));
        let sweeper = state.clone();
        let interval = std::time::Duration::from_secs(args.settle_interval_s);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            loop {
                ticker.tick().await;
                match obol_app::tabs::settle_due_tabs(&sweeper).await {
                    Ok(0) => {}
                    Ok(settled) => tracing::info!(settled, "settled expired tabs"),
                    Err(error) => tracing::error!(%error, "settling expired tabs failed; retrying next sweep"),
                }
                if let Err(error) = sweeper.risk.save(&sweeper.engine).await {
                    tracing::error!(%error, "saving the risk engine's state failed; retrying next sweep");
                }
                if let Err(error) = sweeper.step_up.prune(&sweeper.engine, sweeper.env.now_ns()).await {
                    tracing::error!(%error, "removing expired step-up challenges failed; retrying next sweep");
                }
                if let Err(error) = obol_app::webhooks::prune(&sweeper).await {
                    tracing::error!(%error, "removing old outbox events failed; retrying next sweep");
                }
                match obol_app::disputes::sweep(&sweeper).await {
                    Ok(0) => {}
                    Ok(acted) => tracing::info!(acted, "dispute timers acted (provisional credits, resolutions)"),
                    Err(error) => tracing::error!(%error, "the dispute timer sweep failed; retrying next sweep"),
                }
                match obol_app::privacy::sweep(&sweeper).await {
                    Ok(0) => {}
                    Ok(erased) => tracing::info!(erased, "erased personal data whose retention ended"),
                    Err(error) => tracing::error!(%error, "the retention scheduler failed; retrying next sweep"),
                }
            }
        });
        let last = state.clone();
        let router = if args.demo {
            app(state.clone())
                .merge(obol_http::with_request_ids(crate::demo::routes(state.clone(), Arc::clone(&demo_ready))?))
        } else {
            app(state)
        };
        let served = serve_connections(listener, router, tls).await;
        // Velocity and regulatory counters survive the restart.
        match last.risk.save(&last.engine).await {
            Ok(bytes) if bytes > 0 => tracing::info!(bytes, "saved the risk engine's state"),
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "saving the risk engine's state failed"),
        }
        served
    })?;
    engine.shutdown();
    // stdout may be gone (a supervisor closed the pipe); stopping must not fail on that.
    let _ = writeln!(std::io::stdout(), "obol stopped");
    Ok(())
}

/// Reads a PEM certificate chain and key into a TLS 1.3-only server configuration.
fn load_tls(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading the certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing the certificate {}", cert.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", cert.display());
    }
    let private_key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading the private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, private_key)
        .context("the certificate and key do not match or are unsupported")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `router` over TLS until a shutdown signal; each connection is HTTP/1.1 inside TLS 1.3.
/// Most connections served at once; past it obol stops accepting until one closes (the kernel
/// queues the rest), so a flood of idle connections cannot exhaust memory or file descriptors.
pub const CONNECTIONS_MAX: usize = 10_000;
/// Longest a TLS handshake may take.
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Longest a client may take to send a request's headers (a slow client holds a connection
/// only this long).
pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Longest a shutdown waits for requests in flight.
const SHUTDOWN_GRACE_MS: u64 = 10_000;

/// Serves HTTP (or HTTPS with `tls`) on `listener` until SIGINT or SIGTERM, with a cap on
/// connections and time limits on handshakes and header reads; then lets requests in flight
/// finish (for at most ten seconds).
async fn serve_connections(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<()> {
    use std::time::Duration;
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let permits = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.context("the connection limit closed")?,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let router = tower::ServiceExt::map_request(
            router.clone(),
            move |mut request: axum::http::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                request
            },
        );
        let service = hyper_util::service::TowerToHyperService::new(router);
        let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
        builder
            .http1()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_millis(HEADER_READ_TIMEOUT_MS));
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let served = match acceptor {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS), acceptor.accept(tcp));
                    let tls = match handshake.await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(error)) => {
                            tracing::debug!(%error, %peer, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                    watcher.watch(connection.into_owned()).await
                }
                None => {
                    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(tcp), service);
                    watcher.watch(connection.into_owned()).await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still in flight after 10 s; stopping anyway");
    }
    Ok(())
}

fn parse_ip_range(text: &str) -> Result<obol_http::ratelimit::IpRange, String> {
    obol_http::ratelimit::IpRange::parse(text)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

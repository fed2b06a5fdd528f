//! obol's application layer: every use case a shell offers (open a tab, pay by transfer,
//! voucher, tick or x402 `exact`, top up, settle, step-up, review decisions, policy changes,
//! identity changes) as one pipeline: authenticate (the shell hands over a [`auth::Caller`]) ->
//! authorize ([`authz`]) -> decide (risk, limits, step-up) -> one atomic record through the
//! engine -> answer -> effects after commit.
//!
//! **Architecture Invariant:** nothing here names HTTP. The shells (obol-http, the simulator)
//! parse their input, call one function of this crate and map its answer; the one
//! [`error::Error`] names what failed, and the HTTP shell alone picks a status for it.
//!
//! **API Boundary:** [`App`] is the state every use case shares; the modules are the use cases.
#![deny(missing_docs)]

pub(crate) mod approvals;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod checklist;
pub mod disputes;
pub mod env;
pub mod error;
pub mod explain;
pub mod freeze;
pub mod identity;
pub mod labels;
pub mod lists;
pub mod passkeys;
pub mod priced;
pub mod privacy;
pub mod refunds;
pub mod reviews;
pub mod risk;
pub mod sessions;
pub mod statement;
pub mod stepup;
pub mod tabs;
pub mod transfers;
pub mod vault;
pub mod verifier;
pub mod views;
pub mod webhooks;
pub mod x402;

use std::sync::Arc;

use obol_store::Engine;

pub use crate::env::{Env, SystemEnv};
pub use crate::error::Error;

/// What every use case shares: the engine and the services around it.
#[derive(Clone)]
pub struct App {
    /// The ledger engine.
    pub engine: Engine,
    /// Checks API keys.
    pub auth: Arc<auth::Authenticator>,
    /// Seals TOTP seeds.
    pub vault: Arc<vault::Vault>,
    /// Step-up challenges and known payees.
    pub step_up: Arc<stepup::StepUp>,
    /// The WebAuthn relying party and ceremonies in flight.
    pub passkeys: Arc<passkeys::Passkeys>,
    /// This server's x402 network id, `obol:<instance-id>`.
    pub x402_network: Arc<str>,
    /// What every voucher, commitment and `exact` authorization here is signed for: the hash
    /// of `x402_network`.
    pub network: obol_core::channel::Network,
    /// Checks voucher signatures in batches.
    pub verifier: verifier::Verifier,
    /// Decides payments; holds the review queue and the live policy.
    pub risk: Arc<risk::Risk>,
    /// Signs the audit log's checkpoints.
    pub audit_key: Arc<audit::AuditKey>,
    /// Dashboard sessions (in memory: a restart signs everyone out).
    pub sessions: Arc<sessions::Sessions>,
    /// The webhook delivery loop's latest attempts per endpoint (in memory: what it tried, for
    /// people to look at; the cursors in the log are what delivery goes by).
    pub webhook_attempts: Arc<webhooks::Attempts>,
    /// The routes priced with HTTP 402 on this server and what each earned since it started (in
    /// memory: counts for people to look at; the money is in the ledger and the tabs).
    pub priced_routes: Arc<priced::PricedRoutes>,
    /// The clock and randomness every use case reads ([`SystemEnv`] unless [`App::with_env`]).
    pub env: Arc<dyn Env>,
    /// Days records the law requires are kept after a person's last payment before a requested
    /// erasure destroys their data key ([`privacy::RETENTION_DAYS_DEFAULT`]).
    pub retention_days: u64,
    /// Serializes the vault's writes (a data key's creation and destruction, the profile sealed
    /// under it), so no write can seal under a key being replaced or destroyed.
    pub(crate) vault_writes: Arc<tokio::sync::Mutex<()>>,
    /// Serializes changes to spending limits (a device's, an account's monthly one): whether a
    /// change only tightens is decided against the limit it replaces, so no other change may land
    /// between that check and the write (nor reorder the write and the copy the risk engine reads).
    pub(crate) limit_writes: Arc<tokio::sync::Mutex<()>>,
    /// When each credential last had its own read of its person's data logged (a cache: at most
    /// one access-log entry an hour per credential).
    pub(crate) own_reads: Arc<std::sync::Mutex<std::collections::HashMap<(u128, String), u64>>>,
    /// Serializes refunds: the check of what a payment has left and the record that refunds it.
    pub(crate) refunds: Arc<tokio::sync::Mutex<refunds::RefundBook>>,
    /// Webhooks may name loopback and private addresses (tests, a receiver on the same host).
    pub webhooks_allow_private: bool,
}

impl App {
    /// The use cases over `engine`, with secrets sealed by `vault`, passkeys for `passkeys`, a
    /// network of its own (drawn at random until [`App::with_instance_id`]) and risk off.
    pub fn new(engine: Engine, vault: vault::Vault, passkeys: passkeys::Passkeys) -> App {
        // A network of its own until told otherwise: two embedded servers never share one.
        let env: Arc<dyn Env> = Arc::new(SystemEnv);
        let instance_id = format!("{:016x}", env.random_id() as u64);
        let network_id = format!("obol:{instance_id}");
        let mut audit_seed = [0u8; 32];
        env.fill(&mut audit_seed);
        let audit_key = audit::AuditKey::new(&instance_id, &vault::Secret::new(audit_seed));
        let network = obol_core::channel::Network::named(&network_id);
        App {
            engine,
            auth: Arc::new(auth::Authenticator::new()),
            vault: Arc::new(vault),
            step_up: Arc::default(),
            passkeys: Arc::new(passkeys),
            x402_network: Arc::from(network_id),
            network,
            verifier: verifier::Verifier::start(network),
            risk: Arc::new(risk::Risk::off()),
            audit_key: Arc::new(audit_key),
            sessions: Arc::default(),
            webhook_attempts: Arc::default(),
            priced_routes: Arc::default(),
            env,
            retention_days: privacy::RETENTION_DAYS_DEFAULT,
            vault_writes: Arc::default(),
            limit_writes: Arc::default(),
            own_reads: Arc::default(),
            refunds: Arc::default(),
            webhooks_allow_private: false,
        }
    }

    /// Keeps records the law requires for `days` after a person's last payment before a
    /// requested erasure runs (0: erasure runs at once).
    pub fn with_retention_days(mut self, days: u64) -> App {
        self.retention_days = days;
        self
    }

    /// Lets webhooks name loopback and private addresses.
    pub fn with_webhooks_allow_private(mut self, allow: bool) -> App {
        self.webhooks_allow_private = allow;
        self
    }

    /// Reads time and draws randomness from `env` (the simulator's clock and seeded generator).
    pub fn with_env(mut self, env: Arc<dyn Env>) -> App {
        self.env = env;
        self
    }

    /// Sets the network id to `obol:<instance_id>` (1 to 32 letters, digits, `-` or `_`).
    pub fn with_instance_id(mut self, instance_id: &str) -> Result<App, String> {
        check_instance_id(instance_id)?;
        self.x402_network = Arc::from(format!("obol:{instance_id}"));
        self.network = obol_core::channel::Network::named(&self.x402_network);
        self.verifier = verifier::Verifier::start(self.network);
        self.audit_key = Arc::new(self.audit_key.renamed(instance_id));
        Ok(self)
    }

    /// Signs audit checkpoints with the key of seed `seed` (kept like the master key).
    pub fn with_audit_key(mut self, seed: &vault::Secret<[u8; 32]>) -> App {
        let instance_id = self.x402_network.strip_prefix("obol:").unwrap_or(&self.x402_network).to_string();
        self.audit_key = Arc::new(audit::AuditKey::new(&instance_id, seed));
        self
    }
}

/// Whether `instance_id` may name a network: 1 to 32 letters, digits, `-` or `_`.
pub fn check_instance_id(instance_id: &str) -> Result<(), String> {
    let valid = (1..=32).contains(&instance_id.len())
        && instance_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid { Ok(()) } else { Err(format!("instance id {instance_id:?}: 1 to 32 letters, digits, '-' or '_'")) }
}

/// The ledger as applied so far, whatever a panicking reader left.
pub fn read_ledger(app: &App) -> std::sync::RwLockReadGuard<'_, obol_core::ledger::Ledger> {
    app.engine.ledger().read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A canonical decimal id (1 to 2^128-2) in `field`.
pub fn parse_id(field: &str, text: &str) -> Result<u128, Error> {
    obol_core::money::parse_digits(text)
        .map_err(|error| Error::InvalidId { field: field.into(), reason: error.to_string() })
}

/// A control character, a line or paragraph separator, or a bidirectional override: text
/// that could move a terminal's cursor, or forge or hide a line.
pub fn unsafe_char(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether `text` is safe to show on a terminal or in a log line: no control characters, line
/// or paragraph separators, or bidirectional overrides (which could forge or hide text).
pub fn plain_text(field: &str, text: &str) -> Result<(), Error> {
    match text.chars().find(|c| unsafe_char(*c)) {
        Some(c) => Err(Error::InvalidField(format!(
            "{field} may not hold control, line-separator or text-direction characters (found U+{:04X})",
            u32::from(c)
        ))),
        None => Ok(()),
    }
}

/// A canonical decimal amount (no sign, point or leading zeros) in `field`.
pub fn parse_amount(field: &str, text: &str) -> Result<u128, Error> {
    obol_core::money::Amount::parse(text)
        .map(|amount| amount.0)
        .map_err(|error| Error::InvalidAmount { field: field.into(), reason: error.to_string() })
}

/// An asset: an ISO 4217 code, or a custom asset's code, at a scale (whether a custom one is
/// registered is checked where an account takes it: [`assets::check_registered`]).
pub fn parse_asset(code: &str, scale: u8) -> Result<obol_core::money::Asset, Error> {
    obol_core::money::Asset::parse(code, scale).map_err(|error| Error::InvalidAsset(error.to_string()))
}

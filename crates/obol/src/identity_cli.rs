//! `obol principal|key|device|mfa ...`: identity management from the command line, through the
//! public HTTP API like every other client command.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use base64ct::{Base64UrlUnpadded, Encoding};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use crate::client::{Api, Connection, parse_asset, print, runtime};

/// `obol principal ...`
#[derive(Subcommand, Debug)]
pub enum PrincipalCommand {
    /// Create a principal (operator). Example: obol principal create --id 100 --role holder --name Alice
    ///
    /// The name and the other personal fields are sealed in the vault under the principal's own
    /// data key; the ledger and the audit log see only the id.
    Create {
        /// Id; a random one if omitted.
        #[arg(long)]
        id: Option<String>,
        /// holder, merchant, analyst, auditor or operator.
        #[arg(long)]
        role: String,
        /// Name (personal data, kept in the vault).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        fields: PersonalFields,
        #[command(flatten)]
        connection: Connection,
    },
    /// Show a person's personal fields. Anyone but the person states why (--purpose); the read
    /// is logged where the person can see it. Example: obol principal profile 100 --purpose support
    Profile {
        /// Principal id.
        id: String,
        /// support, dispute, fraud_investigation, legal_obligation, data_subject_request; with the
        /// person's consent: marketing, analytics, threat_intel.
        #[arg(long)]
        purpose: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Change a person's personal fields (the person or an operator). An empty value clears a
    /// field. Example: obol principal update 100 --email ada@example.org
    Update {
        /// Principal id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        fields: PersonalFields,
        #[command(flatten)]
        connection: Connection,
    },
    /// Erase a person (GDPR art. 17): suspends them and destroys their data key, at once or,
    /// while the law's retention runs from their last payment, when it ends.
    Erase {
        /// Principal id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Everything obol holds about a person, as JSON (GDPR art. 15 and 20), and with
    /// --camt053-dir each of its accounts' payments as an ISO 20022 camt.053 statement.
    /// Example: obol principal export 100 --camt053-dir ./alice > alice.json
    Export {
        /// Principal id.
        id: String,
        /// Also write `account-<id>.camt053.xml` here for every account the person owns.
        #[arg(long)]
        camt053_dir: Option<std::path::PathBuf>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Who read a person's personal fields, when and why (newest first).
    AccessLog {
        /// Principal id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Show, give or withdraw consents (only the person changes them).
    /// Example: obol principal consent 100 marketing --grant
    Consent {
        /// Principal id.
        id: String,
        /// marketing, analytics or threat_intel; omit to list all.
        purpose: Option<String>,
        /// Give the consent.
        #[arg(long, conflicts_with = "withdraw", requires = "purpose")]
        grant: bool,
        /// Withdraw it (takes effect at once).
        #[arg(long, requires = "purpose")]
        withdraw: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Show a principal.
    Show {
        /// Principal id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// List principals by id (operator, analysts, auditors).
    List {
        /// Only this role: operator, holder, merchant, analyst or auditor.
        #[arg(long)]
        role: Option<String>,
        /// active or suspended.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        paging: crate::client::Paging,
        #[command(flatten)]
        connection: Connection,
    },
    /// Suspend a principal (operator): its keys and devices stop working.
    Suspend {
        /// Principal id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Reactivate a suspended principal (operator).
    Activate {
        /// Principal id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Show a principal's security activity in plain words.
    Activity {
        /// Principal id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// A holder's security checklist: score, what is done, and the next step to raise it.
    ///
    /// Example: obol principal checklist 100
    Checklist {
        /// Principal id (a holder or merchant).
        id: String,
        /// Explanations in this language (en, ko).
        #[arg(long, default_value = "en")]
        lang: String,
        #[command(flatten)]
        connection: Connection,
    },
}

/// Optional personal fields, kept in the vault.
#[derive(clap::Args, Debug, Default)]
pub struct PersonalFields {
    /// Email address.
    #[arg(long)]
    email: Option<String>,
    /// Phone number.
    #[arg(long)]
    phone: Option<String>,
    /// Postal address (separate lines with a newline).
    #[arg(long)]
    postal_address: Option<String>,
    /// Free-text notes.
    #[arg(long)]
    notes: Option<String>,
}

impl PersonalFields {
    fn into_body(self, body: &mut Map<String, Value>) {
        for (field, value) in [
            ("email", self.email),
            ("phone", self.phone),
            ("postal_address", self.postal_address),
            ("notes", self.notes),
        ] {
            if let Some(value) = value {
                body.insert(field.into(), json!(value));
            }
        }
    }
}

/// `obol key ...` (API keys)
#[derive(Subcommand, Debug)]
pub enum ApiKeyCommand {
    /// Create an API key for a principal; prints it once.
    Create {
        /// Whose key.
        #[arg(long)]
        principal: String,
        /// Comma-separated scopes: read, pay, manage (default: yours).
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Seconds until the key stops working (default: never).
        #[arg(long)]
        expires_in_s: Option<u64>,
        /// Write the key to this file (created with mode 0600; must not exist) instead of
        /// printing it; use it with --api-key-file.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        connection: Connection,
    },
    /// List a principal's keys (never their secrets).
    List {
        /// Whose keys.
        #[arg(long)]
        principal: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Revoke a key at once.
    Revoke {
        /// The key id (the 16 hex characters after obol_live_).
        key_id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Replace a key; the old one keeps working for --overlap-s seconds (0: revoke now).
    Rotate {
        /// The key id.
        key_id: String,
        /// Seconds the old key keeps working.
        #[arg(long, default_value_t = 3600)]
        overlap_s: u64,
        #[command(flatten)]
        connection: Connection,
    },
}

/// `obol device ...`
#[derive(Subcommand, Debug)]
pub enum DeviceCommand {
    /// Make an Ed25519 key pair for a device: writes the private key (32 bytes, hex) to FILE and
    /// prints the public JWK to register. Nothing is sent to the server.
    Keygen {
        /// Where to write the private key (created with mode 0600; must not exist).
        #[arg(long)]
        out: PathBuf,
        /// The key id the device will sign with.
        #[arg(long)]
        kid: String,
    },
    /// Register a device for a holder from its public JWK.
    ///
    /// Example: obol device register --principal 100 --jwk '{"kty":"OKP","crv":"Ed25519","x":"...","kid":"meter-1"}'
    ///          --asset USD/2 --per-payment 500 --per-day 1000
    Register {
        /// The holder.
        #[arg(long)]
        principal: String,
        /// The public key as an RFC 8037 JWK (JSON text).
        #[arg(long)]
        jwk: String,
        /// Device id; a random one if omitted.
        #[arg(long)]
        id: Option<String>,
        /// Asset of the limits, e.g. USD/2.
        #[arg(long)]
        asset: Option<String>,
        /// Largest single payment, minor units.
        #[arg(long)]
        per_payment: Option<String>,
        /// Most per UTC day, minor units.
        #[arg(long)]
        per_day: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// List devices in the order they were registered: a holder's own, or (operator, analyst,
    /// auditor) every one.
    ///
    /// Example: obol device list --principal 100 --status active
    List {
        /// Only this holder's.
        #[arg(long)]
        principal: Option<String>,
        /// active, suspended or revoked.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        paging: crate::client::Paging,
        #[command(flatten)]
        connection: Connection,
    },
    /// Suspend a device (reversible).
    Suspend {
        /// Device id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Reactivate a suspended device.
    Activate {
        /// Device id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Revoke a device for good.
    Revoke {
        /// Device id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Replace a device's key (the old key stops at once).
    Rotate {
        /// Device id.
        id: String,
        /// The new public JWK (JSON text).
        #[arg(long)]
        jwk: String,
        #[command(flatten)]
        connection: Connection,
    },
}

/// `obol approve CHALLENGE`: approve a step-up challenge.
///
/// A payment (or a security change) that needs a second factor is answered with a challenge id
/// (exit code 4). Approve it here, then send the same command again with `--approval CHALLENGE`.
/// Or pass `--totp CODE` to the command itself: it approves and resends in one go.
///
/// Example: obol approve 8c4f0d2e --code 123456
#[derive(Args, Debug)]
pub struct ApproveArgs {
    /// The challenge id the refused request printed.
    challenge: String,
    /// A current code from your authenticator app (TOTP).
    #[arg(long, conflicts_with = "recovery_code", required_unless_present = "recovery_code")]
    code: Option<String>,
    /// One of the recovery codes shown when you enrolled (each works once).
    #[arg(long)]
    recovery_code: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

/// `obol approve ...`
pub fn approve(args: ApproveArgs) -> anyhow::Result<()> {
    let body = match (&args.code, &args.recovery_code) {
        (Some(code), _) => json!({"code": code}),
        (None, Some(recovery)) => json!({"recovery_code": recovery}),
        (None, None) => return Err(anyhow!("give --code or --recovery-code")),
    };
    let value = call(
        &args.connection,
        reqwest::Method::POST,
        format!("/v1/challenges/{}/approve", args.challenge),
        Some(body),
    )?;
    print(&value);
    if !crate::out::is_json() {
        crate::outln!(
            "Approved. Send the request again with --approval {} before the challenge expires.",
            args.challenge
        );
    }
    Ok(())
}

/// `obol mfa ...`
#[derive(Subcommand, Debug)]
pub enum MfaCommand {
    /// Start TOTP enrolment: prints the otpauth URI and secret, and writes the QR code as SVG.
    Enroll {
        /// Your principal id.
        #[arg(long)]
        principal: String,
        /// A current code, when replacing an existing authenticator.
        #[arg(long)]
        code: Option<String>,
        /// Where to write the QR code.
        #[arg(long, default_value = "obol-totp.svg")]
        qr_out: PathBuf,
        #[command(flatten)]
        connection: Connection,
    },
    /// Confirm enrolment with the code your app shows; prints recovery codes once.
    Confirm {
        /// Your principal id.
        #[arg(long)]
        principal: String,
        /// The 6-digit code.
        #[arg(long)]
        code: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Approve a step-up challenge with a TOTP code or a recovery code (same as `obol approve`).
    Approve(ApproveArgs),
    /// Set when payments need approval.
    StepUp {
        /// Whose policy.
        #[arg(long)]
        principal: String,
        /// Payments above this many minor units need approval (with --asset).
        #[arg(long, requires = "asset")]
        above: Option<String>,
        /// Asset of --above, e.g. EUR/2.
        #[arg(long)]
        asset: Option<String>,
        /// Do not ask for approval on a first payment to a new payee.
        #[arg(long)]
        no_new_payee: bool,
        /// Do not ask for approval on a device's first payment.
        #[arg(long)]
        no_new_device: bool,
        /// Once you have a second factor, changing this policy needs it: a current TOTP code
        /// (or a recovery code) approves the change in one go.
        #[arg(long, conflicts_with = "approval")]
        code: Option<String>,
        /// An already approved challenge id for this exact change.
        #[arg(long)]
        approval: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Unlock factor checks after five failures (operator).
    Unlock {
        /// Principal id.
        #[arg(long)]
        principal: String,
        #[command(flatten)]
        connection: Connection,
    },
}

fn call(connection: &Connection, method: reqwest::Method, path: String, body: Option<Value>) -> anyhow::Result<Value> {
    runtime()?.block_on(async { Api::new(connection)?.expect(method, &path, body.as_ref()).await })
}

/// `obol principal ...`
pub fn principal(command: PrincipalCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let value = match command {
        PrincipalCommand::List { role, status, paging, connection } => {
            return crate::client::list(&connection, "/v1/principals", &[("role", role), ("status", status)], &paging);
        }
        PrincipalCommand::Create { id, role, name, fields, connection } => {
            let mut body = Map::new();
            body.insert("role".into(), json!(role));
            body.insert("name".into(), json!(name));
            if let Some(id) = id {
                body.insert("id".into(), json!(id));
            }
            fields.into_body(&mut body);
            call(&connection, Method::POST, "/v1/principals".into(), Some(body.into()))?
        }
        PrincipalCommand::Profile { id, purpose, connection } => {
            let query = purpose.map(|p| format!("?purpose={}", crate::client::encode_query(&p))).unwrap_or_default();
            call(&connection, Method::GET, format!("/v1/principals/{id}/profile{query}"), None)?
        }
        PrincipalCommand::Update { id, name, fields, connection } => {
            let mut body = Map::new();
            if let Some(name) = name {
                body.insert("name".into(), json!(name));
            }
            fields.into_body(&mut body);
            if body.is_empty() {
                anyhow::bail!("nothing to change: give --name, --email, --phone, --postal-address or --notes");
            }
            call(&connection, Method::PATCH, format!("/v1/principals/{id}/profile"), Some(body.into()))?
        }
        PrincipalCommand::Erase { id, connection } => {
            let erasure = call(&connection, Method::POST, format!("/v1/principals/{id}/erasure"), None)?;
            if crate::out::is_json() {
                print(&erasure);
                return Ok(());
            }
            match erasure.get("state").and_then(Value::as_str) {
                Some("erased") => crate::outln!("principal {id}: suspended; personal data erased (data key destroyed)"),
                _ => crate::outln!(
                    "principal {id}: suspended; personal data kept under the law's retention, restricted, and erased at {}",
                    erasure
                        .get("erase_after_ns")
                        .and_then(Value::as_str)
                        .and_then(|ns| ns.parse::<u128>().ok())
                        .map_or_else(|| "the end of retention".to_string(), crate::out::rfc3339)
                ),
            }
            return Ok(());
        }
        PrincipalCommand::Export { id, camt053_dir, connection } => {
            let export = call(&connection, Method::GET, format!("/v1/principals/{id}/export"), None)?;
            if let Some(dir) = camt053_dir {
                std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                let accounts = export.get("accounts").and_then(Value::as_array).cloned().unwrap_or_default();
                for account in accounts.iter().filter_map(|a| a.get("id").and_then(Value::as_str)) {
                    let path = format!("/v1/accounts/{account}/statement");
                    let xml = runtime()?.block_on(async { Api::new(&connection)?.expect_raw(&path).await })?;
                    let file = dir.join(format!("account-{account}.camt053.xml"));
                    std::fs::write(&file, xml).with_context(|| format!("writing {}", file.display()))?;
                    eprintln!("wrote {}", file.display());
                }
            }
            export
        }
        PrincipalCommand::AccessLog { id, connection } => {
            let mut all = Vec::new();
            let mut before: Option<String> = None;
            loop {
                let path = match &before {
                    Some(cursor) => format!(
                        "/v1/principals/{id}/access-log?limit=1000&before={}",
                        crate::client::encode_query(cursor)
                    ),
                    None => format!("/v1/principals/{id}/access-log?limit=1000"),
                };
                let page = call(&connection, Method::GET, path, None)?;
                all.extend(page.get("items").and_then(Value::as_array).cloned().unwrap_or_default());
                match page.get("next").and_then(Value::as_str) {
                    Some(next) => before = Some(next.to_string()),
                    None => break,
                }
            }
            if crate::out::is_json() {
                print(&Value::Array(all));
                return Ok(());
            }
            let entries = all.as_slice();
            if entries.is_empty() {
                crate::outln!("nobody else has read principal {id}'s personal data");
            }
            for entry in entries {
                let at = entry["time_ns"].as_str().and_then(|ns| ns.parse::<u128>().ok()).map(crate::out::rfc3339);
                crate::outln!(
                    "{}  principal {} ({}, {}) read the {} for {}",
                    at.unwrap_or_default(),
                    entry["reader_id"].as_str().unwrap_or(""),
                    entry["reader_role"].as_str().unwrap_or(""),
                    entry["via"].as_str().unwrap_or(""),
                    entry["what"].as_str().unwrap_or(""),
                    entry["purpose"].as_str().unwrap_or("")
                );
            }
            return Ok(());
        }
        PrincipalCommand::Consent { id, purpose, grant, withdraw, connection } => match purpose {
            Some(purpose) if grant || withdraw => call(
                &connection,
                Method::PUT,
                format!("/v1/principals/{id}/consents/{purpose}"),
                Some(json!({"granted": grant})),
            )?,
            Some(_) => anyhow::bail!("say --grant or --withdraw (or omit the purpose to list consents)"),
            None => call(&connection, Method::GET, format!("/v1/principals/{id}/consents"), None)?,
        },
        PrincipalCommand::Show { id, connection } => {
            call(&connection, Method::GET, format!("/v1/principals/{id}"), None)?
        }
        PrincipalCommand::Suspend { id, connection } => call(
            &connection,
            Method::POST,
            format!("/v1/principals/{id}/status"),
            Some(json!({"status": "suspended"})),
        )?,
        PrincipalCommand::Activate { id, connection } => {
            call(&connection, Method::POST, format!("/v1/principals/{id}/status"), Some(json!({"status": "active"})))?
        }
        PrincipalCommand::Checklist { id, lang, connection } => {
            let list = call(&connection, Method::GET, format!("/v1/principals/{id}/security-checklist"), None)?;
            let text = |value: &serde_json::Value, pointer: &str| {
                value.pointer(pointer).and_then(serde_json::Value::as_str).unwrap_or("").to_string()
            };
            let number = |value: &serde_json::Value, pointer: &str| {
                value.pointer(pointer).and_then(serde_json::Value::as_u64).unwrap_or(0)
            };
            crate::outln!("security score {} / 100", number(&list, "/score"));
            let items = list.pointer("/items").and_then(serde_json::Value::as_array).cloned().unwrap_or_default();
            for item in &items {
                let done = item.pointer("/done").and_then(serde_json::Value::as_bool).unwrap_or(false);
                crate::outln!(
                    "{} {:<14} +{:<3} {}",
                    if done { "[x]" } else { "[ ]" },
                    text(item, "/id"),
                    number(item, "/weight"),
                    text(item, "/detail")
                );
            }
            let next = text(&list, "/next");
            if let Some(item) = items.iter().find(|item| !next.is_empty() && text(item, "/id") == next) {
                crate::outln!("next: {}", text(item, &format!("/explanation/{lang}/next")));
                crate::outln!("      {}", text(item, &format!("/explanation/{lang}/what")));
            }
            return Ok(());
        }
        PrincipalCommand::Activity { id, connection } => {
            let events = call(&connection, Method::GET, format!("/v1/principals/{id}/activity"), None)?;
            for event in events.as_array().map(Vec::as_slice).unwrap_or_default() {
                crate::outln!(
                    "{}  {}",
                    event["at_ns"].as_str().unwrap_or(""),
                    event["description"].as_str().unwrap_or("")
                );
            }
            return Ok(());
        }
    };
    print(&value);
    Ok(())
}

/// `obol key ...` (other than reset-operator)
pub fn api_key(command: ApiKeyCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let value = match command {
        ApiKeyCommand::Create { principal, scopes, expires_in_s, out, connection } => {
            let mut body = Map::new();
            if !scopes.is_empty() {
                body.insert("scopes".into(), json!(scopes));
            }
            if let Some(seconds) = expires_in_s {
                body.insert("expires_in_s".into(), json!(seconds));
            }
            if let Some(path) = out.as_ref().filter(|path| path.exists()) {
                return Err(anyhow!("{} exists: a key file is never overwritten", path.display()));
            }
            let mut key =
                call(&connection, Method::POST, format!("/v1/principals/{principal}/keys"), Some(body.into()))?;
            match out {
                Some(path) => {
                    let secret = key.get("key").and_then(Value::as_str).unwrap_or_default().to_string();
                    crate::profile::write_private(&path, &secret)?;
                    if let Some(object) = key.as_object_mut() {
                        object.insert("key".into(), json!(format!("written to {}", path.display())));
                    }
                }
                None => eprintln!("The key is shown only this once; store it now."),
            }
            key
        }
        ApiKeyCommand::List { principal, connection } => {
            call(&connection, Method::GET, format!("/v1/principals/{principal}/keys"), None)?
        }
        ApiKeyCommand::Revoke { key_id, connection } => {
            call(&connection, Method::DELETE, format!("/v1/keys/{key_id}"), None)?
        }
        ApiKeyCommand::Rotate { key_id, overlap_s, connection } => {
            let key = call(
                &connection,
                Method::POST,
                format!("/v1/keys/{key_id}/rotate"),
                Some(json!({"overlap_s": overlap_s})),
            )?;
            eprintln!("The new key is shown only this once; the old one stops in {overlap_s} s.");
            key
        }
    };
    print(&value);
    Ok(())
}

fn jwk(text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).context("--jwk must be JSON, e.g. {\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"...\"}")
}

/// `obol device ...`
pub fn device(command: DeviceCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let value = match command {
        DeviceCommand::Keygen { out, kid } => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut seed = [0u8; 32];
            rand::fill(&mut seed);
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            let hex = crate::pay_cli::hex(&seed);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&out)
                .with_context(|| format!("creating {} (it must not exist)", out.display()))?;
            file.write_all(hex.as_bytes())?;
            eprintln!("Private key written to {} (keep it on the device only).", out.display());
            json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": Base64UrlUnpadded::encode_string(&key.verifying_key().to_bytes())})
        }
        DeviceCommand::Register { principal, jwk: text, id, asset, per_payment, per_day, connection } => {
            let mut body = Map::new();
            body.insert("jwk".into(), jwk(&text)?);
            if let Some(id) = id {
                body.insert("id".into(), json!(id));
            }
            if let Some(asset) = asset {
                let (code, scale) = parse_asset(&asset)?;
                body.insert(
                    "limits".into(),
                    json!({"asset_code": code, "asset_scale": scale, "per_payment": per_payment, "per_day": per_day}),
                );
            } else if per_payment.is_some() || per_day.is_some() {
                return Err(anyhow!("limits need --asset, e.g. --asset USD/2"));
            }
            call(&connection, Method::POST, format!("/v1/principals/{principal}/devices"), Some(body.into()))?
        }
        DeviceCommand::List { principal, status, paging, connection } => {
            return crate::client::list(
                &connection,
                "/v1/devices",
                &[("holder", principal), ("status", status)],
                &paging,
            );
        }
        DeviceCommand::Suspend { id, connection } => {
            call(&connection, Method::POST, format!("/v1/devices/{id}/status"), Some(json!({"status": "suspended"})))?
        }
        DeviceCommand::Activate { id, connection } => {
            call(&connection, Method::POST, format!("/v1/devices/{id}/status"), Some(json!({"status": "active"})))?
        }
        DeviceCommand::Revoke { id, connection } => {
            call(&connection, Method::POST, format!("/v1/devices/{id}/status"), Some(json!({"status": "revoked"})))?
        }
        DeviceCommand::Rotate { id, jwk: text, connection } => {
            call(&connection, Method::POST, format!("/v1/devices/{id}/rotate"), Some(json!({"jwk": jwk(&text)?})))?
        }
    };
    print(&value);
    Ok(())
}

/// `obol mfa ...`
pub fn mfa(command: MfaCommand) -> anyhow::Result<()> {
    use reqwest::Method;
    let value = match command {
        MfaCommand::Enroll { principal, code, qr_out, connection } => {
            let body = code.map_or_else(|| json!({}), |code| json!({"code": code}));
            let enrollment = call(&connection, Method::POST, format!("/v1/principals/{principal}/totp"), Some(body))?;
            let text = |key: &str| enrollment.get(key).and_then(Value::as_str).unwrap_or("");
            std::fs::write(&qr_out, text("qr_svg")).with_context(|| format!("writing {}", qr_out.display()))?;
            crate::outln!("Scan {} with your authenticator app, or enter the secret by hand:", qr_out.display());
            crate::outln!("  secret: {}", text("secret_base32"));
            crate::outln!("  uri:    {}", text("otpauth_uri"));
            crate::outln!("Then confirm: obol mfa confirm --principal {principal} --code <6 digits>");
            return Ok(());
        }
        MfaCommand::Confirm { principal, code, connection } => {
            let codes = call(
                &connection,
                Method::POST,
                format!("/v1/principals/{principal}/totp/confirm"),
                Some(json!({"code": code})),
            )?;
            crate::outln!("Authenticator confirmed. Recovery codes (each works once; store them offline):");
            for code in codes.get("recovery_codes").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
                crate::outln!("  {}", code.as_str().unwrap_or(""));
            }
            return Ok(());
        }
        MfaCommand::Approve(args) => return approve(args),
        MfaCommand::StepUp { principal, above, asset, no_new_payee, no_new_device, code, approval, connection } => {
            let mut body = Map::new();
            body.insert("new_payee".into(), json!(!no_new_payee));
            body.insert("new_device".into(), json!(!no_new_device));
            if let (Some(amount), Some(asset)) = (above, asset) {
                let (code, scale) = parse_asset(&asset)?;
                body.insert("above".into(), json!({"asset_code": code, "asset_scale": scale, "amount": amount}));
            }
            let body = Value::Object(body);
            let path = format!("/v1/principals/{principal}/step-up");
            runtime()?.block_on(async {
                Api::new(&connection)?
                    .expect_approved(Method::POST, &path, Some(&body), approval.as_deref(), code.as_deref())
                    .await
            })?
        }
        MfaCommand::Unlock { principal, connection } => {
            call(&connection, Method::POST, format!("/v1/principals/{principal}/unlock"), Some(json!({})))?;
            json!({"unlocked": principal})
        }
    };
    print(&value);
    Ok(())
}

//! The command-line client (`obol account|transfer|balance`), speaking the public HTTP API
//! exactly as any other client would.

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

pub use crate::profile::Connection;

/// `obol account ...`
#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Create an account (re-running with the same fields is harmless).
    ///
    /// Example: obol account create --id 1 --asset EUR/2 --flags debits_must_not_exceed_credits
    Create {
        /// Account id: 1 to 2^128-2.
        #[arg(long)]
        id: String,
        /// Asset as CODE/SCALE (e.g. USD/2, USD/9 for nano-dollars) or CODE for its minor unit.
        #[arg(long)]
        asset: String,
        /// Account kind, your own numbering.
        #[arg(long, default_value_t = 1)]
        code: u16,
        /// Comma-separated: debits_must_not_exceed_credits, credits_must_not_exceed_debits,
        /// history, closed.
        #[arg(long, value_delimiter = ',')]
        flags: Vec<String>,
        /// The principal who owns it (a holder's wallet, a merchant's till): they may see it
        /// and pay from it.
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// An account's statement as ISO 20022 camt.053.001.08 XML (daily batch entries, each
    /// transfer in TxDtls), for reconciliation or the account holder's records.
    ///
    /// Example: obol account statement 1 --from 2026-12-01T00:00:00Z --out statement.xml
    Statement {
        /// Account id.
        id: String,
        /// From this time (RFC 3339 or ns since the epoch); default the account's opening.
        #[arg(long)]
        from: Option<String>,
        /// Until this time, excluded; default now.
        #[arg(long)]
        to: Option<String>,
        /// Write the XML here instead of standard output.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Show an account with its balances.
    Show {
        /// Account id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// List the accounts you may see, oldest first (all of them for the operator).
    ///
    /// Example: obol account list --owner 100 --asset USD/2
    List {
        /// Only this owner's accounts.
        #[arg(long)]
        owner: Option<String>,
        /// Only accounts in this asset, CODE/SCALE.
        #[arg(long)]
        asset: Option<String>,
        #[command(flatten)]
        paging: Paging,
        #[command(flatten)]
        connection: Connection,
    },
}

/// `obol asset ...`
#[derive(Subcommand, Debug)]
pub enum AssetCommand {
    /// Register a custom asset: an in-game currency, credits, points (operator). ISO 4217
    /// currencies need no registration. A registered asset never changes.
    ///
    /// Example: obol asset register --code GEM --scale 0 --description "Gems in Castle Quest"
    Register {
        /// Three letters A to Z that ISO 4217 does not list.
        #[arg(long)]
        code: String,
        /// The coarsest scale accounts may count it in (0: whole units); finer ones are allowed.
        #[arg(long, default_value_t = 0)]
        scale: u8,
        /// What it is, for people.
        #[arg(long)]
        description: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// List the registered custom assets.
    List {
        #[command(flatten)]
        connection: Connection,
    },
}

/// `obol asset ...`
pub fn asset(command: AssetCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let value = match command {
            AssetCommand::Register { code, scale, description, connection } => {
                let body = json!({"code": code, "scale": scale, "description": description});
                Api::new(&connection)?.expect(reqwest::Method::POST, "/v1/assets", Some(&body)).await?
            }
            AssetCommand::List { connection } => {
                Api::new(&connection)?.expect(reqwest::Method::GET, "/v1/assets", None).await?
            }
        };
        print(&value);
        Ok(())
    })
}

/// Paging of a list command.
#[derive(Args, Debug, Clone)]
pub struct Paging {
    /// Start after this cursor (the `next` of a previous page).
    #[arg(long)]
    after: Option<String>,
    /// Entries per page, 1 to 1000.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Follow the cursors to the end and print every entry.
    #[arg(long)]
    all: bool,
}

/// Percent-encodes a query value (ids, numbers and CODE/SCALE need little, but nothing breaks
/// the URL).
pub(crate) fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b':' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Prints a list: one page, or with `--all` every page.
pub(crate) fn list(
    connection: &Connection,
    path: &str,
    filters: &[(&str, Option<String>)],
    paging: &Paging,
) -> anyhow::Result<()> {
    runtime()?.block_on(list_async(connection, path, filters, paging))
}

/// [`list`], inside a runtime.
pub(crate) async fn list_async(
    connection: &Connection,
    path: &str,
    filters: &[(&str, Option<String>)],
    paging: &Paging,
) -> anyhow::Result<()> {
    let api = Api::new(connection)?;
    let mut query: Vec<String> = filters
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={}", encode_query(v))))
        .collect();
    query.push(format!("limit={}", paging.limit));
    let base = format!("{path}?{}", query.join("&"));
    {
        let mut after = paging.after.clone();
        let mut items = Vec::new();
        loop {
            let url = match &after {
                Some(cursor) => format!("{base}&after={}", encode_query(cursor)),
                None => base.clone(),
            };
            let page = api.expect(reqwest::Method::GET, &url, None).await?;
            if !paging.all {
                print(&page);
                return Ok(());
            }
            items.extend(page.get("items").and_then(Value::as_array).cloned().unwrap_or_default());
            match page.get("next").and_then(Value::as_str) {
                Some(next) => after = Some(next.to_string()),
                None => break,
            }
        }
        print(&json!({ "items": items }));
        Ok(())
    }
}

/// `obol transfer ...`
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TransferArgs {
    #[command(subcommand)]
    command: Option<TransferCommand>,
    /// Account to debit (the payer).
    #[arg(long)]
    from: Option<String>,
    /// Account to credit (the payee).
    #[arg(long)]
    to: Option<String>,
    /// Amount in units of the asset's scale (USD/2: cents), as digits.
    #[arg(long)]
    amount: Option<String>,
    /// Asset as CODE/SCALE or CODE; must match both accounts.
    #[arg(long)]
    asset: Option<String>,
    /// Transfer id; a fresh random one if omitted. Re-sending the same id and fields is harmless.
    #[arg(long)]
    id: Option<String>,
    /// Reserve the amount (two-phase) instead of moving it now.
    #[arg(long)]
    pending: bool,
    /// With --pending: seconds until the reservation expires.
    #[arg(long)]
    timeout_s: Option<u32>,
    /// Post (all of, or --amount of) the pending transfer with this id.
    #[arg(long, conflicts_with_all = ["void", "pending", "from", "to"])]
    post: Option<String>,
    /// Void the pending transfer with this id.
    #[arg(long, conflicts_with_all = ["post", "pending", "from", "to"])]
    void: Option<String>,
    /// Transfer code, your own numbering.
    #[arg(long)]
    code: Option<u16>,
    #[command(flatten)]
    approval: Approval,
    #[command(flatten)]
    connection: Connection,
}

/// Sending a request that a second factor must approve (step-up).
#[derive(Args, Debug, Clone, Default)]
pub struct Approval {
    /// The id of a challenge you approved (`obol approve`) for exactly this request.
    #[arg(long, conflicts_with = "totp")]
    pub approval: Option<String>,
    /// A current TOTP code (or a recovery code): if the server asks for a second factor, the
    /// challenge is approved with it and the request sent again.
    #[arg(long)]
    pub totp: Option<String>,
}

/// `obol transfer list`
#[derive(Subcommand, Debug)]
pub enum TransferCommand {
    /// List transfers, oldest first: an account's history, or (operator) all of them, filtered.
    ///
    /// Example: obol transfer list --account 1 --since 2026-12-01T00:00:00Z --status posted --min 100
    List {
        /// Only transfers touching this account.
        #[arg(long)]
        account: Option<String>,
        /// Only transfers made at or after this time (RFC 3339, or ns since the epoch).
        #[arg(long)]
        since: Option<String>,
        /// Only transfers made before this time (RFC 3339, or ns since the epoch).
        #[arg(long)]
        until: Option<String>,
        /// posted, pending, pending_posted, voided or expired.
        #[arg(long)]
        status: Option<String>,
        /// Only transfers of at least this amount, minor units.
        #[arg(long)]
        min: Option<String>,
        /// Only transfers of at most this amount, minor units.
        #[arg(long)]
        max: Option<String>,
        #[command(flatten)]
        paging: Paging,
        #[command(flatten)]
        connection: Connection,
    },
}

/// `obol balance ...`
#[derive(Args, Debug)]
pub struct BalanceArgs {
    /// Account id.
    id: String,
    #[command(flatten)]
    connection: Connection,
}

/// An approval covers one exact request, its id included: when the command drew the id itself,
/// the hint to send it again names that id, or the next run would draw another and need another
/// approval.
pub(crate) fn same_id_hint(error: anyhow::Error, flag: &str, id: &str, drawn: bool) -> anyhow::Error {
    match error.downcast::<crate::out::NeedsApproval>() {
        Ok(crate::out::NeedsApproval(text)) if drawn => anyhow::Error::new(crate::out::NeedsApproval(format!(
            "{text}\nthe approval is for this request exactly: send it again with {flag} {id} (the id this run drew) \
             and the same other flags"
        ))),
        Ok(needs) => anyhow::Error::new(needs),
        Err(other) => other,
    }
}

/// What a person must do about a step-up challenge: why it was asked, for what, with which
/// factors, until when, and the commands that finish it.
pub(crate) fn describe_challenge(challenge: &Value) -> String {
    let text = |name: &str| challenge.get(name).and_then(Value::as_str).unwrap_or("?").to_string();
    let list = |name: &str| -> String {
        let items: Vec<&str> =
            challenge.get(name).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        if items.is_empty() { "-".into() } else { items.join(", ") }
    };
    let id = text("id");
    let amount =
        match (challenge.get("amount").and_then(Value::as_str), challenge.as_object().and_then(crate::out::asset_of)) {
            (Some(amount), Some((code, scale))) => match amount.parse::<u128>() {
                Ok(units) => format!("{} {code}", crate::out::decimal(units, scale)),
                Err(_) => format!("{amount} (minor units of {code}/{scale})"),
            },
            _ => "-".into(),
        };
    let expires = challenge
        .get("expires_ns")
        .and_then(Value::as_str)
        .and_then(|ns| ns.parse::<u128>().ok())
        .map(crate::out::rfc3339)
        .unwrap_or_else(|| "?".into());
    let mut lines = vec![
        "a second factor must approve this request (requires_action)".to_string(),
        format!("  challenge: {id}"),
        format!("  why:       {}", list("reasons")),
    ];
    if let Some(change) = challenge.get("change").and_then(Value::as_str) {
        lines.push(format!("  change:    {change}"));
    } else {
        lines.push(format!("  amount:    {amount}"));
        lines.push(format!("  payees:    {}", list("payees")));
    }
    if let Some(rule) = challenge.pointer("/risk/rule").and_then(Value::as_str) {
        lines.push(format!("  rule:      {rule}"));
    }
    lines.push(format!("  methods:   {}", list("methods")));
    lines.push(format!("  expires:   {expires}"));
    lines.push(format!(
        "approve it with `obol approve {id} --code CODE` (or --recovery-code), then send the same command \
         again with --approval {id}; or send it again with --totp CODE to do both"
    ));
    if list("methods").contains("passkey") {
        lines.push(format!(
            "with a passkey: POST /v1/challenges/{id}/passkey starts the WebAuthn ceremony and \
             POST /v1/challenges/{id}/approve with its ceremony_id and credential finishes it"
        ));
    }
    lines.join("\n")
}

/// Splits `USD/2` or `USD` into code and scale.
pub(crate) fn parse_asset(text: &str) -> anyhow::Result<(String, u8)> {
    match text.split_once('/') {
        Some((code, scale)) => Ok((code.to_string(), scale.parse().with_context(|| format!("bad scale in {text:?}"))?)),
        None => {
            if obol_core::money::NO_MINOR_UNIT.contains(&text) {
                bail!("{text} has no minor unit in ISO 4217: name the scale you count in, e.g. {text}/6");
            }
            let minor = obol_core::money::minor_unit(text).ok_or_else(|| {
                anyhow!(
                    "{text:?} is not an ISO 4217 code: give CODE/SCALE (USD/2, USD/9 for nano-dollars, or a custom \
                     asset's code at its scale, e.g. GEM/0; see `obol asset list`)"
                )
            })?;
            Ok((text.to_string(), minor))
        }
    }
}

pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    pub(crate) fn new(connection: &Connection) -> anyhow::Result<Api> {
        Api::from_resolved(&connection.resolve()?)
    }

    /// A client of `base` calling with `key` (the `serve --demo` walk-through).
    pub(crate) fn with_key(base: &str, key: &str) -> anyhow::Result<Api> {
        Ok(Api { http: obol_client::http_client(None)?, base: base.to_string(), key: key.to_string() })
    }

    pub(crate) fn from_resolved(resolved: &crate::profile::Resolved) -> anyhow::Result<Api> {
        let key = resolved.api_key.clone().ok_or_else(|| {
            anyhow!(
                "no API key: set OBOL_API_KEY, pass --api-key-file, or `obol login` (the first `obol serve` \
                 printed the operator's key)"
            )
        })?;
        crate::out::set_mode(resolved.output);
        Ok(Api { http: resolved.http()?, base: resolved.server.clone(), key })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
        self.call_approved(method, path, body, None).await
    }

    async fn call_approved(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        approval: Option<&str>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.key);
        if let Some(approval) = approval {
            request = request.header("obol-approval", approval);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|error| unreachable(&self.base, error))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// Sends `body` as `content_type` and fails with the problem's code and detail on a non-2xx
    /// answer.
    pub(crate) async fn expect_text(
        &self,
        method: reqwest::Method,
        path: &str,
        body: String,
        content_type: &str,
    ) -> anyhow::Result<Value> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(|error| unreachable(&self.base, error))?;
        let status = response.status().as_u16();
        let value: Value = serde_json::from_str(&response.text().await?).unwrap_or(Value::Null);
        succeeded(status, value)
    }

    /// Calls a route that may ask for a second factor (`requires_action`): with `approval` (an
    /// approved challenge id) it is sent along; with `code` (TOTP or recovery code) the challenge
    /// the server answers is approved and the request sent again; with neither, the error says
    /// how to approve it.
    pub(crate) async fn expect_approved(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        approval: Option<&str>,
        code: Option<&str>,
    ) -> anyhow::Result<Value> {
        let (status, value) = self.call_approved(method.clone(), path, body, approval).await?;
        let challenge = value.pointer("/challenge/id").and_then(Value::as_str).map(str::to_string);
        let Some(challenge) = challenge.filter(|_| status == 403) else { return succeeded(status, value) };
        let Some(code) = code else {
            let challenge_value = value.get("challenge").cloned().unwrap_or(Value::Null);
            return Err(anyhow::Error::new(crate::out::NeedsApproval(describe_challenge(&challenge_value))));
        };
        let field = if code.contains('-') { "recovery_code" } else { "code" };
        let answer = serde_json::json!({ field: code });
        self.expect(reqwest::Method::POST, &format!("/v1/challenges/{challenge}/approve"), Some(&answer)).await?;
        let (status, value) = self.call_approved(method, path, body, Some(&challenge)).await?;
        succeeded(status, value)
    }

    /// GETs `path` and answers the body as text (a checkpoint, JSON lines), or fails with the
    /// problem's code and detail on a non-2xx answer.
    pub(crate) async fn expect_raw(&self, path: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .map_err(|error| unreachable(&self.base, error))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        if !(200..300).contains(&status) {
            succeeded(status, serde_json::from_str(&text).unwrap_or(Value::Null))?;
        }
        Ok(text)
    }

    /// Calls and fails with the problem's code and detail on a non-2xx answer.
    pub(crate) async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let (status, value) = self.call(method, path, body).await?;
        succeeded(status, value)
    }
}

/// Why a request got no answer, with what to do when it is the server's certificate.
pub(crate) fn unreachable(base: &str, error: reqwest::Error) -> anyhow::Error {
    let mut causes = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if causes.last() != Some(&text) {
            causes.push(text);
        }
        source = cause.source();
    }
    let chain = causes.join(": ");
    let hint = if chain.contains("UnknownIssuer") || chain.contains("invalid peer certificate") {
        " (the server's certificate is not signed by a CA this machine trusts: pass --ca-cert with its CA, \
         or set ca_cert in the profile)"
    } else if chain.contains("onnection refused") {
        " (is `obol serve` running there?)"
    } else {
        ""
    };
    anyhow::Error::new(crate::out::Unreachable(format!("cannot reach obol at {base}: {chain}{hint}")))
}

/// The answer of a 2xx; otherwise an error naming the problem's code and detail.
fn succeeded(status: u16, value: Value) -> anyhow::Result<Value> {
    if !(200..300).contains(&status) {
        let code = value.get("code").and_then(Value::as_str).unwrap_or("error");
        let detail = value.get("detail").and_then(Value::as_str).unwrap_or("");
        bail!("{code} (HTTP {status}): {detail}");
    }
    Ok(value)
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

pub(crate) fn print(value: &Value) {
    crate::out::show(value);
}

/// `obol account ...`
pub fn account(command: AccountCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let value = match command {
            AccountCommand::Create { id, asset, code, flags, owner, connection } => {
                let (asset_code, asset_scale) = parse_asset(&asset)?;
                let body = json!({"id": id, "asset_code": asset_code, "asset_scale": asset_scale, "code": code,
                    "flags": flags, "owner_id": owner});
                Api::new(&connection)?.expect(reqwest::Method::POST, "/v1/accounts", Some(&body)).await?
            }
            AccountCommand::Statement { id, from, to, out, connection } => {
                let mut query = Vec::new();
                for (name, value) in [("from", from), ("to", to)] {
                    if let Some(value) = value {
                        query.push(format!("{name}={}", encode_query(&value)));
                    }
                }
                let path = if query.is_empty() {
                    format!("/v1/accounts/{id}/statement")
                } else {
                    format!("/v1/accounts/{id}/statement?{}", query.join("&"))
                };
                let xml = Api::new(&connection)?.expect_raw(&path).await?;
                match out {
                    Some(out) => {
                        std::fs::write(&out, xml).with_context(|| format!("writing {}", out.display()))?;
                        crate::outln!("wrote the statement of account {id} to {}", out.display());
                    }
                    None => crate::outln!("{}", xml.trim_end()),
                }
                return Ok(());
            }
            AccountCommand::Show { id, connection } => {
                Api::new(&connection)?.expect(reqwest::Method::GET, &format!("/v1/accounts/{id}"), None).await?
            }
            AccountCommand::List { owner, asset, paging, connection } => {
                return list_async(&connection, "/v1/accounts", &[("owner", owner), ("asset", asset)], &paging).await;
            }
        };
        print(&value);
        Ok(())
    })
}

/// `obol refund`.
#[derive(clap::Args, Debug)]
pub struct RefundArgs {
    /// The payment's transfer id.
    #[arg(long)]
    payment: String,
    /// The refund's own transfer id (a retry with it answers the refund made).
    #[arg(long)]
    id: String,
    /// Minor units to give back; all that is left if omitted.
    #[arg(long)]
    amount: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

/// `obol refund`.
pub fn refund(args: RefundArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let body = match &args.amount {
            Some(amount) => json!({"id": args.id, "amount": amount}),
            None => json!({"id": args.id}),
        };
        let path = format!("/v1/transfers/{}/refunds", args.payment);
        let value = Api::new(&args.connection)?.expect(reqwest::Method::POST, &path, Some(&body)).await?;
        print(&value);
        Ok(())
    })
}

/// `obol transfer ...`
pub fn transfer(args: TransferArgs) -> anyhow::Result<()> {
    if let Some(TransferCommand::List { account, since, until, status, min, max, paging, connection }) = args.command {
        let time = |name: &str, text: Option<String>| -> anyhow::Result<Option<String>> {
            text.map(|t| {
                crate::out::parse_time(&t).map(|ns| ns.to_string()).ok_or_else(|| {
                    anyhow!("--{name} must be an RFC 3339 time (2026-12-01T00:00:00Z) or ns since the epoch")
                })
            })
            .transpose()
        };
        let filters = [
            ("account", account),
            ("from_ns", time("since", since)?),
            ("to_ns", time("until", until)?),
            ("status", status),
            ("amount_min", min),
            ("amount_max", max),
        ];
        return list(&connection, "/v1/transfers", &filters, &paging);
    }
    let id = args.id.clone().unwrap_or_else(|| (rand::random::<u128>() >> 1).max(1).to_string());
    let mut body = serde_json::Map::new();
    body.insert("id".into(), json!(id));
    let mut flags: Vec<&str> = Vec::new();
    if let Some(pending_id) = args.post.as_ref().or(args.void.as_ref()) {
        body.insert("pending_id".into(), json!(pending_id));
        flags.push(if args.post.is_some() { "post_pending" } else { "void_pending" });
    } else {
        let (Some(from), Some(to)) = (&args.from, &args.to) else {
            bail!("a transfer needs --from and --to (or --post/--void with a pending transfer id)");
        };
        body.insert("debit_account_id".into(), json!(from));
        body.insert("credit_account_id".into(), json!(to));
        let asset = args.asset.as_deref().ok_or_else(|| anyhow!("a transfer needs --asset, e.g. --asset USD/2"))?;
        let (asset_code, asset_scale) = parse_asset(asset)?;
        body.insert("asset_code".into(), json!(asset_code));
        body.insert("asset_scale".into(), json!(asset_scale));
        if args.pending {
            flags.push("pending");
        }
        if let Some(timeout_s) = args.timeout_s {
            body.insert("timeout_s".into(), json!(timeout_s));
        }
    }
    if let Some(amount) = &args.amount {
        body.insert("amount".into(), json!(amount));
    }
    if let Some(code) = args.code {
        body.insert("code".into(), json!(code));
    }
    body.insert("flags".into(), json!(flags));
    let body = Value::Object(body);
    runtime()?.block_on(async {
        let value = Api::new(&args.connection)?
            .expect_approved(
                reqwest::Method::POST,
                "/v1/transfers",
                Some(&body),
                args.approval.approval.as_deref(),
                args.approval.totp.as_deref(),
            )
            .await
            .map_err(|error| same_id_hint(error, "--id", &id, args.id.is_none()))?;
        print(&value);
        Ok(())
    })
}

/// `obol balance ...`
pub fn balance(args: BalanceArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let value = Api::new(&args.connection)?
            .expect(reqwest::Method::GET, &format!("/v1/accounts/{}/balance", args.id), None)
            .await?;
        print(&value);
        Ok(())
    })
}

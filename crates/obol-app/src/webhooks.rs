//! Alerts and signed webhooks: what happened to a holder's money and protection, as events in a
//! durable outbox, read as an activity feed and delivered to the webhooks a holder, merchant or
//! operator registers, signed as the Standard Webhooks specification says.
//!
//! **Outbox.** An event is a put `outbox/<time ns, 20 digits>-<16 hex>` in the same record as
//! the change it reports (a payment over the holder's alert threshold, a new device or second
//! factor, a device's limits or status, a monthly limit, a payment held or blocked by the risk
//! policy, a freeze, each step of a dispute with its deadlines), so a crash leaves both or
//! neither. Events are kept [`OUTBOX_RETENTION_DAYS`] days (the sweep removes older ones).
//!
//! **Delivery.** Each endpoint has a cursor (`webhook-cursor/<id>`: the last outbox key it
//! acknowledged, a put). The server's delivery loop (a shell's: it does the HTTP) asks for the
//! next event after the cursor the endpoint may see ([`next_delivery`]), sends it with the
//! `webhook-id`, `webhook-timestamp` and `webhook-signature` headers (`v1,` and the base64
//! HMAC-SHA256 of `id.timestamp.body` under the endpoint's secret), and on a 2xx answer moves the
//! cursor ([`acknowledge`]); otherwise it retries the same event with exponential backoff. So
//! delivery is at least once and in order per endpoint, and a receiver that was down, or a server
//! killed in between, gets every event once it is back. [`replay`] moves a cursor back.
//!
//! **Who sees what.** An event names the principals it concerns (a payment's payer; a
//! dispute's payer and payee); a holder's or merchant's endpoint and feed get only those, staff's
//! (operator, analyst, auditor) every event.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Mutex;

use base64ct::{Base64, Encoding};
use hmac::{KeyInit, Mac};
use obol_core::identity::{IdentityCommand, Role, Scopes};
use obol_core::record::Op;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::authz::{need_scope, sees_everything};
use crate::error::Error;
use crate::vault::Secret;
use crate::{App, read_ledger};

const OUTBOX_PREFIX: &str = "outbox/";
const ENDPOINT_PREFIX: &str = "webhook/";
const CURSOR_PREFIX: &str = "webhook-cursor/";
const ALERTS_PREFIX: &str = "alerts/";
/// Days an event stays in the outbox.
pub const OUTBOX_RETENTION_DAYS: u64 = 7;
/// Endpoints one principal may register.
pub const ENDPOINTS_PER_PRINCIPAL_MAX: usize = 16;
/// Outbox events one look for an endpoint's next delivery reads at most.
const SCAN_MAX: usize = 10_000;
/// Events one feed page answers at most.
pub const FEED_LIMIT_MAX: usize = 1_000;
const NS_PER_DAY: u64 = 86_400_000_000_000;

/// Every event type.
pub const EVENT_TYPES: &[&str] = &[
    "payment.over_threshold",
    "payment.held",
    "payment.blocked",
    "device.registered",
    "device.changed",
    "factor.added",
    "limit.changed",
    "payments.frozen",
    "payments.unfrozen",
    "dispute.opened",
    "dispute.updated",
];

/// One event, as stored and as delivered.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct EventDto {
    /// Unique id (`evt_...`), the `webhook-id` of its deliveries.
    pub id: String,
    /// One of the event types.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it happened (RFC 3339).
    pub timestamp: String,
    /// The principals it concerns.
    pub principals: Vec<String>,
    /// What happened (ids, amounts, deadlines; never personal data).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// A registered endpoint.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct EndpointDto {
    /// Endpoint id.
    pub id: String,
    /// Whose events it gets.
    pub principal_id: String,
    /// Where events are POSTed.
    pub url: String,
    /// Event types it gets (empty: all).
    pub types: Vec<String>,
    /// When it was registered (RFC 3339).
    pub created_at: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredEndpoint {
    id: u128,
    owner: u128,
    owner_sees_all: bool,
    url: String,
    types: Vec<String>,
    /// The signing secret, sealed by the vault's system key (base64).
    secret_sealed: String,
    created_ns: u64,
}

/// An event due for delivery to an endpoint, with what signing it takes.
#[derive(Debug)]
pub struct Delivery {
    /// The outbox key: acknowledge it after a 2xx answer.
    pub key: String,
    /// The endpoint's URL.
    pub url: String,
    /// The `webhook-id`.
    pub id: String,
    /// The body, exactly as signed.
    pub body: Vec<u8>,
    secret: Secret<Vec<u8>>,
}

impl Delivery {
    /// The `webhook-signature` header for sending at `timestamp_s`.
    pub fn signature(&self, timestamp_s: u64) -> String {
        sign(self.secret.expose_secret(), &self.id, timestamp_s, &self.body)
    }
}

/// What an endpoint's next look found.
#[derive(Debug)]
pub enum Next {
    /// An event to deliver.
    Deliver(Box<Delivery>),
    /// Nothing for this endpoint up to this outbox key: move the cursor past it.
    Skip(String),
    /// Nothing new.
    Idle,
}

/// `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body` under `secret` (Standard Webhooks).
pub fn sign(secret: &[u8], id: &str, timestamp_s: u64, body: &[u8]) -> String {
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(format!("{id}.{timestamp_s}.").as_bytes());
    mac.update(body);
    format!("v1,{}", Base64::encode_string(&mac.finalize().into_bytes()))
}

fn put(key: String, value: Vec<u8>) -> Op {
    Op::Put(obol_core::table::Put { key, value })
}

/// The outbox put of an event of `kind` concerning `principals`, for the record of the change.
pub(crate) fn event(state: &App, kind: &str, principals: &[u128], data: serde_json::Value) -> Op {
    debug_assert!(EVENT_TYPES.contains(&kind));
    let now_ns = state.env.now_ns();
    let nonce = state.env.random_id() as u64;
    let key = format!("{OUTBOX_PREFIX}{now_ns:020}-{nonce:016x}");
    let mut principals: Vec<String> = principals.iter().filter(|p| **p != 0).map(u128::to_string).collect();
    principals.dedup();
    let dto = EventDto {
        id: format!("evt_{now_ns:020}{nonce:016x}"),
        kind: kind.to_string(),
        timestamp: obol_core::time::rfc3339(u128::from(now_ns)),
        principals,
        data,
    };
    put(key, serde_json::to_vec(&dto).unwrap_or_default())
}

/// The alert event an identity change makes, if any (asked for by `by`).
pub(crate) fn identity_event(state: &App, command: &IdentityCommand) -> Option<Op> {
    let ledger = read_ledger(state);
    let holder_of = |device: u128| ledger.identity().device(device).map_or(0, |d| d.holder_id);
    let (kind, principal, data) = match command {
        IdentityCommand::RegisterDevice { id, holder_id, .. } => {
            ("device.registered", *holder_id, serde_json::json!({"device": id.to_string()}))
        }
        IdentityCommand::SetDeviceLimits { id, .. } => {
            ("limit.changed", holder_of(*id), serde_json::json!({"device": id.to_string(), "what": "device_limits"}))
        }
        IdentityCommand::SetDeviceStatus { id, status } => {
            ("device.changed", holder_of(*id), serde_json::json!({"device": id.to_string(), "status": status.as_str()}))
        }
        IdentityCommand::ConfirmTotp { principal_id, .. } => {
            ("factor.added", *principal_id, serde_json::json!({"factor": "totp"}))
        }
        IdentityCommand::PutPasskey { principal_id, credential_id, .. } => {
            let known = ledger
                .identity()
                .principal(*principal_id)
                .is_some_and(|p| p.passkeys.iter().any(|k| k.credential_id == *credential_id));
            if known {
                return None;
            }
            ("factor.added", *principal_id, serde_json::json!({"factor": "passkey"}))
        }
        _ => return None,
    };
    drop(ledger);
    Some(event(state, kind, &[principal], data))
}

/// The alert of a payment over its payer's threshold, for each such payment among `events`.
pub(crate) fn payment_events(state: &App, events: &[obol_core::ledger::NewTransfer]) -> Vec<Op> {
    let mut found = Vec::new();
    {
        let ledger = read_ledger(state);
        if ledger.table().scan(ALERTS_PREFIX).next().is_none() {
            return Vec::new();
        }
        for e in events.iter().filter(|e| !e.flags.resolves_pending()) {
            let Some(payer) = ledger.account(e.debit_account_id) else { continue };
            let Some(alerts) = ledger.table().get(&alerts_key(payer.owner_id)) else { continue };
            let Ok(alerts) = serde_json::from_slice::<Alerts>(alerts) else { continue };
            let over = alerts.payment_over.as_ref().is_some_and(|t| {
                t.asset_code == payer.asset.code()
                    && t.asset_scale == payer.asset.scale()
                    && t.amount.parse::<u128>().is_ok_and(|limit| e.amount > limit)
            });
            if over {
                found.push((payer.owner_id, e.id, e.amount, e.debit_account_id, e.credit_account_id));
            }
        }
    }
    found
        .into_iter()
        .map(|(owner, id, amount, from, to)| {
            let data = serde_json::json!({"transfer": id.to_string(), "amount": amount.to_string(),
                "debit_account_id": from.to_string(), "credit_account_id": to.to_string()});
            event(state, "payment.over_threshold", &[owner], data)
        })
        .collect()
}

/// A holder's alert settings.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    /// Alert on every payment from the holder's accounts above this amount (in this asset).
    #[serde(default)]
    pub payment_over: Option<Threshold>,
}

/// An amount in an asset.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// ISO 4217 or registered code.
    pub asset_code: String,
    /// Scale.
    pub asset_scale: u8,
    /// Minor units.
    pub amount: String,
}

fn alerts_key(principal: u128) -> String {
    format!("{ALERTS_PREFIX}{principal:032x}")
}

fn endpoint_key(id: u128) -> String {
    format!("{ENDPOINT_PREFIX}{id:032x}")
}

fn cursor_key(id: u128) -> String {
    format!("{CURSOR_PREFIX}{id:032x}")
}

fn own_or_staff(caller: &Caller, principal_id: u128) -> Result<(), Error> {
    let own = caller.role.owns_accounts() && caller.principal_id == principal_id;
    if own || caller.role == Role::Operator {
        Ok(())
    } else if sees_everything(caller) {
        Err(Error::Forbidden("only the holder or the operator changes its alerts and webhooks".into()))
    } else {
        Err(Error::PrincipalNotFound(principal_id))
    }
}

/// The holder's alert settings.
pub fn alerts(state: &App, caller: &Caller, principal: &str) -> Result<Alerts, Error> {
    need_scope(caller, Scopes::READ)?;
    let principal_id = crate::parse_id("id", principal)?;
    if !crate::authz::can_see_principal(caller, principal_id) {
        return Err(Error::PrincipalNotFound(principal_id));
    }
    let ledger = read_ledger(state);
    Ok(ledger
        .table()
        .get(&alerts_key(principal_id))
        .and_then(|bytes| serde_json::from_slice(bytes).ok())
        .unwrap_or_default())
}

/// Sets the holder's alert settings (a change of its protection: an alert event of its own).
pub async fn set_alerts(state: &App, caller: &Caller, principal: &str, alerts: Alerts) -> Result<Alerts, Error> {
    need_scope(caller, Scopes::MANAGE)?;
    let principal_id = crate::parse_id("id", principal)?;
    own_or_staff(caller, principal_id)?;
    if read_ledger(state).identity().principal(principal_id).is_none() {
        return Err(Error::PrincipalNotFound(principal_id));
    }
    if let Some(threshold) = &alerts.payment_over {
        crate::parse_asset(&threshold.asset_code, threshold.asset_scale)?;
        crate::parse_amount("payment_over.amount", &threshold.amount)?;
    }
    let bytes = serde_json::to_vec(&alerts).map_err(|e| Error::Internal(e.to_string()))?;
    let ops = vec![
        crate::audit::note(state, caller, "alerts.set", &format!("principal:{principal_id}"), "set"),
        put(alerts_key(principal_id), bytes),
        event(state, "limit.changed", &[principal_id], serde_json::json!({"what": "alerts"})),
    ];
    state.engine.execute_together(ops).await?;
    Ok(alerts)
}

/// Whether `principal_id` has alerts or a webhook (the security checklist's `alerts` item).
pub(crate) fn alerts_on(ledger: &obol_core::ledger::Ledger, principal_id: u128) -> bool {
    let thresholds = ledger.table().get(&alerts_key(principal_id)).is_some_and(|v| !v.is_empty());
    thresholds
        || ledger
            .table()
            .scan(ENDPOINT_PREFIX)
            .any(|(_, v)| serde_json::from_slice::<StoredEndpoint>(v).is_ok_and(|e| e.owner == principal_id))
}

fn endpoint_dto(e: &StoredEndpoint) -> EndpointDto {
    EndpointDto {
        id: e.id.to_string(),
        principal_id: e.owner.to_string(),
        url: e.url.clone(),
        types: e.types.clone(),
        created_at: obol_core::time::rfc3339(u128::from(e.created_ns)),
    }
}

fn load_endpoint(ledger: &obol_core::ledger::Ledger, id: u128) -> Option<StoredEndpoint> {
    ledger.table().get(&endpoint_key(id)).and_then(|bytes| serde_json::from_slice(bytes).ok())
}

fn check_url(url: &str, allow_private: bool) -> Result<(), Error> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| Error::InvalidField("url must start with https:// (or http://)".into()))?;
    crate::plain_text("url", url)?;
    if url.len() > 2_000 || rest.is_empty() {
        return Err(Error::InvalidField("url must name a host, in at most 2,000 characters".into()));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(bracketed) = host.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    let private = host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| match ip {
            std::net::IpAddr::V4(v4) => {
                v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified()
            }
            std::net::IpAddr::V6(v6) => {
                v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xfe00) == 0xfc00
            }
        });
    if private && !allow_private {
        return Err(Error::InvalidField(
            "url names a loopback or private address; the operator allows those with --webhooks-allow-private".into(),
        ));
    }
    Ok(())
}

/// Registers an endpoint for `principal`'s events (the holder or merchant itself, or the
/// operator; an operator's own endpoint gets every event). Answers it and its secret
/// (`whsec_` and base64), shown once.
pub async fn register(
    state: &App,
    caller: &Caller,
    principal: Option<&str>,
    url: &str,
    types: Vec<String>,
) -> Result<(EndpointDto, String), Error> {
    need_scope(caller, Scopes::MANAGE)?;
    let owner = match principal {
        Some(text) => crate::parse_id("principal", text)?,
        None => caller.principal_id,
    };
    if owner != caller.principal_id {
        own_or_staff(caller, owner)?;
    } else if !matches!(caller.role, Role::Operator | Role::Holder | Role::Merchant) {
        return Err(Error::Forbidden("holders, merchants and the operator register webhooks".into()));
    }
    check_url(url, state.webhooks_allow_private)?;
    if let Some(bad) = types.iter().find(|t| !EVENT_TYPES.contains(&t.as_str())) {
        return Err(Error::InvalidField(format!("{bad:?} is not an event type: {}", EVENT_TYPES.join(", "))));
    }
    let mut key = vec![0u8; 32];
    state.env.fill(&mut key);
    let secret_text = format!("whsec_{}", Base64::encode_string(&key));
    let id = state.env.random_id();
    let (stored, count) = {
        let ledger = read_ledger(state);
        let owner_role = ledger.identity().principal(owner).ok_or(Error::PrincipalNotFound(owner))?.role;
        let count = ledger
            .table()
            .scan(ENDPOINT_PREFIX)
            .filter(|(_, v)| serde_json::from_slice::<StoredEndpoint>(v).is_ok_and(|e| e.owner == owner))
            .count();
        let sealed = state.vault.seal(&*state.env, b"obol/webhook-secret/v1", &key);
        let stored = StoredEndpoint {
            id,
            owner,
            owner_sees_all: owner_role == Role::Operator,
            url: url.to_string(),
            types: types.into_iter().collect::<BTreeSet<_>>().into_iter().collect(),
            secret_sealed: Base64::encode_string(&sealed),
            created_ns: state.env.now_ns(),
        };
        (stored, count)
    };
    if count >= ENDPOINTS_PER_PRINCIPAL_MAX {
        return Err(Error::InvalidField(format!("at most {ENDPOINTS_PER_PRINCIPAL_MAX} webhooks a principal")));
    }
    // A new endpoint starts at the newest event: it gets what happens from now on (replay asks
    // for older ones).
    let newest = read_ledger(state).table().scan_back(OUTBOX_PREFIX, None, 1).next().map(|(k, _)| k.to_string());
    let bytes = serde_json::to_vec(&stored).map_err(|e| Error::Internal(e.to_string()))?;
    let mut ops = vec![
        crate::audit::note(state, caller, "webhook.register", &format!("webhook:{id}"), &format!("principal:{owner}")),
        put(endpoint_key(id), bytes),
    ];
    if let Some(newest) = newest {
        ops.push(put(cursor_key(id), newest.into_bytes()));
    }
    state.engine.execute_together(ops).await?;
    Ok((endpoint_dto(&stored), secret_text))
}

fn visible_endpoint(state: &App, caller: &Caller, id: &str) -> Result<StoredEndpoint, Error> {
    let id = crate::parse_id("id", id)?;
    let ledger = read_ledger(state);
    load_endpoint(&ledger, id)
        .filter(|e| sees_everything(caller) || (caller.role.owns_accounts() && e.owner == caller.principal_id))
        .ok_or(Error::WebhookNotFound(id))
}

/// The endpoints the caller registered (all of them, for staff).
pub fn list(state: &App, caller: &Caller) -> Result<Vec<EndpointDto>, Error> {
    need_scope(caller, Scopes::READ)?;
    let ledger = read_ledger(state);
    Ok(ledger
        .table()
        .scan(ENDPOINT_PREFIX)
        .filter_map(|(_, v)| serde_json::from_slice::<StoredEndpoint>(v).ok())
        .filter(|e| sees_everything(caller) || (caller.role.owns_accounts() && e.owner == caller.principal_id))
        .map(|e| endpoint_dto(&e))
        .collect())
}

/// Removes an endpoint (its owner or the operator).
pub async fn delete(state: &App, caller: &Caller, id: &str) -> Result<(), Error> {
    need_scope(caller, Scopes::MANAGE)?;
    let endpoint = visible_endpoint(state, caller, id)?;
    own_or_staff(caller, endpoint.owner)?;
    let ops = vec![
        crate::audit::note(state, caller, "webhook.delete", &format!("webhook:{}", endpoint.id), "deleted"),
        put(endpoint_key(endpoint.id), Vec::new()),
        put(cursor_key(endpoint.id), Vec::new()),
    ];
    state.engine.execute_together(ops).await?;
    Ok(())
}

/// Sends again every event since `since_ns` (ns since the epoch; 0: all the outbox keeps): moves
/// the endpoint's cursor back. Answers how many events it will get again.
pub async fn replay(state: &App, caller: &Caller, id: &str, since_ns: u64) -> Result<usize, Error> {
    need_scope(caller, Scopes::MANAGE)?;
    let endpoint = visible_endpoint(state, caller, id)?;
    own_or_staff(caller, endpoint.owner)?;
    let from = format!("{OUTBOX_PREFIX}{since_ns:020}");
    let count = {
        let ledger = read_ledger(state);
        ledger
            .table()
            .scan(OUTBOX_PREFIX)
            .filter(|(k, _)| *k >= from.as_str())
            .filter(|(_, v)| {
                serde_json::from_slice::<EventDto>(v)
                    .is_ok_and(|e| endpoint_gets(&endpoint, &e) && happened(&ledger, &e))
            })
            .count()
    };
    // The cursor is the key before the first event to send: one below it in key order.
    let cursor = format!("{OUTBOX_PREFIX}{since_ns:020}");
    let ops = vec![
        crate::audit::note(
            state,
            caller,
            "webhook.replay",
            &format!("webhook:{}", endpoint.id),
            &format!("since:{since_ns}"),
        ),
        put(cursor_key(endpoint.id), cursor.into_bytes()),
    ];
    state.engine.execute_together(ops).await?;
    Ok(count)
}

/// Whether what an event reports took effect: a payment alert is written in the payment's own
/// record, whatever the ledger answered, and reports only a transfer that exists.
fn happened(ledger: &obol_core::ledger::Ledger, event: &EventDto) -> bool {
    if event.kind != "payment.over_threshold" {
        return true;
    }
    let id = event.data.get("transfer").and_then(serde_json::Value::as_str).and_then(|t| t.parse::<u128>().ok());
    let amount = event.data.get("amount").and_then(serde_json::Value::as_str).and_then(|t| t.parse::<u128>().ok());
    id.and_then(|id| ledger.transfer(id)).is_some_and(|t| Some(t.amount) == amount)
}

fn endpoint_gets(endpoint: &StoredEndpoint, event: &EventDto) -> bool {
    let type_ok = endpoint.types.is_empty() || endpoint.types.contains(&event.kind);
    let owner = endpoint.owner.to_string();
    type_ok && (endpoint.owner_sees_all || event.principals.contains(&owner))
}

/// Every endpoint's id (the delivery loop's list).
pub fn endpoint_ids(state: &App) -> Vec<u128> {
    let ledger = read_ledger(state);
    ledger
        .table()
        .scan(ENDPOINT_PREFIX)
        .filter_map(|(_, v)| serde_json::from_slice::<StoredEndpoint>(v).ok())
        .map(|e| e.id)
        .collect()
}

/// The next event endpoint `id` should get, after its cursor.
pub fn next_delivery(state: &App, id: u128) -> Next {
    let ledger = read_ledger(state);
    let Some(endpoint) = load_endpoint(&ledger, id) else { return Next::Idle };
    let cursor = ledger.table().get(&cursor_key(id)).map(|v| String::from_utf8_lossy(v).into_owned());
    let mut last = None;
    for (key, value) in
        ledger.table().scan(OUTBOX_PREFIX).filter(|(k, _)| cursor.as_deref().is_none_or(|c| *k > c)).take(SCAN_MAX)
    {
        last = Some(key.to_string());
        let Ok(event) = serde_json::from_slice::<EventDto>(value) else { continue };
        if !endpoint_gets(&endpoint, &event) || !happened(&ledger, &event) {
            continue;
        }
        let Some(secret) = Base64::decode_vec(&endpoint.secret_sealed)
            .ok()
            .and_then(|sealed| state.vault.open(b"obol/webhook-secret/v1", &sealed))
        else {
            tracing::error!(webhook = %id, "a webhook's secret does not open; it is skipped");
            return Next::Idle;
        };
        let body = serde_json::to_vec(&serde_json::json!({
            "type": event.kind, "timestamp": event.timestamp, "data": event.data,
            "id": event.id, "principals": event.principals,
        }))
        .unwrap_or_default();
        return Next::Deliver(Box::new(Delivery {
            key: key.to_string(),
            url: endpoint.url,
            id: event.id,
            body,
            secret,
        }));
    }
    match last {
        Some(key) => Next::Skip(key),
        None => Next::Idle,
    }
}

/// Moves endpoint `id`'s cursor to `key` (after a 2xx answer, or past events it does not get).
pub async fn acknowledge(state: &App, id: u128, key: &str) -> Result<(), Error> {
    let exists = load_endpoint(&read_ledger(state), id).is_some();
    if !exists {
        return Ok(());
    }
    state.engine.put(&cursor_key(id), key.as_bytes().to_vec()).await?;
    Ok(())
}

/// The caller's activity feed: events about it (all, for staff), oldest first after `after`
/// (an event id), at most `limit`. Answers the page and the next cursor.
pub fn feed(
    state: &App,
    caller: &Caller,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<EventDto>, Option<String>), Error> {
    need_scope(caller, Scopes::READ)?;
    if !(1..=FEED_LIMIT_MAX).contains(&limit) {
        return Err(Error::InvalidQuery(format!("limit must be 1 to {FEED_LIMIT_MAX}")));
    }
    let from = match after {
        None => None,
        Some(id) => {
            let digits = id.strip_prefix("evt_").filter(|d| d.len() == 36 && d.bytes().all(|b| b.is_ascii_hexdigit()));
            let digits = digits.ok_or_else(|| Error::InvalidQuery("after must be an event id (evt_...)".into()))?;
            let (time, nonce) = digits.split_at(20);
            Some(format!("{OUTBOX_PREFIX}{time}-{nonce}"))
        }
    };
    let me = caller.principal_id.to_string();
    let staff = sees_everything(caller);
    let ledger = read_ledger(state);
    let mut out = Vec::new();
    let mut next = None;
    for (key, value) in ledger.table().scan(OUTBOX_PREFIX) {
        if from.as_deref().is_some_and(|f| key <= f) {
            continue;
        }
        let Ok(event) = serde_json::from_slice::<EventDto>(value) else { continue };
        if (!staff && !event.principals.contains(&me)) || !happened(&ledger, &event) {
            continue;
        }
        if out.len() == limit {
            next = out.last().map(|e: &EventDto| e.id.clone());
            break;
        }
        out.push(event);
    }
    Ok((out, next))
}

/// Removes outbox events older than [`OUTBOX_RETENTION_DAYS`]; answers how many.
pub async fn prune(state: &App) -> Result<usize, Error> {
    let before = state.env.now_ns().saturating_sub(OUTBOX_RETENTION_DAYS * NS_PER_DAY);
    let limit = format!("{OUTBOX_PREFIX}{before:020}");
    let old: Vec<String> = {
        let ledger = read_ledger(state);
        ledger
            .table()
            .scan(OUTBOX_PREFIX)
            .take_while(|(k, _)| *k < limit.as_str())
            .take(8_000)
            .map(|(k, _)| k.to_string())
            .collect()
    };
    let count = old.len();
    if count > 0 {
        state.engine.execute_together(old.into_iter().map(|k| put(k, Vec::new())).collect()).await?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_vector() {
        // The specification's example: secret, message id, timestamp and payload.
        let secret = Base64::decode_vec("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, b"{\"test\": 2432232314}");
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn urls_to_loopback_and_private_addresses_need_the_operator() {
        for url in [
            "http://127.0.0.1/x",
            "https://localhost:8443/",
            "http://10.1.2.3",
            "http://[::1]:80/",
            "http://192.168.0.9",
        ] {
            assert!(check_url(url, false).is_err(), "{url}");
            assert!(check_url(url, true).is_ok(), "{url}");
        }
        for url in ["https://hooks.example/obol", "http://203.0.113.7:8080/x?y=1"] {
            assert!(check_url(url, false).is_ok(), "{url}");
        }
        for url in ["ftp://x", "https://", "javascript:alert(1)", "https://a\nb"] {
            assert!(check_url(url, true).is_err(), "{url}");
        }
    }
}

/// Attempts kept per endpoint (the latest).
pub const ATTEMPTS_KEPT: usize = 20;

/// One delivery attempt, as the delivery loop saw it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AttemptDto {
    /// When (RFC 3339).
    pub at: String,
    /// The event it carried (`evt_...`).
    pub event: String,
    /// Whether the endpoint took it (a 2xx answer).
    pub delivered: bool,
    /// What the endpoint answered (`answered 200 OK`), or why nothing came back.
    pub detail: String,
    /// When the next try is due, after a failure (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<String>,
}

/// The latest attempts of each endpoint (see [`App::webhook_attempts`]).
#[derive(Default)]
pub struct Attempts {
    by_endpoint: Mutex<HashMap<u128, VecDeque<AttemptDto>>>,
}

impl Attempts {
    /// Keeps `attempt` of endpoint `id`, forgetting the oldest past [`ATTEMPTS_KEPT`].
    pub fn record(&self, id: u128, attempt: AttemptDto) {
        let mut by_endpoint = self.by_endpoint.lock().unwrap_or_else(|p| p.into_inner());
        let kept = by_endpoint.entry(id).or_default();
        if kept.len() >= ATTEMPTS_KEPT {
            kept.pop_front();
        }
        kept.push_back(attempt);
    }

    fn newest_first(&self, id: u128) -> Vec<AttemptDto> {
        let by_endpoint = self.by_endpoint.lock().unwrap_or_else(|p| p.into_inner());
        by_endpoint.get(&id).map(|kept| kept.iter().rev().cloned().collect()).unwrap_or_default()
    }

    /// Forgets endpoints that no longer exist.
    pub fn keep_only(&self, ids: &[u128]) {
        let mut by_endpoint = self.by_endpoint.lock().unwrap_or_else(|p| p.into_inner());
        by_endpoint.retain(|id, _| ids.contains(id));
    }
}

/// An endpoint's deliveries: how far it has acknowledged, what waits, and the latest attempts.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DeliveriesDto {
    /// The endpoint.
    pub endpoint: EndpointDto,
    /// The time of the last event it acknowledged (or was not meant to get), RFC 3339; none
    /// before its first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_through: Option<String>,
    /// Events waiting for it (counted up to the first 10,000 after its cursor).
    pub pending: u64,
    /// The latest attempts since the server started, newest first (at most 20).
    pub attempts: Vec<AttemptDto>,
}

/// Endpoint `id`'s deliveries (its owner, or staff).
pub fn deliveries(state: &App, caller: &Caller, id: &str) -> Result<DeliveriesDto, Error> {
    need_scope(caller, Scopes::READ)?;
    let endpoint = visible_endpoint(state, caller, id)?;
    let ledger = read_ledger(state);
    let cursor = ledger
        .table()
        .get(&cursor_key(endpoint.id))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .filter(|c| !c.is_empty());
    let pending = ledger
        .table()
        .scan(OUTBOX_PREFIX)
        .filter(|(k, _)| cursor.as_deref().is_none_or(|c| *k > c))
        .take(SCAN_MAX)
        .filter(|(_, v)| {
            serde_json::from_slice::<EventDto>(v).is_ok_and(|e| endpoint_gets(&endpoint, &e) && happened(&ledger, &e))
        })
        .count() as u64;
    let acknowledged_through = cursor
        .as_deref()
        .and_then(|c| c.strip_prefix(OUTBOX_PREFIX))
        .and_then(|rest| rest.get(..20))
        .and_then(|digits| digits.parse::<u128>().ok())
        .filter(|ns| *ns > 0)
        .map(obol_core::time::rfc3339);
    Ok(DeliveriesDto {
        endpoint: endpoint_dto(&endpoint),
        acknowledged_through,
        pending,
        attempts: state.webhook_attempts.newest_first(endpoint.id),
    })
}

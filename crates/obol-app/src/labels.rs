//! Outcome labels: confirmed fraud as first-class events. An analyst's decline of a held
//! payment, a dispute resolved for its payer as unauthorised, an operator marking a payment as
//! fraud, and a label file imported through the API each become a label: the payment's payer,
//! payee, device and network, and when obol learned it. A label is journaled in the record log
//! (`risk/label/<known ns>-<id>`, in the same record as its audit note or decision), then counted
//! in the live risk features from that moment on, never earlier: later decisions see the fraud
//! counts and rates of the payee, device, network and payer it names.
//!
//! The engine's feature snapshot records the greatest label key it has counted; at start, labels
//! journaled after it are counted again, so a crash between a snapshot and the next does not
//! forget them. (A label recorded while a snapshot is taken, whose key sorts before one counted
//! already, may be left out of the features after a crash; it stays in the log.)

use obol_core::identity::Scopes;
use obol_core::record::Op;
use obol_core::table::Put;
use obol_risk::features::Label;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::App;
use crate::auth::Caller;
use crate::authz::need_scope;
use crate::error::Error;
use crate::risk::{analyst, lock};

/// Where labels are journaled.
pub(crate) const LABEL_PREFIX: &str = "risk/label/";
/// Payments labelled already, to their label's key: a payment is labelled once.
pub(crate) const LABELLED_PREFIX: &str = "risk/labelled/";

/// Whether `payment` (a transfer id) has a label already.
pub(crate) fn is_labelled(ledger: &obol_core::ledger::Ledger, payment: u128) -> bool {
    ledger.table().get(&format!("{LABELLED_PREFIX}{payment}")).is_some()
}
/// Labels one request may record at most.
pub const LABELS_PER_REQUEST_MAX: usize = 1_000;
/// Labels listed per page at most.
pub const LABELS_PAGE_MAX: usize = 1_000;

/// Where a label came from.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelSource {
    /// An analyst declined a held payment.
    ReviewDeclined,
    /// A dispute was resolved for its payer as unauthorised.
    DisputeUnauthorised,
    /// An operator or analyst marked a payment as fraud.
    Operator,
    /// A label file imported through the API (`obol risk labels import`).
    Import,
}

/// A confirmed fraud, as journaled.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, ToSchema)]
pub struct LabelDto {
    /// Label id.
    pub id: String,
    /// Where it came from.
    #[schema(value_type = String)]
    pub source: LabelSource,
    /// The payment labelled, when one is named (a transfer id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    /// The paying account.
    pub payer_account_id: String,
    /// The account paid.
    pub payee_account_id: String,
    /// The device that signed the payment, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The network it came from (the server's keyed hash, decimal), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// When obol learned it, ns since the Unix epoch: it counts in the risk features from then.
    pub known_ns: String,
    /// Who recorded it (principal id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded_by: Option<String>,
}

impl LabelDto {
    /// A label obol learned at `known_ns`, with a fresh id.
    pub(crate) fn new(
        state: &App,
        source: LabelSource,
        parties: Parties,
        known_ns: u64,
        recorded_by: Option<u128>,
    ) -> LabelDto {
        LabelDto {
            id: format!("{:032x}", state.env.random_id()),
            source,
            payment_id: parties.payment.map(|id| id.to_string()),
            payer_account_id: parties.payer.to_string(),
            payee_account_id: parties.payee.to_string(),
            device_id: parties.device.map(|d| d.to_string()),
            network: parties.network,
            known_ns: known_ns.to_string(),
            recorded_by: recorded_by.map(|id| id.to_string()),
        }
    }

    /// The label as the feature store counts it.
    pub fn features_label(&self) -> Option<Label> {
        let known_ns = self.known_ns.parse::<u64>().ok()?;
        Some(Label {
            known_at_s: known_ns / 1_000_000_000,
            payer: self.payer_account_id.parse().ok()?,
            device: self.device_id.as_deref().and_then(|d| d.parse().ok()),
            payee: self.payee_account_id.parse().ok()?,
            network: self.network.as_deref().and_then(|n| n.parse().ok()),
        })
    }

    /// Its key in the log: known time first, so the keys sort by when labels were learned.
    pub(crate) fn key(&self) -> String {
        let known_ns = self.known_ns.parse::<u64>().unwrap_or(0);
        format!("{LABEL_PREFIX}{known_ns:020}-{}", self.id)
    }

    /// Its page cursor (`after` of the next page).
    pub fn cursor(&self) -> String {
        self.key()
    }

    /// The puts that journal it: the label, and for a named payment the mark that it is
    /// labelled (so it is labelled once, whatever route or retry labels it again).
    pub(crate) fn puts(&self) -> Result<Vec<Op>, Error> {
        let value = serde_json::to_vec(self).map_err(|e| Error::Internal(e.to_string()))?;
        let mut ops = vec![Op::Put(Put { key: self.key(), value })];
        if let Some(payment) = &self.payment_id {
            ops.push(Op::Put(Put { key: format!("{LABELLED_PREFIX}{payment}"), value: self.key().into_bytes() }));
        }
        Ok(ops)
    }
}

/// What a label names: the payment (when one transfer), its accounts, device and network.
pub(crate) struct Parties {
    pub(crate) payment: Option<u128>,
    pub(crate) payer: u128,
    pub(crate) payee: u128,
    pub(crate) device: Option<u128>,
    pub(crate) network: Option<String>,
}

/// One label to record: a payment by id, or its parties.
#[derive(Deserialize, Clone, Debug, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelItem {
    /// The transfer labelled; its parties and device are taken from the ledger.
    #[serde(default)]
    pub payment_id: Option<String>,
    /// Without a payment id: the paying account.
    #[serde(default)]
    pub payer_account_id: Option<String>,
    /// Without a payment id: the account paid.
    #[serde(default)]
    pub payee_account_id: Option<String>,
    /// Without a payment id: the device that paid, if one did.
    #[serde(default)]
    pub device_id: Option<String>,
}

/// `POST /v1/risk/labels`: payments confirmed as fraud.
#[derive(Deserialize, Clone, Debug, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelRequest {
    /// The labels, at most 1,000.
    pub labels: Vec<LabelItem>,
    /// `operator` (the default: marked by hand) or `import` (from a label file).
    #[serde(default)]
    pub source: Option<String>,
}

fn id_field(field: &str, text: &str) -> Result<u128, Error> {
    let digits = !text.is_empty() && text.len() <= 39 && text.bytes().all(|b| b.is_ascii_digit());
    digits.then(|| text.parse::<u128>().ok()).flatten().ok_or_else(|| {
        let shown: String = text.chars().take(48).collect();
        Error::InvalidField(format!("{field}: {shown:?} is not an id (decimal digits)"))
    })
}

/// Records payments an operator or analyst confirms as fraud (by hand, or from a label file),
/// in one record with an audit note, and counts them in the live features from now on. A
/// payment labelled already (by any route, or earlier in the same request) is skipped: the
/// answer lists the labels recorded, so a retried import counts nothing twice.
pub async fn record(state: &App, caller: &Caller, request: LabelRequest) -> Result<Vec<LabelDto>, Error> {
    need_scope(caller, Scopes::MANAGE)?;
    analyst(caller)?;
    let source = match request.source.as_deref() {
        None | Some("operator") => LabelSource::Operator,
        Some("import") => LabelSource::Import,
        Some(other) => return Err(Error::InvalidField(format!("source: {other:?} is not operator or import"))),
    };
    if request.labels.is_empty() || request.labels.len() > LABELS_PER_REQUEST_MAX {
        return Err(Error::InvalidField(format!("labels: 1 to {LABELS_PER_REQUEST_MAX} per request")));
    }
    let known_ns = state.env.now_ns();
    let mut labels = Vec::with_capacity(request.labels.len());
    {
        let ledger = crate::read_ledger(state);
        for (index, item) in request.labels.iter().enumerate() {
            let at = |field: &str| format!("labels[{index}].{field}");
            let (payment_id, payer, payee, device) = match &item.payment_id {
                Some(text) => {
                    if item.payer_account_id.is_some() || item.payee_account_id.is_some() || item.device_id.is_some() {
                        return Err(Error::InvalidField(format!(
                            "{}: name a payment or its parties, not both",
                            at("payment_id")
                        )));
                    }
                    let id = id_field(&at("payment_id"), text)?;
                    let transfer = ledger.transfer(id).ok_or(Error::TransferNotFound(id))?;
                    // A payment, posted: not a refund, a dispute's move, or a pending escrow
                    // (a tab's payments are labelled by its parties).
                    if !crate::disputes::disputable(transfer) {
                        return Err(Error::InvalidField(format!(
                            "{}: transfer {id} is not a payment (a refund, a dispute's transfer, or pending)",
                            at("payment_id")
                        )));
                    }
                    if is_labelled(&ledger, id)
                        || labels.iter().any(|l: &LabelDto| l.payment_id == Some(id.to_string()))
                    {
                        continue;
                    }
                    let device = ledger.payment_evidence(id).map(|e| e.device_id).filter(|d| *d != 0);
                    (Some(id), transfer.debit_account_id, transfer.credit_account_id, device)
                }
                None => {
                    let payer = item.payer_account_id.as_deref().ok_or_else(|| {
                        Error::InvalidField(format!("{}: a payment id or both accounts", at("payer_account_id")))
                    })?;
                    let payee = item.payee_account_id.as_deref().ok_or_else(|| {
                        Error::InvalidField(format!("{}: a payment id or both accounts", at("payee_account_id")))
                    })?;
                    let (payer, payee) =
                        (id_field(&at("payer_account_id"), payer)?, id_field(&at("payee_account_id"), payee)?);
                    if payer == payee {
                        return Err(Error::InvalidField(format!(
                            "{}: the payer cannot pay itself",
                            at("payee_account_id")
                        )));
                    }
                    for account in [payer, payee] {
                        if ledger.account(account).is_none() {
                            return Err(Error::AccountNotFound(account));
                        }
                    }
                    let device = item.device_id.as_deref().map(|d| id_field(&at("device_id"), d)).transpose()?;
                    if let Some(device) = device {
                        // The device must be one the payer's holder pays with.
                        let holder = ledger.account(payer).map(|a| a.owner_id);
                        if ledger.identity().device(device).is_none_or(|d| Some(d.holder_id) != holder) {
                            return Err(Error::InvalidField(format!(
                                "{}: no device {device} of the payer's holder",
                                at("device_id")
                            )));
                        }
                    }
                    (None, payer, payee, device)
                }
            };
            // The network is known while the payment is among its payer's latest the server keeps.
            let network = payment_id.and_then(|id| state.risk.network_of_payment(payer, id));
            let parties = Parties { payment: payment_id, payer, payee, device, network };
            labels.push(LabelDto::new(state, source, parties, known_ns, Some(caller.principal_id)));
        }
    }
    let what = match source {
        LabelSource::Import => "risk.labels.import",
        _ => "risk.labels.mark",
    };
    if labels.is_empty() {
        return Ok(labels);
    }
    // The note says how many; each label is a put in the same record, read in full from the log.
    let outcome = format!("{} labels recorded", labels.len());
    let mut ops = vec![crate::audit::note(state, caller, what, "risk/label", &outcome)];
    for label in &labels {
        ops.extend(label.puts()?);
    }
    state.engine.execute_together(ops).await?;
    count(state, &labels);
    metrics::counter!("obol_risk_labels_total", "source" => if source == LabelSource::Import { "import" } else { "operator" })
        .increment(labels.len() as u64);
    Ok(labels)
}

/// Counts journaled labels in the live features (after their record committed).
pub(crate) fn count(state: &App, labels: &[LabelDto]) {
    if !state.risk.enabled() {
        return;
    }
    let mut engine = lock(&state.risk.engine);
    let mut counted = lock(&state.risk.labels_counted);
    for label in labels {
        if let Some(features_label) = label.features_label() {
            engine.label(&features_label);
        }
        let key = label.key();
        if counted.as_ref().is_none_or(|last| key > *last) {
            *counted = Some(key);
        }
    }
}

/// Labels journaled, oldest first, after the key `after` (a page cursor).
pub fn list(state: &App, caller: &Caller, after: Option<&str>, limit: usize) -> Result<Vec<LabelDto>, Error> {
    analyst(caller)?;
    let limit = limit.clamp(1, LABELS_PAGE_MAX);
    let ledger = crate::read_ledger(state);
    let rows = ledger.table().scan(LABEL_PREFIX);
    Ok(rows
        .filter(|(key, _)| after.is_none_or(|after| *key > after))
        .filter_map(|(_, value)| serde_json::from_slice::<LabelDto>(value).ok())
        .take(limit)
        .collect())
}

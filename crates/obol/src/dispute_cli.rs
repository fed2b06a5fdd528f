//! `obol dispute`: open, list, show, answer, resolve and withdraw disputes over the API.

use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{Api, Connection, print, runtime};

/// `obol dispute ...`
#[derive(Subcommand, Debug)]
pub enum DisputeCommand {
    /// Dispute a payment you made (or, as the operator, one made by a holder). The amount is held
    /// on the payee's account and the law's timers start.
    ///
    /// Example: obol dispute open --payment 42 --reason not_received --statement "never delivered"
    Open {
        /// The disputed payment's transfer id.
        #[arg(long, conflicts_with = "tab", required_unless_present = "tab")]
        payment: Option<String>,
        /// A settled tab whose payments are disputed.
        #[arg(long)]
        tab: Option<String>,
        /// unauthorised, not_received, not_as_described, duplicate or amount_wrong.
        #[arg(long)]
        reason: String,
        /// What happened, in your words.
        #[arg(long, default_value = "")]
        statement: String,
        /// Minor units disputed; all that is left of the payment if omitted.
        #[arg(long)]
        amount: Option<String>,
        /// The dispute's id (a retry with it answers the dispute opened); random if omitted.
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// The disputes you are a party to (all of them, for staff).
    List {
        /// open, under_review, resolved_payer, resolved_payee or withdrawn.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// One dispute: deadlines, evidence, statements, outcome and money moved.
    Show {
        /// Dispute id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Answer a dispute against a payment you received, by its deadline.
    ///
    /// Example: obol dispute answer 7 --statement "delivered on 3 Dec, log attached"
    Answer {
        /// Dispute id.
        id: String,
        /// Your side.
        #[arg(long)]
        statement: String,
        /// Accept the dispute: the payer wins at once.
        #[arg(long)]
        accept: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Decide a dispute (operator or analyst; never a party to it).
    ///
    /// Example: obol dispute resolve 7 --winner payer
    Resolve {
        /// Dispute id.
        id: String,
        /// payer or payee.
        #[arg(long)]
        winner: String,
        /// The payer acted fraudulently.
        #[arg(long)]
        payer_fraud: bool,
        /// The payer kept its credentials with gross negligence.
        #[arg(long)]
        gross_negligence: bool,
        /// Reg E: the day the payer learned its device was lost or stolen (YYYY-MM-DD).
        #[arg(long)]
        learned_on: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Withdraw a dispute you opened.
    Withdraw {
        /// Dispute id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
}

/// Runs `obol dispute ...`.
pub fn run(command: DisputeCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let post = reqwest::Method::POST;
        let get = reqwest::Method::GET;
        let value: Value = match command {
            DisputeCommand::Open { payment, tab, reason, statement, amount, id, connection } => {
                let id = id.unwrap_or_else(|| (rand::random::<u128>() >> 1).max(1).to_string());
                let mut body = json!({"id": id, "reason": reason, "statement": statement});
                if let Some(map) = body.as_object_mut() {
                    for (name, value) in [("payment", payment), ("tab", tab), ("amount", amount)] {
                        if let Some(value) = value {
                            map.insert(name.into(), json!(value));
                        }
                    }
                }
                Api::new(&connection)?.expect(post, "/v1/disputes", Some(&body)).await?
            }
            DisputeCommand::List { status, connection } => {
                let path = match status {
                    Some(status) => format!("/v1/disputes?status={status}"),
                    None => "/v1/disputes".into(),
                };
                Api::new(&connection)?.expect(get, &path, None).await?
            }
            DisputeCommand::Show { id, connection } => {
                Api::new(&connection)?.expect(get, &format!("/v1/disputes/{id}"), None).await?
            }
            DisputeCommand::Answer { id, statement, accept, connection } => {
                let body = json!({"statement": statement, "accept": accept});
                Api::new(&connection)?.expect(post, &format!("/v1/disputes/{id}/answer"), Some(&body)).await?
            }
            DisputeCommand::Resolve { id, winner, payer_fraud, gross_negligence, learned_on, connection } => {
                let mut body =
                    json!({"winner": winner, "payer_fraud": payer_fraud, "gross_negligence": gross_negligence});
                if let (Some(map), Some(day)) = (body.as_object_mut(), learned_on) {
                    map.insert("learned_on".into(), json!(day));
                }
                Api::new(&connection)?.expect(post, &format!("/v1/disputes/{id}/resolve"), Some(&body)).await?
            }
            DisputeCommand::Withdraw { id, connection } => {
                Api::new(&connection)?.expect(post, &format!("/v1/disputes/{id}/withdraw"), None).await?
            }
        };
        print(&value);
        Ok(())
    })
}

//! `obol listen` (live events in the terminal), `obol webhook` (endpoints: add, list, delete,
//! replay) and `obol alerts` (the payment threshold), over the API.

use std::time::Duration;

use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{Api, Connection, parse_asset, print, runtime};

/// `obol webhook ...`
#[derive(Subcommand, Debug)]
pub enum WebhookCommand {
    /// Register an endpoint; prints its signing secret once (verify with any Standard Webhooks
    /// library).
    ///
    /// Example: obol webhook add --url https://shop.example/obol-events --type dispute.opened
    Add {
        /// Where events are POSTed.
        #[arg(long)]
        url: String,
        /// Only these event types (repeat; default: all).
        #[arg(long = "type")]
        types: Vec<String>,
        /// Whose events (operator: a holder or merchant; default: your own).
        #[arg(long)]
        principal: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Your endpoints.
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Remove an endpoint.
    Delete {
        /// Endpoint id.
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// Send an endpoint every event since a time again.
    ///
    /// Example: obol webhook replay 7 --since 2026-12-06T00:00:00Z
    Replay {
        /// Endpoint id.
        id: String,
        /// RFC 3339 time (default: all the outbox keeps, 7 days).
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
}

/// `obol alerts`.
#[derive(clap::Args, Debug)]
pub struct AlertsArgs {
    /// Alert on every payment over this amount (minor units of --asset).
    #[arg(long, requires = "asset", conflicts_with = "off")]
    payment_over: Option<String>,
    /// The threshold's asset, CODE/SCALE (e.g. USD/2).
    #[arg(long)]
    asset: Option<String>,
    /// Remove the threshold.
    #[arg(long)]
    off: bool,
    /// Whose alerts (default: your own).
    #[arg(long)]
    principal: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

/// `obol listen`.
#[derive(clap::Args, Debug)]
pub struct ListenArgs {
    /// Print the events the outbox still keeps first (7 days), then the live ones.
    #[arg(long)]
    from_start: bool,
    /// Print each event as one JSON line instead of a summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    connection: Connection,
}

/// Runs `obol webhook ...`.
pub fn webhook(command: WebhookCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let value = match command {
            WebhookCommand::Add { url, types, principal, connection } => {
                let mut body = json!({"url": url, "types": types});
                if let (Some(map), Some(principal)) = (body.as_object_mut(), principal) {
                    map.insert("principal".into(), json!(principal));
                }
                Api::new(&connection)?.expect(reqwest::Method::POST, "/v1/webhooks", Some(&body)).await?
            }
            WebhookCommand::List { connection } => {
                Api::new(&connection)?.expect(reqwest::Method::GET, "/v1/webhooks", None).await?
            }
            WebhookCommand::Delete { id, connection } => {
                Api::new(&connection)?.expect(reqwest::Method::DELETE, &format!("/v1/webhooks/{id}"), None).await?;
                crate::outln!("webhook {id} removed");
                return Ok(());
            }
            WebhookCommand::Replay { id, since, connection } => {
                let body = since.map_or_else(|| json!({}), |since| json!({"since": since}));
                let path = format!("/v1/webhooks/{id}/replay");
                Api::new(&connection)?.expect(reqwest::Method::POST, &path, Some(&body)).await?
            }
        };
        print(&value);
        Ok(())
    })
}

async fn me(api: &Api, principal: Option<String>) -> anyhow::Result<String> {
    if let Some(principal) = principal {
        return Ok(principal);
    }
    let me = api.expect(reqwest::Method::GET, "/v1/me", None).await?;
    me.pointer("/principal/id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("the server did not say who this key belongs to; pass --principal"))
}

/// Runs `obol alerts`.
pub fn alerts(args: AlertsArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let api = Api::new(&args.connection)?;
        let id = me(&api, args.principal).await?;
        let path = format!("/v1/principals/{id}/alerts");
        let value = match (args.payment_over, args.off) {
            (None, false) => api.expect(reqwest::Method::GET, &path, None).await?,
            (over, _) => {
                let body = match (over, args.asset) {
                    (Some(amount), Some(asset)) => {
                        let (code, scale) = parse_asset(&asset)?;
                        json!({"payment_over": {"asset_code": code, "asset_scale": scale, "amount": amount}})
                    }
                    _ => json!({}),
                };
                api.expect(reqwest::Method::PUT, &path, Some(&body)).await?
            }
        };
        print(&value);
        Ok(())
    })
}

fn summary(event: &Value) -> String {
    let text = |pointer: &str| event.pointer(pointer).and_then(Value::as_str).unwrap_or("").to_string();
    let data = event.get("data").map(Value::to_string).unwrap_or_default();
    format!("{}  {:<24} {}", text("/timestamp"), text("/type"), data)
}

/// Runs `obol listen`: prints events as they happen, until interrupted.
pub fn listen(args: ListenArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let api = Api::new(&args.connection)?;
        let mut after: Option<String> = None;
        // Without --from-start, skip to the newest event: only what happens from now on prints.
        let mut catching_up = !args.from_start;
        if catching_up {
            crate::outln!("listening for events (Ctrl-C to stop)");
        }
        loop {
            let path = match &after {
                Some(after) => format!("/v1/events?limit=1000&after={after}"),
                None => "/v1/events?limit=1000".to_string(),
            };
            let page = api.expect(reqwest::Method::GET, &path, None).await?;
            let items = page.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
            for event in &items {
                if !catching_up {
                    if args.json {
                        crate::outln!("{event}");
                    } else {
                        crate::outln!("{}", summary(event));
                    }
                }
                if let Some(id) = event.get("id").and_then(Value::as_str) {
                    after = Some(id.to_string());
                }
            }
            if page.get("next").is_none() {
                catching_up = false;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    })
}

//! `obol freeze` and `obol unfreeze`: stop a holder's payments at once (all, one device's or one
//! tab's), and lift the freeze with a second factor.

use serde_json::{Value, json};

use crate::client::{Api, Approval, Connection, print, runtime};

/// What to freeze or unfreeze.
#[derive(clap::Args, Debug)]
pub struct FreezeArgs {
    /// Only this device's payments (its tabs' vouchers and ticks included).
    #[arg(long, conflicts_with = "tab")]
    device: Option<String>,
    /// Only payments into this tab.
    #[arg(long)]
    tab: Option<String>,
    /// Whose payments (default: your own; the operator names a holder).
    #[arg(long)]
    principal: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

/// `obol unfreeze`: as `obol freeze`, with the second factor's approval.
#[derive(clap::Args, Debug)]
pub struct UnfreezeArgs {
    #[command(flatten)]
    what: FreezeArgs,
    #[command(flatten)]
    approval: Approval,
}

fn body(args: &FreezeArgs) -> Value {
    match (&args.device, &args.tab) {
        (Some(device), _) => json!({"device": device}),
        (None, Some(tab)) => json!({"tab": tab}),
        (None, None) => json!({}),
    }
}

async fn principal(api: &Api, args: &FreezeArgs) -> anyhow::Result<String> {
    match &args.principal {
        Some(id) => Ok(id.clone()),
        None => {
            let me = api.expect(reqwest::Method::GET, "/v1/me", None).await?;
            me.pointer("/principal/id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| anyhow::anyhow!("the server did not say who this key belongs to; pass --principal"))
        }
    }
}

/// Runs `obol freeze`.
pub fn freeze(args: FreezeArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let api = Api::new(&args.connection)?;
        let id = principal(&api, &args).await?;
        let value =
            api.expect(reqwest::Method::POST, &format!("/v1/principals/{id}/freeze"), Some(&body(&args))).await?;
        print(&value);
        Ok(())
    })
}

/// Runs `obol unfreeze`.
pub fn unfreeze(args: UnfreezeArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let api = Api::new(&args.what.connection)?;
        let id = principal(&api, &args.what).await?;
        let value = api
            .expect_approved(
                reqwest::Method::POST,
                &format!("/v1/principals/{id}/unfreeze"),
                Some(&body(&args.what)),
                args.approval.approval.as_deref(),
                args.approval.totp.as_deref(),
            )
            .await?;
        print(&value);
        Ok(())
    })
}

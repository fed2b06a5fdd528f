//! Custom assets: in-game currencies, credits, points. ISO 4217 currencies need no registration;
//! any other asset is registered once by the operator with its code (three letters A to Z that
//! ISO 4217 does not list), the coarsest scale it counts in and a description, and never changes.
//!
//! The registry is part of the state table (`asset/<CODE>`), written through the record log
//! like everything that must survive a crash, and read from the replayed table. An account may
//! take a custom asset only once it is registered, at its scale or finer; transfers, tabs and
//! device limits then follow the accounts' assets as for any currency.

use obol_core::identity::{Role, Scopes};
use obol_core::money::Asset;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::App;
use crate::auth::Caller;
use crate::authz::{need_role, need_scope};
use crate::error::Error;

/// The state table's keys of registered assets.
const ASSET_PREFIX: &str = "asset/";
/// Custom assets one deployment may register.
pub const ASSETS_MAX: usize = 1_000;
/// Longest description, in bytes.
const DESCRIPTION_BYTES_MAX: usize = 200;

/// A registered custom asset, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AssetDto {
    /// Three letters A to Z that ISO 4217 does not list, e.g. `GEM`.
    pub code: String,
    /// The coarsest scale accounts may count it in (0: whole units); finer scales are allowed.
    pub scale: u8,
    /// What it is, for people.
    pub description: String,
    /// When it was registered, ns since the Unix epoch.
    pub registered_ns: String,
    /// Who registered it.
    pub registered_by: String,
}

/// Registers a custom asset (operator, with the manage scope). Registering the same code,
/// scale and description again answers it unchanged (`false`); anything else for a registered
/// code is refused.
pub async fn register(
    state: &App,
    caller: &Caller,
    code: &str,
    scale: u8,
    description: &str,
) -> Result<(AssetDto, bool), Error> {
    need_role(caller, &[Role::Operator])?;
    need_scope(caller, Scopes::MANAGE)?;
    // One registration at a time: two racing for a code must not both be told they made it.
    static REGISTERING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = REGISTERING.lock().await;
    Asset::custom(code, scale).map_err(|error| Error::InvalidAsset(error.to_string()))?;
    let description = description.trim();
    crate::plain_text("description", description)?;
    if description.is_empty() || description.len() > DESCRIPTION_BYTES_MAX {
        return Err(Error::InvalidField(format!(
            "description: 1 to {DESCRIPTION_BYTES_MAX} bytes saying what the asset is"
        )));
    }
    if let Some(existing) = registered(state, code)? {
        return if existing.scale == scale && existing.description == description {
            Ok((existing, false))
        } else {
            Err(Error::AssetExists(code.into()))
        };
    }
    if state.engine.table_scan(ASSET_PREFIX).len() >= ASSETS_MAX {
        return Err(Error::InvalidField(format!(
            "{ASSETS_MAX} custom assets are registered already, the most allowed"
        )));
    }
    let asset = AssetDto {
        code: code.into(),
        scale,
        description: description.into(),
        registered_ns: state.env.now_ns().to_string(),
        registered_by: caller.principal_id.to_string(),
    };
    let bytes = serde_json::to_vec(&asset).map_err(|e| Error::Internal(e.to_string()))?;
    state.engine.put(&format!("{ASSET_PREFIX}{code}"), bytes).await?;
    tracing::info!(code, scale, by = %caller.principal_id, "custom asset registered");
    Ok((asset, true))
}

/// Every registered custom asset, by code (any caller: they name what accounts may hold).
pub fn list(state: &App, caller: &Caller) -> Result<Vec<AssetDto>, Error> {
    need_scope(caller, Scopes::READ)?;
    state
        .engine
        .table_scan(ASSET_PREFIX)
        .into_iter()
        .map(|(_, bytes)| serde_json::from_slice(&bytes).map_err(|e| Error::Internal(format!("asset record: {e}"))))
        .collect()
}

fn registered(state: &App, code: &str) -> Result<Option<AssetDto>, Error> {
    state
        .engine
        .table_get(&format!("{ASSET_PREFIX}{code}"))
        .map(|bytes| serde_json::from_slice(&bytes).map_err(|e| Error::Internal(format!("asset record: {e}"))))
        .transpose()
}

/// Whether an account may take `asset`: any ISO 4217 one; a custom one once registered, at its
/// registered scale or finer.
pub fn check_registered(state: &App, asset: Asset) -> Result<(), Error> {
    if asset.is_iso() {
        return Ok(());
    }
    let Some(registered) = registered(state, asset.code())? else {
        return Err(Error::AssetNotRegistered(asset.code().into()));
    };
    if asset.scale() < registered.scale {
        return Err(Error::AssetScaleTooCoarse {
            code: asset.code().into(),
            scale: asset.scale(),
            registered: registered.scale,
        });
    }
    Ok(())
}

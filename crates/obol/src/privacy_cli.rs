//! `obol privacy` (the retention scheduler's plan, a dry run) and `obol vault` (master-key
//! rotation, run on the store with the server stopped).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use obol_app::vault::{KeyWrap, PERSON_KEY_META_PREFIX, SYSTEM_KEY_META, Secret};

use crate::client::{Api, Connection, runtime};

/// `obol privacy ...`
#[derive(Subcommand, Debug)]
pub enum PrivacyCommand {
    /// The retention scheduler's plan, a dry run: every erasure kept under the law's retention,
    /// when it runs and whether it is due at --at. Nothing is erased by asking (the server
    /// erases what is due on its sweep). Example: obol privacy retention --at 2031-12-31T00:00:00Z
    Retention {
        /// A time (RFC 3339 or ns since the Unix epoch); default now.
        #[arg(long)]
        at: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
}

/// `obol vault ...`
#[derive(Subcommand, Debug)]
pub enum VaultCommand {
    /// Replace the master key: re-wraps the system key and every person's data key under a new
    /// master key and touches no data. Run it with the server stopped. If it is interrupted,
    /// run it again: it finishes with the same new key (kept meanwhile in master.key.next).
    /// Afterwards keep only the new master.key (the old one is overwritten).
    RotateMasterKey {
        #[command(flatten)]
        store: crate::serve::StoreArgs,
        /// The master key file (default: master.key in the data directory).
        #[arg(long, env = "OBOL_MASTER_KEY_FILE")]
        master_key_file: Option<PathBuf>,
    },
}

/// `obol privacy ...`
pub fn privacy(command: PrivacyCommand) -> anyhow::Result<()> {
    match command {
        PrivacyCommand::Retention { at, connection } => {
            let path = match at {
                Some(at) => format!("/v1/privacy/retention?at={}", crate::client::encode_query(&at)),
                None => "/v1/privacy/retention".into(),
            };
            let plan = runtime()?
                .block_on(async { Api::new(&connection)?.expect(reqwest::Method::GET, &path, None).await })?;
            let items = plan.as_array().map(Vec::as_slice).unwrap_or_default();
            crate::outln!("dry run: nothing is erased by this command");
            if items.is_empty() {
                crate::outln!("no erasure is waiting for its retention to end");
            }
            let when = |value: &serde_json::Value| {
                value.as_str().and_then(|ns| ns.parse::<u128>().ok()).map(crate::out::rfc3339).unwrap_or_default()
            };
            for item in items {
                let erasure = &item["erasure"];
                crate::outln!(
                    "principal {}: {} at {} (asked {}, last payment {})",
                    erasure["principal_id"].as_str().unwrap_or(""),
                    if item["due"].as_bool() == Some(true) { "due: erased on the next sweep" } else { "kept until" },
                    when(&erasure["erase_after_ns"]),
                    when(&erasure["requested_ns"]),
                    when(&erasure["last_activity_ns"]),
                );
            }
            Ok(())
        }
    }
}

/// `obol vault ...`
pub fn vault(command: VaultCommand) -> anyhow::Result<()> {
    let VaultCommand::RotateMasterKey { store, master_key_file } = command;
    let path = master_key_file.unwrap_or_else(|| store.data_dir().join("master.key"));
    if !path.exists() {
        bail!("no master key at {}: give --master-key-file", path.display());
    }
    let next_path = obol_app::vault::next_key_path(&path);
    let old = obol_app::vault::load_or_create_key(&path, &obol_app::SystemEnv)
        .with_context(|| format!("reading {}", path.display()))?;
    // The store first (a running server holds it) and the old key checked against it, so a
    // refused run leaves no new key behind; a store that does not exist is not made.
    if !store.exists() {
        bail!("no store at {}: give the store options the server runs with", store.describe());
    }
    let mut store = crate::serve::open_store(&store)?;
    let mut entries = store.meta_scan(PERSON_KEY_META_PREFIX)?;
    let Some(system) = store.meta_get(SYSTEM_KEY_META)? else {
        bail!("this store has no vault keys (it never served): is it the right store? Nothing was changed");
    };
    entries.push((SYSTEM_KEY_META.to_string(), system));
    let old_wrap = KeyWrap::new(&old);
    let resumed = next_path.exists();
    if !resumed && entries.iter().any(|(_, wrapped)| KeyWrap::wrapped_by(wrapped) != Some(old_wrap.id())) {
        bail!("{} does not open this store's keys: is it the store's master key?", path.display());
    }
    let new = obol_app::vault::load_or_create_key(&next_path, &obol_app::SystemEnv)
        .with_context(|| format!("creating {}", next_path.display()))?;
    let new_wrap = KeyWrap::new(&new);
    let progress = crate::out::bar(entries.len() as u64, "re-wrapping keys");
    let (mut rewrapped, mut already) = (0usize, 0usize);
    for (meta_key, wrapped) in &entries {
        match KeyWrap::wrapped_by(wrapped) {
            Some(id) if id == new_wrap.id() => already += 1,
            Some(id) if id == old_wrap.id() => {
                let key: Secret<[u8; 32]> = old_wrap
                    .unwrap(meta_key, wrapped)
                    .map_err(|error| anyhow::anyhow!("{meta_key} does not open under the master key: {error}"))?;
                store.meta_put(meta_key, &new_wrap.wrap(&obol_app::SystemEnv, meta_key, &key))?;
                rewrapped += 1;
            }
            _ => bail!(
                "{meta_key} is wrapped by neither {} nor {}: is this the store's master key?",
                path.display(),
                next_path.display()
            ),
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    // The old wraps are gone from the files too: whoever keeps the old key opens nothing here.
    store.meta_scrub()?;
    drop(store);
    // Every key now opens under the new master key: it replaces the old file in one rename.
    std::fs::rename(&next_path, &path).with_context(|| format!("replacing {}", path.display()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    crate::outln!(
        "master key {} -> {}: re-wrapped {rewrapped} key(s){}; no data was touched",
        obol_core::audit::hex(&old_wrap.id()),
        obol_core::audit::hex(&new_wrap.id()),
        if resumed { format!(" ({already} were already re-wrapped by the interrupted run)") } else { String::new() }
    );
    Ok(())
}

//! Where the client commands send their requests, with what key, trusting which CA: flags and
//! environment first, then a named profile in the config file, then the local defaults.
//!
//! The config file (`$OBOL_CONFIG`, else `$XDG_CONFIG_HOME/obol/config.toml`, else
//! `~/.config/obol/config.toml`) names profiles; it never holds a key, only where to read one (a
//! file `obol login` writes with mode 0600, or an environment variable).

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

/// The server a client command talks to when nothing else names one.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8402";

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// Tables and sentences, amounts with their asset, times in RFC 3339 (the default on a
    /// terminal).
    Human,
    /// The API's JSON, for scripts (the default when stdout is not a terminal).
    Json,
}

/// One profile: a server and how to reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Base URL of the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// File that holds the API key (one line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<PathBuf>,
    /// Environment variable that holds the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// PEM file of a CA to trust beside the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// How results are printed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Output>,
}

/// The config file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The profile used when no `--profile` or `OBOL_PROFILE` names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Profiles by name.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

/// Where the config file is.
pub fn config_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("OBOL_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(dir).join("obol").join("config.toml"));
    }
    let home = std::env::var_os("HOME")
        .filter(|p| !p.is_empty())
        .ok_or_else(|| anyhow!("HOME is not set: name the config file with OBOL_CONFIG"))?;
    Ok(PathBuf::from(home).join(".config").join("obol").join("config.toml"))
}

impl Config {
    /// The config file's contents; an absent file is an empty config.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("reading {}", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the file (and its directory), replacing it atomically.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = toml::to_string_pretty(self).context("writing the config")?;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let temporary = path.with_extension("toml.tmp");
        std::fs::write(&temporary, text).with_context(|| format!("writing {}", temporary.display()))?;
        std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))
    }
}

/// Where the server is and how results are printed: flags and environment win over the profile,
/// the profile over the defaults.
#[derive(Args, Debug, Clone, Default)]
pub struct Endpoint {
    /// Base URL of the obol server, http:// or https:// [default: the profile's, else
    /// http://127.0.0.1:8402].
    #[arg(long, visible_alias = "url", env = "OBOL_SERVER")]
    pub server: Option<String>,
    /// PEM file of a CA to trust beside the system's roots (a server started with a
    /// self-signed --tls-cert).
    #[arg(long, env = "OBOL_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Profile of the config file to use (see `obol config`).
    #[arg(long, env = "OBOL_PROFILE")]
    pub profile: Option<String>,
    /// Print JSON (the API's answer) instead of tables; the default when stdout is not a
    /// terminal.
    #[arg(long)]
    pub json: bool,
}

/// An [`Endpoint`] and the caller's API key.
#[derive(Args, Debug, Clone, Default)]
pub struct Connection {
    #[command(flatten)]
    pub endpoint: Endpoint,
    /// API key of the caller: the operator's, or a principal's own. Prefer OBOL_API_KEY or
    /// --api-key-file: a key on the command line shows in the process list.
    #[arg(long, env = "OBOL_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// File holding the API key (its first line).
    #[arg(long, env = "OBOL_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
}

/// A connection with every choice made.
#[derive(Debug)]
pub struct Resolved {
    /// Base URL, without a trailing slash.
    pub server: String,
    /// The API key, if any source had one.
    pub api_key: Option<String>,
    /// CA certificates (PEM) to trust beside the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// How to print.
    pub output: Output,
}

fn read_key_file(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the API key from {}", path.display()))?;
    let key = text.lines().next().unwrap_or("").trim().to_string();
    if key.is_empty() {
        bail!("{} holds no API key", path.display());
    }
    Ok(key)
}

impl Endpoint {
    /// The profile this endpoint names (flag, environment, then the file's current one).
    fn profile(&self) -> anyhow::Result<(Option<String>, Profile)> {
        let path = config_path()?;
        let config = Config::load(&path)?;
        let name = self.profile.clone().or(config.current.clone());
        let Some(name) = name else { return Ok((None, Profile::default())) };
        match config.profiles.get(&name) {
            Some(profile) => Ok((Some(name), profile.clone())),
            None if self.profile.is_some() => {
                bail!("no profile {name:?} in {} (see `obol config list`)", path.display())
            }
            // A `current` that names a removed profile is as good as none.
            None => Ok((None, Profile::default())),
        }
    }

    /// Makes every choice but the key's.
    pub fn resolve(&self) -> anyhow::Result<Resolved> {
        Ok(self.resolve_with_profile()?.0)
    }

    fn resolve_with_profile(&self) -> anyhow::Result<(Resolved, Profile)> {
        let (_, profile) = self.profile()?;
        let server = self.server.clone().or(profile.server.clone()).unwrap_or_else(|| DEFAULT_SERVER.to_string());
        let server = server.trim().trim_end_matches('/').to_string();
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            bail!("--server must start with http:// or https://, not {server:?}");
        }
        let ca_path = self.ca_cert.clone().or(profile.ca_cert.clone());
        let ca_pem = match ca_path {
            Some(path) => {
                Some(std::fs::read(&path).with_context(|| format!("reading the CA from {}", path.display()))?)
            }
            None => None,
        };
        let output = if self.json {
            Output::Json
        } else if let Some(output) = profile.output {
            output
        } else if std::io::stdout().is_terminal() {
            Output::Human
        } else {
            Output::Json
        };
        let resolved = Resolved { server, api_key: None, ca_pem, output };
        Ok((resolved, profile))
    }
}

impl Connection {
    /// Makes every choice.
    pub fn resolve(&self) -> anyhow::Result<Resolved> {
        let (mut resolved, profile) = self.endpoint.resolve_with_profile()?;
        resolved.api_key = if let Some(key) = self.api_key.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
            Some(key.to_string())
        } else if let Some(path) = self.api_key_file.as_ref().or(profile.api_key_file.as_ref()) {
            Some(read_key_file(path)?)
        } else if let Some(name) = &profile.api_key_env {
            let key = std::env::var(name).ok().filter(|k| !k.trim().is_empty());
            let key = key.ok_or_else(|| anyhow!("the profile reads its API key from ${name}, which is not set"))?;
            Some(key.trim().to_string())
        } else {
            None
        };
        Ok(resolved)
    }
}

impl Resolved {
    /// An HTTP client trusting the system's roots and the named CA.
    pub fn http(&self) -> anyhow::Result<reqwest::Client> {
        obol_client::http_client(self.ca_pem.as_deref()).map_err(|e| anyhow!("{e}"))
    }
}

/// `obol config ...`
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// List the profiles (the current one is marked *).
    List,
    /// Show a profile (the current one if none is named). Keys are never shown, only where they
    /// are read from.
    Show {
        /// Profile name.
        name: Option<String>,
    },
    /// Make a profile the current one.
    Use {
        /// Profile name.
        name: String,
    },
    /// Set one field of a profile (creating it): server, api_key_file, api_key_env, ca_cert,
    /// output (human or json). An empty value removes the field.
    ///
    /// Example: obol config set server https://pay.example.com --profile prod
    Set {
        /// Field name.
        field: String,
        /// Its value.
        value: String,
        /// Profile to change [default: the current one, else "default"].
        #[arg(long)]
        profile: Option<String>,
    },
    /// Remove a profile (its key file, if `obol login` wrote it, too).
    Remove {
        /// Profile name.
        name: String,
    },
    /// Print the config file's path.
    Path,
}

/// `obol config ...`
pub fn config(command: ConfigCommand) -> anyhow::Result<()> {
    let path = config_path()?;
    let mut config = Config::load(&path)?;
    match command {
        ConfigCommand::Path => crate::outln!("{}", path.display()),
        ConfigCommand::List => {
            if config.profiles.is_empty() {
                crate::outln!("no profiles in {} (create one with `obol login`)", path.display());
            }
            for (name, profile) in &config.profiles {
                let mark = if config.current.as_deref() == Some(name) { "*" } else { " " };
                crate::outln!("{mark} {name:<16} {}", profile.server.as_deref().unwrap_or(DEFAULT_SERVER));
            }
        }
        ConfigCommand::Show { name } => {
            let name = name.or(config.current.clone()).ok_or_else(|| anyhow!("no current profile; name one"))?;
            let profile = config.profiles.get(&name).ok_or_else(|| anyhow!("no profile {name:?}"))?;
            crate::outln!(
                "profile   {name}{}",
                if config.current.as_deref() == Some(&name) { " (current)" } else { "" }
            );
            crate::outln!("server    {}", profile.server.as_deref().unwrap_or(DEFAULT_SERVER));
            let key = match (&profile.api_key_file, &profile.api_key_env) {
                (Some(file), _) => format!("read from {}", file.display()),
                (None, Some(env)) => format!("read from ${env}"),
                (None, None) => "none (pass --api-key-file or set OBOL_API_KEY)".to_string(),
            };
            crate::outln!("api key   {key}");
            if let Some(ca) = &profile.ca_cert {
                crate::outln!("ca cert   {}", ca.display());
            }
            if let Some(output) = profile.output {
                crate::outln!("output    {}", if output == Output::Json { "json" } else { "human" });
            }
        }
        ConfigCommand::Use { name } => {
            if !config.profiles.contains_key(&name) {
                bail!("no profile {name:?} in {} (see `obol config list`)", path.display());
            }
            config.current = Some(name.clone());
            config.save(&path)?;
            crate::outln!("now using profile {name}");
        }
        ConfigCommand::Set { field, value, profile } => {
            let name = profile.or(config.current.clone()).unwrap_or_else(|| "default".to_string());
            let entry = config.profiles.entry(name.clone()).or_default();
            let value = Some(value.trim().to_string()).filter(|v| !v.is_empty());
            match field.as_str() {
                "server" => {
                    if let Some(server) = &value
                        && !(server.starts_with("http://") || server.starts_with("https://"))
                    {
                        bail!("server must start with http:// or https://");
                    }
                    entry.server = value;
                }
                "api_key_file" => entry.api_key_file = value.map(PathBuf::from),
                "api_key_env" => entry.api_key_env = value,
                "ca_cert" => entry.ca_cert = value.map(PathBuf::from),
                "output" => {
                    entry.output = match value.as_deref() {
                        None => None,
                        Some("human") => Some(Output::Human),
                        Some("json") => Some(Output::Json),
                        Some(other) => bail!("output is human or json, not {other:?}"),
                    }
                }
                "api_key" => {
                    bail!("the config file never holds a key: use `obol login`, or set api_key_file or api_key_env")
                }
                other => bail!("no field {other:?}: server, api_key_file, api_key_env, ca_cert or output"),
            }
            if config.current.is_none() {
                config.current = Some(name.clone());
            }
            config.save(&path)?;
            crate::outln!("profile {name} updated");
        }
        ConfigCommand::Remove { name } => {
            let profile = config.profiles.remove(&name).ok_or_else(|| anyhow!("no profile {name:?}"))?;
            if let Some(file) = &profile.api_key_file
                && file.starts_with(keys_dir(&path))
            {
                let _ = std::fs::remove_file(file);
            }
            if config.current.as_deref() == Some(&name) {
                config.current = None;
            }
            config.save(&path)?;
            crate::outln!("profile {name} removed");
        }
    }
    Ok(())
}

fn keys_dir(config_path: &Path) -> PathBuf {
    config_path.parent().unwrap_or(Path::new(".")).join("keys")
}

/// `obol login`: checks a key against a server and keeps both as a profile.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Base URL of the server.
    #[arg(long, visible_alias = "url", env = "OBOL_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    /// Profile to write [default: "default"].
    #[arg(long, env = "OBOL_PROFILE", default_value = "default")]
    profile: String,
    /// File holding the API key; the profile then reads it from there. Without it the key is
    /// read from OBOL_API_KEY, else asked for (not echoed) or read from standard input, and kept
    /// in a file of its own (mode 0600) beside the config.
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// PEM file of a CA to trust beside the system's roots.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
}

fn read_key_interactively() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let key = rpassword::prompt_password("API key (not shown): ").context("reading the key")?;
        return Ok(key.trim().to_string());
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).context("reading the key from standard input")?;
    Ok(line.trim().to_string())
}

/// `obol login`
pub fn login(args: LoginArgs) -> anyhow::Result<()> {
    let path = config_path()?;
    let mut config = Config::load(&path)?;
    let key = match &args.api_key_file {
        Some(file) => read_key_file(file)?,
        None => match std::env::var("OBOL_API_KEY").ok().filter(|k| !k.trim().is_empty()) {
            Some(key) => key.trim().to_string(),
            None => read_key_interactively()?,
        },
    };
    if key.is_empty() {
        bail!("no API key given");
    }
    // Checked with the profile's own choices only: a current profile's CA must not leak in.
    let resolved = Resolved {
        server: args.server.trim().trim_end_matches('/').to_string(),
        api_key: Some(key.clone()),
        ca_pem: match &args.ca_cert {
            Some(path) => Some(std::fs::read(path).with_context(|| format!("reading the CA from {}", path.display()))?),
            None => None,
        },
        output: Output::Human,
    };
    let me = crate::client::runtime()?.block_on(async {
        let api = crate::client::Api::from_resolved(&resolved)?;
        api.expect(reqwest::Method::GET, "/v1/me", None).await
    })?;
    let api_key_file = match args.api_key_file {
        Some(file) => std::fs::canonicalize(&file).unwrap_or(file),
        None => {
            let dir = keys_dir(&path);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let file = dir.join(format!("{}.key", args.profile));
            write_private(&file, &key)?;
            file
        }
    };
    let ca_cert = args.ca_cert.map(|ca| std::fs::canonicalize(&ca).unwrap_or(ca));
    let previous_output = config.profiles.get(&args.profile).and_then(|p| p.output);
    config.profiles.insert(
        args.profile.clone(),
        Profile {
            server: Some(resolved.server.clone()),
            api_key_file: Some(api_key_file),
            api_key_env: None,
            ca_cert,
            output: previous_output,
        },
    );
    config.current = Some(args.profile.clone());
    config.save(&path)?;
    let field =
        |name: &str| me.pointer(&format!("/principal/{name}")).and_then(|v| v.as_str()).unwrap_or("?").to_string();
    crate::outln!(
        "logged in to {} as {} {} ({}); profile {} is now current",
        resolved.server,
        field("role"),
        field("id"),
        field("name"),
        args.profile
    );
    Ok(())
}

/// Writes a secret readable by its owner only.
pub(crate) fn write_private(path: &Path, secret: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(file, "{secret}").with_context(|| format!("writing {}", path.display()))
}

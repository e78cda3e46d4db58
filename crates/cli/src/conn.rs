//! Finding the head, the token and the cluster CA: flags, environment, the CLI config file,
//! then the local head's data directory (so the quick start needs no manual step).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use wulf_api::tls::ClientConfig;

pub const DEFAULT_URL: &str = "https://127.0.0.1:8740";

/// What `--insecure` prints on every run.
pub const INSECURE_WARNING: &str = "wulf: WARNING: --insecure: the head's certificate is not \
     checked; anyone on the path can read and change this session, token included";

/// Where `wulf trust` keeps the cluster CA: `~/.config/wulf/ca.pem`.
pub fn trusted_ca_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".config/wulf/ca.pem"))
}

/// `~/.config/wulf/wulf.toml` or `/etc/wulf/wulf.toml` (or `$WULF_CONFIG`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliConfig {
    pub url: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    /// The cluster CA certificate (PEM) to check heads against.
    pub ca: Option<PathBuf>,
}

fn config_paths() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("WULF_CONFIG") {
        return vec![PathBuf::from(p)];
    }
    let mut v = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        v.push(Path::new(&home).join(".config/wulf/wulf.toml"));
    }
    v.push(PathBuf::from("/etc/wulf/wulf.toml"));
    v
}

pub fn load_config() -> anyhow::Result<CliConfig> {
    let explicit = std::env::var_os("WULF_CONFIG").is_some();
    for p in config_paths() {
        match std::fs::read_to_string(&p) {
            Ok(text) => {
                return toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("config file {}: {e}", p.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => continue,
            Err(e) => anyhow::bail!("cannot read config file {}: {e}", p.display()),
        }
    }
    Ok(CliConfig::default())
}

/// Data directories of a head on this machine, most specific first.
fn data_dirs(cfg: &CliConfig) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(d) = std::env::var_os("WULF_DATA_DIR") {
        v.push(PathBuf::from(d));
    }
    if let Some(d) = &cfg.data_dir {
        v.push(d.clone());
    }
    v.push(PathBuf::from("wulf-data"));
    v.push(PathBuf::from("/var/lib/wulf"));
    v
}

fn read_trimmed(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The head URL and token to use (a token given, else the local head's bootstrap token).
pub fn resolve(
    url: Option<String>,
    token: Option<String>,
    cfg: &CliConfig,
) -> anyhow::Result<(String, Option<String>)> {
    let (url, token) = resolve_given(url, token, cfg)?;
    Ok((url, token.or_else(|| bootstrap_token(cfg))))
}

/// The bootstrap admin token of a head on this machine (`DATA_DIR/admin.token`).
pub fn bootstrap_token(cfg: &CliConfig) -> Option<String> {
    data_dirs(cfg)
        .iter()
        .find_map(|d| read_trimmed(&d.join("admin.token")))
}

/// The head URL, and the token given by flag, environment or config file, if any.
pub fn resolve_given(
    url: Option<String>,
    token: Option<String>,
    cfg: &CliConfig,
) -> anyhow::Result<(String, Option<String>)> {
    let dirs = data_dirs(cfg);
    let url = url
        .or_else(|| cfg.url.clone())
        .or_else(|| dirs.iter().find_map(|d| read_trimmed(&d.join("wulfd.url"))))
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    let token = match token.or_else(|| cfg.token.clone()) {
        Some(t) => Some(t),
        None => match &cfg.token_file {
            Some(f) => Some(
                read_trimmed(f)
                    .ok_or_else(|| anyhow::anyhow!("cannot read token_file {}", f.display()))?,
            ),
            None => None,
        },
    };
    Ok((url, token))
}

/// The cluster CA file to check heads against: `--ca`/`WULF_CA`, the config file's `ca`,
/// `~/.config/wulf/ca.pem` (written by `wulf trust`), then the local head's `tls/ca.pem`.
pub fn find_ca(flag: Option<&Path>, cfg: &CliConfig) -> Option<PathBuf> {
    if let Some(f) = flag.or(cfg.ca.as_deref()) {
        return Some(f.to_path_buf());
    }
    trusted_ca_path().filter(|p| p.exists()).or_else(|| {
        data_dirs(cfg)
            .into_iter()
            .map(|d| d.join("tls/ca.pem"))
            .find(|p| p.exists())
    })
}

/// How the CLI checks the head's certificate.
#[derive(Clone)]
pub struct Tls {
    pub config: Arc<ClientConfig>,
    /// The CA file used; None with --insecure.
    pub ca: Option<PathBuf>,
}

/// The TLS for `url` (None for an http:// URL): the CA [`find_ca`] finds, or with
/// `insecure` no check (and the warning on stderr).
pub fn tls_for(
    url: &str,
    flag: Option<&Path>,
    insecure: bool,
    cfg: &CliConfig,
) -> anyhow::Result<Option<Tls>> {
    if !url.starts_with("https://") {
        return Ok(None);
    }
    if insecure {
        return Ok(Some(Tls {
            config: wulf_api::tls::insecure(),
            ca: None,
        }));
    }
    let Some(ca) = find_ca(flag, cfg) else {
        anyhow::bail!(
            "no cluster CA to check {url} against: run `wulf trust {url}` (it fetches the CA \
             and shows its fingerprint to compare with DATA_DIR/tls/ca.pem on the head), or \
             give --ca FILE / WULF_CA"
        );
    };
    let pem = std::fs::read(&ca)
        .map_err(|e| anyhow::anyhow!("cannot read the CA file {}: {e}", ca.display()))?;
    let config = wulf_api::tls::trust_ca(&pem)
        .map_err(|e| anyhow::anyhow!("CA file {}: {e}", ca.display()))?;
    Ok(Some(Tls {
        config,
        ca: Some(ca),
    }))
}

/// The CA file in force for this process, for error messages.
static CA_USED: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// The CA file the last client was built with (None: none, or --insecure).
pub fn ca_used() -> Option<PathBuf> {
    CA_USED.get().cloned().flatten()
}

/// A client on `base` with these TLS settings and HTTP `agent` settings.
pub fn client_with(
    base: &str,
    token: Option<String>,
    tls: Option<&Tls>,
    agent: ureq::AgentBuilder,
) -> wulf_api::Client {
    let _ = CA_USED.set(tls.and_then(|t| t.ca.clone()));
    let agent = match tls {
        Some(t) => agent.tls_config(t.config.clone()),
        None => agent,
    };
    wulf_api::Client::with_agent(base, token, agent.build())
}

/// A client for the head the command line names (flags, environment, config, local head).
pub(crate) fn client(cli: &crate::args::Cli) -> Result<wulf_api::Client, crate::fail::Fail> {
    let (url, token, tls) = connection(cli)?;
    Ok(client_with(
        &url,
        token,
        tls.as_ref(),
        wulf_api::Client::builder(),
    ))
}

/// A client whose requests may take as long as the head needs: power and exec answer once
/// every node is done, which the head bounds by the request's own timeout per node.
pub(crate) fn action_client(cli: &crate::args::Cli) -> Result<wulf_api::Client, crate::fail::Fail> {
    let (url, token, tls) = connection(cli)?;
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(5))
        .timeout_write(std::time::Duration::from_secs(600));
    Ok(client_with(&url, token, tls.as_ref(), agent))
}

/// The head URL, the token and the TLS settings the command line names.
pub(crate) fn connection(
    cli: &crate::args::Cli,
) -> Result<(String, Option<String>, Option<Tls>), crate::fail::Fail> {
    use crate::fail::usage;
    let cfg = load_config().map_err(|e| usage(format!("{e:#}")))?;
    let (url, token) = resolve_given(cli.url.clone(), cli.token.clone(), &cfg)
        .map_err(|e| usage(format!("{e:#}")))?;
    let tls =
        tls_for(&url, cli.ca.as_deref(), cli.insecure, &cfg).map_err(crate::fail::Fail::from)?;
    let token = match token {
        Some(t) => Some(t),
        // A `wulf login` session for this head (renewed when due), else the local head's
        // bootstrap token.
        None => crate::login::session_token(&url, tls.as_ref())?.or_else(|| bootstrap_token(&cfg)),
    };
    Ok((url, token, tls))
}

/// The head URL and TLS settings the command line names, without a token (`wulf login`).
pub(crate) fn endpoint(cli: &crate::args::Cli) -> Result<(String, Option<Tls>), crate::fail::Fail> {
    use crate::fail::usage;
    let cfg = load_config().map_err(|e| usage(format!("{e:#}")))?;
    let (url, _) = resolve_given(cli.url.clone(), cli.token.clone(), &cfg)
        .map_err(|e| usage(format!("{e:#}")))?;
    let tls =
        tls_for(&url, cli.ca.as_deref(), cli.insecure, &cfg).map_err(crate::fail::Fail::from)?;
    Ok((url, tls))
}

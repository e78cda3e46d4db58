//! Finding the head and the token: flags, environment, the CLI config file, then the local
//! head's data directory (so the quick start needs no manual step).

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_URL: &str = "http://127.0.0.1:8740";

/// `~/.config/wulf/wulf.toml` or `/etc/wulf/wulf.toml` (or `$WULF_CONFIG`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliConfig {
    pub url: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
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

/// The head URL and token to use.
pub fn resolve(
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
            None => dirs
                .iter()
                .find_map(|d| read_trimmed(&d.join("admin.token"))),
        },
    };
    Ok((url, token))
}

/// A client for the head the command line names (flags, environment, config, local head).
pub(crate) fn client(cli: &crate::args::Cli) -> Result<wulf_api::Client, crate::fail::Fail> {
    let (url, token) = url_and_token(cli)?;
    Ok(wulf_api::Client::new(&url, token))
}

/// A client whose requests may take as long as the head needs: power and exec answer once
/// every node is done, which the head bounds by the request's own timeout per node.
pub(crate) fn action_client(cli: &crate::args::Cli) -> Result<wulf_api::Client, crate::fail::Fail> {
    let (url, token) = url_and_token(cli)?;
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(5))
        .timeout_write(std::time::Duration::from_secs(600))
        .build();
    Ok(wulf_api::Client::with_agent(&url, token, agent))
}

fn url_and_token(cli: &crate::args::Cli) -> Result<(String, Option<String>), crate::fail::Fail> {
    use crate::fail::usage;
    let cfg = load_config().map_err(|e| usage(format!("{e:#}")))?;
    resolve(cli.url.clone(), cli.token.clone(), &cfg).map_err(|e| usage(format!("{e:#}")))
}

//! wulfd's configuration: built-in defaults, then the TOML config file, then flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The API's default port.
pub const DEFAULT_PORT: u16 = 8740;
/// The config file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG: &str = "/etc/wulf/wulfd.toml";

/// The config file. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where the database, files and the admin token live.
    pub data_dir: Option<PathBuf>,
    /// Address and port of the REST API.
    pub listen: Option<SocketAddr>,
    /// Log filter (error, warn, info, debug, or a tracing filter).
    pub log: Option<String>,
    /// Name given to a new cluster.
    pub cluster_name: Option<String>,
    /// Largest JSON request body, in MiB.
    pub max_body_mib: Option<usize>,
    /// Revisions of history kept for watches before compaction.
    pub history_revisions: Option<i64>,
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
    }
}

/// The settled configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub log: String,
    pub cluster_name: String,
    pub max_body_bytes: usize,
    pub history_revisions: i64,
}

/// `/var/lib/wulf` as root, else `./wulf-data`.
pub fn default_data_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/var/lib/wulf")
    } else {
        PathBuf::from("wulf-data")
    }
}

impl Config {
    pub fn settle(
        file: FileConfig,
        data_dir: Option<PathBuf>,
        listen: Option<SocketAddr>,
        log: Option<String>,
    ) -> Config {
        Config {
            data_dir: data_dir.or(file.data_dir).unwrap_or_else(default_data_dir),
            listen: listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], DEFAULT_PORT))),
            log: log.or(file.log).unwrap_or_else(|| "info".to_string()),
            cluster_name: file.cluster_name.unwrap_or_else(|| "cluster".to_string()),
            max_body_bytes: file.max_body_mib.unwrap_or(256).saturating_mul(1 << 20),
            history_revisions: file.history_revisions.unwrap_or(10_000).max(100),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file() {
        let file: FileConfig =
            toml::from_str("data_dir = \"/x\"\nlisten = \"127.0.0.1:1\"").unwrap();
        let c = Config::settle(file, None, Some("127.0.0.1:2".parse().unwrap()), None);
        assert_eq!(c.data_dir, PathBuf::from("/x"));
        assert_eq!(c.listen.port(), 2);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = toml::from_str::<FileConfig>("data_dri = \"/x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("data_dri"), "{e}");
    }
}

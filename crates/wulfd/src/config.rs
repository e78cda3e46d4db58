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
    /// This head's name among the cluster's heads (default: the host name).
    pub head_name: Option<String>,
    /// Where the cluster database lives: "embedded" (default: in the data directory) or
    /// "etcd://host:port,host:port" (shared by several heads).
    pub store: Option<String>,
    #[serde(default)]
    pub etcd: EtcdSection,
    /// Largest JSON request body, in MiB.
    pub max_body_mib: Option<usize>,
    /// Revisions of history kept for watches before compaction.
    pub history_revisions: Option<i64>,
    /// Seconds of history kept for watches before compaction (whichever of the two limits
    /// keeps less wins).
    pub history_secs: Option<u64>,
    #[serde(default)]
    pub boot: BootSection,
    #[serde(default)]
    pub dhcp: DhcpSection,
    #[serde(default)]
    pub tftp: TftpSection,
    #[serde(default)]
    pub dns: DnsSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub status: StatusSection,
    #[serde(default)]
    pub db: DbSection,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub logs: LogsSection,
    /// `[metrics]`: who may scrape `/metrics` (docs/admin/monitoring.md).
    #[serde(default)]
    pub metrics: crate::metrics::MetricsSection,
}

/// `[logs]`: the head's log files (see docs/admin/logs.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsSection {
    /// Where access.log, error.log and the head_NAME.log files go [default: /var/log/wulf
    /// when the data directory is /var/lib/wulf, else DATA_DIR/log].
    pub dir: Option<PathBuf>,
    /// The head log's (error.log) level: audit, error, warning, info or debug.
    pub level: crate::log::Level,
    /// Lines at this level or terser go into the shared database (every head's
    /// head_NAME.log, `wulf log`).
    pub shared_level: crate::log::Level,
    /// Shared lines older than this many days are removed.
    pub keep_days: u64,
    /// At most this many shared lines are kept (the oldest go first).
    pub keep_lines: usize,
    /// At most this many lines a second go into the shared database from this head (over a
    /// minute); beyond it a line says how many were left out.
    pub shared_per_sec: u32,
    /// Write access.log (one line per HTTP request).
    pub access: bool,
    /// Also log nodes' status reports and command polls in access.log (many lines).
    pub access_nodes: bool,
}

impl Default for LogsSection {
    fn default() -> Self {
        LogsSection {
            dir: None,
            level: crate::log::Level::Warning,
            shared_level: crate::log::Level::Warning,
            keep_days: 30,
            keep_lines: 50_000,
            shared_per_sec: 100,
            access: true,
            access_nodes: false,
        }
    }
}

/// `[etcd]`: TLS and credentials for an etcd store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdSection {
    /// CA certificate (PEM) for `etcd+https://` endpoints.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), for etcd's client-certificate authentication.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// etcd user and password, when the etcd cluster has authentication on.
    pub user: Option<String>,
    pub password: Option<String>,
}

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Embedded,
    /// etcd endpoints, `http://` or `https://`.
    Etcd(Vec<String>),
}

impl std::str::FromStr for StoreUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<StoreUrl, String> {
        let s = s.trim();
        if s.is_empty() || s == "embedded" {
            return Ok(StoreUrl::Embedded);
        }
        let (scheme, rest) = if let Some(r) = s.strip_prefix("etcd://") {
            ("http", r)
        } else if let Some(r) = s.strip_prefix("etcd+https://") {
            ("https", r)
        } else {
            return Err(format!(
                "store '{s}': expected 'embedded', 'etcd://host:port[,host:port…]' or 'etcd+https://…'"
            ));
        };
        let eps: Vec<String> = rest
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| format!("{scheme}://{e}"))
            .collect();
        if eps.is_empty() {
            return Err(format!("store '{s}' names no etcd endpoint"));
        }
        for e in &eps {
            let hostport = e.split_once("://").map(|x| x.1).unwrap_or(e);
            match hostport.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok() => {}
                _ => return Err(format!("etcd endpoint '{hostport}' is not host:port")),
            }
        }
        Ok(StoreUrl::Etcd(eps))
    }
}

impl StoreUrl {
    /// The form `--store` takes back: "etcd://h:p,h:p" or "etcd+https://…"; None if embedded.
    pub fn shareable(&self) -> Option<String> {
        let StoreUrl::Etcd(eps) = self else {
            return None;
        };
        let tls = eps.iter().any(|e| e.starts_with("https://"));
        let hosts: Vec<&str> = eps
            .iter()
            .map(|e| e.split_once("://").map_or(e.as_str(), |x| x.1))
            .collect();
        Some(format!(
            "{}://{}",
            if tls { "etcd+https" } else { "etcd" },
            hosts.join(",")
        ))
    }
}

/// `[status]`: how node status is written to the store.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusSection {
    /// Milliseconds between status writes (each one transaction).
    pub flush_ms: u64,
    /// A node's routine heartbeat (a later receive time, new load figures) is written at most
    /// this often; boots, first reports, shutdowns and busy or interval changes are written at
    /// the next flush, and everything when the head stops.
    pub persist_secs: u64,
}

impl Default for StatusSection {
    fn default() -> Self {
        StatusSection {
            flush_ms: 1000,
            persist_secs: 60,
        }
    }
}

/// `[db]`: the database maintenance one head runs for all (compaction, defragmentation,
/// space alarms).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DbSection {
    /// Seconds between maintenance rounds.
    pub check_secs: u64,
    /// etcd's space quota (its `--quota-backend-bytes`, 2 GiB unless set there), in MiB:
    /// for the fill figures and the near-quota defragmentation rule.
    pub quota_mib: u64,
    /// Defragment an etcd member when at least this many MiB and half its file are free...
    pub defrag_min_free_mib: u64,
    /// ...or when its file has reached this fraction of the quota and a tenth of it is free.
    /// The same fraction logs a warning.
    pub quota_fill: f64,
}

impl Default for DbSection {
    fn default() -> Self {
        DbSection {
            check_secs: 60,
            quota_mib: wulf_model::db::ETCD_DEFAULT_QUOTA >> 20,
            defrag_min_free_mib: 64,
            quota_fill: 0.8,
        }
    }
}

/// `[auth]`: lifetimes of the tokens `wulf login` gets.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// Seconds an access token is good for (default 1 h).
    pub access_secs: u64,
    /// Seconds a login's refresh token is good for (default 7 days).
    pub refresh_secs: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            access_secs: 3600,
            refresh_secs: 7 * 24 * 3600,
        }
    }
}

/// `[tls]`: the head certificate (see docs/admin/tls.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// Extra DNS names and IP addresses for this head's certificate, besides its host name,
    /// localhost, 127.0.0.1, ::1 and the addresses of its interfaces (like the name clients
    /// outside the cluster use: "head1.example.org").
    pub names: Vec<String>,
}

/// `[boot]`: how nodes reach this head over HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootSection {
    /// Base URL nodes use for boot scripts and files, like "http://10.54.0.1:8740". Default:
    /// the head's address on the interface the request came in on, and the API port.
    pub url: Option<String>,
    /// Seconds a node may take from its boot script to its first status report (default for
    /// the `_boot_timeout` attribute).
    pub timeout_secs: u64,
    /// Nodes with `_image_peers` that get an image from this head itself at once; the rest
    /// get it from those nodes (and from each other).
    pub peers_from_head: usize,
    /// Nodes one node with `_image_peers` serves its image to at once.
    pub peers_per_node: usize,
}

impl Default for BootSection {
    fn default() -> Self {
        BootSection {
            url: None,
            timeout_secs: 600,
            peers_from_head: crate::swarm::DIRECT,
            peers_per_node: crate::swarm::FANOUT,
        }
    }
}

/// `[dhcp]`: the DHCPv4 server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DhcpSection {
    pub enabled: bool,
    /// UDP port to serve (67; tests may move it).
    pub port: u16,
    /// Lease time handed to nodes and hosts, in seconds.
    pub lease_secs: u32,
    /// Serve only these interfaces (default: every interface whose address lies in a `net`).
    pub interfaces: Vec<String>,
}

impl Default for DhcpSection {
    fn default() -> Self {
        DhcpSection {
            enabled: true,
            port: 67,
            lease_secs: 86400,
            interfaces: Vec::new(),
        }
    }
}

/// `[tftp]`: the read-only TFTP server for iPXE binaries.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TftpSection {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Directory served (Debian's `ipxe` package puts undionly.kpxe and ipxe.efi here).
    pub root: PathBuf,
    /// Files (or directories) outside the root that symlinks inside it may lead to. Default:
    /// /boot/ipxe.efi and /boot/ipxe.lkrn, where Debian's /usr/lib/ipxe/ipxe.efi and
    /// ipxe.lkrn point.
    pub allow_outside: Vec<PathBuf>,
}

impl Default for TftpSection {
    fn default() -> Self {
        TftpSection {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], 69)),
            root: PathBuf::from("/usr/lib/ipxe"),
            allow_outside: vec![
                PathBuf::from("/boot/ipxe.efi"),
                PathBuf::from("/boot/ipxe.lkrn"),
            ],
        }
    }
}

/// `[dns]`: authoritative for the cluster domain, forwarding the rest.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsSection {
    pub enabled: bool,
    /// Addresses to answer on (default: port 53 on every head address inside a `net`).
    pub listen: Vec<SocketAddr>,
    /// Servers other names are forwarded to (default: the nameservers in /etc/resolv.conf).
    pub upstream: Vec<SocketAddr>,
}

impl Default for DnsSection {
    fn default() -> Self {
        DnsSection {
            enabled: true,
            listen: Vec::new(),
            upstream: Vec::new(),
        }
    }
}

/// `[limits]`: what one client may hold on the API port (see docs/security.md, "Limits").
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Seconds from connecting (or from the first byte of a kept-alive connection's next
    /// request) to the end of the request head; the TLS handshake counts too.
    pub head_timeout_secs: u64,
    /// Seconds a kept-alive connection may wait for its next request, and a request body or
    /// a response may go without moving.
    pub idle_timeout_secs: u64,
    /// Most HTTP connections open at once; 0 (default): as many as the open-file limit
    /// allows, less a quarter of it (at least 64, at most 8192) kept for everything else.
    /// Never more than that.
    pub max_connections: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            head_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 0,
        }
    }
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
    pub head_name: Option<String>,
    pub store: StoreUrl,
    /// For an etcd store (`store = "etcd://…"`).
    pub etcd: EtcdSection,
    pub max_body_bytes: usize,
    pub limits: LimitsSection,
    pub history_revisions: i64,
    pub history_secs: u64,
    pub boot: BootSection,
    pub dhcp: DhcpSection,
    pub tftp: TftpSection,
    pub dns: DnsSection,
    pub tls: TlsSection,
    pub status: StatusSection,
    pub db: DbSection,
    pub auth: AuthSection,
    pub logs: LogsSection,
    pub metrics: crate::metrics::MetricsSection,
    /// The config file this came from, if any (read again on SIGHUP).
    pub config_file: Option<PathBuf>,
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
            head_name: file.head_name,
            store: StoreUrl::Embedded,
            etcd: file.etcd,
            max_body_bytes: file.max_body_mib.unwrap_or(256).saturating_mul(1 << 20),
            limits: LimitsSection {
                head_timeout_secs: file.limits.head_timeout_secs.clamp(1, 3600),
                idle_timeout_secs: file.limits.idle_timeout_secs.clamp(1, 24 * 3600),
                max_connections: file.limits.max_connections,
            },
            history_revisions: file.history_revisions.unwrap_or(10_000).max(100),
            history_secs: file.history_secs.unwrap_or(600).max(60),
            boot: BootSection {
                peers_from_head: file.boot.peers_from_head.clamp(1, 10_000),
                peers_per_node: file.boot.peers_per_node.clamp(1, 64),
                ..file.boot
            },
            dhcp: file.dhcp,
            tftp: file.tftp,
            dns: file.dns,
            tls: file.tls,
            status: StatusSection {
                flush_ms: file.status.flush_ms.clamp(50, 60_000),
                persist_secs: file.status.persist_secs.clamp(1, 3600),
            },
            db: DbSection {
                check_secs: file.db.check_secs.clamp(1, 3600),
                quota_mib: file.db.quota_mib.max(1),
                quota_fill: if (0.1..=1.0).contains(&file.db.quota_fill) {
                    file.db.quota_fill
                } else {
                    DbSection::default().quota_fill
                },
                ..file.db
            },
            auth: AuthSection {
                access_secs: file.auth.access_secs.clamp(5, 7 * 24 * 3600),
                refresh_secs: file.auth.refresh_secs.clamp(60, 365 * 24 * 3600),
            },
            logs: LogsSection {
                keep_days: file.logs.keep_days.max(1),
                keep_lines: file.logs.keep_lines.clamp(100, 10_000_000),
                shared_per_sec: file.logs.shared_per_sec.max(1),
                ..file.logs
            },
            metrics: file.metrics,
            config_file: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_urls() {
        assert_eq!("embedded".parse::<StoreUrl>(), Ok(StoreUrl::Embedded));
        assert_eq!(
            "etcd://10.0.0.1:2379, 10.0.0.2:2379".parse::<StoreUrl>(),
            Ok(StoreUrl::Etcd(vec![
                "http://10.0.0.1:2379".into(),
                "http://10.0.0.2:2379".into()
            ]))
        );
        assert_eq!(
            "etcd+https://e1:2379".parse::<StoreUrl>(),
            Ok(StoreUrl::Etcd(vec!["https://e1:2379".into()]))
        );
        for text in ["etcd://10.0.0.1:2379,10.0.0.2:2379", "etcd+https://e1:2379"] {
            let url: StoreUrl = text.parse().unwrap();
            assert_eq!(url.shareable().as_deref(), Some(text));
        }
        assert_eq!(StoreUrl::Embedded.shareable(), None);
        for bad in ["etcd://", "etcd://host", "redis://x:1", "etcd://h:99999"] {
            assert!(bad.parse::<StoreUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn status_section() {
        let file: FileConfig =
            toml::from_str("history_secs = 5\n[status]\npersist_secs = 0\nflush_ms = 250").unwrap();
        let c = Config::settle(file, None, None, None);
        assert_eq!(c.status.flush_ms, 250);
        assert_eq!(c.status.persist_secs, 1, "clamped");
        assert_eq!(c.history_secs, 60, "clamped");
        let c = Config::settle(FileConfig::default(), None, None, None);
        assert_eq!(
            (c.status.flush_ms, c.status.persist_secs, c.history_secs),
            (1000, 60, 600)
        );
        assert!(toml::from_str::<FileConfig>("[status]\nflush = 1").is_err());
    }

    #[test]
    fn flags_override_file() {
        let file: FileConfig =
            toml::from_str("data_dir = \"/x\"\nlisten = \"127.0.0.1:1\"").unwrap();
        let c = Config::settle(file, None, Some("127.0.0.1:2".parse().unwrap()), None);
        assert_eq!(c.data_dir, PathBuf::from("/x"));
        assert_eq!(c.listen.port(), 2);
    }

    #[test]
    fn sections() {
        let file: FileConfig =
            toml::from_str("[dhcp]\nport = 6767\n[tftp]\nroot = \"/srv/tftp\"\n").unwrap();
        let c = Config::settle(file, None, None, None);
        assert_eq!(c.dhcp.port, 6767);
        assert!(c.dhcp.enabled);
        assert_eq!(c.tftp.root, PathBuf::from("/srv/tftp"));
        assert_eq!(c.tftp.listen.port(), 69);
        let e = toml::from_str::<FileConfig>("[dhcp]\nprot = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("prot"), "{e}");
    }

    #[test]
    fn limits_section() {
        let c = Config::settle(FileConfig::default(), None, None, None);
        assert_eq!(
            (
                c.limits.head_timeout_secs,
                c.limits.idle_timeout_secs,
                c.limits.max_connections
            ),
            (10, 60, 0)
        );
        let file: FileConfig = toml::from_str(
            "[limits]\nhead_timeout_secs = 0\nidle_timeout_secs = 5\nmax_connections = 100\n",
        )
        .unwrap();
        let c = Config::settle(file, None, None, None);
        assert_eq!(c.limits.head_timeout_secs, 1, "clamped");
        assert_eq!(c.limits.idle_timeout_secs, 5);
        assert_eq!(c.limits.max_connections, 100);
        assert!(toml::from_str::<FileConfig>("[limits]\nidle_secs = 5\n").is_err());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = toml::from_str::<FileConfig>("data_dri = \"/x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("data_dri"), "{e}");
    }
}

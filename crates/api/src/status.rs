//! Node status: what `wulf-agent` (and `wulf sim`) report, what the head answers, and what
//! `GET /api/v1/node/status` returns.
//!
//! A node authenticates its reports with the bearer token `node:<uid>:<credential>`, where the
//! credential is the one it got by enrolling at boot (see [`crate::enroll`]).
//! The head accepts a report only for the node that credential belongs to.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The bearer token a node presents: `node:<uid>:<credential>`.
pub fn node_token(uid: &str, credential: &str) -> String {
    format!("node:{uid}:{credential}")
}

/// Splits a node bearer token into (uid, credential).
pub fn parse_node_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("node:")?;
    let (uid, cred) = rest.split_once(':')?;
    (!uid.is_empty() && !cred.is_empty()).then_some((uid, cred))
}

/// The local address this machine reaches `head` (a base URL like `https://10.0.0.1:8740`)
/// through: the source address the kernel picks for the route to it. Nothing is sent (a UDP
/// socket is connected, not written to); None when the head's name does not resolve or no
/// route leads there.
pub fn local_ip_toward(head: &str) -> Option<std::net::IpAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
    let rest = head.split_once("://").map_or(head, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let default_port = if head.starts_with("http://") { 80 } else { 443 };
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            let port = after
                .strip_prefix(':')
                .map_or(Some(default_port), |p| p.parse().ok())?;
            (host, port)
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, default_port),
        },
    };
    let target = (host, port).to_socket_addrs().ok()?.next()?;
    let any: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(any).ok()?;
    sock.connect(target).ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// What the node says about itself in a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ReportState {
    /// Running normally.
    #[default]
    Up,
    /// The node is shutting down cleanly (the agent got SIGTERM); its last report.
    Shutdown,
    /// The node became an orphan on request (`wulf node orphan`): it stops reporting and
    /// follows its `_orphan_policy`; its last report until it rejoins.
    Orphan,
}

/// `POST /api/v1/node/status` from a node (bearer `node:<uid>:<cred>`).
///
/// The cheap fields are always present. The others are `None` in busy mode (the head keeps
/// the last values it got). `hardware` is sent in the first report after the agent starts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatusReport {
    /// The node's UID; must match the credential's.
    pub node: String,
    #[serde(default)]
    pub state: ReportState,
    /// `/proc/sys/kernel/random/boot_id`: changes at every boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// Seconds since the node's kernel started.
    pub uptime_secs: f64,
    /// Seconds until the next report is due (the node's `_status_secs`).
    pub interval_secs: u32,
    /// True when the agent is in busy mode (only cheap fields gathered).
    #[serde(default)]
    pub busy: bool,
    /// 1, 5 and 15 minute load averages.
    #[serde(default)]
    pub load: [f32; 3],
    /// RAM in bytes: total and available (MemAvailable).
    #[serde(default)]
    pub ram_total: u64,
    #[serde(default)]
    pub ram_free: u64,
    /// The node's address on the interface it reaches the head through (see
    /// [`local_ip_toward`]); `wulf sim` sends the simulated node's `ip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Kernel release (`uname -r`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// `/proc/cmdline`, with `wulf.cred=` and `wulf.enroll=` masked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// Loaded kernel modules, sorted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules: Option<Vec<String>>,
    /// `enforcing`, `permissive` or `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<Hardware>,
    /// What the agent itself costs the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentCost>,
}

/// The agent's own cost, measured by itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentCost {
    pub version: String,
    /// CPU time (user + system) of the last report's gathering and sending, microseconds.
    pub cpu_us: u64,
    /// Wall time of the last report, microseconds.
    pub wall_us: u64,
    /// The worst wall time of any report since the agent started, microseconds.
    pub worst_wall_us: u64,
    /// Total CPU time the agent has used since it started, microseconds.
    pub total_cpu_us: u64,
    /// Reports sent since the agent started.
    pub reports: u64,
}

/// Hardware inventory, sent in the first report after boot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hardware {
    pub cpu_model: String,
    pub cpus: u32,
    pub ram_total: u64,
    #[serde(default)]
    pub system_vendor: String,
    #[serde(default)]
    pub product_name: String,
    #[serde(default)]
    pub board_vendor: String,
    #[serde(default)]
    pub board_name: String,
    #[serde(default)]
    pub bios_vendor: String,
    #[serde(default)]
    pub bios_version: String,
    #[serde(default)]
    pub nics: Vec<Nic>,
    #[serde(default)]
    pub disks: Vec<Disk>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Nic {
    pub name: String,
    pub mac: String,
    /// Link speed in Mb/s when the link is up and the driver says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mbps: Option<u32>,
    #[serde(default)]
    pub mtu: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Disk {
    pub name: String,
    pub bytes: u64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub rotational: bool,
}

/// The head's answer to a report: the node's effective attributes (written by the agent to
/// `/etc/wulf/attributes.ini`) and the heads it may report to.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReportReply {
    pub name: String,
    pub attributes: BTreeMap<String, String>,
    /// Base URLs of the heads (the one answering first).
    #[serde(default)]
    pub heads: Vec<String>,
}

/// `GET /api/v1/node/status?ids=SEL`: one node's status, derived by the answering head from
/// its own clock when it answers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NodeStatus {
    pub uid: String,
    pub name: String,
    pub index: u32,
    /// `new`, `booting`, `up` or `down`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_reason: Option<String>,
    /// Unix time (seconds, head clock) of the last report or boot, like objects'
    /// `last_modified`; `None` for a node never seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<f64>,
    /// Seconds since the state last changed cause (last report, boot, or shutdown), by the
    /// head's clock; `None` for a node never seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified_secs: Option<f64>,
    /// Unix time (ms, head clock) of the last report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_report_ms: Option<i64>,
    /// Unix time (ms, head clock) the node was last served a boot script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booted_ms: Option<i64>,
    /// Uptime at the last report (for a down node: how long it had been up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_uptime: Option<f64>,
    /// The head that received the last report or boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_secs: Option<u32>,
    #[serde(default)]
    pub busy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<[f32; 3]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_free: Option<u64>,
    /// The address the node last reported (its side of the way to the head).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<Hardware>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentCost>,
}

/// `GET /api/v1/node/status/summary?ids=SEL[&since=N]`: nodes per state as hostlists. With
/// `since`, the head answers once its change counter passes N (or after about 10 s).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatusSummary {
    /// The head's status change counter when it answered.
    pub changes: u64,
    pub total: usize,
    /// In the order up, booting, down (by reason), new; empty states left out.
    pub groups: Vec<StateGroup>,
}

/// The nodes in one state (and, for down nodes, one reason).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateGroup {
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_reason: Option<String>,
    pub count: usize,
    /// The nodes as a hostlist (`n[0-15,20]`), pasteable into `--ids`.
    pub nodes: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_toward_a_head() {
        let lo = Some(std::net::IpAddr::from([127, 0, 0, 1]));
        assert_eq!(local_ip_toward("https://127.0.0.1:8740"), lo);
        assert_eq!(local_ip_toward("http://127.0.0.1"), lo);
        assert_eq!(local_ip_toward("127.0.0.1:1/x"), lo);
        assert_eq!(
            local_ip_toward("https://[::1]:8740/"),
            Some(std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST))
        );
        assert_eq!(local_ip_toward("https://127.0.0.1:notaport"), None);
        assert_eq!(local_ip_toward("https://[::1"), None);
    }

    #[test]
    fn node_tokens_round_trip() {
        let t = node_token("abc", "def");
        assert_eq!(parse_node_token(&t), Some(("abc", "def")));
        assert_eq!(parse_node_token("abc"), None);
        assert_eq!(parse_node_token("node::x"), None);
        assert_eq!(parse_node_token("node:x:"), None);
    }
}

//! Which names the cluster publishes: one [`Entry`] per address (a head address, a node's
//! primary address, each of a node's `_ips`, a host's address) with the names that lead to it.
//! The DNS index and `wulf cluster hosts` (/etc/hosts and /etc/ethers) are both made from this,
//! so they always agree.
//!
//! Rules (see docs/admin/dns.md):
//! - An address's names live in the domain of the network (`net`) that contains the address.
//!   A node's or host's primary address outside every net with a domain uses the first domain
//!   (nets in name order); a node's `_ips` address outside them uses the node's own domain.
//! - Heads: this head's host name (first label) for each of its addresses inside a net.
//! - Nodes: `_hostname` (the canonical name, if set) and the node's name; each `_ips` entry
//!   `IFACE=IP` gives `<hostname>-<iface>` (canonical) and `<name>-<iface>`.
//! - Hosts: the host's name (canonical) and each of its `hostnames`.
//! - A name written with the cluster domain at its end (`sw1.cluster.local`) is the same as
//!   the relative name (`sw1`).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use wulf_model::attributes::parse_assignments;
use wulf_model::{valid_hostname, Host, Kind, MacAddr, Network, Node};

use crate::cache::State;
use crate::objects::AnyObj;

/// What owns an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKind {
    Head,
    Node,
    Host,
}

/// One address and the names that lead to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub kind: OwnerKind,
    /// Identifies the owning object ("head", or the object's uid): when two objects claim the
    /// same name, the first claimant keeps it.
    pub owner: String,
    pub ip: Ipv4Addr,
    /// Names relative to `domain`, canonical first, without repeats (case-insensitive).
    pub names: Vec<String>,
    pub domain: Option<String>,
    /// The owner's primary MAC, on the entry of its primary address (for /etc/ethers).
    pub mac: Option<MacAddr>,
}

impl Entry {
    /// `name.domain`, or just `name` without a domain.
    pub fn qualify(&self, name: &str) -> String {
        match &self.domain {
            Some(d) => format!("{name}.{d}"),
            None => name.to_string(),
        }
    }

    /// The canonical fully qualified name (what a PTR query answers).
    pub fn canonical(&self) -> String {
        self.qualify(self.names.first().map(String::as_str).unwrap_or(""))
    }
}

/// A network as the name service sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NetInfo {
    pub name: String,
    pub first_ip: Ipv4Addr,
    pub mask_bits: u8,
    pub domain: Option<String>,
}

impl NetInfo {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        wulf_model::net::same_subnet(ip, self.first_ip, self.mask_bits)
    }
}

/// A node with the effective attributes naming needs.
pub struct NodeIn<'a> {
    pub node: &'a Node,
    /// Effective `_hostname`.
    pub hostname: Option<&'a str>,
    /// Effective `_ips`.
    pub ips: Option<&'a str>,
}

/// Everything the cluster publishes, at one cache revision.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub revision: i64,
    /// Networks in name order.
    pub nets: Vec<NetInfo>,
    /// Heads first, then nodes in index order, then hosts in name order.
    pub entries: Vec<Entry>,
    /// This head's host name (one label).
    pub head: String,
}

/// A domain as configured: no trailing dot; None when empty.
fn clean_domain(d: &str) -> Option<String> {
    let d = d.trim().trim_end_matches('.');
    (!d.is_empty()).then(|| d.to_string())
}

/// `name` relative to `domain`: `sw1.cluster.local` → `sw1` in `cluster.local`.
fn relative(name: &str, domain: Option<&str>) -> String {
    let name = name.trim().trim_end_matches('.');
    if let Some(d) = domain {
        if name.len() > d.len() + 1 {
            let (head, tail) = name.split_at(name.len() - d.len());
            if tail.eq_ignore_ascii_case(d) && head.ends_with('.') {
                return head[..head.len() - 1].to_string();
            }
        }
    }
    name.to_string()
}

/// This head's host name as one DNS label ("head" if the system's is unusable).
pub fn head_label(head: &str) -> String {
    let first = head.trim().split('.').next().unwrap_or("");
    if valid_hostname(first) {
        first.to_string()
    } else {
        "head".to_string()
    }
}

fn push_name(names: &mut Vec<String>, name: String) {
    if valid_hostname(&name) && !names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
        names.push(name);
    }
}

impl Snapshot {
    /// Build from plain objects (the unit tests use this directly).
    pub fn build(
        revision: i64,
        nets: &[&Network],
        nodes: &[NodeIn<'_>],
        hosts: &[&Host],
        head: &str,
        head_addrs: &[Ipv4Addr],
    ) -> Snapshot {
        let mut nets: Vec<NetInfo> = nets
            .iter()
            .map(|n| NetInfo {
                name: n.name.clone(),
                first_ip: n.first_ip,
                mask_bits: n.mask_bits,
                domain: clean_domain(&n.domain),
            })
            .collect();
        nets.sort_by(|a, b| a.name.cmp(&b.name));
        let default_domain = nets.iter().find_map(|n| n.domain.clone());
        let domain_of = |ip: Ipv4Addr, fallback: Option<&String>| -> Option<String> {
            nets.iter()
                .filter(|n| n.contains(ip))
                .find_map(|n| n.domain.clone())
                .or_else(|| fallback.cloned())
        };
        let head = head_label(head);
        let mut entries = Vec::new();
        let mut seen_head = HashSet::new();
        for &ip in head_addrs {
            if !nets.iter().any(|n| n.contains(ip)) || !seen_head.insert(ip) {
                continue;
            }
            entries.push(Entry {
                kind: OwnerKind::Head,
                owner: "head".to_string(),
                ip,
                names: vec![head.clone()],
                domain: domain_of(ip, default_domain.as_ref()),
                mac: None,
            });
        }
        for n in nodes {
            let node = n.node;
            let Some(ip) = node.ip else { continue };
            let domain = domain_of(ip, default_domain.as_ref());
            let d = domain.as_deref();
            let name = relative(&node.name, d);
            let hostname = n
                .hostname
                .map(|h| relative(h, d))
                .filter(|h| valid_hostname(h))
                .unwrap_or_else(|| name.clone());
            let mut names = Vec::new();
            push_name(&mut names, hostname.clone());
            push_name(&mut names, name.clone());
            if names.is_empty() {
                continue;
            }
            entries.push(Entry {
                kind: OwnerKind::Node,
                owner: node.uid.clone(),
                ip,
                names,
                domain: domain.clone(),
                mac: node.mac,
            });
            for (iface, addr) in n.ips.and_then(parse_assignments).unwrap_or_default() {
                let Ok(addr) = addr.parse::<Ipv4Addr>() else {
                    continue;
                };
                let mut names = Vec::new();
                push_name(&mut names, format!("{hostname}-{iface}"));
                push_name(&mut names, format!("{name}-{iface}"));
                if names.is_empty() {
                    continue;
                }
                entries.push(Entry {
                    kind: OwnerKind::Node,
                    owner: node.uid.clone(),
                    ip: addr,
                    names,
                    domain: domain_of(addr, domain.as_ref()),
                    mac: None,
                });
            }
        }
        for h in hosts {
            let domain = domain_of(h.ip, default_domain.as_ref());
            let d = domain.as_deref();
            let mut names = Vec::new();
            push_name(&mut names, relative(&h.name, d));
            for alias in &h.hostnames {
                push_name(&mut names, relative(alias, d));
            }
            if names.is_empty() {
                continue;
            }
            entries.push(Entry {
                kind: OwnerKind::Host,
                owner: h.uid.clone(),
                ip: h.ip,
                names,
                domain,
                mac: h.mac,
            });
        }
        Snapshot {
            revision,
            nets,
            entries,
            head,
        }
    }

    /// Build from the object cache and this head's addresses.
    pub fn from_state(st: &State, head: &str, head_addrs: &[Ipv4Addr]) -> Snapshot {
        let effective = |node: &'_ Node, key: &str| st.attr(node, key).map(str::to_string);
        let nodes: Vec<&Node> = st
            .list(Kind::Node)
            .into_iter()
            .filter_map(|e| e.obj.as_node())
            .collect();
        let attrs: Vec<(Option<String>, Option<String>)> = nodes
            .iter()
            .map(|n| (effective(n, "_hostname"), effective(n, "_ips")))
            .collect();
        let node_ins: Vec<NodeIn<'_>> = nodes
            .iter()
            .zip(&attrs)
            .map(|(n, (h, i))| NodeIn {
                node: n,
                hostname: h.as_deref(),
                ips: i.as_deref(),
            })
            .collect();
        let hosts: Vec<&Host> = st
            .list(Kind::Host)
            .into_iter()
            .filter_map(|e| match e.obj.as_ref() {
                AnyObj::Host(h) => Some(h),
                _ => None,
            })
            .collect();
        Snapshot::build(
            st.revision,
            &st.networks(),
            &node_ins,
            &hosts,
            head,
            head_addrs,
        )
    }

    /// /etc/hosts lines: `IP name.domain name [alias.domain alias]...`.
    pub fn hosts_file(&self) -> String {
        let mut out =
            String::from("# cluster hosts, made by `wulf cluster hosts --format hosts`\n");
        for e in &self.entries {
            let mut names: Vec<String> = Vec::new();
            for n in &e.names {
                let full = e.qualify(n);
                if e.domain.is_some() {
                    names.push(full);
                }
                names.push(n.clone());
            }
            let _ = writeln!(out, "{:<15} {}", e.ip.to_string(), names.join(" "));
        }
        out
    }

    /// /etc/ethers lines: `MAC name` for each node's and host's primary MAC.
    pub fn ethers_file(&self) -> String {
        let mut out =
            String::from("# cluster ethers, made by `wulf cluster hosts --format ethers`\n");
        for e in &self.entries {
            if let (Some(mac), Some(name)) = (e.mac, e.names.first()) {
                let _ = writeln!(out, "{mac} {name}");
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn net(name: &str, first: &str, bits: u8, domain: &str) -> Network {
        serde_json::from_value(json!({"name": name, "first_ip": first, "ip_count": 50,
            "mask_bits": bits, "domain": domain}))
        .unwrap()
    }

    pub fn node(uid: &str, name: &str, ip: &str, mac: Option<&str>) -> Node {
        serde_json::from_value(json!({"uid": uid, "name": name, "ip": ip, "mac": mac})).unwrap()
    }

    pub fn host(uid: &str, name: &str, ip: &str, aliases: &[&str], mac: Option<&str>) -> Host {
        serde_json::from_value(
            json!({"uid": uid, "name": name, "ip": ip, "hostnames": aliases, "mac": mac}),
        )
        .unwrap()
    }

    /// A small cluster: net cluster.local 10.0.0.0/24, head at .1, n0 (with a BMC and a
    /// `_hostname`), n1, a switch with aliases, and an address outside every net.
    pub fn sample() -> Snapshot {
        let nets = [net("cluster", "10.0.0.10", 24, "Cluster.Local")];
        let n0 = node("u0", "n0", "10.0.0.10", Some("52:54:00:00:00:10"));
        let n1 = node("u1", "n1", "10.0.0.11", None);
        let sw = host(
            "h1",
            "sw1",
            "10.0.0.200",
            &["switch1.cluster.local", "core"],
            Some("52:54:00:00:00:c8"),
        );
        let nodes = [
            NodeIn {
                node: &n0,
                hostname: Some("compute-a"),
                ips: Some("bmc=10.0.1.10"),
            },
            NodeIn {
                node: &n1,
                hostname: None,
                ips: None,
            },
        ];
        Snapshot::build(
            7,
            &[&nets[0]],
            &nodes,
            &[&sw],
            "headnode.example.org",
            &["10.0.0.1".parse().unwrap(), "192.168.1.5".parse().unwrap()],
        )
    }

    #[test]
    fn entries() {
        let s = sample();
        let got: Vec<(String, Vec<String>, Option<String>)> = s
            .entries
            .iter()
            .map(|e| (e.ip.to_string(), e.names.clone(), e.domain.clone()))
            .collect();
        let d = Some("Cluster.Local".to_string());
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            got,
            vec![
                ("10.0.0.1".into(), v(&["headnode"]), d.clone()),
                ("10.0.0.10".into(), v(&["compute-a", "n0"]), d.clone()),
                (
                    "10.0.1.10".into(),
                    v(&["compute-a-bmc", "n0-bmc"]),
                    d.clone()
                ),
                ("10.0.0.11".into(), v(&["n1"]), d.clone()),
                (
                    "10.0.0.200".into(),
                    v(&["sw1", "switch1", "core"]),
                    d.clone()
                ),
            ]
        );
        assert_eq!(s.entries[1].canonical(), "compute-a.Cluster.Local");
    }

    #[test]
    fn relative_names() {
        assert_eq!(relative("sw1.cluster.local", Some("cluster.local")), "sw1");
        assert_eq!(relative("SW1.CLUSTER.LOCAL.", Some("cluster.local")), "SW1");
        assert_eq!(relative("sw1.rack2", Some("cluster.local")), "sw1.rack2");
        assert_eq!(
            relative("xcluster.local", Some("cluster.local")),
            "xcluster.local"
        );
        assert_eq!(
            relative("cluster.local", Some("cluster.local")),
            "cluster.local"
        );
        assert_eq!(relative("n0", None), "n0");
        assert_eq!(head_label("head1.example.org"), "head1");
        assert_eq!(head_label(""), "head");
    }

    #[test]
    fn domains_follow_networks() {
        let nets = [
            net("a", "10.0.0.10", 24, ""),
            net("b", "10.1.0.10", 24, "ib.cluster"),
            net("c", "10.2.0.10", 24, "cluster.local."),
        ];
        let n0 = node("u0", "n0", "10.0.0.10", None);
        let n1 = node("u1", "n1", "10.2.0.10", None);
        let nodes = [
            NodeIn {
                node: &n0,
                hostname: None,
                ips: Some("ib0=10.1.0.10, bmc=10.9.0.1"),
            },
            NodeIn {
                node: &n1,
                hostname: None,
                ips: None,
            },
        ];
        let s = Snapshot::build(1, &[&nets[2], &nets[0], &nets[1]], &nodes, &[], "h", &[]);
        let doms: Vec<(String, Option<String>)> = s
            .entries
            .iter()
            .map(|e| (e.canonical(), e.domain.clone()))
            .collect();
        assert_eq!(
            doms,
            vec![
                // net a has no domain: the first domain (nets by name) is used.
                ("n0.ib.cluster".into(), Some("ib.cluster".into())),
                ("n0-ib0.ib.cluster".into(), Some("ib.cluster".into())),
                ("n0-bmc.ib.cluster".into(), Some("ib.cluster".into())),
                ("n1.cluster.local".into(), Some("cluster.local".into())),
            ]
        );
        // No domain anywhere: bare names.
        let bare = [net("a", "10.0.0.10", 24, "")];
        let s = Snapshot::build(1, &[&bare[0]], &nodes[..1], &[], "h", &[]);
        assert_eq!(s.entries[0].canonical(), "n0");
        assert_eq!(s.entries[0].domain, None);
    }

    #[test]
    fn hosts_and_ethers() {
        let s = sample();
        let hosts = s.hosts_file();
        let lines: Vec<String> = hosts
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(
            lines,
            vec![
                "10.0.0.1 headnode.Cluster.Local headnode",
                "10.0.0.10 compute-a.Cluster.Local compute-a n0.Cluster.Local n0",
                "10.0.1.10 compute-a-bmc.Cluster.Local compute-a-bmc n0-bmc.Cluster.Local n0-bmc",
                "10.0.0.11 n1.Cluster.Local n1",
                "10.0.0.200 sw1.Cluster.Local sw1 switch1.Cluster.Local switch1 core.Cluster.Local core",
            ]
        );
        let ethers = s.ethers_file();
        let ethers: Vec<&str> = ethers.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            ethers,
            vec!["52:54:00:00:00:10 compute-a", "52:54:00:00:00:c8 sw1"]
        );
    }
}

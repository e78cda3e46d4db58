//! The in-memory form of a node's rarely changing status, kept small for 100,000 nodes: what
//! repeats across nodes (kernel releases, SELinux modes, module lists, the hardware
//! inventory without its MACs, the agent's version, head names) is kept once in a [`Pool`]
//! keyed by content and shared; what is each node's own (address, hostname, cmdline, MACs,
//! boot id) is an exactly sized `Box<str>`. The stored record ([`InfoRecord`]) and the API's
//! types are unchanged: these convert to and from them.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wulf_api::status::{AgentCost, Hardware};

/// The rarely changing part of a node's status as the store holds it
/// (`/wulf/status/info/<uid>`). Its fields mirror `wulf_api::status::StatusReport`'s on
/// purpose: it is the store's format, which must not take the report's required fields, and a
/// `#[serde(flatten)]` shared struct would make every report's decoding buffer the whole report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InfoRecord {
    /// The address the node reported (its side of the way to the head).
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
}

/// A node's hardware: the inventory shared by every node with the same one (MACs left
/// empty), and this node's MACs in NIC order.
#[derive(Debug, Clone, PartialEq)]
pub struct Hw {
    shared: Arc<Hardware>,
    macs: Box<[Box<str>]>,
}

impl Hw {
    pub fn hardware(&self) -> Hardware {
        let mut h = (*self.shared).clone();
        for (nic, mac) in h.nics.iter_mut().zip(self.macs.iter()) {
            nic.mac = mac.to_string();
        }
        h
    }
}

/// The rarely changing part of a node's status, in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Info {
    pub ip: Option<Box<str>>,
    pub hostname: Option<Box<str>>,
    pub kernel: Option<Arc<str>>,
    pub cmdline: Option<Box<str>>,
    /// Shared between nodes that loaded the same modules (most of a cluster).
    pub modules: Option<Arc<Vec<String>>>,
    pub selinux: Option<Arc<str>>,
    pub hardware: Option<Hw>,
}

impl Info {
    pub fn record(&self) -> InfoRecord {
        InfoRecord {
            ip: self.ip.as_deref().map(str::to_string),
            hostname: self.hostname.as_deref().map(str::to_string),
            kernel: self.kernel.as_deref().map(str::to_string),
            cmdline: self.cmdline.as_deref().map(str::to_string),
            modules: self.modules.as_deref().cloned(),
            selinux: self.selinux.as_deref().map(str::to_string),
            hardware: self.hardware.as_ref().map(Hw::hardware),
        }
    }
}

/// The agent's cost figures (memory only), its version shared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Agent {
    pub version: Arc<str>,
    pub cpu_us: u64,
    pub wall_us: u64,
    pub worst_wall_us: u64,
    pub total_cpu_us: u64,
    pub reports: u64,
}

impl Agent {
    /// `a`'s figures, with `version` (the shared copy of `a.version`).
    pub fn new(version: Arc<str>, a: &AgentCost) -> Agent {
        Agent {
            version,
            cpu_us: a.cpu_us,
            wall_us: a.wall_us,
            worst_wall_us: a.worst_wall_us,
            total_cpu_us: a.total_cpu_us,
            reports: a.reports,
        }
    }

    pub fn cost(&self) -> AgentCost {
        AgentCost {
            version: self.version.to_string(),
            cpu_us: self.cpu_us,
            wall_us: self.wall_us,
            worst_wall_us: self.worst_wall_us,
            total_cpu_us: self.total_cpu_us,
            reports: self.reports,
        }
    }
}

/// What many nodes share, each kept once.
#[derive(Default)]
pub struct Pool {
    strs: HashSet<Arc<str>>,
    module_lists: HashSet<Arc<Vec<String>>>,
    hardware: HashSet<Arc<Hardware>>,
}

impl Pool {
    /// The shared copy of a string.
    pub fn str(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strs.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strs.insert(a.clone());
        a
    }

    /// The shared copy of a module list.
    pub fn modules(&mut self, list: Vec<String>) -> Arc<Vec<String>> {
        if let Some(a) = self.module_lists.get(&list) {
            return a.clone();
        }
        let a = Arc::new(list);
        self.module_lists.insert(a.clone());
        a
    }

    /// A node's hardware: the shared inventory and its MACs.
    pub fn hardware(&mut self, mut h: Hardware) -> Hw {
        let macs: Box<[Box<str>]> = h
            .nics
            .iter_mut()
            .map(|n| std::mem::take(&mut n.mac).into_boxed_str())
            .collect();
        let shared = match self.hardware.get(&h) {
            Some(a) => a.clone(),
            None => {
                let a = Arc::new(h);
                self.hardware.insert(a.clone());
                a
            }
        };
        Hw { shared, macs }
    }

    /// A stored record in memory.
    pub fn info(&mut self, r: InfoRecord) -> Info {
        Info {
            ip: r.ip.map(String::into_boxed_str),
            hostname: r.hostname.map(String::into_boxed_str),
            kernel: r.kernel.map(|k| self.str(&k)),
            cmdline: r.cmdline.map(String::into_boxed_str),
            modules: r.modules.map(|m| self.modules(m)),
            selinux: r.selinux.map(|s| self.str(&s)),
            hardware: r.hardware.map(|h| self.hardware(h)),
        }
    }

    /// Drop what no node uses any more.
    pub fn prune(&mut self) {
        self.strs.retain(|s| Arc::strong_count(s) > 1);
        self.module_lists.retain(|l| Arc::strong_count(l) > 1);
        self.hardware.retain(|h| Arc::strong_count(h) > 1);
    }

    #[cfg(test)]
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.strs.len(),
            self.module_lists.len(),
            self.hardware.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wulf_api::status::{Disk, Nic};

    fn hw(mac: &str) -> Hardware {
        Hardware {
            cpu_model: "Xeon".into(),
            cpus: 64,
            ram_total: 1 << 36,
            nics: vec![
                Nic {
                    name: "eth0".into(),
                    mac: mac.into(),
                    speed_mbps: Some(25_000),
                    mtu: 1500,
                },
                Nic {
                    name: "ib0".into(),
                    mac: String::new(),
                    speed_mbps: None,
                    mtu: 2044,
                },
            ],
            disks: vec![Disk {
                name: "sda".into(),
                bytes: 1 << 40,
                model: "SSD".into(),
                rotational: false,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn records_round_trip_and_share_what_repeats() {
        let mut pool = Pool::default();
        let rec = |mac: &str, host: &str| InfoRecord {
            ip: Some("10.0.0.7".into()),
            hostname: Some(host.into()),
            kernel: Some("6.1.0-28-amd64".into()),
            cmdline: Some(format!("quiet wulf.node={host}")),
            modules: Some(vec!["e1000".into(), "ext4".into()]),
            selinux: Some("disabled".into()),
            hardware: Some(hw(mac)),
        };
        let (ra, rb) = (
            rec("02:00:00:00:00:01", "n1"),
            rec("02:00:00:00:00:02", "n2"),
        );
        let a = pool.info(ra.clone());
        let b = pool.info(rb.clone());
        assert_eq!(a.record(), ra);
        assert_eq!(b.record(), rb);
        let (ha, hb) = (a.hardware.as_ref().unwrap(), b.hardware.as_ref().unwrap());
        assert!(Arc::ptr_eq(&ha.shared, &hb.shared), "one inventory");
        assert!(Arc::ptr_eq(
            a.kernel.as_ref().unwrap(),
            b.kernel.as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(
            a.modules.as_ref().unwrap(),
            b.modules.as_ref().unwrap()
        ));
        assert_eq!(
            pool.sizes(),
            (2, 1, 1),
            "kernel and selinux; modules; hardware"
        );
        // Other hardware is kept apart.
        let mut other = hw("02:00:00:00:00:03");
        other.cpus = 32;
        let c = pool.hardware(other.clone());
        assert_eq!(c.hardware(), other);
        assert_eq!(pool.sizes().2, 2);
        drop((a, b, c));
        pool.prune();
        assert_eq!(pool.sizes(), (0, 0, 0));
    }
}

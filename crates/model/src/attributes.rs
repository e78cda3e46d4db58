//! Attributes: reserved names and their value checks, and effective attributes
//! (default group → the node's groups in order → the node's own; later wins).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::ids::MacAddr;

/// Boot styles a boot config or `_boot_style` may name.
pub const BOOT_STYLES: [&str; 4] = ["rwram", "roram", "next", "disked"];

/// Every reserved attribute (names starting with `_`) wulf knows, with what it means.
pub const RESERVED: &[(&str, &str)] = &[
    ("_boot_config", "name of the boot config the node boots"),
    (
        "_boot_style",
        "overrides the boot config's style: rwram, roram, next, disked",
    ),
    (
        "_disk_cache",
        "rwram/roram: keep a verified copy of the image on a local disk and boot from it \
         while its sha256 matches: auto (the first disk) or a disk like /dev/sda \
         (see docs/admin/boot-styles.md)",
    ),
    (
        "_disk_root",
        "disked: the disk the image is installed on: auto (the first disk) or a disk like \
         /dev/sda (see docs/admin/boot-styles.md)",
    ),
    (
        "_disk_wipe",
        "yes: _disk_cache or _disk_root may repartition a disk that already has another \
         partition table",
    ),
    (
        "_image_peers",
        "yes: the node gets its image's pieces from nodes that already have them (and serves \
         them to others) instead of all from the head (see docs/admin/boot.md)",
    ),
    (
        "_status_secs",
        "seconds between status reports (default 10)",
    ),
    ("_busy", "busy mode for the agent: true/false"),
    ("_status_cpuset", "CPUs the agent is pinned to, e.g. 0-1,7"),
    (
        "_no_boot",
        "true: DHCP and boot requests from this node are ignored",
    ),
    (
        "_ipxe_chain",
        "true: a BIOS node whose network card already runs iPXE is first sent the head's \
         undionly.kpxe over TFTP",
    ),
    (
        "_hostname",
        "host name to give the node instead of its name",
    ),
    (
        "_altmacs",
        "other MAC addresses of the node, comma-separated",
    ),
    (
        "_ips",
        "addresses of the node's other interfaces: bmc=10.0.0.5,ib0=10.1.0.5",
    ),
    (
        "_macs",
        "MAC addresses of the node's other interfaces: bmc=52:54:00:00:00:01",
    ),
    (
        "_boot_timeout",
        "seconds a booting node may take before it is down (default 600)",
    ),
    (
        "_power_uri",
        "the node's BMC when it has no power_uri: ipmi://USER:PASS@HOST, \
         redfish://USER:PASS@HOST[/SYSTEM_ID] or none; {name}, {_ips.bmc}, … are filled in",
    ),
    (
        "_bmc_user",
        "the BMC user, for power URIs like ipmi://{_bmc_user}:{_bmc_pass}@{_ips.bmc}",
    ),
    (
        "_bmc_pass",
        "the BMC password, for power URIs like ipmi://admin:{_bmc_pass}@{_ips.bmc} (shown as ****)",
    ),
    (
        "_orphan_secs",
        "seconds without an answer from any head before the agent is an orphan (default 60)",
    ),
    (
        "_orphan_policy",
        "what an orphan does: reboot (default, at once), idle (reboot once idle), run (never reboot)",
    ),
    (
        "_orphan_idle_pct",
        "with _orphan_policy=idle: CPU use below this % of one CPU counts as idle (default 1)",
    ),
    (
        "_orphan_idle_secs",
        "with _orphan_policy=idle: seconds idle before the orphan reboots (default 300)",
    ),
];

/// The rules for the `_orphan_*` attributes (the agent applies the same when it reads them).
pub fn check_orphan(name: &str, value: &str) -> Result<(), String> {
    let v = value.trim();
    match name {
        "_orphan_secs" | "_orphan_idle_secs" => match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(()),
            _ => Err(format!(
                "'{value}' is not a positive whole number of seconds"
            )),
        },
        "_orphan_policy"
            if !["reboot", "idle", "run"].contains(&v.to_ascii_lowercase().as_str()) =>
        {
            Err(format!("'{value}' is not one of reboot, idle, run"))
        }
        "_orphan_idle_pct" => match v.parse::<f64>() {
            Ok(p) if p.is_finite() && p >= 0.0 => Ok(()),
            _ => Err(format!(
                "'{value}' is not a percentage of one CPU (a number, 0 or more)"
            )),
        },
        _ => Ok(()),
    }
}

/// `_status_secs` when a node has none (or an invalid one).
pub const DEFAULT_STATUS_SECS: u32 = 10;

/// `_status_secs` from a node's attributes: the default when unset, `Err(value)` when it is
/// not a positive whole number of seconds.
pub fn status_secs(attrs: &BTreeMap<String, String>) -> Result<u32, String> {
    match attrs.get("_status_secs") {
        None => Ok(DEFAULT_STATUS_SECS),
        Some(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| v.clone()),
    }
}

/// Parse a boolean the way administrators write them: 1/on/y/yes/t/true and
/// 0/off/n/no/f/false, any case.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "on" | "y" | "yes" | "t" | "true" => Some(true),
        "0" | "off" | "n" | "no" | "f" | "false" => Some(false),
        _ => None,
    }
}

/// Parse a `name=value,name=value` list (as in `_ips` and `_macs`).
pub fn parse_assignments(s: &str) -> Option<Vec<(&str, &str)>> {
    s.split(',')
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map(|(a, b)| (a.trim(), b.trim())))
        .collect()
}

/// Parse a comma-separated MAC list (as in `_altmacs`).
pub fn parse_mac_list(s: &str) -> Result<Vec<MacAddr>, String> {
    s.split(',')
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse::<MacAddr>().map_err(|e| e.to_string()))
        .collect()
}

fn valid_cpuset(s: &str) -> bool {
    !s.is_empty()
        && s.split(',').all(|p| {
            let mut it = p.splitn(2, '-');
            let a = it.next().and_then(|a| a.trim().parse::<u32>().ok());
            match (a, it.next()) {
                (Some(_), None) => true,
                (Some(a), Some(b)) => b.trim().parse::<u32>().map(|b| b >= a).unwrap_or(false),
                _ => false,
            }
        })
}

/// True when `s` is a valid attribute name: letters, digits, `_`, `-`, `.`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// A `_disk_cache` value: `auto` or a whole disk by its kernel name (`/dev/sda`,
/// `/dev/nvme0n1`, or just `sda`; the initramfs has no udev, so no `/dev/disk/by-*` links),
/// which goes on the kernel command line as it is.
pub fn valid_disk(s: &str) -> bool {
    let dev = s.strip_prefix("/dev/").unwrap_or(s);
    s == "auto"
        || (!dev.is_empty()
            && dev.len() <= 32
            && dev
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
}

/// A sha256 as wulf writes it: 64 lowercase hex digits.
pub fn valid_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Check one attribute name and value. Unknown reserved names are rejected. References to
/// other objects (`_boot_config`) are checked by the caller, who can see the database.
pub fn validate(name: &str, value: &str) -> Result<(), ModelError> {
    let field = format!("attributes.{name}");
    if !valid_name(name) {
        return Err(ModelError::new(
            field,
            "attribute names may use letters, digits, '_', '-' and '.' (at most 128)",
        ));
    }
    crate::secret::check_secret_value(name, value).map_err(|m| ModelError::new(&field, m))?;
    if !name.starts_with('_') {
        return Ok(());
    }
    if !RESERVED.iter().any(|(n, _)| *n == name) {
        let known: Vec<&str> = RESERVED.iter().map(|(n, _)| *n).collect();
        return Err(ModelError::new(
            field,
            format!(
                "unknown reserved attribute (names starting with '_' are reserved; known: {})",
                known.join(", ")
            ),
        ));
    }
    let fail = |m: String| Err(ModelError::new(format!("attributes.{name}"), m));
    match name {
        "_boot_style" if !BOOT_STYLES.contains(&value) => fail(format!(
            "'{value}' is not one of {}",
            BOOT_STYLES.join(", ")
        )),
        "_status_secs" | "_boot_timeout" => match value.parse::<u32>() {
            Ok(n) if n > 0 => Ok(()),
            _ => fail(format!(
                "'{value}' is not a positive whole number of seconds"
            )),
        },
        "_disk_cache" | "_disk_root" if !valid_disk(value) => fail(format!(
            "'{value}' is not auto or a disk device like /dev/sda, /dev/nvme0n1"
        )),
        "_busy" | "_no_boot" | "_disk_wipe" | "_ipxe_chain" | "_image_peers"
            if parse_bool(value).is_none() =>
        {
            fail(format!(
                "'{value}' is not a boolean (use true/false, yes/no, on/off, 1/0)"
            ))
        }
        "_status_cpuset" if !valid_cpuset(value) => {
            fail(format!("'{value}' is not a CPU list like 0-3,7"))
        }
        "_hostname" if !crate::objects::valid_hostname(value) => {
            fail(format!("'{value}' is not a valid host name"))
        }
        "_altmacs" => parse_mac_list(value).map(|_| ()).or_else(fail),
        "_power_uri" => crate::secret::check_power_uri(value).or_else(fail),
        n if n.starts_with("_orphan_") => check_orphan(n, value).or_else(fail),
        "_ips" => match parse_assignments(value) {
            Some(list) => {
                for (iface, ip) in list {
                    if iface.is_empty() || ip.parse::<Ipv4Addr>().is_err() {
                        return fail(format!("'{iface}={ip}' is not like bmc=10.0.0.5"));
                    }
                }
                Ok(())
            }
            None => fail(format!(
                "'{value}' is not a list like bmc=10.0.0.5,ib0=10.1.0.5"
            )),
        },
        "_macs" => match parse_assignments(value) {
            Some(list) => {
                for (iface, mac) in list {
                    if iface.is_empty() || mac.parse::<MacAddr>().is_err() {
                        return fail(format!("'{iface}={mac}' is not like bmc=52:54:00:00:00:01"));
                    }
                }
                Ok(())
            }
            None => fail(format!(
                "'{value}' is not a list like bmc=52:54:00:00:00:01"
            )),
        },
        _ => Ok(()),
    }
}

/// Check every attribute of a map.
pub fn validate_all(attrs: &BTreeMap<String, String>) -> Result<(), ModelError> {
    attrs.iter().try_for_each(|(k, v)| validate(k, v))
}

/// Where an effective attribute's value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", content = "name", rename_all = "lowercase")]
pub enum AttrSource {
    /// The cluster's default attribute group.
    Default(String),
    /// One of the node's groups.
    Group(String),
    /// The node itself.
    Node,
}

impl std::fmt::Display for AttrSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttrSource::Default(g) => write!(f, "default group {g}"),
            AttrSource::Group(g) => write!(f, "group {g}"),
            AttrSource::Node => f.write_str("node"),
        }
    }
}

/// One effective attribute and its origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectiveAttr {
    pub value: String,
    pub source: AttrSource,
}

/// Effective attributes: the default group's, then each group's in order, then the node's own;
/// a later layer overrides an earlier one.
pub fn effective_attributes<'a>(
    default_group: Option<(&'a str, &'a BTreeMap<String, String>)>,
    groups: impl IntoIterator<Item = (&'a str, &'a BTreeMap<String, String>)>,
    own: &BTreeMap<String, String>,
) -> BTreeMap<String, EffectiveAttr> {
    let mut out = BTreeMap::new();
    let mut layer = |attrs: &BTreeMap<String, String>, source: AttrSource| {
        for (k, v) in attrs {
            out.insert(
                k.clone(),
                EffectiveAttr {
                    value: v.clone(),
                    source: source.clone(),
                },
            );
        }
    };
    if let Some((name, attrs)) = default_group {
        layer(attrs, AttrSource::Default(name.to_string()));
    }
    for (name, attrs) in groups {
        layer(attrs, AttrSource::Group(name.to_string()));
    }
    layer(own, AttrSource::Node);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn bools() {
        for t in ["1", "on", "Y", "yes", "T", "TRUE"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "OFF", "n", "No", "f", "False"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn reserved_checks() {
        assert!(validate("rack", "r12").is_ok());
        assert!(validate("_bogus", "1")
            .unwrap_err()
            .message
            .contains("unknown reserved"));
        assert!(validate("_status_secs", "0").is_err());
        assert!(validate("_status_secs", "30").is_ok());
        assert!(validate("_orphan_policy", "idle").is_ok());
        assert!(validate("_orphan_policy", "sometimes").is_err());
        assert!(validate("_orphan_secs", "0").is_err());
        assert!(validate("_orphan_idle_pct", "0.5").is_ok());
        assert!(validate("_orphan_idle_pct", "-1").is_err());
        assert!(validate("_busy", "yes").is_ok());
        assert!(validate("_busy", "sometimes").is_err());
        assert!(validate("_boot_style", "roram").is_ok());
        assert!(validate("_boot_style", "floppy").is_err());
        for ok in ["auto", "/dev/sda", "vdb", "/dev/nvme0n1"] {
            assert!(validate("_disk_cache", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/dev/",
            "sd a",
            "/dev/../etc",
            "a;b",
            "/dev/disk/by-id/x",
        ] {
            assert!(validate("_disk_cache", bad).is_err(), "{bad}");
        }
        assert!(validate("_disk_root", "/dev/vda").is_ok());
        assert!(validate("_disk_root", "/dev/vda1;x").is_err());
        assert!(validate("_disk_wipe", "yes").is_ok());
        assert!(validate("_disk_wipe", "please").is_err());
        assert!(validate("_altmacs", "52:54:00:00:00:01, 52:54:00:00:00:02").is_ok());
        assert!(validate("_altmacs", "52:54:00:00:00").is_err());
        assert!(validate("_ips", "bmc=10.0.0.5,ib0=10.1.0.5").is_ok());
        assert!(validate("_ips", "bmc=10.0.0.500").is_err());
        assert!(validate("_ips", "10.0.0.5").is_err());
        assert!(validate("_status_cpuset", "0-3,7").is_ok());
        assert!(validate("_status_cpuset", "3-1").is_err());
        assert!(validate("bad name", "x").is_err());
        let e = validate("_status_secs", "x").unwrap_err();
        assert_eq!(e.field, "attributes._status_secs");
    }

    #[test]
    fn layering() {
        let d = map(&[("a", "default"), ("b", "default")]);
        let g1 = map(&[("b", "g1"), ("c", "g1")]);
        let g2 = map(&[("c", "g2")]);
        let own = map(&[("d", "node"), ("a", "node")]);
        let eff = effective_attributes(
            Some(("DefaultAttribs", &d)),
            [("g1", &g1), ("g2", &g2)],
            &own,
        );
        assert_eq!(eff["a"].value, "node");
        assert_eq!(eff["a"].source, AttrSource::Node);
        assert_eq!(eff["b"].value, "g1");
        assert_eq!(eff["b"].source, AttrSource::Group("g1".into()));
        assert_eq!(eff["c"].value, "g2");
        assert_eq!(eff["d"].value, "node");
        assert_eq!(eff.len(), 4);
    }
}

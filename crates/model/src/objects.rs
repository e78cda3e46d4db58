//! The objects of the cluster database. Each is one JSON document under one key.
//! Field names follow ClusterWare's where it has one.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::attributes;
use crate::error::ModelError;
use crate::ids::{is_uid, Kind, MacAddr};
use crate::naming::Pattern;
use crate::net::{ip_add, ip_diff, same_subnet, IpRange};

/// The name of the default attribute group created with a new cluster.
pub const DEFAULT_GROUP: &str = "DefaultAttribs";
/// The name of the default naming pool.
pub const DEFAULT_POOL: &str = "default";
/// The UID of the single cluster-settings object.
pub const CLUSTER_UID: &str = "00000000000000000000000000000001";

/// A file stored as a content-addressed blob beside the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRef {
    pub sha256: String,
    pub size: u64,
    /// The file name it was uploaded from (informational).
    #[serde(default)]
    pub filename: String,
}

/// Behaviour shared by every object kind.
pub trait Object: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    const KIND: Kind;
    fn uid(&self) -> &str;
    fn name(&self) -> &str;
    fn set_identity(&mut self, uid: String, last_modified: f64);
    /// Checks that need no other object.
    fn validate(&self) -> Result<(), ModelError>;
}

macro_rules! object_common {
    ($t:ty, $kind:expr) => {
        impl Object for $t {
            const KIND: Kind = $kind;
            fn uid(&self) -> &str {
                &self.uid
            }
            fn name(&self) -> &str {
                &self.name
            }
            fn set_identity(&mut self, uid: String, last_modified: f64) {
                self.uid = uid;
                self.last_modified = last_modified;
            }
            fn validate(&self) -> Result<(), ModelError> {
                self.check()
            }
        }
    };
}

/// True for a DNS host name: dot-separated labels of letters, digits and '-'.
pub fn valid_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Check an object name (groups, boot configs, images, pools, networks, hosts).
pub fn check_object_name(name: &str) -> Result<(), ModelError> {
    let err = |m: &str| Err(ModelError::new("name", format!("'{name}': {m}")));
    if name.is_empty() {
        return err("a name is required");
    }
    if name.len() > 64 {
        return err("at most 64 characters");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return err("must start with a letter or digit");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return err("may only contain letters, digits, '-', '_' and '.'");
    }
    if is_uid(name) {
        return err("would be mistaken for a UID");
    }
    Ok(())
}

/// Check a node name: an object name that also cannot be mistaken for an index, an IP address,
/// a MAC address or a hostlist.
pub fn check_node_name(name: &str) -> Result<(), ModelError> {
    check_object_name(name)?;
    let err = |m: &str| Err(ModelError::new("name", format!("'{name}': {m}")));
    if !valid_hostname(name) {
        return err("must be a valid host name (letters, digits, '-')");
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return err("all digits would be mistaken for a node index");
    }
    if name.parse::<Ipv4Addr>().is_ok() {
        return err("would be mistaken for an IP address");
    }
    if name.parse::<MacAddr>().is_ok() {
        return err("would be mistaken for a MAC address");
    }
    Ok(())
}

fn one_of(field: &str, value: &str, allowed: &[&str]) -> Result<(), ModelError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ModelError::new(
            field,
            format!("'{value}' is not one of {}", allowed.join(", ")),
        ))
    }
}

pub const BOOT_SEQUENCES: [&str; 3] = ["pxe", "local", "pxe+local"];

fn default_node_type() -> String {
    "compute".to_string()
}
fn default_boot_sequence() -> String {
    "pxe".to_string()
}

/// A compute node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    #[serde(default)]
    pub uid: String,
    /// Derived from the naming pool and index unless set.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub last_modified: f64,
    /// Unique position of the node in the cluster; names and IPs derive from it.
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// Derived from the network and index unless set.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    #[serde(rename = "type", default = "default_node_type")]
    pub node_type: String,
    /// Attribute groups, in order (later wins).
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub power_uri: Option<String>,
    #[serde(default = "default_boot_sequence")]
    pub boot_sequence: String,
    /// For `pxe+local`: `local` once the node has been served its PXE boot. For boot style
    /// `disked`: `local` once the node installed `disk_image` on its disk.
    #[serde(default)]
    pub boot_stage: Option<String>,
    /// Boot style `disked`: the sha256 of the image the node installed on its local disk
    /// (the node records it when the install is done). It boots from that disk while this is
    /// its boot config's image and `boot_stage` is `local`.
    #[serde(default)]
    pub disk_image: Option<String>,
}

impl Node {
    fn check(&self) -> Result<(), ModelError> {
        check_node_name(&self.name)?;
        if !self.node_type.is_empty()
            && !self
                .node_type
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
        {
            return Err(ModelError::new(
                "type",
                format!(
                    "'{}' must be a lowercase word like compute or simulated",
                    self.node_type
                ),
            ));
        }
        one_of("boot_sequence", &self.boot_sequence, &BOOT_SEQUENCES)?;
        if let Some(uri) = &self.power_uri {
            crate::secret::check_power_uri(uri).map_err(|m| ModelError::new("power_uri", m))?;
        }
        if let Some(stage) = &self.boot_stage {
            one_of("boot_stage", stage, &["pxe", "local"])?;
        }
        if let Some(sha) = &self.disk_image {
            if !crate::attributes::valid_sha256(sha) {
                return Err(ModelError::new(
                    "disk_image",
                    format!("'{sha}' is not a sha256 (64 lowercase hex digits)"),
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for g in &self.groups {
            check_object_name(g).map_err(|e| ModelError::new("groups", e.message))?;
            if !seen.insert(g) {
                return Err(ModelError::new(
                    "groups",
                    format!("group '{g}' is listed twice"),
                ));
            }
        }
        attributes::validate_all(&self.attributes)?;
        if let (Some(mac), Some(alt)) = (self.mac, self.attributes.get("_altmacs")) {
            if attributes::parse_mac_list(alt)
                .unwrap_or_default()
                .contains(&mac)
            {
                return Err(ModelError::new(
                    "attributes._altmacs",
                    format!("{mac} is already the node's mac"),
                ));
            }
        }
        Ok(())
    }

    /// Every MAC that identifies this node: `mac` and the node's own `_altmacs`.
    pub fn all_macs(&self) -> Vec<MacAddr> {
        let mut v: Vec<MacAddr> = self.mac.into_iter().collect();
        if let Some(alt) = self.attributes.get("_altmacs") {
            v.extend(attributes::parse_mac_list(alt).unwrap_or_default());
        }
        v
    }
}
object_common!(Node, Kind::Node);

/// An attribute group: a named, flat map of attributes that nodes join.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttribGroup {
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub last_modified: f64,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}
impl AttribGroup {
    fn check(&self) -> Result<(), ModelError> {
        check_object_name(&self.name)?;
        attributes::validate_all(&self.attributes)
    }
}
object_common!(AttribGroup, Kind::Attrib);

fn default_boot_style() -> String {
    "rwram".to_string()
}

/// What a node boots: kernel, initramfs, command line and root image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootConfig {
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub last_modified: f64,
    #[serde(default)]
    pub kernel: Option<FileRef>,
    #[serde(default)]
    pub initramfs: Option<FileRef>,
    /// A kickstart template the head renders for each booting node (`GET /boot/ks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kickstart: Option<FileRef>,
    #[serde(default)]
    pub cmdline: String,
    /// Name of the image the node's root filesystem comes from.
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default = "default_boot_style")]
    pub boot_style: String,
    #[serde(default)]
    pub frozen: bool,
    #[serde(default)]
    pub release: String,
}
impl BootConfig {
    fn check(&self) -> Result<(), ModelError> {
        check_object_name(&self.name)?;
        one_of("boot_style", &self.boot_style, &attributes::BOOT_STYLES)?;
        if let Some(img) = &self.image {
            check_object_name(img).map_err(|e| ModelError::new("image", e.message))?;
        }
        if self.cmdline.contains(['\n', '\r']) {
            return Err(ModelError::new("cmdline", "must be one line"));
        }
        Ok(())
    }
}
object_common!(BootConfig, Kind::Boot);

/// A root filesystem image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub last_modified: f64,
    #[serde(default)]
    pub content: Option<FileRef>,
    /// Name of the image this one was made from.
    #[serde(default)]
    pub parent: Option<String>,
    /// The sha256 of the content this content was made from (`wulf image exec`): that
    /// version stays in the file store while this names it. Set by the head.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_sha256: Option<String>,
    #[serde(default)]
    pub frozen: bool,
}
impl Image {
    fn check(&self) -> Result<(), ModelError> {
        check_object_name(&self.name)?;
        if let Some(p) = &self.parent {
            check_object_name(p).map_err(|e| ModelError::new("parent", e.message))?;
        }
        if let Some(s) = &self.parent_sha256 {
            if !is_sha256(s) {
                return Err(ModelError::new(
                    "parent_sha256",
                    format!("'{s}' is not a sha256 (64 lowercase hex digits)"),
                ));
            }
        }
        Ok(())
    }
}

/// True for a sha256 written as 64 lowercase hex digits.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
object_common!(Image, Kind::Image);

/// A naming pool: nodes whose index is at least `first_index` (and below the next pool's
/// `first_index`) are named `pattern` with number `index - first_index`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub last_modified: f64,
    pub pattern: String,
    #[serde(default)]
    pub first_index: u32,
}
impl Pool {
    fn check(&self) -> Result<(), ModelError> {
        check_object_name(&self.name)?;
        Pattern::parse(&self.pattern).map(|_| ())
    }
    /// The name of the node with `index` under this pool.
    pub fn name_for(&self, index: u32) -> Option<String> {
        let n = index.checked_sub(self.first_index)?;
        Pattern::parse(&self.pattern)
            .ok()
            .map(|p| p.format(u64::from(n)))
    }
}
object_common!(Pool, Kind::Pool);

/// The pool that names node `index`: the one with the highest `first_index` ≤ `index`.
pub fn pool_for_index(pools: &[&Pool], index: u32) -> Option<usize> {
    pools
        .iter()
        .enumerate()
        .filter(|(_, p)| p.first_index <= index)
        .max_by_key(|(_, p)| p.first_index)
        .map(|(i, _)| i)
}

/// A cluster network: node `index` gets `first_ip + (index - first_index)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub last_modified: f64,
    pub first_ip: Ipv4Addr,
    pub ip_count: u32,
    pub mask_bits: u8,
    /// The node index that gets `first_ip`.
    #[serde(default)]
    pub first_index: u32,
    #[serde(default)]
    pub router_ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub dns_ips: Vec<Ipv4Addr>,
    #[serde(default)]
    pub domain: String,
    /// Address ranges for non-cluster devices (`host` objects).
    #[serde(default)]
    pub host_ranges: Vec<IpRange>,
}
impl Network {
    /// The addresses nodes get.
    pub fn node_range(&self) -> Option<IpRange> {
        let last = ip_add(self.first_ip, self.ip_count.checked_sub(1)?)?;
        Some(IpRange {
            first: self.first_ip,
            last,
        })
    }

    /// The IP of node `index`, if this network numbers it.
    pub fn ip_for_index(&self, index: u32) -> Option<Ipv4Addr> {
        let off = index.checked_sub(self.first_index)?;
        (off < self.ip_count)
            .then(|| ip_add(self.first_ip, off))
            .flatten()
    }

    /// The node index whose derived IP is `ip`.
    pub fn index_for_ip(&self, ip: Ipv4Addr) -> Option<u32> {
        let off = ip_diff(ip, self.first_ip)?;
        (off < self.ip_count)
            .then(|| self.first_index.checked_add(off))
            .flatten()
    }

    /// True when `ip` is in this network's subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        same_subnet(ip, self.first_ip, self.mask_bits)
    }

    fn check(&self) -> Result<(), ModelError> {
        check_object_name(&self.name)?;
        if !(8..=30).contains(&self.mask_bits) {
            return Err(ModelError::new("mask_bits", "must be 8 to 30"));
        }
        if self.ip_count == 0 {
            return Err(ModelError::new("ip_count", "must be at least 1"));
        }
        let range = self.node_range().ok_or_else(|| {
            ModelError::new("ip_count", "first_ip + ip_count runs past 255.255.255.255")
        })?;
        if !self.contains(range.last) {
            return Err(ModelError::new(
                "ip_count",
                format!(
                    "node addresses {range} run outside {}/{}",
                    self.first_ip, self.mask_bits
                ),
            ));
        }
        if self.first_index.checked_add(self.ip_count - 1).is_none() {
            return Err(ModelError::new(
                "first_index",
                "first_index + ip_count is too large",
            ));
        }
        if let Some(r) = self.router_ip {
            if !self.contains(r) {
                return Err(ModelError::new(
                    "router_ip",
                    format!("{r} is outside the network"),
                ));
            }
            if range.contains(r) {
                return Err(ModelError::new(
                    "router_ip",
                    format!("{r} is inside the node range {range}"),
                ));
            }
        }
        if !self.domain.is_empty() && !valid_hostname(&self.domain) {
            return Err(ModelError::new(
                "domain",
                format!("'{}' is not a valid domain", self.domain),
            ));
        }
        for (i, h) in self.host_ranges.iter().enumerate() {
            if !self.contains(h.first) || !self.contains(h.last) {
                return Err(ModelError::new(
                    "host_ranges",
                    format!("{h} is outside the network"),
                ));
            }
            if h.overlaps(&range) {
                return Err(ModelError::new(
                    "host_ranges",
                    format!("{h} overlaps the node range {range}"),
                ));
            }
            if let Some(o) = self.host_ranges[..i].iter().find(|o| o.overlaps(h)) {
                return Err(ModelError::new("host_ranges", format!("{h} overlaps {o}")));
            }
        }
        Ok(())
    }
}
object_common!(Network, Kind::Net);

/// A non-cluster device on the private network (switch, PDU, storage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub last_modified: f64,
    #[serde(default)]
    pub mac: Option<MacAddr>,
    pub ip: Ipv4Addr,
    /// More names for the device.
    #[serde(default)]
    pub hostnames: Vec<String>,
}
impl Host {
    fn check(&self) -> Result<(), ModelError> {
        check_object_name(&self.name)?;
        if !valid_hostname(&self.name) {
            return Err(ModelError::new(
                "name",
                format!("'{}' is not a valid host name", self.name),
            ));
        }
        for h in &self.hostnames {
            if !valid_hostname(h) {
                return Err(ModelError::new(
                    "hostnames",
                    format!("'{h}' is not a valid host name"),
                ));
            }
        }
        Ok(())
    }
}
object_common!(Host, Kind::Host);

/// Log levels as `log_level` takes them, tersest first (ClusterWare's AUDIT, ERROR, WARNING,
/// INFO, DEBUG).
pub const LOG_LEVELS: [&str; 5] = ["audit", "error", "warning", "info", "debug"];

/// Cluster-wide settings (one object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub last_modified: f64,
    /// What DHCP does with a MAC that is no node's, BMC's or host's (ClusterWare's
    /// `nodeassign`): `append` makes it a node after the current last index, `insert` a node
    /// at the lowest free index, `locked` only records it (`wulf node unknown`). Written
    /// also as yes/true (append) and no/false (locked).
    #[serde(default = "default_node_assign", deserialize_with = "de_node_assign")]
    pub accept_new_nodes: String,
    /// The attribute group every node inherits from first.
    #[serde(default = "default_group_name")]
    pub default_group: String,
    /// The level every head logs at in its head log (audit, error, warning, info, debug);
    /// empty: each head's config file decides (`[logs] level`, default warning).
    #[serde(default)]
    pub log_level: String,
}
fn default_group_name() -> String {
    DEFAULT_GROUP.to_string()
}

/// The values of `accept_new_nodes`.
pub const NODE_ASSIGN: [&str; 3] = ["append", "insert", "locked"];

fn default_node_assign() -> String {
    "locked".to_string()
}

/// `accept_new_nodes` as one of [`NODE_ASSIGN`]: booleans and yes/no words are read as
/// append/locked; anything else is kept for `check` to refuse with its own message.
fn de_node_assign<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum BoolOrText {
        Bool(bool),
        Text(String),
    }
    Ok(match BoolOrText::deserialize(d)? {
        BoolOrText::Bool(true) => "append".into(),
        BoolOrText::Bool(false) => "locked".into(),
        BoolOrText::Text(t) => normalize_node_assign(&t),
    })
}

/// `yes`/`true`/`on`/`1` → append, `no`/`false`/`off`/`0` → locked, others lowercased.
pub fn normalize_node_assign(t: &str) -> String {
    let t = t.trim().to_ascii_lowercase();
    match t.as_str() {
        "yes" | "true" | "on" | "1" => "append".into(),
        "no" | "false" | "off" | "0" => "locked".into(),
        _ => t,
    }
}
impl Cluster {
    fn check(&self) -> Result<(), ModelError> {
        check_object_name(&self.name)?;
        check_object_name(&self.default_group)
            .map_err(|e| ModelError::new("default_group", e.message))?;
        if !NODE_ASSIGN.contains(&self.accept_new_nodes.as_str()) {
            return Err(ModelError::new(
                "accept_new_nodes",
                format!(
                    "'{}' is not one of append, insert, locked (or yes/no)",
                    self.accept_new_nodes
                ),
            ));
        }
        let level = self.log_level.to_ascii_lowercase();
        if !level.is_empty() && !LOG_LEVELS.contains(&level.as_str()) {
            return Err(ModelError::new(
                "log_level",
                format!(
                    "'{}' is not a log level: use one of {} (or empty for each head's config)",
                    self.log_level,
                    LOG_LEVELS.join(", ")
                ),
            ));
        }
        Ok(())
    }
}
object_common!(Cluster, Kind::Cluster);

/// The roles an admin account may have, least to most: `viewer` reads everything but
/// secrets; `operator` also acts on nodes (power, reboot, exec, status actions); `admin` may
/// change anything.
pub const ROLES: [&str; 3] = ["viewer", "operator", "admin"];

/// An administrator account: who may use the API, with which role. The password is stored
/// only as a slow hash, set by the head from a `password` the client sends (never listed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub last_modified: f64,
    /// One of [`ROLES`].
    #[serde(default = "default_role")]
    pub role: String,
    /// SSH public keys ("ssh-ed25519 AAAA… comment") for images to authorize.
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    /// The password's argon2id hash in PHC form; empty when the account has no password
    /// (it cannot log in). Written only by the head; never in an answer.
    #[serde(default)]
    pub password_hash: String,
    /// Tokens carry the generation they were issued at; raising it (password or role change,
    /// `wulf admin revoke`) ends every token issued before.
    #[serde(default)]
    pub token_generation: u64,
}
fn default_role() -> String {
    "viewer".to_string()
}
impl Admin {
    fn check(&self) -> Result<(), ModelError> {
        check_object_name(&self.name)?;
        one_of("role", &self.role, &ROLES)?;
        for k in &self.ssh_keys {
            let mut parts = k.split_whitespace();
            let ok = matches!(
                (parts.next(), parts.next()),
                (Some(t), Some(b)) if (t.starts_with("ssh-") || t.starts_with("ecdsa-") || t.starts_with("sk-"))
                    && b.len() >= 16
                    && b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=')
            );
            if !ok {
                return Err(ModelError::new(
                    "ssh_keys",
                    format!("'{k}' is not an SSH public key (TYPE BASE64 [COMMENT])"),
                ));
            }
        }
        if !self.password_hash.is_empty() && !self.password_hash.starts_with("$argon2") {
            return Err(ModelError::new(
                "password_hash",
                "is set by the head from a password and cannot be written",
            ));
        }
        Ok(())
    }
}
object_common!(Admin, Kind::Admin);

/// An installer repository (`wulf repo`): an ISO image the head serves file by file at
/// `/boot/repo/NAME/PATH`, or a URL it redirects there to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repo {
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub last_modified: f64,
    #[serde(default)]
    pub iso: Option<FileRef>,
    #[serde(default)]
    pub url: Option<String>,
}
impl Repo {
    fn check(&self) -> Result<(), ModelError> {
        check_object_name(&self.name)?;
        if let Some(u) = &self.url {
            if self.iso.is_some() {
                return Err(ModelError::new(
                    "url",
                    "a repo has an iso or a url, not both",
                ));
            }
            let ok = (u.starts_with("http://") || u.starts_with("https://"))
                && !u
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
            if !ok {
                return Err(ModelError::new(
                    "url",
                    format!("'{u}' is not an http:// or https:// URL"),
                ));
            }
        }
        Ok(())
    }
}
object_common!(Repo, Kind::Repo);

/// How a field is written on the command line (`key=value`) and what it holds in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Text,
    /// A text field that may be cleared (JSON null).
    OptText,
    Int,
    OptInt,
    Bool,
    /// Comma-separated on the command line, a JSON array.
    List,
    /// A file uploaded with `key=@path`.
    File,
    /// Set by the server; cannot be written.
    ReadOnly,
}

/// The writable and read-only fields of each kind, with their types. Attributes are not
/// fields: they are set with `set`/`clear`.
pub fn fields(kind: Kind) -> &'static [(&'static str, FieldType)] {
    use FieldType::*;
    const COMMON: [(&str, FieldType); 4] = [
        ("uid", ReadOnly),
        ("name", Text),
        ("description", Text),
        ("last_modified", ReadOnly),
    ];
    macro_rules! with_common {
        ($($f:expr),* $(,)?) => {{
            const F: &[(&str, FieldType)] = &[COMMON[0], COMMON[1], COMMON[2], COMMON[3], $($f),*];
            F
        }};
    }
    match kind {
        Kind::Node => with_common![
            ("index", OptInt),
            ("mac", OptText),
            ("ip", OptText),
            ("type", Text),
            ("groups", List),
            ("attributes", ReadOnly),
            ("power_uri", OptText),
            ("boot_sequence", Text),
            ("boot_stage", OptText),
            ("disk_image", OptText),
        ],
        Kind::Attrib => with_common![("attributes", ReadOnly)],
        Kind::Boot => with_common![
            ("kernel", File),
            ("initramfs", File),
            ("kickstart", File),
            ("cmdline", Text),
            ("image", OptText),
            ("boot_style", Text),
            ("frozen", Bool),
            ("release", Text),
        ],
        Kind::Image => with_common![
            ("content", File),
            ("parent", OptText),
            ("parent_sha256", ReadOnly),
            ("frozen", Bool)
        ],
        Kind::Pool => with_common![("pattern", Text), ("first_index", Int)],
        Kind::Net => with_common![
            ("first_ip", Text),
            ("ip_count", Int),
            ("mask_bits", Int),
            ("first_index", Int),
            ("router_ip", OptText),
            ("dns_ips", List),
            ("domain", Text),
            ("host_ranges", List),
        ],
        Kind::Host => with_common![("mac", OptText), ("ip", Text), ("hostnames", List)],
        Kind::Cluster => with_common![
            ("accept_new_nodes", Text),
            ("default_group", Text),
            ("log_level", Text)
        ],
        Kind::Admin => with_common![
            ("role", Text),
            ("ssh_keys", List),
            ("password_hash", ReadOnly),
            ("token_generation", ReadOnly),
        ],
        Kind::Repo => with_common![("iso", File), ("url", OptText)],
    }
}

/// The type of `field` in `kind`, if it is one.
pub fn field_type(kind: Kind, field: &str) -> Option<FieldType> {
    fields(kind)
        .iter()
        .find(|(n, _)| *n == field)
        .map(|(_, t)| *t)
}

/// True when objects of `kind` carry attributes (`set`, `clear`).
pub fn has_attributes(kind: Kind) -> bool {
    matches!(kind, Kind::Node | Kind::Attrib)
}

/// Turn a command-line `key=value` into the JSON value for the field, by the field's type.
/// An empty value clears optional fields and lists.
pub fn field_value(kind: Kind, field: &str, raw: &str) -> Result<serde_json::Value, ModelError> {
    use serde_json::Value;
    let ty = field_type(kind, field).ok_or_else(|| {
        let names: Vec<&str> = fields(kind)
            .iter()
            .filter(|(_, t)| !matches!(t, FieldType::ReadOnly))
            .map(|(n, _)| *n)
            .collect();
        ModelError::new(
            field,
            format!(
                "{} has no field '{field}' (fields: {}{})",
                kind.title(),
                names.join(", "),
                if has_attributes(kind) {
                    "; attributes are set with 'set'"
                } else {
                    ""
                }
            ),
        )
    })?;
    Ok(match ty {
        FieldType::ReadOnly => {
            return Err(ModelError::new(
                field,
                "is set by the server and cannot be written",
            ))
        }
        FieldType::File => {
            return Err(ModelError::new(
                field,
                format!("is a file: upload it with {field}=@PATH"),
            ))
        }
        FieldType::Text => Value::String(raw.to_string()),
        FieldType::OptText if raw.is_empty() => Value::Null,
        FieldType::OptText => Value::String(raw.to_string()),
        FieldType::OptInt if raw.is_empty() => Value::Null,
        FieldType::Int | FieldType::OptInt => {
            Value::from(raw.trim().parse::<u64>().map_err(|_| {
                ModelError::new(field, format!("'{raw}' is not a non-negative whole number"))
            })?)
        }
        FieldType::Bool => Value::Bool(attributes::parse_bool(raw).ok_or_else(|| {
            ModelError::new(field, format!("'{raw}' is not a boolean (true/false)"))
        })?),
        FieldType::List => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
    })
}

/// Deserialize and validate an object from JSON, turning serde's message into a field error.
pub fn from_json<T: Object>(v: serde_json::Value) -> Result<T, ModelError> {
    let obj: T = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            T::KIND.as_str().to_string()
        } else {
            path
        };
        ModelError::new(field, e.into_inner().to_string())
    })?;
    obj.validate()?;
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_names() {
        assert!(check_node_name("n0").is_ok());
        assert!(check_node_name("gpu-007").is_ok());
        for bad in [
            "12",
            "10.0.0.1",
            "52:54:00:00:00:01",
            "n[0-3]",
            "a,b",
            "",
            "-x",
            "n_1",
        ] {
            assert!(check_node_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_json() {
        let n: Node =
            from_json(json!({"name": "n1", "mac": "52:54:00:00:00:01", "index": 1})).unwrap();
        assert_eq!(n.node_type, "compute");
        assert_eq!(n.boot_sequence, "pxe");
        let e = from_json::<Node>(json!({"name": "n1", "mac": "xx"})).unwrap_err();
        assert!(e.message.contains("not a MAC"), "{e}");
        let e = from_json::<Node>(json!({"name": "n1", "colour": "red"})).unwrap_err();
        assert!(e.message.contains("unknown field `colour`"), "{e}");
        let e = from_json::<Node>(json!({"name": "n1", "attributes": {"_nope": "1"}})).unwrap_err();
        assert_eq!(e.field, "attributes._nope");
        let e = from_json::<Node>(json!({"name": "n1", "boot_sequence": "floppy"})).unwrap_err();
        assert_eq!(e.field, "boot_sequence");
    }

    #[test]
    fn networks() {
        let n: Network = from_json(json!({
            "name": "cluster", "first_ip": "10.10.0.10", "ip_count": 100, "mask_bits": 16,
            "first_index": 0, "router_ip": "10.10.0.1", "host_ranges": ["10.10.1.1-10.10.1.50"]
        }))
        .unwrap();
        assert_eq!(n.ip_for_index(0), Some("10.10.0.10".parse().unwrap()));
        assert_eq!(n.ip_for_index(99), Some("10.10.0.109".parse().unwrap()));
        assert_eq!(n.ip_for_index(100), None);
        assert_eq!(n.index_for_ip("10.10.0.15".parse().unwrap()), Some(5));
        let bad = json!({"name": "x", "first_ip": "10.10.0.10", "ip_count": 1000, "mask_bits": 24});
        assert_eq!(from_json::<Network>(bad).unwrap_err().field, "ip_count");
        let bad = json!({"name": "x", "first_ip": "10.10.0.10", "ip_count": 10, "mask_bits": 24,
            "host_ranges": ["10.10.0.15-10.10.0.30"]});
        assert_eq!(from_json::<Network>(bad).unwrap_err().field, "host_ranges");
    }

    #[test]
    fn pools() {
        let p = Pool {
            uid: String::new(),
            name: "gpu".into(),
            description: String::new(),
            last_modified: 0.0,
            pattern: "gpu{:03d}".into(),
            first_index: 1000,
        };
        assert_eq!(p.name_for(1007).as_deref(), Some("gpu007"));
        assert_eq!(p.name_for(999), None);
        let d = Pool {
            pattern: "n{}".into(),
            first_index: 0,
            name: "default".into(),
            ..p.clone()
        };
        let pools = [&d, &p];
        assert_eq!(pool_for_index(&pools, 5), Some(0));
        assert_eq!(pool_for_index(&pools, 1005), Some(1));
    }

    #[test]
    fn accept_new_nodes_reads_old_booleans_and_words() {
        let c = |v: serde_json::Value| {
            from_json::<Cluster>(json!({"name": "c", "accept_new_nodes": v}))
        };
        assert_eq!(c(json!(true)).unwrap().accept_new_nodes, "append");
        assert_eq!(c(json!(false)).unwrap().accept_new_nodes, "locked");
        assert_eq!(c(json!("Yes")).unwrap().accept_new_nodes, "append");
        assert_eq!(c(json!("insert")).unwrap().accept_new_nodes, "insert");
        let e = c(json!("sometimes")).unwrap_err();
        assert_eq!(e.field, "accept_new_nodes");
        let d = from_json::<Cluster>(json!({"name": "c"})).unwrap();
        assert_eq!(d.accept_new_nodes, "locked");
    }

    #[test]
    fn field_values() {
        assert_eq!(field_value(Kind::Node, "index", "5").unwrap(), json!(5));
        assert_eq!(field_value(Kind::Node, "index", "").unwrap(), json!(null));
        assert!(field_value(Kind::Node, "index", "-1").is_err());
        assert_eq!(
            field_value(Kind::Node, "groups", "a, b").unwrap(),
            json!(["a", "b"])
        );
        assert_eq!(
            field_value(Kind::Cluster, "accept_new_nodes", "yes").unwrap(),
            json!("yes")
        );
        assert!(field_value(Kind::Node, "uid", "x").is_err());
        assert!(field_value(Kind::Node, "colour", "x")
            .unwrap_err()
            .message
            .contains("has no field"));
        assert!(field_value(Kind::Boot, "kernel", "x")
            .unwrap_err()
            .message
            .contains("@PATH"));
    }
}

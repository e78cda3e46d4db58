//! Typed objects of any kind, and the store keys they live under.

pub mod routes;
pub mod versions;

use std::sync::Arc;

use wulf_model::{
    Admin, AttribGroup, BootConfig, Cluster, Host, Image, Kind, ModelError, Network, Node, Object,
    Pool, Repo,
};

/// Prefix of every object key: `/wulf/obj/{kind}/{uid}`.
pub const OBJ_PREFIX: &str = "/wulf/obj/";
/// Prefix of uniqueness keys: `/wulf/idx/...` → owner uid.
pub const IDX_PREFIX: &str = "/wulf/idx/";

pub fn obj_key(kind: Kind, uid: &str) -> String {
    format!("{OBJ_PREFIX}{kind}/{uid}")
}

/// An object of any kind. A boot config, the largest by far, is boxed so that every node in
/// the cache does not take its size (352 bytes against a node's 272).
#[derive(Debug, Clone)]
pub enum AnyObj {
    Node(Node),
    Attrib(AttribGroup),
    Boot(Box<BootConfig>),
    Image(Image),
    Pool(Pool),
    Net(Network),
    Host(Host),
    Cluster(Cluster),
    Admin(Admin),
    Repo(Repo),
}

macro_rules! each {
    ($self:expr, $o:ident => $e:expr) => {
        match $self {
            AnyObj::Node($o) => $e,
            AnyObj::Attrib($o) => $e,
            AnyObj::Boot($o) => $e,
            AnyObj::Image($o) => $e,
            AnyObj::Pool($o) => $e,
            AnyObj::Net($o) => $e,
            AnyObj::Host($o) => $e,
            AnyObj::Cluster($o) => $e,
            AnyObj::Admin($o) => $e,
            AnyObj::Repo($o) => $e,
        }
    };
}

impl AnyObj {
    pub fn kind(&self) -> Kind {
        match self {
            AnyObj::Node(_) => Kind::Node,
            AnyObj::Attrib(_) => Kind::Attrib,
            AnyObj::Boot(_) => Kind::Boot,
            AnyObj::Image(_) => Kind::Image,
            AnyObj::Pool(_) => Kind::Pool,
            AnyObj::Net(_) => Kind::Net,
            AnyObj::Host(_) => Kind::Host,
            AnyObj::Cluster(_) => Kind::Cluster,
            AnyObj::Admin(_) => Kind::Admin,
            AnyObj::Repo(_) => Kind::Repo,
        }
    }
    pub fn uid(&self) -> &str {
        each!(self, o => o.uid())
    }
    pub fn name(&self) -> &str {
        each!(self, o => o.name())
    }
    pub fn to_json(&self) -> serde_json::Value {
        each!(self, o => serde_json::to_value(o).unwrap_or(serde_json::Value::Null))
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        each!(self, o => serde_json::to_vec(o).unwrap_or_default())
    }

    /// Parse and validate an object of `kind` from JSON.
    pub fn from_json(kind: Kind, v: serde_json::Value) -> Result<AnyObj, ModelError> {
        use wulf_model::from_json;
        Ok(match kind {
            Kind::Node => AnyObj::Node(from_json(v)?),
            Kind::Attrib => AnyObj::Attrib(from_json(v)?),
            Kind::Boot => AnyObj::Boot(Box::new(from_json(v)?)),
            Kind::Image => AnyObj::Image(from_json(v)?),
            Kind::Pool => AnyObj::Pool(from_json(v)?),
            Kind::Net => AnyObj::Net(from_json(v)?),
            Kind::Host => AnyObj::Host(from_json(v)?),
            Kind::Cluster => AnyObj::Cluster(from_json(v)?),
            Kind::Admin => AnyObj::Admin(from_json(v)?),
            Kind::Repo => AnyObj::Repo(from_json(v)?),
        })
    }

    /// Decode a stored object (no validation: what is stored was validated when written).
    pub fn decode(kind: Kind, bytes: &[u8]) -> Result<AnyObj, serde_json::Error> {
        Ok(match kind {
            Kind::Node => AnyObj::Node(serde_json::from_slice(bytes)?),
            Kind::Attrib => AnyObj::Attrib(serde_json::from_slice(bytes)?),
            Kind::Boot => AnyObj::Boot(serde_json::from_slice(bytes)?),
            Kind::Image => AnyObj::Image(serde_json::from_slice(bytes)?),
            Kind::Pool => AnyObj::Pool(serde_json::from_slice(bytes)?),
            Kind::Net => AnyObj::Net(serde_json::from_slice(bytes)?),
            Kind::Host => AnyObj::Host(serde_json::from_slice(bytes)?),
            Kind::Cluster => AnyObj::Cluster(serde_json::from_slice(bytes)?),
            Kind::Admin => AnyObj::Admin(serde_json::from_slice(bytes)?),
            Kind::Repo => AnyObj::Repo(serde_json::from_slice(bytes)?),
        })
    }

    pub fn as_node(&self) -> Option<&Node> {
        match self {
            AnyObj::Node(n) => Some(n),
            _ => None,
        }
    }

    /// The uniqueness keys this object holds (`/wulf/idx/...`), each owned by its uid.
    /// Names are unique per kind; MACs and IPs are unique across nodes and hosts; node
    /// indexes are unique.
    pub fn unique_keys(&self) -> Vec<String> {
        let kind = self.kind();
        let mut keys = Vec::new();
        match self {
            AnyObj::Node(n) => {
                keys.extend(n.index.map(|i| format!("{IDX_PREFIX}node/index/{i}")));
                keys.extend(n.all_macs().iter().map(|m| format!("{IDX_PREFIX}mac/{m}")));
                keys.extend(n.ip.map(|ip| format!("{IDX_PREFIX}ip/{ip}")));
            }
            AnyObj::Host(h) => {
                keys.extend(h.mac.map(|m| format!("{IDX_PREFIX}mac/{m}")));
                keys.push(format!("{IDX_PREFIX}ip/{}", h.ip));
            }
            _ => {}
        }
        keys.push(format!("{IDX_PREFIX}{kind}/name/{}", self.name()));
        keys
    }
}

/// Describe a uniqueness key for an error message: `mac 52:54:00:00:00:01`.
pub fn describe_unique_key(key: &str) -> String {
    let rest = key.strip_prefix(IDX_PREFIX).unwrap_or(key);
    let parts: Vec<&str> = rest.splitn(3, '/').collect();
    match parts.as_slice() {
        ["mac", m] => format!("MAC {m}"),
        ["ip", ip] => format!("IP {ip}"),
        [_, "index", i] => format!("index {i}"),
        [_, "name", n] => format!("name '{n}'"),
        _ => rest.to_string(),
    }
}

/// A cached object with the store revision it was last written at.
#[derive(Debug, Clone)]
pub struct Entry {
    pub obj: Arc<AnyObj>,
    pub rev: i64,
}

//! The wulf REST API: request and response types shared by `wulfd`, the `wulf` CLI and the
//! agent, and a small blocking HTTP client.
//!
//! Paths (all under `/api/v1`, all needing `Authorization: Bearer TOKEN` unless said; login,
//! tokens and roles are in [`auth`]):
//!
//! | method | path | what |
//! | --- | --- | --- |
//! | GET | `/info` | head version, store backend, revision |
//! | GET | `/{kind}?ids=SEL&fields=a,b` | list objects (all, or those `SEL` names) |
//! | POST | `/{kind}` | create one object (JSON object) or many (JSON array) |
//! | PATCH | `/{kind}?ids=SEL` or `?all=true` | apply an [`UpdateRequest`] to each object |
//! | DELETE | `/{kind}?ids=SEL` or `?all=true` | delete objects |
//! | GET | `/node/attributes?ids=SEL` | effective attributes and where each came from |
//! | GET | `/node/unknown` | MACs the DHCP server saw that belong to no node |
//! | GET | `/log?head=H&since=T&level=L&node=SEL` | head log lines ([`log::LogPage`]) |
//! | GET | `/node/status?ids=SEL` | node status derived by this head ([`status::NodeStatus`]) |
//! | POST | `/node/status` | a node's status report (bearer `node:<uid>:<cred>`, [`status::StatusReport`]) |
//! | POST | `/node/enroll` | a booting node trades its enrollment token for its credential (no bearer, [`enroll::EnrollRequest`]) |
//! | POST | `/node/power?ids=SEL` | power and soft reboot/shutdown ([`action::PowerRequest`]) |
//! | POST | `/node/exec?ids=SEL` | run a command on nodes ([`action::ExecRequest`]) |
//! | POST | `/node/orphan?ids=SEL` | make nodes orphans ([`action::ActionReply`]) |
//! | GET | `/node/commands?wait=SECS` | an agent's long poll for commands (node token, [`command::Command`]) |
//! | POST | `/node/commands/result` | an agent's result of one command (node token) |
//! | PUT | `/{kind}/{id}/files/{field}?filename=F` | upload a file (raw body, streamed) |
//! | GET | `/{kind}/{id}/files/{field}` | download it (Range supported) |
//!
//! `SEL` is a comma-separated list of names, UIDs, UID prefixes (5+ characters), and for
//! nodes MACs, IPs, indexes, hostlists (`n[0-15,20]`) and `%group`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod action;
pub mod auth;
pub mod client;
pub mod command;
pub mod enroll;
pub mod log;
pub mod status;
pub mod swarm;
pub mod tls;

pub use client::{ApiError, Client};
pub use wulf_model as model;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    /// The field or attribute at fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `GET /api/v1/info`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Info {
    pub version: String,
    pub store: String,
    pub revision: i64,
    /// The store revision of the last change to an object this head has seen (the store's
    /// `revision` also counts status and log writes).
    #[serde(default)]
    pub objects_revision: i64,
    pub head: String,
    /// The store as `wulfd --store` takes it ("etcd://host:port,…"), for a head that joins
    /// through this one (`wulfd --join URL`); absent for the embedded store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_url: Option<String>,
}

/// `PATCH /api/v1/{kind}`: changes applied to every selected object in one transaction.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    /// Fields to replace (JSON values of the field's type; null clears an optional field).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// Attributes to set (nodes and attribute groups).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set_attributes: BTreeMap<String, String>,
    /// Attributes to remove.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clear_attributes: Vec<String>,
    /// Attribute groups to join (appended in order, nodes only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub join: Vec<String>,
    /// Attribute groups to leave (nodes only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leave: Vec<String>,
}

impl UpdateRequest {
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
            && self.set_attributes.is_empty()
            && self.clear_attributes.is_empty()
            && self.join.is_empty()
            && self.leave.is_empty()
    }
}

/// `DELETE /api/v1/{kind}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deleted {
    pub deleted: Vec<String>,
}

/// `GET /api/v1/node/attributes`: one node's effective attributes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeAttributes {
    pub uid: String,
    pub name: String,
    pub attributes: BTreeMap<String, wulf_model::EffectiveAttr>,
}

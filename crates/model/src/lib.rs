//! wulf's domain model: typed objects, ids, hostlists, attribute inheritance, naming pools
//! and validation. Pure: no I/O, no clock, no randomness — callers pass those in.

pub mod attributes;
pub mod db;
pub mod error;
pub mod hostlist;
pub mod ids;
pub mod naming;
pub mod net;
pub mod objects;
pub mod secret;
pub mod status;

pub use attributes::{
    effective_attributes, parse_bool, status_secs, valid_disk, valid_sha256, AttrSource,
    EffectiveAttr, DEFAULT_STATUS_SECS,
};
pub use error::ModelError;
pub use ids::{is_uid, Kind, MacAddr};
pub use objects::*;
pub use status::{derive_state, DownReason, NodeState, StatusTimes};

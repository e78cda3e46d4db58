//! The bodies of wulf's fuzz targets. Each function takes one input as the network or a file
//! would deliver it, runs it through the same parser (and, where there is one, the same
//! decision) wulfd uses, and asserts what must hold for every input: no panic, and the
//! target's property (round trips, size limits, answers that match their questions).
//!
//! `fuzz/fuzz_targets/*.rs` (cargo-fuzz, nightly) call these; `tests/corpus.rs` replays the
//! saved corpus and the crash reproducers through them on stable, so `cargo test` catches a
//! regression. See docs/security.md, "Fuzzing".

mod config;
mod dhcp;
mod dns;
mod hostlist;
mod http;
mod json;
mod objects;
mod status;
mod tftp;

pub use config::config;
pub use dhcp::dhcp;
pub use dns::dns;
pub use hostlist::hostlist;
pub use http::http_head;
pub use objects::{objects, update};
pub use status::status;
pub use tftp::tftp;

/// A target body: one input, a panic when a property fails.
pub type Target = fn(&[u8]);

/// Every target by the name of its directory under fuzz/corpus and fuzz/artifacts.
pub const TARGETS: &[(&str, Target)] = &[
    ("dhcp", dhcp),
    ("tftp", tftp),
    ("dns", dns),
    ("http_head", http_head),
    ("hostlist", hostlist),
    ("config", config),
    ("status", status),
    ("objects", objects),
    ("update", update),
];

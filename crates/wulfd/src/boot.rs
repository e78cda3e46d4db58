//! HTTP boot: the URLs nodes are sent to, iPXE scripts rendered from boot configs and
//! effective attributes, and the files they download.

use std::net::Ipv4Addr;

use wulf_model::MacAddr;

use crate::api::App;

/// The base URL nodes reach this head's HTTP server at, as seen from `local_ip` (the head's
/// address on the interface the node's request came in on): `[boot] url` if configured.
pub fn base_url(app: &App, local_ip: Ipv4Addr) -> String {
    match &app.cfg.boot.url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => format!("http://{}:{}", local_ip, app.cfg.listen.port()),
    }
}

/// The URL of a node's iPXE boot script (what DHCP hands to iPXE as its boot file).
pub fn script_url(app: &App, local_ip: Ipv4Addr, mac: MacAddr) -> String {
    format!("{}/boot/ipxe?mac={}", base_url(app, local_ip), mac)
}

//! Where an address may go: a host (a device on the private network) belongs in its net's
//! host ranges, never in the range the net numbers nodes from; a node set to an address by
//! hand stays out of the host ranges. Checked on every write of a host, a node or a net, so
//! a later node cannot collide with a device (or a device with a node that is still to come).

use std::net::Ipv4Addr;

use wulf_model::{Host, Kind, Network};

use crate::cache::State;
use crate::db::DbError;
use crate::objects::AnyObj;

/// The nets as they will be once this transaction is written: the cache's, replaced or joined
/// by the ones the transaction writes itself.
fn nets<'a>(st: &'a State, staged: &'a [Network]) -> Vec<&'a Network> {
    let mut v: Vec<&Network> = st
        .networks()
        .into_iter()
        .filter(|n| !staged.iter().any(|s| s.uid == n.uid))
        .collect();
    v.extend(staged.iter());
    v
}

/// Refuse `obj` if it puts an address where it does not belong.
pub fn check(st: &State, obj: &AnyObj, staged: &[Network]) -> Result<(), DbError> {
    match obj {
        AnyObj::Host(h) => {
            for net in nets(st, staged) {
                host_in_net(st, h, net)?;
            }
            Ok(())
        }
        AnyObj::Node(n) => {
            let Some(ip) = n.ip else { return Ok(()) };
            for net in nets(st, staged) {
                if let Some(r) = net.host_ranges.iter().find(|r| r.contains(ip)) {
                    return Err(DbError::Conflict(format!(
                        "IP {ip} of node {} is in net {}'s host range {r}, which is kept for \
                         hosts (devices); give the node an address in the node range or none",
                        n.name, net.name
                    )));
                }
            }
            Ok(())
        }
        AnyObj::Net(net) => {
            for h in st.objects(Kind::Host).filter_map(|o| match o {
                AnyObj::Host(h) => Some(h),
                _ => None,
            }) {
                host_in_net(st, h, net).map_err(|e| {
                    DbError::Conflict(format!("net {} would misplace a host: {e}", net.name))
                })?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A host whose address is in `net`'s subnet must be outside its node range and, when the net
/// has host ranges, inside one of them.
fn host_in_net(st: &State, h: &Host, net: &Network) -> Result<(), DbError> {
    if !net.contains(h.ip) {
        return Ok(());
    }
    if let Some(range) = net.node_range().filter(|r| r.contains(h.ip)) {
        return Err(DbError::Conflict(format!(
            "IP {} of host {} is in net {}'s node range {range}: {}",
            h.ip,
            h.name,
            net.name,
            node_owner(st, net, h.ip)
        )));
    }
    if !net.host_ranges.is_empty() && !net.host_ranges.iter().any(|r| r.contains(h.ip)) {
        let ranges: Vec<String> = net.host_ranges.iter().map(|r| r.to_string()).collect();
        return Err(DbError::Conflict(format!(
            "IP {} of host {} is outside every host range of net {} ({})",
            h.ip,
            h.name,
            net.name,
            ranges.join(", ")
        )));
    }
    Ok(())
}

/// Who has, or will have, a node-range address: "it is node n5's" or "node index 5 gets it".
fn node_owner(st: &State, net: &Network, ip: Ipv4Addr) -> String {
    if let Some((Kind::Node, uid)) = st.ips.get(&ip) {
        if let Some(e) = st.get(Kind::Node, uid) {
            return format!("it is node {}'s", e.obj.name());
        }
    }
    match net.index_for_ip(ip) {
        Some(i) => match crate::db::derive_name(st, i) {
            Some(name) => format!("node index {i} ({name}) gets it"),
            None => format!("node index {i} gets it"),
        },
        None => "it is kept for nodes".to_string(),
    }
}

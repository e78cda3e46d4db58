//! MAC addresses that asked for an address while the cluster does not accept new nodes: kept
//! in memory (per head) for `GET /api/v1/node/unknown` and `wulf node unknown`.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use serde::Serialize;
use wulf_model::MacAddr;

/// At most this many are remembered; the one seen least recently is forgotten first.
const MAX_ENTRIES: usize = 4096;

/// One unknown MAC address.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UnknownMac {
    pub mac: String,
    /// The interface its last request came in on (or `relay 10.1.0.1`).
    pub interface: String,
    /// Unix seconds.
    pub first_seen: f64,
    pub last_seen: f64,
    /// DHCP requests seen from it.
    pub count: u64,
}

struct Seen {
    interface: String,
    first_seen: f64,
    last_seen: f64,
    count: u64,
}

static SEEN: LazyLock<Mutex<HashMap<MacAddr, Seen>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn lock() -> std::sync::MutexGuard<'static, HashMap<MacAddr, Seen>> {
    SEEN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Record a request from `mac`; true the first time it is seen.
pub fn record(mac: MacAddr, interface: &str, now: f64) -> bool {
    let mut m = lock();
    if let Some(s) = m.get_mut(&mac) {
        s.last_seen = now;
        s.count += 1;
        if s.interface != interface {
            s.interface = interface.to_string();
        }
        return false;
    }
    if m.len() >= MAX_ENTRIES {
        if let Some(oldest) = m
            .iter()
            .min_by(|a, b| a.1.last_seen.total_cmp(&b.1.last_seen))
            .map(|(k, _)| *k)
        {
            m.remove(&oldest);
        }
    }
    m.insert(
        mac,
        Seen {
            interface: interface.to_string(),
            first_seen: now,
            last_seen: now,
            count: 1,
        },
    );
    true
}

/// Every remembered MAC that `known` does not (or no longer) claim, oldest first. Known ones
/// are forgotten.
pub fn list(known: impl Fn(&MacAddr) -> bool) -> Vec<UnknownMac> {
    let mut m = lock();
    m.retain(|mac, _| !known(mac));
    let mut v: Vec<UnknownMac> = m
        .iter()
        .map(|(mac, s)| UnknownMac {
            mac: mac.to_string(),
            interface: s.interface.clone(),
            first_seen: s.first_seen,
            last_seen: s.last_seen,
            count: s.count,
        })
        .collect();
    v.sort_by(|a, b| {
        a.first_seen
            .total_cmp(&b.first_seen)
            .then(a.mac.cmp(&b.mac))
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_counts_and_forgets_known() {
        let a = MacAddr([2, 0, 0, 0, 0xee, 1]);
        let b = MacAddr([2, 0, 0, 0, 0xee, 2]);
        assert!(record(a, "br0", 10.0));
        assert!(!record(a, "br1", 12.0));
        assert!(record(b, "relay 10.1.0.1", 11.0));
        let mine = |v: &[UnknownMac]| {
            v.iter()
                .filter(|u| u.mac.starts_with("02:00:00:00:ee"))
                .cloned()
                .collect::<Vec<_>>()
        };
        let v = mine(&list(|_| false));
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].mac, a.to_string());
        assert_eq!(v[0].count, 2);
        assert_eq!(v[0].interface, "br1");
        assert_eq!((v[0].first_seen, v[0].last_seen), (10.0, 12.0));
        let v = mine(&list(|m| *m == a));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].mac, b.to_string());
        let _ = list(|m| *m == b);
    }
}

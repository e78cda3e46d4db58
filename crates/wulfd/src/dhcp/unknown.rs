//! MAC addresses that asked for an address while the cluster does not accept new nodes
//! (`accept_new_nodes=locked`), for `GET /api/v1/node/unknown` and `wulf node unknown`.
//!
//! Each head counts what its DHCP server sees in memory and writes it to the store under
//! `/wulf/unknown/MAC` (one JSON record per MAC: mac, interface, first_seen, last_seen,
//! count, head), so the records survive a restart and every head lists what any head saw.
//! A MAC is written when first seen, then at most every [`WRITE_EVERY`] with the requests
//! counted meanwhile added to the stored count (several heads seeing the same broadcast add
//! up). New records are written at most [`NEW_PER_SEC`] a second: a flood of random MACs is
//! counted in memory and logged, not turned into a flood of store writes. The maintaining
//! head keeps at most [`MAX_ENTRIES`] records, dropping the oldest and those that a node or
//! host now has ([`sweep`]).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use wulf_model::MacAddr;
use wulf_store::{Expect, Op, Store, StoreError, Txn};

/// At most this many are remembered (in memory, and in the store); the one seen least
/// recently is forgotten first.
pub const MAX_ENTRIES: usize = 4096;
/// Store keys: `/wulf/unknown/MAC`.
pub const PREFIX: &str = "/wulf/unknown/";
/// A MAC's record is rewritten at most this often.
pub const WRITE_EVERY: Duration = Duration::from_secs(30);
/// New records written per second, at most.
pub const NEW_PER_SEC: usize = 32;
/// Updates of known records written per second, at most (the rest wait for the next second).
const UPDATES_PER_SEC: usize = 256;
/// How often the "left out" warning is logged, at most.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Deletes per store transaction in [`sweep`] (under etcd's default --max-txn-ops, 128).
const DELETE_CHUNK: usize = 100;

/// One unknown MAC address, as `GET /api/v1/node/unknown` answers it.
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

/// One record in the store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stored {
    pub mac: String,
    pub interface: String,
    pub first_seen: f64,
    pub last_seen: f64,
    pub count: u64,
    /// The head that saw its last request.
    pub head: String,
}

struct Seen {
    interface: String,
    first_seen: f64,
    last_seen: f64,
    /// Requests not yet added to the stored count.
    pending: u64,
    /// When this head last wrote its record (None: never).
    written: Option<Instant>,
}

#[derive(Default)]
struct Mem {
    seen: HashMap<MacAddr, Seen>,
    /// New MACs not written because of [`NEW_PER_SEC`] since the last warning.
    left_out: u64,
    warned: Option<Instant>,
}

static MEM: LazyLock<Mutex<Mem>> = LazyLock::new(|| Mutex::new(Mem::default()));
/// Wakes the writer when a new MAC is seen.
static WAKE: LazyLock<tokio::sync::Notify> = LazyLock::new(tokio::sync::Notify::new);

fn lock() -> std::sync::MutexGuard<'static, Mem> {
    MEM.lock().unwrap_or_else(|p| p.into_inner())
}

fn key(mac: &MacAddr) -> String {
    format!("{PREFIX}{mac}")
}

/// Record a request from `mac`; true the first time this head sees it.
pub fn record(mac: MacAddr, interface: &str, now: f64) -> bool {
    let mut m = lock();
    if let Some(s) = m.seen.get_mut(&mac) {
        s.last_seen = now;
        s.pending += 1;
        if s.interface != interface {
            s.interface = interface.to_string();
        }
        return false;
    }
    if m.seen.len() >= MAX_ENTRIES {
        if let Some(oldest) = m
            .seen
            .iter()
            .min_by(|a, b| a.1.last_seen.total_cmp(&b.1.last_seen))
            .map(|(k, _)| *k)
        {
            m.seen.remove(&oldest);
        }
    }
    m.seen.insert(
        mac,
        Seen {
            interface: interface.to_string(),
            first_seen: now,
            last_seen: now,
            pending: 1,
            written: None,
        },
    );
    drop(m);
    WAKE.notify_one();
    true
}

/// A write due: what this head adds to a MAC's record.
struct Due {
    mac: MacAddr,
    interface: String,
    first_seen: f64,
    last_seen: f64,
    pending: u64,
    new: bool,
}

/// Take what is due now: new MACs (at most `budget`), and MACs last written
/// [`WRITE_EVERY`] ago that were seen since (at most [`UPDATES_PER_SEC`]).
fn take_due(now: Instant, budget: usize) -> Vec<Due> {
    let mut m = lock();
    let mut new: Vec<(&MacAddr, &Seen)> = m
        .seen
        .iter()
        .filter(|(_, s)| s.written.is_none() && s.pending > 0)
        .collect();
    new.sort_by(|a, b| a.1.first_seen.total_cmp(&b.1.first_seen));
    let left_out = new.len().saturating_sub(budget) as u64;
    let mut macs: Vec<MacAddr> = new.iter().take(budget).map(|(k, _)| **k).collect();
    macs.extend(
        m.seen
            .iter()
            .filter(|(_, s)| {
                s.pending > 0
                    && s.written
                        .is_some_and(|t| now.duration_since(t) >= WRITE_EVERY)
            })
            .take(UPDATES_PER_SEC)
            .map(|(k, _)| *k),
    );
    if left_out > 0 {
        // Counted once per MAC: those left out stay new and are counted again next second
        // only if still left out, so the warning reports the largest backlog seen.
        m.left_out = m.left_out.max(left_out);
    }
    let mut out = Vec::with_capacity(macs.len());
    for mac in macs {
        if let Some(s) = m.seen.get_mut(&mac) {
            out.push(Due {
                mac,
                interface: s.interface.clone(),
                first_seen: s.first_seen,
                last_seen: s.last_seen,
                pending: s.pending,
                new: s.written.is_none(),
            });
            s.pending = 0;
            s.written = Some(now);
        }
    }
    if m.left_out > 0 && m.warned.is_none_or(|t| now.duration_since(t) >= WARN_EVERY) {
        tracing::warn!(
            left_out = m.left_out,
            "DHCP: {} unknown MACs were not written to the store (at most {NEW_PER_SEC} new \
             ones a second); they are counted in this head's memory",
            m.left_out
        );
        m.left_out = 0;
        m.warned = Some(now);
    }
    out
}

/// A write failed: count its requests again and retry later.
fn put_back(d: &Due) {
    let mut m = lock();
    if let Some(s) = m.seen.get_mut(&d.mac) {
        s.pending += d.pending;
        if d.new {
            s.written = None;
        }
    }
}

/// Add `d` to the stored record (read, merge, write if unchanged meanwhile).
async fn write(store: &dyn Store, head: &str, d: &Due) -> Result<(), StoreError> {
    let k = key(&d.mac);
    let mut last = None;
    for _ in 0..4 {
        let cur = store.get(&k).await?;
        let old = cur
            .as_ref()
            .and_then(|kv| serde_json::from_slice::<Stored>(&kv.value).ok());
        let mut rec = old.unwrap_or(Stored {
            mac: d.mac.to_string(),
            interface: d.interface.clone(),
            first_seen: d.first_seen,
            last_seen: d.last_seen,
            count: 0,
            head: head.to_string(),
        });
        rec.count = rec.count.saturating_add(d.pending);
        rec.first_seen = rec.first_seen.min(d.first_seen);
        if d.last_seen >= rec.last_seen {
            rec.last_seen = d.last_seen;
            rec.interface = d.interface.clone();
            rec.head = head.to_string();
        }
        let expect = match &cur {
            Some(kv) => Expect::ModRevision(kv.mod_revision),
            None => Expect::Absent,
        };
        let bytes = serde_json::to_vec(&rec).unwrap_or_default();
        match store.put(&k, bytes, expect).await {
            Ok(_) => return Ok(()),
            Err(e @ StoreError::Conflict { .. }) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or(StoreError::Conflict { key: k }))
}

/// Write what is due, once; returns how many records were written.
async fn flush(store: &dyn Store, head: &str, now: Instant, budget: usize) -> usize {
    let due = take_due(now, budget);
    let mut n = 0;
    let mut failed = None;
    for d in &due {
        if failed.is_some() {
            put_back(d);
            continue;
        }
        match write(store, head, d).await {
            Ok(()) => n += 1,
            Err(e) => {
                put_back(d);
                failed = Some(e);
            }
        }
    }
    if let Some(e) = failed {
        tracing::warn!(error = %e, "DHCP: cannot write unknown MACs to the store; will retry");
    }
    n
}

/// The writer: new MACs at once (at most [`NEW_PER_SEC`] a second), the counts of the others
/// every [`WRITE_EVERY`]; everything pending when cancelled.
pub async fn run_writer(store: std::sync::Arc<dyn Store>, head: String, cancel: CancellationToken) {
    let mut second = Instant::now();
    let mut used = 0usize;
    loop {
        let stop = tokio::select! {
            _ = cancel.cancelled() => true,
            _ = WAKE.notified() => false,
            _ = tokio::time::sleep(Duration::from_secs(1)) => false,
        };
        let now = Instant::now();
        if now.duration_since(second) >= Duration::from_secs(1) {
            second = now;
            used = 0;
        }
        let budget = NEW_PER_SEC.saturating_sub(used);
        used += flush(store.as_ref(), &head, now, budget).await.min(budget);
        if stop {
            return;
        }
        if used >= NEW_PER_SEC {
            // This second's budget is spent: wait for the next one.
            let rest = Duration::from_secs(1).saturating_sub(second.elapsed());
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(rest) => {}
            }
        }
    }
}

/// What this head saw and has not written yet (added to the stored records when listing).
fn unwritten() -> Vec<Stored> {
    lock()
        .seen
        .iter()
        .filter(|(_, s)| s.pending > 0)
        .map(|(mac, s)| Stored {
            mac: mac.to_string(),
            interface: s.interface.clone(),
            first_seen: s.first_seen,
            last_seen: s.last_seen,
            count: s.pending,
            head: String::new(),
        })
        .collect()
}

/// Merge stored records with this head's unwritten counts; drop those `known` claims;
/// oldest first.
fn merge(
    stored: Vec<Stored>,
    mine: Vec<Stored>,
    known: impl Fn(&MacAddr) -> bool,
) -> Vec<UnknownMac> {
    let mut by: HashMap<MacAddr, UnknownMac> = HashMap::new();
    for r in stored.into_iter().chain(mine) {
        let Ok(mac) = r.mac.parse::<MacAddr>() else {
            continue;
        };
        if known(&mac) {
            continue;
        }
        match by.get_mut(&mac) {
            Some(u) => {
                u.count = u.count.saturating_add(r.count);
                u.first_seen = u.first_seen.min(r.first_seen);
                if r.last_seen >= u.last_seen {
                    u.last_seen = r.last_seen;
                    u.interface = r.interface;
                }
            }
            None => {
                by.insert(
                    mac,
                    UnknownMac {
                        mac: mac.to_string(),
                        interface: r.interface,
                        first_seen: r.first_seen,
                        last_seen: r.last_seen,
                        count: r.count,
                    },
                );
            }
        }
    }
    let mut v: Vec<UnknownMac> = by.into_values().collect();
    v.sort_by(|a, b| {
        a.first_seen
            .total_cmp(&b.first_seen)
            .then(a.mac.cmp(&b.mac))
    });
    v
}

/// Every unknown MAC any head recorded, with this head's unwritten counts, minus those
/// `known` claims (which this head forgets), oldest first.
pub async fn list(
    store: &dyn Store,
    known: impl Fn(&MacAddr) -> bool,
) -> Result<Vec<UnknownMac>, StoreError> {
    let (kvs, _) = store.list(PREFIX).await?;
    let stored: Vec<Stored> = kvs
        .iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect();
    lock().seen.retain(|mac, _| !known(mac));
    Ok(merge(stored, unwritten(), known))
}

/// On the maintaining head: delete the records of MACs a node or host now has (`known`),
/// and the oldest beyond [`MAX_ENTRIES`]. Returns how many were deleted.
pub async fn sweep(
    store: &dyn Store,
    known: impl Fn(&MacAddr) -> bool,
) -> Result<usize, StoreError> {
    let (kvs, _) = store.list(PREFIX).await?;
    let mut keep: Vec<(f64, String)> = Vec::new();
    let mut gone: Vec<String> = Vec::new();
    for kv in kvs {
        let rec = serde_json::from_slice::<Stored>(&kv.value).ok();
        let mac = kv
            .key
            .strip_prefix(PREFIX)
            .and_then(|m| m.parse::<MacAddr>().ok());
        match (rec, mac) {
            (Some(r), Some(mac)) if !known(&mac) => keep.push((r.last_seen, kv.key)),
            _ => gone.push(kv.key),
        }
    }
    if keep.len() > MAX_ENTRIES {
        keep.sort_by(|a, b| a.0.total_cmp(&b.0));
        let extra = keep.len() - MAX_ENTRIES;
        gone.extend(keep.drain(..extra).map(|(_, k)| k));
    }
    let n = gone.len();
    for chunk in gone.chunks(DELETE_CHUNK) {
        let txn = Txn {
            compares: Vec::new(),
            ops: chunk
                .iter()
                .map(|key| Op::Delete { key: key.clone() })
                .collect(),
        };
        store.txn(txn).await?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(mac: &str, first: f64, last: f64, count: u64, iface: &str) -> Stored {
        Stored {
            mac: mac.into(),
            interface: iface.into(),
            first_seen: first,
            last_seen: last,
            count,
            head: "h".into(),
        }
    }

    #[test]
    fn merges_counts_and_forgets_known() {
        let a = "02:00:00:00:ee:01";
        let b = "02:00:00:00:ee:02";
        let v = merge(
            vec![
                rec(a, 10.0, 11.0, 3, "br0"),
                rec(b, 11.0, 11.0, 1, "relay 10.1.0.1"),
            ],
            vec![rec(a, 9.0, 12.0, 2, "br1")],
            |_| false,
        );
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].mac, a);
        assert_eq!(v[0].count, 5);
        assert_eq!(v[0].interface, "br1");
        assert_eq!((v[0].first_seen, v[0].last_seen), (9.0, 12.0));
        let am: MacAddr = a.parse().unwrap();
        let v = merge(vec![rec(a, 10.0, 11.0, 3, "br0")], vec![], |m| *m == am);
        assert!(v.is_empty());
    }

    #[test]
    fn new_macs_are_due_within_the_budget() {
        let now = Instant::now();
        for i in 0..5u8 {
            record(MacAddr([2, 0, 0, 0, 0xef, i]), "br0", 100.0 + f64::from(i));
        }
        let mine = |v: &[Due]| v.iter().filter(|d| d.mac.0[4] == 0xef).count();
        let due = take_due(now, 2);
        assert!(mine(&due) <= 2);
        // A MAC written just now is not due again before WRITE_EVERY.
        record(MacAddr([2, 0, 0, 0, 0xef, 0]), "br0", 200.0);
        let later = take_due(now, 100);
        assert!(!later
            .iter()
            .any(|d| d.mac == MacAddr([2, 0, 0, 0, 0xef, 0])));
        let _ = list_sync_forget(|m| m.0[4] == 0xef);
    }

    fn list_sync_forget(known: impl Fn(&MacAddr) -> bool) -> usize {
        let mut m = lock();
        let before = m.seen.len();
        m.seen.retain(|mac, _| !known(mac));
        before - m.seen.len()
    }
}

//! Node status intake: reports from `wulf-agent` (and `wulf sim`), boot times from the boot
//! script handler, and the state derived from them when someone asks.
//!
//! Status is not configuration. It lives in memory here, keyed by node UID, and is written to
//! its own key space in the store by a background flusher in batches (one transaction per
//! flush, not one per report), so that 10,000 reports a second do not make the database the
//! bottleneck. Two keys per node:
//!
//! - `/wulf/status/hb/<uid>`: the heartbeat (receive times, uptime, load, RAM, busy, agent
//!   cost): small, rewritten at every flush that saw a report from the node;
//! - `/wulf/status/info/<uid>`: address, hostname, kernel, cmdline, modules, SELinux,
//!   hardware: rewritten only when one of them changed.
//!
//! A report is answered before it is flushed: a head that dies loses at most the last flush
//! interval of heartbeats, which the nodes' next reports replace. State ("down" above all) is
//! never written: it is derived from the receiving head's clock at read time
//! ([`wulf_model::derive_state`]).

mod compact;
pub mod routes;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use wulf_api::status::{NodeStatus, ReportState, StatusReport};
use wulf_model::{derive_state, DownReason, NodeState, StatusTimes};
use wulf_store::{Op, Store, StoreError, Txn};

use crate::cache::State as CacheState;
pub use compact::InfoRecord;
use compact::{Agent, Info, Pool};

pub const STATUS_PREFIX: &str = "/wulf/status/";
const HB_PREFIX: &str = "/wulf/status/hb/";
const INFO_PREFIX: &str = "/wulf/status/info/";

use wulf_model::DEFAULT_STATUS_SECS;

/// Nodes read per hold of the status lock when answering a status request.
const VIEW_CHUNK: usize = 2048;

/// Writes per store transaction when flushing, at most (fewer once the store refused a
/// transaction this large: see [`Status::flush`]).
const FLUSH_CHUNK: usize = 20_000;
/// Bytes per store transaction when flushing to a shared store: fits etcd's default
/// `--max-request-bytes` (1.5 MiB).
const FLUSH_BYTES: usize = 1 << 20;

/// The frequently changing part of a node's status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The head that received the last report or boot (shared: a few heads, many nodes).
    #[serde(default)]
    pub head: Arc<str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booted_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_ms: Option<i64>,
    #[serde(default)]
    pub interval_secs: u32,
    #[serde(default)]
    pub shutdown: bool,
    /// The last report said the node became an orphan on request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub orphan: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime: Option<f64>,
    #[serde(default)]
    pub busy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<[f32; 3]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_free: Option<u64>,
    /// Kept in memory only: it changes with every report and matters only while the node
    /// runs.
    #[serde(skip)]
    pub agent: Option<Agent>,
}

#[derive(Default)]
struct Entry {
    hb: Heartbeat,
    info: Arc<Info>,
    /// The heartbeat differs from the stored one.
    hb_dirty: bool,
    /// ... in a way that changes the node's state (boot, first report after a boot,
    /// shutdown, interval or busy change): write it at the next flush.
    hb_urgent: bool,
    info_dirty: bool,
    /// When the stored heartbeat was last written (unix ms).
    persisted_ms: i64,
}

impl Entry {
    /// Mark what must be written (heartbeat, urgently or not; info). Returns true when the
    /// entry was clean before, i.e. its UID must join the dirty list.
    fn mark(&mut self, hb: bool, urgent: bool, info: bool) -> bool {
        let was_clean = !self.hb_dirty && !self.info_dirty;
        self.hb_dirty |= hb;
        self.hb_urgent |= urgent;
        self.info_dirty |= info;
        was_clean
    }
}

#[derive(Default)]
struct Inner {
    /// By UID; the key is shared with [`Inner::dirty`]. Boxed: the table then holds 24 bytes
    /// a node instead of ~230, and growing it (which holds the old and the new table at
    /// once) costs 100,000 nodes a few MiB, not 45.
    nodes: HashMap<Arc<str>, Box<Entry>>,
    /// UIDs with something to flush.
    dirty: Vec<Arc<str>>,
    /// What many nodes' status shares, each kept once.
    pool: Pool,
}

/// Node `uid`'s entry (made if new) and its shared key.
fn entry<'a>(nodes: &'a mut HashMap<Arc<str>, Box<Entry>>, uid: &str) -> (Arc<str>, &'a mut Entry) {
    let key = match nodes.get_key_value(uid) {
        Some((k, _)) => k.clone(),
        None => Arc::from(uid),
    };
    let e = nodes.entry(key.clone()).or_default();
    (key, &mut **e)
}

/// How much of a node's status to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Detail {
    /// State, reason, times.
    State,
    /// + heartbeat fields (load, RAM, busy, head, agent cost) and the reported address.
    Heartbeat,
    /// + hostname, kernel, cmdline, modules, SELinux, hardware.
    Full,
}

/// This head's view of node status.
pub struct Status {
    head: Arc<str>,
    /// `_boot_timeout` of nodes that do not set it (`[boot] timeout_secs`).
    boot_timeout: u32,
    /// How stale another head's stored heartbeats may be (its persist interval + a flush).
    remote_slack_ms: std::sync::atomic::AtomicI64,
    /// Writes per flush transaction: [`FLUSH_CHUNK`], halved each time the store refuses a
    /// transaction as too large (etcd's `--max-txn-ops`, 128 by default).
    flush_chunk: std::sync::atomic::AtomicUsize,
    inner: Mutex<Inner>,
    /// Counts changes (reports, boots); `wulf node status --refresh` waits on it.
    changes: tokio::sync::watch::Sender<u64>,
}

/// What the head refuses in a report before taking it in: numbers its stored heartbeat could
/// not hold (a load that overflows `f32` becomes infinite, is stored as JSON `null`, and the
/// heartbeat would no longer read back at start or on another head).
pub fn check_report(r: &StatusReport) -> Result<(), String> {
    if !r.uptime_secs.is_finite() {
        return Err("uptime_secs must be a finite number".into());
    }
    if !r.load.iter().all(|l| l.is_finite()) {
        return Err(format!(
            "load must be three finite numbers, not {:?}",
            r.load
        ));
    }
    if let Some(ip) = &r.ip {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("ip {ip:?} is not an IP address"));
        }
    }
    Ok(())
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Status {
    pub fn new(head: String, boot_timeout: u32) -> Arc<Status> {
        Arc::new(Status {
            head: Arc::from(head),
            boot_timeout,
            remote_slack_ms: std::sync::atomic::AtomicI64::new(0),
            flush_chunk: std::sync::atomic::AtomicUsize::new(FLUSH_CHUNK),
            inner: Mutex::new(Inner::default()),
            changes: tokio::sync::watch::channel(0).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// The change counter and a receiver to wait for the next change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Read what the store holds (at start).
    /// Returns the nodes with a status and the store revision read at.
    pub async fn load(&self, store: &dyn Store) -> Result<(usize, i64), StoreError> {
        let (kvs, revision) = store.list(STATUS_PREFIX).await?;
        let mut inner = self.lock();
        let mut n = 0;
        for kv in kvs {
            if let Some(uid) = kv.key.strip_prefix(HB_PREFIX) {
                match serde_json::from_slice::<Heartbeat>(&kv.value) {
                    Ok(mut hb) => {
                        hb.head = inner.pool.str(&hb.head);
                        let e = entry(&mut inner.nodes, uid).1;
                        e.hb = hb;
                        e.persisted_ms = now_ms();
                        n += 1;
                    }
                    Err(e) => {
                        tracing::warn!(key = %kv.key, error = %e, "unreadable status record ignored")
                    }
                }
            } else if let Some(uid) = kv.key.strip_prefix(INFO_PREFIX) {
                match serde_json::from_slice::<InfoRecord>(&kv.value) {
                    Ok(record) => {
                        let Inner { nodes, pool, .. } = &mut *inner;
                        entry(nodes, uid).1.info = Arc::new(pool.info(record))
                    }
                    Err(e) => {
                        tracing::warn!(key = %kv.key, error = %e, "unreadable status record ignored")
                    }
                }
            }
        }
        Ok((n, revision))
    }

    /// The node was served its boot script now.
    pub fn booted(&self, uid: &str) {
        crate::metrics::get().boot();
        let now = now_ms();
        {
            let mut inner = self.lock();
            let (key, e) = entry(&mut inner.nodes, uid);
            e.hb.booted_ms = Some(now);
            e.hb.head = self.head.clone();
            if e.mark(true, true, false) {
                inner.dirty.push(key);
            }
        }
        self.changed();
    }

    /// Allow another head's stored heartbeats to be this stale (its persist interval).
    pub fn set_remote_slack(&self, slack: Duration) {
        self.remote_slack_ms.store(
            i64::try_from(slack.as_millis()).unwrap_or(i64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Take in what another head stored (seen through the store's watch). Our own writes
    /// and anything older than what this head knows are ignored.
    pub fn apply_remote(&self, key: &str, value: &[u8]) {
        let mut changed = false;
        {
            let mut inner = self.lock();
            let Inner { nodes, pool, .. } = &mut *inner;
            if let Some(uid) = key.strip_prefix(HB_PREFIX) {
                let Ok(mut hb) = serde_json::from_slice::<Heartbeat>(value) else {
                    return;
                };
                if hb.head == self.head {
                    return;
                }
                hb.head = pool.str(&hb.head);
                let e = entry(nodes, uid).1;
                let latest = |h: &Heartbeat| h.report_ms.max(h.booted_ms);
                if latest(&hb) > latest(&e.hb) {
                    let agent = e.hb.agent.take();
                    e.hb = hb;
                    e.hb.agent = agent;
                    changed = true;
                }
            } else if let Some(uid) = key.strip_prefix(INFO_PREFIX) {
                let Ok(record) = serde_json::from_slice::<InfoRecord>(value) else {
                    return;
                };
                let e = entry(nodes, uid).1;
                // Info follows whoever received the node's latest report.
                if e.hb.head != self.head && !e.info_dirty {
                    e.info = Arc::new(pool.info(record));
                    changed = true;
                }
            }
        }
        if changed {
            self.changed();
        }
    }

    /// Take in a report from node `uid` (already authenticated).
    pub fn report(&self, uid: &str, r: StatusReport) {
        crate::metrics::get().status_report();
        let now = now_ms();
        {
            let mut inner = self.lock();
            let Inner { nodes, dirty, pool } = &mut *inner;
            let (key, e) = entry(nodes, uid);
            let hb = &mut e.hb;
            let shutdown = r.state == ReportState::Shutdown;
            let orphan = r.state == ReportState::Orphan;
            let urgent = match (hb.report_ms, hb.booted_ms) {
                (None, _) => true,
                (Some(rep), Some(boot)) if boot > rep => true,
                _ => {
                    hb.shutdown != shutdown
                        || hb.orphan != orphan
                        || hb.interval_secs != r.interval_secs
                        || hb.busy != r.busy
                }
            };
            if hb.head != self.head {
                hb.head = self.head.clone();
            }
            hb.report_ms = Some(now);
            hb.interval_secs = r.interval_secs;
            hb.shutdown = shutdown;
            hb.orphan = orphan;
            if let Some(id) = r.boot_id {
                if hb.boot_id.as_deref() != Some(id.as_str()) {
                    hb.boot_id = Some(id.into_boxed_str());
                }
            }
            hb.uptime = Some(r.uptime_secs);
            hb.busy = r.busy;
            hb.load = Some(r.load);
            hb.ram_total = Some(r.ram_total);
            hb.ram_free = Some(r.ram_free);
            if let Some(a) = r.agent {
                let version = match hb.agent.take() {
                    // The same version as before: no lookup.
                    Some(old) if *old.version == *a.version => old.version,
                    _ => pool.str(&a.version),
                };
                hb.agent = Some(Agent::new(version, &a));
            }
            let i = &e.info;
            let differs = |new: &Option<String>, old: Option<&str>| {
                new.as_deref().is_some_and(|n| Some(n) != old)
            };
            let hardware = r.hardware.map(|h| pool.hardware(h));
            let info_changed = differs(&r.ip, i.ip.as_deref())
                || differs(&r.hostname, i.hostname.as_deref())
                || differs(&r.kernel, i.kernel.as_deref())
                || differs(&r.cmdline, i.cmdline.as_deref())
                || (r.modules.is_some() && r.modules.as_ref() != i.modules.as_deref())
                || differs(&r.selinux, i.selinux.as_deref())
                || (hardware.is_some() && hardware != i.hardware);
            if info_changed {
                let old = &e.info;
                e.info = Arc::new(Info {
                    ip: r.ip.map(String::into_boxed_str).or_else(|| old.ip.clone()),
                    hostname: r
                        .hostname
                        .map(String::into_boxed_str)
                        .or_else(|| old.hostname.clone()),
                    kernel: match r.kernel {
                        Some(k) => Some(pool.str(&k)),
                        None => old.kernel.clone(),
                    },
                    cmdline: r
                        .cmdline
                        .map(String::into_boxed_str)
                        .or_else(|| old.cmdline.clone()),
                    modules: match r.modules {
                        Some(m) => Some(pool.modules(m)),
                        None => old.modules.clone(),
                    },
                    selinux: match r.selinux {
                        Some(v) => Some(pool.str(&v)),
                        None => old.selinux.clone(),
                    },
                    hardware: hardware.or_else(|| old.hardware.clone()),
                });
            }
            if e.mark(true, urgent, info_changed) {
                dirty.push(key);
            }
        }
        self.changed();
    }

    /// A node's last heartbeat as this head knows it.
    pub fn heartbeat(&self, uid: &str) -> Option<Heartbeat> {
        self.lock().nodes.get(uid).map(|e| e.hb.clone())
    }

    /// The receive times a node's state derives from.
    #[cfg(test)]
    pub fn times(&self, uid: &str) -> StatusTimes {
        let inner = self.lock();
        inner
            .nodes
            .get(uid)
            .map(|e| times(&e.hb))
            .unwrap_or_default()
    }

    /// A node's receive times and the state they give at `now`.
    fn derive(
        &self,
        st: &CacheState,
        node: &wulf_model::Node,
        hb: Option<&Heartbeat>,
        now: i64,
        slack: i64,
    ) -> (StatusTimes, NodeState, Option<DownReason>) {
        let t = hb
            .map(|h| times_with(h, &self.head, slack))
            .unwrap_or_default();
        let (state, reason) = derive_state(&t, now, boot_timeout(st, node, self.boot_timeout));
        (t, state, reason)
    }

    /// Status of the given nodes (in that order), derived now.
    pub fn view(&self, st: &CacheState, uids: &[String], detail: Detail) -> Vec<NodeStatus> {
        let mut out = Vec::with_capacity(uids.len());
        self.view_each(st, uids, detail, now_ms(), |s| out.push(s));
        out
    }

    /// Status of the given nodes (in that order) as derived at `now`, one at a time to `f`
    /// (nodes that no longer exist left out).
    pub fn view_each(
        &self,
        st: &CacheState,
        uids: &[String],
        detail: Detail,
        now: i64,
        mut f: impl FnMut(NodeStatus),
    ) {
        let slack = self
            .remote_slack_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        // In chunks, so reports are not held up behind a view of 100,000 nodes.
        for chunk in uids.chunks(VIEW_CHUNK) {
            let inner = self.lock();
            for uid in chunk {
                let Some(node) = st
                    .get(wulf_model::Kind::Node, uid)
                    .and_then(|e| e.obj.as_node())
                else {
                    continue;
                };
                let entry = inner.nodes.get(uid.as_str());
                let hb = entry.map(|e| &e.hb);
                let (t, state, reason) = self.derive(st, node, hb, now, slack);
                let mut s = NodeStatus {
                    uid: uid.clone(),
                    name: node.name.clone(),
                    index: node.index.unwrap_or_default(),
                    state: state.as_str().to_string(),
                    down_reason: reason.map(|r| r.as_str().to_string()),
                    last_modified: last_change(&t).map(|m| m as f64 / 1000.0),
                    last_modified_secs: last_change(&t).map(|m| (now - m).max(0) as f64 / 1000.0),
                    last_report_ms: t.report_ms,
                    booted_ms: t.booted_ms,
                    ..Default::default()
                };
                if let Some(hb) = hb {
                    s.last_uptime = hb.uptime;
                    s.interval_secs = (hb.interval_secs > 0).then_some(hb.interval_secs);
                    if detail >= Detail::Heartbeat {
                        s.head = (!hb.head.is_empty()).then(|| hb.head.to_string());
                        s.busy = hb.busy;
                        s.load = hb.load;
                        s.ram_total = hb.ram_total;
                        s.ram_free = hb.ram_free;
                        s.agent = hb.agent.as_ref().map(Agent::cost);
                    }
                }
                let text = |v: &Option<Box<str>>| v.as_deref().map(str::to_string);
                let shared = |v: &Option<Arc<str>>| v.as_deref().map(str::to_string);
                if let (Some(e), true) = (entry, detail >= Detail::Heartbeat) {
                    s.ip = text(&e.info.ip);
                }
                if let (Some(e), Detail::Full) = (entry, detail) {
                    let i = &e.info;
                    s.hostname = text(&i.hostname);
                    s.kernel = shared(&i.kernel);
                    s.cmdline = text(&i.cmdline);
                    s.modules = i.modules.as_deref().cloned();
                    s.selinux = shared(&i.selinux);
                    s.hardware = i.hardware.as_ref().map(compact::Hw::hardware);
                }
                f(s);
            }
        }
    }

    /// (state, down reason, node name) of the given nodes, derived now — for summaries.
    pub fn states(
        &self,
        st: &CacheState,
        uids: &[String],
    ) -> Vec<(NodeState, Option<DownReason>, String)> {
        let now = now_ms();
        let slack = self
            .remote_slack_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut out = Vec::with_capacity(uids.len());
        for chunk in uids.chunks(VIEW_CHUNK) {
            let inner = self.lock();
            out.extend(chunk.iter().filter_map(|uid| {
                let node = st
                    .get(wulf_model::Kind::Node, uid)
                    .and_then(|e| e.obj.as_node())?;
                let hb = inner.nodes.get(uid.as_str()).map(|e| &e.hb);
                let (_, s, r) = self.derive(st, node, hb, now, slack);
                Some((s, r, node.name.clone()))
            }));
        }
        out
    }

    /// Take what needs writing: (key, value) pairs, about `max` of them (at most `max + 1`);
    /// the nodes not looked at stay dirty for the next call. A heartbeat that changed only in
    /// routine ways (a later receive time, new load and RAM figures) is written at most every
    /// `persist_ms`; everything, with `all`.
    fn take_dirty(&self, persist_ms: i64, all: bool, max: usize) -> Vec<(String, Vec<u8>)> {
        let now = now_ms();
        let mut inner = self.lock();
        let dirty = std::mem::take(&mut inner.dirty);
        let mut keep = Vec::new();
        let mut hbs = Vec::new();
        let mut infos = Vec::new();
        let mut rest = dirty.into_iter();
        for uid in rest.by_ref() {
            if hbs.len() + infos.len() >= max {
                keep.push(uid);
                break;
            }
            let Some(e) = inner.nodes.get_mut(&uid) else {
                continue;
            };
            let hb_due = e.hb_dirty && (all || e.hb_urgent || now - e.persisted_ms >= persist_ms);
            if hb_due {
                hbs.push((uid.clone(), e.hb.clone()));
                e.hb_dirty = false;
                e.hb_urgent = false;
                e.persisted_ms = now;
            }
            if e.info_dirty {
                infos.push((uid.clone(), e.info.clone()));
                e.info_dirty = false;
            }
            if e.hb_dirty {
                keep.push(uid);
            }
        }
        // Not looked at yet first, so the next call starts with them.
        let mut next: Vec<Arc<str>> = rest.collect();
        next.append(&mut keep);
        next.append(&mut inner.dirty);
        inner.dirty = next;
        drop(inner);
        let mut out = Vec::with_capacity(hbs.len() + infos.len());
        for (uid, hb) in hbs {
            if let Ok(v) = serde_json::to_vec(&hb) {
                out.push((format!("{HB_PREFIX}{uid}"), v));
            }
        }
        for (uid, info) in infos {
            if let Ok(v) = serde_json::to_vec(&info.record()) {
                out.push((format!("{INFO_PREFIX}{uid}"), v));
            }
        }
        out
    }

    /// Mark nodes dirty again after a failed flush.
    fn redirty(&self, keys: &[(String, Vec<u8>)]) {
        let mut inner = self.lock();
        for (key, _) in keys {
            let (uid, info) = match (key.strip_prefix(HB_PREFIX), key.strip_prefix(INFO_PREFIX)) {
                (Some(u), _) => (u, false),
                (_, Some(u)) => (u, true),
                _ => continue,
            };
            let Some(e) = inner.nodes.get_mut(uid) else {
                continue;
            };
            if e.mark(!info, !info, info) {
                let key = entry(&mut inner.nodes, uid).0;
                inner.dirty.push(key);
            }
        }
    }

    /// Forget node `uid`'s status (its hardware was replaced); returns the store keys to
    /// delete.
    pub fn forget(&self, uid: &str) -> Vec<String> {
        let had = {
            let mut inner = self.lock();
            let had = inner.nodes.remove(uid).is_some();
            inner.dirty.retain(|u| &**u != uid);
            inner.pool.prune();
            had
        };
        if had {
            self.changed();
        }
        vec![format!("{HB_PREFIX}{uid}"), format!("{INFO_PREFIX}{uid}")]
    }

    /// Another head deleted a status key: forget what this head holds of that node.
    fn apply_remote_delete(&self, key: &str) {
        if let Some(uid) = key.strip_prefix(HB_PREFIX) {
            if self.lock().nodes.remove(uid).is_some() {
                self.changed();
            }
        }
    }

    /// Forget nodes that no longer exist; returns the store keys to delete.
    fn forget_missing(&self, exists: impl Fn(&str) -> bool) -> Vec<String> {
        let mut inner = self.lock();
        let gone: Vec<Arc<str>> = inner.nodes.keys().filter(|u| !exists(u)).cloned().collect();
        for uid in &gone {
            inner.nodes.remove(uid);
        }
        inner.pool.prune();
        inner.dirty.retain(|u| exists(u));
        gone.iter()
            .flat_map(|u| [format!("{HB_PREFIX}{u}"), format!("{INFO_PREFIX}{u}")])
            .collect()
    }

    /// Write what is due (see [`Status::take_dirty`]); everything with `all`. Taken and
    /// written [`FLUSH_CHUNK`] records at a time: the first flush after 100,000 nodes
    /// booted writes 200,000 records, and serialising them all at once held ~90 MB.
    pub async fn flush(
        &self,
        store: &dyn Store,
        persist_ms: i64,
        all: bool,
    ) -> Result<usize, StoreError> {
        // Enough rounds for every node dirty now (a heartbeat and an info record each);
        // reports that arrive meanwhile may wait for the next flush.
        let rounds = self.lock().dirty.len() * 2 / FLUSH_CHUNK + 2;
        let mut written = 0;
        for _ in 0..rounds {
            let batch = self.take_dirty(persist_ms, all, FLUSH_CHUNK);
            if batch.is_empty() {
                break;
            }
            written += self.write(store, batch).await?;
        }
        Ok(written)
    }

    /// Write `batch` in transactions the store takes; on a failure what was not written is
    /// dirty again.
    async fn write(
        &self,
        store: &dyn Store,
        batch: Vec<(String, Vec<u8>)>,
    ) -> Result<usize, StoreError> {
        let n = batch.len();
        let max_bytes = if !store.shared() {
            usize::MAX
        } else {
            FLUSH_BYTES
        };
        let mut done = 0;
        while done < n {
            let limit = self
                .flush_chunk
                .load(std::sync::atomic::Ordering::Relaxed)
                .max(1);
            let mut end = done;
            let mut bytes = 0;
            while end < n && end - done < limit {
                let (k, v) = &batch[end];
                if end > done && bytes + k.len() + v.len() > max_bytes {
                    break;
                }
                bytes += k.len() + v.len();
                end += 1;
            }
            let txn = Txn {
                compares: Vec::new(),
                ops: batch[done..end]
                    .iter()
                    .map(|(k, v)| Op::Put {
                        key: k.clone(),
                        value: v.clone(),
                        lease: None,
                    })
                    .collect(),
            };
            match store.txn(txn).await {
                Ok(_) => done = end,
                Err(StoreError::TooBig(why)) if end - done > 1 => {
                    // Retry in halves; later flushes keep the smaller size.
                    let smaller = (end - done) / 2;
                    self.flush_chunk
                        .store(smaller, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!(
                        writes = smaller,
                        "status writes now go {smaller} to a transaction ({why})"
                    );
                }
                Err(StoreError::TooBig(why)) => {
                    tracing::error!(key = %batch[done].0, "a node's status is too large to store: {why}");
                    done += 1;
                }
                Err(e) => {
                    self.redirty(&batch[done..]);
                    return Err(e);
                }
            }
        }
        Ok(n)
    }
}

fn times_with(hb: &Heartbeat, me: &str, slack_ms: i64) -> StatusTimes {
    let mut t = times(hb);
    if !hb.head.is_empty() && *hb.head != *me {
        t.slack_ms = slack_ms;
    }
    t
}

fn times(hb: &Heartbeat) -> StatusTimes {
    StatusTimes {
        slack_ms: 0,
        booted_ms: hb.booted_ms,
        report_ms: hb.report_ms,
        interval_secs: if hb.interval_secs == 0 {
            DEFAULT_STATUS_SECS
        } else {
            hb.interval_secs
        },
        shutdown: hb.shutdown,
        orphan: hb.orphan,
    }
}

fn last_change(t: &StatusTimes) -> Option<i64> {
    match (t.booted_ms, t.report_ms) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn boot_timeout(st: &CacheState, node: &wulf_model::Node, default: u32) -> u32 {
    st.attr(node, "_boot_timeout")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The flusher: every `every` it writes what changed a node's state and the heartbeats not
/// written for `persist`; on shutdown, everything. Every minute it also drops the status of
/// deleted nodes.
pub async fn run_flusher(
    status: Arc<Status>,
    store: Arc<dyn Store>,
    cache: Arc<crate::cache::Cache>,
    every: Duration,
    persist: Duration,
    cancel: CancellationToken,
) {
    let persist_ms = i64::try_from(persist.as_millis()).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        let stop = tokio::select! {
            _ = cancel.cancelled() => true,
            _ = tick.tick() => false,
        };
        match status.flush(store.as_ref(), persist_ms, stop).await {
            Ok(0) => {}
            Ok(n) => tracing::trace!(records = n, "status flushed"),
            Err(e) => tracing::warn!(error = %e, "cannot write node status; will retry"),
        }
        if stop {
            return;
        }
        ticks += 1;
        if ticks.is_multiple_of(60) {
            let gone = {
                let st = cache.read();
                status.forget_missing(|uid| st.get(wulf_model::Kind::Node, uid).is_some())
            };
            if !gone.is_empty() {
                let txn = Txn {
                    compares: Vec::new(),
                    ops: gone.into_iter().map(|key| Op::Delete { key }).collect(),
                };
                if let Err(e) = store.txn(txn).await {
                    tracing::warn!(error = %e, "cannot remove the status of deleted nodes");
                }
            }
        }
    }
}

/// With a shared store: follow what other heads write to the status key space, so every head
/// answers for every node. (With the embedded store this head is the only writer.) After a
/// lost or compacted watch it reads everything again and carries on.
pub async fn follow(
    status: Arc<Status>,
    store: Arc<dyn Store>,
    loaded_at: i64,
    cancel: CancellationToken,
) {
    // `load` has just read everything up to `loaded_at`: watch on from there; re-list only
    // after the watch is lost.
    let mut resume = Some(loaded_at + 1);
    loop {
        let listed = match resume.take() {
            Some(from) => Ok(from),
            None => store.list(STATUS_PREFIX).await.map(|(kvs, rev)| {
                for kv in kvs {
                    status.apply_remote(&kv.key, &kv.value);
                }
                rev + 1
            }),
        };
        let from = match listed {
            Ok(from) => from,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read other heads' node status; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                }
            }
        };
        let mut watch = match store.watch(STATUS_PREFIX, from).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch other heads' node status; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => continue,
                }
            }
        };
        loop {
            let batch = tokio::select! {
                _ = cancel.cancelled() => return,
                b = watch.next() => b,
            };
            match batch {
                Some(Ok(b)) => {
                    for ev in b.events {
                        if ev.kind == wulf_store::EventKind::Put {
                            status.apply_remote(&ev.kv.key, &ev.kv.value);
                        } else {
                            status.apply_remote_delete(&ev.kv.key);
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::info!(error = %e, "status watch ended; reading status again");
                    break;
                }
                None => return,
            }
        }
    }
}

/// The reply to a report: the node's name and effective attribute values (secrets masked:
/// the node has no use for its BMC's password).
pub fn reply_attributes(st: &CacheState, node: &wulf_model::Node) -> BTreeMap<String, String> {
    st.effective_attributes(node)
        .into_iter()
        .map(|(k, a)| {
            let v = wulf_model::secret::mask_attr(&k, &a.value).unwrap_or(a.value);
            (k, v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(uid: &str) -> StatusReport {
        StatusReport {
            node: uid.into(),
            uptime_secs: 12.0,
            interval_secs: 10,
            hostname: Some("n0".into()),
            modules: Some(vec!["e1000".into()]),
            ..Default::default()
        }
    }

    #[test]
    fn reports_whose_numbers_cannot_be_stored_are_refused() {
        // A load of 1e55 overflows f32 to infinity, which JSON stores as null: the heartbeat
        // would not read back (found by fuzzing).
        let r: StatusReport = serde_json::from_str(
            r#"{"node": "u2", "uptime_secs": 1.5, "interval_secs": 1, "load": [1e+55, 5, 1]}"#,
        )
        .unwrap();
        assert!(check_report(&r).unwrap_err().contains("load"));
        let bad_ip = StatusReport {
            ip: Some("10.0.0.300".into()),
            ..report("u2")
        };
        assert!(check_report(&bad_ip)
            .unwrap_err()
            .contains("not an IP address"));
        let ok = report("u2");
        assert_eq!(check_report(&ok), Ok(()));
        let hb = Heartbeat {
            load: Some(ok.load),
            uptime: Some(ok.uptime_secs),
            ..Default::default()
        };
        let back: Heartbeat = serde_json::from_slice(&serde_json::to_vec(&hb).unwrap()).unwrap();
        assert_eq!(back, hb);
    }

    #[tokio::test]
    async fn reports_flush_once_and_info_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = wulf_store::EmbeddedStore::open(&dir.path().join("s.redb")).unwrap();
        let s = Status::new("h1".into(), 600);
        let hour = 3_600_000;
        s.booted("u1");
        s.report(
            "u1",
            StatusReport {
                ip: Some("10.0.0.7".into()),
                ..report("u1")
            },
        );
        assert_eq!(
            s.flush(store.as_ref(), hour, false).await.unwrap(),
            2,
            "hb + info"
        );
        assert_eq!(
            s.flush(store.as_ref(), hour, false).await.unwrap(),
            0,
            "nothing new"
        );
        // A routine report waits for the persist interval (or shutdown).
        s.report("u1", report("u1"));
        assert_eq!(s.flush(store.as_ref(), hour, false).await.unwrap(), 0);
        assert_eq!(s.flush(store.as_ref(), 0, false).await.unwrap(), 1, "due");
        // Busy (no info fields) changes state: the heartbeat is written at once.
        s.report(
            "u1",
            StatusReport {
                busy: true,
                ..report("u1")
            },
        );
        assert_eq!(s.flush(store.as_ref(), hour, false).await.unwrap(), 1);
        s.report(
            "u1",
            StatusReport {
                busy: true,
                uptime_secs: 99.0,
                ..report("u1")
            },
        );
        assert_eq!(s.flush(store.as_ref(), hour, true).await.unwrap(), 1, "all");
        // A restarted head reads it back.
        let s2 = Status::new("h1".into(), 600);
        assert_eq!(s2.load(store.as_ref()).await.unwrap().0, 1);
        let t = s2.times("u1");
        assert!(t.booted_ms.is_some() && t.report_ms.is_some());
        let inner = s2.lock();
        assert_eq!(inner.nodes["u1"].info.hostname.as_deref(), Some("n0"));
        assert_eq!(
            inner.nodes["u1"].info.ip.as_deref(),
            Some("10.0.0.7"),
            "kept through reports without it"
        );
        assert!(inner.nodes["u1"].hb.busy);
        assert_eq!(
            inner.nodes["u1"].hb.uptime,
            Some(99.0),
            "the final flush wrote it"
        );
    }

    #[tokio::test]
    async fn shutdown_report_is_remembered() {
        let s = Status::new("h1".into(), 600);
        s.report(
            "u1",
            StatusReport {
                state: ReportState::Shutdown,
                ..report("u1")
            },
        );
        let t = s.times("u1");
        assert!(t.shutdown);
        assert_eq!(
            derive_state(&t, now_ms(), 600),
            (NodeState::Down, Some(DownReason::CleanShutdown))
        );
    }

    #[tokio::test]
    async fn module_lists_are_shared() {
        let s = Status::new("h1".into(), 600);
        s.report("a", report("a"));
        s.report("b", report("b"));
        {
            let inner = s.lock();
            let (a, b) = (&inner.nodes["a"].info, &inner.nodes["b"].info);
            assert!(Arc::ptr_eq(
                a.modules.as_ref().unwrap(),
                b.modules.as_ref().unwrap()
            ));
            assert_eq!(inner.pool.sizes().1, 1);
        }
        s.forget_missing(|_| false);
        assert_eq!(s.lock().pool.sizes(), (0, 0, 0), "unused lists are dropped");
    }

    #[tokio::test]
    async fn deleted_nodes_are_forgotten() {
        let s = Status::new("h1".into(), 600);
        s.report("keep", report("keep"));
        s.report("gone", report("gone"));
        let keys = s.forget_missing(|u| u == "keep");
        assert_eq!(keys.len(), 2);
        assert!(keys.iter().all(|k| k.ends_with("/gone")));
        assert_eq!(
            s.take_dirty(0, false, FLUSH_CHUNK).len(),
            2,
            "keep's hb and info only"
        );
    }

    #[tokio::test]
    async fn flushes_take_a_bounded_amount_at_a_time() {
        let s = Status::new("h1".into(), 600);
        for i in 0..10 {
            s.report(&format!("u{i}"), report(&format!("u{i}")));
        }
        // 10 nodes, a heartbeat and an info record each: 3 records a take leave 17.
        let first = s.take_dirty(0, true, 3);
        assert!((3..=4).contains(&first.len()), "{}", first.len());
        let mut taken = first.len();
        let mut keys: std::collections::BTreeSet<String> =
            first.into_iter().map(|(k, _)| k).collect();
        for _ in 0..20 {
            let more = s.take_dirty(0, true, 3);
            if more.is_empty() {
                break;
            }
            taken += more.len();
            keys.extend(more.into_iter().map(|(k, _)| k));
        }
        assert_eq!(taken, 20, "every record once");
        assert_eq!(keys.len(), 20);
        assert!(s.lock().dirty.is_empty());
        // A flush writes everything in rounds.
        for i in 0..10 {
            s.report(&format!("u{i}"), report(&format!("u{i}")));
        }
        let dir = tempfile::tempdir().unwrap();
        let store = wulf_store::EmbeddedStore::open(&dir.path().join("s.redb")).unwrap();
        let written = s.flush(store.as_ref(), 0, true).await.unwrap();
        assert_eq!(
            written, 10,
            "the heartbeats (the info records did not change)"
        );
        assert!(s.lock().dirty.is_empty());
    }
}

//! In-memory indexes of every object, kept current by the store's watch. Every read on a hot
//! path (API listings, name/MAC/IP lookups) is served from here, never by scanning the store.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wulf_model::{hostlist, ids::is_uid_prefix, is_uid, Kind, MacAddr};
use wulf_store::{EventKind, KeyValue, Store, StoreError};

use crate::objects::{AnyObj, Entry, OBJ_PREFIX};

/// The cache's hash maps: foldhash (seeded at random per process) is several times cheaper
/// than the standard SipHash on these short keys, which DHCP looks up for every packet.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// An object's UID as the indexes hold it: one allocation shared by all of them (at 100,000
/// nodes, five copies of each UID were a fifth of the cache).
pub type SharedUid = Arc<str>;

/// One kind's objects.
#[derive(Default)]
pub struct Table {
    pub by_uid: FastMap<SharedUid, Entry>,
    /// Name → uid, in name order.
    pub by_name: BTreeMap<String, SharedUid>,
}

/// Everything the cache knows, at one revision.
#[derive(Default)]
pub struct State {
    pub revision: i64,
    tables: FastMap<Kind, Table>,
    /// MAC → (kind, uid) for nodes (mac and `_altmacs`) and hosts.
    pub macs: FastMap<MacAddr, (Kind, SharedUid)>,
    /// IP → (kind, uid) for nodes and hosts.
    pub ips: FastMap<Ipv4Addr, (Kind, SharedUid)>,
    /// Node index → uid.
    pub node_index: BTreeMap<u32, SharedUid>,
}

/// Why a selector did not resolve.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("{0}")]
    Syntax(String),
    #[error("no {kind} matches {missing}")]
    Missing { kind: &'static str, missing: String },
    #[error("'{0}' is ambiguous: it is the start of several UIDs; give more characters")]
    Ambiguous(String),
}

impl State {
    pub fn get(&self, kind: Kind, uid: &str) -> Option<&Entry> {
        self.tables.get(&kind)?.by_uid.get(uid)
    }

    pub fn by_name(&self, kind: Kind, name: &str) -> Option<&Entry> {
        let t = self.tables.get(&kind)?;
        t.by_uid.get(&**t.by_name.get(name)?)
    }

    /// Every object of `kind`: nodes by index (then name), others by name.
    pub fn list(&self, kind: Kind) -> Vec<&Entry> {
        let Some(t) = self.tables.get(&kind) else {
            return Vec::new();
        };
        if kind == Kind::Node {
            let mut v: Vec<&Entry> = t.by_uid.values().collect();
            v.sort_by(|a, b| {
                let (na, nb) = (a.obj.as_node(), b.obj.as_node());
                let ka = (na.and_then(|n| n.index).unwrap_or(u32::MAX), a.obj.name());
                let kb = (nb.and_then(|n| n.index).unwrap_or(u32::MAX), b.obj.name());
                ka.cmp(&kb)
            });
            v
        } else {
            t.by_name
                .values()
                .filter_map(|u| t.by_uid.get(&**u))
                .collect()
        }
    }

    /// Typed iteration helpers.
    pub fn objects(&self, kind: Kind) -> impl Iterator<Item = &AnyObj> {
        self.tables
            .get(&kind)
            .into_iter()
            .flat_map(|t| t.by_uid.values().map(|e| e.obj.as_ref()))
    }

    pub fn cluster(&self) -> Option<&wulf_model::Cluster> {
        self.objects(Kind::Cluster).find_map(|o| match o {
            AnyObj::Cluster(c) => Some(c),
            _ => None,
        })
    }

    pub fn pools(&self) -> Vec<&wulf_model::Pool> {
        self.objects(Kind::Pool)
            .filter_map(|o| match o {
                AnyObj::Pool(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    pub fn networks(&self) -> Vec<&wulf_model::Network> {
        self.objects(Kind::Net)
            .filter_map(|o| match o {
                AnyObj::Net(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    /// A node's effective attribute `name` (its own, then its groups last to first, then the
    /// default group), without building the whole map — for hot paths.
    pub fn attr<'a>(&'a self, node: &'a wulf_model::Node, name: &str) -> Option<&'a str> {
        if let Some(v) = node.attributes.get(name) {
            return Some(v);
        }
        for g in node.groups.iter().rev() {
            if let Some(v) = self.group(g).and_then(|g| g.attributes.get(name)) {
                return Some(v);
            }
        }
        let default = &self.cluster()?.default_group;
        self.group(default)?
            .attributes
            .get(name)
            .map(String::as_str)
    }

    /// Every effective attribute of a node and the layer it came from.
    pub fn effective_attributes(
        &self,
        node: &wulf_model::Node,
    ) -> BTreeMap<String, wulf_model::EffectiveAttr> {
        let default_name = self
            .cluster()
            .map(|c| c.default_group.as_str())
            .unwrap_or("");
        let default = self
            .group(default_name)
            .map(|g| (default_name, &g.attributes));
        let groups = node
            .groups
            .iter()
            .filter_map(|g| self.group(g).map(|grp| (g.as_str(), &grp.attributes)));
        wulf_model::effective_attributes(default, groups, &node.attributes)
    }

    pub fn group(&self, name: &str) -> Option<&wulf_model::AttribGroup> {
        match self.by_name(Kind::Attrib, name)?.obj.as_ref() {
            AnyObj::Attrib(g) => Some(g),
            _ => None,
        }
    }

    fn insert(&mut self, rev: i64, obj: AnyObj) {
        let kind = obj.kind();
        let uid: SharedUid = Arc::from(obj.uid());
        self.remove(kind, &uid);
        if let AnyObj::Node(n) = &obj {
            for m in n.all_macs() {
                self.macs.insert(m, (kind, uid.clone()));
            }
            if let Some(ip) = n.ip {
                self.ips.insert(ip, (kind, uid.clone()));
            }
            if let Some(i) = n.index {
                self.node_index.insert(i, uid.clone());
            }
        }
        if let AnyObj::Host(h) = &obj {
            if let Some(m) = h.mac {
                self.macs.insert(m, (kind, uid.clone()));
            }
            self.ips.insert(h.ip, (kind, uid.clone()));
        }
        let t = self.tables.entry(kind).or_default();
        t.by_name.insert(obj.name().to_string(), uid.clone());
        t.by_uid.insert(
            uid,
            Entry {
                obj: Arc::new(obj),
                rev,
            },
        );
    }

    fn remove(&mut self, kind: Kind, uid: &str) {
        let Some(t) = self.tables.get_mut(&kind) else {
            return;
        };
        let Some(old) = t.by_uid.remove(uid) else {
            return;
        };
        if t.by_name.get(old.obj.name()).map(|u| &**u) == Some(uid) {
            t.by_name.remove(old.obj.name());
        }
        let owned = |v: Option<&(Kind, SharedUid)>| v.is_some_and(|(_, u)| &**u == uid);
        let (macs, ip, index) = match old.obj.as_ref() {
            AnyObj::Node(n) => (n.all_macs(), n.ip, n.index),
            AnyObj::Host(h) => (h.mac.into_iter().collect(), Some(h.ip), None),
            _ => (Vec::new(), None, None),
        };
        for m in macs {
            if owned(self.macs.get(&m)) {
                self.macs.remove(&m);
            }
        }
        if let Some(ip) = ip {
            if owned(self.ips.get(&ip)) {
                self.ips.remove(&ip);
            }
        }
        if let Some(i) = index {
            if self.node_index.get(&i).map(|u| &**u) == Some(uid) {
                self.node_index.remove(&i);
            }
        }
    }

    /// Resolve one word (not a hostlist) to uids of `kind`.
    fn resolve_word(
        &self,
        kind: Kind,
        word: &str,
        out: &mut Vec<String>,
    ) -> Result<bool, SelectError> {
        let Some(t) = self.tables.get(&kind) else {
            return Ok(false);
        };
        if let Some(group) = word.strip_prefix('%') {
            if kind != Kind::Node {
                return Err(SelectError::Syntax(format!(
                    "'{word}': %group selects nodes only"
                )));
            }
            if self.group(group).is_none() {
                return Err(SelectError::Missing {
                    kind: "attribute group",
                    missing: group.to_string(),
                });
            }
            out.extend(
                self.list(Kind::Node)
                    .into_iter()
                    .filter_map(|e| e.obj.as_node())
                    .filter(|n| n.groups.iter().any(|g| g == group))
                    .map(|n| n.uid.clone()),
            );
            return Ok(true);
        }
        if is_uid(word) && t.by_uid.contains_key(word) {
            out.push(word.to_string());
            return Ok(true);
        }
        if let Some(uid) = t.by_name.get(word) {
            out.push(uid.to_string());
            return Ok(true);
        }
        if kind == Kind::Node || kind == Kind::Host {
            let found = if let Ok(mac) = word.parse::<MacAddr>() {
                self.macs.get(&mac)
            } else if let Ok(ip) = word.parse::<Ipv4Addr>() {
                self.ips.get(&ip)
            } else {
                None
            };
            if let Some((k, uid)) = found {
                if *k == kind {
                    out.push(uid.to_string());
                    return Ok(true);
                }
                return Ok(false);
            }
            if kind == Kind::Node && !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit()) {
                if let Some(uid) = word
                    .parse::<u32>()
                    .ok()
                    .and_then(|i| self.node_index.get(&i))
                {
                    out.push(uid.to_string());
                    return Ok(true);
                }
                // Not an index in use: a UID prefix may be all digits too.
            }
        }
        if is_uid_prefix(word) {
            let mut hits = t.by_uid.keys().filter(|u| u.starts_with(word));
            if let Some(first) = hits.next() {
                if hits.next().is_some() {
                    return Err(SelectError::Ambiguous(word.to_string()));
                }
                out.push(first.to_string());
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Resolve a selector (comma-separated names, UIDs, UID prefixes, and for nodes MACs,
    /// IPs, indexes, hostlists and `%group`) to uids, in the order given, without repeats.
    /// Every word must match something.
    pub fn select(&self, kind: Kind, selector: &str) -> Result<Vec<String>, SelectError> {
        let words = hostlist::expand(selector).map_err(|e| SelectError::Syntax(e.to_string()))?;
        let mut out = Vec::new();
        let mut missing = Vec::new();
        for w in &words {
            if !self.resolve_word(kind, w, &mut out)? {
                missing.push(w.clone());
            }
        }
        if !missing.is_empty() {
            return Err(SelectError::Missing {
                kind: kind.title(),
                missing: hostlist::compress(&missing),
            });
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|u| seen.insert(u.clone()));
        Ok(out)
    }
}

/// The cache: state behind a lock, plus a channel that says which revision it has reached.
pub struct Cache {
    state: RwLock<State>,
    rev_tx: tokio::sync::watch::Sender<i64>,
}

fn kind_of_key(key: &str) -> Option<(Kind, &str)> {
    let rest = key.strip_prefix(OBJ_PREFIX)?;
    let (kind, uid) = rest.split_once('/')?;
    Some((kind.parse().ok()?, uid))
}

impl Cache {
    pub fn new() -> Arc<Cache> {
        let (rev_tx, _) = tokio::sync::watch::channel(0);
        Arc::new(Cache {
            state: RwLock::new(State::default()),
            rev_tx,
        })
    }

    /// Read the current state. Hold the guard briefly and never across an await.
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn revision(&self) -> i64 {
        *self.rev_tx.borrow()
    }

    /// Wait until the cache has applied `rev` (so a write is visible to the next read).
    pub async fn wait_for(&self, rev: i64) -> Result<(), StoreError> {
        let mut rx = self.rev_tx.subscribe();
        let ok = tokio::time::timeout(Duration::from_secs(10), async {
            rx.wait_for(|r| *r >= rev).await.is_ok()
        })
        .await;
        match ok {
            Ok(true) => Ok(()),
            _ => Err(StoreError::Unavailable(format!(
                "the head's cache did not reach revision {rev} within 10 s"
            ))),
        }
    }

    fn decode(kv: &KeyValue) -> Option<AnyObj> {
        let (kind, _) = kind_of_key(&kv.key)?;
        match AnyObj::decode(kind, &kv.value) {
            Ok(o) => Some(o),
            Err(e) => {
                tracing::error!(key = %kv.key, error = %e, "cannot decode stored object; ignoring it");
                None
            }
        }
    }

    /// Replace everything with a fresh listing.
    pub async fn load(&self, store: &dyn Store) -> Result<i64, StoreError> {
        let (kvs, rev) = store.list(OBJ_PREFIX).await?;
        let mut st = State::default();
        for kv in &kvs {
            if let Some(o) = Self::decode(kv) {
                st.insert(kv.mod_revision, o);
            }
        }
        st.revision = rev;
        *self.write() = st;
        self.rev_tx.send_replace(rev);
        tracing::info!(objects = kvs.len(), revision = rev, "object cache loaded");
        Ok(rev)
    }

    /// Follow the store's changes until cancelled; re-list after a lost or compacted watch.
    pub async fn follow(self: Arc<Self>, store: Arc<dyn Store>, cancel: CancellationToken) {
        let mut from = self.revision() + 1;
        loop {
            let mut watch = match store.watch(OBJ_PREFIX, from).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "object watch failed; re-listing");
                    if !self.relist(store.as_ref(), &cancel, &mut from).await {
                        return;
                    }
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => return,
                    n = watch.next() => n,
                };
                match next {
                    Some(Ok(batch)) => {
                        {
                            let mut st = self.write();
                            for ev in &batch.events {
                                match ev.kind {
                                    EventKind::Put => {
                                        if let Some(o) = Self::decode(&ev.kv) {
                                            st.insert(ev.kv.mod_revision, o);
                                        }
                                    }
                                    EventKind::Delete => {
                                        if let Some((kind, uid)) = kind_of_key(&ev.kv.key) {
                                            st.remove(kind, uid);
                                        }
                                    }
                                }
                            }
                            st.revision = batch.revision;
                        }
                        from = batch.revision + 1;
                        self.rev_tx.send_replace(batch.revision);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "object watch ended; re-listing");
                        if !self.relist(store.as_ref(), &cancel, &mut from).await {
                            return;
                        }
                        break;
                    }
                    None => {
                        if cancel.is_cancelled() {
                            return;
                        }
                        tracing::warn!("object watch closed; re-listing");
                        if !self.relist(store.as_ref(), &cancel, &mut from).await {
                            return;
                        }
                        break;
                    }
                }
            }
        }
    }

    async fn relist(&self, store: &dyn Store, cancel: &CancellationToken, from: &mut i64) -> bool {
        loop {
            match self.load(store).await {
                Ok(rev) => {
                    *from = rev + 1;
                    return true;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot list objects; retrying in 1 s");
                    tokio::select! {
                        _ = cancel.cancelled() => return false,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(uid: &str, name: &str, index: u32) -> AnyObj {
        let doc = serde_json::json!({"uid": uid, "name": name, "index": index});
        AnyObj::Node(serde_json::from_value(doc).expect("node"))
    }

    #[test]
    fn a_number_is_an_index_first_then_a_uid_prefix() {
        let (u1, u2, u3) = (
            "03675600000000000000000000000001",
            "a0000000000000000000000000000002",
            "00042000000000000000000000000003",
        );
        let mut s = State::default();
        s.insert(1, node(u1, "n1", 1));
        s.insert(2, node(u2, "n2", 42));
        s.insert(3, node(u3, "n3", 7));
        // "036756" is no node's index: it is the start of n1's UID.
        assert_eq!(s.select(Kind::Node, "036756").unwrap(), [u1]);
        assert_eq!(s.select(Kind::Node, "1").unwrap(), [u1]);
        // "00042" is index 42 (n2) before it is the start of n3's UID.
        assert_eq!(s.select(Kind::Node, "00042").unwrap(), [u2]);
        assert!(matches!(
            s.select(Kind::Node, "99999"),
            Err(SelectError::Missing { .. })
        ));
    }
}

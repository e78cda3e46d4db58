//! The write path: validate against the model and the cache, then commit in one store
//! transaction whose compares make uniqueness (names, MACs, IPs, indexes) and references safe
//! even with several heads writing at once.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use wulf_api::UpdateRequest;
use wulf_model::{
    field_type, has_attributes, Cluster, FieldType, Kind, ModelError, Node, CLUSTER_UID,
    DEFAULT_GROUP, DEFAULT_POOL,
};
use wulf_store::{Expect, Store, StoreError, Txn};

use crate::cache::{Cache, SelectError, State};
use crate::objects::{describe_unique_key, obj_key, AnyObj, IDX_PREFIX};

const ATTEMPTS: usize = 8;

/// One step of [`Db::apply`].
#[derive(Debug, Clone)]
pub enum Change {
    /// Create objects of a kind from JSON documents (as `POST /api/v1/KIND`).
    Create(Kind, Vec<Value>),
    /// Apply an update to the objects with these UIDs.
    Update(Kind, Vec<String>, UpdateRequest),
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Invalid(#[from] ModelError),
    #[error("{0}")]
    Select(#[from] SelectError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub fn new_uid() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Objects that `obj` refers to by name.
fn references(obj: &AnyObj) -> Vec<(Kind, &str, &'static str)> {
    let mut out = Vec::new();
    fn boot_attr(
        attrs: &std::collections::BTreeMap<String, String>,
    ) -> Option<(Kind, &str, &'static str)> {
        attrs
            .get("_boot_config")
            .map(|b| (Kind::Boot, b.as_str(), "attributes._boot_config"))
    }
    match obj {
        AnyObj::Node(n) => {
            out.extend(
                n.groups
                    .iter()
                    .map(|g| (Kind::Attrib, g.as_str(), "groups")),
            );
            out.extend(boot_attr(&n.attributes));
        }
        AnyObj::Attrib(g) => out.extend(boot_attr(&g.attributes)),
        AnyObj::Boot(b) => out.extend(b.image.as_deref().map(|i| (Kind::Image, i, "image"))),
        AnyObj::Image(i) => out.extend(i.parent.as_deref().map(|p| (Kind::Image, p, "parent"))),
        AnyObj::Cluster(c) => out.push((Kind::Attrib, c.default_group.as_str(), "default_group")),
        _ => {}
    }
    out
}

/// Names of objects that refer to `target` (for refusing its deletion or rename).
fn users_of(st: &State, target: &AnyObj) -> Vec<String> {
    let (kind, name) = (target.kind(), target.name());
    // Only these kinds are referred to (see `references`): skip the scan for the others, so
    // deleting many nodes stays linear.
    if !matches!(kind, Kind::Attrib | Kind::Boot | Kind::Image) {
        return Vec::new();
    }
    let mut users = Vec::new();
    for k in [
        Kind::Node,
        Kind::Attrib,
        Kind::Boot,
        Kind::Image,
        Kind::Cluster,
    ] {
        for o in st.objects(k) {
            if o.uid() != target.uid()
                && references(o)
                    .iter()
                    .any(|(rk, rn, _)| *rk == kind && *rn == name)
            {
                users.push(format!("{} {}", k, o.name()));
            }
        }
    }
    users.sort();
    users
}

fn describe_users(users: &[String]) -> String {
    let shown: Vec<&str> = users.iter().take(5).map(String::as_str).collect();
    let more = users.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// The name node `index` gets from the naming pools.
pub fn derive_name(st: &State, index: u32) -> Option<String> {
    let pools = st.pools();
    let i = wulf_model::pool_for_index(&pools, index)?;
    pools[i].name_for(index)
}

/// The IP node `index` gets from the networks.
pub fn derive_ip(st: &State, index: u32) -> Option<Ipv4Addr> {
    let mut nets = st.networks();
    nets.sort_by(|a, b| a.name.cmp(&b.name));
    nets.iter().find_map(|n| n.ip_for_index(index))
}

/// A prepared write: the transaction and the objects it writes.
struct Prepared {
    txn: Txn,
    objs: Vec<AnyObj>,
}

pub struct Db {
    pub store: Arc<dyn Store>,
    pub cache: Arc<Cache>,
}

impl Db {
    pub fn new(store: Arc<dyn Store>, cache: Arc<Cache>) -> Db {
        Db { store, cache }
    }

    /// Run `prepare` against the cache and commit its transaction; when a compare fails, wait
    /// for the cache to see what changed and prepare again (now the conflict shows up as a
    /// clear error, or the retry succeeds).
    async fn commit(
        &self,
        mut prepare: impl FnMut(&State) -> Result<Prepared, DbError>,
    ) -> Result<Vec<AnyObj>, DbError> {
        for _ in 0..ATTEMPTS {
            let p = {
                let st = self.cache.read();
                prepare(&st)?
            };
            // Nothing to write (a selection of no objects): no transaction, and no revision
            // to wait for. The store's current revision may be a write the object cache never
            // sees (status, sessions), which it would wait for in vain.
            if p.txn.ops.is_empty() {
                return Ok(p.objs);
            }
            let res = self.store.txn(p.txn).await?;
            if res.succeeded {
                self.cache.wait_for(res.revision).await?;
                return Ok(p.objs);
            }
            // A compare failed: most likely a change the cache has not applied yet. Give it a
            // moment, then prepare again. The store's current revision may be a write the
            // object cache never sees (status, the shared log), so it is not waited for in full.
            let _ = tokio::time::timeout(
                std::time::Duration::from_millis(500),
                self.cache.wait_for(res.revision),
            )
            .await;
        }
        Err(DbError::Conflict(
            "the objects kept changing concurrently; try again".to_string(),
        ))
    }

    /// Create objects of `kind` from JSON documents, all or none.
    pub async fn create(&self, kind: Kind, docs: Vec<Value>) -> Result<Vec<AnyObj>, DbError> {
        if kind == Kind::Cluster {
            return Err(DbError::BadRequest(
                "there is one cluster settings object; change it with update".into(),
            ));
        }
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let ts = now();
        self.commit(|st| prepare_create(st, kind, &docs, ts)).await
    }

    /// Create and change objects of several kinds in one transaction, all or none, in the
    /// order given: a later change may refer to an object an earlier one creates (a node to
    /// a boot config, the default group to a boot config).
    pub async fn apply(&self, changes: &[Change]) -> Result<Vec<AnyObj>, DbError> {
        check_changes(changes)?;
        let ts = now();
        self.commit(|st| prepare_apply(st, changes, ts)).await
    }

    /// `apply` checked against the current objects and not written: the objects it would
    /// create or change, or the error it would give.
    pub async fn check_apply(&self, changes: &[Change]) -> Result<Vec<AnyObj>, DbError> {
        check_changes(changes)?;
        let st = self.cache.read();
        prepare_apply(&st, changes, now()).map(|p| p.objs)
    }

    /// Apply `req` to each object in `uids`, all or none.
    pub async fn update(
        &self,
        kind: Kind,
        uids: &[String],
        req: &UpdateRequest,
    ) -> Result<Vec<AnyObj>, DbError> {
        check_request(kind, req)?;
        let ts = now();
        self.commit(|st| prepare_update(st, kind, uids, req, ts))
            .await
    }

    /// Replace one object's field with `value` (used after a file upload).
    pub async fn set_field(
        &self,
        kind: Kind,
        uid: &str,
        field: &str,
        value: Value,
    ) -> Result<AnyObj, DbError> {
        let ts = now();
        let uids = [uid.to_string()];
        let mut objs = self
            .commit(|st| {
                prepare_modify(st, kind, &uids, ts, |json, _| {
                    json[field] = value.clone();
                    Ok(())
                })
            })
            .await?;
        objs.pop()
            .ok_or_else(|| DbError::NotFound(format!("{} {uid} vanished", kind.title())))
    }

    /// Change each object in `uids` with `change` (given its JSON and the stored object), all
    /// or none; the result is validated like any update.
    pub async fn modify(
        &self,
        kind: Kind,
        uids: &[String],
        mut change: impl FnMut(&mut Value, &AnyObj) -> Result<(), DbError>,
    ) -> Result<Vec<AnyObj>, DbError> {
        let ts = now();
        self.commit(|st| prepare_modify(st, kind, uids, ts, &mut change))
            .await
    }

    /// For a `pxe+local` node: move its boot stage to `local`, once. True if this call did it
    /// (the caller serves the PXE boot), false if it was already local.
    pub async fn claim_pxe_boot(&self, uid: &str) -> Result<bool, DbError> {
        let ts = now();
        let uids = [uid.to_string()];
        let res = self
            .commit(|st| {
                prepare_modify(st, Kind::Node, &uids, ts, |json, _| {
                    if json.get("boot_stage").and_then(Value::as_str) == Some("local") {
                        return Err(DbError::Conflict("already local".into()));
                    }
                    json["boot_stage"] = Value::String("local".into());
                    Ok(())
                })
            })
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(DbError::Conflict(m)) if m == "already local" => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Delete objects, all or none. Refuses objects that others still refer to.
    pub async fn delete(&self, kind: Kind, uids: &[String]) -> Result<Vec<AnyObj>, DbError> {
        if kind == Kind::Cluster {
            return Err(DbError::BadRequest(
                "the cluster settings cannot be deleted".into(),
            ));
        }
        self.commit(|st| {
            let mut txn = Txn::new();
            let mut objs = Vec::new();
            let deleting: HashSet<&str> = uids.iter().map(String::as_str).collect();
            for uid in uids {
                let e = st.get(kind, uid).ok_or_else(|| {
                    DbError::NotFound(format!("{} {uid} no longer exists", kind.title()))
                })?;
                if kind == Kind::Pool && e.obj.name() == DEFAULT_POOL {
                    return Err(DbError::Conflict(
                        "the default naming pool cannot be deleted (change its pattern instead)"
                            .into(),
                    ));
                }
                let users: Vec<String> = users_of(st, &e.obj)
                    .into_iter()
                    .filter(|u| {
                        // Deleting a group together with nodes that use it is fine.
                        !u.split_once(' ')
                            .and_then(|(k, n)| Some((k.parse::<Kind>().ok()?, n)))
                            .is_some_and(|(k, n)| {
                                k == kind
                                    && st
                                        .by_name(k, n)
                                        .is_some_and(|x| deleting.contains(x.obj.uid()))
                            })
                    })
                    .collect();
                if !users.is_empty() {
                    return Err(DbError::Conflict(format!(
                        "{} '{}' is used by {}; change those first",
                        kind.title(),
                        e.obj.name(),
                        describe_users(&users)
                    )));
                }
                txn = txn.when(obj_key(kind, uid), Expect::ModRevision(e.rev));
                txn = txn.delete(obj_key(kind, uid));
                for k in e.obj.unique_keys() {
                    txn = txn.delete(k);
                }
                objs.push((*e.obj).clone());
            }
            Ok(Prepared { txn, objs })
        })
        .await
    }

    /// Create the cluster settings, the default attribute group and the default naming pool
    /// if this is a new cluster. Safe to race with other heads.
    pub async fn bootstrap(&self, cluster_name: &str) -> Result<(), DbError> {
        if self.cache.read().cluster().is_some() {
            return Ok(());
        }
        let ts = now();
        let cluster = AnyObj::Cluster(Cluster {
            uid: CLUSTER_UID.to_string(),
            name: cluster_name.to_string(),
            description: String::new(),
            last_modified: ts,
            accept_new_nodes: "locked".into(),
            default_group: DEFAULT_GROUP.to_string(),
            log_level: String::new(),
        });
        let group = AnyObj::from_json(
            Kind::Attrib,
            serde_json::json!({"uid": new_uid(), "name": DEFAULT_GROUP, "last_modified": ts,
                "description": "attributes every node inherits first"}),
        )?;
        let pool = AnyObj::from_json(
            Kind::Pool,
            serde_json::json!({"uid": new_uid(), "name": DEFAULT_POOL, "pattern": "n{}",
                "first_index": 0, "last_modified": ts}),
        )?;
        let mut txn = Txn::new().when(obj_key(Kind::Cluster, CLUSTER_UID), Expect::Absent);
        for o in [&cluster, &group, &pool] {
            txn = txn.put(obj_key(o.kind(), o.uid()), o.to_bytes());
            for k in o.unique_keys() {
                txn = txn.put(k, o.uid().as_bytes().to_vec());
            }
        }
        let res = self.store.txn(txn).await?;
        self.cache.wait_for(res.revision).await?;
        if res.succeeded {
            tracing::info!(target: "audit", "created a new cluster '{cluster_name}' with group {DEFAULT_GROUP} and pool {DEFAULT_POOL}");
        }
        Ok(())
    }
}

pub(crate) fn check_request(kind: Kind, req: &UpdateRequest) -> Result<(), DbError> {
    for (k, _) in &req.fields {
        match field_type(kind, k) {
            None => {
                return Err(ModelError::new(
                    k.as_str(),
                    format!("{} has no field '{k}'", kind.title()),
                )
                .into())
            }
            Some(FieldType::ReadOnly) => {
                return Err(ModelError::new(
                    k.as_str(),
                    "is set by the server and cannot be written",
                )
                .into())
            }
            Some(FieldType::File) => {
                return Err(ModelError::new(k.as_str(), "is a file: upload it").into())
            }
            Some(_) => {}
        }
    }
    let attrs = !req.set_attributes.is_empty() || !req.clear_attributes.is_empty();
    if attrs && !has_attributes(kind) {
        return Err(DbError::BadRequest(format!(
            "{} objects have no attributes",
            kind.title()
        )));
    }
    if (!req.join.is_empty() || !req.leave.is_empty()) && kind != Kind::Node {
        return Err(DbError::BadRequest(
            "only nodes join and leave groups".into(),
        ));
    }
    for (k, v) in &req.set_attributes {
        wulf_model::attributes::validate(k, v)?;
    }
    if req.is_empty() {
        return Err(DbError::BadRequest("nothing to change".into()));
    }
    Ok(())
}

/// Check references, uniqueness within the batch and against the cache, and add the
/// transaction's compares and puts for writing `obj` (replacing `old`, if any).
fn stage(
    st: &State,
    txn: Txn,
    obj: &AnyObj,
    old: Option<(&AnyObj, i64)>,
    batch: &mut Batch,
) -> Result<Txn, DbError> {
    let mut txn = txn;
    let uid = obj.uid();
    for (rk, rname, field) in references(obj) {
        match st.by_name(rk, rname) {
            Some(target) => txn = txn.when(obj_key(rk, target.obj.uid()), Expect::Present),
            // Created earlier in this same transaction.
            None if batch.keys.contains_key(&name_key(rk, rname)) => {}
            None => {
                return Err(ModelError::new(
                    field,
                    format!("there is no {} named '{rname}'", rk.title()),
                )
                .into())
            }
        }
    }
    let batch_keys = &mut batch.keys;
    let old_keys: HashSet<String> = old
        .map(|(o, _)| o.unique_keys().into_iter().collect())
        .unwrap_or_default();
    let new_keys = obj.unique_keys();
    for k in &new_keys {
        if let Some((other_uid, other)) =
            batch_keys.insert(k.clone(), (uid.to_string(), obj.name().to_string()))
        {
            if other_uid != uid {
                return Err(DbError::Conflict(format!(
                    "{} is given to both '{other}' and '{}'",
                    describe_unique_key(k),
                    obj.name()
                )));
            }
        }
        if old_keys.contains(k) {
            continue;
        }
        if let Some(owner) = unique_owner(st, k) {
            if owner.0 != uid {
                return Err(DbError::Conflict(format!(
                    "{} is already used by {}",
                    describe_unique_key(k),
                    owner.1
                )));
            }
        }
        txn = txn
            .when(k.clone(), Expect::Absent)
            .put(k.clone(), uid.as_bytes().to_vec());
    }
    for k in old_keys.iter().filter(|k| !new_keys.contains(k)) {
        txn = txn.delete(k.clone());
    }
    // After the uniqueness checks, whose "already used by" names the owner more exactly.
    crate::placement::check(st, obj, &batch.nets)?;
    if let AnyObj::Net(n) = obj {
        batch.nets.retain(|b| b.uid != n.uid);
        batch.nets.push(n.clone());
    }
    let key = obj_key(obj.kind(), uid);
    txn = match old {
        Some((_, rev)) => txn.when(key.clone(), Expect::ModRevision(rev)),
        None => txn.when(key.clone(), Expect::Absent),
    };
    Ok(txn.put(key, obj.to_bytes()))
}

/// What one transaction has staged so far: the uniqueness keys (key → uid, name) and the
/// networks it writes (for checking hosts against them).
#[derive(Default)]
struct Batch {
    keys: HashMap<String, (String, String)>,
    nets: Vec<wulf_model::Network>,
}

/// The uniqueness key of an object's name (as [`AnyObj::unique_keys`] writes it).
fn name_key(kind: Kind, name: &str) -> String {
    format!("{IDX_PREFIX}{kind}/name/{name}")
}

/// Who holds a uniqueness key according to the cache: (uid, "node n5").
fn unique_owner(st: &State, key: &str) -> Option<(String, String)> {
    let rest = key.strip_prefix(IDX_PREFIX)?;
    let (head, value) = rest.split_once('/')?;
    let found = match head {
        "mac" => st.macs.get(&value.parse().ok()?).cloned(),
        "ip" => st.ips.get(&value.parse().ok()?).cloned(),
        _ => {
            let kind: Kind = head.parse().ok()?;
            let (what, v) = value.split_once('/')?;
            match what {
                "name" => st.by_name(kind, v).map(|e| (kind, Arc::from(e.obj.uid()))),
                "index" => st
                    .node_index
                    .get(&v.parse().ok()?)
                    .map(|u| (Kind::Node, u.clone())),
                _ => None,
            }
        }
    }?;
    let name = st
        .get(found.0, &found.1)
        .map(|e| e.obj.name().to_string())
        .unwrap_or_default();
    Some((found.1.to_string(), format!("{} {name}", found.0)))
}

/// What `apply` refuses before looking at any object.
fn check_changes(changes: &[Change]) -> Result<(), DbError> {
    for c in changes {
        match c {
            Change::Create(Kind::Cluster, _) => {
                return Err(DbError::BadRequest(
                    "there is one cluster settings object; change it with update".into(),
                ))
            }
            Change::Update(kind, _, req) => check_request(*kind, req)?,
            Change::Create(..) => {}
        }
    }
    Ok(())
}

/// The transaction of `apply`'s changes, in order (later ones see earlier ones' objects).
fn prepare_apply(st: &State, changes: &[Change], ts: f64) -> Result<Prepared, DbError> {
    let mut p = Prepared {
        txn: Txn::new(),
        objs: Vec::new(),
    };
    let mut batch = Batch::default();
    for c in changes {
        match c {
            Change::Create(kind, docs) => create_into(st, *kind, docs, ts, &mut p, &mut batch)?,
            Change::Update(kind, uids, req) => modify_into(
                st,
                *kind,
                uids,
                ts,
                update_change(st, req),
                &mut p,
                &mut batch,
            )?,
        }
    }
    Ok(p)
}

fn prepare_create(st: &State, kind: Kind, docs: &[Value], ts: f64) -> Result<Prepared, DbError> {
    let mut p = Prepared {
        txn: Txn::new(),
        objs: Vec::with_capacity(docs.len()),
    };
    create_into(st, kind, docs, ts, &mut p, &mut Batch::default())?;
    Ok(p)
}

/// Stage the creation of `docs` into `p`, sharing `batch` with the rest of the transaction.
fn create_into(
    st: &State,
    kind: Kind,
    docs: &[Value],
    ts: f64,
    p: &mut Prepared,
    batch: &mut Batch,
) -> Result<(), DbError> {
    let mut taken: BTreeSet<u32> = BTreeSet::new();
    let mut next_free = 0u32;
    for (i, doc) in docs.iter().enumerate() {
        let mut doc = doc.clone();
        let Some(map) = doc.as_object_mut() else {
            return Err(DbError::BadRequest(format!(
                "item {i}: expected a JSON object"
            )));
        };
        let uid = match map.get("uid") {
            None | Some(Value::Null) => new_uid(),
            Some(Value::String(u)) if wulf_model::is_uid(u) => u.clone(),
            Some(other) => {
                return Err(ModelError::new(
                    "uid",
                    format!("{other} is not a UID (32 lowercase hex characters)"),
                )
                .into())
            }
        };
        map.insert("uid".into(), Value::String(uid));
        map.insert("last_modified".into(), Value::from(ts));
        if kind == Kind::Node {
            let index = match map.get("index") {
                None | Some(Value::Null) => {
                    let mut i = next_free;
                    while st.node_index.contains_key(&i) || taken.contains(&i) {
                        i = i
                            .checked_add(1)
                            .ok_or_else(|| DbError::Conflict("no free node index".into()))?;
                    }
                    next_free = i;
                    map.insert("index".into(), Value::from(i));
                    i
                }
                Some(v) => v
                    .as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| ModelError::new("index", format!("{v} is not a node index")))?,
            };
            taken.insert(index);
            // No name (absent, null or ""): the pool's. A name that is not text is refused
            // below like any field of the wrong type.
            if map
                .get("name")
                .is_none_or(|n| n.is_null() || n.as_str() == Some(""))
            {
                let name = derive_name(st, index).ok_or_else(|| {
                    ModelError::new(
                        "name",
                        format!("no naming pool covers index {index}; give a name"),
                    )
                })?;
                map.insert("name".into(), Value::String(name));
            }
            if map.get("ip").is_none_or(Value::is_null) {
                if let Some(ip) = derive_ip(st, index) {
                    map.insert("ip".into(), Value::String(ip.to_string()));
                }
            }
        }
        let obj = AnyObj::from_json(kind, doc).map_err(|e| item_error(docs.len(), i, e))?;
        p.txn = stage(st, std::mem::take(&mut p.txn), &obj, None, batch)?;
        p.objs.push(obj);
    }
    Ok(())
}

fn item_error(n: usize, i: usize, e: ModelError) -> DbError {
    if n > 1 {
        DbError::Invalid(ModelError::new(
            e.field,
            format!("{} (item {i})", e.message),
        ))
    } else {
        DbError::Invalid(e)
    }
}

/// Load each object as JSON, let `change` edit it, re-validate, and stage the write.
fn prepare_modify(
    st: &State,
    kind: Kind,
    uids: &[String],
    ts: f64,
    change: impl FnMut(&mut Value, &AnyObj) -> Result<(), DbError>,
) -> Result<Prepared, DbError> {
    let mut p = Prepared {
        txn: Txn::new(),
        objs: Vec::with_capacity(uids.len()),
    };
    modify_into(st, kind, uids, ts, change, &mut p, &mut Batch::default())?;
    Ok(p)
}

/// Stage changes of `uids` into `p`, sharing `batch` with the rest of the transaction.
fn modify_into(
    st: &State,
    kind: Kind,
    uids: &[String],
    ts: f64,
    mut change: impl FnMut(&mut Value, &AnyObj) -> Result<(), DbError>,
    p: &mut Prepared,
    batch: &mut Batch,
) -> Result<(), DbError> {
    for uid in uids {
        let e = st
            .get(kind, uid)
            .ok_or_else(|| DbError::NotFound(format!("{} {uid} no longer exists", kind.title())))?;
        let mut json = e.obj.to_json();
        change(&mut json, &e.obj)?;
        json["last_modified"] = Value::from(ts);
        json["uid"] = Value::String(uid.clone());
        let obj = AnyObj::from_json(kind, json).map_err(|err| {
            ModelError::new(
                err.field,
                format!("{} ({} {})", err.message, kind, e.obj.name()),
            )
        })?;
        if obj.name() != e.obj.name() {
            let users = users_of(st, &e.obj);
            if !users.is_empty() {
                return Err(DbError::Conflict(format!(
                    "{} '{}' cannot be renamed while {} use it",
                    kind.title(),
                    e.obj.name(),
                    describe_users(&users)
                )));
            }
        }
        if let (AnyObj::Boot(_) | AnyObj::Image(_), Some(true), Some(true)) = (
            e.obj.as_ref(),
            e.obj.to_json().get("frozen").and_then(Value::as_bool),
            obj.to_json().get("frozen").and_then(Value::as_bool),
        ) {
            return Err(DbError::Conflict(format!(
                "{} '{}' is frozen; set frozen=false first",
                kind.title(),
                e.obj.name()
            )));
        }
        p.txn = stage(
            st,
            std::mem::take(&mut p.txn),
            &obj,
            Some((&e.obj, e.rev)),
            batch,
        )?;
        p.objs.push(obj);
    }
    Ok(())
}

fn prepare_update(
    st: &State,
    kind: Kind,
    uids: &[String],
    req: &UpdateRequest,
    ts: f64,
) -> Result<Prepared, DbError> {
    prepare_modify(st, kind, uids, ts, update_change(st, req))
}

/// The edit `req` makes to an object's JSON.
fn update_change<'a>(
    st: &'a State,
    req: &'a UpdateRequest,
) -> impl FnMut(&mut Value, &AnyObj) -> Result<(), DbError> + 'a {
    move |json, old| {
        for (k, v) in &req.fields {
            json[k.as_str()] = v.clone();
        }
        if let Some(attrs) = json.get_mut("attributes").and_then(Value::as_object_mut) {
            for k in &req.clear_attributes {
                attrs.remove(k);
            }
            for (k, v) in &req.set_attributes {
                attrs.insert(k.clone(), Value::String(v.clone()));
            }
        }
        if let Some(groups) = json.get_mut("groups").and_then(Value::as_array_mut) {
            groups.retain(|g| !req.leave.iter().any(|l| g.as_str() == Some(l)));
            for j in &req.join {
                if !groups.iter().any(|g| g.as_str() == Some(j)) {
                    groups.push(Value::String(j.clone()));
                }
            }
        }
        if let AnyObj::Node(n) = old {
            rederive_node(st, json, n);
        }
        Ok(())
    }
}

/// Names and IPs follow the index unless they were set by hand: a cleared name or IP is
/// derived again, and one that was derived from the old index is derived from the new one.
fn rederive_node(st: &State, json: &mut Value, old: &Node) {
    let Some(index) = json
        .get("index")
        .and_then(Value::as_u64)
        .and_then(|i| u32::try_from(i).ok())
    else {
        return;
    };
    let old_index = old.index;
    let name_was_derived =
        old_index.is_some_and(|i| derive_name(st, i).as_deref() == Some(old.name.as_str()));
    let name_now = json.get("name").and_then(Value::as_str).unwrap_or("");
    if name_now.is_empty() || (name_was_derived && name_now == old.name && old_index != Some(index))
    {
        if let Some(n) = derive_name(st, index) {
            json["name"] = Value::String(n);
        }
    }
    let ip_was_derived = old_index.is_some_and(|i| derive_ip(st, i) == old.ip && old.ip.is_some());
    let ip_now = json.get("ip").cloned().unwrap_or(Value::Null);
    let ip_unchanged = ip_now.as_str() == old.ip.map(|i| i.to_string()).as_deref();
    if ip_now.is_null() || (ip_was_derived && ip_unchanged && old_index != Some(index)) {
        json["ip"] = derive_ip(st, index).map_or(Value::Null, |ip| Value::String(ip.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A bootstrapped database on an embedded store in a temporary directory, its cache
    /// following the store.
    struct TestDb {
        db: Db,
        cancel: tokio_util::sync::CancellationToken,
        follower: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    impl TestDb {
        async fn start() -> TestDb {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> =
                wulf_store::EmbeddedStore::open(&dir.path().join("s.redb")).unwrap();
            let cache = crate::cache::Cache::new();
            cache.load(store.as_ref()).await.unwrap();
            let cancel = tokio_util::sync::CancellationToken::new();
            let follower = tokio::spawn(cache.clone().follow(store.clone(), cancel.clone()));
            let db = Db::new(store, cache);
            db.bootstrap("test").await.unwrap();
            TestDb {
                db,
                cancel,
                follower,
                _dir: dir,
            }
        }

        async fn stop(self) {
            self.cancel.cancel();
            let _ = self.follower.await;
        }
    }

    #[tokio::test]
    async fn a_node_name_that_is_not_text_is_refused() {
        let t = TestDb::start().await;
        let db = &t.db;
        for bad in [json!({}), json!(5), json!(["n9"]), json!(true)] {
            let e = db
                .create(Kind::Node, vec![json!({"index": 9, "name": bad})])
                .await
                .unwrap_err();
            assert!(
                matches!(&e, DbError::Invalid(m) if m.field == "name"),
                "{bad}: {e}"
            );
        }
        assert!(
            db.cache.read().list(Kind::Node).is_empty(),
            "nothing written"
        );
        // Absent, null or "": the naming pool names it.
        let docs = vec![
            json!({"index": 1}),
            json!({"index": 2, "name": null}),
            json!({"index": 3, "name": ""}),
        ];
        let made = db.create(Kind::Node, docs).await.unwrap();
        let names: Vec<&str> = made.iter().map(AnyObj::name).collect();
        assert_eq!(names, ["n1", "n2", "n3"]);
        t.stop().await;
    }

    #[tokio::test]
    async fn changing_no_objects_answers_at_once() {
        let t = TestDb::start().await;
        let db = &t.db;
        let store = &db.store;
        // The last write is one the object cache does not follow.
        store
            .put("/wulf/status/hb/x", b"{}".to_vec(), Expect::Any)
            .await
            .unwrap();
        let req = UpdateRequest {
            fields: serde_json::Map::from_iter([("description".to_string(), json!("x"))]),
            ..Default::default()
        };
        let quick = std::time::Duration::from_secs(5);
        let deleted = tokio::time::timeout(quick, db.delete(Kind::Net, &[]))
            .await
            .expect("a delete of nothing waited")
            .unwrap();
        assert!(deleted.is_empty());
        let updated = tokio::time::timeout(quick, db.update(Kind::Host, &[], &req))
            .await
            .expect("an update of nothing waited")
            .unwrap();
        assert!(updated.is_empty());
        t.stop().await;
    }

    #[tokio::test]
    async fn apply_writes_several_kinds_at_once_or_nothing() {
        let t = TestDb::start().await;
        let db = &t.db;
        let group = db
            .cache
            .read()
            .by_name(Kind::Attrib, DEFAULT_GROUP)
            .map(|e| e.obj.uid().to_string())
            .unwrap();
        let set_boot = UpdateRequest {
            set_attributes: [("_boot_config".to_string(), "b1".to_string())].into(),
            ..Default::default()
        };
        let net = json!({"name": "c", "first_ip": "10.9.0.10", "ip_count": 10, "mask_bits": 24,
            "host_ranges": ["10.9.0.100-10.9.0.110"]});
        // The host is placed against the net created in the same transaction: refused.
        let bad = [
            Change::Create(Kind::Net, vec![net.clone()]),
            Change::Create(Kind::Boot, vec![json!({"name": "b1"})]),
            Change::Update(Kind::Attrib, vec![group.clone()], set_boot.clone()),
            Change::Create(Kind::Host, vec![json!({"name": "sw", "ip": "10.9.0.12"})]),
        ];
        let e = db.apply(&bad).await.unwrap_err();
        assert!(e.to_string().contains("node range"), "{e}");
        assert!(
            db.cache.read().list(Kind::Net).is_empty(),
            "nothing written"
        );
        assert!(
            db.cache.read().list(Kind::Boot).is_empty(),
            "nothing written"
        );
        // Fixed: the group refers to the boot config created just before it.
        let good = [
            Change::Create(Kind::Net, vec![net]),
            Change::Create(Kind::Boot, vec![json!({"name": "b1"})]),
            Change::Update(Kind::Attrib, vec![group], set_boot),
            Change::Create(Kind::Host, vec![json!({"name": "sw", "ip": "10.9.0.101"})]),
            Change::Create(Kind::Node, vec![json!({"index": 3, "ip": "10.9.0.13"})]),
        ];
        let made = db.apply(&good).await.unwrap();
        assert_eq!(made.len(), 5);
        {
            let st = db.cache.read();
            assert_eq!(
                st.group(DEFAULT_GROUP)
                    .and_then(|g| g.attributes.get("_boot_config"))
                    .map(String::as_str),
                Some("b1")
            );
            assert!(st.by_name(Kind::Node, "n3").is_some());
        }
        t.stop().await;
    }
}

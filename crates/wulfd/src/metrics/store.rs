//! The store: every operation timed ([`Timed`], a thin wrapper the head opens its store
//! through), and its size and health read at scrape time ([`status`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use wulf_store::{
    DbAlarm, DbStatus, Expect, KeyValue, LeaseId, Revision, Store, StoreError, Txn, TxnResult,
    Watch,
};

use super::{gauge, gauges, Histogram};
use crate::app::App;

/// The operations timed, in [`Op`]'s order.
const OPS: [&str; 10] = [
    "get", "list", "put", "delete", "txn", "revision", "watch", "lease", "status", "maintain",
];

#[derive(Clone, Copy)]
enum Op {
    Get,
    List,
    Put,
    Delete,
    Txn,
    Revision,
    Watch,
    Lease,
    Status,
    Maintain,
}

type L1 = [(&'static str, &'static str); 1];

pub struct StoreMetrics {
    latency: Vec<Histogram>,
    errors: Vec<Counter>,
    /// The last status read from a shared store, and when (scrapes close together share it).
    cached: Mutex<Option<(Instant, Result<DbStatus, String>)>>,
}

impl StoreMetrics {
    pub(super) fn new(reg: &mut Registry) -> StoreMetrics {
        let latency =
            Family::<L1, Histogram, fn() -> Histogram>::new_with_constructor(Histogram::latency);
        let errors = Family::<L1, Counter>::default();
        let l = OPS
            .iter()
            .map(|op| latency.get_or_create(&[("op", op)]).clone())
            .collect();
        let e = OPS
            .iter()
            .map(|op| errors.get_or_create(&[("op", op)]).clone())
            .collect();
        reg.register(
            "wulf_store_operation_duration_seconds",
            "Time the store took per operation, by operation",
            latency,
        );
        reg.register(
            "wulf_store_errors",
            "Store operations that failed, by operation (conflicts included)",
            errors,
        );
        StoreMetrics {
            latency: l,
            errors: e,
            cached: Mutex::new(None),
        }
    }

    fn observe<T>(&self, op: Op, t: Instant, r: &Result<T, StoreError>) {
        self.latency[op as usize].observe(t.elapsed());
        if r.is_err() {
            self.errors[op as usize].inc();
        }
    }
}

/// The store with every call timed into [`StoreMetrics`].
pub struct Timed(pub Arc<dyn Store>);

/// Open the head's store through [`Timed`].
pub fn timed(store: Arc<dyn Store>) -> Arc<dyn Store> {
    Arc::new(Timed(store))
}

macro_rules! timed {
    ($op:expr, $call:expr) => {{
        let t = Instant::now();
        let r = $call.await;
        super::get().store.observe($op, t, &r);
        r
    }};
}

#[async_trait]
impl Store for Timed {
    fn backend(&self) -> &'static str {
        self.0.backend()
    }
    fn shared(&self) -> bool {
        self.0.shared()
    }
    async fn revision(&self) -> Result<Revision, StoreError> {
        timed!(Op::Revision, self.0.revision())
    }
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        timed!(Op::Get, self.0.get(key))
    }
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        timed!(Op::List, self.0.list(prefix))
    }
    async fn put(&self, key: &str, value: Vec<u8>, expect: Expect) -> Result<Revision, StoreError> {
        timed!(Op::Put, self.0.put(key, value, expect))
    }
    async fn delete(&self, key: &str, expect: Expect) -> Result<Option<Revision>, StoreError> {
        timed!(Op::Delete, self.0.delete(key, expect))
    }
    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        timed!(Op::Txn, self.0.txn(txn))
    }
    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch, StoreError> {
        timed!(Op::Watch, self.0.watch(prefix, from_revision))
    }
    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        timed!(Op::Maintain, self.0.compact(revision))
    }
    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        timed!(Op::Revision, self.0.compacted_revision())
    }
    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        timed!(Op::Lease, self.0.lease_grant(ttl))
    }
    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<Duration, StoreError> {
        timed!(Op::Lease, self.0.lease_keep_alive(lease))
    }
    async fn lease_revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        timed!(Op::Lease, self.0.lease_revoke(lease))
    }
    async fn db_status(&self) -> Result<DbStatus, StoreError> {
        timed!(Op::Status, self.0.db_status())
    }
    async fn defragment(&self, endpoint: &str) -> Result<(), StoreError> {
        timed!(Op::Maintain, self.0.defragment(endpoint))
    }
    async fn disarm_alarms(&self) -> Result<Vec<DbAlarm>, StoreError> {
        timed!(Op::Maintain, self.0.disarm_alarms())
    }
}

/// How long a shared store's status read at a scrape is reused.
const STATUS_REUSE: Duration = Duration::from_secs(5);
/// How long a scrape waits for a shared store's status.
const STATUS_WAIT: Duration = Duration::from_secs(3);

/// The store's size and health as a scrape reports them.
#[derive(Debug)]
pub struct StoreStatus {
    backend: &'static str,
    revision: Option<i64>,
    /// The embedded database file's size (a stat; its in-use figure costs a walk of the
    /// whole file while writes wait, so only `wulf cluster db` asks for it).
    file_size: Option<u64>,
    /// A shared store's status, or why it could not be read.
    shared: Option<Result<DbStatus, String>>,
    quota: Option<u64>,
}

/// Read the store's size and health for a scrape.
pub async fn status(app: &App) -> StoreStatus {
    let store = &app.store;
    let revision = tokio::time::timeout(STATUS_WAIT, store.revision())
        .await
        .ok()
        .and_then(Result::ok);
    if !store.shared() {
        let file = app.cfg.data_dir.join("wulf.redb");
        return StoreStatus {
            backend: store.backend(),
            revision,
            file_size: std::fs::metadata(&file).ok().map(|m| m.len()),
            shared: None,
            quota: None,
        };
    }
    let m = &super::get().store;
    let cached = m
        .cached
        .lock()
        .ok()
        .and_then(|c| c.clone())
        .filter(|(at, _)| at.elapsed() < STATUS_REUSE)
        .map(|(_, r)| r);
    let shared = match cached {
        Some(r) => r,
        None => {
            let r = match tokio::time::timeout(STATUS_WAIT, store.db_status()).await {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {STATUS_WAIT:?}")),
            };
            if let Ok(mut c) = m.cached.lock() {
                *c = Some((Instant::now(), r.clone()));
            }
            r
        }
    };
    StoreStatus {
        backend: store.backend(),
        revision,
        file_size: None,
        shared: Some(shared),
        quota: Some(app.cfg.db.quota_mib << 20),
    }
}

impl Collector for StoreStatus {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::MetricType;
        e.encode_descriptor(
            "wulf_store",
            "The store this head uses (always 1)",
            None,
            MetricType::Info,
        )?
        .encode_info(&[("backend", self.backend)])?;
        let healthy = match &self.shared {
            None => self.revision.is_some(),
            Some(Ok(s)) => s.alarms.is_empty() && s.members.iter().all(|m| m.unreachable.is_none()),
            Some(Err(_)) => false,
        };
        gauge(
            &mut e,
            "wulf_store_up",
            "1 when the store answers, every member is reachable and no alarm is raised",
            u64::from(healthy),
        )?;
        if let Some(r) = self.revision {
            gauge(&mut e, "wulf_store_revision", "The store's revision", r)?;
        }
        if let Some(size) = self.file_size {
            gauge(
                &mut e,
                "wulf_store_db_size_bytes",
                "Size of the embedded database file",
                size,
            )?;
        }
        if let Some(q) = self.quota {
            gauge(
                &mut e,
                "wulf_store_quota_bytes",
                "The space quota of each etcd member (this head's [db] quota_mib)",
                q,
            )?;
        }
        let Some(Ok(s)) = &self.shared else {
            return Ok(());
        };
        let member = |m: &wulf_store::DbMember| [("member", m.name.clone())];
        gauges(
            &mut e,
            "wulf_store_member_up",
            "1 when the etcd member answered",
            s.members
                .iter()
                .map(|m| (member(m), u64::from(m.unreachable.is_none()))),
        )?;
        gauges(
            &mut e,
            "wulf_store_member_leader",
            "1 for the etcd member that leads",
            s.members.iter().map(|m| (member(m), u64::from(m.leader))),
        )?;
        gauges(
            &mut e,
            "wulf_store_member_db_size_bytes",
            "Size of the etcd member's database file",
            s.members.iter().map(|m| (member(m), m.db_size)),
        )?;
        gauges(
            &mut e,
            "wulf_store_member_db_in_use_bytes",
            "Bytes of the etcd member's database file in use (the rest defragmenting frees)",
            s.members.iter().map(|m| (member(m), m.db_in_use)),
        )?;
        gauges(
            &mut e,
            "wulf_store_alarm",
            "A raised etcd alarm (NOSPACE: writes refused; CORRUPT); always 1",
            s.alarms.iter().map(|a| {
                (
                    [("member", a.member.clone()), ("alarm", a.alarm.clone())],
                    1u64,
                )
            }),
        )?;
        Ok(())
    }
}

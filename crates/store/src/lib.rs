//! The `Store` trait: a revisioned key-value store with compare-and-swap, atomic
//! transactions, watches from a revision, compaction and leases — the shape of etcd's API,
//! so the embedded backend (one head) and the etcd backend (several heads) are
//! interchangeable. Every backend must pass [`conformance`].

use std::time::Duration;

use async_trait::async_trait;
pub use wulf_model::db::{DbAlarm, DbMember, DbStatus};

pub mod conformance;
pub mod embedded;
pub mod etcd;

pub use embedded::EmbeddedStore;
pub use etcd::EtcdStore;

/// A store revision. Every committed write (a put, a delete, or a whole transaction)
/// increases the store's revision by exactly one. Revision 0 means "never written".
pub type Revision = i64;

/// A lease identifier, as returned by [`Store::lease_grant`].
pub type LeaseId = i64;

/// One key and its value with its revision metadata (etcd's `KeyValue`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
    /// Number of writes since creation (1 after the first put).
    pub version: i64,
    /// The lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// A condition on the current state of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No condition.
    Any,
    /// The key must not exist.
    Absent,
    /// The key must exist (any value).
    Present,
    /// The key must exist with exactly this mod revision.
    ModRevision(Revision),
}

/// A comparison inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub key: String,
    pub expect: Expect,
}

/// A write inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Delete {
        key: String,
    },
}

/// An atomic transaction: if every compare holds, every op is applied at one new revision;
/// otherwise nothing is applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn when(mut self, key: impl Into<String>, expect: Expect) -> Self {
        self.compares.push(Compare {
            key: key.into(),
            expect,
        });
        self
    }
    pub fn put(mut self, key: impl Into<String>, value: Vec<u8>) -> Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value,
            lease: None,
        });
        self
    }
    pub fn put_with_lease(
        mut self,
        key: impl Into<String>,
        value: Vec<u8>,
        lease: LeaseId,
    ) -> Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value,
            lease: Some(lease),
        });
        self
    }
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete { key: key.into() });
        self
    }

    /// Check what every backend refuses: an empty key, a key in more than one op, a lease id
    /// that cannot exist. Returns the distinct leases the puts name, in order.
    pub fn validate(&self) -> Result<Vec<LeaseId>, StoreError> {
        let mut seen = std::collections::HashSet::with_capacity(self.ops.len());
        let mut leases = Vec::new();
        for op in &self.ops {
            let key = match op {
                Op::Put { key, lease, .. } => {
                    if let Some(l) = lease {
                        if *l <= 0 {
                            return Err(StoreError::LeaseNotFound(*l));
                        }
                        if !leases.contains(l) {
                            leases.push(*l);
                        }
                    }
                    key
                }
                Op::Delete { key } => key,
            };
            if key.is_empty() {
                return Err(StoreError::Invalid("empty key".into()));
            }
            if !seen.insert(key.as_str()) {
                return Err(StoreError::Invalid(format!(
                    "key {key} appears in more than one op of a transaction"
                )));
            }
        }
        if self.compares.iter().any(|c| c.key.is_empty()) {
            return Err(StoreError::Invalid("empty key in compare".into()));
        }
        Ok(leases)
    }
}

/// The outcome of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResult {
    /// True when every compare held and the ops were applied.
    pub succeeded: bool,
    /// The store revision after the transaction (the new revision if it succeeded and wrote
    /// anything, else the current revision).
    pub revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change seen by a watch. For a delete, `kv.value` is empty and `kv.mod_revision` is the
/// revision of the deletion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
}

/// The events of one revision that match a watch's prefix, in the order they were applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchBatch {
    pub revision: Revision,
    pub events: Vec<Event>,
}

/// A live watch. Dropping it cancels it.
pub struct Watch {
    rx: tokio::sync::mpsc::Receiver<Result<WatchBatch, StoreError>>,
}

impl Watch {
    pub fn new(rx: tokio::sync::mpsc::Receiver<Result<WatchBatch, StoreError>>) -> Self {
        Self { rx }
    }
    /// The next batch, in revision order with no gaps among matching revisions. `None` when the
    /// store shut down; `Some(Err(_))` ends the watch (e.g. `Compacted`): re-list and watch again.
    pub async fn next(&mut self) -> Option<Result<WatchBatch, StoreError>> {
        self.rx.recv().await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A compare-and-swap precondition on a single-key write failed.
    #[error("conflict: key {key} changed concurrently or its precondition did not hold")]
    Conflict { key: String },
    /// A watch asked for history that compaction has removed.
    #[error("revision {requested} has been compacted (oldest available is {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// A revision in the future was asked for (compaction, watch).
    #[error("revision {requested} is beyond the current revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("lease {0} not found or expired")]
    LeaseNotFound(LeaseId),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("store backend error: {0}")]
    Backend(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store refuses writes until space is made (etcd's NOSPACE alarm: "database space
    /// exceeded"). Reads still work.
    #[error("out of space: {0}")]
    NoSpace(String),
    /// A transaction or request beyond the backend's limits (etcd's `--max-txn-ops`,
    /// `--max-request-bytes`); nothing was applied. Smaller ones work.
    #[error("too large for the store: {0}")]
    TooBig(String),
}

/// The wulf store. Implementations must be safe to share between tasks (`Arc<dyn Store>`).
/// A write returns only once it is durable.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs: "embedded" or "etcd".
    fn backend(&self) -> &'static str;

    /// Whether several heads share this store (etcd), rather than one head owning it.
    fn shared(&self) -> bool {
        self.backend() != "embedded"
    }

    /// The current revision of the whole store.
    async fn revision(&self) -> Result<Revision, StoreError>;

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Every key starting with `prefix`, in key order, from one consistent snapshot, with the
    /// store revision of that snapshot (start a watch at `revision + 1` to follow on).
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError>;

    /// Put a value if `expect` holds; returns the new revision, or `Conflict`.
    async fn put(&self, key: &str, value: Vec<u8>, expect: Expect) -> Result<Revision, StoreError>;

    /// Delete a key if `expect` holds. Returns `Some(revision)` if a key was deleted, `None` if
    /// it did not exist (and `expect` allowed that), or `Conflict`.
    async fn delete(&self, key: &str, expect: Expect) -> Result<Option<Revision>, StoreError>;

    /// Apply a transaction atomically.
    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError>;

    /// Watch keys starting with `prefix` from `from_revision` (inclusive) on: first the
    /// recorded history, then live changes. `from_revision` 0 means "from now on".
    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch, StoreError>;

    /// Forget history before `revision` (watches from before it fail with `Compacted`).
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// The oldest revision watches can still start from.
    async fn compacted_revision(&self) -> Result<Revision, StoreError>;

    /// Grant a lease that expires `ttl` after its last keep-alive.
    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, StoreError>;

    /// Renew a lease; returns its TTL, or `LeaseNotFound` if it already expired.
    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<Duration, StoreError>;

    /// Revoke a lease now, deleting every key attached to it.
    async fn lease_revoke(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// Size and health of the store, member by member, with its raised alarms.
    async fn db_status(&self) -> Result<DbStatus, StoreError>;

    /// Give the free space in one member's database file back to the filesystem (etcd:
    /// defragment the member at `endpoint`, one of `db_status().members[].endpoint`). The
    /// member answers nothing else while it runs.
    async fn defragment(&self, endpoint: &str) -> Result<(), StoreError>;

    /// Clear raised space alarms (once compaction and defragmentation have made room);
    /// returns the alarms cleared.
    async fn disarm_alarms(&self) -> Result<Vec<DbAlarm>, StoreError>;
}

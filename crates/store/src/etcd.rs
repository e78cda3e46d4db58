//! The etcd backend: the [`Store`] trait on a real etcd cluster (v3 API, through the
//! `etcd-client` crate, vendored with its generated code), for several heads.
//!
//! Every call maps to etcd's own semantics, one to one:
//!
//! | trait                     | etcd                                                                  |
//! |---------------------------|-----------------------------------------------------------------------|
//! | revisions                 | etcd's revisions (a fresh cluster starts at 1)                        |
//! | `get`, `list`             | linearizable `Range`; `list` pages through a prefix at one revision   |
//! | `put`/`delete` + `Expect` | a `Txn` comparing `create_revision == 0` (Absent), `version > 0` (Present) or `mod_revision == r` |
//! | `txn`                     | one `Txn` (etcd refuses more than `--max-txn-ops` ops, 128 by default) |
//! | `watch`                   | a `Watch` on the prefix's range from the start revision; events grouped by revision |
//! | `compact`                 | a physical `Compact`                                                  |
//! | leases                    | etcd leases (TTL in whole seconds, at least etcd's minimum TTL)       |
//!
//! # Compacted revision
//!
//! etcd does not report its compaction revision in any status call. [`EtcdStore`] keeps the
//! highest one it has seen (its own `compact` calls, compaction notices of its watches) and
//! [`Store::compacted_revision`] asks the cluster: a read at revision 1 succeeds while nothing
//! has been compacted; otherwise a watch from revision 1 is cancelled at once by etcd with the
//! current compaction revision, which is the answer.
//!
//! # Watches
//!
//! A watch runs in a task that forwards etcd's responses. etcd never splits the events of one
//! revision over several responses (fragmentation is not requested), so each revision becomes
//! one [`WatchBatch`]. A watch that loses its stream (an etcd member restarts, the connection
//! drops) resumes from the next revision it has not delivered, for up to
//! [`EtcdOptions::watch_retry`]; a compaction past that revision ends it with
//! [`StoreError::Compacted`]. Dropping the [`EtcdStore`] ends every watch (`next()` returns
//! `None`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use etcd_client::{
    AlarmAction, AlarmOptions, AlarmType, Certificate, Client, ClusterClient, CompactionOptions,
    Compare as EtcdCompare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions,
    Identity, KvClient, LeaseClient, MaintenanceClient, PutOptions, TlsOptions, Txn as EtcdTxn,
    TxnOp, TxnOpResponse, WatchClient, WatchOptions, WatchStream,
};
use tokio::sync::{mpsc, watch as signal};
use tracing::{debug, info, warn};

use crate::{
    DbAlarm, DbMember, DbStatus, Event, EventKind, Expect, KeyValue, LeaseId, Op, Revision, Store,
    StoreError, Txn, TxnResult, Watch, WatchBatch,
};

/// A key that is never written: reads of it give the store's revision, and it anchors the
/// compaction probe.
const PROBE_KEY: &str = "\u{0}wulf/probe";

/// TLS settings for the connection to etcd (`https://` endpoints).
#[derive(Clone, Debug, Default)]
pub struct EtcdTls {
    /// PEM file of the CA that signed the etcd servers' certificates.
    pub ca_file: PathBuf,
    /// PEM client certificate, for etcd's `--client-cert-auth`; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name the servers' certificates must carry, when it is not the endpoint's host.
    pub domain: Option<String>,
}

/// How to connect to etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// TLS for every endpoint; endpoints without a scheme then get `https://`.
    pub tls: Option<EtcdTls>,
    /// etcd user and password (when the cluster has authentication enabled).
    pub user: Option<(String, String)>,
    /// How long `connect` (and each reconnection) may take.
    pub connect_timeout: Duration,
    /// HTTP/2 keep-alive ping interval; a connection that does not answer within
    /// `keep_alive_timeout` is dropped, failing its requests with `Unavailable`.
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
    /// The largest response accepted from etcd (a list page, a watch response with one big
    /// transaction's events).
    pub max_message_bytes: usize,
    /// Keys per request when listing a prefix (all pages read at one revision).
    pub list_page_size: i64,
    /// Batches buffered per watch before the watch stops reading from etcd.
    pub watch_buffer: usize,
    /// How long a watch keeps trying to resume after losing its stream before it ends with
    /// `Unavailable`.
    pub watch_retry: Duration,
    /// How long a request keeps moving to other members when the one it went to cannot serve
    /// it (writes only while they cannot have reached etcd).
    pub failover_for: Duration,
    /// How long one member may take to answer one request before the next member is asked
    /// (compaction gets [`COMPACT_TIMEOUT`]).
    pub request_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            tls: None,
            user: None,
            connect_timeout: Duration::from_secs(10),
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            max_message_bytes: 512 << 20,
            list_page_size: 5000,
            watch_buffer: 64,
            watch_retry: Duration::from_secs(60),
            failover_for: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The clients of one endpoint.
#[derive(Clone)]
struct MemberClients {
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
    maintenance: MaintenanceClient,
    cluster: ClusterClient,
}

/// One set of clients per endpoint, and the endpoint requests go to now. A member that cannot
/// be reached (or has no leader, or times out) is skipped: requests move to the next one and
/// stay there until it fails in turn. One balanced channel over all endpoints would keep
/// sending a share of requests to a dead member.
struct Members {
    clients: Vec<(String, MemberClients)>,
    current: AtomicUsize,
}

impl Members {
    /// The endpoint to use now: its index and clients.
    fn pick(&self) -> (usize, &MemberClients) {
        let i = self.current.load(Ordering::Relaxed) % self.clients.len();
        (i, &self.clients[i].1)
    }

    /// The member at `i` failed: move on to the next one (unless another request already did).
    fn skip(&self, i: usize) {
        let next = (i + 1) % self.clients.len();
        if self
            .current
            .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
            && self.clients.len() > 1
        {
            warn!(
                failed = %self.clients[i].0,
                now = %self.clients[next].0,
                "etcd endpoint not answering; using the next one"
            );
        }
    }
}

/// Whether a failed call may be sent again.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Again {
    /// Reads and idempotent calls: after any transient failure.
    Always,
    /// Writes: only when the request cannot have reached etcd (no connection).
    IfUnsent,
}

/// The [`Store`] on an etcd cluster.
pub struct EtcdStore {
    members: Arc<Members>,
    endpoints: Vec<String>,
    options: EtcdOptions,
    /// The highest compaction revision seen (etcd's own is authoritative).
    compacted: Arc<AtomicI64>,
    /// Dropped with the store: every watch task ends.
    shutdown: signal::Sender<()>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// A client for `endpoints` with `options` (timeouts, keep-alive, credentials, TLS).
async fn connect_client(endpoints: &[String], options: &EtcdOptions) -> Result<Client, StoreError> {
    let mut connect = ConnectOptions::new()
        .with_connect_timeout(options.connect_timeout)
        .with_keep_alive(options.keep_alive_interval, options.keep_alive_timeout)
        .with_keep_alive_while_idle(true)
        // A member cut off from the quorum refuses requests and cancels watches rather than
        // serving stale data: they move to a member that has a leader.
        .with_require_leader(true);
    if let Some((user, password)) = &options.user {
        connect = connect.with_user(user.clone(), password.clone());
    }
    if let Some(tls) = &options.tls {
        connect = connect.with_tls(tls_config(tls)?);
    }
    tokio::time::timeout(
        options.connect_timeout,
        Client::connect(endpoints, Some(connect)),
    )
    .await
    .map_err(|_| {
        StoreError::Unavailable(format!(
            "etcd at {} did not answer within {:?}",
            endpoints.join(","),
            options.connect_timeout
        ))
    })?
    .map_err(|e| convert("connect to etcd", e))
}

/// How long a status or alarm call to one member may take before it counts as unreachable.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one member's defragmentation may take.
const DEFRAG_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a physical compaction may take on one member.
const COMPACT_TIMEOUT: Duration = Duration::from_secs(120);

impl EtcdStore {
    /// Connects to the etcd cluster at `endpoints` (`http://host:port`, `https://host:port`,
    /// or `host:port`) and checks that it answers.
    pub async fn connect(
        endpoints: &[String],
        options: EtcdOptions,
    ) -> Result<Arc<EtcdStore>, StoreError> {
        if endpoints.is_empty() {
            return Err(StoreError::Invalid("no etcd endpoints given".into()));
        }
        let mut clients = Vec::new();
        let mut failed = Vec::new();
        for endpoint in endpoints {
            // Lazy: no connection is made until a request (unless etcd authentication is on).
            match connect_client(std::slice::from_ref(endpoint), &options).await {
                Ok(client) => clients.push((
                    endpoint.clone(),
                    MemberClients {
                        kv: client
                            .kv_client()
                            .max_decoding_message_size(options.max_message_bytes)
                            .max_encoding_message_size(usize::MAX),
                        watch: client
                            .watch_client()
                            .max_decoding_message_size(options.max_message_bytes),
                        lease: client.lease_client(),
                        maintenance: client.maintenance_client(),
                        cluster: client.cluster_client(),
                    },
                )),
                Err(e) => {
                    warn!(endpoint = %endpoint, error = %e, "cannot connect to this etcd endpoint; leaving it out");
                    failed.push(e);
                }
            }
        }
        if clients.is_empty() {
            return Err(failed.pop().unwrap_or_else(|| {
                StoreError::Unavailable(format!("etcd at {} unreachable", endpoints.join(",")))
            }));
        }
        let (shutdown, _) = signal::channel(());
        let store = EtcdStore {
            members: Arc::new(Members {
                clients,
                current: AtomicUsize::new(0),
            }),
            endpoints: endpoints.to_vec(),
            options,
            compacted: Arc::new(AtomicI64::new(0)),
            shutdown,
        };
        let revision = tokio::time::timeout(store.options.connect_timeout, store.revision())
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "etcd at {} did not answer within {:?}",
                    store.endpoints.join(","),
                    store.options.connect_timeout
                ))
            })??;
        info!(endpoints = %store.endpoints.join(","), revision, "connected to etcd");
        Ok(Arc::new(store))
    }

    /// Whether the cluster takes transactions of `ops` operations (etcd's `--max-txn-ops`),
    /// asked with a transaction of reads that changes nothing.
    pub async fn accepts_txn_ops(&self, ops: usize) -> Result<bool, StoreError> {
        let reads = vec![TxnOp::get(PROBE_KEY, None); ops];
        let asked = self
            .kv_call(Again::Always, |mut kv| {
                let txn = EtcdTxn::new().and_then(reads.clone());
                async move { kv.txn(txn).await }
            })
            .await;
        match asked {
            Ok(_) => Ok(true),
            Err(e) if known(&e) == Known::TooManyOps => Ok(false),
            Err(e) => Err(convert("probe etcd's transaction limit", e)),
        }
    }

    /// A maintenance client talking to the one member at `endpoint` only: the store's own
    /// for a configured endpoint, else a new connection (a member etcd lists by another URL).
    async fn member_client(
        &self,
        endpoint: &str,
        timeout: Duration,
    ) -> Result<MaintenanceClient, StoreError> {
        if let Some((_, c)) = self.members.clients.iter().find(|(e, _)| e == endpoint) {
            return Ok(c.maintenance.clone());
        }
        let options = EtcdOptions {
            connect_timeout: timeout.min(self.options.connect_timeout),
            ..self.options.clone()
        };
        Ok(connect_client(&[endpoint.to_string()], &options)
            .await?
            .maintenance_client())
    }

    /// Status of the member at `endpoint` as a [`DbMember`] (named `name`, id `id`).
    async fn member_status(&self, name: &str, id: u64, endpoint: &str) -> DbMember {
        let mut m = DbMember {
            name: name.to_string(),
            endpoint: endpoint.to_string(),
            id: format!("{id:x}"),
            ..Default::default()
        };
        let asked = async {
            let mut client = self.member_client(endpoint, MEMBER_TIMEOUT).await?;
            client
                .status()
                .await
                .map_err(|e| convert(&format!("status of etcd member {name}"), e))
        };
        match tokio::time::timeout(MEMBER_TIMEOUT, asked).await {
            Ok(Ok(st)) => {
                m.leader = st.leader() == id;
                m.version = st.version().to_string();
                m.db_size = u64::try_from(st.db_size()).unwrap_or(0);
                m.db_in_use = u64::try_from(st.raft_used_db_size()).unwrap_or(0);
                m.raft_index = st.raft_index();
                m.errors = st.errors().to_vec();
            }
            Ok(Err(e)) => m.unreachable = Some(e.to_string()),
            Err(_) => m.unreachable = Some(format!("no answer within {MEMBER_TIMEOUT:?}")),
        }
        m
    }

    /// Run `op` with the clients of the current endpoint. When it fails because that member
    /// cannot serve it (unreachable, no leader, no answer within
    /// [`EtcdOptions::request_timeout`]), the next request goes to another member, and this
    /// one is sent again there if `again` allows: to every member at least once, and for up
    /// to [`EtcdOptions::failover_for`].
    async fn call<T, F, Fut>(&self, again: Again, op: F) -> Result<T, etcd_client::Error>
    where
        F: FnMut(MemberClients) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        self.call_with(again, self.options.request_timeout, op)
            .await
            .map(|(v, _)| v)
    }

    /// [`EtcdStore::call`] with its own per-attempt timeout; also says which member answered.
    async fn call_with<T, F, Fut>(
        &self,
        again: Again,
        timeout: Duration,
        mut op: F,
    ) -> Result<(T, usize), etcd_client::Error>
    where
        F: FnMut(MemberClients) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.options.failover_for;
        let n = self.members.clients.len();
        let mut pause = Duration::from_millis(50);
        let mut tries = 0usize;
        loop {
            let (i, clients) = self.members.pick();
            let e = match tokio::time::timeout(timeout, op(clients.clone())).await {
                Ok(Ok(v)) => return Ok((v, i)),
                Ok(Err(e)) => e,
                // A member that hangs (defragmenting, partitioned) counts as not answering.
                Err(_) => {
                    etcd_client::Error::GRpcStatus(tonic::Status::deadline_exceeded(format!(
                        "no answer from {} within {timeout:?}",
                        self.members.clients[i].0
                    )))
                }
            };
            let unsent = unsent(&e);
            if !(unsent || transient(&e)) {
                return Err(e);
            }
            self.members.skip(i);
            tries += 1;
            let retry = unsent || again == Again::Always;
            if !retry || (Instant::now() >= deadline && tries >= n) {
                return Err(e);
            }
            debug!(error = %e, "etcd request failed; trying again");
            if tries.is_multiple_of(n) {
                // Every member failed once: give the cluster a moment (an election).
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }

    /// The cluster's members.
    async fn member_list(&self) -> Result<etcd_client::MemberListResponse, StoreError> {
        self.call(Again::Always, |c| {
            let mut cluster = c.cluster;
            async move { cluster.member_list().await }
        })
        .await
        .map_err(|e| convert("list etcd members", e))
    }

    /// The alarms raised on any member.
    async fn raised_alarms(&self) -> Result<etcd_client::AlarmResponse, StoreError> {
        self.call(Again::Always, |c| {
            let mut maintenance = c.maintenance;
            async move {
                maintenance
                    .alarm(AlarmAction::Get, AlarmType::None, None)
                    .await
            }
        })
        .await
        .map_err(|e| convert("list etcd alarms", e))
    }

    /// A KV call (see [`EtcdStore::call`]).
    async fn kv_call<T, F, Fut>(&self, again: Again, mut op: F) -> Result<T, etcd_client::Error>
    where
        F: FnMut(KvClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        self.call(again, |c| op(c.kv)).await
    }

    fn note_compacted(&self, revision: Revision) {
        self.compacted.fetch_max(revision, Ordering::SeqCst);
    }

    /// Runs a txn of one key's precondition and one op.
    async fn guarded(
        &self,
        key: &str,
        expect: &Expect,
        op: TxnOp,
    ) -> Result<etcd_client::TxnResponse, StoreError> {
        let txn = EtcdTxn::new()
            .when(compares(key, expect))
            .and_then(vec![op]);
        self.kv_call(Again::IfUnsent, |mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await
        .map_err(|e| convert(&format!("write {key}"), e))
    }

    /// Which of `leases` etcd does not know (for a txn refused with "lease not found").
    async fn missing_lease(&self, leases: &[LeaseId]) -> LeaseId {
        if leases.len() > 1 {
            for &id in leases {
                let asked = self
                    .call(Again::Always, |c| {
                        let mut lease = c.lease;
                        async move { lease.time_to_live(id, None).await }
                    })
                    .await;
                match asked {
                    Ok(r) if r.ttl() < 0 => return id,
                    Err(e) if known(&e) == Known::LeaseNotFound => return id,
                    _ => {}
                }
            }
        }
        leases.first().copied().unwrap_or(0)
    }

    /// The store's current compaction revision, asked of etcd.
    async fn probe_compacted(&self) -> Result<Revision, StoreError> {
        let at_one = self
            .kv_call(Again::Always, |mut kv| async move {
                kv.get(
                    PROBE_KEY,
                    Some(GetOptions::new().with_revision(1).with_count_only()),
                )
                .await
            })
            .await;
        match at_one {
            // Revision 1 is still readable: nothing has been compacted.
            Ok(_) => return Ok(0),
            Err(e) if known(&e) == Known::Compacted => {}
            Err(e) => return Err(convert("read at revision 1", e)),
        }
        // etcd cancels a watch from a compacted revision with the compaction revision.
        let probe = async {
            let mut stream = self
                .call(Again::Always, |c| {
                    let mut watch = c.watch;
                    async move {
                        watch
                            .watch(PROBE_KEY, Some(WatchOptions::new().with_start_revision(1)))
                            .await
                    }
                })
                .await
                .map_err(|e| convert("watch the compaction probe", e))?;
            loop {
                match stream.message().await {
                    Ok(Some(r)) if r.compact_revision() > 0 => return Ok(r.compact_revision()),
                    Ok(Some(r)) if r.canceled() => {
                        return Err(StoreError::Backend(format!(
                            "etcd cancelled the compaction probe: {}",
                            r.cancel_reason()
                        )))
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        return Err(StoreError::Unavailable(
                            "etcd closed the compaction probe".into(),
                        ))
                    }
                    Err(e) => return Err(convert("compaction probe", e)),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), probe)
            .await
            .map_err(|_| {
                StoreError::Backend("etcd did not report its compaction revision".into())
            })?
    }
}

fn tls_config(tls: &EtcdTls) -> Result<TlsOptions, StoreError> {
    let read = |path: &PathBuf, what: &str| {
        std::fs::read(path)
            .map_err(|e| StoreError::Invalid(format!("etcd TLS {what} {}: {e}", path.display())))
    };
    let mut config =
        TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.ca_file, "CA file")?));
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            config = config.identity(Identity::from_pem(
                read(cert, "certificate")?,
                read(key, "key")?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::Invalid(
                "etcd TLS: a client certificate needs its key, and a key its certificate".into(),
            ))
        }
    }
    if let Some(domain) = &tls.domain {
        config = config.domain_name(domain.clone());
    }
    Ok(config)
}

// ---------------------------------------------------------------------------------------------
// Errors

/// etcd errors that map to a specific [`StoreError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    LeaseNotFound,
    Compacted,
    FutureRevision,
    TooManyOps,
    RequestTooLarge,
    DuplicateKey,
    NoSpace,
    Other,
}

fn known(e: &etcd_client::Error) -> Known {
    let message = match e {
        etcd_client::Error::GRpcStatus(s) => s.message(),
        etcd_client::Error::LeaseKeepAliveError(m) => m.as_str(),
        _ => return Known::Other,
    };
    if message.contains("lease not found") {
        Known::LeaseNotFound
    } else if message.contains("required revision has been compacted") {
        Known::Compacted
    } else if message.contains("required revision is a future revision") {
        Known::FutureRevision
    } else if message.contains("too many operations in txn request") {
        Known::TooManyOps
    } else if message.contains("request is too large")
        || message.contains("received message larger than max")
    {
        Known::RequestTooLarge
    } else if message.contains("duplicate key given in txn request") {
        Known::DuplicateKey
    } else if message.contains("database space exceeded") {
        Known::NoSpace
    } else {
        Known::Other
    }
}

/// A member's name, or its id in hex while it has none (not started yet).
fn member_name(m: &etcd_client::Member) -> String {
    if m.name().is_empty() {
        format!("{:x}", m.id())
    } else {
        m.name().to_string()
    }
}

/// The name of member `id` among `members`.
fn name_of(members: &etcd_client::MemberListResponse, id: u64) -> String {
    members
        .members()
        .iter()
        .find(|m| m.id() == id)
        .map_or_else(|| format!("{id:x}"), member_name)
}

/// etcd's name for an alarm, as `etcdctl alarm list` prints it.
fn alarm_name(a: AlarmType) -> &'static str {
    match a {
        AlarmType::None => "NONE",
        AlarmType::Nospace => "NOSPACE",
        AlarmType::Corrupt => "CORRUPT",
    }
}

/// Maps an etcd client error to a [`StoreError`]; `what` says what was being done.
/// Errors needing context (a lease id, a revision) are mapped by the callers first.
fn convert(what: &str, e: etcd_client::Error) -> StoreError {
    match known(&e) {
        Known::TooManyOps => {
            return StoreError::TooBig(format!(
                "{what}: the transaction has more operations than the etcd cluster accepts in one \
                 transaction (etcd's --max-txn-ops, 128 by default; raise it on every member)"
            ))
        }
        Known::RequestTooLarge => {
            return StoreError::TooBig(format!(
                "{what}: the request is larger than the etcd cluster accepts (etcd's \
                 --max-request-bytes, 1.5 MiB by default; raise it on every member)"
            ))
        }
        Known::DuplicateKey => {
            return StoreError::Invalid(format!(
                "{what}: a key appears in more than one op of a transaction"
            ))
        }
        Known::NoSpace => {
            return StoreError::NoSpace(format!(
                "{what}: etcd database space exceeded (its NOSPACE alarm is raised; \
                 --quota-backend-bytes): etcd refuses writes until it is compacted, \
                 defragmented and the alarm disarmed"
            ))
        }
        Known::LeaseNotFound => {
            return StoreError::LeaseNotFound(0);
        }
        Known::Compacted | Known::FutureRevision | Known::Other => {}
    }
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            let message = format!("{what}: {}", s.message());
            match s.code() {
                // The codes `transient` retries: a connection reset mid-request comes as
                // Unknown ("transport error"), an HTTP/2 reset as Internal.
                tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Cancelled
                | tonic::Code::Aborted
                | tonic::Code::Unknown
                | tonic::Code::Internal => StoreError::Unavailable(message),
                tonic::Code::InvalidArgument => StoreError::Invalid(message),
                tonic::Code::OutOfRange if s.message().contains("message length too large") => {
                    StoreError::Backend(format!(
                        "{message} (a response larger than EtcdOptions::max_message_bytes)"
                    ))
                }
                _ => StoreError::Backend(message),
            }
        }
        etcd_client::Error::TransportError(t) => StoreError::Unavailable(format!("{what}: {t}")),
        etcd_client::Error::IoError(io) => StoreError::Unavailable(format!("{what}: {io}")),
        etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_) => {
            StoreError::Invalid(format!("{what}: {e}"))
        }
        other => StoreError::Backend(format!("{what}: {other}")),
    }
}

/// Whether the request cannot have reached etcd: no connection could be made to the member.
fn unsent(e: &etcd_client::Error) -> bool {
    let text = match e {
        etcd_client::Error::GRpcStatus(s) => s.message().to_string(),
        etcd_client::Error::TransportError(t) => format!("{t:?}"),
        _ => return false,
    };
    [
        "tcp connect error",
        "error trying to connect",
        "Connection refused",
        "No route to host",
    ]
    .iter()
    .any(|m| text.contains(m))
}

/// Whether a watch that failed with this error should resume.
fn transient(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => matches!(
            s.code(),
            tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::Internal
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Aborted
        ),
        etcd_client::Error::TransportError(_)
        | etcd_client::Error::IoError(_)
        | etcd_client::Error::WatchError(_) => true,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Conversions

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision, StoreError> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| StoreError::Backend("etcd response without a header".into()))
}

fn key_value(kv: etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    let (create_revision, mod_revision, version, lease) = (
        kv.create_revision(),
        kv.mod_revision(),
        kv.version(),
        kv.lease(),
    );
    let (key, value) = kv.into_key_value();
    Ok(KeyValue {
        key: utf8_key(key)?,
        value,
        create_revision,
        mod_revision,
        version,
        lease: (lease != 0).then_some(lease),
    })
}

fn utf8_key(key: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(key).map_err(|e| {
        StoreError::Backend(format!(
            "etcd holds a key that is not UTF-8: {:?}",
            String::from_utf8_lossy(e.as_bytes())
        ))
    })
}

/// The compares of one `Expect` on `key` (none for `Any`).
fn compares(key: &str, expect: &Expect) -> Vec<EtcdCompare> {
    match expect {
        Expect::Any => Vec::new(),
        Expect::Absent => vec![EtcdCompare::create_revision(key, CompareOp::Equal, 0)],
        Expect::Present => vec![EtcdCompare::version(key, CompareOp::Greater, 0)],
        Expect::ModRevision(r) if *r > 0 => {
            vec![EtcdCompare::mod_revision(key, CompareOp::Equal, *r)]
        }
        // An absent key has mod_revision 0: "present with revision <= 0" never holds.
        Expect::ModRevision(_) => vec![
            EtcdCompare::version(key, CompareOp::Greater, 0),
            EtcdCompare::version(key, CompareOp::Less, 0),
        ],
    }
}

/// The range of keys starting with `prefix` (every key for the empty prefix).
fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        return (vec![0], vec![0]);
    }
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return (prefix.as_bytes().to_vec(), end);
        }
    }
    (prefix.as_bytes().to_vec(), vec![0])
}

/// Checks a txn as the embedded backend does (etcd refuses the same ones, less clearly).
fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::Invalid("empty key".into()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The trait

#[async_trait]
impl Store for EtcdStore {
    fn backend(&self) -> &'static str {
        "etcd"
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        let resp = self
            .kv_call(Again::Always, |mut kv| async move {
                kv.get(PROBE_KEY, Some(GetOptions::new().with_count_only()))
                    .await
            })
            .await
            .map_err(|e| convert("read the etcd revision", e))?;
        header_revision(resp.header())
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        check_key(key)?;
        let mut resp = self
            .kv_call(
                Again::Always,
                |mut kv| async move { kv.get(key, None).await },
            )
            .await
            .map_err(|e| convert(&format!("get {key}"), e))?;
        resp.take_kvs()
            .into_iter()
            .next()
            .map(key_value)
            .transpose()
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let (start, end) = prefix_range(prefix);
        let page = self.options.list_page_size.max(1);
        // Pages are read at the first page's revision; a compaction in between restarts.
        let mut attempts = 0;
        'again: loop {
            attempts += 1;
            let mut out = Vec::new();
            let mut from = start.clone();
            let mut at: Revision = 0;
            loop {
                let mut opts = GetOptions::new().with_range(end.clone()).with_limit(page);
                if at > 0 {
                    opts = opts.with_revision(at);
                }
                let asked = self
                    .kv_call(Again::Always, |mut kv| {
                        let (from, opts) = (from.clone(), opts.clone());
                        async move { kv.get(from, Some(opts)).await }
                    })
                    .await;
                let mut resp = match asked {
                    Ok(r) => r,
                    Err(e) if known(&e) == Known::Compacted && attempts < 5 => {
                        debug!(prefix, "list snapshot compacted while paging; again");
                        continue 'again;
                    }
                    Err(e) => return Err(convert(&format!("list {prefix}"), e)),
                };
                if at == 0 {
                    at = header_revision(resp.header())?;
                }
                let more = resp.more();
                let kvs = resp.take_kvs();
                let last = kvs.last().map(|kv| kv.key().to_vec());
                out.reserve(kvs.len());
                for kv in kvs {
                    out.push(key_value(kv)?);
                }
                match last {
                    Some(mut last) if more => {
                        last.push(0);
                        from = last;
                    }
                    _ => return Ok((out, at)),
                }
            }
        }
    }

    async fn put(&self, key: &str, value: Vec<u8>, expect: Expect) -> Result<Revision, StoreError> {
        check_key(key)?;
        if expect == Expect::Any {
            let resp = self
                .kv_call(Again::IfUnsent, |mut kv| {
                    let value = value.clone();
                    async move { kv.put(key, value, None).await }
                })
                .await
                .map_err(|e| convert(&format!("put {key}"), e))?;
            return header_revision(resp.header());
        }
        let resp = self
            .guarded(key, &expect, TxnOp::put(key, value, None))
            .await?;
        if !resp.succeeded() {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
            });
        }
        header_revision(resp.header())
    }

    async fn delete(&self, key: &str, expect: Expect) -> Result<Option<Revision>, StoreError> {
        check_key(key)?;
        if expect == Expect::Any {
            let resp = self
                .kv_call(Again::IfUnsent, |mut kv| async move {
                    kv.delete(key, None).await
                })
                .await
                .map_err(|e| convert(&format!("delete {key}"), e))?;
            let revision = header_revision(resp.header())?;
            return Ok((resp.deleted() > 0).then_some(revision));
        }
        let resp = self
            .guarded(key, &expect, TxnOp::delete(key, None::<DeleteOptions>))
            .await?;
        if !resp.succeeded() {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
            });
        }
        let revision = header_revision(resp.header())?;
        let deleted = resp.op_responses().iter().any(|r| match r {
            TxnOpResponse::Delete(d) => d.deleted() > 0,
            _ => false,
        });
        Ok(deleted.then_some(revision))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        let leases = txn.validate()?;
        let ops_count = txn.ops.len();
        let compares: Vec<EtcdCompare> = txn
            .compares
            .iter()
            .flat_map(|c| compares(&c.key, &c.expect))
            .collect();
        let ops: Vec<TxnOp> = txn
            .ops
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => {
                    TxnOp::put(key, value, lease.map(|l| PutOptions::new().with_lease(l)))
                }
                Op::Delete { key } => TxnOp::delete(key, None),
            })
            .collect();
        let txn = EtcdTxn::new().when(compares).and_then(ops);
        let asked = self
            .kv_call(Again::IfUnsent, |mut kv| {
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await;
        let resp = match asked {
            Ok(resp) => resp,
            Err(e) if known(&e) == Known::LeaseNotFound => {
                return Err(StoreError::LeaseNotFound(self.missing_lease(&leases).await))
            }
            Err(e) => {
                return Err(convert(
                    &format!("transaction of {ops_count} operations"),
                    e,
                ))
            }
        };
        Ok(TxnResult {
            succeeded: resp.succeeded(),
            revision: header_revision(resp.header())?,
        })
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch, StoreError> {
        if from_revision < 0 {
            return Err(StoreError::Invalid(format!(
                "negative watch revision {from_revision}"
            )));
        }
        let from = if from_revision == 0 {
            self.revision().await? + 1
        } else {
            let compacted = self.compacted.load(Ordering::SeqCst);
            if from_revision < compacted {
                return Err(StoreError::Compacted {
                    requested: from_revision,
                    compacted,
                });
            }
            from_revision
        };
        let range = prefix_range(prefix);
        let (stream, member) = self
            .call_with(Again::Always, self.options.request_timeout, |c| {
                let range = range.clone();
                async move { open_watch(c.watch, &range, from).await }
            })
            .await
            .map_err(|e| convert(&format!("watch {prefix}"), e))?;
        let (tx, rx) = mpsc::channel(self.options.watch_buffer.max(1));
        let task = WatchTask {
            members: self.members.clone(),
            member,
            prefix: prefix.to_owned(),
            range,
            next: from,
            tx,
            shutdown: self.shutdown.subscribe(),
            compacted: self.compacted.clone(),
            retry: self.options.watch_retry,
        };
        tokio::spawn(task.run(stream));
        Ok(Watch::new(rx))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        if revision < 0 {
            return Err(StoreError::Invalid(format!(
                "negative compaction revision {revision}"
            )));
        }
        if revision <= self.compacted.load(Ordering::SeqCst) || revision == 0 {
            return Ok(());
        }
        let asked = self
            .call_with(Again::Always, COMPACT_TIMEOUT, |c| {
                let mut kv = c.kv;
                async move {
                    kv.compact(revision, Some(CompactionOptions::new().with_physical()))
                        .await
                }
            })
            .await
            .map(|(v, _)| v);
        match asked {
            Ok(_) => {
                self.note_compacted(revision);
                info!(revision, "etcd history compacted");
                Ok(())
            }
            // Already compacted at or beyond it: nothing to do.
            Err(e) if known(&e) == Known::Compacted => Ok(()),
            Err(e) if known(&e) == Known::FutureRevision => Err(StoreError::FutureRevision {
                requested: revision,
                current: self.revision().await?,
            }),
            Err(e) => Err(convert(&format!("compact at {revision}"), e)),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        let probed = self.probe_compacted().await?;
        self.note_compacted(probed);
        Ok(self.compacted.load(Ordering::SeqCst))
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        if ttl.is_zero() {
            return Err(StoreError::Invalid("lease TTL must not be zero".into()));
        }
        // etcd counts in whole seconds: round up.
        let secs = i64::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
            .unwrap_or(i64::MAX / 4);
        // Sent again after any failure: a lease granted but not answered expires unused.
        let resp = self
            .call(Again::Always, |c| {
                let mut lease = c.lease;
                async move { lease.grant(secs, None).await }
            })
            .await
            .map_err(|e| convert("grant a lease", e))?;
        if !resp.error().is_empty() {
            return Err(StoreError::Backend(format!(
                "grant a lease: {}",
                resp.error()
            )));
        }
        Ok(resp.id())
    }

    async fn db_status(&self) -> Result<DbStatus, StoreError> {
        let listed = self.member_list().await?;
        let mut asks = Vec::new();
        for m in listed.members() {
            let name = member_name(m);
            let (id, url) = (m.id(), m.client_urls().first().cloned());
            asks.push(async move {
                match url {
                    Some(url) => self.member_status(&name, id, &url).await,
                    None => DbMember {
                        name,
                        id: format!("{id:x}"),
                        unreachable: Some("not started (no client URL yet)".into()),
                        ..Default::default()
                    },
                }
            });
        }
        let mut members = futures_util::future::join_all(asks).await;
        members.sort_by(|a, b| a.name.cmp(&b.name));
        let alarms = self.raised_alarms().await?;
        let alarms = alarms
            .alarms()
            .iter()
            .map(|a| DbAlarm {
                member: name_of(&listed, a.member_id()),
                alarm: alarm_name(a.alarm()).to_string(),
            })
            .collect();
        Ok(DbStatus {
            backend: "etcd".into(),
            revision: self.revision().await?,
            compacted_revision: self.compacted_revision().await?,
            members,
            alarms,
            ..Default::default()
        })
    }

    async fn defragment(&self, endpoint: &str) -> Result<(), StoreError> {
        let run = async {
            let mut client = self.member_client(endpoint, MEMBER_TIMEOUT).await?;
            client
                .defragment()
                .await
                .map_err(|e| convert(&format!("defragment etcd member {endpoint}"), e))
        };
        tokio::time::timeout(DEFRAG_TIMEOUT, run)
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "defragmenting etcd member {endpoint} took longer than {DEFRAG_TIMEOUT:?}"
                ))
            })??;
        info!(endpoint, "etcd member defragmented");
        Ok(())
    }

    async fn disarm_alarms(&self) -> Result<Vec<DbAlarm>, StoreError> {
        let raised = self.raised_alarms().await?;
        // Names only make the answer readable: ids do if the list cannot be read.
        let members = self.member_list().await.ok();
        let name_of = |id: u64| {
            members
                .as_ref()
                .map_or_else(|| format!("{id:x}"), |m| name_of(m, id))
        };
        let mut cleared = Vec::new();
        for a in raised.alarms() {
            if a.alarm() == AlarmType::None {
                continue;
            }
            let (member, alarm) = (a.member_id(), a.alarm());
            self.call(Again::Always, |c| {
                let mut maintenance = c.maintenance;
                let mut opts = AlarmOptions::new();
                opts.with_member(member);
                async move {
                    maintenance
                        .alarm(AlarmAction::Deactivate, alarm, Some(opts))
                        .await
                }
            })
            .await
            .map_err(|e| convert("disarm an etcd alarm", e))?;
            warn!(member = %name_of(a.member_id()), alarm = alarm_name(a.alarm()), "etcd alarm disarmed");
            cleared.push(DbAlarm {
                member: name_of(a.member_id()),
                alarm: alarm_name(a.alarm()).to_string(),
            });
        }
        Ok(cleared)
    }

    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<Duration, StoreError> {
        let not_found = |e: &etcd_client::Error| known(e) == Known::LeaseNotFound;
        let renewed = self
            .call(Again::Always, |c| {
                let mut client = c.lease;
                async move {
                    let (mut keeper, mut stream) = client.keep_alive(lease).await?;
                    // The first keep-alive was answered inside `keep_alive`; a second one
                    // reports the TTL.
                    keeper.keep_alive().await?;
                    match stream.message().await? {
                        Some(resp) => Ok(resp.ttl()),
                        None => Err(etcd_client::Error::LeaseKeepAliveError(
                            "etcd closed the keep-alive stream".into(),
                        )),
                    }
                }
            })
            .await;
        match renewed {
            Ok(ttl) if ttl > 0 => Ok(Duration::from_secs(ttl.unsigned_abs())),
            Ok(_) => Err(StoreError::LeaseNotFound(lease)),
            Err(e) if not_found(&e) => Err(StoreError::LeaseNotFound(lease)),
            Err(e) => Err(convert(&format!("keep lease {lease} alive"), e)),
        }
    }

    async fn lease_revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        let revoked = self
            .call(Again::Always, |c| {
                let mut client = c.lease;
                async move { client.revoke(lease).await }
            })
            .await;
        match revoked {
            Ok(_) => Ok(()),
            Err(e) if known(&e) == Known::LeaseNotFound => Err(StoreError::LeaseNotFound(lease)),
            Err(e) => Err(convert(&format!("revoke lease {lease}"), e)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Watches

/// Opens an etcd watch on `range` from `from` and waits until etcd has created it.
async fn open_watch(
    mut client: WatchClient,
    range: &(Vec<u8>, Vec<u8>),
    from: Revision,
) -> Result<WatchStream, etcd_client::Error> {
    let options = WatchOptions::new()
        .with_range(range.1.clone())
        .with_start_revision(from);
    let mut stream = client.watch(range.0.clone(), Some(options)).await?;
    match stream.message().await? {
        Some(r) if r.created() => Ok(stream),
        Some(r) => Err(etcd_client::Error::WatchError(format!(
            "etcd did not create the watch: {}",
            r.cancel_reason()
        ))),
        None => Err(etcd_client::Error::WatchError(
            "etcd closed the watch stream".into(),
        )),
    }
}

struct WatchTask {
    members: Arc<Members>,
    /// The member the stream comes from.
    member: usize,
    prefix: String,
    range: (Vec<u8>, Vec<u8>),
    /// The first revision not delivered yet.
    next: Revision,
    tx: mpsc::Sender<Result<WatchBatch, StoreError>>,
    shutdown: signal::Receiver<()>,
    compacted: Arc<AtomicI64>,
    retry: Duration,
}

/// Why a watch task stops.
enum Stop {
    /// The store was dropped or the watcher went away.
    Quiet,
    /// Tell the watcher, then stop.
    Error(StoreError),
}

impl WatchTask {
    async fn run(mut self, mut stream: WatchStream) {
        let stop = loop {
            match self.follow(&mut stream).await {
                Ok(stop) => break stop,
                Err(lost) => {
                    warn!(prefix = %self.prefix, next = self.next, error = %lost, "etcd watch lost; resuming");
                    self.members.skip(self.member);
                    match self.resume().await {
                        Ok(s) => stream = s,
                        Err(stop) => break stop,
                    }
                }
            }
        };
        if let Stop::Error(e) = stop {
            debug!(prefix = %self.prefix, error = %e, "etcd watch ends");
            let _ = self.tx.send(Err(e)).await;
        }
    }

    /// Forwards responses until the watch ends (`Ok`) or its stream is lost (`Err`).
    async fn follow(&mut self, stream: &mut WatchStream) -> Result<Stop, etcd_client::Error> {
        loop {
            let message = tokio::select! {
                _ = self.shutdown.changed() => return Ok(Stop::Quiet),
                _ = self.tx.closed() => return Ok(Stop::Quiet),
                m = stream.message() => m,
            };
            let resp = match message {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    return Err(etcd_client::Error::WatchError(
                        "etcd closed the watch stream".into(),
                    ))
                }
                Err(e) if transient(&e) => return Err(e),
                Err(e) => return Ok(Stop::Error(convert(&format!("watch {}", self.prefix), e))),
            };
            if resp.compact_revision() > 0 {
                let compacted = resp.compact_revision();
                self.compacted.fetch_max(compacted, Ordering::SeqCst);
                return Ok(Stop::Error(StoreError::Compacted {
                    requested: self.next,
                    compacted,
                }));
            }
            if resp.canceled() && resp.cancel_reason().contains("no leader") {
                // Its member lost the quorum: resume on another.
                return Err(etcd_client::Error::WatchError(format!(
                    "etcd cancelled the watch: {}",
                    resp.cancel_reason()
                )));
            }
            if resp.canceled() {
                return Ok(Stop::Error(StoreError::Backend(format!(
                    "etcd cancelled the watch of {}: {}",
                    self.prefix,
                    resp.cancel_reason()
                ))));
            }
            let mut batch: Option<WatchBatch> = None;
            for e in resp.events() {
                let Some(kv) = e.kv() else { continue };
                let event = Event {
                    kind: match e.event_type() {
                        EventType::Put => EventKind::Put,
                        EventType::Delete => EventKind::Delete,
                    },
                    kv: match key_value(kv.clone()) {
                        Ok(kv) => kv,
                        Err(err) => return Ok(Stop::Error(err)),
                    },
                };
                let revision = event.kv.mod_revision;
                match &mut batch {
                    Some(b) if b.revision == revision => b.events.push(event),
                    _ => {
                        if let Some(done) = batch.take() {
                            if let Some(stop) = self.deliver(done).await {
                                return Ok(stop);
                            }
                        }
                        batch = Some(WatchBatch {
                            revision,
                            events: vec![event],
                        });
                    }
                }
            }
            if let Some(done) = batch {
                if let Some(stop) = self.deliver(done).await {
                    return Ok(stop);
                }
            }
        }
    }

    /// Sends one batch; `Some` when the task should stop.
    async fn deliver(&mut self, batch: WatchBatch) -> Option<Stop> {
        // etcd never sends a revision twice on one stream, but a resumed stream starts at
        // `next`: anything below it was delivered already.
        if batch.revision < self.next {
            return None;
        }
        let revision = batch.revision;
        tokio::select! {
            _ = self.shutdown.changed() => Some(Stop::Quiet),
            sent = self.tx.send(Ok(batch)) => match sent {
                Ok(()) => {
                    self.next = revision + 1;
                    None
                }
                Err(_) => Some(Stop::Quiet),
            },
        }
    }

    /// Opens the watch again from `next`, retrying for up to `retry`.
    async fn resume(&mut self) -> Result<WatchStream, Stop> {
        let deadline = Instant::now() + self.retry;
        let mut pause = Duration::from_millis(100);
        loop {
            let (member, clients) = self.members.pick();
            let client = clients.watch.clone();
            let attempt = tokio::select! {
                _ = self.shutdown.changed() => return Err(Stop::Quiet),
                _ = self.tx.closed() => return Err(Stop::Quiet),
                a = open_watch(client, &self.range, self.next) => a,
            };
            if attempt.as_ref().is_err_and(|e| unsent(e) || transient(e)) {
                self.members.skip(member);
            }
            match attempt {
                Ok(stream) => {
                    self.member = member;
                    info!(prefix = %self.prefix, next = self.next, "etcd watch resumed");
                    return Ok(stream);
                }
                Err(e) if transient(&e) && Instant::now() + pause < deadline => {
                    debug!(prefix = %self.prefix, error = %e, "etcd watch not resumed yet");
                }
                Err(e) => {
                    return Err(Stop::Error(convert(
                        &format!("resume the watch of {}", self.prefix),
                        e,
                    )))
                }
            }
            tokio::select! {
                _ = self.shutdown.changed() => return Err(Stop::Quiet),
                _ = self.tx.closed() => return Err(Stop::Quiet),
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_range(""), (vec![0], vec![0]));
        assert_eq!(prefix_range("a/"), (b"a/".to_vec(), b"a0".to_vec()));
        assert_eq!(prefix_range("a/b"), (b"a/b".to_vec(), b"a/c".to_vec()));
    }

    #[test]
    fn txn_checks() {
        let dup = Txn::new().put("k", vec![]).delete("k");
        assert!(matches!(dup.validate(), Err(StoreError::Invalid(_))));
        let leases = Txn::new()
            .put_with_lease("a", vec![], 7)
            .put_with_lease("b", vec![], 7)
            .put_with_lease("c", vec![], 9);
        assert_eq!(leases.validate().ok(), Some(vec![7, 9]));
        let zero = Txn::new().put_with_lease("a", vec![], 0);
        assert!(matches!(zero.validate(), Err(StoreError::LeaseNotFound(0))));
    }

    #[test]
    fn expect_compares() {
        assert!(compares("k", &Expect::Any).is_empty());
        assert_eq!(compares("k", &Expect::ModRevision(0)).len(), 2);
        assert_eq!(compares("k", &Expect::ModRevision(5)).len(), 1);
    }
}

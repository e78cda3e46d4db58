//! The embedded backend: one redb file, for a single head.
//!
//! # Layout
//!
//! | table        | key                         | value                                          |
//! |--------------|-----------------------------|------------------------------------------------|
//! | `kv`         | key (UTF-8 bytes)           | 32-byte header (create, mod, version, lease; i64 LE) + value bytes |
//! | `events`     | revision (`i64`)            | every event of that revision, encoded (see [`encode_events`]) |
//! | `meta`       | name (`&str`)               | `i64`: `revision`, `compacted`, `next_lease`, `format` |
//! | `leases`     | lease id (`i64`)            | `(ttl_ms: u64, expiry_unix_ms: i64)`           |
//! | `lease_keys` | lease id (u64 BE) + key     | `()` — which keys are attached to which lease  |
//!
//! # Writes
//!
//! Every write runs on a blocking thread, holds [`Inner::write_lock`] from `begin_write` until
//! the watch batch has been published, and commits with [`Durability::Immediate`]. Holding the
//! lock across commit and publication means the broadcast channel sees revisions in strictly
//! increasing order with no gaps, and the in-memory revision is updated before the batch is sent.
//!
//! # Watches
//!
//! A watch subscribes to the broadcast channel *before* it reads anything, then replays the
//! stored history from its start revision up to the snapshot's revision, then follows live
//! batches, skipping those it already replayed. When the broadcast receiver lags (or a gap is
//! seen) it replays again from the stored history, so a slow watcher still sees every event, or
//! gets `Compacted` if that history is gone.
//!
//! # Leases
//!
//! Leases are persisted with their TTL and their expiry as wall-clock unix milliseconds, so a
//! lease outlives a restart and still expires on time. A background task (holding only a `Weak`
//! reference) revokes expired leases; a lease whose expiry has passed is treated as gone by
//! `keep_alive` and by puts even before that task reaps it.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redb::{Database, DatabaseError, Durability, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, info, warn};

use crate::{
    DbAlarm, DbMember, DbStatus, Event, EventKind, Expect, KeyValue, LeaseId, Op, Revision, Store,
    StoreError, Txn, TxnResult, Watch, WatchBatch,
};

// Keys are stored as bytes: redb compares `&str` keys by re-validating UTF-8 on every
// comparison, and byte order is the same as `str` order.
const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const EVENTS: TableDefinition<i64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
const LEASES: TableDefinition<i64, (u64, i64)> = TableDefinition::new("leases");
const LEASE_KEYS: TableDefinition<&[u8], ()> = TableDefinition::new("lease_keys");

const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";
const META_NEXT_LEASE: &str = "next_lease";
const META_FORMAT: &str = "format";
const FORMAT_VERSION: i64 = 1;

/// The file name used when [`EmbeddedStore::open`] is given a directory.
pub const DEFAULT_FILE_NAME: &str = "wulf-store.redb";

/// Size of the per-key header in the `kv` table.
const HEADER_LEN: usize = 32;

/// How much history one replay step reads before handing it to the watcher.
const REPLAY_MAX_REVISIONS: usize = 1024;
const REPLAY_MAX_BYTES: usize = 16 << 20;

/// Tuning knobs of the embedded backend. The defaults suit production; tests shrink the
/// buffers to exercise the slow-watcher path.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Live batches kept for watchers that have not caught up yet. A watcher that falls further
    /// behind replays from the stored history instead.
    pub broadcast_capacity: usize,
    /// Batches buffered between a watch task and its [`Watch`].
    pub watch_buffer: usize,
    /// The longest the lease-expiry task sleeps between checks.
    pub lease_check_interval: Duration,
    /// How long `open` keeps retrying while the database file is still locked by a previous
    /// instance in this process that is shutting down.
    pub open_retry: Duration,
    /// redb's page cache, in bytes. The head keeps every object in its own memory, so the
    /// store's cache mostly helps writes; a small one keeps the head's footprint small (at
    /// 100,000 nodes 32 MiB of it was a sixth of the head's heap).
    pub cache_bytes: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            broadcast_capacity: 256,
            watch_buffer: 64,
            lease_check_interval: Duration::from_millis(250),
            open_retry: Duration::from_secs(5),
            cache_bytes: 8 << 20,
        }
    }
}

/// The embedded (redb) backend of [`Store`].
pub struct EmbeddedStore {
    inner: Arc<Inner>,
    /// Bounds the store's share of tokio's blocking threads: write transactions take redb's
    /// one write lock in turn, so a burst of writes (a boot of 100,000 nodes, each storing
    /// its credential) held 80 threads waiting on one another, each with its own stack and
    /// allocator caches, and the head's memory grew with them.
    workers: Arc<tokio::sync::Semaphore>,
}

/// Store operations running at once on blocking threads (the rest wait their turn).
const WORKERS: usize = 8;

struct Inner {
    db: Database,
    path: PathBuf,
    opts: EmbeddedOptions,
    /// Held from `begin_write` to the publication of the batch, so revisions are published in
    /// order.
    write_lock: Mutex<()>,
    /// The committed revision (updated under `write_lock`, before publication).
    revision: AtomicI64,
    compacted: AtomicI64,
    /// Lease id → expiry (unix ms): a cache of the `leases` table for the expiry task.
    leases: Mutex<HashMap<LeaseId, i64>>,
    events_tx: broadcast::Sender<Live>,
}

/// What the live channel carries. Large batches are not kept in the channel's ring buffer
/// (it holds the last `broadcast_capacity` messages until they are overwritten): watchers read
/// them back from the stored history instead, so a bulk write costs no lasting memory.
#[derive(Clone, Debug)]
enum Live {
    Batch(Arc<WatchBatch>),
    /// A large batch at this revision, every key of which starts with `common` (so a watcher
    /// whose prefix cannot match skips it without reading it back).
    Large {
        revision: Revision,
        common: Arc<str>,
    },
}

/// The longest prefix shared by every key of a batch.
fn common_prefix(batch: &WatchBatch) -> Arc<str> {
    let mut keys = batch.events.iter().map(|e| e.kv.key.as_str());
    let Some(first) = keys.next() else {
        return Arc::from("");
    };
    let mut len = first.len();
    for k in keys {
        len = first
            .bytes()
            .zip(k.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count();
    }
    while !first.is_char_boundary(len) {
        len -= 1;
    }
    Arc::from(&first[..len])
}

/// Batches with more events than this are announced as `Live::Large`.
const LIVE_BATCH_MAX_EVENTS: usize = 256;

/// Per-key metadata stored in front of the value.
#[derive(Clone, Copy, Debug)]
struct Meta {
    create: Revision,
    modified: Revision,
    version: i64,
    /// 0 = no lease.
    lease: LeaseId,
}

fn backend_err<E: Display>(context: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Backend(format!("{context}: {e}"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

fn encode_kv(buf: &mut Vec<u8>, meta: &Meta, value: &[u8]) {
    buf.clear();
    buf.reserve(HEADER_LEN + value.len());
    buf.extend_from_slice(&meta.create.to_le_bytes());
    buf.extend_from_slice(&meta.modified.to_le_bytes());
    buf.extend_from_slice(&meta.version.to_le_bytes());
    buf.extend_from_slice(&meta.lease.to_le_bytes());
    buf.extend_from_slice(value);
}

fn read_i64(bytes: &[u8], at: usize) -> Option<i64> {
    let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(i64::from_le_bytes(b))
}

fn decode_meta(bytes: &[u8]) -> Result<Meta, StoreError> {
    let corrupt = || StoreError::Backend("corrupt key record (short header)".into());
    Ok(Meta {
        create: read_i64(bytes, 0).ok_or_else(corrupt)?,
        modified: read_i64(bytes, 8).ok_or_else(corrupt)?,
        version: read_i64(bytes, 16).ok_or_else(corrupt)?,
        lease: read_i64(bytes, 24).ok_or_else(corrupt)?,
    })
}

fn decode_kv(key: &str, bytes: &[u8]) -> Result<KeyValue, StoreError> {
    let meta = decode_meta(bytes)?;
    Ok(KeyValue {
        key: key.to_owned(),
        value: bytes[HEADER_LEN..].to_vec(),
        create_revision: meta.create,
        mod_revision: meta.modified,
        version: meta.version,
        lease: (meta.lease != 0).then_some(meta.lease),
    })
}

/// The `lease_keys` entry of `key` attached to `lease` (lease ids are positive).
fn lease_key(lease: LeaseId, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&(lease as u64).to_be_bytes());
    k.extend_from_slice(key.as_bytes());
    k
}

/// The exclusive upper bound of the `lease_keys` entries of `lease`.
fn lease_keys_end(lease: LeaseId) -> [u8; 8] {
    (lease as u64).saturating_add(1).to_be_bytes()
}

/// Encodes the events of one revision:
/// `count: u32`, then per event `kind: u8` (0 put, 1 delete), `key_len: u32`, key,
/// `create, version, lease: i64` and `value_len: u32`, value (all little endian). The mod
/// revision of every event is the revision itself and is not stored.
fn encode_events(events: &[Event]) -> Vec<u8> {
    let size: usize = events
        .iter()
        .map(|e| 1 + 4 + e.kv.key.len() + 24 + 4 + e.kv.value.len())
        .sum();
    let mut buf = Vec::with_capacity(4 + size);
    buf.extend_from_slice(&(events.len() as u32).to_le_bytes());
    for e in events {
        buf.push(match e.kind {
            EventKind::Put => 0,
            EventKind::Delete => 1,
        });
        buf.extend_from_slice(&(e.kv.key.len() as u32).to_le_bytes());
        buf.extend_from_slice(e.kv.key.as_bytes());
        buf.extend_from_slice(&e.kv.create_revision.to_le_bytes());
        buf.extend_from_slice(&e.kv.version.to_le_bytes());
        buf.extend_from_slice(&e.kv.lease.unwrap_or(0).to_le_bytes());
        buf.extend_from_slice(&(e.kv.value.len() as u32).to_le_bytes());
        buf.extend_from_slice(&e.kv.value);
    }
    buf
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(StoreError::Backend(
                "corrupt event record (truncated)".into(),
            )),
        }
    }
    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<usize, StoreError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b) as usize)
    }
    fn i64(&mut self) -> Result<i64, StoreError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(b))
    }
}

/// Decodes the events of `revision` whose key starts with `prefix`.
fn decode_events(revision: Revision, bytes: &[u8], prefix: &str) -> Result<Vec<Event>, StoreError> {
    let mut r = Reader { bytes, pos: 0 };
    let count = r.u32()?;
    let mut out = Vec::new();
    for _ in 0..count {
        let kind = match r.u8()? {
            0 => EventKind::Put,
            1 => EventKind::Delete,
            k => {
                return Err(StoreError::Backend(format!(
                    "corrupt event record (kind {k})"
                )))
            }
        };
        let key_len = r.u32()?;
        let key = r.take(key_len)?;
        if !key.starts_with(prefix.as_bytes()) {
            r.take(24)?;
            let value_len = r.u32()?;
            r.take(value_len)?;
            continue;
        }
        let key = std::str::from_utf8(key)
            .map_err(backend_err("corrupt event record (key is not UTF-8)"))?
            .to_owned();
        let create = r.i64()?;
        let version = r.i64()?;
        let lease = r.i64()?;
        let value_len = r.u32()?;
        let value = r.take(value_len)?.to_vec();
        out.push(Event {
            kind,
            kv: KeyValue {
                key,
                value,
                create_revision: create,
                mod_revision: revision,
                version,
                lease: (lease != 0).then_some(lease),
            },
        });
    }
    Ok(out)
}

fn filter_batch(batch: &WatchBatch, prefix: &str) -> Option<WatchBatch> {
    let events: Vec<Event> = batch
        .events
        .iter()
        .filter(|e| e.kv.key.starts_with(prefix))
        .cloned()
        .collect();
    (!events.is_empty()).then_some(WatchBatch {
        revision: batch.revision,
        events,
    })
}

/// What a write stage decided.
struct Staged<T> {
    result: T,
    /// Commit the transaction (otherwise it is aborted).
    commit: bool,
    /// The batch to publish after the commit (its revision is the new store revision).
    batch: Option<WatchBatch>,
}

/// The outcome of [`Inner::apply_txn`].
struct Applied {
    succeeded: bool,
    revision: Revision,
    wrote: bool,
}

/// What revoking a lease did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Revoked {
    /// The lease does not exist (only with `only_if_expired`; otherwise `LeaseNotFound`).
    Missing,
    /// The lease has not expired (only with `only_if_expired`).
    NotExpired,
    /// The lease was removed; this many keys were deleted.
    Removed(usize),
}

/// A chunk of replayed history.
struct History {
    batches: Vec<WatchBatch>,
    next: Revision,
    caught_up: bool,
}

fn meta_get(
    table: &impl ReadableTable<&'static str, i64>,
    name: &str,
) -> Result<Option<i64>, StoreError> {
    Ok(table
        .get(name)
        .map_err(backend_err("read meta table"))?
        .map(|g| g.value()))
}

/// Records the events of a new revision: the `revision` counter and the history entry.
fn record_batch(
    wtx: &WriteTransaction,
    revision: Revision,
    events: Vec<Event>,
) -> Result<WatchBatch, StoreError> {
    let mut meta = wtx
        .open_table(META)
        .map_err(backend_err("open meta table"))?;
    meta.insert(META_REVISION, revision)
        .map_err(backend_err("write revision"))?;
    let mut history = wtx
        .open_table(EVENTS)
        .map_err(backend_err("open events table"))?;
    history
        .insert(revision, encode_events(&events).as_slice())
        .map_err(backend_err("write history"))?;
    Ok(WatchBatch { revision, events })
}

fn current_revision(wtx: &WriteTransaction) -> Result<Revision, StoreError> {
    let meta = wtx
        .open_table(META)
        .map_err(backend_err("open meta table"))?;
    Ok(meta_get(&meta, META_REVISION)?.unwrap_or(0))
}

impl Inner {
    /// Runs one write: `stage` decides what to write; the transaction is then committed with
    /// immediate durability (or aborted), and the batch, if any, published — all under the
    /// write lock.
    fn write<T>(
        &self,
        stage: impl FnOnce(&WriteTransaction) -> Result<Staged<T>, StoreError>,
    ) -> Result<T, StoreError> {
        let _guard = lock(&self.write_lock);
        let mut wtx = self
            .db
            .begin_write()
            .map_err(backend_err("begin write transaction"))?;
        wtx.set_durability(Durability::Immediate);
        let staged = match stage(&wtx) {
            Ok(staged) => staged,
            Err(e) => {
                if let Err(abort) = wtx.abort() {
                    warn!(error = %abort, "aborting a failed write transaction failed");
                }
                return Err(e);
            }
        };
        if !staged.commit {
            wtx.abort()
                .map_err(backend_err("abort write transaction"))?;
            return Ok(staged.result);
        }
        wtx.commit().map_err(backend_err("commit"))?;
        if let Some(batch) = staged.batch {
            self.revision.store(batch.revision, Ordering::SeqCst);
            // No receivers is fine.
            let msg = if batch.events.len() > LIVE_BATCH_MAX_EVENTS {
                Live::Large {
                    revision: batch.revision,
                    common: common_prefix(&batch),
                }
            } else {
                Live::Batch(Arc::new(batch))
            };
            let _ = self.events_tx.send(msg);
        }
        Ok(staged.result)
    }

    fn apply_txn(&self, txn: Txn) -> Result<Applied, StoreError> {
        txn.validate()?;
        self.write(|wtx| stage_txn(wtx, txn))
    }

    fn lease_grant(&self, ttl_ms: u64) -> Result<LeaseId, StoreError> {
        let (id, expiry) = self.write(|wtx| {
            let mut meta = wtx
                .open_table(META)
                .map_err(backend_err("open meta table"))?;
            let id = meta_get(&meta, META_NEXT_LEASE)?.unwrap_or(1).max(1);
            meta.insert(META_NEXT_LEASE, id + 1)
                .map_err(backend_err("write lease counter"))?;
            let mut leases = wtx
                .open_table(LEASES)
                .map_err(backend_err("open leases table"))?;
            let expiry = now_ms().saturating_add(ttl_ms as i64);
            leases
                .insert(id, (ttl_ms, expiry))
                .map_err(backend_err("write lease"))?;
            Ok(Staged {
                result: (id, expiry),
                commit: true,
                batch: None,
            })
        })?;
        lock(&self.leases).insert(id, expiry);
        debug!(lease = id, ttl_ms, "lease granted");
        Ok(id)
    }

    fn lease_keep_alive(&self, id: LeaseId) -> Result<Duration, StoreError> {
        let (ttl_ms, expiry) = self.write(|wtx| {
            let mut leases = wtx
                .open_table(LEASES)
                .map_err(backend_err("open leases table"))?;
            let found = leases
                .get(id)
                .map_err(backend_err("read lease"))?
                .map(|g| g.value());
            let now = now_ms();
            match found {
                Some((ttl_ms, expiry)) if expiry > now => {
                    let expiry = now.saturating_add(ttl_ms as i64);
                    leases
                        .insert(id, (ttl_ms, expiry))
                        .map_err(backend_err("write lease"))?;
                    Ok(Staged {
                        result: (ttl_ms, expiry),
                        commit: true,
                        batch: None,
                    })
                }
                _ => Err(StoreError::LeaseNotFound(id)),
            }
        })?;
        lock(&self.leases).insert(id, expiry);
        Ok(Duration::from_millis(ttl_ms))
    }

    /// Revokes a lease and deletes its keys. With `only_if_expired`, does nothing unless the
    /// persisted expiry has passed (the expiry task's check, safe against a racing
    /// keep-alive).
    fn lease_revoke(&self, id: LeaseId, only_if_expired: bool) -> Result<Revoked, StoreError> {
        let revoked = self.write(|wtx| stage_revoke(wtx, id, only_if_expired))?;
        if revoked != Revoked::NotExpired {
            lock(&self.leases).remove(&id);
        }
        Ok(revoked)
    }

    fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let compacted = self.write(|wtx| {
            let mut meta = wtx
                .open_table(META)
                .map_err(backend_err("open meta table"))?;
            let current = meta_get(&meta, META_REVISION)?.unwrap_or(0);
            if revision > current {
                return Err(StoreError::FutureRevision {
                    requested: revision,
                    current,
                });
            }
            let compacted = meta_get(&meta, META_COMPACTED)?.unwrap_or(0);
            if revision <= compacted {
                return Ok(Staged {
                    result: compacted,
                    commit: false,
                    batch: None,
                });
            }
            let mut history = wtx
                .open_table(EVENTS)
                .map_err(backend_err("open events table"))?;
            history
                .retain_in::<i64, _>(..revision, |_, _| false)
                .map_err(backend_err("delete history"))?;
            meta.insert(META_COMPACTED, revision)
                .map_err(backend_err("write compacted revision"))?;
            Ok(Staged {
                result: revision,
                commit: true,
                batch: None,
            })
        })?;
        self.compacted.store(compacted, Ordering::SeqCst);
        info!(revision = compacted, "store history compacted");
        Ok(())
    }

    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let rtx = self
            .db
            .begin_read()
            .map_err(backend_err("begin read transaction"))?;
        let kv = rtx.open_table(KV).map_err(backend_err("open kv table"))?;
        let found = kv.get(key.as_bytes()).map_err(backend_err("read key"))?;
        found.map(|g| decode_kv(key, g.value())).transpose()
    }

    fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let rtx = self
            .db
            .begin_read()
            .map_err(backend_err("begin read transaction"))?;
        let meta = rtx
            .open_table(META)
            .map_err(backend_err("open meta table"))?;
        let revision = meta_get(&meta, META_REVISION)?.unwrap_or(0);
        let kv = rtx.open_table(KV).map_err(backend_err("open kv table"))?;
        let mut out = Vec::new();
        for entry in kv
            .range(prefix.as_bytes()..)
            .map_err(backend_err("scan keys"))?
        {
            let (k, v) = entry.map_err(backend_err("scan keys"))?;
            let key = k.value();
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            let key = std::str::from_utf8(key).map_err(backend_err("corrupt key (not UTF-8)"))?;
            out.push(decode_kv(key, v.value())?);
        }
        Ok((out, revision))
    }

    /// Reads stored history from `from` on: at most one chunk, filtered by `prefix`.
    fn read_history(&self, prefix: &str, from: Revision) -> Result<History, StoreError> {
        let rtx = self
            .db
            .begin_read()
            .map_err(backend_err("begin read transaction"))?;
        let meta = rtx
            .open_table(META)
            .map_err(backend_err("open meta table"))?;
        let current = meta_get(&meta, META_REVISION)?.unwrap_or(0);
        let compacted = meta_get(&meta, META_COMPACTED)?.unwrap_or(0);
        if from < compacted {
            return Err(StoreError::Compacted {
                requested: from,
                compacted,
            });
        }
        let history = rtx
            .open_table(EVENTS)
            .map_err(backend_err("open events table"))?;
        let mut batches = Vec::new();
        let mut bytes = 0usize;
        let mut next = from;
        if from <= current {
            for (n, entry) in history
                .range(from..=current)
                .map_err(backend_err("scan history"))?
                .enumerate()
            {
                if n >= REPLAY_MAX_REVISIONS || bytes >= REPLAY_MAX_BYTES {
                    return Ok(History {
                        batches,
                        next,
                        caught_up: false,
                    });
                }
                let (rev, blob) = entry.map_err(backend_err("scan history"))?;
                let rev = rev.value();
                let blob = blob.value();
                bytes += blob.len();
                let events = decode_events(rev, blob, prefix)?;
                if !events.is_empty() {
                    batches.push(WatchBatch {
                        revision: rev,
                        events,
                    });
                }
                next = rev + 1;
            }
        }
        Ok(History {
            batches,
            next: next.max(current + 1),
            caught_up: true,
        })
    }

    /// Leases whose cached expiry has passed, and the earliest expiry among the others.
    fn lease_schedule(&self, now: i64) -> (Vec<LeaseId>, Option<i64>) {
        let leases = lock(&self.leases);
        let mut expired = Vec::new();
        let mut next: Option<i64> = None;
        for (&id, &expiry) in leases.iter() {
            if expiry <= now {
                expired.push(id);
            } else {
                next = Some(next.map_or(expiry, |n| n.min(expiry)));
            }
        }
        (expired, next)
    }
}

fn stage_txn(wtx: &WriteTransaction, txn: Txn) -> Result<Staged<Applied>, StoreError> {
    let current = current_revision(wtx)?;
    let not_applied = |succeeded| {
        Ok(Staged {
            result: Applied {
                succeeded,
                revision: current,
                wrote: false,
            },
            commit: false,
            batch: None,
        })
    };
    let mut kv = wtx.open_table(KV).map_err(backend_err("open kv table"))?;
    for c in &txn.compares {
        let found = kv
            .get(c.key.as_bytes())
            .map_err(backend_err("read key"))?
            .map(|g| decode_meta(g.value()))
            .transpose()?;
        let holds = match (&c.expect, found) {
            (Expect::Any, _) => true,
            (Expect::Absent, found) => found.is_none(),
            (Expect::Present, found) => found.is_some(),
            (Expect::ModRevision(r), Some(m)) => m.modified == *r,
            (Expect::ModRevision(_), None) => false,
        };
        if !holds {
            return not_applied(false);
        }
    }
    if txn.ops.is_empty() {
        return not_applied(true);
    }
    let now = now_ms();
    {
        let leases = wtx
            .open_table(LEASES)
            .map_err(backend_err("open leases table"))?;
        let mut checked = HashSet::new();
        for op in &txn.ops {
            if let Op::Put {
                lease: Some(id), ..
            } = op
            {
                if checked.insert(*id) {
                    let alive = leases
                        .get(*id)
                        .map_err(backend_err("read lease"))?
                        .is_some_and(|g| g.value().1 > now);
                    if !alive {
                        return Err(StoreError::LeaseNotFound(*id));
                    }
                }
            }
        }
    }
    let revision = current + 1;
    let mut lease_keys = wtx
        .open_table(LEASE_KEYS)
        .map_err(backend_err("open lease_keys table"))?;
    let mut events = Vec::with_capacity(txn.ops.len());
    let mut buf = Vec::new();
    for op in txn.ops {
        match op {
            Op::Put { key, value, lease } => {
                let old = kv
                    .get(key.as_bytes())
                    .map_err(backend_err("read key"))?
                    .map(|g| decode_meta(g.value()))
                    .transpose()?;
                let lease_id = lease.unwrap_or(0);
                let (create, version, old_lease) = match old {
                    Some(m) => (m.create, m.version + 1, m.lease),
                    None => (revision, 1, 0),
                };
                if old_lease != lease_id {
                    if old_lease != 0 {
                        lease_keys
                            .remove(lease_key(old_lease, &key).as_slice())
                            .map_err(backend_err("detach key from lease"))?;
                    }
                    if lease_id != 0 {
                        lease_keys
                            .insert(lease_key(lease_id, &key).as_slice(), ())
                            .map_err(backend_err("attach key to lease"))?;
                    }
                }
                let meta = Meta {
                    create,
                    modified: revision,
                    version,
                    lease: lease_id,
                };
                encode_kv(&mut buf, &meta, &value);
                kv.insert(key.as_bytes(), buf.as_slice())
                    .map_err(backend_err("write key"))?;
                events.push(Event {
                    kind: EventKind::Put,
                    kv: KeyValue {
                        key,
                        value,
                        create_revision: create,
                        mod_revision: revision,
                        version,
                        lease,
                    },
                });
            }
            Op::Delete { key } => {
                let old = kv
                    .remove(key.as_bytes())
                    .map_err(backend_err("delete key"))?
                    .map(|g| decode_meta(g.value()))
                    .transpose()?;
                if let Some(m) = old {
                    if m.lease != 0 {
                        lease_keys
                            .remove(lease_key(m.lease, &key).as_slice())
                            .map_err(backend_err("detach key from lease"))?;
                    }
                    events.push(delete_event(key, revision));
                }
            }
        }
    }
    drop(kv);
    drop(lease_keys);
    if events.is_empty() {
        // Only deletes of absent keys: nothing changed, no new revision.
        return not_applied(true);
    }
    let batch = record_batch(wtx, revision, events)?;
    Ok(Staged {
        result: Applied {
            succeeded: true,
            revision,
            wrote: true,
        },
        commit: true,
        batch: Some(batch),
    })
}

fn delete_event(key: String, revision: Revision) -> Event {
    Event {
        kind: EventKind::Delete,
        kv: KeyValue {
            key,
            value: Vec::new(),
            create_revision: 0,
            mod_revision: revision,
            version: 0,
            lease: None,
        },
    }
}

fn stage_revoke(
    wtx: &WriteTransaction,
    id: LeaseId,
    only_if_expired: bool,
) -> Result<Staged<Revoked>, StoreError> {
    let mut leases = wtx
        .open_table(LEASES)
        .map_err(backend_err("open leases table"))?;
    let found = leases
        .get(id)
        .map_err(backend_err("read lease"))?
        .map(|g| g.value());
    let Some((_, expiry)) = found else {
        if only_if_expired {
            return Ok(Staged {
                result: Revoked::Missing,
                commit: false,
                batch: None,
            });
        }
        return Err(StoreError::LeaseNotFound(id));
    };
    if only_if_expired && expiry > now_ms() {
        return Ok(Staged {
            result: Revoked::NotExpired,
            commit: false,
            batch: None,
        });
    }
    leases.remove(id).map_err(backend_err("delete lease"))?;
    drop(leases);

    let mut lease_keys = wtx
        .open_table(LEASE_KEYS)
        .map_err(backend_err("open lease_keys table"))?;
    let start = lease_key(id, "");
    let end = lease_keys_end(id);
    let mut keys = Vec::new();
    for entry in lease_keys
        .range(start.as_slice()..&end[..])
        .map_err(backend_err("scan lease keys"))?
    {
        let (k, _) = entry.map_err(backend_err("scan lease keys"))?;
        let key = k
            .value()
            .get(8..)
            .map(std::str::from_utf8)
            .ok_or_else(|| StoreError::Backend("corrupt lease key (too short)".into()))?
            .map_err(backend_err("corrupt lease key (not UTF-8)"))?
            .to_owned();
        keys.push(key);
    }
    lease_keys
        .retain_in(start.as_slice()..&end[..], |_, _| false)
        .map_err(backend_err("detach lease keys"))?;
    drop(lease_keys);

    let revision = current_revision(wtx)? + 1;
    let mut kv = wtx.open_table(KV).map_err(backend_err("open kv table"))?;
    let mut events = Vec::with_capacity(keys.len());
    for key in keys {
        let removed = kv
            .remove(key.as_bytes())
            .map_err(backend_err("delete key"))?
            .is_some();
        if removed {
            events.push(delete_event(key, revision));
        }
    }
    drop(kv);
    let deleted = events.len();
    let batch = if events.is_empty() {
        None
    } else {
        Some(record_batch(wtx, revision, events)?)
    };
    Ok(Staged {
        result: Revoked::Removed(deleted),
        commit: true,
        batch,
    })
}

impl EmbeddedStore {
    /// Opens (or creates) the store at `path` with default options. If `path` is an existing
    /// directory, the database file is [`DEFAULT_FILE_NAME`] inside it; otherwise `path` is the
    /// database file (its parent directories are created).
    ///
    /// Must be called inside a tokio runtime: it spawns the lease-expiry task.
    pub fn open(path: &Path) -> Result<Arc<EmbeddedStore>, StoreError> {
        Self::open_with(path, EmbeddedOptions::default())
    }

    /// [`EmbeddedStore::open`] with explicit options.
    pub fn open_with(path: &Path, opts: EmbeddedOptions) -> Result<Arc<EmbeddedStore>, StoreError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
            StoreError::Unavailable(format!("EmbeddedStore::open needs a tokio runtime: {e}"))
        })?;
        let file = if path.is_dir() {
            path.join(DEFAULT_FILE_NAME)
        } else {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Backend(format!("create directory {}: {e}", parent.display()))
                })?;
            }
            path.to_path_buf()
        };
        let db = open_database(&file, opts.open_retry, opts.cache_bytes)?;

        // Create the tables and read the persisted state.
        let mut wtx = db
            .begin_write()
            .map_err(backend_err("begin write transaction"))?;
        wtx.set_durability(Durability::Immediate);
        let (revision, compacted, leases) = {
            let mut meta = wtx
                .open_table(META)
                .map_err(backend_err("open meta table"))?;
            match meta_get(&meta, META_FORMAT)? {
                None => {
                    meta.insert(META_FORMAT, FORMAT_VERSION)
                        .map_err(backend_err("write format version"))?;
                }
                Some(FORMAT_VERSION) => {}
                Some(other) => {
                    return Err(StoreError::Backend(format!(
                        "{}: unsupported store format {other} (this build reads {FORMAT_VERSION})",
                        file.display()
                    )))
                }
            }
            let revision = meta_get(&meta, META_REVISION)?.unwrap_or(0);
            let compacted = meta_get(&meta, META_COMPACTED)?.unwrap_or(0);
            wtx.open_table(KV).map_err(backend_err("open kv table"))?;
            wtx.open_table(EVENTS)
                .map_err(backend_err("open events table"))?;
            wtx.open_table(LEASE_KEYS)
                .map_err(backend_err("open lease_keys table"))?;
            let lease_table = wtx
                .open_table(LEASES)
                .map_err(backend_err("open leases table"))?;
            let mut leases = HashMap::new();
            for entry in lease_table.iter().map_err(backend_err("scan leases"))? {
                let (id, v) = entry.map_err(backend_err("scan leases"))?;
                leases.insert(id.value(), v.value().1);
            }
            (revision, compacted, leases)
        };
        wtx.commit().map_err(backend_err("commit"))?;

        let (events_tx, _) = broadcast::channel(opts.broadcast_capacity.max(1));
        info!(
            path = %file.display(),
            revision,
            compacted,
            leases = leases.len(),
            "embedded store opened"
        );
        let inner = Arc::new(Inner {
            db,
            path: file,
            opts,
            write_lock: Mutex::new(()),
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            leases: Mutex::new(leases),
            events_tx,
        });
        runtime.spawn(lease_expiry_task(Arc::downgrade(&inner)));
        Ok(Arc::new(EmbeddedStore {
            inner,
            workers: Arc::new(tokio::sync::Semaphore::new(WORKERS)),
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        let permit = self
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Backend(format!("store workers closed: {e}")))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&inner)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("store worker failed: {e}")))?
    }

    async fn apply(&self, txn: Txn) -> Result<Applied, StoreError> {
        self.blocking(move |inner| inner.apply_txn(txn)).await
    }
}

fn open_database(file: &Path, retry: Duration, cache_bytes: usize) -> Result<Database, StoreError> {
    let deadline = std::time::Instant::now() + retry;
    loop {
        match Database::builder().set_cache_size(cache_bytes).create(file) {
            Ok(db) => return Ok(db),
            Err(DatabaseError::DatabaseAlreadyOpen) if std::time::Instant::now() < deadline => {
                // A previous instance in this process may still be shutting down.
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                return Err(StoreError::Backend(format!(
                    "open database {}: {e}",
                    file.display()
                )))
            }
        }
    }
}

async fn lease_expiry_task(weak: Weak<Inner>) {
    loop {
        let sleep_for = {
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let (expired, _) = inner.lease_schedule(now_ms());
            for id in expired {
                let worker = inner.clone();
                match tokio::task::spawn_blocking(move || worker.lease_revoke(id, true)).await {
                    Ok(Ok(Revoked::Removed(keys))) => {
                        info!(lease = id, keys, "lease expired; its keys were deleted")
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => warn!(lease = id, error = %e, "revoking an expired lease failed"),
                    Err(e) => warn!(lease = id, error = %e, "lease expiry worker failed"),
                }
            }
            let interval = inner.opts.lease_check_interval;
            let now = now_ms();
            match inner.lease_schedule(now).1 {
                Some(next) => {
                    let until = Duration::from_millis(u64::try_from(next - now).unwrap_or(0));
                    until.clamp(Duration::from_millis(5), interval)
                }
                None => interval,
            }
        };
        tokio::time::sleep(sleep_for).await;
    }
}

/// Sends the stored history from `*next` on into `tx`. Returns false when the watch must end
/// (receiver gone, store gone, or an error was sent).
async fn replay(
    weak: &Weak<Inner>,
    prefix: &str,
    next: &mut Revision,
    tx: &mpsc::Sender<Result<WatchBatch, StoreError>>,
) -> bool {
    loop {
        let Some(inner) = weak.upgrade() else {
            return false;
        };
        let from = *next;
        let p = prefix.to_owned();
        let read = tokio::task::spawn_blocking(move || inner.read_history(&p, from)).await;
        let history = match read {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                debug!(prefix, from, error = %e, "watch replay failed; ending watch");
                let _ = tx.send(Err(e)).await;
                return false;
            }
            Err(e) => {
                let _ = tx
                    .send(Err(StoreError::Backend(format!(
                        "watch replay worker failed: {e}"
                    ))))
                    .await;
                return false;
            }
        };
        for batch in history.batches {
            if tx.send(Ok(batch)).await.is_err() {
                return false;
            }
        }
        *next = history.next;
        if history.caught_up {
            return true;
        }
    }
}

async fn watch_task(
    weak: Weak<Inner>,
    prefix: String,
    mut next: Revision,
    replay_first: bool,
    mut live: broadcast::Receiver<Live>,
    tx: mpsc::Sender<Result<WatchBatch, StoreError>>,
) {
    if replay_first && !replay(&weak, &prefix, &mut next, &tx).await {
        return;
    }
    loop {
        let received = tokio::select! {
            _ = tx.closed() => return,
            r = live.recv() => r,
        };
        match received {
            Ok(Live::Large { revision, common }) => {
                if revision < next {
                    continue;
                }
                if revision == next
                    && !common.starts_with(prefix.as_str())
                    && !prefix.starts_with(&*common)
                {
                    // Nothing in it for this watcher.
                    next = revision + 1;
                    continue;
                }
                if !replay(&weak, &prefix, &mut next, &tx).await {
                    return;
                }
            }
            Ok(Live::Batch(batch)) => {
                if batch.revision < next {
                    continue;
                }
                if batch.revision > next {
                    debug!(
                        prefix,
                        next,
                        got = batch.revision,
                        "watch gap; replaying history"
                    );
                    if !replay(&weak, &prefix, &mut next, &tx).await {
                        return;
                    }
                    if batch.revision < next {
                        continue;
                    }
                }
                next = batch.revision + 1;
                if let Some(filtered) = filter_batch(&batch, &prefix) {
                    if tx.send(Ok(filtered)).await.is_err() {
                        return;
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                debug!(prefix, next, skipped, "watch lagged; replaying history");
                if !replay(&weak, &prefix, &mut next, &tx).await {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.inner.revision.load(Ordering::SeqCst))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_owned();
        self.blocking(move |inner| inner.get(&key)).await
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision), StoreError> {
        let prefix = prefix.to_owned();
        self.blocking(move |inner| inner.list(&prefix)).await
    }

    async fn put(&self, key: &str, value: Vec<u8>, expect: Expect) -> Result<Revision, StoreError> {
        let mut txn = Txn::new();
        if expect != Expect::Any {
            txn = txn.when(key, expect);
        }
        let applied = self.apply(txn.put(key, value)).await?;
        if !applied.succeeded {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
            });
        }
        Ok(applied.revision)
    }

    async fn delete(&self, key: &str, expect: Expect) -> Result<Option<Revision>, StoreError> {
        let mut txn = Txn::new();
        if expect != Expect::Any {
            txn = txn.when(key, expect);
        }
        let applied = self.apply(txn.delete(key)).await?;
        if !applied.succeeded {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
            });
        }
        Ok(applied.wrote.then_some(applied.revision))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        let applied = self.apply(txn).await?;
        Ok(TxnResult {
            succeeded: applied.succeeded,
            revision: applied.revision,
        })
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch, StoreError> {
        if from_revision < 0 {
            return Err(StoreError::Invalid(format!(
                "negative watch revision {from_revision}"
            )));
        }
        // Subscribe before reading the revision: every batch after it is then received live.
        let live = self.inner.events_tx.subscribe();
        let current = self.inner.revision.load(Ordering::SeqCst);
        let (next, replay_first) = if from_revision == 0 {
            (current + 1, false)
        } else {
            let compacted = self.inner.compacted.load(Ordering::SeqCst);
            if from_revision < compacted {
                return Err(StoreError::Compacted {
                    requested: from_revision,
                    compacted,
                });
            }
            (from_revision, true)
        };
        let (tx, rx) = mpsc::channel(self.inner.opts.watch_buffer.max(1));
        tokio::spawn(watch_task(
            Arc::downgrade(&self.inner),
            prefix.to_owned(),
            next,
            replay_first,
            live,
            tx,
        ));
        Ok(Watch::new(rx))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        if revision < 0 {
            return Err(StoreError::Invalid(format!(
                "negative compaction revision {revision}"
            )));
        }
        self.blocking(move |inner| inner.compact(revision)).await
    }

    async fn compacted_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.inner.compacted.load(Ordering::SeqCst))
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX / 4);
        if ttl_ms == 0 {
            return Err(StoreError::Invalid(
                "lease TTL must be at least 1 ms".into(),
            ));
        }
        self.blocking(move |inner| inner.lease_grant(ttl_ms)).await
    }

    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<Duration, StoreError> {
        self.blocking(move |inner| inner.lease_keep_alive(lease))
            .await
    }

    async fn lease_revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.blocking(move |inner| inner.lease_revoke(lease, false).map(|_| ()))
            .await
    }

    /// One member: the database file, its size and the bytes of its allocated pages.
    async fn db_status(&self) -> Result<DbStatus, StoreError> {
        let (db_size, db_in_use) = self
            .blocking(|inner| {
                let size = std::fs::metadata(&inner.path)
                    .map_err(|e| StoreError::Backend(format!("{}: {e}", inner.path.display())))?
                    .len();
                let txn = inner
                    .db
                    .begin_write()
                    .map_err(|e| StoreError::Backend(format!("database stats: {e}")))?;
                let stats = txn
                    .stats()
                    .map_err(|e| StoreError::Backend(format!("database stats: {e}")))?;
                let used = stats.allocated_pages() * stats.page_size() as u64;
                txn.abort()
                    .map_err(|e| StoreError::Backend(format!("database stats: {e}")))?;
                Ok((size, used.min(size)))
            })
            .await?;
        let path = self.inner.path.display().to_string();
        Ok(DbStatus {
            backend: "embedded".into(),
            revision: self.revision().await?,
            compacted_revision: self.compacted_revision().await?,
            members: vec![DbMember {
                name: "embedded".into(),
                endpoint: path,
                leader: true,
                db_size,
                db_in_use,
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    /// redb reuses its free pages itself; there is no member to defragment.
    async fn defragment(&self, _endpoint: &str) -> Result<(), StoreError> {
        Err(StoreError::Invalid(
            "the embedded store is not defragmented: it reuses its free pages itself".into(),
        ))
    }

    /// The embedded store raises no alarms.
    async fn disarm_alarms(&self) -> Result<Vec<DbAlarm>, StoreError> {
        Ok(Vec::new())
    }
}

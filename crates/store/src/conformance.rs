//! The backend conformance suite: every [`Store`] backend must pass these checks.
//!
//! Each check is a `pub async fn name(store: &dyn Store, ns: &str)` that panics with a clear
//! message on failure. It only touches keys under `"{ns}/{check name}/"`, so the checks can run
//! against a shared, non-empty store; use [`unique_namespace`] for `ns`. [`run_all`] runs every
//! check in turn.
//!
//! Notes for shared stores:
//! - The checks that assert "exactly one more revision" retry a few times so that an unrelated
//!   concurrent writer does not make them fail spuriously.
//! - [`compaction`] compacts the history of the whole store. Do not run it concurrently with
//!   other watch checks on the same store.
//! - Lease checks wait for expiry (at most a few seconds each).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{
    Event, EventKind, Expect, KeyValue, Revision, Store, StoreError, Txn, Watch, WatchBatch,
};

/// How long a check waits for an expected watch batch.
const WATCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long lease checks wait for an expired lease's keys to vanish.
const LEASE_EXPIRY_WAIT: Duration = Duration::from_secs(5);
/// How often a check that wants "exactly one more revision" retries under concurrent writers.
const EXACT_REVISION_TRIES: usize = 20;

/// A namespace that is unique in this process and very likely across processes.
pub fn unique_namespace() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "conformance-{nanos:x}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A check of the suite.
pub type Check =
    for<'a> fn(&'a dyn Store, &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        /// Every check, by name, in the order [`run_all`] runs them.
        pub const CHECKS: &[(&str, Check)] = &[
            $((stringify!($name), |store, ns| Box::pin($name(store, ns))),)*
        ];
    };
}

checks!(
    basics,
    revision_increments,
    cas_put,
    cas_delete,
    txn_all_or_nothing,
    txn_several_ops_one_revision,
    txn_rejects_duplicate_keys,
    list_prefix,
    watch_from_now,
    watch_replays_history,
    watch_prefix_filter,
    watch_txn_is_one_batch,
    watch_deletes,
    watch_future_revision,
    watch_many_events,
    compaction,
    lease_revoke,
    lease_detach,
    lease_expiry,
    lease_keep_alive,
    lease_unknown,
    concurrent_cas_counter,
    large_txn,
);

/// Runs every check against `store`, in one fresh namespace.
pub async fn run_all(store: &dyn Store) {
    let ns = unique_namespace();
    for (name, check) in CHECKS {
        let started = Instant::now();
        check(store, &ns).await;
        tracing::info!(check = name, elapsed = ?started.elapsed(), "conformance check passed");
    }
}

fn prefix(ns: &str, check: &str) -> String {
    format!("{ns}/{check}/")
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn must<T>(what: &str, r: Result<T, StoreError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected error: {e}"),
    }
}

async fn get(store: &dyn Store, key: &str) -> Option<KeyValue> {
    must(&format!("get {key}"), store.get(key).await)
}

async fn put(store: &dyn Store, key: &str, value: &[u8]) -> Revision {
    must(
        &format!("put {key}"),
        store.put(key, value.to_vec(), Expect::Any).await,
    )
}

async fn revision(store: &dyn Store) -> Revision {
    must("revision", store.revision().await)
}

async fn watch(store: &dyn Store, prefix: &str, from: Revision) -> Watch {
    must(
        &format!("watch {prefix} from {from}"),
        store.watch(prefix, from).await,
    )
}

fn assert_conflict<T: std::fmt::Debug>(what: &str, key: &str, r: Result<T, StoreError>) {
    match r {
        Err(StoreError::Conflict { key: k }) => {
            assert_eq!(k, key, "{what}: Conflict names the wrong key")
        }
        other => panic!("{what}: expected Conflict on {key}, got {other:?}"),
    }
}

fn assert_lease_not_found<T: std::fmt::Debug>(what: &str, r: Result<T, StoreError>) {
    match r {
        Err(StoreError::LeaseNotFound(_)) => {}
        other => panic!("{what}: expected LeaseNotFound, got {other:?}"),
    }
}

/// The next batch of a watch, or a panic after [`WATCH_TIMEOUT`].
pub async fn next_batch(w: &mut Watch, what: &str) -> WatchBatch {
    match tokio::time::timeout(WATCH_TIMEOUT, w.next()).await {
        Ok(Some(Ok(b))) => b,
        Ok(Some(Err(e))) => panic!("{what}: watch failed: {e}"),
        Ok(None) => panic!("{what}: watch ended unexpectedly"),
        Err(_) => panic!("{what}: no watch batch within {WATCH_TIMEOUT:?}"),
    }
}

/// Asserts that no batch arrives within `wait`.
async fn assert_quiet(w: &mut Watch, wait: Duration, what: &str) {
    if let Ok(item) = tokio::time::timeout(wait, w.next()).await {
        panic!("{what}: expected no watch batch, got {item:?}");
    }
}

fn assert_put(e: &Event, key: &str, value: &[u8], revision: Revision, what: &str) {
    assert_eq!(e.kind, EventKind::Put, "{what}: event kind for {key}");
    assert_eq!(e.kv.key, key, "{what}: event key");
    assert_eq!(e.kv.value, value, "{what}: event value for {key}");
    assert_eq!(
        e.kv.mod_revision, revision,
        "{what}: event mod_revision for {key}"
    );
}

fn assert_delete(e: &Event, key: &str, revision: Revision, what: &str) {
    assert_eq!(e.kind, EventKind::Delete, "{what}: event kind for {key}");
    assert_eq!(e.kv.key, key, "{what}: event key");
    assert!(
        e.kv.value.is_empty(),
        "{what}: a delete event has an empty value"
    );
    assert_eq!(
        e.kv.mod_revision, revision,
        "{what}: delete event mod_revision for {key}"
    );
}

/// Polls `get(key)` until it is gone, or panics after `wait`.
async fn wait_gone(store: &dyn Store, key: &str, wait: Duration, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        if get(store, key).await.is_none() {
            return started.elapsed();
        }
        if started.elapsed() > wait {
            panic!("{what}: {key} still present after {wait:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Drives several futures concurrently on the current task (the store's own workers provide
/// the parallelism).
async fn join_all<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

// ---------------------------------------------------------------------------------------------
// Checks

/// get/put/delete and the KeyValue metadata of a key's life cycle.
pub async fn basics(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "basics");
    let k = format!("{p}key");
    assert_eq!(get(store, &k).await, None, "basics: a new key is absent");

    let r1 = put(store, &k, b"one").await;
    assert!(r1 > 0, "basics: put returned revision {r1}");
    let kv = get(store, &k).await.expect("basics: key present after put");
    assert_eq!(
        kv,
        KeyValue {
            key: k.clone(),
            value: b"one".to_vec(),
            create_revision: r1,
            mod_revision: r1,
            version: 1,
            lease: None,
        },
        "basics: metadata after the first put"
    );

    let r2 = put(store, &k, b"two").await;
    assert!(r2 > r1, "basics: second put revision {r2} <= {r1}");
    let kv = get(store, &k)
        .await
        .expect("basics: key present after update");
    assert_eq!(kv.value, b"two", "basics: value after update");
    assert_eq!(
        kv.create_revision, r1,
        "basics: create_revision kept by update"
    );
    assert_eq!(kv.mod_revision, r2, "basics: mod_revision after update");
    assert_eq!(kv.version, 2, "basics: version after update");

    let r3 = must("basics: delete", store.delete(&k, Expect::Any).await);
    let r3 = r3.expect("basics: deleting a present key returns its revision");
    assert!(r3 > r2, "basics: delete revision {r3} <= {r2}");
    assert_eq!(
        get(store, &k).await,
        None,
        "basics: key absent after delete"
    );
    let again = must("basics: delete absent", store.delete(&k, Expect::Any).await);
    assert_eq!(again, None, "basics: deleting an absent key returns None");

    let r4 = put(store, &k, b"three").await;
    assert!(r4 > r3);
    let kv = get(store, &k)
        .await
        .expect("basics: key present after re-create");
    assert_eq!(
        kv.create_revision, r4,
        "basics: create_revision after re-create"
    );
    assert_eq!(kv.version, 1, "basics: version resets after delete");

    // Empty and binary values, and a UTF-8 key.
    let empty = format!("{p}empty");
    put(store, &empty, b"").await;
    assert_eq!(
        get(store, &empty).await.map(|kv| kv.value),
        Some(Vec::new())
    );
    let binary = format!("{p}bin/ünïcödé");
    let bytes: Vec<u8> = (0..=255u8).collect();
    put(store, &binary, &bytes).await;
    assert_eq!(get(store, &binary).await.map(|kv| kv.value), Some(bytes));
}

/// Each write bumps the store revision by exactly one; no-ops and failed txns do not.
pub async fn revision_increments(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "revision_increments");
    let k = format!("{p}key");

    let mut ok = false;
    for _ in 0..EXACT_REVISION_TRIES {
        let before = revision(store).await;
        let r = put(store, &k, b"v").await;
        assert!(r > before, "a put returned {r}, not beyond {before}");
        let after = revision(store).await;
        assert!(
            after >= r,
            "revision() {after} is behind an acknowledged put at {r}"
        );
        if r == before + 1 && after == r {
            ok = true;
            break;
        }
    }
    assert!(ok, "a put never advanced the revision by exactly one");

    // A txn with several ops advances it by exactly one.
    let mut ok = false;
    for i in 0..EXACT_REVISION_TRIES {
        let before = revision(store).await;
        let res = must(
            "revision_increments: txn",
            store
                .txn(
                    Txn::new()
                        .put(format!("{p}a"), vec![i as u8])
                        .put(format!("{p}b"), vec![i as u8])
                        .delete(format!("{p}c")),
                )
                .await,
        );
        assert!(res.succeeded);
        if res.revision == before + 1 && revision(store).await == res.revision {
            ok = true;
            break;
        }
    }
    assert!(
        ok,
        "a multi-op txn never advanced the revision by exactly one"
    );

    // Nothing changes: a failed txn, a delete of an absent key, a txn deleting absent keys.
    let mut ok = false;
    for _ in 0..EXACT_REVISION_TRIES {
        let before = revision(store).await;
        let failed = must(
            "revision_increments: failing txn",
            store
                .txn(Txn::new().when(&k, Expect::Absent).put(&k, b"x".to_vec()))
                .await,
        );
        assert!(
            !failed.succeeded,
            "a txn whose compare fails must not succeed"
        );
        let deleted = must(
            "revision_increments: delete absent",
            store.delete(&format!("{p}absent"), Expect::Any).await,
        );
        assert_eq!(deleted, None);
        let noop = must(
            "revision_increments: txn deleting absent keys",
            store
                .txn(
                    Txn::new()
                        .delete(format!("{p}absent1"))
                        .delete(format!("{p}absent2")),
                )
                .await,
        );
        assert!(noop.succeeded, "a txn without compares succeeds");
        let after = revision(store).await;
        if failed.revision == before && noop.revision == before && after == before {
            ok = true;
            break;
        }
    }
    assert!(
        ok,
        "a failed txn, a delete of an absent key or a txn that changes nothing advanced the revision"
    );
}

/// Compare-and-swap puts.
pub async fn cas_put(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "cas_put");
    let k = format!("{p}key");

    assert_conflict(
        "Present on an absent key",
        &k,
        store.put(&k, b"x".to_vec(), Expect::Present).await,
    );
    assert_conflict(
        "ModRevision on an absent key",
        &k,
        store.put(&k, b"x".to_vec(), Expect::ModRevision(1)).await,
    );
    assert_eq!(
        get(store, &k).await,
        None,
        "cas_put: failed puts wrote nothing"
    );

    let r1 = must(
        "Absent on an absent key",
        store.put(&k, b"1".to_vec(), Expect::Absent).await,
    );
    assert_conflict(
        "Absent on a present key",
        &k,
        store.put(&k, b"x".to_vec(), Expect::Absent).await,
    );
    let r2 = must(
        "Present on a present key",
        store.put(&k, b"2".to_vec(), Expect::Present).await,
    );
    assert!(r2 > r1);
    assert_conflict(
        "ModRevision with a stale revision",
        &k,
        store.put(&k, b"x".to_vec(), Expect::ModRevision(r1)).await,
    );
    let r3 = must(
        "ModRevision with the current revision",
        store.put(&k, b"3".to_vec(), Expect::ModRevision(r2)).await,
    );
    assert!(r3 > r2);
    let kv = get(store, &k).await.expect("cas_put: key present");
    assert_eq!(kv.value, b"3", "cas_put: only the successful puts applied");
    assert_eq!(kv.version, 3);
    assert_eq!(kv.mod_revision, r3);
    assert_eq!(kv.create_revision, r1);
}

/// Compare-and-swap deletes.
pub async fn cas_delete(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "cas_delete");
    let k = format!("{p}key");

    let absent = must(
        "Absent delete of an absent key",
        store.delete(&k, Expect::Absent).await,
    );
    assert_eq!(absent, None);
    assert_conflict(
        "Present delete of an absent key",
        &k,
        store.delete(&k, Expect::Present).await,
    );
    assert_conflict(
        "ModRevision delete of an absent key",
        &k,
        store.delete(&k, Expect::ModRevision(1)).await,
    );

    let r1 = put(store, &k, b"1").await;
    let r2 = put(store, &k, b"2").await;
    assert_conflict(
        "Absent delete of a present key",
        &k,
        store.delete(&k, Expect::Absent).await,
    );
    assert_conflict(
        "ModRevision delete with a stale revision",
        &k,
        store.delete(&k, Expect::ModRevision(r1)).await,
    );
    assert!(
        get(store, &k).await.is_some(),
        "cas_delete: failed deletes kept the key"
    );
    let d = must(
        "ModRevision delete with the current revision",
        store.delete(&k, Expect::ModRevision(r2)).await,
    );
    let d = d.expect("a successful delete of a present key returns Some(revision)");
    assert!(d > r2);
    assert_eq!(get(store, &k).await, None);

    put(store, &k, b"3").await;
    let d = must(
        "Present delete of a present key",
        store.delete(&k, Expect::Present).await,
    );
    assert!(d.is_some());
    assert_eq!(get(store, &k).await, None);
}

/// A txn whose compares do not all hold applies nothing.
pub async fn txn_all_or_nothing(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "txn_all_or_nothing");
    let a = format!("{p}a");
    let b = format!("{p}b");
    let c = format!("{p}c");
    let ra = put(store, &a, b"a1").await;
    put(store, &a, b"a2").await;
    let rc = put(store, &c, b"c1").await;

    // One compare fails (stale revision): nothing of the ops applies.
    let before = revision(store).await;
    let res = must(
        "txn with a stale compare",
        store
            .txn(
                Txn::new()
                    .when(&c, Expect::ModRevision(rc))
                    .when(&a, Expect::ModRevision(ra))
                    .put(&b, b"b".to_vec())
                    .delete(&a)
                    .put(&c, b"c2".to_vec()),
            )
            .await,
    );
    assert!(
        !res.succeeded,
        "a txn with a failing compare reported success"
    );
    assert!(
        res.revision >= before,
        "failed txn revision {} < {before}",
        res.revision
    );
    assert_eq!(get(store, &b).await, None, "failed txn: put applied");
    assert_eq!(
        get(store, &a).await.map(|kv| kv.value),
        Some(b"a2".to_vec()),
        "failed txn: delete applied"
    );
    assert_eq!(
        get(store, &c).await.map(|kv| kv.value),
        Some(b"c1".to_vec()),
        "failed txn: put applied"
    );

    // Absent / Present compares.
    let res = must(
        "txn with Absent on a present key",
        store
            .txn(Txn::new().when(&a, Expect::Absent).put(&b, b"b".to_vec()))
            .await,
    );
    assert!(!res.succeeded);
    let res = must(
        "txn with Present on an absent key",
        store
            .txn(Txn::new().when(&b, Expect::Present).put(&b, b"b".to_vec()))
            .await,
    );
    assert!(!res.succeeded);
    assert_eq!(get(store, &b).await, None);

    // All compares hold: every op applies.
    let ra2 = get(store, &a).await.expect("a present").mod_revision;
    let res = must(
        "txn whose compares hold",
        store
            .txn(
                Txn::new()
                    .when(&a, Expect::ModRevision(ra2))
                    .when(&b, Expect::Absent)
                    .when(&c, Expect::Present)
                    .when(&c, Expect::Any)
                    .put(&b, b"b".to_vec())
                    .delete(&a)
                    .put(&c, b"c2".to_vec()),
            )
            .await,
    );
    assert!(res.succeeded, "a txn whose compares hold failed");
    assert_eq!(get(store, &a).await, None);
    assert_eq!(
        get(store, &b).await.map(|kv| kv.mod_revision),
        Some(res.revision)
    );
    assert_eq!(
        get(store, &c).await.map(|kv| kv.value),
        Some(b"c2".to_vec())
    );
}

/// All ops of a txn share one revision, with correct per-key metadata.
pub async fn txn_several_ops_one_revision(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "txn_several_ops_one_revision");
    let existing = format!("{p}existing");
    let gone = format!("{p}gone");
    let r0 = put(store, &existing, b"e1").await;
    put(store, &gone, b"g").await;

    let res = must(
        "multi-op txn",
        store
            .txn(
                Txn::new()
                    .put(format!("{p}new1"), b"n1".to_vec())
                    .put(&existing, b"e2".to_vec())
                    .put(format!("{p}new2"), b"n2".to_vec())
                    .delete(&gone)
                    .delete(format!("{p}never-existed")),
            )
            .await,
    );
    assert!(res.succeeded);
    let r = res.revision;
    assert!(r > r0);
    for key in [format!("{p}new1"), format!("{p}new2")] {
        let kv = get(store, &key).await.expect("txn put applied");
        assert_eq!(
            kv.mod_revision, r,
            "{key}: mod_revision is the txn revision"
        );
        assert_eq!(
            kv.create_revision, r,
            "{key}: create_revision is the txn revision"
        );
        assert_eq!(kv.version, 1);
    }
    let kv = get(store, &existing).await.expect("existing present");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r0, r, 2)
    );
    assert_eq!(get(store, &gone).await, None, "txn delete applied");
    let (listed, _) = must("list", store.list(&p).await);
    assert_eq!(listed.len(), 3);
}

/// A txn naming one key in two ops is rejected as `Invalid` and applies nothing.
pub async fn txn_rejects_duplicate_keys(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "txn_rejects_duplicate_keys");
    let k = format!("{p}key");
    let r = store
        .txn(
            Txn::new()
                .put(format!("{p}other"), b"o".to_vec())
                .put(&k, b"1".to_vec())
                .delete(&k),
        )
        .await;
    assert!(
        matches!(r, Err(StoreError::Invalid(_))),
        "a txn with a key in two ops must be Invalid, got {r:?}"
    );
    assert_eq!(get(store, &k).await, None);
    assert_eq!(get(store, &format!("{p}other")).await, None);
}

/// list: prefix boundaries, key order, snapshot revision.
pub async fn list_prefix(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "list_prefix");
    let keys = [
        "a/b/2", "a/c/1", "a/b/1", "a/b", "a/bb", "a/b/10", "a/a", "b/1", "a/b/1/x",
    ];
    let mut last = 0;
    for k in keys {
        last = put(store, &format!("{p}{k}"), k.as_bytes()).await;
    }
    let names = |kvs: &[KeyValue]| -> Vec<String> {
        kvs.iter().map(|kv| kv.key[p.len()..].to_owned()).collect()
    };

    let (kvs, rev) = must("list a/b/", store.list(&format!("{p}a/b/")).await);
    assert_eq!(
        names(&kvs),
        ["a/b/1", "a/b/1/x", "a/b/10", "a/b/2"],
        "list a/b/"
    );
    assert!(
        rev >= last,
        "list snapshot revision {rev} is behind the last write {last}"
    );
    for kv in &kvs {
        assert_eq!(
            kv.value,
            &kv.key.as_bytes()[p.len()..],
            "list value of {}",
            kv.key
        );
        assert!(kv.mod_revision <= rev);
    }

    let (kvs, _) = must("list a/b", store.list(&format!("{p}a/b")).await);
    assert_eq!(
        names(&kvs),
        ["a/b", "a/b/1", "a/b/1/x", "a/b/10", "a/b/2", "a/bb"],
        "list a/b must not include a/c or a/a"
    );

    let (kvs, _) = must("list a/", store.list(&format!("{p}a/")).await);
    assert_eq!(kvs.len(), 8, "list a/");
    let (kvs, _) = must("list everything", store.list(&p).await);
    assert_eq!(kvs.len(), keys.len(), "list of the check prefix");
    assert!(
        kvs.windows(2).all(|w| w[0].key < w[1].key),
        "list is in key order"
    );

    let (kvs, rev) = must(
        "list of an unused prefix",
        store.list(&format!("{p}zzz/")).await,
    );
    assert!(kvs.is_empty());
    assert!(rev >= last);

    let (all, rev_all) = must("list of the empty prefix", store.list("").await);
    assert!(rev_all >= last);
    assert!(
        all.windows(2).all(|w| w[0].key < w[1].key),
        "list('') is in key order"
    );
    let ours = all.iter().filter(|kv| kv.key.starts_with(&p)).count();
    assert_eq!(ours, keys.len(), "list('') includes every key");

    // The snapshot revision covers exactly the writes it shows.
    let extra = put(store, &format!("{p}a/b/3"), b"a/b/3").await;
    let (kvs, rev) = must("list after a write", store.list(&format!("{p}a/b/")).await);
    assert!(rev >= extra);
    assert_eq!(kvs.len(), 5);
}

/// A watch from now sees only later changes.
pub async fn watch_from_now(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "watch_from_now");
    put(store, &format!("{p}before"), b"old").await;
    let mut w = watch(store, &p, 0).await;
    let k = format!("{p}after");
    let r = put(store, &k, b"new").await;
    let b = next_batch(&mut w, "watch_from_now: first batch").await;
    assert_eq!(
        b.revision, r,
        "watch_from_now: a change before the watch was delivered"
    );
    assert_eq!(b.events.len(), 1);
    assert_put(&b.events[0], &k, b"new", r, "watch_from_now");
    assert_eq!(b.events[0].kv.version, 1);
    assert_eq!(b.events[0].kv.create_revision, r);

    let r2 = put(store, &k, b"newer").await;
    let b = next_batch(&mut w, "watch_from_now: second batch").await;
    assert_eq!(b.revision, r2);
    assert_put(&b.events[0], &k, b"newer", r2, "watch_from_now");
    assert_eq!(b.events[0].kv.version, 2);
    assert_eq!(b.events[0].kv.create_revision, r);
}

/// A watch from a past revision replays history in order, then follows live changes with no
/// gap and no duplicate.
pub async fn watch_replays_history(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "watch_replays_history");
    let k1 = format!("{p}1");
    let k2 = format!("{p}2");
    let r1 = put(store, &k1, b"a").await;
    let r2 = put(store, &k2, b"b").await;
    let r3 = put(store, &k1, b"c").await;
    let r4 = must("delete", store.delete(&k2, Expect::Any).await).expect("deleted");

    let mut w = watch(store, &p, r1).await;
    let b = next_batch(&mut w, "replay r1").await;
    assert_eq!(b.revision, r1);
    assert_put(&b.events[0], &k1, b"a", r1, "replay r1");
    let b = next_batch(&mut w, "replay r2").await;
    assert_eq!(b.revision, r2);
    assert_put(&b.events[0], &k2, b"b", r2, "replay r2");
    let b = next_batch(&mut w, "replay r3").await;
    assert_eq!(b.revision, r3);
    assert_put(&b.events[0], &k1, b"c", r3, "replay r3");
    assert_eq!(
        (b.events[0].kv.create_revision, b.events[0].kv.version),
        (r1, 2)
    );
    let b = next_batch(&mut w, "replay r4").await;
    assert_eq!(b.revision, r4);
    assert_eq!(b.events.len(), 1);
    assert_delete(&b.events[0], &k2, r4, "replay r4");

    // Live, then more live: strictly the next revisions.
    let r5 = put(store, &k2, b"d").await;
    let b = next_batch(&mut w, "live r5").await;
    assert_eq!(b.revision, r5, "first live batch after the replay");
    assert_put(&b.events[0], &k2, b"d", r5, "live r5");
    assert_eq!(b.events[0].kv.version, 1, "version restarts after a delete");
    let r6 = put(store, &k1, b"e").await;
    let b = next_batch(&mut w, "live r6").await;
    assert_eq!(
        b.revision, r6,
        "no duplicate or gap after the switch to live"
    );

    // A second watch from the middle of the history.
    let mut w = watch(store, &p, r3).await;
    let revs = [r3, r4, r5, r6];
    for r in revs {
        let b = next_batch(&mut w, "replay from r3").await;
        assert_eq!(b.revision, r, "replay from r3 in order");
    }
    assert_quiet(
        &mut w,
        Duration::from_millis(200),
        "replay from r3: nothing more",
    )
    .await;
}

/// A watch only sees keys under its prefix, and only batches with a matching event.
pub async fn watch_prefix_filter(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "watch_prefix_filter");
    let mut w = watch(store, &format!("{p}a/"), 0).await;
    put(store, &format!("{p}b/x"), b"no").await;
    put(store, &format!("{p}ab"), b"no").await;
    put(store, &format!("{p}a"), b"no").await;
    let r = put(store, &format!("{p}a/x"), b"yes").await;
    let b = next_batch(&mut w, "watch_prefix_filter").await;
    assert_eq!(
        b.revision, r,
        "a batch without a matching event was delivered"
    );
    assert_eq!(b.events.len(), 1);
    assert_put(
        &b.events[0],
        &format!("{p}a/x"),
        b"yes",
        r,
        "watch_prefix_filter",
    );

    let res = must(
        "mixed txn",
        store
            .txn(
                Txn::new()
                    .put(format!("{p}b/1"), b"no".to_vec())
                    .put(format!("{p}a/1"), b"yes".to_vec())
                    .put(format!("{p}c/1"), b"no".to_vec()),
            )
            .await,
    );
    let b = next_batch(&mut w, "watch_prefix_filter: mixed txn").await;
    assert_eq!(b.revision, res.revision);
    assert_eq!(
        b.events.len(),
        1,
        "only the matching events of a txn are delivered"
    );
    assert_put(
        &b.events[0],
        &format!("{p}a/1"),
        b"yes",
        res.revision,
        "mixed txn",
    );

    // History replay filters too.
    let mut w = watch(store, &format!("{p}a/"), r - 3).await;
    let b = next_batch(&mut w, "watch_prefix_filter: replay").await;
    assert_eq!(
        b.revision, r,
        "replay delivered a batch without a matching event"
    );
    let b = next_batch(&mut w, "watch_prefix_filter: replay txn").await;
    assert_eq!(b.revision, res.revision);
    assert_eq!(b.events.len(), 1);
}

/// A txn's changes arrive as one batch, in op order.
pub async fn watch_txn_is_one_batch(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "watch_txn_is_one_batch");
    put(store, &format!("{p}old"), b"o").await;
    let mut w = watch(store, &p, 0).await;
    let res = must(
        "txn",
        store
            .txn(
                Txn::new()
                    .put(format!("{p}z"), b"1".to_vec())
                    .put(format!("{p}a"), b"2".to_vec())
                    .delete(format!("{p}old"))
                    .delete(format!("{p}never"))
                    .put(format!("{p}m"), b"3".to_vec()),
            )
            .await,
    );
    let r = res.revision;
    let b = next_batch(&mut w, "watch_txn_is_one_batch").await;
    assert_eq!(b.revision, r);
    assert_eq!(b.events.len(), 4, "one batch with every change: {b:?}");
    assert_put(&b.events[0], &format!("{p}z"), b"1", r, "txn batch");
    assert_put(&b.events[1], &format!("{p}a"), b"2", r, "txn batch");
    assert_delete(&b.events[2], &format!("{p}old"), r, "txn batch");
    assert_put(&b.events[3], &format!("{p}m"), b"3", r, "txn batch");
    let r2 = put(store, &format!("{p}after"), b"x").await;
    let b = next_batch(&mut w, "after the txn").await;
    assert_eq!(b.revision, r2, "the txn was split over several batches");
}

/// Deletes appear as Delete events.
pub async fn watch_deletes(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "watch_deletes");
    let k = format!("{p}key");
    put(store, &k, b"v").await;
    let mut w = watch(store, &p, 0).await;
    let d = must("delete", store.delete(&k, Expect::Any).await).expect("deleted");
    let b = next_batch(&mut w, "watch_deletes").await;
    assert_eq!(b.revision, d);
    assert_eq!(b.events.len(), 1);
    assert_delete(&b.events[0], &k, d, "watch_deletes");
    // Deleting it again changes nothing and sends nothing.
    must("delete again", store.delete(&k, Expect::Any).await);
    let r = put(store, &k, b"back").await;
    let b = next_batch(&mut w, "watch_deletes: re-create").await;
    assert_eq!(b.revision, r, "a delete of an absent key produced an event");
    assert_eq!(b.events[0].kv.version, 1);
}

/// A watch from a future revision is accepted and waits.
pub async fn watch_future_revision(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "watch_future_revision");
    let far = revision(store).await + 1_000_000;
    let mut w = watch(store, &p, far).await;
    put(store, &format!("{p}key"), b"v").await;
    assert_quiet(
        &mut w,
        Duration::from_millis(300),
        "watch from a future revision",
    )
    .await;
}

/// A watcher that does not read for a while still gets every event, in order.
pub async fn watch_many_events(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "watch_many_events");
    const N: usize = 300;
    let mut w = watch(store, &p, 0).await;
    let mut revs = Vec::with_capacity(N);
    for i in 0..N {
        revs.push(put(store, &format!("{p}{}", i % 7), &i.to_le_bytes()).await);
    }
    for (i, r) in revs.iter().enumerate() {
        let b = next_batch(&mut w, "watch_many_events").await;
        assert_eq!(b.revision, *r, "event {i} of {N}");
        assert_eq!(b.events[0].kv.value, i.to_le_bytes());
    }
}

/// Compaction: old history is gone (`Compacted`), newer history and data remain.
pub async fn compaction(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "compaction");
    let r1 = put(store, &format!("{p}a"), b"1").await;
    let _r2 = put(store, &format!("{p}b"), b"2").await;
    let r3 = put(store, &format!("{p}c"), b"3").await;
    let r4 = put(store, &format!("{p}a"), b"4").await;

    must("compact", store.compact(r3).await);
    let compacted = must("compacted_revision", store.compacted_revision().await);
    assert!(compacted >= r3, "compacted_revision {compacted} < {r3}");

    match store.watch(&p, r1).await {
        Err(StoreError::Compacted { requested, .. }) => assert_eq!(requested, r1),
        Err(e) => panic!("watch from a compacted revision: expected Compacted, got {e}"),
        Ok(mut w) => match tokio::time::timeout(WATCH_TIMEOUT, w.next()).await {
            Ok(Some(Err(StoreError::Compacted { .. }))) => {}
            other => panic!("watch from a compacted revision: expected Compacted, got {other:?}"),
        },
    }

    // Watching from the compaction revision itself still works.
    if compacted == r3 {
        let mut w = watch(store, &p, r3).await;
        let b = next_batch(&mut w, "watch from the compaction revision").await;
        assert_eq!(b.revision, r3);
        assert_put(&b.events[0], &format!("{p}c"), b"3", r3, "compaction");
        let b = next_batch(&mut w, "watch from the compaction revision").await;
        assert_eq!(b.revision, r4);
    }
    let mut w = watch(store, &p, r4).await;
    let b = next_batch(&mut w, "watch from after the compaction").await;
    assert_eq!(b.revision, r4);
    let r5 = put(store, &format!("{p}d"), b"5").await;
    let b = next_batch(&mut w, "live after the compaction").await;
    assert_eq!(b.revision, r5);

    // The data itself is untouched.
    let kv = get(store, &format!("{p}a"))
        .await
        .expect("data survives compaction");
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (r1, r4, 2)
    );
    let (kvs, _) = must("list after compaction", store.list(&p).await);
    assert_eq!(kvs.len(), 4);

    // Compacting again at or below the compacted revision is a no-op; the future is refused.
    must("compact again (no-op)", store.compact(r1).await);
    assert!(must("compacted_revision", store.compacted_revision().await) >= r3);
    let current = revision(store).await;
    match store.compact(current + 1000).await {
        Err(StoreError::FutureRevision { requested, .. }) => assert_eq!(requested, current + 1000),
        other => {
            panic!("compacting beyond the current revision: expected FutureRevision, got {other:?}")
        }
    }
}

/// Revoking a lease deletes its keys at one revision.
pub async fn lease_revoke(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "lease_revoke");
    let lease = must(
        "lease_grant",
        store.lease_grant(Duration::from_secs(60)).await,
    );
    let other = must(
        "lease_grant",
        store.lease_grant(Duration::from_secs(60)).await,
    );
    assert_ne!(lease, other, "lease ids are unique");
    let res = must(
        "leased puts",
        store
            .txn(
                Txn::new()
                    .put_with_lease(format!("{p}l1"), b"1".to_vec(), lease)
                    .put_with_lease(format!("{p}l2"), b"2".to_vec(), lease)
                    .put_with_lease(format!("{p}o"), b"o".to_vec(), other)
                    .put(format!("{p}plain"), b"p".to_vec()),
            )
            .await,
    );
    assert!(res.succeeded);
    let kv = get(store, &format!("{p}l1"))
        .await
        .expect("leased key present");
    assert_eq!(kv.lease, Some(lease), "KeyValue.lease of a leased key");

    let mut w = watch(store, &p, 0).await;
    must("lease_revoke", store.lease_revoke(lease).await);
    assert_eq!(
        get(store, &format!("{p}l1")).await,
        None,
        "revoke deletes attached keys"
    );
    assert_eq!(
        get(store, &format!("{p}l2")).await,
        None,
        "revoke deletes attached keys"
    );
    assert!(
        get(store, &format!("{p}o")).await.is_some(),
        "another lease's key survives"
    );
    assert!(
        get(store, &format!("{p}plain")).await.is_some(),
        "an unleased key survives"
    );

    let b = next_batch(&mut w, "lease_revoke: delete events").await;
    assert_eq!(b.events.len(), 2, "one batch deleting both keys: {b:?}");
    let mut keys: Vec<&str> = b.events.iter().map(|e| e.kv.key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, [format!("{p}l1"), format!("{p}l2")]);
    assert!(b
        .events
        .iter()
        .all(|e| e.kind == EventKind::Delete && e.kv.mod_revision == b.revision));

    assert_lease_not_found(
        "keep_alive of a revoked lease",
        store.lease_keep_alive(lease).await,
    );
    assert_lease_not_found("revoke of a revoked lease", store.lease_revoke(lease).await);
    assert_lease_not_found(
        "put with a revoked lease",
        store
            .txn(Txn::new().put_with_lease(format!("{p}l3"), b"x".to_vec(), lease))
            .await,
    );
    must("revoke other", store.lease_revoke(other).await);
    assert_eq!(get(store, &format!("{p}o")).await, None);
}

/// A put without a lease detaches a key from its lease.
pub async fn lease_detach(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "lease_detach");
    let lease = must(
        "lease_grant",
        store.lease_grant(Duration::from_secs(60)).await,
    );
    let k = format!("{p}key");
    let moved = format!("{p}moved");
    let l2 = must(
        "lease_grant",
        store.lease_grant(Duration::from_secs(60)).await,
    );
    must(
        "leased puts",
        store
            .txn(
                Txn::new()
                    .put_with_lease(&k, b"1".to_vec(), lease)
                    .put_with_lease(&moved, b"1".to_vec(), lease),
            )
            .await,
    );
    put(store, &k, b"2").await;
    assert_eq!(
        get(store, &k).await.and_then(|kv| kv.lease),
        None,
        "a plain put detaches the lease"
    );
    must(
        "move to another lease",
        store
            .txn(Txn::new().put_with_lease(&moved, b"2".to_vec(), l2))
            .await,
    );
    assert_eq!(get(store, &moved).await.and_then(|kv| kv.lease), Some(l2));
    must("lease_revoke", store.lease_revoke(lease).await);
    assert!(
        get(store, &k).await.is_some(),
        "a detached key survives its old lease's revocation"
    );
    assert!(
        get(store, &moved).await.is_some(),
        "a moved key survives its old lease's revocation"
    );
    must("lease_revoke", store.lease_revoke(l2).await);
    assert_eq!(get(store, &moved).await, None);
}

/// Keys of an expired lease vanish (as Delete events), and the lease is gone.
pub async fn lease_expiry(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "lease_expiry");
    let lease = must(
        "lease_grant",
        store.lease_grant(Duration::from_secs(1)).await,
    );
    let k = format!("{p}key");
    let res = must(
        "leased put",
        store
            .txn(Txn::new().put_with_lease(&k, b"v".to_vec(), lease))
            .await,
    );
    let mut w = watch(store, &p, res.revision + 1).await;
    assert!(
        get(store, &k).await.is_some(),
        "leased key present before expiry"
    );
    wait_gone(store, &k, LEASE_EXPIRY_WAIT, "lease_expiry").await;
    let b = next_batch(&mut w, "lease_expiry: delete event").await;
    assert_eq!(b.events.len(), 1);
    assert_delete(&b.events[0], &k, b.revision, "lease_expiry");
    assert_lease_not_found(
        "keep_alive of an expired lease",
        store.lease_keep_alive(lease).await,
    );
}

/// keep_alive keeps a lease's keys beyond its TTL.
pub async fn lease_keep_alive(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "lease_keep_alive");
    let lease = must(
        "lease_grant",
        store.lease_grant(Duration::from_secs(1)).await,
    );
    let k = format!("{p}key");
    must(
        "leased put",
        store
            .txn(Txn::new().put_with_lease(&k, b"v".to_vec(), lease))
            .await,
    );
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        let ttl = must("lease_keep_alive", store.lease_keep_alive(lease).await);
        assert!(
            ttl >= Duration::from_secs(1),
            "keep_alive returned TTL {ttl:?}"
        );
        assert!(
            get(store, &k).await.is_some(),
            "a kept-alive lease's key vanished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_gone(
        store,
        &k,
        LEASE_EXPIRY_WAIT,
        "lease_keep_alive: expiry after the last keep-alive",
    )
    .await;
    assert_lease_not_found(
        "keep_alive of an expired lease",
        store.lease_keep_alive(lease).await,
    );
}

/// Unknown leases are refused.
pub async fn lease_unknown(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "lease_unknown");
    let k = format!("{p}key");
    let bogus = i64::MAX / 3;
    assert_lease_not_found(
        "put with an unknown lease",
        store
            .txn(Txn::new().put_with_lease(&k, b"v".to_vec(), bogus))
            .await,
    );
    assert_lease_not_found(
        "put with an unknown lease among other ops",
        store
            .txn(
                Txn::new()
                    .put(format!("{p}plain"), b"v".to_vec())
                    .put_with_lease(&k, b"v".to_vec(), bogus),
            )
            .await,
    );
    assert_eq!(
        get(store, &k).await,
        None,
        "a put with an unknown lease wrote the key"
    );
    assert_eq!(
        get(store, &format!("{p}plain")).await,
        None,
        "a failed txn wrote another key"
    );
    assert_lease_not_found(
        "keep_alive of an unknown lease",
        store.lease_keep_alive(bogus).await,
    );
    assert_lease_not_found(
        "revoke of an unknown lease",
        store.lease_revoke(bogus).await,
    );
    let r = store.lease_grant(Duration::ZERO).await;
    assert!(r.is_err(), "a zero TTL must be refused, got {r:?}");
}

/// N concurrent CAS incrementers on one key lose no update.
pub async fn concurrent_cas_counter(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "concurrent_cas_counter");
    let k = format!("{p}counter");
    const WORKERS: usize = 8;
    const PER_WORKER: usize = 25;

    async fn worker(store: &dyn Store, k: &str) -> usize {
        let mut conflicts = 0;
        for _ in 0..PER_WORKER {
            loop {
                let current = get(store, k).await;
                let (next, expect) = match &current {
                    None => (1u64, Expect::Absent),
                    Some(kv) => {
                        let text = std::str::from_utf8(&kv.value).expect("counter is UTF-8");
                        let n: u64 = text.parse().expect("counter is a number");
                        (n + 1, Expect::ModRevision(kv.mod_revision))
                    }
                };
                match store.put(k, next.to_string().into_bytes(), expect).await {
                    Ok(_) => break,
                    Err(StoreError::Conflict { .. }) => conflicts += 1,
                    Err(e) => panic!("concurrent_cas_counter: put failed: {e}"),
                }
            }
        }
        conflicts
    }

    let conflicts: usize = join_all((0..WORKERS).map(|_| worker(store, &k)).collect())
        .await
        .into_iter()
        .sum();
    let kv = get(store, &k).await.expect("counter present");
    let total = (WORKERS * PER_WORKER) as u64;
    assert_eq!(
        kv.value,
        total.to_string().into_bytes(),
        "lost updates ({conflicts} conflicts retried)"
    );
    assert_eq!(
        kv.version, total as i64,
        "the counter's version counts every write"
    );
}

/// A 20,000-put txn commits atomically at one revision (and a failing one applies nothing).
pub async fn large_txn(store: &dyn Store, ns: &str) {
    let p = prefix(ns, "large_txn");
    const N: usize = 20_000;
    let gate = format!("{p}gate");
    let build = |expect: Expect| {
        let mut txn = Txn::new().when(&gate, expect);
        for i in 0..N {
            txn = txn.put(format!("{p}k/{i:06}"), format!("value-{i}").into_bytes());
        }
        txn
    };

    let res = must("failing large txn", store.txn(build(Expect::Present)).await);
    assert!(!res.succeeded);
    let (kvs, _) = must("list", store.list(&format!("{p}k/")).await);
    assert!(
        kvs.is_empty(),
        "a failed large txn applied {} puts",
        kvs.len()
    );

    let txn = build(Expect::Absent);
    let started = Instant::now();
    let res = must("large txn", store.txn(txn).await);
    let elapsed = started.elapsed();
    tracing::info!(?elapsed, puts = N, "large txn committed");
    eprintln!(
        "large_txn: {N} puts committed in {elapsed:?} ({} backend)",
        store.backend()
    );
    assert!(res.succeeded);

    let (kvs, rev) = must("list", store.list(&format!("{p}k/")).await);
    assert_eq!(kvs.len(), N, "every put of the large txn applied");
    assert!(rev >= res.revision);
    for (i, kv) in kvs.iter().enumerate() {
        assert_eq!(kv.key, format!("{p}k/{i:06}"));
        assert_eq!(
            kv.mod_revision, res.revision,
            "all puts share the txn revision"
        );
        assert_eq!(kv.value, format!("value-{i}").into_bytes());
    }

    let mut w = watch(store, &p, res.revision).await;
    let b = next_batch(&mut w, "large txn batch").await;
    assert_eq!(b.revision, res.revision);
    assert_eq!(b.events.len(), N, "the large txn is one batch");
}

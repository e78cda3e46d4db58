//! The conformance suite against the embedded backend, plus embedded-only tests: persistence
//! across reopen, leases across reopen, slow watchers, and durability of acknowledged writes
//! across a SIGKILL.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wulf_store::conformance;
use wulf_store::embedded::EmbeddedOptions;
use wulf_store::{EmbeddedStore, EventKind, Expect, Store, StoreError, Txn};

fn open(dir: &tempfile::TempDir) -> Arc<EmbeddedStore> {
    match EmbeddedStore::open(dir.path()) {
        Ok(s) => s,
        Err(e) => panic!("open embedded store: {e}"),
    }
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = open(&dir);
                // A non-empty store: the checks must not depend on a fresh one.
                store
                    .put("unrelated/key", b"x".to_vec(), Expect::Any)
                    .await
                    .expect("seed");
                conformance::$name(store.as_ref(), &conformance::unique_namespace()).await;
            }
        )*

        /// Every check of the suite has a test here.
        #[test]
        fn every_check_has_a_test() {
            let here = [$(stringify!($name)),*];
            for (name, _) in conformance::CHECKS {
                assert!(here.contains(name), "conformance check {name} has no test");
            }
        }
    };
}

conformance_tests!(
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

/// The whole suite, in order, against one shared store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_on_one_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    conformance::run_all(store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_and_revision_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rev, lease, compacted) = {
        let store = open(&dir);
        store
            .put("a", b"1".to_vec(), Expect::Any)
            .await
            .expect("put");
        store
            .put("a", b"2".to_vec(), Expect::Any)
            .await
            .expect("put");
        store
            .put("b", b"x".to_vec(), Expect::Any)
            .await
            .expect("put");
        let lease = store
            .lease_grant(Duration::from_secs(600))
            .await
            .expect("grant");
        let res = store
            .txn(
                Txn::new()
                    .put("c", b"3".to_vec())
                    .put_with_lease("d", b"4".to_vec(), lease)
                    .delete("b"),
            )
            .await
            .expect("txn");
        store.compact(2).await.expect("compact");
        (
            res.revision,
            lease,
            store.compacted_revision().await.expect("compacted"),
        )
    };

    let store = open(&dir);
    assert_eq!(
        store.revision().await.expect("revision"),
        rev,
        "revision persisted"
    );
    assert_eq!(
        store.compacted_revision().await.expect("compacted"),
        compacted
    );
    let a = store.get("a").await.expect("get").expect("a present");
    assert_eq!(
        (
            a.value.as_slice(),
            a.create_revision,
            a.mod_revision,
            a.version
        ),
        (&b"2"[..], 1, 2, 2)
    );
    assert_eq!(store.get("b").await.expect("get"), None);
    let d = store.get("d").await.expect("get").expect("d present");
    assert_eq!(d.lease, Some(lease));
    let (kvs, list_rev) = store.list("").await.expect("list");
    assert_eq!(
        kvs.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(),
        ["a", "c", "d"]
    );
    assert_eq!(list_rev, rev);

    // History survives too: replay from the compaction revision.
    let mut w = store.watch("", 2).await.expect("watch");
    let mut seen = Vec::new();
    for _ in 2..=rev {
        seen.push(
            conformance::next_batch(&mut w, "replay after reopen")
                .await
                .revision,
        );
    }
    assert_eq!(seen, (2..=rev).collect::<Vec<_>>());
    assert!(matches!(
        store.watch("", 1).await,
        Err(StoreError::Compacted { .. })
    ));

    // New writes continue the revision sequence; new leases get new ids.
    let r = store
        .put("e", b"5".to_vec(), Expect::Any)
        .await
        .expect("put");
    assert_eq!(r, rev + 1);
    let l2 = store
        .lease_grant(Duration::from_secs(60))
        .await
        .expect("grant");
    assert!(l2 > lease, "lease ids are not reused after reopen");
    store
        .lease_keep_alive(lease)
        .await
        .expect("a persisted lease is still alive");
    store.lease_revoke(lease).await.expect("revoke");
    assert_eq!(store.get("d").await.expect("get"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expires_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let granted = Instant::now();
    {
        let store = open(&dir);
        let lease = store
            .lease_grant(Duration::from_secs(2))
            .await
            .expect("grant");
        store
            .txn(Txn::new().put_with_lease("leased", b"v".to_vec(), lease))
            .await
            .expect("put");
        store
            .put("plain", b"v".to_vec(), Expect::Any)
            .await
            .expect("put");
    }
    let store = open(&dir);
    assert!(
        store.get("leased").await.expect("get").is_some()
            || granted.elapsed() >= Duration::from_secs(2),
        "the leased key vanished before its lease expired"
    );
    let deadline = Instant::now() + Duration::from_secs(6);
    while store.get("leased").await.expect("get").is_some() {
        assert!(
            Instant::now() < deadline,
            "a persisted lease did not expire after reopen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        granted.elapsed() >= Duration::from_secs(2),
        "expired too early"
    );
    assert!(store.get("plain").await.expect("get").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_that_expired_while_closed_is_reaped_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let lease = {
        let store = open(&dir);
        let lease = store
            .lease_grant(Duration::from_millis(500))
            .await
            .expect("grant");
        store
            .txn(Txn::new().put_with_lease("leased", b"v".to_vec(), lease))
            .await
            .expect("put");
        lease
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    let store = open(&dir);
    assert!(matches!(
        store.lease_keep_alive(lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    let deadline = Instant::now() + Duration::from_secs(3);
    while store.get("leased").await.expect("get").is_some() {
        assert!(
            Instant::now() < deadline,
            "an expired persisted lease was not reaped"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn small_buffers() -> EmbeddedOptions {
    EmbeddedOptions {
        broadcast_capacity: 4,
        watch_buffer: 2,
        ..EmbeddedOptions::default()
    }
}

/// A watcher far behind the live channel recovers from the stored history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_watcher_replays_from_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open_with(dir.path(), small_buffers()).expect("open");
    let mut w = store.watch("w/", 0).await.expect("watch");
    let mut revs = Vec::new();
    for i in 0..200u32 {
        let key = if i % 3 == 0 {
            format!("other/{i}")
        } else {
            format!("w/{}", i % 5)
        };
        let r = store
            .put(&key, i.to_le_bytes().to_vec(), Expect::Any)
            .await
            .expect("put");
        if key.starts_with("w/") {
            revs.push((r, i));
        }
    }
    let txn = store
        .txn(
            Txn::new()
                .put("w/t1", b"1".to_vec())
                .put("other/t", b"x".to_vec())
                .put("w/t2", b"2".to_vec()),
        )
        .await
        .expect("txn");
    for (r, i) in &revs {
        let b = conformance::next_batch(&mut w, "lagging watcher").await;
        assert_eq!(b.revision, *r);
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.events[0].kv.value, i.to_le_bytes());
    }
    let b = conformance::next_batch(&mut w, "lagging watcher: txn").await;
    assert_eq!(b.revision, txn.revision);
    assert_eq!(
        b.events
            .iter()
            .map(|e| e.kv.key.as_str())
            .collect::<Vec<_>>(),
        ["w/t1", "w/t2"]
    );
    // And it is live again.
    let r = store
        .put("w/live", b"l".to_vec(), Expect::Any)
        .await
        .expect("put");
    let b = conformance::next_batch(&mut w, "lagging watcher: live").await;
    assert_eq!(b.revision, r);
}

/// A lagging watcher whose missed history was compacted gets `Compacted`, then the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_watcher_after_compaction_gets_compacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open_with(dir.path(), small_buffers()).expect("open");
    let mut w = store.watch("", 0).await.expect("watch");
    let mut last = 0;
    for i in 0..50u32 {
        last = store
            .put(&format!("k/{i}"), vec![1], Expect::Any)
            .await
            .expect("put");
    }
    store.compact(last).await.expect("compact");
    let mut delivered = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
            Ok(Some(Ok(_))) => delivered += 1,
            Ok(Some(Err(StoreError::Compacted { compacted, .. }))) => {
                assert_eq!(compacted, last);
                break;
            }
            other => panic!("expected batches then Compacted, got {other:?}"),
        }
    }
    assert!(delivered < 50, "the watcher did not lag at all");
    let end = tokio::time::timeout(Duration::from_secs(5), w.next()).await;
    assert!(
        matches!(end, Ok(None)),
        "the watch must end after Compacted, got {end:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ends_when_store_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let mut w = store.watch("", 0).await.expect("watch");
    let r = store
        .put("k", b"v".to_vec(), Expect::Any)
        .await
        .expect("put");
    let b = conformance::next_batch(&mut w, "before drop").await;
    assert_eq!(b.revision, r);
    drop(store);
    let end = tokio::time::timeout(Duration::from_secs(5), w.next()).await;
    assert!(
        matches!(end, Ok(None)),
        "watch must end when the store is dropped, got {end:?}"
    );
    // The lease task let go of the database too: it can be opened again.
    let store = open(&dir);
    assert_eq!(store.revision().await.expect("revision"), r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_by_lease_expiry_are_in_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let lease = store
        .lease_grant(Duration::from_millis(300))
        .await
        .expect("grant");
    let res = store
        .txn(
            Txn::new()
                .put_with_lease("l/a", b"a".to_vec(), lease)
                .put_with_lease("l/b", b"b".to_vec(), lease),
        )
        .await
        .expect("txn");
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.revision().await.expect("revision") == res.revision {
        assert!(Instant::now() < deadline, "lease did not expire");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut w = store.watch("l/", res.revision).await.expect("watch");
    let b = conformance::next_batch(&mut w, "put batch").await;
    assert_eq!(b.events.len(), 2);
    let b = conformance::next_batch(&mut w, "expiry batch").await;
    assert_eq!(b.revision, res.revision + 1);
    assert!(b.events.iter().all(|e| e.kind == EventKind::Delete));
    assert_eq!(b.events.len(), 2);
}

/// Bulk txns of 50,000 puts must be fast (the bound is only enforced in release builds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_txn_of_50000_puts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let mut txn = Txn::new();
    for i in 0..50_000 {
        txn = txn.put(
            format!("nodes/node{i:05}/state"),
            format!("{{\"state\":\"idle\",\"n\":{i}}}").into_bytes(),
        );
    }
    let started = Instant::now();
    let res = store.txn(txn).await.expect("txn");
    let elapsed = started.elapsed();
    eprintln!("bulk_txn_of_50000_puts: committed in {elapsed:?}");
    assert!(res.succeeded);
    // A second bulk txn that rewrites every key (updates are the slower path).
    let mut txn = Txn::new();
    for i in 0..50_000 {
        txn = txn.put(
            format!("nodes/node{i:05}/state"),
            format!("{{\"state\":\"busy\",\"n\":{i}}}").into_bytes(),
        );
    }
    let started = Instant::now();
    let res2 = store.txn(txn).await.expect("txn");
    let elapsed2 = started.elapsed();
    eprintln!("bulk_txn_of_50000_puts: rewrite committed in {elapsed2:?}");
    assert_eq!(res2.revision, res.revision + 1);
    let (kvs, _) = store.list("nodes/").await.expect("list");
    assert_eq!(kvs.len(), 50_000);
    assert!(kvs
        .iter()
        .all(|kv| kv.version == 2 && kv.mod_revision == res2.revision));
}

/// A watcher sees every event of its prefix in order when large batches under other
/// prefixes (skipped without replay) and under its own prefix (replayed) are interleaved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_across_large_batches_of_other_prefixes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let mut w = store.watch("/a/", 0).await.expect("watch");
    let big = |prefix: &str, round: usize| {
        let mut t = Txn::new();
        for i in 0..1000 {
            t = t.put(format!("{prefix}{i}"), format!("{round}").into_bytes());
        }
        t
    };
    let mut expected = Vec::new();
    for round in 0..5 {
        store.txn(big("/b/", round)).await.expect("other prefix");
        store
            .put(&format!("/a/small{round}"), b"x".to_vec(), Expect::Any)
            .await
            .expect("put");
        expected.push(format!("/a/small{round}"));
        store.txn(big("/a/big", round)).await.expect("own prefix");
        expected.extend((0..1000).map(|i| format!("/a/big{i}")));
    }
    let mut seen = Vec::new();
    let mut last_rev = 0;
    while seen.len() < expected.len() {
        let b = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("watch stalled")
            .expect("watch open")
            .expect("no error");
        assert!(b.revision > last_rev, "revisions in order");
        last_rev = b.revision;
        assert!(b.events.iter().all(|e| e.kv.key.starts_with("/a/")));
        seen.extend(b.events.into_iter().map(|e| e.kv.key));
    }
    assert_eq!(seen, expected);
}

// ---------------------------------------------------------------------------------------------
// Crash durability: a child process acknowledges puts on stdout and is SIGKILLed mid-stream.

const WRITER_ENV: &str = "WULF_STORE_CRASH_WRITER_DIR";
const ACK: &str = "ACK ";

/// The writer of [`acknowledged_writes_survive_sigkill`], in the child process it starts.
fn crash_writer(dir: &str) {
    let dir = dir.to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let store = EmbeddedStore::open(std::path::Path::new(&dir)).expect("open");
        let stdout = std::io::stdout();
        let started = Instant::now();
        // Bounded in case the parent never kills us.
        for i in 0u64..200_000 {
            if started.elapsed() > Duration::from_secs(60) {
                break;
            }
            let key = format!("crash/{i:08}");
            let value = format!("value-{i}").into_bytes();
            if i % 10 == 9 {
                // Every tenth write is a txn, to cover multi-op commits too.
                let res = store
                    .txn(
                        Txn::new()
                            .put(&key, value)
                            .put(format!("crash-txn/{i:08}"), b"t".to_vec()),
                    )
                    .await
                    .expect("txn");
                assert!(res.succeeded);
            } else {
                store.put(&key, value, Expect::Any).await.expect("put");
            }
            let mut out = stdout.lock();
            writeln!(out, "{ACK}{i}").expect("stdout");
            out.flush().expect("flush");
        }
    });
}

/// SIGKILL keeps the page cache, so this checks the store's commit protocol (a write is
/// acknowledged only once committed), not the disk's.
#[test]
fn acknowledged_writes_survive_sigkill() {
    // The child process this test starts runs this same test, as the writer.
    if let Ok(dir) = std::env::var(WRITER_ENV) {
        crash_writer(&dir);
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(sigkill_the_writer());
}

async fn sigkill_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "acknowledged_writes_survive_sigkill",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn writer child");
    let stdout = child.stdout.take().expect("child stdout");

    let (acked, killed_after) = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut acked = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while acked.len() < 300 {
            assert!(Instant::now() < deadline, "the writer child was too slow");
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(n) = line.strip_prefix(ACK) {
                        acked.push(n.trim().parse::<u64>().expect("ack number"));
                    }
                }
                Some(Err(e)) => panic!("reading the child's stdout: {e}"),
                None => panic!("the writer child exited early after {} acks", acked.len()),
            }
        }
        // SIGKILL, mid-stream.
        child.kill().expect("kill child");
        let killed_after = acked.len();
        // Lines already written before the kill are acknowledged too.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix(ACK) {
                if let Ok(n) = n.trim().parse::<u64>() {
                    acked.push(n);
                }
            }
        }
        let status = child.wait().expect("wait child");
        assert!(!status.success(), "the child was killed, not finished");
        (acked, killed_after)
    })
    .await
    .expect("reader");

    eprintln!(
        "acknowledged_writes_survive_sigkill: {} acks ({} before the kill)",
        acked.len(),
        killed_after
    );
    let store = open(&dir);
    for i in &acked {
        let key = format!("crash/{i:08}");
        let kv = store
            .get(&key)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("acknowledged write {key} lost"));
        assert_eq!(kv.value, format!("value-{i}").into_bytes());
        if i % 10 == 9 {
            assert!(
                store
                    .get(&format!("crash-txn/{i:08}"))
                    .await
                    .expect("get")
                    .is_some(),
                "half of an acknowledged txn lost"
            );
        }
    }
    // Revisions are still consistent: every key's mod revision is at most the store revision.
    let (kvs, rev) = store.list("crash").await.expect("list");
    assert!(kvs.iter().all(|kv| kv.mod_revision <= rev));
    let max = acked.iter().max().copied().unwrap_or(0);
    assert!(
        rev > max as i64,
        "store revision {rev} is behind {} acknowledged writes",
        max + 1
    );
    // The store keeps working after recovery.
    let r = store
        .put("after-crash", b"ok".to_vec(), Expect::Any)
        .await
        .expect("put");
    assert_eq!(r, rev + 1);
}

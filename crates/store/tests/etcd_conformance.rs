//! The conformance suite against a real etcd (Debian's `etcd-server`, started by the test on
//! loopback with free ports and a temporary data directory), plus etcd-only tests: the
//! transaction and request size limits, compaction seen by another client, watches across an
//! etcd restart and across the store's drop, and TLS with client certificates.
//!
//! A missing `etcd` binary fails these tests (`./test.sh` installs it); set `WULF_TEST_ETCD` to
//! use another binary.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wulf_store::conformance;
use wulf_store::etcd::{EtcdOptions, EtcdTls};
use wulf_store::{EtcdStore, Expect, Store, StoreError, Txn};

/// The server's limits in these tests: large enough for the suite's 20,000-put transaction,
/// small enough to test what happens beyond them.
const MAX_TXN_OPS: usize = 25_000;
const MAX_REQUEST_BYTES: usize = 8 << 20;

fn etcd_binary() -> String {
    let bin = std::env::var("WULF_TEST_ETCD").unwrap_or_else(|_| "etcd".to_owned());
    match Command::new(&bin).arg("--version").output() {
        Ok(out) if out.status.success() => bin,
        Ok(out) => panic!(
            "`{bin} --version` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "cannot run the etcd server `{bin}` ({e}): install Debian's etcd-server \
             (./test.sh does) or point WULF_TEST_ETCD at an etcd binary"
        ),
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// TLS files for [`Etcd`]: the server's certificate, key and trusted CA.
struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

/// One etcd member on loopback, killed when dropped (also when a test panics).
struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    tls: Option<ServerTls>,
    bin: String,
}

impl Etcd {
    fn start() -> Etcd {
        Self::start_with(None)
    }

    fn start_with(tls: Option<ServerTls>) -> Etcd {
        let bin = etcd_binary();
        let mut etcd = Etcd {
            child: None,
            dir: tempfile::tempdir().expect("tempdir"),
            client_port: free_port(),
            peer_port: free_port(),
            tls,
            bin,
        };
        etcd.spawn();
        etcd
    }

    fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("etcd log file");
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let client = self.endpoint();
        let mut cmd = Command::new(&self.bin);
        for (k, _) in std::env::vars() {
            if k.starts_with("ETCD") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("--name")
            .arg("wulf-test")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("wulf-test={peer}"))
            .arg("--initial-cluster-state")
            .arg("new")
            // A quick election; etcd's minimum lease TTL is 1.5 election timeouts, so the
            // suite's 1 s leases stay 1 s.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .arg("--max-txn-ops")
            .arg(MAX_TXN_OPS.to_string())
            .arg("--max-request-bytes")
            .arg(MAX_REQUEST_BYTES.to_string())
            .args([
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
                "--log-level",
                "warn",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key)
                .arg("--trusted-ca-file")
                .arg(&tls.ca)
                .arg("--client-cert-auth");
        }
        // If this test process dies without unwinding (SIGKILL, abort), etcd goes with it.
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        self.child = Some(cmd.spawn().expect("spawn etcd"));
    }

    fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.log_path()) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL, then start again on the same data directory and ports.
    fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Connects once etcd answers (panics with etcd's log if it exits or never does).
    async fn connect_with(&mut self, options: EtcdOptions) -> Arc<EtcdStore> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let endpoints = [self.endpoint()];
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("etcd exited ({status}):\n{}", self.log());
                }
            }
            let attempt = EtcdOptions {
                connect_timeout: Duration::from_secs(2),
                ..options.clone()
            };
            match EtcdStore::connect(&endpoints, attempt).await {
                Ok(store) => return store,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("etcd not ready yet: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("etcd did not come up: {e}\n{}", self.log()),
            }
        }
    }

    async fn connect(&mut self) -> Arc<EtcdStore> {
        self.connect_with(EtcdOptions::default()).await
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every check of the suite, each in its own namespace of one shared, non-empty etcd; every
/// failing check is reported, not only the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let mut etcd = Etcd::start();
    let store = etcd.connect().await;
    store
        .put("unrelated/key", b"x".to_vec(), Expect::Any)
        .await
        .expect("seed");
    let started = Instant::now();
    let mut failed = Vec::new();
    for (name, check) in conformance::CHECKS {
        let t = Instant::now();
        let s = store.clone();
        let ns = conformance::unique_namespace();
        let run = tokio::spawn(async move { check(s.as_ref(), &ns).await });
        match tokio::time::timeout(Duration::from_secs(120), run).await {
            Ok(Ok(())) => eprintln!("etcd conformance: {name} passed in {:?}", t.elapsed()),
            Ok(Err(e)) => {
                eprintln!("etcd conformance: {name} FAILED: {e}");
                failed.push(*name);
            }
            Err(_) => {
                eprintln!("etcd conformance: {name} timed out");
                failed.push(*name);
            }
        }
    }
    eprintln!("etcd conformance: whole suite in {:?}", started.elapsed());
    assert!(failed.is_empty(), "failed conformance checks: {failed:?}");
}

fn assert_too_big_naming<T: std::fmt::Debug>(r: Result<T, StoreError>, flag: &str) {
    match r {
        Err(StoreError::TooBig(m)) => assert!(m.contains(flag), "{m:?} does not name {flag}"),
        other => panic!("expected TooBig naming {flag}, got {other:?}"),
    }
}

/// Transactions and requests beyond the server's limits fail with errors naming the limit,
/// and apply nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_named() {
    let mut etcd = Etcd::start();
    let store = etcd.connect().await;

    let mut txn = Txn::new();
    for i in 0..=MAX_TXN_OPS {
        txn = txn.put(format!("limits/ops/{i:06}"), b"v".to_vec());
    }
    assert_too_big_naming(store.txn(txn).await, "--max-txn-ops");
    let (kvs, _) = store.list("limits/ops/").await.expect("list");
    assert!(kvs.is_empty());

    // Beyond --max-request-bytes: refused by etcd itself, and (further) by its gRPC limit.
    for size in [MAX_REQUEST_BYTES + 1024, MAX_REQUEST_BYTES + (1 << 20)] {
        assert_too_big_naming(
            store.put("limits/big", vec![7u8; size], Expect::Any).await,
            "--max-request-bytes",
        );
    }
    assert_eq!(store.get("limits/big").await.expect("get"), None);

    // The store still works.
    store
        .put("limits/small", b"ok".to_vec(), Expect::Any)
        .await
        .expect("put");
}

/// Nothing listens: connect fails with `Unavailable`, in time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_etcd_is_unavailable() {
    let port = free_port();
    let started = Instant::now();
    let r = EtcdStore::connect(
        &[format!("http://127.0.0.1:{port}")],
        EtcdOptions {
            connect_timeout: Duration::from_secs(2),
            ..EtcdOptions::default()
        },
    )
    .await;
    assert!(
        matches!(r, Err(StoreError::Unavailable(_))),
        "expected Unavailable, got {r:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let r = EtcdStore::connect(&[], EtcdOptions::default()).await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
}

/// Compaction by one client is seen by another; watches end when their store is dropped;
/// a watch survives an etcd restart; leases round up to whole seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_behaviours() {
    let mut etcd = Etcd::start();
    let a = etcd.connect().await;
    let b = etcd.connect().await;

    // Compaction seen by another client.
    assert_eq!(a.compacted_revision().await.expect("compacted"), 0);
    let r1 = a.put("c/1", b"1".to_vec(), Expect::Any).await.expect("put");
    let r2 = a.put("c/2", b"2".to_vec(), Expect::Any).await.expect("put");
    b.compact(r2).await.expect("compact");
    // `a` learns of it from etcd: the watch is cancelled with the compaction revision.
    let mut w = a.watch("c/", r1).await.expect("watch");
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(Err(StoreError::Compacted {
            requested,
            compacted,
        }))) => assert_eq!((requested, compacted), (r1, r2)),
        other => panic!("expected Compacted, got {other:?}"),
    }
    let end = tokio::time::timeout(Duration::from_secs(5), w.next()).await;
    assert!(
        matches!(end, Ok(None)),
        "the watch ends after Compacted: {end:?}"
    );
    let fresh = etcd.connect().await;
    assert_eq!(fresh.compacted_revision().await.expect("compacted"), r2);
    assert_eq!(a.compacted_revision().await.expect("compacted"), r2);
    // Once seen, the store refuses such a watch at once.
    assert!(matches!(
        a.watch("c/", r1).await,
        Err(StoreError::Compacted { .. })
    ));

    // A lease of 1.5 s is granted as 2 s (etcd counts seconds).
    let lease = a
        .lease_grant(Duration::from_millis(1500))
        .await
        .expect("grant");
    assert_eq!(
        a.lease_keep_alive(lease).await.expect("keep alive"),
        Duration::from_secs(2)
    );
    a.lease_revoke(lease).await.expect("revoke");

    // A watch resumes after etcd restarts, from the next revision it had not delivered.
    let mut w = a.watch("r/", 0).await.expect("watch");
    let before = a.put("r/1", b"1".to_vec(), Expect::Any).await.expect("put");
    assert_eq!(
        conformance::next_batch(&mut w, "before restart")
            .await
            .revision,
        before
    );
    etcd.restart();
    let c = etcd.connect().await;
    let other = c.put("x/1", b"1".to_vec(), Expect::Any).await.expect("put");
    let after = c.put("r/2", b"2".to_vec(), Expect::Any).await.expect("put");
    assert!(after > other && other > before);
    let batch = tokio::time::timeout(Duration::from_secs(30), w.next())
        .await
        .expect("the watch did not resume in time")
        .expect("the watch ended")
        .expect("the watch failed");
    assert_eq!(batch.revision, after);
    assert_eq!(batch.events[0].kv.key, "r/2");
    // The first store's requests work again too.
    assert!(a.get("r/2").await.expect("get after restart").is_some());

    // Dropping the store ends its watches.
    let mut w2 = a.watch("", 0).await.expect("watch");
    drop(a);
    let end = tokio::time::timeout(Duration::from_secs(5), w2.next()).await;
    assert!(
        matches!(end, Ok(None)),
        "watch must end when the store is dropped, got {end:?}"
    );
    let end = tokio::time::timeout(Duration::from_secs(5), w.next()).await;
    assert!(matches!(end, Ok(None)), "got {end:?}");
    drop(b);
}

// ---------------------------------------------------------------------------------------------
// TLS

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}): install Debian's openssl (./test.sh does)")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=wulf test CA"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    for (name, ext) in [
        (
            "server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        ),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        let mut req = vec!["req", "-new", "-subj"];
        let subj = format!("/CN=wulf test {name}");
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let extfile = format!("{name}.ext");
        std::fs::write(
            dir.join(&extfile),
            format!("basicConstraints=CA:FALSE\n{ext}"),
        )
        .expect("write ext");
        req.push(&subj);
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-days", "2",
                "-out", &pem, "-extfile", &extfile,
            ],
        );
    }
}

/// etcd with `--client-cert-auth`: a store with the CA and a client certificate works; one
/// without a client certificate is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_certificates(certs.path());
    let p = |f: &str| certs.path().join(f);
    let mut etcd = Etcd::start_with(Some(ServerTls {
        cert: p("server.pem"),
        key: p("server.key"),
        ca: p("ca.pem"),
    }));
    let options = EtcdOptions {
        tls: Some(EtcdTls {
            ca_file: p("ca.pem"),
            cert_file: Some(p("client.pem")),
            key_file: Some(p("client.key")),
            domain: None,
        }),
        ..EtcdOptions::default()
    };
    let store = etcd.connect_with(options.clone()).await;
    let mut w = store.watch("tls/", 0).await.expect("watch over TLS");
    let r = store
        .put("tls/k", b"v".to_vec(), Expect::Absent)
        .await
        .expect("put over TLS");
    assert_eq!(conformance::next_batch(&mut w, "tls").await.revision, r);
    assert_eq!(
        store.get("tls/k").await.expect("get").map(|kv| kv.value),
        Some(b"v".to_vec())
    );

    // No client certificate: refused.
    let without = EtcdOptions {
        tls: Some(EtcdTls {
            ca_file: p("ca.pem"),
            ..EtcdTls::default()
        }),
        connect_timeout: Duration::from_secs(3),
        ..EtcdOptions::default()
    };
    let r = EtcdStore::connect(&[etcd.endpoint()], without).await;
    match r {
        Err(e) => eprintln!("tls: a client without a certificate: {e}"),
        Ok(_) => panic!("a client without a certificate was accepted"),
    }

    // A key without its certificate is a configuration error.
    let half = EtcdOptions {
        tls: Some(EtcdTls {
            ca_file: p("ca.pem"),
            key_file: Some(p("client.key")),
            ..EtcdTls::default()
        }),
        ..EtcdOptions::default()
    };
    let r = EtcdStore::connect(&[etcd.endpoint()], half).await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
}

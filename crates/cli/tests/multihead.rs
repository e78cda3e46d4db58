//! Two heads on one etcd: a change made through one is read through the other within a
//! second, and each sees the other in `wulf head ls`. etcd is Debian's etcd-server, started
//! here on loopback.

mod head;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use head::{wait_every, wait_for, write, Etcd, Head};

/// Poll `ok` until it holds; fail with `what` after a second. Returns how long it took.
fn within_1s(what: &str, ok: impl Fn() -> bool) -> Duration {
    wait_for(what, Duration::from_secs(1), ok, String::new)
}

fn head_on(etcd: &Etcd, name: &str) -> Head {
    head_with(etcd, name, "")
}

fn head_with(etcd: &Etcd, name: &str, extra: &str) -> Head {
    Head::start_configured(
        None,
        &head_config(name, extra),
        &["--store", &format!("etcd://127.0.0.1:{}", etcd.port)],
    )
}

/// A head's config file: its name, `extra`, and DHCP, TFTP and DNS off.
fn head_config(name: &str, extra: &str) -> String {
    format!("head_name = \"{name}\"\n{extra}\n[dhcp]\nenabled = false\n[tftp]\nenabled = false\n[dns]\nenabled = false\n")
}

#[test]
fn two_heads_share_one_etcd() {
    let etcd = Etcd::start();
    let a = head_on(&etcd, "head-a");
    let mut b = head_on(&etcd, "head-b");
    assert_eq!(a.json(&["info"])["store"], "etcd");
    // One admin token for the cluster: A's works on B.
    assert_eq!(a.token(), b.token());
    let (code, _) = b.curl(&["-H", &a.auth(), &format!("{}/api/v1/info", b.url())]);
    assert_eq!(code, 200);
    assert_eq!(
        a.head_states(),
        [
            ("head-a".into(), "up".into()),
            ("head-b".into(), "up".into())
        ]
    );

    // Written on A, read on B within a second (B's cache follows etcd's watch).
    a.ok(&["node", "create", "--count", "3"]);
    let took = within_1s("B did not see A's nodes", || {
        b.ok(&["node", "ls"]) == "Nodes\n  n0\n  n1\n  n2\n"
    });
    eprintln!("B saw A's write after {took:?}");
    // And the other way round, with uniqueness enforced across heads.
    b.ok(&["node", "-i", "n1", "set", "rack=r7"]);
    within_1s("A did not see B's change", || {
        a.json(&["node", "-i", "n1", "ls"])[0]["attributes"]["rack"] == "r7"
    });
    a.ok(&["node", "create", "mac=52:54:00:00:00:01"]);
    let e = b.fails(1, &["node", "create", "mac=52:54:00:00:00:01"]);
    assert!(e.contains("52:54:00:00:00:01"), "{e}");

    // A file uploaded through A is served by B: B fetches it from A and checks its sha256.
    let kernel: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let k = write(a.dir.path(), "vmlinuz", &kernel);
    a.ok(&[
        "boot",
        "create",
        "name=b1",
        &format!("kernel=@{}", k.display()),
    ]);
    let sha = a.json(&["boot", "ls"])[0]["kernel"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    within_1s("B did not see the boot config", || {
        !b.json(&["boot", "ls"]).as_array().unwrap().is_empty()
    });
    let (code, body) = b.curl(&[&format!("{}/boot/file/{sha}", b.http_url())]);
    assert_eq!(code, 200);
    assert!(body == kernel, "B served other bytes");
    assert!(
        b.log().contains("fetched a file from a peer head"),
        "{}",
        b.log()
    );
    let got = b.dir.path().join("k.out");
    b.ok(&[
        "boot",
        "-i",
        "b1",
        "download",
        "kernel",
        "-o",
        got.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&got).unwrap(), kernel);

    // B stops: A sees it down at once (its lease is revoked).
    b.stop();
    assert_eq!(
        a.head_states(),
        [
            ("head-a".into(), "up".into()),
            ("head-b".into(), "down".into())
        ]
    );
    a.ok(&["head", "-i", "head-b", "delete"]);
    assert_eq!(a.head_states(), [("head-a".into(), "up".into())]);

    // A new head joins by pointing at A, which tells it the etcd endpoints.
    let c = Head::start_configured(
        None,
        &head_config("head-c", ""),
        &[
            "--join",
            &a.url(),
            "--token",
            &a.token(),
            "--ca",
            a.ca().to_str().unwrap(),
        ],
    );
    assert_eq!(c.json(&["info"])["store"], "etcd");
    assert_eq!(c.json(&["node", "ls"]).as_array().unwrap().len(), 4);
    assert_eq!(
        a.head_states(),
        [
            ("head-a".into(), "up".into()),
            ("head-c".into(), "up".into())
        ]
    );
}

/// Joining through a head on the embedded store, or without the token, fails clearly.
#[test]
fn joining_needs_a_shared_store_and_the_token() {
    let lone = Head::start();
    let dir = tempfile::tempdir().unwrap();
    let join = |token: &str| {
        let out = Command::new(head::wulfd_bin())
            .args(["--data-dir"])
            .arg(dir.path())
            .args(["--join", &lone.url(), "--token", token])
            .arg("--ca")
            .arg(lone.ca())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = join(&lone.token());
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("uses the embedded store") && err.contains("migrate-store"),
        "{err}"
    );
    let (code, err) = join("wrong");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot join through"), "{err}");
    // WULF_TOKEN in the environment (the CLI's) does not disturb wulfd without --join.
    let out = Command::new(head::wulfd_bin())
        .env("WULF_TOKEN", "abc")
        .args(["--data-dir"])
        .arg(dir.path())
        .args(["migrate-store", "--to", "etcd://127.0.0.1:1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("--join"), "{err}");
}

/// `wulfd migrate-store`: a cluster built on the embedded store moves to etcd and carries on
/// there: objects, files (they stay in the data directory) and the admin token.
#[test]
fn an_embedded_cluster_moves_to_etcd() {
    let etcd = Etcd::start();
    let mut h = Head::start();
    h.ok(&["node", "create", "--count", "3"]);
    let kernel = write(h.dir.path(), "vmlinuz", &[7u8; 100_000]);
    h.ok(&[
        "boot",
        "create",
        "name=b1",
        &format!("kernel=@{}", kernel.display()),
    ]);
    h.ok(&["node", "-i", "n[0-2]", "set", "_boot_config=b1"]);
    let before = h.snapshot();
    let token = h.token();
    h.stop();

    let store = format!("etcd://127.0.0.1:{}", etcd.port);
    let migrate = |h: &Head| {
        Command::new(head::wulfd_bin())
            .arg("--data-dir")
            .arg(h.data())
            .args(["migrate-store", "--to", &store])
            .env_remove("WULFD_CONFIG")
            .output()
            .unwrap()
    };
    let out = migrate(&h);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("copied"));

    h.extra_args = vec!["--store".into(), store.clone()];
    h.spawn();
    assert_eq!(h.json(&["info"])["store"], "etcd");
    assert_eq!(h.snapshot(), before, "every object came across unchanged");
    assert_eq!(h.token(), token, "the same admin token");
    let got = h.dir.path().join("k.out");
    h.ok(&[
        "boot",
        "-i",
        "b1",
        "download",
        "kernel",
        "-o",
        got.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&got).unwrap(), vec![7u8; 100_000]);
    // And it keeps working: a new node gets the next index.
    assert_eq!(h.ok(&["node", "create"]).trim(), "Created node n3");

    // A second migration into the now non-empty etcd is refused.
    h.stop();
    let out = migrate(&h);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds"));
}

/// Every head answers for every node, and an agent moves to another head when its own dies:
/// the real wulf-agent reports to head A; head B shows the node up from what A stores; A is
/// killed; the agent carries on through B (which A's answers named) and the node stays up.
#[test]
fn status_on_every_head_and_agent_failover() {
    let agent = head::wulf_bin().with_file_name("wulf-agent");
    assert!(
        agent.exists(),
        "{} missing: cargo build --workspace",
        agent.display()
    );
    let etcd = Etcd::start();
    let fast = "[status]\npersist_secs = 1\nflush_ms = 200\n";
    let mut a = head_with(&etcd, "head-a", fast);
    let b = head_with(&etcd, "head-b", fast);
    a.ok(&["node", "create", "mac=02:57:00:00:00:01", "type=simulated"]);
    a.ok(&["node", "-i", "n0", "set", "_status_secs=1"]);
    let params = a.boot_params("02:57:00:00:00:01");
    let param = |k: &str| params[k].clone();
    // Both heads are registered and A has refreshed its list of live heads (every 3 s).
    std::thread::sleep(Duration::from_millis(3500));
    let state = tempfile::tempdir().unwrap();
    let _agent = KillOnDrop(
        Command::new(&agent)
            .args([
                "--head",
                &a.url(),
                "--node",
                &param("node"),
                "--cred",
                &param("cred"),
                "--ca",
                &param("ca"),
            ])
            .arg("--state-dir")
            .arg(state.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let n0_on = |h: &Head| h.json(&["node", "status"])[0].clone();
    let wait = |h: &Head, what: &str, ok: &dyn Fn(&serde_json::Value) -> bool| {
        wait_every(
            what,
            Duration::from_secs(20),
            Duration::from_millis(200),
            || ok(&n0_on(h)),
            || format!("{}\nhead log:\n{}", n0_on(h), h.log()),
        );
    };
    wait(&a, "up on A", &|n| n["state"] == "up");
    wait(&b, "up on B through the store", &|n| {
        n["state"] == "up" && n["head"] == "head-a" && n["hostname"].is_string()
    });
    a.kill9();
    wait(&b, "reporting to B after A died", &|n| {
        n["state"] == "up" && n["head"] == "head-b"
    });
}

/// A child process killed when the test ends, passing or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A pxe+local node asking both heads at once gets exactly one PXE boot (the stage change is
/// one compare-and-swap in etcd, whichever head makes it).
#[test]
fn pxe_once_across_heads() {
    let etcd = Etcd::start();
    let a = head_on(&etcd, "head-a");
    let b = head_on(&etcd, "head-b");
    let k = write(a.dir.path(), "vmlinuz", &[1u8; 1000]);
    a.ok(&[
        "boot",
        "create",
        "name=b1",
        &format!("kernel=@{}", k.display()),
    ]);
    a.ok(&[
        "node",
        "create",
        "mac=52:54:00:00:00:07",
        "boot_sequence=pxe+local",
    ]);
    a.ok(&["node", "-i", "n0", "set", "_boot_config=b1"]);
    within_1s("B did not see the node", || {
        b.json(&["node", "-i", "n0", "ls"])[0]["attributes"]["_boot_config"] == "b1"
    });
    let urls = [
        format!("{}/boot/ipxe?mac=52:54:00:00:00:07", a.http_url()),
        format!("{}/boot/ipxe?mac=52:54:00:00:00:07", b.http_url()),
    ];
    let scripts: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let url = urls[i % 2].clone();
                s.spawn(move || {
                    let out = Command::new("curl").args(["-sS", &url]).output().unwrap();
                    String::from_utf8_lossy(&out.stdout).into_owned()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let booted = scripts.iter().filter(|s| s.contains("\nkernel ")).count();
    let local = scripts.iter().filter(|s| s.contains("local disk")).count();
    assert_eq!((booted, local), (1, 15), "{scripts:#?}");
    assert_eq!(
        a.json(&["node", "-i", "n0", "ls"])[0]["boot_stage"],
        "local"
    );
}

/// The heads' maintenance compacts and defragments etcd by itself; when etcd's space quota
/// fills anyway, writes fail with a clear error naming the way out, `wulf cluster db` shows
/// the NOSPACE alarm, and `wulf cluster db --recover` makes etcd writable again.
#[test]
fn etcd_maintenance_and_space_alarm() {
    // An 8 MiB quota, so little data fills it.
    let etcd = Etcd::start_with(&["--quota-backend-bytes", "8388608"]);
    let mut a = head_with(
        &etcd,
        "head-a",
        "history_revisions = 100\n[db]\ncheck_secs = 1\nquota_mib = 8\ndefrag_min_free_mib = 1\n",
    );
    let db = |h: &Head| h.json(&["cluster", "db"]);
    let st = db(&a);
    assert_eq!(st["backend"], "etcd");
    assert_eq!(st["quota_bytes"], 8 << 20);
    assert_eq!(st["members"].as_array().unwrap().len(), 1);
    assert_eq!(st["members"][0]["leader"], true);
    assert!(st["members"][0]["db_size"].as_u64().unwrap() > 0);
    let table = a.ok(&["cluster", "db"]);
    assert!(table.contains("MEMBER") && table.contains("ok"), "{table}");

    // Many small updates: history beyond 100 revisions is compacted and, with most of the
    // file free, the member defragmented, all by the head's own maintenance.
    a.ok(&["attrib", "create", "name=big"]);
    let dir = tempfile::tempdir().unwrap();
    let small = write(dir.path(), "small", "x".repeat(16 << 10).as_bytes());
    let set_small = format!("note=@{}", small.display());
    for i in 0..300 {
        let v = format!("n={i}");
        a.ok(&["attrib", "-i", "big", "set", &v, &set_small]);
    }
    wait_every(
        "maintenance compacts and defragments",
        Duration::from_secs(20),
        Duration::from_millis(200),
        || {
            let m = &db(&a)["maintenance"];
            m["compacted"][0].as_i64().unwrap_or(0) > 0 && m["defragmented"][0].is_array()
        },
        || format!("{}\n{}", db(&a)["maintenance"], a.log()),
    );
    assert_eq!(db(&a)["maintenance"]["head"], "head-a");

    // Big updates until etcd refuses: a clear error, nothing written.
    let big = write(dir.path(), "big", "y".repeat(700 << 10).as_bytes());
    let set_big = format!("note=@{}", big.display());
    let mut refused = None;
    for _ in 0..40 {
        let out = a.wulf(&["attrib", "-i", "big", "set", &set_big]);
        if !out.status.success() {
            refused = Some(out);
            break;
        }
    }
    let out = refused.expect("an 8 MiB quota fills within 40 writes of 700 KiB");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("database out of space") && err.contains("wulf cluster db --recover"),
        "{err}"
    );
    // Reads still work; the alarm shows.
    a.ok(&["attrib", "-i", "big", "ls"]);
    let st = db(&a);
    assert_eq!(st["alarms"][0]["alarm"], "NOSPACE", "{st}");
    assert!(a.ok(&["cluster", "db"]).contains("ALARM NOSPACE on m0"));
    assert!(
        a.log().contains("ERROR") && a.log().contains("NOSPACE alarm"),
        "the head's log says so"
    );

    // A head restarted now still starts (unregistered), and the way out runs through it.
    a.stop();
    a.spawn();
    assert!(a.log().contains("Starting unregistered"), "{}", a.log());
    assert!(a.ok(&["cluster", "db"]).contains("ALARM NOSPACE on m0"));

    // The documented way out.
    let done = a.ok(&["cluster", "db", "--recover"]);
    assert!(
        done.contains("compacted history") && done.contains("defragmented member m0"),
        "{done}"
    );
    assert!(done.contains("disarmed NOSPACE on member m0"), "{done}");
    assert_eq!(db(&a)["alarms"], serde_json::json!([]));
    a.ok(&["attrib", "-i", "big", "set", "note=small-again"]);
    let note = a.json(&["attrib", "-i", "big", "ls"]);
    assert_eq!(note[0]["attributes"]["note"], "small-again");
    // It registers once writes work again.
    wait_every(
        "the head registers",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || a.head_states() == [("head-a".to_string(), "up".to_string())],
        || format!("{:?}", a.head_states()),
    );
    // Usage errors.
    a.fails(2, &["cluster", "db", "--recover", "--compact"]);
    a.fails(2, &["node", "db"]);
}

/// On an etcd with its default limits (128 operations, 1.5 MiB per transaction) a head warns
/// at start, refuses a create too large for one transaction with a clear error and writes
/// nothing, and its status writes split themselves to fit: another head sees every node up.
#[test]
fn etcd_default_limits() {
    let etcd = Etcd::start_with(&["--max-txn-ops", "128", "--max-request-bytes", "1572864"]);
    let fast = "[status]\npersist_secs = 1\nflush_ms = 200\n";
    let a = head_with(&etcd, "head-a", fast);
    let b = head_with(&etcd, "head-b", fast);
    assert!(
        a.log()
            .contains("etcd takes fewer than 50000 operations per transaction"),
        "{}",
        a.log()
    );
    let err = a.fails(1, &["node", "create", "--count", "100"]);
    assert!(
        err.contains("too large for one database transaction") && err.contains("--max-txn-ops"),
        "{err}"
    );
    assert_eq!(a.json(&["node", "ls"]), serde_json::json!([]));

    // 300 simulated nodes, created 20 at a time, report through A: the first flush (300
    // heartbeats and 300 inventories) is more than etcd takes at once.
    for batch in 0..15 {
        let macs: String = (0..20)
            .map(|i| format!("02:57:00:00:{batch:02x}:{i:02x}\n"))
            .collect();
        let out = a.wulf_stdin(
            &["node", "create", "--macs", "-", "type=simulated"],
            Some(&macs),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sim = a.wulf(&[
        "sim",
        "--nodes",
        "300",
        "--boot-secs",
        "1",
        "--duration",
        "4",
        "--crash",
    ]);
    assert!(
        sim.status.success(),
        "{}",
        String::from_utf8_lossy(&sim.stderr)
    );
    let up_on_b = || {
        let st = b.json(&["node", "status"]);
        st.as_array()
            .unwrap()
            .iter()
            .filter(|n| n["state"] == "up")
            .count()
    };
    wait_every(
        "B sees all 300 nodes up",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || up_on_b() == 300,
        || format!("B sees {} of 300\n{}", up_on_b(), a.log()),
    );
    assert!(a.log().contains("status writes now go"), "{}", a.log());
}

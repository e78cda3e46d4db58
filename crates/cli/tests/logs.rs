//! The head's log files (error.log at its level, access.log, head_NAME.log), the level
//! changed at run time (the cluster's log_level, SIGUSR1), reopening on SIGHUP after a
//! rotation, and `wulf log` reading every head's shared lines: through one head for another
//! on a shared etcd, filtered, followed.

mod head;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use head::{wait_for, wulf_bin, Etcd, Head};

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn logdir(h: &Head) -> PathBuf {
    h.data().join("log")
}

fn signal(h: &Head, sig: libc::c_int) {
    let pid = h.child.as_ref().unwrap().id() as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

/// Wait until `file` has a line containing every one of `parts`.
fn wait_line(h: &Head, file: &Path, parts: &[&str]) {
    wait_for(
        &format!("a line with {parts:?} in {}", file.display()),
        Duration::from_secs(10),
        || {
            read(file)
                .lines()
                .any(|l| parts.iter().all(|p| l.contains(p)))
        },
        || {
            format!(
                "{}:\n{}\nhead log:\n{}",
                file.display(),
                read(file),
                h.log()
            )
        },
    );
}

#[test]
fn head_log_levels_change_at_run_time_and_files_reopen_on_sighup() {
    let h = Head::start_with(&["--head-name", "alpha"]);
    let error = logdir(&h).join("error.log");
    let access = logdir(&h).join("access.log");
    h.ok(&["node", "create", "name=n0", "mac=02:00:00:00:10:00"]);
    // The default level, WARNING: AUDIT lines, no INFO ones.
    wait_line(&h, &error, &["AUDIT audit: created n0", "account=root"]);
    assert!(!read(&error).contains(" INFO "), "{}", read(&error));
    // Every request in access.log, with the account that made it.
    wait_line(
        &h,
        &access,
        &["127.0.0.1 - root [", "\"POST /api/v1/node", "\" 201 "],
    );

    // The cluster's log_level reaches every head's error.log.
    h.ok(&["cluster", "update", "log_level=info"]);
    wait_line(
        &h,
        &error,
        &["WARNING wulfd::log: log level now INFO (was WARNING)"],
    );
    // A level that is not one is refused, and nothing changes.
    let o = h.fails(1, &["cluster", "update", "log_level=loud"]);
    assert!(o.contains("'loud' is not a log level"), "{o}");
    assert_eq!(h.json(&["cluster", "ls"])[0]["log_level"], "info");

    // logrotate moves the files away, then SIGHUP: new files at the same paths.
    std::fs::rename(&error, logdir(&h).join("error.log.1")).unwrap();
    std::fs::rename(&access, logdir(&h).join("access.log.1")).unwrap();
    signal(&h, libc::SIGHUP);
    wait_line(&h, &error, &["INFO wulfd::log: SIGHUP: log files reopened"]);
    h.ok(&["node", "create", "name=n1", "mac=02:00:00:00:10:01"]);
    wait_line(&h, &error, &["AUDIT audit: created n1"]);
    wait_line(&h, &access, &["\"POST /api/v1/node"]);
    assert!(!read(&logdir(&h).join("error.log.1")).contains("created n1"));

    // SIGUSR1: one level more; SIGUSR2: one less.
    signal(&h, libc::SIGUSR1);
    wait_line(&h, &error, &["log level now DEBUG (was INFO): SIGUSR1"]);
    // (Signals sent together may arrive as one.)
    signal(&h, libc::SIGUSR2);
    wait_line(&h, &error, &["log level now INFO (was DEBUG): SIGUSR2"]);
    signal(&h, libc::SIGUSR2);
    wait_line(&h, &error, &["log level now WARNING (was INFO): SIGUSR2"]);
    // Clearing the cluster's level gives each head its config file's.
    h.ok(&["cluster", "update", "log_level=audit"]);
    wait_line(&h, &error, &["log level now AUDIT"]);
    h.ok(&["cluster", "update", "log_level="]);
    wait_line(
        &h,
        &error,
        &["log level now WARNING (was AUDIT): the cluster's log_level was cleared"],
    );
}

#[test]
fn wulf_log_reads_filters_and_follows_the_shared_log() {
    let h = Head::start_with(&["--head-name", "alpha"]);
    h.ok(&["node", "create", "--count", "4"]);
    h.ok(&[
        "node",
        "create",
        "name=x0",
        "mac=02:00:00:00:20:09",
        "type=simulated",
    ]);
    // A node booting: the seed's AUDIT line, in the shared log and so in head_alpha.log.
    h.script_params("02:00:00:00:20:09");
    let mine = logdir(&h).join("head_alpha.log");
    wait_line(
        &h,
        &mine,
        &["AUDIT audit: Booting node (MAC=02:00:00:00:20:09) as simulated."],
    );

    let all = h.ok(&["log"]);
    assert!(all.contains(" alpha AUDIT audit: created n[0-3]"), "{all}");
    // By node: the lines about x0, not those about n[0-3].
    let x0 = h.ok(&["log", "--node", "x0"]);
    assert!(x0.contains("Booting node (MAC=02:00:00:00:20:09)"), "{x0}");
    assert!(!x0.contains("created n[0-3]"), "{x0}");
    let n2 = h.ok(&["log", "--node", "n[2-9]"]);
    assert!(
        n2.contains("created n[0-3]") && !n2.contains("Booting"),
        "{n2}"
    );
    // By level, head and time.
    let audit = h.ok(&["log", "--level", "audit"]);
    assert!(!audit.contains(" WARNING "), "{audit}");
    assert_eq!(h.ok(&["log", "--head", "beta"]), "");
    assert_eq!(h.ok(&["log", "--since", "2030-01-01"]), "");
    assert!(h.ok(&["log", "--since", "1h"]).contains("created n[0-3]"));
    let two = h.ok(&["log", "-n", "2"]);
    assert_eq!(two.lines().count(), 2, "{two}");
    let json = h.ok(&["--json", "log", "--node", "x0"]);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(first["head"], "alpha");
    assert_eq!(first["level"], "AUDIT");

    // Bad input: a clear error, exit 2 from the CLI, 400 from the API.
    for (args, what) in [
        (&["log", "--level", "loud"][..], "--level 'loud'"),
        (&["log", "--since", "soon"][..], "--since 'soon'"),
        (&["log", "--node", "n[3-1]"][..], "--node 'n[3-1]'"),
    ] {
        let e = h.fails(2, args);
        assert!(e.contains(what), "{e}");
    }
    for q in ["level=loud", "bogus=1", "after=xyz", "limit=-1"] {
        let (code, body) = h.curl(&["-H", &h.auth(), &format!("{}/api/v1/log?{q}", h.url())]);
        assert_eq!(code, 400, "{q}: {}", String::from_utf8_lossy(&body));
    }

    // -f: lines that come later are printed as they come.
    let mut follow = Command::new(wulf_bin())
        .args(["--url", &h.url(), "--ca"])
        .arg(h.ca())
        .args([
            "--token",
            &h.token(),
            "log",
            "-f",
            "--level",
            "audit",
            "--node",
            "late",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    h.ok(&["node", "create", "name=late", "mac=02:00:00:00:20:0a"]);
    let line = rx.recv_timeout(Duration::from_secs(10));
    let _ = follow.kill();
    let _ = follow.wait();
    let line = line.expect("wulf log -f printed nothing for a new line");
    assert!(line.contains("AUDIT audit: created late"), "{line}");
}

#[test]
fn one_head_shows_and_keeps_what_happened_on_another() {
    let etcd = Etcd::start();
    let cfg = "[dhcp]\nenabled = false\n[tftp]\nenabled = false\n[dns]\nenabled = false\n";
    let head = |name: &str| {
        Head::start_configured(None, cfg, &["--store", &etcd.store(), "--head-name", name])
    };
    let a = head("alpha");
    let b = head("beta");
    b.ok(&["node", "create", "name=b0", "mac=02:00:00:00:30:00"]);
    // alpha writes beta's lines into its head_beta.log, and shows them.
    let beta_file = logdir(&a).join("head_beta.log");
    wait_line(&a, &beta_file, &["AUDIT audit: created b0", "account=root"]);
    let through_a = a.ok(&["log", "--head", "beta"]);
    assert!(
        through_a.contains(" beta AUDIT audit: created b0"),
        "{through_a}"
    );
    assert!(!through_a.contains(" alpha "), "{through_a}");
    // alpha's own lines are in its own file on both heads, not in beta's.
    a.ok(&["node", "create", "name=a0", "mac=02:00:00:00:30:01"]);
    wait_line(&b, &logdir(&b).join("head_alpha.log"), &["created a0"]);
    assert!(!read(&beta_file).contains("created a0"));

    // A head started later writes the history it missed, once.
    let mut c = head("gamma");
    let c_beta = logdir(&c).join("head_beta.log");
    wait_line(&c, &c_beta, &["created b0"]);
    c.stop();
    c.spawn();
    b.ok(&["node", "create", "name=b1", "mac=02:00:00:00:30:02"]);
    wait_line(&c, &c_beta, &["created b1"]);
    assert_eq!(
        read(&c_beta).matches("created b0").count(),
        1,
        "{}",
        read(&c_beta)
    );
    c.stop();
}

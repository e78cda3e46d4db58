//! Node actions from the CLI against a real head: bad input is refused before anything is
//! sent; power, exec and orphan report per-node failures with exit 1; waitfor follows
//! simulated nodes (`wulf sim`) up and down; chains stop at the first failing action.

mod head;

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use head::{wulf_bin, Head};
use serde_json::Value;

/// `wulf ARGS` against a TCP port that records whether anyone connected.
fn against_listener(args: &[&str]) -> (Output, bool) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let out = Command::new(wulf_bin())
        .args(args)
        .env("WULF_URL", &url)
        .env("WULF_TOKEN", "not-a-real-token")
        .env_remove("WULF_CONFIG")
        .env("HOME", std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let connected = l.accept().is_ok();
    (out, connected)
}

/// Audit lines of node actions in the head's log.
fn action_audits(h: &Head) -> Vec<String> {
    h.log()
        .lines()
        .filter(|l| l.contains("audit"))
        .filter(|l| l.contains(" exec") || l.contains(" power") || l.contains("orphan"))
        .map(String::from)
        .collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn bad_input_is_refused_before_anything_is_sent() {
    let h = Head::start();
    h.ok(&["node", "create", "--count", "4"]);
    let before = h.snapshot();
    let cases: &[(&[&str], &str)] = &[
        (&["node", "-i", "n[0-3]", "exec"], "exec needs a command"),
        (
            &["node", "-i", "n[0-3]", "exec", "--"],
            "exec needs a command",
        ),
        (
            &["node", "-i", "n[0-3]", "exec", "--up", "--"],
            "exec needs a command",
        ),
        (&["node", "-i", "n[0-3]", "waitfor", "sideways"], "sideways"),
        (
            &["node", "-i", "n[0-3]", "waitfor", "up", "--timeout", "0"],
            "--timeout",
        ),
        (
            &["node", "-i", "n[0-3]", "reboot", "--hard", "--soft"],
            "cannot be used with",
        ),
        (
            &["node", "-i", "n[0-3]", "shutdown", "--soft", "--hard"],
            "cannot be used with",
        ),
        (&["node", "-i", "n[0-3]", "power", "sideways"], "sideways"),
        (
            &["node", "-i", "n[0-3]", "power", "on", "--fanout", "0"],
            "fanout",
        ),
        (&["node", "exec", "hostname"], "needs --ids"),
        (&["node", "reboot"], "needs --ids"),
        (&["boot", "-i", "x", "reboot"], "is a node action"),
        (
            &["attrib", "-i", "x", "exec", "hostname"],
            "is a node and image action",
        ),
        // A chain is checked whole before its first action runs.
        (
            &[
                "node", "-i", "n[0-3]", "reboot", "then", "waitfor", "up", "then", "exec",
            ],
            "exec needs a command",
        ),
        (
            &[
                "node", "-i", "n[0-3]", "power", "on", "then", "waitfor", "sideways",
            ],
            "sideways",
        ),
        (
            &["node", "-i", "n[0-3]", "reboot", "then"],
            "must be followed by an action",
        ),
    ];
    for (args, want) in cases {
        let o = h.wulf(args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "wulf {args:?}: {err}");
        assert!(
            err.contains(want),
            "wulf {args:?}: wanted '{want}' in: {err}"
        );
        // Nothing reached any head.
        let (o2, connected) = against_listener(args);
        assert_eq!(o2.status.code(), Some(2), "wulf {args:?} (listener)");
        assert!(!connected, "wulf {args:?} connected to the head");
    }
    assert!(action_audits(&h).is_empty(), "{:?}", action_audits(&h));
    assert_eq!(h.snapshot(), before);
}

#[test]
fn nodes_that_cannot_answer_fail_by_name() {
    let h = Head::start();
    h.ok(&["node", "create", "--count", "4"]);

    // exec on nodes that never booted: exit 1, the nodes named, grouped output.
    let o = h.wulf(&["node", "-i", "n[0-3]", "exec", "hostname"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(out.starts_with("---------------- n[0-3] (error: "), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        err.contains("the command failed on 4 of 4 nodes: n[0-3]"),
        "{err}"
    );
    // -l: one line per node on stderr, nothing on stdout.
    let o = h.wulf(&["node", "-i", "n[0-1]", "exec", "-l", "--", "hostname"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(text(&o.stdout), "");
    let err = text(&o.stderr);
    assert!(
        err.starts_with("n0: error: ") && err.contains("\nn1: error: "),
        "{err}"
    );
    // --json: the reply, one result per node.
    let o = h.wulf(&["node", "-i", "n[0-3]", "exec", "--json", "--", "hostname"]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert!(results
        .iter()
        .all(|r| r["error"].is_string() && r["exit"].is_null()));

    // --up skips them all: nothing failed, the skipped nodes named on stderr.
    let o = h.wulf(&["node", "-i", "n[0-3]", "exec", "--up", "--", "hostname"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "");
    assert!(
        text(&o.stderr).contains("skipped (not up): n[0-3]"),
        "{}",
        text(&o.stderr)
    );

    // power without a power_uri: every node fails, grouped by outcome.
    let o = h.wulf(&["node", "-i", "n[0-3]", "power", "status"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("failed (") && out.trim_end().ends_with(") n[0-3]"),
        "{out}"
    );
    assert!(
        text(&o.stderr).contains("power status failed on 4 of 4 nodes: n[0-3]"),
        "{}",
        text(&o.stderr)
    );
    let o = h.wulf(&["node", "-i", "n[0-1]", "power", "status", "-l"]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    assert!(
        out.contains("NODE") && out.contains("DETAIL") && out.lines().count() == 3,
        "{out}"
    );

    // A failing action ends the chain with its exit code: the exec after it is not sent.
    let audits = action_audits(&h).len();
    let o = h.wulf(&[
        "node", "-i", "n[0-3]", "power", "status", "then", "exec", "hostname",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let new: Vec<String> = action_audits(&h).into_iter().skip(audits).collect();
    assert!(
        new.iter().any(|l| l.contains("power")) && !new.iter().any(|l| l.contains("exec")),
        "{new:?}"
    );

    // waitfor gives up at its timeout, naming the laggards and their state.
    let start = Instant::now();
    let o = h.wulf(&["node", "-i", "n[0-3]", "waitfor", "up", "--timeout", "1.5"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(start.elapsed() < Duration::from_secs(10));
    let err = text(&o.stderr);
    assert!(
        err.contains("timed out after 1.5 s waiting for n[0-3] to be up: new n[0-3]"),
        "{err}"
    );
}

/// A background `wulf sim`, stopped if the test ends early.
struct Sim(Option<Child>);

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn waitfor_follows_simulated_nodes_up_and_down() {
    let h = Head::start();
    h.ok(&["attrib", "-i", "DefaultAttribs", "set", "_status_secs=1"]);
    // The simulator creates its nodes (type simulated): n[0-3].
    let mut sim = Sim(Some(
        Command::new(wulf_bin())
            .args([
                "sim",
                "--nodes",
                "4",
                "--boot-secs",
                "1",
                "--duration",
                "60",
            ])
            .env("WULF_DATA_DIR", h.data())
            .env("HOME", h.dir.path())
            .env_remove("WULF_URL")
            .env_remove("WULF_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    // A selection that matches no node yet is an error, not a wait.
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.json(&["node", "ls"]).as_array().map_or(0, Vec::len) < 4 {
        assert!(Instant::now() < deadline, "the simulator created no nodes");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = h.ok(&["node", "-i", "n[0-3]", "waitfor", "up", "--timeout", "30"]);
    assert_eq!(out, "ok (up) n[0-3]\n");
    let v = h.json(&["node", "-i", "n[0-3]", "waitfor", "up"]);
    assert_eq!(v.as_array().unwrap().len(), 4);
    assert!(v.as_array().unwrap().iter().all(|n| n["state"] == "up"));

    // Stopped cleanly, the nodes report their shutdown: waitfor down wakes on it.
    if let Some(c) = &sim.0 {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
    }
    let start = Instant::now();
    let out = h.ok(&["node", "-i", "n[0-3]", "waitfor", "down", "--timeout", "30"]);
    assert_eq!(out, "ok (down) n[0-3]\n");
    assert!(start.elapsed() < Duration::from_secs(20));
    if let Some(mut c) = sim.0.take() {
        let _ = c.wait();
    }
}

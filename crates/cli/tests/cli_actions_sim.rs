//! The node actions from the CLI on simulated nodes (`wulf sim`, which long-polls for
//! commands and checks them like wulf-agent) through a real head: exec output grouped, raw
//! and as JSON, stdin, failures named; `reboot then waitfor up then exec uptime`; a soft
//! reboot the node ignores ends its chain; orphan.

mod head;

use std::process::Output;
use std::time::{Duration, Instant};

use head::Head;
use serde_json::Value;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}stderr:\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// When each node last fetched its boot script.
fn boots(h: &Head) -> Vec<(String, i64)> {
    h.json(&["node", "status"])
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or("").to_string(),
                n["booted_ms"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn exec_reboot_waitfor_and_chains_on_simulated_nodes() {
    let h = Head::start();
    h.ok(&["attrib", "-i", "DefaultAttribs", "set", "_status_secs=1"]);
    let _s = h.sim(&["--nodes", "8", "--boot-secs", "0", "--ignore-soft", "n7"]);
    let log = || {
        format!(
            "sim log:\n{}\nhead log:\n{}",
            std::fs::read_to_string(h.dir.path().join("sim.log")).unwrap_or_default(),
            h.log()
        )
    };

    // The simulator creates its nodes, they come up, then poll for commands (a node starts
    // polling right after its first report).
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.json(&["node", "ls"]).as_array().map_or(0, Vec::len) < 8 {
        assert!(
            Instant::now() < deadline,
            "the nodes were never created\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    h.ok(&["node", "-i", "n[0-7]", "waitfor", "up", "--timeout", "30"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = h.wulf(&["node", "-i", "n[0-7]", "exec", "true"]);
        if o.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "{}\n{}", show(&o), log());
        std::thread::sleep(Duration::from_millis(300));
    }

    // The same output once, under the nodes that printed it.
    let out = h.ok(&["node", "-i", "n[0-7]", "exec", "echo", "hi", "there"]);
    assert_eq!(out, "---------------- n[0-7] (exit 0)\nhi there\n");
    // Each node its own hostname: a group each.
    let out = h.ok(&["node", "-i", "n[0-3]", "exec", "hostname"]);
    assert_eq!(
        out,
        "---------------- n0 (exit 0)\nn0\n---------------- n1 (exit 0)\nn1\n\
         ---------------- n2 (exit 0)\nn2\n---------------- n3 (exit 0)\nn3\n"
    );
    // -l: raw lines, prefixed.
    let out = h.ok(&["node", "-i", "n[0-3]", "exec", "-l", "--", "hostname"]);
    assert_eq!(out, "n0: n0\nn1: n1\nn2: n2\nn3: n3\n");
    // --json: per node stdout, stderr, exit.
    let v: Value =
        serde_json::from_str(&h.ok(&["node", "-i", "n[0-1]", "exec", "--json", "--", "echo", "x"]))
            .unwrap();
    let r = v["results"].as_array().unwrap();
    assert_eq!(r.len(), 2);
    assert!(
        r.iter().all(|n| n["stdout"] == "x\n" && n["exit"] == 0),
        "{v}"
    );
    // --stdin goes to every node.
    let o = h.wulf_stdin(
        &["node", "-i", "n[0-2]", "exec", "--stdin", "--", "cat"],
        Some("line one\nline two\n"),
    );
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(
        text(&o.stdout),
        "---------------- n[0-2] (exit 0)\nline one\nline two\n"
    );
    // A command that fails: exit 1, the nodes named.
    let o = h.wulf(&["node", "-i", "n[0-7]", "exec", "false"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert_eq!(text(&o.stdout), "---------------- n[0-7] (exit 1)\n");
    assert!(
        text(&o.stderr).contains("the command failed on 8 of 8 nodes: n[0-7]: n[0-7] (exit 1)"),
        "{}",
        show(&o)
    );
    // `then` after `--` is the command's.
    let out = h.ok(&["node", "-i", "n0", "exec", "--", "echo", "a", "then", "b"]);
    assert_eq!(out, "---------------- n0 (exit 0)\na then b\n");

    // ClusterWare's chain: reboot (soft: down, a new boot), wait for up, run a command.
    let before = boots(&h);
    let o = h.wulf(&[
        "node",
        "-i",
        "n[0-6]",
        "reboot",
        "then",
        "waitfor",
        "up",
        "--timeout",
        "30",
        "then",
        "exec",
        "uptime",
    ]);
    assert!(o.status.success(), "{}\n{}", show(&o), log());
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "ok (soft reboot) n[0-6]", "{out}");
    assert_eq!(lines[1], "ok (up) n[0-6]", "{out}");
    assert!(
        lines[2..]
            .iter()
            .filter(|l| l.starts_with("----------------"))
            .all(|l| l.ends_with("(exit 0)")),
        "{out}"
    );
    assert!(lines.len() > 3, "{out}");
    let after = boots(&h);
    for ((name, t0), (_, t1)) in before.iter().zip(&after) {
        assert_eq!(t1 != t0, name != "n7", "{name}: booted {t0} then {t1}");
    }

    // n7 ignores a soft reboot and has no BMC: the reboot fails, and the chain stops there.
    let o = h.wulf(&[
        "node",
        "-i",
        "n7",
        "reboot",
        "--timeout",
        "2",
        "then",
        "exec",
        "hostname",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let out = text(&o.stdout);
    assert!(
        out.starts_with("failed (") && out.trim_end().ends_with(") n7") && out.lines().count() == 1,
        "{}",
        show(&o)
    );
    assert!(
        text(&o.stderr).contains("reboot failed on 1 of 1 node: n7"),
        "{}",
        show(&o)
    );
    // --soft never falls back: the same node, a soft timeout.
    let o = h.wulf(&[
        "node",
        "-i",
        "n7",
        "reboot",
        "--soft",
        "--timeout",
        "2",
        "-l",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(text(&o.stdout).contains("n7"), "{}", show(&o));

    // shutdown, then waitfor down.
    let o = h.wulf(&[
        "node",
        "-i",
        "n[5-6]",
        "shutdown",
        "--soft",
        "then",
        "waitfor",
        "down",
        "--timeout",
        "30",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        text(&o.stdout).ends_with("ok (down) n[5-6]\n"),
        "{}",
        show(&o)
    );
    // exec --up skips them and says so.
    let o = h.wulf(&["node", "-i", "n[4-6]", "exec", "--up", "hostname"]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(text(&o.stdout), "---------------- n4 (exit 0)\nn4\n");
    assert!(
        text(&o.stderr).contains("skipped (not up): n[5-6]"),
        "{}",
        show(&o)
    );

    // orphan: the agents accept; grouped like power.
    let o = h.wulf(&["node", "-i", "n[0-1]", "orphan"]);
    assert!(o.status.success(), "{}\n{}", show(&o), log());
    let out = text(&o.stdout);
    assert!(
        out.starts_with("ok") && out.trim_end().ends_with("n[0-1]"),
        "{out}"
    );
    let v: Value = h.json(&["node", "-i", "n[0-1]", "status"]);
    assert_eq!(v.as_array().unwrap().len(), 2);
}

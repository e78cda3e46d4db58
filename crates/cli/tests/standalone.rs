//! Standalone nodes: a server wulf did not boot enrolls with a one-time token from
//! `wulf node create … --enroll-token` and reports like a booted node. The real wulfd in a
//! network namespace, the real `wulf-agent --standalone` (no systemd) in another.

mod head;
mod netns;

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use head::{wait_for, Head};
use netns::Lab;
use serde_json::Value;

const HEAD: &str = "https://10.87.0.1:8740";

/// Stops the agent when the test ends, however it ends.
struct Agent(Child);

impl Agent {
    /// SIGTERM, as systemd stops it; waits for it to exit.
    fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent_bin() -> PathBuf {
    let b = head::wulf_bin().with_file_name("wulf-agent");
    assert!(
        b.is_file(),
        "{} is missing: cargo build --release --workspace",
        b.display()
    );
    b
}

fn agent_cmd(ns: &str, state: &Path, pin: &str, extra: &[&str]) -> std::process::Command {
    let mut c = Lab::cmd(ns, agent_bin().to_str().unwrap());
    c.args(["--standalone", "--head", HEAD, "--pin", pin])
        .arg("--state-dir")
        .arg(state)
        .args(extra)
        .stdin(Stdio::null());
    c
}

/// One try (`--once`): its output.
fn once(ns: &str, state: &Path, pin: &str, extra: &[&str]) -> Output {
    let mut c = agent_cmd(ns, state, pin, extra);
    c.arg("--once");
    c.output().unwrap()
}

fn spawn(ns: &str, state: &Path, pin: &str, extra: &[&str], log: &Path) -> Agent {
    let f = std::fs::File::create(log).unwrap();
    Agent(
        agent_cmd(ns, state, pin, extra)
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap(),
    )
}

fn node<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {list}"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_server_wulf_did_not_boot_enrolls_once_and_reports() {
    let mut lab = Lab::new("10.87.0");
    let h = Head::start_in(&lab.srv, "[dns]\nenabled = false\n");
    let pin = h.ca_pin();
    let dir = h.dir.path().to_path_buf();
    let ns = lab.client("52:54:00:87:00:01");
    lab.with_addr(&ns, "10.87.0.50/24");

    let created = h.json(&[
        "node",
        "create",
        "name=store1",
        "type=standalone",
        "_status_secs=1",
        "--enroll-token",
    ]);
    assert_eq!(created["type"], "standalone", "{created}");
    let uid = created["uid"].as_str().unwrap().to_string();
    let token = created["enroll_token"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(token.starts_with(&format!("{uid}.")), "{created}");
    // Only a hash is stored.
    assert!(!h.snapshot().to_string().contains(&token[uid.len() + 1..]));
    // The text form prints it too; a booted type is refused.
    let out = h.ok(&[
        "node",
        "create",
        "name=store2",
        "type=standalone",
        "--enroll-token",
        "--enroll-token-ttl",
        "1s",
    ]);
    assert!(out.contains("Enrollment token for store2"), "{out}");
    let token2 = out.lines().nth(2).unwrap().trim().to_string();
    let e = h.fails(
        2,
        &[
            "node",
            "create",
            "name=c1",
            "type=compute",
            "--enroll-token",
        ],
    );
    assert!(e.contains("standalone"), "{e}");
    let e = h.fails(
        2,
        &[
            "node",
            "create",
            "name=c1",
            "--enroll-token",
            "--enroll-token-ttl",
            "soon",
        ],
    );
    assert!(e.contains("duration"), "{e}");

    // Garbage: refused before any request; a wrong secret: refused by the head, nothing kept.
    let bad_state = dir.join("bad");
    let o = once(&ns, &bad_state, &pin, &["--enroll-token", "garbage"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("UID.SECRET"), "{}", stderr(&o));
    let wrong = format!("{uid}.{}", "0".repeat(64));
    let o = once(&ns, &bad_state, &pin, &["--enroll-token", &wrong]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("HTTP 403"), "{}", stderr(&o));
    assert!(!bad_state.join("agent.cred").exists());
    assert!(
        h.log()
            .contains("refused an enrollment of standalone node store1"),
        "{}",
        h.log()
    );

    // Expired: refused, with a WARNING naming the node.
    std::thread::sleep(Duration::from_millis(2100));
    let o = once(&ns, &bad_state, &pin, &["--enroll-token", &token2]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("expired"), "{}", stderr(&o));
    let log = h.log();
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("standalone node store2")
            && l.contains("expired")),
        "{log}"
    );
    assert!(!bad_state.join("agent.cred").exists());

    // The real agent enrolls (the wrong tries did not spoil the token) and reports.
    let state = dir.join("store1");
    let tfile = dir.join("token");
    std::fs::write(&tfile, format!("{token}\n")).unwrap();
    let log1 = dir.join("agent1.log");
    let a = spawn(
        &ns,
        &state,
        &pin,
        &["--enroll-token-file", tfile.to_str().unwrap()],
        &log1,
    );
    let agent_log = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let state_of = || {
        let list = h.json(&["node", "status"]);
        node(&list, "store1")["state"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    // store1 comes up through the agent logging to `log`; it goes down when `a` stops.
    let up = |what: &str, log: &Path| {
        wait_for(
            what,
            Duration::from_secs(30),
            || state_of() == "up",
            || format!("agent:\n{}\nhead:\n{}", agent_log(log), h.log()),
        )
    };
    let stop = |a: Agent| {
        a.stop();
        wait_for(
            "store1 stays up after its agent stopped",
            Duration::from_secs(20),
            || state_of() != "up",
            || h.log(),
        )
    };
    up("store1 is not up through its standalone agent", &log1);
    let list = h.json(&["node", "status"]);
    let s1 = node(&list, "store1");
    assert!(s1["hardware"]["cpus"].as_u64().unwrap_or(0) >= 1, "{s1}");
    assert!(
        s1["hardware"]["ram_total"].as_u64().unwrap_or(0) > 0,
        "{s1}"
    );
    assert_eq!(s1["ip"], "10.87.0.50", "{s1}");
    let ls = h.json(&["node", "-i", "store1", "ls"]);
    assert_eq!(ls[0]["type"], "standalone", "{ls}");
    let kept = std::fs::read_to_string(state.join("agent.cred")).unwrap();
    assert!(kept.contains(&format!("node={uid}")), "{kept}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.join("agent.cred"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        h.log().contains("enrolled standalone node store1"),
        "{}",
        h.log()
    );
    stop(a);

    // The used token is refused, from a fresh state directory, with a WARNING.
    let o = once(&ns, &dir.join("again"), &pin, &["--enroll-token", &token]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("used already"), "{}", stderr(&o));
    let (code, body) = h.enroll_with(&uid, &token);
    assert_eq!(code, 403, "{body}");

    // Restarted without a token: the kept credential reports.
    let log2 = dir.join("agent2.log");
    let _a = spawn(&ns, &state, &pin, &[], &log2);
    up(
        "store1 is not up again after its agent restarted without a token",
        &log2,
    );
    assert!(
        !agent_log(&log2).contains("enrolled at"),
        "{}",
        agent_log(&log2)
    );

    // A fresh token (admin) enrolls another agent: the kept credential is then refused,
    // and the agent says plainly what to do.
    let e = h.fails(2, &["node", "-i", "store1,store2", "enroll-token"]);
    assert!(e.contains("exactly one node"), "{e}");
    let fresh = h.json(&["node", "-i", "store1", "enroll-token", "--ttl", "1h"]);
    let t3 = fresh["token"].as_str().unwrap().to_string();
    stop(_a);
    let (code, body) = h.enroll_with(&uid, &t3);
    assert_eq!(code, 200, "{body}");
    let log3 = dir.join("agent3.log");
    let _a = spawn(&ns, &state, &pin, &[], &log3);
    wait_for(
        "the agent with a refused credential logs no ERROR",
        Duration::from_secs(20),
        || agent_log(&log3).contains("issue a new enrollment token"),
        || format!("agent:\n{}\nhead:\n{}", agent_log(&log3), h.log()),
    );
    assert!(agent_log(&log3).contains("ERROR"), "{}", agent_log(&log3));
    assert_ne!(state_of(), "up");
    drop(_a);

    // The packaged unit's way: no token flag, the token in STATE_DIR/enroll.token; the agent
    // trades it and removes the spent file. Without either, it says where a token goes.
    let state4 = dir.join("store1-unit");
    let o = once(&ns, &state4, &pin, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("enroll.token"), "{}", stderr(&o));
    let t4 = h.json(&["node", "-i", "store1", "enroll-token"])["token"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::create_dir_all(&state4).unwrap();
    std::fs::write(state4.join("enroll.token"), format!("{t4}\n")).unwrap();
    let o = once(&ns, &state4, &pin, &[]);
    assert!(o.status.success(), "{}\nhead:\n{}", stderr(&o), h.log());
    assert!(!state4.join("enroll.token").exists(), "{}", stderr(&o));
    let kept = std::fs::read_to_string(state4.join("agent.cred")).unwrap();
    assert!(kept.contains(&format!("node={uid}")), "{kept}");
    // A later start uses the kept credential.
    let o = once(&ns, &state4, &pin, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
}

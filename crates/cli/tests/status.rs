//! Node status end to end on one head: simulated nodes (`wulf sim`, which fetches boot
//! scripts and reports like the agent) and `curl` send reports; `wulf node status` shows
//! new, booting, up and down with each reason.

mod head;
mod netns;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use head::{wulf_bin, Head, Sim};
use serde_json::{json, Value};

/// `wulf ARGS` against `h`, started in the background.
fn background(h: &Head, args: &[&str]) -> Child {
    Command::new(wulf_bin())
        .args(args)
        .env("WULF_DATA_DIR", h.data())
        .env("HOME", h.dir.path())
        .env_remove("WULF_URL")
        .env_remove("WULF_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `wulf sim` against `h` in the background.
fn sim(h: &Head, args: &[&str]) -> Sim {
    let mut all = vec!["sim"];
    all.extend_from_slice(args);
    Sim(Some(background(h, &all)))
}

fn sigterm(s: &Sim) {
    if let Some(c) = &s.0 {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
    }
}

fn finish(mut s: Sim) -> String {
    let out = s.0.take().unwrap().wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "wulf sim failed: {text}");
    text
}

/// Poll `wulf node status` until `want` holds (at most `secs`).
fn wait_summary(h: &Head, secs: u64, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let out = h.ok(&["node", "status"]);
        if out.lines().any(|l| squash(l) == want) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed '{want}'; last:\n{out}\nhead log:\n{}",
            h.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A summary line with runs of spaces collapsed.
fn squash(l: &str) -> String {
    l.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn by_name<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {list}"))
}

#[test]
fn simulated_nodes_boot_report_and_shut_down() {
    let h = Head::start();
    // Reports every second so the test is quick.
    h.ok(&["attrib", "-i", "DefaultAttribs", "set", "_status_secs=1"]);
    h.ok(&["node", "create", "--count", "2"]);
    assert_eq!(squash(h.ok(&["node", "status"]).trim()), "new 2 n[0-1]");

    let s = sim(&h, &["--nodes", "6", "--boot-secs", "0.5"]);
    let out = wait_summary(&h, 30, "up 6 n[2-7]");
    assert!(out.lines().any(|l| squash(l) == "new 2 n[0-1]"), "{out}");

    // -l: a row per node with its state and when it last changed.
    let long = h.ok(&["node", "-i", "n[2-7]", "status", "-l"]);
    assert!(
        long.contains("LAST CHANGE") && long.contains("RAM FREE / TOTAL"),
        "{long}"
    );
    assert_eq!(
        long.lines().filter(|l| l.contains(" up ")).count(),
        6,
        "{long}"
    );
    assert!(
        long.contains("seconds ago") || long.contains("second ago"),
        "{long}"
    );
    // Each row has the address the node reported: the simulator sends the node's ip, or
    // for a node without one this machine's address toward the head.
    assert!(
        squash(long.lines().next().unwrap()).starts_with("NODE STATE IP"),
        "{long}"
    );
    for n in h.json(&["node", "-i", "n[2-7]", "ls"]).as_array().unwrap() {
        let name = n["name"].as_str().unwrap();
        let ip = n["ip"].as_str().unwrap_or("127.0.0.1");
        let row = long
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}: {long}"));
        assert_eq!(row.split_whitespace().nth(2), Some(ip), "{long}");
        let st = by_name(&h.json(&["node", "-i", name, "status", "-l"]), name).clone();
        assert_eq!(st["ip"], ip, "{st}");
    }

    // --json and -L carry what the node reported, hardware included. (The first report
    // still announces the default interval: the node learns _status_secs from its reply.)
    std::thread::sleep(Duration::from_millis(1500));
    let list = h.json(&["node", "status"]);
    let n2 = by_name(&list, "n2");
    assert_eq!(n2["state"], "up");
    assert_eq!(n2["hostname"], "n2");
    assert_eq!(n2["kernel"], "6.1.0-simulated");
    assert_eq!(n2["interval_secs"], 1);
    assert_eq!(n2["hardware"]["cpus"], 64);
    assert_eq!(n2["modules"], json!(["e1000", "ext4"]));
    assert!(n2["cmdline"].as_str().unwrap().contains("wulf.enroll=***"));
    assert_eq!(by_name(&list, "n0")["state"], "new");
    let full = h.ok(&["node", "-i", "n3", "status", "-L"]);
    for want in [
        "hostname     n3",
        "kernel       6.1.0-simulated",
        "cpu          64 × Simulated CPU",
        "modules      (2) e1000 ext4",
        "selinux      disabled",
    ] {
        assert!(full.contains(want), "missing '{want}' in:\n{full}");
    }

    // The head logged each boot.
    assert!(h
        .log()
        .contains("Booting node (MAC=02:57:00:00:00:00) as simulated"));

    // Stopping the simulator: every node says it is shutting down.
    sigterm(&s);
    let text = finish(s);
    assert!(text.contains("clean shutdown"), "{text}");
    let out = wait_summary(&h, 10, "down (clean shutdown) 6 n[2-7]");
    assert!(out.lines().any(|l| squash(l) == "new 2 n[0-1]"), "{out}");
    let n4 = by_name(&h.json(&["node", "status"]), "n4").clone();
    assert_eq!(n4["down_reason"], "clean shutdown");
    assert!(n4["last_uptime"].as_f64().unwrap() > 0.0, "{n4}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let changed = n4["last_modified"].as_f64().unwrap();
    assert!(now - changed < 30.0 && now >= changed - 1.0, "{n4}");
}

#[test]
fn silent_nodes_and_boot_timeouts_go_down_with_their_reason() {
    let h = Head::start();
    h.ok(&["attrib", "-i", "DefaultAttribs", "set", "_status_secs=1"]);
    // --crash: the nodes stop without a word.
    let s = sim(
        &h,
        &[
            "--nodes",
            "3",
            "--boot-secs",
            "0",
            "--duration",
            "3",
            "--crash",
        ],
    );
    wait_summary(&h, 20, "up 3 n[0-2]");
    let text = finish(s);
    assert!(text.contains("without shutdown reports"), "{text}");
    // A 1 s interval gives a window of 6 s.
    let out = wait_summary(&h, 20, "down (node stopped sending status) 3 n[0-2]");
    assert!(!out.contains("up"), "{out}");

    // A node that fetches its boot script but never reports: booting, then down.
    h.ok(&["node", "create", "mac=02:57:00:00:10:00", "type=simulated"]);
    h.ok(&["node", "-i", "n3", "set", "_boot_timeout=3"]);
    h.script_params("02:57:00:00:10:00"); // asserts a script with an enrollment token
    wait_summary(&h, 5, "booting 1 n3");
    wait_summary(&h, 10, "down (boot timeout) 1 n3");
    let n3 = by_name(&h.json(&["node", "status"]), "n3").clone();
    assert_eq!(n3["down_reason"], "boot timeout");

    // Status survives a head restart (it is in the store, not only in memory).
    std::thread::sleep(Duration::from_millis(1500)); // past one flush
    let mut h = h;
    h.stop();
    h.spawn();
    let out = h.ok(&["node", "status"]);
    assert!(
        out.lines()
            .any(|l| squash(l) == "down (node stopped sending status) 3 n[0-2]"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| squash(l) == "down (boot timeout) 1 n3"),
        "{out}"
    );
    // Deleting a node removes its status.
    h.ok(&["node", "-i", "n3", "delete"]);
    assert!(!h.ok(&["node", "status"]).contains("n3"));
}

/// Reports are checked against the node credential from the boot script: curl, a client we
/// did not write, plays a node.
#[test]
fn reports_need_the_nodes_own_credential() {
    let h = Head::start();
    h.ok(&["node", "create", "mac=02:57:00:00:00:01", "type=simulated"]);
    h.ok(&["node", "create", "mac=02:57:00:00:00:02", "type=simulated"]);
    let list = h.json(&["node", "ls"]);
    let uid = |i: usize| list[i]["uid"].as_str().unwrap().to_string();
    let cred = h.boot_params("02:57:00:00:00:01")["cred"].clone();
    let url = format!("{}/api/v1/node/status", h.url());
    let post = |token: &str, body: &str| -> (u16, String) {
        let (code, b) = h.curl(&[
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
            &url,
        ]);
        (code, String::from_utf8_lossy(&b).into_owned())
    };
    let report = |node: &str| {
        json!({"node": node, "uptime_secs": 5.0, "interval_secs": 10, "hostname": "real-n0"})
            .to_string()
    };
    let before = h.ok(&["node", "status"]);
    // No token, a wrong credential, the admin token, another node's identity, bad JSON.
    let (code, _) = h.curl(&["-X", "POST", "--data-binary", &report(&uid(0)), &url]);
    assert_eq!(code, 401);
    let (code, body) = post(
        &format!("node:{}:{}", uid(0), "0".repeat(64)),
        &report(&uid(0)),
    );
    assert_eq!(code, 401, "{body}");
    let (code, _) = post(&h.token(), &report(&uid(0)));
    assert_eq!(code, 401);
    let (code, body) = post(&format!("node:{}:{cred}", uid(1)), &report(&uid(1)));
    assert_eq!(code, 401, "n0's credential is not n1's: {body}");
    let (code, body) = post(&format!("node:{}:{cred}", uid(0)), &report(&uid(1)));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("belongs to node"), "{body}");
    let (code, body) = post(&format!("node:{}:{cred}", uid(0)), "{\"node\": ");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("malformed status report"), "{body}");
    assert_eq!(
        h.ok(&["node", "status"]),
        before,
        "refused reports change nothing"
    );

    // The right one: the node is up and gets its effective attributes back.
    h.ok(&["node", "-i", "n0", "set", "_busy=yes", "rack=r7"]);
    let (code, body) = post(&format!("node:{}:{cred}", uid(0)), &report(&uid(0)));
    assert_eq!(code, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["name"], "n0");
    assert_eq!(reply["attributes"]["rack"], "r7");
    assert_eq!(reply["attributes"]["_busy"], "yes");
    let n0 = by_name(&h.json(&["node", "status"]), "n0").clone();
    assert_eq!(n0["state"], "up");
    assert_eq!(n0["hostname"], "real-n0");
    // Bad detail level: a clear 400.
    let (code, body) = h.curl(&["-H", &h.auth(), &format!("{url}?detail=9")]);
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
}

/// `--refresh` without a terminal prints the summary each time it changes.
#[test]
fn refresh_follows_changes() {
    let h = Head::start();
    h.ok(&["attrib", "-i", "DefaultAttribs", "set", "_status_secs=1"]);
    h.ok(&["node", "create", "mac=02:57:00:00:00:00", "type=simulated"]);
    let watcher = background(&h, &["node", "status", "--refresh", "--refresh-for", "8"]);
    std::thread::sleep(Duration::from_millis(700));
    let s = sim(&h, &["--nodes", "1", "--boot-secs", "0", "--duration", "2"]);
    finish(s);
    let out = watcher.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = text.lines().map(squash).collect();
    let pos = |want: &str| {
        lines
            .iter()
            .position(|l| l == want)
            .unwrap_or_else(|| panic!("'{want}' not in:\n{text}"))
    };
    assert!(pos("new 1 n0") < pos("up 1 n0"));
    assert!(pos("up 1 n0") < pos("down (clean shutdown) 1 n0"));
}

/// The real `wulf-agent` against the real head: it trades the enrollment token of the node's
/// boot script for its credential and keeps it (a restarted agent reports with it), its
/// report shows this machine's kernel and hardware, its attributes file comes from the head's
/// answer, and SIGTERM ends in a clean shutdown.
#[test]
fn the_agent_reports_to_the_head() {
    let agent = wulf_bin().with_file_name("wulf-agent");
    assert!(
        agent.exists(),
        "{} missing: cargo build --workspace",
        agent.display()
    );
    let h = Head::start();
    h.ok(&["node", "create", "mac=02:57:00:00:00:09", "type=simulated"]);
    h.ok(&["node", "-i", "n0", "set", "rack=r7", "_status_secs=1"]);
    let params = h.script_params("02:57:00:00:00:09");
    let param = |k: &str| params[k].clone();
    let (head, node, token) = (param("head"), param("node"), param("enroll"));
    // The boot script gives the https:// head and the cluster CA's fingerprint.
    assert_eq!(head, h.url());
    let ca = param("ca");
    let state = tempfile::tempdir().unwrap();
    let cred_file = state.path().join("run/agent.cred");
    let run = |token: &str, once: bool| {
        let mut c = Command::new(&agent);
        c.args(["--head", &head, "--node", &node, "--enroll", token])
            .args(["--ca", &ca])
            .arg("--state-dir")
            .arg(state.path())
            .arg("--cred-file")
            .arg(&cred_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if once {
            c.arg("--once");
        }
        c
    };

    // A wrong token is refused, says so, and changes nothing.
    let out = run(&"0".repeat(64), true).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refused the enrollment (HTTP 403)")
            && stderr.contains("not the one this node's boot script carried"),
        "{stderr}"
    );
    assert!(!cred_file.exists());
    assert_eq!(squash(h.ok(&["node", "status"]).trim()), "booting 1 n0");

    let out = run(&token, true).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("enrolled at"), "{stderr}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&cred_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["attributes"]["rack"], "r7");
    let ini = std::fs::read_to_string(state.path().join("attributes.ini")).unwrap();
    assert!(
        ini.contains("rack=r7") && ini.contains("_status_secs=1"),
        "{ini}"
    );

    let n0 = by_name(&h.json(&["node", "status"]), "n0").clone();
    assert_eq!(n0["state"], "up", "{n0}");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(n0["kernel"], release.trim());
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(n0["hostname"], hostname.trim());
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    assert!(n0["hardware"]["cpus"].as_u64().unwrap() >= cpus, "{n0}");
    assert!(n0["ram_total"].as_u64().unwrap() > 0);
    assert!(n0["agent"]["version"].as_str().is_some(), "{n0}");
    // Its address on the interface it reaches the head (127.0.0.1) through.
    assert_eq!(n0["ip"], "127.0.0.1", "{n0}");
    let long = h.ok(&["node", "-i", "n0", "status", "-l"]);
    assert!(long.contains("127.0.0.1"), "{long}");

    // Restarted, with the token used up: it reports with the credential it kept, each
    // second, then says goodbye on SIGTERM.
    let child = run(&token, false).spawn().unwrap();
    let s = Sim(Some(child));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n0 = by_name(&h.json(&["node", "status"]), "n0").clone();
        if n0["agent"]["reports"].as_u64().unwrap_or(0) >= 2 && n0["interval_secs"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not keep reporting: {n0}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    sigterm(&s);
    let mut s = s;
    let out = s.0.take().unwrap().wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("using the credential of this boot from"),
        "{stderr}"
    );
    wait_summary(&h, 5, "down (clean shutdown) 1 n0");
}

/// `--refresh` on a terminal: the full-screen view, run under a pseudo-terminal by
/// util-linux `script`, shows the nodes' rows.
#[test]
fn refresh_full_screen_on_a_terminal() {
    let h = Head::start();
    h.ok(&["attrib", "-i", "DefaultAttribs", "set", "_status_secs=1"]);
    let s = sim(&h, &["--nodes", "2", "--boot-secs", "0"]);
    wait_summary(&h, 20, "up 2 n[0-1]");
    let inner = format!(
        "stty cols 120 rows 30; {} node status --refresh --refresh-for 3",
        wulf_bin().display()
    );
    let out = Command::new("script")
        .args(["-qfec", &inner, "/dev/null"])
        .env("WULF_DATA_DIR", h.data())
        .env("HOME", h.dir.path())
        .env_remove("WULF_URL")
        .env_remove("WULF_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs the view on a pseudo-terminal");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = String::from_utf8_lossy(&out.stdout);
    // Drop the terminal's escape sequences and collapse spaces.
    let mut text = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for x in chars.by_ref() {
                    if x.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            text.push(' ');
        } else {
            text.push(c);
        }
    }
    let text = squash(&text);
    assert!(text.contains("wulf node status"), "{text}");
    assert!(text.contains("up 2 n[0-1]"), "no summary in: {text}");
    assert!(
        text.contains("n0 up 127.0.0.1") && text.contains("n1 up 127.0.0.1"),
        "no rows in: {text}"
    );
    sigterm(&s);
    finish(s);
}

/// The README's quick start, `wulf sim --local-head --nodes 16`, stopped the way Ctrl-C at a
/// terminal stops it: SIGINT to the whole foreground process group. The simulated nodes
/// report their clean shutdown to the head before it stops: no errors. (In a network
/// namespace of its own: the local head listens on 127.0.0.1:8740.)
#[test]
fn ctrl_c_stops_the_quick_start_cleanly() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let lab = netns::Lab::new("10.86.0");
    let dir = tempfile::tempdir().unwrap();
    let wulf = wulf_bin();
    let mut cmd = netns::Lab::cmd(&lab.srv, wulf.to_str().unwrap());
    cmd.args(["sim", "--local-head", "--nodes", "16"])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .env_remove("WULF_URL")
        .env_remove("WULF_TOKEN")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Sim(Some(cmd.spawn().unwrap()));
    let c = child.0.as_mut().unwrap();
    let pgid = c.id() as libc::pid_t;
    let stdout = c.stdout.take().unwrap();
    let stderr = c.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("Ctrl-C stops them") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let errs = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(stderr), &mut s);
        s
    });
    // The status is printed once every node is up.
    let up = rx.recv_timeout(Duration::from_secs(90));
    // SAFETY: kill(2) on the process group of our own child.
    unsafe {
        libc::kill(-pgid, libc::SIGINT);
    }
    let c = child.0.as_mut().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = c.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if status.is_none() {
        // SAFETY: as above.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
    let out = reader.join().unwrap();
    let err = errs.join().unwrap();
    let text = format!("stdout:\n{out}\nstderr:\n{err}");
    assert!(up.is_ok(), "the nodes never came up: {text}");
    let status = status.unwrap_or_else(|| panic!("wulf sim did not stop on SIGINT: {text}"));
    assert!(status.success(), "{status}: {text}");
    assert!(out.lines().any(|l| squash(l) == "up 16 n[0-15]"), "{text}");
    let summary = err
        .lines()
        .find(|l| l.starts_with("sim: ") && l.contains(" reports in "))
        .unwrap_or_else(|| panic!("no summary: {text}"));
    assert!(
        summary.contains(" 0 errors") && summary.contains("nodes reported a clean shutdown"),
        "{text}"
    );
    assert!(!err.contains("last error"), "{text}");
    // After the shutdown reports the head printed every node down, cleanly.
    assert!(
        out.lines()
            .any(|l| squash(l) == "down (clean shutdown) 16 n[0-15]"),
        "{text}"
    );
}

/// docs/admin/status.md: what changes a node's state is written at the next flush
/// (`[status] flush_ms`), so a head SIGKILLed once that interval has passed keeps it, while
/// routine heartbeats wait `persist_secs` (an hour here, so only the flush can have written
/// the shutdowns). Four nodes boot, report and shut down cleanly; one flush interval (1 s)
/// and 0.3 s after the last shutdown report was answered the head is killed (no clean stop,
/// no final flush) and started again: each node is still down with reason "clean shutdown"
/// and the uptime it had. The control: the same on a head whose flush interval is a minute,
/// killed right after the shutdowns (inside the interval), comes back without them. So the
/// first check can fail, and the status it finds was written by the flush.
#[test]
fn status_survives_a_sigkill_after_the_flush_interval() {
    let flush = Duration::from_millis(1000);
    let mut h = Head::start_configured(
        None,
        &format!(
            "[status]\nflush_ms = {}\npersist_secs = 3600\n",
            flush.as_millis()
        ),
        &[],
    );
    h.ok(&["attrib", "-i", "DefaultAttribs", "set", "_status_secs=2"]);
    let s = sim(&h, &["--nodes", "4", "--boot-secs", "0.2"]);
    wait_summary(&h, 30, "up 4 n[0-3]");
    std::thread::sleep(Duration::from_millis(1200));
    sigterm(&s);
    finish(s); // the shutdown reports are answered
    let answered = Instant::now();
    let before = h.json(&["node", "status"]);
    let out = h.ok(&["node", "status"]);
    assert!(
        out.lines()
            .any(|l| squash(l) == "down (clean shutdown) 4 n[0-3]"),
        "{out}"
    );
    std::thread::sleep((flush + Duration::from_millis(300)).saturating_sub(answered.elapsed()));
    let killed_after = answered.elapsed();
    h.kill9();
    eprintln!("killed {killed_after:?} after the shutdown reports were answered");
    h.spawn();
    let out = h.ok(&["node", "status"]);
    assert!(
        out.lines()
            .any(|l| squash(l) == "down (clean shutdown) 4 n[0-3]"),
        "after kill -9 {killed_after:?} after the shutdowns and a restart:\n{out}\nhead log:\n{}",
        h.log()
    );
    let after = h.json(&["node", "status"]);
    for name in ["n0", "n1", "n2", "n3"] {
        let (b, a) = (by_name(&before, name), by_name(&after, name));
        assert_eq!(a["down_reason"], "clean shutdown", "{a}");
        assert!(b["last_uptime"].as_f64().unwrap() > 0.0, "{b}");
        assert_eq!(a["last_uptime"], b["last_uptime"], "{name}: {b} then {a}");
        assert_eq!(a["hostname"], b["hostname"], "{name}: {b} then {a}");
    }

    // The control: killed inside the flush interval, the shutdowns are not in the store.
    let mut c = Head::start_configured(
        None,
        "[status]\nflush_ms = 60000\npersist_secs = 3600\n",
        &[],
    );
    c.ok(&["attrib", "-i", "DefaultAttribs", "set", "_status_secs=2"]);
    let s = sim(&c, &["--nodes", "4", "--boot-secs", "0.2"]);
    wait_summary(&c, 30, "up 4 n[0-3]");
    sigterm(&s);
    finish(s);
    wait_summary(&c, 10, "down (clean shutdown) 4 n[0-3]");
    c.kill9();
    c.spawn();
    let out = c.ok(&["node", "status"]);
    assert!(
        !out.contains("clean shutdown"),
        "a head killed inside a 60 s flush interval kept the shutdowns (the check above \
         cannot tell a flush from anything else):\n{out}"
    );
}

/// A listing of more than 1,024 nodes is written and sent a piece at a time: the same bytes
/// as its pieces asked for on their own (nodes never seen, whose status does not change with
/// time), and valid JSON.
#[test]
fn a_long_listing_is_streamed_as_the_same_bytes() {
    let h = Head::start();
    h.ok(&["node", "create", "--count", "1500"]);
    let url = format!("{}/api/v1/node/status", h.url());
    let get = |query: &str| {
        let (code, body) = h.curl(&["-g", "-H", &h.auth(), &format!("{url}{query}")]);
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        body
    };
    for detail in ["", "?detail=0", "?detail=1"] {
        let sep = if detail.is_empty() { "?" } else { "&" };
        let all = get(detail);
        let first = get(&format!("{detail}{sep}ids=n[0-1023]"));
        let rest = get(&format!("{detail}{sep}ids=n[1024-1499]"));
        let mut want = first[..first.len() - 1].to_vec();
        want.push(b',');
        want.extend_from_slice(&rest[1..]);
        assert!(
            all == want,
            "the streamed listing ({detail}) differs from its pieces"
        );
        let v: Value = serde_json::from_slice(&all).unwrap();
        assert_eq!(v.as_array().map(Vec::len), Some(1500));
    }
    // Sent as it is written (chunked), not as one body of known length.
    let (_, head_and_body) = h.curl(&["-g", "-D", "-", "-H", &h.auth(), &url]);
    let text = String::from_utf8_lossy(&head_and_body).to_ascii_lowercase();
    assert!(
        text.contains("transfer-encoding: chunked"),
        "{}",
        &text[..400.min(text.len())]
    );
}

/// Bad status reports and queries of every kind (no or a malformed token, another node's
/// identity, a node that was deleted, malformed JSON, wrong types, missing fields, a bad IP,
/// numbers out of range, a body over 1 MiB; bad detail levels, selectors and `since`) get a
/// clear 4xx and change no status: the same listing, the same summary (its change counter
/// too), the same objects revision and the same status keys in etcd once a flush has passed.
#[test]
fn bad_reports_change_no_status() {
    let etcd = head::Etcd::start();
    let h = Head::start_configured(
        None,
        "[status]\nflush_ms = 50\n[dhcp]\nenabled = false\n[tftp]\nenabled = false\n[dns]\nenabled = false\n",
        &["--store", &etcd.store()],
    );
    for i in 1..=3 {
        h.ok(&[
            "node",
            "create",
            &format!("mac=02:57:00:00:01:0{i}"),
            "type=simulated",
        ]);
    }
    let list = h.json(&["node", "ls"]);
    let uid = |i: usize| list[i]["uid"].as_str().unwrap().to_string();
    let (n0, n1, n2) = (uid(0), uid(1), uid(2));
    let cred = h.boot_params("02:57:00:00:01:01")["cred"].clone();
    let gone = h.boot_params("02:57:00:00:01:03")["cred"].clone();
    h.ok(&["node", "-i", "n2", "delete"]);
    let url = format!("{}/api/v1/node/status", h.url());
    let post = |token: Option<&str>, body: &str| h.post_json("/api/v1/node/status", token, body);
    let mine = format!("node:{n0}:{cred}");
    let good = json!({"node": n0, "uptime_secs": 5.0, "interval_secs": 600, "hostname": "real-n0", "ip": "10.0.0.5", "load": [0.5, 0.25, 0.125]});
    let (code, body) = post(Some(&mine), &good.to_string());
    assert_eq!(code, 200, "{body}");

    // The state: the listing (without its one clock-relative field), the summary, the objects
    // revision and the stored status. Wait for the good report's flush first.
    let listing = || {
        let mut v = h.json(&["node", "status"]);
        for n in v.as_array_mut().unwrap() {
            n.as_object_mut().unwrap().remove("last_modified_secs");
        }
        v
    };
    let summary = || {
        let (code, b) = h.curl(&["-H", &h.auth(), &format!("{url}/summary")]);
        assert_eq!(code, 200);
        String::from_utf8(b).unwrap()
    };
    let stored = || etcd.range("/wulf/status/");
    head::wait_for(
        "n0's report is flushed",
        Duration::from_secs(10),
        || {
            stored()
                .iter()
                .any(|(k, v, _)| k.ends_with(&n0) && String::from_utf8_lossy(v).contains("real-n0"))
        },
        || format!("{:?}", stored()),
    );
    // ...and for the store to settle (n2's status going with it): two reads a flush apart.
    let mut settled = stored();
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(300));
        let now = stored();
        if now == settled {
            break;
        }
        settled = now;
    }
    let before = (listing(), summary(), h.revision(), settled);
    assert_eq!(before.0.as_array().unwrap().len(), 2, "{}", before.0);
    assert_eq!(by_name(&before.0, "n0")["state"], "up");
    assert_eq!(by_name(&before.0, "n1")["state"], "new");
    let unchanged = |what: &str| {
        assert_eq!(listing(), before.0, "{what}: the status listing changed");
        assert_eq!(summary(), before.1, "{what}: the summary changed");
        assert_eq!(h.revision(), before.2, "{what}: the objects changed");
    };

    let with = |k: &str, v: Value| {
        let mut r = good.clone();
        r[k] = v;
        r.to_string()
    };
    let without = |k: &str| {
        let mut r = good.clone();
        r.as_object_mut().unwrap().remove(k);
        r.to_string()
    };
    let big = head::write(
        h.dir.path(),
        "big-report.json",
        format!(
            "{{\"node\": \"{n0}\", \"hostname\": \"{}\"}}",
            "x".repeat(1 << 21)
        )
        .as_bytes(),
    );
    let big = format!("@{}", big.display());
    let other = format!("node:{n1}:{cred}");
    let deleted = format!("node:{n2}:{gone}");
    let forged = format!("node:{n0}:{}", "0".repeat(64));
    let admin = h.token();
    let cases: Vec<(Option<&str>, String, u16, &str)> = vec![
        (None, good.to_string(), 401, "authentication required"),
        (
            Some("node:garbage"),
            good.to_string(),
            401,
            "needs the node's token",
        ),
        (
            Some(&admin),
            good.to_string(),
            401,
            "needs the node's token",
        ),
        (Some(&forged), good.to_string(), 401, "not valid"),
        (Some(&other), good.to_string(), 401, "not valid"),
        (Some(&mine), with("node", json!(n1)), 403, "belongs to node"),
        // A deleted node's credential went with it.
        (Some(&deleted), with("node", json!(n2)), 401, "not valid"),
        (
            Some(&mine),
            "{\"node\": ".into(),
            400,
            "malformed status report",
        ),
        (Some(&mine), "[]".into(), 400, "malformed status report"),
        (
            Some(&mine),
            with("uptime_secs", json!("five")),
            400,
            "expected f64",
        ),
        (Some(&mine), without("interval_secs"), 400, "interval_secs"),
        (
            Some(&mine),
            with("interval_secs", json!(-1)),
            400,
            "malformed status report",
        ),
        (
            Some(&mine),
            with("interval_secs", json!(1u64 << 40)),
            400,
            "malformed status report",
        ),
        (
            Some(&mine),
            with("ip", json!("10.0.0.999")),
            400,
            "is not an IP address",
        ),
        (
            Some(&mine),
            with("load", json!([1.0, 2.0])),
            400,
            "malformed status report",
        ),
        (
            Some(&mine),
            with("state", json!("exploded")),
            400,
            "malformed status report",
        ),
        (
            Some(&mine),
            good.to_string().replace("5.0", "1e999"),
            400,
            "malformed status report",
        ),
        (Some(&mine), big, 413, "at most 1 MiB"),
    ];
    for (token, body, code, msg) in &cases {
        let (got, out) = post(*token, body);
        let shown = &body[..body.len().min(200)];
        assert_eq!(got, *code, "{token:?} {shown}: {out}");
        assert!(
            out.contains(msg),
            "{token:?} {shown}: expected '{msg}' in {out}"
        );
        unchanged(&format!("the report {shown} with {token:?}"));
    }
    for (query, code, msg) in [
        ("?detail=9", 400, "detail must be"),
        ("?ids=n%5B5-3%5D", 400, "5-3"),
        ("?ids=nosuch", 404, "nosuch"),
        ("/summary?since=soon", 400, "since must be a number"),
        ("/summary?ids=nosuch", 404, "nosuch"),
    ] {
        let (got, out) = h.curl(&["-H", &h.auth(), &format!("{url}{query}")]);
        let out = String::from_utf8_lossy(&out);
        assert_eq!(got, code, "GET {query}: {out}");
        assert!(out.contains(msg), "GET {query}: expected '{msg}' in {out}");
        unchanged(&format!("GET {query}"));
    }
    for (args, code, msg) in [
        (&["node", "-i", "nosuch", "status"][..], 1, "nosuch"),
        (&["node", "-i", "n[5-3]", "status"], 1, "5-3"),
        (&["node", "-i", "n2", "status"], 1, "n2"),
        (&["node", "status", "--refresh-for", "soon"], 2, "soon"),
    ] {
        let err = h.fails(code, args);
        assert!(
            err.contains(msg),
            "wulf {args:?}: expected '{msg}' in:\n{err}"
        );
        unchanged(&format!("wulf {args:?}"));
    }
    // Anything a refused report had written would be in the store after a flush.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        stored(),
        before.3,
        "a refused report changed the stored status"
    );
    // The right report still counts.
    let (code, body) = post(Some(&mine), &with("hostname", json!("renamed")));
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        by_name(&h.json(&["node", "status"]), "n0")["hostname"],
        "renamed"
    );
}

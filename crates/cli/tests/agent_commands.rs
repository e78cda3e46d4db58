//! The command channel end to end: the real `wulfd` sends commands through
//! `POST /api/v1/node/{exec,power,orphan}` (driven with curl) to the real `wulf-agent`, which
//! long-polls it, and to `wulf sim` nodes; orphans that lose their head follow their policy.
//! A stand-in head that forges commands (another credential, another node, an old deadline)
//! gets each one refused, and a head with another node secret cannot even poll the agent.

mod head;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use head::{wait_every, wait_for, wulf_bin, Head};
use serde_json::{json, Value};

fn agent_bin() -> PathBuf {
    let agent = wulf_bin().with_file_name("wulf-agent");
    assert!(
        agent.exists(),
        "{} missing: cargo build --workspace",
        agent.display()
    );
    agent
}

/// A child process killed when the test ends, passing or not.
struct Kill(Option<Child>);

impl Drop for Kill {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running `wulf-agent` and the directory with its state, log and marks.
struct Agent {
    child: Kill,
    dir: tempfile::TempDir,
}

impl Agent {
    /// Start the agent for node `params` against `head`. Its reboot and poweroff commands
    /// only leave a mark (`rebooted`, `powered-off` in its directory), then stop the agent
    /// with SIGTERM as a system going down would. `attrs` pre-seeds attributes.ini.
    fn start(head: &str, node: &str, cred: &str, attrs: &str) -> Agent {
        let pin = head.starts_with("https://").then(|| head::ca_pin_at(head));
        Self::start_pinned(head, pin.as_deref(), node, cred, attrs)
    }

    /// [`Agent::start`] with the cluster CA's fingerprint given (`--ca`).
    fn start_pinned(head: &str, pin: Option<&str>, node: &str, cred: &str, attrs: &str) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        if !attrs.is_empty() {
            std::fs::write(
                state.join("attributes.ini"),
                format!("[attributes]\n{attrs}\n"),
            )
            .unwrap();
        }
        // The agent starts these commands itself, so $PPID is the agent.
        let mark = |name: &str| {
            let script = dir.path().join(format!("{name}.sh"));
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\ntouch {}\nkill -TERM $PPID\n",
                    dir.path().join(name).display()
                ),
            )
            .unwrap();
            let mut perm = std::fs::metadata(&script).unwrap().permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
            std::fs::set_permissions(&script, perm).unwrap();
            script.display().to_string()
        };
        let (reboot, poweroff) = (mark("rebooted"), mark("powered-off"));
        let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
        let mut cmd = Command::new(agent_bin());
        if let Some(pin) = pin {
            cmd.args(["--ca", pin]);
        }
        let child = cmd
            .args(["--head", head, "--node", node, "--cred", cred])
            .args(["--reboot-cmd", &reboot, "--poweroff-cmd", &poweroff])
            .args(["--log", "debug"])
            .arg("--state-dir")
            .arg(&state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Agent {
            child: Kill(Some(child)),
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    fn marked(&self, name: &str) -> bool {
        self.dir.path().join(name).exists()
    }

    /// Wait for the agent to exit (after a mark script's SIGTERM).
    fn exited(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let c = self.child.0.as_mut().unwrap();
        while Instant::now() < deadline {
            if c.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

/// A node `n0` on `h` reporting every second, and its boot parameters.
fn node(h: &Head, mac: &str) -> (String, String) {
    h.ok(&["node", "create", &format!("mac={mac}"), "type=simulated"]);
    h.ok(&["node", "-i", "n0", "set", "_status_secs=1"]);
    let p = h.boot_params(mac);
    (p["node"].clone(), p["cred"].clone())
}

/// `POST /api/v1/PATH` with a JSON body through curl; the answer as JSON.
fn post(h: &Head, path: &str, body: &Value) -> (u16, Value) {
    let (code, out) = h.curl(&[
        "-X",
        "POST",
        "-H",
        &h.auth(),
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &body.to_string(),
        &format!("{}/api/v1/{path}", h.url()),
    ]);
    (code, serde_json::from_slice(&out).unwrap_or(Value::Null))
}

/// A hostlist for a query string (curl would take its brackets for a URL glob).
fn enc(ids: &str) -> String {
    ids.replace('[', "%5B").replace(']', "%5D")
}

/// Exec on `ids`; the per-node results.
fn exec(h: &Head, ids: &str, body: Value) -> Vec<Value> {
    let (code, v) = post(h, &format!("node/exec?ids={}", enc(ids)), &body);
    assert_eq!(code, 200, "{v}\n{}", h.log());
    v["results"].as_array().unwrap().clone()
}

fn status(h: &Head) -> Vec<Value> {
    h.json(&["node", "status"]).as_array().unwrap().clone()
}

fn by_name<'a>(v: &'a [Value], name: &str) -> &'a Value {
    v.iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {v:?}"))
}

/// Wait until exec of `true` on `ids` works on every node: their agents poll this head.
fn wait_polling(h: &Head, ids: &str, nodes: usize, why: impl Fn() -> String) {
    wait_every(
        "the nodes never polled for commands",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            // 404 until the nodes exist.
            let (_, v) = post(
                h,
                &format!("node/exec?ids={}", enc(ids)),
                &json!({"argv": ["true"], "timeout_secs": 5}),
            );
            v["results"]
                .as_array()
                .is_some_and(|r| r.len() == nodes && r.iter().all(|r| r["exit"] == 0))
        },
        why,
    );
}

#[test]
fn exec_on_the_real_agent_through_the_head() {
    let h = Head::start();
    let (uid, cred) = node(&h, "02:57:00:00:00:09");
    let mut a = Agent::start(&h.url(), &uid, &cred, "");
    wait_polling(&h, "n0", 1, || a.log());

    // Output, exit code, no shell in between.
    let r = exec(
        &h,
        "n0",
        json!({"argv": ["sh", "-c", "echo out; echo err >&2; exit 3"]}),
    );
    assert_eq!(r.len(), 1);
    assert_eq!(
        (&r[0]["exit"], &r[0]["stdout"], &r[0]["stderr"]),
        (&json!(3), &json!("out\n"), &json!("err\n")),
        "{r:?}"
    );
    let r = exec(&h, "n0", json!({"argv": ["echo", "$HOME", "a  b"]}));
    assert_eq!(r[0]["stdout"], "$HOME a  b\n");

    // stdin.
    let r = exec(
        &h,
        "n0",
        json!({"argv": ["cat"], "stdin": "line one\nline two\n"}),
    );
    assert_eq!(
        (&r[0]["exit"], &r[0]["stdout"]),
        (&json!(0), &json!("line one\nline two\n"))
    );

    // A timeout kills the command, and says so.
    let t = Instant::now();
    let r = exec(
        &h,
        "n0",
        json!({"argv": ["sleep", "60"], "timeout_secs": 1}),
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(r[0]["exit"], Value::Null, "{r:?}");
    assert_eq!(r[0]["error"], "timed out after 1 s");

    // A program that is not there.
    let r = exec(&h, "n0", json!({"argv": ["/no/such/program"]}));
    assert_eq!(r[0]["exit"], Value::Null);
    assert_eq!(r[0]["error"], "/no/such/program: command not found");

    // Several at once, on one node.
    let t = Instant::now();
    let hs: Vec<_> = (0..4)
        .map(|i| {
            let (url, auth, ca) = (h.url(), h.auth(), h.ca());
            std::thread::spawn(move || {
                let out = Command::new("curl")
                    .arg("--cacert")
                    .arg(ca)
                    .args(["-sS", "-X", "POST", "-H", &auth, "--data-binary"])
                    .arg(json!({"argv": ["sh", "-c", format!("sleep 1; echo {i}")]}).to_string())
                    .arg(format!("{url}/api/v1/node/exec?ids=n0"))
                    .output()
                    .unwrap();
                serde_json::from_slice::<Value>(&out.stdout).unwrap()["results"][0]["stdout"]
                    .clone()
            })
        })
        .collect();
    let outs: Vec<Value> = hs.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        outs,
        (0..4).map(|i| json!(format!("{i}\n"))).collect::<Vec<_>>()
    );
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());

    // Soft reboot: the agent answers, then runs its reboot command, which stops it with
    // SIGTERM like a system going down: the shutdown report tells the head it went down.
    let (code, v) = post(
        &h,
        "node/power?ids=n0",
        &json!({"action": "reboot", "mode": "soft", "timeout_secs": 20}),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["results"][0]["result"], "soft reboot", "{v}\n{}", a.log());
    assert!(a.marked("rebooted"));
    assert!(a.exited(Duration::from_secs(10)), "{}", a.log());
    assert_eq!(by_name(&status(&h), "n0")["down_reason"], "clean shutdown");
    let log = a.log();
    assert!(log.contains("reboot requested"), "{log}");
    assert!(log.contains("sent the shutdown report"), "{log}");
}

#[test]
fn soft_shutdown_and_a_shutdown_that_hangs() {
    let h = Head::start();
    let (uid, cred) = node(&h, "02:57:00:00:00:0a");
    let mut a = Agent::start(&h.url(), &uid, &cred, "");
    wait_polling(&h, "n0", 1, || a.log());
    let (_, v) = post(
        &h,
        "node/power?ids=n0",
        &json!({"action": "shutdown", "mode": "soft", "timeout_secs": 20}),
    );
    assert_eq!(
        v["results"][0]["result"],
        "soft shutdown",
        "{v}\n{}",
        a.log()
    );
    assert!(a.marked("powered-off") && !a.marked("rebooted"));
    assert!(a.exited(Duration::from_secs(10)));

    // An agent whose poweroff command does nothing (a hung shutdown) accepts, keeps
    // reporting up, and the head gives up at the timeout.
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
    let _hung = Kill(Some(
        Command::new(agent_bin())
            .args(["--head", &h.url(), "--node", &uid, "--cred", &cred])
            .args(["--ca", &h.ca_pin()])
            .args(["--poweroff-cmd", "/bin/true", "--reboot-cmd", "/bin/true"])
            .arg("--state-dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    ));
    let agent_log = || std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
    wait_polling(&h, "n0", 1, agent_log);
    let t = Instant::now();
    let (_, v) = post(
        &h,
        "node/power?ids=n0",
        &json!({"action": "shutdown", "mode": "soft", "timeout_secs": 4}),
    );
    assert_eq!(
        v["results"][0]["result"],
        "soft timeout",
        "{v}\n{}",
        agent_log()
    );
    assert!(t.elapsed() >= Duration::from_secs(4));
    assert_eq!(by_name(&status(&h), "n0")["state"], "up");
    assert!(
        agent_log().contains("shutdown: /bin/true exited 0"),
        "{}",
        agent_log()
    );
}

#[test]
fn orphan_on_request_reboots_with_the_default_policy() {
    let h = Head::start();
    let (uid, cred) = node(&h, "02:57:00:00:00:0b");
    let a = Agent::start(&h.url(), &uid, &cred, "");
    wait_polling(&h, "n0", 1, || a.log());
    let (code, v) = post(&h, "node/orphan?ids=n0", &json!({}));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["results"][0]["result"], "orphaned", "{v}\n{}", a.log());
    wait_for(
        "the orphan did not reboot",
        Duration::from_secs(10),
        || a.marked("rebooted"),
        || a.log(),
    );
    let n0 = by_name(&status(&h), "n0").clone();
    assert_eq!(
        (&n0["state"], &n0["down_reason"]),
        (&json!("down"), &json!("orphaned")),
        "{n0}"
    );
    let log = a.log();
    assert!(log.contains("sent the orphan report"), "{log}");
    assert!(log.contains("orphan on request"), "{log}");
    assert!(log.contains("_orphan_policy=reboot: rebooting"), "{log}");
}

#[test]
fn orphans_that_lose_their_head_follow_their_policy_and_rejoin() {
    let mut h = Head::start();
    let (uid, cred) = node(&h, "02:57:00:00:00:0c");
    let pin = h.ca_pin();
    h.stop();
    // No head answers from the start: after _orphan_secs each is an orphan.
    let reboot = Agent::start_pinned(
        &h.url(),
        Some(&pin),
        &uid,
        &cred,
        "_status_secs=1\n_orphan_secs=2",
    );
    let run = Agent::start_pinned(
        &h.url(),
        Some(&pin),
        &uid,
        &cred,
        "_status_secs=1\n_orphan_secs=2\n_orphan_policy=run",
    );
    // Idle below 1000 % of one CPU is idle on any machine with fewer than 10 CPUs busy.
    let idle = Agent::start_pinned(
        &h.url(),
        Some(&pin),
        &uid,
        &cred,
        "_status_secs=1\n_orphan_secs=2\n_orphan_policy=idle\n_orphan_idle_pct=1000\n_orphan_idle_secs=3",
    );
    // A busy one: the count never gets to its end.
    let busy = Agent::start_pinned(
        &h.url(),
        Some(&pin),
        &uid,
        &cred,
        "_status_secs=1\n_orphan_secs=2\n_orphan_policy=idle\n_orphan_idle_pct=0\n_orphan_idle_secs=3",
    );
    wait_for(
        "the reboot-policy orphan did not reboot",
        Duration::from_secs(15),
        || reboot.marked("rebooted"),
        || reboot.log(),
    );
    assert!(reboot
        .log()
        .contains("orphan: no head took a report for 2 s"));
    wait_for(
        "the idle orphan did not reboot",
        Duration::from_secs(20),
        || idle.marked("rebooted"),
        || idle.log(),
    );
    let idle_log = idle.log();
    assert!(
        idle_log.contains("_orphan_policy=idle: rebooting"),
        "{idle_log}"
    );
    for a in [&run, &busy] {
        assert!(
            a.log().contains("orphan: no head took a report"),
            "{}",
            a.log()
        );
        assert!(!a.marked("rebooted"), "{}", a.log());
    }
    // The head comes back: the run-policy orphan rejoins, without a reboot, and sends its
    // hardware again.
    drop(busy);
    h.spawn();
    wait_for(
        "the orphan did not rejoin",
        Duration::from_secs(20),
        || run.log().contains("rejoined:"),
        || run.log(),
    );
    let n0 = by_name(&status(&h), "n0").clone();
    assert_eq!(n0["state"], "up", "{n0}");
    assert!(n0["hardware"]["cpus"].as_u64().unwrap_or(0) > 0, "{n0}");
    assert!(!run.marked("rebooted"));
}

/// A stand-in for a head that an attacker controls: it answers the agent's first poll with
/// `commands` (then with none, slowly) and keeps every result posted to it.
fn forger(commands: Vec<Value>) -> (String, Arc<Mutex<Vec<Value>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let results = Arc::new(Mutex::new(Vec::new()));
    let queue = Arc::new(Mutex::new(Some(commands)));
    let rec = results.clone();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { return };
            let (rec, queue) = (rec.clone(), queue.clone());
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut w = conn;
                let mut first = String::new();
                if r.read_line(&mut first).unwrap_or(0) == 0 {
                    return;
                }
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                let reply = if first.starts_with("GET /api/v1/node/commands") {
                    match queue.lock().unwrap().take() {
                        Some(c) => Value::Array(c).to_string(),
                        None => {
                            std::thread::sleep(Duration::from_secs(2));
                            "[]".into()
                        }
                    }
                } else if first.starts_with("POST /api/v1/node/commands/result") {
                    rec.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                    String::new()
                } else {
                    // Reports: taken, with no attributes.
                    json!({"name": "n0", "attributes": {}, "heads": []}).to_string()
                };
                let _ = write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{reply}",
                    reply.len()
                );
            });
        }
    });
    (url, results)
}

/// The HMAC-SHA256 signature of a command whose order serializes as `order`, as a head makes
/// it: over id, node, head, deadline and order, NUL-separated. The `openssl` program computes
/// it, so the test does not rely on our own signing code.
fn openssl_sign(cmd: &Value, order: &str, key: &str) -> String {
    let mut data = Vec::new();
    for k in ["id", "node", "head"] {
        data.extend_from_slice(cmd[k].as_str().unwrap().as_bytes());
        data.push(0);
    }
    data.extend_from_slice(cmd["deadline"].to_string().as_bytes());
    data.push(0);
    data.extend_from_slice(order.as_bytes());
    let mut c = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", key, "-r"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl (./test.sh installs it)");
    c.stdin.take().unwrap().write_all(&data).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn forged_commands_are_refused() {
    let (uid, cred) = ("0123456789abcdef0123456789abcdef", "the-real-credential");
    let dir = tempfile::tempdir().unwrap();
    // The order as the head serializes it (the signature covers these exact bytes).
    let touch = |name: &str| -> String {
        let argv = json!(["touch", dir.path().join(name).display().to_string()]);
        format!(r#"{{"order":"exec","argv":{argv},"timeout_secs":5}}"#)
    };
    let cmd = |id: &str, node: &str, deadline: u64, order: String, key: &str| -> Value {
        let mut c = json!({"id": id, "node": node, "head": "head-x", "deadline": deadline});
        let o: Value = serde_json::from_str(&order).unwrap();
        for (k, v) in o.as_object().unwrap() {
            c[k] = v.clone();
        }
        c["sig"] = json!(openssl_sign(&c, &order, key));
        c
    };
    let t = now();
    let commands = vec![
        cmd(
            "forged",
            uid,
            t + 10,
            touch("forged"),
            "a-guessed-credential",
        ),
        cmd(
            "other",
            "fedcba9876543210fedcba9876543210",
            t + 10,
            touch("other"),
            cred,
        ),
        cmd("late", uid, t - 3600, touch("late"), cred),
        cmd("genuine", uid, t + 10, touch("genuine"), cred),
        cmd("genuine", uid, t + 10, touch("genuine"), cred),
    ];
    let (url, results) = forger(commands);
    let a = Agent::start(&url, uid, cred, "");
    wait_for(
        "the agent did not answer every command",
        Duration::from_secs(20),
        || results.lock().unwrap().len() >= 5,
        || format!("{:?}\n{}", results.lock().unwrap(), a.log()),
    );
    let results = results.lock().unwrap().clone();
    let error_of = |id: &str| -> Vec<String> {
        results
            .iter()
            .filter(|r| r["id"] == id)
            .map(|r| r["error"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert!(
        error_of("forged")[0].contains("bad signature"),
        "{results:?}"
    );
    assert!(error_of("other")[0].contains("not this one"), "{results:?}");
    assert!(error_of("late")[0].contains("expired"), "{results:?}");
    let genuine = error_of("genuine");
    assert!(genuine.contains(&String::new()), "{results:?}");
    assert!(genuine.iter().any(|e| e.contains("replay")), "{results:?}");
    // Our signature matches openssl's, so the genuine one ran, and only it.
    assert!(dir.path().join("genuine").exists());
    for f in ["forged", "other", "late"] {
        assert!(!dir.path().join(f).exists(), "{f} ran");
    }
    assert!(a.log().contains("refused: bad signature"), "{}", a.log());
}

#[test]
fn a_head_with_another_node_secret_cannot_reach_the_agent() {
    let a_head = Head::start();
    let b_head = Head::start();
    let (uid, cred) = node(&a_head, "02:57:00:00:00:0d");
    // B has a node with the same MAC, but its own secret: another UID and credential.
    node(&b_head, "02:57:00:00:00:0d");
    let a = Agent::start(&b_head.url(), &uid, &cred, "");
    wait_for(
        "the agent did not try B",
        Duration::from_secs(10),
        || a.log().contains("refused the command poll (HTTP 401)"),
        || a.log(),
    );
    let r = exec(&b_head, "n0", json!({"argv": ["touch", "/tmp/never"]}));
    assert_eq!(r[0]["exit"], Value::Null);
    assert!(
        r[0]["error"].as_str().unwrap_or("").contains("node is"),
        "{r:?}"
    );
    assert!(
        b_head.log().contains("wrong node credential"),
        "{}",
        b_head.log()
    );
}

fn sim_log(h: &Head) -> String {
    std::fs::read_to_string(h.dir.path().join("sim.log")).unwrap_or_default()
}

/// When each node last fetched its boot script (head clock, ms), by name.
fn boots(h: &Head) -> std::collections::BTreeMap<String, i64> {
    status(h)
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
fn simulated_nodes_exec_reboot_shut_down_and_orphan() {
    let h = Head::start();
    h.ok(&["attrib", "-i", "DefaultAttribs", "set", "_status_secs=1"]);
    let _s = h.sim(&[
        "--nodes",
        "40",
        "--boot-secs",
        "0",
        "--ignore-soft",
        "n[35-39]",
    ]);
    let why = || format!("{}\n{}", sim_log(&h), h.log());
    wait_polling(&h, "n[0-39]", 40, why);

    // Built-in commands, each node its own answer.
    let r = exec(&h, "n[0-39]", json!({"argv": ["hostname"]}));
    for n in &r {
        assert_eq!(
            n["stdout"],
            format!("{}\n", n["name"].as_str().unwrap()),
            "{n}"
        );
    }
    let r = exec(&h, "n[0-1]", json!({"argv": ["echo", "a", "b"]}));
    assert!(r.iter().all(|n| n["stdout"] == "a b\n"), "{r:?}");
    let r = exec(&h, "n0", json!({"argv": ["cat"], "stdin": "x\n"}));
    assert_eq!(r[0]["stdout"], "x\n");
    let r = exec(&h, "n0", json!({"argv": ["false"]}));
    assert_eq!(r[0]["exit"], 1);
    let r = exec(&h, "n0", json!({"argv": ["make"]}));
    assert_eq!(r[0]["exit"], 127);
    let r = exec(&h, "n0", json!({"argv": ["sleep", "5"], "timeout_secs": 1}));
    assert_eq!(r[0]["error"], "timed out after 1 s", "{r:?}");

    // Soft reboot: down, a boot (the boot script fetched again), up again.
    let before = boots(&h);
    let (_, v) = post(
        &h,
        &format!("node/power?ids={}", enc("n[0-9]")),
        &json!({"action": "reboot", "mode": "soft", "timeout_secs": 20}),
    );
    let results = v["results"].as_array().unwrap();
    assert!(
        results.iter().all(|n| n["result"] == "soft reboot"),
        "{v}\n{}",
        sim_log(&h)
    );
    wait_for(
        "the rebooted nodes did not come back up",
        Duration::from_secs(20),
        || {
            let st = status(&h);
            (0..10).all(|i| by_name(&st, &format!("n{i}"))["state"] == "up")
        },
        || format!("{:?}", status(&h)),
    );
    let after = boots(&h);
    assert_eq!(before.len(), 40);
    for (name, t) in &before {
        let i: usize = name[1..].parse().unwrap();
        assert_eq!(
            after[name] != *t,
            i < 10,
            "{name}: {t} then {}",
            after[name]
        );
    }

    // Soft shutdown: down for good.
    let (_, v) = post(
        &h,
        &format!("node/power?ids={}", enc("n[10-14]")),
        &json!({"action": "shutdown", "mode": "soft", "timeout_secs": 20}),
    );
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["result"] == "soft shutdown"),
        "{v}"
    );

    // Nodes that ignore soft requests: accepted, but the node stays up to the timeout.
    let (_, v) = post(
        &h,
        &format!("node/power?ids={}", enc("n[35-36]")),
        &json!({"action": "reboot", "mode": "soft", "timeout_secs": 3}),
    );
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["result"] == "soft timeout"),
        "{v}"
    );

    // Orphans on request, default policy: they reboot at once and come back.
    let (_, v) = post(
        &h,
        &format!("node/orphan?ids={}", enc("n[20-24]")),
        &json!({}),
    );
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["result"] == "orphaned"),
        "{v}"
    );
    wait_for(
        "the orphans did not reboot and come back",
        Duration::from_secs(20),
        || {
            let st = status(&h);
            let ids = boots(&h);
            (20..25).all(|i| {
                let name = format!("n{i}");
                by_name(&st, &name)["state"] == "up" && ids[&name] != after[&name]
            })
        },
        || format!("{:?}", status(&h)),
    );
    let st = status(&h);
    for i in 10..15 {
        let n = by_name(&st, &format!("n{i}"));
        assert_eq!(
            (&n["state"], &n["down_reason"]),
            (&json!("down"), &json!("clean shutdown")),
            "{n}"
        );
    }
    let summary = h.ok(&["node", "status"]);
    assert!(summary.contains("n[10-14]"), "{summary}");
}

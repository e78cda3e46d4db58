//! Runs the real `wulf-agent` binary against a small HTTP server on 127.0.0.1 standing in for
//! the head, and checks what the agent sends and what it does with the answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const UID: &str = "0123456789abcdef0123456789abcdef";
const CRED: &str = "c0ffee-credential";

/// One request the agent made.
#[derive(Debug)]
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Value,
    at: Instant,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The stand-in head: answers the n-th report (from 0) with `answer(n)` and passes every
/// report it read to the test. Command polls are answered with no commands after a second,
/// and not passed on.
struct Head {
    url: String,
    requests: Receiver<Request>,
}

impl Head {
    fn start(answer: impl Fn(usize) -> (u16, Value) + Send + 'static) -> Head {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut n = 0;
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let Some(req) = read_request(&stream) else {
                    continue;
                };
                if req.method == "GET" && req.path.starts_with("/api/v1/node/commands?") {
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_secs(1));
                        let mut w = &stream;
                        let _ = write!(
                            w,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]"
                        );
                    });
                    continue;
                }
                let (status, body) = answer(n);
                n += 1;
                let body = body.to_string();
                let mut w = &stream;
                let _ = write!(
                    w,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = w.flush();
                if tx.send(req).is_err() {
                    return;
                }
            }
        });
        Head { url, requests: rx }
    }

    fn next(&self, within: Duration) -> Request {
        self.requests
            .recv_timeout(within)
            .expect("a report from the agent in time")
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let at = Instant::now();
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        path,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at,
    })
}

fn reply(attrs: Value) -> (u16, Value) {
    (200, json!({"name": "n0", "attributes": attrs, "heads": []}))
}

fn agent_cmd(head: &str, state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wulf-agent"));
    c.args([
        "--head", head, "--node", UID, "--cred", CRED, "--log", "debug",
    ])
    .arg("--state-dir")
    .arg(state)
    .stdin(Stdio::null());
    c
}

/// Start the agent in the background with its stderr in `<state>/../agent.log`.
fn spawn(head: &str, state: &Path) -> Child {
    let log = std::fs::File::create(state.with_extension("log")).expect("log file");
    agent_cmd(head, state)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start wulf-agent")
}

fn log_of(state: &Path) -> String {
    std::fs::read_to_string(state.with_extension("log")).unwrap_or_default()
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let t = Instant::now();
    while t.elapsed() < within {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

fn signal(child: &Child, sig: i32) {
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

/// A state directory inside a temporary directory (its log file sits beside it).
fn state_dir(tmp: &tempfile::TempDir) -> std::path::PathBuf {
    let d = tmp.path().join("state");
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

fn read(p: &str) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {p}: {e}"))
        .trim()
        .to_string()
}

fn mem_total() -> u64 {
    let text = read("/proc/meminfo");
    let kb: u64 = text
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("MemTotal");
    kb * 1024
}

const INI_HEADER: &str =
    "# Written by wulf-agent from the head's answer; local changes are overwritten.\n";

#[test]
fn reports_to_the_head_and_shuts_down_cleanly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = state_dir(&tmp);
    // Left by an earlier run: applies until the head answers (not busy, whatever the load).
    std::fs::write(state.join("attributes.ini"), "[attributes]\n_busy=no\n").expect("write");
    let head = Head::start(|_| reply(json!({"_busy": "no", "_status_secs": "1", "rack": "7"})));
    let mut child = spawn(&head.url, &state);

    let r1 = head.next(Duration::from_secs(10));
    assert_eq!(r1.method, "POST");
    assert_eq!(r1.path, "/api/v1/node/status");
    let auth = format!("Bearer node:{UID}:{CRED}");
    assert_eq!(r1.header("authorization"), Some(auth.as_str()));
    assert_eq!(r1.header("content-type"), Some("application/json"));
    let b = &r1.body;
    assert_eq!(b["node"], UID);
    assert_eq!(b["state"], "up");
    assert_eq!(b["busy"], false);
    assert_eq!(b["interval_secs"], 10);
    assert!(b["uptime_secs"].as_f64().expect("uptime") > 0.0);
    assert_eq!(b["boot_id"], read("/proc/sys/kernel/random/boot_id"));
    assert_eq!(b["ram_total"], mem_total());
    let free = b["ram_free"].as_u64().expect("ram_free");
    assert!(free > 0 && free <= mem_total());
    assert_eq!(b["load"].as_array().map(Vec::len), Some(3));
    assert_eq!(b["hostname"], read("/proc/sys/kernel/hostname"));
    assert_eq!(b["kernel"], read("/proc/sys/kernel/osrelease"));
    let cmdline = b["cmdline"].as_str().expect("cmdline");
    assert!(!cmdline.is_empty() && !cmdline.contains(CRED));
    let modules: Vec<&str> = b["modules"]
        .as_array()
        .expect("modules")
        .iter()
        .map(|m| m.as_str().expect("module name"))
        .collect();
    assert!(modules.windows(2).all(|w| w[0] <= w[1]));
    assert!(
        ["enforcing", "permissive", "disabled"].contains(&b["selinux"].as_str().expect("selinux"))
    );
    // The first report carries the inventory.
    let hw = &b["hardware"];
    assert_eq!(hw["ram_total"], mem_total());
    assert!(hw["cpus"].as_u64().expect("cpus") >= 1);
    let nics = hw["nics"].as_array().expect("nics");
    assert!(nics.iter().all(|n| n["name"] != "lo"));
    let disks = hw["disks"].as_array().expect("disks");
    assert!(disks
        .iter()
        .all(|d| !d["name"].as_str().expect("name").starts_with("loop")));
    let cost = &b["agent"];
    assert_eq!(cost["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(cost["reports"], 0);

    // The answer set _status_secs=1: the next report comes a second later, not ten.
    let r2 = head.next(Duration::from_secs(5));
    let gap = r2.at - r1.at;
    assert!(
        gap >= Duration::from_millis(800) && gap < Duration::from_secs(3),
        "{gap:?}"
    );
    assert_eq!(r2.body["interval_secs"], 1);
    assert!(
        r2.body.get("hardware").is_none(),
        "hardware only in the first report"
    );
    assert!(r2.body["hostname"].is_string());
    let cost = &r2.body["agent"];
    assert_eq!(cost["reports"], 1);
    assert!(cost["wall_us"].as_u64().expect("wall") > 0);
    assert!(cost["worst_wall_us"].as_u64() >= cost["wall_us"].as_u64());
    assert!(cost["total_cpu_us"].as_u64().expect("cpu") >= cost["cpu_us"].as_u64().expect("cpu"));
    assert_eq!(
        std::fs::read_to_string(state.join("attributes.ini")).expect("attributes.ini"),
        format!("{INI_HEADER}[attributes]\n_busy=no\n_status_secs=1\nrack=7\n")
    );

    let r3 = head.next(Duration::from_secs(5));
    let gap = r3.at - r2.at;
    assert!(
        gap >= Duration::from_millis(800) && gap < Duration::from_secs(3),
        "{gap:?}"
    );
    assert!(r3.body.get("hardware").is_none());
    assert_eq!(r3.body["agent"]["reports"], 2);

    signal(&child, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    let last = loop {
        let r = head.next(deadline.saturating_duration_since(Instant::now()));
        if r.body["state"] != "up" {
            break r;
        }
    };
    assert_eq!(last.body["state"], "shutdown");
    assert_eq!(last.body["node"], UID);
    assert!(last.body.get("hardware").is_none());
    let status = wait_exit(&mut child, Duration::from_secs(5)).expect("agent exits");
    assert_eq!(status.code(), Some(0), "log:\n{}", log_of(&state));
    let log = log_of(&state);
    assert!(log.contains("sent the shutdown report"), "{log}");
    assert!(
        !log.contains(CRED),
        "the credential must not be logged:\n{log}"
    );
}

#[test]
fn busy_flag_then_attribute() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = state_dir(&tmp);
    std::fs::write(state.join("busy.flag"), "").expect("flag");
    let head = Head::start(|n| match n {
        0 => reply(json!({"_status_secs": "1"})),
        _ => reply(json!({"_status_secs": "1", "_busy": "No"})),
    });
    let mut child = spawn(&head.url, &state);

    // Busy (the flag file), but the first report carries everything: the head knows
    // nothing of this boot yet.
    let r1 = head.next(Duration::from_secs(10));
    let b = &r1.body;
    assert_eq!(b["busy"], true);
    assert_eq!(b["hostname"], read("/proc/sys/kernel/hostname"));
    assert!(b["uptime_secs"].as_f64().expect("uptime") > 0.0);
    assert_eq!(b["ram_total"], mem_total());
    assert!(b["hardware"].is_object());
    // Still busy (the flag file is there and _busy is not set): cheap fields only.
    let r2 = head.next(Duration::from_secs(5));
    assert_eq!(r2.body["busy"], true);
    for field in [
        "hostname", "kernel", "cmdline", "modules", "selinux", "hardware",
    ] {
        assert!(r2.body.get(field).is_none(), "{field} sent in busy mode");
    }
    // _busy=No wins over the flag file.
    let r3 = head.next(Duration::from_secs(5));
    assert_eq!(r3.body["busy"], false);
    assert_eq!(r3.body["hostname"], read("/proc/sys/kernel/hostname"));
    assert!(r3.body["modules"].is_array());

    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(5)).expect("agent exits");
    assert_eq!(status.code(), Some(0));
    assert!(log_of(&state).contains("busy mode on (the busy flag file)"));
}

#[test]
fn hardware_is_resent_until_a_report_with_it_succeeds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = state_dir(&tmp);
    let before = "[attributes]\n_status_secs=1\n";
    std::fs::write(state.join("attributes.ini"), before).expect("write");
    let head = Head::start(|n| match n {
        0 => (500, json!({"error": "the store is down"})),
        _ => reply(json!({"_status_secs": "1", "x": "y"})),
    });
    let mut child = spawn(&head.url, &state);
    let r1 = head.next(Duration::from_secs(10));
    assert!(r1.body["hardware"].is_object());
    // Retried on the next tick (one second), still with the inventory.
    let r2 = head.next(Duration::from_secs(5));
    assert!(r2.at - r1.at < Duration::from_secs(3));
    assert!(r2.body["hardware"].is_object());
    assert_eq!(r2.body["hardware"], r1.body["hardware"]);
    let r3 = head.next(Duration::from_secs(5));
    assert!(r3.body.get("hardware").is_none());
    assert_eq!(
        std::fs::read_to_string(state.join("attributes.ini")).expect("attributes.ini"),
        format!("{INI_HEADER}[attributes]\n_status_secs=1\nx=y\n")
    );
    signal(&child, libc::SIGTERM);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(5)).and_then(|s| s.code()),
        Some(0)
    );
    let log = log_of(&state);
    assert!(
        log.contains("HTTP 500") && log.contains("the store is down"),
        "{log}"
    );
}

#[test]
fn a_signal_wakes_the_sleep_at_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = state_dir(&tmp);
    // No _status_secs: ten seconds between reports.
    let head = Head::start(|_| reply(json!({})));
    let mut child = spawn(&head.url, &state);
    let r1 = head.next(Duration::from_secs(10));
    assert_eq!(r1.body["interval_secs"], 10);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    signal(&child, libc::SIGINT);
    let last = head.next(Duration::from_secs(3));
    assert_eq!(last.body["state"], "shutdown");
    let status = wait_exit(&mut child, Duration::from_secs(3)).expect("agent exits");
    assert_eq!(status.code(), Some(0));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn once_tries_the_heads_in_order_and_prints_the_answer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = state_dir(&tmp);
    // A port nobody listens on: connection refused.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let head = Head::start(|_| reply(json!({"rack": "12"})));
    let out = agent_cmd(&format!("{dead},{}", head.url), &state)
        .arg("--once")
        .output()
        .expect("run wulf-agent --once");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(answer["name"], "n0");
    assert_eq!(answer["attributes"], json!({"rack": "12"}));
    assert!(stderr.contains(&format!("cannot reach {dead}")), "{stderr}");
    let r = head.next(Duration::from_secs(1));
    assert!(r.body["hardware"].is_object());
    assert_eq!(
        std::fs::read_to_string(state.join("attributes.ini")).expect("attributes.ini"),
        format!("{INI_HEADER}[attributes]\nrack=12\n")
    );
}

#[test]
fn settings_from_agent_conf() {
    assert!(
        !read("/proc/cmdline").contains("wulf."),
        "this test needs a kernel command line without wulf.* settings (the agent reads them)"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = state_dir(&tmp);
    let head = Head::start(|_| reply(json!({})));
    std::fs::write(
        state.join("agent.conf"),
        format!(
            "# written by the initramfs\nhead={}\nnode={UID}\ncred={CRED}\n",
            head.url
        ),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_wulf-agent"))
        .arg("--once")
        .arg("--state-dir")
        .arg(&state)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = head.next(Duration::from_secs(1));
    let auth = format!("Bearer node:{UID}:{CRED}");
    assert_eq!(r.header("authorization"), Some(auth.as_str()));
    // A flag beats agent.conf.
    let out = Command::new(env!("CARGO_BIN_EXE_wulf-agent"))
        .args(["--once", "--node", "other-node", "--state-dir"])
        .arg(&state)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let r = head.next(Duration::from_secs(1));
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer node:other-node:{CRED}").as_str())
    );
    assert_eq!(r.body["node"], "other-node");
}

/// What the initramfs writes (`enroll=`): the agent trades the token for the credential at
/// its first start, keeps it (0600) and reports with it; restarted, it uses the kept one.
#[test]
fn enrolls_with_the_token_from_agent_conf_and_keeps_the_credential() {
    assert!(
        !read("/proc/cmdline").contains("wulf."),
        "this test needs a kernel command line without wulf.* settings (the agent reads them)"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = state_dir(&tmp);
    let cred_file = tmp.path().join("run/wulf/agent.cred");
    let head = Head::start(|n| match n {
        0 => (200, json!({"node": UID, "credential": "fresh-credential"})),
        _ => reply(json!({})),
    });
    std::fs::write(
        state.join("agent.conf"),
        format!(
            "# written by wulf-init at boot\nhead={}\nnode={UID}\nenroll=t0k3n\n",
            head.url
        ),
    )
    .expect("write");
    let once = || {
        Command::new(env!("CARGO_BIN_EXE_wulf-agent"))
            .arg("--once")
            .arg("--state-dir")
            .arg(&state)
            .arg("--cred-file")
            .arg(&cred_file)
            .output()
            .expect("run")
    };
    let out = once();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let r = head.next(Duration::from_secs(1));
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/api/v1/node/enroll")
    );
    assert_eq!(r.body, json!({"node": UID, "token": "t0k3n"}));
    assert_eq!(r.header("authorization"), None);
    let r = head.next(Duration::from_secs(1));
    assert_eq!(r.path, "/api/v1/node/status");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer node:{UID}:fresh-credential").as_str())
    );
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(&cred_file).expect("the credential is kept");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(read(cred_file.to_str().unwrap()).contains("cred=fresh-credential"));
    assert!(
        !stderr.contains("fresh-credential"),
        "the credential must not be logged: {stderr}"
    );

    // Restarted (the token is used up): the kept credential, no enrollment.
    let out = once();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("using the credential of this boot"),
        "{stderr}"
    );
    let r = head.next(Duration::from_secs(1));
    assert_eq!(r.path, "/api/v1/node/status");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer node:{UID}:fresh-credential").as_str())
    );
}

/// A refused enrollment says why and what to do, and reports nothing.
#[test]
fn a_refused_enrollment_is_explained() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = state_dir(&tmp);
    let cred_file = tmp.path().join("agent.cred");
    let head = Head::start(|_| {
        (
            403,
            json!({"error": "enrollment of n0 refused: the enrollment token was used already (each boot script's token enrolls once)"}),
        )
    });
    let out = Command::new(env!("CARGO_BIN_EXE_wulf-agent"))
        .args([
            "--once", "--head", &head.url, "--node", UID, "--enroll", "used",
        ])
        .arg("--state-dir")
        .arg(&state)
        .arg("--cred-file")
        .arg(&cred_file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused the enrollment (HTTP 403): enrollment of n0 refused: the enrollment token was used already"),
        "{stderr}"
    );
    assert!(stderr.contains("reboot the node"), "{stderr}");
    let r = head.next(Duration::from_secs(1));
    assert_eq!(r.path, "/api/v1/node/enroll");
    assert!(
        head.requests
            .recv_timeout(Duration::from_millis(300))
            .is_err(),
        "it reported"
    );
    assert!(!cred_file.exists());
}

#[test]
fn missing_settings_are_a_usage_error() {
    assert!(
        !read("/proc/cmdline").contains("wulf."),
        "this test needs a kernel command line without wulf.* settings (the agent reads them)"
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_wulf-agent"))
        .arg("--state-dir")
        .arg(tmp.path())
        .arg("--node")
        .arg(UID)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing head URL and enrollment token: give --head --enroll"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_wulf-agent"))
        .args(["--head", "https://h", "--node", "n", "--cred", "c"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_refused_credential_fails_the_report() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = state_dir(&tmp);
    let head = Head::start(|_| (401, json!({"error": "bad node credential"})));
    let out = agent_cmd(&head.url, &state)
        .arg("--once")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused the report (HTTP 401): bad node credential"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert!(!state.join("attributes.ini").exists());
}

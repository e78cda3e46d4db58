//! Test support: a wulf cluster of several heads sharing a 3-member etcd, every process in its
//! own network namespace on one lab bridge (see `netns`), so any one of them can be SIGKILLed
//! and restarted on its own.
//!
//! ```text
//!   lab bridge br0 (server namespace, {net}.1)
//!     ├── etcd m0 {net}.21:2379   ├── head-a {net}.11:8740
//!     ├── etcd m1 {net}.22:2379   ├── head-b {net}.12:8740
//!     ├── etcd m2 {net}.23:2379   ├── head-c {net}.13:8740
//!     └── clients (dhclient, udhcpc, perfdhcp, wulf sim) as the test adds them
//! ```
//!
//! Heads run the real `wulfd --store etcd://m0,m1,m2`; they are driven with the real `wulf`
//! CLI and `curl` run inside their namespaces, and etcd is read with `curl` on its JSON
//! gateway (`/v3/...`).
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::head::Head;
use crate::netns::Lab;

/// etcd members in a cluster.
pub const MEMBERS: usize = 3;

/// Fail (never skip) when a tool the fault tests use is missing.
pub fn need(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is missing: ./test.sh installs it (Debian package {package})"
    );
}

pub use crate::head::wait_for;

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One etcd member in its own namespace. Killed when dropped.
pub struct Member {
    pub name: String,
    pub ns: String,
    pub ip: String,
    initial_cluster: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// Keys and values read from etcd.
pub type Kvs = Vec<(String, Vec<u8>)>;

/// What `/v3/maintenance/status` says about a member.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberStatus {
    pub member_id: String,
    pub leader: String,
    pub revision: i64,
    pub raft_index: i64,
}

impl Member {
    pub fn client_url(&self) -> String {
        format!("http://{}:2379", self.ip)
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .unwrap();
        let client = self.client_url();
        let peer = format!("http://{}:2380", self.ip);
        // `ip netns exec` execs etcd: the child's pid is etcd's, so kill() reaches it.
        let mut cmd = Lab::cmd(&self.ns, "etcd");
        crate::head::etcd_member(
            &mut cmd,
            &self.name,
            &self.dir.path().join("data"),
            &client,
            &peer,
            &self.initial_cluster,
        );
        let child = cmd
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "wulf-faults"])
            .stderr(log)
            .spawn()
            .expect("etcd must be installed (./test.sh installs etcd-server)");
        self.child = Some(child);
    }

    /// SIGKILL: etcd gets no chance to flush or say goodbye to its peers.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Start again on the same data directory, and wait until it answers.
    pub fn restart(&mut self) {
        self.spawn();
        self.wait_healthy(Duration::from_secs(30));
    }

    /// Wait until the member answers `/health` with a leader.
    pub fn wait_healthy(&mut self, limit: Duration) {
        let t = Instant::now();
        loop {
            let (code, body) = self.curl_get("/health");
            if code == 200 && String::from_utf8_lossy(&body).contains("\"true\"") {
                return;
            }
            if let Some(st) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("etcd {} exited ({st}); log:\n{}", self.name, self.log());
            }
            assert!(
                t.elapsed() < limit,
                "etcd {} is not healthy after {limit:?}; log:\n{}",
                self.name,
                tail(&self.log(), 40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn curl_get(&self, path: &str) -> (u16, Vec<u8>) {
        curl_in(
            &self.ns,
            &["-m", "5", &format!("{}{path}", self.client_url())],
        )
    }

    /// POST a JSON body to the member's gateway (`/v3/...`); None if it does not answer 200.
    pub fn post(&self, path: &str, body: &Value) -> Option<Value> {
        let (code, out) = curl_in(
            &self.ns,
            &[
                "-m",
                "10",
                "-X",
                "POST",
                "--data-binary",
                &body.to_string(),
                &format!("{}{path}", self.client_url()),
            ],
        );
        if code != 200 {
            return None;
        }
        serde_json::from_slice(&out).ok()
    }

    pub fn status(&self) -> Option<MemberStatus> {
        let v = self.post("/v3/maintenance/status", &serde_json::json!({}))?;
        let num = |v: &Value| v.as_str().and_then(|s| s.parse().ok()).unwrap_or(0i64);
        Some(MemberStatus {
            member_id: v["header"]["member_id"].as_str()?.to_string(),
            leader: v["leader"].as_str()?.to_string(),
            revision: num(&v["header"]["revision"]),
            raft_index: num(&v["raftIndex"]),
        })
    }

    /// Every key and value under `prefix`, read from this member's own copy (a serializable
    /// read: no round trip to the leader), with the revision it was read at.
    pub fn local_range(&self, prefix: &str) -> Option<(i64, Kvs)> {
        let v = self.post(
            "/v3/kv/range",
            &serde_json::json!({
                "key": b64(prefix.as_bytes()),
                "range_end": b64(&prefix_end(prefix.as_bytes())),
                "serializable": true,
            }),
        )?;
        let rev = v["header"]["revision"].as_str()?.parse().ok()?;
        let kvs = v["kvs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|kv| {
                        (
                            String::from_utf8(unb64(kv["key"].as_str().unwrap_or(""))).unwrap(),
                            unb64(kv["value"].as_str().unwrap_or("")),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some((rev, kvs))
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Which of `etcd` is the leader, as the running members report it.
pub fn leader(etcd: &[Member]) -> Option<usize> {
    let id = etcd
        .iter()
        .filter(|m| m.running())
        .find_map(|m| m.status())?
        .leader;
    etcd.iter()
        .position(|m| m.running() && m.status().is_some_and(|s| s.member_id == id))
}

/// `curl` inside namespace `ns`; returns (HTTP status, body); status 0 when nothing answered.
pub fn curl_in(ns: &str, args: &[&str]) -> (u16, Vec<u8>) {
    let out = Lab::cmd(ns, "curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("curl must be installed (./test.sh installs it)");
    let mut body = out.stdout;
    let Some(pos) = body.iter().rposition(|b| *b == b'\n') else {
        return (0, body);
    };
    let code = String::from_utf8_lossy(&body[pos + 1..])
        .trim()
        .parse()
        .unwrap_or(0);
    body.truncate(pos);
    (code, body)
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn b64(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn unb64(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let Some(v) = B64.iter().position(|&x| x == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// The end of etcd's range for every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// How the test reaches a head without borrowing its `Head` (which the fault thread kills
/// and restarts): its namespace, where `wulf` and `curl` run against 127.0.0.1:8740.
#[derive(Clone, Debug)]
pub struct Ep {
    pub name: String,
    pub ns: String,
    pub ip: String,
    pub token: String,
    /// The cluster CA the CLI and curl check the head against.
    pub ca: std::path::PathBuf,
}

impl Ep {
    /// Run the real `wulf` CLI against this head (killed after 30 s, so a hung request
    /// cannot hang the test).
    pub fn wulf(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["-s", "KILL", "30", "ip", "netns", "exec", &self.ns])
            .arg(crate::head::wulf_bin())
            .args(args)
            .env("WULF_URL", "https://127.0.0.1:8740")
            .env("WULF_CA", &self.ca)
            .env("WULF_TOKEN", &self.token)
            .env("HOME", "/nonexistent")
            .env_remove("WULF_DATA_DIR")
            .env_remove("WULF_CONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `wulf ARGS --json`, parsed; None if it failed.
    pub fn json(&self, args: &[&str]) -> Option<Value> {
        let mut a = args.to_vec();
        a.push("--json");
        let o = self.wulf(&a);
        if !o.status.success() {
            return None;
        }
        serde_json::from_slice(&o.stdout).ok()
    }

    /// A REST call with curl: (HTTP status, body); 0 when the head did not answer.
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Vec<u8>) {
        let url = format!("https://127.0.0.1:8740/api/v1{path}");
        let auth = format!("Authorization: Bearer {}", self.token);
        let data = body.map(|b| b.to_string());
        let ca = self.ca.display().to_string();
        let mut args = vec!["-m", "30", "-g", "--cacert", &ca, "-X", method, "-H", &auth];
        if let Some(d) = &data {
            args.extend(["-H", "Content-Type: application/json", "--data-binary", d]);
        }
        args.push(&url);
        curl_in(&self.ns, &args)
    }
}

/// A cluster: 3 etcd members, heads added with `add_head`, all on one lab bridge.
pub struct Cluster {
    // Dropped in this order: heads, then etcd, then the namespaces.
    pub heads: Vec<Head>,
    pub etcd: Vec<Member>,
    pub lab: Lab,
    /// Every head's `Ep`, by position.
    pub eps: Vec<Ep>,
    /// Config text every head gets after its name and store.
    head_config: String,
}

impl Cluster {
    /// A lab on `{net}.0/24` with 3 etcd members started and healthy; `head_config` is added
    /// to every head's config file.
    pub fn new(net: &str, head_config: &str) -> Cluster {
        need("etcd", "etcd-server");
        need("curl", "curl");
        need("ip", "iproute2");
        let mut lab = Lab::new(net);
        let names: Vec<String> = (0..MEMBERS).map(|i| format!("m{i}")).collect();
        let ips: Vec<String> = (0..MEMBERS).map(|i| format!("{net}.{}", 21 + i)).collect();
        let initial_cluster = names
            .iter()
            .zip(&ips)
            .map(|(n, ip)| format!("{n}=http://{ip}:2380"))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Vec::new();
        for (i, (name, ip)) in names.iter().zip(&ips).enumerate() {
            let ns = lab.client(&format!("02:79:00:00:02:{:02x}", 0x21 + i));
            lab.with_addr(&ns, &format!("{ip}/24"));
            let mut m = Member {
                name: name.clone(),
                ns,
                ip: ip.clone(),
                initial_cluster: initial_cluster.clone(),
                dir: tempfile::tempdir().unwrap(),
                child: None,
            };
            m.spawn();
            etcd.push(m);
        }
        for m in &mut etcd {
            m.wait_healthy(Duration::from_secs(30));
        }
        Cluster {
            heads: Vec::new(),
            etcd,
            lab,
            eps: Vec::new(),
            head_config: head_config.to_string(),
        }
    }

    /// `etcd://m0,m1,m2` as heads are given it.
    pub fn store(&self) -> String {
        let eps: Vec<String> = self.etcd.iter().map(|m| format!("{}:2379", m.ip)).collect();
        format!("etcd://{}", eps.join(","))
    }

    /// Start the next head (head-a, head-b, …) at `{net}.11`, `.12`, … in its own namespace.
    pub fn add_head(&mut self) -> usize {
        let i = self.heads.len();
        let name = format!("head-{}", (b'a' + i as u8) as char);
        let ip = format!("{}.{}", self.lab.net, 11 + i);
        let ns = self.lab.client(&format!("02:79:00:00:01:{:02x}", 0x11 + i));
        self.lab.with_addr(&ns, &format!("{ip}/24"));
        let config = format!(
            "head_name = \"{name}\"\nstore = \"{}\"\n{}",
            self.store(),
            self.head_config
        );
        let head = Head::start_in(&ns, &config);
        let token = head.token();
        if let Some(first) = self.eps.first() {
            assert_eq!(first.token, token, "one admin token for the cluster");
        }
        let ca = head.ca();
        self.heads.push(head);
        self.eps.push(Ep {
            name,
            ns,
            ip,
            token,
            ca,
        });
        i
    }

    /// The member etcd currently follows as its leader (asked of the members that answer).
    pub fn leader(&self) -> Option<usize> {
        leader(&self.etcd)
    }

    /// Every head's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for (h, ep) in self.heads.iter().zip(&self.eps) {
            s += &format!(
                "---- {} log (last 60 lines):\n{}\n",
                ep.name,
                tail(&h.log(), 60)
            );
        }
        for m in &self.etcd {
            s += &format!(
                "---- etcd {} log (last 20 lines):\n{}\n",
                m.name,
                tail(&m.log(), 20)
            );
        }
        s
    }
}

/// The full path of a program (for scripts run by daemons with a minimal PATH).
pub fn which(tool: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// isc-dhcp-client's dhclient running in a namespace for as long as this lives: it gets a
/// lease, configures it on eth0 (so it can renew by unicast, as a real client does) and
/// renews and rebinds on its own. Every event its script sees is kept.
pub struct Dhclient {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Dhclient {
    pub fn start(ns: &str) -> Dhclient {
        need("dhclient", "isc-dhcp-client");
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("events");
        let script = dir.path().join("script.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n\
                 echo \"$reason ${{new_ip_address:-}} ${{new_dhcp_server_identifier:-}} \
                 ${{new_dhcp_lease_time:-}}\" >> {events}\n\
                 case \"$reason\" in\n\
                 PREINIT) {ip} link set eth0 up ;;\n\
                 BOUND|RENEW|REBIND|REBOOT) {ip} addr replace \"$new_ip_address/24\" dev eth0 ;;\n\
                 EXPIRE|FAIL|RELEASE|STOP) {ip} addr flush dev eth0 ;;\n\
                 esac\n\
                 exit 0\n",
                events = events.display(),
                ip = which("ip"),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let conf = dir.path().join("dhclient.conf");
        // Retransmit every second or so (renewals too), so a renewal that gets no answer
        // reaches the rebinding broadcast on time.
        std::fs::write(
            &conf,
            "timeout 60;\ninitial-interval 1;\nbackoff-cutoff 1;\n\
             request subnet-mask, routers, domain-name, host-name;\n",
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("dhclient.log")).unwrap();
        let child = Lab::cmd(ns, "dhclient")
            .args(["-d", "-v", "-cf"])
            .arg(&conf)
            .arg("-sf")
            .arg(&script)
            .arg("-lf")
            .arg(dir.path().join("leases"))
            .arg("-pf")
            .arg(dir.path().join("pid"))
            .arg("eth0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Dhclient {
            child: Some(child),
            dir,
        }
    }

    pub fn events(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("events"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Events as (reason, ip, server, lease).
    pub fn parsed(&self) -> Vec<(String, String, String, String)> {
        self.events()
            .iter()
            .map(|l| {
                let mut f = l.split(' ').map(str::to_string);
                let mut next = || f.next().unwrap_or_default();
                (next(), next(), next(), next())
            })
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dhclient.log")).unwrap_or_default()
    }
}

impl Drop for Dhclient {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A child process killed when dropped, with its stderr kept in a file.
pub struct Proc {
    pub child: Child,
    pub log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    /// Run `program args` in namespace `ns`, stderr to a log file.
    pub fn start(ns: &str, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Proc {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stderr.log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Proc {
            child,
            log,
            _dir: dir,
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

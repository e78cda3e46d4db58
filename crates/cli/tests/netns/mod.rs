//! Test support: private networks made of network namespaces, so network tests touch nothing
//! outside the machine. A `Lab` is one "server" namespace holding a bridge (`br0`, the
//! cluster's private network, head address `.1`) plus any number of client namespaces, each
//! wired to the bridge by a veth pair. Everything is removed on drop, with every process
//! still running inside.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Run a command, panicking with its output if it fails.
pub fn sh(cmd: &str) -> Output {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// True when this process may create namespaces (root with `ip`).
pub fn can_netns() -> bool {
    (unsafe { libc::geteuid() }) == 0 && Command::new("ip").arg("-V").output().is_ok()
}

pub struct Lab {
    /// The server namespace (where wulfd runs).
    pub srv: String,
    /// Client namespaces created so far.
    pub clients: Vec<String>,
    /// First three octets of the private network, e.g. "10.77.0".
    pub net: String,
    tag: String,
}

impl Lab {
    /// A new lab with private network `{net}.0/24`; the head is `{net}.1` on `br0`.
    pub fn new(net: &str) -> Lab {
        assert!(
            can_netns(),
            "network tests need root and iproute2 (CI runs ./test.sh as root)"
        );
        let tag = format!(
            "w{}x{}",
            std::process::id() % 100_000,
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let srv = format!("{tag}s");
        sh(&format!("ip netns add {srv}"));
        let lab = Lab {
            srv: srv.clone(),
            clients: Vec::new(),
            net: net.to_string(),
            tag,
        };
        sh(&format!(
            "ip -n {srv} link set lo up && ip -n {srv} link add br0 type bridge && \
             ip -n {srv} link set br0 type bridge stp_state 0 forward_delay 0 && \
             ip -n {srv} addr add {net}.1/24 dev br0 && ip -n {srv} link set br0 up"
        ));
        lab
    }

    /// The head's address on the private network.
    pub fn head_ip(&self) -> String {
        format!("{}.1", self.net)
    }

    /// A new client namespace with interface `eth0` (MAC `mac`) on the bridge. No address:
    /// the client gets one by DHCP (or `with_addr`).
    pub fn client(&mut self, mac: &str) -> String {
        let n = self.clients.len();
        let ns = format!("{}c{n}", self.tag);
        let host_end = format!("{}v{n}", self.tag);
        sh(&format!("ip netns add {ns}"));
        sh(&format!(
            "ip -n {srv} link add {host_end} type veth peer name eth0 netns {ns} && \
             ip -n {srv} link set {host_end} master br0 && ip -n {srv} link set {host_end} up && \
             ip -n {ns} link set lo up && ip -n {ns} link set eth0 address {mac} && \
             ip -n {ns} link set eth0 up",
            srv = self.srv
        ));
        self.clients.push(ns.clone());
        ns
    }

    /// Give a client a static address (for relays and tools that need one).
    pub fn with_addr(&self, ns: &str, cidr: &str) {
        sh(&format!("ip -n {ns} addr add {cidr} dev eth0"));
    }

    /// A tap interface in the server namespace, on the bridge, for a QEMU NIC.
    pub fn tap(&self, name: &str) -> String {
        sh(&format!(
            "ip -n {srv} tuntap add dev {name} mode tap && ip -n {srv} link set {name} master br0 && \
             ip -n {srv} link set {name} up",
            srv = self.srv
        ));
        name.to_string()
    }

    /// A command that runs inside namespace `ns`.
    pub fn cmd(ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }

    fn cleanup_ns(ns: &str) {
        // Kill everything still running in the namespace, then remove it.
        if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(p) = pid.parse::<i32>() {
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        let _ = Command::new("ip").args(["netns", "del", ns]).output();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &self.clients {
            Self::cleanup_ns(c);
        }
        Self::cleanup_ns(&self.srv);
    }
}

/// `/etc/netns/<ns>/resolv.conf` (what `ip netns exec` shows as /etc/resolv.conf), removed
/// on drop (with /etc/netns if this made it and it is empty).
pub struct NsResolvConf {
    dir: PathBuf,
    made_parent: bool,
}

impl NsResolvConf {
    pub fn new(ns: &str, text: &str) -> NsResolvConf {
        let parent = PathBuf::from("/etc/netns");
        let made_parent = !parent.exists();
        let dir = parent.join(ns);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("resolv.conf"), text).unwrap();
        NsResolvConf { dir, made_parent }
    }
}

impl Drop for NsResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if self.made_parent {
            let _ = std::fs::remove_dir("/etc/netns");
        }
    }
}

/// The `NAME=value` lines a DHCP client's script wrote (`env`), quotes trimmed.
pub fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

/// Run busybox udhcpc in `ns` (on its eth0) with `extra` arguments until it gets a lease
/// (Some: the variables its script got) or gives up after `tries` DISCOVERs a second apart
/// (None).
pub fn udhcpc(ns: &str, tries: u32, extra: &[&str]) -> Option<HashMap<String, String>> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bound.env");
    let s = dir.path().join("udhcpc.sh");
    std::fs::write(
        &s,
        format!(
            "#!/bin/sh\n[ \"$1\" = bound ] && env > {o}.tmp && mv {o}.tmp {o}\nexit 0\n",
            o = out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o755)).unwrap();
    let tries = tries.to_string();
    let status = Command::new("timeout")
        .args(["-s", "KILL", "40", "ip", "netns", "exec", ns])
        .args([
            "busybox", "udhcpc", "-n", "-q", "-f", "-i", "eth0", "-T", "1", "-A", "1",
        ])
        .args(["-t", &tries])
        .arg("-s")
        .arg(&s)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let env = std::fs::read_to_string(&out).ok().map(|t| parse_env(&t));
    assert_eq!(
        status.success(),
        env.is_some(),
        "udhcpc exit {status} vs lease {env:?}"
    );
    env
}

/// curl (from namespace `ns`, with `extra` arguments) of `url`: the HTTP status and the body.
pub fn curl(ns: &str, extra: &[&str], url: &str) -> (u16, String) {
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "curl",
            "-s",
            "-m",
            "20",
            "-w",
            "\n%{http_code}",
        ])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl runs (./test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

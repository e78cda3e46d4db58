//! Test support: start the real `wulfd` binary on a free port in a temporary data directory
//! and drive it with the real `wulf` binary.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn wulf_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wulf"))
}

/// `wulfd` sits beside `wulf` in the target directory (`cargo build --workspace` builds it).
pub fn wulfd_bin() -> PathBuf {
    let p = wulf_bin().with_file_name("wulfd");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` first",
        p.display()
    );
    p
}

/// Add an etcd member's flags to `cmd` (`etcd`, or `ip netns exec NS etcd`): its name, data
/// directory, client and peer URLs, the initial cluster, the limits wulf's bulk writes need
/// and quiet logs. Flags added after these override them.
pub fn etcd_member(
    cmd: &mut Command,
    name: &str,
    data: &Path,
    client: &str,
    peer: &str,
    initial_cluster: &str,
) {
    cmd.args(["--name", name, "--data-dir"])
        .arg(data)
        .args([
            "--listen-client-urls",
            client,
            "--advertise-client-urls",
            client,
        ])
        .args([
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
        ])
        .args(["--initial-cluster", initial_cluster])
        .args(["--max-txn-ops", "65536", "--max-request-bytes", "16777216"])
        .args(["--log-level", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
}

/// One etcd member on loopback (Debian's etcd-server), killed when dropped.
pub struct Etcd {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Etcd {
    pub fn start() -> Etcd {
        Self::start_with(&[])
    }

    /// One member with `extra` flags (e.g. a space quota).
    pub fn start_with(extra: &[&str]) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (port, peer) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{port}");
        let peer = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let mut cmd = Command::new("etcd");
        etcd_member(
            &mut cmd,
            "m0",
            &dir.path().join("data"),
            &client,
            &peer,
            &format!("m0={peer}"),
        );
        let child = cmd
            .args(extra)
            .stderr(log)
            .spawn()
            .expect("etcd must be installed (./test.sh installs etcd-server)");
        wait_for(
            "etcd did not start listening",
            Duration::from_secs(30),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            String::new,
        );
        Etcd {
            child,
            port,
            _dir: dir,
        }
    }

    /// `--store` for wulfd.
    pub fn store(&self) -> String {
        format!("etcd://127.0.0.1:{}", self.port)
    }

    /// Every key under `prefix` with its value and the revision it was last written at, read
    /// with curl through etcd's JSON gateway: what a refused request must leave as it was.
    pub fn range(&self, prefix: &str) -> Vec<(String, Vec<u8>, i64)> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut end = prefix.as_bytes().to_vec();
        *end.last_mut().expect("a prefix") += 1;
        let body = serde_json::json!({"key": b64.encode(prefix), "range_end": b64.encode(&end)});
        let out = Command::new("curl")
            .args(["-sSf", "-m", "10", "-X", "POST", "--data-binary"])
            .arg(body.to_string())
            .arg(format!("http://127.0.0.1:{}/v3/kv/range", self.port))
            .output()
            .expect("curl must be installed (./test.sh installs it)");
        assert!(out.status.success(), "etcd range {prefix}: {out:?}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let field = |kv: &Value, k: &str| b64.decode(kv[k].as_str().unwrap_or("")).unwrap();
        v["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .map(|kv| {
                        (
                            String::from_utf8(field(kv, "key")).unwrap(),
                            field(kv, "value"),
                            kv["mod_revision"].as_str().unwrap().parse().unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `ok` every 20 ms until it holds; panic with `what` (and `why()`) after `limit`.
/// Returns how long it took.
pub fn wait_for(
    what: &str,
    limit: Duration,
    ok: impl FnMut() -> bool,
    why: impl Fn() -> String,
) -> Duration {
    wait_every(what, limit, Duration::from_millis(20), ok, why)
}

/// [`wait_for`], polling every `every` (for checks that cost the head something).
pub fn wait_every(
    what: &str,
    limit: Duration,
    every: Duration,
    mut ok: impl FnMut() -> bool,
    why: impl Fn() -> String,
) -> Duration {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "{what} (waited {limit:?})\n{}", why());
        std::thread::sleep(every);
    }
    t.elapsed()
}

/// The SHA-256 fingerprint of a PEM certificate's DER in lower-case hex (what `wulf.ca=`
/// carries), computed by openssl.
pub fn pem_fingerprint(pem: &[u8]) -> String {
    use std::io::Write;
    let mut c = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl must be installed (./test.sh installs it)");
    c.stdin.take().unwrap().write_all(pem).unwrap();
    let out = c.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (_, hex) = text
        .trim()
        .split_once('=')
        .unwrap_or_else(|| panic!("openssl: no fingerprint in {text:?}"));
    hex.replace(':', "").to_ascii_lowercase()
}

/// The fingerprint of the CA the head at `url` (https:// or http://) serves at
/// `/boot/ca.pem`, fetched with curl over plain HTTP as a node does.
pub fn ca_pin_at(url: &str) -> String {
    let base = url.replacen("https://", "http://", 1);
    let out = Command::new("curl")
        .args(["-sSf", &format!("{base}/boot/ca.pem")])
        .output()
        .expect("curl must be installed (./test.sh installs it)");
    assert!(out.status.success(), "curl {base}/boot/ca.pem failed");
    pem_fingerprint(&out.stdout)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Head {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub child: Option<Child>,
    pub extra_args: Vec<String>,
    /// The network namespace wulfd (and the CLI and curl driving it) run in, if any.
    pub ns: Option<String>,
}

/// `program`, run inside `ns` when given.
pub fn in_ns(ns: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

impl Head {
    pub fn start() -> Head {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Head {
        let mut h = Head {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            child: None,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            ns: None,
        };
        h.spawn();
        h
    }

    /// Start wulfd inside network namespace `ns` with this config file text (data_dir and
    /// listen are set by the harness).
    pub fn start_in(ns: &str, config: &str) -> Head {
        Self::start_configured(Some(ns), config, &[])
    }

    /// Start wulfd with this config file text, kept in the head's own directory so it lasts
    /// through restarts, and `extra` flags; inside `ns` when given (then on port 8740).
    pub fn start_configured(ns: Option<&str>, config: &str, extra: &[&str]) -> Head {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("wulfd.toml");
        std::fs::write(&cfg, config).unwrap();
        let mut extra_args = vec!["--config".to_string(), cfg.display().to_string()];
        extra_args.extend(extra.iter().map(|s| s.to_string()));
        let mut h = Head {
            dir,
            port: if ns.is_some() { 8740 } else { free_port() },
            child: None,
            extra_args,
            ns: ns.map(str::to_string),
        };
        h.spawn();
        h
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The API's URL (HTTPS; the CLI and curl check the head's certificate against
    /// [`Head::ca`]).
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The plain-HTTP URL of the same port, for what firmware fetches (`/boot/…`).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The cluster CA certificate the head wrote.
    pub fn ca(&self) -> PathBuf {
        self.data().join("tls/ca.pem")
    }

    /// The SHA-256 fingerprint of the cluster CA (`wulf.ca=`, the agent's `--ca`).
    pub fn ca_pin(&self) -> String {
        pem_fingerprint(&std::fs::read(self.ca()).unwrap())
    }

    pub fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("wulfd.log")).unwrap();
        let child = in_ns(self.ns.as_deref(), wulfd_bin())
            .arg("--data-dir")
            .arg(self.data())
            .arg("--listen")
            // In a lab namespace the head serves its private network too.
            .arg(match self.ns {
                Some(_) => format!("0.0.0.0:{}", self.port),
                None => format!("127.0.0.1:{}", self.port),
            })
            .args(["--log", "info,wulfd=debug"])
            .args(&self.extra_args)
            .env_remove("WULFD_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.data().join("wulfd.url").exists() && self.wulf(&["info"]).status.success() {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("wulfd exited early ({st}); log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "wulfd did not come up; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("wulfd.log")).unwrap_or_default()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "wulfd did not stop on SIGTERM");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data().join("admin.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Run `wulf` the way an admin on the head would: it finds the head and the token
    /// through the data directory.
    pub fn wulf(&self, args: &[&str]) -> Output {
        self.wulf_stdin(args, None)
    }

    pub fn wulf_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut cmd = in_ns(self.ns.as_deref(), wulf_bin());
        cmd.args(args)
            .env("WULF_DATA_DIR", self.data())
            .env("HOME", self.dir.path())
            .env_remove("WULF_URL")
            .env_remove("WULF_TOKEN")
            .env_remove("WULF_CONFIG")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Run `wulf` and expect success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.wulf(args);
        assert!(
            o.status.success(),
            "wulf {args:?} failed ({}):\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Run `wulf` expecting exit code `code`; returns stderr.
    pub fn fails(&self, code: i32, args: &[&str]) -> String {
        let o = self.wulf(args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "wulf {args:?}: expected exit {code}; stdout:\n{}stderr:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stderr).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// Every object of every kind, for "nothing changed" checks.
    pub fn snapshot(&self) -> Value {
        let kinds = [
            "node", "attrib", "boot", "image", "pool", "net", "host", "cluster",
        ];
        Value::Array(kinds.iter().map(|k| self.json(&[k, "ls"])).collect())
    }

    /// The revision of the head's last object change: what a refused request must leave as
    /// it was (the store's own revision also moves with status and log lines, written on their
    /// own schedule).
    pub fn revision(&self) -> i64 {
        self.json(&["info"])["objects_revision"].as_i64().unwrap()
    }

    /// `curl` (a real HTTP client we did not write) against the head, checking its
    /// certificate against the cluster CA; returns (status, body).
    pub fn curl(&self, args: &[&str]) -> (u16, Vec<u8>) {
        let out = in_ns(self.ns.as_deref(), "curl")
            .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(self.ca())
            .args(args)
            .output()
            .expect("curl must be installed (./test.sh installs it)");
        let mut body = out.stdout;
        let pos = body.iter().rposition(|b| *b == b'\n').unwrap();
        let code: u16 = String::from_utf8_lossy(&body[pos + 1..])
            .trim()
            .parse()
            .unwrap();
        body.truncate(pos);
        (code, body)
    }

    /// POST `body` as JSON to `path` (under the API URL) with curl, with `Authorization: Bearer
    /// TOKEN` when a token is given; returns (status, body as text).
    pub fn post_json(&self, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
        let header = token.map(|t| format!("Authorization: Bearer {t}"));
        let url = format!("{}{path}", self.url());
        let mut args = vec![
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ];
        if let Some(hd) = &header {
            args.extend(["-H", hd.as_str()]);
        }
        args.push(&url);
        let (code, out) = self.curl(&args);
        (code, String::from_utf8_lossy(&out).into_owned())
    }

    /// Fetch the boot script of `mac` as its firmware would (with curl) and return the value
    /// of each `wulf.NAME=VALUE` parameter in it (with a one-time enrollment token, not yet
    /// used).
    pub fn script_params(&self, mac: &str) -> std::collections::BTreeMap<String, String> {
        let (code, script) = self.curl(&[&format!("{}/boot/ipxe?mac={mac}", self.http_url())]);
        assert_eq!(code, 200);
        let script = String::from_utf8(script).unwrap();
        let p: std::collections::BTreeMap<String, String> = script
            .split_whitespace()
            .filter_map(|t| t.strip_prefix("wulf.")?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(
            p.contains_key("enroll"),
            "no enrollment token in:\n{script}"
        );
        assert!(!p.contains_key("cred"), "a credential in:\n{script}");
        p
    }

    /// `POST /api/v1/node/enroll {node, token}` with curl over HTTPS (the cluster CA checked);
    /// returns (status, body).
    pub fn enroll_with(&self, node: &str, token: &str) -> (u16, String) {
        let body = serde_json::json!({ "node": node, "token": token }).to_string();
        let (code, out) = self.curl(&[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            &body,
            &format!("{}/api/v1/node/enroll", self.url()),
        ]);
        (code, String::from_utf8_lossy(&out).into_owned())
    }

    /// Boot `mac` as its firmware would and enroll as its agent would (both with curl): the
    /// boot script's parameters, with the node's credential of this boot as `cred` (its
    /// enrollment token is used up).
    pub fn boot_params(&self, mac: &str) -> std::collections::BTreeMap<String, String> {
        let mut p = self.script_params(mac);
        let (code, body) = self.enroll_with(&p["node"], &p["enroll"]);
        assert_eq!(code, 200, "enrollment of {mac} refused: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        p.insert("cred".into(), v["credential"].as_str().unwrap().to_string());
        p
    }

    /// `wulf head ls` as (name, state) pairs.
    pub fn head_states(&self) -> Vec<(String, String)> {
        self.json(&["head", "ls"])
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["name"].as_str().unwrap().to_string(),
                    v["state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    pub fn auth(&self) -> String {
        format!("Authorization: Bearer {}", self.token())
    }

    /// Every file under DATA/blobs (the stored files and uploads in progress) with its size,
    /// sorted: what a failed upload must leave as it was.
    pub fn blob_listing(&self) -> Vec<(String, u64)> {
        let root = self.data().join("blobs");
        let mut out = Vec::new();
        for sub in ["sha256", "tmp"] {
            for e in std::fs::read_dir(root.join(sub)).unwrap() {
                let e = e.unwrap();
                let name = format!("{sub}/{}", e.file_name().to_string_lossy());
                out.push((name, e.metadata().unwrap().len()));
            }
        }
        out.sort();
        out
    }
}

impl Drop for Head {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A background child (`wulf sim`, from [`Head::sim`]), killed and waited for when the
/// test ends, passing or not.
pub struct Sim(pub Option<Child>);

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Head {
    /// `wulf sim ARGS` against this head in the background, its stderr in DIR/sim.log.
    pub fn sim(&self, args: &[&str]) -> Sim {
        let log = std::fs::File::create(self.dir.path().join("sim.log")).unwrap();
        Sim(Some(
            Command::new(wulf_bin())
                .arg("sim")
                .args(args)
                .env("WULF_DATA_DIR", self.data())
                .env("HOME", self.dir.path())
                .env_remove("WULF_URL")
                .env_remove("WULF_TOKEN")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        ))
    }
}

pub fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect()
}

pub fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// `prog` must be on PATH (./test.sh installs it, as `how` says).
pub fn need_program(prog: &str, how: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()));
    assert!(
        found,
        "{prog} is not installed: ./test.sh installs it ({how})"
    );
}

/// Run `cmd`, which must succeed; its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Head {
    /// `wulf initramfs build` from the kernel tree `kroot` (modules of `kver`) into `out`,
    /// with `extra` flags (`--boot NAME` uploads it to that boot config): its output.
    pub fn build_initramfs(&self, kroot: &Path, kver: &str, out: &Path, extra: &[&str]) -> String {
        let mut args = vec![
            "initramfs",
            "build",
            "--kernel-version",
            kver,
            "--root",
            kroot.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    /// The paths in image `name`'s content (downloaded and listed with tar).
    pub fn image_listing(&self, name: &str) -> Vec<String> {
        let dl = self.dir.path().join(format!("{name}.tar.gz"));
        self.ok(&[
            "image",
            "-i",
            name,
            "download",
            "content",
            "-o",
            dl.to_str().unwrap(),
        ]);
        let list = run_ok(Command::new("tar").arg("-tzf").arg(&dl));
        std::fs::remove_file(&dl).unwrap();
        list.lines()
            .map(|l| l.trim_end_matches('/').trim_start_matches("./").to_string())
            .collect()
    }
}

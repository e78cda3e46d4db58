//! sushy-tools' Redfish emulator (PyPI `sushy-tools`) with its fake driver (no libvirt), over
//! HTTPS with a certificate from a throwaway CA made by `openssl`, behind Basic
//! authentication (an htpasswd file with a bcrypt hash, the only kind it takes).
//!
//! ./test.sh installs sushy-tools into a virtualenv at [`VENV`]; when that is missing the
//! harness installs it the same way.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::in_ns;
use crate::head::run_ok as run;

/// Where ./test.sh puts the virtualenv.
pub const VENV: &str = "/opt/wulf-test/sushy";

/// The `sushy-emulator` program, installed when missing.
pub fn emulator() -> PathBuf {
    let bin = Path::new(VENV).join("bin/sushy-emulator");
    if !bin.exists() {
        // The same steps as ./test.sh.
        std::fs::create_dir_all(Path::new(VENV).parent().unwrap()).unwrap();
        run(Command::new("/usr/bin/python3").args(["-m", "venv", VENV]));
        run(Command::new(Path::new(VENV).join("bin/pip")).args(["install", "-q", "sushy-tools"]));
    }
    assert!(
        bin.exists(),
        "{} is missing after installing",
        bin.display()
    );
    bin
}

/// A CA and a certificate it signed for `ip` (as a site would have for its BMCs).
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn make_certs(dir: &Path, ip: &str) -> Certs {
    let ossl = |args: &[&str]| {
        run(Command::new("openssl").args(args).current_dir(dir));
    };
    ossl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=wulf test BMC CA",
    ]);
    ossl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "bmc.key",
        "-out",
        "bmc.csr",
        "-subj",
        "/CN=bmc.test",
    ]);
    std::fs::write(
        dir.join("bmc.ext"),
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=IP:{ip},DNS:bmc.test\n"
        ),
    )
    .unwrap();
    ossl(&[
        "x509",
        "-req",
        "-in",
        "bmc.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "bmc.pem",
        "-days",
        "2",
        "-extfile",
        "bmc.ext",
    ]);
    Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("bmc.pem"),
        key: dir.join("bmc.key"),
    }
}

/// One fake system of the emulator.
pub struct FakeSystem<'a> {
    pub uuid: &'a str,
    pub name: &'a str,
    pub on: bool,
}

/// A running sushy-emulator, killed on drop.
pub struct Sushy {
    pub ns: Option<String>,
    pub ip: String,
    pub port: u16,
    pub user: String,
    pub pass: String,
    pub certs: Certs,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Sushy {
    pub fn start(
        ns: Option<&str>,
        dir: &Path,
        ip: &str,
        port: u16,
        user: &str,
        pass: &str,
        systems: &[FakeSystem<'_>],
    ) -> Sushy {
        let bin = emulator();
        std::fs::create_dir_all(dir.join("state")).unwrap();
        let certs = make_certs(dir, ip);
        let python = Path::new(VENV).join("bin/python");
        let hash = run(Command::new(&python).args([
            "-c",
            "import bcrypt, sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(4)).decode())",
            pass,
        ]));
        std::fs::write(dir.join("htpasswd"), format!("{user}:{}\n", hash.trim())).unwrap();
        let systems: Vec<String> = systems
            .iter()
            .map(|s| {
                format!(
                    "{{'uuid': '{}', 'name': '{}', 'power_state': '{}', \
                     'nics': [{{'mac': '52:54:00:aa:00:01', 'ip': '127.0.0.2'}}]}}",
                    s.uuid,
                    s.name,
                    if s.on { "On" } else { "Off" }
                )
            })
            .collect();
        let conf = format!(
            "SUSHY_EMULATOR_LISTEN_IP = '{ip}'\n\
             SUSHY_EMULATOR_LISTEN_PORT = {port}\n\
             SUSHY_EMULATOR_SSL_CERT = '{cert}'\n\
             SUSHY_EMULATOR_SSL_KEY = '{key}'\n\
             SUSHY_EMULATOR_AUTH_FILE = '{auth}'\n\
             SUSHY_EMULATOR_FAKE_DRIVER = True\n\
             SUSHY_EMULATOR_STATE_DIR = '{state}'\n\
             SUSHY_EMULATOR_FAKE_SYSTEMS = [{systems}]\n",
            cert = certs.cert.display(),
            key = certs.key.display(),
            auth = dir.join("htpasswd").display(),
            state = dir.join("state").display(),
            systems = systems.join(", "),
        );
        std::fs::write(dir.join("sushy.conf"), conf).unwrap();
        let log = std::fs::File::create(dir.join("sushy.log")).unwrap();
        let child = in_ns(ns, &bin)
            .arg("--config")
            .arg(dir.join("sushy.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot run sushy-emulator");
        let s = Sushy {
            ns: ns.map(str::to_string),
            ip: ip.to_string(),
            port,
            user: user.to_string(),
            pass: pass.to_string(),
            certs,
            dir: dir.to_path_buf(),
            child: Some(child),
        };
        let t = Instant::now();
        while s.curl(&["/redfish/v1/"]).0 != 200 {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "sushy-emulator did not come up: {}",
                std::fs::read_to_string(dir.join("sushy.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        s
    }

    /// `curl` (a client we did not write) against the emulator, checking its certificate
    /// against the CA, with the credentials; (status, body).
    pub fn curl(&self, args: &[&str]) -> (u16, String) {
        let mut cmd = in_ns(self.ns.as_deref(), "curl");
        cmd.args(["-sS", "--cacert"])
            .arg(&self.certs.ca)
            .args(["-u", &format!("{}:{}", self.user, self.pass)])
            .args(["-o", "-", "-w", "\n%{http_code}"]);
        let (path, rest) = args.split_first().unwrap();
        cmd.arg(format!("https://{}:{}{path}", self.ip, self.port))
            .args(rest);
        let out = cmd.output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// The power state of system `uuid` as the emulator tells curl.
    pub fn power_state(&self, uuid: &str) -> String {
        let (code, body) = self.curl(&[&format!("/redfish/v1/Systems/{uuid}")]);
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["PowerState"].as_str().unwrap_or("").to_string()
    }

    /// `redfish://USER:PASS@IP:PORT{rest}`.
    pub fn uri(&self, rest: &str) -> String {
        format!(
            "redfish://{}:{}@{}:{}{rest}",
            self.user, self.pass, self.ip, self.port
        )
    }
}

impl Drop for Sushy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

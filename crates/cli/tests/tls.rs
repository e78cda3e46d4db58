//! HTTPS with the cluster CA, checked with tools we did not write: openssl s_client and
//! curl see the head certificate signed by the cluster CA; plain HTTP reaches only /boot/;
//! another CA fails verification in curl, openssl, the CLI and the agent; `--insecure` works
//! and says what it does; `wulf trust` keeps a CA only with the right fingerprint; two heads
//! of one etcd cluster present certificates of the same CA.

mod head;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use head::{free_port, wulf_bin, Etcd, Head};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `openssl s_client` to the head, checking its certificate against `ca`.
fn s_client(port: u16, ca: &Path, name: &str) -> Output {
    Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", name, "-verify_hostname", name])
        .arg("-CAfile")
        .arg(ca)
        .args(["-verify_return_error", "-showcerts"])
        .stdin(Stdio::null())
        .output()
        .expect("openssl must be installed (./test.sh installs it)")
}

/// A self-signed CA of nobody's cluster.
fn other_ca(dir: &Path) -> std::path::PathBuf {
    let (cert, key) = (dir.join("other.pem"), dir.join("other.key"));
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=another CA", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    cert
}

/// `wulf ARGS` with only `env` to find the head: no data directory, HOME of its own.
fn wulf_bare(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(wulf_bin());
    c.args(args)
        .env("HOME", home)
        .env_remove("WULF_DATA_DIR")
        .env_remove("WULF_URL")
        .env_remove("WULF_TOKEN")
        .env_remove("WULF_CA")
        .env_remove("WULF_INSECURE")
        .env_remove("WULF_CONFIG")
        .current_dir(home)
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn the_head_presents_a_certificate_of_the_cluster_ca() {
    let h = Head::start_configured(
        None,
        "[tls]\nnames = [\"head.example.test\", \"10.250.0.9\"]\n[dhcp]\nenabled = false\n\
         [tftp]\nenabled = false\n[dns]\nenabled = false\n",
        &[],
    );
    let tls = h.data().join("tls");
    // The files, with the key readable only by its owner.
    let mode = |f: &str| std::fs::metadata(tls.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("head.key"), 0o600);
    assert_eq!(mode("ca.pem"), 0o644);
    let v = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(h.ca())
        .arg(tls.join("head.pem"))
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", text(&v));

    // openssl s_client: the chain verifies against the cluster CA, for each of its names.
    for name in ["localhost", "head.example.test"] {
        let o = s_client(h.port, &h.ca(), name);
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
        assert!(
            out.contains("CN=wulf cluster CA") || out.contains("CN = wulf cluster CA"),
            "{out}"
        );
    }
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(tls.join("head.pem"))
        .output()
        .unwrap();
    let san = text(&o);
    for want in [
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "DNS:head.example.test",
        "IP Address:10.250.0.9",
    ] {
        assert!(san.contains(want), "{want} not in {san}");
    }
    // A name the certificate does not have fails the check.
    let o = s_client(h.port, &h.ca(), "elsewhere.example.test");
    assert!(!o.status.success(), "{}", text(&o));

    // curl over HTTPS with the CA; the same port speaks plain HTTP to firmware.
    let (code, _) = h.curl(&["-H", &h.auth(), &format!("{}/api/v1/info", h.url())]);
    assert_eq!(code, 200);
    let (code, body) = h.curl(&[&format!("{}/api/v1/info", h.http_url())]);
    let body = String::from_utf8_lossy(&body);
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("needs HTTPS") && body.contains(&format!("{}/api/v1/info", h.url())),
        "{body}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON error body");
    assert!(v["error"].is_string(), "{v}");
    // Even with a valid token.
    let (code, _) = h.curl(&["-H", &h.auth(), &format!("{}/api/v1/node", h.http_url())]);
    assert_eq!(code, 403);
    let (code, pem) = h.curl(&[&format!("{}/boot/ca.pem", h.http_url())]);
    assert_eq!(code, 200);
    assert_eq!(pem, std::fs::read(h.ca()).unwrap());
    let (code, _) = h.curl(&[&format!("{}/boot/ipxe", h.http_url())]);
    assert_eq!(code, 200);

    // A client trusting another CA fails verification.
    let other = other_ca(h.dir.path());
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--cacert"])
        .arg(&other)
        .arg(format!("{}/api/v1/info", h.url()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(60), "{}", text(&out));
    let o = s_client(h.port, &other, "localhost");
    assert!(!o.status.success(), "{}", text(&o));

    // A restart issues a new head certificate from the same CA.
    let before = (
        std::fs::read(h.ca()).unwrap(),
        std::fs::read(tls.join("head.pem")).unwrap(),
    );
    let mut h = h;
    h.stop();
    h.spawn();
    assert_eq!(std::fs::read(h.ca()).unwrap(), before.0, "the CA stays");
    assert_ne!(
        std::fs::read(tls.join("head.pem")).unwrap(),
        before.1,
        "a fresh certificate"
    );
    assert!(s_client(h.port, &h.ca(), "localhost").status.success());
}

#[test]
fn the_cli_checks_the_head_against_the_ca() {
    let h = Head::start();
    // On the head the CLI finds the CA in the data directory (the quick start).
    assert!(h.ok(&["info"]).contains("embedded"));
    let home = tempfile::tempdir().unwrap();
    let url = h.url();
    let token = h.token();
    let ca = h.ca().display().to_string();
    let base = [("WULF_URL", url.as_str()), ("WULF_TOKEN", token.as_str())];

    // No CA anywhere: told what to do, exit 1.
    let o = wulf_bare(home.path(), &base, &["info"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("wulf trust {url}")),
        "{}",
        text(&o)
    );
    // The right CA by flag and by WULF_CA.
    let o = wulf_bare(home.path(), &base, &["--ca", &ca, "info"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = wulf_bare(
        home.path(),
        &[base[0], base[1], ("WULF_CA", &ca)],
        &["info"],
    );
    assert!(o.status.success(), "{}", text(&o));
    // The CLI config file's ca = PATH.
    let cfg = home.path().join("wulf.toml");
    std::fs::write(&cfg, format!("ca = \"{ca}\"\n")).unwrap();
    let cfg_s = cfg.display().to_string();
    let o = wulf_bare(
        home.path(),
        &[base[0], base[1], ("WULF_CONFIG", &cfg_s)],
        &["info"],
    );
    assert!(o.status.success(), "{}", text(&o));

    // A wrong CA: exit 1, the CA file named, how to fix it.
    let other = other_ca(home.path()).display().to_string();
    let o = wulf_bare(home.path(), &base, &["--ca", &other, "node", "ls"]);
    let err = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("was refused") && err.contains(&other) && err.contains("wulf trust"),
        "{err}"
    );
    assert!(
        err.contains("not signed by the trusted cluster CA"),
        "{err}"
    );
    // A file that is no certificate.
    let junk = home.path().join("junk.pem");
    std::fs::write(&junk, "hello").unwrap();
    let o = wulf_bare(
        home.path(),
        &base,
        &["--ca", junk.to_str().unwrap(), "info"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("junk.pem"), "{}", text(&o));

    // --insecure (and WULF_INSECURE=1) work, and warn every time.
    let warning = "wulf: WARNING: --insecure: the head's certificate is not checked; anyone on \
                   the path can read and change this session, token included";
    let o = wulf_bare(home.path(), &base, &["--ca", &other, "--insecure", "info"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(warning),
        "{}",
        text(&o)
    );
    let o = wulf_bare(
        home.path(),
        &[base[0], base[1], ("WULF_INSECURE", "1")],
        &["info"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(warning),
        "{}",
        text(&o)
    );
    let o = wulf_bare(
        home.path(),
        &[base[0], base[1], ("WULF_INSECURE", "0")],
        &["info"],
    );
    assert_eq!(
        o.status.code(),
        Some(1),
        "WULF_INSECURE=0 is off: {}",
        text(&o)
    );
}

#[test]
fn wulf_trust_keeps_the_ca_only_when_confirmed() {
    let h = Head::start();
    let home = tempfile::tempdir().unwrap();
    let kept = home.path().join(".config/wulf/ca.pem");
    let pin = h.ca_pin();
    let url = h.url();

    // A wrong fingerprint: exit 1, nothing written.
    let wrong = format!(
        "{}{}",
        if pin.starts_with('0') { "1" } else { "0" },
        &pin[1..]
    );
    let o = wulf_bare(home.path(), &[], &["trust", &url, "--fingerprint", &wrong]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("nothing written"), "{}", text(&o));
    assert!(!kept.exists());
    // Not a fingerprint at all, or no confirmation without a terminal: bad usage.
    let o = wulf_bare(home.path(), &[], &["trust", &url, "--fingerprint", "abc"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = wulf_bare(home.path(), &[], &["trust", &url]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&pin),
        "the fingerprint is shown: {}",
        text(&o)
    );
    assert!(!kept.exists());

    // The right one, as openssl prints it (colons, upper case).
    let colons: Vec<String> = pin
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_uppercase())
        .collect();
    let o = wulf_bare(
        home.path(),
        &[],
        &["trust", &url, "--fingerprint", &colons.join(":")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("wulf cluster CA") && out.contains(&pin),
        "{out}"
    );
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        std::fs::read(h.ca()).unwrap()
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&kept), 0o644);
    assert_eq!(mode(kept.parent().unwrap()), 0o700);
    // Now a CLI elsewhere reaches the head with no other help.
    let token = h.token();
    let o = wulf_bare(
        home.path(),
        &[("WULF_URL", &url), ("WULF_TOKEN", &token)],
        &["info"],
    );
    assert!(o.status.success(), "{}", text(&o));
    // --yes trusts without comparing (host:port alone names the head).
    let home2 = tempfile::tempdir().unwrap();
    let o = wulf_bare(
        home2.path(),
        &[],
        &["trust", &format!("127.0.0.1:{}", h.port), "--yes"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(home2.path().join(".config/wulf/ca.pem").exists());
    // No head there: exit 1.
    let o = wulf_bare(
        home2.path(),
        &[],
        &["trust", &format!("127.0.0.1:{}", free_port()), "--yes"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[test]
fn the_agent_reports_only_to_a_head_of_its_pinned_ca() {
    let agent = wulf_bin().with_file_name("wulf-agent");
    assert!(
        agent.exists(),
        "{} missing: cargo build --workspace",
        agent.display()
    );
    let h = Head::start();
    h.ok(&["node", "create", "mac=02:57:00:00:00:31", "type=simulated"]);
    // The node's boot script, fetched as its firmware does.
    let (code, script) = h.curl(&[&format!("{}/boot/ipxe?mac=02:57:00:00:00:31", h.http_url())]);
    assert_eq!(code, 200);
    let script = String::from_utf8(script).unwrap();
    let p: std::collections::BTreeMap<String, String> = script
        .split_whitespace()
        .filter_map(|t| t.strip_prefix("wulf.")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        p["ca"],
        h.ca_pin(),
        "the boot script pins the cluster CA: {script}"
    );
    assert_eq!(p["head"], h.url(), "nodes report over HTTPS: {script}");
    // Its secret: a credential, or the one-time token the agent trades for one.
    let secret: [&str; 2] = match (p.get("cred"), p.get("enroll")) {
        (Some(c), _) => ["--cred", c],
        (None, Some(t)) => ["--enroll", t],
        (None, None) => panic!("no credential or enrollment token in:\n{script}"),
    };
    let state = tempfile::tempdir().unwrap();
    let once = |extra: &[&str]| {
        Command::new(&agent)
            .args(["--head", &p["head"], "--node", &p["node"]])
            .args(secret)
            .args(extra)
            .arg("--state-dir")
            .arg(state.path())
            .arg("--once")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let status = || h.json(&["node", "status"])[0]["state"].clone();
    assert_eq!(status(), "booting");

    // A wrong pin: refused, both fingerprints named, nothing reported.
    let wrong = "ab".repeat(32);
    let o = once(&["--ca", &wrong]);
    let err = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&wrong) && err.contains(&p["ca"]), "{err}");
    assert!(err.contains("refusing"), "{err}");
    // No pin for an https head: bad configuration, exit 2.
    let o = once(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("no pin of the cluster CA"),
        "{}",
        text(&o)
    );
    assert_eq!(status(), "booting");

    // The right pin: the report goes through.
    let o = once(&["--ca", &p["ca"]]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(status(), "up");
}

#[test]
fn heads_of_one_cluster_share_the_ca() {
    let etcd = Etcd::start();
    let store = format!("etcd://127.0.0.1:{}", etcd.port);
    let cfg = |name: &str| {
        format!(
            "head_name = \"{name}\"\n[dhcp]\nenabled = false\n[tftp]\nenabled = false\n\
             [dns]\nenabled = false\n"
        )
    };
    let a = Head::start_configured(None, &cfg("head-a"), &["--store", &store]);
    let b = Head::start_configured(None, &cfg("head-b"), &["--store", &store]);
    assert_eq!(
        std::fs::read(a.ca()).unwrap(),
        std::fs::read(b.ca()).unwrap(),
        "one cluster CA"
    );
    let head_pem = |h: &Head| std::fs::read(h.data().join("tls/head.pem")).unwrap();
    assert_ne!(
        head_pem(&a),
        head_pem(&b),
        "each head has its own certificate"
    );
    // Each head's certificate verifies against the other head's copy of the CA.
    for (h, ca) in [(&a, b.ca()), (&b, a.ca())] {
        let o = s_client(h.port, &ca, "localhost");
        assert!(o.status.success(), "{}", text(&o));
        let subject = if h.port == a.port { "head-a" } else { "head-b" };
        assert!(
            text(&o).contains(&format!("CN={subject}"))
                || text(&o).contains(&format!("CN = {subject}")),
            "{}",
            text(&o)
        );
    }
    // The CLI on A with A's CA reaches B.
    let home = tempfile::tempdir().unwrap();
    let (url, token, ca) = (b.url(), b.token(), a.ca().display().to_string());
    let o = wulf_bare(
        home.path(),
        &[("WULF_URL", &url), ("WULF_TOKEN", &token), ("WULF_CA", &ca)],
        &["info"],
    );
    assert!(o.status.success(), "{}", text(&o));
}

/// An agent's (or `wulf sim`'s) next report is a new connection: the head hands out session
/// tickets, so it resumes without the certificate signature, for any number of nodes.
/// Checked with openssl s_client: a connection given the first one's session, after 300
/// others, says "Reused"; one without says "New".
#[test]
fn a_new_connection_resumes_with_the_heads_session_ticket() {
    use std::io::Write;
    let h = Head::start();
    let dir = tempfile::tempdir().unwrap();
    let sess = dir.path().join("session.pem");
    let connect = |extra: &[&str]| -> String {
        let mut c = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{}", h.port)])
            .args(["-servername", "localhost", "-CAfile"])
            .arg(h.ca())
            .args(["-verify_return_error", "-ign_eof"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl must be installed (./test.sh installs it)");
        // A whole request, so the client reads the answer and the tickets sent after the
        // handshake before it leaves.
        c.stdin
            .take()
            .unwrap()
            .write_all(b"GET /boot/ca.pem HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        text(&o)
    };
    let first = connect(&["-sess_out", sess.to_str().unwrap()]);
    assert!(first.contains("New, TLSv1.3"), "{first}");
    assert!(first.contains("BEGIN CERTIFICATE"), "no answer: {first}");
    assert!(sess.is_file(), "openssl kept no session: {first}");
    // 300 other TLS connections in between (curl, each request on a new one): more sessions
    // than a server-side session cache of 256 holds, so only a ticket resumes the first.
    let url = format!("{}/boot/ca.pem", h.url());
    let mut curl = Command::new("curl");
    curl.args([
        "-sS",
        "-o",
        "/dev/null",
        "-H",
        "Connection: close",
        "--cacert",
    ])
    .arg(h.ca());
    for _ in 0..300 {
        curl.arg(&url);
    }
    let o = curl
        .output()
        .expect("curl must be installed (./test.sh installs it)");
    assert!(o.status.success(), "{}", text(&o));
    let second = connect(&["-sess_in", sess.to_str().unwrap()]);
    assert!(second.contains("Reused, TLSv1.3"), "not resumed:\n{second}");
    let third = connect(&[]);
    assert!(third.contains("New, TLSv1.3"), "{third}");
}

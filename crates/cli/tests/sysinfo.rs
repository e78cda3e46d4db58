//! `wulf sysinfo`: a support snapshot of a running head, unpacked with the real `tar`; every
//! part is there, and no secret (the admin token, session tokens, the CA's and the head's
//! private keys, an account's password, a password in the config file) appears anywhere in
//! it. A part that cannot be collected is an error line, not the end of the snapshot.

mod head;

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use head::Head;
use serde_json::Value;

const PASSWORD: &str = "alice-pw-Quokka-7731";
const ETCD_PASSWORD: &str = "etcd-pw-Wombat-4412";

/// Every file under `dir`: (path relative to it, contents).
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The secrets that must not be in a snapshot: long enough pieces of each to be sure.
fn secrets(h: &Head) -> Vec<(String, String)> {
    let mut s = vec![
        ("admin token".to_string(), h.token()),
        ("account password".into(), PASSWORD.into()),
        ("etcd password in the config".into(), ETCD_PASSWORD.into()),
    ];
    // The head's TLS key, and the CA's private key (in the store: read through a backup).
    let head_key = std::fs::read_to_string(h.data().join("tls/head.key")).unwrap();
    for l in head_key.lines().filter(|l| !l.starts_with("-----")) {
        s.push(("head private key".into(), l.to_string()));
    }
    let backup = h.dir.path().join("b.jsonl");
    h.ok(&["cluster", "backup", "-o", backup.to_str().unwrap()]);
    let text = std::fs::read_to_string(&backup).unwrap();
    let ca = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["key"] == "/wulf/secret/tls-ca")
        .expect("the CA in the backup");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(ca["value_base64"].as_str().unwrap())
        .unwrap();
    let ca: Value = serde_json::from_slice(&raw).unwrap();
    let key = ca["key"].as_str().unwrap();
    assert!(key.contains("PRIVATE KEY"));
    for l in key.lines().filter(|l| !l.starts_with("-----")) {
        s.push(("CA private key".into(), l.to_string()));
    }
    // Alice's session tokens, from her session file.
    let session: Value = serde_json::from_slice(
        &std::fs::read(h.dir.path().join(".config/wulf/session.json")).unwrap(),
    )
    .unwrap();
    fn tokens(v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match x.as_str() {
                        Some(t) if k.contains("token") && t.len() >= 20 => {
                            out.push((format!("session {k}"), t.to_string()))
                        }
                        _ => tokens(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| tokens(x, out)),
            _ => {}
        }
    }
    let before = s.len();
    tokens(&session, &mut s);
    let n = s.len() - before;
    assert!(n >= 1, "no tokens in the session file: {session}");
    s
}

#[test]
fn a_snapshot_has_every_part_and_no_secret() {
    let cfg = format!(
        "head_name = \"snap-head\"\n[dhcp]\nenabled = false\n[tftp]\nenabled = false\n[dns]\nenabled = false\n[etcd]\nuser = \"wulf\"\npassword = \"{ETCD_PASSWORD}\"\n"
    );
    let h = Head::start_configured(None, &cfg, &[]);
    h.ok(&["node", "create", "--count", "4"]);
    h.ok(&["attrib", "create", "name=rack1"]);
    let o = h.wulf_stdin(
        &[
            "admin",
            "create",
            "name=alice",
            "role=admin",
            "--password-stdin",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(o.status.success());
    let o = h.wulf_stdin(
        &["login", "alice", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A failed login, for the log.
    let _ = h.wulf_stdin(
        &["--token", "x", "login", "alice", "--password-stdin"],
        Some("wrong\n"),
    );
    let secrets = secrets(&h);
    let config = h.dir.path().join("wulfd.toml");

    let work = tempfile::tempdir().unwrap();
    let tarball = work.path().join("T.tar.gz");
    let out = h.ok(&[
        "sysinfo",
        "-o",
        tarball.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(out.contains("wrote"), "{out}");
    // Not twice over the same file.
    h.fails(
        2,
        &[
            "sysinfo",
            "-o",
            tarball.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let unpacked = work.path().join("u");
    std::fs::create_dir(&unpacked).unwrap();
    let st = Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(st.success(), "tar could not unpack the snapshot");
    let top: Vec<_> = std::fs::read_dir(&unpacked).unwrap().collect();
    assert_eq!(top.len(), 1, "one directory in the tarball");
    let dir = unpacked.join("T");
    let all = files(&dir);
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "index.txt",
        "errors.txt",
        "version.txt",
        "info.json",
        "wulfd.toml",
        "heads.json",
        "db.json",
        "objects.txt",
        "status-summary.json",
        "log.json",
        "interfaces.txt",
        "listening.txt",
        "disk.txt",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("logs/") && n.ends_with(".log")),
        "no log file copies in {names:?}"
    );
    let get = |n: &str| {
        String::from_utf8_lossy(&all.iter().find(|(x, _)| x == n).unwrap().1).into_owned()
    };
    let errors = get("errors.txt");
    assert!(errors.trim().is_empty(), "parts failed:\n{errors}");
    assert!(
        get("version.txt").contains("wulfd 0.1.0 (head snap-head"),
        "{}",
        get("version.txt")
    );
    let objects = get("objects.txt");
    assert!(objects.contains("node     4"), "{objects}");
    assert!(objects.contains("admin    1"), "{objects}");
    let toml = get("wulfd.toml");
    assert!(
        toml.contains("password = \"********\"") && toml.contains("snap-head"),
        "{toml}"
    );
    let listening = get("listening.txt");
    assert!(
        listening.contains(&format!("127.0.0.1:{}", h.port)) && listening.contains("wulfd"),
        "{listening}"
    );
    assert!(get("disk.txt").contains("wulf.redb"), "{}", get("disk.txt"));
    assert!(get("interfaces.txt").contains("127.0.0.1/8"));
    let heads: Value = serde_json::from_str(&get("heads.json")).unwrap();
    assert_eq!(heads[0]["name"], "snap-head", "{heads}");
    let log: Value = serde_json::from_str(&get("log.json")).unwrap();
    assert!(
        log["lines"].as_array().is_some_and(|l| !l.is_empty()),
        "{log}"
    );

    // No secret anywhere (nor in the tarball's bytes, before unpacking).
    for (what, secret) in &secrets {
        for (name, bytes) in &all {
            assert!(!contains(bytes, secret), "the {what} is in {name}");
        }
    }

    // --no-tar: a directory, no tarball.
    let plain = work.path().join("plain");
    h.ok(&[
        "sysinfo",
        "--no-tar",
        "-o",
        plain.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(plain.join("index.txt").is_file() && plain.join("objects.txt").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut leftovers = leftovers;
    leftovers.sort();
    assert_eq!(
        leftovers,
        ["T.tar.gz", "plain", "u"],
        "nothing else left behind"
    );

    // A head that cannot be reached: the parts it answers become error lines; the rest is
    // still collected, and the command succeeds.
    let down = work.path().join("down");
    h.ok(&[
        "--url",
        "https://127.0.0.1:1",
        "sysinfo",
        "--no-tar",
        "-o",
        down.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    let errors = std::fs::read_to_string(down.join("errors.txt")).unwrap();
    for part in ["info.json", "heads.json", "db.json", "log.json"] {
        assert!(
            errors.contains(part),
            "{part} not among the errors:\n{errors}"
        );
    }
    assert!(down.join("interfaces.txt").is_file() && down.join("disk.txt").is_file());
}

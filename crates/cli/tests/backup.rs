//! `wulf cluster backup` and `wulfd restore`: a head with 10,000 nodes, groups, boot configs
//! and images with uploaded files is backed up with its files and restored into a fresh
//! embedded data directory and into a fresh etcd (Debian's etcd-server, on loopback); a head
//! started on each restored store shows every object as the original did, serves the files
//! with the same sha256 (checked with curl and sha256sum), takes the original admin token
//! and lets an account made before the backup log in. A restore into a non-empty store, and
//! a truncated, altered or otherwise damaged backup, are refused with nothing written.

mod head;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use head::{free_port, write, wulfd_bin, Head};
use serde_json::Value;

const KINDS: [&str; 9] = [
    "node", "attrib", "boot", "image", "pool", "net", "host", "cluster", "admin",
];

/// One etcd member on loopback, killed when dropped.
struct Etcd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let (port, peer) = (free_port(), free_port());
        let client = format!("http://127.0.0.1:{port}");
        let peer = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let mut cmd = Command::new("etcd");
        head::etcd_member(
            &mut cmd,
            "m0",
            &dir.path().join("data"),
            &client,
            &peer,
            &format!("m0={peer}"),
        );
        let child = cmd
            .stderr(log)
            .spawn()
            .expect("etcd must be installed (./test.sh installs etcd-server)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "etcd did not start listening");
            std::thread::sleep(Duration::from_millis(100));
        }
        Etcd {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("etcd://127.0.0.1:{}", self.port)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CONFIG: &str = "[dhcp]\nenabled = false\n[tftp]\nenabled = false\n[dns]\nenabled = false\n";

/// A head's directory with its config file, not started yet.
fn head_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("wulfd.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    (dir, cfg)
}

/// Start a head in `dir` (already holding a restored data directory) with `extra` flags.
fn start_in(dir: tempfile::TempDir, cfg: &Path, extra: &[&str]) -> Head {
    let mut extra_args = vec!["--config".to_string(), cfg.display().to_string()];
    extra_args.extend(extra.iter().map(|s| s.to_string()));
    let mut h = Head {
        dir,
        port: free_port(),
        child: None,
        extra_args,
        ns: None,
    };
    h.spawn();
    h
}

/// `wulfd --data-dir DATA [extra] restore ARGS`.
fn restore(data: &Path, extra: &[&str], args: &[&str]) -> Output {
    Command::new(wulfd_bin())
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .arg("restore")
        .args(args)
        .env_remove("WULFD_CONFIG")
        .env("WULFD_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every object of every kind, as `wulf KIND ls --json` shows them.
fn objects(h: &Head) -> Vec<Value> {
    KINDS.iter().map(|k| h.json(&[k, "ls"])).collect()
}

fn sha256sum(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Each file of boot `b` and image `i`, downloaded with curl over the API with the admin
/// token: its sha256 (by sha256sum).
fn file_hashes(h: &Head, token: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (kind, name, field) in [
        ("boot", "b1", "kernel"),
        ("boot", "b1", "initramfs"),
        ("boot", "b2", "kernel"),
        ("image", "img1", "content"),
        ("image", "img2", "content"),
    ] {
        let dest = h.dir.path().join(format!("dl-{kind}-{name}-{field}"));
        let (code, body) = h.curl(&[
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("{}/api/v1/{kind}/{name}/files/{field}", h.url()),
        ]);
        assert_eq!(code, 200, "{kind} {name} {field}");
        std::fs::write(&dest, body).unwrap();
        out.push((format!("{kind} {name} {field}"), sha256sum(&dest)));
    }
    out
}

/// Log in as `name` on `h` (its password on stdin) and ask who we are.
fn login_works(h: &Head, name: &str, password: &str) {
    let out = h.wulf_stdin(
        &["login", name, "--password-stdin"],
        Some(&format!("{password}\n")),
    );
    assert!(out.status.success(), "login {name}: {}", text(&out));
    let who = h.json(&["whoami"]);
    assert_eq!(who["name"], name, "{who}");
    assert_eq!(who["role"], "admin", "{who}");
    h.ok(&["logout"]);
}

fn build_cluster(h: &Head) -> PathBuf {
    let d = h.dir.path();
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        "first_ip=10.60.0.10",
        "ip_count=20000",
        "mask_bits=16",
        "router_ip=10.60.0.1",
        "domain=cluster.test",
        "host_ranges=10.60.200.1-10.60.200.50",
    ]);
    h.ok(&[
        "pool",
        "create",
        "name=gpu",
        "pattern=gpu{:03d}",
        "first_index=20000",
    ]);
    let kernel: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let k1 = write(d, "vmlinuz", &kernel);
    let k2 = write(d, "vmlinuz2", b"another kernel");
    let i1 = write(d, "initrd", &vec![7u8; 200_000]);
    let im1: Vec<u8> = (0..2_000_000u32).map(|i| (i * 13 % 241) as u8).collect();
    let im1 = write(d, "root1.tar.gz", &im1);
    let im2 = write(d, "root2.tar.gz", b"a second root filesystem");
    for (name, f) in [("img1", &im1), ("img2", &im2)] {
        h.ok(&[
            "image",
            "create",
            &format!("name={name}"),
            &format!("content=@{}", f.display()),
        ]);
    }
    h.ok(&[
        "boot",
        "create",
        "name=b1",
        "image=img1",
        "cmdline=console=ttyS0 quiet",
        &format!("kernel=@{}", k1.display()),
        &format!("initramfs=@{}", i1.display()),
    ]);
    h.ok(&[
        "boot",
        "create",
        "name=b2",
        "image=img2",
        &format!("kernel=@{}", k2.display()),
    ]);
    for g in ["rack1", "rack2", "gpu", "debug"] {
        h.ok(&["attrib", "create", &format!("name={g}")]);
    }
    h.ok(&["attrib", "-i", "rack1", "set", "_boot_config=b1", "rack=r1"]);
    h.ok(&["attrib", "-i", "rack2", "set", "_boot_config=b2", "rack=r2"]);
    h.ok(&["attrib", "-i", "gpu", "set", "_status_secs=30", "gpus=4"]);
    let macs: String = (0..10_000u32)
        .map(|i| {
            format!(
                "52:54:00:{:02x}:{:02x}:{:02x}\n",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            )
        })
        .collect();
    let macs = write(d, "macs", macs.as_bytes());
    let t = Instant::now();
    h.ok(&["node", "create", "--macs", macs.to_str().unwrap()]);
    eprintln!("created 10,000 nodes in {:?}", t.elapsed());
    h.ok(&["node", "-i", "n[0-4999]", "join", "rack1"]);
    h.ok(&["node", "-i", "n[5000-9999]", "join", "rack2"]);
    h.ok(&["node", "-i", "n[9000-9999]", "join", "gpu"]);
    h.ok(&[
        "node",
        "-i",
        "n[0-99]",
        "set",
        "note=first hundred",
        "_busy=1",
    ]);
    h.ok(&[
        "host",
        "create",
        "name=switch1",
        "mac=02:00:00:00:00:01",
        "ip=10.60.200.1",
    ]);
    let pw = "alice-secret-password";
    let out = h.wulf_stdin(
        &[
            "admin",
            "create",
            "name=alice",
            "role=admin",
            "--password-stdin",
        ],
        Some(&format!("{pw}\n")),
    );
    assert!(out.status.success(), "{}", text(&out));
    k1
}

#[test]
fn ten_thousand_nodes_round_trip_through_embedded_and_etcd() {
    let h = Head::start_configured(None, CONFIG, &[]);
    build_cluster(&h);
    let before = objects(&h);
    assert_eq!(before[0].as_array().unwrap().len(), 10_000);
    let hashes = file_hashes(&h, &h.token());
    let token = h.token();
    let ca_before = std::fs::read(h.ca()).unwrap();

    // The backup: JSON lines, then the tar with the files.
    let work = tempfile::tempdir().unwrap();
    let plain = work.path().join("cluster.jsonl");
    let t = Instant::now();
    let out = h.ok(&["cluster", "backup", "-o", plain.to_str().unwrap()]);
    let backup_secs = t.elapsed().as_secs_f64();
    let total: usize = before.iter().map(|v| v.as_array().unwrap().len()).sum();
    assert!(out.contains(&format!("{total} objects")), "{out}");
    let tarball = work.path().join("cluster.tar");
    let t = Instant::now();
    h.ok(&[
        "cluster",
        "backup",
        "-o",
        tarball.to_str().unwrap(),
        "--files",
    ]);
    let backup_files_secs = t.elapsed().as_secs_f64();
    let size = std::fs::metadata(&plain).unwrap().len();
    eprintln!(
        "backup of 10,000 nodes: {backup_secs:.2}s ({size} bytes); with files: \
         {backup_files_secs:.2}s ({} bytes)",
        std::fs::metadata(&tarball).unwrap().len()
    );
    // Not overwritten without --force; with it, yes.
    let e = h.fails(2, &["cluster", "backup", "-o", plain.to_str().unwrap()]);
    assert!(e.contains("--force"), "{e}");
    h.ok(&[
        "cluster",
        "backup",
        "-o",
        plain.to_str().unwrap(),
        "--force",
    ]);
    // The backup file is a secret: mode 0600.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The real tar reads it: the backup first, then one entry per distinct file.
    let list = Command::new("tar")
        .arg("tf")
        .arg(&tarball)
        .output()
        .unwrap();
    assert!(list.status.success());
    let names = String::from_utf8_lossy(&list.stdout).to_string();
    let names: Vec<&str> = names.lines().collect();
    assert_eq!(names[0], "wulf-backup.jsonl", "{names:?}");
    assert_eq!(names.len(), 1 + 5, "{names:?}");
    // The backup holds the hash of alice's password (it is a secret) and no status.
    let jsonl = std::fs::read_to_string(&plain).unwrap();
    assert!(jsonl.contains("\"password_hash\":\"$argon2"));
    assert!(!jsonl.contains("/wulf/status/") && !jsonl.contains("/wulf/session/"));

    // Into a fresh embedded data directory.
    let (dir, cfg) = head_dir();
    let data = dir.path().join("data");
    let t = Instant::now();
    let o = restore(&data, &[], &[tarball.to_str().unwrap()]);
    let restore_secs = t.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("5 put into"),
        "{}",
        text(&o)
    );
    let r1 = start_in(dir, &cfg, &[]);
    assert_eq!(objects(&r1), before, "objects after the embedded restore");
    assert_eq!(file_hashes(&r1, &token), hashes);
    assert_eq!(
        r1.token(),
        token,
        "the restored head keeps the cluster's admin token"
    );
    assert_eq!(std::fs::read(r1.ca()).unwrap(), ca_before, "and its CA");
    login_works(&r1, "alice", "alice-secret-password");

    // Into a fresh etcd, with the files from a directory this time (the tar unpacked).
    let etcd = Etcd::start();
    let files = work.path().join("unpacked");
    std::fs::create_dir(&files).unwrap();
    let st = Command::new("tar")
        .arg("xf")
        .arg(&tarball)
        .arg("-C")
        .arg(&files)
        .status()
        .unwrap();
    assert!(st.success());
    let (dir, cfg) = head_dir();
    let data = dir.path().join("data");
    let t = Instant::now();
    let o = restore(
        &data,
        &["--store", &etcd.url()],
        &[plain.to_str().unwrap(), "--files", files.to_str().unwrap()],
    );
    let restore_etcd_secs = t.elapsed().as_secs_f64();
    assert!(o.status.success(), "{}", text(&o));
    eprintln!("restore of 10,000 nodes: embedded {restore_secs:.2}s, etcd {restore_etcd_secs:.2}s");
    let r2 = start_in(dir, &cfg, &["--store", &etcd.url()]);
    assert_eq!(objects(&r2), before, "objects after the etcd restore");
    assert_eq!(file_hashes(&r2, &token), hashes);
    let (code, _) = r2.curl(&[
        "-H",
        &format!("Authorization: Bearer {token}"),
        &format!("{}/api/v1/info", r2.url()),
    ]);
    assert_eq!(
        code, 200,
        "the original admin token works on the restored cluster"
    );
    login_works(&r2, "alice", "alice-secret-password");

    // A store in use is refused, and nothing changes.
    let o = restore(&data, &["--store", &etcd.url()], &[plain.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not empty"),
        "{}",
        text(&o)
    );
    assert_eq!(objects(&r2), before);
    // The original head's own backups show the same numbers to whoever reads the docs.
    eprintln!(
        "figures: backup {backup_secs:.2}s, backup --files {backup_files_secs:.2}s, restore \
         embedded {restore_secs:.2}s, restore etcd {restore_etcd_secs:.2}s, backup {size} bytes"
    );
}

/// A backup of a small cluster with one file, and its tar.
fn small_backup(work: &Path) -> (Head, PathBuf, PathBuf) {
    let h = Head::start_configured(None, CONFIG, &[]);
    h.ok(&["node", "create", "--count", "3"]);
    let k = write(h.dir.path(), "k", &vec![3u8; 50_000]);
    h.ok(&[
        "boot",
        "create",
        "name=b",
        &format!("kernel=@{}", k.display()),
    ]);
    let plain = work.join("b.jsonl");
    let tarball = work.join("b.tar");
    h.ok(&["cluster", "backup", "-o", plain.to_str().unwrap()]);
    h.ok(&[
        "cluster",
        "backup",
        "-o",
        tarball.to_str().unwrap(),
        "--files",
    ]);
    (h, plain, tarball)
}

/// `restore` of `file` into a fresh data directory must fail with `code` and a message
/// containing `want`, and leave the store empty (a proper restore then still works).
fn refused(file: &Path, code: i32, want: &str, good: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = restore(&data, &[], &[file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(code), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains(want), "wanted '{want}' in: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let blobs = data.join("blobs/sha256");
    let kept = std::fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0);
    assert_eq!(kept, 0, "files kept after a refused restore");
    let o = restore(&data, &[], &[good.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "the store was not left empty: {}",
        text(&o)
    );
}

#[test]
fn damaged_backups_and_used_stores_are_refused_with_nothing_written() {
    let work = tempfile::tempdir().unwrap();
    let (mut h, plain, tarball) = small_backup(work.path());
    let good = std::fs::read(&plain).unwrap();
    let text_of = String::from_utf8(good.clone()).unwrap();

    // Truncated: cut in a line, and cut at a line end (the end record missing).
    let cut = write(work.path(), "cut", &good[..good.len() / 2]);
    refused(&cut, 2, "truncated", &plain);
    let lines: Vec<&str> = text_of.lines().collect();
    let no_end: String = lines[..lines.len() - 1]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    let no_end = write(work.path(), "no_end", no_end.as_bytes());
    refused(&no_end, 2, "without the end record", &plain);
    // Altered: a node renamed; the checksum no longer matches.
    let altered = text_of.replacen("\"name\":\"n1\"", "\"name\":\"n9\"", 1);
    assert_ne!(altered, text_of);
    let altered = write(work.path(), "altered", altered.as_bytes());
    refused(&altered, 2, "checksum", &plain);
    // Garbage in a line, and a file that is no backup at all.
    let mut garbled = good.clone();
    let mid = garbled.len() / 2;
    garbled[mid] = b'{';
    garbled[mid + 1] = b'"';
    let garbled = write(work.path(), "garbled", &garbled);
    let o = restore(
        &tempfile::tempdir().unwrap().path().join("d"),
        &[],
        &[garbled.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("line ") || err.contains("checksum"), "{err}");
    let junk = write(work.path(), "junk", b"hello\n");
    refused(&junk, 2, "line 1", &plain);
    let empty = write(work.path(), "empty", b"");
    refused(&empty, 2, "empty", &plain);
    // Two backups joined.
    let twice = write(work.path(), "twice", &[good.clone(), good.clone()].concat());
    refused(&twice, 2, "follows the end record", &plain);
    // A tar whose file content does not match its sha256.
    let mut bad_tar = std::fs::read(&tarball).unwrap();
    // Inside the last entry's content (50,000 bytes, padded to 512, before the two zero
    // blocks that end a tar).
    let at = bad_tar.len() - 1024 - (512 - 50_000 % 512) - 1000;
    bad_tar[at] ^= 0xff;
    let bad_tar = write(work.path(), "bad.tar", &bad_tar);
    refused(&bad_tar, 2, "sha256", &plain);
    // A missing FILE is a failure too (exit 1), nothing written.
    let o = restore(&work.path().join("d"), &[], &["/nonexistent/backup"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    // Without files: restored, and the missing file is named with its object.
    let dir = tempfile::tempdir().unwrap();
    let o = restore(&dir.path().join("data"), &[], &[plain.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains("missing file") && err.contains("boot config 'b' kernel"),
        "{err}"
    );

    // Into the store of a head (stopped: the embedded store is its alone): refused,
    // nothing changed.
    let before = h.snapshot();
    h.stop();
    let o = restore(&h.data(), &[], &[tarball.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not empty"),
        "{}",
        text(&o)
    );
    h.spawn();
    assert_eq!(h.snapshot(), before);

    // The CLI: bad usage is exit 2 and writes nothing.
    let e = h.fails(2, &["cluster", "backup"]);
    assert!(e.contains("--output"), "{e}");
    let e = h.fails(2, &["cluster", "backup", "-o", "/nonexistent/dir/b.jsonl"]);
    assert!(e.contains("no directory"), "{e}");
    let e = h.fails(2, &["node", "backup", "-o", "x"]);
    assert!(!e.is_empty());
}

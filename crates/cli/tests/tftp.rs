//! The TFTP server, tested with real clients (tftp-hpa, curl, busybox, and atftp for
//! windowsize, RFC 7440) from a client network namespace, plus a small client of our own for
//! option sets those clients cannot send and for checking where replies come from.

mod head;
mod netns;

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use head::Head;
use netns::{sh, Lab};

/// wulfd with only TFTP (and the API) on, serving `root` (None: the default /usr/lib/ipxe).
fn start(lab: &Lab, root: Option<&Path>) -> Head {
    let mut cfg = String::from("[dhcp]\nenabled = false\n[dns]\nenabled = false\n[tftp]\n");
    if let Some(r) = root {
        cfg.push_str(&format!("root = \"{}\"\n", r.display()));
    }
    let h = Head::start_in(&lab.srv, &cfg);
    wait_for_log(&h, "TFTP ready");
    h
}

fn wait_for_log(h: &Head, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !h.log().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no '{text}' in the log:\n{}",
            h.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(ns: &str, program: &str, args: &[&str], cwd: &Path) -> Output {
    let out = Lab::cmd(ns, "timeout")
        .arg("30")
        .arg(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(124), "{program} {args:?} timed out");
    out
}

/// tftp-hpa: `get remote local` in binary mode; returns what it printed.
fn tftp_get(ns: &str, server: &str, remote: &str, local: &Path) -> String {
    let local_s = local.display().to_string();
    let out = run(
        ns,
        "tftp",
        &["-m", "binary", server, "-c", "get", remote, &local_s],
        local.parent().unwrap(),
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn same_file(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert_eq!(
        x.len(),
        y.len(),
        "{} and {} differ in size",
        a.display(),
        b.display()
    );
    assert!(x == y, "{} and {} differ", a.display(), b.display());
}

/// The client got nothing: tftp-hpa leaves an empty file behind, curl and busybox none.
fn nothing_written(p: &Path) {
    let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, 0, "{} got data", p.display());
}

/// Run `f` on a thread inside network namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on this thread only; fd is a network namespace file.
        let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

#[derive(Debug)]
struct Fetched {
    data: Vec<u8>,
    oack: Vec<(String, String)>,
    /// Where the replies came from.
    from: SocketAddr,
}

/// A minimal TFTP client: read `name` from `server` with these options, acknowledging each
/// window (`windowsize` when the server accepted it). Err: the server's error (code, text).
fn fetch(server: SocketAddr, name: &str, opts: &[(&str, &str)]) -> Result<Fetched, (u16, String)> {
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rrq = vec![0, 1];
    for s in [name, "octet"]
        .iter()
        .chain(opts.iter().flat_map(|(a, b)| [a, b]))
    {
        rrq.extend_from_slice(s.as_bytes());
        rrq.push(0);
    }
    sock.send_to(&rrq, server).unwrap();
    let mut buf = vec![0u8; 70000];
    let mut from: Option<SocketAddr> = None;
    let mut oack = Vec::new();
    let (mut blksize, mut ws) = (512usize, 1usize);
    let mut data = Vec::new();
    let mut expect: u16 = 1;
    let mut in_window = 0;
    let mut gap_reported = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "transfer took too long");
        let (n, src) = sock.recv_from(&mut buf).expect("no answer from the server");
        match from {
            None => from = Some(src),
            Some(f) => assert_eq!(f, src, "packets from two transfer IDs"),
        }
        let pkt = &buf[..n];
        let ack = |b: u16| {
            let b = b.to_be_bytes();
            sock.send_to(&[0, 4, b[0], b[1]], src).unwrap();
        };
        match u16::from_be_bytes([pkt[0], pkt[1]]) {
            5 => {
                let code = u16::from_be_bytes([pkt[2], pkt[3]]);
                let text = String::from_utf8_lossy(&pkt[4..n - 1]).into_owned();
                return Err((code, text));
            }
            6 => {
                let fields: Vec<String> = pkt[2..n - 1]
                    .split(|b| *b == 0)
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect();
                oack.clear(); // a retransmitted OACK
                for pair in fields.chunks(2) {
                    oack.push((pair[0].clone(), pair[1].clone()));
                    match pair[0].as_str() {
                        "blksize" => blksize = pair[1].parse().unwrap(),
                        "windowsize" => ws = pair[1].parse().unwrap(),
                        _ => {}
                    }
                }
                ack(0);
            }
            3 => {
                let block = u16::from_be_bytes([pkt[2], pkt[3]]);
                if block != expect {
                    // A gap (RFC 7440): acknowledge the last block received in order, and
                    // the server starts the next window after it. Old duplicates: ignored.
                    let ahead = block.wrapping_sub(expect);
                    if ahead > 0 && (ahead as usize) < ws && !gap_reported {
                        ack(expect.wrapping_sub(1));
                        in_window = 0;
                        gap_reported = true;
                    }
                    continue;
                }
                data.extend_from_slice(&pkt[4..]);
                expect = expect.wrapping_add(1);
                in_window += 1;
                gap_reported = false;
                let last = n - 4 < blksize;
                if last || in_window == ws {
                    ack(block);
                    in_window = 0;
                }
                if last {
                    return Ok(Fetched {
                        data,
                        oack,
                        from: src,
                    });
                }
            }
            op => panic!("unexpected opcode {op}"),
        }
    }
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn serves_ipxe_to_real_clients() {
    let mut lab = Lab::new("10.78.0");
    let c = lab.client("52:54:00:78:00:01");
    lab.with_addr(&c, "10.78.0.50/24");
    // A second head address: replies must come from the address asked.
    sh(&format!("ip -n {} addr add 10.78.0.2/24 dev br0", lab.srv));
    let h = start(&lab, None);
    let ipxe = Path::new("/usr/lib/ipxe");
    let t = tempfile::tempdir().unwrap();
    let out = |n: &str| t.path().join(n);

    // tftp-hpa: plain RFC 1350, 512-byte blocks.
    let said = tftp_get(&c, "10.78.0.1", "undionly.kpxe", &out("hpa.kpxe"));
    assert!(!said.contains("Error"), "{said}");
    same_file(&out("hpa.kpxe"), &ipxe.join("undionly.kpxe"));
    // Debian's ipxe.efi is a symlink to /boot/ipxe.efi: allowed by default.
    assert!(
        ipxe.join("ipxe.efi").exists(),
        "{} has no ipxe.efi: ./test.sh installs Debian's ipxe",
        ipxe.display()
    );
    let said = tftp_get(&c, "10.78.0.1", "/ipxe.efi", &out("hpa.efi"));
    assert!(!said.contains("Error"), "{said}");
    same_file(&out("hpa.efi"), &ipxe.join("ipxe.efi"));

    // curl asks for tsize and blksize.
    let o = run(
        &c,
        "curl",
        &[
            "-sS",
            "--tftp-blksize",
            "1468",
            "tftp://10.78.0.1/undionly.kpxe",
            "-o",
            "curl.kpxe",
        ],
        t.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    same_file(&out("curl.kpxe"), &ipxe.join("undionly.kpxe"));

    // busybox with a block size, on snponly.efi.
    let o = run(
        &c,
        "busybox",
        &[
            "tftp",
            "-b",
            "1468",
            "-g",
            "-r",
            "snponly.efi",
            "-l",
            "bb.efi",
            "10.78.0.1",
        ],
        t.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    same_file(&out("bb.efi"), &ipxe.join("snponly.efi"));

    // atftp: a windowed client (RFC 7440) that is not ours, 8 blocks of 1468 bytes a window.
    let o = run(
        &c,
        "atftp",
        &[
            "--trace",
            "--option",
            "windowsize 8",
            "--option",
            "blksize 1468",
            "-g",
            "-r",
            "undionly.kpxe",
            "-l",
            "atftp.kpxe",
            "10.78.0.1",
        ],
        t.path(),
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "atftp: {said}");
    same_file(&out("atftp.kpxe"), &ipxe.join("undionly.kpxe"));
    assert!(
        said.contains("windowsize") && said.contains("OACK"),
        "atftp saw no OACK with windowsize: {said}"
    );
    assert!(
        h.log()
            .lines()
            .any(|l| l.contains("undionly.kpxe") && l.contains("windowsize=8")),
        "the head sent no 8-block window:\n{}",
        h.log()
    );

    // Every option, windowed, from our own client.
    let want = std::fs::read(ipxe.join("undionly.kpxe")).unwrap();
    let len = want.len().to_string();
    let f = in_netns(&c, || {
        fetch(
            "10.78.0.1:69".parse().unwrap(),
            "undionly.kpxe",
            &[
                ("blksize", "1468"),
                ("tsize", "0"),
                ("timeout", "2"),
                ("windowsize", "8"),
            ],
        )
    })
    .unwrap();
    assert_eq!(
        f.oack,
        pairs(&[
            ("blksize", "1468"),
            ("tsize", &len),
            ("timeout", "2"),
            ("windowsize", "8")
        ])
    );
    assert!(f.data == want, "windowed transfer differs");
    assert_eq!(f.from.ip().to_string(), "10.78.0.1");
    assert_ne!(f.from.port(), 69, "a transfer gets its own port");

    // Asked on the second address, answered from it.
    let f = in_netns(&c, || {
        fetch(
            "10.78.0.2:69".parse().unwrap(),
            "undionly.kpxe",
            &[("blksize", "512")],
        )
    })
    .unwrap();
    assert_eq!(f.from.ip().to_string(), "10.78.0.2");
    assert!(f.data == want);

    // Each transfer is logged (DEBUG) with its size.
    let log = h.log();
    assert!(
        log.contains(&format!("bytes={len}")) && log.contains("TFTP: sent"),
        "{log}"
    );
}

/// A pseudo-random file (no two blocks alike, so a misplaced block shows).
fn random_file(p: &Path, len: usize) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    std::fs::write(p, data).unwrap();
}

#[test]
fn large_file_rolls_block_numbers_over() {
    let mut lab = Lab::new("10.78.1");
    let c = lab.client("52:54:00:78:01:01");
    lab.with_addr(&c, "10.78.1.50/24");
    let root = tempfile::tempdir().unwrap();
    // 33 MiB and a bit: more than 65535 blocks of 512 bytes.
    let big = root.path().join("big.bin");
    random_file(&big, 33 * 1024 * 1024 + 1000);
    let mut h = start(&lab, Some(root.path()));
    let t = tempfile::tempdir().unwrap();

    let started = Instant::now();
    let said = tftp_get(&c, "10.78.1.1", "big.bin", &t.path().join("big.hpa"));
    assert!(!said.contains("Error"), "{said}");
    same_file(&t.path().join("big.hpa"), &big);
    eprintln!("33 MiB at 512-byte blocks: {:?}", started.elapsed());

    // Windowed, big blocks.
    let want = std::fs::read(&big).unwrap();
    let started = Instant::now();
    let f = in_netns(&c, || {
        fetch(
            "10.78.1.1:69".parse().unwrap(),
            "big.bin",
            &[("blksize", "1468"), ("windowsize", "16")],
        )
    })
    .unwrap();
    assert!(f.data == want, "windowed transfer differs");
    eprintln!(
        "33 MiB at 1468-byte blocks, window 16: {:?}",
        started.elapsed()
    );

    // A transfer left hanging does not hold up shutdown.
    in_netns(&c, || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(b"\0\x01big.bin\0octet\0", "10.78.1.1:69")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 600];
        let (n, _) = s.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..4], &[0, 3, 0, 1][..]);
        assert_eq!(n, 516);
    });
    let stopping = Instant::now();
    h.stop();
    assert!(stopping.elapsed() < Duration::from_secs(5));
}

#[test]
fn refuses_paths_outside_the_root() {
    let mut lab = Lab::new("10.78.2");
    let c = lab.client("52:54:00:78:02:01");
    lab.with_addr(&c, "10.78.2.50/24");
    let base = tempfile::tempdir().unwrap();
    let root = base.path().join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("ok.txt"), b"inside\n").unwrap();
    std::fs::write(root.join("sub/deep.txt"), b"deep\n").unwrap();
    std::fs::write(base.path().join("secret"), b"outside\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("passwd")).unwrap();
    std::os::unix::fs::symlink("../secret", root.join("secret")).unwrap();
    std::os::unix::fs::symlink(base.path(), root.join("up")).unwrap();
    std::os::unix::fs::symlink("sub/deep.txt", root.join("inside-link")).unwrap();
    let h = start(&lab, Some(&root));
    let t = tempfile::tempdir().unwrap();
    let srv = "10.78.2.1";

    // Inside the root: served, also by absolute name and through a link that stays inside.
    for (name, want) in [
        ("ok.txt", "inside\n"),
        ("/ok.txt", "inside\n"),
        ("/sub/deep.txt", "deep\n"),
        ("inside-link", "deep\n"),
    ] {
        let local = t.path().join("in");
        let said = tftp_get(&c, srv, name, &local);
        assert!(!said.contains("Error"), "{name}: {said}");
        assert_eq!(std::fs::read_to_string(&local).unwrap(), want, "{name}");
    }

    // `..` and links leading out: access violation (error 2), nothing received.
    for (i, name) in [
        "../../etc/passwd",
        "../secret",
        "sub/../../secret",
        "..\\secret",
        "passwd",
        "secret",
        "up/secret",
        "sub",
    ]
    .iter()
    .enumerate()
    {
        let local = t.path().join(format!("out{i}"));
        let said = tftp_get(&c, srv, name, &local);
        assert!(said.contains("Error code 2"), "{name}: {said}");
        nothing_written(&local);
    }
    // An absolute path is taken inside the root, where /etc/passwd is not.
    let local = t.path().join("abs");
    let said = tftp_get(&c, srv, "/etc/passwd", &local);
    assert!(said.contains("Error code 1: File not found"), "{said}");
    nothing_written(&local);
    // curl, sending the name as is.
    let o = run(
        &c,
        "curl",
        &[
            "-sS",
            "--path-as-is",
            "tftp://10.78.2.1/../secret",
            "-o",
            "c1",
        ],
        t.path(),
    );
    assert_eq!(o.status.code(), Some(69), "curl: access violation expected");
    nothing_written(&t.path().join("c1"));

    // Writes are refused and nothing appears in the root.
    std::fs::write(t.path().join("up.txt"), b"upload").unwrap();
    let o = run(
        &c,
        "tftp",
        &["-m", "binary", srv, "-c", "put", "up.txt", "up.txt"],
        t.path(),
    );
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("Error code 2"), "{said}");
    assert!(!root.join("up.txt").exists());

    let log = h.log();
    assert!(log.contains("access violation"), "{log}");
    assert!(log.contains("refused a write request"), "{log}");
}

#[test]
fn missing_file_and_bad_requests() {
    let mut lab = Lab::new("10.78.3");
    let c = lab.client("52:54:00:78:03:01");
    lab.with_addr(&c, "10.78.3.50/24");
    let root = tempfile::tempdir().unwrap();
    let h = start(&lab, Some(root.path()));
    let t = tempfile::tempdir().unwrap();

    let local = t.path().join("x");
    let said = tftp_get(&c, "10.78.3.1", "no-such-file.efi", &local);
    assert!(said.contains("Error code 1: File not found"), "{said}");
    nothing_written(&local);
    let o = run(
        &c,
        "curl",
        &["-sS", "tftp://10.78.3.1/no-such-file.efi", "-o", "c"],
        t.path(),
    );
    assert_eq!(o.status.code(), Some(68), "curl: file not found expected");
    let o = run(
        &c,
        "busybox",
        &["tftp", "-g", "-r", "nope", "-l", "b", "10.78.3.1"],
        t.path(),
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("File not found"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let r = in_netns(&c, || fetch("10.78.3.1:69".parse().unwrap(), "nope", &[]));
    assert_eq!(r.unwrap_err().0, 1);

    // Garbage gets an error or nothing, changes nothing in the root, and the server carries
    // on.
    std::fs::write(root.path().join("kept"), b"as it was").unwrap();
    let snapshot = |dir: &Path| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let data = std::fs::read(e.path()).unwrap_or_default();
                (e.file_name().to_string_lossy().to_string(), data)
            })
            .collect();
        v.sort();
        v
    };
    let before = snapshot(root.path());
    // The head's state: the objects revision and its TFTP counters (requests by kind,
    // transfers by how they ended, bytes sent), read from /metrics.
    let tftp_metrics = || -> std::collections::BTreeMap<String, f64> {
        let (code, body) = h.curl(&["-H", &h.auth(), &format!("{}/metrics", h.url())]);
        assert_eq!(code, 200);
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| l.starts_with("wulf_tftp_"))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    };
    let (rev, counters) = (h.revision(), tftp_metrics());
    assert!(
        counters.contains_key("wulf_tftp_requests_total{kind=\"bad\"}"),
        "{counters:?}"
    );
    in_netns(&c, || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 600];
        for bad in [
            &b"\0\x01no-mode"[..],
            b"\0\x01f\0mail\0",
            b"\0\x09junk",
            b"\0",
        ] {
            s.send_to(bad, "10.78.3.1:69").unwrap();
        }
        let mut errors = 0;
        while let Ok((n, _)) = s.recv_from(&mut buf) {
            assert_eq!(&buf[..2], &[0, 5], "{:?}", &buf[..n]);
            errors += 1;
            if errors == 3 {
                break;
            }
        }
        assert_eq!(errors, 3, "one error per malformed request");
        // A write request for a new file and one over an existing file: refused.
        for wrq in [&b"\0\x02planted\0octet\0"[..], b"\0\x02kept\0octet\0"] {
            s.send_to(wrq, "10.78.3.1:69").unwrap();
            let (n, _) = s.recv_from(&mut buf).expect("an answer to a write request");
            assert_eq!(&buf[..2], &[0, 5], "{:?}", &buf[..n]);
        }
    });
    assert_eq!(
        snapshot(root.path()),
        before,
        "malformed requests changed the TFTP root"
    );
    // No transfer was started or ended, nothing sent: only the refusals were counted.
    assert_eq!(h.revision(), rev, "malformed requests changed the objects");
    let mut expected = counters.clone();
    *expected
        .get_mut("wulf_tftp_requests_total{kind=\"bad\"}")
        .unwrap() += 3.0;
    *expected
        .get_mut("wulf_tftp_requests_total{kind=\"write\"}")
        .unwrap() += 2.0;
    assert_eq!(
        tftp_metrics(),
        expected,
        "malformed requests started a transfer"
    );
    std::fs::write(root.path().join("late"), b"still serving").unwrap();
    let f = in_netns(&c, || fetch("10.78.3.1:69".parse().unwrap(), "late", &[])).unwrap();
    assert_eq!(f.data, b"still serving");
    assert!(h.log().contains("file not found"));
}

#[test]
fn keeps_running_when_the_port_cannot_be_bound() {
    let lab = Lab::new("10.78.4");
    let h = Head::start_in(
        &lab.srv,
        "[dhcp]\nenabled = false\n[dns]\nenabled = false\n[tftp]\nlisten = \"10.99.99.99:69\"\n",
    );
    wait_for_log(&h, "TFTP disabled: cannot listen on 10.99.99.99:69");
    h.ok(&["info"]);
}

//! Limits on the API port: a head started under `ulimit -n 1024` keeps serving DHCP (busybox
//! udhcpc), TFTP (tftp-hpa), boot files (curl) and status reports (`wulf sim`) while a client
//! holds 1,100 idle connections to its HTTP port, or trickles a request head a byte at a time
//! on each of them (slowloris); oversized JSON bodies and request heads are refused and change
//! nothing.

mod head;
mod netns;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use head::{wait_for, Head};
use netns::Lab;

const NET: &str = "10.81.0";
const NODE_MAC: &str = "52:54:00:81:00:01";
/// Connections the flood keeps open (or keeps trying to).
const FLOOD: usize = 1100;

fn rlimit() -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
    (r.rlim_cur, r.rlim_max)
}

fn set_rlimit(soft: u64, hard: u64) {
    let r = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we pass.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
    assert_eq!(rc, 0, "setrlimit: {}", std::io::Error::last_os_error());
}

/// Start wulfd in `ns` under `ulimit -n 1024` (soft and hard limit, so it cannot raise its
/// own): the test support starts it, then it is started again with the same command line
/// under the limit.
fn start_under_ulimit(ns: &str, config: &str) -> Head {
    let mut h = Head::start_configured(Some(ns), config, &[]);
    // `ip netns exec` execs wulfd: the child is wulfd itself.
    let pid = h.child.as_ref().unwrap().id();
    let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    h.stop();
    let log = std::fs::File::create(h.dir.path().join("wulfd.log")).unwrap();
    let child = head::in_ns(Some(ns), "sh")
        .args(["-c", "ulimit -n 1024 && exec \"$@\"", "sh"])
        .args(&argv)
        .env_remove("WULFD_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    h.child = Some(child);
    wait_for(
        "wulfd under ulimit -n 1024 comes up",
        Duration::from_secs(30),
        || h.wulf(&["info"]).status.success(),
        || h.log(),
    );
    let pid = h.child.as_ref().unwrap().id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    let nofile: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| l.split_whitespace().skip(3).take(2).collect())
        .unwrap_or_default();
    assert_eq!(nofile, ["1024", "1024"], "{limits}");
    h
}

/// Run `f` on a thread inside network namespace `ns`.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on this thread only; fd is a network namespace file.
        let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
}

#[derive(Debug, Default)]
struct FloodStats {
    connects: u64,
    connect_errors: u64,
    /// Connections the head closed (or answered 503) that the flood opened again.
    closed_by_head: u64,
    /// The most connections open at once, as the flood saw them.
    most_open: usize,
}

/// A client holding `count` connections to `target` from namespace `ns`, opening again each
/// one the head closes (once a second). With `trickle`, each connection sends the start of a
/// request head and then one more header byte every 3 s, never ending it.
struct Flood {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<FloodStats>>,
}

impl Flood {
    fn start(ns: &str, target: SocketAddr, count: usize, trickle: bool) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = in_netns(ns, move || run_flood(target, count, trickle, &s));
        Flood {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> FloodStats {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_flood(target: SocketAddr, count: usize, trickle: bool, stop: &AtomicBool) -> FloodStats {
    let mut st = FloodStats::default();
    let mut socks: Vec<Option<TcpStream>> = (0..count).map(|_| None).collect();
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let mut round = 0u64;
    // Bounded: the test stops it long before.
    while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(240) {
        let trickle_now = trickle && round.is_multiple_of(3);
        for s in socks.iter_mut() {
            if let Some(c) = s {
                let gone = match c.read(&mut buf) {
                    Ok(_) => true, // closed, or answered (503): either way not held
                    Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                };
                let gone = gone || (trickle_now && c.write_all(b"a").is_err());
                if gone {
                    *s = None;
                    st.closed_by_head += 1;
                }
            }
            if s.is_none() && !stop.load(Ordering::SeqCst) {
                match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
                    Ok(mut c) => {
                        st.connects += 1;
                        if trickle {
                            let _ = c.write_all(b"GET /boot/ipxe HTTP/1.1\r\nX-Slow: ");
                        }
                        c.set_nonblocking(true).unwrap();
                        *s = Some(c);
                    }
                    Err(_) => st.connect_errors += 1,
                }
            }
        }
        st.most_open = st
            .most_open
            .max(socks.iter().filter(|s| s.is_some()).count());
        round += 1;
        let pause = Instant::now() + Duration::from_secs(1);
        while Instant::now() < pause && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    st
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// busybox udhcpc in `ns`: the variables its script got with the lease, or None after
/// `tries` DISCOVERs a second apart.
fn udhcpc(ns: &str, tries: u32) -> Option<HashMap<String, String>> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bound.env");
    let s = script(
        dir.path(),
        "udhcpc.sh",
        &format!(
            "[ \"$1\" = bound ] && env > {o}.tmp && mv {o}.tmp {o}\nexit 0",
            o = out.display()
        ),
    );
    let status = Command::new("timeout")
        .args(["-s", "KILL", "40", "ip", "netns", "exec", ns])
        .args(["busybox", "udhcpc", "-n", "-q", "-f", "-i", "eth0"])
        .args(["-T", "1", "-A", "1", "-t", &tries.to_string(), "-s"])
        .arg(&s)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let env: Option<HashMap<String, String>> = std::fs::read_to_string(&out).ok().map(|t| {
        t.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect()
    });
    assert_eq!(status.success(), env.is_some(), "udhcpc exit {status}");
    env
}

/// The real clients that must keep being served, and what they fetch.
struct Services<'a> {
    h: &'a Head,
    lab: &'a Lab,
    /// The node's namespace.
    client: String,
    tftp_file: PathBuf,
    kernel: Vec<u8>,
    ksha: String,
}

/// DHCP, TFTP, a boot file and status reports, each by a real client, while the flood runs.
fn check_services(s: &Services, round: &str, sims: usize) {
    let Services {
        h,
        lab,
        client,
        tftp_file,
        kernel,
        ksha,
    } = s;
    let client = client.as_str();
    let why = || format!("{round}; wulfd log:\n{}", tail(&h.log(), 60));
    // DHCP: the node's reservation.
    let t = Instant::now();
    let lease = udhcpc(client, 10).unwrap_or_else(|| panic!("no DHCP lease: {}", why()));
    assert_eq!(lease["ip"], format!("{NET}.100"), "{lease:?}");
    eprintln!("{round}: DHCP lease in {:?}", t.elapsed());
    let _ = Command::new("ip")
        .args(["-n", client, "addr", "replace"])
        .arg(format!("{NET}.100/24"))
        .args(["dev", "eth0"])
        .status();

    // TFTP: tftp-hpa fetches the file whole.
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("got.bin");
    let t = Instant::now();
    let out = Lab::cmd(client, "timeout")
        .args(["30", "tftp", "-m", "binary", &lab.head_ip(), "-c", "get"])
        .arg(tftp_file.file_name().unwrap())
        .arg(&got)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let want = std::fs::read(tftp_file).unwrap();
    let have = std::fs::read(&got).unwrap_or_default();
    assert!(
        have == want,
        "tftp got {} of {} bytes ({}{}): {}",
        have.len(),
        want.len(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        why()
    );
    eprintln!("{round}: TFTP {} bytes in {:?}", have.len(), t.elapsed());

    // A boot file over HTTP, as firmware fetches it: curl, whole.
    let t = Instant::now();
    let kfile = dir.path().join("vmlinuz");
    let out = Lab::cmd(client, "curl")
        .args(["-sS", "--max-time", "30", "-o"])
        .arg(&kfile)
        .args(["-w", "%{http_code}"])
        .arg(format!("http://{}:8740/boot/file/{ksha}", lab.head_ip()))
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    let body = std::fs::read(&kfile).unwrap_or_default();
    assert!(
        code == "200" && body == *kernel,
        "boot file: HTTP {code}, {} of {} bytes ({}): {}",
        body.len(),
        kernel.len(),
        String::from_utf8_lossy(&out.stderr),
        why()
    );
    eprintln!(
        "{round}: boot file {} bytes in {:?}",
        body.len(),
        t.elapsed()
    );

    // Status intake: `sims` simulated nodes (one more each time) boot, report and shut down
    // cleanly.
    let t = Instant::now();
    let n = sims.to_string();
    let out = h.wulf(&["sim", "--nodes", &n, "--boot-secs", "0", "--duration", "3"]);
    assert!(
        out.status.success(),
        "wulf sim: {}{}: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        why()
    );
    let status = h.ok(&["node", "status"]);
    let want = format!("down (clean shutdown) {sims} ");
    assert!(
        status.lines().any(|l| l
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .starts_with(&want)),
        "the simulated nodes' reports did not all arrive (want '{want}…'):\n{status}\n{}",
        why()
    );
    eprintln!("{round}: status reports accepted in {:?}", t.elapsed());
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn a_flood_of_idle_and_slow_connections_starves_nothing() {
    let mut lab = Lab::new(NET);
    let root = tempfile::tempdir().unwrap();
    let tftp_file = root.path().join("undionly.kpxe");
    let firmware: Vec<u8> = (0..300_000u32).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(&tftp_file, &firmware).unwrap();
    let config = format!(
        "[dhcp]\nlease_secs = 600\n[tftp]\nroot = \"{}\"\n[dns]\nenabled = false\n",
        root.path().display()
    );
    let h = start_under_ulimit(&lab.srv, &config);
    let log = h.log();
    assert!(
        log.contains("open-file limit: soft 1024 (was 1024), hard 1024"),
        "{log}"
    );
    assert!(log.contains("HTTP connections capped at 768"), "{log}");

    h.ok(&[
        "net",
        "create",
        "name=cluster",
        &format!("first_ip={NET}.100"),
        "ip_count=50",
        "mask_bits=24",
        &format!("host_ranges={NET}.10-{NET}.49"),
    ]);
    let kernel: Vec<u8> = (0..8_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let k = head::write(h.dir.path(), "vmlinuz", &kernel);
    let i = head::write(h.dir.path(), "initrd", b"an initramfs");
    let img = head::write(h.dir.path(), "root.tar", b"a root filesystem");
    h.ok(&[
        "image",
        "create",
        "name=img",
        &format!("content=@{}", img.display()),
    ]);
    h.ok(&[
        "boot",
        "create",
        "name=b1",
        "image=img",
        &format!("kernel=@{}", k.display()),
        &format!("initramfs=@{}", i.display()),
    ]);
    let ksha = h.json(&["boot", "ls"])[0]["kernel"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    h.ok(&["node", "create", &format!("mac={NODE_MAC}")]);
    let client = lab.client(NODE_MAC);
    let attacker = lab.client("52:54:00:81:00:66");
    lab.with_addr(&attacker, &format!("{NET}.66/24"));
    wait_for(
        "DHCP serving br0",
        Duration::from_secs(15),
        || h.log().contains("DHCP serving br0") && h.log().contains("TFTP ready"),
        || h.log(),
    );

    // The flood needs more than this process's usual 1024 open files.
    let (soft, hard) = rlimit();
    let want = (FLOOD as u64 + 512).max(soft);
    assert!(
        hard >= want,
        "the flood needs {want} open files; this process may have {hard}"
    );
    set_rlimit(want, hard);
    let target: SocketAddr = format!("{}:8740", lab.head_ip()).parse().unwrap();
    let services = Services {
        h: &h,
        lab: &lab,
        client,
        tftp_file,
        kernel,
        ksha,
    };

    for (n, (round, trickle)) in [("idle flood", false), ("slowloris flood", true)]
        .into_iter()
        .enumerate()
    {
        let reports = h.log().matches("connection cap reached").count();
        let flood = Flood::start(&attacker, target, FLOOD, trickle);
        // Let it fill the head's cap and run into it.
        wait_for(
            &format!("{round}: the head reports its connection cap"),
            Duration::from_secs(30),
            || h.log().matches("connection cap reached").count() > reports,
            || tail(&h.log(), 40),
        );
        check_services(&services, round, 2 * n + 1);
        // Through a whole head timeout: the held connections are closed and the flood opens
        // them again, and the services still answer.
        std::thread::sleep(Duration::from_secs(4));
        check_services(&services, round, 2 * n + 2);
        let st = flood.finish();
        eprintln!("{round}: {st:?}");
        assert!(
            st.most_open >= FLOOD - 10,
            "{round}: the flood could not open its connections: {st:?}"
        );
        assert!(
            st.closed_by_head > (FLOOD - 768) as u64,
            "{round}: the head closed too few: {st:?}"
        );
        // The cap, not the open-file limit, is what stopped the flood.
        let log = h.log();
        let out_of_fds: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("accept failed") || l.contains("Too many open files"))
            .collect();
        assert!(
            out_of_fds.is_empty(),
            "{round}: the head ran out of file descriptors:\n{}",
            out_of_fds.join("\n")
        );
    }
    let log = h.log();
    assert!(
        log.contains("connection(s) without a complete request to make room"),
        "{}",
        tail(&log, 60)
    );

    // Below the cap nothing needs to make room: slowloris connections are closed when the
    // request-head timeout (10 s by default) runs out, bytes trickling in or not.
    let timeouts = |h: &Head| {
        h.log()
            .matches("with no complete request head within 10 s")
            .count()
    };
    let before = timeouts(&h);
    let slow = Flood::start(&attacker, target, 200, true);
    wait_for(
        "the head closes slowloris connections at its head timeout",
        Duration::from_secs(30),
        || timeouts(&h) > before,
        || tail(&h.log(), 40),
    );
    // Let the flood notice.
    std::thread::sleep(Duration::from_secs(2));
    let st = slow.finish();
    assert!(st.closed_by_head >= 150, "{st:?}");
    set_rlimit(soft, hard);
}

/// A JSON body over max_body_mib gets 413 and a request head over the limits 431 (64 KiB, or
/// hyper's 100 header fields; 16 KiB on the boot-file fast path), and none changes the store.
#[test]
fn oversized_bodies_and_heads_are_refused() {
    let h = Head::start_configured(
        None,
        "max_body_mib = 1\n[dhcp]\nenabled = false\n[tftp]\nenabled = false\n[dns]\nenabled = false\n",
        &[],
    );
    h.ok(&["node", "create", "mac=52:54:00:81:01:01"]);
    let before = h.snapshot();
    let rev = h.revision();
    let dir = tempfile::tempdir().unwrap();

    // 2 MiB of nodes in one JSON body.
    let nodes: Vec<String> = (0..50_000)
        .map(|i| {
            format!(
                "{{\"mac\":\"52:54:01:{:02x}:{:02x}:{:02x}\"}}",
                i >> 16,
                (i >> 8) & 255,
                i & 255
            )
        })
        .collect();
    let big = format!("[{}]", nodes.join(","));
    assert!(big.len() > 1 << 20);
    let body = dir.path().join("body.json");
    std::fs::write(&body, &big).unwrap();
    let (code, reply) = h.curl(&[
        "-X",
        "POST",
        "-H",
        &h.auth(),
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &format!("@{}", body.display()),
        &format!("{}/api/v1/node", h.url()),
    ]);
    let reply = String::from_utf8_lossy(&reply);
    assert_eq!(code, 413, "{reply}");
    assert!(reply.contains("max_body_mib"), "{reply}");

    // Request heads: one header of 100 KiB (over the 64 KiB limit), or 120 small headers
    // (over hyper's 100), to the API over HTTPS and to the boot routes over plain HTTP.
    let big_head = dir.path().join("big-head.txt");
    std::fs::write(&big_head, format!("X-Big: {}\n", "b".repeat(100 * 1024))).unwrap();
    let many = dir.path().join("many-headers.txt");
    let lines: String = (0..120).map(|i| format!("X-Many-{i}: x\n")).collect();
    std::fs::write(&many, lines).unwrap();
    let boot_file = format!("{}/boot/file/{}", h.http_url(), "0".repeat(64));
    for file in [&big_head, &many] {
        let hdr = format!("@{}", file.display());
        let info = format!("{}/api/v1/info", h.url());
        let script = format!("{}/boot/ipxe?mac=52:54:00:81:01:01", h.http_url());
        for url in [&info, &script] {
            let (code, body) = h.curl(&["-H", &hdr, "-H", &h.auth(), url]);
            let body = String::from_utf8_lossy(&body);
            assert_eq!(code, 431, "{url} with {}: {body}", file.display());
        }
        // With a JSON body that would be fine.
        let (code, _) = h.curl(&[
            "-X",
            "POST",
            "-H",
            &hdr,
            "-H",
            &h.auth(),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "[{\"mac\":\"52:54:00:81:01:02\"}]",
            &format!("{}/api/v1/node", h.url()),
        ]);
        assert_eq!(code, 431, "{}", file.display());
    }
    // The boot-file fast path reads its own heads: 16 KiB at most.
    let (code, body) = h.curl(&["-H", &format!("@{}", big_head.display()), &boot_file]);
    assert_eq!(code, 431);
    assert!(String::from_utf8_lossy(&body).contains("too large"));

    assert_eq!(h.revision(), rev, "nothing was written");
    assert_eq!(h.snapshot(), before);
    // The head is well and takes a normal request.
    h.ok(&["node", "create", "mac=52:54:00:81:01:03"]);
}

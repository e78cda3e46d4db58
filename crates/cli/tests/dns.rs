//! The head's DNS server, checked with the real `dig` inside network namespaces: names and
//! addresses of nodes, hosts and the head in the cluster domain, reverse lookups, negative
//! answers, changes seen at once, forwarding to an upstream (a second, real wulfd that is
//! authoritative for another domain, and Debian's unbound as a site's resolver), REFUSED
//! without upstreams, SERVFAIL when no upstream answers, malformed packets, and
//! `wulf cluster hosts`.

mod head;
mod netns;

use std::process::Output;
use std::time::{Duration, Instant};

use head::Head;
use netns::{Lab, NsResolvConf};

/// Config for a head in a lab: only the services this test needs.
const QUIET: &str = "[dhcp]\nenabled = false\n[tftp]\nenabled = false\n";

/// Run dig in `ns` (one try, bounded wait).
fn dig_out(ns: &str, args: &[&str], secs: u32) -> Output {
    Lab::cmd(ns, "dig")
        .arg(format!("+time={secs}"))
        .arg("+tries=1")
        .args(args)
        .output()
        .expect("dig must be installed (./test.sh installs dnsutils)")
}

/// `dig +short`: the answer lines.
fn short(ns: &str, args: &[&str]) -> Vec<String> {
    let mut a = args.to_vec();
    a.push("+short");
    let o = dig_out(ns, &a, 2);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(String::from)
        .collect()
}

/// The full dig output (status, flags, sections).
fn full(ns: &str, args: &[&str], secs: u32) -> String {
    let o = dig_out(ns, args, secs);
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn status(out: &str) -> String {
    out.split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("(no answer)")
        .to_string()
}

fn flags(out: &str) -> Vec<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(";; flags:"))
        .and_then(|l| l.split(';').next())
        .map(|f| f.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// Poll `f` until it is true or `limit` passes; returns how long it took.
fn within(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if f() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn cluster_dns_with_dig() {
    let mut lab = Lab::new("10.79.0");
    let srv = lab.srv.clone();
    let at = "@10.79.0.1";

    // The upstream: a second wulfd in its own namespace on the bridge, authoritative for
    // outside.test, with no upstream of its own (its resolv.conf names only itself). It is also
    // told to listen on an address it does not have: a warning, and it keeps running.
    let up = lab.client("52:54:00:79:00:53");
    lab.with_addr(&up, "10.79.0.53/24");
    let _resolv = NsResolvConf::new(&up, "nameserver 10.79.0.53\n");
    let mut upstream = Head::start_in(
        &up,
        &format!("{QUIET}[dns]\nlisten = [\"10.79.0.53:53\", \"10.79.0.78:53\"]\n"),
    );
    upstream.ok(&[
        "net",
        "create",
        "name=out",
        "first_ip=10.79.0.60",
        "ip_count=10",
        "mask_bits=24",
        "domain=outside.test",
    ]);
    upstream.ok(&["node", "create", "name=www"]);

    // Our head: default listen addresses (port 53 on its addresses inside a net, found once
    // the net exists), a dead upstream first, then the real one.
    let h = Head::start_in(
        &srv,
        &format!("{QUIET}[dns]\nupstream = [\"10.79.0.99:53\", \"10.79.0.53:53\"]\n"),
    );
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        "first_ip=10.79.0.10",
        "ip_count=40",
        "mask_bits=24",
        "domain=cluster.local",
        "host_ranges=10.79.0.200-10.79.0.250",
    ]);
    h.ok(&["node", "create", "mac=52:54:00:79:00:10"]);
    h.ok(&["node", "create", "mac=52:54:00:79:00:11"]);
    h.ok(&["node", "create"]);
    h.ok(&[
        "node",
        "-i",
        "n1",
        "set",
        "_hostname=compute-b",
        "_ips=bmc=10.79.1.11",
    ]);
    h.ok(&[
        "host",
        "create",
        "name=sw1",
        "ip=10.79.0.200",
        "mac=52:54:00:79:00:c8",
        "hostnames=switch1,core.cluster.local",
    ]);

    within(
        Duration::from_secs(5),
        "DNS serving on 10.79.0.1:53",
        || short(&srv, &[at, "n0.cluster.local", "A"]) == ["10.79.0.10"],
    );

    // Forward and reverse names of nodes, hosts and the head.
    assert_eq!(short(&srv, &[at, "n1.cluster.local"]), ["10.79.0.11"]);
    assert_eq!(
        short(&srv, &[at, "compute-b.cluster.local"]),
        ["10.79.0.11"]
    );
    assert_eq!(short(&srv, &[at, "n1-bmc.cluster.local"]), ["10.79.1.11"]);
    assert_eq!(
        short(&srv, &[at, "compute-b-bmc.cluster.local"]),
        ["10.79.1.11"]
    );
    assert_eq!(
        short(&srv, &[at, "-x", "10.79.0.10"]),
        ["n0.cluster.local."]
    );
    assert_eq!(
        short(&srv, &[at, "-x", "10.79.0.11"]),
        ["compute-b.cluster.local."]
    );
    assert_eq!(
        short(&srv, &[at, "-x", "10.79.0.200"]),
        ["sw1.cluster.local."]
    );
    for alias in ["sw1", "switch1", "core", "SWITCH1"] {
        assert_eq!(
            short(&srv, &[at, &format!("{alias}.cluster.local")]),
            ["10.79.0.200"],
            "{alias}"
        );
    }
    let head_name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .split('.')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        short(&srv, &[at, &format!("{head_name}.cluster.local")]),
        ["10.79.0.1"]
    );
    assert_eq!(
        short(&srv, &[at, "-x", "10.79.0.1"]),
        [format!("{head_name}.cluster.local.")]
    );
    // Case-insensitive; unqualified single labels; TCP.
    assert_eq!(short(&srv, &[at, "N0.Cluster.LOCAL"]), ["10.79.0.10"]);
    assert_eq!(short(&srv, &[at, "n0."]), ["10.79.0.10"]);
    assert_eq!(
        short(&srv, &[at, "+tcp", "n0.cluster.local"]),
        ["10.79.0.10"]
    );
    assert_eq!(
        short(&srv, &[at, "+tcp", "-x", "10.79.0.10"]),
        ["n0.cluster.local."]
    );

    // Authoritative answers, and negative ones with the zone's SOA.
    let out = full(&srv, &[at, "n0.cluster.local"], 2);
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert!(flags(&out).contains(&"aa".to_string()), "{out}");
    let out = full(&srv, &[at, "nope.cluster.local"], 2);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");
    assert!(flags(&out).contains(&"aa".to_string()), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("cluster.local.") && l.contains("SOA")),
        "{out}"
    );
    let out = full(&srv, &[at, "n0.cluster.local", "AAAA"], 2);
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert!(out.contains("ANSWER: 0"), "{out}");
    let out = full(&srv, &[at, "-x", "10.79.0.39"], 2);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");
    assert_eq!(
        short(&srv, &[at, "cluster.local", "SOA"]).len(),
        1,
        "the zone has an SOA"
    );

    // Changes are seen at once: a new node within a second, a deleted one stops resolving.
    h.ok(&["node", "create", "name=late", "index=30"]);
    within(Duration::from_secs(1), "a new node resolves", || {
        short(&srv, &[at, "late.cluster.local"]) == ["10.79.0.40"]
    });
    h.ok(&["node", "-i", "n2", "delete"]);
    within(
        Duration::from_secs(1),
        "a deleted node stops resolving",
        || status(&full(&srv, &[at, "n2.cluster.local"], 2)) == "NXDOMAIN",
    );
    let out = full(&srv, &[at, "-x", "10.79.0.12"], 2);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");

    // Malformed packets (UDP and TCP) are each sent (a TCP connection that is refused fails
    // the send), and change nothing: the same objects, and the same answers over both.
    // Nor anything else: not the objects revision, the hosts, the nodes' status, and none of
    // it is passed to the upstream.
    let forwarded = || {
        let (code, body) = h.curl(&["-H", &h.auth(), &format!("{}/metrics", h.url())]);
        assert_eq!(code, 200);
        let text = String::from_utf8_lossy(&body);
        text.lines()
            .find(|l| l.starts_with("wulf_dns_forwarded_total "))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no wulf_dns_forwarded_total in:\n{text}"))
    };
    let state = || {
        (
            h.revision(),
            h.json(&["node", "ls"]),
            h.json(&["host", "ls"]),
            h.json(&["node", "status"]),
            forwarded(),
        )
    };
    let before = state();
    let objects = h.json(&["node", "ls"]);
    for packet in [
        "printf '\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\xff\\xff\\xff' >/dev/udp/10.79.0.1/53",
        "printf 'xy' >/dev/udp/10.79.0.1/53",
        "printf '\\x00\\x05hello' >/dev/tcp/10.79.0.1/53",
        "printf '\\xff\\xff\\x00' >/dev/tcp/10.79.0.1/53",
    ] {
        let o = Lab::cmd(&srv, "bash").arg("-c").arg(packet).output().unwrap();
        assert!(
            o.status.success(),
            "{packet}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert_eq!(short(&srv, &[at, "n0.cluster.local"]), ["10.79.0.10"]);
    assert_eq!(
        short(&srv, &[at, "+tcp", "n0.cluster.local"]),
        ["10.79.0.10"]
    );
    assert_eq!(h.json(&["node", "ls"]), objects);
    assert_eq!(
        state(),
        before,
        "malformed DNS packets changed the head's state"
    );

    // Forwarding: the dead upstream times out, the next one answers.
    let t = Instant::now();
    let out = full(&srv, &[at, "www.outside.test"], 8);
    assert_eq!(status(&out), "NOERROR", "{out}");
    assert!(out.contains("10.79.0.60"), "{out}");
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    // Now the live upstream is asked first: quick, over UDP and TCP.
    let t = Instant::now();
    assert_eq!(short(&srv, &[at, "www.outside.test"]), ["10.79.0.60"]);
    assert_eq!(
        short(&srv, &[at, "+tcp", "www.outside.test"]),
        ["10.79.0.60"]
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let out = full(&srv, &[at, "nothing.outside.test"], 4);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");
    // The cluster domain is never forwarded, even for names the upstream would know.
    let out = full(&srv, &[at, "www.cluster.local"], 2);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");

    // The upstream has no upstream of its own: outside names are REFUSED there. It warned
    // about the address it could not listen on and kept serving.
    let out = full(&up, &["@10.79.0.53", "example.com"], 2);
    assert_eq!(status(&out), "REFUSED", "{out}");
    assert!(
        upstream.log().contains("cannot listen on 10.79.0.78:53"),
        "{}",
        upstream.log()
    );
    upstream.ok(&["info"]);

    // wulf cluster hosts.
    let hosts = h.ok(&["cluster", "hosts"]);
    assert_eq!(
        lines(&hosts),
        [
            format!("10.79.0.1 {head_name}.cluster.local {head_name}"),
            "10.79.0.10 n0.cluster.local n0".to_string(),
            "10.79.0.11 compute-b.cluster.local compute-b n1.cluster.local n1".to_string(),
            "10.79.1.11 compute-b-bmc.cluster.local compute-b-bmc n1-bmc.cluster.local n1-bmc"
                .to_string(),
            "10.79.0.40 late.cluster.local late".to_string(),
            "10.79.0.200 sw1.cluster.local sw1 switch1.cluster.local switch1 core.cluster.local core"
                .to_string(),
        ],
        "{hosts}"
    );
    assert_eq!(h.ok(&["cluster", "hosts", "--format", "hosts"]), hosts);
    let ethers = h.ok(&["cluster", "hosts", "--format", "ethers"]);
    assert_eq!(
        lines(&ethers),
        [
            "52:54:00:79:00:10 n0",
            "52:54:00:79:00:11 compute-b",
            "52:54:00:79:00:c8 sw1",
        ],
        "{ethers}"
    );
    let err = h.fails(2, &["cluster", "hosts", "--format", "yaml"]);
    assert!(err.contains("hosts or --format ethers"), "{err}");
    h.fails(2, &["node", "hosts"]);
    let (code, body) = h.curl(&[
        "-H",
        &h.auth(),
        "https://127.0.0.1:8740/api/v1/cluster/hosts?format=ethers",
    ]);
    assert_eq!(code, 200);
    assert_eq!(String::from_utf8_lossy(&body), ethers);
    let (code, _) = h.curl(&["https://127.0.0.1:8740/api/v1/cluster/hosts"]);
    assert_eq!(code, 401);

    // SERVFAIL when no upstream answers (the live one is gone, the other never was).
    upstream.stop();
    let out = full(&srv, &[at, "www.outside.test"], 8);
    assert_eq!(status(&out), "SERVFAIL", "{out}");

    // The cluster's own names still work, and wulfd stops cleanly.
    assert_eq!(short(&srv, &[at, "n0.cluster.local"]), ["10.79.0.10"]);
    let mut h = h;
    h.stop();
    assert!(!h.log().contains("panicked"), "{}", h.log());
}

/// unbound (Debian's), as a site's resolver would be, in a namespace of its own: local data
/// for `outside.test` (an A, a CNAME, a TXT set larger than a 512-byte UDP answer), nothing
/// else reachable.
struct Unbound {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Unbound {
    fn start(ns: &str, addr: &str) -> Unbound {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let big: String = (0..12)
            .map(|i| {
                format!(
                    "    local-data: 'big.outside.test. 300 IN TXT \"record {i:02} {}\"'\n",
                    "x".repeat(60)
                )
            })
            .collect();
        let conf = format!(
            "server:\n    interface: {addr}\n    port: 53\n    do-ip6: no\n    \
             access-control: 0.0.0.0/0 allow\n    username: \"\"\n    chroot: \"\"\n    \
             directory: \"{d}\"\n    pidfile: \"{d}/unbound.pid\"\n    use-syslog: no\n    \
             logfile: \"{d}/unbound.log\"\n    verbosity: 1\n    log-queries: yes\n    \
             do-daemonize: no\n    \
             module-config: \"iterator\"\n    \
             local-zone: \"outside.test.\" static\n    \
             local-data: \"www.outside.test. 300 IN A 10.79.5.60\"\n    \
             local-data: \"alias.outside.test. 300 IN CNAME www.outside.test.\"\n{big}\
             remote-control:\n    control-enable: no\n"
        );
        let path = dir.path().join("unbound.conf");
        std::fs::write(&path, conf).unwrap();
        let check = std::process::Command::new("unbound-checkconf")
            .arg(&path)
            .output()
            .expect("unbound-checkconf must be installed (./test.sh installs unbound)");
        assert!(
            check.status.success(),
            "{}",
            String::from_utf8_lossy(&check.stdout)
        );
        let child = Lab::cmd(ns, "unbound")
            .args(["-d", "-c"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("unbound must be installed (./test.sh installs it: test.d/unbound.sh)");
        Unbound { child, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("unbound.log")).unwrap_or_default()
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn forwards_to_a_real_resolver() {
    let mut lab = Lab::new("10.79.5");
    let srv = lab.srv.clone();
    let at = "@10.79.5.1";
    let res = lab.client("52:54:00:79:05:53");
    lab.with_addr(&res, "10.79.5.53/24");
    let unbound = Unbound::start(&res, "10.79.5.53");
    within(Duration::from_secs(10), "unbound answering", || {
        short(&res, &["@10.79.5.53", "www.outside.test"]) == ["10.79.5.60"]
    });

    let h = Head::start_in(
        &srv,
        &format!("{QUIET}[dns]\nupstream = [\"10.79.5.53:53\"]\n"),
    );
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        "first_ip=10.79.5.10",
        "ip_count=20",
        "mask_bits=24",
        "domain=cluster.local",
    ]);
    h.ok(&["node", "create", "mac=52:54:00:79:05:10"]);
    within(
        Duration::from_secs(5),
        "DNS serving on 10.79.5.1:53",
        || short(&srv, &[at, "n0.cluster.local"]) == ["10.79.5.10"],
    );

    // Answers from the resolver, over UDP and TCP, with its flags (recursion available).
    assert_eq!(short(&srv, &[at, "www.outside.test"]), ["10.79.5.60"]);
    assert_eq!(
        short(&srv, &[at, "+tcp", "www.outside.test"]),
        ["10.79.5.60"]
    );
    // What the resolver says, the head passes on as it is (here unbound's local data: the
    // CNAME alone, unchased).
    let direct = full(&res, &["@10.79.5.53", "alias.outside.test"], 2);
    let out = full(&srv, &[at, "alias.outside.test"], 2);
    assert_eq!(status(&out), "NOERROR", "{out}");
    let answer = |o: &str| -> Vec<String> {
        o.lines()
            .skip_while(|l| !l.starts_with(";; ANSWER SECTION"))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    assert!(
        answer(&out)
            .iter()
            .any(|l| l.contains("CNAME www.outside.test.")),
        "{out}"
    );
    assert_eq!(answer(&out), answer(&direct), "{out}\n{direct}");
    let out = full(&srv, &[at, "nothing.outside.test"], 2);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");
    // An answer too big for 512 bytes: truncated over UDP without EDNS (dig then asks again
    // over TCP and gets it all), whole over TCP.
    let out = full(
        &srv,
        &[at, "+noedns", "+ignore", "big.outside.test", "TXT"],
        2,
    );
    assert!(flags(&out).contains(&"tc".to_string()), "{out}");
    let txt = |out: &str| out.lines().filter(|l| l.contains("\"record ")).count();
    let out = full(&srv, &[at, "+noedns", "big.outside.test", "TXT"], 4);
    assert_eq!(txt(&out), 12, "{out}");
    let out = full(&srv, &[at, "+tcp", "big.outside.test", "TXT"], 4);
    assert_eq!(txt(&out), 12, "{out}");
    // The cluster's own names never reach the resolver (which logs every query it gets).
    assert_eq!(short(&srv, &[at, "n0.cluster.local"]), ["10.79.5.10"]);
    let _ = full(&srv, &[at, "nope.cluster.local"], 2);
    let log = unbound.log();
    assert!(log.contains("www.outside.test. A IN"), "{log}");
    assert!(!log.contains("cluster.local"), "{log}");
}

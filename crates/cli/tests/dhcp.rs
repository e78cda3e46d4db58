//! The DHCP server against real clients we did not write (isc-dhcp-client's dhclient, busybox
//! udhcpc, Kea's perfdhcp), each in its own network namespace on the lab bridge.

mod head;
mod netns;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use head::Head;
use netns::{parse_env, udhcpc, Lab};
use serde_json::Value;

const CONFIG: &str = "[dhcp]\nlease_secs = 600\n[tftp]\nenabled = false\n[dns]\nenabled = false\n";

fn start(lab: &Lab) -> Head {
    Head::start_in(&lab.srv, CONFIG)
}

/// Wait until wulfd serves br0 (it re-evaluates interfaces every second).
fn wait_serving(h: &Head) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(h.log().contains("DHCP serving br0") && h.log().contains("DHCP server listening")) {
        assert!(
            Instant::now() < deadline,
            "wulfd does not serve br0:\n{}",
            h.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The cluster network: nodes from .100, hosts in .10-.49.
fn cluster_net(h: &Head) {
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        "first_ip=10.77.0.100",
        "ip_count=50",
        "mask_bits=24",
        "router_ip=10.77.0.254",
        "dns_ips=10.77.0.53,10.77.0.54",
        "domain=cluster.test",
        "host_ranges=10.77.0.10-10.77.0.49",
    ]);
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Run isc-dhcp-client's dhclient in `ns` (foreground, one try, our own config and script)
/// until it is bound or `secs` pass.
fn dhclient(ns: &str, secs: u64) -> Option<HashMap<String, String>> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bound.env");
    let s = script(
        dir.path(),
        "dhclient.sh",
        &format!(
            "case \"$reason\" in BOUND|REBOOT) env > {o}.tmp && mv {o}.tmp {o};; esac\nexit 0",
            o = out.display()
        ),
    );
    let conf = dir.path().join("dhclient.conf");
    std::fs::write(
        &conf,
        format!(
            "timeout {secs};\ninitial-interval 1;\nrequest subnet-mask, broadcast-address, routers, \
             domain-name, domain-name-servers, host-name;\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("dhclient.log")).unwrap();
    let mut child = Lab::cmd(ns, "dhclient")
        .args(["-d", "-1", "-v", "-cf"])
        .arg(&conf)
        .arg("-sf")
        .arg(&s)
        .arg("-lf")
        .arg(dir.path().join("leases"))
        .arg("-pf")
        .arg(dir.path().join("pid"))
        .arg("eth0")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs + 5);
    let env = loop {
        if let Ok(t) = std::fs::read_to_string(&out) {
            break Some(parse_env(&t));
        }
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    if env.is_none() {
        eprintln!(
            "dhclient log:\n{}",
            std::fs::read_to_string(dir.path().join("dhclient.log")).unwrap_or_default()
        );
    }
    env
}

fn node_by_mac(h: &Head, mac: &str) -> Vec<Value> {
    h.json(&["node", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["mac"] == mac)
        .cloned()
        .collect()
}

#[test]
fn known_nodes_hosts_and_bmcs_get_their_reservations() {
    let mut lab = Lab::new("10.77.0");
    let h = start(&lab);
    // The net is created after wulfd started: it must start serving br0 by itself.
    cluster_net(&h);
    h.ok(&["node", "create", "mac=52:54:00:77:00:01"]);
    h.ok(&["node", "create", "mac=52:54:00:77:00:02"]);
    h.ok(&["node", "-i", "n1", "set", "_hostname=compute-b"]);
    h.ok(&[
        "node",
        "-i",
        "n0",
        "set",
        "_macs=bmc=52:54:00:77:0b:01",
        "_ips=bmc=10.77.0.30",
    ]);
    h.ok(&[
        "host",
        "create",
        "name=switch1",
        "mac=52:54:00:77:00:99",
        "ip=10.77.0.20",
    ]);
    let c0 = lab.client("52:54:00:77:00:01");
    let c1 = lab.client("52:54:00:77:00:02");
    let sw = lab.client("52:54:00:77:00:99");
    let bmc = lab.client("52:54:00:77:0b:01");

    let (d, u, s, b) = std::thread::scope(|sc| {
        let d = sc.spawn(|| dhclient(&c1, 20));
        let u = sc.spawn(|| udhcpc(&c0, 8, &[]));
        let s = sc.spawn(|| udhcpc(&sw, 8, &[]));
        let b = sc.spawn(|| udhcpc(&bmc, 8, &[]));
        (
            d.join().unwrap(),
            u.join().unwrap(),
            s.join().unwrap(),
            b.join().unwrap(),
        )
    });

    // dhclient, node n1 with its _hostname.
    let d = d.unwrap_or_else(|| panic!("dhclient got no lease; wulfd log:\n{}", h.log()));
    assert_eq!(d["new_ip_address"], "10.77.0.101", "{d:?}");
    assert_eq!(d["new_subnet_mask"], "255.255.255.0");
    assert_eq!(d["new_routers"], "10.77.0.254");
    assert_eq!(d["new_domain_name_servers"], "10.77.0.53 10.77.0.54");
    assert_eq!(d["new_domain_name"], "cluster.test");
    assert_eq!(d["new_host_name"], "compute-b");
    assert_eq!(d["new_dhcp_server_identifier"], "10.77.0.1");
    assert_eq!(d["new_dhcp_lease_time"], "600");

    // udhcpc, node n0.
    let u = u.unwrap_or_else(|| panic!("udhcpc got no lease; wulfd log:\n{}", h.log()));
    assert_eq!(u["ip"], "10.77.0.100", "{u:?}");
    assert_eq!(u["subnet"], "255.255.255.0");
    assert_eq!(u["router"], "10.77.0.254");
    assert_eq!(
        u["dns"].split_whitespace().collect::<Vec<_>>(),
        ["10.77.0.53", "10.77.0.54"]
    );
    assert_eq!(u["domain"], "cluster.test");
    assert_eq!(u["hostname"], "n0");
    assert_eq!(u["serverid"], "10.77.0.1");
    assert_eq!(u["lease"], "600");
    assert!(u.get("boot_file").is_none_or(|f| f.is_empty()), "{u:?}");

    // The host: its IP and name, no boot file.
    let s = s.unwrap_or_else(|| panic!("host got no lease; wulfd log:\n{}", h.log()));
    assert_eq!(s["ip"], "10.77.0.20", "{s:?}");
    assert_eq!(s["hostname"], "switch1");
    assert_eq!(s["domain"], "cluster.test");
    assert!(s.get("boot_file").is_none_or(|f| f.is_empty()), "{s:?}");

    // n0's BMC: the BMC address, no boot file.
    let b = b.unwrap_or_else(|| panic!("BMC got no lease; wulfd log:\n{}", h.log()));
    assert_eq!(b["ip"], "10.77.0.30", "{b:?}");
    assert_eq!(b["hostname"], "n0-bmc");
    assert!(b.get("boot_file").is_none_or(|f| f.is_empty()), "{b:?}");

    // Boot files by client type (option 93 / user class), same node.
    let pxe = udhcpc(&c0, 5, &["-x", "0x5d:0000"]).expect("BIOS PXE lease");
    assert_eq!(pxe["boot_file"], "undionly.kpxe", "{pxe:?}");
    assert_eq!(pxe["siaddr"], "10.77.0.1");
    let efi = udhcpc(&c0, 5, &["-x", "0x5d:0007"]).expect("UEFI lease");
    assert_eq!(efi["boot_file"], "ipxe.efi", "{efi:?}");
    let ipxe = udhcpc(&c0, 5, &["-x", "0x5d:0007", "-x", "0x4d:69505845"]).expect("iPXE lease");
    assert_eq!(
        ipxe["boot_file"], "http://10.77.0.1:8740/boot/ipxe?mac=52:54:00:77:00:01",
        "{ipxe:?}"
    );

    // _no_boot nodes are ignored.
    h.ok(&["node", "-i", "n0", "set", "_no_boot=yes"]);
    assert!(udhcpc(&c0, 3, &[]).is_none());
    assert!(h.log().contains("_no_boot is set"), "{}", h.log());
}

#[test]
fn unknown_macs_are_listed_then_enrolled_exactly_once() {
    let mut lab = Lab::new("10.77.0");
    let h = start(&lab);
    cluster_net(&h);
    // A node whose index no net numbers has no IP: it gets nothing either.
    h.ok(&["node", "create", "mac=52:54:00:77:01:09", "index=900"]);
    let mac = "52:54:00:77:01:01";
    let a = lab.client(mac);
    let b = lab.client(mac); // the same MAC twice on the wire: a racing retry
    let noip = lab.client("52:54:00:77:01:09");
    wait_serving(&h);

    let (x, y) = std::thread::scope(|sc| {
        let x = sc.spawn(|| udhcpc(&a, 3, &[]));
        let y = sc.spawn(|| udhcpc(&noip, 3, &[]));
        (x.join().unwrap(), y.join().unwrap())
    });
    assert!(x.is_none(), "an unknown MAC got a lease: {x:?}");
    assert!(y.is_none(), "a node without an IP got a lease: {y:?}");
    assert!(h.log().contains("has no IP address"), "{}", h.log());
    assert!(node_by_mac(&h, mac).is_empty());

    let unknown = h.json(&["node", "unknown"]);
    let list = unknown.as_array().unwrap();
    assert_eq!(list.len(), 1, "{unknown}");
    assert_eq!(list[0]["mac"], mac);
    assert_eq!(list[0]["interface"], "br0");
    assert!(
        list[0]["count"].as_u64().unwrap() >= 2,
        "{unknown}\n{}",
        h.log()
    );
    let seen = |k: &str| {
        list[0][k]
            .as_f64()
            .unwrap_or_else(|| panic!("no {k} in {unknown}"))
    };
    assert!(seen("last_seen") >= seen("first_seen"), "{unknown}");
    let table = h.ok(&["node", "unknown"]);
    assert!(
        table.contains("MAC") && table.contains("FIRST SEEN") && table.contains(mac),
        "{table}"
    );
    h.fails(2, &["net", "unknown"]);

    // Bad ways of turning the unknown MAC into a node: each refused with a clear error, and
    // the unknown list, the nodes and the objects revision stay as they were.
    // What a refused request must leave as it was: the unknown list, the nodes, the objects.
    let state = || {
        (
            h.json(&["node", "unknown"]),
            h.json(&["node", "ls"]),
            h.revision(),
        )
    };
    let before = state();
    let dir = tempfile::tempdir().unwrap();
    let macs_bad = dir.path().join("bad-macs");
    std::fs::write(&macs_bad, format!("{mac}\n52:54:00:77:01:zz\n")).unwrap();
    let macs_taken = dir.path().join("taken-macs");
    std::fs::write(&macs_taken, format!("{mac}\n52:54:00:77:01:09\n")).unwrap();
    let (bad, taken) = (
        macs_bad.display().to_string(),
        macs_taken.display().to_string(),
    );
    let mac_is = format!("mac={mac}");
    let cases: Vec<(Vec<&str>, i32, String)> = vec![
        (
            vec!["node", "create", "mac=52:54:00:77:01:zz"],
            1,
            "is not a MAC".into(),
        ),
        (
            vec!["node", "create", &mac_is, "ip=10.77.0.999"],
            1,
            "ip".into(),
        ),
        (
            vec!["node", "create", &mac_is, "index=900"],
            1,
            "index 900 is already used".into(),
        ),
        (
            vec!["node", "create", &mac_is, "name=bad name"],
            1,
            "name".into(),
        ),
        (
            vec!["node", "create", "--macs", &bad],
            2,
            format!("{bad}:2"),
        ),
        (
            vec!["node", "create", "--macs", &taken],
            1,
            "already used".into(),
        ),
        (
            vec!["node", "-i", "n900", "replace", "mac=52:54:00:77:01:zz"],
            2,
            "is not a MAC".into(),
        ),
        (
            vec!["node", "-i", "nosuch", "replace", &mac_is],
            2,
            "no node matches nosuch".into(),
        ),
        (vec!["node", "unknown", "extra"], 2, "extra".into()),
        (
            vec!["cluster", "update", "accept_new_nodes=maybe"],
            1,
            "accept_new_nodes".into(),
        ),
    ];
    for (args, code, msg) in &cases {
        let err = h.fails(*code, args);
        assert!(
            err.contains(msg.as_str()),
            "wulf {args:?}: expected '{msg}' in:\n{err}"
        );
        let now = state();
        assert_eq!(
            now, before,
            "wulf {args:?} changed the unknown list or the nodes"
        );
    }
    let url = format!("{}/api/v1/node/unknown", h.url());
    for method in ["POST", "DELETE", "PATCH"] {
        let (code, _) = h.curl(&["-X", method, "-H", &h.auth(), &url]);
        assert_eq!(code, 403, "{method} /api/v1/node/unknown");
    }
    let now = state();
    assert_eq!(
        now, before,
        "a refused request changed the unknown list or the nodes"
    );

    // Accepting new nodes: both racing clients (and a burst of relayed retries of the same MAC
    // from perfdhcp) end up with the same single new node.
    h.ok(&["cluster", "update", "accept_new_nodes=insert"]);
    let relay = lab.client("02:00:00:77:01:fe");
    lab.with_addr(&relay, "10.77.0.2/24");
    let (burst, x, y) = std::thread::scope(|sc| {
        let burst = sc.spawn(|| {
            Command::new("timeout")
                .args(["-s", "KILL", "30", "ip", "netns", "exec", &relay])
                .args(["perfdhcp", "-4", "-r", "50", "-n", "50", "-R", "1"])
                .args(["-b", &mac_is, "10.77.0.1"])
                .output()
                .unwrap()
        });
        let x = sc.spawn(|| udhcpc(&a, 8, &[]));
        let y = sc.spawn(|| udhcpc(&b, 8, &[]));
        let burst = burst.join().unwrap();
        (burst, x.join().unwrap(), y.join().unwrap())
    });
    // The burst ran to its end (not killed by the timeout) and was answered.
    let said = String::from_utf8_lossy(&burst.stdout);
    assert!(
        burst.status.code().is_some(),
        "perfdhcp was killed after 30 s:\n{said}\n{}",
        String::from_utf8_lossy(&burst.stderr)
    );
    let count = |what: &str| -> u64 {
        said.lines()
            .find_map(|l| l.trim().strip_prefix(what))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no '{what}' in perfdhcp's output:\n{said}"))
    };
    assert!(count("sent packets:") >= 50, "{said}");
    assert!(count("received packets:") >= 1, "{said}");
    let x = x.unwrap_or_else(|| panic!("no lease after accept_new_nodes; log:\n{}", h.log()));
    let y = y.unwrap_or_else(|| panic!("no lease for the twin; log:\n{}", h.log()));
    let nodes = node_by_mac(&h, mac);
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(h.json(&["node", "ls"]).as_array().unwrap().len(), 2);
    let ip = nodes[0]["ip"].as_str().unwrap();
    assert_eq!(x["ip"], ip);
    assert_eq!(y["ip"], ip);
    assert_eq!(x["hostname"], nodes[0]["name"].as_str().unwrap());
    assert_eq!(
        h.log().matches(&format!("for new MAC {mac}")).count(),
        1,
        "{}",
        h.log()
    );
    // Known now: no longer listed.
    assert_eq!(h.json(&["node", "unknown"]), serde_json::json!([]));
}

#[test]
fn perfdhcp_relay_thousand_nodes_without_drops() {
    let mut lab = Lab::new("10.77.0");
    let h = start(&lab);
    // A /16 net holding the head (10.77.0.1) and 1,000 node addresses from 10.77.4.0.
    h.ok(&[
        "net",
        "create",
        "name=big",
        "first_ip=10.77.4.0",
        "ip_count=1000",
        "mask_bits=16",
        "router_ip=10.77.0.254",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let macs: Vec<String> = (0..1000u32)
        .map(|i| format!("02:00:00:00:{:02x}:{:02x}", i >> 8, i & 0xff))
        .collect();
    let file = dir.path().join("macs.txt");
    std::fs::write(&file, macs.join("\n") + "\n").unwrap();
    h.ok(&["node", "create", "--macs", file.to_str().unwrap()]);
    assert_eq!(h.json(&["node", "ls"]).as_array().unwrap().len(), 1000);

    let relay = lab.client("02:00:00:77:02:fe");
    lab.with_addr(&relay, "10.77.0.2/24");
    wait_serving(&h);
    let out = Command::new("timeout")
        .args(["-s", "KILL", "60", "ip", "netns", "exec", &relay])
        .args([
            "perfdhcp", "-4", "-r", "200", "-R", "1000", "-p", "5", "-d", "2",
        ])
        .arg("-M")
        .arg(&file)
        .arg("10.77.0.1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let field = |name: &str| -> Vec<u64> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix(name))
            .filter_map(|v| v.split_whitespace().next()?.parse().ok())
            .collect()
    };
    let sent = field("sent packets:");
    let drops = field("drops:");
    assert!(
        sent.len() == 2 && sent[0] >= 900 && sent[1] >= 900,
        "perfdhcp sent too little:\n{text}"
    );
    assert!(
        drops.len() == 2 && drops.iter().all(|d| *d == 0),
        "perfdhcp saw drops:\n{text}\nwulfd log:\n{}",
        h.log()
            .lines()
            .filter(|l| !l.contains("DEBUG"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(h.log().contains("ACK 10.77."), "ACKs are logged at DEBUG");
}

#[test]
fn malformed_packets_are_dropped_and_counted() {
    let mut lab = Lab::new("10.77.0");
    let h = start(&lab);
    cluster_net(&h);
    h.ok(&["node", "create", "mac=52:54:00:77:03:01"]);
    let noisy = lab.client("02:00:00:77:03:fe");
    lab.with_addr(&noisy, "10.77.0.3/24");
    let client = lab.client("52:54:00:77:03:01");
    wait_serving(&h);

    // Garbage: short, random, a BOOTP header with a wrong cookie, options running past the
    // end, a zero-length message type, an hlen of 200.
    let dir = tempfile::tempdir().unwrap();
    let mut bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 3],
        (0..600u32).map(|i| (i * 7919 % 251) as u8).collect(),
    ];
    let mut hdr = vec![0u8; 236];
    hdr[0] = 1;
    hdr[1] = 1;
    hdr[2] = 6;
    hdr[28..34].copy_from_slice(&[0x52, 0x54, 0, 0x77, 3, 1]);
    let with = |tail: &[u8]| {
        let mut v = hdr.clone();
        v.extend_from_slice(tail);
        v
    };
    bad.push(with(&[1, 2, 3, 4, 53, 1, 1, 255]));
    bad.push(with(&[99, 130, 83, 99, 53, 1, 1, 55, 200, 1, 3]));
    bad.push(with(&[99, 130, 83, 99, 53, 0, 255]));
    let mut h200 = with(&[99, 130, 83, 99, 53, 1, 1, 255]);
    h200[2] = 200;
    bad.push(h200);
    // The same from a MAC no node has: not listed as unknown (it never made a request).
    for b in [bad[4].clone(), bad[6].clone()] {
        let mut b = b;
        b[28..34].copy_from_slice(&[0x02, 0, 0, 0x77, 3, 0x99]);
        bad.push(b);
    }
    let mut sends = String::new();
    for (i, b) in bad.iter().enumerate() {
        let p = dir.path().join(format!("bad{i}"));
        std::fs::write(&p, b).unwrap();
        sends += &format!("cat {} > /dev/udp/10.77.0.1/67; ", p.display());
    }
    // The state the garbage must leave as it was: the objects (and their revision), the
    // unknown MACs, the nodes' status.
    let state = || {
        (
            h.revision(),
            h.json(&["node", "ls"]),
            h.json(&["node", "unknown"]),
            h.json(&["node", "status"]),
        )
    };
    let before = state();
    assert_eq!(before.2, serde_json::json!([]));
    assert_eq!(before.3[0]["state"], "new", "{}", before.3);
    for _ in 0..20 {
        let st = Command::new("ip")
            .args(["netns", "exec", &noisy, "bash", "-c", &sends])
            .status()
            .unwrap();
        assert!(st.success());
    }
    // Each of the 8 that are not empty (cat sends nothing for the empty one), 20 times, is
    // counted and logged.
    let dropped = || h.log().matches("dropped a malformed packet").count();
    head::wait_for(
        "the garbage is handled",
        Duration::from_secs(10),
        || dropped() >= 160,
        || {
            format!(
                "{} malformed drops logged:\n{}",
                dropped(),
                tail(&h.log(), 60)
            )
        },
    );
    assert!(!h.log().contains("panicked"), "{}", h.log());
    // It changed nothing: the same nodes, no unknown MAC recorded, the same status.
    assert_eq!(
        state(),
        before,
        "malformed DHCP packets changed the head's state"
    );
    let lease = udhcpc(&client, 8, &[])
        .unwrap_or_else(|| panic!("no lease after garbage; log:\n{}", tail(&h.log(), 60)));
    assert_eq!(lease["ip"], "10.77.0.100");
    assert_eq!(h.json(&["node", "unknown"]), before.2);
    assert_eq!(h.revision(), before.0);
    // And it stops cleanly.
    let mut h = h;
    h.stop();
    assert!(h.log().contains("stopped"), "{}", tail(&h.log(), 20));
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

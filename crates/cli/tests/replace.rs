//! A node's box replaced (`wulf node -i n5 replace mac=NEW`), new MACs numbered by
//! `accept_new_nodes` (append, insert), and unknown MACs kept in the store (through a restart,
//! shared by two heads on one etcd), against real DHCP clients (busybox udhcpc) in network
//! namespaces.

mod head;
mod netns;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use head::{etcd_member, wait_for, Head};
use netns::{udhcpc, Lab};
use serde_json::Value;

const DHCP: &str = "[dhcp]\nlease_secs = 600\n[tftp]\nenabled = false\n[dns]\nenabled = false\n";

/// Wait until wulfd serves br0 (it re-evaluates interfaces every second).
fn wait_serving(h: &Head) {
    wait_for(
        "wulfd does not serve br0",
        Duration::from_secs(15),
        || h.log().contains("DHCP serving br0") && h.log().contains("DHCP server listening"),
        || h.log(),
    );
}

/// The cluster network: nodes from .100, hosts in .10-.49.
fn cluster_net(h: &Head) {
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        "first_ip=10.78.0.100",
        "ip_count=50",
        "mask_bits=24",
        "host_ranges=10.78.0.10-10.78.0.49",
    ]);
}

fn node(h: &Head, name: &str) -> Value {
    let v = h.json(&["node", "ls", name]);
    v.as_array().unwrap()[0].clone()
}

fn unknown_macs(h: &Head) -> Vec<String> {
    h.json(&["node", "unknown"])
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["mac"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn replace_gives_the_new_box_the_node_and_its_address() {
    let mut lab = Lab::new("10.78.0");
    let h = Head::start_in(&lab.srv, DHCP);
    cluster_net(&h);
    let (old, new) = ("52:54:00:78:00:05", "52:54:00:78:00:55");
    h.ok(&["node", "create", "index=5", &format!("mac={old}")]);
    h.ok(&["node", "create", "index=6", "mac=52:54:00:78:00:06"]);
    h.ok(&["attrib", "create", "name=rack1"]);
    h.ok(&[
        "node",
        "-i",
        "n5",
        "set",
        "rack=r1",
        "_altmacs=52:54:00:78:00:a5",
    ]);
    h.ok(&["node", "-i", "n5", "join", "rack1"]);
    h.ok(&[
        "node",
        "-i",
        "n5",
        "update",
        "boot_sequence=pxe+local",
        "boot_stage=local",
    ]);
    h.ok(&[
        "host",
        "create",
        "name=switch1",
        "mac=52:54:00:78:00:99",
        "ip=10.78.0.20",
    ]);
    h.ok(&["node", "-i", "n6", "set", "_macs=bmc=52:54:00:78:0b:06"]);
    wait_serving(&h);

    // The old box gets its address.
    let old_ns = lab.client(old);
    let lease = udhcpc(&old_ns, 8, &[]).unwrap_or_else(|| panic!("no lease for n5:\n{}", h.log()));
    assert_eq!(lease["ip"], "10.78.0.105");
    let before = node(&h, "n5");

    // Bad input: refused with exit 2, nothing changed.
    let rev = h.revision();
    let e = h.fails(
        2,
        &["node", "-i", "n[5-6]", "replace", &format!("mac={new}")],
    );
    assert!(e.contains("exactly one node"), "{e}");
    let e = h.fails(2, &["node", "-i", "n5", "replace", "mac=52:54:00:78:00:06"]);
    assert!(e.contains("node n6"), "{e}");
    let e = h.fails(2, &["node", "-i", "n5", "replace", "mac=52:54:00:78:00:99"]);
    assert!(e.contains("host switch1"), "{e}");
    let e = h.fails(2, &["node", "-i", "n5", "replace", "mac=52:54:00:78:0b:06"]);
    assert!(e.contains("BMC of node n6"), "{e}");
    let e = h.fails(2, &["node", "-i", "n5", "replace", "mac=52:54:00:78:00"]);
    assert!(e.contains("not a MAC address"), "{e}");
    h.fails(2, &["node", "--all", "replace", &format!("mac={new}")]);
    h.fails(2, &["node", "-i", "n5", "replace", "name=x"]);
    // Straight to the API too (curl): 4xx, nothing changed.
    let url = format!("{}/api/v1/node/replace?ids=n5", h.url());
    let (code, _) = h.curl(&[
        "-X",
        "POST",
        "-H",
        &h.auth(),
        "-H",
        "Content-Type: application/json",
        "-d",
        "{\"mac\":\"zz\"}",
        &url,
    ]);
    assert_eq!(code, 400);
    assert_eq!(h.revision(), rev, "a refused replace changed something");
    assert_eq!(node(&h, "n5"), before);

    // Replace.
    let out = h.ok(&["node", "-i", "n5", "replace", &format!("mac={new}")]);
    assert!(out.contains(new), "{out}");
    let after = node(&h, "n5");
    assert_eq!(after["mac"], new);
    assert_eq!(after["index"], 5);
    assert_eq!(after["ip"], "10.78.0.105");
    assert_eq!(after["uid"], before["uid"]);
    assert_eq!(after["groups"], before["groups"]);
    assert_eq!(after["attributes"]["rack"], "r1");
    assert!(after["attributes"].get("_altmacs").is_none(), "{after}");
    assert_eq!(after["boot_stage"], "pxe");
    assert!(
        h.log()
            .contains(&format!("replaced node n5's MAC {old} with {new}")),
        "{}",
        h.log()
    );

    // The new box gets the same address from real udhcpc; the old one is not answered.
    let new_ns = lab.client(new);
    let lease = udhcpc(&new_ns, 8, &[]).unwrap_or_else(|| panic!("no lease for new:\n{}", h.log()));
    assert_eq!(lease["ip"], "10.78.0.105");
    assert_eq!(lease["hostname"], "n5");
    assert!(
        udhcpc(&old_ns, 3, &[]).is_none(),
        "the old MAC is still answered"
    );
    assert_eq!(unknown_macs(&h), [old.to_string()]);
}

#[test]
fn new_macs_are_appended_or_inserted() {
    let mut lab = Lab::new("10.78.0");
    let h = Head::start_in(&lab.srv, DHCP);
    cluster_net(&h);
    h.ok(&["node", "create", "index=0", "mac=52:54:00:78:01:00"]);
    h.ok(&["node", "create", "index=5", "mac=52:54:00:78:01:05"]);
    wait_serving(&h);

    h.ok(&["cluster", "update", "accept_new_nodes=append"]);
    let a = "52:54:00:78:01:aa";
    let ns = lab.client(a);
    let lease = udhcpc(&ns, 8, &[]).unwrap_or_else(|| panic!("no lease (append):\n{}", h.log()));
    let n = node(&h, "n6");
    assert_eq!(n["mac"], a, "{}", h.log());
    assert_eq!(lease["ip"], "10.78.0.106");

    h.ok(&["cluster", "update", "accept_new_nodes=insert"]);
    let b = "52:54:00:78:01:bb";
    let ns = lab.client(b);
    let lease = udhcpc(&ns, 8, &[]).unwrap_or_else(|| panic!("no lease (insert):\n{}", h.log()));
    let n = node(&h, "n1");
    assert_eq!(n["mac"], b, "{}", h.log());
    assert_eq!(lease["ip"], "10.78.0.101");
}

#[test]
fn unknown_macs_survive_a_restart() {
    let mut lab = Lab::new("10.78.0");
    let mut h = Head::start_in(&lab.srv, DHCP);
    cluster_net(&h);
    h.ok(&["cluster", "update", "accept_new_nodes=locked"]);
    wait_serving(&h);
    let mac = "52:54:00:78:02:01";
    let ns = lab.client(mac);
    assert!(
        udhcpc(&ns, 3, &[]).is_none(),
        "locked: an unknown MAC got a lease"
    );
    assert_eq!(unknown_macs(&h), [mac.to_string()]);
    let table = h.ok(&["node", "unknown"]);
    assert!(
        table.contains("FIRST SEEN") && table.contains(mac),
        "{table}"
    );
    // SIGKILL: nothing is flushed at exit; it was written when first seen.
    h.kill9();
    h.spawn();
    assert_eq!(unknown_macs(&h), [mac.to_string()], "{}", h.log());
    // A node takes it: no longer listed, and the maintaining head drops the record.
    h.ok(&["node", "create", &format!("mac={mac}")]);
    assert!(unknown_macs(&h).is_empty());
}

/// etcd inside namespace `ns` on its loopback, killed when dropped.
struct NsEtcd(Child, #[allow(dead_code)] tempfile::TempDir);

impl Drop for NsEtcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn etcd_in(ns: &str) -> NsEtcd {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns, "etcd"]);
    etcd_member(
        &mut cmd,
        "m0",
        &dir.path().join("data"),
        "http://127.0.0.1:2379",
        "http://127.0.0.1:2380",
        "m0=http://127.0.0.1:2380",
    );
    let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
    let child = cmd
        .stderr(log)
        .spawn()
        .expect("etcd must be installed (./test.sh installs etcd-server)");
    let e = NsEtcd(child, dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-sf", "-o", "/dev/null"])
        .arg("http://127.0.0.1:2379/health")
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(Instant::now() < deadline, "etcd did not start in {ns}");
        std::thread::sleep(Duration::from_millis(100));
    }
    e
}

/// A head in `ns` on `port` with this config, on the namespace's etcd.
fn head_on_etcd(ns: &str, port: u16, config: &str) -> Head {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("wulfd.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut h = Head {
        dir,
        port,
        child: None,
        extra_args: vec![
            "--config".into(),
            cfg.display().to_string(),
            "--store".into(),
            "etcd://127.0.0.1:2379".into(),
        ],
        ns: Some(ns.to_string()),
    };
    h.spawn();
    h
}

#[test]
fn unknown_macs_are_shared_by_heads_on_one_etcd() {
    let mut lab = Lab::new("10.78.0");
    let _etcd = etcd_in(&lab.srv);
    let a = head_on_etcd(&lab.srv, 8740, &format!("head_name = \"head-a\"\n{DHCP}"));
    let b = head_on_etcd(
        &lab.srv,
        8741,
        "head_name = \"head-b\"\n[dhcp]\nenabled = false\n[tftp]\nenabled = false\n[dns]\nenabled = false\n",
    );
    cluster_net(&a);
    a.ok(&["cluster", "update", "accept_new_nodes=locked"]);
    wait_serving(&a);
    let mac = "52:54:00:78:03:01";
    let ns = lab.client(mac);
    assert!(udhcpc(&ns, 3, &[]).is_none());
    assert_eq!(unknown_macs(&a), [mac.to_string()]);
    // Head B runs no DHCP server: it lists what A saw, from the store.
    wait_for(
        "head B does not list the MAC head A saw",
        Duration::from_secs(5),
        || unknown_macs(&b) == [mac.to_string()],
        || format!("{:?}\n{}", unknown_macs(&b), a.log()),
    );
    let list = b.json(&["node", "unknown"]);
    assert_eq!(list[0]["interface"], "br0");
    assert!(list[0]["count"].as_u64().unwrap() >= 1, "{list}");
}

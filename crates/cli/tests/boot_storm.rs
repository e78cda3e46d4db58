//! `wulf sim --boot-storm`: simulated nodes boot as real ones do (DHCP as PXE, TFTP loader,
//! DHCP as iPXE, boot script, kernel, initramfs and image, enrollment, status) against the
//! real wulfd, from a client network namespace on the lab bridge, each from its own address.
//! About 15 s.

mod head;
mod netns;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use head::{write, wulf_bin, Head};
use netns::Lab;
use serde_json::Value;

const CONFIG: &str = "[dhcp]\nlease_secs = 600\n[dns]\nenabled = false\n";

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut v)
        .unwrap();
    v
}

/// A head in the lab's server namespace serving the cluster net 10.93.0.0/24 (nodes from
/// .100), with image `img` packed from a directory of a few MiB of random data and boot
/// config `storm` (any file will do as kernel and initramfs: they are downloaded, not run).
fn head(lab: &Lab, dir: &Path) -> Head {
    head_with(lab, dir, 3 << 20)
}

/// [`head`] with an image of `size` bytes of random data (and a tiny init).
fn head_with(lab: &Lab, dir: &Path, size: usize) -> Head {
    let h = Head::start_in(&lab.srv, CONFIG);
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        "first_ip=10.93.0.100",
        "ip_count=100",
        "mask_bits=24",
    ]);
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("sbin")).unwrap();
    write(&root, "data.bin", &random(size));
    write(&root.join("sbin"), "init", b"#!/bin/sh\n");
    h.ok(&[
        "image",
        "create",
        "name=img",
        "--from-dir",
        root.to_str().unwrap(),
    ]);
    let k = write(dir, "vmlinuz", &random(1 << 20));
    let i = write(dir, "initrd", &random(256 << 10));
    h.ok(&[
        "boot",
        "create",
        "name=storm",
        "image=img",
        &format!("kernel=@{}", k.display()),
        &format!("initramfs=@{}", i.display()),
    ]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(h.log().contains("DHCP serving br0") && h.log().contains("TFTP ready")) {
        assert!(
            Instant::now() < deadline,
            "no DHCP on br0 or no TFTP:\n{}",
            h.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    h
}

/// `wulf sim --boot-storm N ARGS --json` in `ns` against `h` (killed after 100 s): exit
/// code, the figures, stderr.
fn storm(h: &Head, ns: &str, n: usize, args: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new("timeout")
        .args(["-s", "KILL", "100", "ip", "netns", "exec", ns])
        .arg(wulf_bin())
        .args(["--url", "https://10.93.0.1:8740", "--ca"])
        .arg(h.ca())
        .args(["--token", &h.token(), "--json", "sim", "--boot-storm"])
        .arg(n.to_string())
        .args(["--iface", "eth0", "--node-timeout", "60"])
        .args(args)
        .env("HOME", h.dir.path())
        .env_remove("WULF_URL")
        .env_remove("WULF_TOKEN")
        .env_remove("WULF_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_ne!(out.status.code(), None, "the storm was killed:\n{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}):\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code(), v, stderr)
}

/// A head whose stored image is damaged after it was uploaded (`_image_peers` when
/// `peers`), and a storm of 2 nodes that must both fail: the image's sha256, the failures'
/// reasons, the storm's stderr, the head's log.
fn damaged_storm(lab: &Lab, ns: &str, peers: bool) -> (String, Vec<String>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let h = head_with(lab, dir.path(), if peers { 5 << 20 } else { 3 << 20 });
    if peers {
        h.ok(&["attrib", "-i", "DefaultAttribs", "set", "_image_peers=yes"]);
    }
    let sha = h.json(&["image", "ls", "img"])[0]["content"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = h.data().join("blobs/sha256").join(&sha);
    let len = std::fs::metadata(&blob).unwrap().len() as usize;
    std::fs::write(&blob, random(len)).unwrap();
    let (code, v, err) = storm(&h, ns, 2, &["--boot-config", "storm"]);
    assert_eq!(code, Some(1), "{v:#}\n{err}");
    assert_eq!(
        (v["up"].as_u64(), v["failed"].as_u64()),
        (Some(0), Some(2)),
        "{v:#}"
    );
    let why = v["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["reason"].as_str().unwrap().to_string())
        .collect();
    let st = states(&h);
    assert!(st.iter().all(|(_, s)| s != "up"), "{st:?}");
    (sha, why, err, h.log())
}

fn states(h: &Head) -> Vec<(String, String)> {
    h.json(&["node", "status"])
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or("").to_string(),
                n["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn twenty_nodes_boot_at_once_and_a_bad_image_fails() {
    let mut lab = Lab::new("10.93.0");
    let dir = tempfile::tempdir().unwrap();
    let ns = lab.client("02:00:00:93:00:fe");
    // The storm's own address, for the admin API (the nodes' come from DHCP).
    lab.with_addr(&ns, "10.93.0.250/24");
    let t = Instant::now();
    {
        let h = head(&lab, dir.path());
        let (code, v, err) = storm(&h, &ns, 20, &["--boot-config", "storm", "--spread", "1"]);
        assert_eq!(code, Some(0), "{v:#}\n{err}");
        assert_eq!(
            (v["up"].as_u64(), v["failed"].as_u64()),
            (Some(20), Some(0)),
            "{v:#}"
        );
        assert!(v["failures"].as_array().unwrap().is_empty(), "{v:#}");
        // Loader, script, kernel, initramfs and a 3 MiB image, for each of the 20.
        assert!(v["bytes"].as_u64().unwrap() > 20 * (4 << 20), "{v:#}");
        assert!(v["tftp_bytes"].as_u64().unwrap() > 20 * 10_000, "{v:#}");
        let (p50, p99) = (
            v["p50_secs"].as_f64().unwrap(),
            v["p99_secs"].as_f64().unwrap(),
        );
        assert!(p50 > 0.0 && p50 <= p99 && p99 <= 60.0, "{v:#}");
        let all_up = v["all_up_secs"].as_f64().unwrap();
        assert!(all_up >= p99 && all_up < 61.0, "{v:#}");
        // The head sees 20 real nodes up, each having fetched the image from its address.
        let st = states(&h);
        assert_eq!(st.len(), 20, "{st:?}");
        assert!(st.iter().all(|(_, s)| s == "up"), "{st:?}");
        let nodes = h.json(&["node", "ls"]);
        let ips: BTreeSet<String> = nodes
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                assert_ne!(n["type"], "simulated");
                n["ip"].as_str().unwrap().to_string()
            })
            .collect();
        let log = h.log();
        let sent: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("sending image img to "))
            .collect();
        let from: BTreeSet<String> = sent
            .iter()
            .filter_map(|l| l.split("sending image img to ").nth(1)?.split(' ').next())
            .map(str::to_string)
            .collect();
        assert_eq!(sent.len(), 20, "{}", sent.join("\n"));
        assert_eq!(from, ips, "image downloads not from the nodes' addresses");
        assert!(!log.contains("refused image"), "{log}");
        // The storm took its addresses off the interface again.
        let addrs = netns::sh(&format!("ip -n {ns} -4 addr show dev eth0"));
        assert!(
            !String::from_utf8_lossy(&addrs.stdout).contains("10.93.0.1"),
            "{}",
            String::from_utf8_lossy(&addrs.stdout)
        );
    }
    {
        // A boot config whose image file changed on the head after it was stored: the node
        // downloads it, finds the checksum wrong and does not come up.
        let (sha, why, err, _) = damaged_storm(&lab, &ns, false);
        for w in &why {
            assert!(
                w.starts_with(&format!("image checksum mismatch: expected {sha}, got ")),
                "{w}"
            );
        }
        assert!(err.contains("2 of 2 nodes failed to boot"), "{err}");
    }
    {
        // _image_peers: 20 nodes get a 13 MiB image (4 pieces) through the swarm; the head
        // sends it whole to its 4 direct nodes only, the rest come from peers.
        let dir3 = tempfile::tempdir().unwrap();
        let h = head_with(&lab, dir3.path(), 13 << 20);
        h.ok(&["attrib", "-i", "DefaultAttribs", "set", "_image_peers=yes"]);
        let sha = h.json(&["image", "ls", "img"])[0]["content"]["sha256"]
            .as_str()
            .unwrap()
            .to_string();
        // The tracker, asked by curl: no token, a bad port, not an image.
        let base = "http://10.93.0.1:8740/boot/swarm";
        let (code, body) = netns::curl(&ns, &[], &format!("{base}/{sha}"));
        assert_eq!(code, 403, "{body}");
        assert!(body.contains("enroll:UID:TOKEN"), "{body}");
        let (code, body) = netns::curl(&ns, &[], &format!("{base}/{sha}?port=0"));
        assert_eq!(code, 400, "{body}");
        let (code, _) = netns::curl(&ns, &[], &format!("{base}/{}", "0".repeat(64)));
        assert_eq!(code, 404);
        let (code, v, err) = storm(&h, &ns, 20, &["--boot-config", "storm", "--spread", "1"]);
        assert_eq!(code, Some(0), "{v:#}\n{err}");
        assert_eq!(
            (v["up"].as_u64(), v["failed"].as_u64()),
            (Some(20), Some(0)),
            "{v:#}"
        );
        assert_eq!(v["swarm_nodes"].as_u64(), Some(20), "{v:#}");
        eprintln!("swarm storm: {v}");
        let size = v["image_bytes"].as_u64().unwrap();
        assert!(size > 13 << 20, "{v:#}");
        let (from_head, from_peers) = (
            v["image_from_head_bytes"].as_u64().unwrap(),
            v["image_from_peers_bytes"].as_u64().unwrap(),
        );
        assert_eq!(from_head + from_peers, 20 * size, "{v:#}");
        // 4 copies from the head, a piece or two more if a peer was slow.
        assert!(from_head >= 4 * size && from_head <= 6 * size, "{v:#}");
        let log = h.log();
        let plans = log.lines().filter(|l| l.contains("swarm: node ")).count();
        assert!(plans >= 20, "{log}");
        let whole = log
            .lines()
            .filter(|l| l.contains("sending image img to "))
            .count();
        assert!(
            (4..=8).contains(&whole),
            "{whole} image downloads from the head:\n{log}"
        );
        assert!(!log.contains("refused image"), "{log}");
        let st = states(&h);
        assert!(st.iter().all(|(_, s)| s == "up"), "{st:?}");
    }
    {
        // A damaged stored image through the swarm: the head finds it out computing the
        // pieces and refuses the plan; the nodes do not come up.
        let (sha, why, _, log) = damaged_storm(&lab, &ns, true);
        for w in &why {
            assert!(
                w.contains(&format!("the stored image {sha} is damaged")),
                "{w}"
            );
        }
        assert!(log.contains("is damaged"), "{log}");
    }
    eprintln!("boot storm test took {:.1} s", t.elapsed().as_secs_f64());
}

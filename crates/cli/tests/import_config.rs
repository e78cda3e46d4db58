//! `wulf cluster import-config` / `export-config` with ClusterWare's /etc/beowulf/config: a
//! config with every directive imported into a head that serves DHCP in a network
//! namespace, a node leasing its address with busybox udhcpc, the pxe+local rewrite, the
//! export imported into a fresh head, and one bad file per error.

mod head;
mod netns;

use std::path::Path;

use head::Head;
use netns::Lab;
use serde_json::{json, Value};

const CONFIG: &str = "# from a Scyld head\n\
nodes 8\n\
iprange 0 10.78.0.100 10.78.0.107\n\
hostrange 10.78.0.10 10.78.0.19\n\
hostrange 10.78.0.20 10.78.0.29\n\
domain cluster.test\n\
nodeassign append\n\
pxeinterface eth1\n\
host 52:54:00:78:00:90 switch1 sw1 10.78.0.11\n\
host 52:54:00:78:00:91 pdu1 10.78.0.21\n\
kernelimage boot/vmlinuz\n\
initrdimage boot/initrd.img\n\
kernelcommandline console=ttyS0 quiet\n\
kernelimage 5-6 boot/memtest\n\
initrdimage 5-6 none\n\
kernelcommandline 5-6 none\n\
class gpu kernelimage boot/vmlinuz-gpu\n\
class gpu kernelcommandline console=ttyS0 gpu=1\n\
node 0 52:54:00:78:00:01\n\
node 52:54:00:78:00:02 52:54:00:78:00:12\n\
node 3 gpu pxe+local pxe 52:54:00:78:00:03\n\
node gpu 52:54:00:78:00:04\n\
node 5 52:54:00:78:00:05\n\
node 52:54:00:78:00:06\n\
frobnicate 3\n";

fn write_config(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("boot")).unwrap();
    for (f, body) in [
        ("vmlinuz", "kernel"),
        ("initrd.img", "initrd"),
        ("memtest", "memtest"),
        ("vmlinuz-gpu", "gpu kernel"),
    ] {
        std::fs::write(dir.join("boot").join(f), format!("{body} bytes\n")).unwrap();
    }
    let p = dir.join("config");
    std::fs::write(&p, CONFIG).unwrap();
    p
}

fn by_name(v: &Value) -> std::collections::BTreeMap<String, Value> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| (o["name"].as_str().unwrap().to_string(), o.clone()))
        .collect()
}

/// What must survive an export and import: per kind, the fields compared.
fn summary(h: &Head) -> Value {
    let nodes: Vec<Value> = h
        .json(&["node", "ls", "-L"])
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            json!([
                n["name"],
                n["index"],
                n["ip"],
                n["mac"],
                n["boot_sequence"],
                n["attributes"]["_altmacs"],
                n["attributes"]["_boot_config"]
            ])
        })
        .collect();
    let boots: Vec<Value> = h
        .json(&["boot", "ls", "-L"])
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            json!([
                b["name"],
                b["cmdline"],
                b["boot_style"],
                b["kernel"]["sha256"],
                b["initramfs"]["sha256"]
            ])
        })
        .collect();
    let hosts: Vec<Value> = h
        .json(&["host", "ls", "-L"])
        .as_array()
        .unwrap()
        .iter()
        .map(|x| json!([x["name"], x["ip"], x["mac"], x["hostnames"]]))
        .collect();
    let net = &h.json(&["net", "ls", "-L"])[0];
    json!({"nodes": nodes, "boots": boots, "hosts": hosts,
        "net": [net["first_ip"], net["ip_count"], net["mask_bits"], net["domain"],
            net["host_ranges"], net["first_index"]],
        "default": h.json(&["attrib", "ls", "-L", "DefaultAttribs"])[0]["attributes"]["_boot_config"],
        "assign": h.json(&["cluster", "ls", "-L"])[0]["accept_new_nodes"]})
}

#[test]
fn import_boot_export_and_import_again() {
    let mut lab = Lab::new("10.78.0");
    let h = Head::start_in(
        &lab.srv,
        "[dhcp]\nlease_secs = 600\n[tftp]\nenabled = false\n[dns]\nenabled = false\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let cfg_s = cfg.to_str().unwrap();

    // Dry run: what would be made, the head's verdict, nothing written.
    let before = h.revision();
    let out = h.wulf(&["cluster", "import-config", cfg_s, "--dry-run"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Would create 6 node: n[0-1,3-6]"), "{text}");
    assert!(text.contains("Would create 3 boot"), "{text}");
    assert!(text.contains("config:8: 'pxeinterface'"), "{text}");
    assert!(text.contains("config:25: 'frobnicate'"), "{text}");
    assert!(text.contains("smallest subnet"), "{text}");
    assert!(text.contains("nothing was written"), "{text}");
    assert_eq!(h.revision(), before);

    h.ok(&["cluster", "import-config", cfg_s]);
    let nodes = by_name(&h.json(&["node", "ls", "-L"]));
    assert_eq!(
        nodes.keys().cloned().collect::<Vec<_>>(),
        ["n0", "n1", "n3", "n4", "n5", "n6"]
    );
    assert_eq!(nodes["n1"]["ip"], "10.78.0.101");
    assert_eq!(nodes["n1"]["attributes"]["_altmacs"], "52:54:00:78:00:12");
    assert_eq!(nodes["n3"]["boot_sequence"], "pxe+local");
    assert_eq!(nodes["n3"]["boot_stage"], "pxe");
    assert_eq!(nodes["n3"]["attributes"]["_boot_config"], "gpu");
    assert_eq!(nodes["n4"]["index"], 4);
    assert_eq!(nodes["n4"]["attributes"]["_boot_config"], "gpu");
    assert_eq!(nodes["n5"]["attributes"]["_boot_config"], "beowulf-3");
    assert_eq!(nodes["n6"]["attributes"]["_boot_config"], "beowulf-3");
    assert!(nodes["n0"]["attributes"].get("_boot_config").is_none());
    let boots = by_name(&h.json(&["boot", "ls", "-L"]));
    assert_eq!(boots["beowulf"]["cmdline"], "console=ttyS0 quiet");
    assert_eq!(boots["beowulf"]["initramfs"]["size"], 13);
    assert_eq!(boots["gpu"]["cmdline"], "console=ttyS0 gpu=1");
    assert_eq!(boots["gpu"]["kernel"]["size"], 17);
    assert_eq!(boots["beowulf-3"]["cmdline"], "");
    assert!(boots["beowulf-3"]["initramfs"].is_null());
    let hosts = by_name(&h.json(&["host", "ls", "-L"]));
    assert_eq!(hosts["switch1"]["hostnames"], json!(["sw1"]));
    assert_eq!(hosts["pdu1"]["ip"], "10.78.0.21");
    let s = summary(&h);
    assert_eq!(s["default"], "beowulf");
    assert_eq!(s["assign"], "append");
    assert_eq!(
        s["net"],
        json!([
            "10.78.0.100",
            8,
            24,
            "cluster.test",
            ["10.78.0.10-10.78.0.19", "10.78.0.20-10.78.0.29"],
            0
        ])
    );

    // Importing again is refused by the head as a whole: nothing written, exit 2.
    let before = h.revision();
    h.fails(2, &["cluster", "import-config", cfg_s]);
    assert_eq!(h.revision(), before);

    // A node leases its address from the imported net with real udhcpc.
    let c1 = lab.client("52:54:00:78:00:02");
    let lease = netns::udhcpc(&c1, 15, &[]).expect("udhcpc got no lease");
    assert_eq!(lease["ip"], "10.78.0.101");

    // pxe+local: the first boot script answer sets the stage to local; update re-arms it.
    // The script is asked from the node's own address (a head issues boot secrets only there).
    let c3 = lab.client("52:54:00:78:00:03");
    lab.with_addr(&c3, "10.78.0.103/24");
    let got = Lab::cmd(&c3, "curl")
        .args(["-s", "--max-time", "10"])
        .arg(format!(
            "{}/boot/ipxe?mac=52:54:00:78:00:03",
            h.http_url().replace("127.0.0.1", "10.78.0.1")
        ))
        .output()
        .unwrap();
    assert!(got.status.success());
    assert_eq!(
        h.json(&["node", "ls", "-L", "n3"])[0]["boot_stage"],
        "local"
    );
    h.ok(&["node", "-i", "n3", "update", "boot_stage=pxe"]);
    assert_eq!(h.json(&["node", "ls", "-L", "n3"])[0]["boot_stage"], "pxe");

    // Export with the files, import into a fresh head: the same objects.
    let out = dir.path().join("export").join("beowulf.config");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    h.ok(&["cluster", "export-config", "-o", out.to_str().unwrap()]);
    assert!(out.with_extension("config.d").join("gpu.kernel").is_file());
    let h2 = Head::start();
    h2.ok(&["cluster", "import-config", out.to_str().unwrap()]);
    assert_eq!(summary(&h2), summary(&h));
}

#[test]
fn bad_files_exit_2_name_the_line_and_write_nothing() {
    let lab = Lab::new("10.79.0");
    let h = Head::start_in(
        &lab.srv,
        "[tftp]\nenabled = false\n[dns]\nenabled = false\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let ipr = "iprange 10.79.0.100 10.79.0.120\n";
    let hr = "hostrange 10.79.0.10 10.79.0.19\n";
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!("{ipr}{hr}hostrange 10.79.0.15 10.79.0.29\n"),
            ":3:",
            "overlaps",
        ),
        (
            format!("{hr}iprange 10.79.0.15 10.79.0.30\n"),
            ":2:",
            "overlaps 10.79.0.10-10.79.0.19 on line 1",
        ),
        (
            format!("{ipr}{hr}host 52:54:00:79:01:01 sw 10.79.0.50\n"),
            ":3:",
            "outside every hostrange",
        ),
        (
            format!("{ipr}node 52:54:00:79:00:01\nnode 52:54:00:79:00:01\n"),
            ":3:",
            "already used on line 2",
        ),
        (
            format!("{ipr}{hr}host 52:54:00:79:00:01 sw\nnode 52:54:00:79:00:01\n"),
            ":4:",
            "already used on line 3",
        ),
        (
            format!("{ipr}node gpu 52:54:00:79:00:01\n"),
            ":2:",
            "never defined",
        ),
        (
            format!("{ipr}kernelimage boot/none-here\n"),
            ":2:",
            "does not exist",
        ),
        (format!("{ipr}iprange 10.79.0.200\n"), ":2:", "expected"),
        (
            format!("{ipr}node 3 pxe+local sometimes 52:54:00:79:00:01\n"),
            ":2:",
            "boot stage",
        ),
        (
            format!("{ipr}node 300 52:54:00:79:00:01\n"),
            ":2:",
            "outside the iprange",
        ),
        (
            "iprange 10.79.0.1 10.79.0.9\n".to_string(),
            ":1:",
            "head's address 10.79.0.1",
        ),
        (format!("{ipr}nodeassign sometimes\n"), ":2:", "nodeassign"),
    ];
    let before = h.revision();
    for (i, (text, line, what)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("bad{i}"));
        std::fs::write(&p, text).unwrap();
        let err = h.fails(2, &["cluster", "import-config", p.to_str().unwrap()]);
        assert!(err.contains(line) && err.contains(what), "case {i}: {err}");
        assert_eq!(h.revision(), before, "case {i} wrote something");
    }
    let err = h.fails(2, &["cluster", "import-config", "/nonexistent/config"]);
    assert!(err.contains("cannot read /nonexistent/config"), "{err}");
    assert_eq!(h.revision(), before);
}

//! Hosts (devices) stay inside their net's host ranges and out of the node range; a node's
//! hand-set address stays out of the host ranges; a net cannot be changed so that a host it
//! holds would be misplaced. Each refusal names the owner or range and changes nothing.

mod head;

use head::Head;
use serde_json::Value;

fn cluster(h: &Head) {
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        "first_ip=10.31.0.10",
        "ip_count=100",
        "mask_bits=16",
        "host_ranges=10.31.1.1-10.31.1.50,10.31.2.1-10.31.2.9",
    ]);
}

/// Refused with exit code 1 (a conflict), the message containing every `needle`, nothing written.
fn refused(h: &Head, args: &[&str], needles: &[&str]) {
    let before = h.revision();
    let msg = h.fails(1, args);
    for n in needles {
        assert!(msg.contains(n), "{args:?}: '{n}' not in: {msg}");
    }
    assert_eq!(h.revision(), before, "{args:?} changed something");
}

#[test]
fn hosts_belong_in_host_ranges() {
    let h = Head::start();
    cluster(&h);
    h.ok(&["node", "create", "index=5"]);
    h.ok(&["host", "create", "name=sw1", "ip=10.31.1.1"]);
    h.ok(&["host", "create", "name=pdu1", "ip=10.31.2.9"]);
    // Another network entirely: not this net's business.
    h.ok(&["host", "create", "name=gw", "ip=192.168.7.1"]);

    // Inside the node range: the node that has it, or the index that will get it, is named.
    refused(
        &h,
        &["host", "create", "name=sw2", "ip=10.31.0.15"],
        &["IP 10.31.0.15 is already used by node n5"],
    );
    refused(
        &h,
        &["host", "create", "name=sw2", "ip=10.31.0.20"],
        &[
            "node range 10.31.0.10-10.31.0.109",
            "node index 10 (n10) gets it",
        ],
    );
    // Outside every host range of the net it is in.
    refused(
        &h,
        &["host", "create", "name=sw2", "ip=10.31.3.1"],
        &[
            "outside every host range of net cluster",
            "10.31.1.1-10.31.1.50",
        ],
    );
    refused(
        &h,
        &["host", "-i", "sw1", "update", "ip=10.31.0.50"],
        &["host sw1", "node index 40"],
    );
    // A node set by hand into a host range.
    refused(
        &h,
        &["node", "create", "index=7", "ip=10.31.1.20"],
        &["host range 10.31.1.1-10.31.1.50", "kept for hosts"],
    );
    // A net change that would leave a host outside its ranges or inside the node range.
    refused(
        &h,
        &[
            "net",
            "-i",
            "cluster",
            "update",
            "host_ranges=10.31.1.1-10.31.1.50",
        ],
        &["net cluster would misplace a host", "pdu1"],
    );
    // A net with no host ranges: hosts anywhere but the node range, which cannot grow over one.
    h.ok(&[
        "net",
        "create",
        "name=lab",
        "first_ip=10.32.0.10",
        "ip_count=10",
        "mask_bits=16",
    ]);
    h.ok(&["host", "create", "name=labsw", "ip=10.32.5.1"]);
    refused(
        &h,
        &["net", "-i", "lab", "update", "ip_count=60000"],
        &["net lab would misplace a host", "host labsw"],
    );
    // A new net over an existing host.
    refused(
        &h,
        &[
            "net",
            "create",
            "name=mgmt",
            "first_ip=192.168.7.1",
            "ip_count=10",
            "mask_bits=24",
        ],
        &["net mgmt would misplace a host", "gw"],
    );
    // What is allowed still is.
    h.ok(&["host", "-i", "sw1", "update", "ip=10.31.1.2"]);
    h.ok(&[
        "net",
        "-i",
        "cluster",
        "update",
        "host_ranges=10.31.1.1-10.31.1.50,10.31.2.1-10.31.2.20",
    ]);
    let hosts: Value = h.json(&["host", "ls"]);
    let ips: Vec<&str> = hosts
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["ip"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 4, "{hosts}");
    assert!(ips.contains(&"10.31.1.2"), "{hosts}");
}

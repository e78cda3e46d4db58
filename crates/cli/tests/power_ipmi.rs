//! Power through IPMI: real `ipmi_sim` BMCs (each powering a "machine" process it starts on
//! power on and stops on power off) in a lab namespace with wulfd, driven through
//! `wulf node … power|reboot|shutdown` (malformed requests through the API with curl), and
//! checked against the real `ipmitool` and the machine processes. A BMC that is not there
//! and one that hangs fail on their own, within the timeout, while the others in the same
//! request succeed. Bad power URIs change nothing, and
//! no password ever shows in a listing, an answer or the head's log.

#[path = "support/bmc/mod.rs"]
mod bmc;
mod head;
mod netns;

use std::time::{Duration, Instant};

use bmc::{power, power_api, IpmiSim, SimConfig, SLEEPER};
use head::Head;
use netns::Lab;
use serde_json::{json, Value};

/// A successful power request's results by node name: (ok, result, via, detail, millis).
fn results(h: &Head, ids: &str, body: Value) -> Vec<(String, bool, String, String, String, u64)> {
    let (code, v) = power(h, ids, body.clone());
    assert_eq!(code, 200, "{body}: {v}");
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["ok"].as_bool().unwrap(),
                r["result"].as_str().unwrap().to_string(),
                r["via"].as_str().unwrap().to_string(),
                r["detail"].as_str().unwrap_or("").to_string(),
                r["millis"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn sim(lab: &Lab, h: &Head, name: &str, port: u16, pass: &str) -> IpmiSim {
    IpmiSim::start(SimConfig {
        ns: Some(&lab.srv),
        dir: h.dir.path().join(name),
        addr: "127.0.0.1",
        port,
        serial_port: port + 1000,
        user: "admin",
        pass,
        machine: SLEEPER,
        start_on: true,
    })
}

/// The password the rack's BMCs share: characters that must be encoded in a URI.
const RACK_PASS: &str = "Pw0rd@x:y/z";

#[test]
fn power_through_ipmi_with_templates_and_failing_bmcs() {
    let lab = Lab::new("10.91.0");
    let h = Head::start_in(&lab.srv, "[dns]\nenabled = false\n");
    let b0 = sim(&lab, &h, "bmc0", 9101, RACK_PASS);
    let b1 = sim(&lab, &h, "bmc1", 9102, RACK_PASS);
    let b2 = sim(&lab, &h, "bmc2", 9103, "the-real-one");
    let hung = sim(&lab, &h, "bmc4", 9105, "whatever1");
    for i in 0..5 {
        h.ok(&["node", "create", &format!("mac=52:54:00:91:00:0{i}")]);
    }
    // The rack's URI comes from a group, filled in from each node's attributes.
    h.ok(&["attrib", "create", "name=rack1"]);
    h.ok(&[
        "attrib",
        "-i",
        "rack1",
        "set",
        "_power_uri=ipmi://admin:{_bmc_pass}@{_ips.bmc}:{bmc_port}",
        &format!("_bmc_pass={RACK_PASS}"),
    ]);
    h.ok(&["node", "-i", "n[0-1]", "join", "rack1"]);
    h.ok(&[
        "node",
        "-i",
        "n0",
        "set",
        "_ips=bmc=127.0.0.1",
        "bmc_port=9101",
    ]);
    h.ok(&[
        "node",
        "-i",
        "n1",
        "set",
        "_ips=bmc=127.0.0.1",
        "bmc_port=9102",
    ]);
    // n2: its own power_uri, with a wrong password; n3: a BMC address nobody has; n4: a BMC
    // that hangs (its ipmi_sim is stopped: packets arrive, nothing answers).
    h.ok(&[
        "node",
        "-i",
        "n2",
        "update",
        "power_uri=ipmi://admin:wrong-pass-2@127.0.0.1:9103",
    ]);
    h.ok(&[
        "node",
        "-i",
        "n3",
        "update",
        "power_uri=ipmi://admin:absent-pass-3@10.91.0.222",
    ]);
    h.ok(&[
        "node",
        "-i",
        "n4",
        "update",
        &format!("power_uri={}", hung.uri()),
    ]);
    let hung_pid = hung_pid(&hung);
    unsafe { libc::kill(hung_pid, libc::SIGSTOP) };

    // Status of all five: two answers, three failures of their own, within the timeout.
    let t = Instant::now();
    let r = results(&h, "n[0-4]", json!({"action": "status", "timeout_secs": 4}));
    let took = t.elapsed();
    let names: Vec<&str> = r.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(names, ["n0", "n1", "n2", "n3", "n4"], "index order");
    assert!(
        (r[0].1, r[0].2.as_str(), r[0].3.as_str()) == (true, "on", "bmc"),
        "{r:?}"
    );
    assert!((r[1].1, r[1].2.as_str()) == (true, "on"), "{r:?}");
    assert_eq!(
        (r[2].1, r[2].2.as_str()),
        (false, "BMC refused login"),
        "{r:?}"
    );
    assert!(r[2].4.contains("127.0.0.1:9103"), "{r:?}");
    for dead in &r[3..5] {
        assert!(!dead.1, "{r:?}");
        assert!(
            dead.2 == "BMC timeout" || dead.2 == "BMC unreachable",
            "{dead:?}"
        );
        assert!(dead.5 <= 5_000, "{dead:?} took longer than the timeout");
    }
    assert!(r[3].4.contains("10.91.0.222:623"), "{r:?}");
    assert!(took < Duration::from_secs(8), "the request took {took:?}");

    // Off: the machines stop, and a real client sees it.
    let m0 = b0.machine_pid().expect("bmc0's machine runs");
    let r = results(&h, "n[0-1]", json!({"action": "off"}));
    assert!(r.iter().all(|x| x.1 && x.2 == "off"), "{r:?}");
    b0.wait_power(false, Duration::from_secs(10));
    b1.wait_power(false, Duration::from_secs(10));
    assert!(!bmc::alive(m0), "bmc0's machine still runs after power off");
    wait_status(&h, "n[0-1]", "off");

    // On: n0's machine starts again; a cycle of n1 (off now) powers it on.
    let r = results(&h, "n0", json!({"action": "on"}));
    assert_eq!((r[0].1, r[0].2.as_str()), (true, "on"), "{r:?}");
    b0.wait_power(true, Duration::from_secs(10));
    assert_eq!(b0.starts(), 2);
    let r = results(&h, "n1", json!({"action": "cycle"}));
    assert_eq!((r[0].1, r[0].2.as_str()), (true, "cycled"), "{r:?}");
    b1.wait_power(true, Duration::from_secs(10));
    wait_status(&h, "n[0-1]", "on");

    // A hard reboot of a node that is on cycles it: a new machine process.
    let before = b0.machine_pid().unwrap();
    let r = results(&h, "n0", json!({"action": "reboot", "mode": "hard"}));
    assert_eq!(
        (r[0].1, r[0].2.as_str(), r[0].3.as_str()),
        (true, "hard reboot", "bmc"),
        "{r:?}"
    );
    let t = Instant::now();
    while b0.machine_pid().is_none_or(|p| p == before) {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "n0 was not power cycled"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Soft only, with no agent up: nothing is done, and the answer says why.
    let pid = b0.machine_pid().unwrap();
    let r = results(
        &h,
        "n0",
        json!({"action": "reboot", "mode": "soft", "timeout_secs": 5}),
    );
    assert_eq!(
        (r[0].1, r[0].2.as_str(), r[0].3.as_str()),
        (false, "agent not up", "agent"),
        "{r:?}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(b0.machine_pid(), Some(pid), "a soft reboot went to the BMC");
    // Shutdown (soft first): no agent up, so straight to the BMC, and it says so.
    let r = results(&h, "n1", json!({"action": "shutdown", "timeout_secs": 5}));
    assert_eq!(
        (r[0].1, r[0].2.as_str(), r[0].3.as_str()),
        (true, "hard shutdown", "bmc"),
        "{r:?}"
    );
    assert!(r[0].4.contains("agent not up"), "{r:?}");
    b1.wait_power(false, Duration::from_secs(10));
    drop(b2);

    // Every request and outcome is an AUDIT line naming the nodes; no password anywhere.
    let log = h.log();
    for want in [
        "power account=root source=127.0.0.1 nodes=n[0-4] action=\"status\"",
        "power outcome account=root source=127.0.0.1 nodes=n[0-1] action=\"status\" ok=true outcome=\"on\"",
        "nodes=n2 action=\"status\" ok=false outcome=\"BMC refused login\"",
        "power account=root source=127.0.0.1 nodes=n[0-1] action=\"off\"",
        "power outcome account=root source=127.0.0.1 nodes=n1 action=\"shutdown\" ok=true outcome=\"hard shutdown\"",
    ] {
        assert!(log.contains(want), "the head's log lacks {want:?}:\n{log}");
    }
    no_passwords(&h, &["Pw0rd", "wrong-pass-2", "absent-pass-3", "whatever1"]);
    unsafe { libc::kill(hung_pid, libc::SIGCONT) };
}

/// The pid of an `ipmi_sim` (the one serving `sim`'s port).
fn hung_pid(sim: &IpmiSim) -> i32 {
    let conf = sim.dir.join("lan.conf").display().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.starts_with("ipmi_sim ") && cmdline.contains(&conf) {
            return pid;
        }
    }
    panic!("no ipmi_sim for {conf}");
}

/// Wait until every selected node's status reads `want`.
fn wait_status(h: &Head, ids: &str, want: &str) {
    let t = Instant::now();
    loop {
        let r = results(h, ids, json!({"action": "status", "timeout_secs": 5}));
        if r.iter().all(|x| x.1 && x.2 == want) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{ids} not {want}: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// None of `secrets` shows in listings, JSON, effective attributes or the head's log.
fn no_passwords(h: &Head, secrets: &[&str]) {
    let shown = [
        h.ok(&["node", "ls", "-L"]),
        h.ok(&["node", "ls", "-l"]),
        h.ok(&["node", "--json", "ls"]),
        h.ok(&["node", "--json", "ls", "-L"]),
        h.ok(&["attrib", "ls", "-L"]),
        h.ok(&["attrib", "--json", "ls"]),
        String::from_utf8_lossy(
            &h.curl(&[
                "-H",
                &h.auth(),
                &format!("{}/api/v1/node/attributes?all=true", h.url()),
            ])
            .1,
        )
        .to_string(),
        h.log(),
    ];
    for (i, text) in shown.iter().enumerate() {
        for s in secrets {
            assert!(!text.contains(s), "{s:?} shows in output {i}:\n{text}");
        }
    }
    assert!(
        shown[0].contains(":****@") || shown[0].contains("****"),
        "{}",
        shown[0]
    );
}

#[test]
fn bad_power_uris_are_refused_and_change_nothing() {
    let lab = Lab::new("10.92.0");
    let h = Head::start_in(&lab.srv, "[dns]\nenabled = false\n");
    let b0 = sim(&lab, &h, "bmc0", 9101, "good-pass-0");
    h.ok(&["node", "create", "mac=52:54:00:92:00:00"]);
    h.ok(&["node", "create", "mac=52:54:00:92:00:01"]);
    h.ok(&[
        "node",
        "-i",
        "n0",
        "update",
        &format!("power_uri={}", b0.uri()),
    ]);
    let before = h.snapshot();

    // Caught when written: nothing stored.
    for (uri, why) in [
        ("snmp://admin:sekrit-1@127.0.0.1", "unknown scheme 'snmp'"),
        ("ipmi://admin@127.0.0.1", "user and a password"),
        ("127.0.0.1:623", "not a power URI"),
        ("ipmi://admin:sekrit-1@{_ips.bmc", "without its '}'"),
        ("ipmi://admin:****@127.0.0.1", "listings show"),
    ] {
        let err = h.fails(
            1,
            &["node", "-i", "n1", "update", &format!("power_uri={uri}")],
        );
        assert!(err.contains(why), "{uri}: {err}");
        assert!(!err.contains("sekrit-1"), "the password shows: {err}");
        // The CLI checks attributes itself before sending them: a usage error.
        let err = h.fails(
            2,
            &["node", "-i", "n1", "set", &format!("_power_uri={uri}")],
        );
        assert!(err.contains(why), "{uri}: {err}");
    }
    assert_eq!(h.snapshot(), before, "a refused write changed something");
    // A masked secret sent back is refused; the stored one stays (nothing is written).
    h.ok(&["node", "-i", "n1", "set", "_bmc_pass=sekrit-2"]);
    let before = h.snapshot();
    let err = h.fails(2, &["node", "-i", "n1", "set", "_bmc_pass=****"]);
    assert!(err.contains("how listings show a secret"), "{err}");
    assert_eq!(h.snapshot(), before, "a refused write changed something");
    h.ok(&["node", "-i", "n1", "clear", "_bmc_pass"]);

    // Caught when used: n1's URI needs attributes it does not have. The whole request is
    // refused, naming the node and what is missing, and n0's BMC is not touched.
    h.ok(&[
        "node",
        "-i",
        "n1",
        "set",
        "_power_uri=ipmi://admin:{_bmc_pass}@{_ips.bmc}",
    ]);
    let pid = b0.machine_pid().unwrap();
    let (code, v) = power(&h, "n[0-1]", json!({"action": "off"}));
    assert_eq!(code, 400, "{v}");
    let err = v["error"].as_str().unwrap();
    assert!(err.contains("n1") && err.contains("_bmc_pass"), "{err}");
    assert!(err.contains("nothing was done"), "{err}");
    assert!(!err.contains("n0"), "{err}");
    h.ok(&["node", "-i", "n1", "set", "_bmc_pass=sekrit-3"]);
    let (code, v) = power(&h, "n[0-1]", json!({"action": "off"}));
    assert_eq!(code, 400, "{v}");
    let err = v["error"].as_str().unwrap();
    assert!(err.contains("{_ips.bmc} needs attribute _ips"), "{err}");
    assert!(!err.contains("sekrit-3"), "{err}");
    h.ok(&[
        "node",
        "-i",
        "n1",
        "set",
        "_ips=bmc=127.0.0.1",
        "_power_uri=redfish://x:{_bmc_pass}@{_ips.bmc}/a/b",
    ]);
    let (code, v) = power(&h, "n[0-1]", json!({"action": "cycle"}));
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("the path is the system id"),
        "{v}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(b0.power_status(), Some(true), "n0 was powered off");
    assert_eq!(b0.machine_pid(), Some(pid), "n0's machine was touched");

    // Bad requests: 400, nothing done.
    for body in [
        json!({"action": "explode"}),
        json!({"action": "off", "timeout_secs": 0}),
        json!({"action": "off", "fanout": 0}),
        json!({"action": "off", "colour": "red"}),
    ] {
        let (code, v) = power_api(&h, "n0", &body);
        assert_eq!(code, 400, "{body}: {v}");
    }
    let (code, v) = power_api(&h, "n9", &json!({"action": "off"}));
    assert!(code == 404 || code == 400, "{v}");
    assert_eq!(b0.machine_pid(), Some(pid), "n0's machine was touched");

    // A node without any power URI fails on its own; `none` says there is no BMC.
    h.ok(&["node", "-i", "n1", "clear", "_power_uri"]);
    let r = results(&h, "n[0-1]", json!({"action": "status"}));
    assert_eq!((r[0].1, r[0].2.as_str()), (true, "on"), "{r:?}");
    assert_eq!((r[1].1, r[1].2.as_str()), (false, "no power_uri"), "{r:?}");
    h.ok(&["node", "-i", "n1", "update", "power_uri=none"]);
    let r = results(&h, "n1", json!({"action": "on"}));
    assert_eq!((r[0].1, r[0].2.as_str()), (false, "no BMC"), "{r:?}");

    no_passwords(&h, &["good-pass-0", "sekrit-1", "sekrit-2", "sekrit-3"]);
}

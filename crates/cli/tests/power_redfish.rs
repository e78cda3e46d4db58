//! Power through Redfish: sushy-tools' emulator (its fake driver) over HTTPS, with a
//! certificate from a throwaway CA, in a lab namespace with wulfd. Status, on, off and cycle
//! (the emulator does not list PowerCycle, so a cycle is ForceOff, wait, On) through
//! `redfish://`, checked against what the emulator tells curl. Certificates are checked: a
//! URI without `?insecure=1` or `?ca=` fails clearly; with either it works.

#[path = "support/bmc/mod.rs"]
mod bmc;
mod head;
mod netns;

use std::time::{Duration, Instant};

use bmc::power;
use bmc::sushy::{FakeSystem, Sushy};
use head::Head;
use netns::Lab;
use serde_json::{json, Value};

const SYS_A: &str = "5b4c3d2e-0000-4000-8000-00000000000a";
const SYS_B: &str = "5b4c3d2e-0000-4000-8000-00000000000b";

/// One node's (ok, result, detail).
fn one(h: &Head, id: &str, body: Value) -> (bool, String, String) {
    let (code, v) = power(h, id, body.clone());
    assert_eq!(code, 200, "{body}: {v}");
    let r = &v["results"][0];
    (
        r["ok"].as_bool().unwrap(),
        r["result"].as_str().unwrap().to_string(),
        r["detail"].as_str().unwrap_or("").to_string(),
    )
}

/// Wait until the emulator says `uuid` is `want`, and wulf's status agrees.
fn wait_state(h: &Head, s: &Sushy, id: &str, uuid: &str, want: &str) {
    let t = Instant::now();
    loop {
        // The fake driver applies a change 1 to 11 s after it was asked.
        let theirs = s.power_state(uuid);
        let ours = one(h, id, json!({"action": "status", "timeout_secs": 10}));
        if theirs == want && ours == (true, want.to_ascii_lowercase(), String::new()) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{id}: the emulator says {theirs}, wulf says {ours:?}; want {want}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn power_through_redfish_over_https() {
    let lab = Lab::new("10.93.0");
    let h = Head::start_in(&lab.srv, "[dns]\nenabled = false\n");
    let one_sys = Sushy::start(
        Some(&lab.srv),
        &h.dir.path().join("sushy1"),
        "127.0.0.1",
        8443,
        "root",
        "calvin-r3d",
        &[FakeSystem {
            uuid: SYS_A,
            name: "node-a",
            on: false,
        }],
    );
    let two_sys = Sushy::start(
        Some(&lab.srv),
        &h.dir.path().join("sushy2"),
        "127.0.0.1",
        8444,
        "root",
        "calvin-r3d",
        &[
            FakeSystem {
                uuid: SYS_A,
                name: "node-a",
                on: true,
            },
            FakeSystem {
                uuid: SYS_B,
                name: "node-b",
                on: true,
            },
        ],
    );
    for i in 0..4 {
        h.ok(&["node", "create", &format!("mac=52:54:00:93:00:0{i}")]);
    }
    let ca = one_sys.certs.ca.display().to_string();
    // n0: the only system there is, certificate checked against the CA.
    h.ok(&[
        "node",
        "-i",
        "n0",
        "update",
        &format!("power_uri={}", one_sys.uri(&format!("?ca={ca}"))),
    ]);
    // n1: the same emulator, certificate not checked.
    h.ok(&[
        "node",
        "-i",
        "n1",
        "update",
        &format!("power_uri={}", one_sys.uri("?insecure=1")),
    ]);
    // n2: certificate checked against the system's CAs, which do not know this one.
    h.ok(&[
        "node",
        "-i",
        "n2",
        "update",
        &format!("power_uri={}", one_sys.uri("")),
    ]);
    // n3: an emulator with two systems, and no system id.
    h.ok(&[
        "node",
        "-i",
        "n3",
        "update",
        &format!("power_uri={}", two_sys.uri("?insecure=1")),
    ]);

    assert_eq!(
        one(&h, "n0", json!({"action": "status"})),
        (true, "off".into(), String::new())
    );
    assert_eq!(
        one(&h, "n1", json!({"action": "status"})),
        (true, "off".into(), String::new())
    );
    let (ok, class, detail) = one(&h, "n2", json!({"action": "status"}));
    assert!(!ok);
    assert_eq!(class, "BMC certificate not trusted", "{detail}");
    assert!(
        detail.contains("?ca=") && detail.contains("?insecure=1"),
        "{detail}"
    );
    let (ok, class, detail) = one(&h, "n3", json!({"action": "status"}));
    assert!(!ok);
    assert_eq!(class, "bad power_uri", "{detail}");
    assert!(
        detail.contains("2 systems") && detail.contains(SYS_B),
        "{detail}"
    );

    // On, off, cycle through the CA-checked URI.
    assert_eq!(one(&h, "n0", json!({"action": "on"})).1, "on");
    wait_state(&h, &one_sys, "n0", SYS_A, "On");
    assert_eq!(one(&h, "n0", json!({"action": "off"})).1, "off");
    wait_state(&h, &one_sys, "n0", SYS_A, "Off");
    assert_eq!(one(&h, "n1", json!({"action": "on"})).1, "on");
    wait_state(&h, &one_sys, "n1", SYS_A, "On");
    // Cycle: ForceOff, off seen, On (up to 11 s each way in the fake driver): two resets
    // in the emulator's request log.
    let resets = || {
        std::fs::read_to_string(one_sys.dir.join("sushy.log"))
            .unwrap_or_default()
            .matches("POST /redfish/v1/Systems/")
            .count()
    };
    let before = resets();
    let r = one(&h, "n0", json!({"action": "cycle", "timeout_secs": 40}));
    assert_eq!((r.0, r.1.as_str()), (true, "cycled"), "{r:?}");
    wait_state(&h, &one_sys, "n0", SYS_A, "On");
    assert_eq!(resets() - before, 2, "a cycle is ForceOff then On here");

    // The system named in the URI: n3 works once it says which.
    h.ok(&[
        "node",
        "-i",
        "n3",
        "update",
        &format!("power_uri={}", two_sys.uri(&format!("/{SYS_B}?insecure=1"))),
    ]);
    assert_eq!(one(&h, "n3", json!({"action": "off"})).1, "off");
    wait_state(&h, &two_sys, "n3", SYS_B, "Off");
    assert_eq!(
        two_sys.power_state(SYS_A),
        "On",
        "the other system was touched"
    );

    // A wrong password is a refused login; a port nothing listens on is unreachable.
    h.ok(&[
        "node",
        "-i",
        "n2",
        "update",
        "power_uri=redfish://root:not-it-9@127.0.0.1:8443?insecure=1",
    ]);
    let (ok, class, detail) = one(&h, "n2", json!({"action": "status"}));
    assert!(!ok && class == "BMC refused login", "{class}: {detail}");
    h.ok(&[
        "node",
        "-i",
        "n2",
        "update",
        "power_uri=redfish://root:not-it-9@127.0.0.1:8499?insecure=1",
    ]);
    let (ok, class, detail) = one(&h, "n2", json!({"action": "status", "timeout_secs": 5}));
    assert!(!ok && class == "BMC unreachable", "{class}: {detail}");

    // No password in listings or the head's log.
    for text in [
        h.ok(&["node", "ls", "-L"]),
        h.ok(&["node", "--json", "ls"]),
        h.log(),
    ] {
        assert!(
            !text.contains("calvin-r3d") && !text.contains("not-it-9"),
            "{text}"
        );
    }
}

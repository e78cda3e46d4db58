//! Power of a real machine: `ipmi_sim` is the BMC of a QEMU VM (QEMU's `ipmi-bmc-extern`
//! device on the simulator's VM port, a KCS interface in the guest). The simulator starts
//! the VM at power on; the VM PXE-boots from wulfd into Debian's kernel and a busybox image
//! whose init starts wulf-agent, and reports `up`. Then through wulf: `power status` is on;
//! `power off` really stops the VM (its QEMU process ends, the BMC says off, wulf says off);
//! `power on` starts a new QEMU that PXE-boots to `up` again (a new boot); `power status`
//! is right each time.

#[path = "support/bmc/mod.rs"]
mod bmc;
mod head;
mod netns;

use std::path::Path;
use std::time::{Duration, Instant};

use bmc::{IpmiSim, SimConfig};
use head::Head;
use netns::Lab;
use serde_json::{json, Value};

const MAC: &str = "52:54:00:94:00:01";
const PASS: &str = "vm-bmc-Pw9";

/// `wulf node -i n0 power ACTION`: (ok, result, detail).
fn power(h: &Head, action: &str) -> (bool, String, String) {
    let (code, v) = bmc::power(h, "n0", json!({"action": action, "timeout_secs": 20}));
    assert_eq!(code, 200, "{v}");
    let r = &v["results"][0];
    (
        r["ok"].as_bool().unwrap(),
        r["result"].as_str().unwrap().to_string(),
        r["detail"].as_str().unwrap_or("").to_string(),
    )
}

fn status_of(h: &Head) -> Value {
    let all = h.json(&["node", "status"]);
    all.as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "n0").cloned())
        .unwrap_or(Value::Null)
}

/// Wait until n0 is up from a boot served after `since` (the head's `booted_ms`),
/// returning its status.
fn wait_up(h: &Head, sim: &IpmiSim, console: &Path, since: i64, limit: Duration) -> Value {
    let t = Instant::now();
    loop {
        let s = status_of(h);
        let booted = s["booted_ms"].as_i64().unwrap_or(0);
        if s["state"] == "up" && booted > since {
            return s;
        }
        assert!(
            sim.machine_pid().is_some(),
            "the VM's QEMU exited; console:\n{}",
            std::fs::read_to_string(console).unwrap_or_default()
        );
        assert!(
            t.elapsed() < limit,
            "n0 did not come up within {limit:?}; status: {s}\nconsole:\n{}\nwulfd log:\n{}",
            std::fs::read_to_string(console).unwrap_or_default(),
            h.log()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[test]
fn ipmi_sim_powers_a_real_vm_that_pxe_boots_from_wulfd() {
    let started = Instant::now();
    let agent = head::wulf_bin().with_file_name("wulf-agent");
    assert!(
        agent.is_file(),
        "{} is missing: build the workspace first (cargo build --release --workspace)",
        agent.display()
    );
    let (kroot, kver) = bmc::vm::debian_kernel();
    let vmlinuz = kroot.join(format!("boot/vmlinuz-{kver}"));

    let lab = Lab::new("10.94.0");
    let h = Head::start_in(&lab.srv, "[dns]\nenabled = false\n");
    let dir = h.dir.path().to_path_buf();
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        "first_ip=10.94.0.10",
        "ip_count=20",
        "mask_bits=24",
        "router_ip=10.94.0.1",
    ]);
    h.ok(&["node", "create", &format!("mac={MAC}")]);
    let root = dir.join("bbroot");
    bmc::vm::busybox_root(&root);
    h.ok(&[
        "image",
        "create",
        "name=bb",
        "--from-dir",
        root.to_str().unwrap(),
    ]);
    h.ok(&[
        "boot",
        "create",
        "name=pw",
        &format!("kernel=@{}", vmlinuz.display()),
        "image=bb",
        // The image's clean poweroff hangs (does nothing): for the BMC fallback below.
        "cmdline=console=ttyS0 wulf.poweroff_cmd=/bin/true",
    ]);
    let initrd = dir.join("initrd.img");
    h.build_initramfs(&kroot, &kver, &initrd, &["--boot", "pw"]);
    h.ok(&[
        "node",
        "-i",
        "n0",
        "set",
        "_boot_config=pw",
        "_status_secs=2",
    ]);
    // The BMC: on the head's namespace loopback; its password from an attribute.
    h.ok(&[
        "node",
        "-i",
        "n0",
        "set",
        "_power_uri=ipmi://admin:{_bmc_pass}@127.0.0.1:9301",
        &format!("_bmc_pass={PASS}"),
    ]);

    lab.tap("tap0");
    let console = dir.join("n0.console");
    let sim = IpmiSim::start(SimConfig {
        ns: Some(&lab.srv),
        dir: dir.join("bmc"),
        addr: "127.0.0.1",
        port: 9301,
        serial_port: 9302,
        user: "admin",
        pass: PASS,
        machine: &bmc::vm::qemu_machine("tap0", MAC, &console, 9302),
        start_on: false,
    });
    assert_eq!(power(&h, "status"), (true, "off".into(), String::new()));
    assert!(sim.machine_pid().is_none());

    // Power on: the simulator starts QEMU, which PXE-boots from wulfd to up.
    assert_eq!(power(&h, "on").1, "on");
    let t_on = Instant::now();
    let up = wait_up(&h, &sim, &console, 0, Duration::from_secs(420));
    eprintln!("n0 up {:?} after power on", t_on.elapsed());
    let first_boot = up["booted_ms"].as_i64().unwrap();
    assert_eq!(power(&h, "status"), (true, "on".into(), String::new()));
    assert_eq!(sim.power_status(), Some(true));
    let c = std::fs::read_to_string(&console).unwrap_or_default();
    assert!(c.contains("wulf-init: node n0"), "{c}");
    assert!(c.contains("power image: rcS ran on n0"), "{c}");

    // Power off: the VM stops (the BMC asks QEMU to power off), everyone agrees it is off,
    // and the head sees the node stop reporting.
    let qemu = sim.machine_pid().unwrap();
    assert_eq!(power(&h, "off"), (true, "off".into(), String::new()));
    let t = Instant::now();
    while bmc::alive(qemu) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "QEMU still runs after power off"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    sim.wait_power(false, Duration::from_secs(10));
    assert_eq!(power(&h, "status"), (true, "off".into(), String::new()));
    let t = Instant::now();
    while status_of(&h)["state"] != "down" {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "n0 not down: {}",
            status_of(&h)
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Power on again: a new VM, a new boot, up again.
    assert_eq!(power(&h, "on").1, "on");
    assert_eq!(power(&h, "status"), (true, "on".into(), String::new()));
    let up = wait_up(&h, &sim, &console, first_boot, Duration::from_secs(420));
    assert!(up["booted_ms"].as_i64().unwrap() > first_boot, "{up}");
    assert_eq!(sim.starts(), 2, "one QEMU per power on");
    assert_eq!(power(&h, "status"), (true, "on".into(), String::new()));

    // `shutdown --timeout 5` when the clean poweroff hangs: the agent accepts, the node stays
    // up, and after 5 s the head powers it off through the BMC; the VM stops.
    let t = Instant::now();
    let j = h.json(&["node", "-i", "n0", "shutdown", "--timeout", "5"]);
    let r = &j["results"][0];
    assert_eq!(
        (r["ok"].as_bool(), r["via"].as_str(), r["result"].as_str()),
        (Some(true), Some("bmc"), Some("hard shutdown")),
        "{j}"
    );
    assert!(
        r["detail"]
            .as_str()
            .is_some_and(|d| d.contains("soft timeout")),
        "{j}"
    );
    sim.wait_power(false, Duration::from_secs(20));
    assert!(t.elapsed() < Duration::from_secs(40), "{:?}", t.elapsed());
    assert_eq!(power(&h, "status"), (true, "off".into(), String::new()));

    let log = h.log();
    assert!(
        log.contains("power account=root source=127.0.0.1 nodes=n0 action=\"off\""),
        "{log}"
    );
    assert!(
        !log.contains(PASS),
        "the BMC password shows in the head's log"
    );
    eprintln!("whole test: {:?}", started.elapsed());
}

//! A real machine boots from wulfd: QEMU (software emulation, SeaBIOS + the ipxe-qemu ROM)
//! with its NIC on a tap in the lab's bridge gets its address from wulfd's DHCP, chains to
//! its iPXE script over HTTP and runs it. The serial console shows what the firmware did.

mod head;
mod netns;

use std::process::Stdio;
use std::time::{Duration, Instant};

use head::{write, Head};
use netns::Lab;

fn console(path: &std::path::Path) -> String {
    let raw = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\r', "")
}

/// The console wraps long lines at 80 columns; join them back.
fn unwrapped(console: &str) -> String {
    console.replace('\n', "")
}

#[test]
fn qemu_ipxe_fetches_and_runs_its_boot_script() {
    let lab = Lab::new("10.80.0");
    let h = Head::start_in(&lab.srv, "[dns]\nenabled = false\n");
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        "first_ip=10.80.0.10",
        "ip_count=50",
        "mask_bits=24",
        "domain=cluster.test",
    ]);
    let mac = "52:54:00:80:00:01";
    h.ok(&["node", "create", &format!("mac={mac}")]);
    // Not a real kernel: iPXE downloads it (and then fails to run it), which is as far as this
    // test goes (booting a real kernel is the end-to-end test of the node agent).
    let k = write(h.dir.path(), "vmlinuz", &vec![0x5a; 200_000]);
    h.ok(&[
        "boot",
        "create",
        "name=vmboot",
        "cmdline=console=ttyS0",
        &format!("kernel=@{}", k.display()),
    ]);
    h.ok(&[
        "attrib",
        "-i",
        "DefaultAttribs",
        "set",
        "_boot_config=vmboot",
    ]);
    let sha = h.json(&["boot", "ls"])[0]["kernel"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();

    lab.tap("tap0");
    let log = h.dir.path().join("console.log");
    let mut qemu = Lab::cmd(&lab.srv, "qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "128",
            "-nographic",
            "-monitor",
            "none",
            "-boot",
            "n",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"])
        .args(["-device", &format!("e1000,netdev=n0,mac={mac}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 must be installed (./test.sh installs it)");

    let want = format!("/boot/file/{sha}");
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut seen = String::new();
    while Instant::now() < deadline {
        seen = console(&log);
        // (The same test as the assertion below: older iPXE builds start what they fetched
        // before printing all of "ok".)
        if seen.contains("wulf: booting n0") && unwrapped(&seen).contains(&format!("{want}... o")) {
            break;
        }
        if let Some(st) = qemu.try_wait().unwrap() {
            panic!("qemu exited early ({st}); console:\n{seen}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    assert!(seen.contains("iPXE"), "no iPXE on the console:\n{seen}");
    assert!(
        seen.contains("10.80.0.10"),
        "the VM did not get its reserved address:\n{seen}"
    );
    assert!(
        seen.contains("/boot/ipxe?mac=52:54:00:80:00:01"),
        "iPXE did not chain to its script:\n{seen}"
    );
    assert!(
        seen.contains("wulf: booting n0 (52:54:00:80:00:01) as rwram using boot config vmboot"),
        "the script did not run:\n{seen}"
    );
    assert!(
        unwrapped(&seen).contains(&format!("{want}... o")),
        "iPXE did not fetch the kernel:\n{seen}"
    );
    // ("... o": the firmware may not get to print all of "ok" before it runs what it
    // fetched; an error would read "... Connection reset" and the like.)
    assert!(
        h.log()
            .contains("Booting node (MAC=52:54:00:80:00:01) as rwram"),
        "no audit line:\n{}",
        h.log()
    );
}

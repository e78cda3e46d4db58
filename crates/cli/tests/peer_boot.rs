//! Peer-assisted image downloads on real machines: two QEMU VMs (software emulation, SeaBIOS
//! and the e1000's iPXE ROM) PXE-boot Debian's kernel and a `wulf initramfs build` initramfs
//! from a head with `[boot] peers_from_head = 1` and `_image_peers=yes` on every node. The
//! image is 9 MiB of random data plus a busybox init (3 pieces).
//!
//! 1. n0 boots: `wulf-agent fetch-image` in its initramfs gets every piece from the head and
//!    keeps serving them after the switch to the image. curl, asking n0 for a piece without a
//!    ticket from the head (and with a forged one), is refused.
//! 2. n1 boots while n0 serves: it gets the whole image from n0 and none from the head (the
//!    head's log has no image download to n1's address).
//! 3. n0 is switched off and n1 boots again: the head sends it to n0 again (still a member),
//!    n1 cannot connect, tells the head, and gets the image from the head.
//!
//! About 3 minutes.

#[path = "support/bmc/mod.rs"]
mod bmc;
mod head;
mod netns;

use std::io::Read;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use head::Head;
use netns::Lab;

const MAC0: &str = "52:54:00:97:00:01";
const MAC1: &str = "52:54:00:97:00:02";

struct Vm(Child, std::path::PathBuf);

impl Vm {
    fn start(lab: &Lab, tap: &str, mac: &str, console: std::path::PathBuf) -> Vm {
        Vm(bmc::vm::pxe_vm(&lab.srv, tap, mac, &console, 384), console)
    }

    fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.1).unwrap_or_default()).replace('\r', "")
    }

    /// Wait for `text` on the console; the console then. An init failure is a test failure.
    fn wait_for(&mut self, what: &str, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let c = self.console();
            if c.contains(text) {
                return c;
            }
            assert!(
                !c.contains("wulf-init: ERROR"),
                "{what}: the init failed:\n{c}"
            );
            if let Ok(Some(st)) = self.0.try_wait() {
                panic!("{what}: QEMU exited ({st}):\n{c}");
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no {text:?} within {limit:?}:\n{c}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// On a failure, print the head's log.
struct Dump<'a>(&'a Head);

impl Drop for Dump<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("===== wulfd log =====\n{}", self.0.log());
        }
    }
}

/// A root with 9 MiB of random data whose init says it is up and idles.
fn peer_root(dir: &Path) {
    for d in ["bin", "sbin", "etc", "tmp", "proc", "sys", "dev", "data"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", dir.join("bin/sh")).unwrap();
    let mut data = vec![0u8; 9 << 20];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut data)
        .unwrap();
    std::fs::write(dir.join("data/random.bin"), data).unwrap();
    bmc::write_script(
        &dir.join("sbin/init"),
        "#!/bin/sh\nexport PATH=/bin\necho 'peer image: up'\nwhile :; do busybox sleep 60; done\n",
    );
}

/// The `image: …` line wulf-init printed after the download with peers.
fn image_line(c: &str) -> String {
    c.lines()
        .find(|l| l.contains("wulf-init: image: "))
        .unwrap_or_else(|| panic!("no 'wulf-init: image:' line:\n{c}"))
        .to_string()
}

#[test]
fn nodes_get_their_image_from_each_other() {
    let started = Instant::now();
    let (kroot, kver) = bmc::vm::debian_kernel();
    let vmlinuz = kroot.join(format!("boot/vmlinuz-{kver}"));
    let lab = Lab::new("10.97.0");
    let h = Head::start_in(
        &lab.srv,
        "[dns]\nenabled = false\n[boot]\npeers_from_head = 1\n",
    );
    let _dump = Dump(&h);
    let dir = h.dir.path().to_path_buf();
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        "first_ip=10.97.0.10",
        "ip_count=20",
        "mask_bits=24",
    ]);
    h.ok(&["node", "create", &format!("mac={MAC0}")]);
    h.ok(&["node", "create", &format!("mac={MAC1}")]);
    let root = dir.join("root");
    peer_root(&root);
    h.ok(&[
        "image",
        "create",
        "name=peerimg",
        "--from-dir",
        root.to_str().unwrap(),
    ]);
    let sha = h.json(&["image", "ls", "peerimg"])[0]["content"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    h.ok(&[
        "boot",
        "create",
        "name=peer",
        &format!("kernel=@{}", vmlinuz.display()),
        "image=peerimg",
        "cmdline=console=ttyS0 wulf.retry=2",
    ]);
    let initrd = dir.join("initrd.img");
    h.build_initramfs(&kroot, &kver, &initrd, &["--boot", "peer"]);
    // A bad value is refused and changes nothing.
    assert!(!h
        .wulf(&[
            "attrib",
            "-i",
            "DefaultAttribs",
            "set",
            "_image_peers=maybe"
        ])
        .status
        .success());
    h.ok(&[
        "attrib",
        "-i",
        "DefaultAttribs",
        "set",
        "_boot_config=peer",
        "_image_peers=yes",
    ]);
    lab.tap("tap0");
    lab.tap("tap1");

    // 1. n0 from the head.
    let t = Instant::now();
    let mut vm0 = Vm::start(&lab, "tap0", MAC0, dir.join("n0.console"));
    let c = vm0.wait_for("n0", "peer image: up", Duration::from_secs(300));
    let line = image_line(&c);
    assert!(
        c.contains("wulf.swarm=7451"),
        "the kernel command line lacks wulf.swarm:\n{c}"
    );
    assert!(
        c.contains("fetching the image with its peers (serving it on port 7451)"),
        "{c}"
    );
    assert!(line.contains(" from the head, 0 from 0 peer(s)"), "{line}");
    assert!(!line.contains(": 0 from the head"), "{line}");
    eprintln!("n0 up in {:.0} s: {line}", t.elapsed().as_secs_f64());
    let log = h.log();
    assert!(
        log.contains(&format!("at 10.97.0.10 gets image {sha} from the head")),
        "{log}"
    );
    assert_eq!(
        log.matches("sending image peerimg to 10.97.0.10 ").count(),
        1,
        "{log}"
    );

    // n0 serves pieces only with the head's ticket for the asker's address.
    let piece = format!("http://10.97.0.10:7451/piece/{sha}/0");
    let (code, body) = netns::curl(&lab.srv, &[], &piece);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("ticket from the head"), "{body}");
    let forged = "Authorization: Bearer swarm:9999999999:00112233";
    let (code, _) = netns::curl(&lab.srv, &["-H", forged], &piece);
    assert_eq!(code, 403);
    let (code, _) = netns::curl(
        &lab.srv,
        &[],
        &format!("http://10.97.0.10:7451/piece/{sha}/99"),
    );
    assert_eq!(code, 404);

    // 2. n1 from n0.
    let t = Instant::now();
    let mut vm1 = Vm::start(&lab, "tap1", MAC1, dir.join("n1-1.console"));
    let c = vm1.wait_for("n1", "peer image: up", Duration::from_secs(300));
    let line = image_line(&c);
    assert!(line.contains(": 0 from the head, "), "{line}");
    assert!(line.contains(" from 1 peer(s) (10.97.0.10:7451)"), "{line}");
    eprintln!("n1 up in {:.0} s: {line}", t.elapsed().as_secs_f64());
    let log = h.log();
    assert!(
        log.contains(&format!(
            "at 10.97.0.11 gets image {sha} from 10.97.0.10:7451"
        )),
        "{log}"
    );
    assert_eq!(
        log.matches("sending image peerimg to 10.97.0.11 ").count(),
        0,
        "{log}"
    );
    drop(vm1);

    // 3. n0 off: n1 is sent to it, cannot connect, and gets the image from the head.
    drop(vm0);
    let t = Instant::now();
    let mut vm1 = Vm::start(&lab, "tap1", MAC1, dir.join("n1-2.console"));
    let c = vm1.wait_for("n1 again", "peer image: up", Duration::from_secs(300));
    let line = image_line(&c);
    assert!(line.contains("failed request(s)"), "{line}");
    assert!(line.contains("10.97.0.10:7451"), "{line}");
    assert!(!line.contains(": 0 from the head"), "{line}");
    eprintln!("n1 up again in {:.0} s: {line}", t.elapsed().as_secs_f64());
    let log = h.log();
    assert!(
        log.contains(&format!(
            "at 10.97.0.11 could not get image {sha} from 10.97.0.10:7451; now from the head"
        )),
        "{log}"
    );
    assert_eq!(
        log.matches("sending image peerimg to 10.97.0.11 ").count(),
        1,
        "{log}"
    );
    drop(vm1);
    eprintln!(
        "peer boot test took {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

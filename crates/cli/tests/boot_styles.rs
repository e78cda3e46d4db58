//! Boot styles and the disk cache on real machines: QEMU VMs (software emulation, SeaBIOS +
//! the ipxe-qemu ROM, an e1000 NIC on a tap in the lab's bridge, a virtio-blk disk from a
//! sparse raw file) PXE-boot from wulfd into Debian's kernel and initramfs files made by
//! `wulf initramfs build`. The image's /sbin/init is a script that prints whether its root
//! is writable and what `mount` says it is (no agent runs, so every boot gets its
//! enrollment token and the test needs no status reports).
//!
//! Node n0 (roram, `_disk_cache=auto`, a blank disk), booted four times with the same disk:
//!
//! 1. an initramfs without a storage driver: the root is an overlayfs and writable; the init
//!    says no disk appeared and that `wulf initramfs build --drivers virtio_blk` fixes it; the
//!    head sends the image.
//! 2. the initramfs with `--drivers virtio_blk`: the disk gets wulf's partition table, the
//!    image is downloaded and saved on it.
//! 3. the same image: a disk cache hit, and no image download in the head's log.
//! 4. the boot config names another image: downloaded again, the cache replaced.
//!
//! Node n1 (rwram, `_disk_cache=/dev/vda`, a disk with another partition table, no
//! `_disk_wipe`): the init leaves the disk alone and says so; its first MiB is unchanged.
//! Booted again with `_disk_wipe=yes`, the disk gets wulf's partition table and the image.
//!
//! Node d0 (boot style disked, `_disk_root=/dev/vda`; the NIC first in the boot order, the
//! disk second): on a disk with another partition table the install is refused and the disk
//! is unchanged; with `_disk_wipe=yes` the image, the kernel, the initramfs and extlinux go on
//! the disk and the head records the install (`disk_image`, `boot_stage=local`). The next
//! boot goes from the disk (the head's script says so, extlinux starts the kernel, the init
//! mounts the disk's root, gets its enrollment token from the head) without downloading the
//! image. A changed image, and `boot_stage=pxe`, each install again.

#[path = "support/bmc/mod.rs"]
mod bmc;
mod head;
mod netns;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use head::Head;
use netns::Lab;

const MAC0: &str = "52:54:00:96:00:01";
const MAC1: &str = "52:54:00:96:00:02";

fn console(path: &Path) -> String {
    let raw = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\r', "")
}

/// A root whose /sbin/init is a script that reports on its root and then idles.
fn probe_root(dir: &Path, version: u32) {
    for d in ["bin", "sbin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", dir.join("bin/sh")).unwrap();
    std::fs::write(dir.join("etc/styles-version"), format!("{version}\n")).unwrap();
    bmc::write_script(
        &dir.join("sbin/init"),
        "#!/bin/sh\n\
         export PATH=/bin\n\
         if busybox touch /probe 2>/dev/null; then echo 'styles image: root is writable'; \
         else echo 'styles image: root is read-only'; fi\n\
         busybox mount | busybox grep ' on / ' | busybox sed 's/^/styles image: mount: /'\n\
         echo \"styles image: version $(busybox cat /etc/styles-version)\"\n\
         if busybox grep -q '^enroll=..*' /etc/wulf/agent.conf; then echo 'styles image: enroll token present'; fi\n\
         echo 'styles image: done'\n\
         while :; do busybox sleep 60; done\n",
    );
}

/// A QEMU VM that PXE-boots with a virtio disk; killed on drop.
struct Vm {
    child: Child,
    log: PathBuf,
}

impl Vm {
    fn start(ns: &str, log: PathBuf, tap: &str, mac: &str, disk: &Path) -> Vm {
        let child = Lab::cmd(ns, "qemu-system-x86_64")
            .args([
                "-accel",
                "tcg",
                "-m",
                "384",
                "-nographic",
                "-monitor",
                "none",
            ])
            .arg("-serial")
            .arg(format!("file:{}", log.display()))
            .args([
                "-netdev",
                &format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
            ])
            // The NIC first, then the disk (a node told to boot its disk goes on to it).
            .args(["-device", &format!("e1000,netdev=n0,mac={mac},bootindex=1")])
            .args([
                "-drive",
                &format!("file={},format=raw,if=none,id=d0", disk.display()),
                "-device",
                "virtio-blk-pci,drive=d0,bootindex=2",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64 must be installed (./test.sh installs it)");
        Vm { child, log }
    }

    /// Wait for the image's init to report; the console then.
    fn wait_done(&mut self, what: &str, limit: Duration) -> String {
        self.wait_for(what, "styles image: done", false, limit)
    }

    /// Wait for `text` on the console (an init failure first is a test failure unless
    /// `error_ok`); the console then.
    fn wait_for(&mut self, what: &str, text: &str, error_ok: bool, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let c = console(&self.log);
            if c.contains(text) {
                return c;
            }
            assert!(
                error_ok || !c.contains("wulf-init: ERROR"),
                "{what}: the init failed:\n{c}"
            );
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("{what}: QEMU exited ({st}):\n{c}");
            }
            assert!(
                Instant::now() < deadline,
                "{what}: the image did not report within {limit:?}:\n{c}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

fn has_all(c: &str, what: &str, wants: &[&str]) {
    for w in wants {
        assert!(c.contains(w), "{what}: the console lacks {w:?}:\n{c}");
    }
}

/// The image downloads the head logged to `addr`: "sending image NAME to ADDR …".
fn downloads_to(h: &Head, image: &str, addr: &str) -> usize {
    h.log()
        .matches(&format!("sending image {image} to {addr} "))
        .count()
}

/// n0's image downloads (n1, at 10.96.0.11, boots beside it).
fn downloads(h: &Head, image: &str) -> usize {
    downloads_to(h, image, "10.96.0.10")
}

/// One boot of a VM on (tap, MAC, disk) until the image reports; the console, which must
/// hold each of `wants`.
fn boot_once(
    lab: &Lab,
    log: PathBuf,
    (tap, mac, disk): (&str, &str, &Path),
    what: &str,
    limit: Duration,
    wants: &[&str],
) -> String {
    let mut vm = Vm::start(&lab.srv, log, tap, mac, disk);
    let c = vm.wait_done(what, limit);
    drop(vm);
    has_all(&c, what, wants);
    c
}

/// The first MiB of a disk file.
fn first_mib(p: &Path) -> Vec<u8> {
    let mut b = std::fs::read(p).unwrap();
    b.truncate(1 << 20);
    b
}

/// A sparse raw disk of `mib` MiB.
fn disk(path: &Path, mib: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(mib << 20).unwrap();
}

#[test]
fn roram_overlay_and_the_disk_cache() {
    let started = Instant::now();
    let agent = head::wulf_bin().with_file_name("wulf-agent");
    assert!(
        agent.is_file(),
        "{} is missing: build the workspace first (cargo build --release --workspace)",
        agent.display()
    );
    let (kroot, kver) = bmc::vm::debian_kernel();
    let vmlinuz = kroot.join(format!("boot/vmlinuz-{kver}"));

    let lab = Lab::new("10.96.0");
    let h = Head::start_in(&lab.srv, "[dns]\nenabled = false\n");
    let _dump = Dump(&h);
    let dir = h.dir.path().to_path_buf();
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        "first_ip=10.96.0.10",
        "ip_count=20",
        "mask_bits=24",
        "domain=cluster.test",
    ]);
    h.ok(&["node", "create", &format!("mac={MAC0}")]);
    h.ok(&["node", "create", &format!("mac={MAC1}")]);
    for (name, version) in [("probe1", 1), ("probe2", 2)] {
        let root = dir.join(name);
        probe_root(&root, version);
        h.ok(&[
            "image",
            "create",
            &format!("name={name}"),
            "--from-dir",
            root.to_str().unwrap(),
        ]);
    }
    let kernel_arg = format!("kernel=@{}", vmlinuz.display());
    for name in ["styles", "styles-b"] {
        h.ok(&[
            "boot",
            "create",
            &format!("name={name}"),
            &kernel_arg,
            "image=probe1",
            "cmdline=console=ttyS0 wulf.retry=2",
        ]);
    }
    // The default initramfs (no storage driver) for n0's first boot, and one with virtio_blk.
    let build = |out: &Path, extra: &[&str]| {
        let o = h.build_initramfs(&kroot, &kver, out, extra);
        eprintln!("{o}");
        o
    };
    let plain = dir.join("initrd.img");
    let with_blk = dir.join("initrd-blk.img");
    let o = build(&plain, &["--boot", "styles"]);
    assert!(o.contains("overlay") && o.contains("ext4"), "{o}");
    let o = build(
        &with_blk,
        &["--drivers", "virtio_blk", "--boot", "styles-b"],
    );
    assert!(o.contains("virtio_blk"), "{o}");
    // Bad input is refused before anything is written.
    let bad = h.wulf(&["node", "-i", "n0", "set", "_disk_cache=/dev/disk/by-id/x"]);
    assert!(!bad.status.success(), "{bad:?}");
    h.ok(&[
        "node",
        "-i",
        "n0",
        "set",
        "_boot_config=styles",
        "_boot_style=roram",
        "_disk_cache=auto",
    ]);
    h.ok(&[
        "node",
        "-i",
        "n1",
        "set",
        "_boot_config=styles-b",
        "_disk_cache=/dev/vda",
    ]);

    // Disks: n0's blank, n1's with another system's MBR (signature FRGN, one NTFS partition).
    let disk0 = dir.join("n0.disk");
    disk(&disk0, 256);
    let disk1 = dir.join("n1.disk");
    foreign_disk(&disk1, 64);
    let disk1_before = first_mib(&disk1);

    lab.tap("tap0");
    lab.tap("tap1");

    // Boot 1 of n0 (no storage driver) and n1's boot, side by side.
    let t = Instant::now();
    let mut vm0 = Vm::start(&lab.srv, dir.join("n0-1.console"), "tap0", MAC0, &disk0);
    let mut vm1 = Vm::start(&lab.srv, dir.join("n1.console"), "tap1", MAC1, &disk1);
    let c = vm0.wait_done("n0 boot 1", Duration::from_secs(360));
    has_all(
        &c,
        "n0 boot 1",
        &[
            "wulf-init: node n0",
            "boot style roram",
            "wulf-init: WARNING: disk cache: no disk appeared for auto: this machine has disks or storage controllers that kernel module(s) virtio_blk",
            "wulf initramfs build --drivers virtio_blk",
            "wulf-init: roram: the root is an overlayfs",
            "wulf-init: switching root to the image (roram)",
            "styles image: root is writable",
            "styles image: mount: overlay on / type overlay",
            "styles image: version 1",
        ],
    );
    assert!(!c.contains("disk cache hit"), "{c}");
    assert_eq!(downloads(&h, "probe1"), 1, "{}", h.log());
    eprintln!("n0 boot 1 (no storage driver) done after {:?}", t.elapsed());
    drop(vm0);

    let c = vm1.wait_done("n1", Duration::from_secs(360));
    has_all(
        &c,
        "n1",
        &[
            "boot style rwram",
            "wulf-init: WARNING: disk cache: /dev/vda has a partition table or data that is not wulf's: leaving it alone",
            "set _disk_wipe=yes",
            "wulf-init: switching root to the image (rwram)",
            "styles image: root is writable",
        ],
    );
    assert!(!c.contains("overlay on /"), "{c}");
    drop(vm1);
    assert!(
        first_mib(&disk1) == disk1_before,
        "n1's foreign disk was changed"
    );
    eprintln!("n1 (foreign disk) done after {:?}", t.elapsed());

    // Boot 2: with virtio_blk the blank disk becomes a cache and the image is saved on it.
    h.ok(&[
        "boot",
        "-i",
        "styles",
        "upload",
        "initramfs",
        with_blk.to_str().unwrap(),
    ]);
    // And n1 again, now with _disk_wipe=yes: its disk becomes wulf's.
    h.ok(&["node", "-i", "n1", "set", "_disk_wipe=yes"]);
    let t = Instant::now();
    let mut vm0 = Vm::start(&lab.srv, dir.join("n0-2.console"), "tap0", MAC0, &disk0);
    let mut vm1 = Vm::start(&lab.srv, dir.join("n1-2.console"), "tap1", MAC1, &disk1);
    let c = vm0.wait_done("n0 boot 2", Duration::from_secs(360));
    drop(vm0);
    has_all(
        &c,
        "n0 boot 2",
        &[
            "wulf-init: disk cache: /dev/vda is blank: giving it wulf's partition table",
            "wulf-init: disk cache: making an ext2 filesystem (wulf-cache) on /dev/vda1",
            "wulf-init: disk cache: /dev/vda1 holds no image yet",
            "wulf-init: downloaded the image",
            "wulf-init: disk cache: saved the image",
            "styles image: mount: overlay on / type overlay",
            "styles image: version 1",
        ],
    );
    assert_eq!(downloads(&h, "probe1"), 2, "{}", h.log());
    let mbr = first_mib(&disk0);
    assert_eq!(
        &mbr[440..444],
        b"wulf",
        "n0's disk has no wulf partition table"
    );
    assert_eq!(&mbr[510..512], &[0x55, 0xaa]);
    eprintln!("n0 boot 2 (cache filled) done after {:?}", t.elapsed());
    let c = vm1.wait_done("n1 boot 2", Duration::from_secs(300));
    drop(vm1);
    has_all(
        &c,
        "n1 boot 2",
        &[
            "wulf-init: WARNING: disk cache: /dev/vda has a partition table that is not wulf's; _disk_wipe=yes: repartitioning it",
            "wulf-init: disk cache: saved the image",
        ],
    );
    let mbr = first_mib(&disk1);
    assert_eq!(
        &mbr[440..444],
        b"wulf",
        "n1's wiped disk has no wulf partition table"
    );
    eprintln!("n1 boot 2 (_disk_wipe=yes) done after {:?}", t.elapsed());

    // Boot 3: the cache holds this image: no download.
    let t = Instant::now();
    let c = boot_once(
        &lab,
        dir.join("n0-3.console"),
        ("tap0", MAC0, &disk0),
        "n0 boot 3",
        Duration::from_secs(300),
        &[
            "wulf-init: disk cache: /dev/vda1 mounted",
            "wulf-init: disk cache hit: image",
            "styles image: root is writable",
            "styles image: version 1",
        ],
    );
    assert!(!c.contains("wulf-init: downloaded the image"), "{c}");
    assert!(
        h.log()
            .matches("Booting node (MAC=52:54:00:96:00:01)")
            .count()
            >= 3,
        "{}",
        h.log()
    );
    assert_eq!(
        downloads(&h, "probe1"),
        2,
        "a cache hit downloaded the image:\n{}",
        h.log()
    );
    eprintln!("n0 boot 3 (cache hit) done after {:?}", t.elapsed());

    // Boot 4: another image: downloaded, the cache replaced.
    h.ok(&["boot", "-i", "styles", "update", "image=probe2"]);
    let t = Instant::now();
    boot_once(
        &lab,
        dir.join("n0-4.console"),
        ("tap0", MAC0, &disk0),
        "n0 boot 4",
        Duration::from_secs(300),
        &[
            "the node boots",
            "downloading the new one",
            "wulf-init: downloaded the image",
            "wulf-init: disk cache: saved the image",
            "styles image: version 2",
        ],
    );
    assert_eq!(downloads(&h, "probe2"), 1, "{}", h.log());
    assert_eq!(downloads(&h, "probe1"), 2, "{}", h.log());
    eprintln!("n0 boot 4 (changed image) done after {:?}", t.elapsed());
    eprintln!("whole test: {:?}", started.elapsed());
}

/// A disk with another system's MBR (signature FRGN, one NTFS partition) and some data.
fn foreign_disk(path: &Path, mib: u64) {
    use std::io::{Seek, SeekFrom, Write};
    disk(path, mib);
    let mut mbr = [0u8; 512];
    mbr[440..444].copy_from_slice(b"FRGN");
    mbr[446..462].copy_from_slice(&[
        0x80, 0x20, 0x21, 0x00, 0x07, 0xfe, 0xff, 0xff, 0x00, 0x08, 0x00, 0x00, 0x00, 0xf8, 0x01,
        0x00,
    ]);
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(&mbr).unwrap();
    f.seek(SeekFrom::Start(4096)).unwrap();
    f.write_all(b"someone else's data").unwrap();
}

#[test]
fn disked_install_and_boot_from_disk() {
    const MAC: &str = "52:54:00:97:00:01";
    let started = Instant::now();
    let (kroot, kver) = bmc::vm::debian_kernel();
    let vmlinuz = kroot.join(format!("boot/vmlinuz-{kver}"));
    let lab = Lab::new("10.97.0");
    let h = Head::start_in(&lab.srv, "[dns]\nenabled = false\n");
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
    h.ok(&["node", "create", "name=d0", &format!("mac={MAC}")]);
    let mut sha = std::collections::HashMap::new();
    for (name, version) in [("disk1", 1), ("disk2", 2)] {
        let root = dir.join(name);
        probe_root(&root, version);
        h.ok(&[
            "image",
            "create",
            &format!("name={name}"),
            "--from-dir",
            root.to_str().unwrap(),
        ]);
        let img = h.json(&["image", "ls", name]);
        sha.insert(
            name,
            img[0]["content"]["sha256"].as_str().unwrap().to_string(),
        );
    }
    h.ok(&[
        "boot",
        "create",
        "name=disked",
        &format!("kernel=@{}", vmlinuz.display()),
        "image=disk1",
        "boot_style=disked",
        "cmdline=console=ttyS0 wulf.retry=2",
    ]);
    let initrd = dir.join("initrd-disked.img");
    let o = h.build_initramfs(
        &kroot,
        &kver,
        &initrd,
        &["--drivers", "virtio_blk", "--boot", "disked"],
    );
    assert!(o.contains("extlinux (for disked nodes)"), "{o}");
    let bad = h.wulf(&["node", "-i", "d0", "set", "_disk_root=/dev/vda;reboot"]);
    assert!(!bad.status.success(), "{bad:?}");
    h.ok(&[
        "node",
        "-i",
        "d0",
        "set",
        "_boot_config=disked",
        "_disk_root=/dev/vda",
    ]);
    let node = || h.json(&["node", "ls", "d0"])[0].clone();
    let downloads = |image: &str| downloads_to(&h, image, "10.97.0.10");
    lab.tap("tap0");
    let disk0 = dir.join("d0.disk");
    foreign_disk(&disk0, 256);
    let before = first_mib(&disk0);

    // Boot 0: another system's disk: refused, unchanged.
    let t = Instant::now();
    let mut vm = Vm::start(&lab.srv, dir.join("d0-0.console"), "tap0", MAC, &disk0);
    let c = vm.wait_for(
        "d0 boot 0",
        "wulf-init: ERROR: disked: /dev/vda has a partition table or data that is not wulf's",
        true,
        Duration::from_secs(360),
    );
    drop(vm);
    has_all(
        &c,
        "d0 boot 0",
        &["boot style disked", "set _disk_wipe=yes"],
    );
    assert!(first_mib(&disk0) == before, "the foreign disk was changed");
    assert_eq!(
        downloads("disk1"),
        0,
        "a refused install downloaded the image"
    );
    assert_eq!(node()["disk_image"], serde_json::Value::Null);
    eprintln!(
        "d0 boot 0 (foreign disk refused) done after {:?}",
        t.elapsed()
    );

    // Boot 1: _disk_wipe=yes: installed.
    h.ok(&["node", "-i", "d0", "set", "_disk_wipe=yes"]);
    let t = Instant::now();
    boot_once(
        &lab,
        dir.join("d0-1.console"),
        ("tap0", MAC, &disk0),
        "d0 boot 1",
        Duration::from_secs(360),
        &[
            "_disk_wipe=yes: repartitioning it",
            "wulf-init: disked: installing the image on /dev/vda1",
            "wulf-init: disked: extlinux installed on /dev/vda",
            "wulf-init: disked: the head recorded the install",
            "styles image: root is writable",
            "styles image: mount: /dev/vda1 on / type ext",
            "styles image: version 1",
        ],
    );
    let n = node();
    assert_eq!(n["boot_stage"], "local", "{n}");
    assert_eq!(n["disk_image"].as_str(), Some(sha["disk1"].as_str()), "{n}");
    assert_eq!(downloads("disk1"), 1, "{}", h.log());
    let mbr = first_mib(&disk0);
    assert_eq!(&mbr[440..444], b"wulf");
    assert_eq!(mbr[446], 0x80, "partition 1 is not marked active");
    assert!(
        mbr[..440].iter().any(|&b| b != 0),
        "no boot code in the MBR"
    );
    eprintln!("d0 boot 1 (install) done after {:?}", t.elapsed());

    // Boot 2: from the disk, no download.
    let t = Instant::now();
    let c = boot_once(
        &lab,
        dir.join("d0-2.console"),
        ("tap0", MAC, &disk0),
        "d0 boot 2",
        Duration::from_secs(360),
        &[
            "wulf: d0 boots image disk1",
            "from its local disk",
            "wulf-init: disked: booting image",
            "wulf-init: disked: the head gave this boot's enrollment token",
            "styles image: mount: /dev/vda1 on / type ext",
            "styles image: version 1",
            "styles image: enroll token present",
        ],
    );
    assert!(!c.contains("wulf-init: downloaded the image"), "{c}");
    assert_eq!(
        downloads("disk1"),
        1,
        "a disk boot downloaded the image:\n{}",
        h.log()
    );
    assert!(
        h.log().contains("from its disk: d0 boots image disk1"),
        "{}",
        h.log()
    );
    eprintln!("d0 boot 2 (from disk) done after {:?}", t.elapsed());

    // Boot 3: the image changed: installed again.
    h.ok(&["boot", "-i", "disked", "update", "image=disk2"]);
    let t = Instant::now();
    boot_once(
        &lab,
        dir.join("d0-3.console"),
        ("tap0", MAC, &disk0),
        "d0 boot 3",
        Duration::from_secs(360),
        &[
            "has wulf's partition table: installing afresh",
            "wulf-init: disked: the head recorded the install",
            "styles image: version 2",
        ],
    );
    assert_eq!(downloads("disk2"), 1, "{}", h.log());
    assert_eq!(node()["disk_image"].as_str(), Some(sha["disk2"].as_str()));
    eprintln!("d0 boot 3 (changed image) done after {:?}", t.elapsed());

    // Boot 4: boot_stage set back to pxe: installed again.
    h.ok(&["node", "-i", "d0", "update", "boot_stage=pxe"]);
    let t = Instant::now();
    boot_once(
        &lab,
        dir.join("d0-4.console"),
        ("tap0", MAC, &disk0),
        "d0 boot 4",
        Duration::from_secs(360),
        &["installing afresh", "styles image: version 2"],
    );
    assert_eq!(downloads("disk2"), 2, "{}", h.log());
    assert_eq!(node()["boot_stage"], "local");
    eprintln!("d0 boot 4 (boot_stage=pxe) done after {:?}", t.elapsed());
    eprintln!("whole test: {:?}", started.elapsed());
}

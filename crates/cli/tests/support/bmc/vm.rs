//! A real machine for a BMC to power: a QEMU VM (software emulation) that PXE-boots from the
//! head on a tap in the lab's bridge into Debian's kernel, an initramfs made by
//! `wulf initramfs build` and a busybox image whose init starts wulf-agent (as in
//! e2e_boot.rs), with QEMU's external BMC device wired to an `ipmi_sim` (its VM codec port),
//! so the simulator's `power off` and `reset` reach the VM.

use crate::head::run_ok as run;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's current kernel package, unpacked (shared with e2e_boot.rs's cache): (its root,
/// the kernel release).
pub fn debian_kernel() -> (PathBuf, String) {
    fetch_kernel(false)
}

fn fetch_kernel(updated: bool) -> (PathBuf, String) {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-kernel");
    std::fs::create_dir_all(&cache).unwrap();
    let depends = || {
        Command::new("apt-cache")
            .args(["depends", "linux-image-amd64"])
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("Depends: "))
                    .find(|p| p.starts_with("linux-image-") && p.ends_with("-amd64"))
                    .map(str::to_string)
            })
    };
    let pkg = depends()
        .or_else(|| {
            run(Command::new("apt-get").args(["update", "-qq"]));
            depends()
        })
        .expect("apt-cache cannot tell which kernel linux-image-amd64 depends on");
    let version = pkg.trim_start_matches("linux-image-").to_string();
    let root = cache.join(&pkg);
    let ready = |r: &Path| {
        r.join(format!("boot/vmlinuz-{version}")).is_file()
            && r.join(format!("lib/modules/{version}")).is_dir()
    };
    if !ready(&root) {
        // The lock keeps two test binaries from unpacking at once.
        let lock = std::fs::File::create(cache.join(".lock")).unwrap();
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        if !ready(&root) {
            for e in std::fs::read_dir(&cache).unwrap().flatten() {
                if e.file_name() != ".lock" {
                    let _ = std::fs::remove_dir_all(e.path());
                    let _ = std::fs::remove_file(e.path());
                }
            }
            let downloaded = Command::new("apt-get")
                .args(["download", "-q", &pkg])
                .current_dir(&cache)
                .status()
                .is_ok_and(|st| st.success());
            if !downloaded {
                assert!(!updated, "apt-get download {pkg} failed");
                run(Command::new("apt-get").args(["update", "-qq"]));
                drop(lock);
                return fetch_kernel(true);
            }
            let deb = std::fs::read_dir(&cache)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "deb"))
                .expect("apt-get download left no .deb");
            let tmp = cache.join("unpacking");
            run(Command::new("dpkg").arg("-x").arg(&deb).arg(&tmp));
            std::fs::rename(&tmp, &root).unwrap();
            let _ = std::fs::remove_file(&deb);
        }
    }
    assert!(ready(&root), "{} has no kernel {version}", root.display());
    (root, version)
}

/// A busybox-static root filesystem: every applet linked, busybox init (the initramfs writes
/// an inittab that starts the agent).
pub fn busybox_root(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    let list = run(Command::new("/bin/busybox").arg("--list-full"));
    for app in list.lines().map(str::trim).filter(|a| !a.is_empty()) {
        if app == "bin/busybox" || app.contains("..") {
            continue;
        }
        let depth = app.matches('/').count();
        let target = if depth == 1 && app.starts_with("bin/") {
            "busybox".to_string()
        } else {
            format!("{}bin/busybox", "../".repeat(depth))
        };
        let p = dir.join(app);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let _ = std::os::unix::fs::symlink(target, p);
    }
    for d in ["etc/init.d", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    super::write_script(
        &dir.join("etc/init.d/rcS"),
        "#!/bin/sh\necho \"power image: rcS ran on $(hostname)\"\n",
    );
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

/// The body of an `ipmi_sim` machine script that runs a PXE-booting VM on `tap` with `mac`,
/// its console appended to `console`, its BMC device connected to `serial_port`.
pub fn qemu_machine(tap: &str, mac: &str, console: &Path, serial_port: u16) -> String {
    format!(
        "exec qemu-system-x86_64 -accel tcg -m 384 -nographic -monitor none \
         -chardev file,id=con,path={console},append=on -serial chardev:con \
         -boot n -netdev tap,id=n0,ifname={tap},script=no,downscript=no \
         -device e1000,netdev=n0,mac={mac} \
         -chardev socket,id=ipmi0,host=127.0.0.1,port={serial_port},reconnect=1 \
         -device ipmi-bmc-extern,id=bmc0,chardev=ipmi0 -device isa-ipmi-kcs,bmc=bmc0",
        console = console.display()
    )
}

/// A VM that PXE-boots (SeaBIOS, the e1000's iPXE ROM) on `tap` in namespace `ns`, with
/// `mem` MiB and its serial console in the file `console`; the caller kills it.
pub fn pxe_vm(ns: &str, tap: &str, mac: &str, console: &Path, mem: u32) -> std::process::Child {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-nographic",
        ])
        .args(["-monitor", "none", "-boot", "n", "-m", &mem.to_string()])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .args([
            "-netdev",
            &format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
            "-device",
            &format!("e1000,netdev=n0,mac={mac}"),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 must be installed (./test.sh installs it)")
}

//! A head inside a QEMU VM (software emulation), for tests whose fault must take the page
//! cache with it: Debian's kernel, an initramfs made by `wulf initramfs build` (busybox and
//! the virtio and ext4 modules) with an archive put before it that holds `wulfd`, the
//! libraries `ldd` names for it and an init that mounts the data disk and starts it. The data
//! disk is a raw file formatted on the host with `mkfs.ext4` and attached as a virtio disk with
//! `cache=none` (QEMU opens it with O_DIRECT: the host's page cache holds none of its writes),
//! mounted at wulfd's data directory. The VM reaches the test through QEMU's user network: its
//! API port is forwarded to a port on the host's 127.0.0.1, nothing leaves the machine.
//! [`VmHead::power_cut`] SIGKILLs QEMU: the guest's page cache, and every write wulfd did not
//! make durable, is gone; [`VmHead::boot`] starts a new VM on the same disk.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::head::run_ok as run;
use crate::head::{free_port, wulf_bin, wulfd_bin};

/// Where the data disk is mounted in the VM, and wulfd's data directory on it.
const DATA_DIR: &str = "/data/wulf";
/// wulfd's API port inside the VM.
const GUEST_PORT: u16 = 8740;

/// The VM's /pl-init (busybox sh): drivers, the data disk, the network, then wulfd in the
/// foreground. Each step says on the console that it is done (`vm-head: …`), and once the
/// admin token exists the init prints it (`vm-head: token …`) for the test.
const INIT: &str = r#"#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /proc /sys /dev /tmp /data
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
die() { echo "vm-head: ERROR: $*"; echo o > /proc/sysrq-trigger; sleep 60; }
for m in virtio_pci virtio_blk virtio_net ext4; do
    modprobe "$m" || die "cannot load $m"
done
n=0
while [ ! -b /dev/vda ]; do
    n=$((n + 1)); [ "$n" -gt 100 ] && die "no /dev/vda"
    sleep 0.1
done
# The default mount: data=ordered, barriers on, dirty pages written back when the kernel
# pleases (commit=5, dirty_expire 30 s) unless wulfd fsyncs them.
mount -t ext4 /dev/vda /data || die "cannot mount /dev/vda"
echo "vm-head: data disk mounted"
grep ' /data ' /proc/mounts
ifconfig lo 127.0.0.1 up
ifconfig eth0 10.0.2.15 netmask 255.255.255.0 up || die "no eth0"
route add default gw 10.0.2.2
mkdir -p /var/log/wulf
( n=0
  while [ ! -s /data/wulf/admin.token ] && [ "$n" -lt 600 ]; do n=$((n + 1)); sleep 0.2; done
  echo "vm-head: token $(cat /data/wulf/admin.token)" ) &
echo "vm-head: starting wulfd"
wulfd --config /etc/wulfd.toml --data-dir /data/wulf --listen 0.0.0.0:8740 --log warn
die "wulfd exited ($?)"
"#;

/// wulfd's config in the VM: the API only.
const CONFIG: &str = "head_name = \"vmhead\"\n[dhcp]\nenabled = false\n[tftp]\nenabled = false\n\
                      [dns]\nenabled = false\n";

/// The shared libraries `ldd` says `prog` loads (its interpreter too), by path.
fn libs_of(prog: &Path) -> Vec<PathBuf> {
    let out = run(Command::new("ldd").arg(prog));
    let mut v = Vec::new();
    for l in out.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux… (0x…)".
        let path = match l.split_once("=>") {
            Some((_, r)) => r.split_whitespace().next(),
            None => l.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            v.push(PathBuf::from(p));
        }
    }
    v
}

/// A head in a VM: its files (disk, kernel, initrd, console logs) and, while it runs, QEMU.
pub struct VmHead {
    pub dir: PathBuf,
    pub disk: PathBuf,
    vmlinuz: PathBuf,
    initrd: PathBuf,
    /// The host port forwarded to the VM's API port, this boot.
    pub port: u16,
    qemu: std::sync::Mutex<Option<Child>>,
    /// Boots so far (each has its own console file).
    pub boots: u32,
    /// Where the CLI finds the head: wulfd.url, admin.token, tls/ca.pem (from the VM).
    pub cli_dir: PathBuf,
}

impl VmHead {
    /// Make the initrd and a fresh `disk_mib` MiB ext4 data disk in `dir`, and boot.
    pub fn create(dir: &Path, disk_mib: u64) -> VmHead {
        for (prog, pkg) in [
            ("qemu-system-x86_64", "qemu-system-x86"),
            ("mkfs.ext4", "e2fsprogs"),
            ("cpio", "cpio"),
            ("curl", "curl"),
            ("sha256sum", "coreutils"),
        ] {
            assert!(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("command -v {prog}"))
                    .output()
                    .is_ok_and(|o| o.status.success()),
                "{prog} must be installed (Debian {pkg}; ./test.sh installs it)"
            );
        }
        std::fs::create_dir_all(dir).unwrap();
        let (kroot, kver) = crate::bmc::vm::debian_kernel();
        let vmlinuz = kroot.join(format!("boot/vmlinuz-{kver}"));

        // The base: busybox and the modules, by wulf's own initramfs builder.
        let base = dir.join("base.img");
        run(Command::new(wulf_bin()).args([
            "initramfs",
            "build",
            "--kernel-version",
            &kver,
            "--root",
            kroot.to_str().unwrap(),
            "--no-default-drivers",
            "--drivers",
            "virtio_pci,virtio_blk,virtio_net,ext4",
            "-o",
            base.to_str().unwrap(),
        ]));

        // The second archive: wulfd, its libraries, its config and the init.
        let extra = dir.join("extra");
        let _ = std::fs::remove_dir_all(&extra);
        std::fs::create_dir_all(extra.join("usr/sbin")).unwrap();
        std::fs::create_dir_all(extra.join("etc")).unwrap();
        let wulfd = wulfd_bin();
        std::fs::copy(&wulfd, extra.join("usr/sbin/wulfd")).unwrap();
        for lib in libs_of(&wulfd) {
            let dest = extra.join(lib.strip_prefix("/").unwrap());
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&lib, &dest).unwrap_or_else(|e| panic!("{}: {e}", lib.display()));
        }
        std::fs::write(extra.join("etc/wulfd.toml"), CONFIG).unwrap();
        crate::bmc::write_script(&extra.join("pl-init"), INIT);
        let cpio = dir.join("extra.cpio");
        run(Command::new("sh")
            .current_dir(&extra)
            .arg("-c")
            .arg(format!(
                "find . -mindepth 1 | cpio --quiet -o -H newc -R 0:0 > {}",
                cpio.display()
            )));
        // The kernel unpacks concatenated archives one after the other (the uncompressed one
        // first: it finds where that ends, as with early microcode).
        let initrd = dir.join("initrd.img");
        let mut all = std::fs::read(&cpio).unwrap();
        all.extend(std::fs::read(&base).unwrap());
        std::fs::write(&initrd, all).unwrap();

        let disk = dir.join("data.img");
        let f = std::fs::File::create(&disk).unwrap();
        f.set_len(disk_mib << 20).unwrap();
        drop(f);
        run(Command::new("mkfs.ext4")
            .args([
                "-q",
                "-F",
                "-L",
                "wulfdata",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
            ])
            .arg(&disk));

        let cli_dir = dir.join("cli");
        std::fs::create_dir_all(cli_dir.join("tls")).unwrap();
        let mut vm = VmHead {
            dir: dir.to_path_buf(),
            disk,
            vmlinuz,
            initrd,
            port: 0,
            qemu: std::sync::Mutex::new(None),
            boots: 0,
            cli_dir,
        };
        vm.boot();
        vm
    }

    /// This boot's console file.
    pub fn console_path(&self) -> PathBuf {
        self.dir.join(format!("console-{}.log", self.boots))
    }

    pub fn console(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.console_path()).unwrap_or_default())
            .replace('\r', "")
    }

    /// Start a VM on the disk and wait until its wulfd answers the CLI (at most 180 s).
    /// Returns how long that took.
    pub fn boot(&mut self) -> Duration {
        assert!(self.qemu().is_none(), "the VM runs already");
        self.boots += 1;
        self.port = free_port();
        let t = Instant::now();
        let child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-m", "512", "-smp", "1"])
            .args(["-nographic", "-monitor", "none", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", self.console_path().display()))
            .arg("-kernel")
            .arg(&self.vmlinuz)
            .arg("-initrd")
            .arg(&self.initrd)
            .args([
                "-append",
                "console=ttyS0 rdinit=/pl-init panic=-1 loglevel=4",
            ])
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio,cache=none,aio=threads",
                self.disk.display()
            ))
            .arg("-netdev")
            .arg(format!(
                "user,id=n0,net=10.0.2.0/24,restrict=on,hostfwd=tcp:127.0.0.1:{}-:{GUEST_PORT}",
                self.port
            ))
            .args(["-device", "virtio-net-pci,netdev=n0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("qemu.err")).unwrap())
            .spawn()
            .expect("qemu-system-x86_64 must be installed (./test.sh installs it)");
        *self.qemu() = Some(child);

        // The token the init prints, then the CA over plain HTTP, then `wulf info`.
        let limit = Duration::from_secs(180);
        let mut token = None;
        crate::head::wait_every(
            "the VM's wulfd wrote no admin token",
            limit.saturating_sub(t.elapsed()),
            Duration::from_millis(250),
            || {
                let c = self.console();
                token = c
                    .lines()
                    .find_map(|l| l.strip_prefix("vm-head: token "))
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string);
                if token.is_none() {
                    self.check_alive(&c);
                }
                token.is_some()
            },
            || format!("console:\n{}", self.console()),
        );
        let token = token.unwrap_or_default();
        std::fs::write(self.cli_dir.join("admin.token"), format!("{token}\n")).unwrap();
        std::fs::write(
            self.cli_dir.join("wulfd.url"),
            format!("https://127.0.0.1:{}\n", self.port),
        )
        .unwrap();
        crate::head::wait_every(
            &format!("the VM's wulfd does not answer on 127.0.0.1:{}", self.port),
            limit.saturating_sub(t.elapsed()),
            Duration::from_millis(500),
            || {
                let o = Command::new("curl")
                    .args(["-sSf", "-m", "10"])
                    .arg(format!("http://127.0.0.1:{}/boot/ca.pem", self.port))
                    .output()
                    .unwrap();
                if o.status.success() && !o.stdout.is_empty() {
                    std::fs::write(self.cli_dir.join("tls/ca.pem"), &o.stdout).unwrap();
                    if self.wulf(&["info"]).status.success() {
                        return true;
                    }
                }
                self.check_alive(&self.console());
                false
            },
            || format!("console:\n{}", self.console()),
        );
        t.elapsed()
    }

    fn check_alive(&self, console: &str) {
        let exited = self.qemu().as_mut().and_then(|c| c.try_wait().unwrap());
        if let Some(st) = exited {
            panic!(
                "QEMU exited ({st}): {}\nconsole:\n{console}",
                std::fs::read_to_string(self.dir.join("qemu.err")).unwrap_or_default()
            );
        }
        assert!(
            !console.contains("vm-head: ERROR"),
            "the VM's init failed; console:\n{console}"
        );
    }

    fn qemu(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.qemu.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pull the plug: SIGKILL QEMU (the guest's RAM, and its page cache with it, is gone).
    pub fn power_cut(&self) {
        if let Some(mut c) = self.qemu().take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// `wulf ARGS` against the VM's head (a new process each time).
    pub fn wulf(&self, args: &[&str]) -> Output {
        self.wulf_cmd(args).output().unwrap()
    }

    pub fn wulf_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(wulf_bin());
        cmd.args(args)
            .env("WULF_DATA_DIR", &self.cli_dir)
            .env("HOME", &self.cli_dir)
            .env_remove("WULF_URL")
            .env_remove("WULF_TOKEN")
            .env_remove("WULF_CONFIG")
            .env_remove("WULF_CA")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// `wulf ARGS --json`, expected to succeed.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let o = self.wulf(&a);
        assert!(
            o.status.success(),
            "wulf {a:?} failed: {}{}\nconsole:\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.console()
        );
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// `curl` against the VM's API with the admin token, the cluster CA checked, the
    /// body written to `out`; returns the HTTP status.
    pub fn curl_to(&self, path: &str, out: &Path) -> u16 {
        let token = std::fs::read_to_string(self.cli_dir.join("admin.token")).unwrap();
        let o = Command::new("curl")
            .args(["-sS", "-m", "120", "-w", "%{http_code}", "--cacert"])
            .arg(self.cli_dir.join("tls/ca.pem"))
            .arg("-H")
            .arg(format!("Authorization: Bearer {}", token.trim()))
            .arg("-o")
            .arg(out)
            .arg(format!("https://127.0.0.1:{}/api/v1{path}", self.port))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

impl Drop for VmHead {
    fn drop(&mut self) {
        self.power_cut();
    }
}

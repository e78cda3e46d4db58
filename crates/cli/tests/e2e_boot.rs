//! End to end: real machines boot from wulfd and report. In a network namespace, wulfd serves
//! a bridge; QEMU VMs (software emulation, SeaBIOS + the ipxe-qemu ROM, NICs on taps in the
//! bridge) get an address by DHCP, chain to their iPXE script, fetch Debian's kernel and an
//! initramfs made by `wulf initramfs build`, whose init fetches the node's image (made by
//! `wulf image create --from-dir` from a busybox-static root), unpacks it into RAM, puts
//! wulf-agent in it and switches root. Then `wulf node status` must show:
//!
//! - n0 (an image whose busybox init starts the agent): `up`, with hostname, kernel, modules,
//!   RAM and hardware; after its VM is killed, `down` / `node stopped sending status`.
//! - n1 (roram, an image whose /sbin/init is a plain script, so nothing starts the agent):
//!   `down` / `boot timeout`.
//!
//! And a direct kernel boot told a wrong image checksum shows `wulf-init: ERROR:` and reboots.
//!
//! The kernel is the one Debian's `linux-image-amd64` depends on, fetched with
//! `apt-get download` into a cache under target/ and unpacked with `dpkg -x`.

mod head;
mod netns;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use head::run_ok as run;
use head::Head;
use netns::Lab;
use serde_json::Value;

fn console(path: &Path) -> String {
    let raw = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\r', "")
}

/// Debian's current kernel package, unpacked: (its root, the kernel release).
fn debian_kernel() -> (PathBuf, String) {
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
        // Only the current kernel is kept (each is ~400 MB unpacked).
        for e in std::fs::read_dir(&cache).unwrap().flatten() {
            let _ = std::fs::remove_dir_all(e.path());
            let _ = std::fs::remove_file(e.path());
        }
        let downloaded = Command::new("apt-get")
            .args(["download", "-q", &pkg])
            .current_dir(&cache)
            .status()
            .is_ok_and(|st| st.success());
        if !downloaded {
            // Package lists older than the archive name a kernel it no longer has.
            assert!(!updated, "apt-get download {pkg} failed");
            run(Command::new("apt-get").args(["update", "-qq"]));
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
    assert!(ready(&root), "{} has no kernel {version}", root.display());
    (root, version)
}

/// A root filesystem of busybox-static: every applet linked, busybox init (no inittab, so
/// the initramfs writes one that starts the agent), and an rcS that says it ran.
fn busybox_root(dir: &Path) {
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
    script(
        &dir.join("etc/init.d/rcS"),
        "#!/bin/sh\necho \"e2e image: rcS ran on $(hostname)\"\n",
    );
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

/// A root filesystem whose /sbin/init is a script: no init system, so nothing starts the
/// agent. It tells whether its root is writable (it boots roram: an overlayfs over the
/// read-only image).
fn plain_root(dir: &Path) {
    for d in ["bin", "sbin", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", dir.join("bin/sh")).unwrap();
    script(
        &dir.join("sbin/init"),
        "#!/bin/sh\n\
         export PATH=/bin\n\
         if busybox touch /probe 2>/dev/null; then echo 'plain image: root is writable'; \
         else echo 'plain image: root is read-only'; fi\n\
         busybox touch /tmp/probe && echo 'plain image: /tmp is writable'\n\
         echo 'plain image: no init system here'\n\
         while :; do busybox sleep 60; done\n",
    );
}

fn script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A QEMU VM, killed on drop.
struct Vm {
    child: Option<Child>,
    log: PathBuf,
}

impl Vm {
    fn start(ns: &str, log: PathBuf, args: &[String]) -> Vm {
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
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64 must be installed (./test.sh installs it)");
        Vm {
            child: Some(child),
            log,
        }
    }

    /// A VM booting from its NIC (SeaBIOS → iPXE ROM → DHCP → the head's script).
    fn pxe(ns: &str, name: &str, dir: &Path, tap: &str, mac: &str) -> Vm {
        let args = [
            "-boot".to_string(),
            "n".into(),
            "-netdev".into(),
            format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
            "-device".into(),
            format!("e1000,netdev=n0,mac={mac}"),
        ];
        Vm::start(ns, dir.join(format!("{name}.console")), &args)
    }

    fn console(&self) -> String {
        console(&self.log)
    }

    fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_some(),
            None => true,
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// On a failure, print what the VMs and the head said.
struct Dump<'a> {
    head: &'a Head,
    consoles: Vec<PathBuf>,
}

impl Drop for Dump<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for c in &self.consoles {
                eprintln!("===== {} =====\n{}", c.display(), console(c));
            }
            eprintln!("===== wulfd log =====\n{}", self.head.log());
        }
    }
}

fn status_of(h: &Head, name: &str) -> Value {
    let all = h.json(&["node", "status"]);
    all.as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

fn state(s: &Value) -> (String, String) {
    (
        s["state"].as_str().unwrap_or("").to_string(),
        s["down_reason"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn nodes_boot_from_wulfd_into_their_image_and_report() {
    let started = Instant::now();
    let agent = head::wulf_bin().with_file_name("wulf-agent");
    assert!(
        agent.is_file(),
        "{} is missing: build the workspace first (cargo build --release --workspace)",
        agent.display()
    );
    let (kroot, kver) = debian_kernel();
    let vmlinuz = kroot.join(format!("boot/vmlinuz-{kver}"));
    eprintln!("kernel {kver} ready after {:?}", started.elapsed());

    let mut lab = Lab::new("10.81.0");
    let h = Head::start_in(&lab.srv, "[dns]\nenabled = false\n");
    let dir = h.dir.path().to_path_buf();
    let _dump = Dump {
        head: &h,
        consoles: ["n0", "n1", "bad"]
            .iter()
            .map(|n| dir.join(format!("{n}.console")))
            .collect(),
    };
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        "first_ip=10.81.0.10",
        "ip_count=50",
        "mask_bits=24",
        "router_ip=10.81.0.1",
        "dns_ips=10.81.0.1",
        "domain=cluster.test",
    ]);
    let (mac0, mac1) = ("52:54:00:81:00:01", "52:54:00:81:00:02");
    h.ok(&["node", "create", &format!("mac={mac0}")]);
    h.ok(&["node", "create", &format!("mac={mac1}")]);

    // Images, packed from directories by the real CLI.
    let bb = dir.join("bbroot");
    busybox_root(&bb);
    let plain = dir.join("plainroot");
    plain_root(&plain);
    let out = h.ok(&[
        "image",
        "create",
        "name=bb",
        "--from-dir",
        bb.to_str().unwrap(),
    ]);
    assert!(out.contains("Created image bb"), "{out}");
    h.ok(&[
        "image",
        "create",
        "name=plain",
        "--from-dir",
        plain.to_str().unwrap(),
    ]);

    // Boot configs, and the initramfs built (and uploaded to the first) by the real CLI.
    let kernel_arg = format!("kernel=@{}", vmlinuz.display());
    for (name, image) in [("e2e", "bb"), ("e2e-plain", "plain")] {
        h.ok(&[
            "boot",
            "create",
            &format!("name={name}"),
            &kernel_arg,
            &format!("image={image}"),
            "cmdline=console=ttyS0",
        ]);
    }
    let initrd = dir.join("initrd.img");
    let built = h.build_initramfs(&kroot, &kver, &initrd, &["--boot", "e2e"]);
    eprintln!("{built}");
    assert!(
        built.contains("e1000") && built.contains("Uploaded"),
        "{built}"
    );
    h.ok(&[
        "boot",
        "-i",
        "e2e-plain",
        "upload",
        "initramfs",
        initrd.to_str().unwrap(),
    ]);
    h.ok(&[
        "node",
        "-i",
        "n0",
        "set",
        "_boot_config=e2e",
        "_status_secs=2",
    ]);
    h.ok(&[
        "node",
        "-i",
        "n1",
        "set",
        "_boot_config=e2e-plain",
        "_boot_style=roram",
        "_boot_timeout=30",
    ]);
    assert_eq!(state(&status_of(&h, "n0")).0, "new");

    lab.tap("tap0");
    lab.tap("tap1");
    let t_boot = Instant::now();
    let mut vm0 = Vm::pxe(&lab.srv, "n0", &dir, "tap0", mac0);
    let mut vm1 = Vm::pxe(&lab.srv, "n1", &dir, "tap1", mac1);

    // n0 comes up and reports everything.
    let deadline = t_boot + Duration::from_secs(420);
    let up = loop {
        let s = status_of(&h, "n0");
        // The first report carries the hardware; the next ones the 2 s interval the head
        // told the agent (the first went out at the default interval).
        if state(&s).0 == "up" && s["hardware"].is_object() && s["interval_secs"] == 2 {
            break s;
        }
        assert!(!vm0.exited(), "the n0 VM exited");
        assert!(
            Instant::now() < deadline,
            "n0 did not come up within 420 s; status: {s}"
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    eprintln!("n0 up after {:?}", t_boot.elapsed());
    let c0 = vm0.console();
    for want in [
        "wulf: booting n0 (52:54:00:81:00:01) as rwram using boot config e2e",
        "wulf-init: node n0",
        "wulf-init: eth0 has address 10.81.0.10",
        "wulf-init: image verified and unpacked into RAM",
        "wulf-init: wulf-agent will start from /etc/inittab (busybox init)",
        "wulf-init: switching root to the image (rwram)",
        "e2e image: rcS ran on n0",
    ] {
        assert!(c0.contains(want), "n0's console lacks {want:?}:\n{c0}");
    }
    assert!(!c0.contains("wulf-init: ERROR"), "{c0}");
    assert_eq!(up["hostname"], "n0", "{up}");
    assert_eq!(up["kernel"], kver.as_str(), "{up}");
    let modules: Vec<&str> = up["modules"]
        .as_array()
        .map(|m| m.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(modules.contains(&"e1000"), "{up}");
    assert!(up["ram_total"].as_u64().unwrap_or(0) > 200 << 20, "{up}");
    let hw = &up["hardware"];
    assert!(hw["cpus"].as_u64().unwrap_or(0) >= 1, "{hw}");
    assert!(
        hw["nics"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["mac"] == mac0)),
        "{hw}"
    );
    assert!(
        up["cmdline"]
            .as_str()
            .is_some_and(|c| c.contains("wulf.node=") && c.contains("wulf.style=rwram")),
        "{up}"
    );

    // Exec through the agent's command channel: output and exit codes come back.
    let out = h.ok(&["node", "-i", "n0", "exec", "--", "hostname"]);
    assert!(out.contains("n0"), "{out}");
    let o = h.wulf(&[
        "--json",
        "node",
        "-i",
        "n0",
        "exec",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(1), "a node failed: exit 1");
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &j["results"][0];
    assert_eq!(
        (
            r["stdout"].as_str(),
            r["stderr"].as_str(),
            r["exit"].as_i64()
        ),
        (Some("out\n"), Some("err\n"), Some(3)),
        "{j}"
    );

    // A soft reboot: the agent reboots the VM, which PXE-boots again and comes back up with
    // a new boot id. n0 has no power_uri, so a BMC fallback would have failed the command.
    let boot_id = || {
        let o = h.wulf(&[
            "--json",
            "node",
            "-i",
            "n0",
            "exec",
            "cat",
            "/proc/sys/kernel/random/boot_id",
        ]);
        assert!(o.status.success(), "{o:?}");
        let j: Value = serde_json::from_slice(&o.stdout).unwrap();
        j["results"][0]["stdout"]
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let old_boot = boot_id();
    assert_eq!(old_boot.len(), 36, "{old_boot:?}");
    let t_reboot = Instant::now();
    let j = h.json(&["node", "-i", "n0", "reboot"]);
    let r = &j["results"][0];
    assert_eq!(
        (r["ok"].as_bool(), r["via"].as_str()),
        (Some(true), Some("agent")),
        "{j}"
    );
    h.ok(&["node", "-i", "n0", "waitfor", "up", "--timeout", "360"]);
    eprintln!(
        "n0 rebooted softly and came back up after {:?}",
        t_reboot.elapsed()
    );
    let s = status_of(&h, "n0");
    assert!(s["booted_ms"].as_i64() > up["booted_ms"].as_i64(), "{s}");
    let new_boot = boot_id();
    assert!(
        new_boot.len() == 36 && new_boot != old_boot,
        "{old_boot} → {new_boot}"
    );
    let c0 = vm0.console();
    assert_eq!(
        c0.matches("wulf: booting n0 (52:54:00:81:00:01)").count(),
        2,
        "n0 did not boot twice:\n{c0}"
    );

    // Kill n0: the head sees it stop sending status (_status_secs=2).
    vm0.kill();
    let t_kill = Instant::now();
    loop {
        let s = status_of(&h, "n0");
        if state(&s) == ("down".into(), "node stopped sending status".into()) {
            break;
        }
        assert!(
            t_kill.elapsed() < Duration::from_secs(60),
            "n0 is not down 60 s after its VM was killed: {s}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("n0 down {:?} after its VM was killed", t_kill.elapsed());

    // With n0's CPU free: a direct kernel boot told the wrong image checksum must say so
    // and reboot (-no-reboot makes QEMU exit instead).
    // The script is asked from n0's own address, as its firmware would: asked from anywhere
    // else it carries no enrollment token, and the image is only given with one.
    let n0_ns = lab.client("52:54:00:81:00:77");
    lab.with_addr(&n0_ns, "10.81.0.10/24");
    let kline = Lab::cmd(&n0_ns, "curl")
        .args([
            "-sS",
            &format!("http://10.81.0.1:8740/boot/ipxe?mac={mac0}"),
        ])
        .output()
        .unwrap();
    let script = String::from_utf8_lossy(&kline.stdout).to_string();
    // The VM below takes that address.
    netns::sh(&format!(
        "ip -n {n0_ns} link set eth0 down && ip -n {} neigh flush dev br0",
        lab.srv
    ));
    let line = script
        .lines()
        .find(|l| l.starts_with("kernel "))
        .unwrap_or_else(|| panic!("no kernel line in:\n{script}"));
    let good_sha = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("wulf.image_sha256="))
        .unwrap()
        .to_string();
    let append: Vec<&str> = line.split_whitespace().skip(4).collect();
    let append = append.join(" ").replace(
        &format!("wulf.image_sha256={good_sha}"),
        &format!("wulf.image_sha256={}", "0".repeat(64)),
    ) + " wulf.retry=1";
    lab.tap("tap2");
    let mut bad = Vm::start(
        &lab.srv,
        dir.join("bad.console"),
        &[
            "-no-reboot".into(),
            "-kernel".into(),
            vmlinuz.display().to_string(),
            "-initrd".into(),
            initrd.display().to_string(),
            "-append".into(),
            append,
            "-netdev".into(),
            "tap,id=n0,ifname=tap2,script=no,downscript=no".into(),
            "-device".into(),
            format!("e1000,netdev=n0,mac={mac0}"),
        ],
    );

    // n1: booted, but nothing starts its agent: boot timeout.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let s = status_of(&h, "n1");
        let c1 = vm1.console();
        if state(&s) == ("down".into(), "boot timeout".into())
            && c1.contains("plain image: no init system here")
        {
            break;
        }
        assert!(!vm1.exited(), "the n1 VM exited");
        assert!(
            Instant::now() < deadline,
            "n1 did not end down/boot timeout with its image running; status: {s}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let c1 = vm1.console();
    for want in [
        "wulf-init: node n1",
        "wulf-init: image verified and unpacked into RAM",
        "wulf-init: WARNING: cannot tell how the image's init (/sbin/init) starts services: wulf-agent will NOT start",
        "wulf-init: switching root to the image (roram)",
        "wulf-init: roram: the root is an overlayfs",
        "plain image: root is writable",
        "plain image: /tmp is writable",
    ] {
        assert!(c1.contains(want), "n1's console lacks {want:?}:\n{c1}");
    }
    eprintln!("n1 down (boot timeout) after {:?}", t_boot.elapsed());
    vm1.kill();

    // The failed boot: an error on the console, then a reboot.
    let deadline = Instant::now() + Duration::from_secs(240);
    while !bad.exited() {
        assert!(
            Instant::now() < deadline,
            "the VM with a wrong checksum did not reboot:\n{}",
            bad.console()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let cb = bad.console();
    for want in [
        "wulf-init: ERROR: image checksum mismatch",
        "wulf-init: rebooting in 1 seconds",
    ] {
        assert!(
            cb.contains(want),
            "the bad boot's console lacks {want:?}:\n{cb}"
        );
    }
    eprintln!("whole test: {:?}", started.elapsed());
}

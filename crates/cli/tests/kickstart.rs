//! Installer boots: a boot config's kickstart template, rendered by the head for the node that
//! asks (`GET /boot/ks`), and repos (`wulf repo`) served at `/boot/repo/NAME/PATH`: the files
//! of an ISO (built here with xorriso, Rock Ridge and Joliet names) or a redirect to a URL.
//!
//! - `kickstart_renders_and_repos_serve`: curl (in a namespace holding the node's address)
//!   fetches the rendered kickstart and ISO files; a missing stage2 is a 404 and a WARNING
//!   line saying so; bad templates are refused at upload.
//! - `installer_like_boot_in_qemu`: a QEMU VM PXE-boots Debian's kernel with a busybox
//!   initramfs whose init reads `ks=` from /proc/cmdline, fetches the kickstart and a file of
//!   the ISO with wget, prints both and reboots; with boot_sequence pxe+local its next PXE
//!   boot is told to boot from its local disk.

#[path = "support/bmc/mod.rs"]
mod bmc;
mod head;
mod netns;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use head::run_ok as run;
use head::{write, Head};
use netns::Lab;

const TEMPLATE: &str = "# kickstart for {{name}}\n\
network --bootproto=static --ip={{ip}} --hostname={{name}}.cluster.test\n\
# mac {{mac}} index {{index}} uid {{uid}}\n\
url --url={{repo.rocky9}}\n\
rootpw --iscrypted {{attr.rootpw}}\n\
%post\ncurl {{head}}/boot/ca.pem > /etc/wulf-ca.pem\n%end\n";

const ISO_TEXT: &str = "hello from the rocky9 ISO";

/// An ISO with Rock Ridge and Joliet names: a mixed-case file in a directory, and
/// (with `stage2`) images/install.img.
fn build_iso(dir: &Path, stage2: bool) -> PathBuf {
    let root = dir.join(if stage2 { "isoroot2" } else { "isoroot" });
    std::fs::create_dir_all(root.join("BaseOS/Packages")).unwrap();
    std::fs::write(root.join("BaseOS/Packages/Hello-World.txt"), ISO_TEXT).unwrap();
    std::fs::write(root.join(".treeinfo"), "[general]\nname = Rocky Linux 9\n").unwrap();
    if stage2 {
        std::fs::create_dir_all(root.join("images")).unwrap();
        std::fs::write(root.join("images/install.img"), vec![0x17u8; 300_000]).unwrap();
    }
    let iso = dir.join(if stage2 { "full.iso" } else { "rocky9.iso" });
    run(Command::new("xorriso")
        .args([
            "-as", "mkisofs", "-quiet", "-R", "-J", "-V", "Rocky-9", "-o",
        ])
        .arg(&iso)
        .arg(&root));
    iso
}

fn curl_in(ns: &str, url: &str) -> (u16, String) {
    let out = Lab::cmd(ns, "curl")
        .args([
            "-sS",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--max-time",
            "20",
            url,
        ])
        .output()
        .expect("curl must be installed (./test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn setup_net(h: &Head, net: &str) {
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        &format!("first_ip={net}.10"),
        "ip_count=50",
        "mask_bits=24",
        "domain=cluster.test",
    ]);
}

#[test]
fn kickstart_renders_and_repos_serve() {
    let mut lab = Lab::new("10.83.0");
    let h = Head::start_in(&lab.srv, "[dns]\nenabled = false\n");
    let dir = h.dir.path().to_path_buf();
    setup_net(&h, "10.83.0");
    let mac = "52:54:00:83:00:01";
    h.ok(&["node", "create", &format!("mac={mac}")]);
    let uid = h.json(&["node", "ls"])[0]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let k = write(&dir, "vmlinuz", &[0x5a; 1000]);
    let ks = write(&dir, "ks.tmpl", TEMPLATE.as_bytes());
    let iso = build_iso(&dir, false);
    let full = build_iso(&dir, true);

    // Bad templates are refused at upload, and change nothing.
    let bad = write(&dir, "bad.tmpl", b"network --hostname={{hostname}}\n");
    let out = h.wulf(&[
        "boot",
        "create",
        "name=inst",
        &format!("kernel=@{}", k.display()),
        "cmdline=console=ttyS0",
    ]);
    assert!(out.status.success());
    let blobs = || {
        let mut v: Vec<String> = std::fs::read_dir(h.data().join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let blobs_before = blobs();
    assert_eq!(blobs_before.len(), 1, "the kernel: {blobs_before:?}");
    let out = h.wulf(&[
        "boot",
        "-i",
        "inst",
        "update",
        &format!("kickstart=@{}", bad.display()),
    ]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "a bad template was accepted");
    assert!(
        err.contains("line 1: unknown placeholder '{{hostname}}'"),
        "{err}"
    );
    let unclosed = write(&dir, "unclosed.tmpl", b"a\nb {{name\n");
    let out = h.wulf(&[
        "boot",
        "-i",
        "inst",
        "update",
        &format!("kickstart=@{}", unclosed.display()),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2: '{{' without a closing '}}'"));
    assert!(h.json(&["boot", "ls"])[0].get("kickstart").is_none());
    // A refused upload leaves no file behind.
    assert_eq!(blobs(), blobs_before);

    h.ok(&[
        "boot",
        "-i",
        "inst",
        "update",
        &format!("kickstart=@{}", ks.display()),
    ]);
    h.ok(&[
        "attrib",
        "-i",
        "DefaultAttribs",
        "set",
        "_boot_config=inst",
        "rootpw=$6$salt$hash",
    ]);
    // A repo needs an iso or a url, not both; a url must be http(s).
    h.ok(&[
        "repo",
        "create",
        "name=rocky9",
        &format!("iso=@{}", iso.display()),
    ]);
    h.ok(&[
        "repo",
        "create",
        "name=full",
        &format!("iso=@{}", full.display()),
    ]);
    h.ok(&[
        "repo",
        "create",
        "name=mirror",
        "url=http://mirror.example/rocky/9/BaseOS/x86_64/os/",
    ]);
    let out = h.wulf(&["repo", "create", "name=bad", "url=ftp://mirror.example/"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an http:// or https:// URL"));
    assert_eq!(h.json(&["repo", "ls"]).as_array().unwrap().len(), 3);

    let head_url = "http://10.83.0.1:8740";
    // The node (its address) gets its kickstart rendered; another address gets a 404.
    let node_ns = lab.client(mac);
    lab.with_addr(&node_ns, "10.83.0.10/24");
    // The boot script tells the kernel where its kickstart is.
    let (code, script) = curl_in(&node_ns, &format!("{head_url}/boot/ipxe?mac={mac}"));
    assert_eq!(code, 200);
    assert!(
        script.contains("inst.ks=http://10.83.0.1:8740/boot/ks ks=http://10.83.0.1:8740/boot/ks"),
        "{script}"
    );
    let (code, body) = curl_in(&node_ns, &format!("{head_url}/boot/ks"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        format!(
            "# kickstart for n0\nnetwork --bootproto=static --ip=10.83.0.10 --hostname=n0.cluster.test\n\
             # mac {mac} index 0 uid {uid}\nurl --url={head_url}/boot/repo/rocky9\n\
             rootpw --iscrypted $6$salt$hash\n%post\ncurl {head_url}/boot/ca.pem > /etc/wulf-ca.pem\n%end\n"
        )
    );
    let other = lab.client("52:54:00:83:00:99");
    lab.with_addr(&other, "10.83.0.99/24");
    let (code, body) = curl_in(&other, &format!("{head_url}/boot/ks"));
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains("10.83.0.99 is not the address of a node"),
        "{body}"
    );

    // An attribute the template names that the node lacks: a 409 and a WARNING line.
    h.ok(&["attrib", "-i", "DefaultAttribs", "clear", "rootpw"]);
    let (code, body) = curl_in(&node_ns, &format!("{head_url}/boot/ks"));
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains("line 5: {{attr.rootpw}}: n0 has no attribute 'rootpw'"),
        "{body}"
    );
    assert!(
        h.log()
            .contains("cannot render the kickstart for n0: line 5"),
        "{}",
        h.log()
    );

    // ISO files by their Rock Ridge names (and plain ISO names without case), a directory is
    // not a file, a path may not leave the repo.
    let (code, body) = curl_in(
        &node_ns,
        &format!("{head_url}/boot/repo/rocky9/BaseOS/Packages/Hello-World.txt"),
    );
    assert_eq!((code, body.as_str()), (200, ISO_TEXT));
    let (code, body) = curl_in(&node_ns, &format!("{head_url}/boot/repo/rocky9/.treeinfo"));
    assert_eq!(code, 200);
    assert!(body.contains("Rocky Linux 9"));
    let (code, body) = curl_in(
        &node_ns,
        &format!("{head_url}/boot/repo/full/images/install.img"),
    );
    assert_eq!((code, body.len()), (200, 300_000));
    let (code, _) = curl_in(&node_ns, &format!("{head_url}/boot/repo/rocky9/BaseOS"));
    assert_eq!(code, 404);

    // The stage2 case: a 404 and a WARNING line naming the repo and the path.
    for p in ["images/install.img", "LiveOS/squashfs.img"] {
        let (code, body) = curl_in(&node_ns, &format!("{head_url}/boot/repo/rocky9/{p}"));
        assert_eq!(code, 404, "{body}");
        assert!(body.contains(&format!("repo rocky9 has no {p}")), "{body}");
    }
    let log = h.log();
    assert!(
        log.contains("WARN")
            && log.contains("repo rocky9 has no images/install.img: the installer's stage2 is missing from the ISO")
            && log.contains("repo rocky9 has no LiveOS/squashfs.img: the installer's stage2 is missing"),
        "{log}"
    );
    let (code, _) = curl_in(&node_ns, &format!("{head_url}/boot/repo/nosuch/x"));
    assert_eq!(code, 404);

    // A url repo redirects.
    let out = run(Lab::cmd(&node_ns, "curl").args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{redirect_url}",
        &format!("{head_url}/boot/repo/mirror/repodata/repomd.xml"),
    ]));
    assert_eq!(
        out,
        "302 http://mirror.example/rocky/9/BaseOS/x86_64/os/repodata/repomd.xml"
    );
}

fn console(path: &Path) -> String {
    let raw = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&raw).replace('\r', "")
}

/// An installer-like initramfs: busybox, the e1000 driver, and an init that gets an address
/// by DHCP, fetches `ks=` and the ISO file the kickstart's repo holds, prints them and
/// reboots.
fn installer_initramfs(dir: &Path, kroot: &Path, kver: &str) -> PathBuf {
    let root = dir.join("initroot");
    for d in ["bin", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let e1000 = kroot.join(format!(
        "lib/modules/{kver}/kernel/drivers/net/ethernet/intel/e1000/e1000.ko"
    ));
    let xz = e1000.with_extension("ko.xz");
    if e1000.is_file() {
        std::fs::copy(&e1000, root.join("e1000.ko")).unwrap();
    } else {
        let out = Command::new("xz").arg("-dc").arg(&xz).output().unwrap();
        assert!(out.status.success(), "cannot unpack {}", xz.display());
        std::fs::write(root.join("e1000.ko"), out.stdout).unwrap();
    }
    bmc::write_script(
        &root.join("udhcpc.sh"),
        "#!/bin/sh\n[ \"$1\" = bound ] && ifconfig \"$interface\" \"$ip\" netmask \"$subnet\"\nexit 0\n",
    );
    bmc::write_script(
        &root.join("init"),
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /bin\n\
         export PATH=/bin\n\
         mount -t devtmpfs dev /dev\n\
         exec >/dev/console 2>&1 </dev/console\n\
         mount -t proc proc /proc\n\
         mount -t sysfs sys /sys\n\
         echo 'ks-test: installer started'\n\
         insmod /e1000.ko\n\
         i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i+1)); done\n\
         ip link set eth0 up\n\
         udhcpc -i eth0 -n -q -t 10 -s /udhcpc.sh\n\
         KS=''\n\
         for a in $(cat /proc/cmdline); do case \"$a\" in ks=*) KS=\"${a#ks=}\";; esac; done\n\
         echo \"ks-test: ks=$KS\"\n\
         if wget -q -O /tmp/ks.cfg \"$KS\"; then\n\
           echo 'ks-test: kickstart begin'; cat /tmp/ks.cfg; echo 'ks-test: kickstart end'\n\
           REPO=$(sed -n 's/^url --url=//p' /tmp/ks.cfg)\n\
           if wget -q -O /tmp/f \"$REPO/BaseOS/Packages/Hello-World.txt\"; then\n\
             echo \"ks-test: iso file: $(cat /tmp/f)\"\n\
           else echo 'ks-test: cannot fetch the ISO file'; fi\n\
         else echo 'ks-test: cannot fetch the kickstart'; fi\n\
         echo 'ks-test: rebooting'\n\
         sleep 1\n\
         reboot -f\n",
    );
    let img = dir.join("installer.cpio");
    run(Command::new("sh").arg("-c").arg(format!(
        "cd '{}' && find . | cpio -o -H newc --quiet > '{}'",
        root.display(),
        img.display()
    )));
    img
}

/// A QEMU VM, killed on drop.
struct Vm(Option<Child>);

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn installer_like_boot_in_qemu() {
    let (kroot, kver) = bmc::vm::debian_kernel();
    let lab = Lab::new("10.84.0");
    let h = Head::start_in(&lab.srv, "[dns]\nenabled = false\n");
    let dir = h.dir.path().to_path_buf();
    setup_net(&h, "10.84.0");
    let mac = "52:54:00:84:00:01";
    h.ok(&[
        "node",
        "create",
        &format!("mac={mac}"),
        "boot_sequence=pxe+local",
    ]);
    let ks = write(&dir, "ks.tmpl", TEMPLATE.as_bytes());
    let iso = build_iso(&dir, false);
    let initrd = installer_initramfs(&dir, &kroot, &kver);
    h.ok(&[
        "boot",
        "create",
        "name=rocky-install",
        "cmdline=console=ttyS0 quiet",
        &format!(
            "kernel=@{}",
            kroot.join(format!("boot/vmlinuz-{kver}")).display()
        ),
        &format!("initramfs=@{}", initrd.display()),
        &format!("kickstart=@{}", ks.display()),
    ]);
    h.ok(&[
        "repo",
        "create",
        "name=rocky9",
        &format!("iso=@{}", iso.display()),
    ]);
    h.ok(&[
        "attrib",
        "-i",
        "DefaultAttribs",
        "set",
        "_boot_config=rocky-install",
        "rootpw=$6$vm$hash",
    ]);

    lab.tap("tap0");
    let log = dir.join("vm.console");
    let child = Lab::cmd(&lab.srv, "qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "384",
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
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 must be installed (./test.sh installs it)");
    let mut vm = Vm(Some(child));

    let deadline = Instant::now() + Duration::from_secs(420);
    let mut seen = String::new();
    let done = |s: &str| s.contains("wulf: n0 boots from its local disk");
    while Instant::now() < deadline {
        seen = console(&log);
        if done(&seen) {
            break;
        }
        if let Some(c) = vm.0.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                panic!(
                    "qemu exited ({st}); console:\n{seen}\nhead log:\n{}",
                    h.log()
                );
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(vm);
    let ctx = || format!("console:\n{seen}\nhead log:\n{}", h.log());
    assert!(seen.contains("ks-test: installer started"), "{}", ctx());
    assert!(
        seen.contains("ks-test: ks=http://10.84.0.1:8740/boot/ks"),
        "{}",
        ctx()
    );
    assert!(
        seen.contains("# kickstart for n0\nnetwork --bootproto=static --ip=10.84.0.10 --hostname=n0.cluster.test"),
        "{}",
        ctx()
    );
    assert!(seen.contains("rootpw --iscrypted $6$vm$hash"), "{}", ctx());
    assert!(
        seen.contains(&format!("ks-test: iso file: {ISO_TEXT}")),
        "{}",
        ctx()
    );
    assert!(seen.contains("ks-test: rebooting"), "{}", ctx());
    assert!(
        done(&seen),
        "the second PXE boot was not sent to the local disk: {}",
        ctx()
    );
    let hl = h.log();
    assert!(hl.contains("kickstart rendered for n0"), "{}", ctx());
    assert!(hl.contains("boots from its local disk"), "{}", ctx());
    assert_eq!(
        h.json(&["node", "ls"])[0]["boot_stage"].as_str(),
        Some("local"),
        "{}",
        ctx()
    );
}

//! Every firmware path, booted for real: QEMU VMs (software emulation) whose firmware is not
//! the iPXE of a NIC option ROM, or is made to load the head's own iPXE, boot from wulfd all
//! the way to `up` in `wulf node status`, into Debian's kernel, an initramfs made by
//! `wulf initramfs build` and a busybox image whose init starts wulf-agent (as in
//! e2e_boot.rs):
//!
//! - **UEFI PXE** (`uefi_pxe_boot_and_cluster_dns`): Debian's OVMF with a virtio NIC that has
//!   no option ROM (`romfile=`), so OVMF's own network stack PXE-boots: DHCP (client arch 7,
//!   vendor class `PXEClient`) → `ipxe.efi` over TFTP (the head's log shows the transfer) →
//!   iPXE → its script over HTTP → `up`. The head's DNS is on: the node resolves the head
//!   and another node by name (busybox `nslookup` through `wulf node exec`), and its
//!   resolv.conf names the head and the cluster domain.
//! - **UEFI HTTP** (`uefi_http_boot`): the same OVMF with its PXE boot options turned off
//!   (fw_cfg `opt/org.tianocore/IPv4PXESupport` and `IPv6PXESupport`), so it HTTP-boots:
//!   DHCP (arch 16, vendor class `HTTPClient`) → the URL of `ipxe.efi` with option 60
//!   `HTTPClient` → `GET /boot/ipxe.efi` → iPXE → `up`.
//! - **BIOS** (`bios_ipxe_chain_to_undionly`): Debian ships no PXE ROM that is not iPXE, so
//!   SeaBIOS runs the e1000's iPXE ROM, and `_ipxe_chain=true` makes the head hand it its own
//!   `undionly.kpxe` over TFTP (the head's log shows the transfer); the loaded iPXE (chip
//!   `undionly`) fetches the node's script over HTTP → `up`.
//!
//! The tests take turns (one VM at a time; TCG is slow). On 2 cores each takes about a
//! minute: ~5 s to set the head up, 45-60 s from power-on to `up` (the firmware part is
//! 10-20 s of it). Debian's kernel is fetched once into the cache e2e_boot.rs uses.

#[path = "support/bmc/mod.rs"]
mod bmc;
mod head;
mod netns;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use head::Head;
use netns::Lab;
use serde_json::Value;

/// One VM at a time.
static TURN: Mutex<()> = Mutex::new(());

const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

fn console(path: &Path) -> String {
    let raw = std::fs::read(path).unwrap_or_default();
    // OVMF draws with escape sequences; keep the text.
    let text = String::from_utf8_lossy(&raw).replace('\r', "");
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for n in chars.by_ref() {
                    if n.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// A QEMU VM, killed on drop.
struct Vm {
    child: Option<Child>,
    log: PathBuf,
}

impl Vm {
    fn start(ns: &str, log: PathBuf, args: &[String]) -> Vm {
        let child = Lab::cmd(ns, "qemu-system-x86_64")
            .args(["-accel", "tcg", "-nographic", "-monitor", "none"])
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

    /// OVMF with a virtio NIC without option ROM; `pxe`: whether its PXE boot options stay
    /// (IPv4 only: IPv6 PXE would only add its timeout), else it HTTP-boots.
    fn uefi(ns: &str, dir: &Path, tap: &str, mac: &str, pxe: bool) -> Vm {
        for f in [OVMF_CODE, OVMF_VARS] {
            assert!(
                Path::new(f).is_file(),
                "{f} is missing: ./test.sh installs Debian's ovmf"
            );
        }
        let vars = dir.join("OVMF_VARS.fd");
        std::fs::copy(OVMF_VARS, &vars).unwrap();
        let yn = |b: bool| if b { "y" } else { "n" };
        let args = [
            "-machine".to_string(),
            "q35".into(),
            "-m".into(),
            "512".into(),
            "-drive".into(),
            format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
            "-drive".into(),
            format!("if=pflash,format=raw,file={}", vars.display()),
            "-fw_cfg".into(),
            format!("name=opt/org.tianocore/IPv4PXESupport,string={}", yn(pxe)),
            "-fw_cfg".into(),
            "name=opt/org.tianocore/IPv6PXESupport,string=n".into(),
            "-netdev".into(),
            format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
            "-device".into(),
            format!("virtio-net-pci,netdev=n0,mac={mac},romfile=,bootindex=1"),
        ];
        Vm::start(ns, dir.join("vm.console"), &args)
    }

    /// SeaBIOS with an e1000 and its iPXE ROM (ipxe-qemu).
    fn bios(ns: &str, dir: &Path, tap: &str, mac: &str) -> Vm {
        let args = [
            "-m".to_string(),
            "384".into(),
            "-boot".into(),
            "n".into(),
            "-netdev".into(),
            format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
            "-device".into(),
            format!("e1000,netdev=n0,mac={mac}"),
        ];
        Vm::start(ns, dir.join("vm.console"), &args)
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
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A head in a lab with one net, nodes n0 (booted) and n1, a busybox image and a boot config
/// whose initramfs `wulf initramfs build` made. On a failure, prints the console and log.
struct Cluster {
    h: Head,
    lab: Lab,
    dir: PathBuf,
    net: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== console =====\n{}",
                console(&self.dir.join("vm.console"))
            );
            eprintln!("===== wulfd log =====\n{}", self.h.log());
        }
    }
}

fn cluster(net: &str, config: &str, mac0: &str, mac1: &str) -> Cluster {
    let agent = head::wulf_bin().with_file_name("wulf-agent");
    assert!(
        agent.is_file(),
        "{} is missing: build the workspace first (cargo build --release --workspace)",
        agent.display()
    );
    let (kroot, kver) = bmc::vm::debian_kernel();
    let vmlinuz = kroot.join(format!("boot/vmlinuz-{kver}"));
    let lab = Lab::new(net);
    let h = Head::start_in(&lab.srv, config);
    let dir = h.dir.path().to_path_buf();
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        &format!("first_ip={net}.10"),
        "ip_count=50",
        "mask_bits=24",
        &format!("router_ip={net}.1"),
        &format!("dns_ips={net}.1"),
        "domain=cluster.test",
    ]);
    h.ok(&["node", "create", &format!("mac={mac0}")]);
    h.ok(&["node", "create", &format!("mac={mac1}")]);
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
        "name=fw",
        &format!("kernel=@{}", vmlinuz.display()),
        "image=bb",
        "cmdline=console=ttyS0",
    ]);
    let initrd = dir.join("initrd.img");
    let built = h.build_initramfs(&kroot, &kver, &initrd, &["--boot", "fw"]);
    assert!(
        built.contains("virtio_net") && built.contains("e1000") && built.contains("Uploaded"),
        "{built}"
    );
    h.ok(&[
        "node",
        "-i",
        "n0",
        "set",
        "_boot_config=fw",
        "_status_secs=2",
    ]);
    lab.tap("tap0");
    Cluster {
        h,
        lab,
        dir,
        net: net.to_string(),
    }
}

fn status_of(h: &Head, name: &str) -> Value {
    let all = h.json(&["node", "status"]);
    all.as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

/// Wait (at most `secs`) for n0 to be `up` with its first report in; returns how long it took.
fn wait_up(h: &Head, vm: &mut Vm, secs: u64) -> Duration {
    let t = Instant::now();
    loop {
        let s = status_of(h, "n0");
        if s["state"] == "up" && s["hardware"].is_object() {
            return t.elapsed();
        }
        assert!(!vm.exited(), "the VM exited");
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "n0 did not come up within {secs} s; status: {s}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Run `sh -c CMD` on n0 through the agent: its stdout.
fn exec(h: &Head, cmd: &str) -> String {
    let o = h.wulf(&["--json", "node", "-i", "n0", "exec", "--", "sh", "-c", cmd]);
    let j: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("wulf node exec {cmd:?}: {o:?}"));
    let r = &j["results"][0];
    assert_eq!(r["exit"].as_i64(), Some(0), "{cmd:?}: {j}");
    r["stdout"].as_str().unwrap_or_default().to_string()
}

/// The log lines that contain every one of `words`.
fn log_lines(h: &Head, words: &[&str]) -> Vec<String> {
    h.log()
        .lines()
        .filter(|l| words.iter().all(|w| l.contains(w)))
        .map(str::to_string)
        .collect()
}

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn uefi_pxe_boot_and_cluster_dns() {
    let _turn = turn();
    let started = Instant::now();
    let (mac0, mac1) = ("52:54:00:83:00:01", "52:54:00:83:00:02");
    let c = cluster("10.83.0", "", mac0, mac1);
    let h = &c.h;
    let mut vm = Vm::uefi(&c.lab.srv, &c.dir, "tap0", mac0, true);
    let took = wait_up(h, &mut vm, 600);
    eprintln!("UEFI PXE: n0 up after {took:?}");

    let con = vm.console();
    assert!(con.contains("Start PXE over IPv4"), "{con}");
    assert!(con.contains("iPXE"), "no iPXE on the console:\n{con}");
    assert!(
        con.contains("wulf: booting n0 (52:54:00:83:00:01) as rwram using boot config fw"),
        "{con}"
    );
    // The head's log: the PXE offer named ipxe.efi, TFTP sent it, iPXE got its script URL.
    assert!(
        !log_lines(h, &["DHCP: OFFER", "boot=\"ipxe.efi\"", "node n0"]).is_empty(),
        "no DHCP offer of ipxe.efi to n0 in the log"
    );
    assert!(
        !log_lines(h, &["TFTP: sent", "ipxe.efi"]).is_empty(),
        "no TFTP transfer of ipxe.efi in the log"
    );
    assert!(
        !log_lines(
            h,
            &[
                "DHCP: ",
                "boot=\"http://10.83.0.1:8740/boot/ipxe?mac=52:54:00:83:00:01\""
            ]
        )
        .is_empty(),
        "iPXE was not given its script URL"
    );
    assert!(h
        .log()
        .contains("Booting node (MAC=52:54:00:83:00:01) as rwram"));

    // DNS: the node's resolver is the head; it finds the head and n1 by name.
    let resolv = exec(h, "cat /etc/resolv.conf");
    assert!(
        resolv.contains(&format!("nameserver {}.1", c.net)) && resolv.contains("cluster.test"),
        "{resolv}"
    );
    let n1_ip = h.json(&["node", "-i", "n1", "ls"])[0]["ip"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(n1_ip, format!("{}.11", c.net));
    let out = exec(h, "nslookup n1.cluster.test");
    assert!(
        out.lines()
            .any(|l| l.starts_with("Address") && l.trim_end().ends_with(&n1_ip)),
        "n1: {out}"
    );
    let out = exec(h, "nslookup n1");
    assert!(out.contains(&n1_ip), "n1 (search domain): {out}");
    let host = String::from_utf8(
        std::process::Command::new("hostname")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let head_name = host.trim().split('.').next().unwrap().to_lowercase();
    let out = exec(h, &format!("nslookup {head_name}.cluster.test"));
    assert!(
        out.lines()
            .any(|l| l.starts_with("Address") && l.trim_end().ends_with(&format!("{}.1", c.net))),
        "{head_name}: {out}"
    );
    let out = exec(h, "nslookup no-such-node.cluster.test 2>&1; true");
    assert!(out.contains("NXDOMAIN"), "{out}");
    eprintln!("UEFI PXE test: {:?}", started.elapsed());
}

#[test]
fn uefi_http_boot() {
    let _turn = turn();
    let started = Instant::now();
    let (mac0, mac1) = ("52:54:00:84:00:01", "52:54:00:84:00:02");
    let c = cluster("10.84.0", "[dns]\nenabled = false\n", mac0, mac1);
    let h = &c.h;
    let mut vm = Vm::uefi(&c.lab.srv, &c.dir, "tap0", mac0, false);
    let took = wait_up(h, &mut vm, 600);
    eprintln!("UEFI HTTP: n0 up after {took:?}");
    let con = vm.console();
    assert!(!con.contains("Start PXE over"), "OVMF PXE-booted:\n{con}");
    assert!(con.contains("Start HTTP Boot over IPv4"), "{con}");
    assert!(con.contains("iPXE"), "{con}");
    assert!(
        !log_lines(
            h,
            &[
                "DHCP: OFFER",
                "boot=\"http://10.84.0.1:8740/boot/ipxe.efi\"",
                "node n0"
            ]
        )
        .is_empty(),
        "no DHCP offer of the ipxe.efi URL in the log"
    );
    assert!(
        log_lines(h, &["TFTP: sent"]).is_empty(),
        "HTTP boot used TFTP"
    );
    assert!(h
        .log()
        .contains("Booting node (MAC=52:54:00:84:00:01) as rwram"));
    eprintln!("UEFI HTTP test: {:?}", started.elapsed());
}

#[test]
fn bios_ipxe_chain_to_undionly() {
    let _turn = turn();
    let started = Instant::now();
    let (mac0, mac1) = ("52:54:00:85:00:01", "52:54:00:85:00:02");
    let c = cluster("10.85.0", "[dns]\nenabled = false\n", mac0, mac1);
    let h = &c.h;
    // Not a boolean: refused.
    h.fails(2, &["node", "-i", "n0", "set", "_ipxe_chain=maybe"]);
    h.ok(&["node", "-i", "n0", "set", "_ipxe_chain=true"]);
    let mut vm = Vm::bios(&c.lab.srv, &c.dir, "tap0", mac0);
    let took = wait_up(h, &mut vm, 480);
    eprintln!("BIOS chain: n0 up after {took:?}");
    let con = vm.console();
    assert!(
        con.contains("wulf: n0: loading the head's iPXE (undionly.kpxe) over TFTP (_ipxe_chain)"),
        "{con}"
    );
    assert!(
        !log_lines(h, &["TFTP: sent", "undionly.kpxe"]).is_empty(),
        "no TFTP transfer of undionly.kpxe in the log"
    );
    // The loaded iPXE drives the card through the ROM's UNDI, and boots the node once.
    assert!(con.contains("using undionly on"), "{con}");
    assert_eq!(
        con.matches("wulf: booting n0 (52:54:00:85:00:01)").count(),
        1,
        "{con}"
    );
    // Two iPXEs asked DHCP for the script URL: the ROM's, then the loaded undionly.kpxe.
    let acks = log_lines(
        h,
        &[
            "DHCP: ACK",
            "boot=\"http://10.85.0.1:8740/boot/ipxe?mac=52:54:00:85:00:01\"",
        ],
    );
    assert!(acks.len() >= 2, "{acks:?}");
    assert!(h
        .log()
        .contains("Booting node (MAC=52:54:00:85:00:01) as rwram"));
    eprintln!("BIOS test: {:?}", started.elapsed());
}

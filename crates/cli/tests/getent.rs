//! `getent hosts` and `getent ethers` with the real glibc `getent`, in a client network
//! namespace whose resolver is the head: hosts through the head's DNS, ethers through
//! libnss_wulf.so.2 (crates/nss), loaded by glibc from LD_LIBRARY_PATH with an nsswitch.conf
//! bind-mounted inside `unshare -m`.

mod head;
mod netns;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use head::Head;
use netns::{Lab, NsResolvConf};

const QUIET: &str = "[dhcp]\nenabled = false\n[tftp]\nenabled = false\n";

/// Build libnss_wulf.so (cargo names it so) and give it its glibc name, libnss_wulf.so.2,
/// in a directory of its own for LD_LIBRARY_PATH.
fn nss_lib_dir(tmp: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args(["build", "--release", "-p", "wulf-nss"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .status()
        .expect("cargo build -p wulf-nss");
    assert!(st.success(), "cargo build -p wulf-nss failed");
    let so = head::wulf_bin().with_file_name("libnss_wulf.so");
    assert!(so.exists(), "{} is missing", so.display());
    let dir = tmp.join("lib");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&so, dir.join("libnss_wulf.so.2")).unwrap();
    dir
}

/// The real getent in `ns`, with our nsswitch.conf bind-mounted in a mount namespace of
/// its own and libnss_wulf on the library path; bounded by `timeout`.
fn getent(ns: &str, tmp: &Path, lib: &Path, args: &[&str]) -> Output {
    let script = format!(
        "mount --bind {} /etc/nsswitch.conf && exec env LD_LIBRARY_PATH={} getent \"$@\"",
        tmp.join("nsswitch.conf").display(),
        lib.display()
    );
    let mut c = Lab::cmd(ns, "timeout");
    c.args(["20", "unshare", "-m", "sh", "-c", &script, "getent"]);
    c.args(args);
    c.output().expect("run getent")
}

fn out_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

fn ok_lines(ns: &str, tmp: &Path, lib: &Path, args: &[&str]) -> Vec<String> {
    let o = getent(ns, tmp, lib, args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "getent {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    out_lines(&o)
}

#[test]
fn getent_hosts_and_ethers() {
    let tmp = tempfile::tempdir().unwrap();
    let lib = nss_lib_dir(tmp.path());
    std::fs::write(
        tmp.path().join("nsswitch.conf"),
        "hosts: files dns\nethers: wulf\n",
    )
    .unwrap();

    let mut lab = Lab::new("10.81.0");
    let srv = lab.srv.clone();
    let h = Head::start_in(&srv, QUIET);
    h.ok(&[
        "net",
        "create",
        "name=cluster",
        "first_ip=10.81.0.10",
        "ip_count=40",
        "mask_bits=24",
        "domain=cluster.local",
        "host_ranges=10.81.0.200-10.81.0.250",
    ]);
    h.ok(&["node", "create", "mac=52:54:00:81:00:10"]);
    h.ok(&[
        "host",
        "create",
        "name=sw1",
        "ip=10.81.0.200",
        "mac=52:54:00:81:00:c8",
        "hostnames=switch1",
    ]);

    // A machine on the private network whose resolver is the head.
    let cl = lab.client("52:54:00:81:00:77");
    lab.with_addr(&cl, "10.81.0.77/24");
    let _resolv = NsResolvConf::new(&cl, "search cluster.local\nnameserver 10.81.0.1\n");

    // The head serves DNS once the net exists; bounded wait.
    let start = Instant::now();
    loop {
        let o = getent(&cl, tmp.path(), &lib, &["hosts", "n0.cluster.local"]);
        if o.status.success() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "DNS not serving: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // hosts: forward (qualified, short through the search list, alias) and reverse.
    let p = tmp.path();
    assert_eq!(
        ok_lines(&cl, p, &lib, &["hosts", "n0.cluster.local"]),
        ["10.81.0.10 n0.cluster.local"]
    );
    assert_eq!(
        ok_lines(&cl, p, &lib, &["hosts", "n0"]),
        ["10.81.0.10 n0.cluster.local"]
    );
    assert_eq!(
        ok_lines(&cl, p, &lib, &["hosts", "switch1.cluster.local"]),
        ["10.81.0.200 switch1.cluster.local"]
    );
    assert_eq!(
        ok_lines(&cl, p, &lib, &["hosts", "10.81.0.200"]),
        ["10.81.0.200 sw1.cluster.local"]
    );
    assert_eq!(
        ok_lines(&cl, p, &lib, &["hosts", "10.81.0.10"]),
        ["10.81.0.10 n0.cluster.local"]
    );
    assert_eq!(
        getent(&cl, p, &lib, &["hosts", "nope.cluster.local"])
            .status
            .code(),
        Some(2)
    );

    // ethers through libnss_wulf: MAC → name, name → MAC (glibc's ether_ntoa drops
    // leading zeros).
    assert_eq!(
        ok_lines(&cl, p, &lib, &["ethers", "52:54:00:81:00:10"]),
        ["52:54:0:81:0:10 n0"]
    );
    assert_eq!(
        ok_lines(&cl, p, &lib, &["ethers", "52:54:00:81:00:C8"]),
        ["52:54:0:81:0:c8 sw1"]
    );
    assert_eq!(
        ok_lines(&cl, p, &lib, &["ethers", "sw1"]),
        ["52:54:0:81:0:c8 sw1"]
    );
    assert_eq!(
        ok_lines(&cl, p, &lib, &["ethers", "switch1"]),
        ["52:54:0:81:0:c8 switch1"]
    );
    assert_eq!(
        ok_lines(&cl, p, &lib, &["ethers", "n0"]),
        ["52:54:0:81:0:10 n0"]
    );
    // Nobody's MAC, nobody's name: exit code 2, nothing printed.
    for key in ["52:54:00:81:00:99", "nobody"] {
        let o = getent(&cl, p, &lib, &["ethers", key]);
        assert_eq!(o.status.code(), Some(2), "{key}");
        assert!(o.stdout.is_empty(), "{key}");
    }

    // Without a reachable head (nss.conf cannot be used here without touching /etc/wulf,
    // so the resolver points at an address nobody answers): not found, exit 2, bounded.
    drop(_resolv);
    let _dead = NsResolvConf::new(&cl, "nameserver 10.81.0.254\n");
    let t = Instant::now();
    let o = getent(&cl, p, &lib, &["ethers", "52:54:00:81:00:10"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

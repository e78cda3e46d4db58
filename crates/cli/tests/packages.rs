//! The Debian packages (packaging/): packaging/build-debs.sh builds them from the release
//! binaries (`cargo build --workspace --release` first, as test.sh does); dpkg-deb and
//! lintian check them; they are installed into a fresh Debian chroot (test.d/packages.sh
//! builds it once with debootstrap and keeps it as a tarball) and removed and purged
//! again. In the chroot: the binaries run, the man pages render, the completions load,
//! systemd-analyze verifies the units, logrotate reads its file and rotates wulfd's logs
//! while wulfd runs with the unit's capabilities in a network namespace of its own, and
//! a purge leaves nothing but the cluster's data.
//!
//! Also: packaging/wulfd.toml.example names every key of the config file with its default.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use wulfd::config::{Config, FileConfig};

/// The chroot test.d/packages.sh makes (the same name there).
const CHROOT_TAR: &str = "/opt/wulf-test/chroot-bookworm-2.tar.gz";

mod packaging;

use packaging::{cmd, ok, repo, text, version, Built};

fn assert_root() {
    packaging::assert_root("the package test installs into a chroot");
}

/// packaging/build-debs.sh into `out`; the three .debs it names (head, agent, NSS module).
fn build_into(out: &Path) -> [PathBuf; 3] {
    let v = version();
    let arch = ok(Command::new("dpkg").arg("--print-architecture"));
    let arch = arch.trim();
    packaging::build_into(
        "build-debs.sh",
        "WULF_DEB_DIR",
        out,
        600,
        ["wulf", "wulf-agent", "libnss-wulf"].map(|p| format!("{p}_{v}_{arch}.deb")),
    )
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    packaging::built_once(&BUILT, build_into)
}

/// One line of `dpkg-deb --contents`: mode, owner, path (without the leading `.`).
struct Entry {
    mode: String,
    owner: String,
    path: String,
}

fn contents(deb: &Path) -> Vec<Entry> {
    ok(Command::new("dpkg-deb").arg("--contents").arg(deb))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Entry {
                mode: f[0].to_string(),
                owner: f[1].to_string(),
                path: f[5].trim_start_matches('.').to_string(),
            }
        })
        .collect()
}

fn field(deb: &Path, name: &str) -> String {
    ok(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name))
        .trim()
        .to_string()
}

/// Check a package's files and modes: `expect` (path, mode) must be there; every entry is
/// root's; directories 0755, other files 0644 unless `expect` says otherwise; nothing
/// outside `allowed` prefixes.
fn check_contents(deb: &Path, expect: &[(&str, &str)], allowed: &[&str]) -> Vec<Entry> {
    let entries = contents(deb);
    for (path, mode) in expect {
        let e = entries
            .iter()
            .find(|e| e.path == *path)
            .unwrap_or_else(|| panic!("{} has no {path}", deb.display()));
        assert_eq!(e.mode, *mode, "{path}");
    }
    for e in &entries {
        assert_eq!(e.owner, "root/root", "{}", e.path);
        if let Some((_, mode)) = expect.iter().find(|(p, _)| *p == e.path) {
            assert_eq!(e.mode, *mode, "{}", e.path);
        } else if e.mode.starts_with('d') {
            assert_eq!(e.mode, "drwxr-xr-x", "{}", e.path);
        } else {
            assert_eq!(e.mode, "-rw-r--r--", "{}", e.path);
        }
        assert!(
            e.path == "/"
                || allowed
                    .iter()
                    .any(|a| e.path.starts_with(a) || a.starts_with(&e.path)),
            "{} ships {} outside {allowed:?}",
            deb.display(),
            e.path
        );
        assert!(
            !e.path.contains("generate"),
            "hidden subcommand shipped: {}",
            e.path
        );
    }
    entries
}

/// The control files (`dpkg-deb -e`) in a directory.
fn control_dir(deb: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ok(Command::new("dpkg-deb")
        .arg("-e")
        .arg(deb)
        .arg(dir.path().join("c")));
    dir
}

fn check_control(deb: &Path, package: &str, conffiles: &[&str]) {
    let v = version();
    assert_eq!(field(deb, "Package"), package);
    assert_eq!(field(deb, "Version"), v);
    assert!(!field(deb, "Maintainer").is_empty());
    let depends = field(deb, "Depends");
    assert!(
        depends.contains("libc6 (>= ") && depends.contains("libgcc-s1"),
        "Depends from the linked libraries: {depends}"
    );
    let c = control_dir(deb);
    let c = c.path().join("c");
    let listed = std::fs::read_to_string(c.join("conffiles")).unwrap();
    assert_eq!(listed.lines().collect::<Vec<_>>(), conffiles, "conffiles");
    for s in ["postinst", "prerm", "postrm"] {
        let p = c.join(s);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755, "{s}");
        ok(Command::new("sh").arg("-n").arg(&p));
        let script = std::fs::read_to_string(&p).unwrap();
        for line in script.lines().filter(|l| !l.trim_start().starts_with('#')) {
            assert!(
                !line.contains("systemctl start") && !line.contains("invoke start"),
                "{s} must not start the service: {line}"
            );
        }
    }
    assert_eq!(
        std::fs::metadata(c.join("md5sums"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
}

/// The libraries a binary in the package links: only libc's and the unwinder's.
fn check_linking(deb: &Path, bins: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    ok(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir.path()));
    for b in bins {
        let out = ok(Command::new("readelf")
            .arg("-d")
            .arg(dir.path().join(b.trim_start_matches('/'))));
        for l in out.lines().filter(|l| l.contains("(NEEDED)")) {
            let lib = l.split('[').nth(1).unwrap_or("").trim_end_matches(']');
            assert!(
                [
                    "libc.so.6",
                    "libm.so.6",
                    "libgcc_s.so.1",
                    "ld-linux-x86-64.so.2"
                ]
                .contains(&lib),
                "{b} links {lib}"
            );
        }
    }
}

#[test]
fn head_package_contents() {
    let b = built();
    let entries = check_contents(
        &b.head,
        &[
            ("/usr/bin/wulfd", "-rwxr-xr-x"),
            ("/usr/bin/wulf", "-rwxr-xr-x"),
            ("/usr/lib/systemd/system/wulfd.service", "-rw-r--r--"),
            ("/etc/logrotate.d/wulfd", "-rw-r--r--"),
            ("/etc/wulf/wulfd.toml.example", "-rw-r--r--"),
            ("/usr/share/man/man1/wulf.1.gz", "-rw-r--r--"),
            ("/usr/share/man/man1/wulf-node.1.gz", "-rw-r--r--"),
            ("/usr/share/man/man1/wulf-node-exec.1.gz", "-rw-r--r--"),
            ("/usr/share/man/man8/wulfd.8.gz", "-rw-r--r--"),
            ("/usr/share/bash-completion/completions/wulf", "-rw-r--r--"),
            ("/usr/share/bash-completion/completions/wulfd", "-rw-r--r--"),
            ("/usr/share/zsh/vendor-completions/_wulf", "-rw-r--r--"),
            ("/usr/share/zsh/vendor-completions/_wulfd", "-rw-r--r--"),
            (
                "/usr/share/fish/vendor_completions.d/wulf.fish",
                "-rw-r--r--",
            ),
            ("/usr/share/doc/wulf/copyright", "-rw-r--r--"),
            ("/usr/share/doc/wulf/changelog.gz", "-rw-r--r--"),
        ],
        &["/etc/wulf/", "/etc/logrotate.d/", "/usr/"],
    );
    assert!(
        !entries.iter().any(|e| e.path.contains("wulf-agent")),
        "the agent is in its own package"
    );
    // A page for every command `wulf --help` lists.
    for page in packaging::command_pages() {
        assert!(entries.iter().any(|e| e.path == page), "no {page}");
    }
    check_control(
        &b.head,
        "wulf",
        &["/etc/logrotate.d/wulfd", "/etc/wulf/wulfd.toml.example"],
    );
    assert!(field(&b.head, "Depends").contains("procps"));
    check_linking(&b.head, &["/usr/bin/wulfd", "/usr/bin/wulf"]);
}

#[test]
fn agent_package_contents() {
    let b = built();
    let entries = check_contents(
        &b.agent,
        &[
            ("/usr/sbin/wulf-agent", "-rwxr-xr-x"),
            ("/usr/lib/systemd/system/wulf-agent.service", "-rw-r--r--"),
            (
                "/usr/lib/systemd/system/wulf-agent-standalone.service",
                "-rw-r--r--",
            ),
            ("/etc/wulf/agent.conf.example", "-rw-r--r--"),
            ("/usr/share/man/man8/wulf-agent.8.gz", "-rw-r--r--"),
            (
                "/usr/share/bash-completion/completions/wulf-agent",
                "-rw-r--r--",
            ),
            (
                "/usr/share/zsh/vendor-completions/_wulf-agent",
                "-rw-r--r--",
            ),
            ("/usr/share/doc/wulf-agent/copyright", "-rw-r--r--"),
        ],
        &["/etc/wulf/", "/usr/"],
    );
    assert!(!entries.iter().any(|e| e.path.ends_with("/wulfd")));
    check_control(&b.agent, "wulf-agent", &["/etc/wulf/agent.conf.example"]);
    check_linking(&b.agent, &["/usr/sbin/wulf-agent"]);
}

/// The multiarch library directory (/usr/lib/x86_64-linux-gnu on amd64).
fn multiarch_lib() -> String {
    let m = ok(Command::new("dpkg-architecture").arg("-qDEB_HOST_MULTIARCH"));
    format!("/usr/lib/{}", m.trim())
}

#[test]
fn nss_package_contents() {
    let b = built();
    let lib = format!("{}/libnss_wulf.so.2", multiarch_lib());
    check_contents(
        &b.nss,
        &[
            (lib.as_str(), "-rw-r--r--"),
            ("/usr/share/doc/libnss-wulf/copyright", "-rw-r--r--"),
        ],
        &[
            &format!("{}/", multiarch_lib()),
            "/usr/share/doc/libnss-wulf/",
        ],
    );
    assert_eq!(field(&b.nss, "Package"), "libnss-wulf");
    assert_eq!(field(&b.nss, "Version"), version());
    assert_eq!(field(&b.nss, "Multi-Arch"), "same");
    assert!(field(&b.nss, "Depends").contains("libc6 (>= "));
    let c = control_dir(&b.nss);
    let triggers = std::fs::read_to_string(c.path().join("c/triggers")).unwrap();
    assert_eq!(triggers.trim(), "activate-noawait ldconfig");
    check_linking(&b.nss, &[&lib]);
    // The entry points glibc looks up for the ethers database.
    let dir = tempfile::tempdir().unwrap();
    ok(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&b.nss)
        .arg(dir.path()));
    let syms = ok(Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(dir.path().join(lib.trim_start_matches('/'))));
    for f in ["_nss_wulf_gethostton_r", "_nss_wulf_getntohost_r"] {
        assert!(syms.contains(f), "no {f} in {lib}:\n{syms}");
    }
}

/// The same binaries and sources give the same packages, byte for byte.
#[test]
fn packages_are_reproducible() {
    let b = built();
    let again = tempfile::tempdir().unwrap();
    let [head, agent, nss] = build_into(again.path());
    for (x, y) in [(&b.head, &head), (&b.agent, &agent), (&b.nss, &nss)] {
        assert!(
            std::fs::read(x).unwrap() == std::fs::read(y).unwrap(),
            "{} and {} differ",
            x.display(),
            y.display()
        );
    }
}

#[test]
fn lintian_is_clean() {
    let b = built();
    // The Maintainer is a placeholder until a site sets WULF_DEB_MAINTAINER (or DEBEMAIL).
    let out = cmd(600, "lintian")
        .args(["--tag-display-limit", "0", "--suppress-tags"])
        .arg("bogus-mail-host,bogus-mail-host-in-debian-changelog")
        .arg(&b.head)
        .arg(&b.agent)
        .arg(&b.nss)
        .output()
        .unwrap();
    let report = text(&out.stdout);
    let bad: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(
        bad.is_empty() && out.status.success(),
        "lintian ({}):\n{report}\n{}",
        out.status,
        text(&out.stderr)
    );
}

/// A fresh copy of the Debian chroot, in a temporary directory.
struct Chroot {
    dir: tempfile::TempDir,
}

impl Chroot {
    fn new() -> Chroot {
        assert_root();
        assert!(
            Path::new(CHROOT_TAR).is_file(),
            "{CHROOT_TAR} is missing: test.d/packages.sh builds it (./test.sh sources it)"
        );
        let dir = tempfile::tempdir().unwrap();
        ok(cmd(300, "tar")
            .arg("-C")
            .arg(dir.path())
            .arg("-xzf")
            .arg(CHROOT_TAR));
        Chroot { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root().join(p.trim_start_matches('/'))
    }

    /// `script` in the chroot (sh), in mount, PID and network namespaces of its own: /proc
    /// shows only its processes, it reaches no network but its own loopback (and what
    /// `host_pre`, run outside the chroot in the same namespaces, adds), and whatever it
    /// starts ends with it.
    fn run_with(&self, host_pre: &str, script: &str) -> Output {
        let inner = format!(
            "ip link set lo up && {host_pre} exec chroot {} /bin/sh -ec \"$1\"",
            self.root().display()
        );
        cmd(300, "unshare")
            .args(["--net", "--mount", "--pid", "--fork"])
            .arg(format!("--mount-proc={}", self.path("proc").display()))
            .args(["sh", "-ec", &inner, "sh", script])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            .env("TERM", "dumb")
            .env("MANWIDTH", "80")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn run(&self, script: &str) -> Output {
        self.run_with("", script)
    }

    /// Run it; panic with its output unless it succeeded; its stdout.
    fn ok(&self, script: &str) -> String {
        let out = self.run(script);
        assert!(
            out.status.success(),
            "in the chroot: {script}\nfailed ({}):\n{}\n{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn install(&self, debs: &[&Path]) {
        let mut names = Vec::new();
        for d in debs {
            let name = d.file_name().unwrap().to_str().unwrap().to_string();
            std::fs::copy(d, self.path("tmp").join(&name)).unwrap();
            names.push(format!("/tmp/{name}"));
        }
        self.ok(&format!("dpkg -i {}", names.join(" ")));
    }

    /// Every path in the chroot but the pseudo and scratch file systems.
    fn files(&self) -> BTreeSet<String> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
                if ["proc", "sys", "dev", "run", "tmp"].contains(&rel.as_str()) {
                    continue;
                }
                out.insert(rel);
                if e.file_type().unwrap().is_dir() {
                    walk(root, &p, out);
                }
            }
        }
        let mut out = BTreeSet::new();
        walk(self.root(), self.root(), &mut out);
        out
    }
}

/// What a purge may leave that was not there before: the cluster's data, and dpkg's and
/// man-db's own records.
fn left_behind(before: &BTreeSet<String>, after: &BTreeSet<String>) {
    let allowed = [
        "var/lib/wulf",
        "var/lib/dpkg/",
        "var/cache/man/",
        "var/cache/debconf/",
        "var/log/dpkg.log",
    ];
    let added: Vec<&String> = after
        .difference(before)
        .filter(|p| !allowed.iter().any(|a| p.starts_with(a)))
        .collect();
    assert!(added.is_empty(), "left behind after purge: {added:?}");
    let removed: Vec<&String> = before
        .difference(after)
        .filter(|p| !p.starts_with("var/cache/man/"))
        .collect();
    assert!(
        removed.is_empty(),
        "removed by install and purge: {removed:?}"
    );
}

/// systemd-analyze verify (the host's, against the chroot: the units wulf's refer to are
/// the chroot's systemd's): passes with nothing to say. It exits 0 on unknown keys and bad
/// values (it only warns), so any output fails.
fn verify_unit(c: &Chroot, unit: &Path) -> Result<(), String> {
    let out = cmd(120, "systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", c.root().display()))
        .arg(unit)
        .output()
        .unwrap();
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("{} ({}): {said}", unit.display(), out.status))
    }
}

/// The unit's Documentation= man pages are installed.
fn check_unit_docs(c: &Chroot, unit: &str) {
    let text = std::fs::read_to_string(c.path(unit)).unwrap();
    for line in text
        .lines()
        .filter_map(|l| l.strip_prefix("Documentation="))
    {
        for doc in line.split_whitespace() {
            let page = doc.strip_prefix("man:").unwrap_or_else(|| panic!("{doc}"));
            let (name, section) = page.trim_end_matches(')').split_once('(').unwrap();
            c.ok(&format!("man -w {section} {name}"));
        }
    }
}

#[test]
fn head_installs_runs_and_purges() {
    let b = built();
    let c = Chroot::new();
    let before = c.files();
    c.install(&[&b.head]);
    let v = version();

    assert_eq!(c.ok("wulf --version"), format!("wulf {v}\n"));
    assert_eq!(c.ok("wulfd --version"), format!("wulfd {v}\n"));
    let data = std::fs::metadata(c.path("/var/lib/wulf")).unwrap();
    assert_eq!(
        (data.mode() & 0o7777, data.uid(), data.gid()),
        (0o700, 0, 0)
    );
    let logs = std::fs::metadata(c.path("/var/log/wulf")).unwrap();
    let adm = c.ok("getent group adm | cut -d: -f3");
    assert_eq!(
        (logs.mode() & 0o7777, logs.uid(), logs.gid().to_string()),
        (0o750, 0, adm.trim().to_string())
    );
    // Enabled (starts at the next boot), not started (no systemd runs here, and the
    // scripts never start it: head_package_contents).
    let wants = c.path("/etc/systemd/system/multi-user.target.wants/wulfd.service");
    let link = std::fs::read_link(&wants).expect("wulfd.service enabled");
    assert!(link.ends_with("systemd/system/wulfd.service"), "{link:?}");

    // Man pages: found by man, rendered without a warning (every page of the package).
    for page in [
        "wulf",
        "wulf-node",
        "wulf-node-exec",
        "wulf-initramfs-build",
        "wulfd",
    ] {
        let path = c.ok(&format!("man -w {page}"));
        assert!(path.trim().ends_with(".gz"), "{path}");
        let shown = c.ok(&format!("man -P cat {page} 2>&1"));
        assert!(shown.contains("NAME") && shown.contains(page), "{shown}");
    }
    let warnings = c.ok(
        "for f in /usr/share/man/man1/wulf*.gz /usr/share/man/man8/wulfd*.gz; do \
         zcat \"$f\" | groff -k -man -Tutf8 -ww -z 2>&1 | sed \"s|^|$f: |\"; done",
    );
    assert_eq!(warnings, "", "groff warnings");
    let pages = c.ok("ls /usr/share/man/man1 | grep -c '^wulf'");
    assert!(pages.trim().parse::<u32>().unwrap() > 20, "{pages}");

    // Completions: bash loads them; zsh and fish files are there.
    for b in ["wulf", "wulfd"] {
        let out = c.ok(&format!(
            "bash -c '. /usr/share/bash-completion/completions/{b} && complete -p {b}'"
        ));
        assert!(out.contains(&format!(" {b}")), "{out}");
        let zsh =
            std::fs::read_to_string(c.path(&format!("/usr/share/zsh/vendor-completions/_{b}")))
                .unwrap();
        assert!(zsh.starts_with(&format!("#compdef {b}")), "{}", &zsh[..40]);
        let fish = std::fs::read_to_string(
            c.path(&format!("/usr/share/fish/vendor_completions.d/{b}.fish")),
        )
        .unwrap();
        assert!(fish.contains(&format!("complete -c {b}")));
    }

    // The unit: verified; a broken copy is not (so the check can fail).
    let unit = c.path("/usr/lib/systemd/system/wulfd.service");
    verify_unit(&c, &unit).unwrap();
    check_unit_docs(&c, "/usr/lib/systemd/system/wulfd.service");
    let good = std::fs::read_to_string(&unit).unwrap();
    for (from, to) in [
        ("ProtectSystem=strict", "ProtectSystem=strictest"),
        ("Restart=on-failure", "Restrat=on-failure"),
        (
            "ExecStart=/usr/bin/wulfd",
            "ExecStart=/usr/bin/wulfd-missing",
        ),
    ] {
        let broken = c.path("/etc/systemd/system/wulfd-broken.service");
        std::fs::write(&broken, good.replace(from, to)).unwrap();
        assert!(
            verify_unit(&c, &broken).is_err(),
            "{to} passed verification"
        );
        std::fs::remove_file(&broken).unwrap();
    }

    // logrotate reads its file.
    let dry = c.run("logrotate -d /etc/logrotate.d/wulfd");
    let said = format!("{}{}", text(&dry.stdout), text(&dry.stderr));
    assert!(dry.status.success() && !said.contains("error"), "{said}");
    assert!(
        said.contains("rotating pattern: /var/log/wulf/*.log"),
        "{said}"
    );

    // wulfd with the unit's capability bounding set and no new privileges serves DHCP,
    // TFTP and DNS on their ports (on a veth interface in its own network namespace), and
    // logrotate rotates its logs while it runs: after the rotation's SIGHUP the next
    // request goes into the new access.log.
    let run = c.run_with(
        "ip link add wulf0 type veth peer name wulf1 && ip addr add 10.54.0.1/16 dev wulf0 && \
         ip link set wulf1 up && ip link set wulf0 up &&",
        r#"
caps=$(sed -n 's/^CapabilityBoundingSet=//p' /usr/lib/systemd/system/wulfd.service |
  tr ' ' '\n' | sed -n 's/^CAP_\(.*\)/+\1/p' | tr 'A-Z' 'a-z' | paste -sd, -)
echo "caps: $caps"
setpriv --no-new-privs --inh-caps=-all --bounding-set="-all,$caps" /usr/bin/wulfd >/tmp/wulfd.out 2>&1 &
pid=$!
wait_for() { # wait_for WHAT COMMAND...: up to 30 s
  what=$1; shift; i=0
  until "$@" >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 150 ] || ! kill -0 $pid 2>/dev/null; then
      echo "FAILED: $what"; cat /tmp/wulfd.out; kill $pid 2>/dev/null; exit 1
    fi
    sleep 0.2
  done
}
wait_for "the API" wulf info
wulf net create name=cluster first_ip=10.54.0.10 ip_count=100 mask_bits=16 domain=cluster.local >/dev/null
wait_for "DHCP on port 67" grep -q "DHCP server listening on 0.0.0.0:67" /tmp/wulfd.out
wait_for "TFTP on port 69" grep -q "TFTP ready listen=0.0.0.0:69" /tmp/wulfd.out
wait_for "DNS on port 53" grep -q "DNS: serving on 10.54.0.1:53" /tmp/wulfd.out
if grep -E "cannot (listen|bind)|Permission denied|Operation not permitted" /tmp/wulfd.out; then
  echo "FAILED: refused"; exit 1
fi
wulf info >/dev/null
wait_for "a line in access.log" test -s /var/log/wulf/access.log
logrotate -f -s /tmp/logrotate.state /etc/logrotate.d/wulfd
test -s /var/log/wulf/access.log.1
test ! -s /var/log/wulf/access.log
wulf node ls >/dev/null
wait_for "access.log reopened after SIGHUP" test -s /var/log/wulf/access.log
kill -TERM $pid
wait $pid
echo "wulfd exit $?"
ls -l /var/log/wulf
"#,
    );
    let said = format!("{}{}", text(&run.stdout), text(&run.stderr));
    assert!(run.status.success(), "{said}");
    assert!(
        said.contains("caps: +net_bind_service,+net_admin"),
        "{said}"
    );
    assert!(said.contains("wulfd exit 0"), "{said}");

    // Removed: the programs go, the conffiles stay, the unit is masked.
    c.ok("dpkg -r wulf");
    for gone in [
        "/usr/bin/wulfd",
        "/usr/bin/wulf",
        "/usr/lib/systemd/system/wulfd.service",
    ] {
        assert!(!c.path(gone).exists(), "{gone} after dpkg -r");
    }
    for kept in ["/etc/logrotate.d/wulfd", "/etc/wulf/wulfd.toml.example"] {
        assert!(c.path(kept).exists(), "{kept} after dpkg -r");
    }
    let mask = std::fs::read_link(c.path("/etc/systemd/system/wulfd.service")).unwrap();
    assert_eq!(mask, Path::new("/dev/null"));
    // Purged: nothing left but the cluster's data.
    c.ok("dpkg --purge wulf");
    assert!(!c.path("/var/log/wulf").exists());
    assert!(c.path("/var/lib/wulf/wulf.redb").exists(), "the data stays");
    left_behind(&before, &c.files());
}

#[test]
fn agent_installs_beside_the_head_and_purges() {
    let b = built();
    let c = Chroot::new();
    let before = c.files();
    c.install(&[&b.agent]);
    let v = version();
    assert_eq!(c.ok("wulf-agent --version"), format!("wulf-agent {v}\n"));
    // Without settings it says which are missing, and exits 2 (the unit does not loop).
    let out = c.run("wulf-agent");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("/etc/wulf/agent.conf"),
        "{}",
        text(&out.stderr)
    );
    for name in ["wulf-agent.service", "wulf-agent-standalone.service"] {
        let unit = format!("/usr/lib/systemd/system/{name}");
        verify_unit(&c, &c.path(&unit)).unwrap();
        check_unit_docs(&c, &unit);
    }
    assert!(c
        .path("/etc/systemd/system/multi-user.target.wants/wulf-agent.service")
        .is_symlink());
    // The standalone unit is for servers wulf did not boot: not enabled until the admin says.
    assert!(!c
        .path("/etc/systemd/system/multi-user.target.wants/wulf-agent-standalone.service")
        .exists());
    // Its command without a token or a kept credential says where the token goes, exit 2.
    let out = c.run("wulf-agent --standalone --head https://10.0.0.1:8740 --pin 00");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("/var/lib/wulf-agent/enroll.token"),
        "{}",
        text(&out.stderr)
    );
    std::fs::create_dir_all(c.path("/var/lib/wulf-agent")).unwrap();
    std::fs::write(c.path("/var/lib/wulf-agent/agent.cred"), "node=x\ncred=y\n").unwrap();
    c.ok("man -w 8 wulf-agent");
    c.ok("bash -c '. /usr/share/bash-completion/completions/wulf-agent && complete -p wulf-agent'");

    // The head beside it: both own /etc/wulf.
    c.install(&[&b.head]);
    c.ok("dpkg --purge wulf");
    assert!(c.path("/etc/wulf/agent.conf.example").exists());
    // What the agent writes goes with its purge.
    std::fs::write(c.path("/etc/wulf/attributes.ini"), "[attributes]\n").unwrap();
    c.ok("dpkg --purge wulf-agent");
    assert!(!c.path("/etc/wulf").exists(), "/etc/wulf after both purges");
    assert!(
        !c.path("/var/lib/wulf-agent").exists(),
        "a standalone server's credential after the purge"
    );
    left_behind(&before, &c.files());
}

/// Lines of the example with the keys uncommented: all of them, and (second) only those
/// that show a default (not the "# example" ones).
fn uncomment(example: &str) -> (String, String) {
    let (mut all, mut defaults) = (String::new(), String::new());
    for line in example.lines() {
        let key = line.strip_prefix('#').filter(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            !name.is_empty() && rest[name.len()..].starts_with(" = ")
        });
        match key {
            Some(kv) => {
                all.push_str(kv);
                all.push('\n');
                if !kv.contains("# example") {
                    defaults.push_str(kv);
                    defaults.push('\n');
                }
            }
            None => {
                all.push_str(line);
                all.push('\n');
                defaults.push_str(line);
                defaults.push('\n');
            }
        }
    }
    (all, defaults)
}

/// Field names serde expects for `toml` with an unknown key in it (from its error).
fn expected_fields(toml_text: &str) -> Option<BTreeSet<String>> {
    let e = toml::from_str::<FileConfig>(toml_text).err()?.to_string();
    let rest = e.split("unknown field `probe_key`, expected").nth(1)?;
    Some(
        rest.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

/// Every key FileConfig takes, as "key" and "section.key".
fn file_config_keys() -> BTreeSet<String> {
    let top = expected_fields("probe_key = 1").expect("FileConfig refuses unknown keys");
    let mut keys = BTreeSet::new();
    for k in top {
        match expected_fields(&format!("[{k}]\nprobe_key = 1\n")) {
            Some(sub) => keys.extend(sub.into_iter().map(|s| format!("{k}.{s}"))),
            None => {
                keys.insert(k);
            }
        }
    }
    keys
}

#[test]
fn example_config_has_every_key_with_its_default() {
    let path = repo().join("packaging/wulfd.toml.example");
    let example = std::fs::read_to_string(&path).unwrap();
    // As shipped (every key commented out) it is a valid config file.
    toml::from_str::<FileConfig>(&example).unwrap();
    let (all, defaults) = uncomment(&example);
    toml::from_str::<FileConfig>(&all).unwrap_or_else(|e| panic!("uncommented: {e}"));
    // The defaults it shows are wulfd's (the data directory depends on who runs wulfd).
    let shown: FileConfig = toml::from_str(&defaults).unwrap();
    let mut shown = Config::settle(shown, None, None, None);
    let none = Config::settle(FileConfig::default(), None, None, None);
    shown.data_dir = none.data_dir.clone();
    assert_eq!(
        format!("{shown:#?}"),
        format!("{none:#?}"),
        "defaults in {}",
        path.display()
    );
    // Every key, no other.
    let table: toml::Table = toml::from_str(&all).unwrap();
    let mut listed = BTreeSet::new();
    for (k, v) in &table {
        match v.as_table() {
            Some(t) => listed.extend(t.keys().map(|s| format!("{k}.{s}"))),
            None => {
                listed.insert(k.clone());
            }
        }
    }
    assert_eq!(listed, file_config_keys(), "keys in {}", path.display());
}

#[test]
fn nss_module_installs_answers_ethers_and_purges() {
    let b = built();
    let c = Chroot::new();
    let before = c.files();
    c.install(&[&b.nss]);
    let lib = format!("{}/libnss_wulf.so.2", multiarch_lib());
    assert!(c.path(&lib).is_file());
    // ldconfig ran (the trigger): the module is in the cache.
    let cache = c.ok("ldconfig -p");
    assert!(cache.contains("libnss_wulf.so.2"), "{cache}");
    // glibc loads it for `ethers: wulf files`; with no head answering (nothing listens on
    // the server in nss.conf) the module says unavailable and /etc/ethers answers.
    std::fs::create_dir_all(c.path("/etc/wulf")).unwrap();
    std::fs::write(c.path("/etc/wulf/nss.conf"), "server=127.0.0.1:5399\n").unwrap();
    std::fs::write(c.path("/etc/ethers"), "52:54:00:12:34:56 sw9\n").unwrap();
    let orig = std::fs::read_to_string(c.path("/etc/nsswitch.conf")).unwrap();
    let nsswitch: String = orig
        .lines()
        .filter(|l| !l.starts_with("ethers:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        c.path("/etc/nsswitch.conf"),
        format!("{nsswitch}ethers: wulf files\n"),
    )
    .unwrap();
    let out = c.run("LD_DEBUG=libs getent ethers sw9");
    let said = text(&out.stderr);
    assert!(out.status.success(), "getent ethers sw9: {}", said);
    assert_eq!(text(&out.stdout).trim(), "52:54:0:12:34:56 sw9");
    assert!(
        said.contains(&format!("calling init: {lib}"))
            || said.contains("calling init: /lib/") && said.contains("libnss_wulf.so.2"),
        "getent did not load libnss_wulf:\n{said}"
    );
    std::fs::remove_file(c.path("/etc/ethers")).unwrap();
    std::fs::remove_file(c.path("/etc/wulf/nss.conf")).unwrap();
    std::fs::remove_dir(c.path("/etc/wulf")).unwrap();
    std::fs::write(c.path("/etc/nsswitch.conf"), orig).unwrap();
    c.ok("dpkg --purge libnss-wulf");
    assert!(!c.path(&lib).exists());
    assert!(!c.ok("ldconfig -p").contains("libnss_wulf"));
    left_behind(&before, &c.files());
}

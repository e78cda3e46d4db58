//! The RPM packages (packaging/build-rpms.sh, packaging/wulf.spec): built from the release
//! binaries (`cargo build --release --workspace` first, as test.sh does) with Debian's
//! rpmbuild (test.d/rpm.sh installs it), then checked with the real rpm: the files of each
//! package (`rpm -qpl`) with their modes and %config flags, the header (name, version,
//! arch, licence, build host and time), requires and provides, the scriptlets (read, and
//! run against a stand-in systemctl), that two builds are identical byte for byte, and an
//! install into a scratch root (`rpm --root`: files there with their modes, `rpm -V`
//! clean and able to see a change, `rpm -e` removes them again).

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const MISSING: &str = "./test.sh installs it (test.d/rpm.sh)";

mod packaging;

use packaging::{cmd, must, ok, release_dir, repo, run, text, version, Built};

fn arch() -> String {
    ok(Command::new("uname").arg("-m")).trim().to_string()
}

/// rpmbuild and rpm are there, or the test fails saying who installs them.
fn need_rpm_tools() {
    for tool in ["rpmbuild", "rpm"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(found, "{tool} not found: {MISSING}");
    }
}

/// `rpm ARGS...` (Debian's rpm says on stderr that it is not dpkg; only stdout is read).
fn rpm(args: &[&str], more: &[&Path]) -> String {
    ok(cmd(300, "rpm").args(args).args(more))
}

/// packaging/build-rpms.sh into `out`; the three .rpm files it names (head, agent, NSS
/// module).
fn build_into(out: &Path) -> [PathBuf; 3] {
    need_rpm_tools();
    let (v, a) = (version(), arch());
    packaging::build_into(
        "build-rpms.sh",
        "WULF_RPM_DIR",
        out,
        900,
        ["wulf", "wulf-agent", "nss-wulf"].map(|p| format!("{p}-{v}-1.{a}.rpm")),
    )
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    packaging::built_once(&BUILT, build_into)
}

/// One header tag (`rpm -qp --qf %{TAG}`).
fn tag(pkg: &Path, name: &str) -> String {
    rpm(&["-qp", "--qf", &format!("%{{{name}}}")], &[pkg])
}

/// One file of a package: `rpm -qp --qf [...]` per file.
#[derive(Debug)]
struct Entry {
    path: String,
    perms: String,
    owner: String,
    flags: String,
}

fn entries(pkg: &Path) -> Vec<Entry> {
    rpm(
        &[
            "-qp",
            "--qf",
            "[%{FILENAMES}|%{FILEMODES:perms}|%{FILEUSERNAME}:%{FILEGROUPNAME}|%{FILEFLAGS:fflags}\n]",
        ],
        &[pkg],
    )
    .lines()
    .map(|l| {
        let f: Vec<&str> = l.split('|').collect();
        Entry {
            path: f[0].to_string(),
            perms: f[1].to_string(),
            owner: f[2].to_string(),
            flags: f[3].to_string(),
        }
    })
    .collect()
}

/// The man pages `BIN generate` makes, as the package names them (gzip'd).
fn man_pages(bin: &str) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    ok(Command::new(release_dir().join(bin))
        .arg("generate")
        .arg(dir.path().join("g")));
    std::fs::read_dir(dir.path().join("g/man"))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let section = name.rsplit('.').next().unwrap().to_string();
            format!("/usr/share/man/man{section}/{name}.gz")
        })
        .collect()
}

/// Completions for NAME, where Fedora and RHEL's shells look.
fn completions(name: &str) -> [String; 3] {
    [
        format!("/usr/share/bash-completion/completions/{name}"),
        format!("/usr/share/zsh/site-functions/_{name}"),
        format!("/usr/share/fish/vendor_completions.d/{name}.fish"),
    ]
}

/// What each package holds: (path, mode); directories are the ones it owns.
fn expected(pkg: &str) -> Vec<(String, &'static str)> {
    let mut files: Vec<(String, &str)> = Vec::new();
    let mut add = |p: &str, mode: &'static str| files.push((p.to_string(), mode));
    let lic = format!("/usr/share/licenses/{pkg}");
    add(&lic, "drwxr-xr-x");
    add(&format!("{lic}/copyright"), "-rw-r--r--");
    match pkg {
        "wulf" => {
            add("/usr/bin/wulfd", "-rwxr-xr-x");
            add("/usr/bin/wulf", "-rwxr-xr-x");
            add("/usr/lib/systemd/system/wulfd.service", "-rw-r--r--");
            add("/etc/logrotate.d/wulfd", "-rw-r--r--");
            add("/etc/wulf", "drwxr-xr-x");
            add("/etc/wulf/wulfd.toml.example", "-rw-r--r--");
            for p in man_pages("wulf").iter().chain(&man_pages("wulfd")) {
                add(p, "-rw-r--r--");
            }
            for p in completions("wulf").iter().chain(&completions("wulfd")) {
                add(p, "-rw-r--r--");
            }
        }
        "wulf-agent" => {
            add("/usr/sbin/wulf-agent", "-rwxr-xr-x");
            add("/usr/lib/systemd/system/wulf-agent.service", "-rw-r--r--");
            add(
                "/usr/lib/systemd/system/wulf-agent-standalone.service",
                "-rw-r--r--",
            );
            add("/etc/wulf", "drwxr-xr-x");
            add("/etc/wulf/agent.conf.example", "-rw-r--r--");
            for p in man_pages("wulf-agent") {
                add(&p, "-rw-r--r--");
            }
            for p in completions("wulf-agent") {
                add(&p, "-rw-r--r--");
            }
        }
        "nss-wulf" => add("/usr/lib64/libnss_wulf.so.2", "-rw-r--r--"),
        _ => unreachable!(),
    }
    files
}

/// `rpm -qpl` lists exactly the expected files, each root's with its mode; files in /etc
/// are %config(noreplace) and nothing else is %config.
fn check_files(pkg: &Path, name: &str) -> Vec<Entry> {
    let want = expected(name);
    let listed: BTreeSet<String> = rpm(&["-qpl"], &[pkg]).lines().map(String::from).collect();
    let want_paths: BTreeSet<String> = want.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(
        listed.difference(&want_paths).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "{} ships more than it should",
        pkg.display()
    );
    assert_eq!(
        want_paths.difference(&listed).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "{} lacks these",
        pkg.display()
    );
    let got = entries(pkg);
    assert_eq!(got.len(), want.len());
    for e in &got {
        let (_, mode) = want.iter().find(|(p, _)| *p == e.path).unwrap();
        assert_eq!(e.perms, *mode, "{}", e.path);
        assert_eq!(e.owner, "root:root", "{}", e.path);
        let is_config = e.path.starts_with("/etc/") && !e.perms.starts_with('d');
        assert_eq!(
            e.flags.contains('c') && e.flags.contains('n'),
            is_config,
            "%config(noreplace) for files in /etc, no other: {} ({})",
            e.path,
            e.flags
        );
        assert!(
            !e.path.contains("generate"),
            "hidden subcommand: {}",
            e.path
        );
        assert!(!e.path.contains(".build-id"), "build-id link: {}", e.path);
    }
    got
}

#[test]
fn head_package_files() {
    let b = built();
    let got = check_files(&b.head, "wulf");
    assert!(!got.iter().any(|e| e.path.contains("wulf-agent")));
    // A page for every command `wulf --help` lists (so `generate` made them all).
    for page in packaging::command_pages() {
        assert!(got.iter().any(|e| e.path == page), "no {page}");
    }
    for p in [
        "/usr/share/man/man8/wulfd.8.gz",
        "/usr/share/man/man1/wulf.1.gz",
    ] {
        assert!(got.iter().any(|e| e.path == p), "no {p}");
    }
}

#[test]
fn agent_package_files() {
    let b = built();
    let got = check_files(&b.agent, "wulf-agent");
    // Nothing of the head.
    let head: BTreeSet<String> = expected("wulf")
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p != "/etc/wulf")
        .collect();
    for e in &got {
        assert!(
            !head.contains(&e.path),
            "the head's {} in wulf-agent",
            e.path
        );
        assert!(
            !e.path.contains("wulfd") && !e.path.starts_with("/usr/bin/"),
            "{}",
            e.path
        );
    }
}

#[test]
fn nss_package_files() {
    let b = built();
    check_files(&b.nss, "nss-wulf");
}

#[test]
fn headers() {
    let b = built();
    let (v, a) = (version(), arch());
    // The licence packaging/copyright gives for wulf's files.
    let copyright = std::fs::read_to_string(repo().join("packaging/copyright")).unwrap();
    let license = copyright
        .split("Files: *")
        .nth(1)
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("License: ")))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(license, "Apache-2.0");
    let epoch = ok(Command::new("git")
        .arg("-C")
        .arg(repo())
        .args(["log", "-1", "--format=%ct"]));
    for (pkg, name) in [
        (&b.head, "wulf"),
        (&b.agent, "wulf-agent"),
        (&b.nss, "nss-wulf"),
    ] {
        let q = rpm(
            &[
                "-qp",
                "--qf",
                "%{NAME}|%{VERSION}|%{RELEASE}|%{ARCH}|%{LICENSE}|%{BUILDHOST}|%{BUILDTIME}",
            ],
            &[pkg],
        );
        assert_eq!(
            q,
            format!("{name}|{v}|1|{a}|{license}|reproducible|{}", epoch.trim()),
            "{}",
            pkg.display()
        );
        for t in ["SUMMARY", "DESCRIPTION", "PACKAGER"] {
            let s = tag(pkg, t);
            assert!(!s.is_empty() && s != "(none)", "{name} {t}: {s}");
        }
        assert!(tag(pkg, "CHANGELOGTEXT").contains(&v), "{name} %changelog");
        // No debuginfo: the binaries are stripped, and none was split off.
        let dir = tempfile::tempdir().unwrap();
        ok(Command::new("sh")
            .current_dir(dir.path())
            .arg("-c")
            .arg("rpm2cpio \"$0\" | cpio -idm --quiet")
            .arg(pkg));
        for e in entries(pkg).iter().filter(|e| e.perms.starts_with('-')) {
            let file = dir.path().join(e.path.trim_start_matches('/'));
            let magic = std::fs::read(&file).unwrap();
            if magic.starts_with(b"\x7fELF") {
                let sections = ok(Command::new("readelf").arg("-S").arg(&file));
                assert!(
                    !sections.contains(".debug_") && !sections.contains(".symtab"),
                    "{} is not stripped",
                    e.path
                );
            }
        }
    }
    assert!(!b
        .head
        .with_file_name(format!("wulf-debuginfo-{v}-1.{a}.rpm"))
        .exists());
}

fn lines(s: &str) -> BTreeSet<String> {
    s.lines().map(|l| l.trim().to_string()).collect()
}

#[test]
fn requires_and_provides() {
    let b = built();
    let v = version();
    for (pkg, name) in [
        (&b.head, "wulf"),
        (&b.agent, "wulf-agent"),
        (&b.nss, "nss-wulf"),
    ] {
        let requires = lines(&rpm(&["-qp", "--requires"], &[pkg]));
        let provides = lines(&rpm(&["-qp", "--provides"], &[pkg]));
        // From the libraries the ELF files link (rpm's elfdeps): libc and the unwinder.
        for r in [
            "libc.so.6()(64bit)",
            "libgcc_s.so.1()(64bit)",
            "rtld(GNU_HASH)",
        ] {
            assert!(requires.contains(r), "{name} requires no {r}: {requires:?}");
        }
        assert!(
            requires.iter().any(|r| r.starts_with("libc.so.6(GLIBC_2.")),
            "{requires:?}"
        );
        for r in &requires {
            // Libraries, rpm's own features, its own config(), files (the shell, the head's
            // kill and pkill): no Debian package names, no other wulf package.
            assert!(
                r.starts_with("rpmlib(")
                    || *r == format!("config({name}) = {v}-1")
                    || r.starts_with('/')
                    || r.starts_with("rtld(")
                    || r.contains(".so."),
                "{name} requires {r}"
            );
        }
        assert!(
            provides.contains(&format!("{name} = {v}-1")),
            "{provides:?}"
        );
        assert!(
            provides.contains(&format!("{name}({}) = {v}-1", arch().replace('_', "-"))),
            "{provides:?}"
        );
        match name {
            "wulf" => {
                for r in ["/usr/bin/kill", "/usr/bin/pkill", "/bin/sh"] {
                    assert!(requires.contains(r), "wulf requires no {r}");
                }
                assert!(provides.contains(&format!("config(wulf) = {v}-1")));
                let recommends = lines(&rpm(&["-qp", "--recommends"], &[pkg]));
                assert!(
                    recommends.contains(&format!("wulf-agent = {v}-1")),
                    "{recommends:?}"
                );
            }
            "wulf-agent" => {
                assert!(requires.contains("/bin/sh"));
                assert!(provides.contains(&format!("config(wulf-agent) = {v}-1")));
            }
            _ => {
                assert!(
                    provides.contains("libnss_wulf.so.2()(64bit)"),
                    "the SONAME: {provides:?}"
                );
                assert!(requires.contains("/sbin/ldconfig"), "{requires:?}");
                assert!(!requires.contains("/bin/sh"), "no shell scriptlets");
            }
        }
    }
}

/// A scriptlet (`%{POSTIN}` and so on) run with `arg` ($1: 1 install, 2 upgrade, 0 erase)
/// against stand-ins for systemctl, install and getent that only write down how they were
/// called; what they were called with, one line each.
fn run_scriptlet(script: &str, arg: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    for stub in ["systemctl", "install", "getent"] {
        let p = dir.path().join(stub);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho \"{stub} $*\" >>'{}'\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let file = dir.path().join("scriptlet");
    std::fs::write(&file, script).unwrap();
    ok(Command::new("sh")
        .arg(&file)
        .arg(arg)
        .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display())));
    std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn scriptlets() {
    let b = built();
    let all = rpm(&["-qp", "--scripts"], &[&b.head]);
    assert!(all.contains("postinstall scriptlet"), "{all}");
    let systemd = Path::new("/run/systemd/system").is_dir();
    let if_systemd = |l: &[&str]| -> Vec<String> {
        if systemd {
            l.iter().map(|s| s.to_string()).collect()
        } else {
            Vec::new()
        }
    };
    for (pkg, unit, also) in [
        (&b.head, "wulfd.service", ""),
        (
            &b.agent,
            "wulf-agent.service",
            " wulf-agent-standalone.service",
        ),
    ] {
        let scripts = rpm(&["-qp", "--scripts"], &[pkg]);
        assert!(scripts.contains(&format!("preset {unit}")), "{scripts}");
        for t in ["POSTIN", "PREUN", "POSTUN"] {
            assert_eq!(tag(pkg, &format!("{t}PROG")), "/bin/sh", "{t}");
            let s = tag(pkg, t);
            let f = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(f.path(), &s).unwrap();
            ok(Command::new("sh").arg("-n").arg(f.path()));
            for line in s.lines().filter(|l| !l.trim_start().starts_with('#')) {
                assert!(
                    !line.contains("systemctl start")
                        && !line.contains("systemctl enable")
                        && !line.contains("--now"),
                    "{t} must not start or enable anything: {line}"
                );
            }
        }
        // %post: preset (enabled as the policy says, not started) at the first install only.
        let post = tag(pkg, "POSTIN");
        let calls: Vec<String> = run_scriptlet(&post, "1")
            .into_iter()
            .filter(|c| c.starts_with("systemctl"))
            .collect();
        assert_eq!(calls, [format!("systemctl --no-reload preset {unit}")]);
        assert!(!run_scriptlet(&post, "2")
            .iter()
            .any(|c| c.starts_with("systemctl")));
        // %preun: disabled and stopped on erase, left alone on upgrade.
        let preun = tag(pkg, "PREUN");
        let mut want = vec![format!("systemctl --no-reload disable {unit}{also}")];
        want.extend(if_systemd(&[&format!("systemctl stop {unit}{also}")]));
        assert_eq!(run_scriptlet(&preun, "0"), want);
        assert_eq!(run_scriptlet(&preun, "1"), Vec::<String>::new());
        // %postun: daemon-reload; an upgrade restarts what was running.
        let postun = tag(pkg, "POSTUN");
        assert_eq!(
            run_scriptlet(&postun, "0"),
            if_systemd(&["systemctl daemon-reload"])
        );
        assert_eq!(
            run_scriptlet(&postun, "1"),
            if_systemd(&[
                "systemctl daemon-reload",
                &format!("systemctl try-restart {unit}{also}")
            ])
        );
    }
    // The head's %post makes the data and log directories as wulfd would.
    let calls = run_scriptlet(&tag(&b.head, "POSTIN"), "1");
    if !Path::new("/var/lib/wulf").is_dir() {
        assert!(
            calls.contains(&"install -d -m 0700 -o root -g root /var/lib/wulf".to_string()),
            "{calls:?}"
        );
    }
    if !Path::new("/var/log/wulf").is_dir() {
        assert!(
            calls.contains(&"install -d -m 0750 -o root -g adm /var/log/wulf".to_string()),
            "{calls:?}"
        );
    }
    // nss-wulf: ldconfig itself (-p), no shell.
    for t in ["POSTINPROG", "POSTUNPROG"] {
        assert_eq!(tag(&b.nss, t), "/sbin/ldconfig", "{t}");
    }
    for t in ["POSTIN", "POSTUN", "PREIN", "PREUN"] {
        assert_eq!(tag(&b.nss, t), "(none)", "nss-wulf {t} has a body");
    }
}

/// The same binaries and sources give the same packages, byte for byte (rpmbuild 4.18 with
/// SOURCE_DATE_EPOCH as the build time, a fixed build host and clamped file times).
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
fn build_says_what_is_missing() {
    // No binaries.
    let empty = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let out = run(cmd(60, "bash")
        .arg(repo().join("packaging/build-rpms.sh"))
        .env("WULF_RELEASE_DIR", empty.path())
        .env("WULF_RPM_DIR", out_dir.path()));
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(
        said.contains("wulfd not found") && said.contains("cargo build --release --workspace"),
        "{said}"
    );
    // No rpmbuild: a PATH with nothing but what the script needs before it looks.
    let path = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/usr/bin/dirname", path.path().join("dirname")).unwrap();
    let out = run(Command::new("/bin/bash")
        .arg(repo().join("packaging/build-rpms.sh"))
        .env("PATH", path.path())
        .env("WULF_RELEASE_DIR", release_dir())
        .env("WULF_RPM_DIR", out_dir.path()));
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(said.contains("rpmbuild not found"), "{said}");
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 0);
}

fn assert_root() {
    packaging::assert_root("rpm installs root-owned files into the scratch root");
}

/// `rpm --root=ROOT ARGS...` (--nodeps: the scratch root holds no glibc package; --noscripts
/// for -i and -e: nor a /bin/sh for the scriptlets, which `scriptlets` runs instead).
fn rpm_root(root: &Path, args: &[&str], pkgs: &[&Path]) -> Output {
    run(cmd(300, "rpm")
        .arg(format!("--root={}", root.display()))
        .args(args)
        .args(pkgs))
}

#[test]
fn install_verify_erase_in_a_scratch_root() {
    assert_root();
    let b = built();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    must(rpm_root(&root, &["--initdb"], &[]), "rpm --initdb");
    must(
        rpm_root(&root, &["-i", "--nodeps", "--noscripts"], &b.all()),
        "rpm -i",
    );
    let installed = lines(&must(rpm_root(&root, &["-qa"], &[]), "rpm -qa"));
    let (v, a) = (version(), arch());
    let names = ["wulf", "wulf-agent", "nss-wulf"];
    assert_eq!(
        installed,
        names.iter().map(|n| format!("{n}-{v}-1.{a}")).collect(),
    );

    // Every file of every package is there, root's, with its mode.
    for name in names {
        for (path, mode) in expected(name) {
            let p = root.join(path.trim_start_matches('/'));
            let m = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{path}: {e}"));
            let want = match mode {
                "-rwxr-xr-x" => 0o100755,
                "-rw-r--r--" => 0o100644,
                "drwxr-xr-x" => 0o040755,
                _ => unreachable!(),
            };
            assert_eq!((m.mode(), m.uid(), m.gid()), (want, 0, 0), "{path}");
        }
    }
    // The installed programs run; the module has glibc's ethers entry points.
    for (b, path) in [
        ("wulf", "usr/bin/wulf"),
        ("wulfd", "usr/bin/wulfd"),
        ("wulf-agent", "usr/sbin/wulf-agent"),
    ] {
        let out = ok(Command::new(root.join(path)).arg("--version"));
        assert_eq!(out, format!("{b} {v}\n"));
    }
    let syms = ok(Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(root.join("usr/lib64/libnss_wulf.so.2")));
    for f in ["_nss_wulf_gethostton_r", "_nss_wulf_getntohost_r"] {
        assert!(syms.contains(f), "no {f}:\n{syms}");
    }

    // rpm -V: clean; and it sees a changed mode and a changed config file (so it can fail).
    let verify = |pkgs: &[&str]| rpm_root(&root, &[&["-V", "--nodeps"][..], pkgs].concat(), &[]);
    let out = verify(&names);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "rpm -V:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let wulf = root.join("usr/bin/wulf");
    std::fs::set_permissions(&wulf, std::fs::Permissions::from_mode(0o700)).unwrap();
    let conf = root.join("etc/wulf/agent.conf.example");
    let orig = std::fs::read(&conf).unwrap();
    let mtime = std::fs::metadata(&conf).unwrap().mtime();
    std::fs::write(&conf, b"head=https://10.0.0.1:8740\n").unwrap();
    let out = verify(&names);
    assert!(!out.status.success());
    let said = text(&out.stdout);
    assert!(
        said.contains(".M") && said.contains("/usr/bin/wulf\n"),
        "{said}"
    );
    assert!(said.contains(" c /etc/wulf/agent.conf.example"), "{said}");
    std::fs::set_permissions(&wulf, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(&conf, orig).unwrap();
    ok(Command::new("touch")
        .arg("-d")
        .arg(format!("@{mtime}"))
        .arg(&conf));
    let out = verify(&names);
    assert!(out.status.success(), "{}", text(&out.stdout));

    // rpm -e: every file goes, and the directories the packages own.
    let erase = [&["-e", "--nodeps", "--noscripts"][..], &names].concat();
    must(rpm_root(&root, &erase, &[]), "rpm -e");
    assert_eq!(must(rpm_root(&root, &["-qa"], &[]), "rpm -qa"), "");
    for name in names {
        for (path, _) in expected(name) {
            assert!(
                !root.join(path.trim_start_matches('/')).exists(),
                "{path} after rpm -e"
            );
        }
    }
}

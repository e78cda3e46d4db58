//! Test support for the package tests (packages.rs: the .debs, rpms.rs: the RPMs): the
//! repository, the release binaries, the version, bounded commands, and the three packages
//! a build script writes, built once per test binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// target/release, where `wulf` and (after `cargo build --release --workspace`) `wulfd`,
/// `wulf-agent` and `libnss_wulf.so` are.
pub fn release_dir() -> PathBuf {
    let wulf = PathBuf::from(env!("CARGO_BIN_EXE_wulf"));
    let dir = wulf.parent().unwrap().to_path_buf();
    for b in ["wulfd", "wulf-agent", "libnss_wulf.so"] {
        assert!(
            dir.join(b).exists(),
            "{} is missing: run `cargo build --release --workspace` first",
            dir.join(b).display()
        );
    }
    dir
}

/// The workspace's version ([workspace.package] in Cargo.toml).
pub fn version() -> String {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let t: toml::Table = toml::from_str(&text).unwrap();
    t["workspace"]["package"]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `prog` bounded in time (`timeout`: a hung tool fails the test instead of hanging it).
pub fn cmd(secs: u32, prog: &str) -> Command {
    let mut c = Command::new("timeout");
    c.args(["-k", "5", &secs.to_string(), prog]);
    c
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn run(c: &mut Command) -> Output {
    c.stdin(Stdio::null()).output().expect("cannot run")
}

/// `out` succeeded (else panic with `what` and its output); its stdout.
pub fn must(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Run it; panic with its output unless it succeeded; its stdout.
pub fn ok(c: &mut Command) -> String {
    let out = run(c);
    must(out, &format!("{c:?}"))
}

/// The test runs as root (test.sh does), for `why`.
pub fn assert_root(why: &str) {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "{why}: run it as root (test.sh does)"
    );
}

/// The three packages a build script wrote: the head, the agent, the NSS module.
pub struct Built {
    pub _dir: tempfile::TempDir,
    pub head: PathBuf,
    pub agent: PathBuf,
    pub nss: PathBuf,
}

impl Built {
    pub fn all(&self) -> [&Path; 3] {
        [&self.head, &self.agent, &self.nss]
    }
}

/// Run packaging/`script` with the release binaries, its output directory in `out_var`
/// set to `out`; it must print exactly the paths `names` (head, agent, NSS module, relative
/// to `out`) and have written them.
pub fn build_into(
    script: &str,
    out_var: &str,
    out: &Path,
    secs: u32,
    names: [String; 3],
) -> [PathBuf; 3] {
    let stdout = ok(cmd(secs, "bash")
        .arg(repo().join("packaging").join(script))
        .env("WULF_RELEASE_DIR", release_dir())
        .env(out_var, out));
    let paths = names.map(|n| out.join(n));
    let named: Vec<&str> = stdout.lines().collect();
    let want: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    assert_eq!(named, want, "{script} prints the packages it wrote");
    for p in &paths {
        assert!(p.is_file(), "{} was not written", p.display());
    }
    paths
}

/// [`build_into`] once per test binary, into a directory kept for its life.
pub fn built_once(
    cell: &'static std::sync::OnceLock<Built>,
    build: impl FnOnce(&Path) -> [PathBuf; 3],
) -> &'static Built {
    cell.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let [head, agent, nss] = build(dir.path());
        Built {
            _dir: dir,
            head,
            agent,
            nss,
        }
    })
}

/// The man page each command `wulf --help` lists should have
/// (/usr/share/man/man1/wulf-CMD.1.gz).
pub fn command_pages() -> Vec<String> {
    let help = ok(Command::new(release_dir().join("wulf")).arg("--help"));
    let commands: Vec<String> = help
        .split("Commands:")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(|c| format!("/usr/share/man/man1/wulf-{c}.1.gz"))
        .collect();
    assert!(commands.len() > 10, "{commands:?}");
    commands
}

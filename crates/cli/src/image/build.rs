//! `wulf image build NAME --debian SUITE [--packages a,b] [--mirror URL] [--include-agent]`,
//! `--rpm RELEASEVER` (image/rpm.rs) and `--from-container PATH`: make a root filesystem in a
//! scratch directory, with mmdebstrap (debootstrap when mmdebstrap is missing), dnf, or from
//! an OCI image, then pack and
//! upload it as the image's content exactly as `wulf image create --from-dir` does.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use wulf_model::Kind;

use super::scratch::{need_root, Scratch};
use crate::args::{BuildArgs, Cli};
use crate::fail::{usage, Fail};

/// The Debian releases `--debian` builds.
pub(crate) const SUITES: &[&str] = &["bookworm", "trixie"];

/// How many lines of a failed bootstrap's output the error shows.
const LAST_LINES: usize = 15;

/// What can be refused before anything is done: the name, the suite, the packages, the
/// mirror, the container path.
pub(crate) fn check(a: &BuildArgs) -> Result<(), Fail> {
    wulf_model::check_object_name(&a.name).map_err(|e| usage(format!("image {e}")))?;
    if let Some(suite) = &a.debian {
        if !SUITES.contains(&suite.as_str()) {
            return Err(usage(format!(
                "unknown Debian suite '{suite}' (--debian takes {})",
                SUITES.join(" or ")
            )));
        }
        if let Some(bad) = a.packages.iter().find(|p| !valid_package(p)) {
            return Err(usage(format!(
                "--packages: '{bad}' is not a Debian package name"
            )));
        }
        if !(a.mirror.starts_with("http://")
            || a.mirror.starts_with("https://")
            || a.mirror.starts_with("file:/"))
        {
            return Err(usage(format!(
                "--mirror '{}' is not an http://, https:// or file:/ URL",
                a.mirror
            )));
        }
    }
    if let Some(r) = &a.rpm {
        super::rpm::check(a, r)?;
    }
    if let Some(p) = &a.from_container {
        if !a.packages.is_empty() {
            return Err(usage(
                "--packages installs packages: it goes with --debian or --rpm, not --from-container",
            ));
        }
        if !p.exists() {
            return Err(usage(format!(
                "--from-container {}: no such file or directory",
                p.display()
            )));
        }
    }
    if let Some(p) = &a.agent {
        if !p.is_file() {
            return Err(usage(format!("--agent {}: no such file", p.display())));
        }
    }
    Ok(())
}

/// Debian policy: lower case letters, digits, `+ - .`, at least two characters, starting
/// with a letter or digit.
fn valid_package(p: &str) -> bool {
    p.len() >= 2
        && p.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

pub(crate) fn run(cli: &Cli, a: &BuildArgs) -> Result<(), Fail> {
    check(a)?;
    need_root("wulf image build")?;
    // The head and the agent before the long part, so a typo costs nothing.
    let c = crate::conn::client(cli)?;
    // A frozen image is refused before it is built (the upload would be).
    if let Some(img) = crate::image::named(&c, &a.name, "frozen")? {
        crate::image::refuse_frozen(&img, &a.name)?;
    }
    let agent = if a.include_agent {
        Some(crate::initramfs::find_agent(a.agent.as_deref()).map_err(Fail::Request)?)
    } else {
        None
    };
    let scratch = Scratch::new()?;
    let root = scratch.path().join("root");
    let started = std::time::Instant::now();
    if let Some(suite) = &a.debian {
        bootstrap(suite, &a.packages, &a.mirror, &root, scratch.path())?;
    } else if let Some(r) = &a.rpm {
        super::rpm::build(a, r, &root, scratch.path())?;
    } else if let Some(p) = &a.from_container {
        std::fs::create_dir(&root).with_context(|| format!("cannot create {}", root.display()))?;
        super::container::unpack(p, &root, scratch.path())?;
    }
    if let Some(agent) = agent {
        put_agent(&agent, &root)?;
    }
    eprintln!(
        "Built the root filesystem in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let packed = crate::image::pack_dir(&root)?;
    let mut fields = serde_json::Map::new();
    fields.insert("name".into(), Value::String(a.name.clone()));
    let (verb, uid) = crate::image::upsert(&c, &a.name, fields)?;
    let obj = crate::files::upload(&c, Kind::Image, &uid, "content", packed.path())?;
    crate::objects::report(cli, verb, Kind::Image, &[obj]);
    Ok(())
}

/// Which program builds Debian here: mmdebstrap, else debootstrap.
fn bootstrapper() -> Result<&'static str> {
    ["mmdebstrap", "debootstrap"]
        .into_iter()
        .find(|p| on_path(p))
        .ok_or_else(|| {
            anyhow!("neither mmdebstrap nor debootstrap is installed: apt-get install mmdebstrap")
        })
}

pub(crate) fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            let f = d.join(prog);
            f.is_file()
        })
    }) || Path::new("/usr/sbin").join(prog).is_file()
}

/// Bootstrap Debian `suite` (variant minbase, with `packages`) into `root`, logging into
/// `work`/bootstrap.log; on failure, the log's last lines are the error.
fn bootstrap(
    suite: &str,
    packages: &[String],
    mirror: &str,
    root: &Path,
    work: &Path,
) -> Result<(), Fail> {
    let tool = bootstrapper()?;
    let log_path = work.join("bootstrap.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut cmd = Command::new(tool);
    cmd.arg("--variant=minbase");
    if tool == "mmdebstrap" {
        cmd.arg("--mode=root");
    }
    if !packages.is_empty() {
        cmd.arg(format!("--include={}", packages.join(",")));
    }
    cmd.arg(suite).arg(root).arg(mirror);
    eprintln!(
        "Building Debian {suite} (minbase{}) with {tool} from {mirror}",
        if packages.is_empty() {
            String::new()
        } else {
            format!(" + {}", packages.join(","))
        }
    );
    let status = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("cannot open the log")?)
        .stderr(log)
        .status()
        .with_context(|| format!("cannot run {tool}"))?;
    if status.success() {
        // The bootstrap copies the build host's name in; nodes get their own at boot.
        let hostname = root.join("etc/hostname");
        if std::fs::read(&hostname).ok() == std::fs::read("/etc/hostname").ok() {
            std::fs::remove_file(&hostname).ok();
        }
        return Ok(());
    }
    Err(failed(tool, status, &log_path))
}

/// `TOOL failed (STATUS); its last lines:` and the last lines of its log.
pub(crate) fn failed(tool: &str, status: std::process::ExitStatus, log: &Path) -> Fail {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(LAST_LINES)..].join("\n  ");
    Fail::Request(anyhow!(
        "{tool} failed ({status}); its last lines:\n  {tail}"
    ))
}

/// Copy the agent into `root` as /usr/sbin/wulf-agent (mode 0755, owned by root).
fn put_agent(agent: &Path, root: &Path) -> Result<()> {
    let dir: PathBuf = root.join("usr/sbin");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dst = dir.join("wulf-agent");
    // A symlink left by the image must not redirect the copy out of it.
    if std::fs::symlink_metadata(&dst).is_ok() {
        std::fs::remove_file(&dst).with_context(|| format!("cannot replace {}", dst.display()))?;
    }
    std::fs::copy(agent, &dst)
        .with_context(|| format!("cannot copy {} to {}", agent.display(), dst.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot set the mode of {}", dst.display()))?;
    std::os::unix::fs::chown(&dst, Some(0), Some(0))
        .with_context(|| format!("cannot chown {}", dst.display()))?;
    eprintln!("Included {} as /usr/sbin/wulf-agent", agent.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn package_names() {
        assert!(super::valid_package("openssh-server"));
        assert!(super::valid_package("libstdc++6"));
        assert!(!super::valid_package("Foo"));
        assert!(!super::valid_package("a"));
        assert!(!super::valid_package("-x"));
        assert!(!super::valid_package("a b"));
    }
}

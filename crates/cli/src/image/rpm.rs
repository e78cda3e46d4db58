//! `wulf image build NAME --rpm RELEASEVER --packages a,b [--repo URL]… [--gpgkey URL]…
//! [--no-gpgcheck]`: a RHEL-like root filesystem made by `dnf --installroot` from the given
//! repositories only (none of the build host's), with every package's signature checked
//! unless `--no-gpgcheck`.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{anyhow, Context};

use crate::args::BuildArgs;
use crate::fail::{usage, Fail};

/// The repositories when none is given: Rocky Linux's BaseOS and AppStream.
const ROCKY_REPOS: [&str; 2] = [
    "https://dl.rockylinux.org/pub/rocky/$releasever/BaseOS/$basearch/os/",
    "https://dl.rockylinux.org/pub/rocky/$releasever/AppStream/$basearch/os/",
];
const ROCKY_KEY: &str = "https://dl.rockylinux.org/pub/rocky/RPM-GPG-KEY-Rocky-$releasever";

fn url_ok(u: &str) -> bool {
    ["http://", "https://", "file:/"]
        .iter()
        .any(|p| u.starts_with(p))
        && !u.chars().any(|c| c.is_whitespace() || c == ',')
}

/// An RPM package name, a group (`@core`) or a capability (`/bin/sh`); no options, no spaces.
fn valid_package(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('-')
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@/+-._:()=<>".contains(&b))
}

/// What `--rpm` refuses before anything is done.
pub(crate) fn check(a: &BuildArgs, releasever: &str) -> Result<(), Fail> {
    if releasever.is_empty()
        || !releasever
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.')
    {
        return Err(usage(format!(
            "--rpm '{releasever}' is not a release version like 9 or 9.4"
        )));
    }
    if a.packages.is_empty() {
        return Err(usage(
            "--rpm installs exactly --packages: name at least one (for Rocky Linux, e.g. --packages @core)",
        ));
    }
    if let Some(bad) = a.packages.iter().find(|p| !valid_package(p)) {
        return Err(usage(format!(
            "--packages: '{bad}' is not an RPM package or group name"
        )));
    }
    if let Some(bad) = a.repo.iter().chain(&a.gpgkey).find(|u| !url_ok(u)) {
        return Err(usage(format!(
            "'{bad}' is not an http://, https:// or file:/ URL"
        )));
    }
    Ok(())
}

/// Install `a.packages` of release `releasever` into `root` with dnf, logging into
/// `work`/dnf.log; on failure, the log's last lines are the error.
pub(crate) fn build(a: &BuildArgs, releasever: &str, root: &Path, work: &Path) -> Result<(), Fail> {
    if !super::build::on_path("dnf") {
        return Err(Fail::Request(anyhow!(
            "dnf is not installed: apt-get install dnf (Debian) or dnf install dnf"
        )));
    }
    let (repos, keys): (Vec<&str>, Vec<&str>) = if a.repo.is_empty() {
        (
            ROCKY_REPOS.to_vec(),
            if a.gpgkey.is_empty() {
                vec![ROCKY_KEY]
            } else {
                a.gpgkey.iter().map(String::as_str).collect()
            },
        )
    } else {
        (
            a.repo.iter().map(String::as_str).collect(),
            a.gpgkey.iter().map(String::as_str).collect(),
        )
    };
    let gpgcheck = !a.no_gpgcheck;
    if gpgcheck && keys.is_empty() {
        return Err(usage(
            "packages from --repo are checked against --gpgkey: give the repositories' key(s), or --no-gpgcheck for unsigned packages of your own",
        ));
    }
    // dnf's own configuration and none of the host's repositories.
    let conf = work.join("dnf.conf");
    let reposdir = work.join("repos.d");
    std::fs::create_dir_all(&reposdir)
        .with_context(|| format!("cannot create {}", reposdir.display()))?;
    std::fs::write(
        &conf,
        format!(
            "[main]\ngpgcheck={}\ninstall_weak_deps=False\nbest=True\nskip_if_unavailable=False\n",
            u8::from(gpgcheck)
        ),
    )
    .with_context(|| format!("cannot write {}", conf.display()))?;
    // The rpm database where RHEL-like systems keep it (Debian's rpm keeps its own in
    // ~/.rpmdb), so the image's own rpm and dnf find what is installed.
    std::fs::write(work.join(".rpmmacros"), "%_dbpath /var/lib/rpm\n")
        .context("cannot write the rpm macros")?;
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let mut cmd = Command::new("dnf");
    cmd.env("HOME", work);
    cmd.arg("-y")
        .arg(format!("--config={}", conf.display()))
        .arg(format!("--setopt=reposdir={}", reposdir.display()))
        .arg(format!("--installroot={}", root.display()))
        .arg(format!("--releasever={releasever}"))
        .arg("--nodocs");
    for (i, r) in repos.iter().enumerate() {
        cmd.arg(format!("--repofrompath=wulf{i},{r}"));
        cmd.arg(format!("--setopt=wulf{i}.gpgcheck={}", u8::from(gpgcheck)));
        if !keys.is_empty() {
            cmd.arg(format!("--setopt=wulf{i}.gpgkey={}", keys.join(" ")));
        }
    }
    cmd.arg("install").args(&a.packages);
    let log_path = work.join("dnf.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    eprintln!(
        "Building release {releasever} with dnf from {} ({}): {}",
        repos.join(", "),
        if gpgcheck {
            "signatures checked"
        } else {
            "signatures NOT checked"
        },
        a.packages.join(",")
    );
    let status = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("cannot open the log")?)
        .stderr(log)
        .status()
        .context("cannot run dnf")?;
    if status.success() {
        // The downloaded packages are no part of the image.
        let cache = root.join("var/cache/dnf");
        if cache.is_dir() {
            std::fs::remove_dir_all(&cache)
                .with_context(|| format!("cannot remove {}", cache.display()))?;
        }
        return Ok(());
    }
    Err(super::build::failed("dnf", status, &log_path))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_and_urls() {
        for ok in [
            "bash",
            "@core",
            "kernel-modules",
            "/bin/sh",
            "python3.11",
            "gcc-c++",
        ] {
            assert!(super::valid_package(ok), "{ok}");
        }
        for bad in ["", "-x", "a b", "--repo=x", "a;b"] {
            assert!(!super::valid_package(bad), "{bad}");
        }
        assert!(super::url_ok("file:///srv/repo"));
        assert!(super::url_ok(
            "https://m/rocky/$releasever/BaseOS/$basearch/os/"
        ));
        assert!(!super::url_ok("ftp://x"));
        assert!(!super::url_ok("http://a b"));
        assert!(!super::url_ok("http://a,b"));
    }
}

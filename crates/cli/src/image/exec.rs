//! `wulf image exec NAME -- CMD…` and `wulf image shell NAME`: change an image by running a
//! command in it. The content is downloaded (and checked against its sha256), unpacked into
//! a scratch directory, and CMD runs chrooted there in its own mount and PID namespaces
//! (`unshare`), with /dev, /proc and /sys mounted and the host's resolv.conf in place of the
//! image's for the while. Exit 0 packs the tree and uploads it as a new version whose
//! parent is the old content (`?parent_sha256=`: the head refuses it if the image changed
//! meanwhile, and keeps the old file while the image names it); any other exit uploads
//! nothing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, Context};
use serde_json::Value;
use sha2::{Digest, Sha256};
use wulf_api::client::encode;
use wulf_model::Kind;

use super::scratch::{need_root, Scratch};
use crate::args::{Cli, ExecArgs, ObjectCmd};
use crate::fail::{usage, Fail};

/// Runs as PID 1 of the new namespaces: mounts, then the command chrooted (as a child, so
/// it gets signals like any process).
const ENTER: &str = r#"set -e
r=$1; shift
mount --rbind /dev "$r/dev"
mount -t proc proc "$r/proc"
mount --rbind /sys "$r/sys"
set +e
chroot "$r" "$@"
"#;

/// Environment passed into the image (everything else is dropped).
const KEEP_ENV: &[&str] = &[
    "TERM",
    "DEBIAN_FRONTEND",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The image and the command: `exec NAME -- CMD…` or `-i NAME exec -- CMD…`.
pub(crate) fn check(cmd: &ObjectCmd, a: &ExecArgs) -> Result<(String, Vec<String>), Fail> {
    let mut words = a.command.clone();
    let name = match cmd.ids_query(&[]) {
        Some(ids) => ids,
        None if words.is_empty() => String::new(),
        None => words.remove(0),
    };
    if words.first().map(String::as_str) == Some("--") {
        words.remove(0);
    }
    if name.is_empty() || name.contains(',') {
        return Err(usage(
            "exec changes one image: wulf image exec NAME -- CMD [ARG...]",
        ));
    }
    if words.first().is_none_or(|p| p.trim().is_empty()) {
        return Err(usage(format!(
            "exec needs a command: wulf image exec {name} -- CMD [ARG...]"
        )));
    }
    Ok((name, words))
}

pub(crate) fn run(cli: &Cli, cmd: &ObjectCmd, a: &ExecArgs) -> Result<(), Fail> {
    let (name, argv) = check(cmd, a)?;
    change(cli, &name, Some(argv))
}

pub(crate) fn shell(cli: &Cli, name: &str) -> Result<(), Fail> {
    change(cli, name, None)
}

/// The image to change: its UID and content (sha256, size).
fn find(c: &wulf_api::Client, name: &str) -> Result<(String, String, u64), Fail> {
    let Some(img) = crate::image::named(c, name, "uid,content,frozen")? else {
        return Err(usage(format!(
            "no image '{name}' (wulf image ls lists them; wulf image build makes one)"
        )));
    };
    crate::image::refuse_frozen(&img, name)?;
    let uid = img
        .get("uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let content = img.get("content");
    let sha = content
        .and_then(|c| c.get("sha256"))
        .and_then(Value::as_str);
    let size = content.and_then(|c| c.get("size")).and_then(Value::as_u64);
    match (sha, size) {
        (Some(s), Some(n)) => Ok((uid, s.to_string(), n)),
        _ => Err(usage(format!(
            "image '{name}' has no content yet (wulf image build {name} … or wulf image create name={name} --from-dir DIR)"
        ))),
    }
}

fn change(cli: &Cli, name: &str, argv: Option<Vec<String>>) -> Result<(), Fail> {
    let c = crate::conn::client(cli)?;
    let (uid, old, _) = find(&c, name)?;
    need_root("changing an image")?;
    let scratch = Scratch::new()?;
    let archive = scratch.path().join("content.tar.gz");
    crate::files::download(&c, Kind::Image, &uid, "content", &archive)?;
    let got = sha256_of(&archive)?;
    if got != old {
        return Err(Fail::Request(anyhow!(
            "the downloaded content of image '{name}' has sha256 {got}, not {old}"
        )));
    }
    let root = scratch.path().join("root");
    std::fs::create_dir(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let out = Command::new("tar")
        .args(["-x", "-p", "-z", "--numeric-owner", "-f"])
        .arg(&archive)
        .arg("-C")
        .arg(&root)
        .output()
        .context("cannot run tar")?;
    if !out.status.success() {
        return Err(Fail::Request(anyhow!(
            "cannot unpack image '{name}': {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    std::fs::remove_file(&archive).ok();
    let argv = match argv {
        Some(a) => a,
        None => vec![shell_of(&root)],
    };
    let code = run_in(&root, &argv)?;
    if code != 0 {
        return Err(Fail::Request(anyhow!(
            "{} exited with {code}: image '{name}' is unchanged",
            argv[0]
        )));
    }
    let packed = crate::image::pack_dir(&root)?;
    drop(scratch);
    let obj = crate::files::upload_with(
        &c,
        Kind::Image,
        &uid,
        "content",
        packed.path(),
        &format!("&parent_sha256={}", encode(&old)),
    )?;
    if cli.json {
        crate::output::print_json(&obj);
    } else {
        let new = obj
            .get("content")
            .and_then(|c| c.get("sha256"))
            .and_then(Value::as_str)
            .unwrap_or("");
        println!(
            "Saved image {name}: content {} (parent {})",
            &new[..new.len().min(12)],
            &old[..12]
        );
    }
    Ok(())
}

/// bash when the image has it, else sh.
fn shell_of(root: &Path) -> String {
    for s in ["bin/bash", "usr/bin/bash"] {
        if std::fs::symlink_metadata(root.join(s)).is_ok() {
            return format!("/{s}");
        }
    }
    "/bin/sh".to_string()
}

pub(crate) fn sha256_of(path: &Path) -> Result<String, Fail> {
    Ok(sha256_file(path)?)
}

/// The sha256 of the file at `path`, as hex.
pub(crate) fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The host's resolv.conf in the image while the command runs; the image's own back after
/// (unless the command wrote a new one).
struct Resolv {
    file: PathBuf,
    saved: PathBuf,
    had: bool,
    ours: Vec<u8>,
}

impl Resolv {
    fn put(root: &Path) -> Result<Resolv, Fail> {
        let etc = root.join("etc");
        std::fs::create_dir_all(&etc)
            .with_context(|| format!("cannot create {}", etc.display()))?;
        let file = etc.join("resolv.conf");
        let saved = etc.join(".resolv.conf.wulf-saved");
        let had = std::fs::symlink_metadata(&file).is_ok();
        if had {
            std::fs::rename(&file, &saved)
                .with_context(|| format!("cannot move {} aside", file.display()))?;
        }
        let ours = std::fs::read("/etc/resolv.conf").unwrap_or_default();
        std::fs::write(&file, &ours).with_context(|| format!("cannot write {}", file.display()))?;
        Ok(Resolv {
            file,
            saved,
            had,
            ours,
        })
    }

    fn restore(self) -> Result<(), Fail> {
        let changed = std::fs::symlink_metadata(&self.file)
            .map(|m| !m.is_file())
            .unwrap_or(true)
            || std::fs::read(&self.file).ok().as_deref() != Some(self.ours.as_slice());
        if changed {
            // The command wrote its own: keep it.
            if self.had {
                std::fs::remove_file(&self.saved).ok();
            }
            return Ok(());
        }
        std::fs::remove_file(&self.file)
            .with_context(|| format!("cannot remove {}", self.file.display()))?;
        if self.had {
            std::fs::rename(&self.saved, &self.file)
                .with_context(|| format!("cannot put back {}", self.file.display()))?;
        }
        Ok(())
    }
}

/// Run `argv` chrooted in `root` in new mount and PID namespaces; its exit code.
fn run_in(root: &Path, argv: &[String]) -> Result<i32, Fail> {
    for d in ["dev", "proc", "sys"] {
        let p = root.join(d);
        if std::fs::symlink_metadata(&p).is_err() {
            std::fs::create_dir(&p).with_context(|| format!("cannot create {}", p.display()))?;
        }
    }
    let resolv = Resolv::put(root)?;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        ENTER,
        "wulf-image",
    ])
    .arg(root)
    .args(argv)
    .env_clear()
    .env("PATH", PATH)
    .env("HOME", "/root")
    .env("LANG", "C.UTF-8");
    for k in KEEP_ENV {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    let status = cmd.status().context("cannot run unshare (util-linux)");
    let restored = resolv.restore();
    let status = status?;
    restored?;
    Ok(status.code().unwrap_or(128))
}

//! `wulf boot create NAME --from-image IMAGE [--kernel-version VER] [--drivers M1,M2]
//! [KEY=VALUE…]` (ClusterWare's scyld-add-boot-config): the image's content is downloaded
//! (and checked against its sha256) and read once, keeping only /boot/vmlinuz-VER and the
//! kernel's modules and firmware (lib/modules, lib/firmware; usr/lib/… in merged-/usr
//! images), in a scratch directory. The initramfs is built from those modules exactly as
//! `wulf initramfs build --root SCRATCH` builds it, so its modules match the kernel; then the
//! boot config is created naming the image, and the kernel and initramfs are uploaded to it.
//! If an upload fails the new boot config is deleted again: it exists complete or not at all.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde_json::Value;
use wulf_api::client::encode;
use wulf_model::Kind;

use crate::args::Cli;
use crate::fail::{usage, Fail};
use crate::image::scratch::Scratch;

/// Fields --from-image sets itself.
const OWN_FIELDS: &[&str] = &["kernel", "initramfs", "image"];

/// The boot config's name (a bare first word or name=NAME) and its other fields.
fn split_name(pairs: &[String]) -> Result<(String, Vec<String>), Fail> {
    let mut name = None;
    let mut rest = Vec::new();
    for (i, p) in pairs.iter().enumerate() {
        if i == 0 && !p.contains('=') {
            name = Some(p.clone());
            continue;
        }
        let (k, v) = crate::fields::split_pair(p)?;
        if k == "name" {
            if name.is_some() {
                return Err(usage("the boot config is named twice"));
            }
            name = Some(v.to_string());
        } else if OWN_FIELDS.contains(&k) {
            return Err(usage(format!(
                "{k}= is set by --from-image (the image, its kernel and a new initramfs): leave it out"
            )));
        } else {
            rest.push(p.clone());
        }
    }
    let name = name
        .ok_or_else(|| usage("name the boot config: wulf boot create NAME --from-image IMAGE"))?;
    wulf_model::check_object_name(&name).map_err(|e| usage(format!("boot config {e}")))?;
    Ok((name, rest))
}

pub(crate) fn create(
    cli: &Cli,
    kind: Kind,
    pairs: &[String],
    image: &str,
    kernel_version: Option<&str>,
    drivers: &[String],
) -> Result<(), Fail> {
    if kind != Kind::Boot {
        return Err(usage("--from-image creates boot configs only"));
    }
    let (name, rest) = split_name(pairs)?;
    let (mut fields, files) = crate::fields::parse_fields(Kind::Boot, &rest)?;
    if !files.is_empty() {
        return Err(usage(
            "--from-image uploads the kernel and initramfs itself: leave out FIELD=@FILE",
        ));
    }
    if let Some(v) = kernel_version {
        if v.is_empty() || v.contains('/') {
            return Err(usage(format!(
                "--kernel-version '{v}' is not a kernel version (as `uname -r` prints it)"
            )));
        }
    }
    // Everything that can be refused is, before the image is downloaded.
    let busybox = PathBuf::from("/bin/busybox");
    if !busybox.is_file() {
        return Err(Fail::Request(anyhow!(
            "the initramfs needs a static busybox at {} (Debian: apt-get install busybox-static)",
            busybox.display()
        )));
    }
    crate::initramfs::find_agent(None).map_err(Fail::Request)?;
    let c = crate::conn::client(cli)?;
    let existing: Vec<Value> = c.get("/boot?fields=name")?;
    if existing
        .iter()
        .any(|o| o.get("name").and_then(Value::as_str) == Some(name.as_str()))
    {
        return Err(Fail::Request(anyhow!(
            "boot config '{name}' exists already (wulf boot -i {name} delete, or choose another name)"
        )));
    }
    let (uid, sha) = find_image(&c, image)?;

    let scratch = Scratch::new()?;
    let archive = scratch.path().join("content.tar.gz");
    crate::files::download(&c, Kind::Image, &uid, "content", &archive)?;
    let got = crate::image::exec::sha256_of(&archive)?;
    if got != sha {
        return Err(Fail::Request(anyhow!(
            "the downloaded content of image '{image}' has sha256 {got}, not {sha}"
        )));
    }
    let root = scratch.path().join("root");
    let kernels = extract_kernel_parts(&archive, &root)
        .with_context(|| format!("cannot read the content of image '{image}'"))?;
    std::fs::remove_file(&archive).ok();
    let ver = choose(image, &kernels, kernel_version)?;
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{ver}"));
    if !root.join("lib/modules").join(&ver).is_dir() {
        return Err(Fail::Request(anyhow!(
            "image '{image}' has /boot/vmlinuz-{ver} but no kernel modules for {ver} \
             (/lib/modules/{ver}): install that kernel's package in the image"
        )));
    }

    let output = scratch.path().join(format!("initramfs-{ver}.img"));
    let args = crate::initramfs::BuildArgs {
        kernel_version: ver.clone(),
        root: root.clone(),
        drivers: drivers.to_vec(),
        no_default_drivers: false,
        busybox,
        agent: None,
        output: output.clone(),
        boot: None,
    };
    let summary = crate::initramfs::build(&args)
        .with_context(|| format!("cannot build the initramfs from image '{image}'"))?;
    if !cli.json {
        println!("{}", summary.text());
    }

    fields.insert("name".into(), Value::String(name.clone()));
    fields.insert("image".into(), Value::String(image.to_string()));
    let made: Vec<Value> = c.send("POST", "/boot?fields=uid,name", &Value::Object(fields))?;
    let boot_uid = made
        .first()
        .and_then(|o| o.get("uid"))
        .and_then(Value::as_str)
        .ok_or_else(|| Fail::Request(anyhow!("the head returned no boot config")))?
        .to_string();
    let uploaded = crate::files::upload(&c, Kind::Boot, &boot_uid, "kernel", &vmlinuz)
        .and_then(|_| crate::files::upload(&c, Kind::Boot, &boot_uid, "initramfs", &output));
    let obj = match uploaded {
        Ok(o) => o,
        Err(e) => {
            // Complete or not at all.
            let gone: Result<wulf_api::Deleted, _> =
                c.delete(&format!("/boot?ids={}", encode(&boot_uid)));
            if let Err(d) = gone {
                eprintln!("wulf: cannot delete the incomplete boot config '{name}': {d}");
            }
            return Err(e);
        }
    };
    drop(scratch);
    if cli.json {
        crate::output::print_json(&[obj]);
    } else {
        println!(
            "Created boot config {name}: image {image}, kernel vmlinuz-{ver} and its initramfs"
        );
    }
    Ok(())
}

/// Image `name`'s UID and content sha256.
fn find_image(c: &wulf_api::Client, name: &str) -> Result<(String, String), Fail> {
    let Some(img) = crate::image::named(c, name, "uid,content")? else {
        return Err(usage(format!(
            "--from-image: no image '{name}' (wulf image ls lists them; wulf image build makes one)"
        )));
    };
    let uid = img.get("uid").and_then(Value::as_str).unwrap_or("");
    let sha = img
        .get("content")
        .and_then(|c| c.get("sha256"))
        .and_then(Value::as_str);
    match sha {
        Some(s) => Ok((uid.to_string(), s.to_string())),
        None => Err(usage(format!(
            "--from-image: image '{name}' has no content yet (wulf image build {name} …)"
        ))),
    }
}

/// The kernel to use: --kernel-version, else the image's only one.
fn choose(image: &str, kernels: &BTreeSet<String>, given: Option<&str>) -> Result<String, Fail> {
    let list = || kernels.iter().cloned().collect::<Vec<_>>().join(", ");
    match (given, kernels.len()) {
        (_, 0) => Err(Fail::Request(anyhow!(
            "image '{image}' has no kernel (no /boot/vmlinuz-*): install one in it, e.g. \
             wulf image exec {image} -- apt-get install -y linux-image-amd64"
        ))),
        (Some(v), _) if kernels.contains(v) => Ok(v.to_string()),
        (Some(v), _) => Err(usage(format!(
            "--kernel-version {v}: image '{image}' has no /boot/vmlinuz-{v} (it has {})",
            list()
        ))),
        (None, 1) => Ok(kernels.iter().next().cloned().unwrap_or_default()),
        (None, _) => Err(usage(format!(
            "image '{image}' has several kernels ({}): choose one with --kernel-version",
            list()
        ))),
    }
}

/// Where an image path goes in the scratch root, if it is a part of a kernel: the kernels
/// in boot/, modules and firmware under lib/ (usr/lib/ in merged-/usr images, stored as lib/).
fn kernel_part(path: &Path) -> Option<PathBuf> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::CurDir | Component::RootDir => {}
            _ => return None,
        }
    }
    let rest: &[&str] = match parts.as_slice() {
        ["usr", "lib", rest @ ..] | ["lib", rest @ ..] => rest,
        ["boot", file] if file.starts_with("vmlinuz-") => {
            return Some(PathBuf::from("boot").join(file))
        }
        _ => return None,
    };
    match rest.first() {
        Some(&"modules") | Some(&"firmware") => {
            Some(rest.iter().fold(PathBuf::from("lib"), |p, c| p.join(c)))
        }
        _ => None,
    }
}

/// A relative symlink at `at` (relative to the root) whose target stays inside the root.
fn link_stays_inside(at: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth = at.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// Read the image archive once, writing its kernels, modules and firmware into `root`
/// (regular files, directories and symlinks that stay inside; nothing else). The kernel
/// releases that have a /boot/vmlinuz-VER file.
fn extract_kernel_parts(archive: &Path, root: &Path) -> Result<BTreeSet<String>> {
    let f = std::fs::File::open(archive)
        .with_context(|| format!("cannot open {}", archive.display()))?;
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(f)));
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let mut kernels = BTreeSet::new();
    for entry in ar.entries().context("not a tar.gz archive")? {
        let mut e = entry.context("a damaged archive")?;
        let path = e.path().context("a damaged archive")?.into_owned();
        let Some(rel) = kernel_part(&path) else {
            continue;
        };
        let dst = root.join(&rel);
        let kind = e.header().entry_type();
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        if kind.is_dir() {
            std::fs::create_dir_all(&dst)
                .with_context(|| format!("cannot create {}", dst.display()))?;
        } else if kind.is_file() {
            // Read through, never following anything already at `dst`.
            if std::fs::symlink_metadata(&dst).is_ok() {
                std::fs::remove_file(&dst)
                    .with_context(|| format!("cannot replace {}", dst.display()))?;
            }
            let mut out = std::fs::File::create(&dst)
                .with_context(|| format!("cannot write {}", dst.display()))?;
            std::io::copy(&mut e, &mut out)
                .with_context(|| format!("cannot write {}", dst.display()))?;
            if let Some(ver) = rel
                .strip_prefix("boot")
                .ok()
                .and_then(|f| f.to_str())
                .and_then(|f| f.strip_prefix("vmlinuz-"))
            {
                kernels.insert(ver.to_string());
            }
        } else if kind.is_symlink() {
            let Some(target) = e.link_name().ok().flatten().map(|t| t.into_owned()) else {
                continue;
            };
            if link_stays_inside(&rel, &target) && std::fs::symlink_metadata(&dst).is_err() {
                std::os::unix::fs::symlink(&target, &dst)
                    .with_context(|| format!("cannot write {}", dst.display()))?;
            }
        } else if kind.is_hard_link() {
            let target = e
                .link_name()
                .ok()
                .flatten()
                .and_then(|t| kernel_part(&t))
                .map(|t| root.join(t));
            if let Some(t) = target.filter(|t| t.is_file()) {
                if std::fs::symlink_metadata(&dst).is_err() {
                    std::fs::hard_link(&t, &dst)
                        .with_context(|| format!("cannot write {}", dst.display()))?;
                }
            }
        }
    }
    Ok(kernels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_parts_and_links() {
        let p = |s: &str| kernel_part(Path::new(s));
        assert_eq!(
            p("./boot/vmlinuz-6.1.0-1-amd64"),
            Some("boot/vmlinuz-6.1.0-1-amd64".into())
        );
        assert_eq!(p("boot/initrd.img-6.1.0-1-amd64"), None);
        assert_eq!(
            p("usr/lib/modules/6.1/kernel/x.ko"),
            Some("lib/modules/6.1/kernel/x.ko".into())
        );
        assert_eq!(p("lib/firmware/a.bin"), Some("lib/firmware/a.bin".into()));
        assert_eq!(p("usr/lib/x86_64-linux-gnu/libc.so.6"), None);
        assert_eq!(p("lib/modules/../../etc/shadow"), None);
        assert!(link_stays_inside(
            Path::new("lib/firmware/a/b"),
            Path::new("../c")
        ));
        assert!(!link_stays_inside(
            Path::new("lib/firmware/b"),
            Path::new("../../../x")
        ));
        assert!(!link_stays_inside(
            Path::new("lib/modules/v/build"),
            Path::new("/usr/src/x")
        ));
    }

    #[test]
    fn names_and_choices() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let (n, rest) = split_name(&s(&["b1", "cmdline=console=ttyS0"]))
            .ok()
            .unwrap();
        assert_eq!((n.as_str(), rest.len()), ("b1", 1));
        assert!(split_name(&s(&["name=b1"])).is_ok());
        assert!(split_name(&s(&["b1", "kernel=@x"])).is_err());
        assert!(split_name(&s(&["cmdline=x"])).is_err());
        let one: BTreeSet<String> = ["6.1"].iter().map(|x| x.to_string()).collect();
        let two: BTreeSet<String> = ["6.1", "6.2"].iter().map(|x| x.to_string()).collect();
        assert_eq!(choose("i", &one, None).ok(), Some("6.1".into()));
        assert!(matches!(choose("i", &two, None), Err(Fail::Usage(_))));
        assert_eq!(choose("i", &two, Some("6.2")).ok(), Some("6.2".into()));
        assert!(matches!(choose("i", &two, Some("7")), Err(Fail::Usage(_))));
        assert!(matches!(
            choose("i", &BTreeSet::new(), None),
            Err(Fail::Request(_))
        ));
    }
}

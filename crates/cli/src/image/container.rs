//! `wulf image build NAME --from-container PATH`: unpack an OCI image into a root
//! filesystem, as Warewulf's container import does. PATH is an OCI image layout directory
//! (`oci-layout`, `index.json`, `blobs/sha256/…`: what `skopeo copy … oci:DIR`, `umoci` and
//! `buildah push … oci:DIR` write) or a tar of one (`oci-archive:`, `docker save` of Docker 25
//! and later); the older `docker save` tar (`manifest.json` naming the layer files) is read
//! too.
//!
//! index.json → the manifest (for linux/amd64 when an index lists several) → its layers, in
//! order, each checked against its sha256. Each layer (plain or gzip'd tar) first applies its
//! whiteouts to what the layers below made — `.wh.NAME` removes NAME, `.wh..wh..opq` empties
//! its directory — then is unpacked over them (GNU tar, owners and modes kept, whiteout files
//! left out).

use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Unpack the OCI image at `src` into the empty directory `root`; `work` is scratch space
/// (a tarball is unpacked there first).
pub(crate) fn unpack(src: &Path, root: &Path, work: &Path) -> Result<()> {
    let layout = if src.is_dir() {
        src.to_path_buf()
    } else {
        let dir = work.join("layout");
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        match crate::image::sniff(src)? {
            crate::image::Format::Tar | crate::image::Format::TarGz => {}
            crate::image::Format::Other(what) => bail!(
                "{} is {what}: --from-container takes an OCI layout directory or a tar of one",
                src.display()
            ),
        }
        gnu_tar(&["-xf"], src, &dir).with_context(|| format!("cannot unpack {}", src.display()))?;
        dir
    };
    let layers = layers(&layout)?;
    if layers.is_empty() {
        bail!("{}: the image has no layers", src.display());
    }
    for (i, layer) in layers.iter().enumerate() {
        let rel = layer.strip_prefix(&layout).unwrap_or(layer);
        eprintln!("Layer {}/{}: {}", i + 1, layers.len(), rel.display());
        apply_whiteouts(layer, root).with_context(|| format!("layer {}", rel.display()))?;
        gnu_tar(
            &[
                "-x",
                "--numeric-owner",
                "--same-permissions",
                "--exclude=.wh.*",
                "-f",
            ],
            layer,
            root,
        )
        .with_context(|| format!("cannot unpack layer {}", rel.display()))?;
    }
    Ok(())
}

/// The layer files of the image in `layout`, bottom first, each checked.
fn layers(layout: &Path) -> Result<Vec<PathBuf>> {
    let index_path = layout.join("index.json");
    if index_path.is_file() {
        let index = read_json(&index_path)?;
        let manifest = pick_manifest(layout, &index, 0)?;
        let layers = manifest
            .get("layers")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("the manifest lists no layers"))?;
        return layers
            .iter()
            .map(|l| {
                let digest = l
                    .get("digest")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("a layer has no digest"))?;
                let media = l.get("mediaType").and_then(Value::as_str).unwrap_or("");
                if media.ends_with("+zstd") {
                    bail!(
                        "layer {digest} is zstd-compressed: only plain and gzip'd layers are read"
                    );
                }
                blob(layout, digest)
            })
            .collect();
    }
    let docker = layout.join("manifest.json");
    if docker.is_file() {
        let m = read_json(&docker)?;
        let layers = m
            .get(0)
            .and_then(|m| m.get("Layers"))
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("manifest.json lists no Layers"))?;
        return layers
            .iter()
            .map(|l| {
                let rel = l
                    .as_str()
                    .ok_or_else(|| anyhow!("manifest.json: a layer is not a path"))?;
                inside(layout, rel)
            })
            .collect();
    }
    bail!(
        "{} is not an OCI image layout (no index.json) nor a docker save (no manifest.json)",
        layout.display()
    )
}

/// The image manifest `index` leads to: itself when it is one, else the entry for
/// linux/amd64 (or the only entry), following nested indexes.
fn pick_manifest(layout: &Path, index: &Value, depth: u32) -> Result<Value> {
    if depth > 4 {
        bail!("index.json: indexes nested too deep");
    }
    if index.get("layers").is_some() {
        return Ok(index.clone());
    }
    let list = index
        .get("manifests")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| anyhow!("index.json lists no manifests"))?;
    let amd64 = |m: &&Value| {
        let p = m.get("platform");
        let field = |k: &str| p.and_then(|p| p.get(k)).and_then(Value::as_str);
        field("os").is_none_or(|o| o == "linux")
            && field("architecture").is_none_or(|a| a == "amd64")
    };
    let entry = match list.as_slice() {
        [one] => one,
        many => many.iter().find(amd64).ok_or_else(|| {
            anyhow!(
                "index.json lists {} manifests and none for linux/amd64",
                many.len()
            )
        })?,
    };
    let digest = entry
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("index.json: a manifest has no digest"))?;
    let next = read_json(&blob(layout, digest)?)?;
    let media = entry.get("mediaType").and_then(Value::as_str).unwrap_or("");
    if media == INDEX || media == DOCKER_LIST || next.get("manifests").is_some() {
        return pick_manifest(layout, &next, depth + 1);
    }
    Ok(next)
}

/// The blob `sha256:HEX` of `layout`, checked against its digest.
fn blob(layout: &Path, digest: &str) -> Result<PathBuf> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| wulf_model::is_sha256(h))
        .ok_or_else(|| anyhow!("digest '{digest}' is not sha256:HEX"))?;
    let path = layout.join("blobs/sha256").join(hex);
    if !path.is_file() {
        bail!("blob {digest} is missing ({})", path.display());
    }
    let got = super::exec::sha256_file(&path)?;
    if got != hex {
        bail!("blob {digest} is damaged: its sha256 is {got}");
    }
    Ok(path)
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// `rel` inside `base`: no `..`, not absolute.
fn inside(base: &Path, rel: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        bail!("'{rel}' leaves the image");
    }
    Ok(base.join(p))
}

/// A layer's entries as a tar stream (gzip'd or plain).
fn open_layer(layer: &Path) -> Result<Box<dyn Read>> {
    let mut f =
        std::fs::File::open(layer).with_context(|| format!("cannot open {}", layer.display()))?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    let f = std::fs::File::open(layer)?;
    Ok(if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    })
}

/// Apply the layer's whiteouts to `root` (what the layers below made).
fn apply_whiteouts(layer: &Path, root: &Path) -> Result<()> {
    let mut ar = tar::Archive::new(open_layer(layer)?);
    for e in ar.entries().context("cannot read the layer")? {
        let e = e.context("cannot read the layer")?;
        let path = e.path().context("a bad path in the layer")?.into_owned();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.starts_with(WHITEOUT) {
            continue;
        }
        let parent = path.parent().unwrap_or(Path::new(""));
        let Some(dir) = resolve(root, parent)? else {
            continue;
        };
        if name == OPAQUE {
            let Ok(list) = std::fs::read_dir(&dir) else {
                continue;
            };
            for child in list {
                remove(&child?.path())?;
            }
        } else {
            let target = &name[WHITEOUT.len()..];
            if target.is_empty() || target == "." || target == ".." || target.contains('/') {
                bail!("a bad whiteout {}", path.display());
            }
            let victim = dir.join(target);
            if std::fs::symlink_metadata(&victim).is_ok() {
                remove(&victim)?;
            }
        }
    }
    Ok(())
}

/// `rel` under `root` when it is a directory reached without symlinks (None when it does
/// not exist); a path that leaves the image is an error.
fn resolve(root: &Path, rel: &Path) -> Result<Option<PathBuf>> {
    let mut at = root.to_path_buf();
    for c in rel.components() {
        match c {
            Component::Normal(n) => at.push(n),
            Component::CurDir => continue,
            _ => bail!("whiteout path {} leaves the image", rel.display()),
        }
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            _ => return Ok(None),
        }
    }
    Ok(Some(at))
}

fn remove(p: &Path) -> Result<()> {
    let m = std::fs::symlink_metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
    if m.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    }
    .with_context(|| format!("cannot remove {}", p.display()))
}

/// GNU tar with `args` then `archive`, into `dir`.
fn gnu_tar(args: &[&str], archive: &Path, dir: &Path) -> Result<()> {
    let out = Command::new("tar")
        .args(args)
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .output()
        .context("cannot run tar")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last: Vec<&str> = err.lines().rev().take(5).collect();
        bail!(
            "tar failed ({}): {}",
            out.status,
            last.into_iter().rev().collect::<Vec<_>>().join("; ")
        );
    }
    Ok(())
}

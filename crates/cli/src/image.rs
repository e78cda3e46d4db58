//! `wulf image create name=X --from-dir DIR | --from-tar FILE`: pack a root filesystem as a
//! tar.gz (modes, ownership, symlinks, hard links and device nodes kept) in a temporary file,
//! then create the image if it does not exist and upload the archive as its `content`.

pub(crate) mod build;
pub(crate) mod container;
pub(crate) mod exec;
pub(crate) mod ls;
pub(crate) mod rpm;
pub(crate) mod scratch;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use wulf_api::client::encode;
use wulf_model::Kind;

use crate::args::Cli;
use crate::fail::Fail;

/// What to upload: a packed temporary file, or the user's own .tar.gz as it is.
pub(crate) enum Packed {
    Temp(tempfile::NamedTempFile),
    AsIs(PathBuf),
}

impl Packed {
    pub(crate) fn path(&self) -> &Path {
        match self {
            Packed::Temp(t) => t.path(),
            Packed::AsIs(p) => p,
        }
    }
}

pub(crate) fn create(
    cli: &Cli,
    kind: Kind,
    pairs: &[String],
    from_dir: Option<&Path>,
    from_tar: Option<&Path>,
) -> Result<(), Fail> {
    if kind != Kind::Image {
        return Err(crate::fail::usage(
            "--from-dir and --from-tar create images only",
        ));
    }
    let (fields, files) = crate::fields::parse_fields(kind, pairs)?;
    if !files.is_empty() {
        return Err(crate::fail::usage(
            "give the content either as content=@FILE or with --from-dir/--from-tar, not both",
        ));
    }
    let Some(name) = fields
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Err(crate::fail::usage(
            "name the image: wulf image create name=NAME --from-dir DIR",
        ));
    };
    // Pack first: a bad directory or archive changes nothing on the head.
    let packed = match (from_dir, from_tar) {
        (Some(d), None) => Packed::Temp(pack_dir(d).map_err(Fail::Request)?),
        (None, Some(t)) => from_tar_file(t).map_err(Fail::Request)?,
        _ => {
            return Err(crate::fail::usage(
                "give one of --from-dir DIR or --from-tar FILE",
            ))
        }
    };
    let c = crate::conn::client(cli)?;
    let (verb, uid) = upsert(&c, &name, fields)?;
    let obj = crate::files::upload(&c, kind, &uid, "content", packed.path())?;
    crate::objects::report(cli, verb, kind, &[obj]);
    Ok(())
}

/// Image `name` as the head lists it with `fields` (and its name), if there is one.
pub(crate) fn named(c: &wulf_api::Client, name: &str, fields: &str) -> Result<Option<Value>, Fail> {
    let all: Vec<Value> = c.get(&format!("/image?fields=name,{fields}"))?;
    Ok(all
        .into_iter()
        .find(|o| o.get("name").and_then(Value::as_str) == Some(name)))
}

/// Refused when `img` (listed with `frozen`) is frozen: its content may not change.
pub(crate) fn refuse_frozen(img: &Value, name: &str) -> Result<(), Fail> {
    if img.get("frozen").and_then(Value::as_bool) == Some(true) {
        return Err(Fail::Request(anyhow::anyhow!(
            "image '{name}' is frozen; set frozen=false first"
        )));
    }
    Ok(())
}

/// Find image `name` (updating its other `fields`) or create it: the verb to report and its
/// UID.
pub(crate) fn upsert(
    c: &wulf_api::Client,
    name: &str,
    fields: serde_json::Map<String, Value>,
) -> Result<(&'static str, String), Fail> {
    let found = named(c, name, "uid")?
        .and_then(|o| o.get("uid").and_then(Value::as_str).map(str::to_string));
    Ok(match found {
        Some(uid) => {
            let mut rest = fields.clone();
            rest.remove("name");
            if !rest.is_empty() {
                let req = wulf_api::UpdateRequest {
                    fields: rest,
                    ..Default::default()
                };
                let _: Vec<Value> = c.send(
                    "PATCH",
                    &format!("/image?ids={}&fields=uid", encode(&uid)),
                    &req,
                )?;
            }
            ("Updated", uid)
        }
        None => {
            let objs: Vec<Value> =
                c.send("POST", "/image?fields=uid,name", &Value::Object(fields))?;
            let uid = objs
                .first()
                .and_then(|o| o.get("uid"))
                .and_then(Value::as_str)
                .ok_or_else(|| Fail::Request(anyhow!("the head returned no image")))?;
            ("Created", uid.to_string())
        }
    })
}

/// A progress line for packing: files and bytes so far.
fn spinner() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    let style = indicatif::ProgressStyle::with_template("{spinner} packing {msg} {elapsed}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
    bar.set_style(style);
    bar
}

/// Pack `dir` as a tar.gz in a temporary file. Paths are relative (`bin/sh`), ownership is
/// numeric and kept, symlinks stay symlinks, hard links stay hard links, device nodes and
/// FIFOs are kept; sockets are left out (they mean nothing in an archive).
pub(crate) fn pack_dir(dir: &Path) -> Result<tempfile::NamedTempFile> {
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let tmp = tempfile::NamedTempFile::new().context("cannot create a temporary file")?;
    let gz = flate2::write::GzEncoder::new(
        std::io::BufWriter::new(tmp.as_file()),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    let bar = spinner();
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut skipped = Vec::new();
    // Depth-first, sorted, so the same tree packs the same way.
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = dir.join(&rel);
        let mut names: Vec<PathBuf> = std::fs::read_dir(&full)
            .with_context(|| format!("cannot read {}", full.display()))?
            .map(|e| e.map(|e| rel.join(e.file_name())))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("cannot read {}", full.display()))?;
        names.sort();
        let mut subdirs = Vec::new();
        for name in names {
            let path = dir.join(&name);
            let m = std::fs::symlink_metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let ft = m.file_type();
            use std::os::unix::fs::FileTypeExt;
            if ft.is_socket() {
                skipped.push(name);
                continue;
            }
            if ft.is_file() && m.nlink() > 1 {
                if let Some(first) = links.get(&(m.dev(), m.ino())) {
                    let mut h = tar::Header::new_gnu();
                    h.set_metadata_in_mode(&m, tar::HeaderMode::Complete);
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    tar.append_link(&mut h, &name, first)
                        .with_context(|| format!("cannot pack {}", path.display()))?;
                    files += 1;
                    continue;
                }
                links.insert((m.dev(), m.ino()), name.clone());
            }
            if ft.is_dir() {
                tar.append_dir(&name, &path)
                    .with_context(|| format!("cannot pack {}", path.display()))?;
                subdirs.push(name);
            } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
                // By hand: the tar crate names special files by their full path.
                let mut h = tar::Header::new_gnu();
                h.set_metadata_in_mode(&m, tar::HeaderMode::Complete);
                h.set_entry_type(if ft.is_char_device() {
                    tar::EntryType::Char
                } else if ft.is_block_device() {
                    tar::EntryType::Block
                } else {
                    tar::EntryType::Fifo
                });
                let rdev = m.rdev();
                h.set_device_major(libc::major(rdev))
                    .and_then(|()| h.set_device_minor(libc::minor(rdev)))
                    .with_context(|| format!("cannot pack {}", path.display()))?;
                h.set_size(0);
                tar.append_data(&mut h, &name, std::io::empty())
                    .with_context(|| format!("cannot pack {}", path.display()))?;
            } else {
                tar.append_path_with_name(&path, &name)
                    .with_context(|| format!("cannot pack {}", path.display()))?;
                if ft.is_file() {
                    bytes += m.len();
                }
            }
            files += 1;
            if files % 256 == 0 {
                bar.set_message(format!("{files} files, {} MiB", bytes >> 20));
                bar.tick();
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    let gz = tar.into_inner().context("cannot finish the archive")?;
    let mut out = gz.finish().context("cannot finish the archive")?;
    out.flush().context("cannot write the archive")?;
    drop(out);
    bar.finish_and_clear();
    if files == 0 {
        bail!("{} is empty", dir.display());
    }
    for s in &skipped {
        eprintln!("wulf: left out socket {}", s.display());
    }
    let packed = tmp.as_file().metadata().map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "Packed {} ({files} files, {:.1} MiB) into {:.1} MiB",
        dir.display(),
        bytes as f64 / 1048576.0,
        packed as f64 / 1048576.0
    );
    Ok(tmp)
}

/// What kind of archive a file starts with.
#[derive(Debug, PartialEq)]
pub(crate) enum Format {
    Tar,
    TarGz,
    Other(&'static str),
}

fn is_tar_header(b: &[u8]) -> bool {
    b.len() >= 262 && &b[257..262] == b"ustar"
}

pub(crate) fn sniff(path: &Path) -> Result<Format> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut head = vec![0u8; 512];
    let mut n = 0;
    while n < head.len() {
        let r = f
            .read(&mut head[n..])
            .with_context(|| format!("cannot read {}", path.display()))?;
        if r == 0 {
            break;
        }
        n += r;
    }
    head.truncate(n);
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut inner = vec![0u8; 512];
        let f = std::fs::File::open(path)?;
        let mut d = flate2::read::GzDecoder::new(f);
        let mut got = 0;
        while got < inner.len() {
            match d.read(&mut inner[got..]) {
                Ok(0) => break,
                Ok(r) => got += r,
                Err(_) => return Ok(Format::Other("a damaged gzip file")),
            }
        }
        return Ok(if is_tar_header(&inner[..got]) {
            Format::TarGz
        } else {
            Format::Other("gzip, but not of a tar archive")
        });
    }
    if is_tar_header(&head) {
        return Ok(Format::Tar);
    }
    Ok(Format::Other(
        if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            "xz-compressed (unpack it with xz -d and give the .tar)"
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            "zstd-compressed (unpack it with zstd -d and give the .tar)"
        } else if head.starts_with(b"BZh") {
            "bzip2-compressed (unpack it with bunzip2 and give the .tar)"
        } else if head.starts_with(b"PK\x03\x04") {
            "a zip file"
        } else if head.starts_with(b"070701") || head.starts_with(b"070707") {
            "a cpio archive"
        } else if head.is_empty() {
            "empty"
        } else {
            "not a tar archive"
        },
    ))
}

/// `--from-tar`: a .tar.gz is uploaded as it is; a plain .tar is gzip'd into a temporary file.
pub(crate) fn from_tar_file(path: &Path) -> Result<Packed> {
    match sniff(path)? {
        Format::TarGz => Ok(Packed::AsIs(path.to_path_buf())),
        Format::Tar => {
            let mut src = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let len = src.metadata().map(|m| m.len()).unwrap_or(0);
            let tmp = tempfile::NamedTempFile::new().context("cannot create a temporary file")?;
            let bar = crate::output::bytes_bar(len, "compressing");
            let mut gz = flate2::write::GzEncoder::new(
                std::io::BufWriter::new(tmp.as_file()),
                flate2::Compression::default(),
            );
            std::io::copy(&mut bar.wrap_read(&mut src), &mut gz)
                .with_context(|| format!("cannot compress {}", path.display()))?;
            let mut out = gz.finish().context("cannot write the archive")?;
            out.flush().context("cannot write the archive")?;
            drop(out);
            bar.finish_and_clear();
            Ok(Packed::Temp(tmp))
        }
        Format::Other(what) => bail!(
            "{} is {what}: --from-tar takes a .tar or .tar.gz",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_a_tree_and_knows_formats() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/prog"), b"#!/bin/sh\necho hi\n").unwrap();
        std::os::unix::fs::symlink("prog", root.join("bin/alias")).unwrap();
        std::fs::hard_link(root.join("bin/prog"), root.join("bin/again")).unwrap();
        let fifo = std::ffi::CString::new(root.join("bin/fifo").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o640) }, 0);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            root.join("bin/prog"),
            std::fs::Permissions::from_mode(0o751),
        )
        .unwrap();
        let tmp = pack_dir(&root).unwrap();
        assert_eq!(sniff(tmp.path()).unwrap(), Format::TarGz);
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(tmp.path()).unwrap(),
        ));
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            seen.push((
                e.path().unwrap().display().to_string(),
                h.entry_type(),
                h.mode().unwrap() & 0o7777,
            ));
        }
        assert!(seen.contains(&("bin".into(), tar::EntryType::Directory, 0o755)));
        // bin/again and bin/prog are one file: stored once (mode kept), then as a hard link.
        assert!(seen.contains(&("bin/again".into(), tar::EntryType::Regular, 0o751)));
        assert!(seen.contains(&("bin/alias".into(), tar::EntryType::Symlink, 0o777)));
        assert!(seen.contains(&("bin/fifo".into(), tar::EntryType::Fifo, 0o640)));
        assert!(seen
            .iter()
            .any(|(p, t, _)| p == "bin/prog" && *t == tar::EntryType::Link));

        // A plain tar is compressed; other formats are refused.
        let plain = d.path().join("x.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&plain).unwrap());
        b.append_dir_all("bin", root.join("bin")).unwrap();
        b.finish().unwrap();
        drop(b);
        assert_eq!(sniff(&plain).unwrap(), Format::Tar);
        let Packed::Temp(t) = from_tar_file(&plain).unwrap() else {
            panic!("a plain tar must be compressed")
        };
        assert_eq!(sniff(t.path()).unwrap(), Format::TarGz);
        let xz = d.path().join("x.tar.xz");
        std::fs::write(&xz, b"\xfd7zXZ\x00rest").unwrap();
        let e = from_tar_file(&xz).err().unwrap().to_string();
        assert!(e.contains("xz-compressed"), "{e}");
        let junk = d.path().join("junk");
        std::fs::write(&junk, b"hello").unwrap();
        assert!(from_tar_file(&junk).is_err());
        assert!(pack_dir(&d.path().join("missing")).is_err());
    }
}

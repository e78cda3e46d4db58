//! `wulf cluster backup -o FILE [--files] [--force]`: the head's backup (JSON lines, see
//! docs/admin/backup.md), checked as it arrives; with `--files` a tar that also carries every
//! file the objects use, each checked against its sha256.

use std::io::{BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::args::Cli;
use crate::conn::client;
use crate::fail::{usage, Fail};

/// The backup's name inside the tar (what `wulfd restore` looks for first).
const TAR_BACKUP_NAME: &str = "wulf-backup.jsonl";

/// The records of a backup this side reads.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    Header {
        version: u32,
        revision: i64,
        cluster: String,
    },
    File {
        sha256: String,
        size: u64,
        kind: String,
        uid: String,
        name: String,
        field: String,
    },
    End {
        objects: u64,
        keys: u64,
        files: u64,
        sha256: String,
    },
}

/// A file the backup lists.
struct FileRec {
    sha256: String,
    size: u64,
    kind: String,
    uid: String,
    name: String,
    field: String,
}

/// What a complete backup said about itself.
struct Summary {
    revision: i64,
    cluster: String,
    objects: u64,
    keys: u64,
    files: Vec<FileRec>,
}

fn failed(msg: impl std::fmt::Display) -> Fail {
    Fail::Request(anyhow::anyhow!("{msg}"))
}

/// Copy the backup from `r` to `w`, checking that it is whole: a header first, an end record
/// last whose checksum matches what came before it.
fn copy_checked(r: impl Read, w: &mut impl Write) -> Result<Summary, Fail> {
    let mut r = BufReader::with_capacity(1 << 20, r);
    let mut hasher = Sha256::new();
    let mut line = Vec::new();
    let mut n = 0u64;
    let mut head: Option<(i64, String)> = None;
    let mut files = Vec::new();
    let write_err = |e: std::io::Error| failed(format!("cannot write the backup: {e}"));
    loop {
        line.clear();
        let got = r
            .read_until(b'\n', &mut line)
            .map_err(|e| failed(format!("the backup from the head broke off: {e}")))?;
        if got == 0 {
            return Err(failed(format!(
                "the backup from the head ended after {n} lines without its end record; \
                 nothing was kept (try again)"
            )));
        }
        n += 1;
        w.write_all(&line).map_err(write_err)?;
        let parsed = if n == 1
            || line.starts_with(b"{\"type\":\"file\"")
            || line.starts_with(b"{\"type\":\"end\"")
        {
            Some(serde_json::from_slice::<Line>(&line).map_err(|e| {
                failed(format!(
                    "the head's backup line {n} cannot be read ({e}); is the head a wulfd?"
                ))
            })?)
        } else {
            None
        };
        match parsed {
            Some(Line::Header {
                version,
                revision,
                cluster,
            }) if n == 1 => {
                if version != 1 {
                    return Err(failed(format!(
                        "the head writes backup format {version}; this wulf reads 1 (use the \
                         head's version of wulf)"
                    )));
                }
                head = Some((revision, cluster));
            }
            _ if n == 1 => return Err(failed("the head's answer is not a wulf backup")),
            Some(Line::File {
                sha256,
                size,
                kind,
                uid,
                name,
                field,
            }) => files.push(FileRec {
                sha256,
                size,
                kind,
                uid,
                name,
                field,
            }),
            Some(Line::End {
                objects,
                keys,
                files: count,
                sha256,
            }) => {
                if hex::encode(hasher.finalize()) != sha256 || count != files.len() as u64 {
                    return Err(failed(
                        "the backup from the head does not match its own checksum; nothing \
                         was kept (try again)",
                    ));
                }
                let (revision, cluster) = head.unwrap_or_default();
                return Ok(Summary {
                    revision,
                    cluster,
                    objects,
                    keys,
                    files,
                });
            }
            _ => {}
        }
        hasher.update(&line);
    }
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// `1.5 MiB`.
pub(crate) fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn tar_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o600);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    h
}

pub(crate) fn run(
    cli: &Cli,
    kind: wulf_model::Kind,
    output: &Path,
    with_files: bool,
    force: bool,
) -> Result<(), Fail> {
    if kind != wulf_model::Kind::Cluster {
        return Err(usage(
            "backup is a cluster action: wulf cluster backup -o FILE",
        ));
    }
    if output.as_os_str() == "-" {
        return Err(usage(
            "-o needs a file name (a backup is not written to stdout)",
        ));
    }
    if output.is_dir() {
        return Err(usage(format!(
            "{} is a directory; -o names the backup file",
            output.display()
        )));
    }
    if output.exists() && !force {
        return Err(usage(format!(
            "{} exists; give --force to overwrite it",
            output.display()
        )));
    }
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(usage(format!("no directory {}", dir.display())));
    }
    let c = client(cli)?;
    let started = std::time::Instant::now();
    let (_, reader) = c.download("/cluster/backup")?;
    let mut jsonl = tempfile::Builder::new()
        .prefix(".wulf-backup-")
        .tempfile_in(&dir)
        .map_err(|e| usage(format!("cannot write in {}: {e}", dir.display())))?;
    let summary = {
        let mut w = BufWriter::with_capacity(1 << 20, jsonl.as_file_mut());
        let s = copy_checked(reader, &mut w)?;
        w.flush()
            .map_err(|e| failed(format!("cannot write the backup: {e}")))?;
        s
    };
    let done = if with_files {
        write_tar(&c, &dir, jsonl, &summary)?
    } else {
        jsonl
    };
    done.as_file()
        .sync_all()
        .map_err(|e| failed(format!("cannot write the backup: {e}")))?;
    done.persist(output)
        .map_err(|e| failed(format!("cannot write {}: {}", output.display(), e.error)))?;
    let mut distinct: Vec<&str> = summary.files.iter().map(|f| f.sha256.as_str()).collect();
    distinct.sort();
    distinct.dedup();
    let bytes: u64 = {
        let mut seen = std::collections::HashSet::new();
        summary
            .files
            .iter()
            .filter(|f| seen.insert(f.sha256.as_str()))
            .map(|f| f.size)
            .sum()
    };
    println!(
        "wrote {}: cluster '{}' at revision {}: {} objects, {} keys (secrets included: keep \
         this file safe), {} files of {}{} in {:.1}s",
        output.display(),
        summary.cluster,
        summary.revision,
        summary.objects,
        summary.keys,
        distinct.len(),
        human_bytes(bytes),
        if with_files {
            " carried"
        } else {
            " listed (not carried: --files does)"
        },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The tar: the backup first, then `files/SHA256` for every distinct file, downloaded from
/// the head and checked against its sha256 and size.
fn write_tar(
    c: &wulf_api::Client,
    dir: &Path,
    mut jsonl: tempfile::NamedTempFile,
    summary: &Summary,
) -> Result<tempfile::NamedTempFile, Fail> {
    let io = |e: std::io::Error| failed(format!("cannot write the backup: {e}"));
    let mut out = tempfile::Builder::new()
        .prefix(".wulf-backup-")
        .tempfile_in(dir)
        .map_err(io)?;
    {
        let mut b = tar::Builder::new(BufWriter::with_capacity(1 << 20, out.as_file_mut()));
        let len = jsonl.as_file().metadata().map_err(io)?.len();
        jsonl.as_file_mut().rewind().map_err(io)?;
        let mut h = tar_header(len);
        b.append_data(&mut h, TAR_BACKUP_NAME, jsonl.as_file_mut())
            .map_err(io)?;
        let mut seen = std::collections::HashSet::new();
        for f in &summary.files {
            if !seen.insert(f.sha256.to_ascii_lowercase()) {
                continue;
            }
            let what = format!("{} '{}' {}", f.kind, f.name, f.field);
            let (_, r) = c
                .download(&format!("/{}/{}/files/{}", f.kind, f.uid, f.field))
                .map_err(|e| failed(format!("cannot download {what}: {e}")))?;
            let mut r = r;
            let mut hashing = Hashing {
                inner: (&mut r).take(f.size),
                hasher: Sha256::new(),
                count: 0,
            };
            let mut h = tar_header(f.size);
            b.append_data(&mut h, format!("files/{}", f.sha256), &mut hashing)
                .map_err(|e| failed(format!("cannot download {what}: {e}")))?;
            let (count, got) = (hashing.count, hex::encode(hashing.hasher.finalize()));
            let mut extra = [0u8; 1];
            let more = r.read(&mut extra).unwrap_or(0);
            if count != f.size || more != 0 {
                return Err(failed(format!(
                    "{what}: the head sent {} bytes, not the {} its object names; nothing \
                     was kept",
                    count + more as u64,
                    f.size
                )));
            }
            if !got.eq_ignore_ascii_case(&f.sha256) {
                return Err(failed(format!(
                    "{what}: the head sent content whose sha256 is {got}, not {}; nothing was \
                     kept",
                    f.sha256
                )));
            }
        }
        b.into_inner().map_err(io)?.flush().map_err(io)?;
    }
    Ok(out)
}

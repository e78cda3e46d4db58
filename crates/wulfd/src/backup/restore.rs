//! `wulfd restore FILE [--files DIR|TAR]`: write a backup into an empty store.
//!
//! Everything is checked before anything is written: the whole backup is read and each
//! record parsed and validated (objects as the API validates them, their names, MACs, IPs
//! and indexes unique), its end record's counts and checksum compared, and the store checked
//! to hold no wulf key. Then the files (from the backup's tar, or `--files`) go into the data
//! directory's file store, each checked against its sha256, and the keys are written: with
//! the embedded store in one transaction; with etcd in transactions that fit its limits,
//! behind a marker key ([`super::UNFINISHED_KEY`]) written first and deleted last. When a
//! write fails, what was written is deleted again; if even that fails, the marker stays, heads
//! refuse to start on the store, and the next `wulfd restore` clears it first.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use sha2::{Digest, Sha256};
use wulf_model::{Kind, CLUSTER_UID};
use wulf_store::{Expect, Op, Store, StoreError, Txn};

use super::{file_fields, kept_key, Record, FORMAT, UNFINISHED_KEY, VERSION};
use crate::blobs::Blobs;
use crate::config::Config;
use crate::objects::{describe_unique_key, obj_key, AnyObj};

/// The backup's file name inside the tar `wulf cluster backup --files` writes.
pub const TAR_BACKUP_NAME: &str = "wulf-backup.jsonl";

/// The input is not a usable backup (exit code 2; nothing was written).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadBackup(pub String);

fn bad(msg: impl Into<String>) -> anyhow::Error {
    BadBackup(msg.into()).into()
}

/// A backup read and checked, ready to write.
#[derive(Debug)]
pub struct Checked {
    pub revision: i64,
    pub cluster: String,
    pub objects: Vec<AnyObj>,
    pub keys: Vec<(String, Vec<u8>)>,
}

impl Checked {
    /// Every file the objects refer to: sha256 → (size, the objects and fields using it).
    pub fn files(&self) -> HashMap<String, (u64, Vec<String>)> {
        let mut out: HashMap<String, (u64, Vec<String>)> = HashMap::new();
        for o in &self.objects {
            for (field, f) in file_fields(o) {
                let e = out
                    .entry(f.sha256.to_ascii_lowercase())
                    .or_insert((f.size, Vec::new()));
                e.1.push(format!("{} '{}' {field}", o.kind().title(), o.name()));
            }
        }
        out
    }
}

/// Read and check a backup (JSON lines) from `r`; `what` names it in errors.
pub fn read_backup(r: impl Read, what: &str) -> anyhow::Result<Checked> {
    let mut r = BufReader::with_capacity(1 << 20, r);
    let mut hasher = Sha256::new();
    let mut line = Vec::new();
    let mut n = 0usize;
    let mut header: Option<(i64, String)> = None;
    let mut objects = Vec::new();
    let mut seen_objects: HashSet<(Kind, String)> = HashSet::new();
    let mut unique: HashMap<String, String> = HashMap::new();
    let mut keys: Vec<(String, Vec<u8>)> = Vec::new();
    let mut seen_keys: HashSet<String> = HashSet::new();
    let mut file_records = 0u64;
    let mut ended = false;
    loop {
        line.clear();
        let got = r
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {what}"))?;
        if got == 0 {
            break;
        }
        n += 1;
        if ended {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Err(bad(format!(
                "{what} line {n}: something follows the end record (two backups joined?)"
            )));
        }
        if line.last() != Some(&b'\n') {
            return Err(bad(format!(
                "{what} is truncated: line {n} is cut off and there is no end record (the \
                 backup did not finish)"
            )));
        }
        let rec: Record = serde_json::from_slice(&line).map_err(|e| {
            bad(format!(
                "{what} line {n}: not a backup record ({e}); the file is damaged or not a wulf \
                 backup"
            ))
        })?;
        if n == 1 && !matches!(rec, Record::Header { .. }) {
            return Err(bad(format!(
                "{what} line 1: not a wulf backup (no header record)"
            )));
        }
        match rec {
            Record::Header {
                format,
                version,
                revision,
                cluster,
                ..
            } => {
                if n != 1 {
                    return Err(bad(format!(
                        "{what} line {n}: a second header (two backups joined?)"
                    )));
                }
                if format != FORMAT {
                    return Err(bad(format!(
                        "{what} line 1: format '{format}' is not {FORMAT}"
                    )));
                }
                if version != VERSION {
                    return Err(bad(format!(
                        "{what} line 1: backup format version {version}; this wulfd reads \
                         version {VERSION} (restore it with the wulfd that made it, or a newer one)"
                    )));
                }
                header = Some((revision, cluster));
            }
            Record::Object { kind, uid, value } => {
                let k: Kind = kind
                    .parse()
                    .map_err(|_| bad(format!("{what} line {n}: unknown object kind '{kind}'")))?;
                let obj = AnyObj::from_json(k, value)
                    .map_err(|e| bad(format!("{what} line {n}: {} {uid}: {e}", k.title())))?;
                if obj.uid() != uid {
                    return Err(bad(format!(
                        "{what} line {n}: {} record {uid} holds an object with uid '{}'",
                        k.title(),
                        obj.uid()
                    )));
                }
                if !seen_objects.insert((k, uid.clone())) {
                    return Err(bad(format!(
                        "{what} line {n}: {} {uid} appears twice",
                        k.title()
                    )));
                }
                for key in obj.unique_keys() {
                    let me = format!("{} '{}'", k.title(), obj.name());
                    if let Some(other) = unique.insert(key.clone(), me.clone()) {
                        return Err(bad(format!(
                            "{what} line {n}: {} is given to both {other} and {me}",
                            describe_unique_key(&key)
                        )));
                    }
                }
                objects.push(obj);
            }
            Record::Key { key, value_base64 } => {
                if !kept_key(&key) {
                    return Err(bad(format!(
                        "{what} line {n}: key {key} is not one a backup carries"
                    )));
                }
                let value = base64::engine::general_purpose::STANDARD
                    .decode(value_base64.as_bytes())
                    .map_err(|e| bad(format!("{what} line {n}: key {key}: bad base64: {e}")))?;
                if !seen_keys.insert(key.clone()) {
                    return Err(bad(format!("{what} line {n}: key {key} appears twice")));
                }
                keys.push((key, value));
            }
            Record::File { sha256, .. } => {
                if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad(format!(
                        "{what} line {n}: file record with a bad sha256 '{sha256}'"
                    )));
                }
                file_records += 1;
            }
            Record::End {
                objects: o,
                keys: k,
                files: f,
                sha256,
            } => {
                let got = hex::encode(hasher.clone().finalize());
                if got != sha256 {
                    return Err(bad(format!(
                        "{what}: the end record's checksum does not match the lines before it \
                         (the file was changed or damaged)"
                    )));
                }
                let have = (objects.len() as u64, keys.len() as u64, file_records);
                if have != (o, k, f) {
                    return Err(bad(format!(
                        "{what}: the end record counts {o} objects, {k} keys and {f} files, \
                         but the file holds {}, {} and {}",
                        have.0, have.1, have.2
                    )));
                }
                ended = true;
            }
        }
        if !ended {
            hasher.update(&line);
        }
    }
    if n == 0 {
        return Err(bad(format!("{what} is empty")));
    }
    if !ended {
        return Err(bad(format!(
            "{what} is truncated: it ends after line {n} without the end record (the backup \
             did not finish)"
        )));
    }
    let (revision, cluster) = header.unwrap_or_default();
    if !seen_objects.contains(&(Kind::Cluster, CLUSTER_UID.to_string())) {
        return Err(bad(format!(
            "{what}: no cluster settings object; not a backup of a whole cluster"
        )));
    }
    Ok(Checked {
        revision,
        cluster,
        objects,
        keys,
    })
}

/// Whether the file at `path` is a tar archive (ustar magic at offset 257).
fn is_tar(path: &Path) -> anyhow::Result<bool> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut buf = [0u8; 262];
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
    Ok(got == buf.len() && &buf[257..262] == b"ustar")
}

/// Read the backup in FILE: JSON lines, or a tar whose first entry is the backup.
fn read_file(path: &Path) -> anyhow::Result<Checked> {
    let what = path.display().to_string();
    if !is_tar(path)? {
        let f = std::fs::File::open(path).with_context(|| format!("cannot open {what}"))?;
        return read_backup(f, &what);
    }
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {what}"))?;
    let mut ar = tar::Archive::new(f);
    let mut entries = ar
        .entries()
        .map_err(|e| bad(format!("{what}: not a readable tar: {e}")))?;
    let first = entries
        .next()
        .ok_or_else(|| bad(format!("{what}: an empty tar")))?
        .map_err(|e| bad(format!("{what}: not a readable tar: {e}")))?;
    let name = first
        .path()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.trim_start_matches("./") != TAR_BACKUP_NAME {
        return Err(bad(format!(
            "{what}: a tar whose first entry is '{name}', not {TAR_BACKUP_NAME} (not made by \
             `wulf cluster backup --files`)"
        )));
    }
    read_backup(first, &format!("{what}:{TAR_BACKUP_NAME}"))
}

/// The files of a restore put into the file store, and those still missing.
struct Placed {
    /// Blobs this restore added (removed again if the restore fails).
    added: Vec<PathBuf>,
    /// sha256 → what uses it, for files neither given nor already there.
    missing: Vec<(String, u64, Vec<String>)>,
}

/// Put into `blobs` every file `wanted` names from `source` (a tar or a directory), each
/// checked against its sha256 and size; files already in the store are kept as they are.
fn place_files(
    blobs: &Blobs,
    wanted: &HashMap<String, (u64, Vec<String>)>,
    sources: &[PathBuf],
) -> anyhow::Result<Placed> {
    let mut added = Vec::new();
    let result = (|| -> anyhow::Result<()> {
        let need: HashSet<&str> = wanted
            .keys()
            .map(String::as_str)
            .filter(|s| blobs.path(s).is_some_and(|p| !p.exists()))
            .collect();
        if need.is_empty() {
            return Ok(());
        }
        for src in sources {
            if src.is_dir() {
                for sha in &need {
                    let candidates = [
                        src.join(sha),
                        src.join("files").join(sha),
                        src.join("sha256").join(sha),
                        src.join("blobs/sha256").join(sha),
                    ];
                    let Some(p) = candidates.iter().find(|p| p.is_file()) else {
                        continue;
                    };
                    let Some(dest) = blobs.path(sha).filter(|d| !d.exists()) else {
                        continue;
                    };
                    let mut f = std::fs::File::open(p)
                        .with_context(|| format!("cannot open {}", p.display()))?;
                    let size = wanted[*sha].0;
                    put_one(blobs, &mut f, sha, size, &p.display().to_string())?;
                    added.push(dest);
                }
            } else if is_tar(src)? {
                let f = std::fs::File::open(src)
                    .with_context(|| format!("cannot open {}", src.display()))?;
                let mut ar = tar::Archive::new(f);
                let entries = ar
                    .entries()
                    .map_err(|e| bad(format!("{}: not a readable tar: {e}", src.display())))?;
                for entry in entries {
                    let mut entry =
                        entry.map_err(|e| bad(format!("{}: damaged tar: {e}", src.display())))?;
                    let name = entry
                        .path()
                        .ok()
                        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    if !need.contains(name.as_str()) {
                        continue;
                    }
                    let Some(dest) = blobs.path(&name).filter(|d| !d.exists()) else {
                        continue;
                    };
                    let size = wanted[&name].0;
                    let what = format!("{}:files/{name}", src.display());
                    put_one(blobs, &mut entry, &name, size, &what)?;
                    added.push(dest);
                }
            } else {
                return Err(bad(format!(
                    "--files {}: neither a directory nor a tar",
                    src.display()
                )));
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        for p in &added {
            let _ = std::fs::remove_file(p);
        }
        return Err(e);
    }
    let mut missing: Vec<(String, u64, Vec<String>)> = wanted
        .iter()
        .filter(|(sha, _)| blobs.path(sha).is_none_or(|p| !p.exists()))
        .map(|(sha, (size, users))| (sha.clone(), *size, users.clone()))
        .collect();
    missing.sort();
    Ok(Placed { added, missing })
}

fn put_one(
    blobs: &Blobs,
    r: &mut dyn Read,
    sha: &str,
    size: u64,
    what: &str,
) -> anyhow::Result<()> {
    let got = blobs
        .ingest_verified(r, sha)
        .map_err(|e| bad(format!("{what}: {e}")))?;
    if got != size {
        if let Some(p) = blobs.path(sha) {
            let _ = std::fs::remove_file(p);
        }
        return Err(bad(format!(
            "{what}: {got} bytes, but the backup says {size}"
        )));
    }
    Ok(())
}

/// Every key a restore writes, in order.
fn ops_of(b: &Checked) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::with_capacity(b.objects.len() * 5 + b.keys.len());
    out.extend(b.keys.iter().cloned());
    for o in &b.objects {
        out.push((obj_key(o.kind(), o.uid()), o.to_bytes()));
        for k in o.unique_keys() {
            out.push((k, o.uid().as_bytes().to_vec()));
        }
    }
    out
}

/// Delete every `/wulf/` key (a failed restore's leftovers), in transactions of `chunk`.
async fn clear_all(store: &dyn Store) -> Result<usize, StoreError> {
    let (kvs, _) = store.list("/wulf/").await?;
    let keys: Vec<String> = kvs.into_iter().map(|kv| kv.key).collect();
    delete_keys(store, &keys).await?;
    Ok(keys.len())
}

async fn delete_keys(store: &dyn Store, keys: &[String]) -> Result<(), StoreError> {
    // Keep the marker for last: it says the store is not to be used.
    let (marker, rest): (Vec<&String>, Vec<&String>) =
        keys.iter().partition(|k| k.as_str() == UNFINISHED_KEY);
    for chunk in rest.chunks(100) {
        let ops = chunk
            .iter()
            .map(|k| Op::Delete { key: (*k).clone() })
            .collect();
        store
            .txn(Txn {
                compares: Vec::new(),
                ops,
            })
            .await?;
    }
    if !marker.is_empty() {
        store.delete(UNFINISHED_KEY, Expect::Any).await?;
    }
    Ok(())
}

/// Write `ops` in transactions of at most `max_ops` operations and `max_bytes` bytes,
/// halving them when the store refuses one as too big. Returns how many were written
/// before a failure, with the error.
async fn write_chunked(
    store: &dyn Store,
    ops: &[(String, Vec<u8>)],
) -> Result<(), (usize, StoreError)> {
    let (mut max_ops, mut max_bytes) = (10_000usize, 4usize << 20);
    let mut done = 0;
    while done < ops.len() {
        let mut end = done;
        let mut bytes = 0;
        while end < ops.len() && end - done < max_ops {
            let b = ops[end].0.len() + ops[end].1.len() + 16;
            if end > done && bytes + b > max_bytes {
                break;
            }
            bytes += b;
            end += 1;
        }
        let txn = Txn {
            compares: Vec::new(),
            ops: ops[done..end]
                .iter()
                .map(|(k, v)| Op::Put {
                    key: k.clone(),
                    value: v.clone(),
                    lease: None,
                })
                .collect(),
        };
        match store.txn(txn).await {
            Ok(_) => done = end,
            Err(StoreError::TooBig(_)) if end - done > 1 => {
                max_ops = ((end - done) / 2).max(1);
                max_bytes = (bytes / 2).max(1024);
            }
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

/// Refuse a store that holds wulf keys, unless they are an unfinished restore's (then true:
/// clear them before writing).
pub async fn check_empty(store: &dyn Store) -> anyhow::Result<bool> {
    let (existing, _) = store.list("/wulf/").await?;
    if existing.is_empty() {
        return Ok(false);
    }
    if existing.iter().any(|kv| kv.key == UNFINISHED_KEY) {
        return Ok(true);
    }
    let live = existing
        .iter()
        .find(|kv| kv.key.starts_with(crate::heads::ALIVE_PREFIX));
    anyhow::bail!(
        "the store is not empty: it holds {} wulf keys (e.g. {}){}; restore only into an \
         empty store (a new --data-dir, or an etcd with no /wulf/ keys). Nothing was written",
        existing.len(),
        existing[0].key,
        match live {
            Some(kv) => format!(", and a head is running on it ({})", kv.key),
            None => String::new(),
        }
    );
}

/// Write a checked backup into `store`, which must hold no wulf key (or only an unfinished
/// restore, cleared first).
pub async fn write(store: &dyn Store, b: &Checked) -> anyhow::Result<usize> {
    if check_empty(store).await? {
        let n = clear_all(store)
            .await
            .context("cannot clear the unfinished restore")?;
        eprintln!("cleared an unfinished restore ({n} keys) from the store first");
    }
    let ops = ops_of(b);
    let cluster_key = obj_key(Kind::Cluster, CLUSTER_UID);
    if store.backend() == "embedded" {
        // One transaction: all or nothing.
        let txn = Txn {
            compares: vec![wulf_store::Compare {
                key: cluster_key.clone(),
                expect: Expect::Absent,
            }],
            ops: ops
                .iter()
                .map(|(k, v)| Op::Put {
                    key: k.clone(),
                    value: v.clone(),
                    lease: None,
                })
                .collect(),
        };
        let res = store.txn(txn).await.context("cannot write the store")?;
        if !res.succeeded {
            anyhow::bail!("the store was written to meanwhile; nothing was restored");
        }
        return Ok(ops.len());
    }
    let marker = serde_json::json!({"started": crate::db::now(), "revision": b.revision});
    let res = store
        .txn(
            Txn::new()
                .when(UNFINISHED_KEY, Expect::Absent)
                .when(cluster_key.as_str(), Expect::Absent)
                .put(UNFINISHED_KEY, marker.to_string().into_bytes()),
        )
        .await
        .context("cannot write the store")?;
    if !res.succeeded {
        anyhow::bail!("the store was written to meanwhile; nothing was restored");
    }
    if let Err((done, e)) = write_chunked(store, &ops).await {
        let written: Vec<String> = ops[..done]
            .iter()
            .map(|(k, _)| k.clone())
            .chain(ops.get(done).map(|(k, _)| k.clone()))
            .chain([UNFINISHED_KEY.to_string()])
            .collect();
        let cleaned = delete_keys(store, &written).await;
        return Err(match cleaned {
            Ok(()) => anyhow::anyhow!(
                "cannot write the store after {done} of {} keys: {e}; what was written has \
                 been removed again (the store is empty)",
                ops.len()
            ),
            Err(e2) => anyhow::anyhow!(
                "cannot write the store after {done} of {} keys: {e}; removing them failed \
                 too ({e2}): the store holds an unfinished restore, marked by \
                 {UNFINISHED_KEY}, on which heads refuse to start; run `wulfd restore` again \
                 (it clears it first)",
                ops.len()
            ),
        });
    }
    store
        .delete(UNFINISHED_KEY, Expect::Present)
        .await
        .context("cannot finish the restore (delete its marker)")?;
    Ok(ops.len())
}

/// `wulfd [--data-dir D] [--store S] restore FILE [--files DIR|TAR]`.
pub async fn run(cfg: &Config, file: &Path, files: Option<&Path>) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let backup = read_file(file)?;
    let wanted = backup.files();
    let mut sources = Vec::new();
    if is_tar(file)? {
        sources.push(file.to_path_buf());
    }
    if let Some(f) = files {
        if !f.exists() {
            return Err(bad(format!(
                "--files {}: no such file or directory",
                f.display()
            )));
        }
        sources.push(f.to_path_buf());
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data directory {}", cfg.data_dir.display()))?;
    let data_dir = cfg.data_dir.canonicalize().unwrap_or(cfg.data_dir.clone());
    let store = crate::open_store(cfg, &data_dir)
        .await
        .context("cannot open the store (is wulfd running on it? stop it first)")?;
    // Refuse a store in use before touching the file store.
    check_empty(store.as_ref()).await?;
    let blobs = Blobs::open(&data_dir).context("cannot prepare the file store")?;
    let placed = place_files(&blobs, &wanted, &sources)?;
    let written = match write(store.as_ref(), &backup).await {
        Ok(n) => n,
        Err(e) => {
            for p in &placed.added {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
    };
    let mut per_kind: Vec<(Kind, usize)> = Vec::new();
    for o in &backup.objects {
        match per_kind.iter_mut().find(|(k, _)| *k == o.kind()) {
            Some((_, c)) => *c += 1,
            None => per_kind.push((o.kind(), 1)),
        }
    }
    let kinds: Vec<String> = per_kind.iter().map(|(k, c)| format!("{c} {k}")).collect();
    println!(
        "restored cluster '{}' (backup of revision {}) into the {} store: {} objects ({}), {} \
         other keys, {} store writes; {} files ({} put into {}) in {:.1}s",
        backup.cluster,
        backup.revision,
        store.backend(),
        backup.objects.len(),
        kinds.join(", "),
        backup.keys.len(),
        written,
        wanted.len(),
        placed.added.len(),
        blobs
            .path(&"0".repeat(64))
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default()
            .display(),
        started.elapsed().as_secs_f64()
    );
    for (sha, size, users) in &placed.missing {
        eprintln!(
            "missing file {sha} ({size} bytes), used by {}: upload it again (wulf boot|image -i \
             NAME upload FIELD FILE) or restore with --files",
            users.join(", ")
        );
    }
    if !placed.missing.is_empty() {
        eprintln!(
            "{} of {} files are missing; the objects that use them are restored, but nodes \
             cannot boot from them until they are uploaded",
            placed.missing.len(),
            wanted.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        let header = Record::Header {
            format: FORMAT.into(),
            version: VERSION,
            revision: 3,
            created: 0.0,
            cluster: "c".into(),
            head: "h".into(),
            wulf_version: "0".into(),
            store: "embedded".into(),
        };
        let cluster = serde_json::json!({"uid": CLUSTER_UID, "name": "c",
            "default_group": "DefaultAttribs"});
        let kvs = vec![
            wulf_store::KeyValue {
                key: format!("/wulf/obj/cluster/{CLUSTER_UID}"),
                value: cluster.to_string().into_bytes(),
                create_revision: 1,
                mod_revision: 1,
                version: 1,
                lease: None,
            },
            wulf_store::KeyValue {
                key: "/wulf/secret/token-key".into(),
                value: vec![1, 2, 3],
                create_revision: 1,
                mod_revision: 1,
                version: 1,
                lease: None,
            },
        ];
        let mut w = super::super::Writer::new(header, kvs);
        let mut out = Vec::new();
        while let Some(c) = w.next_chunk() {
            out.extend(c);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn reads_what_the_writer_writes() {
        let b = read_backup(sample().as_bytes(), "b").unwrap();
        assert_eq!(b.objects.len(), 1);
        assert_eq!(
            b.keys,
            vec![("/wulf/secret/token-key".into(), vec![1, 2, 3])]
        );
    }

    #[test]
    fn refuses_truncated_changed_and_joined_backups() {
        let s = sample();
        let cut = &s[..s.len() - 10];
        let e = read_backup(cut.as_bytes(), "b").unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        let no_end: String = s.lines().take(2).map(|l| format!("{l}\n")).collect();
        let e = read_backup(no_end.as_bytes(), "b").unwrap_err().to_string();
        assert!(e.contains("without the end record"), "{e}");
        let changed = s.replace("\"c\"", "\"d\"");
        let e = read_backup(changed.as_bytes(), "b")
            .unwrap_err()
            .to_string();
        assert!(e.contains("checksum"), "{e}");
        let twice = format!("{s}{s}");
        let e = read_backup(twice.as_bytes(), "b").unwrap_err().to_string();
        assert!(e.contains("follows the end"), "{e}");
        let e = read_backup(&b"garbage\n"[..], "b").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        assert!(read_backup(&b""[..], "b").is_err());
    }

    #[tokio::test]
    async fn writes_into_an_empty_store_only() {
        let d = tempfile::tempdir().unwrap();
        let s = wulf_store::EmbeddedStore::open(&d.path().join("a.redb")).unwrap();
        let b = read_backup(sample().as_bytes(), "b").unwrap();
        write(s.as_ref(), &b).await.unwrap();
        let (kvs, rev) = s.list("/wulf/").await.unwrap();
        assert!(kvs.iter().any(|kv| kv.key == "/wulf/secret/token-key"));
        assert!(kvs
            .iter()
            .any(|kv| kv.key.starts_with("/wulf/idx/cluster/name/")));
        let e = write(s.as_ref(), &b).await.unwrap_err().to_string();
        assert!(e.contains("not empty"), "{e}");
        assert_eq!(s.revision().await.unwrap(), rev);
    }
}

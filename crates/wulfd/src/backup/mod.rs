//! Backups of a cluster: `GET /api/v1/cluster/backup` (role admin) streams one consistent
//! snapshot of the store, and `wulfd restore` ([`restore`]) writes one into an empty store.
//!
//! The format is JSON lines (docs/admin/backup.md): a header, then one record per stored key
//! that a restored cluster needs (every object of every kind, admin accounts with their
//! password hashes, the cluster's secrets and the nodes' credential nonces), one record per
//! file an object refers to (its sha256 and size, and which object and field), and an end
//! record with the counts and the sha256 of every byte before it, so a truncated or altered
//! backup is noticed. Uniqueness keys are not written: a restore derives them from the
//! objects. Node status, sessions, head records and liveness, maintenance state and log
//! lines are left out: they describe a running cluster, not its configuration.

pub mod restore;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wulf_model::{FileRef, Kind};
use wulf_store::KeyValue;

use crate::app::{App, AppState};
use crate::auth::Principal;
use crate::objects::{AnyObj, OBJ_PREFIX};
use crate::web::ApiErr;

/// What the header's `format` says.
pub const FORMAT: &str = "wulf-backup";
/// The format version this wulf writes and reads.
pub const VERSION: u32 = 1;
/// Store keys kept verbatim besides the objects: the cluster's secrets (token signing key,
/// admin token, node-credential secret, TLS CA) and the nodes' current credential nonces
/// (so nodes that are up keep reporting to a restored cluster).
pub const KEY_PREFIXES: [&str; 2] = ["/wulf/secret/", crate::enroll::NONCE_PREFIX];
/// The key a restore in progress holds (written first, deleted last); a head refuses to
/// start on a store that has it.
pub const UNFINISHED_KEY: &str = "/wulf/restore/unfinished";
/// Bytes the stream hands on at a time.
const CHUNK_BYTES: usize = 256 * 1024;

/// One line of a backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Record {
    /// The first line.
    Header {
        format: String,
        version: u32,
        /// The store revision of the snapshot.
        revision: i64,
        /// Unix time it was taken.
        created: f64,
        cluster: String,
        head: String,
        wulf_version: String,
        store: String,
    },
    /// One object, as stored.
    Object {
        kind: String,
        uid: String,
        value: serde_json::Value,
    },
    /// One store key kept verbatim (a secret, a node's credential nonce).
    Key { key: String, value_base64: String },
    /// A file an object refers to.
    File {
        sha256: String,
        size: u64,
        kind: String,
        uid: String,
        name: String,
        field: String,
    },
    /// The last line: counts, and the sha256 of every byte before this line.
    End {
        objects: u64,
        keys: u64,
        files: u64,
        sha256: String,
    },
}

/// Whether a stored key goes into a backup verbatim (besides objects).
pub fn kept_key(key: &str) -> bool {
    KEY_PREFIXES.iter().any(|p| key.starts_with(p))
}

/// The files an object refers to: (field, file).
pub fn file_fields(obj: &AnyObj) -> Vec<(&'static str, &FileRef)> {
    match obj {
        AnyObj::Boot(b) => b
            .kernel
            .iter()
            .map(|f| ("kernel", f))
            .chain(b.initramfs.iter().map(|f| ("initramfs", f)))
            .chain(b.kickstart.iter().map(|f| ("kickstart", f)))
            .collect(),
        AnyObj::Image(i) => i.content.iter().map(|f| ("content", f)).collect(),
        AnyObj::Repo(r) => r.iso.iter().map(|f| ("iso", f)).collect(),
        _ => Vec::new(),
    }
}

/// `GET /api/v1/cluster/backup`.
pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/api/v1/cluster/backup", get(backup))
}

/// A refusal of a head to start on a store a restore has not finished writing.
pub async fn refuse_unfinished(store: &dyn wulf_store::Store) -> anyhow::Result<()> {
    if store.get(UNFINISHED_KEY).await?.is_some() {
        anyhow::bail!(
            "this store holds a restore that did not finish ({UNFINISHED_KEY}); run `wulfd \
             restore FILE` again (it clears the unfinished one first)"
        );
    }
    Ok(())
}

async fn backup(
    State(app): AppState,
    Extension(who): Extension<Principal>,
) -> Result<Response, ApiErr> {
    // One list: one snapshot at one revision, for objects and secrets alike.
    let (kvs, revision) = app.store.list("/wulf/").await?;
    let kept: Vec<KeyValue> = kvs
        .into_iter()
        .filter(|kv| kv.lease.is_none() && (kv.key.starts_with(OBJ_PREFIX) || kept_key(&kv.key)))
        .collect();
    let cluster = app
        .cache
        .read()
        .cluster()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let header = Record::Header {
        format: FORMAT.to_string(),
        version: VERSION,
        revision,
        created: crate::db::now(),
        cluster: cluster.clone(),
        head: app.head.clone(),
        wulf_version: env!("CARGO_PKG_VERSION").to_string(),
        store: app.store.backend().to_string(),
    };
    tracing::info!(target: "audit", "backup of cluster '{cluster}' at revision {revision} ({} keys) taken by {} from {}", kept.len(), who.name, who.source);
    let gen = Writer::new(header, kept);
    let stream = futures_util::stream::unfold(gen, |mut g| async move {
        let chunk = g.next_chunk()?;
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(chunk)), g))
    });
    let name = format!(
        "wulf-backup-{}-r{revision}.jsonl",
        if cluster.is_empty() {
            "cluster"
        } else {
            &cluster
        }
    )
    .replace(
        |c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)),
        "_",
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .header(header::CACHE_CONTROL, "no-store")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .body(Body::from_stream(stream))
        .map_err(|e| ApiErr::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Writes a backup's lines from a snapshot, a chunk at a time.
pub struct Writer {
    header: Option<Record>,
    kvs: std::vec::IntoIter<KeyValue>,
    files: Vec<Record>,
    files_done: bool,
    hasher: Sha256,
    objects: u64,
    keys: u64,
    file_count: u64,
    ended: bool,
}

impl Writer {
    pub fn new(header: Record, kvs: Vec<KeyValue>) -> Writer {
        Writer {
            header: Some(header),
            kvs: kvs.into_iter(),
            files: Vec::new(),
            files_done: false,
            hasher: Sha256::new(),
            objects: 0,
            keys: 0,
            file_count: 0,
            ended: false,
        }
    }

    fn line(&mut self, out: &mut Vec<u8>, start: usize) {
        out.push(b'\n');
        self.hasher.update(&out[start..]);
    }

    /// The next chunk of the backup, or None once the end record has been handed out.
    pub fn next_chunk(&mut self) -> Option<Vec<u8>> {
        if self.ended {
            return None;
        }
        let mut out = Vec::with_capacity(CHUNK_BYTES + 4096);
        if let Some(h) = self.header.take() {
            let _ = serde_json::to_writer(&mut out, &h);
            self.line(&mut out, 0);
        }
        while out.len() < CHUNK_BYTES {
            let Some(kv) = self.kvs.next() else { break };
            let start = out.len();
            if let Some(rest) = kv.key.strip_prefix(OBJ_PREFIX) {
                let Some((kind, uid)) = rest.split_once('/') else {
                    continue;
                };
                let Ok(k) = kind.parse::<Kind>() else {
                    tracing::warn!(key = %kv.key, "backup: skipped a key of no known kind");
                    continue;
                };
                if serde_json::from_slice::<serde::de::IgnoredAny>(&kv.value).is_err() {
                    tracing::warn!(key = %kv.key, "backup: skipped an object that is not JSON");
                    continue;
                }
                if matches!(k, Kind::Boot | Kind::Image) {
                    if let Ok(obj) = AnyObj::decode(k, &kv.value) {
                        for (field, f) in file_fields(&obj) {
                            self.files.push(Record::File {
                                sha256: f.sha256.clone(),
                                size: f.size,
                                kind: k.to_string(),
                                uid: uid.to_string(),
                                name: obj.name().to_string(),
                                field: field.to_string(),
                            });
                        }
                    }
                }
                // The stored bytes as they are: no second copy of the object.
                out.extend_from_slice(b"{\"type\":\"object\",\"kind\":");
                let _ = serde_json::to_writer(&mut out, kind);
                out.extend_from_slice(b",\"uid\":");
                let _ = serde_json::to_writer(&mut out, uid);
                out.extend_from_slice(b",\"value\":");
                out.extend_from_slice(&kv.value);
                out.push(b'}');
                self.objects += 1;
            } else {
                let rec = Record::Key {
                    key: kv.key,
                    value_base64: base64::engine::general_purpose::STANDARD.encode(&kv.value),
                };
                let _ = serde_json::to_writer(&mut out, &rec);
                self.keys += 1;
            }
            self.line(&mut out, start);
        }
        if out.len() >= CHUNK_BYTES {
            return Some(out);
        }
        if !self.files_done {
            self.files_done = true;
            for rec in std::mem::take(&mut self.files) {
                let start = out.len();
                let _ = serde_json::to_writer(&mut out, &rec);
                self.line(&mut out, start);
                self.file_count += 1;
            }
        }
        let end = Record::End {
            objects: self.objects,
            keys: self.keys,
            files: self.file_count,
            sha256: hex::encode(self.hasher.clone().finalize()),
        };
        let _ = serde_json::to_writer(&mut out, &end);
        out.push(b'\n');
        self.ended = true;
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &[u8]) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.to_vec(),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease: None,
        }
    }

    #[test]
    fn writes_header_records_and_an_end_that_checks_them() {
        let header = Record::Header {
            format: FORMAT.into(),
            version: VERSION,
            revision: 7,
            created: 1.0,
            cluster: "c".into(),
            head: "h".into(),
            wulf_version: "0".into(),
            store: "embedded".into(),
        };
        let mut kvs = vec![kv("/wulf/secret/token-key", &[0, 1, 2, 255])];
        for i in 0..3000 {
            kvs.push(kv(
                &format!("/wulf/obj/node/{i:032x}"),
                format!("{{\"uid\":\"{i:032x}\",\"name\":\"n{i}\"}}").as_bytes(),
            ));
        }
        let mut w = Writer::new(header, kvs);
        let mut all = Vec::new();
        let mut chunks = 0;
        while let Some(c) = w.next_chunk() {
            all.extend(c);
            chunks += 1;
        }
        assert!(chunks >= 2, "{chunks}");
        let text = String::from_utf8(all).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + 3001 + 1);
        let recs: Vec<Record> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let Record::End {
            objects,
            keys,
            sha256,
            ..
        } = recs.last().unwrap()
        else {
            panic!("no end")
        };
        assert_eq!((*objects, *keys), (3000, 1));
        let before = &text[..text.len() - lines.last().unwrap().len() - 1];
        assert_eq!(*sha256, hex::encode(Sha256::digest(before.as_bytes())));
    }
}

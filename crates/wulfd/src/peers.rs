//! Files from peer heads: each head keeps its own copy of the files (kernels, initramfs,
//! images) it serves. A head asked for a file it lacks (uploaded through another head) fetches
//! it from a head that is up, checks its sha256, stores it, and then serves it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::api::App;

/// The header a head sets when it fetches from a peer; a head never forwards such a request
/// to its own peers (no loops between two heads that both lack a file).
pub const PEER_HEADER: &str = "x-wulf-peer-fetch";

/// One fetch per file at a time, however many nodes ask for it at once.
#[derive(Default)]
pub struct Fetches {
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Make sure file `sha256` is on this head, fetching it from a peer head if it is not.
/// Returns true when the file is here.
pub async fn ensure_local(app: &App, sha256: &str) -> bool {
    let Some(path) = app.blobs.path(sha256) else {
        return false;
    };
    if path.exists() {
        return true;
    }
    let peers: Vec<String> = match app.live_heads.read() {
        Ok(l) => l
            .iter()
            .filter(|h| h.name != app.head)
            .flat_map(|h| h.urls.clone())
            .collect(),
        Err(_) => Vec::new(),
    };
    if peers.is_empty() {
        return false;
    }
    let lock = {
        let mut m = app
            .fetches
            .inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.entry(sha256.to_string()).or_default().clone()
    };
    let _guard = lock.lock().await;
    if path.exists() {
        return true;
    }
    for base in peers {
        let url = format!("{}/boot/file/{sha256}", base.trim_end_matches('/'));
        let (dir, tmp) = (
            app.blobs.dir().to_path_buf(),
            app.blobs.tmp_dir().to_path_buf(),
        );
        let sha = sha256.to_string();
        let u = url.clone();
        let got = tokio::task::spawn_blocking(move || fetch(&u, &sha, &dir, &tmp)).await;
        match got {
            Ok(Ok(size)) => {
                tracing::info!(sha256, size, from = %url, "fetched a file from a peer head");
                return true;
            }
            Ok(Err(e)) => {
                tracing::warn!(sha256, from = %url, error = %e, "cannot fetch a file from a peer head")
            }
            Err(e) => tracing::warn!(sha256, error = %e, "peer fetch task failed"),
        }
    }
    false
}

/// Download `url` into `tmp`, check its sha256, move it to `dir/<sha256>`.
fn fetch(
    url: &str,
    sha256: &str,
    dir: &std::path::Path,
    tmp: &std::path::Path,
) -> anyhow::Result<u64> {
    let resp = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(3))
        .timeout_read(std::time::Duration::from_secs(60))
        .build()
        .get(url)
        .set(PEER_HEADER, "1")
        .call()?;
    let part = tmp.join(format!("{sha256}.peer"));
    let result = (|| {
        let mut reader = resp.into_reader();
        let mut file = std::fs::File::create(&part)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = reader.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])?;
            size += n as u64;
        }
        let got = hex::encode(hasher.finalize());
        if got != sha256.to_ascii_lowercase() {
            anyhow::bail!("the peer sent a file whose sha256 is {got}");
        }
        file.sync_all()?;
        std::fs::rename(&part, dir.join(&got))?;
        Ok(size)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    result
}

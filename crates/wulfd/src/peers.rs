//! Files from peer heads: each head keeps its own copy of the files (kernels, initramfs,
//! images) it serves. A head asked for a file it lacks (uploaded through another head) fetches
//! it from a head that is up, checks its sha256, stores it, and then serves it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::app::App;

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
        // Boot files are served on plain HTTP too (the same port), as to firmware.
        let base = base.replacen("https://", "http://", 1);
        let url = format!("{}/boot/file/{sha256}", base.trim_end_matches('/'));
        let (blobs, sha, u) = (app.blobs.clone(), sha256.to_string(), url.clone());
        // Images go only to nodes and heads: this proves the request comes from a head.
        let auth = crate::enroll::images::peer_fetch_token(&app.node_secret, sha256);
        let got = tokio::task::spawn_blocking(move || fetch(&u, &sha, &auth, &blobs)).await;
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

/// Download `url` into the file store as file `sha256` (checked).
fn fetch(url: &str, sha256: &str, auth: &str, blobs: &crate::blobs::Blobs) -> anyhow::Result<u64> {
    let resp = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(3))
        .timeout_read(std::time::Duration::from_secs(60))
        .build()
        .get(url)
        .set(PEER_HEADER, "1")
        .set("Authorization", &format!("Bearer {auth}"))
        .call()?;
    Ok(blobs.ingest_verified(&mut resp.into_reader(), sha256)?)
}

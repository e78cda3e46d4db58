//! A storm node's image download through the swarm (boots with `wulf.swarm=PORT`), as
//! `wulf-agent fetch-image` does it, from the node's own address: the same fetcher and piece
//! server (wulf_api::swarm), each node listening on its own address. The nodes share one copy
//! of each checked piece (a thousand copies of an image would not fit in memory); each
//! node serves only the pieces it has itself received and checked.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wulf_api::swarm::fetch::{Fetcher, Tally};
use wulf_api::swarm::store::{SharedStore, Store};
use wulf_api::swarm::Plan;

/// The pieces the storm's nodes hold, one store per image.
#[derive(Default)]
pub struct Pieces(Mutex<HashMap<String, Arc<SharedStore>>>);

impl Pieces {
    fn store(&self, plan: &Plan) -> Arc<SharedStore> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(plan.sha256.clone())
            .or_insert_with(|| Arc::new(SharedStore::new(plan.count())))
            .clone()
    }
}

/// Fetch image `url` (SHA-256 `sha`) for the node at `ip`, serving it on `port` meanwhile
/// and after (until the process ends).
pub fn fetch(
    pieces: &Pieces,
    ip: Ipv4Addr,
    url: &str,
    sha: &str,
    authorization: &str,
    port: u16,
    deadline: Instant,
) -> anyhow::Result<Tally> {
    // Listening before the head hears of the node: the nodes it sends here may come at once.
    let listener = TcpListener::bind(SocketAddr::from((ip, port)))
        .map_err(|e| anyhow::anyhow!("cannot listen on {ip}:{port} for peers: {e}"))?;
    let f = Fetcher::new(
        url,
        sha,
        authorization.to_string(),
        port,
        Some(ip.into()),
        deadline,
    )?;
    let done = f
        .run(Some(listener), |plan| {
            Ok(pieces.store(plan) as Arc<dyn Store>)
        })
        .map_err(|e| anyhow::anyhow!("swarm: {e}"))?;
    Ok(done.tally)
}

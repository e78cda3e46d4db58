//! `wulf-agent fetch-image`: the initramfs's download of the node's image through the swarm
//! (boots with `wulf.swarm=PORT`, from the `_image_peers` attribute). It asks the head for
//! the plan, fetches the pieces in order (each checked against its hash) from the head or the
//! peer the plan names, and serves the pieces it holds to the nodes the head sends to it,
//! from the first piece on. Once the image is complete it writes `ok: …` to the status file
//! (`fail: …` if it cannot get it) and goes on serving until no one has asked it for a piece
//! for the plan's `serve_secs` (the process then ends and the memory the image took is
//! free). See docs/admin/boot.md, "Peer-assisted image downloads".

use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wulf_api::swarm::fetch::{Done, Error as SwarmError, Fetcher, Tally};
use wulf_api::swarm::store::{FileStore, Store};

/// How long the whole download may take.
const FETCH_LIMIT: Duration = Duration::from_secs(1800);
/// How long the node serves at most after its download (the head's tickets last about as
/// long).
const SERVE_LIMIT: Duration = Duration::from_secs(600);

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// The image's URL on the head (wulf.image=): http://HEAD/boot/file/SHA256
    #[arg(long)]
    pub url: String,
    /// The image's SHA-256 (wulf.image_sha256=)
    #[arg(long, value_name = "HEX")]
    pub sha256: String,
    /// The bearer token the head wants for the image: enroll:UID:TOKEN
    #[arg(long, value_name = "TOKEN")]
    pub token: String,
    /// The port to serve pieces to other nodes on (wulf.swarm=)
    #[arg(long, default_value_t = wulf_api::swarm::PORT)]
    pub port: u16,
    /// Where the image goes
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Written when the image is complete (`ok: …`) or cannot be had (`fail: …`)
    #[arg(long, value_name = "FILE", default_value = "/run/wulf/swarm.status")]
    pub status: PathBuf,
}

fn write_status(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    let done = std::fs::write(&tmp, format!("{text}\n")).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = done {
        tracing::error!("cannot write {}: {e}", path.display());
    }
}

fn summary(size: u64, t: &Tally, secs: f64) -> String {
    let peers: Vec<&str> = t.peers.iter().map(String::as_str).collect();
    format!(
        "ok: {size} bytes in {secs:.1} s: {} from the head, {} from {} peer(s){}{}",
        t.from_head,
        t.from_peers,
        peers.len(),
        if peers.is_empty() {
            String::new()
        } else {
            format!(" ({})", peers.join(", "))
        },
        if t.failures.is_empty() {
            String::new()
        } else {
            format!(
                "; {} failed request(s), the last: {}",
                t.failures.len(),
                t.failures[t.failures.len() - 1]
            )
        }
    )
}

/// Fetch, report, serve; the exit code is 0 when the image was complete.
pub fn run(a: &FetchArgs) -> Result<()> {
    if let Some(dir) = a.status.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&a.status);
    match fetch_and_serve(a) {
        Ok(()) => Ok(()),
        Err(e) => {
            write_status(&a.status, &format!("fail: {e:#}"));
            Err(e)
        }
    }
}

fn fetch_and_serve(a: &FetchArgs) -> Result<()> {
    let started = Instant::now();
    let f = Fetcher::new(
        &a.url,
        &a.sha256,
        format!("Bearer {}", a.token),
        a.port,
        None,
        started + FETCH_LIMIT,
    )?;
    // Both address families where the kernel has IPv6 (a v6 socket takes v4 too), else v4.
    // Listening before the head hears of this node: the nodes it sends here may come at once.
    let listener = TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, a.port)))
        .or_else(|_| TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], a.port))))
        .map_err(|e| {
            tracing::warn!(
                "cannot listen on port {} ({e}): this node will not serve its image to others",
                a.port
            )
        })
        .ok();
    let out = &a.out;
    let Done { plan, seed, tally } = f.run(listener, |plan| {
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(out)
            .map_err(|e| SwarmError(format!("cannot create {}: {e}", out.display())))?;
        file.set_len(plan.size).map_err(|e| {
            SwarmError(format!(
                "no room for the image ({} bytes) in {}: {e}",
                plan.size,
                out.display()
            ))
        })?;
        match &plan.peer {
            None => tracing::info!(
                "fetching image {} ({} pieces) from the head",
                plan.sha256,
                plan.count()
            ),
            Some(p) => tracing::info!(
                "fetching image {} ({} pieces) from peer {p}",
                plan.sha256,
                plan.count()
            ),
        }
        Ok(Arc::new(FileStore(file)) as Arc<dyn Store>)
    })?;
    let line = summary(plan.size, &tally, started.elapsed().as_secs_f64());
    tracing::info!("{line}");
    write_status(&a.status, &line);
    let serve_secs = Duration::from_secs(plan.serve_secs);
    let done = Instant::now();
    while seed.idle() < serve_secs && done.elapsed() < SERVE_LIMIT {
        std::thread::sleep(Duration::from_secs(1));
    }
    tracing::info!(
        "served {} bytes of image {} to other nodes; stopping",
        seed.sent.load(std::sync::atomic::Ordering::Relaxed),
        plan.sha256
    );
    Ok(())
}

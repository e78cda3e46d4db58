//! A node's end for its peers: `GET /piece/SHA256/INDEX` with `Authorization: Bearer
//! swarm:TICKET` gets piece INDEX once the node holds it (the request waits for a piece that
//! is still coming, up to [`WAIT`]).

use std::io::{BufReader, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::store::{Have, Store, Wait};
use super::{http, Plan};

/// How long a request waits for a piece the node does not hold yet.
pub const WAIT: Duration = Duration::from_secs(20);
/// Requests served at once; more get 503.
const MAX_SERVING: usize = 32;

/// What a node serves: the pieces of one image it holds or is fetching.
pub struct Seed {
    key: Vec<u8>,
    plan: Plan,
    pub have: Arc<Have>,
    store: Arc<dyn Store>,
    serving: AtomicUsize,
    /// Bytes of pieces sent to peers.
    pub sent: AtomicU64,
    last: Mutex<Instant>,
}

impl Seed {
    pub fn new(plan: &Plan, have: Arc<Have>, store: Arc<dyn Store>) -> Result<Seed, String> {
        let key = hex::decode(&plan.key).map_err(|_| "the plan's share key is not hex")?;
        Ok(Seed {
            key,
            plan: plan.clone(),
            have,
            store,
            serving: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            last: Mutex::new(Instant::now()),
        })
    }

    /// How long since the last request ended (zero while one is being served).
    pub fn idle(&self) -> Duration {
        if self.serving.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        self.last
            .lock()
            .map(|l| l.elapsed())
            .unwrap_or(Duration::ZERO)
    }

    fn touch(&self) {
        if let Ok(mut l) = self.last.lock() {
            *l = Instant::now();
        }
    }

    /// Answer one request from `peer`.
    fn answer(&self, peer: IpAddr, conn: &mut TcpStream) -> std::io::Result<()> {
        let mut r = BufReader::new(conn.try_clone()?);
        let req = match http::read_request(&mut r) {
            Ok(q) => q,
            Err(e) => return http::answer_text(conn, 400, "Bad Request", &e),
        };
        let Some(rest) = req.path.strip_prefix(super::PIECE_PATH) else {
            return http::answer_text(conn, 404, "Not Found", "only /piece/SHA256/INDEX is here");
        };
        let Some((sha, index)) = rest.split_once('/') else {
            return http::answer_text(conn, 404, "Not Found", "only /piece/SHA256/INDEX is here");
        };
        if sha != self.plan.sha256 {
            return http::answer_text(conn, 404, "Not Found", "this node serves another image");
        }
        let Some(i) = index
            .parse::<usize>()
            .ok()
            .filter(|i| *i < self.plan.count())
        else {
            return http::answer_text(conn, 404, "Not Found", &format!("no piece {index:?}"));
        };
        let ticket = req
            .authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer swarm:"));
        if !ticket
            .is_some_and(|t| super::ticket_ok(&self.key, sha, peer, t, crate::command::unix_now()))
        {
            tracing::warn!(target: "audit", %peer, "refused piece {i} of image {sha} to {peer}: no valid ticket from the head for that address");
            return http::answer_text(
                conn,
                403,
                "Forbidden",
                "a piece goes only to a node with a ticket from the head for its own address",
            );
        }
        match self.have.wait(i, WAIT) {
            Wait::Ready => {}
            Wait::Gone => {
                return http::answer_text(conn, 503, "Unavailable", "this node gave up the image")
            }
            Wait::TimedOut => {
                return http::answer_text(
                    conn,
                    504,
                    "Not Yet",
                    &format!("piece {i} has not arrived here yet"),
                )
            }
        }
        let (offset, len) = self.plan.span(i);
        let data = match self.store.get(i, offset, len) {
            Ok(d) => d,
            Err(e) => {
                return http::answer_text(
                    conn,
                    503,
                    "Unavailable",
                    &format!("cannot read piece {i}: {e}"),
                )
            }
        };
        http::answer_head(conn, 200, "OK", data.len() as u64)?;
        conn.write_all(&data)?;
        self.sent.fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Serve `seed` on `listener` until the process ends (one thread per request).
pub fn serve(listener: TcpListener, seed: Arc<Seed>) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let Ok(peer) = conn.peer_addr() else { continue };
        if seed.serving.fetch_add(1, Ordering::Relaxed) >= MAX_SERVING {
            seed.serving.fetch_sub(1, Ordering::Relaxed);
            let _ = http::answer_text(&mut conn, 503, "Busy", "too many requests at once");
            continue;
        }
        let s = seed.clone();
        let spawned = std::thread::Builder::new()
            .name("swarm-serve".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = conn.set_write_timeout(Some(Duration::from_secs(60)));
                let _ = conn.set_nodelay(true);
                if let Err(e) = s.answer(peer.ip().to_canonical(), &mut conn) {
                    tracing::debug!("serving {peer}: {e}");
                }
                s.touch();
                s.serving.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            seed.serving.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!("cannot start a thread to serve {peer}");
        }
    }
}

/// Start serving `seed` on `listener` in a thread of its own.
pub fn spawn(listener: TcpListener, seed: Arc<Seed>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("swarm-listen".into())
        .stack_size(128 * 1024)
        .spawn(move || serve(listener, seed))
        .map(|_| ())
}

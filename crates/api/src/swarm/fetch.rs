//! A node's download of an image through the swarm: the plan from the head, then the pieces
//! in order from the source the plan names, each checked against its hash before the node
//! keeps (and serves) it. A source that fails is reported to the head, which names another.

use std::collections::BTreeSet;
use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::serve::{self, Seed};
use super::store::{Have, Store};
use super::{http, Plan};

/// Failed pieces (from any source) before the download gives up.
const MAX_FAILURES: usize = 12;
/// Answers "not arrived yet" (504) in a row from a peer before it counts as failed: a peer
/// that is behind its own source is waited for, up to this many times the peer's wait.
const MAX_BEHIND: usize = 3;
/// A piece request to a peer waits this long (the peer waits up to its WAIT for the piece).
const PEER_TIMEOUT: Duration = Duration::from_secs(30);
/// Reads from the head stall no longer than this.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

fn err(s: impl Into<String>) -> Error {
    Error(s.into())
}

/// A piece request's failure: `behind` when the peer is alive but has not got the piece yet.
struct PieceError {
    behind: bool,
    why: Error,
}

impl From<Error> for PieceError {
    fn from(why: Error) -> Self {
        PieceError { behind: false, why }
    }
}

/// Where a download's bytes came from.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub from_head: u64,
    pub from_peers: u64,
    /// The peers pieces came from.
    pub peers: BTreeSet<String>,
    /// Each failed piece request: which piece, from where, why.
    pub failures: Vec<String>,
    /// Times a peer had not got the piece yet and was waited for.
    pub waits: u64,
}

/// One node's download of one image.
pub struct Fetcher {
    /// The head's boot URL base: `http://HOST:PORT`.
    base: String,
    /// Its address and `Host:` (resolved once).
    head: SocketAddr,
    host: String,
    sha256: String,
    /// The `Authorization` header value the head wants for the image (`Bearer enroll:…`).
    authorization: String,
    /// Where this node serves the pieces it holds.
    port: u16,
    /// The source address of every request (simulated nodes); `None`: the system's choice.
    bind: Option<IpAddr>,
    deadline: Instant,
}

/// A finished download: the plan, what the node serves, where the bytes came from.
pub struct Done {
    pub plan: Plan,
    pub seed: Arc<Seed>,
    pub tally: Tally,
}

impl Fetcher {
    /// The download of image `url` (the head's `BASE/boot/file/SHA256`, which must name
    /// `sha256`) with `authorization`, serving on `port`, from `bind` when given.
    pub fn new(
        url: &str,
        sha256: &str,
        authorization: String,
        port: u16,
        bind: Option<IpAddr>,
        deadline: Instant,
    ) -> Result<Fetcher, Error> {
        let (base, url_sha) = url
            .rsplit_once("/boot/file/")
            .ok_or_else(|| err(format!("'{url}' is not a head's /boot/file/SHA256 URL")))?;
        let sha256 = sha256.to_ascii_lowercase();
        if url_sha.to_ascii_lowercase() != sha256 {
            return Err(err(format!(
                "the image URL names {url_sha}, the image's SHA-256 is {sha256}"
            )));
        }
        let (head, host) = http::resolve(base).map_err(err)?;
        Ok(Fetcher {
            base: base.to_string(),
            head,
            host,
            sha256,
            authorization,
            port,
            bind,
            deadline,
        })
    }

    /// The whole download: the head's plan, a store for it from `store_for`, the pieces
    /// served on `listener` (when there is one) from the first on, then fetched. When it
    /// fails, the nodes this one serves are told no more pieces will come.
    pub fn run(
        &self,
        listener: Option<TcpListener>,
        store_for: impl FnOnce(&Plan) -> Result<Arc<dyn Store>, Error>,
    ) -> Result<Done, Error> {
        let plan = self.plan(None)?;
        let store = store_for(&plan)?;
        let have = Arc::new(Have::new(plan.count()));
        let seed = Arc::new(Seed::new(&plan, have.clone(), store.clone()).map_err(err)?);
        if let Some(l) = listener {
            serve::spawn(l, seed.clone())
                .map_err(|e| err(format!("cannot start serving pieces: {e}")))?;
        }
        let mut tally = Tally::default();
        if let Err(e) = self.fetch(plan.clone(), &have, store.as_ref(), &mut tally) {
            have.give_up();
            return Err(err(format!(
                "{e} ({} bytes from the head, {} from peers)",
                tally.from_head, tally.from_peers
            )));
        }
        Ok(Done { plan, seed, tally })
    }

    fn left(&self) -> Result<Duration, Error> {
        let d = self.deadline.saturating_duration_since(Instant::now());
        if d.is_zero() {
            return Err(err("out of time"));
        }
        Ok(d)
    }

    /// The head's plan; `failed`: the peer this node could not get pieces from.
    pub fn plan(&self, failed: Option<&str>) -> Result<Plan, Error> {
        let mut path = format!("{}{}?port={}", super::PLAN_PATH, self.sha256, self.port);
        if let Some(f) = failed {
            path += &format!("&failed={f}");
        }
        let timeout = self.left()?.min(HEAD_TIMEOUT);
        let a = http::get(
            self.head,
            &self.host,
            &path,
            &[("Authorization", &self.authorization)],
            self.bind,
            timeout,
        )
        .map_err(|e| err(format!("asking the head {} for the plan: {e}", self.base)))?;
        if a.status != 200 {
            let status = a.status;
            return Err(err(format!(
                "the head {} refused the plan: HTTP {status}: {}",
                self.base,
                a.text()
            )));
        }
        let mut body = Vec::new();
        a.body
            .take(16 << 20)
            .read_to_end(&mut body)
            .map_err(|e| err(format!("reading the plan: {e}")))?;
        let plan: Plan =
            serde_json::from_slice(&body).map_err(|e| err(format!("a bad plan: {e}")))?;
        plan.check().map_err(err)?;
        if plan.sha256 != self.sha256 {
            return Err(err(format!("the plan is for image {}", plan.sha256)));
        }
        Ok(plan)
    }

    /// Fetch every piece `have` lacks as `plan` (and the plans after a failure) say, into
    /// `store`.
    fn fetch(
        &self,
        mut plan: Plan,
        have: &Have,
        store: &dyn Store,
        tally: &mut Tally,
    ) -> Result<(), Error> {
        let n = plan.count();
        let mut next = (0..n).find(|i| !have.has(*i)).unwrap_or(n);
        let (mut failures, mut behind) = (0, 0);
        while next < n {
            let got = match plan.peer.clone() {
                None => self
                    .pieces_from_head(&plan, &mut next, have, store, tally)
                    .map_err(PieceError::from),
                Some(peer) => self
                    .pieces_from_peer(&plan, &peer, next, have, store, tally)
                    .map(|()| next += 1),
            };
            let e = match got {
                Ok(()) => {
                    behind = 0;
                    continue;
                }
                Err(e) if e.behind && behind + 1 < MAX_BEHIND => {
                    behind += 1;
                    tally.waits += 1;
                    self.left()?;
                    continue;
                }
                Err(e) => e.why,
            };
            behind = 0;
            let src = plan.peer.clone().unwrap_or_else(|| "the head".into());
            tally.failures.push(format!("piece {next} from {src}: {e}"));
            failures += 1;
            if failures >= MAX_FAILURES {
                return Err(err(format!(
                    "{failures} failed piece requests; the last: piece {next} from {src}: {e}"
                )));
            }
            self.left()?;
            std::thread::sleep(
                Duration::from_millis(200 * failures as u64).min(Duration::from_secs(3)),
            );
            match self.plan(plan.peer.as_deref()) {
                Ok(p) if p.pieces == plan.pieces => plan = p,
                Ok(_) => return Err(err("the head's new plan lists other pieces")),
                Err(e) => tally.failures.push(e.0),
            }
        }
        Ok(())
    }

    /// The pieces from `*next` on, in one download from the head.
    fn pieces_from_head(
        &self,
        plan: &Plan,
        next: &mut usize,
        have: &Have,
        store: &dyn Store,
        tally: &mut Tally,
    ) -> Result<(), Error> {
        let (start, _) = plan.span(*next);
        let range = format!("bytes={start}-");
        let path = format!("/boot/file/{}", self.sha256);
        let timeout = self.left()?.min(HEAD_TIMEOUT);
        let mut a = http::get(
            self.head,
            &self.host,
            &path,
            &[("Authorization", &self.authorization), ("Range", &range)],
            self.bind,
            timeout,
        )
        .map_err(|e| err(e.to_string()))?;
        let ok = a.status == 206 || (a.status == 200 && start == 0);
        if !ok {
            let status = a.status;
            return Err(err(format!("HTTP {status}: {}", a.text())));
        }
        while *next < plan.count() {
            let i = *next;
            let len = self.piece(plan, i, &mut a.body, have, store)?;
            tally.from_head += len;
            *next += 1;
        }
        Ok(())
    }

    fn pieces_from_peer(
        &self,
        plan: &Plan,
        peer: &str,
        i: usize,
        have: &Have,
        store: &dyn Store,
        tally: &mut Tally,
    ) -> Result<(), PieceError> {
        let addr: std::net::SocketAddr = peer
            .parse()
            .map_err(|_| err(format!("the plan's peer '{peer}' is not IP:PORT")))?;
        let path = format!("{}{}/{i}", super::PIECE_PATH, self.sha256);
        let auth = format!("Bearer swarm:{}", plan.ticket);
        let timeout = self.left()?.min(PEER_TIMEOUT);
        let mut a = http::get(
            addr,
            peer,
            &path,
            &[("Authorization", &auth)],
            self.bind,
            timeout,
        )
        .map_err(|e| err(e.to_string()))?;
        if a.status != 200 {
            let status = a.status;
            return Err(PieceError {
                behind: status == 504,
                why: err(format!("HTTP {status}: {}", a.text())),
            });
        }
        let (_, want) = plan.span(i);
        if a.length != Some(want) {
            return Err(err(format!(
                "the answer has {:?} bytes, the piece {want}",
                a.length
            ))
            .into());
        }
        let len = self.piece(plan, i, &mut a.body, have, store)?;
        tally.from_peers += len;
        tally.peers.insert(peer.to_string());
        Ok(())
    }

    /// Read piece `i` from `r`, check it, keep it.
    fn piece(
        &self,
        plan: &Plan,
        i: usize,
        r: &mut impl Read,
        have: &Have,
        store: &dyn Store,
    ) -> Result<u64, Error> {
        let (offset, len) = plan.span(i);
        let keep = store.wants(i);
        let mut data = if keep {
            Vec::with_capacity(len as usize)
        } else {
            Vec::new()
        };
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut left = len;
        while left > 0 {
            let want = (buf.len() as u64).min(left) as usize;
            let n = r
                .read(&mut buf[..want])
                .map_err(|e| err(format!("reading piece {i}: {e}")))?;
            if n == 0 {
                return Err(err(format!(
                    "piece {i} ends after {} of its {len} bytes",
                    len - left
                )));
            }
            hasher.update(&buf[..n]);
            if keep {
                data.extend_from_slice(&buf[..n]);
            }
            left -= n as u64;
        }
        let got = hex::encode(hasher.finalize());
        if got != plan.pieces[i] {
            return Err(err(format!(
                "piece {i} does not match its hash (got {got}, the plan says {})",
                plan.pieces[i]
            )));
        }
        if keep {
            store
                .put(i, offset, &data)
                .map_err(|e| err(format!("cannot keep piece {i}: {e}")))?;
        }
        have.add(i);
        Ok(len)
    }
}
